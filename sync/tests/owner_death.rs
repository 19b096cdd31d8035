//! A process SIGKILLed while holding a lock never hangs the others: the next
//! acquirer gets the lock with `OwnerDied`, repairs, and carries on.
//!
//! Each trial forks a child that takes the lock and, holding it, keeps breaking and
//! mending an invariant (`a == b`); the parent kills it at a random moment and must
//! then acquire within a bound and see `OwnerDied`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, Error, Lock, LockError, Mutex, RLock};
use multiproc_testkit::{fork, wait_until, ChildExit, Watchdog};

const TRIALS: usize = 100;
/// Generous: recovery normally takes one check interval; this only catches hangs.
const BOUND: Duration = Duration::from_secs(10);

multiproc_shm::shm_struct! {
    struct Pair {
        a: u64,
        b: u64,
    }
}

/// A small deterministic generator for kill delays.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Forks a child that runs `hold` (which takes the lock and never returns), waits
/// until it says it holds the lock, sleeps a random 0–300 µs, and SIGKILLs it.
fn kill_while_holding(holding: &AtomicU32, seed: &mut u64, hold: impl FnOnce()) {
    holding.store(0, Ordering::SeqCst);
    let child = fork(|| {
        hold();
        3 // unreachable: `hold` never returns
    });
    let start = Instant::now();
    while holding.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < BOUND, "child never took the lock");
        std::hint::spin_loop();
    }
    std::thread::sleep(Duration::from_micros(next(seed) % 300));
    child.kill(BOUND);
}

/// Forks a child that runs `setup` (taking a lock, joining a barrier …), then
/// parks until it is killed; returns once `setup` is done.
fn fork_parked<T>(setup: impl FnOnce() -> T) -> multiproc_testkit::Child {
    let ready = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let child = fork(|| {
        let _held = setup();
        ready.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let start = Instant::now();
    while ready.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < BOUND, "the parked child never got ready");
        std::hint::spin_loop();
    }
    child
}

#[test]
fn mutex_holder_killed_at_random_points() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "mutex owner death");
    set_owner_check_interval(Duration::from_millis(5));
    mutex_holders_killed(TRIALS);
}

/// `trials` holders of one `Mutex` killed at random points, each recovered
/// with `OwnerDied` and repaired.
fn mutex_holders_killed(trials: usize) {
    let m = Shared::anonymous(Mutex::new(Pair { a: 0, b: 0 })).unwrap();
    let holding = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d;
    let mut waits = Vec::new();
    for trial in 0..trials {
        kill_while_holding(&holding, &mut seed, || {
            let mut g = m.lock().unwrap();
            holding.store(1, Ordering::SeqCst);
            loop {
                g.a += 1; // invariant broken here ...
                std::hint::spin_loop();
                g.b += 1; // ... and mended here
            }
        });
        let t = Instant::now();
        match m.lock_timeout(BOUND) {
            Err(LockError::OwnerDied(mut g)) => {
                assert!(g.is_recovered());
                g.b = g.a; // repair
                g.mark_consistent();
            }
            Ok(_) => panic!("trial {trial}: the holder was killed, yet no OwnerDied"),
            Err(e) => panic!("trial {trial}: {e}"),
        }
        waits.push(t.elapsed());
        let g = m.lock().expect("a repaired lock works normally");
        assert_eq!(g.a, g.b);
    }
    waits.sort();
    eprintln!(
        "recovery after SIGKILL ({} trials, check interval 5 ms): median {:?}, max {:?}",
        waits.len(),
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
}

#[test]
fn lock_and_rlock_holders_killed_at_random_points() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "lock/rlock owner death");
    set_owner_check_interval(Duration::from_millis(5));
    lock_and_rlock_holders_killed(TRIALS);
}

