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
    sync struct Cond {
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

multiproc_shm::shm_struct! {
    /// A barrier and what its parties count.
    sync struct Round {
        barrier: multiproc_sync::Barrier,
        /// Arrivals before the first and second wait of each pass (CPython's
        /// `multipass` results[0] and results[1]).
        before: AtomicU32,
        between: AtomicU32,
        /// Actions run.
        actions: AtomicU32,
        /// Waits that failed with BrokenBarrier.
        broken: AtomicU32,
        /// Per arrival index, how often it was handed out.
        index: [AtomicU32; 8],
    }
}

fn new_round(barrier: multiproc_sync::Barrier) -> Shared<Round> {
    Shared::anonymous(Round {
        barrier,
        before: AtomicU32::new(0),
        between: AtomicU32::new(0),
        actions: AtomicU32::new(0),
        broken: AtomicU32::new(0),
        index: Default::default(),
    })
    .unwrap()
}

/// Six processes looping on one barrier of three: every round hands out the
/// indices 0, 1 and 2 once, the action runs once per round, and no wait fails
/// until the parent stops them. (An arrival while a round was opening answered
/// `Corrupted` before.) Each child loops until told to stop; the parent then
/// aborts the barrier, which releases a round left short of parties.
#[test]
fn six_processes_loop_on_a_barrier_of_three() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "six on a barrier of three");
    const ROUNDS: u32 = 600;
    let r = new_round(multiproc_sync::Barrier::new(3).unwrap());
    let stop = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let children: Vec<_> = (0..6)
        .map(|_| {
            fork(|| {
                let b = r.barrier.with_action(|| {
                    r.actions.fetch_add(1, Ordering::SeqCst);
                });
                while stop.load(Ordering::SeqCst) == 0 {
                    match b.wait_timeout(BOUND) {
                        Ok(i) => {
                            r.index[i as usize].fetch_add(1, Ordering::SeqCst);
                        }
                        Err(multiproc_sync::Error::BrokenBarrier)
                            if stop.load(Ordering::SeqCst) != 0 => {}
                        Err(e) => {
                            eprintln!("wait failed: {e}");
                            return 1;
                        }
                    }
                }
                0
            })
        })
        .collect();
    wait_until(BOUND, "the rounds", || {
        r.actions.load(Ordering::SeqCst) >= ROUNDS
    });
    stop.store(1, Ordering::SeqCst);
    r.barrier.abort();
    for child in children {
        child.wait_ok(BOUND);
    }
    let actions = r.actions.load(Ordering::SeqCst);
    let handed: Vec<u32> = (0..3).map(|i| r.index[i].load(Ordering::SeqCst)).collect();
    // Every round that opened handed out each index once; the abort may cut
    // one short after its action ran.
    assert!(
        handed[0] == handed[1] && handed[1] == handed[2],
        "{handed:?}"
    );
    assert!(
        handed[0] == actions || handed[0] + 1 == actions,
        "{handed:?} {actions}"
    );
    assert!(actions >= ROUNDS);
    for k in 3..8 {
        assert_eq!(r.index[k].load(Ordering::SeqCst), 0);
    }
}

/// CPython's `multipass`: parties pass in lockstep, ten times, between processes.
#[test]
fn processes_pass_a_barrier_in_lockstep() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "barrier lockstep");
    const N: u32 = 5;
    const PASSES: u32 = 10;
    let r = new_round(multiproc_sync::Barrier::new(N).unwrap());
    let children: Vec<_> = (0..N)
        .map(|_| {
            fork(|| {
                for i in 0..PASSES {
                    r.before.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(r.between.load(Ordering::SeqCst), i * N);
                    r.barrier.wait_timeout(BOUND).unwrap();
                    r.between.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(r.before.load(Ordering::SeqCst), (i + 1) * N);
                    r.barrier.wait_timeout(BOUND).unwrap();
                }
                0
            })
        })
        .collect();
    for child in children {
        child.wait_ok(BOUND);
    }
    assert_eq!(r.barrier.n_waiting(), 0);
    assert!(!r.barrier.broken());
}

