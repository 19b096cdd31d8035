//! `SpscQueue`: one producer and one consumer, in real processes. Order and
//! capacity, sleeping ends that must not miss a wake-up, ends held once,
//! copies made by `fork`, ends that are dropped or SIGKILLed (and taken over
//! at random points), and positions scribbled over by a hostile peer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_queue::{refuse_membarrier_here, Corruption, Error, SpscQueue};
use multiproc_shm::Shared;
use multiproc_sync::set_owner_check_interval;
use multiproc_testkit::{fork, unique_name, ChildExit, Watchdog};

const BOUND: Duration = Duration::from_secs(20);

/// Where the shared positions are (the control block's layout: a geometry
/// line, the producer's and the consumer's lines, then `tail` and `head`).
const TAIL_AT: usize = 3 * 128;
const HEAD_AT: usize = 4 * 128;

fn word<T>(q: &SpscQueue<T>, at: usize) -> &AtomicU64 {
    // SAFETY: the segment is at least a control block long, 128-aligned, and
    // the word at `at` is an AtomicU64 of it.
    unsafe { &*q.segment().as_ptr().add(at).cast::<AtomicU64>() }
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn items_arrive_in_order_through_any_capacity_then_the_end_is_seen() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "spsc order");
    const N: u64 = 100_000;
    for capacity in [1, 3, 64, 1000] {
        let q = SpscQueue::<u64>::new(capacity).unwrap();
        let mut rx = q.consumer().unwrap();
        let child = fork(|| {
            let mut tx = q.producer().unwrap();
            for i in 0..N {
                tx.put(i * 7).unwrap();
            }
            drop(tx); // _exit skips destructors: give the end back by hand
            0
        });
        for i in 0..N {
            assert_eq!(rx.get().unwrap(), i * 7, "capacity {capacity}");
        }
        assert!(matches!(rx.get(), Err(Error::Disconnected)));
        assert!(matches!(rx.try_get(), Err(Error::Disconnected)));
        child.wait_ok(BOUND);
    }
}

#[test]
fn a_producer_moved_to_a_thread_streams_to_this_one() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "spsc threads");
    const N: u64 = 1_000_000;
    let q = SpscQueue::<u64>::new(256).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..N {
            tx.put(i).unwrap();
        }
    });
    let mut sum = 0;
    for i in 0..N {
        let v = rx.get().unwrap();
        assert_eq!(v, i);
        sum += v;
    }
    t.join().unwrap();
    assert_eq!(sum, N * (N - 1) / 2);
    assert!(matches!(rx.try_get(), Err(Error::Disconnected)));
}

/// Both ends sleep at once on every round (no spinning, a ring of one and a
/// reply ring of one), with a check interval of a minute: a sleeper is woken
/// by the other end's put or get, or by nothing. A missed wake-up stalls a
/// round for the minute, and the watchdog fails the test. `refuse` says which
/// processes act as if their kernel refused `membarrier` (parent, child).
fn ping_pong_asleep(rounds: u64, refuse: (bool, bool)) {
    set_owner_check_interval(Duration::from_secs(60));
    let _dog = Watchdog::arm(Duration::from_secs(50), "spsc lost wake-up");
    let there = SpscQueue::<u64>::new(1).unwrap();
    let back = SpscQueue::<u64>::new(1).unwrap();
    let child = fork(|| {
        if refuse.1 {
            refuse_membarrier_here();
        }
        let mut rx = there.consumer().unwrap();
        let mut tx = back.producer().unwrap();
        rx.set_spin_limit(0);
        tx.set_spin_limit(0);
        for _ in 0..rounds {
            let v = rx.get().unwrap();
            tx.put(v + 1).unwrap();
            // A second put into the full ring of one sleeps until the get.
            tx.put(v + 2).unwrap();
        }
        0
    });
    if refuse.0 {
        refuse_membarrier_here();
    }
    let mut tx = there.producer().unwrap();
    let mut rx = back.consumer().unwrap();
    tx.set_spin_limit(0);
    rx.set_spin_limit(0);
    for i in 0..rounds {
        tx.put(i * 10).unwrap();
        assert_eq!(rx.get().unwrap(), i * 10 + 1);
        assert_eq!(rx.get().unwrap(), i * 10 + 2);
    }
    child.wait_ok(BOUND);
}