/// `trials` holders of a `Lock` and of an `RLock` (held twice) killed at
/// random points, each lock recovered with `OwnerDied`.
fn lock_and_rlock_holders_killed(trials: usize) {
    let lock = Shared::anonymous(Lock::new()).unwrap();
    let rlock = Shared::anonymous(RLock::new()).unwrap();
    let holding = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    for trial in 0..trials {
        kill_while_holding(&holding, &mut seed, || {
            lock.acquire().unwrap();
            rlock.acquire().unwrap();
            rlock.acquire().unwrap();
            holding.store(1, Ordering::SeqCst);
            loop {
                std::hint::spin_loop();
            }
        });
        assert!(
            matches!(lock.acquire_timeout(BOUND), Err(Error::OwnerDied)),
            "trial {trial}"
        );
        lock.mark_consistent();
        lock.release().unwrap();
        assert!(
            matches!(rlock.acquire_timeout(BOUND), Err(Error::OwnerDied)),
            "trial {trial}"
        );
        assert_eq!(rlock.count(), 1, "a recovered RLock starts at one level");
        rlock.mark_consistent();
        rlock.release().unwrap();
        assert!(!lock.locked() && !rlock.locked());
    }
}

#[test]
fn a_sleeping_waiter_in_another_process_gets_the_lock() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "sleeping waiter");
    let m = Shared::anonymous(Mutex::new(0u64)).unwrap();
    let holder = fork_parked(|| m.lock().unwrap());
    // The waiter uses the default check interval (50 ms): it is asleep in the
    // futex when the holder dies, and must notice within its next check.
    let waiter = fork(|| match m.lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(mut g)) => {
            *g = 42;
            g.mark_consistent();
            0
        }
        Ok(_) => 10,
        Err(_) => 11,
    });
    std::thread::sleep(Duration::from_millis(30));
    holder.kill(BOUND);
    waiter.wait_ok(Duration::from_secs(20));
    assert_eq!(*m.lock().unwrap(), 42);
}

#[test]
fn an_unrepaired_recovery_makes_the_lock_not_recoverable_for_everyone() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "not recoverable");
    set_owner_check_interval(Duration::from_millis(5));
    let m = Shared::anonymous(Mutex::new(0u64)).unwrap();
    let holder = fork_parked(|| m.lock().unwrap());
    holder.signal(libc::SIGKILL);
    holder.wait(BOUND);
    let g = m.lock().unwrap_err().into_guard().expect("OwnerDied");
    drop(g); // not marked consistent
    assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
    let other = fork(|| match m.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::NotRecoverable) => 0,
        _ => 1,
    });
    other.wait_ok(Duration::from_secs(10));
}

#[test]
fn a_killed_child_that_was_not_holding_leaves_the_lock_free() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "random kill, maybe not holding");
    set_owner_check_interval(Duration::from_millis(5));
    let m = Shared::anonymous(Mutex::new(Pair { a: 0, b: 0 })).unwrap();
    let started = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut seed = 0xdead_beef_cafe_f00d;
    let (mut clean, mut died) = (0, 0);
    for _ in 0..TRIALS {
        kill_while_holding(&started, &mut seed, || {
            started.store(1, Ordering::SeqCst);
            loop {
                let mut g = m.lock().unwrap();
                g.a += 1;
                g.b += 1;
            }
        });
        match m.lock_timeout(BOUND) {
            Ok(g) => {
                assert_eq!(g.a, g.b, "a clean lock has its invariant");
                clean += 1;
            }
            Err(LockError::OwnerDied(mut g)) => {
                g.b = g.a;
                g.mark_consistent();
                died += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("{TRIALS} kills at random points: {clean} outside the lock, {died} holding it");
    assert_eq!(clean + died, TRIALS);
    // Both cases must have happened, or the trials proved nothing about them
    // (the holder spends about half its loop inside the lock).
    assert!(clean > 0 && died > 0, "{clean} clean, {died} holding");
}

#[test]
fn an_owned_semaphore_permit_of_a_killed_holder_is_returned() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "semaphore owner death");
    set_owner_check_interval(Duration::from_millis(5));
    owned_permit_holders_killed(20);
}

