//! Where a CPU-bound map's time goes (the report's `CPU-bound map` row): after
//! the report's trivial rounds, six maps of 400 CPU-bound items, each printed
//! with, per worker, its items, when its first item started and its last
//! ended (ms from the map's start), the time its items took, and the CPUs it
//! ran on. The map's start is printed in `CLOCK_MONOTONIC` ns, to find it in
//! `perf record -k CLOCK_MONOTONIC -e sched:sched_switch -e sched:sched_wakeup -a`.
use multiproc_bench::monotonic_ns as mono_ns;
use multiproc_bench::pool::*;

fn timed_item(x: u64) -> (u32, i32, u64, u64) {
    let t0 = mono_ns();
    std::hint::black_box(cpu_item(x));
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    (std::process::id(), cpu, t0, mono_ns())
}

fn main() {
    let cpus = multiproc_proc::cpu_count();
    let pool = multiproc_pool::Pool::new(cpus).expect("pool");
    apply_one(&pool, 2_000);
    for _ in 0..5 {
        apply_one(&pool, 20_000);
        apply_async_pipelined(&pool, 100_000);
        map_trivial(&pool, 1_000_000);
        rayon_trivial(1_000_000);
        pmap_trivial(1_000_000);
    }
    for _ in 0..6 {
        let s = cpu_sequential(400);
        let start = mono_ns();
        let out = pool.map(timed_item, 0..400u64).expect("map");
        let end = mono_ns();
        let ms = |t: u64| (t.saturating_sub(start)) as f64 / 1e6;
        let mut pids: Vec<u32> = out.iter().map(|o| o.0).collect();
        pids.sort();
        pids.dedup();
        let mut line = format!(
            "at {start} map {:.1} ms (seq/cores {:.1}):",
            ms(end),
            s / cpus as f64
        );
        for p in pids {
            let mine: Vec<_> = out.iter().filter(|o| o.0 == p).collect();
            let busy: u64 = mine.iter().map(|o| o.3 - o.2).sum();
            let cpus: std::collections::BTreeSet<i32> = mine.iter().map(|o| o.1).collect();
            line += &format!(
                " [{} items, first {:.2}, last {:.2}, busy {:.1} ms, cpus {:?}]",
                mine.len(),
                ms(mine.iter().map(|o| o.2).min().unwrap()),
                ms(mine.iter().map(|o| o.3).max().unwrap()),
                busy as f64 / 1e6,
                cpus
            );
        }
        println!("{line}");
        cpu_rayon(400);
        cpu_pmap(400, cpus);
    }
}
