//! A quick look at the queue numbers (the report has them all, with ratios).
use multiproc_bench::queue::*;
use multiproc_bench::{best, interleaved, median};
fn main() {
    // `queue_quick pingpong`: spinning ping-pong against one bounced cache line,
    // a bare one-slot hand-off and two flags (one line each way), and ArrayQueue
    // between threads against the line between threads; median of 7
    // interleaved rounds (as the report), six times.
    // `queue_quick hop`: put then get in one thread, ours against ArrayQueue.
    // `queue_quick single`: only the single-message 1P→1C row beside the pipe,
    // best of 7 interleaved rounds (for comparing builds quickly).
    // `queue_quick pipe`: our Pipe (recv_bytes, recv_bytes_into) beside
    // Queue<u64> and a pipe. `queue_quick pipesizes`: Pipe with recv_bytes_into
    // at four capacity × message-size geometries.
    // `queue_quick spsc`: the 1P→1C row beside rtrb and beside rtrb with the
    // wake-up check a blocking queue adds to each put and get.
    match std::env::args().nth(1).as_deref() {
        Some("spsc-threads") => {
            let t = interleaved(
                7,
                &mut [&mut || ours_spsc_threads(2_000_000, 1024), &mut || {
                    rtrb_spsc(2_000_000, 1024)
                }],
            );
            let (ours, rtrb) = (best(&t[0]), best(&t[1]));
            println!(
                "SpscQueue {ours:.2} ns, rtrb {rtrb:.2} ns: {:.2}x",
                ours / rtrb
            );
            return;
        }
        Some("spsc-only") => {
            for _ in 0..5 {
                let t = interleaved(
                    7,
                    &mut [
                        &mut || ours_spsc(2_000_000, 1024, 1),
                        &mut || ours_spsc_try(2_000_000, 1024),
                        &mut || ours_spsc_threads(2_000_000, 1024),
                        &mut || rtrb_spsc(2_000_000, 1024),
                    ],
                );
                println!(
                    "SpscQueue {:.2} ns, try loops {:.2} ns, threads {:.2} ns, rtrb {:.2} ns",
                    best(&t[0]),
                    best(&t[1]),
                    best(&t[2]),
                    best(&t[3])
                );
            }
            return;
        }
        Some("spsc") => {
            for _ in 0..6 {
                let t = interleaved(
                    7,
                    &mut [
                        &mut || ours_1p1c(2_000_000, 1024, 1),
                        &mut || rtrb_spsc(2_000_000, 1024),
                        &mut || rtrb_spsc_with_wakeup_check(2_000_000, 1024),
                        &mut || ours_spsc(2_000_000, 1024, 1),
                    ],
                );
                let (ours, rtrb, checked) = (best(&t[0]), best(&t[1]), best(&t[2]));
                let spsc = best(&t[3]);
                println!(
                    "ours {ours:.2} ns, rtrb {rtrb:.2} ns ({:.2}x), rtrb + wake-up check \
                     {checked:.2} ns ({:.2}x), SpscQueue {spsc:.2} ns ({:.2}x rtrb)",
                    ours / rtrb,
                    ours / checked,
                    spsc / rtrb
                );
            }
            return;
        }
        Some("pingpong") => {
            for _ in 0..6 {
                let t = interleaved(
                    7,
                    &mut [
                        &mut || ours_ping_pong(50_000, u32::MAX),
                        &mut || cache_line_ping_pong(50_000),
                        &mut || arrayqueue_ping_pong(50_000),
                        &mut || cache_line_ping_pong_threads(50_000),
                        &mut || slot_handoff_ping_pong(50_000),
                        &mut || two_flags_ping_pong(50_000, false),
                    ],
                );
                let (ours, line) = (median(&t[0]), median(&t[1]));
                let (aq, line_t) = (median(&t[2]), median(&t[3]));
                let (handoff, flags) = (median(&t[4]), median(&t[5]));
                println!(
                    "ping-pong {ours:.1} ns, cache line {line:.1} ns: {:.2}x \
                     (bare slot hand-off {handoff:.1} ns: {:.2}x; two flags {flags:.1} ns: \
                     {:.2}x; ArrayQueue {aq:.1} ns, line between threads {line_t:.1} ns: {:.2}x)",
                    ours / line,
                    handoff / line,
                    flags / line,
                    aq / line_t
                );
            }
            return;
        }
        Some("hop") => {
            // What a hop of the ping-pong costs the CPU without the cache line
            // moving: put then get on a one-slot queue in one thread, each item
            // depending on the last, ours against ArrayQueue.
            const N: u64 = 5_000_000;
            let q = multiproc_queue::Queue::<u64>::new(1).expect("queue");
            let aq = crossbeam_queue::ArrayQueue::<u64>::new(1);
            let t = interleaved(
                7,
                &mut [
                    &mut multiproc_bench::timed(N, |n| {
                        let mut v = 0u64;
                        for _ in 0..n {
                            q.put(v).expect("put");
                            v = q.get().expect("get") + 1;
                        }
                        std::hint::black_box(v);
                    }),
                    &mut multiproc_bench::timed(N, |n| {
                        let mut v = 0u64;
                        for _ in 0..n {
                            aq.push(v).expect("push");
                            v = aq.pop().expect("pop") + 1;
                        }
                        std::hint::black_box(v);
                    }),
                ],
            );
            let (ours, aq) = (best(&t[0]), best(&t[1]));
            println!(
                "dependent put+get: ours {ours:.2} ns, ArrayQueue {aq:.2} ns: {:.2}x",
                ours / aq
            );
            return;
        }
        Some("pipe") => {
            // Best of 7 interleaved rounds.
            let t = interleaved(
                7,
                &mut [
                    &mut || ours_pipe(1_000_000, false),
                    &mut || ours_pipe(1_000_000, true),
                    &mut || ours_1p1c(2_000_000, 64, 1),
                    &mut || pipe_stream(200_000),
                ],
            );
            let [bytes, into, typed, pipe] = [0, 1, 2, 3].map(|i| best(&t[i]));
            println!(
                "Pipe recv_bytes {bytes:.1} ns/msg, recv_bytes_into {into:.1}, \
                 Queue<u64> (64 slots) {typed:.1}, pipe(2) {pipe:.1}: pipe/ours {:.1}x, {:.1}x",
                pipe / bytes,
                pipe / into
            );
            return;
        }
        Some("piperpc") => {
            let t = interleaved(
                7,
                &mut [
                    &mut || ours_pipe_round_trip(20_000),
                    &mut || ours_ping_pong(20_000, 200),
                    &mut || pipe_round_trip(20_000),
                ],
            );
            println!("Pipe request+reply {:?}", t[0]);
            println!("Queue ping-pong, default spins {:?}", t[1]);
            println!("two pipes {:?}", t[2]);
            return;
        }
        Some("spins") => {
            let limits = [200u32, 1000, 5000, 50_000, u32::MAX];
            let mut fs: Vec<Box<dyn FnMut() -> f64>> = limits
                .iter()
                .map(|&l| Box::new(move || ours_ping_pong(20_000, l)) as Box<dyn FnMut() -> f64>)
                .collect();
            let mut refs: Vec<&mut dyn FnMut() -> f64> = fs
                .iter_mut()
                .map(|f| f.as_mut() as &mut dyn FnMut() -> f64)
                .collect();
            let t = interleaved(5, &mut refs);
            for (l, r) in limits.iter().zip(&t) {
                println!(
                    "spin limit {l}: median {:.0} ns, rounds {:?}",
                    median(r),
                    r.iter().map(|x| *x as u64).collect::<Vec<_>>()
                );
            }
            return;
        }
        Some("pipesizes") => {
            let t = interleaved(
                5,
                &mut [
                    &mut || ours_pipe_sized(1_000_000, true, 64, 16384),
                    &mut || ours_pipe_sized(1_000_000, true, 64, 8),
                    &mut || ours_pipe_sized(1_000_000, true, 1024, 8),
                    &mut || ours_pipe_sized(1_000_000, true, 1024, 120),
                ],
            );
            println!(
                "64x16K {:.1}, 64x8 {:.1}, 1024x8 {:.1}, 1024x120 {:.1}",
                best(&t[0]),
                best(&t[1]),
                best(&t[2]),
                best(&t[3])
            );
            return;
        }
        Some("single") => {
            let t = interleaved(
                7,
                &mut [&mut || ours_1p1c(2_000_000, 1024, 1), &mut || {
                    pipe_stream(200_000)
                }],
            );
            let (ours, pipe) = (best(&t[0]), best(&t[1]));
            println!(
                "single {ours:.1} ns/msg, pipe {pipe:.1} ns/msg: {:.1}x",
                pipe / ours
            );
            return;
        }
        _ => {}
    }
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