/// `trials` holders of both owned permits of a `BoundedSemaphore(2)` killed
/// at random points; both permits come back each time, never a third.
fn owned_permit_holders_killed(trials: usize) {
    let sem = Shared::anonymous(multiproc_sync::BoundedSemaphore::new(2)).unwrap();
    let holding = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut seed = 0x1234_5678_9abc_def1;
    for trial in 0..trials {
        kill_while_holding(&holding, &mut seed, || {
            let _a = sem.acquire_owned();
            let _b = sem.acquire_owned();
            holding.store(1, Ordering::SeqCst);
            loop {
                std::hint::spin_loop();
            }
        });
        // Both permits come back: a waiter notices the dead holder.
        let a = sem
            .acquire_owned_timeout(BOUND)
            .unwrap_or_else(|_| panic!("trial {trial}: first permit"));
        let b = sem
            .acquire_owned_timeout(BOUND)
            .unwrap_or_else(|_| panic!("trial {trial}: second permit"));
        assert!(
            matches!(
                sem.acquire_owned_timeout(Duration::from_millis(20)),
                Err(Error::Timeout)
            ),
            "never more than the bound"
        );
        drop((a, b));
        assert_eq!(sem.value(), 2);
    }
}

/// The holders of a `Mutex`, a `Lock` and an `RLock`, and of owned permits,
/// killed as above where `pidfd_open` is refused: every owner record then
/// holds a thread's start time, not a pidfs inode number, as on every kernel
/// before 6.9 (Debian 12's 6.1, Ubuntu 24.04's 6.8), and a
/// killed holder is found all the same. The refusal is a real one: a seccomp
/// filter in a forked child, which runs the trials (and whose own children
/// inherit it).
#[test]
fn holders_killed_where_tokens_are_start_times() {
    use multiproc_shm::identity::TOKEN_PIDFS;
    let _dog = Watchdog::arm(Duration::from_secs(300), "owner death, start-time tokens");
    let child = fork(|| {
        multiproc_testkit::refuse_pidfd_open();
        set_owner_check_interval(Duration::from_millis(5));
        assert_eq!(my_token() & TOKEN_PIDFS, 0, "a start-time token");
        mutex_holders_killed(TRIALS / 2);
        lock_and_rlock_holders_killed(TRIALS / 2);
        owned_permit_holders_killed(20);
        0
    });
    assert_eq!(child.wait(Duration::from_secs(280)), ChildExit::Exited(0));
}

/// After a holder of owned permits of `sem` (made with `bound` permits) died:
/// every permit comes back within the bound (a waiter returns the dead
/// holder's), and never one more.
fn all_permits_come_back(sem: &multiproc_sync::Semaphore, bound: u32, what: &str) {
    let permits: Vec<_> = (0..bound)
        .map(|k| {
            sem.acquire_owned_timeout(BOUND)
                .unwrap_or_else(|_| panic!("{what}: permit {k} of {bound} never came back"))
        })
        .collect();
    assert!(
        matches!(
            sem.acquire_owned_timeout(Duration::from_millis(10)),
            Err(Error::Timeout)
        ),
        "{what}: a permit more than the bound (one given back twice)"
    );
    drop(permits);
    assert_eq!(sem.value(), bound, "{what}");
}

#[test]
fn an_owned_permit_of_a_holder_killed_at_any_step_is_neither_lost_nor_doubled() {
    use multiproc_sync::{OwnedStep, Semaphore};
    let _dog = Watchdog::arm(Duration::from_secs(120), "owned permit steps");
    set_owner_check_interval(Duration::from_millis(5));
    // Unbounded: a permit given back twice shows as one too many, where a
    // bound would refuse it quietly.
    let sem = Shared::anonymous(Semaphore::new(2)).unwrap();
    let steps = [
        OwnedStep::SeatTaken,
        OwnedStep::PermitTaken,
        OwnedStep::SeatMarked,
        OwnedStep::PermitReturned,
        OwnedStep::SeatFreed,
    ];
    // More rounds than seats: a seat the dead leave behind would run them out,
    // and the last rounds' permits would then be lost.
    for round in 0..2 * multiproc_sync::SLOTS {
        for step in steps {
            let mut child = fork(|| {
                let die = move |s: OwnedStep| {
                    if s == step {
                        // SAFETY: raise has no preconditions.
                        unsafe { libc::raise(libc::SIGKILL) };
                    }
                };
                let g = sem.hook_acquire_owned_with_hook(None, &die);
                drop(g);
                0 // the steps after PermitTaken come in the drop
            });
            assert_eq!(
                child.wait_timeout(BOUND),
                Some(ChildExit::Signaled(libc::SIGKILL)),
                "round {round}: the holder dies at {step:?}"
            );
            all_permits_come_back(&sem, 2, &format!("round {round}, killed after {step:?}"));
        }
    }
}

