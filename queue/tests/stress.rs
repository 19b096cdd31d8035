//! P producers × C consumers in separate processes: every message received exactly
//! once, and each producer's messages in the order it put them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc_queue::{ByteQueue, JoinableByteQueue, JoinableQueue, Queue};
use multiproc_shm::{Shared, SharedSlice};
use multiproc_testkit::{fork, reexec, role, unique_name, wait_command, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

/// Message: producer id in the top 16 bits, sequence number below.
fn msg(p: u64, i: u64) -> u64 {
    (p << 48) | i
}

/// What the consumers saw, in memory they share with the test: one bit per
/// message, set by whoever receives it (a bit already set is a duplicate), and
/// counts of duplicates, messages out of their producer's order, and messages.
struct Tally {
    producers: u64,
    per_producer: u64,
    seen: SharedSlice<AtomicU64>,
    dups: Shared<AtomicU64>,
    disorder: Shared<AtomicU64>,
    received: Shared<AtomicU64>,
}

impl Tally {
    fn new(producers: u64, per_producer: u64) -> Tally {
        let total = producers * per_producer;
        Tally {
            producers,
            per_producer,
            seen: SharedSlice::anonymous(total.div_ceil(64) as usize).unwrap(),
            dups: Shared::anonymous(AtomicU64::new(0)).unwrap(),
            disorder: Shared::anonymous(AtomicU64::new(0)).unwrap(),
            received: Shared::anonymous(AtomicU64::new(0)).unwrap(),
        }
    }

    /// A consumer's record of the last message it had from each producer.
    fn last(&self) -> Vec<Option<u64>> {
        vec![None; self.producers as usize]
    }

    /// Records message `m` (see `msg`), received by the consumer whose record is `last`.
    fn record(&self, m: u64, last: &mut [Option<u64>]) {
        let (p, i) = ((m >> 48) as usize, m & ((1 << 48) - 1));
        if last[p].is_some_and(|l| l >= i) {
            self.disorder.fetch_add(1, Ordering::Relaxed);
        }
        last[p] = Some(i);
        let bit = p as u64 * self.per_producer + i;
        if self.seen[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed)
            & (1 << (bit % 64))
            != 0
        {
            self.dups.fetch_add(1, Ordering::Relaxed);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Every message received once, each producer's in order.
    fn check(&self) {
        assert_eq!(self.dups.load(Ordering::Relaxed), 0, "duplicates");
        assert_eq!(
            self.disorder.load(Ordering::Relaxed),
            0,
            "a producer's messages out of order"
        );
        assert_eq!(
            self.received.load(Ordering::Relaxed),
            self.producers * self.per_producer,
            "every message once"
        );
    }
}

/// Waits for every producer, then closes the queue (`close`), which lets the
/// consumers drain it and stop, waits for them, and checks what they saw.
fn finish(
    prods: Vec<multiproc_testkit::Child>,
    cons: Vec<multiproc_testkit::Child>,
    close: impl Fn(),
    tally: &Tally,
) {
    for p in prods {
        p.wait_ok(LIMIT);
    }
    close();
    for c in cons {
        c.wait_ok(LIMIT);
    }
    tally.check();
}

fn run(producers: u64, consumers: u64, per_producer: u64, capacity: usize) {
    let q = Queue::<u64>::new(capacity).unwrap();
    let tally = Tally::new(producers, per_producer);

    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let q = &q;
            fork(move || {
                // A mix of single puts and batches, in order.
                let mut batch = Vec::with_capacity(16);
                for i in 0..per_producer {
                    if i % 3 == 0 {
                        q.put_many(&batch).unwrap();
                        batch.clear();
                        q.put(msg(p, i)).unwrap();
                    } else {
                        batch.push(msg(p, i));
                        if batch.len() == 16 {
                            q.put_many(&batch).unwrap();
                            batch.clear();
                        }
                    }
                }
                q.put_many(&batch).unwrap();
                0
            })
        })
        .collect();
    let cons: Vec<_> = (0..consumers)
        .map(|_| {
            fork(|| {
                let mut last = tally.last();
                let mut out = Vec::with_capacity(32);
                loop {
                    out.clear();
                    match q.get_many_timeout(&mut out, 32, Duration::from_millis(200)) {
                        Ok(_) => {}
                        Err(multiproc_queue::Error::Closed) => break,
                        Err(multiproc_queue::Error::Timeout) => continue,
                        Err(e) => panic!("{e}"),
                    }
                    for &m in &out {
                        tally.record(m, &mut last);
                    }
                }
                0
            })
        })
        .collect();
    finish(prods, cons, || q.close(), &tally);
    assert_eq!(q.lost(), 0);
}

/// `m`'s 8 bytes, then `m % 41` bytes that depend on it: 8 to 48 bytes.
fn encode(m: u64) -> Vec<u8> {
    let mut v = m.to_le_bytes().to_vec();
    v.extend((0..m % 41).map(|k| (m as u8).wrapping_add(k as u8)));
    v
}

/// As `run`, through a byte queue of messages of 8 to 48 bytes (each checked
/// whole): producers put one at a time (now and then without waiting, retrying
/// when full) and in batches; consumers take them into one reused buffer, some
/// into a new one, some in batches.
fn run_bytes(producers: u64, consumers: u64, per_producer: u64, capacity: usize) {
    let q = ByteQueue::new(capacity, 48).unwrap();
    let tally = Tally::new(producers, per_producer);
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let q = &q;
            fork(move || {
                let mut batch = Vec::new();
                let flush = |batch: &mut Vec<Vec<u8>>| {
                    q.put_bytes_many(batch).unwrap();
                    batch.clear();
                };
                for i in 0..per_producer {
                    let m = encode(msg(p, i));
                    match i % 8 {
                        0 => {
                            flush(&mut batch);
                            while let Err(e) = q.try_put_bytes(&m) {
                                assert!(matches!(e, multiproc_queue::Error::Full), "{e}");
                                std::hint::spin_loop();
                            }
                        }
                        1..=4 => batch.push(m),
                        _ => {
                            flush(&mut batch);
                            q.put_bytes(&m).unwrap();
                        }
                    }
                }
                flush(&mut batch);
                0
            })
        })
        .collect();
    let cons: Vec<_> = (0..consumers)
        .map(|_| {
            fork(|| {
                let mut last = tally.last();
                let mut buf = Vec::new();
                let mut many = Vec::new();
                let wait = Duration::from_millis(200);
                for k in 0u64.. {
                    many.clear();
                    let got = match k % 7 {
                        0 => q.get_bytes_timeout(wait).map(|v| many.push(v)),
                        1 => q.get_bytes_many_timeout(&mut many, 5, wait).map(drop),
                        _ => q.get_bytes_into_timeout(&mut buf, wait).map(|_| {
                            many.push(std::mem::take(&mut buf));
                        }),
                    };
                    match got {
                        Ok(()) => {}
                        Err(multiproc_queue::Error::Closed) => break,
                        Err(multiproc_queue::Error::Timeout) => continue,
                        Err(e) => panic!("{e}"),
                    }
                    for b in many.drain(..) {
                        let m = u64::from_le_bytes(b[..8].try_into().unwrap());
                        assert_eq!(b, encode(m), "a message arrived whole");
                        tally.record(m, &mut last);
                        buf = b;
                    }
                }
                0
            })
        })
        .collect();
    finish(prods, cons, || q.close(), &tally);
    assert_eq!(q.lost(), 0);
}

