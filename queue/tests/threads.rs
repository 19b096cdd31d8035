//! The queues under contention from threads of one process over one mapping:
//! the shape ThreadSanitizer can follow (`scripts/tsan` runs this file under
//! it). A message's bytes are plain memory, written by the producer and read by
//! the consumer; only the slot's sequence number orders the two, so a missing
//! release or acquire shows as a data race on the slot, even where x86 happens
//! to deliver the right bytes.
//!
//! In the ordinary suite these are stress tests of their own: every message
//! arrives once, whole, or the test fails.

use std::time::Duration;

use multiproc_queue::{ByteQueue, Error, JoinableQueue, Queue};
use multiproc_testkit::Watchdog;

const PRODUCERS: u64 = 2;
const CONSUMERS: usize = 2;
/// Messages per producer: enough to wrap a small ring many times, few enough
/// for TSan (5-15 times slower).
const PER: u64 = 20_000;
const LIMIT: Duration = Duration::from_secs(120);

/// Runs producers `put(p)` and consumers `get()` (each returns what it took)
/// on threads; returns everything taken, sorted.
fn exchange<M: Ord + Send>(
    put: impl Fn(u64) + Sync,
    get: impl Fn(usize) -> Vec<M> + Sync,
) -> Vec<M> {
    let mut all = std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let put = &put;
            s.spawn(move || put(p));
        }
        let takers: Vec<_> = (0..CONSUMERS)
            .map(|c| {
                let get = &get;
                s.spawn(move || get(c))
            })
            .collect();
        takers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect::<Vec<M>>()
    });
    all.sort_unstable();
    all
}

/// What each consumer takes: an equal share of the messages.
fn share(c: usize) -> u64 {
    let total = PRODUCERS * PER;
    total / CONSUMERS as u64 + u64::from((c as u64) < total % CONSUMERS as u64)
}

#[test]
fn queue_of_u64_delivers_each_once() {
    let _dog = Watchdog::arm(LIMIT, "u64");
    let q = Queue::<u64>::new(64).unwrap();
    let got = exchange(
        |p| (0..PER).for_each(|i| q.put(p * PER + i).unwrap()),
        |c| (0..share(c)).map(|_| q.get().unwrap()).collect(),
    );
    assert_eq!(got, (0..PRODUCERS * PER).collect::<Vec<_>>());
    assert_eq!(q.lost(), 0);
}

/// A message of a whole cache line, every word the same: a torn or stale read
/// of the slot shows as mixed words.
#[test]
fn queue_of_lines_delivers_whole_messages() {
    let _dog = Watchdog::arm(LIMIT, "lines");
    let q = Queue::<[u64; 8]>::new(16).unwrap();
    let got = exchange(
        |p| {
            for i in 0..PER {
                let v = p * PER + i;
                // Sometimes the non-blocking and timed forms.
                match i % 3 {
                    0 => q.put([v; 8]).unwrap(),
                    1 => q.put_timeout([v; 8], Duration::from_secs(60)).unwrap(),
                    _ => loop {
                        match q.try_put([v; 8]) {
                            Ok(()) => break,
                            Err(Error::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    },
                }
            }
        },
        |c| {
            (0..share(c))
                .map(|_| {
                    let m = q.get_timeout(Duration::from_secs(60)).unwrap();
                    assert!(m.iter().all(|&w| w == m[0]), "torn message {m:?}");
                    m[0]
                })
                .collect()
        },
    );
    assert_eq!(got, (0..PRODUCERS * PER).collect::<Vec<_>>());
}

#[test]
fn batches_deliver_each_once() {
    let _dog = Watchdog::arm(LIMIT, "batches");
    let q = Queue::<u64>::new(64).unwrap();
    let got = exchange(
        |p| {
            let all: Vec<u64> = (0..PER).map(|i| p * PER + i).collect();
            for chunk in all.chunks(13) {
                q.put_many(chunk).unwrap();
            }
        },
        |c| {
            let want = share(c) as usize;
            let mut mine = Vec::with_capacity(want);
            while mine.len() < want {
                let max = (want - mine.len()).min(17);
                q.get_many(&mut mine, max).unwrap();
            }
            mine
        },
    );
    assert_eq!(got, (0..PRODUCERS * PER).collect::<Vec<_>>());
}

/// Byte messages of every length from 0 to past a slot (so some go through the
/// large-message lane), each filled with its own number.
#[test]
fn byte_queue_delivers_every_length_whole() {
    let _dog = Watchdog::arm(LIMIT, "bytes");
    let max_inline = 48;
    let q = ByteQueue::new(32, max_inline).unwrap();
    let n = PER / 10;
    let message = |v: u64| -> Vec<u8> {
        let len = (v as usize * 7) % (3 * max_inline + 5);
        let mut m = v.to_le_bytes().to_vec();
        m.resize(len.max(8), v as u8);
        m
    };
    let mut got = std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let q = &q;
            s.spawn(move || {
                for i in 0..n {
                    q.put_bytes(&message(p * n + i)).unwrap();
                }
            });
        }
        let takers: Vec<_> = (0..CONSUMERS)
            .map(|c| {
                let q = &q;
                s.spawn(move || {
                    let share = PRODUCERS * n / CONSUMERS as u64
                        + u64::from((c as u64) < PRODUCERS * n % CONSUMERS as u64);
                    let mut mine = Vec::new();
                    let mut buf = Vec::new();
                    for k in 0..share {
                        let m = if k % 2 == 0 {
                            q.get_bytes().unwrap()
                        } else {
                            q.get_bytes_into(&mut buf).unwrap();
                            buf.clone()
                        };
                        let v = u64::from_le_bytes(m[..8].try_into().unwrap());
                        assert_eq!(m, message(v), "message {v} damaged");
                        mine.push(v);
                    }
                    mine
                })
            })
            .collect();
        takers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect::<Vec<u64>>()
    });
    got.sort_unstable();
    assert_eq!(got, (0..PRODUCERS * n).collect::<Vec<_>>());
}

