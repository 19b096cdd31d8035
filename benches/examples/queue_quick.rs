//! A quick look at the queue numbers (the report has them all, with ratios).
use multiproc_bench::queue::*;
fn main() {
    for _ in 0..2 {
        println!(
            "ours 1p1c single   {:8.1} ns/msg",
            ours_1p1c(2_000_000, 1024, 1)
        );
        println!(
            "ours 1p1c batch32  {:8.1} ns/msg",
            ours_1p1c(4_000_000, 1024, 32)
        );
        println!(
            "arrayqueue 1p1c    {:8.1} ns/msg",
            arrayqueue(2_000_000, 1, 1, 1024)
        );
        println!("pipe               {:8.1} ns/msg", pipe_stream(200_000));
        println!(
            "ours 2p2c          {:8.1} ns/msg",
            ours_mpmc(500_000, 2, 2, 1024)
        );
        println!(
            "arrayqueue 2p2c    {:8.1} ns/msg",
            arrayqueue(500_000, 2, 2, 1024)
        );
        println!(
            "ping-pong spin     {:8.1} ns/rt",
            ours_ping_pong(100_000, u32::MAX)
        );
        println!(
            "cache line         {:8.1} ns/rt",
            cache_line_ping_pong(100_000)
        );
        println!("ping-pong sleep    {:8.1} ns/rt", ours_ping_pong(20_000, 0));
        println!("futex rt           {:8.1} ns/rt", futex_ping_pong(20_000));
    }
}