/// CPython's `test_timeout`: one party is late; the wait that times out breaks
/// the barrier, and every party of the round gets `BrokenBarrier` — the one that
/// timed out too. `n_waiting` is 0 once broken.
#[test]
fn a_timed_out_wait_breaks_the_round_for_everyone() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "barrier timeout");
    let r = new_round(multiproc_sync::Barrier::new(4).unwrap());
    let r = &r;
    let children: Vec<_> = (0..3)
        .map(|k| {
            fork(move || {
                let timeout = if k == 0 {
                    Duration::from_millis(200)
                } else {
                    BOUND
                };
                match r.barrier.wait_timeout(timeout) {
                    Err(multiproc_sync::Error::BrokenBarrier) => {
                        r.broken.fetch_add(1, Ordering::SeqCst);
                        0
                    }
                    other => {
                        eprintln!("expected BrokenBarrier, got {other:?}");
                        1
                    }
                }
            })
        })
        .collect();
    for child in children {
        child.wait_ok(BOUND);
    }
    assert_eq!(r.broken.load(Ordering::SeqCst), 3);
    assert!(r.barrier.broken());
    assert_eq!(r.barrier.n_waiting(), 0, "n_waiting of a broken barrier");
    // The late party finds it broken too.
    assert!(matches!(
        r.barrier.wait_timeout(BOUND),
        Err(multiproc_sync::Error::BrokenBarrier)
    ));
    r.barrier.reset();
    assert!(!r.barrier.broken());
}

/// CPython's `test_default_timeout`: a barrier made with a timeout applies it
/// to every plain wait.
#[test]
fn a_default_timeout_applies_to_plain_waits() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "barrier default timeout");
    let r =
        new_round(multiproc_sync::Barrier::with_timeout(3, Duration::from_millis(300)).unwrap());
    let start = Instant::now();
    let child = fork(|| match r.barrier.wait() {
        Err(multiproc_sync::Error::BrokenBarrier) => 0,
        _ => 1,
    });
    assert!(matches!(
        r.barrier.wait(),
        Err(multiproc_sync::Error::BrokenBarrier)
    ));
    child.wait_ok(BOUND);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

/// CPython's `test_action`, and an action that panics breaks the barrier for
/// the others while its own party sees the panic.
#[test]
fn the_action_runs_once_and_a_panicking_one_breaks_the_barrier() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "barrier action");
    let r = new_round(multiproc_sync::Barrier::new(3).unwrap());
    let children: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let action = || {
                    r.actions.fetch_add(1, Ordering::SeqCst);
                };
                r.barrier.with_action(action).wait_timeout(BOUND).unwrap();
                0
            })
        })
        .collect();
    r.barrier
        .with_action(|| {
            r.actions.fetch_add(1, Ordering::SeqCst);
        })
        .wait_timeout(BOUND)
        .unwrap();
    for child in children {
        child.wait_ok(BOUND);
    }
    assert_eq!(r.actions.load(Ordering::SeqCst), 1);

    let two = new_round(multiproc_sync::Barrier::new(2).unwrap());
    let child = fork(|| match two.barrier.wait_timeout(BOUND) {
        Err(multiproc_sync::Error::BrokenBarrier) => 0,
        _ => 1,
    });
    wait_until(BOUND, "the other party to wait", || {
        two.barrier.n_waiting() == 1
    });
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        two.barrier
            .with_action(|| panic!("the action failed"))
            .wait_timeout(BOUND)
    }));
    assert!(panicked.is_err(), "the panic goes on in the last party");
    child.wait_ok(BOUND);
    assert!(two.barrier.broken());
}

