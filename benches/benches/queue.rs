//! Queue and Pipe throughput and latency beside crossbeam's ArrayQueue and
//! rtrb (threads), a pipe, Unix socket pairs and ipc-channel; round trips
//! beside their floors (a cache line, two flags, a bare futex).
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc_bench::queue::{
    arrayqueue, arrayqueue_ping_pong, cache_line_ping_pong, cache_line_ping_pong_threads,
    crossbeam_channel_ping_pong, futex_ping_pong, ipc_channel_round_trip, ipc_channel_stream,
    ours_1p1c, ours_mpmc, ours_ping_pong, ours_ping_pong_default, ours_pipe, ours_pipe_large,
    ours_pipe_round_trip, ours_pipe_round_trip_spinning, ours_spsc, ours_spsc_threads,
    pipe_round_trip, pipe_shape_ping_pong, pipe_stream, pipe_stream_large, queues_ping_pong,
    rtrb_spsc, rtrb_spsc_with_wakeup_check, slot_handoff_ping_pong, two_flags_ping_pong,
    unix_socket_stream, unix_stream_large,
};

/// Turns a per-item cost in ns into criterion's total for `iters`.
fn total(iters: u64, ns_per: f64) -> Duration {
    Duration::from_nanos((ns_per * iters as f64) as u64)
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("1 producer -> 1 consumer, 8-byte messages (per message)");
    g.sample_size(10);
    g.bench_function("multiproc Queue, processes", |b| {
        b.iter_custom(|iters| total(iters, ours_1p1c(iters.max(1000), 1024, 1)))
    });
    g.bench_function("multiproc Queue, processes, batches of 32", |b| {
        b.iter_custom(|iters| total(iters, ours_1p1c(iters.max(1024) / 32 * 32, 1024, 32)))
    });
    g.bench_function("multiproc SpscQueue, processes", |b| {
        b.iter_custom(|iters| total(iters, ours_spsc(iters.max(1000), 1024, 1)))
    });
    g.bench_function("multiproc SpscQueue, processes, batches of 32", |b| {
        b.iter_custom(|iters| total(iters, ours_spsc(iters.max(1024) / 32 * 32, 1024, 32)))
    });
    g.bench_function("multiproc SpscQueue, threads", |b| {
        b.iter_custom(|iters| total(iters, ours_spsc_threads(iters.max(1000), 1024)))
    });
    g.bench_function("multiproc Pipe, processes, recv_bytes", |b| {
        b.iter_custom(|iters| total(iters, ours_pipe(iters.max(1000), false)))
    });
    g.bench_function("multiproc Pipe, processes, recv_bytes_into", |b| {
        b.iter_custom(|iters| total(iters, ours_pipe(iters.max(1000), true)))
    });
    g.bench_function("crossbeam ArrayQueue, threads", |b| {
        b.iter_custom(|iters| total(iters, arrayqueue(iters.max(1000), 1, 1, 1024)))
    });
    g.bench_function("pipe, processes", |b| {
        b.iter_custom(|iters| total(iters, pipe_stream(iters.max(1000))))
    });
    g.bench_function("ipc-channel bytes channel, processes", |b| {
        b.iter_custom(|iters| total(iters, ipc_channel_stream(iters.max(1000))))
    });
    g.bench_function("rtrb SPSC ring, threads", |b| {
        b.iter_custom(|iters| total(iters, rtrb_spsc(iters.max(1000), 1024)))
    });
    g.bench_function("rtrb + a wake-up check a message, threads", |b| {
        b.iter_custom(|iters| total(iters, rtrb_spsc_with_wakeup_check(iters.max(1000), 1024)))
    });
    g.bench_function("Unix socket pair (stream), processes", |b| {
        b.iter_custom(|iters| total(iters, unix_socket_stream(iters.max(1000), false)))
    });
    g.bench_function("Unix socket pair (seqpacket), processes", |b| {
        b.iter_custom(|iters| total(iters, unix_socket_stream(iters.max(1000), true)))
    });
    #[cfg(feature = "iceoryx2")]
    g.bench_function("iceoryx2 publish-subscribe (u64), processes", |b| {
        b.iter_custom(|iters| {
            total(
                iters,
                multiproc_bench::iceoryx2_peer::stream_8b(iters.max(1000)),
            )
        })
    });
    g.finish();

    #[cfg(feature = "iceoryx2")]
    {
        let mut g = c.benchmark_group("1 KiB messages, one producer process to one consumer");
        g.sample_size(10);
        g.bench_function("multiproc Pipe", |b| {
            b.iter_custom(|iters| total(iters, 1024.0 * ours_pipe_large(1024, iters.max(1000))))
        });
        g.bench_function("iceoryx2 publish-subscribe ([u64; 128])", |b| {
            b.iter_custom(|iters| {
                total(
                    iters,
                    multiproc_bench::iceoryx2_peer::stream_1k(iters.max(1000)),
                )
            })
        });
        g.finish();
    }

    // The report's size sweep: per message of each size, beside a pipe(2) and a
    // Unix stream socket carrying writes of the same size.
    let mut g = c.benchmark_group("messages by size, one producer process to one consumer");
    g.sample_size(10);
    for size in [64usize, 1 << 10, 64 << 10, 1 << 20] {
        let per_message = |ns_per_byte: f64| ns_per_byte * size as f64;
        g.bench_function(format!("multiproc Pipe, {size} B"), |b| {
            b.iter_custom(|iters| total(iters, per_message(ours_pipe_large(size, iters.max(10)))))
        });
        g.bench_function(format!("pipe(2), {size} B"), |b| {
            b.iter_custom(|iters| total(iters, per_message(pipe_stream_large(size, iters.max(10)))))
        });
        g.bench_function(format!("Unix stream socket, {size} B"), |b| {
            b.iter_custom(|iters| total(iters, per_message(unix_stream_large(size, iters.max(10)))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ping-pong round trip between two processes");
    g.sample_size(10);
    g.bench_function("multiproc Queue, spinning", |b| {
        b.iter_custom(|iters| total(iters, ours_ping_pong(iters.max(100), u32::MAX)))
    });
    g.bench_function("multiproc Queue, default waiting", |b| {
        b.iter_custom(|iters| total(iters, ours_ping_pong_default(iters.max(100))))
    });
    g.bench_function("multiproc Queue of 64 slots, spinning", |b| {
        b.iter_custom(|iters| {
            total(
                iters,
                queues_ping_pong(iters.max(100), Some(u32::MAX), 64, |i| i),
            )
        })
    });
    g.bench_function("one cache line", |b| {
        b.iter_custom(|iters| total(iters, cache_line_ping_pong(iters.max(100))))
    });
    g.bench_function("bare one-slot hand-off", |b| {
        b.iter_custom(|iters| total(iters, slot_handoff_ping_pong(iters.max(100))))
    });
    g.bench_function("two flags, one line each way", |b| {
        b.iter_custom(|iters| total(iters, two_flags_ping_pong(iters.max(100), false)))
    });
    g.bench_function("two flags in one line", |b| {
        b.iter_custom(|iters| total(iters, two_flags_ping_pong(iters.max(100), true)))
    });
    #[cfg(feature = "iceoryx2")]
    g.bench_function("iceoryx2, two publish-subscribe services, spinning", |b| {
        b.iter_custom(|iters| {
            total(
                iters,
                multiproc_bench::iceoryx2_peer::round_trip(iters.max(100)),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("request+reply of 8 bytes between two processes");
    g.sample_size(10);
    g.bench_function("multiproc Pipe, default waiting", |b| {
        b.iter_custom(|iters| total(iters, ours_pipe_round_trip(iters.max(100))))
    });
    g.bench_function("multiproc Pipe, spinning", |b| {
        b.iter_custom(|iters| {
            total(
                iters,
                ours_pipe_round_trip_spinning(iters.max(100), Some(u32::MAX)),
            )
        })
    });
    g.bench_function(
        "two flags, a Pipe's 64 lines in turn (its shape, bare)",
        |b| b.iter_custom(|iters| total(iters, pipe_shape_ping_pong(iters.max(100)))),
    );
    g.bench_function("two pipes, blocking reads", |b| {
        b.iter_custom(|iters| total(iters, pipe_round_trip(iters.max(100))))
    });
    g.bench_function("ipc-channel, two channels", |b| {
        b.iter_custom(|iters| total(iters, ipc_channel_round_trip(iters.max(100))))
    });
    g.finish();

    // Both sides asleep between messages: ours against the bare futex
    // wake/wait it stands on.
    let mut g = c.benchmark_group("ping-pong round trip between two processes, sleeping");
    g.sample_size(10);
    g.bench_function("multiproc Queue, no spinning", |b| {
        b.iter_custom(|iters| total(iters, ours_ping_pong(iters.max(100), 0)))
    });
    g.bench_function("raw futex wake/wait", |b| {
        b.iter_custom(|iters| total(iters, futex_ping_pong(iters.max(100))))
    });
    g.finish();

    let mut g = c.benchmark_group("2 producers -> 2 consumers, 8-byte messages (per message)");
    g.sample_size(10);
    g.bench_function("multiproc Queue, processes", |b| {
        b.iter_custom(|iters| total(iters, ours_mpmc(iters.max(1000).div_ceil(2), 2, 2, 1024)))
    });
    g.bench_function("crossbeam ArrayQueue, threads", |b| {
        b.iter_custom(|iters| total(iters, arrayqueue(iters.max(1000).div_ceil(2), 2, 2, 1024)))
    });
    g.finish();

    // Default waiting beside a process that keeps one CPU busy (the report's
    // row "a busy process beside"). At least 2 000 round trips a sample: each
    // run starts a fresh process, whose first yields may each lose a time
    // slice to the busy one before its waits learn to sleep instead.
    let mut g = c.benchmark_group("ping-pong round trip, default waiting, beside a busy process");
    g.sample_size(10);
    let busy = multiproc_bench::BusyProcess::start();
    g.bench_function("multiproc Queue, processes", |b| {
        b.iter_custom(|iters| total(iters, ours_ping_pong_default(iters.max(2_000))))
    });
    g.bench_function("crossbeam-channel bounded(1), recv, threads", |b| {
        b.iter_custom(|iters| total(iters, crossbeam_channel_ping_pong(iters.max(2_000), false)))
    });
    drop(busy);
    g.finish();

    // The peer's own distance from its floor, between threads.
    let mut g = c.benchmark_group("ping-pong round trip between two threads");
    g.sample_size(10);
    g.bench_function("crossbeam ArrayQueue, spinning", |b| {
        b.iter_custom(|iters| total(iters, arrayqueue_ping_pong(iters.max(100))))
    });
    g.bench_function("crossbeam-channel bounded(1), spinning", |b| {
        b.iter_custom(|iters| total(iters, crossbeam_channel_ping_pong(iters.max(100), true)))
    });
    g.bench_function("crossbeam-channel bounded(1), recv", |b| {
        b.iter_custom(|iters| total(iters, crossbeam_channel_ping_pong(iters.max(100), false)))
    });
    g.bench_function("one cache line", |b| {
        b.iter_custom(|iters| total(iters, cache_line_ping_pong_threads(iters.max(100))))
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
