//! Pipe between processes: both directions, one-way ends, close, ends that go
//! away, messages of every size, serde values.

use std::time::Duration;

use multiproc_queue::{pipe, pipe_with, Error};
use multiproc_testkit::{fork, Watchdog};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_duplex_pipe_between_parent_and_child() {
    let _dog = Watchdog::arm(LIMIT, "duplex pipe");
    let (parent, mut child) = pipe(true).unwrap();
    let kid = fork(|| {
        for _ in 0..100 {
            let m = child.recv_bytes().unwrap();
            let mut reply = m.clone();
            reply.reverse();
            child.send_bytes(&reply).unwrap();
        }
        child.close();
        0
    });
    // As Python's documentation says: close the other end in this process.
    drop(child);
    for i in 0..100u32 {
        let m = format!("message {i}");
        parent.send_bytes(m.as_bytes()).unwrap();
        let mut want = m.into_bytes();
        want.reverse();
        assert_eq!(parent.recv_bytes_timeout(LIMIT).unwrap(), want);
    }
    kid.wait_ok(LIMIT);
    assert!(
        matches!(parent.recv_bytes(), Err(Error::Disconnected)),
        "the child closed its end"
    );
    assert!(matches!(parent.send_bytes(b"?"), Err(Error::Disconnected)));
}

/// `recv_bytes_into` across processes: one buffer, messages that grow and
/// shrink, each replacing the last; a receive with a timeout that runs out
/// leaves the buffer as it was.
#[test]
fn receives_into_one_buffer_across_processes() {
    let _dog = Watchdog::arm(LIMIT, "recv_bytes_into");
    let (reader, writer) = pipe_with(false, 4, 300).unwrap();
    let kid = fork(|| {
        for i in 0..1000usize {
            writer.send_bytes(&vec![i as u8; i % 300]).unwrap();
        }
        0
    });
    drop(writer);
    let mut buf = Vec::new();
    for i in 0..1000usize {
        let n = if i % 2 == 0 {
            reader.recv_bytes_into(&mut buf).unwrap()
        } else {
            reader.recv_bytes_into_timeout(&mut buf, LIMIT).unwrap()
        };
        assert_eq!(n, i % 300);
        assert_eq!(buf, vec![i as u8; i % 300]);
    }
    kid.wait_ok(LIMIT);
    buf = b"kept".to_vec();
    assert!(matches!(
        reader.recv_bytes_into_timeout(&mut buf, Duration::from_millis(5)),
        Err(Error::Timeout | Error::Disconnected)
    ));
    assert_eq!(buf, b"kept");
}

/// Request and reply through a duplex pipe whose ends never spin (each receive
/// sleeps at once, each send into a one-message direction may too), with the
/// owner check interval at a minute: a lost wake-up in the byte queues' sleep
/// paths hangs the test, and the watchdog fails it.
#[test]
fn sleeping_requests_and_replies_lose_no_wake_up() {
    let _dog = Watchdog::arm(LIMIT, "sleeping pipe");
    multiproc_sync::set_owner_check_interval(Duration::from_secs(60));
    const ROUNDS: u32 = 3_000;
    let (mut a, mut b) = pipe_with(true, 1, 8).unwrap();
    a.set_spin_limit(0);
    b.set_spin_limit(0);
    let kid = fork(|| {
        let mut buf = Vec::new();
        for i in 0..ROUNDS {
            b.recv_bytes_into(&mut buf).unwrap();
            assert_eq!(buf, i.to_le_bytes());
            b.send_bytes(&(i + 1).to_le_bytes()).unwrap();
        }
        0
    });
    let mut buf = Vec::new();
    for i in 0..ROUNDS {
        a.send_bytes(&i.to_le_bytes()).unwrap();
        a.recv_bytes_into(&mut buf).unwrap();
        assert_eq!(buf, (i + 1).to_le_bytes());
    }
    kid.wait_ok(LIMIT);
}

#[test]
fn a_one_way_pipe_only_goes_one_way() {
    let (reader, writer) = pipe(false).unwrap();
    writer.send_bytes(b"x").unwrap();
    assert!(reader.poll_timeout(Duration::from_secs(1)).unwrap());
    assert_eq!(reader.recv_bytes().unwrap(), b"x");
    assert!(matches!(
        reader.send_bytes(b"y"),
        Err(Error::OneWay { sends: false })
    ));
    assert!(matches!(
        writer.recv_bytes(),
        Err(Error::OneWay { sends: true })
    ));
    assert!(!reader.poll_timeout(Duration::from_millis(5)).unwrap());
}

