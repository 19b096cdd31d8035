//! Lock holders, permit owners and barrier members killed at every store their
//! operation makes into the primitive's memory (see
//! `multiproc_testkit::every_write` for how: the victim runs with the segment
//! write-protected and steps each store from a `SIGSEGV` handler). After each
//! kill the survivors must get the lock, the permits or a broken barrier within
//! a bound — recovered when the victim died holding, clean otherwise — and the
//! primitive must work as new afterwards. What they see follows the kill
//! point in order (never taken, died holding, released).
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::cell::RefCell;
use std::time::Duration;

use multiproc_shm::Shared;
use multiproc_sync::{
    set_owner_check_interval, Barrier, BoundedSemaphore, Condvar, Error, Event, Lock, LockError,
    Mutex, RLock, Semaphore, SharedDict,
};
use multiproc_testkit::every_write::{armed, every_write, Outcome, Report};
use multiproc_testkit::{fork, wait_until, Child, ChildExit, Watchdog};

/// Generous: recovery takes about one check interval (5 ms here).
const BOUND: Duration = Duration::from_secs(10);

fn region<T: multiproc_shm::ShmSafe>(s: &Shared<T>) -> (*mut u8, usize) {
    (s.segment().as_ptr(), s.segment().len())
}

fn print(what: &str, r: &Report, classes: &[usize], names: &[&str]) {
    let counts: Vec<(&str, usize)> = names
        .iter()
        .enumerate()
        .map(|(c, n)| (*n, classes.iter().filter(|&&k| k == c).count()))
        .collect();
    eprintln!(
        "{what}: {} stores, {} kills, {} completed; {counts:?}\n  store offsets: {:?}\n  classes by kill point: {classes:?}",
        r.writes, r.killed, r.completed, r.offsets
    );
}

/// The classes of the kill runs (after the counting run, which comes first)
/// must be in order as the kill moves later.
fn in_order(what: &str, r: &Report, classes: Vec<usize>, names: &[&str]) {
    let kills = &classes[1..];
    print(what, r, kills, names);
    assert!(
        kills.windows(2).all(|w| w[0] <= w[1]),
        "{what}: out of order by kill point: {kills:?} ({names:?})"
    );
}

/// The kill runs' classes are clean (0), then recovered (1), then clean again:
/// one stretch where the victim held the lock.
fn one_holding_stretch(what: &str, r: &Report, classes: Vec<usize>) {
    let kills = &classes[1..];
    print(what, r, kills, &["clean", "recovered"]);
    let changes = kills.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        changes <= 2 && kills.first() == Some(&0) && kills.last() == Some(&0),
        "{what}: not one stretch of holding: {kills:?}"
    );
    assert!(kills.contains(&1), "{what}: no kill landed while holding");
}

fn used_mutex() -> Shared<Mutex<u64>> {
    set_owner_check_interval(Duration::from_millis(5));
    let m = Shared::anonymous(Mutex::new(0u64)).unwrap();
    drop(m.lock().unwrap());
    m
}

/// Takes the mutex as a survivor: its value and whether it was recovered;
/// then checks that it works as new.
fn survive_mutex(m: &Mutex<u64>, outcome: Outcome) -> (u64, bool) {
    let (v, recovered) = match m.lock_timeout(BOUND) {
        Ok(g) => (*g, false),
        Err(LockError::OwnerDied(mut g)) => {
            g.mark_consistent();
            (*g, true)
        }
        Err(e) => panic!("{outcome:?}: {e:?}"),
    };
    assert!(!m.is_locked(), "{outcome:?}: released by the survivor");
    let g = m
        .try_lock()
        .unwrap_or_else(|e| panic!("{outcome:?}: {e:?}"));
    drop(g);
    (v, recovered)
}

