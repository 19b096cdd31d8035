//! loom models of the lock, condition, semaphore, event and barrier algorithms.
//!
//! Run with `RUSTFLAGS="--cfg multiproc_loom" cargo test -p multiproc-sync --test loom --release`
//! (scripts/test-all does, with `LOOM_MAX_PREEMPTIONS=2`). The futex is loom's
//! yield (see the crate's `primitive` module), so every model checks the atomics'
//! protocol, not the kernel.
#![cfg(multiproc_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use multiproc_sync::{Barrier, Condvar, Event, Lock, Mutex, Semaphore};

/// Two threads in a critical section at once would make `inside` reach 2.
#[test]
fn mutex_excludes() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(()));
        let inside = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                thread::spawn(move || {
                    let _g = m.lock().unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(!m.is_locked());
    });
}

/// Data written under the lock is seen by the next holder (Release/Acquire).
#[test]
fn lock_publishes_data() {
    loom::model(|| {
        let l = Arc::new(Lock::new());
        let data = Arc::new(AtomicUsize::new(0));
        let (l2, d2) = (l.clone(), data.clone());
        let t = thread::spawn(move || {
            l2.acquire().unwrap();
            let v = d2.load(Ordering::Relaxed);
            d2.store(v + 1, Ordering::Relaxed);
            l2.release().unwrap();
        });
        l.acquire().unwrap();
        let v = data.load(Ordering::Relaxed);
        data.store(v + 1, Ordering::Relaxed);
        l.release().unwrap();
        t.join().unwrap();
        assert_eq!(data.load(Ordering::Relaxed), 2);
    });
}

/// A notify is never lost between the waiter's check and its sleep.
#[test]
fn condvar_no_lost_wakeup() {
    loom::model(|| {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = pair.clone();
        let t = thread::spawn(move || {
            *p2.0.lock().unwrap() = true;
            p2.1.notify_one();
        });
        let g = pair
            .1
            .wait_while(pair.0.lock().unwrap(), |ready| !*ready)
            .unwrap();
        assert!(*g);
        drop(g);
        t.join().unwrap();
    });
}

/// Two threads take turns through one condition, each notifying the other
/// (`notify(1)`) after its move, twice: a wake-up granted to one is never left
/// for the other to take, and none is lost. (Three threads are beyond these
/// models: loom explores schedules in which two waiters retrying in turn starve
/// the third for ever.)
#[test]
fn condvar_notify_one_ping_pong() {
    loom::model(|| {
        // (turn, moves): turn 0 is the main thread's, 1 the other's.
        let pair = Arc::new((Mutex::new((0u32, 0u32)), Condvar::new()));
        let p2 = pair.clone();
        let t = thread::spawn(move || {
            for _ in 0..2 {
                let mut g = p2.1.wait_while(p2.0.lock().unwrap(), |s| s.0 != 1).unwrap();
                *g = (0, g.1 + 1);
                p2.1.notify(1);
            }
        });
        for _ in 0..2 {
            let mut g = pair
                .1
                .wait_while(pair.0.lock().unwrap(), |s| s.0 != 0)
                .unwrap();
            *g = (1, g.1 + 1);
            pair.1.notify(1);
        }
        t.join().unwrap();
        assert_eq!(pair.0.lock().unwrap().1, 4);
    });
}

/// A permit released by one thread is taken by the other; the count ends right.
#[test]
fn semaphore_hand_off() {
    loom::model(|| {
        let s = Arc::new(Semaphore::new(0));
        let s2 = s.clone();
        let t = thread::spawn(move || {
            s2.acquire();
        });
        s.release(1).unwrap();
        t.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

/// An owned permit and a plain one of a one-permit semaphore exclude each other,
/// and the count ends where it began: the owned steps move the count and name
/// the seat in one word, which the plain operations leave alone.
#[test]
fn owned_and_plain_permits_exclude() {
    use loom::sync::atomic::{AtomicU32, Ordering};
    loom::model(|| {
        let s = Arc::new(Semaphore::new(1));
        let inside = Arc::new(AtomicU32::new(0));
        let (s2, inside2) = (s.clone(), inside.clone());
        let t = thread::spawn(move || {
            let g = s2.acquire_owned();
            assert_eq!(inside2.fetch_add(1, Ordering::SeqCst), 0);
            inside2.fetch_sub(1, Ordering::SeqCst);
            drop(g);
        });
        if s.try_acquire().is_ok() {
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
            inside.fetch_sub(1, Ordering::SeqCst);
            s.release(1).unwrap();
        }
        t.join().unwrap();
        assert_eq!(s.value(), 1);
    });
}

/// A set is seen by a waiter, whichever comes first.
#[test]
fn event_set_wakes_waiter() {
    loom::model(|| {
        let e = Arc::new(Event::new());
        let e2 = e.clone();
        let t = thread::spawn(move || e2.wait());
        e.set();
        t.join().unwrap();
        assert!(e.is_set());
    });
}

/// Two parties: distinct indices, and each sees the other's write before the barrier.
#[test]
fn barrier_two_parties() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(2).unwrap());
        let before = Arc::new(AtomicUsize::new(0));
        let (b2, before2) = (b.clone(), before.clone());
        let t = thread::spawn(move || {
            before2.fetch_add(1, Ordering::Relaxed);
            let i = b2.wait().unwrap();
            assert_eq!(before2.load(Ordering::Relaxed), 2);
            i
        });
        before.fetch_add(1, Ordering::Relaxed);
        let i = b.wait().unwrap();
        assert_eq!(before.load(Ordering::Relaxed), 2);
        let j = t.join().unwrap();
        assert_ne!(i, j);
    });
}
