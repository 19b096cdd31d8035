//! Behaviour of each primitive between threads, Python's semantics included, and
//! proptests against simple models.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_sync::{
    Barrier, BoundedSemaphore, Condvar, Error, Event, Lock, LockError, Mutex, RLock, Semaphore,
    SharedDict,
};
use proptest::prelude::*;

#[test]
fn rlock_is_reentrant_for_its_thread_only() {
    let r = RLock::new();
    r.acquire().unwrap();
    r.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(
                matches!(r.try_acquire(), Err(Error::WouldBlock)),
                "another thread cannot enter"
            );
            assert!(matches!(r.release(), Err(Error::NotOwner)));
            assert!(matches!(
                r.acquire_timeout(Duration::from_millis(5)),
                Err(Error::Timeout)
            ));
        });
    });
    r.release().unwrap();
    assert!(r.locked());
    r.release().unwrap();
    assert!(!r.locked());
}

#[test]
fn lock_may_be_released_by_another_thread_as_in_python() {
    let l = Lock::new();
    l.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| l.release().unwrap());
    });
    assert!(!l.locked());
    assert!(matches!(l.release(), Err(Error::NotLocked)));
}

#[test]
fn relocking_a_mutex_in_the_same_thread_is_an_error_not_a_hang() {
    let m = Mutex::new(());
    let _g = m.lock().unwrap();
    assert!(matches!(m.lock(), Err(LockError::WouldDeadlock)));
    let l = Lock::new();
    l.acquire().unwrap();
    assert!(matches!(l.acquire(), Err(Error::WouldDeadlock)));
}

#[test]
fn condvar_notify_n_wakes_that_many() {
    let m = Mutex::new(0u32);
    let c = Condvar::new();
    let woken = AtomicU32::new(0);
    let waiting = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut g = m.lock().unwrap();
                waiting.fetch_add(1, Ordering::SeqCst);
                // Wait for a ticket; spurious wake-ups are absorbed by the loop.
                g = c.wait_while(g, |tickets| *tickets == 0).unwrap();
                *g -= 1;
                woken.fetch_add(1, Ordering::SeqCst);
            });
        }
        while waiting.load(Ordering::SeqCst) < 4 {
            std::thread::yield_now();
        }
        *m.lock().unwrap() += 2;
        c.notify(2);
        let t = Instant::now();
        while woken.load(Ordering::SeqCst) < 2 {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::yield_now();
        }
        *m.lock().unwrap() += 2;
        c.notify_all();
    });
    assert_eq!(woken.load(Ordering::SeqCst), 4);
    assert_eq!(*m.lock().unwrap(), 0);
}

#[test]
fn condvar_wait_timeout_reports_the_timeout() {
    let m = Mutex::new(());
    let c = Condvar::new();
    let (_g, timed_out) = c
        .wait_timeout(m.lock().unwrap(), Duration::from_millis(5))
        .unwrap();
    assert!(timed_out);
}

#[test]
fn semaphore_blocks_and_wakes() {
    let s = Semaphore::new(0);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| s.acquire_timeout(Duration::from_secs(10)).is_ok());
        std::thread::sleep(Duration::from_millis(10));
        s.release(1).unwrap();
        assert!(h.join().unwrap());
    });
    assert_eq!(s.value(), 0);
}

#[test]
fn event_wait_timeout_says_it_timed_out() {
    let e = Event::new();
    let t = Instant::now();
    assert!(matches!(
        e.wait_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(10));
}

#[test]
fn barrier_timeout_breaks_it_for_everyone_until_reset() {
    let b = Barrier::new(3).unwrap();
    std::thread::scope(|s| {
        let other = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(20)),
            Err(Error::BrokenBarrier)
        ));
        assert!(matches!(other.join().unwrap(), Err(Error::BrokenBarrier)));
    });
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    assert!(!b.broken());
    let b1 = Barrier::new(1).unwrap();
    assert_eq!(b1.wait().unwrap(), 0);
}

#[test]
fn barrier_reset_fails_current_waiters() {
    let b = Barrier::new(2).unwrap();
    std::thread::scope(|s| {
        let w = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
        while b.n_waiting() == 0 {
            std::thread::yield_now();
        }
        b.reset();
        assert!(matches!(w.join().unwrap(), Err(Error::BrokenBarrier)));
    });
    // Usable again afterwards.
    std::thread::scope(|s| {
        let w = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
        b.wait_timeout(Duration::from_secs(10)).unwrap();
        w.join().unwrap().unwrap();
    });
}

#[test]
fn barrier_refuses_bad_party_counts() {
    assert!(matches!(
        Barrier::new(0),
        Err(Error::OutOfRange {
            value: 0,
            min: 1,
            ..
        })
    ));
    assert!(Barrier::new(multiproc_sync::MAX_PARTIES + 1).is_err());
}