#[test]
fn one_producer_one_consumer() {
    let _dog = Watchdog::arm(LIMIT, "1x1");
    run(1, 1, 1_000_000, 1024);
}

#[test]
fn two_producers_two_consumers() {
    let _dog = Watchdog::arm(LIMIT, "2x2");
    run(2, 2, 500_000, 256);
}

#[test]
fn four_producers_one_consumer() {
    let _dog = Watchdog::arm(LIMIT, "4x1");
    run(4, 1, 100_000, 64);
}

#[test]
fn one_producer_four_consumers() {
    let _dog = Watchdog::arm(LIMIT, "1x4");
    run(1, 4, 300_000, 64);
}

#[test]
fn three_by_three_through_a_tiny_ring() {
    let _dog = Watchdog::arm(LIMIT, "3x3 tiny");
    run(3, 3, 50_000, 3);
}

#[test]
fn bytes_one_producer_one_consumer() {
    let _dog = Watchdog::arm(LIMIT, "bytes 1x1");
    run_bytes(1, 1, 500_000, 64);
}

#[test]
fn bytes_two_producers_two_consumers() {
    let _dog = Watchdog::arm(LIMIT, "bytes 2x2");
    run_bytes(2, 2, 200_000, 16);
}

#[test]
fn bytes_three_by_three_through_a_tiny_ring() {
    let _dog = Watchdog::arm(LIMIT, "bytes 3x3 tiny");
    run_bytes(3, 3, 30_000, 3);
}

