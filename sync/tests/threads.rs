//! Every lock of the crate under contention from threads of one process, each
//! guarding plain (non-atomic) data: the shape ThreadSanitizer can follow
//! (`scripts/tsan` runs this file under it). A lock whose acquire does not
//! synchronise with the previous release shows here as a data race on the
//! plain data, even when the count happens to come out right on x86.
//!
//! In the ordinary suite these are stress tests of their own: the counts are
//! exact or the lock let two holders in.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::time::Duration;

use multiproc_sync::{
    Barrier, BoundedSemaphore, Condvar, Event, Lock, Mutex, RLock, Semaphore, SharedDict, Value,
};
use multiproc_testkit::Watchdog;

const THREADS: usize = 4;
/// Rounds per thread: enough to contend on 2 cores, few enough for TSan (which
/// runs this 5-15 times slower).
const ROUNDS: u64 = 20_000;
const LIMIT: Duration = Duration::from_secs(120);

/// Plain memory that only a lock makes safe to share; the lock under test is
/// the only thing that orders its accesses.
struct Plain<T>(UnsafeCell<T>);

// SAFETY: every test touches the cell only while holding the lock under test
// (that the lock excludes is what the tests check).
unsafe impl<T: Send> Sync for Plain<T> {}

impl<T> Plain<T> {
    fn new(v: T) -> Plain<T> {
        Plain(UnsafeCell::new(v))
    }

    /// # Safety
    /// The caller holds the lock that guards this cell.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusive by the caller's lock.
        unsafe { &mut *self.0.get() }
    }
}

/// Runs `f(thread)` on [`THREADS`] threads at once.
fn on_threads(f: impl Fn(usize) + Sync) {
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || f(t));
        }
    });
}

#[test]
fn mutex_guards_plain_data() {
    let _dog = Watchdog::arm(LIMIT, "mutex");
    let m = Mutex::new([0u64; 4]);
    on_threads(|t| {
        for i in 0..ROUNDS {
            let mut g = m.lock().unwrap();
            g[0] += 1;
            g[1 + t % 3] = i;
            // Sometimes a timed or non-blocking form, so each path is seen.
            drop(g);
            if i % 7 == 0 {
                if let Ok(mut g) = m.try_lock() {
                    g[0] += 1;
                    g[0] -= 1;
                }
            }
            if i % 11 == 0 {
                let mut g = m.lock_timeout(Duration::from_secs(30)).unwrap();
                g[0] += 1;
                g[0] -= 1;
            }
        }
    });
    assert_eq!(m.lock().unwrap()[0], THREADS as u64 * ROUNDS);
}

#[test]
fn lock_rlock_and_semaphores_guard_plain_data() {
    let _dog = Watchdog::arm(LIMIT, "locks");
    let lock = Lock::new();
    let rlock = RLock::new();
    let sem = Semaphore::new(1);
    let bounded = BoundedSemaphore::new(1);
    let counts = [
        Plain::new(0u64),
        Plain::new(0u64),
        Plain::new(0u64),
        Plain::new(0u64),
    ];
    on_threads(|_| {
        for i in 0..ROUNDS {
            lock.acquire().unwrap();
            // SAFETY: under `lock`.
            unsafe { *counts[0].get() += 1 };
            lock.release().unwrap();

            rlock.acquire().unwrap();
            rlock.acquire().unwrap(); // held twice: still one holder
                                      // SAFETY: under `rlock`.
            unsafe { *counts[1].get() += 1 };
            rlock.release().unwrap();
            rlock.release().unwrap();

            sem.acquire();
            // SAFETY: under `sem`, a semaphore of one permit.
            unsafe { *counts[2].get() += 1 };
            sem.release(1).unwrap();

            if i % 2 == 0 {
                let _g = bounded.acquire_owned();
                // SAFETY: under `bounded`, one permit, held by the guard.
                unsafe { *counts[3].get() += 1 };
            } else {
                bounded.acquire();
                // SAFETY: under `bounded`.
                unsafe { *counts[3].get() += 1 };
                bounded.release(1).unwrap();
            }
        }
    });
    for (i, c) in counts.iter().enumerate() {
        // SAFETY: every thread has joined.
        assert_eq!(unsafe { *c.get() }, THREADS as u64 * ROUNDS, "lock {i}");
    }
}