multiproc_shm::shm_struct! {
    /// CPython's `_TestBarrier` fixture: a barrier of [`PARTIES`], a second
    /// one, and its three result lists, as counts.
    sync struct Parties {
        barrier: multiproc_sync::Barrier,
        barrier2: multiproc_sync::Barrier,
        results1: AtomicU32,
        results2: AtomicU32,
        results3: AtomicU32,
    }
}

/// CPython's `_TestBarrier.N`.
const PARTIES: u32 = 5;
/// The arrival index that misbehaves in CPython's tests (`N // 2`).
const MIDDLE: u32 = PARTIES / 2;

/// Runs `f` in [`PARTIES`] forked processes over a fresh [`Parties`]
/// (CPython's `run_threads` with processes) and returns the counts.
fn in_parties(what: &str, f: fn(&Parties) -> Result<(), String>) -> Shared<Parties> {
    let _dog = Watchdog::arm(Duration::from_secs(60), what);
    let p = Shared::anonymous(Parties {
        barrier: multiproc_sync::Barrier::new(PARTIES).unwrap(),
        barrier2: multiproc_sync::Barrier::new(PARTIES).unwrap(),
        results1: AtomicU32::new(0),
        results2: AtomicU32::new(0),
        results3: AtomicU32::new(0),
    })
    .unwrap();
    let children: Vec<_> = (0..PARTIES)
        .map(|_| {
            fork(|| match f(&p) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{what}: {e}");
                    1
                }
            })
        })
        .collect();
    for child in children {
        child.wait_ok(BOUND);
    }
    p
}

/// Counts one of CPython's `results` lists.
fn append(list: &AtomicU32) {
    list.fetch_add(1, Ordering::SeqCst);
}

/// Python's `try: barrier.wait(); results1.append(True) except
/// BrokenBarrierError: results2.append(True)` for the second wait of
/// `_test_abort_f` and `_test_reset_f`.
/// The wait must end by the abort or the reset, not by its own timeout
/// (which breaks the barrier too).
fn second_wait(p: &Parties) -> Result<(), String> {
    let start = Instant::now();
    match p.barrier.wait_timeout(BOUND) {
        Ok(_) => append(&p.results1),
        Err(multiproc_sync::Error::BrokenBarrier) if start.elapsed() < BOUND => append(&p.results2),
        Err(e) => return Err(format!("the second wait, after {:?}: {e}", start.elapsed())),
    }
    Ok(())
}

/// The wait after the reset, which every party passes (results3).
fn pass_again(p: &Parties) -> Result<(), String> {
    p.barrier
        .wait_timeout(BOUND)
        .map_err(|e| format!("the wait after the reset: {e}"))?;
    append(&p.results3);
    Ok(())
}

/// What CPython's barrier tests assert of their result lists: none passed
/// the broken wait, the four others than the misbehaving party saw it
/// broken, and `passed_again` passed the wait after a reset.
fn assert_results(p: &Parties, passed_again: u32) {
    assert_eq!(p.results1.load(Ordering::SeqCst), 0);
    assert_eq!(p.results2.load(Ordering::SeqCst), PARTIES - 1);
    assert_eq!(p.results3.load(Ordering::SeqCst), passed_again);
}

/// The first wait and what `_test_abort_f` does after it: the party given
/// index `N // 2` aborts (Python's `RuntimeError`), the others wait again.
/// (A party that wakes from its first wait only after the abort may find
/// the barrier broken there too, in Python as here: it counts in results2,
/// as Python's one `except` counts it.)
fn abort_in_the_middle(p: &Parties) -> Result<(), String> {
    match p.barrier.wait_timeout(BOUND) {
        Ok(MIDDLE) => p.barrier.abort(),
        Ok(_) => second_wait(p)?,
        Err(multiproc_sync::Error::BrokenBarrier) => append(&p.results2),
        Err(e) => return Err(format!("the first wait: {e}")),
    }
    Ok(())
}

