//! One SPSC bench alone, for `perf record` of one side, or all three
//! interleaved for `scripts/ab`: `spsc_solo ours|rtrb|procs|all [messages]`
//! (ours and rtrb between threads, procs: `SpscQueue` between processes;
//! all: best of five interleaved rounds of each, and the ratios to rtrb).
use multiproc_bench::queue::{ours_spsc, ours_spsc_threads, rtrb_spsc};
use multiproc_bench::{best, interleaved};

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let ns = match which.as_str() {
        "rtrb" => rtrb_spsc(n, 1024),
        "procs" => ours_spsc(n, 1024, 1),
        "all" => {
            let t = interleaved(
                5,
                &mut [
                    &mut || ours_spsc(n, 1024, 1),
                    &mut || ours_spsc_threads(n, 1024),
                    &mut || rtrb_spsc(n, 1024),
                ],
            );
            let (p, th, r) = (best(&t[0]), best(&t[1]), best(&t[2]));
            println!(
                "processes {p:.2} ns ({:.2}x rtrb), threads {th:.2} ns ({:.2}x), rtrb {r:.2} ns",
                p / r,
                th / r
            );
            return;
        }
        _ => ours_spsc_threads(n, 1024),
    };
    println!("{which}: {ns:.2} ns a message");
}