#[test]
fn no_wake_up_is_lost_when_both_ends_sleep() {
    ping_pong_asleep(20_000, (false, false));
}

/// Both processes fence on their fast paths instead.
#[test]
fn no_wake_up_is_lost_without_membarrier() {
    ping_pong_asleep(20_000, (true, true));
}

/// One process has `membarrier`, the other not: its sleepers cannot reach
/// the other's light fast path, and nap a millisecond at a time.
#[test]
fn no_wake_up_is_lost_with_membarrier_on_one_side_only() {
    ping_pong_asleep(20_000, (true, false));
}

/// A put that lands while the consumer is announcing its sleep (or a get
/// while the producer is), many times over: it must wake the sleeper.
/// Without the barrier between the racer's store of its position and its
/// look at the sleeper's flag (a fence on a fenced fast path; the sleeper's
/// `membarrier` on a light one), the store can still wait in the racer's
/// store buffer when it looks at the flag (not yet raised there), while the
/// sleeper, flag raised, reads the old position and sleeps: such a call waits
/// out a whole owner check interval, and is counted here. The racer starts
/// each call at a delay of its own after both are released, so that some land
/// in the window. `refuse`: both processes without `membarrier`.
///
/// Only an optimized build can fail it: in a debug build the instructions
/// between the store and the look take longer than the store takes to leave
/// the buffer, and the window never opens (the mutations are caught within a
/// second in release, never in debug). `scripts/test-all` runs these in
/// release.
fn racing(sleeper: End, refuse: bool) {
    const ROUNDS: u64 = 200_000;
    let check = Duration::from_millis(300);
    set_owner_check_interval(check);
    let _dog = Watchdog::arm(Duration::from_secs(100), "spsc racing wake-up");
    // A sleeping consumer waits on an empty ring; a sleeping producer on a
    // full ring of one, which holds item r when round r starts.
    let q = SpscQueue::<u64>::new(if sleeper == End::Consumer { 4 } else { 1 }).unwrap();
    // The round the sleeper released (2r + 1) and the racer took up (2r + 2).
    let go = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let child = fork(|| {
        if refuse {
            refuse_membarrier_here();
        }
        let (mut tx, mut rx) = match sleeper {
            End::Consumer => (Some(q.producer().unwrap()), None),
            End::Producer => (None, Some(q.consumer().unwrap())),
        };
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for r in 0..ROUNDS {
            wait_for(&go, 2 * r + 1);
            go.store(2 * r + 2, Ordering::Release);
            for k in 0..next(&mut x) % 512 {
                std::hint::black_box(k);
            }
            match (&mut tx, &mut rx) {
                (Some(tx), _) => tx.put(r).unwrap(),
                (_, Some(rx)) => assert_eq!(rx.get().unwrap(), r),
                _ => unreachable!(),
            }
        }
        0
    });
    if refuse {
        refuse_membarrier_here();
    }
    let (mut tx, mut rx) = match sleeper {
        End::Consumer => (None, Some(q.consumer().unwrap())),
        End::Producer => (Some(q.producer().unwrap()), None),
    };
    if let Some(tx) = &mut tx {
        tx.put(0).unwrap();
        tx.set_spin_limit(0);
    }
    if let Some(rx) = &mut rx {
        rx.set_spin_limit(0);
    }
    let mut stranded = 0;
    for r in 0..ROUNDS {
        go.store(2 * r + 1, Ordering::Release);
        wait_for(&go, 2 * r + 2);
        let t = Instant::now();
        match (&mut tx, &mut rx) {
            (Some(tx), _) => tx.put(r + 1).unwrap(),
            (_, Some(rx)) => assert_eq!(rx.get().unwrap(), r),
            _ => unreachable!(),
        }
        if t.elapsed() >= check / 2 {
            stranded += 1;
            if stranded == 3 {
                break;
            }
        }
    }
    assert_eq!(
        stranded, 0,
        "{sleeper:?}: calls that slept past their wake-up until their check interval"
    );
    child.wait_ok(BOUND);
}