/// A batch put with a timeout into a ring a slow consumer process drains: what
/// fits goes in and is counted, the rest follows once there is room, in order.
#[test]
fn put_many_timeout_counts_what_went_in() {
    let _dog = Watchdog::arm(LIMIT, "put_many_timeout");
    let q = Queue::<u64>::new(4).unwrap();
    let consumer = fork(|| {
        std::thread::sleep(Duration::from_millis(200));
        for want in 0..10 {
            assert_eq!(q.get_timeout(LIMIT).unwrap(), want);
        }
        0
    });
    let items: Vec<u64> = (0..10).collect();
    assert_eq!(
        q.put_many_timeout(&items, Duration::from_millis(20))
            .unwrap(),
        4,
        "the four that fit, while the consumer sleeps"
    );
    let mut done = 4;
    while done < items.len() {
        done += q.put_many_timeout(&items[done..], LIMIT).unwrap();
    }
    consumer.wait_ok(LIMIT);
}

/// Sleeping hand-offs with the owner check interval at a minute, so that each
/// sleep ends only by a wake-up and one lost wake-up hangs the test (the
/// watchdog fails it): a ping-pong through two one-slot queues that never spin
/// (consumers asleep on empty, producers asleep on full), then two producers
/// and two consumers through a two-slot ring, and `join` woken by the last
/// `task_done`, many times.
#[test]
fn sleeping_hand_offs_lose_no_wake_up() {
    let _dog = Watchdog::arm(LIMIT, "sleeping hand-offs");
    multiproc_sync::set_owner_check_interval(Duration::from_secs(60));
    const ROUNDS: u64 = 5_000;
    let mut ping = Queue::<u64>::new(1).unwrap();
    let mut pong = Queue::<u64>::new(1).unwrap();
    ping.set_spin_limit(0);
    pong.set_spin_limit(0);
    let child = fork(|| {
        for i in 0..ROUNDS {
            assert_eq!(ping.get().unwrap(), i);
            pong.put(i).unwrap();
        }
        0
    });
    for i in 0..ROUNDS {
        ping.put(i).unwrap();
        assert_eq!(pong.get().unwrap(), i);
    }
    child.wait_ok(LIMIT);

    let mut q = Queue::<u64>::new(2).unwrap();
    q.set_spin_limit(0);
    let sum = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let kids: Vec<_> = (0..4u64)
        .map(|k| {
            let (q, sum) = (&q, &sum);
            fork(move || {
                for i in 0..ROUNDS {
                    if k < 2 {
                        q.put(i).unwrap();
                    } else {
                        sum.fetch_add(q.get().unwrap(), Ordering::Relaxed);
                    }
                }
                0
            })
        })
        .collect();
    for k in kids {
        k.wait_ok(LIMIT);
    }
    assert_eq!(sum.load(Ordering::Relaxed), ROUNDS * (ROUNDS - 1));

    let mut jq = JoinableQueue::<u64>::new(1).unwrap();
    jq.set_spin_limit(0);
    let worker = fork(|| {
        for i in 0..1_000 {
            assert_eq!(jq.get().unwrap(), i);
            jq.task_done().unwrap();
        }
        0
    });
    for i in 0..1_000 {
        jq.put(i).unwrap();
        jq.join().unwrap();
    }
    worker.wait_ok(LIMIT);
}

/// Python's JoinableQueue pattern across processes: workers get and mark each
/// item done after handling it; `join` returns only once every item put was
/// handled, and then at once.
#[test]
fn join_waits_for_every_task_across_processes() {
    joinable_workers(&JoinableQueue::<u64>::new(64).unwrap());
}

/// As `join_waits_for_every_task_across_processes`, for byte messages.
#[test]
fn join_waits_for_every_byte_task_across_processes() {
    joinable_workers(&JoinableByteQueue::new(64, 8).unwrap());
}

