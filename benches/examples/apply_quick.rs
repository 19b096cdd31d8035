//! The pool's blocking `apply` (one task in flight) and pipelined
//! `apply_async`, trivial tasks, median of a few rounds: for A/B runs with
//! `scripts/ab` and for profiles (`perf record`).
use multiproc_bench::median;
use multiproc_bench::pool::{apply_async_pipelined, apply_one, bare_pipeline, trivial};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    // PROCS=N: a pool of N workers (default: one per CPU).
    let procs = std::env::var("PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(multiproc_proc::cpu_count);
    // DEPTH=N: each worker's inbox holds N tasks (default: the pool's).
    let mut builder = multiproc_pool::Pool::builder().processes(procs);
    if let Some(depth) = std::env::var("DEPTH").ok().and_then(|v| v.parse().ok()) {
        builder = builder.inbox_depth(depth);
    }
    let pool = builder.build().expect("pool");
    apply_one(&pool, 2_000);
    let (mut a, mut p) = (Vec::new(), Vec::new());
    // APPLY_ONLY=1: only the blocking apply (for a profile of it alone).
    // IDLE_MS=N: the pool idles N ms before each round.
    let only_apply = std::env::var_os("APPLY_ONLY").is_some();
    // ASYNC_ONLY=1: only the pipelined apply_async (for a profile of it).
    let only_async = std::env::var_os("ASYNC_ONLY").is_some();
    let idle = std::env::var("IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis);
    // FLOOR=1: the same tasks through the pool's queues alone, one thread
    // and as many forked workers, alternated with the pipelined rounds.
    let floor = std::env::var_os("FLOOR").is_some();
    let mut f = Vec::new();
    for _ in 0..5 {
        if let Some(idle) = idle {
            std::thread::sleep(idle);
        }
        if !only_async {
            a.push(apply_one(&pool, n / 5));
        }
        if !only_apply {
            p.push(apply_async_pipelined(&pool, n));
        }
        if floor {
            f.push(bare_pipeline(
                procs,
                std::env::var("DEPTH")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(multiproc_pool::DEFAULT_INBOX),
                n,
            ));
        }
    }
    if floor {
        println!("the queues alone (bare pipeline) {:.0} ns/task", median(&f));
    }
    if only_apply {
        println!("apply {:.0} ns (rounds {:.0?})", median(&a), a);
        return;
    }
    // WINDOWS=1: the pipelined tasks also in windows of 64, 1 024 and
    // 16 384 in flight (submitted, then taken), beside all n at once.
    if std::env::var_os("WINDOWS").is_some() {
        for window in [64, 1_024, 16_384] {
            let mut w = Vec::new();
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for start in (0..n).step_by(window) {
                    let handles: Vec<_> = (start..(start + window as u64).min(n))
                        .map(|i| pool.apply_async(trivial, i).expect("apply_async"))
                        .collect();
                    for h in handles {
                        std::hint::black_box(h.get().expect("get"));
                    }
                }
                w.push(t.elapsed().as_nanos() as f64 / n as f64);
            }
            println!("apply_async, {window} in flight: {:.0} ns/task", median(&w));
        }
    }
    if only_async {
        println!("apply_async pipelined {:.0} ns/task", median(&p));
        return;
    }
    println!(
        "apply {:.0} ns, apply_async pipelined {:.0} ns/task",
        median(&a),
        median(&p)
    );
}