/// Spins until `word` reads `value`, yielding now and then (the other
/// process may need this core).
fn wait_for(word: &AtomicU64, value: u64) {
    let mut spins = 0u32;
    while word.load(Ordering::Acquire) != value {
        spins += 1;
        if spins.is_multiple_of(256) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The end that goes to sleep in [`racing`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Producer,
    Consumer,
}

#[test]
#[cfg_attr(debug_assertions, ignore = "only an optimized build can fail it")]
fn a_put_racing_a_consumer_going_to_sleep_wakes_it() {
    racing(End::Consumer, false);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "only an optimized build can fail it")]
fn a_put_racing_a_consumer_going_to_sleep_wakes_it_without_membarrier() {
    racing(End::Consumer, true);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "only an optimized build can fail it")]
fn a_get_racing_a_producer_going_to_sleep_wakes_it() {
    racing(End::Producer, false);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "only an optimized build can fail it")]
fn a_get_racing_a_producer_going_to_sleep_wakes_it_without_membarrier() {
    racing(End::Producer, true);
}

#[test]
fn an_end_is_held_once_even_by_its_own_process() {
    let _dog = Watchdog::arm(Duration::from_secs(30), "spsc ends");
    let q = SpscQueue::<u32>::new(4).unwrap();
    let me = std::process::id();
    let tx = q.producer().unwrap();
    match q.producer() {
        Err(Error::EndTaken { end, pid }) => {
            assert_eq!((end, pid), ("producer", me));
        }
        other => panic!("a second producer: {other:?}"),
    }
    let rx = q.consumer().unwrap();
    assert!(matches!(
        q.consumer(),
        Err(Error::EndTaken {
            end: "consumer",
            ..
        })
    ));
    // Another process is refused while this one holds the end.
    let child = fork(|| match q.producer() {
        Err(Error::EndTaken { pid, .. }) if pid == me => 0,
        _ => 1,
    });
    child.wait_ok(BOUND);
    drop(tx);
    drop(rx);
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    tx.put(9).unwrap();
    assert_eq!(rx.get().unwrap(), 9);
    let message = Error::EndTaken {
        end: "producer",
        pid: 42,
    }
    .to_string();
    assert!(message.contains("held by process 42"), "{message}");
}

#[test]
fn a_copy_made_by_fork_is_refused_and_gives_nothing_back() {
    let _dog = Watchdog::arm(Duration::from_secs(30), "spsc fork copy");
    let q = SpscQueue::<u64>::new(8).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    tx.put(1).unwrap();
    let child = fork(|| {
        let mut code = 0;
        if !matches!(
            tx.try_put(2),
            Err(Error::NotThisProcess { end: "producer" })
        ) {
            code |= 1;
        }
        if !matches!(tx.put(2), Err(Error::NotThisProcess { .. })) {
            code |= 2;
        }
        if !matches!(rx.try_get(), Err(Error::NotThisProcess { end: "consumer" })) {
            code |= 4;
        }
        // Dropping the copies gives back nothing: the parent still holds both.
        // SAFETY: this child never touches tx or rx again (it returns and
        // _exits); the parent's are other memory.
        unsafe {
            std::ptr::drop_in_place(&mut tx);
            std::ptr::drop_in_place(&mut rx);
        }
        if !matches!(q.producer(), Err(Error::EndTaken { .. })) {
            code |= 8;
        }
        if !matches!(q.consumer(), Err(Error::EndTaken { .. })) {
            code |= 16;
        }
        code
    });
    assert_eq!(child.wait(BOUND), ChildExit::Exited(0));
    tx.put(3).unwrap();
    assert_eq!(rx.get().unwrap(), 1);
    assert_eq!(rx.get().unwrap(), 3);
    assert!(matches!(rx.try_get(), Err(Error::Empty)));
}

