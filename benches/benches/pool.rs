//! The pool's hot paths beside their peers (the report's pool rows at finer
//! grain): a blocking `apply` beside the queue round trip it stands on and
//! Python's `Pool.apply`; an `apply` of 1 MiB of bytes (a `ByteBuf`, a
//! `Vec<u8>`) beside Python's; pipelined `apply_async` beside Python's and beside
//! its floor (the same tasks through the pool's queues alone); `map` of
//! trivial items (Python's chunks, and chunks of 2 000) beside rayon and
//! Python's `Pool.map`; a CPU-bound map beside a sequential loop and rayon;
//! `pmap` beside the pool's `map` and its forks beside a raw fork; small
//! `map`s and `imap`s of 10 items in a loop beside Python's. Python's
//! rows are skipped, saying so, without `python3`.
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use multiproc_bench::pool::{
    add_pair, apply_async_pipelined, apply_async_recycled, apply_async_windows, apply_worker_death,
    bare_pipeline, buf_len, bytes_len, cpu_item, cpu_pmap, map_floor, pmap_fork_per_worker,
    python_apply_bytes, python_pool, python_recycled, python_small_calls, python_starmap,
    python_worker_death, small_calls, trivial,
};
use multiproc_bench::queue::ours_ping_pong_default;
use multiproc_bench::raw_fork_exit_wait;
use multiproc_bench::BusyProcess;
use multiproc_pool::Pool;
use rayon::prelude::*;

/// Turns a per-item cost in ns into criterion's total for `iters`.
fn total(iters: u64, ns_per: f64) -> Duration {
    Duration::from_nanos((ns_per * iters as f64) as u64)
}

/// Items of the trivial map (the report's row).
const MAP_ITEMS: u64 = 1_000_000;
/// Items of the CPU-bound map (the report's row: about 60 µs each).
const CPU_ITEMS: u64 = 400;

/// Whether `python3` runs, said once when it does not.
fn python() -> bool {
    let there = multiproc_bench::run_python_line("print(1)").is_some();
    if !there {
        eprintln!("skipped: Python's rows need python3 (apt-get install python3)");
    }
    there
}

/// First, while this process is small and has one thread: a fork copies the
/// caller's page tables and, with other threads running (a pool's), shoots
/// down their TLBs, so after the groups below (a pool, maps of a million
/// items) every fork here took 20-30 ms.
fn forks(c: &mut Criterion) {
    let procs = multiproc_proc::cpu_count();
    let mut g = c.benchmark_group("pmap: fork, run and join one worker (per worker)");
    g.sample_size(20);
    g.bench_function("multiproc pmap, one trivial item per worker", |b| {
        b.iter_custom(|iters| {
            let calls = u32::try_from(iters.div_ceil(procs as u64).max(1)).unwrap_or(u32::MAX);
            total(iters, pmap_fork_per_worker(procs, calls) * 1e3)
        })
    });
    g.bench_function("raw fork+_exit+waitpid", |b| b.iter(raw_fork_exit_wait));
    g.finish();
}