/// A message over the slot size streams: the sender returns once its bytes
/// are in the lane, so a large one needs the receiver (here in this thread,
/// for one that fits the lane).
#[test]
fn a_message_over_the_slot_size_goes_through() {
    let (a, b) = pipe_with(true, 4, 16).unwrap();
    a.send_bytes(&[9; 17]).unwrap();
    a.send_bytes(b"small").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), [9; 17]);
    assert_eq!(b.recv_bytes().unwrap(), b"small");
}

/// This process's peak resident memory in KiB (`VmHWM`).
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Python's `recv_bytes(maxlength)`: a message over the limit, in a slot or
/// streamed, is refused with its length, and the next one is received; a
/// streamed one is refused from its announcement, so that its sender (here
/// another process, sending 64 MiB through a lane of 256 KiB) returns and
/// the receiver never holds its bytes.
#[test]
fn a_receive_with_a_length_limit_refuses_longer_messages_and_goes_on() {
    const BIG: usize = 64 << 20;
    let _dog = Watchdog::arm(LIMIT, "recv_bytes_max");
    let (reader, writer) = pipe(false).unwrap();
    let kid = fork(|| {
        writer.send_bytes(&[1; 1025]).unwrap();
        writer.send_bytes(&[2; 1024]).unwrap();
        writer.send_bytes(&vec![3; BIG]).unwrap();
        writer.send_bytes(b"after").unwrap();
        writer.send_bytes(&[4; 1025]).unwrap();
        writer.send_bytes(&[5; 20_000]).unwrap();
        0
    });
    drop(writer);
    let over = |r: multiproc_queue::Result<Vec<u8>>| match r {
        Err(Error::MessageOverLimit { len, max: 1024 }) => len,
        other => panic!("not refused: {:?}", other.map(|m| m.len())),
    };
    assert_eq!(over(reader.recv_bytes_max(1024)), 1025);
    assert_eq!(reader.recv_bytes_max(1024).unwrap(), [2; 1024]);
    let before = peak_kib();
    assert_eq!(over(reader.recv_bytes_max(1024)), BIG as u64);
    let grown = peak_kib() - before;
    assert!(
        grown < 16 << 10,
        "the refused message's bytes were held: peak +{grown} KiB"
    );
    assert_eq!(
        reader.recv_bytes_max_timeout(1024, LIMIT).unwrap(),
        b"after"
    );
    assert_eq!(over(reader.recv_bytes_max_timeout(1024, LIMIT)), 1025);
    // A limit that a streamed message fits is no refusal.
    assert_eq!(reader.recv_bytes_max(20_000).unwrap(), [5; 20_000]);
    kid.wait_ok(LIMIT);
    assert!(matches!(
        reader.recv_bytes_max(1024),
        Err(Error::Disconnected)
    ));
}

#[cfg(feature = "serde")]
#[test]
fn serde_values_cross_a_pipe() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Job {
        id: u32,
        name: String,
        weights: Vec<f64>,
    }
    let _dog = Watchdog::arm(LIMIT, "serde pipe");
    let (parent, child) = pipe(true).unwrap();
    let kid = fork(|| {
        let job: Job = child.recv().unwrap();
        child.send(&(job.id * 2, job.name.len())).unwrap();
        0
    });
    parent
        .send(&Job {
            id: 21,
            name: "square".into(),
            weights: vec![0.5, 1.5],
        })
        .unwrap();
    assert_eq!(parent.recv::<(u32, usize)>().unwrap(), (42, 6));
    kid.wait_ok(LIMIT);
}