/// What `joinable_workers` does to a joinable queue.
trait Joinable: Sync {
    fn add(&self, i: u64);
    fn take(&self, d: Duration) -> Result<u64, multiproc_queue::Error>;
    fn done(&self);
    fn wait_all(&self, d: Duration);
    fn left(&self) -> u32;
}

impl Joinable for JoinableQueue<u64> {
    fn add(&self, i: u64) {
        Queue::put(self, i).unwrap();
    }
    fn take(&self, d: Duration) -> Result<u64, multiproc_queue::Error> {
        Queue::get_timeout(self, d)
    }
    fn done(&self) {
        JoinableQueue::task_done(self).unwrap();
    }
    fn wait_all(&self, d: Duration) {
        JoinableQueue::join_timeout(self, d).unwrap();
    }
    fn left(&self) -> u32 {
        JoinableQueue::unfinished(self)
    }
}

impl Joinable for JoinableByteQueue {
    fn add(&self, i: u64) {
        self.put_bytes(&i.to_le_bytes()).unwrap();
    }
    fn take(&self, d: Duration) -> Result<u64, multiproc_queue::Error> {
        let b = self.get_bytes_timeout(d)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn done(&self) {
        JoinableByteQueue::task_done(self).unwrap();
    }
    fn wait_all(&self, d: Duration) {
        JoinableByteQueue::join_timeout(self, d).unwrap();
    }
    fn left(&self) -> u32 {
        JoinableByteQueue::unfinished(self)
    }
}

/// Two worker processes take items and mark each done after handling it;
/// `join` returns only once every item put was handled.
fn joinable_workers(q: &impl Joinable) {
    let _dog = Watchdog::arm(LIMIT, "joinable workers");
    const N: u64 = 20_000;
    let handled = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            fork(|| loop {
                match q.take(Duration::from_millis(200)) {
                    Ok(_) => {
                        handled.fetch_add(1, Ordering::SeqCst);
                        q.done();
                    }
                    Err(multiproc_queue::Error::Timeout) => return 0,
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    for i in 0..N {
        q.add(i);
    }
    q.wait_all(LIMIT);
    assert_eq!(
        handled.load(Ordering::SeqCst),
        N,
        "join returned before all were done"
    );
    assert_eq!(q.left(), 0);
    for w in workers {
        w.wait_ok(LIMIT);
    }
}

fn open_role() -> bool {
    match role().as_deref() {
        Some("queue-producer") => {
            let q = Queue::<u64>::open(&std::env::var("MP_NAME").unwrap()).unwrap();
            for i in 0..10_000 {
                q.put(i).unwrap();
            }
            true
        }
        Some("wrong-type") => {
            let name = std::env::var("MP_NAME").unwrap();
            let e = Queue::<u32>::open(&name).unwrap_err();
            assert!(e.to_string().contains("Queue<u64>"), "{e}");
            assert!(ByteQueue::open(&name).is_err());
            true
        }
        _ => false,
    }
}

#[test]
fn an_unrelated_process_opens_a_named_queue() {
    if open_role() {
        return;
    }
    let _dog = Watchdog::arm(LIMIT, "named queue");
    let name = unique_name("queue");
    let q = Queue::<u64>::create(&name, 128).unwrap();
    let spawn = |role: &str| {
        reexec("an_unrelated_process_opens_a_named_queue", role)
            .env("MP_NAME", &name)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let bad = wait_command(spawn("wrong-type"), LIMIT);
    assert!(
        bad.status.success(),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let producer = spawn("queue-producer");
    let sum: u64 = (0..10_000)
        .map(|_| q.get_timeout(Duration::from_secs(30)).unwrap())
        .sum();
    assert_eq!(sum, 10_000 * 9_999 / 2);
    let out = wait_command(producer, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

mod cross_process_model {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// A forked producer puts a random sequence in random batches through a ring
        /// of random capacity; the parent takes it in random batches: it comes out
        /// exactly as it went in (the VecDeque model across processes).
        #[test]
        fn a_random_sequence_crosses_processes_unchanged(
            cap in 1usize..9,
            items in proptest::collection::vec(any::<u64>(), 0..400),
            put_batch in 1usize..7,
            get_batch in 1usize..7,
        ) {
            let _dog = Watchdog::arm(LIMIT, "cross-process proptest");
            let q = Queue::<u64>::new(cap).unwrap();
            let producer = fork(|| {
                for chunk in items.chunks(put_batch) {
                    if chunk.len() == 1 {
                        q.put(chunk[0]).unwrap();
                    } else {
                        q.put_many(chunk).unwrap();
                    }
                }
                0
            });
            let mut got = Vec::with_capacity(items.len());
            while got.len() < items.len() {
                q.get_many_timeout(&mut got, get_batch, Duration::from_secs(20)).unwrap();
            }
            producer.wait_ok(LIMIT);
            prop_assert_eq!(got, items);
            prop_assert!(q.empty());
        }
    }
}

/// A producer that finds the ring full waits a while for a quarter of it to
/// free (so that it does not fill the line the consumers are freeing); when a
/// consumer frees one slot and takes no more, the put still goes in.
#[test]
fn a_put_on_a_full_ring_goes_in_when_one_slot_frees() {
    let q = Queue::<u64>::new(64).unwrap();
    full_ring_put(|i| q.put(i).unwrap(), || q.get().unwrap(), || q.qsize());
}

/// As `a_put_on_a_full_ring_goes_in_when_one_slot_frees`, through a byte
/// queue, whose one-message put waits for room the same way.
#[test]
fn a_byte_put_on_a_full_ring_goes_in_when_one_slot_frees() {
    let q = ByteQueue::new(64, 8).unwrap();
    full_ring_put(
        |i| q.put_bytes(&i.to_le_bytes()).unwrap(),
        || u64::from_le_bytes(q.get_bytes().unwrap().try_into().unwrap()),
        || q.qsize(),
    );
}

/// Fills a 64-slot queue, has a child take one item after a while and no more,
/// and puts one more: it goes in, and everything comes out in order.
fn full_ring_put(put: impl Fn(u64), get: impl Fn() -> u64, qsize: impl Fn() -> usize) {
    let _dog = Watchdog::arm(LIMIT, "put on a full ring");
    for i in 0..64 {
        put(i);
    }
    let done = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let consumer = fork(|| {
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(get(), 0);
        while done.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        0
    });
    put(64);
    assert_eq!(qsize(), 64);
    done.store(1, Ordering::SeqCst);
    consumer.wait_ok(LIMIT);
    for i in 1..=64 {
        assert_eq!(get(), i);
    }
}

/// More producer processes than a queue has entries for threads (64): the
/// consumer that took its entry first (`enter`, before the producers
/// start) is never refused and receives every message put; a producer past
/// the table is refused at its first put with `TooManyParticipants` (at
/// once), having put nothing; entries of producers that ended are taken by
/// later ones.
#[test]
fn more_producers_than_entries_are_refused_at_once_and_nothing_is_lost() {
    use multiproc_queue::{Error, PARTICIPANTS};
    let _dog = Watchdog::arm(LIMIT, "participants");
    let producers = PARTICIPANTS as u64 + 16;
    let q = Queue::<u64>::new(64).unwrap();
    q.enter().expect("the consumer's entry");
    let mut children: Vec<_> = (0..producers)
        .map(|p| {
            let q = &q;
            fork(move || {
                for i in 0..100 {
                    match q.put_timeout(msg(p, i), LIMIT) {
                        Ok(()) => {}
                        Err(Error::TooManyParticipants(n)) if i == 0 && n == PARTICIPANTS => {
                            return 5
                        }
                        Err(_) => return 6,
                    }
                }
                0
            })
        })
        .collect();
    let (mut got, mut ok, mut refused) = (0u64, 0u64, 0u64);
    while !children.is_empty() || !q.empty() {
        match q.get_timeout(Duration::from_millis(20)) {
            Ok(_) => got += 1,
            Err(Error::Timeout) => {}
            Err(e) => panic!("the consumer: {e:?}"),
        }
        children.retain_mut(|c| match c.wait_timeout(Duration::ZERO) {
            None => true,
            Some(multiproc_testkit::ChildExit::Exited(0)) => {
                ok += 1;
                false
            }
            Some(multiproc_testkit::ChildExit::Exited(5)) => {
                refused += 1;
                false
            }
            Some(other) => panic!("a producer: {other:?}"),
        });
    }
    assert_eq!(ok + refused, producers);
    assert!(ok > 0);
    assert_eq!(
        got,
        100 * ok,
        "{ok} producers put all, {refused} were refused"
    );
    eprintln!("{ok} producers put all their messages, {refused} were refused");
}
