//! Queue and Pipe throughput and latency beside crossbeam's ArrayQueue and
//! rtrb (threads), a pipe, Unix socket pairs and ipc-channel.
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc_bench::queue::{
    arrayqueue, arrayqueue_ping_pong, cache_line_ping_pong, cache_line_ping_pong_threads,
    ipc_channel_stream, ours_1p1c, ours_ping_pong, ours_pipe, pipe_stream, rtrb_spsc,
    slot_handoff_ping_pong, two_flags_ping_pong, unix_socket_stream,
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
    g.bench_function("Unix socket pair (stream), processes", |b| {
        b.iter_custom(|iters| total(iters, unix_socket_stream(iters.max(1000), false)))
    });
    g.bench_function("Unix socket pair (seqpacket), processes", |b| {
        b.iter_custom(|iters| total(iters, unix_socket_stream(iters.max(1000), true)))
    });
    g.finish();

    let mut g = c.benchmark_group("ping-pong round trip between two processes");
    g.sample_size(10);
    g.bench_function("multiproc Queue, spinning", |b| {
        b.iter_custom(|iters| total(iters, ours_ping_pong(iters.max(100), u32::MAX)))
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
    g.finish();

    // The peer's own distance from its floor, between threads.
    let mut g = c.benchmark_group("ping-pong round trip between two threads");
    g.sample_size(10);
    g.bench_function("crossbeam ArrayQueue, spinning", |b| {
        b.iter_custom(|iters| total(iters, arrayqueue_ping_pong(iters.max(100))))
    });
    g.bench_function("one cache line", |b| {
        b.iter_custom(|iters| total(iters, cache_line_ping_pong_threads(iters.max(100))))
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