#[test]
fn owned_permits_of_holders_killed_at_random_points_all_come_back() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "owned permit random kills");
    set_owner_check_interval(Duration::from_millis(5));
    let sem = Shared::anonymous(multiproc_sync::BoundedSemaphore::new(2)).unwrap();
    let running = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d;
    let (mut short, mut trials) = (0, 0);
    while trials < 200 {
        // The victim takes and gives back owned permits, one or two at a time.
        kill_while_holding(&running, &mut seed, || loop {
            let a = sem.acquire_owned();
            running.store(1, Ordering::SeqCst);
            let b = sem.acquire_owned();
            drop(a);
            drop(b);
        });
        if sem.value() < 2 {
            short += 1;
        }
        all_permits_come_back(&sem, 2, &format!("trial {trials}"));
        trials += 1;
    }
    eprintln!("{trials} kills at random points: {short} left permits to give back");
    assert!(short > 0, "no kill landed while a permit was out");
}

#[test]
fn a_barrier_member_killed_before_arriving_breaks_the_barrier() {
    use multiproc_sync::Barrier;
    let _dog = Watchdog::arm(Duration::from_secs(60), "barrier member death");
    set_owner_check_interval(Duration::from_millis(5));
    let barrier = Shared::anonymous(Barrier::new(3).unwrap()).unwrap();
    // A member that finishes and leaves normally does not break it.
    fork(|| {
        let _m = barrier.join().unwrap();
        0
    })
    .wait_ok(BOUND);
    let doomed = fork_parked(|| barrier.join().unwrap());
    let waiter = fork(|| {
        let m = barrier.join().unwrap();
        match m.wait_timeout(Duration::from_secs(20)) {
            Err(Error::BrokenBarrier) => 0,
            _ => 1,
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    doomed.kill(BOUND);
    let me = barrier.join().unwrap();
    let t = Instant::now();
    assert!(matches!(
        me.wait_timeout(Duration::from_secs(20)),
        Err(Error::BrokenBarrier)
    ));
    assert!(
        t.elapsed() < BOUND,
        "noticed within the bound, not by the 20 s timeout"
    );
    waiter.wait_ok(BOUND);
}

#[test]
fn a_waiter_is_told_when_every_setter_of_an_event_died() {
    use multiproc_sync::Event;
    let _dog = Watchdog::arm(Duration::from_secs(60), "event setter death");
    set_owner_check_interval(Duration::from_millis(5));
    let event = Shared::anonymous(Event::new()).unwrap();
    let setter = fork_parked(|| event.register_setter().unwrap());
    assert!(
        matches!(
            event.wait_checked_timeout(Duration::from_millis(30)),
            Err(Error::Timeout)
        ),
        "alive: just a timeout"
    );
    setter.kill(BOUND);
    let t = Instant::now();
    assert!(matches!(
        event.wait_checked_timeout(Duration::from_secs(20)),
        Err(Error::NoLiveSetter)
    ));
    assert!(t.elapsed() < BOUND);
    // A setter that sets and leaves normally is fine.
    let e2 = Shared::anonymous(Event::new()).unwrap();
    fork(|| {
        e2.register_setter().unwrap().set();
        0
    })
    .wait_ok(BOUND);
    e2.wait_checked_timeout(Duration::from_secs(1)).unwrap();
}

#[test]
fn after_a_member_died_a_reset_lets_the_survivors_and_a_replacement_pass() {
    use multiproc_sync::Barrier;
    let _dog = Watchdog::arm(Duration::from_secs(60), "barrier reset after a death");
    set_owner_check_interval(Duration::from_millis(5));
    let barrier = Shared::anonymous(Barrier::new(2).unwrap()).unwrap();
    let doomed = fork_parked(|| barrier.join().unwrap());
    doomed.kill(BOUND);
    let me = barrier.join().unwrap();
    assert!(matches!(
        me.wait_timeout(Duration::from_secs(20)),
        Err(Error::BrokenBarrier)
    ));
    barrier.reset();
    // The replacement comes well after our first member check: a dead record
    // left behind would break this wait long before it arrives.
    let replacement = fork(|| {
        std::thread::sleep(Duration::from_millis(100));
        match barrier
            .join()
            .unwrap()
            .wait_timeout(Duration::from_secs(20))
        {
            Ok(_) => 0,
            Err(_) => 1,
        }
    });
    let got = me.wait_timeout(Duration::from_secs(20));
    assert!(got.is_ok(), "after the reset: {got:?}");
    replacement.wait_ok(BOUND);
}

#[test]
fn setters_that_died_do_not_fill_an_events_table() {
    use multiproc_sync::{Event, SLOTS};
    let _dog = Watchdog::arm(Duration::from_secs(60), "dead setters");
    set_owner_check_interval(Duration::from_millis(5));
    let event = Shared::anonymous(Event::new()).unwrap();
    for _ in 0..SLOTS {
        // Dies registered: the seat is never dropped.
        fork(|| {
            std::mem::forget(event.register_setter().unwrap());
            0
        })
        .wait_ok(BOUND);
    }
    assert!(matches!(
        event.wait_checked_timeout(Duration::from_secs(20)),
        Err(Error::NoLiveSetter)
    ));
    let live: Vec<_> = (0..SLOTS)
        .map(|i| {
            event
                .register_setter()
                .unwrap_or_else(|e| panic!("setter {i} in place of a dead one: {e}"))
        })
        .collect();
    assert!(
        matches!(event.register_setter(), Err(Error::Full { .. })),
        "live setters are never displaced"
    );
    assert!(
        matches!(
            event.wait_checked_timeout(Duration::from_millis(30)),
            Err(Error::Timeout)
        ),
        "live setters: just a timeout"
    );
    drop(live);
}

/// A waiter killed asleep in `acquire` stays counted only until its sleep would
/// have ended (plus a second's slack); then the first release that wakes
/// nobody drops the count, and later releases make no syscall for the dead
/// (with a plain count, every later release did: ~350 ns instead of ~11).
#[test]
fn a_semaphore_waiter_killed_asleep_is_forgotten() {
    use multiproc_sync::Semaphore;
    let _dog = Watchdog::arm(Duration::from_secs(60), "semaphore sleeper death");
    set_owner_check_interval(Duration::from_millis(5));
    let sem = Shared::anonymous(Semaphore::new(0)).unwrap();
    let child = fork(|| {
        let _ = sem.acquire_timeout(Duration::from_secs(30));
        0
    });
    wait_until(BOUND, "asleep", || sem.hook_sleepers() == 1);
    child.kill(BOUND);
    sem.release(1).unwrap();
    assert_eq!(
        sem.hook_sleepers(),
        1,
        "too soon to tell it from a slow sleeper"
    );
    sem.try_acquire().unwrap();
    std::thread::sleep(Duration::from_millis(1_100));
    sem.release(1).unwrap();
    assert_eq!(
        sem.hook_sleepers(),
        0,
        "forgotten once its sleep would have ended"
    );
    // A live sleeper is still counted and woken. (The permit just released
    // is taken first: taken after the fork, the child could win it and the
    // take fail, as it once did on a loaded machine.)
    sem.try_acquire().unwrap();
    let child = fork(|| {
        if sem.acquire_timeout(Duration::from_secs(20)).is_ok() {
            0
        } else {
            1
        }
    });
    wait_until(BOUND, "a live sleeper", || sem.hook_sleepers() == 1);
    sem.release(1).unwrap();
    child.wait_ok(BOUND);
    assert_eq!(sem.hook_sleepers(), 0);
}

/// Waiters killed at random points around their sleeps (short timeouts), 50
/// trials in quick succession: the count holds at most one per kill (never
/// wraps), comes back to zero once their sleeps would have ended, and a live
/// waiter is still woken.
#[test]
fn semaphore_waiters_killed_around_their_sleep_are_all_forgotten() {
    use multiproc_sync::Semaphore;
    let _dog = Watchdog::arm(Duration::from_secs(120), "semaphore sleepers killed");
    set_owner_check_interval(Duration::from_millis(5));
    let sem = Shared::anonymous(Semaphore::new(0)).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut counted = 0;
    for trial in 1..=50 {
        let child = fork(|| loop {
            let _ = sem.acquire_timeout(Duration::from_micros(300));
        });
        std::thread::sleep(Duration::from_micros(100 + next(&mut seed) % 2_000));
        child.kill(BOUND);
        // The dead stay counted for a second: at most one per kill so far.
        assert!(sem.hook_sleepers() >= counted && sem.hook_sleepers() <= trial);
        counted = sem.hook_sleepers();
    }
    eprintln!("{counted} of 50 waiters were killed counted");
    assert!(counted > 0, "no kill landed while a waiter was counted");
    std::thread::sleep(Duration::from_millis(1_100));
    sem.release(1).unwrap();
    assert_eq!(sem.hook_sleepers(), 0);
    sem.try_acquire().unwrap();
    let child = fork(|| {
        if sem.acquire_timeout(Duration::from_secs(20)).is_ok() {
            0
        } else {
            1
        }
    });
    wait_until(BOUND, "a live sleeper", || sem.hook_sleepers() == 1);
    sem.release(1).unwrap();
    child.wait_ok(BOUND);
}

/// The same for an event: a waiter killed asleep is forgotten by a later `set`.
#[test]
fn an_event_waiter_killed_asleep_is_forgotten() {
    use multiproc_sync::Event;
    let _dog = Watchdog::arm(Duration::from_secs(60), "event sleeper death");
    set_owner_check_interval(Duration::from_millis(5));
    let event = Shared::anonymous(Event::new()).unwrap();
    let child = fork(|| {
        event.wait();
        0
    });
    wait_until(BOUND, "asleep", || event.hook_sleepers() == 1);
    child.kill(BOUND);
    std::thread::sleep(Duration::from_millis(1_100));
    event.set();
    assert_eq!(event.hook_sleepers(), 0);
    // A live waiter with no timeout is still woken.
    event.clear();
    let child = fork(|| {
        event.wait();
        0
    });
    wait_until(BOUND, "a live sleeper", || event.hook_sleepers() == 1);
    event.set();
    child.wait_ok(BOUND);
}

/// Forks parked children until one gets `pid` (a killed holder's), and returns
/// it: through `/proc/sys/kernel/ns_last_pid` where this process may write it
/// (root), else by forking through the pid space when it is small. `None` when
/// neither worked.
fn recycle_pid(pid: libc::pid_t) -> Option<multiproc_testkit::Child> {
    for _ in 0..50 {
        if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).is_err() {
            break;
        }
        let child = fork_parked(|| ());
        if child.pid() == pid {
            return Some(child);
        }
        // Another process of the machine took it first: try again.
    }
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid_max > 65_536 {
        return None;
    }
    for _ in 0..2 * pid_max {
        let child = fork(|| 0);
        if child.pid() == pid {
            drop(child);
            // The next one may get it now that it is free again; look at it.
        } else {
            child.wait_ok(BOUND);
            continue;
        }
        let parked = fork_parked(|| ());
        if parked.pid() == pid {
            return Some(parked);
        }
    }
    None
}

#[test]
fn a_holder_whose_pid_went_to_a_new_process_is_known_dead() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "recycled pid");
    set_owner_check_interval(Duration::from_millis(5));
    let m = Shared::anonymous(Mutex::new(7u64)).unwrap();
    let holder = fork_parked(|| std::mem::forget(m.lock().unwrap()));
    let pid = holder.pid();
    holder.kill(BOUND);
    let imposter = recycle_pid(pid);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match &imposter {
        Some(p) => assert_eq!(p.pid(), pid),
        // As root, ns_last_pid always lets us hand the pid on.
        None => assert!(!root, "could not give pid {pid} to a new process as root"),
    }
    eprintln!(
        "the dead holder's pid {pid} {}",
        if imposter.is_some() {
            "now belongs to a live process"
        } else {
            "could not be recycled here (not root, large pid_max): only the plain death is checked"
        }
    );
    let start = Instant::now();
    match m.lock_timeout(BOUND) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, 7);
            g.mark_consistent();
        }
        Err(e) => panic!("the lock of a dead holder whose pid was recycled: {e}"),
        Ok(_) => panic!("the lock was free: the holder never held it"),
    }
    assert!(start.elapsed() < BOUND);
    drop(imposter);
}

