//! N processes × M operations under each primitive: counters end exact, nothing is
//! lost or duplicated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc_shm::{Location, Shared};
use multiproc_sync::{Barrier, Condvar, Event, Lock, Mutex, RLock, Semaphore, SharedDict, Value};
use multiproc_testkit::{fork, reexec, role, unique_name, wait_command, Watchdog};

const PROCS: usize = 4;
const ITERS: u64 = 20_000;
const LIMIT: Duration = Duration::from_secs(60);

/// Forks `n` children running `f(i)` and waits for all to succeed.
fn run_children(n: usize, f: impl Fn(usize) + Sync) {
    let kids: Vec<_> = (0..n)
        .map(|i| {
            let f = &f;
            fork(move || {
                f(i);
                0
            })
        })
        .collect();
    for k in kids {
        k.wait_ok(LIMIT);
    }
}

#[test]
fn mutex_counter_is_exact() {
    let _dog = Watchdog::arm(LIMIT, "mutex_counter_is_exact");
    let m = Shared::anonymous(Mutex::new(0u64)).unwrap();
    run_children(PROCS, |_| {
        for _ in 0..ITERS {
            *m.lock().unwrap() += 1;
        }
    });
    assert_eq!(*m.lock().unwrap(), PROCS as u64 * ITERS);
}

#[test]
fn lock_counter_is_exact() {
    let _dog = Watchdog::arm(LIMIT, "lock_counter_is_exact");
    let lock = Shared::anonymous(Lock::new()).unwrap();
    let counter = Shared::anonymous(0u64).unwrap();
    let p = counter.as_ptr() as usize;
    run_children(PROCS, |_| {
        for _ in 0..ITERS {
            lock.acquire().unwrap();
            // SAFETY: the Lock serialises every access to the counter.
            unsafe { *(p as *mut u64) += 1 };
            lock.release().unwrap();
        }
    });
    assert_eq!(counter.read_volatile(), PROCS as u64 * ITERS);
}

#[test]
fn rlock_counter_is_exact() {
    let _dog = Watchdog::arm(LIMIT, "rlock_counter_is_exact");
    let lock = Shared::anonymous(RLock::new()).unwrap();
    let counter = Shared::anonymous(0u64).unwrap();
    let p = counter.as_ptr() as usize;
    run_children(PROCS, |_| {
        for _ in 0..ITERS {
            lock.acquire().unwrap();
            lock.acquire().unwrap(); // re-entered
                                     // SAFETY: the RLock serialises every access to the counter.
            unsafe { *(p as *mut u64) += 1 };
            lock.release().unwrap();
            lock.release().unwrap();
        }
    });
    assert_eq!(counter.read_volatile(), PROCS as u64 * ITERS);
}

#[test]
fn semaphore_as_a_lock_is_exact() {
    let _dog = Watchdog::arm(LIMIT, "semaphore_as_a_lock_is_exact");
    let sem = Shared::anonymous(multiproc_sync::BoundedSemaphore::new(1)).unwrap();
    let counter = Shared::anonymous(0u64).unwrap();
    let p = counter.as_ptr() as usize;
    run_children(PROCS, |_| {
        for _ in 0..ITERS {
            sem.acquire();
            // SAFETY: the semaphore of one permit serialises access to the counter.
            unsafe { *(p as *mut u64) += 1 };
            sem.release(1).unwrap();
        }
    });
    assert_eq!(counter.read_volatile(), PROCS as u64 * ITERS);
    assert_eq!(sem.value(), 1);
}

/// The tutorial's `Value` counter: ten processes, each adding under `get_lock`.
#[test]
fn value_counter_of_ten_processes_is_exact() {
    let _dog = Watchdog::arm(LIMIT, "value_counter");
    let v = Value::new(0i64).unwrap();
    run_children(10, |_| {
        for _ in 0..1000 {
            *v.lock().unwrap() += 1;
        }
    });
    assert_eq!(v.get().unwrap(), 10_000);
}

const RING: usize = 8;

multiproc_shm::shm_struct! {
    struct RingState {
        buf: [u64; RING],
        head: u64,
        tail: u64,
        done: u64,
    }
}

