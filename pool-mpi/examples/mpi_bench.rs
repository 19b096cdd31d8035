//! The MPI pool's costs beside their floors, on 2 ranks of one machine:
//!
//! ```text
//! cargo build --release -p multiproc-pool-mpi --features mpi --example mpi_bench
//! mpirun --bind-to none -np 2 target/release/examples/mpi_bench pingpong  # bare rsmpi 8-byte round trip
//! mpirun --bind-to none -np 2 target/release/examples/mpi_bench pool      # the pool's rows
//! ```
//!
//! `pingpong` times 8-byte round trips between rank 0 and rank 1 with
//! rsmpi's blocking send and receive. `pool` times, on rank 0, alternating
//! the MPI pool (rank 1 serving with a local pool of 2) and a local pool of
//! the same size on rank 0: trivial `apply_async` tasks pipelined (in
//! windows of 64 in flight, and all submitted at once, then taken), a
//! blocking `apply`, and a CPU-bound `map` (items of about 100 µs). Each
//! prints `name value unit` lines, the median of its rounds; `--quick` is a
//! short run. `scripts/report` runs the two modes in alternation for its
//! `mpi` section (the bare round trip needs MPI to itself: one mpirun each).
//!
//! `--bind-to none`: mpirun binds each rank to one core by default when it
//! starts two, and a rank's local pool then runs all its workers on that
//! core.

use std::time::Instant;

use mpi::point_to_point::{Destination, Source};
use mpi::topology::Communicator;
use multiproc_pool::Pool;

fn trivial(x: u64) -> u64 {
    x + 1
}