/// CPython's `test_abort`, between processes: an abort breaks the barrier
/// for every party still to pass it; none passes.
#[test]
fn an_abort_breaks_the_barrier_for_every_other_party() {
    let p = in_parties("barrier abort", abort_in_the_middle);
    assert_results(&p, 0);
    assert!(p.barrier.broken());
}

/// CPython's `test_reset`, between processes: the party given index
/// `N // 2` waits until the four others wait again, then resets; each of
/// them gets `BrokenBarrier`, and all five then pass the barrier together.
#[test]
fn a_reset_frees_the_waiting_parties_and_the_barrier_serves_again() {
    fn f(p: &Parties) -> Result<(), String> {
        let i = p
            .barrier
            .wait_timeout(BOUND)
            .map_err(|e| format!("the first wait: {e}"))?;
        if i == MIDDLE {
            let start = Instant::now();
            while p.barrier.n_waiting() < PARTIES - 1 {
                if start.elapsed() > BOUND {
                    return Err("the others never waited again".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            p.barrier.reset();
        } else {
            second_wait(p)?;
        }
        pass_again(p)
    }
    let p = in_parties("barrier reset", f);
    assert_results(&p, PARTIES);
    assert!(!p.barrier.broken());
}

/// CPython's `test_abort_and_reset`, between processes: an aborted barrier,
/// reset by one party once every party has left it (the second barrier
/// orders that), serves all five again.
#[test]
fn an_aborted_barrier_reset_once_all_left_it_serves_again() {
    fn f(p: &Parties) -> Result<(), String> {
        abort_in_the_middle(p)?;
        let sync = |what: &str| {
            p.barrier2
                .wait_timeout(BOUND)
                .map_err(|e| format!("{what}: {e}"))
        };
        if sync("the first wait on barrier2")? == MIDDLE {
            p.barrier.reset();
        }
        sync("the second wait on barrier2")?;
        pass_again(p)
    }
    let p = in_parties("barrier abort and reset", f);
    assert_results(&p, PARTIES);
    assert!(!p.barrier.broken() && !p.barrier2.broken());
}

multiproc_shm::shm_struct! {
    /// CPython's `test_waitfor` fixture: a condition over a shared value
    /// (Python's `Value('i')` guarded by the condition's lock), the child's
    /// verdict, and a semaphore by which the child says it started.
    sync struct WaitFor {
        state: Mutex<i32>,
        cond: Condvar,
        success: AtomicU32,
        started: multiproc_sync::Semaphore,
    }
}

fn new_wait_for(state: i32) -> Shared<WaitFor> {
    Shared::anonymous(WaitFor {
        state: Mutex::new(state),
        cond: Condvar::new(),
        success: AtomicU32::new(0),
        started: multiproc_sync::Semaphore::new(0),
    })
    .unwrap()
}

/// Python's `with cond: state.value += 1; cond.notify()`, `times` times, 10
/// ms apart.
fn bump_and_notify(w: &WaitFor, times: u32) {
    for _ in 0..times {
        std::thread::sleep(Duration::from_millis(10));
        *w.state.lock().unwrap() += 1;
        w.cond.notify_one();
    }
}

/// CPython's `test_waitfor`: Python's `cond.wait_for(predicate)` is
/// `wait_while` with the predicate negated; a child waits for the state to
/// reach 4 while the parent, once it saw the child's 0, adds one at a time.
#[test]
fn wait_while_returns_once_the_state_is_reached_across_processes() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "condition wait_for");
    let w = new_wait_for(-1);
    let child = fork(|| {
        let mut g = w.state.lock().unwrap();
        *g = 0;
        w.cond.notify_one();
        let g = w.cond.wait_while(g, |s| *s != 4).unwrap();
        i32::from(*g != 4)
    });
    {
        let g = w.state.lock().unwrap();
        let (g, timed_out) = w.cond.wait_timeout_while(g, BOUND, |s| *s != 0).unwrap();
        assert!(!timed_out);
        assert_eq!(*g, 0);
    }
    bump_and_notify(&w, 4);
    child.wait_ok(BOUND);
}

/// CPython's `test_waitfor_timeout`: the state never reaches 4, and the
/// child's `wait_timeout_while` gives up after its 100 ms (not before), with
/// the condition still holding (Python's `wait_for` returning `False`),
/// though three notifies came meanwhile.
#[test]
fn wait_timeout_while_gives_up_after_its_timeout_across_processes() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "condition wait_for timeout");
    let w = new_wait_for(0);
    let child = fork(|| {
        w.started.release(1).unwrap();
        let g = w.state.lock().unwrap();
        let expected = Duration::from_millis(100);
        let start = Instant::now();
        let (_g, timed_out) = w.cond.wait_timeout_while(g, expected, |s| *s != 4).unwrap();
        if timed_out && start.elapsed() >= expected {
            w.success.store(1, Ordering::SeqCst);
        }
        0
    });
    w.started.acquire_timeout(BOUND).unwrap();
    bump_and_notify(&w, 3);
    child.wait_ok(BOUND);
    assert_eq!(w.success.load(Ordering::SeqCst), 1);
    assert_eq!(*w.state.lock().unwrap(), 3);
}