#[test]
fn condition_producer_consumer_loses_nothing() {
    let _dog = Watchdog::arm(LIMIT, "condition_producer_consumer");
    const PRODUCERS: usize = 2;
    const CONSUMERS: usize = 2;
    const ITEMS: u64 = 5_000;
    let state = Shared::anonymous(Mutex::new(RingState {
        buf: [0; RING],
        head: 0,
        tail: 0,
        done: 0,
    }))
    .unwrap();
    let not_empty = Shared::anonymous(Condvar::new()).unwrap();
    let not_full = Shared::anonymous(Condvar::new()).unwrap();
    let sum = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let count = Shared::anonymous(AtomicU64::new(0)).unwrap();

    run_children(PRODUCERS + CONSUMERS, |i| {
        if i < PRODUCERS {
            for k in 0..ITEMS {
                let item = (i as u64) * ITEMS + k + 1;
                let mut g = not_full
                    .wait_while(state.lock().unwrap(), |s| s.tail - s.head == RING as u64)
                    .unwrap();
                let t = g.tail;
                g.buf[(t % RING as u64) as usize] = item;
                g.tail += 1;
                drop(g);
                not_empty.notify_one();
            }
            state.lock().unwrap().done += 1;
            not_empty.notify_all();
        } else {
            loop {
                let mut g = not_empty
                    .wait_while(state.lock().unwrap(), |s| {
                        s.tail == s.head && s.done < PRODUCERS as u64
                    })
                    .unwrap();
                if g.tail == g.head {
                    break; // every producer is done and the ring is drained
                }
                let h = g.head;
                let item = g.buf[(h % RING as u64) as usize];
                g.head += 1;
                drop(g);
                not_full.notify_one();
                sum.fetch_add(item, Ordering::Relaxed);
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let n = PRODUCERS as u64 * ITEMS;
    assert_eq!(count.load(Ordering::Relaxed), n);
    assert_eq!(sum.load(Ordering::Relaxed), n * (n + 1) / 2);
}

#[test]
fn barrier_keeps_processes_in_step() {
    let _dog = Watchdog::arm(LIMIT, "barrier_keeps_processes_in_step");
    const ROUNDS: u64 = 200;
    let barrier = Shared::anonymous(Barrier::new(PROCS as u32).unwrap()).unwrap();
    let rounds = Shared::anonymous([0u64; PROCS].map(AtomicU64::new)).unwrap();
    run_children(PROCS, |i| {
        for r in 1..=ROUNDS {
            rounds[i].store(r, Ordering::SeqCst);
            let idx = barrier.wait_timeout(Duration::from_secs(20)).unwrap();
            assert!(idx < PROCS as u32);
            // Past the barrier, every party has reached round r.
            for other in rounds.iter() {
                assert!(other.load(Ordering::SeqCst) >= r);
            }
            barrier.wait_timeout(Duration::from_secs(20)).unwrap();
        }
    });
    assert!(!barrier.broken());
}

#[test]
fn event_wakes_waiting_processes() {
    let _dog = Watchdog::arm(LIMIT, "event_wakes_waiting_processes");
    let event = Shared::anonymous(Event::new()).unwrap();
    let woke = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                if event.wait_timeout(Duration::from_secs(20)).is_ok() {
                    woke.fetch_add(1, Ordering::SeqCst);
                    0
                } else {
                    1
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    event.set();
    for k in kids {
        k.wait_ok(LIMIT);
    }
    assert_eq!(woke.load(Ordering::SeqCst), 3);
}

/// The tutorial's `Manager().dict()`: ten processes each store their number.
#[test]
fn dict_filled_by_ten_processes() {
    let _dog = Watchdog::arm(LIMIT, "dict_filled_by_ten_processes");
    let d = SharedDict::<64, 8, 16>::new().unwrap();
    run_children(10, |i| {
        d.insert(i.to_string(), (i * i).to_string()).unwrap();
    });
    assert_eq!(d.len().unwrap(), 10);
    for i in 0..10 {
        assert_eq!(
            d.get(i.to_string()).unwrap(),
            Some((i * i).to_string().into_bytes())
        );
    }
}

/// Python's `setdefault` on a `Manager().dict()`: ten processes race, from
/// one barrier, to set each of 1 000 keys, each with its own value; for every
/// key one sets it, and every one got back the value that stays (a look
/// then an insert, in two locks, let a later insert overwrite a value an
/// earlier caller was given).
#[test]
fn processes_racing_to_setdefault_a_key_all_get_the_value_that_stays() {
    let _dog = Watchdog::arm(LIMIT, "setdefault race");
    const KEYS: usize = 1000;
    let d = SharedDict::<1024, 8, 8>::new().unwrap();
    let together = Shared::anonymous(Barrier::new(10).unwrap()).unwrap();
    let wrong = Shared::anonymous(AtomicU64::new(0)).unwrap();
    run_children(10, |i| {
        together.wait().unwrap();
        let got: Vec<Vec<u8>> = (0..KEYS)
            .map(|k| d.setdefault(format!("k{k}"), i.to_string()).unwrap())
            .collect();
        together.wait().unwrap();
        for (k, got) in got.iter().enumerate() {
            if d.get(format!("k{k}")).unwrap().as_ref() != Some(got) {
                wrong.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    assert_eq!(
        wrong.load(Ordering::SeqCst),
        0,
        "values given and then overwritten"
    );
    assert_eq!(d.len().unwrap(), KEYS);
}

fn unrelated_role() -> bool {
    if role().as_deref() != Some("mutex-adder") {
        return false;
    }
    let name = std::env::var("MP_NAME").unwrap();
    let m = Shared::<Mutex<u64>>::open(&name).unwrap();
    for _ in 0..ITERS {
        *m.lock().unwrap() += 1;
    }
    true
}

#[test]
fn unrelated_processes_share_a_named_mutex() {
    if unrelated_role() {
        return;
    }
    let _dog = Watchdog::arm(LIMIT, "unrelated_processes_share_a_named_mutex");
    let name = unique_name("sync-named");
    let m = Shared::new_in(Location::Named(&name), Mutex::new(0u64)).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| {
            reexec("unrelated_processes_share_a_named_mutex", "mutex-adder")
                .env("MP_NAME", &name)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for _ in 0..ITERS {
        *m.lock().unwrap() += 1;
    }
    for k in kids {
        let out = wait_command(k, LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(*m.lock().unwrap(), 3 * ITERS);
}

/// Sleeping ping-pong between two processes through a condition variable and
/// through two semaphores, with the owner check interval at a minute: each
/// sleep then ends only by a wake-up, so one lost wake-up hangs the test (and
/// the watchdog fails it) instead of costing a check interval.
#[test]
fn sleeping_hand_offs_lose_no_wake_up() {
    let _dog = Watchdog::arm(LIMIT, "sleeping_hand_offs_lose_no_wake_up");
    multiproc_sync::set_owner_check_interval(Duration::from_secs(60));
    const ROUNDS: u64 = 5_000;
    // A condition variable: the turn passes between the two.
    let turn = Shared::anonymous(Mutex::new(0u64)).unwrap();
    let changed = Shared::anonymous(Condvar::new()).unwrap();
    let play = |me: u64| {
        for r in 0..ROUNDS {
            let mut g = changed
                .wait_while(turn.lock().unwrap(), |t| *t % 2 != me)
                .unwrap();
            assert_eq!(*g, 2 * r + me);
            *g += 1;
            drop(g);
            changed.notify_one();
        }
    };
    let child = fork(|| {
        play(1);
        0
    });
    play(0);
    child.wait_ok(LIMIT);
    // Two semaphores: each side releases the other's.
    let ping = Shared::anonymous(Semaphore::new(0)).unwrap();
    let pong = Shared::anonymous(Semaphore::new(0)).unwrap();
    let child = fork(|| {
        for _ in 0..ROUNDS {
            ping.acquire();
            pong.release(1).unwrap();
        }
        0
    });
    for _ in 0..ROUNDS {
        ping.release(1).unwrap();
        pong.acquire();
    }
    child.wait_ok(LIMIT);
}
