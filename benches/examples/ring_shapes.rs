//! Request+reply through two `Queue<u64>` of `capacity` slots each, and
//! through a `Pipe` of as many slots each way, both ends spinning, the
//! shapes alternated, medians of seven: whether a round trip pays for the
//! ring's size. `CAPS=1,16,64` (the capacities), `INLINE=N` (the Pipe's
//! slot size, default 16 KiB), `WIDE=1` (queues of 56-byte messages, a slot
//! a 64-byte line, in place of `u64`s). What it found is in
//! `benches/NOTES.md` ("what a ring's size costs a request+reply").
use multiproc_bench::median;
use multiproc_bench::queue::{ours_pipe_round_trip_shaped, queues_ping_pong};

fn main() {
    let caps: Vec<usize> = std::env::var("CAPS")
        .unwrap_or_else(|_| "1,64".into())
        .split(',')
        .map(|c| c.parse().expect("a number"))
        .collect();
    let inline: usize = std::env::var("INLINE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16 << 10);
    // WIDE=1: queues of 56-byte messages (a slot a 64-byte line).
    let wide = std::env::var_os("WIDE").is_some();
    let mut q: Vec<Vec<f64>> = vec![Vec::new(); caps.len()];
    let mut p: Vec<Vec<f64>> = vec![Vec::new(); caps.len()];
    for _ in 0..7 {
        for (i, &c) in caps.iter().enumerate() {
            q[i].push(if wide {
                queues_ping_pong::<[u64; 7]>(50_000, Some(u32::MAX), c, |i| [i; 7])
            } else {
                queues_ping_pong::<u64>(50_000, Some(u32::MAX), c, |i| i)
            });
            p[i].push(ours_pipe_round_trip_shaped(
                50_000,
                Some(u32::MAX),
                c,
                inline,
            ));
        }
    }
    for (i, &c) in caps.iter().enumerate() {
        println!(
            "{c} slots: two queues {:.0} ns, Pipe ({inline} B slots) {:.0} ns",
            median(&q[i]),
            median(&p[i])
        );
    }
}
