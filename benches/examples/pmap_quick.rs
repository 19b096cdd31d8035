//! `pmap`'s fork+join cost per worker against a raw fork+_exit+waitpid, rounds
//! interleaved, the median ratio of paired rounds (the speed of fork swings
//! from one round to the next here), and the same for a CPU-bound job against
//! the pool's `map`. For A/B runs with `scripts/ab`.
use multiproc_bench::pool::{cpu_pmap, cpu_pool, pmap_fork_per_worker};
use multiproc_bench::{median, ns_per_iter, raw_fork_exit_wait};

fn main() {
    let cpus = multiproc_proc::cpu_count();
    let mut fork_ratios = Vec::new();
    for _ in 0..30 {
        let ours = pmap_fork_per_worker(cpus, 20);
        let raw = ns_per_iter(1, 40, |n| (0..n).for_each(|_| raw_fork_exit_wait())) / 1000.0;
        fork_ratios.push(ours / raw);
    }
    let pool = multiproc_pool::Pool::new(cpus).expect("pool");
    let mut cpu_ratios = Vec::new();
    for _ in 0..7 {
        let on_pool = cpu_pool(&pool, 400);
        let on_pmap = cpu_pmap(400, cpus);
        cpu_ratios.push(on_pmap / on_pool);
    }
    println!(
        "pmap fork+join per worker / raw fork: median {:.3}x; CPU-bound pmap / pool map: median {:.3}x",
        median(&fork_ratios),
        median(&cpu_ratios)
    );
}