#[test]
fn a_lock_guard_of_a_killed_holder_is_recovered_by_the_next_guard() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "lock guard owner death");
    set_owner_check_interval(Duration::from_millis(5));
    let lock = Shared::anonymous(Lock::new()).unwrap();
    let holder = fork_parked(|| lock.lock().unwrap());
    holder.kill(BOUND);
    match lock.lock_timeout(BOUND) {
        Err(LockError::OwnerDied(mut g)) => {
            assert!(g.is_recovered());
            g.mark_consistent();
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the lock was free"),
    }
    assert!(!lock.locked());
    drop(lock.lock().unwrap());
}

/// A caller that only ever waits a little (1 ms, far below the 50 ms check
/// interval) still takes over a dead holder's lock, gets a dead owner's permit
/// back and hears that every setter died: a timed wait that runs out looks at
/// the holders once. (Each used to answer `Timeout` for good.)
#[test]
fn short_timed_waits_still_recover_from_the_dead() {
    use multiproc_sync::{BoundedSemaphore, Event};
    let _dog = Watchdog::arm(Duration::from_secs(60), "short timed waits");
    set_owner_check_interval(Duration::from_millis(50));
    let short = Duration::from_millis(1);
    let within = |what: &str, mut attempt: Box<dyn FnMut() -> bool + '_>| {
        // A few tries: the first one that runs out after the death must do it.
        assert!(
            (0..20).any(|_| attempt()),
            "{what}: never recovered with short waits"
        );
    };

    let m = Shared::anonymous(Mutex::new(0u64)).unwrap();
    let child = fork_parked(|| std::mem::forget(m.lock().unwrap()));
    child.kill(BOUND);
    within(
        "mutex",
        Box::new(|| match m.lock_timeout(short) {
            Err(LockError::OwnerDied(mut g)) => {
                g.mark_consistent();
                true
            }
            Err(LockError::Timeout) => false,
            other => panic!("{:?}", other.map(|_| ())),
        }),
    );
    assert!(!m.is_locked());
    // A zero timeout is a try that looks at the holder: it never sleeps.
    let child = fork_parked(|| std::mem::forget(m.lock().unwrap()));
    assert!(matches!(
        m.lock_timeout(Duration::ZERO),
        Err(LockError::Timeout)
    ));
    child.kill(BOUND);
    assert!(matches!(
        m.lock_timeout(Duration::ZERO),
        Err(LockError::OwnerDied(_))
    ));

    let sem = Shared::anonymous(BoundedSemaphore::new(1)).unwrap();
    let child = fork_parked(|| std::mem::forget(sem.acquire_owned()));
    child.kill(BOUND);
    within(
        "owned permit",
        Box::new(|| sem.acquire_owned_timeout(short).is_ok()),
    );
    assert_eq!(sem.value(), 1);

    let e = Shared::anonymous(Event::new()).unwrap();
    let child = fork_parked(|| std::mem::forget(e.register_setter().unwrap()));
    child.kill(BOUND);
    within(
        "event",
        Box::new(|| match e.wait_checked_timeout(short) {
            Err(Error::NoLiveSetter) => true,
            Err(Error::Timeout) => false,
            other => panic!("{other:?}"),
        }),
    );
}

