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
//!
//! Once in a full CI run (a busy process beside it, left by mistake) a
//! stream's last sample never reached the subscriber although the publisher
//! had sent it, and the report waited for it for good. So every wait here
//! gives up after [`STALL`] without a sample: the round is dropped (NaN, which
//! the report leaves out), the child is let go or killed, and a line on stderr
//! says so.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::port::backpressure_strategy::BackpressureStrategy;
use iceoryx2::prelude::*;

use crate::{fork_child, wait_child};

/// How long a side waits for a sample before it gives the round up.
const STALL: Duration = Duration::from_secs(10);

/// Whether a side that spins on `receive` has waited [`STALL`] for a sample.
/// It reads the clock only after many empty looks in a row, so that a timed
/// loop does not pay for it.
#[derive(Default)]
struct Patience {
    empty: u32,
    since: Option<Instant>,
}

impl Patience {
    /// A look found nothing: whether to give up.
    fn empty(&mut self) -> bool {
        self.empty += 1;
        if self.empty < 1 << 16 {
            return false;
        }
        self.empty = 0;
        self.since.get_or_insert_with(Instant::now).elapsed() >= STALL
    }

    /// A look found a sample.
    fn got(&mut self) {
        self.empty = 0;
        self.since = None;
    }
}

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
        self.close();
        wait_child(child);
    }

    /// In the parent, after a round stalled (`what`): lets the child go, and
    /// kills it if it has not exited within [`STALL`] (it may be stuck in a
    /// send; its iceoryx2 files then stay behind); reaps it; NaN.
    fn give_up(self, child: libc::pid_t, what: &str) -> f64 {
        self.close();
        let deadline = Instant::now() + STALL;
        let mut killed = false;
        loop {
            // SAFETY: our child; a null status pointer is allowed.
            let r = unsafe { libc::waitpid(child, std::ptr::null_mut(), libc::WNOHANG) };
            if r != 0 {
                break;
            }
            if Instant::now() >= deadline && !killed {
                // SAFETY: our child, not reaped yet.
                unsafe { libc::kill(child, libc::SIGKILL) };
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        eprintln!(
            "report: iceoryx2 {what}: no sample for {STALL:?}; the round is left out{}",
            if killed {
                " (its publisher was killed: iceoryx2 files of it may remain in /dev/shm)"
            } else {
                ""
            }
        );
        f64::NAN
    }

    fn close(&self) {
        // SAFETY: closing our two descriptors; the child's read then returns 0.
        unsafe {
            libc::close(self.rd);
            libc::close(self.wr);
        }
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
        let deadline = Instant::now() + STALL;
        while send(0) == 0 {
            if Instant::now() >= deadline {
                release.wait();
                return;
            }
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
    let mut patience = Patience::default();
    loop {
        let Some(sample) = subscriber.receive().expect("receive") else {
            if patience.empty() {
                drop(subscriber);
                return release.give_up(child, "stream");
            }
            std::hint::spin_loop();
            continue;
        };
        patience.got();
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
        let mut patience = Patience::default();
        loop {
            let Some(m) = subscriber.receive().expect("receive") else {
                if patience.empty() {
                    break;
                }
                std::hint::spin_loop();
                continue;
            };
            patience.got();
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
    // Whether the reply `want` came (false: none for STALL).
    let mut patience = Patience::default();
    let mut reply = |want: u64| loop {
        if let Some(m) = subscriber.receive().expect("receive") {
            patience.got();
            if *m == want {
                return true;
            }
        } else if patience.empty() {
            return false;
        } else {
            std::hint::spin_loop();
        }
    };
    // Warm up until the child is connected both ways and has echoed a 0.
    let deadline = Instant::now() + STALL;
    'connected: loop {
        if Instant::now() >= deadline {
            drop((publisher, subscriber));
            return release.give_up(child, "round trip (connecting)");
        }
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
        if !reply(i) {
            drop((publisher, subscriber));
            return release.give_up(child, "round trip");
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    drop((publisher, subscriber));
    release.release(child);
    ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_given_up_lets_its_child_go_and_reaps_it() {
        let release = Release::new();
        let child = crate::fork_child(|| release.wait());
        assert!(release.give_up(child, "test").is_nan());
        // Reaped: no such child any more.
        // SAFETY: a null status pointer is allowed.
        let r = unsafe { libc::waitpid(child, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1);
    }

    #[test]
    fn patience_reads_the_clock_only_after_many_empty_looks() {
        let mut p = Patience::default();
        for _ in 0..(1 << 16) - 1 {
            assert!(!p.empty());
        }
        assert!(p.since.is_none(), "no clock read yet");
        assert!(!p.empty());
        assert!(p.since.is_some());
        p.got();
        assert!(p.since.is_none() && p.empty == 0);
        // A wait that began STALL ago gives up at the next reading.
        p.since = Some(Instant::now() - STALL);
        p.empty = (1 << 16) - 1;
        assert!(p.empty());
    }
}