/// About 100 µs of arithmetic.
fn busy(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..60_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn pingpong(quick: bool) {
    let universe = mpi::initialize().expect("MPI");
    let world = universe.world();
    let rounds = if quick { 2_000 } else { 20_000 };
    let mut buf = [0u8; 8];
    if world.rank() == 0 {
        let other = world.process_at_rank(1);
        for _ in 0..1000 {
            other.send(&buf[..]);
            other.receive_into(&mut buf[..]);
        }
        let t = Instant::now();
        for i in 0..rounds {
            buf[0] = i as u8;
            other.send(&buf[..]);
            other.receive_into(&mut buf[..]);
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(rounds);
        println!("pingpong_round_trip {ns:.0} ns");
    } else {
        let root = world.process_at_rank(0);
        for _ in 0..1000 + rounds {
            root.receive_into(&mut buf[..]);
            root.send(&buf[..]);
        }
    }
}

/// Nanoseconds per call of `f` over `n` calls.
fn per_call(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// `n` tasks, `window` in flight: submit a window, then take its results.
fn pipelined<H>(n: u64, window: u64, submit: impl Fn(u64) -> H, take: impl Fn(H) -> u64) -> f64 {
    let t = Instant::now();
    let mut sum = 0;
    for w in 0..n / window {
        let handles: Vec<H> = (w * window..(w + 1) * window).map(&submit).collect();
        sum += handles.into_iter().map(&take).sum::<u64>();
    }
    std::hint::black_box(sum);
    t.elapsed().as_nanos() as f64 / (n / window * window) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pool_rows(quick: bool) {
    let processes = 2;
    let pool = multiproc_pool_mpi::init_with(|| Pool::new(processes)).expect("init");
    let local = Pool::new(processes).expect("local pool");
    let (rounds, n, applies, items) = if quick {
        (2, 4_096, 1_000, 200)
    } else {
        (5, 20_480, 5_000, 2_000)
    };
    // Windows of 64 in flight, or (`n`) all submitted, then all taken, as
    // the local pool's own pipelined row is timed.
    let over_ranks_in = |window| {
        pipelined(
            n,
            window,
            |i| pool.apply_async(trivial, i).expect("apply_async"),
            |h| h.get().expect("get"),
        )
    };
    let on_local_in = |window| {
        pipelined(
            n,
            window,
            |i| local.apply_async(trivial, i).expect("apply_async"),
            |h| h.get().expect("get"),
        )
    };
    let over_ranks = || over_ranks_in(64);
    let on_local = || on_local_in(64);
    // Warm both.
    over_ranks();
    on_local();
    if let Some(only) = std::env::var_os("ONLY_ASYNC") {
        // For a profiler: the MPI pool's pipelined tasks alone, in windows
        // of 64 (`ONLY_ASYNC=burst`: all at once).
        let window = if only == "burst" { n } else { 64 };
        for _ in 0..20 {
            println!("apply_async_over_ranks {:.0} ns", over_ranks_in(window));
        }
        return;
    }
    if std::env::var_os("ONLY_APPLY").is_some() {
        // For a profiler: blocking applies over the ranks alone.
        for _ in 0..20 {
            let ns = per_call(applies, |i| {
                pool.apply(trivial, i).expect("apply");
            });
            println!("apply_over_ranks {ns:.0} ns");
        }
        return;
    }
    if std::env::var_os("ONLY_IMAP").is_some() {
        // For A/B runs: an ordered `imap` of trivial items over the ranks,
        // read ahead `processes` chunks (the default before) and more.
        let n: u64 = if quick { 2_000 } else { 20_000 };
        for _ in 0..rounds {
            for ahead in [pool.processes(), multiproc_pool::IMAP_BUFFER] {
                let s = Instant::now();
                let sum: u64 = pool
                    .imap_with(trivial, 0..n, 1, ahead)
                    .map(|r| r.expect("imap"))
                    .sum();
                assert_eq!(sum, n * (n + 1) / 2);
                let per = s.elapsed().as_nanos() as f64 / n as f64;
                println!("imap_over_ranks ahead {ahead}: {per:.0} ns an item");
            }
        }
        return;
    }
    let work: Vec<u64> = (0..items).collect();
    if let Some(only) = std::env::var_os("ONLY_MAP") {
        // For A/B runs: the CPU-bound map over the ranks and locally;
        // `ONLY_MAP=ranks`: 40 maps over the ranks alone (for a profiler).
        if only == "ranks" {
            for _ in 0..40 {
                let s = Instant::now();
                pool.map(busy, work.clone()).expect("map over ranks");
                println!("map_over_ranks {:.1} ms", s.elapsed().as_secs_f64() * 1e3);
            }
            return;
        }
        for _ in 0..rounds {
            let s = Instant::now();
            pool.map(busy, work.clone()).expect("map over ranks");
            let over = s.elapsed().as_secs_f64() * 1e3;
            let s = Instant::now();
            local.map(busy, work.clone()).expect("local map");
            let here = s.elapsed().as_secs_f64() * 1e3;
            println!(
                "map_over_ranks {over:.1} ms map_local {here:.1} ms ratio {:.3}",
                here / over
            );
        }
        return;
    }
    let mut t: [Vec<f64>; 8] = Default::default();
    let mut seq = Vec::new();
    for _ in 0..rounds {
        t[0].push(over_ranks());
        t[1].push(on_local());
        t[2].push(per_call(applies, |i| {
            pool.apply(trivial, i).expect("apply");
        }));
        t[3].push(per_call(applies, |i| {
            local.apply(trivial, i).expect("apply");
        }));
        let s = Instant::now();
        let a = pool.map(busy, work.clone()).expect("map over ranks");
        t[4].push(s.elapsed().as_secs_f64() * 1e3);
        let s = Instant::now();
        let b = local.map(busy, work.clone()).expect("local map");
        t[5].push(s.elapsed().as_secs_f64() * 1e3);
        assert_eq!(a, b);
        let s = Instant::now();
        for i in 0..items / 20 {
            std::hint::black_box(busy(i));
        }
        seq.push(s.elapsed().as_secs_f64() * 1e3 * 20.0);
        t[6].push(over_ranks_in(n));
        t[7].push(on_local_in(n));
    }
    let names = [
        ("apply_async_over_ranks", "ns"),
        ("apply_async_local", "ns"),
        ("apply_over_ranks", "ns"),
        ("apply_local", "ns"),
        ("map_over_ranks", "ms"),
        ("map_local", "ms"),
        ("apply_async_over_ranks_burst", "ns"),
        ("apply_async_local_burst", "ns"),
    ];
    for ((name, unit), samples) in names.iter().zip(t) {
        println!("{name} {:.1} {unit}", median(samples));
    }
    println!("map_sequential {:.1} ms", median(seq));
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mode = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    match mode.as_deref() {
        Some("pingpong") => pingpong(quick),
        Some("pool") | None => pool_rows(quick),
        Some(other) => panic!("unknown mode {other:?}: pingpong or pool"),
    }
}
