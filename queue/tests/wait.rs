//! `wait` on several objects at once (Python's `multiprocessing.connection.wait`):
//! queues, pipe ends and process sentinels, woken by other processes.

use std::time::{Duration, Instant};

use multiproc_proc::Process;
use multiproc_queue::{pipe, wait, wait_timeout, ByteQueue, Error, Queue};
use multiproc_testkit::{fork, Watchdog};

const LIMIT: Duration = Duration::from_secs(20);

/// Nothing ready: `wait_timeout` returns an empty list after its timeout.
#[test]
fn nothing_ready_times_out_with_an_empty_list() {
    let (a, _b) = pipe(true).unwrap();
    let q = Queue::<u64>::new(4).unwrap();
    let t = Instant::now();
    assert!(wait_timeout(&[&a, &q], Duration::from_millis(50))
        .unwrap()
        .is_empty());
    assert!(t.elapsed() >= Duration::from_millis(50));
}

/// Each kind wakes the waiter when it becomes ready in another process: a
/// message into a queue, a message into a pipe, a process that ends.
#[test]
fn a_queue_a_pipe_and_a_sentinel_each_wake_the_waiter() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "wait");
    multiproc_sync::set_owner_check_interval(Duration::from_secs(60));
    let (a, b) = pipe(true).unwrap();
    let q = ByteQueue::new(4, 16).unwrap();

    // A queue, from another process.
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(100));
        q.put_bytes(b"q").unwrap();
        0
    });
    let t = Instant::now();
    assert_eq!(wait(&[&a, &q]).unwrap(), [1]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "woken, not timed out"
    );
    assert_eq!(q.get_bytes().unwrap(), b"q");
    child.wait_ok(LIMIT);

    // A pipe end, from another process.
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(100));
        b.send_bytes(b"p").unwrap();
        0
    });
    assert_eq!(wait(&[&a, &q]).unwrap(), [0]);
    assert_eq!(a.recv_bytes().unwrap(), b"p");
    child.wait_ok(LIMIT);

    // A process sentinel, among the two (nothing arrives on them).
    let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(100)));
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    let t = Instant::now();
    assert_eq!(wait(&[&a, &q, &sentinel]).unwrap(), [2]);
    assert!(t.elapsed() < Duration::from_secs(10));
    p.join().unwrap();
}

/// Several ready at once are all reported, in the order given.
#[test]
fn every_ready_object_is_reported() {
    let (a, b) = pipe(true).unwrap();
    let q = Queue::<u32>::new(4).unwrap();
    let idle = Queue::<u32>::new(4).unwrap();
    q.put(1).unwrap();
    b.send_bytes(b"x").unwrap();
    assert_eq!(wait(&[&idle, &a, &q]).unwrap(), [1, 2]);
}

/// An end whose peer is gone is ready (a receive would return at once, with
/// `Disconnected`), as Python's `wait` reports a connection at its end.
#[test]
fn an_end_whose_peer_is_gone_is_ready() {
    let (a, b) = pipe(true).unwrap();
    let idle = Queue::<u32>::new(4).unwrap();
    drop(b);
    assert_eq!(wait(&[&idle, &a]).unwrap(), [1]);
    assert!(matches!(a.recv_bytes(), Err(Error::Disconnected)));
}

/// On a kernel without `futex_waitv` (before 5.16: Debian 11's 5.10, Ubuntu
/// 22.04's 5.15), `wait` naps a millisecond at a time instead of
/// sleeping on every queue at once: it still returns when a queue gets a
/// message from another process, when a process ends among queues (its
/// helper thread's path), and after its timeout when nothing comes. The
/// kernel's refusal is a real one: a seccomp filter in a forked child.
#[test]
fn wait_works_on_a_kernel_without_futex_waitv() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "wait without futex_waitv");
    let child = fork(|| {
        multiproc_testkit::refuse_syscall(libc::SYS_futex_waitv, libc::ENOSYS);
        multiproc_sync::set_owner_check_interval(Duration::from_secs(60));
        let (a, _b) = pipe(true).unwrap();
        let q = ByteQueue::new(4, 16).unwrap();

        // Nothing comes: the timeout ends it, with nothing ready.
        let t = Instant::now();
        if !wait_timeout(&[&a, &q], Duration::from_millis(50))
            .unwrap()
            .is_empty()
            || t.elapsed() < Duration::from_millis(50)
        {
            return 10;
        }

        // A message from another process.
        let putter = fork(|| {
            std::thread::sleep(Duration::from_millis(50));
            q.put_bytes(b"q").unwrap();
            0
        });
        if wait(&[&a, &q]).unwrap() != [1] || q.get_bytes().unwrap() != b"q" {
            return 11;
        }
        putter.wait_ok(LIMIT);

        // A process that ends, among the queues.
        let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(50)));
        p.start().unwrap();
        let sentinel = p.sentinel().unwrap();
        if wait(&[&a, &q, &sentinel]).unwrap() != [2] {
            return 12;
        }
        p.join().unwrap();
        0
    });
    child.wait_ok(LIMIT);
}
