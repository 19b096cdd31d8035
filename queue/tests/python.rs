//! CPython's own tests of `multiprocessing.Queue` (`_TestQueue` in
//! `Lib/test/_test_multiprocessing.py`) and of `Pipe`'s connections
//! (`_TestConnection`, `_TestPoll`), ported where they apply: between
//! real processes, each test that forks with a watchdog, every child reaped.
//! Left out: the feeder thread's tests (there is none: a put is in the queue
//! when it returns), the import-lock test, and of the connections' what
//! has no meaning here (`fileno`, descriptors sent over a pipe, Python's
//! `recv_bytes_into` into a fixed buffer with its `BufferTooShort`: a
//! `Vec` grows to fit). The timing checks are lower
//! bounds only (a wait lasts at least its timeout): the shape, never the
//! speed. Python's "at once" for a call that does not wait is its `try_`
//! form here, which has no way to wait.

use std::time::{Duration, Instant};

use multiproc_queue::{pipe, Error, JoinableQueue, Queue};
use multiproc_shm::Shared;
use multiproc_sync::Event;
use multiproc_testkit::{fork, Watchdog};

const LIMIT: Duration = Duration::from_secs(30);
/// Python's TIMEOUT1..3 (0.1, 0.82, 0.35 s), shortened.
const TIMEOUTS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(150),
];

/// test_put: a full queue refuses at once without waiting (`try_put`,
/// Python's `put_nowait`), and after a timeout with one; a child that takes everything empties it.
#[test]
fn put_refuses_a_full_queue_at_once_or_after_its_timeout() {
    let _dog = Watchdog::arm(LIMIT, "put");
    const MAXSIZE: usize = 6;
    let queue = Queue::<u32>::new(MAXSIZE).unwrap();
    // Events in shared memory, as every primitive shared with a child.
    let child_can_start = Shared::anonymous(Event::new()).unwrap();
    let parent_can_continue = Shared::anonymous(Event::new()).unwrap();
    let child = fork(|| {
        child_can_start.wait();
        for _ in 0..MAXSIZE {
            queue.get().unwrap();
        }
        parent_can_continue.set();
        0
    });
    assert!(queue.empty() && !queue.full());
    for i in 1..=5 {
        queue.put(i).unwrap();
    }
    queue.try_put(6).unwrap(); // put_nowait
    assert!(!queue.empty() && queue.full());
    assert!(matches!(queue.try_put(7), Err(Error::Full)));
    for timeout in TIMEOUTS {
        let t = Instant::now();
        assert!(matches!(queue.put_timeout(7, timeout), Err(Error::Timeout)));
        assert!(t.elapsed() >= timeout);
    }
    child_can_start.set();
    parent_can_continue.wait_timeout(LIMIT).unwrap();
    assert!(queue.empty() && !queue.full());
    child.wait_ok(LIMIT);
}

/// test_get: what a child put comes out in order; an empty queue answers
/// at once without waiting, and after a timeout with one.
#[test]
fn get_takes_a_childs_items_in_order_and_refuses_an_empty_queue() {
    let _dog = Watchdog::arm(LIMIT, "get");
    let queue = Queue::<u32>::new(8).unwrap();
    // Events in shared memory, as every primitive shared with a child.
    let child_can_start = Shared::anonymous(Event::new()).unwrap();
    let parent_can_continue = Shared::anonymous(Event::new()).unwrap();
    let child = fork(|| {
        child_can_start.wait();
        for i in 2..=5 {
            queue.put(i).unwrap();
        }
        parent_can_continue.set();
        0
    });
    assert!(queue.empty());
    child_can_start.set();
    parent_can_continue.wait_timeout(LIMIT).unwrap();
    assert!(!queue.empty());
    assert_eq!(queue.get().unwrap(), 2);
    assert_eq!(queue.get().unwrap(), 3);
    assert_eq!(queue.get_timeout(Duration::from_secs(1)).unwrap(), 4);
    assert_eq!(queue.try_get().unwrap(), 5); // get_nowait
    assert!(queue.empty());
    assert!(matches!(queue.try_get(), Err(Error::Empty)));
    for timeout in TIMEOUTS {
        let t = Instant::now();
        assert!(matches!(queue.get_timeout(timeout), Err(Error::Timeout)));
        assert!(t.elapsed() >= timeout);
    }
    child.wait_ok(LIMIT);
}