/// A critical section (lock, add one, unlock) killed at every store: the
/// survivor finds it never taken (0), held by the dead (recovered, 0 or 1),
/// or released with 1.
#[test]
fn a_mutex_critical_section_killed_at_every_store() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "mutex killed at every store");
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        used_mutex,
        region,
        |m| {
            armed(|| {
                let mut g = m.lock().unwrap();
                *g += 1;
            })
        },
        |m, outcome| {
            let class = match survive_mutex(m, outcome) {
                (0, false) => 0,
                (_, true) => 1,
                (1, false) => 2,
                other => panic!("{outcome:?}: (value, recovered) = {other:?}"),
            };
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    in_order(
        "Mutex lock, +1, unlock",
        &report,
        classes.into_inner(),
        &["not taken", "died holding", "released"],
    );
}

/// The holder's update and unlock killed at every store while a waiter sleeps
/// on the lock: the waiter gets it, recovered while the victim held it, clean
/// once it was released — even when the victim died between its unlock and
/// the wake-up.
#[test]
fn a_mutex_unlock_with_a_sleeping_waiter_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "mutex unlock killed at every store",
    );
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            let m = used_mutex();
            let waiter = fork(|| {
                wait_until(BOUND, "the victim holds the lock", || m.is_locked());
                match m.lock_timeout(BOUND) {
                    Ok(g) => *g as i32,
                    Err(LockError::OwnerDied(mut g)) => {
                        g.mark_consistent();
                        10 + *g as i32
                    }
                    Err(_) => 99,
                }
            });
            (m, RefCell::new(waiter))
        },
        |(m, _)| region(m),
        |(m, _)| {
            let mut g = m.lock().unwrap();
            wait_until(BOUND, "the waiter asleep", || m.hook_waiters());
            // Let it fall asleep on the futex (it set the bit just before).
            std::thread::sleep(Duration::from_millis(2));
            armed(|| {
                *g += 1;
                drop(g);
            })
        },
        |(m, waiter), outcome| {
            let class = match waiter.borrow_mut().wait_timeout(BOUND) {
                Some(ChildExit::Exited(10 | 11)) => 0,
                Some(ChildExit::Exited(1)) => 1,
                other => panic!("{outcome:?}: the waiter {other:?}"),
            };
            assert!(!survive_mutex(m, outcome).1, "{outcome:?}");
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    in_order(
        "Mutex +1, unlock, a waiter asleep",
        &report,
        classes.into_inner(),
        &["died holding", "released"],
    );
}

/// Takes a `Lock` as a survivor: whether it was recovered; then checks it
/// works as new.
fn survive_lock(l: &Lock, outcome: Outcome) -> bool {
    let recovered = match l.acquire_timeout(BOUND) {
        Ok(()) => false,
        Err(Error::OwnerDied) => {
            l.mark_consistent();
            true
        }
        Err(e) => panic!("{outcome:?}: {e}"),
    };
    l.release().unwrap();
    assert!(!l.locked(), "{outcome:?}");
    l.try_acquire().unwrap();
    l.release().unwrap();
    recovered
}

fn used_lock() -> Shared<Lock> {
    set_owner_check_interval(Duration::from_millis(5));
    let l = Shared::anonymous(Lock::new()).unwrap();
    l.acquire().unwrap();
    l.release().unwrap();
    l
}

#[test]
fn a_lock_acquire_and_release_killed_at_every_store() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "lock killed at every store");
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        used_lock,
        region,
        |l| {
            armed(|| {
                l.acquire().unwrap();
                l.release().unwrap();
            })
        },
        |l, outcome| {
            classes
                .borrow_mut()
                .push(usize::from(survive_lock(l, outcome)));
        },
        BOUND,
    );
    one_holding_stretch("Lock acquire, release", &report, classes.into_inner());
}