/// A value received as another type than it was sent as is an error, not a
/// wrong value: a string read as a number used to give its length, and a
/// pair read as one number its first half (Python's pickle carries the type
/// and cannot be misread so). The message is taken; the next one is read
/// right. Also through a `ByteQueue`'s `get_value`, a large value streamed,
/// and another process's sends.
#[cfg(feature = "serde")]
#[test]
fn a_value_read_as_another_type_is_an_error_not_a_wrong_value() {
    use multiproc_queue::Error;
    let _dog = Watchdog::arm(LIMIT, "serde types");
    let (a, b) = pipe_with(true, 4, 64).unwrap();
    let kid = fork(|| {
        a.send(&"hello").unwrap();
        a.send(&(7u8, 9u8)).unwrap();
        a.send(&vec![1u8; 100_000]).unwrap();
        a.send(&123u64).unwrap();
        0
    });
    assert!(matches!(
        b.recv::<u64>(),
        Err(Error::DecodeLeftOver { left: 5, len: 6 })
    ));
    assert!(matches!(
        b.recv::<u8>(),
        Err(Error::DecodeLeftOver { left: 1, len: 2 })
    ));
    let e = b.recv::<(u8, u8)>().unwrap_err();
    assert!(matches!(e, Error::DecodeLeftOver { .. }), "{e:?}");
    assert!(e.to_string().contains("another type"), "{e}");
    assert_eq!(b.recv::<u64>().unwrap(), 123);
    kid.wait_ok(LIMIT);

    let q = multiproc_queue::ByteQueue::new(4, 64).unwrap();
    q.put_value(&String::from("abc")).unwrap();
    assert!(matches!(
        q.get_value::<u8>(),
        Err(Error::DecodeLeftOver { left: 3, len: 4 })
    ));
    q.put_value(&()).unwrap();
    q.get_value::<()>().unwrap();
}

/// Values encoded and decoded through the thread's reused buffer: small and
/// large ones in turn (the buffer kept, then given back past 64 KiB), the
/// largest over the slot size (streamed).
#[cfg(feature = "serde")]
#[test]
fn serde_values_of_every_size_cross_in_turn() {
    let _dog = Watchdog::arm(LIMIT, "serde sizes");
    let (a, b) = pipe_with(true, 4, 200 * 1024).unwrap();
    let kid = fork(|| {
        for _ in 0..7 {
            let v: Vec<u8> = a.recv().unwrap();
            a.send(&v).unwrap();
        }
        0
    });
    for n in [0usize, 5, 100_000, 3, 150_000, 1, 3 << 20] {
        let v: Vec<u8> = (0..n).map(|i| i as u8).collect();
        b.send(&v).unwrap();
        assert_eq!(b.recv::<Vec<u8>>().unwrap(), v);
    }
    kid.wait_ok(LIMIT);
}

