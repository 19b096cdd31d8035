//! A duplex `Pipe`'s request+reply of 8 bytes, both ends spinning, for several
//! ring shapes (`pipe_with(true, capacity, max_inline)`), beside two
//! `Queue<u64>` of one slot each: medians of 7 runs, for finding where a
//! Pipe's round trip goes (`scripts/ab` for A/B runs).
use std::time::Instant;

use multiproc_bench::queue::ours_ping_pong;
use multiproc_bench::{fork_running_child, median, wait_child};

fn round_trip(n: u64, capacity: usize, max_inline: usize) -> f64 {
    let (mut a, mut b) = multiproc_queue::pipe_with(true, capacity, max_inline).expect("pipe");
    a.set_spin_limit(u32::MAX);
    b.set_spin_limit(u32::MAX);
    let child = fork_running_child(|| {
        let mut buf = Vec::new();
        for _ in 0..n {
            b.recv_bytes_into(&mut buf).expect("recv");
            b.send_bytes(&buf).expect("send");
        }
    });
    let mut buf = Vec::new();
    let t = Instant::now();
    for i in 0..n {
        a.send_bytes(&i.to_ne_bytes()).expect("send");
        a.recv_bytes_into(&mut buf).expect("recv");
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

fn main() {
    for (capacity, max_inline) in [
        (1usize, 8usize),
        (64, 8),
        (64, 64),
        (1, 16 << 10),
        (64, 16 << 10),
    ] {
        let v: Vec<f64> = (0..7)
            .map(|_| round_trip(50_000, capacity, max_inline))
            .collect();
        println!(
            "Pipe, {capacity} slots of {max_inline} B: {:.0} ns per round trip",
            median(&v)
        );
    }
    let v: Vec<f64> = (0..7).map(|_| ours_ping_pong(50_000, u32::MAX)).collect();
    println!(
        "two Queue<u64> of one slot: {:.0} ns per round trip",
        median(&v)
    );
}
