//! The MPI pool's costs beside their floors, on 2 ranks of one machine:
//!
//! ```text
//! cargo build --release -p multiproc-pool-mpi --features mpi --example mpi_bench
//! mpirun -np 2 target/release/examples/mpi_bench pingpong   # bare rsmpi 8-byte round trip
//! mpirun -np 2 target/release/examples/mpi_bench pool       # the pool's rows
//! ```
//!
//! `pingpong` times 8-byte round trips between rank 0 and rank 1 with
//! rsmpi's blocking send and receive. `pool` times, on rank 0: trivial
//! `apply_async` tasks pipelined over the ranks and over a local pool of the
//! same size; and a CPU-bound `map` (items of about 50 µs) over the ranks
//! and over the local pool. Each prints `name value unit` lines; run the
//! two modes in alternation to compare (benches/NOTES.md).

use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, Source};
use mpi::topology::Communicator;
use multiproc_pool::Pool;

fn trivial(x: u64) -> u64 {
    x + 1
}

/// About 50 µs of arithmetic.
fn busy(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..60_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn pingpong() {
    let universe = mpi::initialize().expect("MPI");
    let world = universe.world();
    let rounds = 20_000;
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

fn per_task(f: impl Fn(u64) -> u64, n: u64) -> f64 {
    let t = Instant::now();
    let mut sum = 0;
    for i in 0..n {
        sum += f(i);
    }
    std::hint::black_box(sum);
    t.elapsed().as_nanos() as f64 / n as f64
}

fn pool_rows() {
    let processes = 2;
    let pool = multiproc_pool_mpi::init_with(|| Pool::new(processes)).expect("init");
    let local = Pool::new(processes).expect("local pool");
    let n = 20_000u64;
    let window = 64;
    // Pipelined trivial tasks: `window` in flight.
    let pipelined = |apply: &dyn Fn(u64) -> Box<dyn FnOnce() -> u64>| {
        per_task(
            |i| {
                if i % window == 0 {
                    let handles: Vec<_> = (i..i + window).map(apply).collect();
                    handles.into_iter().map(|h| h()).sum()
                } else {
                    0
                }
            },
            n,
        )
    };
    let over_ranks = |i| -> Box<dyn FnOnce() -> u64> {
        let h = pool.apply_async(trivial, i).expect("apply_async");
        Box::new(move || h.get().expect("get"))
    };
    let on_local = |i| -> Box<dyn FnOnce() -> u64> {
        let h = local.apply_async(trivial, i).expect("apply_async");
        Box::new(move || h.get().expect("get"))
    };
    pipelined(&over_ranks);
    pipelined(&on_local);
    for round in 0..3 {
        let a = pipelined(&over_ranks);
        let b = pipelined(&on_local);
        println!("round {round}: apply_async_over_ranks {a:.0} ns, apply_async_local {b:.0} ns");
    }
    let one = per_task(|i| pool.apply(trivial, i).expect("apply"), 5000);
    println!("apply_over_ranks {one:.0} ns");
    // CPU-bound map: 2000 items of ~50 µs.
    let t = Instant::now();
    for i in 0..1000 {
        std::hint::black_box(busy(i));
    }
    let item = t.elapsed() / 1000;
    println!("busy_item {:.1} us", item.as_secs_f64() * 1e6);
    let items: Vec<u64> = (0..2000).collect();
    for round in 0..3 {
        let t = Instant::now();
        let a = pool.map(busy, items.clone()).expect("map over ranks");
        let over_ranks = t.elapsed();
        let t = Instant::now();
        let b = local.map(busy, items.clone()).expect("local map");
        let on_local = t.elapsed();
        assert_eq!(a, b);
        let ideal = item * 2000 / processes as u32;
        println!(
            "round {round}: map_over_ranks {:.1} ms, map_local {:.1} ms, ideal {:.1} ms, throughput ratio {:.2}",
            ms(over_ranks),
            ms(on_local),
            ms(ideal),
            on_local.as_secs_f64() / over_ranks.as_secs_f64()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("pingpong") => pingpong(),
        Some("pool") | None => pool_rows(),
        Some(other) => panic!("unknown mode {other:?}: pingpong or pool"),
    }
}