#[test]
fn a_lock_release_with_a_sleeping_waiter_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "lock release killed at every store",
    );
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            let l = used_lock();
            let waiter = fork(|| {
                wait_until(BOUND, "the victim holds the lock", || l.locked());
                let code = match l.acquire_timeout(BOUND) {
                    Ok(()) => 0,
                    Err(Error::OwnerDied) => {
                        l.mark_consistent();
                        1
                    }
                    Err(_) => return 99,
                };
                l.release().unwrap();
                code
            });
            (l, RefCell::new(waiter))
        },
        |(l, _)| region(l),
        |(l, _)| {
            l.acquire().unwrap();
            wait_until(BOUND, "the waiter asleep", || l.hook_waiters());
            std::thread::sleep(Duration::from_millis(2));
            armed(|| l.release().unwrap())
        },
        |(l, waiter), outcome| {
            let class = match waiter.borrow_mut().wait_timeout(BOUND) {
                Some(ChildExit::Exited(1)) => 0,
                Some(ChildExit::Exited(0)) => 1,
                other => panic!("{outcome:?}: the waiter {other:?}"),
            };
            assert!(!survive_lock(l, outcome), "{outcome:?}");
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    in_order(
        "Lock release, a waiter asleep",
        &report,
        classes.into_inner(),
        &["died holding", "released"],
    );
}

/// Acquired twice and released twice: the survivor recovers the lock (count
/// back to one) whenever the victim died holding it at any depth.
#[test]
fn an_rlock_acquired_twice_killed_at_every_store() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "rlock killed at every store");
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            set_owner_check_interval(Duration::from_millis(5));
            let r = Shared::anonymous(RLock::new()).unwrap();
            r.acquire().unwrap();
            r.release().unwrap();
            r
        },
        region,
        |r| {
            armed(|| {
                r.acquire().unwrap();
                r.acquire().unwrap();
                r.release().unwrap();
                r.release().unwrap();
            })
        },
        |r, outcome| {
            let recovered = match r.acquire_timeout(BOUND) {
                Ok(()) => false,
                Err(Error::OwnerDied) => {
                    r.mark_consistent();
                    true
                }
                Err(e) => panic!("{outcome:?}: {e}"),
            };
            assert_eq!(r.count(), 1, "{outcome:?}: held once by the survivor");
            r.acquire().unwrap();
            assert_eq!(r.count(), 2, "{outcome:?}");
            r.release().unwrap();
            r.release().unwrap();
            assert!(!r.locked(), "{outcome:?}");
            classes.borrow_mut().push(usize::from(recovered));
        },
        BOUND,
    );
    one_holding_stretch(
        "RLock acquire ×2, release ×2",
        &report,
        classes.into_inner(),
    );
}

/// After a kill: every one of `bound` permits can be taken within the bound
/// (a dead owner's comes back), never one more, and the value is whole after.
/// Returns how many had to come back from the dead.
fn all_permits(sem: &Semaphore, bound: u32, outcome: Outcome) -> u32 {
    let free = sem.value();
    let permits: Vec<_> = (0..bound)
        .map(|k| {
            sem.acquire_owned_timeout(BOUND)
                .unwrap_or_else(|e| panic!("{outcome:?}: permit {k} of {bound}: {e}"))
        })
        .collect();
    assert!(
        matches!(sem.try_acquire_owned(), Err(Error::WouldBlock)),
        "{outcome:?}: a permit more than {bound} (one given back twice)"
    );
    drop(permits);
    assert_eq!(sem.value(), bound, "{outcome:?}");
    bound - free
}

/// An owned permit taken and given back, killed at every store: every permit
/// comes back, none twice.
#[test]
fn an_owned_permit_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "owned permit killed at every store",
    );
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            set_owner_check_interval(Duration::from_millis(5));
            Shared::anonymous(BoundedSemaphore::new(2)).unwrap()
        },
        region,
        |s| armed(|| drop(s.acquire_owned())),
        |s, outcome| {
            let back = all_permits(s, 2, outcome);
            assert!(back <= 1, "{outcome:?}: {back} permits came back");
            classes.borrow_mut().push(back as usize);
        },
        BOUND,
    );
    one_holding_stretch(
        "owned permit acquire, release",
        &report,
        classes.into_inner(),
    );
}

