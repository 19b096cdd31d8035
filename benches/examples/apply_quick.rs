//! The pool's blocking `apply` (one task in flight) and pipelined
//! `apply_async`, trivial tasks, median of a few rounds: for A/B runs with
//! `scripts/ab` and for profiles (`perf record`).
use multiproc_bench::median;
use multiproc_bench::pool::{apply_async_pipelined, apply_one};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let pool = multiproc_pool::Pool::new(multiproc_proc::cpu_count()).expect("pool");
    apply_one(&pool, 2_000);
    let (mut a, mut p) = (Vec::new(), Vec::new());
    // APPLY_ONLY=1: only the blocking apply (for a profile of it alone).
    // IDLE_MS=N: the pool idles N ms before each round.
    let only_apply = std::env::var_os("APPLY_ONLY").is_some();
    let idle = std::env::var("IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis);
    for _ in 0..5 {
        if let Some(idle) = idle {
            std::thread::sleep(idle);
        }
        a.push(apply_one(&pool, n / 5));
        if !only_apply {
            p.push(apply_async_pipelined(&pool, n));
        }
    }
    if only_apply {
        println!("apply {:.0} ns", median(&a));
        return;
    }
    println!(
        "apply {:.0} ns, apply_async pipelined {:.0} ns/task",
        median(&a),
        median(&p)
    );
}
