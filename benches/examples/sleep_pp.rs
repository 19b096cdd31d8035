//! Sleeping ping-pong against the raw futex round trip, interleaved, several times.
use multiproc_bench::queue::{futex_ping_pong, ours_ping_pong};
fn main() {
    for _ in 0..5 {
        let f = futex_ping_pong(20_000);
        let o = ours_ping_pong(20_000, 0);
        println!("futex {:8.0} ns  ours {:8.0} ns  ratio {:.2}", f, o, o / f);
    }
}