multiproc_shm::shm_struct! {
    /// A lock and an `RLock` another process holds, the holder's tid, and
    /// the parent's word to let them go.
    sync struct Held {
        lock: multiproc_sync::Lock,
        rlock: multiproc_sync::RLock,
        tid: AtomicU32,
        release: AtomicU32,
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Both locks of `h` say they are held by `owner` (a holder other than the
/// caller: an `RLock` shows no count then).
fn both_owned_by(h: &Held, owner: &str) {
    assert_eq!(
        format!("{:?}", h.lock),
        format!("Lock {{ owner: {owner} }}")
    );
    assert_eq!(
        format!("{:?}", h.rlock),
        format!("RLock {{ owner: {owner} }}")
    );
}

/// CPython's `test_repr_lock` and `test_repr_rlock`: a lock's `Debug` names
/// its holder as Python's `repr` does — nobody, the caller, another thread
/// of this process, a thread of another process (with its pid, which Python
/// cannot say) — and an `RLock`'s the caller's count. A holder killed
/// holding is a thread of no process (the next acquire recovers the lock).
#[test]
fn a_locks_debug_names_its_holder_as_pythons_repr_does() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "repr of locks");
    let held = Shared::anonymous(Held {
        lock: multiproc_sync::Lock::new(),
        rlock: multiproc_sync::RLock::new(),
        tid: AtomicU32::new(0),
        release: AtomicU32::new(0),
    })
    .unwrap();
    let h: &Held = &held;
    assert_eq!(format!("{:?}", h.lock), "Lock { owner: Nobody }");
    assert_eq!(format!("{:?}", h.rlock), "RLock { owner: Nobody }");
    h.lock.acquire().unwrap();
    assert_eq!(format!("{:?}", h.lock), "Lock { owner: ThisThread }");
    h.lock.release().unwrap();
    for _ in 0..3 {
        h.rlock.acquire().unwrap();
    }
    assert_eq!(
        format!("{:?}", h.rlock),
        "RLock { owner: ThisThread, count: 3 }"
    );
    for _ in 0..3 {
        h.rlock.release().unwrap();
    }

    std::thread::scope(|s| {
        let (held, until) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let (tell, wait) = (held.0, until.1);
        s.spawn(move || {
            h.lock.acquire().unwrap();
            h.rlock.acquire().unwrap();
            tell.send(gettid()).unwrap();
            wait.recv().unwrap();
            h.rlock.release().unwrap();
            h.lock.release().unwrap();
        });
        let tid = held.1.recv().unwrap();
        both_owned_by(h, &format!("OtherThread {{ tid: {tid} }}"));
        until.0.send(()).unwrap();
    });

    let holder = || {
        fork(|| {
            h.lock.acquire().unwrap();
            h.rlock.acquire().unwrap();
            h.tid.store(gettid(), Ordering::SeqCst);
            while h.release.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            h.rlock.release().unwrap();
            h.lock.release().unwrap();
            0
        })
    };
    let child = holder();
    wait_until(BOUND, "the child to hold both", || {
        h.tid.load(Ordering::SeqCst) != 0
    });
    let tid = h.tid.load(Ordering::SeqCst);
    both_owned_by(
        h,
        &format!("OtherProcess {{ tid: {tid}, pid: Some({tid}) }}"),
    );
    assert_eq!(
        format!(
            "{:?}",
            *Shared::anonymous(multiproc_sync::Mutex::new(0u8)).unwrap()
        ),
        "Mutex { owner: Nobody, .. }"
    );
    h.release.store(1, Ordering::SeqCst);
    child.wait_ok(BOUND);
    assert_eq!(format!("{:?}", h.lock), "Lock { owner: Nobody }");

    h.release.store(0, Ordering::SeqCst);
    h.tid.store(0, Ordering::SeqCst);
    let child = holder();
    wait_until(BOUND, "the child to hold both", || {
        h.tid.load(Ordering::SeqCst) != 0
    });
    let tid = h.tid.load(Ordering::SeqCst);
    child.kill(BOUND);
    assert_eq!(
        format!("{:?}", h.lock),
        format!("Lock {{ owner: OtherProcess {{ tid: {tid}, pid: None }} }}")
    );
    assert!(matches!(
        h.lock.acquire(),
        Err(multiproc_sync::Error::OwnerDied)
    ));
}

/// CPython's `_TestContainers.test_dict`, with the order it sorts away:
/// Python's `dict` lists its keys in insertion order (a key written again
/// keeps its place, one removed and inserted again goes last), and so does a
/// `SharedDict` written by two processes in turn.
#[test]
fn a_dict_lists_its_entries_in_insertion_order_across_processes() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "dict order");
    let d = multiproc_sync::SharedDict::<16, 4, 4>::new().unwrap();
    let keys = || -> Vec<String> {
        let keys = d.keys().unwrap().into_iter();
        keys.map(|k| String::from_utf8(k).unwrap()).collect()
    };
    for i in 65..70u8 {
        d.insert([i], [i]).unwrap();
    }
    let items: Vec<_> = (65..70u8).map(|i| (vec![i], vec![i])).collect();
    assert_eq!(d.items().unwrap(), items);
    for k in ["z", "y"] {
        d.insert(k, "p").unwrap();
    }
    fork(|| {
        for k in ["x", "a"] {
            d.insert(k, "c").unwrap();
        }
        // Written again: it keeps its place.
        d.insert("z", "c").unwrap();
        0
    })
    .wait_ok(BOUND);
    d.remove("y").unwrap();
    d.insert("y", "p").unwrap();
    assert_eq!(keys(), ["A", "B", "C", "D", "E", "z", "x", "a", "y"]);
    let values: Vec<Vec<u8>> = d.values().unwrap().into_iter().skip(5).collect();
    assert_eq!(values, [b"c", b"c", b"c", b"p"]);
}

