//! A duplex `Pipe`'s request+reply of 8 bytes, both ends spinning, for several
//! ring shapes (`pipe_with(true, capacity, max_inline)`), beside two
//! `Queue<u64>` of one slot each: medians of 7 runs, for finding where a
//! Pipe's round trip goes (`scripts/ab` for A/B runs).
use multiproc_bench::median;
use multiproc_bench::queue::{ours_ping_pong, ours_pipe_round_trip_shaped};

fn main() {
    for (capacity, max_inline) in [
        (1usize, 8usize),
        (64, 8),
        (64, 64),
        (1, 16 << 10),
        (64, 16 << 10),
    ] {
        let v: Vec<f64> = (0..7)
            .map(|_| ours_pipe_round_trip_shaped(50_000, Some(u32::MAX), capacity, max_inline))
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