/// Every blocking call of a `Connection` has a timeout: a sender facing a full
/// pipe whose reader is busy gets `Timeout`, then goes through once the reader
/// (another process) drains it; a receiver facing silence gets `Timeout`.
#[test]
fn sends_and_receives_time_out_across_processes() {
    let _dog = Watchdog::arm(LIMIT, "pipe timeouts");
    let (parent, child) = pipe_with(true, 2, 16).unwrap();
    let kid = fork(|| {
        // Busy at first: the parent's third message finds the pipe full.
        std::thread::sleep(Duration::from_millis(200));
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(child.recv_bytes_timeout(LIMIT).unwrap());
        }
        assert_eq!(got.concat(), b"abc");
        0
    });
    parent.send_bytes(b"a").unwrap();
    parent.send_bytes(b"b").unwrap();
    assert!(matches!(
        parent.send_bytes_timeout(b"c", Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    parent
        .send_bytes_timeout(b"c", LIMIT)
        .expect("room once the child reads");
    kid.wait_ok(LIMIT);
    assert!(matches!(
        parent.recv_bytes_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
}

#[cfg(feature = "serde")]
#[test]
fn serde_sends_and_receives_time_out() {
    let (a, b) = pipe_with(true, 1, 64).unwrap();
    a.send_timeout(&1u32, LIMIT).unwrap();
    assert!(matches!(
        a.send_timeout(&2u32, Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    assert_eq!(b.recv_timeout::<u32>(LIMIT).unwrap(), 1);
    assert!(matches!(
        b.recv_timeout::<u32>(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
}

/// As in Python, where a reader gets `EOFError` once every write end is closed:
/// when the child that held the other end exits without closing it, and the
/// parent dropped its own copy of that end after the fork, the parent's receive
/// returns `Disconnected` instead of waiting forever.
#[test]
fn a_receive_is_disconnected_when_the_other_end_is_gone() {
    let _dog = Watchdog::arm(LIMIT, "pipe disconnected");
    multiproc_sync::set_owner_check_interval(Duration::from_millis(5));
    let (parent, child) = pipe(true).unwrap();
    let kid = fork(|| {
        child.send_bytes(b"bye").unwrap();
        0 // exits without closing
    });
    drop(child);
    assert_eq!(parent.recv_bytes_timeout(LIMIT).unwrap(), b"bye");
    kid.wait_ok(LIMIT);
    assert!(matches!(
        parent.recv_bytes_timeout(LIMIT),
        Err(Error::Disconnected)
    ));
}

/// Python's `close`: this end can neither send nor receive; the other end
/// receives what was sent, then `Disconnected`; its sends fail at once.
#[test]
fn closing_an_end_closes_both_directions() {
    let (mut a, b) = pipe(true).unwrap();
    b.send_bytes(b"to a").unwrap();
    a.send_bytes(b"to b").unwrap();
    a.close();
    assert!(a.is_closed());
    assert!(matches!(a.recv_bytes(), Err(Error::EndClosed)));
    assert!(matches!(a.send_bytes(b"x"), Err(Error::EndClosed)));
    assert!(matches!(a.poll(), Err(Error::EndClosed)));
    assert_eq!(b.recv_bytes().unwrap(), b"to b");
    let t = std::time::Instant::now();
    assert!(matches!(b.recv_bytes(), Err(Error::Disconnected)));
    assert!(matches!(b.send_bytes(b"x"), Err(Error::Disconnected)));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "at once, not after a wait"
    );
}

/// A peer that exits — through `exit`, which runs no destructor of its end —
/// leaves no reader: the next send fails at once, not once the pipe is full.
#[test]
fn a_send_to_a_peer_that_exited_fails_at_once() {
    let _dog = Watchdog::arm(LIMIT, "send to an exited peer");
    let (parent, child) = pipe(true).unwrap();
    let kid = fork(|| {
        child.send_bytes(b"ready").unwrap();
        // std::process::exit runs the exit handlers, which give back this
        // process's ends; the closure's `child` is never dropped.
        std::process::exit(0)
    });
    drop(child);
    assert_eq!(parent.recv_bytes_timeout(LIMIT).unwrap(), b"ready");
    kid.wait_ok(LIMIT);
    assert!(matches!(parent.send_bytes(b"?"), Err(Error::Disconnected)));
    assert!(matches!(parent.recv_bytes(), Err(Error::Disconnected)));
}

/// A peer SIGKILLed holding its end gives nothing back: its sends counted
/// still. A send fails with `Disconnected` as soon as it would otherwise wait
/// (the direction is full), never blocks for good.
#[test]
fn a_send_to_a_killed_peer_fails_once_it_would_wait() {
    let _dog = Watchdog::arm(LIMIT, "send to a killed peer");
    multiproc_sync::set_owner_check_interval(Duration::from_millis(5));
    let (parent, child) = pipe_with(true, 4, 16).unwrap();
    let kid = fork(|| {
        child.send_bytes(b"ready").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    drop(child);
    assert_eq!(parent.recv_bytes_timeout(LIMIT).unwrap(), b"ready");
    kid.kill(LIMIT);
    let mut sent = 0;
    let err = loop {
        match parent.send_bytes(b"x") {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= 4, "more sends than the direction holds");
    };
    assert!(matches!(err, Error::Disconnected), "{err}");
    assert!(matches!(parent.recv_bytes(), Err(Error::Disconnected)));
}

/// CPython sends 16 MiB through a pipe and back; here 16 MiB and then 1 GiB
/// with the default pipe, checked byte for byte, and a message of 0 bytes.
#[test]
fn messages_of_0_bytes_to_1_gib_cross_a_default_pipe() {
    let _dog = Watchdog::arm(Duration::from_secs(230), "large messages");
    let (parent, child) = pipe(true).unwrap();
    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }
    let kid = fork(|| {
        // Echo the 16 MiB message, then send 1 GiB of our own.
        let m = child.recv_bytes().unwrap();
        child.send_bytes(&m).unwrap();
        drop(m);
        child.send_bytes(&pattern(1 << 30, 7)).unwrap();
        child.send_bytes(b"").unwrap();
        0
    });
    let big = pattern(16 << 20, 3);
    parent.send_bytes(&big).unwrap();
    assert!(
        parent.recv_bytes_timeout(LIMIT).unwrap() == big,
        "16 MiB came back intact"
    );
    drop(big);
    let mut buf = Vec::new();
    let t = std::time::Instant::now();
    parent.recv_bytes_into(&mut buf).unwrap();
    let took = t.elapsed();
    assert_eq!(buf.len(), 1 << 30);
    assert!(buf == pattern(1 << 30, 7), "1 GiB intact");
    eprintln!(
        "1 GiB through a pipe in {took:?} ({:.2} GB/s)",
        1.073_741_824 / took.as_secs_f64()
    );
    assert_eq!(parent.recv_bytes().unwrap(), b"");
    kid.wait_ok(LIMIT);
}