/// test_fork: items put before a fork and by the forked child all come out,
/// in order, and then the queue is empty.
#[test]
fn items_put_before_a_fork_and_by_the_child_all_come_out() {
    let _dog = Watchdog::arm(LIMIT, "fork");
    let queue = Queue::<u32>::new(32).unwrap();
    for i in 0..10 {
        queue.put(i).unwrap();
    }
    let child = fork(|| {
        for i in 10..20 {
            queue.put(i).unwrap();
        }
        0
    });
    child.wait_ok(LIMIT);
    for i in 0..20 {
        assert_eq!(queue.get_timeout(LIMIT).unwrap(), i);
    }
    assert!(matches!(queue.try_get(), Err(Error::Empty)));
}

/// test_qsize.
#[test]
fn qsize_counts_what_is_in_the_queue() {
    let q = Queue::<u32>::new(4).unwrap();
    assert_eq!(q.qsize(), 0);
    q.put(1).unwrap();
    assert_eq!(q.qsize(), 1);
    q.put(5).unwrap();
    assert_eq!(q.qsize(), 2);
    q.get().unwrap();
    assert_eq!(q.qsize(), 1);
    q.get().unwrap();
    assert_eq!(q.qsize(), 0);
}

/// test_task_done: four worker processes take tasks and mark each done;
/// `join` returns once all ten are; a sentinel each ends the workers.
#[test]
fn join_returns_when_four_workers_have_done_every_task() {
    let _dog = Watchdog::arm(LIMIT, "task_done");
    const SENTINEL: u32 = u32::MAX;
    let queue = JoinableQueue::<u32>::new(16).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                loop {
                    let item = queue.get().unwrap();
                    if item == SENTINEL {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    queue.task_done().unwrap();
                }
                0
            })
        })
        .collect();
    for i in 0..10 {
        queue.put(i).unwrap();
    }
    queue.join().unwrap();
    assert!(queue.empty());
    for _ in &workers {
        queue.put(SENTINEL).unwrap();
    }
    for w in workers {
        w.wait_ok(LIMIT);
    }
}

/// test_timeout: a get with a timeout waits at least that long.
#[test]
fn a_get_with_a_timeout_waits_that_long() {
    let q = Queue::<u32>::new(1).unwrap();
    let start = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    assert!(start.elapsed() >= Duration::from_millis(200));
}

/// test_queue_feeder_donot_stop_onexc (bpo-30414, bpo-33078): a value that
/// cannot be encoded is refused by its own put, and the queue goes on, its
/// size as before.
#[cfg(feature = "serde")]
#[test]
fn a_value_that_cannot_be_encoded_is_refused_and_the_queue_goes_on() {
    use multiproc_queue::ValueQueue;
    #[derive(serde::Deserialize)]
    enum Item {
        Fine(bool),
        #[allow(dead_code)]
        NotSerializable,
    }
    impl serde::Serialize for Item {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Item::Fine(b) => s.serialize_newtype_variant("Item", 0, "Fine", b),
                Item::NotSerializable => Err(serde::ser::Error::custom("not serializable")),
            }
        }
    }
    for maxsize in [4, 1] {
        let q = ValueQueue::<Item>::new(maxsize).unwrap();
        assert!(q.put(&Item::NotSerializable).is_err());
        q.put(&Item::Fine(true)).unwrap();
        assert_eq!(q.qsize(), 1);
        assert!(matches!(q.get_timeout(LIMIT).unwrap(), Item::Fine(true)));
        assert!(q.empty());
    }
}

/// The child of `_TestConnection`: echoes every message until an empty one,
/// then closes its end.
#[cfg(feature = "serde")]
fn echo(conn: &mut multiproc_queue::Connection) -> i32 {
    loop {
        let msg = conn.recv_bytes().unwrap();
        if msg.is_empty() {
            break;
        }
        conn.send_bytes(&msg).unwrap();
    }
    conn.close();
    0
}

