//! Start+join against raw fork+_exit+waitpid, rounds interleaved, with the page
//! faults each side takes per start+join (parent and child, from getrusage).
use multiproc_bench::{median, minor_faults as faults, raw_fork_exit_wait};
use multiproc_proc::Process;
use std::time::Instant;

fn round(n: u32, f: &dyn Fn()) -> (f64, f64, f64) {
    let (s0, c0) = (faults(libc::RUSAGE_SELF), faults(libc::RUSAGE_CHILDREN));
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let us = t.elapsed().as_nanos() as f64 / n as f64 / 1000.0;
    let (s1, c1) = (faults(libc::RUSAGE_SELF), faults(libc::RUSAGE_CHILDREN));
    (us, (s1 - s0) as f64 / n as f64, (c1 - c0) as f64 / n as f64)
}

fn main() {
    let ours = || {
        let mut p = Process::new(|| ());
        p.start().unwrap();
        p.join().unwrap();
    };
    // Many short interleaved rounds: the machine's speed drifts, so compare each
    // round with its neighbour and take the median ratio, and the best of each.
    let rounds = 30;
    let (mut bo, mut br) = (f64::MAX, f64::MAX);
    let mut ratios = Vec::new();
    let (mut fo, mut fr) = ((0.0, 0.0), (0.0, 0.0));
    for _ in 0..rounds {
        let o = round(100, &ours);
        let r = round(100, &raw_fork_exit_wait);
        bo = bo.min(o.0);
        br = br.min(r.0);
        ratios.push(o.0 / r.0);
        fo = (o.1, o.2);
        fr = (r.1, r.2);
    }
    println!(
        "best: ours {bo:.1} µs, raw {br:.1} µs: {:.3}x; median of {rounds} paired rounds {:.3}x; \
         faults per start+join: ours parent {:.1} child {:.1}, raw parent {:.1} child {:.1}",
        bo / br,
        median(&ratios),
        fo.0,
        fo.1,
        fr.0,
        fr.1
    );
}