/// CPython's `test_bounded_semaphore`, with the check it leaves out (a release
/// above the initial value is refused, `ValueError` in Python), from another
/// process too; `BoundedSemaphore(0)` can never be released; and a segment made
/// for one kind does not open as the other.
#[test]
fn a_bounded_semaphore_refuses_releases_above_its_initial_value() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "bounded semaphore");
    use multiproc_sync::{BoundedSemaphore, Error, Semaphore};
    let sem = Shared::anonymous(BoundedSemaphore::new(2)).unwrap();
    sem.try_acquire().unwrap();
    sem.try_acquire().unwrap();
    assert_eq!(sem.value(), 0);
    fork(|| {
        sem.release(2).unwrap();
        match sem.release(1) {
            Err(Error::ValueTooLarge {
                value: 3, limit: 2, ..
            }) => 0,
            other => {
                eprintln!("a third release: {other:?}");
                1
            }
        }
    })
    .wait_ok(BOUND);
    assert_eq!(sem.value(), 2);
    assert!(BoundedSemaphore::new(0).release(1).is_err());
    let plain = Semaphore::new(0);
    plain.release(5).unwrap();
    assert_eq!(plain.value(), 5, "a plain semaphore has no bound");

    let name = multiproc_testkit::unique_name("bounded-sem");
    let _made = Shared::create(&name, BoundedSemaphore::new(1)).unwrap();
    assert!(matches!(
        Shared::<Semaphore>::open(&name),
        Err(multiproc_shm::Error::LayoutMismatch { .. })
    ));
    assert_eq!(Shared::<BoundedSemaphore>::open(&name).unwrap().bound(), 1);
}