/// The owner of the only permit gives it back while a waiter sleeps for it,
/// killed at every store: the waiter gets it.
#[test]
fn an_owned_permit_given_to_a_sleeping_waiter_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "owned permit hand-off killed at every store",
    );
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            set_owner_check_interval(Duration::from_millis(5));
            let s = Shared::anonymous(BoundedSemaphore::new(1)).unwrap();
            let waiter: Child = fork(|| {
                wait_until(BOUND, "the victim holds the permit", || s.value() == 0);
                match s.acquire_owned_timeout(BOUND) {
                    Ok(_) => 0,
                    Err(_) => 99,
                }
            });
            (s, RefCell::new(waiter))
        },
        |(s, _)| region(s),
        |(s, _)| {
            let g = s.acquire_owned();
            wait_until(BOUND, "the waiter asleep", || s.hook_sleepers() == 1);
            std::thread::sleep(Duration::from_millis(2));
            armed(|| drop(g))
        },
        |(s, waiter), outcome| {
            assert_eq!(
                waiter.borrow_mut().wait_timeout(BOUND),
                Some(ChildExit::Exited(0)),
                "{outcome:?}: the waiter got the permit"
            );
            all_permits(s, 1, outcome);
            classes.borrow_mut().push(0);
        },
        BOUND,
    );
    print(
        "owned permit released to a sleeper",
        &report,
        &classes.into_inner()[1..],
        &["waiter served"],
    );
}

/// A plain (unowned) permit taken and given back, killed at every store: as in
/// Python, a permit its taker died holding is gone, but the value is never
/// more than it was, and the semaphore works.
#[test]
fn a_plain_permit_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "plain permit killed at every store",
    );
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || Shared::anonymous(Semaphore::new(2)).unwrap(),
        region,
        |s| {
            armed(|| {
                s.acquire();
                s.release(1).unwrap();
            })
        },
        |s, outcome| {
            let v = s.value();
            assert!(v == 1 || v == 2, "{outcome:?}: value {v}");
            for _ in 0..v {
                s.try_acquire().unwrap();
            }
            assert!(
                matches!(s.try_acquire(), Err(Error::WouldBlock)),
                "{outcome:?}"
            );
            s.release(v).unwrap();
            assert_eq!(s.value(), v, "{outcome:?}");
            classes.borrow_mut().push(usize::from(v == 1));
        },
        BOUND,
    );
    one_holding_stretch(
        "plain permit acquire, release",
        &report,
        classes.into_inner(),
    );
}

/// A member's arrival at a barrier of two killed at every store while its
/// partner waits: the partner passes (the round opened) or sees the barrier
/// broken, never hangs — and passes when the victim died after opening the
/// round but before waking it; after a reset the barrier works.
#[test]
fn a_barrier_arrival_killed_at_every_store() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "barrier killed at every store");
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            set_owner_check_interval(Duration::from_millis(5));
            let b = Shared::anonymous(Barrier::new(2).unwrap()).unwrap();
            let partner = fork(|| {
                let me = b.join().unwrap();
                match me.wait_timeout(BOUND) {
                    Ok(_) => 0,
                    Err(Error::BrokenBarrier) => 1,
                    Err(_) => 99,
                }
            });
            wait_until(BOUND, "the partner waiting", || b.n_waiting() == 1);
            (b, RefCell::new(partner))
        },
        |(b, _)| region(b),
        |(b, _)| {
            let me = b.join().unwrap();
            armed(|| me.wait().unwrap());
        },
        |(b, partner), outcome| {
            let class = match partner.borrow_mut().wait_timeout(BOUND) {
                Some(ChildExit::Exited(1)) => 0,
                Some(ChildExit::Exited(0)) => 1,
                other => panic!("{outcome:?}: the partner {other:?}"),
            };
            b.reset();
            assert!(!b.broken(), "{outcome:?}");
            let other = fork(|| match b.wait_timeout(BOUND) {
                Ok(_) => 0,
                Err(_) => 1,
            });
            b.wait_timeout(BOUND)
                .unwrap_or_else(|e| panic!("{outcome:?}: a round after the reset: {e}"));
            assert_eq!(other.wait(BOUND), ChildExit::Exited(0), "{outcome:?}");
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    let classes = classes.into_inner();
    assert_eq!(
        classes.last(),
        Some(&1),
        "killed after opening the round, before the wake-up: the partner passes"
    );
    in_order(
        "Barrier member's wait",
        &report,
        classes,
        &["broken", "passed"],
    );
}