/// test_connection: messages echoed by a child (a value, bytes, bytes into
/// a reused buffer, 16 MiB); `poll` with no timeout answers at once, with
/// one waits it out, and sees a message sent meanwhile at once; once the
/// child closed its end, a receive is Python's `EOFError`.
#[cfg(feature = "serde")]
#[test]
fn messages_echoed_by_a_child_and_polls_that_wait_or_not() {
    let _dog = Watchdog::arm(LIMIT, "test_connection");
    let (conn, mut child_conn) = pipe(true).unwrap();
    let kid = fork(|| echo(&mut child_conn));
    drop(child_conn);

    let seq = (1u32, 2.25f64, None::<u8>);
    conn.send(&seq).unwrap();
    assert_eq!(conn.recv::<(u32, f64, Option<u8>)>().unwrap(), seq);
    let msg = b"hello world";
    conn.send_bytes(msg).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), msg);
    let longmsg = msg.repeat(10);
    let mut buf = vec![b' '; 40];
    conn.send_bytes(&longmsg).unwrap();
    assert_eq!(conn.recv_bytes_into(&mut buf).unwrap(), longmsg.len());
    assert_eq!(buf, longmsg);

    let start = Instant::now();
    assert!(!conn.poll().unwrap());
    assert!(!conn.poll_timeout(TIMEOUTS[0]).unwrap());
    assert!(start.elapsed() >= TIMEOUTS[0]);
    // (Python's `None`; a `()` encodes to no bytes, the child's sentinel.)
    conn.send(&None::<u8>).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(conn.poll_timeout(TIMEOUTS[0]).unwrap());
    assert_eq!(conn.recv::<Option<u8>>().unwrap(), None);

    let really_big_msg = vec![b'X'; 16 << 20];
    conn.send_bytes(&really_big_msg).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), really_big_msg);

    conn.send_bytes(b"").unwrap(); // tell the child to quit
    kid.wait_ok(LIMIT);
    assert!(matches!(conn.recv::<()>(), Err(Error::Disconnected)));
    assert!(matches!(conn.recv_bytes(), Err(Error::Disconnected)));
}

/// test_empty_string: an empty message is a message; `poll` says so, and
/// again.
#[test]
fn an_empty_message_is_a_message_poll_sees() {
    let (a, b) = pipe(true).unwrap();
    assert!(!a.poll().unwrap());
    b.send_bytes(b"").unwrap();
    assert!(a.poll().unwrap());
    assert!(a.poll().unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"");
}

/// test_strings: messages a child sends a while apart, empty ones among
/// them, each found by short polls and received whole and in order.
#[test]
fn messages_apart_in_time_arrive_one_by_one_through_short_polls() {
    let _dog = Watchdog::arm(LIMIT, "test_strings");
    let strings: [&[u8]; 8] = [b"hello", b"", b"a", b"b", b"", b"bye", b"", b"lop"];
    let (a, mut b) = pipe(true).unwrap();
    let kid = fork(|| {
        for s in strings {
            std::thread::sleep(Duration::from_millis(20));
            b.send_bytes(s).unwrap();
        }
        b.close();
        0
    });
    drop(b);
    for s in strings {
        for _ in 0..2000 {
            if a.poll_timeout(Duration::from_millis(10)).unwrap() {
                break;
            }
        }
        assert_eq!(a.recv_bytes().unwrap(), s);
    }
    kid.wait_ok(LIMIT);
}

/// test_boundaries: a child that polls a copy of the receiving end while
/// the messages arrive takes nothing, half a message least of all: the
/// parent receives them whole.
#[test]
fn a_poll_in_another_process_takes_nothing() {
    let _dog = Watchdog::arm(LIMIT, "test_boundaries");
    let (r, mut w) = pipe(false).unwrap();
    let kid = fork(|| {
        let _ = r.poll_timeout(Duration::from_secs(5));
        0
    });
    std::thread::sleep(Duration::from_millis(300));
    for msg in [&b"first"[..], b"second"] {
        w.send_bytes(msg).unwrap();
    }
    w.close();
    kid.wait_ok(LIMIT);
    assert_eq!(r.recv_bytes().unwrap(), b"first");
    assert_eq!(r.recv_bytes().unwrap(), b"second");
}

/// test_dont_merge: messages sent back to back stay apart, however often
/// the receiver polls between them.
#[test]
fn messages_polled_between_stay_apart() {
    let _dog = Watchdog::arm(LIMIT, "test_dont_merge");
    let (a, b) = pipe(true).unwrap();
    assert!(!a.poll_timeout(Duration::ZERO).unwrap());
    assert!(!a.poll_timeout(TIMEOUTS[0]).unwrap());
    let kid = fork(|| {
        b.send_bytes(b"a").unwrap();
        b.send_bytes(b"b").unwrap();
        b.send_bytes(b"cd").unwrap();
        0
    });
    assert_eq!(a.recv_bytes().unwrap(), b"a");
    assert!(a.poll_timeout(Duration::from_secs(1)).unwrap());
    assert!(a.poll_timeout(Duration::from_secs(1)).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"b");
    assert!(a.poll_timeout(Duration::from_secs(1)).unwrap());
    assert!(a.poll_timeout(Duration::from_secs(1)).unwrap());
    assert!(a.poll_timeout(Duration::ZERO).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), b"cd");
    kid.wait_ok(LIMIT);
}
