//! Times the pool's map of 1 M trivial u64 items a few times (for perf).
//!
//! Run: `cargo run --release -p multiproc-bench --example pool_map_quick`
use multiproc_bench::pool::{map_trivial, rayon_trivial};
use multiproc_pool::Pool;

fn main() {
    let pool = Pool::new(0).expect("pool");
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    for _ in 0..10 {
        println!(
            "map {:.1} ns/item, rayon {:.2} ns/item",
            map_trivial(&pool, n),
            rayon_trivial(n)
        );
    }
}