#[test]
fn dict_says_when_it_is_full() {
    let d = SharedDict::<4, 4, 4>::new().unwrap();
    for k in ["a", "b", "c", "d"] {
        d.insert(k, "v").unwrap();
    }
    assert!(matches!(
        d.insert("e", "v"),
        Err(Error::Full { capacity: 4 })
    ));
    assert_eq!(
        d.insert("a", "w").unwrap(),
        Some(b"v".to_vec()),
        "replacing needs no room"
    );
    d.remove("b").unwrap();
    d.insert("e", "v").unwrap();
    assert!(matches!(
        d.insert("k", "12345"),
        Err(Error::TooLong { what: "value", .. })
    ));
}

#[derive(Debug, Clone)]
enum SemOp {
    TryAcquire,
    Release(u32),
}

#[derive(Debug, Clone)]
enum DictOp {
    Insert(u8, u8),
    Remove(u8),
    Get(u8),
}

proptest! {
    /// A semaphore behaves as a counter with an optional bound.
    #[test]
    fn semaphore_matches_a_counter(initial in 0u32..5, bounded in any::<bool>(), ops in proptest::collection::vec(
        prop_oneof![Just(SemOp::TryAcquire), (1u32..4).prop_map(SemOp::Release)], 0..64)) {
        let (plain, bounded_sem) = (Semaphore::new(initial), BoundedSemaphore::new(initial));
        let s: &Semaphore = if bounded { &bounded_sem } else { &plain };
        let bound = if bounded { initial } else { u32::MAX };
        let mut model = initial;
        for op in ops {
            match op {
                SemOp::TryAcquire => {
                    let expect = model > 0;
                    prop_assert_eq!(s.try_acquire().is_ok(), expect);
                    if expect { model -= 1; }
                }
                SemOp::Release(n) => {
                    let fits = model.checked_add(n).is_some_and(|v| v <= bound);
                    prop_assert_eq!(s.release(n).is_ok(), fits);
                    if fits { model += n; }
                }
            }
            prop_assert_eq!(s.value(), model);
        }
    }

    /// The shared dictionary behaves as a HashMap (within its capacity).
    #[test]
    fn dict_matches_a_hashmap(ops in proptest::collection::vec(prop_oneof![
        (0u8..24, any::<u8>()).prop_map(|(k, v)| DictOp::Insert(k, v)),
        (0u8..24).prop_map(DictOp::Remove),
        (0u8..24).prop_map(DictOp::Get),
    ], 0..200)) {
        let d = SharedDict::<16, 4, 4>::new().unwrap();
        let mut model = std::collections::HashMap::new();
        for op in ops {
            match op {
                DictOp::Insert(k, v) => {
                    let r = d.insert([k], [v]);
                    if model.len() == 16 && !model.contains_key(&k) {
                        prop_assert!(matches!(r, Err(Error::Full { .. })), "{:?}", r);
                    } else {
                        prop_assert_eq!(r.unwrap(), model.insert(k, v).map(|o| vec![o]));
                    }
                }
                DictOp::Remove(k) => prop_assert_eq!(d.remove([k]).unwrap(), model.remove(&k).map(|o| vec![o])),
                DictOp::Get(k) => prop_assert_eq!(d.get([k]).unwrap(), model.get(&k).map(|&o| vec![o])),
            }
            prop_assert_eq!(d.len().unwrap(), model.len());
        }
    }

    /// Every generation of a barrier hands out each arrival index exactly once,
    /// and no party passes before all have arrived.
    #[test]
    fn barrier_generations(parties in 1u32..5, rounds in 1usize..20) {
        let b = Barrier::new(parties).unwrap();
        let arrived = AtomicU32::new(0);
        let indices: Vec<Vec<u32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..parties).map(|_| s.spawn(|| {
                (0..rounds).map(|r| {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let i = b.wait_timeout(Duration::from_secs(10)).unwrap();
                    assert!(arrived.load(Ordering::SeqCst) >= (r as u32 + 1) * parties);
                    i
                }).collect()
            })).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in 0..rounds {
            let mut gen: Vec<u32> = indices.iter().map(|v| v[r]).collect();
            gen.sort();
            prop_assert_eq!(gen, (0..parties).collect::<Vec<_>>());
        }
    }
}

#[test]
fn sizes_are_what_the_docs_say() {
    use std::mem::size_of;
    assert_eq!(size_of::<Lock>(), 16);
    assert_eq!(size_of::<RLock>(), 24);
    assert_eq!(size_of::<Condvar>(), 24);
    assert_eq!(size_of::<Semaphore>(), 176);
    assert_eq!(size_of::<Event>(), 152);
    assert_eq!(size_of::<Barrier>(), 152);
}
