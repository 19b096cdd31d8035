//! The pool's measures and its peers': Python's `multiprocessing.Pool`,
//! rayon, a sequential loop, raw `fork`.

use std::hint::black_box;
use std::time::Instant;

use multiproc_pool::{pmap_with, PmapOptions, Pool};
use rayon::prelude::*;

/// A trivial task.
pub fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// About `iters` dependent multiply-adds: the CPU-bound item (≈60 µs at
/// 100 000 on this machine's cores).
pub fn cpu_item(seed: u64) -> u64 {
    let mut h = seed | 1;
    for i in 0..100_000u64 {
        h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i) ^ (h >> 29);
    }
    h
}

/// Nanoseconds per blocking `apply` of a trivial task, one in flight.
pub fn apply_one(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        black_box(pool.apply(trivial, i).expect("apply"));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per task of `n` trivial `apply_async`s sent, then all taken.
pub fn apply_async_pipelined(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| pool.apply_async(trivial, i).expect("apply_async"))
        .collect();
    for h in handles {
        black_box(h.get().expect("get"));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per item of `map` over `n` trivial `u64` items (Python's chunking).
pub fn map_trivial(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    let out = pool.map(trivial, 0..n).expect("map");
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(out.len() as u64, n);
    dt
}

/// Nanoseconds per item of `pmap` over `n` trivial `u64` items (its forks
/// included: a millisecond or two, about a nanosecond an item here).
pub fn pmap_trivial(n: u64) -> f64 {
    let items: Vec<u64> = (0..n).collect();
    let t = Instant::now();
    let out = multiproc_pool::pmap(&items, |&x| trivial(x)).expect("pmap");
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(out.len() as u64, n);
    dt
}

/// Nanoseconds per item of rayon's `par_iter` over the same job.
pub fn rayon_trivial(n: u64) -> f64 {
    let items: Vec<u64> = (0..n).collect();
    let t = Instant::now();
    let out: Vec<u64> = items.par_iter().map(|&x| trivial(x)).collect();
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    black_box(out);
    dt
}

/// Milliseconds for `n` CPU-bound items: sequentially.
pub fn cpu_sequential(n: u64) -> f64 {
    let t = Instant::now();
    let out: Vec<u64> = (0..n).map(cpu_item).collect();
    black_box(out);
    t.elapsed().as_secs_f64() * 1e3
}

/// Milliseconds for `n` CPU-bound items through the pool's `map`.
pub fn cpu_pool(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    black_box(pool.map(cpu_item, 0..n).expect("map"));
    t.elapsed().as_secs_f64() * 1e3
}

/// Milliseconds for `n` CPU-bound items with rayon.
pub fn cpu_rayon(n: u64) -> f64 {
    let t = Instant::now();
    let out: Vec<u64> = (0..n).into_par_iter().map(cpu_item).collect();
    black_box(out);
    t.elapsed().as_secs_f64() * 1e3
}

/// Milliseconds for `n` CPU-bound items with `pmap` (workers forked per call).
pub fn cpu_pmap(n: u64, processes: usize) -> f64 {
    let items: Vec<u64> = (0..n).collect();
    let t = Instant::now();
    let out = pmap_with(
        &items,
        |&x| cpu_item(x),
        PmapOptions {
            processes,
            chunksize: 0,
            timeout: None,
        },
    )
    .expect("pmap");
    black_box(out);
    t.elapsed().as_secs_f64() * 1e3
}

/// Microseconds per worker of a `pmap` of one trivial item per worker: the
/// cost of forking, running and joining a worker.
pub fn pmap_fork_per_worker(processes: usize, calls: u32) -> f64 {
    let items: Vec<u64> = (0..processes as u64).collect();
    let t = Instant::now();
    for _ in 0..calls {
        black_box(
            pmap_with(
                &items,
                |&x| x,
                PmapOptions {
                    processes,
                    chunksize: 1,
                    timeout: None,
                },
            )
            .expect("pmap"),
        );
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(calls) / processes as f64
}

/// Python's `Pool(processes)`: nanoseconds per blocking `apply` of a trivial
/// function, per pipelined `apply_async`, and per item of `map` over `n_map`
/// items with its default chunks; `None` without `python3`.
pub fn python_pool(
    processes: usize,
    n_apply: u64,
    n_async: u64,
    n_map: u64,
) -> Option<(f64, f64, f64)> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def f(x): return x + 1\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   with mp.Pool({processes}) as p:\n\
         \x20       p.map(f, range(1000))\n\
         \x20       t = time.perf_counter()\n\
         \x20       for i in range({n_apply}): p.apply(f, (i,))\n\
         \x20       a = (time.perf_counter() - t) / {n_apply}\n\
         \x20       t = time.perf_counter()\n\
         \x20       rs = [p.apply_async(f, (i,)) for i in range({n_async})]\n\
         \x20       for r in rs: r.get()\n\
         \x20       b = (time.perf_counter() - t) / {n_async}\n\
         \x20       t = time.perf_counter()\n\
         \x20       p.map(f, range({n_map}))\n\
         \x20       c = (time.perf_counter() - t) / {n_map}\n\
         \x20   print(a * 1e9, b * 1e9, c * 1e9)\n"
    );
    let out = crate::run_python_line(&script)?;
    let v: Vec<f64> = out
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    (v.len() == 3).then(|| (v[0], v[1], v[2]))
}
