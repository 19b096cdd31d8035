//! The queue and its peers, each measured the same way: a producer and a consumer
//! (processes for ours, the pipe and Python; threads for crossbeam's ArrayQueue),
//! started together, timed until the consumer has everything.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use multiproc_queue::{Queue, SpscQueue};
use multiproc_shm::Shared;

use crate::{fork_child, fork_running_child, wait_child};

/// Nanoseconds per message: one producer process → one consumer process through
/// our queue, 8-byte messages, single `put`/`get` (or batches of `batch`).
pub fn ours_1p1c(n: u64, capacity: usize, batch: usize) -> f64 {
    let q = Queue::<u64>::new(capacity).expect("queue");
    let go = Shared::anonymous(AtomicU32::new(0)).expect("flag");
    let child = fork_child(|| {
        go.fetch_add(1, Ordering::SeqCst);
        if batch <= 1 {
            for i in 0..n {
                q.put(i).expect("put");
            }
        } else {
            let items: Vec<u64> = (0..batch as u64).collect();
            for _ in 0..n / batch as u64 {
                q.put_many(&items).expect("put_many");
            }
        }
    });
    while go.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    if batch <= 1 {
        for _ in 0..n {
            std::hint::black_box(q.get().expect("get"));
        }
    } else {
        let mut out = Vec::with_capacity(batch);
        let mut got = 0;
        while got < (n / batch as u64) * batch as u64 {
            out.clear();
            got += q.get_many(&mut out, batch).expect("get_many") as u64;
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// Nanoseconds per 8-byte message through an `SpscQueue<u64>` of `capacity`
/// slots, from a forked child (the producer) to this process (the consumer),
/// with blocking `put` and `get` (`batch` ≤ 1), or `put_many`/`get_many` of
/// `batch` items.
pub fn ours_spsc(n: u64, capacity: usize, batch: usize) -> f64 {
    let q = SpscQueue::<u64>::new(capacity).expect("queue");
    let mut rx = q.consumer().expect("consumer");
    let go = Shared::anonymous(AtomicU32::new(0)).expect("flag");
    let n = if batch <= 1 {
        n
    } else {
        n / batch as u64 * batch as u64
    };
    let child = fork_child(|| {
        let mut tx = q.producer().expect("producer");
        go.fetch_add(1, Ordering::SeqCst);
        if batch <= 1 {
            for i in 0..n {
                tx.put(i).expect("put");
            }
        } else {
            let items: Vec<u64> = (0..batch as u64).collect();
            for _ in 0..n / batch as u64 {
                tx.put_many(&items).expect("put_many");
            }
        }
    });
    while go.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    if batch <= 1 {
        for _ in 0..n {
            std::hint::black_box(rx.get().expect("get"));
        }
    } else {
        let mut out = Vec::with_capacity(batch);
        let mut got = 0;
        while got < n {
            out.clear();
            got += rx.get_many(&mut out, batch).expect("get_many") as u64;
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// As [`ours_spsc`], between two threads of this process (rtrb's setting).
pub fn ours_spsc_threads(n: u64, capacity: usize) -> f64 {
    let q = SpscQueue::<u64>::new(capacity).expect("queue");
    let mut rx = q.consumer().expect("consumer");
    let mut tx = q.producer().expect("producer");
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..n {
                tx.put(i).expect("put");
            }
        });
        for _ in 0..n {
            std::hint::black_box(rx.get().expect("get"));
        }
    });
    t.elapsed().as_nanos() as f64 / n as f64
}

/// As [`ours_spsc`], with `try_put`/`try_get` in spinning loops (rtrb's bench).
pub fn ours_spsc_try(n: u64, capacity: usize) -> f64 {
    let q = SpscQueue::<u64>::new(capacity).expect("queue");
    let mut rx = q.consumer().expect("consumer");
    let go = Shared::anonymous(AtomicU32::new(0)).expect("flag");
    let child = fork_child(|| {
        let mut tx = q.producer().expect("producer");
        go.fetch_add(1, Ordering::SeqCst);
        for i in 0..n {
            while tx.try_put(i).is_err() {
                std::hint::spin_loop();
            }
        }
    });
    while go.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    let mut got = 0;
    while got < n {
        match rx.try_get() {
            Ok(v) => {
                std::hint::black_box(v);
                got += 1;
            }
            Err(_) => std::hint::spin_loop(),
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// Nanoseconds per message: `producers` producer and `consumers` consumer processes.
pub fn ours_mpmc(n_per_producer: u64, producers: usize, consumers: usize, capacity: usize) -> f64 {
    let q = Queue::<u64>::new(capacity).expect("queue");
    let ready = Shared::anonymous(AtomicU32::new(0)).expect("flag");
    let left = Shared::anonymous(AtomicU64::new(n_per_producer * producers as u64)).expect("count");
    let parties = (producers + consumers) as u32;
    let wait_go = || {
        ready.fetch_add(1, Ordering::SeqCst);
        while ready.load(Ordering::SeqCst) < parties + 1 {
            std::hint::spin_loop();
        }
    };
    let mut kids = Vec::new();
    for _ in 0..producers {
        kids.push(fork_child(|| {
            wait_go();
            for i in 0..n_per_producer {
                q.put(i).expect("put");
            }
        }));
    }
    for _ in 0..consumers {
        kids.push(fork_child(|| {
            wait_go();
            while left.load(Ordering::Relaxed) > 0 {
                if q.get_timeout(Duration::from_millis(1)).is_ok() {
                    left.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }));
    }
    while ready.load(Ordering::SeqCst) < parties {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    ready.fetch_add(1, Ordering::SeqCst);
    for k in kids {
        wait_child(k);
    }
    t.elapsed().as_nanos() as f64 / (n_per_producer * producers as u64) as f64
}

/// Nanoseconds per message through crossbeam's `ArrayQueue` between threads,
/// spinning when full or empty (it has no blocking).
pub fn arrayqueue(n_per_producer: u64, producers: usize, consumers: usize, capacity: usize) -> f64 {
    let q = ArrayQueue::<u64>::new(capacity);
    let left = AtomicU64::new(n_per_producer * producers as u64);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..producers {
            s.spawn(|| {
                for i in 0..n_per_producer {
                    let mut v = i;
                    while let Err(back) = q.push(v) {
                        v = back;
                        std::hint::spin_loop();
                    }
                }
            });
        }
        for _ in 0..consumers {
            s.spawn(|| {
                while left.load(Ordering::Relaxed) > 0 {
                    if q.pop().is_some() {
                        left.fetch_sub(1, Ordering::Relaxed);
                    } else {
                        std::hint::spin_loop();
                    }
                }
            });
        }
    });
    t.elapsed().as_nanos() as f64 / (n_per_producer * producers as u64) as f64
}

/// Nanoseconds per 8-byte message streamed through a pipe between two processes.
pub fn pipe_stream(n: u64) -> f64 {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    stream_8b(n, fds[0], fds[1])
}

/// Nanoseconds per 8-byte message streamed through a Unix domain socket pair
/// (`SOCK_STREAM`, or `SOCK_SEQPACKET`: one datagram per message) between two
/// processes.
pub fn unix_socket_stream(n: u64, seqpacket: bool) -> f64 {
    let mut fds = [0; 2];
    let ty = if seqpacket {
        libc::SOCK_SEQPACKET
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: fds is a valid out-array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    stream_8b(n, fds[0], fds[1])
}

/// `n` 8-byte writes into `wr` by a forked child, read back in 8-byte reads
/// from `rd` here: nanoseconds per message. Closes both.
fn stream_8b(n: u64, rd: i32, wr: i32) -> f64 {
    let child = fork_child(|| {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(rd) };
        for i in 0..n {
            let b = i.to_ne_bytes();
            // SAFETY: b is 8 valid bytes.
            unsafe { libc::write(wr, b.as_ptr().cast(), 8) };
        }
    });
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(wr) };
    let t = Instant::now();
    let mut got = 0u64;
    let mut b = [0u8; 8];
    while got < n * 8 {
        // SAFETY: b is 8 writable bytes.
        let r = unsafe { libc::read(rd, b.as_mut_ptr().cast(), 8) };
        if r <= 0 {
            break;
        }
        got += r as u64;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    // SAFETY: our read end.
    unsafe { libc::close(rd) };
    wait_child(child);
    ns
}

/// Nanoseconds per 8-byte message from one thread to another through rtrb, a
/// wait-free single-producer single-consumer ring: the floor a 1P→1C queue is
/// held against.
pub fn rtrb_spsc(n: u64, capacity: usize) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(capacity);
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..n {
                while tx.push(i).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut got = 0;
        while got < n {
            match rx.pop() {
                Ok(v) => {
                    std::hint::black_box(v);
                    got += 1;
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
    });
    t.elapsed().as_nanos() as f64 / n as f64
}

/// As [`rtrb_spsc`], with what a queue whose waiters may sleep must add to
/// every put and get: after it publishes (frees) a slot, a full barrier and a
/// look at the other side's sleeper count (a sleeper announces itself, then
/// looks at the ring once more; without a store-load barrier on both sides,
/// each can miss the other's write and the sleeper sleeps on a message). The
/// barrier is a locked add on a line of the thread's own, as Linux's `smp_mb`
/// does; no sleeper ever comes, so the look is all it costs. This is rtrb made
/// blocking the usual way (barrier after publishing), not a floor of every
/// design: ours makes its claim's compare-and-swap, before the message is
/// written, that barrier.
pub fn rtrb_spsc_with_wakeup_check(n: u64, capacity: usize) -> f64 {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(capacity);
    let (get_sleepers, put_sleepers) = (Line(AtomicU64::new(0)), Line(AtomicU64::new(0)));
    let t = Instant::now();
    std::thread::scope(|s| {
        let get_sleepers = &get_sleepers;
        let put_sleepers = &put_sleepers;
        s.spawn(move || {
            let mine = Box::new(Line(AtomicU64::new(0)));
            for i in 0..n {
                while tx.push(i).is_err() {
                    std::hint::spin_loop();
                }
                mine.0.fetch_add(0, Ordering::SeqCst);
                if get_sleepers.0.load(Ordering::Relaxed) != 0 {
                    unreachable!("nobody sleeps here");
                }
            }
        });
        let mine = Box::new(Line(AtomicU64::new(0)));
        let mut got = 0;
        while got < n {
            match rx.pop() {
                Ok(v) => {
                    std::hint::black_box(v);
                    got += 1;
                    mine.0.fetch_add(0, Ordering::SeqCst);
                    if put_sleepers.0.load(Ordering::Relaxed) != 0 {
                        unreachable!("nobody sleeps here");
                    }
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
    });
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per round trip between two processes through two queues. With
/// `spin_limit` 0 both sides sleep on the futex at once; large, they spin.
pub fn ours_ping_pong(n: u64, spin_limit: u32) -> f64 {
    ours_ping_pong_with(n, Some(spin_limit))
}

/// [`ours_ping_pong`] with the queues' default waiting (spin a little, then
/// sleep), as a program that sets nothing gets.
pub fn ours_ping_pong_default(n: u64) -> f64 {
    ours_ping_pong_with(n, None)
}

fn ours_ping_pong_with(n: u64, spin_limit: Option<u32>) -> f64 {
    queues_ping_pong(n, spin_limit, 1, |i| i)
}

/// Nanoseconds per round trip between two processes through two queues of
/// `capacity` slots each, messages made by `make`; `spin_limit` as in
/// [`ours_ping_pong`] (`None`: the queues' default waiting). A ring of
/// several lines of slots is what a program that sizes its queues for a
/// stream gets (see `benches/NOTES.md` on what the ring's size costs).
pub fn queues_ping_pong<T: multiproc_shm::ShmSafe + Copy + Send + 'static>(
    n: u64,
    spin_limit: Option<u32>,
    capacity: usize,
    make: fn(u64) -> T,
) -> f64 {
    let mut ping = Queue::<T>::new(capacity).expect("queue");
    let mut pong = Queue::<T>::new(capacity).expect("queue");
    if let Some(spins) = spin_limit {
        ping.set_spin_limit(spins);
        pong.set_spin_limit(spins);
    }
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
    wait_child(child);
    ns
}

/// The floor: one cache line bounced between two spinning processes, per round trip.
pub fn cache_line_ping_pong(n: u64) -> f64 {
    let line = Shared::anonymous(AtomicU64::new(0)).expect("line");
    let child = fork_running_child(|| answer_bounces(&line, n));
    let ns = serve_bounces(&line, n);
    wait_child(child);
    ns
}

/// The answering side of a bounced line: waits for each odd value, writes the
/// next even one.
fn answer_bounces(line: &AtomicU64, n: u64) {
    for i in 0..n {
        while line.load(Ordering::Acquire) != 2 * i + 1 {
            std::hint::spin_loop();
        }
        line.store(2 * i + 2, Ordering::Release);
    }
}

/// The serving side of a bounced line: writes each odd value and waits for the
/// answer; nanoseconds per round trip.
fn serve_bounces(line: &AtomicU64, n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// The floor of any round trip through two queues, whatever they do: two flags
/// on lines of their own (`one_line` false), one written by each process and
/// watched by the other. Each carries the round-trip count and nothing else;
/// no slot is freed, claimed or checked. Where the bounce moves one line that
/// each side reads and then writes, this moves two lines, each written by one
/// side while the other spins on it. With `one_line`, the two flags share a
/// line (words 0 and 4): what a duplex channel of one slot each way, its
/// request and reply in one line, could reach. Nanoseconds per round trip.
pub fn two_flags_ping_pong(n: u64, one_line: bool) -> f64 {
    // The pong flag 256 bytes after the ping flag, or 32 (in its line).
    rotating_flags_ping_pong(n, 1, if one_line { 32 } else { 256 })
}

/// Two flags as in [`two_flags_ping_pong`], but round trip `i` uses flag
/// `i % lines` of each direction (the reply's flags after the request's),
/// the flags `stride` bytes apart: the lines a
/// ring of `lines` slots of `stride` bytes touches for small messages, and
/// nothing else (no claim, no length, no check). With `lines` 1 it is the
/// bare two-line round trip; with a `Pipe`'s shape it gauges what lines taken
/// in turn cost on this placement (not a strict floor: a `Pipe` has read
/// 0.73× it). `stride` is a multiple of 8. Nanoseconds per round
/// trip.
pub fn rotating_flags_ping_pong(n: u64, lines: usize, stride: usize) -> f64 {
    let words = stride / 8;
    let flags =
        multiproc_shm::SharedSlice::<AtomicU64>::anonymous(2 * lines * words).expect("flags");
    let (ping, pong) = flags.split_at(lines * words);
    let at = |i: u64| (i as usize % lines) * words;
    let child = fork_running_child(|| {
        for i in 1..=n {
            while ping[at(i)].load(Ordering::Acquire) != i {
                std::hint::spin_loop();
            }
            pong[at(i)].store(i, Ordering::Release);
        }
    });
    let t = Instant::now();
    for i in 1..=n {
        ping[at(i)].store(i, Ordering::Release);
        while pong[at(i)].load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// The bytes from one of a default `Pipe`'s slots to the next: a sequence and
/// a length (16 bytes), then up to `PIPE_MESSAGE` bytes, in whole lines.
pub const PIPE_SLOT: usize = (16 + multiproc_queue::PIPE_MESSAGE).next_multiple_of(64);

/// [`rotating_flags_ping_pong`] over the lines a default `Pipe`'s small
/// messages take: its request+reply's shape, bare.
pub fn pipe_shape_ping_pong(n: u64) -> f64 {
    rotating_flags_ping_pong(n, multiproc_queue::PIPE_CAPACITY, PIPE_SLOT)
}

/// The floor for any queue that frees its slot: two one-slot hand-offs, each a
/// sequence word and a data word on their own line. A put waits until the slot
/// is free, writes the data and marks it full; a get waits until it is full,
/// reads the data and marks it free. Nothing is claimed, announced or checked,
/// so this is what moving a message and giving the slot back costs between two
/// spinning processes. On the Intel Xeon VMs it costs what two flags do
/// ([`two_flags_ping_pong`], 2.1-2.4× the bounce there): the price is in using
/// two lines, not in freeing the slot. Nanoseconds per round trip.
pub fn slot_handoff_ping_pong(n: u64) -> f64 {
    // Ping's slot at words 0-1, pong's at 32-33: 256 bytes apart.
    const PING: usize = 0;
    const PONG: usize = 32;
    let words = Shared::anonymous(std::array::from_fn::<AtomicU64, 48, _>(|_| {
        AtomicU64::new(0)
    }))
    .expect("slots");
    let put = |slot: usize, i: u64, v: u64| {
        while words[slot].load(Ordering::Acquire) != 2 * i {
            std::hint::spin_loop();
        }
        words[slot + 1].store(v, Ordering::Relaxed);
        words[slot].store(2 * i + 1, Ordering::Release);
    };
    let get = |slot: usize, i: u64| {
        while words[slot].load(Ordering::Acquire) != 2 * i + 1 {
            std::hint::spin_loop();
        }
        let v = words[slot + 1].load(Ordering::Relaxed);
        words[slot].store(2 * i + 2, Ordering::Release);
        v
    };
    let child = fork_running_child(|| {
        for i in 0..n {
            put(PONG, i, get(PING, i));
        }
    });
    let t = Instant::now();
    for i in 0..n {
        put(PING, i, i);
        std::hint::black_box(get(PONG, i));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// Nanoseconds per round trip between this thread and another: `there` sends
/// a request, `serve` takes it, `answer` sends it back, `back` takes the reply.
fn threads_ping_pong(
    n: u64,
    there: impl Fn(u64),
    serve: impl Fn() -> u64 + Send,
    answer: impl Fn(u64) + Send,
    back: impl Fn() -> u64,
) -> f64 {
    std::thread::scope(|s| {
        s.spawn(move || {
            for _ in 0..n {
                answer(serve());
            }
        });
        let t = Instant::now();
        for i in 0..n {
            there(i);
            std::hint::black_box(back());
        }
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

/// The peer for spinning round trips: two `ArrayQueue`s of one slot between two
/// threads, each side spinning on `pop` (crossbeam's queue has no blocking).
pub fn arrayqueue_ping_pong(n: u64) -> f64 {
    let ping = ArrayQueue::<u64>::new(1);
    let pong = ArrayQueue::<u64>::new(1);
    let spin_pop = |q: &ArrayQueue<u64>| loop {
        if let Some(v) = q.pop() {
            return v;
        }
        std::hint::spin_loop();
    };
    threads_ping_pong(
        n,
        |i| ping.push(i).expect("ping has room"),
        || spin_pop(&ping),
        |v| pong.push(v).expect("pong has room"),
        || spin_pop(&pong),
    )
}

/// Nanoseconds per round trip between two threads through two
/// crossbeam-channel `bounded(1)` channels: spinning on `try_recv`, or with
/// its blocking `recv` (which spins a little, then parks the thread).
pub fn crossbeam_channel_ping_pong(n: u64, spinning: bool) -> f64 {
    let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(1);
    let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u64>(1);
    let take = move |rx: &crossbeam_channel::Receiver<u64>| {
        if !spinning {
            return rx.recv().expect("sender alive");
        }
        loop {
            if let Ok(v) = rx.try_recv() {
                return v;
            }
            std::hint::spin_loop();
        }
    };
    threads_ping_pong(
        n,
        |i| ping_tx.send(i).expect("receiver alive"),
        || take(&ping_rx),
        |v| pong_tx.send(v).expect("receiver alive"),
        || take(&pong_rx),
    )
}

/// The thread floor beside `arrayqueue_ping_pong`: one cache line bounced
/// between two spinning threads, per round trip.
pub fn cache_line_ping_pong_threads(n: u64) -> f64 {
    let line = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| answer_bounces(&line, n));
        serve_bounces(&line, n)
    })
}

/// The floor for sleeping waiters: a raw futex wake → wait round trip between two
/// processes (each side sleeps until the other wakes it).
pub fn futex_ping_pong(n: u64) -> f64 {
    use multiproc_sync::futex::{wait, wake};
    let words = Shared::anonymous([AtomicU32::new(0), AtomicU32::new(0)]).expect("words");
    let child = fork_running_child(|| {
        for i in 0..n as u32 {
            while words[0].load(Ordering::Acquire) == i {
                wait(&words[0], i, None);
            }
            words[1].store(i + 1, Ordering::Release);
            wake(&words[1], 1);
        }
    });
    let t = Instant::now();
    for i in 0..n as u32 {
        words[0].store(i + 1, Ordering::Release);
        wake(&words[0], 1);
        while words[1].load(Ordering::Acquire) == i {
            wait(&words[1], i, None);
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// Nanoseconds per message through Python's `multiprocessing.Queue`, one producer
/// process to one consumer, measured by `python3`; `None` without it.
pub fn python_queue_ns(n: u64) -> Option<f64> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def prod(q, n):\n\
         \x20   for i in range(n): q.put(i)\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   q = mp.Queue(1024)\n\
         \x20   p = mp.Process(target=prod, args=(q, {n}))\n\
         \x20   t = time.perf_counter(); p.start()\n\
         \x20   for _ in range({n}): q.get()\n\
         \x20   dt = time.perf_counter() - t; p.join()\n\
         \x20   print(dt / {n} * 1e9)\n"
    );
    crate::run_python(&script)
}

/// Nanoseconds per 8-byte message through our one-way [`pipe`](multiproc_queue::pipe)
/// (`send_bytes` in a child process, `recv_bytes` in the parent). With `into`,
/// the parent receives with `recv_bytes_into` into one reused buffer.
pub fn ours_pipe(n: u64, into: bool) -> f64 {
    ours_pipe_sized(
        n,
        into,
        multiproc_queue::PIPE_CAPACITY,
        multiproc_queue::PIPE_MESSAGE,
    )
}

/// As [`ours_pipe`], through a pipe of `capacity` messages of up to `max_message` bytes.
pub fn ours_pipe_sized(n: u64, into: bool, capacity: usize, max_message: usize) -> f64 {
    let (rx, tx) = multiproc_queue::pipe_with(false, capacity, max_message).expect("pipe");
    let go = Shared::anonymous(AtomicU32::new(0)).expect("flag");
    let child = fork_child(|| {
        go.fetch_add(1, Ordering::SeqCst);
        for i in 0..n {
            tx.send_bytes(&i.to_ne_bytes()).expect("send_bytes");
        }
    });
    drop(tx);
    while go.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    if into {
        let mut buf = Vec::new();
        for _ in 0..n {
            rx.recv_bytes_into(&mut buf).expect("recv_bytes_into");
            std::hint::black_box(&buf);
        }
    } else {
        for _ in 0..n {
            std::hint::black_box(rx.recv_bytes().expect("recv_bytes"));
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// Nanoseconds per byte of `count` messages of `size` bytes through our default
/// one-way [`pipe`](multiproc_queue::pipe) (over its slot size they stream
/// through the lane), received into one reused buffer.
pub fn ours_pipe_large(size: usize, count: u64) -> f64 {
    let (rx, tx) = multiproc_queue::pipe(false).expect("pipe");
    let go = Shared::anonymous(AtomicU32::new(0)).expect("flag");
    let msg = vec![0x5a_u8; size];
    let child = fork_child(|| {
        go.fetch_add(1, Ordering::SeqCst);
        for _ in 0..count {
            tx.send_bytes(&msg).expect("send_bytes");
        }
    });
    drop(tx);
    while go.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    let mut buf = Vec::new();
    for _ in 0..count {
        rx.recv_bytes_into(&mut buf).expect("recv_bytes_into");
        std::hint::black_box(&buf);
    }
    let ns = t.elapsed().as_nanos() as f64 / (size as f64 * count as f64);
    wait_child(child);
    ns
}

/// Nanoseconds per byte of `count` writes of `size` bytes through a pipe(2),
/// the reader reading into one buffer of `size`.
pub fn pipe_stream_large(size: usize, count: u64) -> f64 {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    stream_sized(size, count, fds[0], fds[1])
}

/// As [`pipe_stream_large`], through a Unix domain stream socket pair.
pub fn unix_stream_large(size: usize, count: u64) -> f64 {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    stream_sized(size, count, fds[0], fds[1])
}

/// `count` writes of `size` bytes into `wr` by a forked child, read back here
/// from `rd` into one buffer of `size`: nanoseconds per byte. Closes both.
fn stream_sized(size: usize, count: u64, rd: i32, wr: i32) -> f64 {
    let msg = vec![0x5a_u8; size];
    let child = fork_child(|| {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(rd) };
        for _ in 0..count {
            let mut off = 0;
            while off < size {
                // SAFETY: the range is inside msg.
                let w = unsafe { libc::write(wr, msg[off..].as_ptr().cast(), size - off) };
                if w <= 0 {
                    return;
                }
                off += w as usize;
            }
        }
    });
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(wr) };
    let total = size as u64 * count;
    let mut buf = vec![0u8; size];
    let t = Instant::now();
    let mut got = 0u64;
    while got < total {
        // SAFETY: buf is writable for its length.
        let r = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            break;
        }
        got += r as u64;
    }
    let ns = t.elapsed().as_nanos() as f64 / total as f64;
    // SAFETY: our read end.
    unsafe { libc::close(rd) };
    wait_child(child);
    ns
}

/// Nanoseconds per 8-byte message through Python's `multiprocessing.Pipe`
/// (`send_bytes`/`recv_bytes`, one way, a forked producer), measured by `python3`;
/// `None` without it.
pub fn python_pipe_ns(n: u64) -> Option<f64> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def prod(c, n):\n\
         \x20   b = bytes(8)\n\
         \x20   for i in range(n): c.send_bytes(b)\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   r, w = mp.Pipe(False)\n\
         \x20   p = mp.Process(target=prod, args=(w, {n}))\n\
         \x20   t = time.perf_counter(); p.start()\n\
         \x20   for _ in range({n}): r.recv_bytes()\n\
         \x20   dt = time.perf_counter() - t; p.join()\n\
         \x20   print(dt / {n} * 1e9)\n"
    );
    crate::run_python(&script)
}

/// Nanoseconds per request and reply between two processes through our duplex
/// [`pipe`](multiproc_queue::pipe), 8-byte messages, each side receiving into one
/// reused buffer (default waiting: a short spin, then sleep).
pub fn ours_pipe_round_trip(n: u64) -> f64 {
    ours_pipe_round_trip_spinning(n, None)
}

/// As [`ours_pipe_round_trip`], both ends spinning up to `spins` (`None`: the
/// default) before they sleep.
pub fn ours_pipe_round_trip_spinning(n: u64, spins: Option<u32>) -> f64 {
    ours_pipe_round_trip_shaped(
        n,
        spins,
        multiproc_queue::PIPE_CAPACITY,
        multiproc_queue::PIPE_MESSAGE,
    )
}

/// As [`ours_pipe_round_trip_spinning`], through a pipe of `capacity`
/// messages of up to `max_inline` bytes each way.
pub fn ours_pipe_round_trip_shaped(
    n: u64,
    spins: Option<u32>,
    capacity: usize,
    max_inline: usize,
) -> f64 {
    let (mut a, mut b) = multiproc_queue::pipe_with(true, capacity, max_inline).expect("pipe");
    if let Some(spins) = spins {
        a.set_spin_limit(spins);
        b.set_spin_limit(spins);
    }
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

/// Nanoseconds per request and reply of 8 bytes through two pipes(2) between
/// two processes (blocking reads).
pub fn pipe_round_trip(n: u64) -> f64 {
    let (mut there, mut back) = ([0; 2], [0; 2]);
    // SAFETY: valid out-arrays.
    assert_eq!(unsafe { libc::pipe(there.as_mut_ptr()) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::pipe(back.as_mut_ptr()) }, 0);
    let hop = |from: i32, to: i32| {
        let mut b = [0u8; 8];
        // SAFETY: b is 8 writable bytes; the descriptors are ours.
        let r = unsafe { libc::read(from, b.as_mut_ptr().cast(), 8) };
        assert_eq!(r, 8);
        // SAFETY: b is 8 valid bytes.
        assert_eq!(unsafe { libc::write(to, b.as_ptr().cast(), 8) }, 8);
    };
    let child = fork_running_child(|| {
        for _ in 0..n {
            hop(there[0], back[1]);
        }
    });
    let t = Instant::now();
    for i in 0..n {
        let b = i.to_ne_bytes();
        // SAFETY: b is 8 valid bytes.
        assert_eq!(unsafe { libc::write(there[1], b.as_ptr().cast(), 8) }, 8);
        let mut r = [0u8; 8];
        // SAFETY: r is 8 writable bytes.
        assert_eq!(unsafe { libc::read(back[0], r.as_mut_ptr().cast(), 8) }, 8);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    for fd in there.into_iter().chain(back) {
        // SAFETY: our descriptors, closed once.
        unsafe { libc::close(fd) };
    }
    ns
}

/// Nanoseconds per request and reply of 8 bytes through Python's duplex
/// `multiprocessing.Pipe` (`send_bytes`/`recv_bytes`), measured by `python3`;
/// `None` without it.
pub fn python_pipe_round_trip_ns(n: u64) -> Option<f64> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def echo(c, n):\n\
         \x20   for _ in range(n): c.send_bytes(c.recv_bytes())\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   a, b = mp.Pipe()\n\
         \x20   p = mp.Process(target=echo, args=(b, {n})); p.start()\n\
         \x20   m = bytes(8); t = time.perf_counter()\n\
         \x20   for _ in range({n}):\n\
         \x20       a.send_bytes(m); a.recv_bytes()\n\
         \x20   dt = time.perf_counter() - t; p.join()\n\
         \x20   print(dt / {n} * 1e9)\n"
    );
    crate::run_python(&script)
}

/// Nanoseconds per 8-byte message streamed from a forked child through
/// ipc-channel's bytes channel (Servo's inter-process channels; a Unix
/// seqpacket socket underneath on Linux), received as a `Vec` each.
pub fn ipc_channel_stream(n: u64) -> f64 {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().expect("ipc channel");
    let child = fork_running_child(|| {
        for i in 0..n {
            tx.send(&i.to_ne_bytes()).expect("send");
        }
    });
    drop(tx);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(rx.recv().expect("recv"));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

/// Nanoseconds per request and reply of 8 bytes through two ipc-channel bytes
/// channels between two processes.
pub fn ipc_channel_round_trip(n: u64) -> f64 {
    let (there_tx, there_rx) = ipc_channel::ipc::bytes_channel().expect("ipc channel");
    let (back_tx, back_rx) = ipc_channel::ipc::bytes_channel().expect("ipc channel");
    let child = fork_running_child(|| {
        for _ in 0..n {
            let m = there_rx.recv().expect("recv");
            back_tx.send(&m).expect("send");
        }
    });
    let t = Instant::now();
    for i in 0..n {
        there_tx.send(&i.to_ne_bytes()).expect("send");
        std::hint::black_box(back_rx.recv().expect("recv"));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(child);
    ns
}

#[cfg(test)]
mod tests {
    /// [`PIPE_SLOT`](super::PIPE_SLOT) is the stride of a `Pipe`'s slots:
    /// byte queues of its message size, eight slots apart, differ by eight.
    #[test]
    fn pipe_slot_is_the_stride_of_a_pipes_slots() {
        let size = |capacity: usize| {
            let name = format!("bench-pipe-slot-{}-{capacity}", std::process::id());
            let q =
                multiproc_queue::ByteQueue::create(&name, capacity, multiproc_queue::PIPE_MESSAGE)
                    .expect("queue");
            let len = std::fs::metadata(format!("/dev/shm/{name}"))
                .expect("its segment")
                .len();
            drop(q);
            assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
            len
        };
        // Segments are sized in steps of 128 bytes: eight slots of 64-byte
        // multiples are a whole number of steps.
        assert_eq!((size(9) - size(1)) / 8, super::PIPE_SLOT as u64);
    }
}