/// A registered setter's `set` killed at every store while a waiter sleeps in
/// `wait_checked`: the waiter returns set once the flag was stored (even if
/// the setter died before its wake-up), and `NoLiveSetter` before that.
#[test]
fn an_event_set_killed_at_every_store() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "event set killed at every store");
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            set_owner_check_interval(Duration::from_millis(5));
            let e = Shared::anonymous(Event::new()).unwrap();
            let waiter = fork(|| match e.wait_checked_timeout(BOUND) {
                Ok(()) => 0,
                Err(Error::NoLiveSetter) => 1,
                Err(_) => 99,
            });
            (e, RefCell::new(waiter))
        },
        |(e, _)| region(e),
        |(e, _)| {
            let setter = e.register_setter().unwrap();
            wait_until(BOUND, "the waiter asleep", || e.hook_sleepers() == 1);
            armed(|| setter.set());
        },
        |(e, waiter), outcome| {
            let class = match waiter.borrow_mut().wait_timeout(BOUND) {
                Some(ChildExit::Exited(1)) => 0,
                Some(ChildExit::Exited(0)) => 1,
                other => panic!("{outcome:?}: the waiter {other:?}"),
            };
            assert_eq!(e.is_set(), class == 1, "{outcome:?}");
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    let classes = classes.into_inner();
    assert_eq!(
        classes.last(),
        Some(&1),
        "killed after the set: the waiter sees it"
    );
    in_order(
        "Event set, a waiter asleep",
        &report,
        classes,
        &["no live setter", "set"],
    );
}

multiproc_shm::shm_struct! {
    /// A flag under a mutex and the condition that announces it, in one
    /// segment (the harness protects one region).
    sync struct Announced {
        flag: Mutex<u64>,
        cond: Condvar,
    }
}