/// Python's bounded buffer: producers and consumers over one condition, a
/// plain `VecDeque` inside the mutex.
#[test]
fn condition_hands_over_every_item_once() {
    let _dog = Watchdog::arm(LIMIT, "condition");
    let m = Mutex::new(VecDeque::<u64>::new());
    let c = Condvar::new();
    let cap = 8;
    let per = ROUNDS;
    let got = Mutex::new(Vec::<u64>::new());
    std::thread::scope(|s| {
        for p in 0..2u64 {
            let (m, c) = (&m, &c);
            s.spawn(move || {
                for i in 0..per {
                    let mut q = c.wait_while(m.lock().unwrap(), |q| q.len() >= cap).unwrap();
                    q.push_back(p * per + i);
                    drop(q);
                    c.notify_all();
                }
            });
        }
        for _ in 0..2 {
            let (m, c, got) = (&m, &c, &got);
            s.spawn(move || {
                let mut mine = Vec::new();
                for _ in 0..per {
                    let mut q = c.wait_while(m.lock().unwrap(), |q| q.is_empty()).unwrap();
                    mine.push(q.pop_front().unwrap());
                    drop(q);
                    c.notify(1);
                    c.notify_all();
                }
                got.lock().unwrap().extend(mine);
            });
        }
    });
    let mut got = std::mem::take(&mut *got.lock().unwrap());
    got.sort_unstable();
    assert_eq!(got, (0..2 * per).collect::<Vec<_>>());
}

/// Each thread writes its own cell, waits at the barrier, then reads every
/// other thread's cell: the barrier is what orders the writes before the reads.
#[test]
fn barrier_orders_each_phase() {
    let _dog = Watchdog::arm(LIMIT, "barrier");
    let b = Barrier::new(THREADS as u32).unwrap();
    let cells: Vec<Plain<u64>> = (0..THREADS).map(|_| Plain::new(0)).collect();
    let phases = ROUNDS / 10;
    on_threads(|t| {
        for phase in 1..=phases {
            // SAFETY: between two barrier rounds only thread t touches cell t.
            unsafe { *cells[t].get() = phase };
            b.wait().unwrap();
            for (u, c) in cells.iter().enumerate() {
                // SAFETY: nobody writes between this round and the next.
                assert_eq!(unsafe { *c.get() }, phase, "thread {u} in phase {phase}");
            }
            b.wait().unwrap();
        }
    });
}

/// The setter writes plain data, then sets; every waiter reads it after its
/// wait returns.
#[test]
fn event_publishes_what_came_before_set() {
    let _dog = Watchdog::arm(LIMIT, "event");
    for round in 0..ROUNDS / 200 {
        let e = Event::new();
        let data = Plain::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..THREADS - 1 {
                s.spawn(|| {
                    e.wait();
                    // SAFETY: written only before `set`, which `wait` saw.
                    assert_eq!(unsafe { *data.get() }, round + 1);
                });
            }
            // SAFETY: the waiters read only after `set`.
            unsafe { *data.get() = round + 1 };
            e.set();
        });
    }
}

#[test]
fn value_and_dict_count_exactly() {
    let _dog = Watchdog::arm(LIMIT, "value and dict");
    let v = Value::new(0u64).unwrap();
    let d = SharedDict::<8192, 16, 8>::new().unwrap();
    on_threads(|t| {
        for i in 0..ROUNDS / 20 {
            *v.lock().unwrap() += 1;
            d.insert(format!("{t}:{i}"), i.to_le_bytes()).unwrap();
        }
    });
    assert_eq!(v.get().unwrap(), THREADS as u64 * ROUNDS / 20);
    for t in 0..THREADS {
        for i in (0..ROUNDS / 20).step_by(97) {
            let got = d.get(format!("{t}:{i}")).unwrap().unwrap();
            assert_eq!(got, i.to_le_bytes());
        }
    }
}
