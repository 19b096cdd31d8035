//! iceoryx2, the zero-copy IPC library, as a peer: its publish-subscribe
//! between two processes, streaming (8 bytes and 1 KiB) and as a spinning
//! round trip through two services. Built only with the `iceoryx2` feature
//! (it needs libclang for bindgen).
//!
//! Each side makes its own node after the fork (an iceoryx2 node is not meant
//! to be inherited). iceoryx2 drops samples sent before a subscriber has
//! connected, so the publisher sends warm-up samples (sequence 0) until one is
//! delivered, and timing starts at the first real sample. The subscriber's
//! buffer is bounded and overflow is off, with the publisher retrying until
//! delivered: no sample is lost, as through our queue. The publishing child
//! keeps its ports until the parent has everything (a pipe(2) it reads from),
//! so that no sample in flight goes with a dropped publisher.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::port::backpressure_strategy::BackpressureStrategy;
use iceoryx2::prelude::*;

use crate::{fork_child, wait_child};

/// A service name no other run uses.
fn name(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "multiproc-bench/{}/{what}/{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn node() -> Node<ipc::Service> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .expect("iceoryx2 node")
}

/// Opens (or makes: whichever side comes first) a publish-subscribe service
/// with the same settings on both sides.
fn service<T: Debug + ZeroCopySend + 'static>(
    node: &Node<ipc::Service>,
    name: &str,
    depth: usize,
) -> iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, T, ()> {
    let name: ServiceName = name.try_into().expect("a valid service name");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match node
            .service_builder(&name)
            .publish_subscribe::<T>()
            .enable_safe_overflow(false)
            .subscriber_max_buffer_size(depth)
            .history_size(0)
            .open_or_create()
        {
            Ok(s) => return s,
            // The other side is making it at this moment.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => panic!("iceoryx2 service {name}: {e:?}"),
        }
    }
}

/// A pipe(2) the parent closes when the child may drop its ports and exit.
struct Release {
    rd: i32,
    wr: i32,
}

impl Release {
    fn new() -> Release {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid out-array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        Release {
            rd: fds[0],
            wr: fds[1],
        }
    }

    /// In the child: blocks until the parent releases it.
    fn wait(&self) {
        let mut b = 0u8;
        // SAFETY: closing our copy of the write end, then reading one byte into b.
        unsafe {
            libc::close(self.wr);
            libc::read(self.rd, (&raw mut b).cast(), 1);
        }
    }

    /// In the parent: lets the child go and reaps it.
    fn release(self, child: libc::pid_t) {
        // SAFETY: closing our two descriptors; the child's read then returns 0.
        unsafe {
            libc::close(self.rd);
            libc::close(self.wr);
        }
        wait_child(child);
    }
}

/// Nanoseconds per message: `n` payloads made by `make(sequence)` from a child
/// publishing to the parent subscribing, which reads each one's sequence back
/// with `seq`.
fn stream<T: Debug + ZeroCopySend + 'static>(
    n: u64,
    make: fn(u64) -> T,
    seq: fn(&T) -> u64,
) -> f64 {
    const DEPTH: usize = 256;
    let service_name = name("stream");
    let release = Release::new();
    let child = fork_child(|| {
        let node = node();
        let service = service::<T>(&node, &service_name, DEPTH);
        let publisher = service
            .publisher_builder()
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .expect("iceoryx2 publisher");
        let send = |i| {
            let sample = publisher.loan_uninit().expect("loan");
            sample.write_payload(make(i)).send().expect("send")
        };
        while send(0) == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
        for i in 1..=n {
            send(i);
        }
        release.wait();
    });
    let node = node();
    let service = service::<T>(&node, &service_name, DEPTH);
    let subscriber = service
        .subscriber_builder()
        .create()
        .expect("iceoryx2 subscriber");
    let mut start = None;
    loop {
        let Some(sample) = subscriber.receive().expect("receive") else {
            std::hint::spin_loop();
            continue;
        };
        let s = seq(&sample);
        if s == 1 {
            start = Some(Instant::now());
        }
        if s == n {
            break;
        }
    }
    let ns = start
        .expect("sample 1 came before sample n")
        .elapsed()
        .as_nanos() as f64
        / (n.max(2) - 1) as f64;
    drop(subscriber);
    release.release(child);
    ns
}

/// Nanoseconds per 8-byte message (a `u64`) through iceoryx2 publish-subscribe
/// from one process to another.
pub fn stream_8b(n: u64) -> f64 {
    stream::<u64>(n, |i| i, |s| *s)
}

/// Nanoseconds per 1 KiB message (a `[u64; 128]`, its first word the sequence).
pub fn stream_1k(n: u64) -> f64 {
    stream::<[u64; 128]>(
        n,
        |i| {
            let mut m = [i; 128];
            m[0] = i;
            m
        },
        |s| s[0],
    )
}

/// Nanoseconds per request and reply of 8 bytes: the parent publishes on one
/// service, the child echoes on another; both spin on `receive`.
pub fn round_trip(n: u64) -> f64 {
    let (there, back) = (name("ping"), name("pong"));
    let release = Release::new();
    let child = fork_child(|| {
        let node = node();
        let ping = service::<u64>(&node, &there, 16);
        let pong = service::<u64>(&node, &back, 16);
        let subscriber = ping.subscriber_builder().create().expect("subscriber");
        let publisher = pong
            .publisher_builder()
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .expect("publisher");
        loop {
            let Some(m) = subscriber.receive().expect("receive") else {
                std::hint::spin_loop();
                continue;
            };
            let v = *m;
            drop(m);
            let reply = publisher.loan_uninit().expect("loan");
            reply.write_payload(v).send().expect("send");
            if v == n {
                break;
            }
        }
        release.wait();
    });
    let node = node();
    let ping = service::<u64>(&node, &there, 16);
    let pong = service::<u64>(&node, &back, 16);
    let publisher = ping
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("publisher");
    let subscriber = pong.subscriber_builder().create().expect("subscriber");
    let send = |i| {
        let m = publisher.loan_uninit().expect("loan");
        m.write_payload(i).send().expect("send")
    };
    let reply = |want: u64| loop {
        if let Some(m) = subscriber.receive().expect("receive") {
            if *m == want {
                return;
            }
        } else {
            std::hint::spin_loop();
        }
    };
    // Warm up until the child is connected both ways and has echoed a 0.
    'connected: loop {
        if send(0) > 0 {
            let until = Instant::now() + Duration::from_millis(5);
            while Instant::now() < until {
                if let Some(m) = subscriber.receive().expect("receive") {
                    if *m == 0 {
                        break 'connected;
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let t = Instant::now();
    for i in 1..=n {
        send(i);
        reply(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    drop((publisher, subscriber));
    release.release(child);
    ns
}