/// Python's notify under the lock (lock, set the flag, `notify(1)`, unlock)
/// killed at every store into the mutex and the condition, while a waiter
/// sleeps in `wait`. After each kill the parent takes the lock (recovering it
/// from the dead), and notifies in its turn: the waiter must wake notified
/// exactly once (a wake-up the victim granted and the parent's are one, not
/// two), see the flag as the victim left it, and leave the condition with no
/// waiter and no wake-up left over; a fresh wait must then time out.
#[test]
fn a_condition_notify_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "condition notify killed at every store",
    );
    let classes = RefCell::new(Vec::new());
    let report = every_write(
        || {
            set_owner_check_interval(Duration::from_millis(5));
            let a = Shared::anonymous(Announced {
                flag: Mutex::new(0),
                cond: Condvar::new(),
            })
            .unwrap();
            let waiter = fork(|| {
                let g = a.flag.lock().unwrap();
                // Exit code: 1 when notified, + 2 when it recovered the mutex,
                // + 4 × the flag it saw; 99 when it timed out.
                let (notified, recovered, flag) = match a.cond.wait_timeout(g, BOUND) {
                    Ok((g, timed_out)) => (!timed_out, false, *g),
                    Err(LockError::OwnerDied((mut g, timed_out))) => {
                        g.mark_consistent();
                        (!timed_out, true, *g)
                    }
                    Err(_) => return 98,
                };
                if !notified {
                    return 99;
                }
                1 + 2 * i32::from(recovered) + 4 * flag as i32
            });
            (a, RefCell::new(waiter))
        },
        |(a, _)| region(a),
        |(a, _)| {
            // Counted as a waiter, and the mutex let go: a waiter counted
            // but still holding the mutex (it unlocks after it counts
            // itself) made the victim's lock contended, which moved its
            // stores (a kill point then read "not taken" after one read
            // "died holding", once in a run under AddressSanitizer).
            wait_until(BOUND, "the waiter waits", || {
                a.cond.hook_counts().0 == 1 && !a.flag.is_locked()
            });
            armed(|| {
                let mut g = a.flag.lock().unwrap();
                *g = 1;
                a.cond.notify(1);
                drop(g);
            })
        },
        |(a, waiter), outcome| {
            // The parent's turn: take the lock, then notify as the victim would.
            let (flag, parent_recovered) = match a.flag.lock_timeout(BOUND) {
                Ok(g) => {
                    a.cond.notify(1);
                    (*g, false)
                }
                Err(LockError::OwnerDied(mut g)) => {
                    g.mark_consistent();
                    a.cond.notify(1);
                    (*g, true)
                }
                Err(e) => panic!("{outcome:?}: {e:?}"),
            };
            let code = match waiter.borrow_mut().wait_timeout(BOUND) {
                Some(ChildExit::Exited(code)) if code & 1 == 1 && code < 98 => code,
                other => panic!("{outcome:?}: the waiter {other:?}"),
            };
            let recovered = parent_recovered || code & 2 != 0;
            let seen = (code >> 2) as u64;
            assert!(
                seen <= 1 && flag <= 1,
                "{outcome:?}: flag {flag}, waiter saw {seen}"
            );
            assert_eq!(
                a.cond.hook_counts(),
                (0, 0),
                "{outcome:?}: waiters and wake-ups left over"
            );
            // A fresh wait finds no stray wake-up: it times out.
            let g = a.flag.lock_timeout(BOUND).unwrap();
            let (g, timed_out) = a.cond.wait_timeout(g, Duration::from_millis(20)).unwrap();
            assert!(timed_out, "{outcome:?}: a stray wake-up");
            drop(g);
            let class = match (recovered, flag.max(seen)) {
                (false, 0) => 0,
                (true, _) => 1,
                (false, 1) => 2,
                other => panic!("{outcome:?}: {other:?}"),
            };
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    let classes = classes.into_inner();
    assert_eq!(classes.last(), Some(&2), "killed after the unlock: clean");
    in_order(
        "Condition lock, set, notify(1), unlock; a waiter asleep",
        &report,
        classes,
        &["not taken", "died holding", "released"],
    );
}

/// An insert of a new key into a `SharedDict` killed at every store: the next
/// operation repairs the table, and the key is either absent or there with its
/// whole value; the count matches the entries, and the dictionary works.
#[test]
fn a_dict_insert_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "dict insert killed at every store",
    );
    type Dict = SharedDict<8, 8, 24>;
    let classes = RefCell::new(Vec::new());
    let value = b"a value of 24 bytes, whole";
    let value = &value[..24];
    let report = every_write(
        || {
            set_owner_check_interval(Duration::from_millis(5));
            let d = Dict::new().unwrap();
            d.insert("one", "1").unwrap();
            d.insert("gone", "x").unwrap();
            d.remove("gone").unwrap();
            d
        },
        |d| (d.segment().as_ptr(), d.segment().len()),
        |d| {
            armed(|| {
                d.insert("key", value).unwrap();
            })
        },
        |d, outcome| {
            let got = d.get("key").unwrap_or_else(|e| panic!("{outcome:?}: {e}"));
            let class = match got.as_deref() {
                None => 0,
                Some(v) if v == value => 1,
                Some(v) => panic!("{outcome:?}: a torn value {v:?}"),
            };
            let items = d.items().unwrap();
            assert_eq!(d.len().unwrap(), items.len(), "{outcome:?}: {items:?}");
            assert_eq!(items.len(), 1 + class, "{outcome:?}: {items:?}");
            assert_eq!(
                d.get("one").unwrap().as_deref(),
                Some(&b"1"[..]),
                "{outcome:?}"
            );
            d.insert("key", "again").unwrap();
            assert_eq!(d.remove("key").unwrap().as_deref(), Some(&b"again"[..]));
            assert_eq!(d.len().unwrap(), 1, "{outcome:?}");
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    in_order(
        "SharedDict insert",
        &report,
        classes.into_inner(),
        &["absent", "present"],
    );
}
