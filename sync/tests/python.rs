//! Python's semantics, from CPython's `Lib/test/_test_multiprocessing.py` ported to
//! this API, between threads and between processes (one test per process under
//! cargo-nextest; each test that forks arms a watchdog and reaps every child).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, Condvar, Mutex};
use multiproc_testkit::{fork, wait_until, Watchdog};

/// Long enough to see a wrong wake-up: many owner check intervals (set short).
const SETTLE: Duration = Duration::from_millis(300);
const BOUND: Duration = Duration::from_secs(20);

multiproc_shm::shm_struct! {
    /// A condition, its mutex (guarding how many waiters are inside), and counts.
    struct Cond {
        /// Waiters that took the mutex and are about to wait (under the mutex).
        inside: Mutex<u32>,
        cond: Condvar,
        /// Waits that returned notified.
        notified: AtomicU32,
        /// Waits that returned timed out.
        timed_out: AtomicU32,
    }
}

fn new_cond() -> Shared<Cond> {
    Shared::anonymous(Cond {
        inside: Mutex::new(0),
        cond: Condvar::new(),
        notified: AtomicU32::new(0),
        timed_out: AtomicU32::new(0),
    })
    .unwrap()
}

/// One waiter: counts itself in under the mutex, waits at most `timeout`, and
/// counts how its wait ended (CPython's `_TestCondition.f`).
fn waiter(c: &Cond, timeout: Duration) {
    let mut g = c.inside.lock().unwrap();
    *g += 1;
    let (_g, timed_out) = c.cond.wait_timeout(g, timeout).unwrap();
    let count = if timed_out { &c.timed_out } else { &c.notified };
    count.fetch_add(1, Ordering::SeqCst);
}

/// Waits until `n` waiters have counted themselves in and released the mutex
/// inside `wait` (taking the mutex proves the last one is waiting).
fn until_waiting(c: &Cond, n: u32) {
    wait_until(BOUND, "the waiters to wait", || {
        *c.inside.lock().unwrap() == n
    });
}

/// `notify(2)` among six waiters wakes two; the rest wait on (CPython's
/// `test_notify_n`), then `notify(4)` wakes them, and a notify with nobody
/// waiting wakes nobody.
fn notify_n_wakes_n(c: &Cond, start_waiter: &mut dyn FnMut()) {
    set_owner_check_interval(Duration::from_millis(5));
    for _ in 0..6 {
        start_waiter();
    }
    until_waiting(c, 6);
    std::thread::sleep(SETTLE);
    assert_eq!(c.notified.load(Ordering::SeqCst), 0, "nobody notified yet");
    {
        let _g = c.inside.lock().unwrap();
        c.cond.notify(2);
    }
    wait_until(BOUND, "two wake-ups", || {
        c.notified.load(Ordering::SeqCst) == 2
    });
    std::thread::sleep(SETTLE);
    assert_eq!(
        c.notified.load(Ordering::SeqCst),
        2,
        "notify(2) woke more than two waiters"
    );
    assert_eq!(c.timed_out.load(Ordering::SeqCst), 0);
    {
        let _g = c.inside.lock().unwrap();
        c.cond.notify(4);
    }
    wait_until(BOUND, "six wake-ups", || {
        c.notified.load(Ordering::SeqCst) == 6
    });
    {
        let _g = c.inside.lock().unwrap();
        c.cond.notify(3); // nobody waits any more
    }
    std::thread::sleep(SETTLE);
    assert_eq!(c.notified.load(Ordering::SeqCst), 6);
    assert_eq!(c.timed_out.load(Ordering::SeqCst), 0);
}

#[test]
fn notify_n_wakes_n_threads() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "notify(n) between threads");
    let c = new_cond();
    std::thread::scope(|s| {
        notify_n_wakes_n(&c, &mut || {
            s.spawn(|| waiter(&c, BOUND));
        });
    });
}

#[test]
fn notify_n_wakes_n_processes() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "notify(n) between processes");
    let c = new_cond();
    let mut children = Vec::new();
    notify_n_wakes_n(&c, &mut || {
        children.push(fork(|| {
            waiter(&c, BOUND);
            0
        }));
    });
    for child in children {
        child.wait_ok(BOUND);
    }
}

/// `notify_one` wakes one; each waiter that was not notified returns timed out
/// at its own deadline, never "notified" (CPython's `test_notify`,
/// `test_notify_all` with timeouts).
#[test]
fn waiters_that_are_not_notified_time_out() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "timeouts of unnotified waiters");
    set_owner_check_interval(Duration::from_millis(5));
    let c = new_cond();
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    let children: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                waiter(&c, timeout);
                0
            })
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| waiter(&c, timeout));
        }
        until_waiting(&c, 6);
        c.cond.notify_one();
    });
    for child in children {
        child.wait_ok(BOUND);
    }
    assert!(start.elapsed() >= timeout);
    assert_eq!(c.notified.load(Ordering::SeqCst), 1);
    assert_eq!(c.timed_out.load(Ordering::SeqCst), 5);
}

/// A waiter that starts waiting after a notify is not woken by it.
#[test]
fn a_notify_does_not_wake_later_waiters() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "later waiters");
    set_owner_check_interval(Duration::from_millis(5));
    let c = new_cond();
    std::thread::scope(|s| {
        s.spawn(|| waiter(&c, BOUND));
        until_waiting(&c, 1);
        {
            let _g = c.inside.lock().unwrap();
            c.cond.notify(1);
            c.cond.notify(1); // only one waiter: only one wake-up
        }
        wait_until(BOUND, "the first waiter", || {
            c.notified.load(Ordering::SeqCst) == 1
        });
        s.spawn(|| waiter(&c, Duration::from_millis(200)));
        until_waiting(&c, 2);
    });
    assert_eq!(c.notified.load(Ordering::SeqCst), 1);
    assert_eq!(c.timed_out.load(Ordering::SeqCst), 1);
}
