//! Request+reply through two `Queue<u64>` of `capacity` slots each, and
//! through a `Pipe` of as many slots each way, both ends spinning, the
//! shapes alternated, medians of seven: whether a round trip pays for the
//! ring's size. `CAPS=1,16,64` (the capacities), `INLINE=N` (the Pipe's
//! slot size, default 16 KiB), `WIDE=1` (queues of 56-byte messages, a slot
//! a 64-byte line, in place of `u64`s). What it found is in
//! `benches/NOTES.md` ("what a ring's size costs a request+reply").
use multiproc_bench::fork_running_child;
use multiproc_bench::median;
use multiproc_bench::queue::ours_pipe_round_trip_shaped;
use multiproc_queue::Queue;
use std::time::Instant;

/// Nanoseconds per round trip of `n` messages through two queues of
/// `capacity` slots (messages made by `make`) between two processes.
fn queues<T: multiproc_shm::ShmSafe + Copy + Send + 'static>(
    n: u64,
    capacity: usize,
    make: fn(u64) -> T,
) -> f64 {
    let mut ping = Queue::<T>::new(capacity).expect("queue");
    let mut pong = Queue::<T>::new(capacity).expect("queue");
    ping.set_spin_limit(u32::MAX);
    pong.set_spin_limit(u32::MAX);
    let child = fork_running_child(|| {
        for _ in 0..n {
            let v = ping.get().expect("get");
            pong.put(v).expect("put");
        }
    });
    let t = Instant::now();
    for i in 0..n {
        ping.put(make(i)).expect("put");
        std::hint::black_box(pong.get().expect("get"));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    multiproc_bench::wait_child(child);
    ns
}

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
                queues::<[u64; 7]>(50_000, c, |i| [i; 7])
            } else {
                queues::<u64>(50_000, c, |i| i)
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