/// Python's documented idiom for a `Value`, `with v.get_lock(): v.value += 1`:
/// the lock is re-entrant, so `get` and `set` work while it is held; ten
/// processes adding under it never lose an update (inside the guard, `get`
/// answered `WouldDeadlock` before).
#[test]
fn a_value_is_updated_under_get_lock_as_in_python() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "value under get_lock");
    let v = multiproc_sync::Value::new(0i64).unwrap();
    let children: Vec<_> = (0..10)
        .map(|_| {
            fork(|| {
                for _ in 0..500 {
                    let _held = v.get_lock().lock().unwrap(); // with v.get_lock():
                    v.set(v.get().unwrap() + 1).unwrap(); //     v.value += 1
                }
                0
            })
        })
        .collect();
    for child in children {
        child.wait_ok(BOUND);
    }
    assert_eq!(v.get().unwrap(), 5000);
    // The Rust way: a guard that derefs to the value; get/set/lock refuse to
    // alias it while it is out, and work again after.
    let mut g = v.lock().unwrap();
    *g += 1;
    assert!(matches!(v.get(), Err(multiproc_sync::Error::WouldDeadlock)));
    assert!(v.lock().is_err());
    drop(g);
    assert_eq!(v.get().unwrap(), 5001);
}

/// While another process holds a `Value`'s lock, every timed access gives up
/// after its timeout (a plain `get` would wait for as long as it holds it).
#[test]
fn a_value_held_by_another_process_times_out() {
    use multiproc_sync::{Error, LockError};
    let _dog = Watchdog::arm(Duration::from_secs(60), "value timeouts");
    let v = multiproc_sync::Array::new([1u32, 2]).unwrap();
    let held = multiproc_shm::Shared::anonymous(std::sync::atomic::AtomicU32::new(0)).unwrap();
    let child = fork(|| {
        let _g = v.get_lock().lock().unwrap();
        held.store(1, std::sync::atomic::Ordering::SeqCst);
        while held.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        0
    });
    multiproc_testkit::wait_until(BOUND, "the child holds the lock", || {
        held.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    let t = Duration::from_millis(20);
    assert!(matches!(v.get_timeout(t), Err(Error::Timeout)));
    assert!(matches!(v.set_timeout([0, 0], t), Err(Error::Timeout)));
    assert!(matches!(v.get_at_timeout(0, t), Err(Error::Timeout)));
    assert!(matches!(v.set_at_timeout(1, 9, t), Err(Error::Timeout)));
    assert!(matches!(v.lock_timeout(t), Err(LockError::Timeout)));
    held.store(2, std::sync::atomic::Ordering::SeqCst);
    child.wait_ok(BOUND);
    v.set_at_timeout(1, 9, BOUND).unwrap();
    assert_eq!(v.get_timeout(BOUND).unwrap(), [1, 9]);
}

/// CPython's `test_array`: a child turns an `Array` into its prefix sums, element
/// by element under the lock.
#[test]
fn an_array_is_shared_with_a_child() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "array");
    let seq = [680i32, 626, 934, 821, 150, 233, 548, 982, 714, 831];
    let arr = multiproc_sync::Array::new(seq).unwrap();
    assert_eq!(arr.len(), seq.len());
    assert_eq!(arr.get_at(3).unwrap(), seq[3]);
    fork(|| {
        for i in 1..arr.len() {
            let _held = arr.get_lock().lock().unwrap();
            arr.set_at(i, arr.get_at(i).unwrap() + arr.get_at(i - 1).unwrap())
                .unwrap();
        }
        0
    })
    .wait_ok(BOUND);
    let mut expected = seq;
    for i in 1..expected.len() {
        expected[i] += expected[i - 1];
    }
    assert_eq!(arr.get().unwrap(), expected);
}