fn pool_calls(c: &mut Criterion) {
    let procs = multiproc_proc::cpu_count();
    let pool = Pool::new(procs).expect("pool");
    let has_python = python();

    let mut g = c.benchmark_group("pool: blocking apply of a trivial task (per task)");
    g.sample_size(20);
    g.bench_function("multiproc Pool.apply", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(pool.apply(trivial, i).expect("apply"))
        })
    });
    // What a task cannot beat: one request and its reply through two queues
    // between two processes, waiting the queues' default way.
    g.bench_function("the floor: request+reply through two Queue<u64>", |b| {
        b.iter_custom(|iters| total(iters, ours_ping_pong_default(iters.max(1_000))))
    });
    if has_python {
        g.bench_function("Python Pool.apply", |b| {
            b.iter_custom(|iters| {
                let (ns, _, _) =
                    python_pool(procs, iters.clamp(100, 5_000), 1, 1).expect("python3 ran before");
                total(iters, ns)
            })
        });
    }
    g.finish();

    // Idle, then beside a process that keeps one CPU busy (the report's rows
    // "a busy process beside"; Python's pool slows down more there).
    for (name, busy, python_most) in [
        (
            "pool: pipelined apply_async, trivial tasks (per task)",
            false,
            100_000,
        ),
        (
            "pool: pipelined apply_async beside a busy process, trivial tasks (per task)",
            true,
            10_000,
        ),
    ] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        let _busy = busy.then(BusyProcess::start);
        g.bench_function("multiproc Pool.apply_async", |b| {
            b.iter_custom(|iters| total(iters, apply_async_pipelined(&pool, iters.max(10_000))))
        });
        // The same in windows of 64 (submitted, then taken): the report's
        // row "apply_async, windows of 64".
        g.bench_function("multiproc Pool.apply_async, windows of 64", |b| {
            b.iter_custom(|iters| total(iters, apply_async_windows(&pool, iters.max(6_400), 64)))
        });
        // The floor: the same tasks through the pool's queues alone.
        if !busy {
            g.bench_function("the pool's queues alone, one thread", |b| {
                b.iter_custom(|iters| {
                    total(
                        iters,
                        bare_pipeline(procs, multiproc_pool::DEFAULT_INBOX, iters.max(10_000)),
                    )
                })
            });
        }
        if has_python {
            g.bench_function("Python Pool.apply_async", |b| {
                b.iter_custom(|iters| {
                    let (_, ns, _) = python_pool(procs, 1, iters.clamp(1_000, python_most), 1)
                        .expect("python3 ran before");
                    total(iters, ns)
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("pool: apply_async, workers replaced after each task (per task)");
    g.sample_size(10);
    g.bench_function("multiproc Pool, maxtasksperchild(1)", |b| {
        b.iter_custom(|iters| {
            total(
                iters,
                apply_async_recycled(procs, iters.clamp(100, 2_000)) * 1e3,
            )
        })
    });
    if has_python {
        g.bench_function("Python Pool, maxtasksperchild=1", |b| {
            b.iter_custom(|iters| {
                let us = python_recycled(procs, iters.clamp(100, 400)).expect("python3 ran before");
                total(iters, us * 1e3)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pool: a task that kills its worker, until the error");
    g.sample_size(10);
    g.bench_function("multiproc Pool.apply, WorkerDied (the pool goes on)", |b| {
        b.iter_custom(|iters| {
            total(
                iters,
                apply_worker_death(&pool, iters.clamp(5, 40) as usize) * 1e3,
            )
        })
    });
    if has_python {
        g.bench_function("Python ProcessPoolExecutor, BrokenProcessPool", |b| {
            b.iter_custom(|iters| {
                let us = python_worker_death(procs, iters.clamp(5, 20) as usize)
                    .expect("python3 ran before");
                total(iters, us * 1e3)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pool: apply of 1 MiB of bytes");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(1 << 20));
    let bytes = vec![7u8; 1 << 20];
    g.bench_function("multiproc Pool.apply, a serde_bytes::ByteBuf", |b| {
        b.iter(|| {
            let arg = serde_bytes::ByteBuf::from(bytes.clone());
            black_box(pool.apply(buf_len, arg).expect("apply"))
        })
    });
    g.bench_function("multiproc Pool.apply, a Vec<u8>", |b| {
        b.iter(|| black_box(pool.apply(bytes_len, bytes.clone()).expect("apply")))
    });
    if has_python {
        g.bench_function("Python Pool.apply, bytes", |b| {
            b.iter_custom(|iters| {
                let us = python_apply_bytes(procs, 1 << 20, 20).expect("python3 ran before");
                total(iters, us * 1e3)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pool: small calls in a loop, 10 trivial items (per call)");
    g.sample_size(20);
    for (name, imap) in [("multiproc Pool.map", false), ("multiproc Pool.imap", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let calls = u32::try_from(iters).unwrap_or(u32::MAX);
                total(iters, small_calls(&pool, 10, calls, imap) * 1e3)
            })
        });
    }
    if has_python {
        for (name, imap) in [("Python Pool.map", false), ("Python Pool.imap", true)] {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let calls = u32::try_from(iters.clamp(20, 2_000)).unwrap_or(2_000);
                    let (map, imap_us) =
                        python_small_calls(procs, 10, calls).expect("python3 ran before");
                    total(iters, if imap { imap_us } else { map } * 1e3)
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("pool: map of 1 000 000 trivial u64 items");
    g.sample_size(10);
    g.throughput(Throughput::Elements(MAP_ITEMS));
    g.bench_function("multiproc Pool.map", |b| {
        b.iter(|| black_box(pool.map(trivial, 0..MAP_ITEMS).expect("map")))
    });
    // The floor: the same job through shared memory alone, the workers
    // forked before (the report's peer of its map row).
    g.bench_function("the map's floor: shared memory alone", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    Duration::from_nanos((map_floor(procs, MAP_ITEMS) * MAP_ITEMS as f64) as u64)
                })
                .sum()
        })
    });
    g.bench_function("multiproc Pool.map, chunks of 2 000", |b| {
        b.iter(|| black_box(pool.map_chunked(trivial, 0..MAP_ITEMS, 2_000).expect("map")))
    });
    g.bench_function("multiproc pmap (its forks included)", |b| {
        let items: Vec<u64> = (0..MAP_ITEMS).collect();
        b.iter(|| black_box(multiproc_pool::pmap(&items, |&x| trivial(x)).expect("pmap")))
    });
    g.bench_function("rayon par_iter (threads)", |b| {
        let items: Vec<u64> = (0..MAP_ITEMS).collect();
        b.iter(|| {
            let out: Vec<u64> = items.par_iter().map(|&x| trivial(x)).collect();
            black_box(out)
        })
    });
    if has_python {
        g.bench_function("Python Pool.map, default chunks", |b| {
            b.iter_custom(|iters| {
                let (_, _, ns) = python_pool(procs, 1, 1, MAP_ITEMS).expect("python3 ran before");
                total(iters, ns * MAP_ITEMS as f64)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pool: starmap of 1 000 000 pairs of u64");
    g.sample_size(10);
    g.throughput(Throughput::Elements(MAP_ITEMS));
    g.bench_function("multiproc Pool.starmap", |b| {
        b.iter(|| {
            let pairs = (0..MAP_ITEMS).map(|i| (i, i >> 1));
            black_box(pool.starmap(add_pair, pairs).expect("starmap"))
        })
    });
    g.bench_function("multiproc Pool.map of u64 (the same count)", |b| {
        b.iter(|| black_box(pool.map(trivial, 0..MAP_ITEMS).expect("map")))
    });
    if has_python {
        g.bench_function("Python Pool.starmap, default chunks", |b| {
            b.iter_custom(|iters| {
                let ns = python_starmap(procs, MAP_ITEMS).expect("python3 ran before");
                total(iters, ns * MAP_ITEMS as f64)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pool: CPU-bound map, 400 items of about 60 µs");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CPU_ITEMS));
    g.bench_function("multiproc Pool.map", |b| {
        b.iter(|| black_box(pool.map(cpu_item, 0..CPU_ITEMS).expect("map")))
    });
    g.bench_function("multiproc pmap (its forks included)", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| Duration::from_secs_f64(cpu_pmap(CPU_ITEMS, procs) / 1e3))
                .sum()
        })
    });
    g.bench_function("rayon par_iter (threads)", |b| {
        b.iter(|| {
            let out: Vec<u64> = (0..CPU_ITEMS).into_par_iter().map(cpu_item).collect();
            black_box(out)
        })
    });
    g.bench_function("sequential loop (÷ cores for the speed-up)", |b| {
        b.iter(|| {
            let out: Vec<u64> = (0..CPU_ITEMS).map(cpu_item).collect();
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, forks, pool_calls);
criterion_main!(benches);