/// A message through the lane into a new `Vec` is received into room made
/// for all of it at once: grown piece by piece, the buffer was reallocated
/// (and what it held copied) at every doubling, and ended up to twice the
/// message's size.
#[test]
fn a_large_message_is_received_into_one_allocation_of_its_size() {
    let _dog = Watchdog::arm(LIMIT, "one allocation");
    let q = ByteQueue::new(4, 64).unwrap();
    // Past every power of two it crosses: doubling would leave 2 MiB.
    let sizes = [1_125_012usize, 300_001, 64 << 10 | 1];
    std::thread::scope(|s| {
        let q = &q;
        s.spawn(move || {
            for &len in &sizes {
                q.put_bytes(&vec![len as u8; len]).unwrap();
            }
        });
        for &len in &sizes {
            let m = q.get_bytes().unwrap();
            assert_eq!(m.len(), len);
            assert!(m.iter().all(|&b| b == len as u8));
            assert_eq!(m.capacity(), len, "a buffer of {} for {len}", m.capacity());
        }
    });
}

/// `join` returns only after every task was taken and marked done; what the
/// workers wrote before `task_done` is seen after `join`.
#[test]
fn joinable_queue_join_sees_every_task_done() {
    let _dog = Watchdog::arm(LIMIT, "joinable");
    let q = JoinableQueue::<u64>::new(16).unwrap();
    let sums: Vec<std::sync::atomic::AtomicU64> = (0..CONSUMERS)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    let n = PER / 4;
    std::thread::scope(|s| {
        for (c, sum) in sums.iter().enumerate() {
            let q = &q;
            s.spawn(move || {
                for _ in 0..share(c) * n / PER {
                    let v = q.get().unwrap();
                    sum.fetch_add(v, std::sync::atomic::Ordering::Relaxed);
                    q.task_done().unwrap();
                }
            });
        }
        for p in 0..PRODUCERS {
            for i in 0..n {
                q.put(p * n + i).unwrap();
            }
        }
        q.join_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(q.unfinished(), 0);
        let total: u64 = sums
            .iter()
            .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let n = PRODUCERS * n;
        assert_eq!(total, n * (n - 1) / 2);
    });
}

/// `SpscQueue` between two threads, single items and batches, through a
/// ring small enough to fill and empty all the time, both ends sometimes
/// asleep (a short spin limit): every item arrives once, in order. (Under
/// TSan this passes; a `tail` stored `Relaxed` instead of `Release` was not
/// caught by it in a trial, so TSan is no proof of the positions' ordering
/// here.)
#[test]
fn spsc_queue_delivers_each_once_in_order() {
    let _dog = Watchdog::arm(LIMIT, "spsc threads");
    const N: u64 = 2 * PER;
    let q = multiproc_queue::SpscQueue::<[u64; 3]>::new(5).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    tx.set_spin_limit(3);
    rx.set_spin_limit(3);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut i = 0;
            while i < N {
                if i % 3 == 0 {
                    let batch: Vec<[u64; 3]> =
                        (i..(i + 7).min(N)).map(|v| [v, !v, v * 3]).collect();
                    tx.put_many(&batch).unwrap();
                    i += batch.len() as u64;
                } else {
                    tx.put([i, !i, i * 3]).unwrap();
                    i += 1;
                }
            }
        });
        let mut next = 0;
        let mut out = Vec::new();
        while next < N {
            out.clear();
            if next % 2 == 0 {
                rx.get_many(&mut out, 4).unwrap();
            } else {
                out.push(rx.get().unwrap());
            }
            for &[a, b, c] in &out {
                assert_eq!([a, b, c], [next, !next, next * 3]);
                next += 1;
            }
        }
    });
    assert!(matches!(rx.try_get(), Err(Error::Disconnected)));
}

/// `consumers_asleep` says so while a get sleeps on an empty queue (after its
/// spins), and no longer once a put has woken it and it took the message.
#[test]
fn consumers_asleep_while_a_get_sleeps() {
    let _dog = Watchdog::arm(LIMIT, "consumers_asleep");
    let q = ByteQueue::new(4, 16).unwrap();
    assert!(!q.consumers_asleep());
    let seen_asleep = std::thread::scope(|s| {
        let got = s.spawn(|| q.get_bytes().unwrap());
        let start = std::time::Instant::now();
        while !q.consumers_asleep() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let seen = q.consumers_asleep();
        // Put either way, so that the get returns and the test ends.
        q.put_bytes(b"wake").unwrap();
        assert_eq!(got.join().unwrap(), b"wake");
        seen
    });
    assert!(seen_asleep, "a get asleep on the empty queue was not seen");
    assert!(!q.consumers_asleep(), "the woken get is no longer asleep");
}