/// CPython's `test_array_from_size`: an `Array` made from its size is
/// zeroed. Here one of 8 MiB, made on a thread whose stack is 64 KiB (nothing
/// of it may pass through the stack), filled by a child in place, read back
/// whole and written whole.
#[test]
fn an_array_made_from_its_size_is_zeroed_and_needs_no_room_on_the_stack() {
    const N: usize = 1 << 20;
    let _dog = Watchdog::arm(Duration::from_secs(60), "array from size");
    let arr = std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(|| multiproc_sync::Array::<u64, N>::zeroed().unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(arr.len(), N);
    assert!(arr.to_vec().unwrap().iter().all(|&x| x == 0));
    fork(|| {
        let mut held = arr.lock().unwrap();
        for (i, x) in held.iter_mut().enumerate() {
            *x = i as u64;
        }
        0
    })
    .wait_ok(BOUND);
    let seen = arr.to_vec().unwrap();
    assert!(seen.iter().enumerate().all(|(i, &x)| x == i as u64));
    assert_eq!(arr.get_at(N - 1).unwrap(), N as u64 - 1);
    // Python's `arr[:] = values`: as many values as elements, or nothing moves.
    let doubled: Vec<u64> = seen.iter().map(|x| x * 2).collect();
    assert!(matches!(
        arr.copy_from_slice(&doubled[1..]),
        Err(multiproc_sync::Error::OutOfRange { .. })
    ));
    assert_eq!(arr.get_at(7).unwrap(), 7);
    arr.copy_from_slice(&doubled).unwrap();
    assert_eq!(arr.get_at(7).unwrap(), 14);
    // A guard out: the whole-array calls refuse rather than alias it.
    let held = arr.lock().unwrap();
    assert!(matches!(
        arr.to_vec(),
        Err(multiproc_sync::Error::WouldDeadlock)
    ));
    assert!(matches!(
        arr.copy_from_slice(&held[..]),
        Err(multiproc_sync::Error::WouldDeadlock)
    ));
}

/// Python's `with lock:`: a guard that no early return leaves held, between
/// processes.
#[test]
fn a_lock_guard_is_released_by_every_way_out() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "lock guard");
    let lock = Shared::anonymous(multiproc_sync::Lock::new()).unwrap();
    let count = Shared::anonymous(AtomicU32::new(0)).unwrap();
    fn bump(lock: &multiproc_sync::Lock, count: &AtomicU32, fail: bool) -> Result<(), ()> {
        let _held = lock.lock().map_err(drop)?;
        let n = count.load(Ordering::SeqCst);
        if fail {
            return Err(()); // an early return: the guard still releases
        }
        count.store(n + 1, Ordering::SeqCst);
        Ok(())
    }
    let children: Vec<_> = (0..4)
        .map(|k| {
            fork(|| {
                for i in 0..200 {
                    let _ = bump(&lock, &count, (i + k) % 3 == 0);
                }
                0
            })
        })
        .collect();
    for child in children {
        child.wait_ok(BOUND);
    }
    assert!(!lock.locked());
    let expected: u32 = (0..4)
        .map(|k| (0..200).filter(|i| (i + k) % 3 != 0).count() as u32)
        .sum();
    assert_eq!(count.load(Ordering::SeqCst), expected);
}