/// Forks a child that takes `lock` and holds it until `release` reads 1,
/// then releases it and exits; returns once it holds it.
fn holder_until_told(lock: &Lock, release: &AtomicU32) -> multiproc_testkit::Child {
    let held = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let child = fork(|| {
        lock.acquire().unwrap();
        held.store(1, Ordering::SeqCst);
        while release.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        lock.release().unwrap();
        0
    });
    wait_until(BOUND, "the holder took the lock", || {
        held.load(Ordering::SeqCst) == 1
    });
    child
}

/// What a waiter must see where it cannot read an owner's identity token
/// (run after making it so): a live holder is waited for, however many
/// check intervals pass, and the lock comes when it is released; a holder
/// killed holding it, once reaped, is found dead (`OwnerDied`).
fn live_holders_are_waited_for_and_dead_ones_found() -> i32 {
    set_owner_check_interval(Duration::from_millis(5));
    let lock = Shared::anonymous(Lock::new()).unwrap();
    let release = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let holder = holder_until_told(&lock, &release);
    // Sixty check intervals: a live holder taken for dead is caught here.
    match lock.acquire_timeout(Duration::from_millis(300)) {
        Err(Error::Timeout) => {}
        Err(Error::OwnerDied) => return 10,
        other => {
            eprintln!("acquire against a live holder: {other:?}");
            return 11;
        }
    }
    release.store(1, Ordering::SeqCst);
    if lock.acquire_timeout(BOUND).is_err() {
        return 12;
    }
    lock.release().unwrap();
    if holder.wait(BOUND) != ChildExit::Exited(0) {
        return 13;
    }
    // A holder killed holding it, reaped (`wait` does): dead.
    let held = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let victim = fork(|| {
        lock.acquire().unwrap();
        held.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_until(BOUND, "the victim took the lock", || {
        held.load(Ordering::SeqCst) == 1
    });
    victim.kill(BOUND);
    match lock.acquire_timeout(BOUND) {
        Err(Error::OwnerDied) => 0,
        other => {
            eprintln!("acquire after the holder was killed: {other:?}");
            14
        }
    }
}

/// A waiter at its limit of open files cannot open a pidfd or `/proc` to
/// read its lock's owner's token: that owner, alive, must not be taken for
/// dead (it was: the failed reads said "no such task", and the lock was
/// taken from its live holder), and a killed owner is still found.
#[test]
fn a_waiter_out_of_descriptors_never_takes_a_live_holder_for_dead() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "waiter out of descriptors");
    let child = fork(|| {
        multiproc_testkit::limit_open_files_to_those_open();
        live_holders_are_waited_for_and_dead_ones_found()
    });
    assert_eq!(child.wait(Duration::from_secs(50)), ChildExit::Exited(0));
}

/// Where neither pidfs nor `/proc` can tell an owner's identity (a
/// container or chroot that mounts no `/proc`, on a kernel before 6.9:
/// `pidfd_open` refused by a seccomp filter and a tmpfs over `/proc` here),
/// every token is unknown: a live holder is waited for (it was taken for
/// dead within a check interval, and its lock taken), and a killed one,
/// once reaped, is found dead. Skipped, saying so, where namespaces are not
/// allowed to a non-root user; as root it must run.
#[test]
fn a_live_holder_is_not_taken_for_dead_where_nothing_tells_identities() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "no /proc, no pidfs");
    let child = fork(|| {
        if let Err(code) = multiproc_testkit::hide_proc_or_exit_code() {
            return code;
        }
        multiproc_testkit::refuse_pidfd_open();
        live_holders_are_waited_for_and_dead_ones_found()
    });
    assert_eq!(child.wait(Duration::from_secs(50)), ChildExit::Exited(0));
}

/// This thread's identity token, as its owner records hold it.
fn my_token() -> u64 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    multiproc_shm::identity::task_token(tid, multiproc_shm::identity::Task::Thread)
        .expect("this thread's token")
}
