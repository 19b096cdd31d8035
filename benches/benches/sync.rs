//! Lock, semaphore and event hot paths beside their peers: `std::sync::Mutex`,
//! `parking_lot::Mutex`, process-shared (plain and robust) `pthread_mutex`, and
//! the floors under them (`BareLock`, `BareByteLock`).
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc_bench::{hammer, lock_handoff, BareByteLock, BareLock, PthreadMutex};
use multiproc_shm::Shared;
use multiproc_sync::{Event, Mutex, Semaphore};

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended lock+unlock");
    let ours = Shared::anonymous(Mutex::new(0u64)).unwrap();
    g.bench_function("multiproc Mutex (shared, owner-death recovery)", |b| {
        b.iter(|| *black_box(&ours).lock().unwrap() += 1)
    });
    let std_m = std::sync::Mutex::new(0u64);
    g.bench_function("std::sync::Mutex", |b| {
        b.iter(|| *black_box(&std_m).lock().unwrap() += 1)
    });
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot::Mutex", |b| {
        b.iter(|| *black_box(&pl).lock() += 1)
    });
    let p = PthreadMutex::new(false);
    g.bench_function("pthread_mutex (process-shared)", |b| {
        b.iter(|| {
            black_box(&p).increment();
        })
    });
    let r = PthreadMutex::new(true);
    g.bench_function("pthread_mutex (process-shared, robust)", |b| {
        b.iter(|| {
            black_box(&r).increment();
        })
    });
    let floor = BareLock::default();
    g.bench_function("the floor: a CAS and a swap, 4-byte word", |b| {
        b.iter(|| {
            black_box(&floor).increment();
        })
    });
    let byte_floor = BareByteLock::default();
    g.bench_function("parking_lot's floor: two CAS, 1-byte word", |b| {
        b.iter(|| {
            black_box(&byte_floor).increment();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("uncontended other");
    let s = Shared::anonymous(Semaphore::new(1)).unwrap();
    g.bench_function("multiproc Semaphore acquire+release", |b| {
        b.iter(|| {
            let _ = black_box(&s).try_acquire();
            s.release(1).unwrap();
        })
    });
    let e = Shared::anonymous(Event::new()).unwrap();
    g.bench_function("multiproc Event set+is_set", |b| {
        b.iter(|| {
            black_box(&e).set();
            black_box(e.is_set())
        })
    });
    g.finish();
}

fn two_processes(c: &mut Criterion) {
    let mut g = c.benchmark_group("two processes, one lock (per lock+unlock)");
    g.sample_size(20);
    let ours = Shared::anonymous(Mutex::new(0u64)).unwrap();
    g.bench_function("multiproc Mutex", |b| {
        b.iter_custom(|iters| {
            hammer(iters, |n| {
                for _ in 0..n {
                    *ours.lock().unwrap() += 1;
                }
            }) / 2
        })
    });
    let p = PthreadMutex::new(false);
    g.bench_function("pthread_mutex (process-shared)", |b| {
        b.iter_custom(|iters| {
            hammer(iters, |n| {
                for _ in 0..n {
                    p.increment();
                }
            }) / 2
        })
    });
    g.finish();
}

/// A lock held 1 µs by one process while another waits for it: nanoseconds per
/// hand-off beyond the hold.
fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock hand-off after 1 µs held");
    g.sample_size(10);
    let hold = std::time::Duration::from_micros(1);
    let total = |iters: u64, ns: f64| std::time::Duration::from_nanos((ns * iters as f64) as u64);
    let mut bench = |name: &str, critical: &dyn Fn(&dyn Fn())| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| total(iters, lock_handoff(iters.max(10), hold, critical)))
        });
    };
    let ours = Shared::anonymous(Mutex::new(0u64)).unwrap();
    bench("multiproc Mutex", &|f| {
        let _held = ours.lock().unwrap();
        f();
    });
    let p = PthreadMutex::new(false);
    bench("pthread_mutex (process-shared)", &|f| {
        p.lock();
        f();
        p.unlock();
    });
    g.finish();
}

criterion_group!(benches, uncontended, two_processes, handoff);
criterion_main!(benches);
