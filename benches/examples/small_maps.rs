//! Small maps in a loop, as a user of Python's `Pool.map` writes them:
//! microseconds a `map` of `N` trivial items (default 10), in chunks of
//! `CHUNK` (0, the default: Python's size), on a pool of `PROCS` workers (0,
//! the default: one per CPU). `IMAP=1`: an `imap` of the items instead (its
//! tasks are single items, sent one at a time as they are read). For A/B
//! runs of the pool's choice of worker (`benches/NOTES.md`, "A small map
//! woke a sleeping worker", "Small `imap`s").
//!
//! Run: `cargo run --release -p multiproc-bench --example small_maps -- N CHUNK PROCS`
use multiproc_bench::pool::{small_calls, trivial};
use std::hint::black_box;

fn main() {
    let arg = |i: usize, default: u64| -> u64 {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (n, chunk, procs) = (arg(1, 10), arg(2, 0) as usize, arg(3, 0) as usize);
    let pool = multiproc_pool::Pool::new(procs).expect("pool");
    let imap = std::env::var_os("IMAP").is_some();
    let what = if imap { "imap" } else { "map" };
    let reps = 20_000;
    for _ in 0..3 {
        let us = if imap || chunk == 0 {
            small_calls(&pool, n, reps, imap)
        } else {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                black_box(pool.map_chunked(trivial, 0..n, chunk).expect("map"));
            }
            t.elapsed().as_nanos() as f64 / f64::from(reps) / 1e3
        };
        println!("n={n} chunk={chunk}: {what} {us:.1} us");
    }
}
