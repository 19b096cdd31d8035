//! Where a CPU-bound `pmap` spends its time beside the pool's `map`: the
//! pool's map, pmap, and pmap's fork+join alone, interleaved, medians.
use multiproc_bench::median;
use multiproc_bench::pool::{cpu_pmap, cpu_pool, cpu_sequential, pmap_fork_per_worker};

fn main() {
    let cpus = multiproc_proc::cpu_count();
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(400);
    let pool = multiproc_pool::Pool::new(cpus).expect("pool");
    let (mut p, mut m, mut f, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        m.push(cpu_pool(&pool, n));
        p.push(cpu_pmap(n, cpus));
        f.push(pmap_fork_per_worker(cpus, 5) * cpus as f64 / 1000.0);
        s.push(cpu_sequential(n / 4) * 4.0 / cpus as f64);
    }
    println!(
        "{n} items: pool map {:.2} ms, pmap {:.2} ms, pmap's forks {:.2} ms, sequential / cores {:.2} ms",
        median(&m),
        median(&p),
        median(&f),
        median(&s)
    );
}