#[test]
fn a_dropped_or_killed_producer_disconnects_after_its_items() {
    set_owner_check_interval(Duration::from_millis(5));
    let _dog = Watchdog::arm(Duration::from_secs(30), "spsc producer gone");
    for kill in [false, true] {
        let q = SpscQueue::<u64>::new(16).unwrap();
        let mut rx = q.consumer().unwrap();
        let child = fork(|| {
            let mut tx = q.producer().unwrap();
            for i in 0..10 {
                tx.put(i).unwrap();
            }
            if kill {
                // SAFETY: raise with a plain signal number; the child dies here.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            drop(tx);
            0
        });
        let exit = child.wait(BOUND);
        for i in 0..10 {
            assert_eq!(rx.get().unwrap(), i);
        }
        let start = Instant::now();
        assert!(
            matches!(rx.get(), Err(Error::Disconnected)),
            "killed: {kill}, exit {exit:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        // The end is free again, for a new producer.
        let mut tx = q.producer().unwrap();
        tx.put(77).unwrap();
        assert_eq!(rx.get().unwrap(), 77);
    }
}

#[test]
fn a_dropped_or_killed_consumer_disconnects_a_put_on_a_full_ring() {
    set_owner_check_interval(Duration::from_millis(5));
    let _dog = Watchdog::arm(Duration::from_secs(30), "spsc consumer gone");
    for kill in [false, true] {
        let q = SpscQueue::<u64>::new(4).unwrap();
        let mut tx = q.producer().unwrap();
        let child = fork(|| {
            let mut rx = q.consumer().unwrap();
            for _ in 0..2 {
                rx.get().unwrap();
            }
            if kill {
                // SAFETY: as above.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            drop(rx);
            0
        });
        for i in 0..6 {
            tx.put(i).unwrap();
        }
        child.wait(BOUND);
        let start = Instant::now();
        assert!(
            matches!(tx.put(6), Err(Error::Disconnected)),
            "killed: {kill}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        // A new consumer takes what is there, from where the last one stopped.
        let mut rx = q.consumer().unwrap();
        assert_eq!(rx.get().unwrap(), 2);
    }
}

/// How long `K` puts of a `u64` take in this process (the best of three
/// runs): the window the random kills are spread over, so that they land
/// mid-stream on a fast machine and a slow build alike (a fixed 0-3 ms
/// window saw a release build stream all 100 000 items first, every trial).
fn stream_time(k: u64) -> Duration {
    (0..3)
        .map(|_| {
            let q = SpscQueue::<u64>::new(k as usize).unwrap();
            let mut tx = q.producer().unwrap();
            let t = Instant::now();
            for i in 0..k {
                tx.put(i).unwrap();
            }
            t.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(3))
}

/// Forks a child that runs `body` — which calls its argument once it holds
/// its end, then works — and SIGKILLs it at a random point of `window` after
/// that call (waited for by spinning: a sleep's own latency is as long as a
/// fast stream).
fn kill_at_random(seed: &mut u64, window: Duration, body: impl FnOnce(&dyn Fn())) {
    let started = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let child = fork(|| {
        body(&|| started.store(1, Ordering::SeqCst));
        // Stays until killed.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    while started.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
    let delay = Duration::from_nanos(next(seed) % window);
    let t = Instant::now();
    while t.elapsed() < delay {
        std::hint::spin_loop();
    }
    child.kill(BOUND);
}

/// Where the kills of a random-kill test landed, by how far the victim got
/// of `k` items.
#[derive(Default)]
struct Landed {
    none: u64,
    some: u64,
    all: u64,
}

impl Landed {
    fn count(&mut self, done: u64, k: u64) {
        match done {
            0 => self.none += 1,
            d if d == k => self.all += 1,
            _ => self.some += 1,
        }
    }

    /// Prints the tally; fails unless some kill landed mid-stream.
    fn check(&self, who: &str) {
        let Landed { none, some, all } = self;
        eprintln!("{who} killed: {none} before any item, {some} mid-stream, {all} after all");
        assert!(*some > 0, "no kill landed mid-stream");
    }
}

/// A producer SIGKILLed at a random point of a stream — between puts, or
/// inside one (after the item's write, before `tail`'s store) — leaves the
/// items it published, in order, and nothing else; the end is taken over and
/// the stream goes on.
#[test]
fn a_producer_killed_at_random_points_leaves_a_prefix_and_is_taken_over() {
    set_owner_check_interval(Duration::from_millis(5));
    let _dog = Watchdog::arm(Duration::from_secs(240), "spsc producer kills");
    const TRIALS: u64 = 100;
    const K: u64 = 100_000;
    let mut seed = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut landed = Landed::default();
    let window = stream_time(K) * 6 / 5;
    for trial in 0..TRIALS {
        let q = SpscQueue::<u64>::new(K as usize + 16).unwrap();
        kill_at_random(&mut seed, window, |started| {
            let mut tx = q.producer().unwrap();
            started();
            for i in 0..K {
                tx.put(i).unwrap();
            }
        });
        let mut tx = q.producer().unwrap();
        for i in 0..5 {
            tx.put(K + i).unwrap();
        }
        let mut rx = q.consumer().unwrap();
        let mut n = 0;
        loop {
            let v = rx.get().unwrap();
            if v >= K {
                assert_eq!(v, K, "trial {trial}: the new producer's first item");
                break;
            }
            assert_eq!(v, n, "trial {trial}: the dead producer's items, in order");
            n += 1;
        }
        for i in 1..5 {
            assert_eq!(rx.get().unwrap(), K + i);
        }
        landed.count(n, K);
    }
    landed.check("producer");
}

/// A consumer SIGKILLed at a random point — between gets, or inside one
/// (after the copy, before `head`'s store) — took exactly what its `get`s
/// returned: the next consumer goes on from there, nothing skipped, nothing
/// given twice.
#[test]
fn a_consumer_killed_at_random_points_is_taken_over_without_loss_or_repeat() {
    set_owner_check_interval(Duration::from_millis(5));
    let _dog = Watchdog::arm(Duration::from_secs(240), "spsc consumer kills");
    const TRIALS: u64 = 100;
    const K: u64 = 100_000;
    let mut seed = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    let mut landed = Landed::default();
    // A get costs about what a put does.
    let window = stream_time(K) * 6 / 5;
    for trial in 0..TRIALS {
        let q = SpscQueue::<u64>::new(K as usize).unwrap();
        {
            let mut tx = q.producer().unwrap();
            for i in 0..K {
                tx.put(i).unwrap();
            }
        }
        // What the child's gets returned: one more than the last item, stored
        // after each get returned it.
        let seen = Shared::anonymous(AtomicU64::new(0)).unwrap();
        kill_at_random(&mut seed, window, |started| {
            let mut rx = q.consumer().unwrap();
            started();
            for i in 0..K {
                let v = rx.get().unwrap();
                if v != i {
                    // Out of order: exits, and the parent's kill finds no SIGKILL.
                    // SAFETY: ends this forked child at once.
                    unsafe { libc::_exit(1) };
                }
                seen.store(v + 1, Ordering::SeqCst);
            }
        });
        let recorded = seen.load(Ordering::SeqCst);
        let mut rx = q.consumer().unwrap();
        let first = match rx.try_get() {
            Ok(v) => v,
            Err(Error::Disconnected) => K,
            Err(e) => panic!("trial {trial}: {e}"),
        };
        // The child may have had its last item returned and been killed
        // before it stored it: `first` is `recorded` or one past it.
        assert!(
            first == recorded || first == recorded + 1,
            "trial {trial}: the child recorded {recorded}, the next consumer got {first}"
        );
        for i in first + 1..K {
            assert_eq!(rx.get().unwrap(), i, "trial {trial}");
        }
        assert!(matches!(rx.try_get(), Err(Error::Disconnected)));
        landed.count(recorded, K);
    }
    landed.check("consumer");
}

#[test]
fn scribbled_positions_are_errors_not_accesses() {
    let _dog = Watchdog::arm(Duration::from_secs(30), "spsc scribbles");
    let q = SpscQueue::<u64>::new(2).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    tx.put(1).unwrap();
    tx.put(2).unwrap();
    // A tail far past head: the consumer's reload finds it impossible.
    assert_eq!(rx.get().unwrap(), 1);
    assert_eq!(rx.get().unwrap(), 2);
    word(&q, TAIL_AT).store(1 << 40, Ordering::SeqCst);
    match rx.try_get() {
        Err(Error::Corrupted(Corruption::Field { value, .. })) => assert_eq!(value, 1 << 40),
        other => panic!("a scribbled tail: {other:?}"),
    }
    assert!(matches!(rx.get(), Err(Error::Corrupted(_))));
    assert_eq!(q.qsize(), 0, "an impossible count reads as 0");
    word(&q, TAIL_AT).store(2, Ordering::SeqCst);
    // A head behind by more than the capacity: the producer's reload refuses it.
    tx.put(3).unwrap();
    tx.put(4).unwrap();
    word(&q, HEAD_AT).store(0, Ordering::SeqCst);
    assert!(matches!(tx.try_put(5), Err(Error::Corrupted(_))));
    assert!(matches!(tx.put(5), Err(Error::Corrupted(_))));
    word(&q, HEAD_AT).store(2, Ordering::SeqCst);
    assert_eq!(rx.get().unwrap(), 3);
    tx.put(5).unwrap();
    assert_eq!(rx.get().unwrap(), 4);
    assert_eq!(rx.get().unwrap(), 5);
    // Positions near 2^64 (consistent with each other): a new end refuses to
    // start from them, where its first put would overflow.
    drop((tx, rx));
    word(&q, HEAD_AT).store(u64::MAX - 1, Ordering::SeqCst);
    word(&q, TAIL_AT).store(u64::MAX, Ordering::SeqCst);
    assert!(matches!(q.producer(), Err(Error::Corrupted(_))));
    assert!(matches!(q.consumer(), Err(Error::Corrupted(_))));
    word(&q, HEAD_AT).store(5, Ordering::SeqCst);
    word(&q, TAIL_AT).store(5, Ordering::SeqCst);
    let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
    tx.put(6).unwrap();
    assert_eq!(rx.get().unwrap(), 6);
}

#[test]
fn opening_checks_the_type_and_the_geometry() {
    let name = unique_name("spsc-open");
    let q = SpscQueue::<u64>::create(&name, 8).unwrap();
    assert!(matches!(
        SpscQueue::<u32>::open(&name),
        Err(Error::Shm(multiproc_shm::Error::LayoutMismatch { .. }))
    ));
    assert!(matches!(
        multiproc_queue::Queue::<u64>::open(&name),
        Err(Error::Shm(multiproc_shm::Error::LayoutMismatch { .. }))
    ));
    let opened = SpscQueue::<u64>::open(&name).unwrap();
    assert_eq!(opened.capacity(), 8);
    // The capacity word (after the version) says more slots than the segment has.
    word(&q, 8).store(1 << 20, Ordering::SeqCst);
    assert!(matches!(
        SpscQueue::<u64>::open(&name),
        Err(Error::Corrupted(Corruption::TooSmall { .. }))
    ));
    word(&q, 8).store(0, Ordering::SeqCst);
    assert!(matches!(
        SpscQueue::<u64>::open(&name),
        Err(Error::Corrupted(Corruption::Field { .. }))
    ));
    drop(opened);
    drop(q);
    assert!(
        SpscQueue::<u64>::open(&name).is_err(),
        "the creator unlinks"
    );
    assert!(matches!(
        SpscQueue::<u64>::new(0),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn sizes_and_timeouts_read_as_python_s() {
    let q = SpscQueue::<u16>::new(3).unwrap();
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    assert!(q.empty() && !q.full());
    assert!(matches!(
        rx.get_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    for i in 0..3 {
        tx.put(i).unwrap();
    }
    assert_eq!(q.qsize(), 3);
    assert!(q.full());
    assert!(matches!(tx.try_put(3), Err(Error::Full)));
    assert!(matches!(
        tx.put_timeout(3, Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    assert_eq!(rx.get_timeout(Duration::from_millis(5)).unwrap(), 0);
    tx.put_timeout(3, Duration::from_millis(5)).unwrap();
    let got: Vec<u16> = (0..3).map(|_| rx.try_get().unwrap()).collect();
    assert_eq!(got, [1, 2, 3]);
}

/// The slots are the capacity rounded up to a power of two, but the ring
/// holds exactly its capacity, single or batched, however often its
/// positions have wrapped around the slots.
#[test]
fn a_ring_holds_its_capacity_not_its_slot_count() {
    for capacity in (1..=20).chain([127, 1000, 1024, 1025]) {
        let q = SpscQueue::<u32>::new(capacity).unwrap();
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        for round in 0..5 {
            // Start each round at another offset within the slots.
            for _ in 0..round * 3 % capacity.max(1) {
                tx.put(next_in).unwrap();
                next_in += 1;
                assert_eq!(rx.get().unwrap(), next_out);
                next_out += 1;
            }
            if round % 2 == 0 {
                for _ in 0..capacity {
                    tx.try_put(next_in).unwrap();
                    next_in += 1;
                }
            } else {
                let items: Vec<u32> = (next_in..next_in + capacity as u32 + 5).collect();
                assert_eq!(
                    tx.try_put_many(&items).unwrap(),
                    capacity,
                    "capacity {capacity}"
                );
                next_in += capacity as u32;
            }
            assert_eq!(q.qsize(), capacity);
            assert!(q.full());
            assert!(
                matches!(tx.try_put(0), Err(Error::Full)),
                "capacity {capacity}"
            );
            assert!(matches!(tx.try_put_many(&[0]), Err(Error::Full)));
            let mut out = Vec::new();
            assert_eq!(rx.try_get_many(&mut out, capacity + 5).unwrap(), capacity);
            for v in out {
                assert_eq!(v, next_out, "capacity {capacity}");
                next_out += 1;
            }
            assert!(matches!(rx.try_get(), Err(Error::Empty)));
        }
        // The mapping holds the rounded slot count, not more.
        let slots = capacity.next_power_of_two();
        assert!(q.segment().len() >= 640 + slots * 4);
        assert!(
            q.segment().len() < 640 + slots * 4 + 4096,
            "capacity {capacity}"
        );
    }
}

/// Batches of random sizes each way, through rings of several sizes, with
/// single puts and gets mixed in: the order is the order put, and nothing
/// is lost or repeated.
#[test]
fn batches_of_any_size_keep_the_order() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "spsc batches");
    const N: u64 = 100_000;
    for capacity in [1, 3, 64, 1000] {
        let q = SpscQueue::<u64>::new(capacity).unwrap();
        let mut rx = q.consumer().unwrap();
        let child = fork(|| {
            let mut tx = q.producer().unwrap();
            let mut seed = 0x1234_5678_9abc_def1 ^ capacity as u64;
            let mut i = 0;
            while i < N {
                let k = (next(&mut seed) % 70).min(N - i);
                let items: Vec<u64> = (i..i + k).collect();
                match next(&mut seed) % 4 {
                    0 => tx.put_many(&items).unwrap(),
                    1 => {
                        let mut done = 0;
                        while done < items.len() {
                            done += tx
                                .put_many_timeout(&items[done..], Duration::from_millis(1))
                                .or_else(|e| match e {
                                    Error::Timeout => Ok(0),
                                    e => Err(e),
                                })
                                .unwrap();
                        }
                    }
                    2 => {
                        let mut done = 0;
                        while done < items.len() {
                            done += match tx.try_put_many(&items[done..]) {
                                Ok(n) => n,
                                Err(Error::Full) => 0,
                                Err(e) => panic!("{e}"),
                            };
                        }
                    }
                    _ => {
                        for &v in &items {
                            tx.put(v).unwrap();
                        }
                    }
                }
                i += k;
            }
            drop(tx);
            0
        });
        let mut seed = 0x0fed_cba9_8765_4321 ^ capacity as u64;
        let mut out = Vec::new();
        let mut expect = 0;
        loop {
            out.clear();
            let max = (next(&mut seed) % 50) as usize + 1;
            let got = match next(&mut seed) % 3 {
                0 => rx.get_many(&mut out, max),
                1 => rx.get_many_timeout(&mut out, max, Duration::from_millis(1)),
                _ => rx.try_get_many(&mut out, max),
            };
            match got {
                Ok(n) => {
                    assert!(n >= 1 && n <= max && n == out.len(), "{n} of {max}");
                    for &v in &out {
                        assert_eq!(v, expect, "capacity {capacity}");
                        expect += 1;
                    }
                }
                Err(Error::Timeout | Error::Empty) => {}
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(expect, N, "capacity {capacity}");
        assert_eq!(rx.get_many(&mut out, 0).unwrap(), 0);
        child.wait_ok(BOUND);
    }
}

/// The fuzz target's entry over its seed (a well-formed queue holding two
/// items, so the fuzzer starts past the checks) and over random images of
/// every size up to a few slots past the control block: never a panic.
#[test]
fn random_memory_images_are_refused_or_survived() {
    let seed = std::fs::read(format!(
        "{}/../fuzz/seeds/spsc_memory/valid-capacity-4",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    match multiproc_queue::fuzz_spsc_bytes(&seed) {
        Ok(taken) => assert!(taken >= 2, "the seed's two items were not taken"),
        Err(why) => panic!("the seed is stale (regenerate it): {why}"),
    }
    let mut x = 0x243f_6a88_85a3_08d3_u64;
    let (mut refused, mut survived) = (0, 0);
    for round in 0..2000 {
        let mut bytes = seed.clone();
        if round % 4 == 0 {
            bytes.truncate((next(&mut x) % 800) as usize);
        }
        // A few random words over it, or all random.
        if round % 10 == 0 {
            for b in &mut bytes {
                *b = next(&mut x) as u8;
            }
        } else {
            for _ in 0..(next(&mut x) % 4 + 1) {
                let at = (next(&mut x) % 100) as usize * 8;
                if at + 8 <= bytes.len() {
                    let v = match next(&mut x) % 3 {
                        0 => next(&mut x),
                        1 => next(&mut x) % 16,
                        _ => u64::MAX - next(&mut x) % 16,
                    };
                    bytes[at..at + 8].copy_from_slice(&v.to_ne_bytes());
                }
            }
        }
        match multiproc_queue::fuzz_spsc_bytes(&bytes) {
            Ok(_) => survived += 1,
            Err(_) => refused += 1,
        }
    }
    eprintln!("random SpscQueue images: {refused} refused, {survived} survived");
    assert!(refused > 0 && survived > 0);
}
