//! Times the pool's `starmap` of 1 M pairs of `u64`s, a `map` returning
//! `(u64, u32)` pairs, one returning `bool`s and the `map` of 1 M trivial
//! `u64`s beside them (raw tuples against raw numbers; for perf and A/B runs
//! of builds).
//!
//! Run: `cargo run --release -p multiproc-bench --example tuples_quick`
//! (`WHAT=star|pair|bool|map`, default `star`; `R=` rounds, default 10; `CH=` a
//! chunk size for the `starmap`, Python's by default; `LANE=` the pool's lane
//! bytes, `Builder::lane_bytes`).
use multiproc_bench::pool::{add_pair, trivial};
use multiproc_pool::Pool;

fn pair(a: u64) -> (u64, u32) {
    (a, a as u32)
}

fn odd(a: u64) -> bool {
    a % 2 == 1
}

fn main() {
    let mut builder = Pool::builder();
    if let Some(lane) = std::env::var("LANE").ok().and_then(|v| v.parse().ok()) {
        builder = builder.lane_bytes(lane);
    }
    let pool = builder.build().expect("pool");
    let n = 1_000_000u64;
    let what = std::env::var("WHAT").unwrap_or_else(|_| "star".to_owned());
    let chunk: Option<usize> = std::env::var("CH").ok().and_then(|v| v.parse().ok());
    let rounds = std::env::var("R")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        let len = match (what.as_str(), chunk) {
            ("pair", _) => pool.map(pair, 0..n).expect("map").len(),
            ("bool", _) => pool.map(odd, 0..n).expect("map").len(),
            ("map", _) => pool.map(trivial, 0..n).expect("map").len(),
            (_, Some(c)) => {
                let pairs = (0..n).map(|i| (i, i >> 1));
                pool.starmap_chunked(add_pair, pairs, c)
                    .expect("starmap")
                    .len()
            }
            _ => {
                let pairs = (0..n).map(|i| (i, i >> 1));
                pool.starmap(add_pair, pairs).expect("starmap").len()
            }
        };
        assert_eq!(len as u64, n);
        println!(
            "{what} {:.2} ns/item",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
