//! Peers die and misbehave: producers and consumers SIGKILLed at random points,
//! writers that all go away, and garbage written over the ring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_queue::{ByteQueue, Corruption, Error, JoinableByteQueue, JoinableQueue, Queue};
use multiproc_shm::SharedSlice;
use multiproc_sync::set_owner_check_interval;
use multiproc_testkit::{fork, wait_until, Child, ChildExit, Watchdog};

/// Trials per test: 200 producer kills and 200 consumer kills.
const TRIALS: u64 = 200;
const K: u64 = 300;
/// Generous: a stuck slot is skipped after one check interval (5 ms here).
const BOUND: Duration = Duration::from_secs(10);

/// Runs `f` in a forked child that then dies by SIGKILL (a peer killed right
/// after `f`), and reaps it.
fn die_after(f: impl FnOnce()) {
    let child = fork(|| {
        f();
        die_here()
    });
    assert_eq!(child.wait(BOUND), ChildExit::Signaled(libc::SIGKILL));
}

/// This process dies by SIGKILL, here.
fn die_here() -> ! {
    // SAFETY: raise with a plain signal number; the process dies in it.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL cannot be caught")
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn msg(p: u64, i: u64) -> u64 {
    (p << 48) | i
}

/// What the random-kill tests do to a queue: `Queue<u64>`, and `ByteQueue`,
/// whose one-message paths are its own. Messages are u64s; a byte queue carries
/// each as 8 to 24 bytes (see `encode`), checked whole when taken.
trait Ops: Sized {
    const NAME: &'static str;
    fn make(capacity: usize) -> Self;
    fn put(&self, m: u64);
    fn get_timeout(&self, d: Duration) -> Result<u64, Error>;
    fn try_get(&self) -> Result<u64, Error>;
    fn lost(&self) -> u64;
    fn empty(&self) -> bool;
}

impl Ops for Queue<u64> {
    const NAME: &'static str = "Queue<u64>";
    fn make(capacity: usize) -> Self {
        Queue::new(capacity).unwrap()
    }
    fn put(&self, m: u64) {
        Queue::put(self, m).unwrap();
    }
    fn get_timeout(&self, d: Duration) -> Result<u64, Error> {
        Queue::get_timeout(self, d)
    }
    fn try_get(&self) -> Result<u64, Error> {
        Queue::try_get(self)
    }
    fn lost(&self) -> u64 {
        Queue::lost(self)
    }
    fn empty(&self) -> bool {
        Queue::empty(self)
    }
}

/// A byte queue and the buffer its gets reuse. Its messages fit its 24-byte
/// slots, or (`STREAMED`) mostly stream through a lane of 4 KiB: messages of
/// 8 bytes to 9 KB, so that a kill lands inside a stream as often as between
/// two (a stream takes microseconds, a slot's put nanoseconds).
struct Bytes<const STREAMED: bool>(ByteQueue, std::cell::RefCell<Vec<u8>>);

/// Through a byte queue's slots.
type Slotted = Bytes<false>;
/// Through a byte queue's lane, mostly.
type Streamed = Bytes<true>;

impl<const STREAMED: bool> Bytes<STREAMED> {
    /// `m`'s 8 bytes, then `m % 17` copies of its low byte; streamed, `m %
    /// 7` times 1 500 of them: in a slot (8 bytes), in the lane whole (1 508
    /// and 3 008) or streamed as the receiver makes room (4 508 to 9 008).
    fn encode(m: u64) -> Vec<u8> {
        let mut v = m.to_le_bytes().to_vec();
        let more = if STREAMED {
            (m % 7) as usize * 1_500
        } else {
            (m % 17) as usize
        };
        v.resize(8 + more, m as u8);
        v
    }

    /// The message `encode` made `b` from; panics on anything else (a torn
    /// message).
    fn decode(b: &[u8]) -> u64 {
        let m = u64::from_le_bytes(b[..8].try_into().expect("at least 8 bytes"));
        assert!(b == Self::encode(m), "a message arrived whole");
        m
    }
}

impl<const STREAMED: bool> Ops for Bytes<STREAMED> {
    const NAME: &'static str = if STREAMED {
        "ByteQueue, streamed"
    } else {
        "ByteQueue"
    };
    fn make(capacity: usize) -> Self {
        let lane = if STREAMED {
            4096
        } else {
            multiproc_queue::LANE_BYTES
        };
        let q = ByteQueue::with_lane(multiproc_shm::Location::Anonymous, capacity, 24, lane);
        Bytes(q.unwrap(), Default::default())
    }
    fn put(&self, m: u64) {
        self.0.put_bytes(&Self::encode(m)).unwrap();
    }
    fn get_timeout(&self, d: Duration) -> Result<u64, Error> {
        let mut buf = self.1.borrow_mut();
        self.0.get_bytes_into_timeout(&mut buf, d)?;
        Ok(Self::decode(&buf))
    }
    fn try_get(&self) -> Result<u64, Error> {
        let mut buf = self.1.borrow_mut();
        self.0.try_get_bytes_into(&mut buf)?;
        Ok(Self::decode(&buf))
    }
    fn lost(&self) -> u64 {
        self.0.lost()
    }
    fn empty(&self) -> bool {
        self.0.qsize() == 0
    }
}

/// A producer is killed mid-stream; the survivor's messages all arrive, in order,
/// once; the victim's arrive in order, once, with at most one lost.
///
/// These trials are about kills under a real scheduler, with the peers running
/// at the same time. They do not promise to land inside a put (a put is a few
/// dozen nanoseconds; most kills land between two): `every_write.rs` kills a
/// put at each of its stores, which is where the window is covered.
#[test]
fn a_producer_killed_at_random_points() {
    producer_kills::<Queue<u64>>(0x1357_9bdf_2468_ace0);
}

/// As `a_producer_killed_at_random_points`, through a byte queue.
#[test]
fn a_byte_producer_killed_at_random_points() {
    producer_kills::<Slotted>(0x2468_ace0_1357_9bdf);
}

/// As `a_producer_killed_at_random_points`, with messages that stream
/// through the lane: a producer killed mid-stream holds the lane, which the
/// survivor takes over; its message is counted lost, never taken torn.
#[test]
fn a_streaming_producer_killed_at_random_points() {
    producer_kills::<Streamed>(0x3579_bdf1_4680_ace2);
}

fn producer_kills<Q: Ops>(mut seed: u64) {
    let _dog = Watchdog::arm(Duration::from_secs(300), "producer kills");
    set_owner_check_interval(Duration::from_millis(5));
    let mut lost_total = 0;
    for trial in 0..TRIALS {
        let q = Q::make(8);
        let mut victim = fork(|| {
            for i in 0.. {
                q.put(msg(0, i));
            }
            0
        });
        let survivor = fork(|| {
            for i in 0..K {
                q.put(msg(1, i));
            }
            0
        });
        let kill_after = Duration::from_micros(next(&mut seed) % 3000);
        let start = Instant::now();
        let mut killed = false;
        let (mut next_s, mut last_v) = (0, None::<u64>);
        // Keep taking until the kill, so that it lands on a victim that is busy
        // putting rather than asleep on a full ring.
        loop {
            if !killed && start.elapsed() >= kill_after {
                victim.signal(libc::SIGKILL);
                killed = true;
            }
            if killed && next_s == K {
                break;
            }
            let m = match q.get_timeout(BOUND) {
                Ok(m) => m,
                Err(e) => panic!(
                    "trial {trial}: get failed with {e} after {next_s} of the survivor's messages"
                ),
            };
            let (p, i) = (m >> 48, m & ((1 << 48) - 1));
            if p == 1 {
                assert_eq!(
                    i, next_s,
                    "trial {trial}: the survivor's messages in order, once"
                );
                next_s += 1;
            } else {
                assert!(
                    last_v.is_none_or(|l| i > l),
                    "trial {trial}: victim's message {i} after {last_v:?}"
                );
                last_v = Some(i);
            }
        }
        assert_eq!(
            victim.wait_timeout(BOUND),
            Some(ChildExit::Signaled(libc::SIGKILL))
        );
        survivor.wait_ok(BOUND);
        // Drain what the victim left; nothing it put twice.
        while let Ok(m) = q.try_get() {
            let i = m & ((1 << 48) - 1);
            assert!(last_v.is_none_or(|l| i > l));
            last_v = Some(i);
        }
        assert!(q.lost() <= 1, "trial {trial}: lost {}", q.lost());
        lost_total += q.lost();
    }
    // Each lost message is a kill that landed between claim and publish.
    eprintln!(
        "{}: {TRIALS} producer kills: {lost_total} landed inside a put (between \
         claim and publish, or mid-stream: that message counted lost), the rest \
         between puts (the window is covered in every_write.rs)",
        Q::NAME
    );
}

/// A consumer is killed mid-stream; the producer never stalls at the wrap-around,
/// nothing is received twice, and what is missing is at most the one message the
/// victim held. As for the producer kills, the window inside a get is covered
/// store by store in `every_write.rs`; these trials need not land in it.
#[test]
fn a_consumer_killed_at_random_points() {
    consumer_kills::<Queue<u64>>(0x0f1e_2d3c_4b5a_6978);
}

/// As `a_consumer_killed_at_random_points`, through a byte queue.
#[test]
fn a_byte_consumer_killed_at_random_points() {
    consumer_kills::<Slotted>(0x4b5a_6978_0f1e_2d3c);
}

/// As `a_consumer_killed_at_random_points`, with messages that stream
/// through the lane: a receiver killed mid-stream stalls its producer only
/// until it is found dead, and its message is the one missing.
#[test]
fn a_streaming_consumer_killed_at_random_points() {
    consumer_kills::<Streamed>(0x6978_0f1e_2d3c_4b5a);
}

fn consumer_kills<Q: Ops>(mut seed: u64) {
    let _dog = Watchdog::arm(Duration::from_secs(300), "consumer kills");
    set_owner_check_interval(Duration::from_millis(5));
    let mut lost_total = 0;
    // At most this many messages: the producer stops once the victim is dead,
    // so a trial costs the kill's delay plus a drain, even on a busy machine.
    const K: u64 = 50_000;
    for trial in 0..TRIALS {
        let q = Q::make(4);
        let victim_got = SharedSlice::<AtomicU64>::anonymous(K.div_ceil(64) as usize).unwrap();
        // [stop, how many the producer put]
        let ctl = SharedSlice::<AtomicU64>::anonymous(2).unwrap();
        let producer = fork(|| {
            let mut i = 0;
            while i < K && ctl[0].load(Ordering::SeqCst) == 0 {
                q.put(i);
                i += 1;
            }
            ctl[1].store(i, Ordering::SeqCst);
            0
        });
        let victim = fork(|| loop {
            let i = q.get_timeout(BOUND).unwrap();
            victim_got[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 2000));
        victim.kill(BOUND);
        ctl[0].store(1, Ordering::SeqCst);
        let mut mine = vec![false; K as usize];
        let t = Instant::now();
        let mut producer = Some(producer);
        loop {
            match q.get_timeout(Duration::from_millis(20)) {
                Ok(i) => {
                    assert!(!mine[i as usize], "trial {trial}: {i} twice");
                    mine[i as usize] = true;
                }
                Err(Error::Timeout) => {
                    if let Some(mut p) = producer.take() {
                        match p.wait_timeout(Duration::ZERO) {
                            Some(ChildExit::Exited(0)) => {}
                            Some(other) => panic!("trial {trial}: producer {other:?}"),
                            None => producer = Some(p),
                        }
                    }
                    if producer.is_none() && q.empty() {
                        break;
                    }
                    assert!(t.elapsed() < BOUND, "trial {trial}: the producer stalled");
                }
                Err(e) => panic!("trial {trial}: {e}"),
            }
        }
        let put = ctl[1].load(Ordering::SeqCst);
        let mine = &mine[..put as usize];
        let victims: Vec<bool> = (0..put)
            .map(|i| victim_got[(i / 64) as usize].load(Ordering::SeqCst) & (1 << (i % 64)) != 0)
            .collect();
        let both = (0..put as usize).filter(|&i| mine[i] && victims[i]).count();
        assert_eq!(both, 0, "trial {trial}: delivered twice");
        let missing = (0..put as usize)
            .filter(|&i| !mine[i] && !victims[i])
            .count() as u64;
        assert!(
            missing <= q.lost() + 1,
            "trial {trial}: {missing} missing, {} counted lost",
            q.lost()
        );
        assert!(q.lost() <= 1);
        lost_total += q.lost();
    }
    eprintln!(
        "{}: {TRIALS} consumer kills: {lost_total} landed inside a get (between \
         claim and free, or mid-stream: that message counted lost), the rest \
         between gets",
        Q::NAME
    );
}

/// A producer that dies between claiming a slot and publishing it (made certain by
/// a hook that claims and stops): the consumer skips the slot within the bound,
/// counts it lost, and gets the messages behind it.
#[test]
fn a_producer_dead_between_claim_and_publish_is_skipped() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "claim then die (put)");
    set_owner_check_interval(Duration::from_millis(5));
    dead_producers_claim_is_skipped();
}

fn dead_producers_claim_is_skipped() {
    let q = Queue::<u64>::new(4).unwrap();
    q.put(1).unwrap();
    die_after(|| q.hook_claim_put_and_stop());
    q.put(3).unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), 1);
    let t = Instant::now();
    assert_eq!(
        q.get_timeout(BOUND).unwrap(),
        3,
        "the dead producer's slot was skipped"
    );
    assert!(t.elapsed() < BOUND / 2);
    assert_eq!(q.lost(), 1);
}

/// A consumer that only ever waits briefly — each wait shorter than the owner
/// check interval, as a driver that looks at other things between waits does
/// — still skips a dead producer's claim: each timed-out wait looks once.
#[test]
fn short_waits_still_skip_a_dead_producers_claim() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "short waits and a dead claim");
    set_owner_check_interval(Duration::from_millis(200));
    let q = ByteQueue::new(4, 8).unwrap();
    die_after(|| q.hook_claim_put_and_stop());
    q.put_bytes(b"after").unwrap();
    let t = Instant::now();
    let got = loop {
        match q.get_bytes_timeout(Duration::from_millis(2)) {
            Ok(m) => break m,
            Err(multiproc_queue::Error::Timeout) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(
            t.elapsed() < BOUND,
            "short waits never got past the dead claim"
        );
    };
    assert_eq!(got, b"after");
    assert_eq!(q.lost(), 1);
    let q = ByteQueue::new(4, 8).unwrap();
    die_after(|| q.hook_claim_put_and_stop());
    q.put_bytes(b"x").unwrap();
    let t = Instant::now();
    while !q.poll_timeout(Duration::from_millis(2)).unwrap() {
        assert!(
            t.elapsed() < BOUND,
            "short polls never got past the dead claim"
        );
    }
    assert_eq!(q.get_bytes().unwrap(), b"x");
}

/// A consumer that dies between claiming a message and freeing its slot: the
/// producer at the wrap-around frees it within the bound and counts it lost.
#[test]
fn a_consumer_dead_between_claim_and_free_is_skipped() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "claim then die (get)");
    set_owner_check_interval(Duration::from_millis(5));
    dead_consumers_claim_is_freed();
}

fn dead_consumers_claim_is_freed() {
    let q = Queue::<u64>::new(2).unwrap();
    q.put_many(&[1, 2]).unwrap();
    die_after(|| q.hook_claim_get_and_stop());
    assert_eq!(q.get().unwrap(), 2);
    q.put(3).unwrap(); // into the free slot
    let t = Instant::now();
    q.put_timeout(4, BOUND)
        .expect("the slot the dead consumer held is freed");
    assert!(t.elapsed() < BOUND / 2);
    assert_eq!(q.lost(), 1, "message 1 died with its consumer");
    assert_eq!(q.get().unwrap(), 3);
    assert_eq!(q.get().unwrap(), 4);
}

/// The dead claimers above, and producers and consumers killed at random
/// points, where `pidfd_open` is refused: every participant and claim record
/// then holds a start time, not a pidfs inode number, as on every kernel
/// before 6.9 (Debian 12's 6.1, Ubuntu 24.04's 6.8), and a
/// dead peer is found all the same. The refusal is a real one: a seccomp
/// filter in a forked child, which runs the trials (and whose own children
/// inherit it).
#[test]
fn dead_peers_are_found_where_tokens_are_start_times() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "dead peers, start-time tokens");
    let child = fork(|| {
        multiproc_testkit::refuse_pidfd_open();
        set_owner_check_interval(Duration::from_millis(5));
        dead_producers_claim_is_skipped();
        dead_consumers_claim_is_freed();
        producer_kills::<Queue<u64>>(0x1357_9bdf_2468_ace0);
        consumer_kills::<Slotted>(0x4b5a_6978_0f1e_2d3c);
        0
    });
    assert_eq!(child.wait(Duration::from_secs(280)), ChildExit::Exited(0));
}

/// A put that does not wait (a zero timeout) still frees the slot of a consumer
/// that died inside its get, when the owner check interval is long: the
/// timed-out wait looks once for the dead claimer. (`try_put` answers Full.)
#[test]
fn a_put_with_a_zero_timeout_frees_a_dead_consumers_slot() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "zero-timeout put and a dead get");
    set_owner_check_interval(Duration::from_secs(5));
    let q = ByteQueue::new(2, 8).unwrap();
    q.put_bytes_many(&[&b"1"[..], b"2"]).unwrap();
    die_after(|| q.hook_claim_get_and_stop());
    assert_eq!(q.get_bytes().unwrap(), b"2");
    // The next put wraps around to the slot the dead consumer holds.
    assert!(matches!(q.try_put_bytes(b"3"), Err(Error::Full)));
    let t = Instant::now();
    q.put_bytes_timeout(b"3", Duration::ZERO)
        .expect("the zero-timeout put freed the dead consumer's slot");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "it did not wait an interval"
    );
    assert_eq!(q.lost(), 1);
    q.put_bytes(b"4").unwrap();
    assert_eq!(q.get_bytes().unwrap(), b"3");
    assert_eq!(q.get_bytes().unwrap(), b"4");
}

/// A producer killed halfway through `put_many`, after publishing the first of
/// the four slots it claimed: the consumer gets that one, skips the other three
/// (all announced by the dead producer's claim), counts them lost, and gets the
/// messages behind them.
#[test]
fn a_producer_dead_halfway_through_a_batch_is_skipped() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "batch claim then die (put)");
    set_owner_check_interval(Duration::from_millis(5));
    let q = Queue::<u64>::new(8).unwrap();
    die_after(|| assert_eq!(q.hook_put_many_and_stop(&[10, 11, 12, 13], 1), 4));
    q.put(20).unwrap();
    assert_eq!(q.get_timeout(BOUND).unwrap(), 10);
    let t = Instant::now();
    assert_eq!(
        q.get_timeout(BOUND).unwrap(),
        20,
        "the three slots the dead producer claimed and never published were skipped"
    );
    assert!(t.elapsed() < BOUND / 2);
    assert_eq!(q.lost(), 3);
}

/// A consumer killed halfway through `get_many`, after taking the first of the
/// four messages it claimed: producers at the wrap-around free the other three
/// slots and count those messages lost.
#[test]
fn a_consumer_dead_halfway_through_a_batch_is_skipped() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "batch claim then die (get)");
    set_owner_check_interval(Duration::from_millis(5));
    let q = Queue::<u64>::new(4).unwrap();
    q.put_many(&[1, 2, 3, 4]).unwrap();
    die_after(|| assert_eq!(q.hook_get_many_and_stop(4, 1), 4));
    q.put(5).unwrap(); // into the slot it freed
    let t = Instant::now();
    for v in 6..=8 {
        q.put_timeout(v, BOUND)
            .expect("the slots the dead consumer held are freed");
    }
    assert!(t.elapsed() < BOUND / 2);
    assert_eq!(q.lost(), 3, "messages 2, 3 and 4 died with their consumer");
    for v in 5..=8 {
        assert_eq!(q.get().unwrap(), v);
    }
}

/// A producer that lost the race for a position (another claimed it first) and
/// then stays idle must not look like that position's claimer: when the winner
/// dies before publishing, the consumer still skips the slot.
#[test]
fn a_lost_put_race_leaves_no_claim_behind() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "lost put race");
    set_owner_check_interval(Duration::from_millis(5));
    let q = Queue::<u64>::new(4).unwrap();
    die_after(|| q.hook_claim_put_and_stop()); // position 0
    q.put(7).unwrap(); // position 1
    assert!(
        !q.hook_claim_at(0, 1, false),
        "position 0 was the dead child's"
    );
    let t = Instant::now();
    assert_eq!(
        q.get_timeout(BOUND).unwrap(),
        7,
        "the dead winner's slot was skipped although this (live) thread raced for it"
    );
    assert!(t.elapsed() < BOUND / 2);
    assert_eq!(q.lost(), 1);
}

/// A batch claim that loses its race must not leave its range behind either: the
/// loser's next single put announces one position, not the rest of the lost
/// batch, so a dead claimer inside that old range is still skipped.
#[test]
fn a_lost_batch_race_leaves_no_range_behind() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "lost batch race");
    set_owner_check_interval(Duration::from_millis(5));
    let q = Queue::<u64>::new(8).unwrap();
    die_after(|| q.hook_claim_put_and_stop()); // position 0
    assert!(!q.hook_claim_at(0, 4, false), "0..4 was raced for and lost");
    q.put(7).unwrap(); // position 1, by this (live) thread
    die_after(|| q.hook_claim_put_and_stop()); // position 2, inside the lost batch's range
    let writer = fork(|| {
        q.put(9).unwrap(); // position 3
        0
    });
    writer.wait_ok(BOUND);
    let t = Instant::now();
    assert_eq!(q.get_timeout(BOUND).unwrap(), 7);
    assert_eq!(
        q.get_timeout(BOUND).unwrap(),
        9,
        "position 2 was skipped: this thread's lost batch does not cover it"
    );
    assert!(t.elapsed() < BOUND / 2);
    assert_eq!(q.lost(), 2);
}

/// The same for a consumer that lost the race for a message: when the winner
/// dies before freeing the slot, the producer at the wrap-around still frees it.
#[test]
fn a_lost_get_race_leaves_no_claim_behind() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "lost get race");
    set_owner_check_interval(Duration::from_millis(5));
    let q = Queue::<u64>::new(2).unwrap();
    q.put_many(&[1, 2]).unwrap();
    die_after(|| q.hook_claim_get_and_stop()); // message 1, position 0
    assert!(
        !q.hook_claim_at(0, 1, true),
        "message 1 was the dead child's"
    );
    let t = Instant::now();
    q.put_timeout(3, BOUND)
        .expect("the dead winner's slot is freed although this (live) thread raced for it");
    assert!(t.elapsed() < BOUND / 2);
    assert_eq!(q.lost(), 1);
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 3);
}

/// In a `JoinableQueue`, a message lost to a dead producer or consumer can never
/// be marked done: it leaves the unfinished count, so `join` returns once the
/// rest are done instead of waiting for it forever.
#[test]
fn lost_messages_do_not_hold_up_join() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "join after losses");
    set_owner_check_interval(Duration::from_millis(5));
    let q = JoinableQueue::<u64>::new(2).unwrap();
    die_after(|| q.hook_claim_put_and_stop());
    q.put(1).unwrap();
    assert_eq!(q.unfinished(), 2, "the dead producer's item was counted");
    assert_eq!(q.get_timeout(BOUND).unwrap(), 1, "its slot skipped");
    q.task_done().unwrap();
    q.join_timeout(BOUND)
        .expect("the lost item is not waited for");

    q.put(2).unwrap();
    q.put(3).unwrap();
    die_after(|| q.hook_claim_get_and_stop()); // takes 2, never frees it
    assert_eq!(q.get().unwrap(), 3);
    q.task_done().unwrap();
    q.put_timeout(4, BOUND)
        .expect("the dead consumer's slot is freed");
    assert_eq!(q.get().unwrap(), 4);
    q.task_done().unwrap();
    assert_eq!(q.lost(), 2);
    q.join_timeout(BOUND)
        .expect("the item lost with its consumer is not waited for");
}

/// `poll` answers whether a message can be read: a dead producer's claim is not
/// one. It is skipped within the check interval, and poll goes on waiting.
#[test]
fn poll_is_not_fooled_by_a_dead_producers_claim() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "poll and a dead claim");
    set_owner_check_interval(Duration::from_millis(5));
    let q = ByteQueue::new(4, 8).unwrap();
    die_after(|| q.hook_claim_put_and_stop());
    assert!(
        !q.poll_timeout(Duration::from_millis(300)).unwrap(),
        "nothing can be read: the only claim is a dead producer's"
    );
    assert_eq!(q.lost(), 1, "and poll skipped it");
    let writer = fork(|| {
        std::thread::sleep(Duration::from_millis(50));
        q.put_bytes(b"x").unwrap();
        0
    });
    assert!(q.poll_timeout(BOUND).unwrap());
    assert_eq!(q.get_bytes().unwrap(), b"x");
    writer.wait_ok(BOUND);
}

/// `has_message` looks only at the slot a get takes next: a producer's claim
/// not published yet (here a dead one's) is no message there, where `empty`
/// counts it; once a `poll` has skipped the dead claim, the message put
/// behind it is there.
#[test]
fn has_message_looks_at_the_next_slot_not_at_the_claims() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "has_message and a dead claim");
    set_owner_check_interval(Duration::from_millis(5));
    let q = ByteQueue::new(4, 8).unwrap();
    assert!(!q.has_message() && q.empty());
    die_after(|| q.hook_claim_put_and_stop());
    assert!(!q.has_message(), "a claim is no message");
    assert!(!q.empty(), "empty counts the claim");
    q.put_bytes(b"x").unwrap();
    assert!(!q.has_message(), "the next slot is still the dead claim's");
    assert!(q.poll_timeout(BOUND).unwrap(), "poll skips the dead claim");
    assert!(q.has_message());
    assert_eq!(q.get_bytes().unwrap(), b"x");
    assert!(!q.has_message() && q.empty());
    assert_eq!(q.lost(), 1);
}

/// `wait` over several queues answers as a get would: a dead producer's
/// claim at a queue's head, with a message behind it, is skipped within the
/// check interval and the queue is ready (a pool of more than 32 workers,
/// whose driver waits on several answer queues, never saw the answers
/// behind a worker killed while it put one).
#[test]
fn wait_over_several_queues_skips_a_dead_producers_claim() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "wait and a dead claim");
    set_owner_check_interval(Duration::from_millis(5));
    let (a, b) = (ByteQueue::new(4, 8).unwrap(), ByteQueue::new(4, 8).unwrap());
    die_after(|| b.hook_claim_put_and_stop());
    b.put_bytes(b"behind").unwrap();
    let ready = multiproc_queue::wait_timeout(&[&a, &b], Duration::from_secs(2)).unwrap();
    assert_eq!(
        ready,
        [1],
        "the message behind the dead claim is there to get"
    );
    assert_eq!(b.lost(), 1, "and the dead claim was skipped");
    assert_eq!(b.try_get_bytes().unwrap(), b"behind");
    // Over one queue the same.
    die_after(|| a.hook_claim_put_and_stop());
    a.put_bytes(b"also").unwrap();
    assert_eq!(
        multiproc_queue::wait_timeout(&[&a], Duration::from_secs(2)).unwrap(),
        [0]
    );
    assert_eq!(a.try_get_bytes().unwrap(), b"also");
}

/// Waits until `pid` is stopped (state `T` in /proc/PID/stat).
fn wait_until_stopped(pid: libc::pid_t) {
    let t = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit_once(") ").unwrap().1.chars().next();
        if state == Some('T') {
            return;
        }
        assert!(t.elapsed() < BOUND, "child {pid} never stopped");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn stop_self() {
    // SAFETY: raise with a plain signal number; the process stops until SIGCONT.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// A producer stopped (SIGSTOP) between claiming a slot and publishing it is
/// alive: the consumer waits (sleeping, after a check interval) and never skips
/// its slot; the message arrives once it continues.
#[test]
fn a_stopped_producers_claim_is_waited_for_not_skipped() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "stopped producer");
    set_owner_check_interval(Duration::from_millis(5));
    let q = Queue::<u64>::new(4).unwrap();
    let child = fork(|| {
        assert!(q.hook_put_with_pause(42, stop_self));
        0
    });
    wait_until_stopped(child.pid());
    assert!(matches!(
        q.get_timeout(Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    assert_eq!(q.lost(), 0, "a live producer's claim is never skipped");
    child.signal(libc::SIGCONT);
    assert_eq!(q.get_timeout(BOUND).unwrap(), 42);
    child.wait_ok(BOUND);
}

/// As above, with the consumer at its limit of open files: it cannot open a
/// pidfd or `/proc` to read the producer's identity token, and must still
/// take it for alive (it took the failed reads for "no such task", skipped
/// the live producer's slot and counted its message lost).
#[test]
fn a_consumer_out_of_descriptors_still_waits_for_a_live_producers_claim() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "consumer out of descriptors");
    let consumer = fork(|| {
        set_owner_check_interval(Duration::from_millis(5));
        let q = Queue::<u64>::new(4).unwrap();
        let producer = fork(|| {
            assert!(q.hook_put_with_pause(42, stop_self));
            0
        });
        wait_until_stopped(producer.pid());
        multiproc_testkit::limit_open_files_to_those_open();
        let waited = matches!(
            q.get_timeout(Duration::from_millis(300)),
            Err(Error::Timeout)
        );
        let lost = q.lost();
        producer.signal(libc::SIGCONT);
        let got = q.get_timeout(BOUND);
        producer.wait_ok(BOUND);
        match (waited, lost, got) {
            (true, 0, Ok(42)) => 0,
            other => {
                eprintln!("waited, lost, got: {other:?}");
                10
            }
        }
    });
    assert_eq!(consumer.wait(Duration::from_secs(50)), ChildExit::Exited(0));
}

/// The same for a consumer stopped between claiming a message and freeing its
/// slot: the producer at the wrap-around waits and never frees it itself.
#[test]
fn a_stopped_consumers_claim_is_waited_for_not_skipped() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "stopped consumer");
    set_owner_check_interval(Duration::from_millis(5));
    let q = Queue::<u64>::new(1).unwrap();
    q.put(1).unwrap();
    let child = fork(|| {
        assert!(q.hook_get_with_pause(stop_self));
        0
    });
    wait_until_stopped(child.pid());
    assert!(matches!(
        q.put_timeout(2, Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    assert_eq!(q.lost(), 0, "a live consumer's claim is never skipped");
    child.signal(libc::SIGCONT);
    q.put_timeout(2, BOUND)
        .expect("room once the consumer frees its slot");
    child.wait_ok(BOUND);
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn a_blocked_get_is_disconnected_when_every_writer_is_gone() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "disconnected");
    set_owner_check_interval(Duration::from_millis(5));
    let mut q = Queue::<u64>::new(16).unwrap();
    // Forked with the handle: the children count as writers.
    let kids: Vec<_> = (0..3)
        .map(|k| {
            let q = &q;
            fork(move || {
                std::thread::sleep(Duration::from_millis(20 * k));
                q.put(k).unwrap();
                0
            })
        })
        .collect();
    q.stop_writing(); // this process only reads now
    let mut got: Vec<u64> = (0..3).map(|_| q.get_timeout(BOUND).unwrap()).collect();
    got.sort();
    assert_eq!(got, [0, 1, 2]);
    for k in kids {
        k.wait_ok(BOUND);
    }
    let t = Instant::now();
    assert!(matches!(q.get_timeout(BOUND), Err(Error::Disconnected)));
    assert!(
        t.elapsed() < BOUND / 2,
        "noticed within a few check intervals"
    );
    // A writer that is alive keeps it connected.
    let q2 = Queue::<u64>::new(4).unwrap();
    assert!(matches!(
        q2.get_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
}

/// A byte queue opened with `open_receiver` by another process does not count as
/// a writer: once the creator (the only writer) drops its handle, the receiver's
/// blocked get answers `Disconnected`, after the message left for it.
#[test]
fn a_byte_receiver_is_disconnected_when_the_writer_is_gone() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "byte receiver");
    set_owner_check_interval(Duration::from_millis(5));
    let name = multiproc_testkit::unique_name("qbrecv");
    let opened = SharedSlice::<AtomicU64>::anonymous(1).unwrap();
    // Forked before the queue exists, so that it holds no copy of the writer's
    // handle (a process forked with one counts as a writer).
    let receiver = fork(|| {
        let r = std::cell::RefCell::new(None);
        wait_until(BOUND, "the queue exists", || {
            *r.borrow_mut() = ByteQueue::open_receiver(&name).ok();
            r.borrow().is_some()
        });
        let r = r.into_inner().unwrap();
        opened[0].store(1, Ordering::SeqCst);
        assert_eq!(r.get_bytes_timeout(BOUND).unwrap(), b"last");
        match r.get_bytes_timeout(BOUND) {
            Err(Error::Disconnected) => 0,
            other => panic!("expected Disconnected, got {other:?}"),
        }
    });
    let w = ByteQueue::create(&name, 4, 16).unwrap();
    wait_until(BOUND, "the receiver opened the queue", || {
        opened[0].load(Ordering::SeqCst) == 1
    });
    w.put_bytes(b"last").unwrap();
    drop(w); // the only writer; also unlinks the name
    receiver.wait_ok(BOUND);
}

/// Garbage over every part of the ring: operations answer (a value or an error)
/// within their timeouts, never panic, never touch memory outside the segment.
#[test]
fn garbage_in_the_ring_never_panics_or_hangs() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "garbage");
    set_owner_check_interval(Duration::from_millis(1));
    let mut seed = 0xdead_beef_0bad_f00d_u64;
    let mut corrupted = 0;
    for _ in 0..300 {
        let q = Queue::<u64>::new(5).unwrap();
        q.put_many(&[1, 2, 3]).unwrap();
        scribble(q.segment(), &mut seed);
        let t = Instant::now();
        let results = [
            q.put_timeout(7, Duration::from_millis(2)).err(),
            q.get_timeout(Duration::from_millis(2)).err(),
            q.try_get().err(),
            q.try_put(8).err(),
            q.get_many_timeout(&mut Vec::new(), 4, Duration::from_millis(2))
                .err(),
        ];
        let _ = (q.qsize(), q.empty(), q.full(), q.lost());
        corrupted += results
            .iter()
            .flatten()
            .filter(|e| matches!(e, Error::Corrupted(_)))
            .count();
        assert!(t.elapsed() < Duration::from_secs(5), "bounded");
    }
    eprintln!("300 scribbled rings: {corrupted} operations answered Corrupted");
}

/// Writes 1 to 6 words of garbage at random places in `seg`.
fn scribble(seg: &multiproc_shm::Segment, seed: &mut u64) {
    let words = seg.len() / 8;
    for _ in 0..1 + next(seed) % 6 {
        let at = (next(seed) % words as u64) as usize;
        let value = match next(seed) % 4 {
            0 => next(seed),
            1 => next(seed) % 64,
            2 => u64::MAX - next(seed) % 4,
            _ => 0,
        };
        // SAFETY: `at` is a word inside the segment's contents; we are its only user.
        unsafe { seg.as_ptr().cast::<u64>().add(at).write_volatile(value) };
    }
}

/// As `garbage_in_the_ring_never_panics_or_hangs`, for a byte queue: lengths
/// are garbage too, and no get returns more than a slot holds.
#[test]
fn garbage_in_a_byte_ring_never_panics_or_hangs() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "byte garbage");
    set_owner_check_interval(Duration::from_millis(1));
    let mut seed = 0x0bad_f00d_dead_beef_u64;
    let mut corrupted = 0;
    for _ in 0..300 {
        let q = ByteQueue::new(5, 24).unwrap();
        for m in [&b"one"[..], b"", &[7; 24]] {
            q.put_bytes(m).unwrap();
        }
        scribble(q.segment(), &mut seed);
        let t = Instant::now();
        let mut buf = Vec::new();
        let short = Duration::from_millis(2);
        let results = [
            q.put_bytes_timeout(b"x", short).err(),
            q.get_bytes_into_timeout(&mut buf, short).err(),
            q.try_get_bytes().map(|v| buf = v).err(),
            q.try_put_bytes(&[1; 20]).err(),
            q.try_get_bytes_into(&mut buf).err(),
            q.poll_timeout(short).err(),
        ];
        assert!(buf.len() <= 24, "a get returned {} bytes", buf.len());
        let _ = (q.qsize(), q.lost());
        corrupted += results
            .iter()
            .flatten()
            .filter(|e| matches!(e, Error::Corrupted(_)))
            .count();
        assert!(t.elapsed() < Duration::from_secs(5), "bounded");
    }
    eprintln!("300 scribbled byte rings: {corrupted} operations answered Corrupted");
}

/// The word at byte `at` of `seg`'s contents, checked to read `was`, set to `now`.
fn overwrite(seg: &multiproc_shm::Segment, at: usize, was: u64, now: u64) {
    assert!(at + 8 <= seg.len() && at.is_multiple_of(8));
    // SAFETY: an aligned word inside the segment's contents; the test is
    // the segment's only user.
    let word = unsafe { &*seg.as_ptr().add(at).cast::<AtomicU64>() };
    assert_eq!(word.load(Ordering::SeqCst), was, "the word at {at}");
    word.store(now, Ordering::SeqCst);
}

/// Where the ring's positions lie: the tail on the control block's first
/// line, the head on its second (the layout's table).
const TAIL_AT: usize = 0;
const HEAD_AT: usize = 128;

/// The byte offset of the slot sequence of the `u64` message `marker`, put
/// last into `q` (a `Queue<u64>`: the sequence is the word before the data).
fn seq_offset_of(q: &Queue<u64>, marker: u64) -> usize {
    let seg = q.segment();
    // SAFETY: the segment's contents are seg.len() bytes, ours alone here.
    let bytes = unsafe { std::slice::from_raw_parts(seg.as_ptr(), seg.len()) };
    let at = bytes
        .windows(8)
        .rposition(|w| w == marker.to_ne_bytes())
        .expect("the message is in the segment");
    at - 8
}

/// A tail written far past the head (more than a capacity: no producer can
/// have claimed those positions): a get answers `Corrupted` at once, without
/// a timeout too (before: each phantom position was taken for a producer's
/// claim in flight, yielded on for a check interval, and the get spent its
/// whole timeout so, at 100 % of a core; a get without one, for ever).
#[test]
fn a_tail_past_the_capacity_is_corrupted_not_waited_on() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "phantom tail");
    let q = Queue::<u64>::new(4).unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    overwrite(q.segment(), TAIL_AT, 1, 1 + 1000);
    let t = Instant::now();
    match q.get_timeout(BOUND) {
        Err(Error::Corrupted(Corruption::Positions {
            head,
            tail,
            capacity,
        })) => assert_eq!((head, tail, capacity), (1, 1001, 4)),
        other => panic!("expected Corrupted(Positions), got {other:?}"),
    }
    assert!(
        t.elapsed() < BOUND / 2,
        "answered without waiting out the timeout"
    );
    assert!(matches!(q.get(), Err(Error::Corrupted(_))));
    assert!(matches!(q.try_get(), Err(Error::Corrupted(_))));
    let b = ByteQueue::new(4, 16).unwrap();
    overwrite(b.segment(), TAIL_AT, 0, 1 << 40);
    assert!(matches!(b.poll_timeout(BOUND), Err(Error::Corrupted(_))));
    assert!(matches!(b.get_bytes(), Err(Error::Corrupted(_))));
    assert_eq!(
        (q.lost(), b.lost()),
        (0, 0),
        "no phantom message counted lost"
    );
}

/// A head written past the tail (a consumer ahead of every producer): a
/// message put after it is not silently out of reach — the get answers
/// `Corrupted` (before: `Empty` for ever, the message never seen).
#[test]
fn a_head_past_the_tail_is_corrupted_not_empty() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "head past tail");
    let q = Queue::<u64>::new(4).unwrap();
    overwrite(q.segment(), HEAD_AT, 0, 2);
    q.put(5).unwrap();
    match q.get_timeout(BOUND) {
        Err(Error::Corrupted(Corruption::Positions { head, tail, .. })) => {
            assert_eq!((head, tail), (2, 1))
        }
        other => panic!("expected Corrupted(Positions), got {other:?}"),
    }
}

/// A full queue whose head was written far ahead: the producer answers
/// `Corrupted`, and no message is freed as if a dead consumer had claimed it
/// (before: the put took the slot for one a consumer was emptying and waited
/// out its timeout).
#[test]
fn a_head_written_ahead_does_not_free_a_full_queues_messages() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "head ahead");
    let q = Queue::<u64>::new(2).unwrap();
    q.put_many(&[1, 2]).unwrap();
    overwrite(q.segment(), HEAD_AT, 0, 1000);
    match q.put_timeout(3, BOUND) {
        Err(Error::Corrupted(Corruption::Positions { head, tail, .. })) => {
            assert_eq!((head, tail), (1000, 2))
        }
        other => panic!("expected Corrupted(Positions), got {other:?}"),
    }
    assert_eq!(q.lost(), 0, "no message was freed");
}

/// A claimed position whose slot reads as older than the claim (its sequence
/// written back by a peer): a get answers `Corrupted` at once (before: it
/// slept in rounds of a check interval for a publish that cannot come, for
/// ever or until its timeout).
#[test]
fn a_claimed_slot_older_than_its_claim_is_corrupted_not_waited_on() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "old slot");
    let q = Queue::<u64>::new(4).unwrap();
    q.put_many(&[1, 2, 3, 4]).unwrap();
    for i in 1..=4 {
        assert_eq!(q.get().unwrap(), i);
    }
    let marker = 0xa5a5_5a5a_0123_4567;
    q.put(marker).unwrap();
    // Position 4 holds the marker: sequence 2·4 + 1. Written back to 2
    // (position 1's "free"), older than the claim the tail (5) says was made.
    overwrite(q.segment(), seq_offset_of(&q, marker), 9, 2);
    let t = Instant::now();
    match q.get_timeout(BOUND) {
        Err(Error::Corrupted(Corruption::Sequence { pos, seq })) => assert_eq!((pos, seq), (4, 2)),
        other => panic!("expected Corrupted(Sequence), got {other:?}"),
    }
    assert!(
        t.elapsed() < BOUND / 2,
        "answered without waiting out the timeout"
    );
}

/// A message whose length a peer overwrote with more than a slot holds: the
/// get answers `Corrupted` and copies nothing, the message is counted lost, and
/// the next one arrives.
#[test]
fn a_scribbled_length_is_refused_and_counted() {
    let q = ByteQueue::new(4, 16).unwrap();
    let marker = *b"\xa5marker\x5a";
    q.put_bytes(&marker).unwrap();
    q.put_bytes(b"next").unwrap();
    // Find the message in the segment; its slot's length (a u32) is the word
    // before its data.
    let seg = q.segment();
    // SAFETY: the segment's contents are seg.len() bytes, ours alone here.
    let bytes = unsafe { std::slice::from_raw_parts(seg.as_ptr(), seg.len()) };
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the message is in the segment");
    let len_at = at - 8;
    assert_eq!(
        bytes[len_at..len_at + 4],
        8u32.to_ne_bytes(),
        "the length word"
    );
    // SAFETY: a u32 inside the segment, 8-aligned (slot data is).
    unsafe {
        seg.as_ptr()
            .add(len_at)
            .cast::<u32>()
            .write_volatile(1 << 20)
    };
    let mut buf = vec![1, 2, 3];
    match q.get_bytes_into(&mut buf) {
        Err(Error::Corrupted(Corruption::Length { len, .. })) => assert_eq!(len, 1 << 20),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert_eq!(buf.len(), 3, "nothing was copied");
    assert_eq!(q.lost(), 1);
    assert_eq!(q.get_bytes().unwrap(), b"next");
}

#[test]
fn a_corrupted_geometry_is_refused_on_open() {
    let name = multiproc_testkit::unique_name("qgeom");
    let q = Queue::<u64>::create(&name, 4).unwrap();
    // The geometry line is the fourth 128-byte line: layout version (u32),
    // fixed-length flag (u32), capacity (u64), ...
    let geometry = q.segment().as_ptr().wrapping_add(3 * 128);
    let refused = || match Queue::<u64>::open(&name) {
        Err(Error::Corrupted(what)) => what,
        other => panic!("opened a corrupted queue: {other:?}"),
    };
    // SAFETY: inside the segment; no one else uses it.
    unsafe { geometry.add(8).cast::<u64>().write_volatile(1 << 40) };
    assert_eq!(
        refused(),
        Corruption::Field {
            what: "the capacity",
            value: 1 << 40
        }
    );
    // SAFETY: as above.
    unsafe { geometry.add(8).cast::<u64>().write_volatile(4) };
    Queue::<u64>::open(&name).unwrap();
    // A message size that still fits the slot size, but is not the item's: the
    // fast paths would copy 8 bytes per item, so the open is refused.
    // SAFETY: as above; msg_max follows capacity.
    unsafe { geometry.add(16).cast::<u64>().write_volatile(4) };
    assert_eq!(
        refused(),
        Corruption::NotItems {
            msg_max: 4,
            size: 8
        }
    );
    // SAFETY: as above.
    unsafe { geometry.add(16).cast::<u64>().write_volatile(8) };
    // SAFETY: as above.
    unsafe { geometry.add(4).cast::<u32>().write_volatile(2) };
    assert_eq!(
        refused(),
        Corruption::Field {
            what: "the fixed-length flag",
            value: 2
        }
    );
    // SAFETY: as above.
    unsafe { geometry.add(4).cast::<u32>().write_volatile(0) };
    assert!(
        matches!(refused(), Corruption::SlotSize { slot: 16, .. }),
        "a variable-length ring of 8-byte slots"
    );
    // SAFETY: as above.
    unsafe { geometry.cast::<u32>().write_volatile(1) };
    let what = refused();
    assert!(
        matches!(what, Corruption::LayoutVersion { found: 1, .. }),
        "{what:?}"
    );
    assert!(
        what.to_string().contains("same multiproc version"),
        "{what}"
    );
    drop(q); // the creator's handle unlinks the name
    assert!(Queue::<u64>::open(&name).is_err());
}

/// Writes the fuzz seeds afresh (after a layout change):
/// `cargo test -p multiproc-queue --test faults write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand after a layout change"]
fn write_fuzz_seeds() {
    for seed in FUZZ_SEEDS {
        let path = format!(
            "{}/../fuzz/seeds/queue_memory/{seed}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::write(&path, multiproc_queue::fuzz_seed(seed).unwrap()).unwrap();
    }
    for seed in LANE_SEEDS {
        let path = format!(
            "{}/../fuzz/seeds/lane_memory/{seed}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::write(&path, multiproc_queue::fuzz_seed(seed).unwrap()).unwrap();
    }
}

/// The lane target's entry over its seeds with random words written over
/// them (the op, the length, the announcement, the lane's control words),
/// in the ordinary suite: nothing panics or waits for long, and a message
/// put over a lane written before the put comes back whole (the entry's own
/// check).
#[test]
fn random_lane_images_are_survived() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "random lane images");
    let seeds: Vec<Vec<u8>> = LANE_SEEDS
        .iter()
        .map(|seed| {
            std::fs::read(format!(
                "{}/../fuzz/seeds/lane_memory/{seed}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        })
        .collect();
    let mut x = 0x1319_8a2e_0370_7344_u64;
    let mut taken = 0;
    for round in 0..3_000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        bytes[0] = next(&mut x) as u8;
        bytes[1] = next(&mut x) as u8;
        // A few words of the announcement and the control (the first 106
        // bytes), each random, small, or just below a power of two.
        for _ in 0..(next(&mut x) % 4 + 1) {
            let at = 2 + (next(&mut x) % 13) as usize * 8;
            let v = match next(&mut x) % 3 {
                0 => next(&mut x),
                1 => next(&mut x) % 16,
                _ => (1 << (next(&mut x) % 64)) - 1,
            };
            bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        taken += multiproc_queue::fuzz_lane_bytes(&bytes).unwrap();
    }
    eprintln!("random lane images: 3 000 inputs, {taken} messages taken");
    assert!(taken > 0);
}

const LANE_SEEDS: [&str; 3] = ["lane-put", "lane-announced", "lane-announced-over-limit"];

/// The lane target's seeds are real lanes of the current layout: a message
/// put over the first is taken whole, the stream the second announces is
/// taken from its forged announcement, and the third's is refused over its
/// limit (nothing taken).
#[test]
fn the_lane_fuzz_seeds_are_lanes_of_this_layout() {
    for (seed, want) in LANE_SEEDS.iter().zip([1, 1, 0]) {
        let path = format!(
            "{}/../fuzz/seeds/lane_memory/{seed}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap();
        match multiproc_queue::fuzz_lane_bytes(&bytes) {
            Ok(taken) => assert_eq!(taken, want, "{seed} is stale (regenerate it)"),
            Err(why) => panic!("{seed}: {why}"),
        }
    }
}

const FUZZ_SEEDS: [&str; 4] = [
    "valid-capacity-2",
    "valid-bytes-capacity-3",
    "valid-capacity-16",
    "valid-bytes-capacity-4-of-64",
];

/// The fuzz target's seeds are well-formed queues of the current layout, so the
/// fuzzer starts past the geometry checks (a layout change makes them stale:
/// see fuzz/README.md), and the target's operations take messages from them.
#[test]
fn the_fuzz_seeds_are_queues_of_this_layout() {
    for seed in FUZZ_SEEDS {
        let path = format!(
            "{}/../fuzz/seeds/queue_memory/{seed}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap();
        match multiproc_queue::fuzz_ring_bytes(&bytes) {
            Ok(taken) => assert!(taken >= 1, "{seed}: no message taken"),
            Err(why) => panic!("{seed} is stale (regenerate it): {why}"),
        }
    }
}

/// A byte queue's segment whose geometry says fixed-length messages (with the
/// slot size to match, so the geometry alone is consistent) is refused: a byte
/// queue's puts would leave lengths where that ring keeps none.
#[test]
fn a_byte_queue_said_to_be_fixed_is_refused_on_open() {
    let name = multiproc_testkit::unique_name("qbfix");
    let q = ByteQueue::create(&name, 4, 8).unwrap();
    let geometry = q.segment().as_ptr().wrapping_add(3 * 128);
    // SAFETY: inside the segment (see a_corrupted_geometry_is_refused_on_open);
    // no one else uses it. Fixed flag, slot size (8-byte seq + 8 bytes), and no
    // lane (a fixed ring has none).
    unsafe {
        geometry.add(4).cast::<u32>().write_volatile(1);
        geometry.add(24).cast::<u64>().write_volatile(16);
        geometry.add(48).cast::<u64>().write_volatile(0);
    }
    match ByteQueue::open(&name) {
        Err(Error::Corrupted(what)) => assert_eq!(what, Corruption::FixedRing),
        other => panic!("opened a byte queue said to be fixed: {other:?}"),
    }
}

/// A consumer killed while asleep in `get` leaves its mark. Until every
/// recorded sleep has surely ended (its bound and a second's slack) the mark
/// could be a live thread on its way to sleep, and stays; after that, the first
/// put whose wake-up finds nobody clears it, and later puts pay no futex wake
/// for the dead (with a count of sleepers, every later put did: ~350 ns
/// instead of ~15).
#[test]
fn a_consumer_killed_asleep_is_forgotten_by_a_later_put() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "consumer killed asleep");
    set_owner_check_interval(Duration::from_millis(5));
    let mut q = Queue::<u64>::new(4).unwrap();
    q.set_spin_limit(0);
    let child = fork(|| {
        let _ = q.get_timeout(Duration::from_secs(30));
        0
    });
    wait_until(BOUND, "a consumer asleep", || q.hook_sleepers() == (1, 0));
    child.kill(BOUND);
    q.put(7).unwrap();
    assert_eq!(
        q.hook_sleepers(),
        (1, 0),
        "too soon to tell it from a live one"
    );
    assert_eq!(q.get().unwrap(), 7);
    std::thread::sleep(Duration::from_millis(1_100));
    q.put(8).unwrap();
    assert_eq!(q.hook_sleepers(), (0, 0), "the put found the sleeper dead");
    assert_eq!(q.get().unwrap(), 8);
}

/// The same for a producer killed asleep in `put` on a full queue: a later get
/// clears its mark.
#[test]
fn a_producer_killed_asleep_is_forgotten_by_a_later_get() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "producer killed asleep");
    set_owner_check_interval(Duration::from_millis(5));
    let mut q = Queue::<u64>::new(1).unwrap();
    q.set_spin_limit(0);
    q.put(1).unwrap();
    let child = fork(|| {
        let _ = q.put_timeout(2, Duration::from_secs(30));
        0
    });
    wait_until(BOUND, "a producer asleep", || q.hook_sleepers() == (0, 1));
    child.kill(BOUND);
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.hook_sleepers(), (0, 0), "the get found the sleeper dead");
    q.put(3).unwrap();
    assert_eq!(q.get().unwrap(), 3);
}

/// Consumers killed at random points of going to sleep and waking up (short
/// timeouts on an empty queue), 100 trials in quick succession: their marks
/// are all gone after the first put past their sleeps' end, and the queue
/// still hands a message to a live sleeper.
#[test]
fn consumers_killed_around_their_sleep_leave_no_mark() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "sleepers killed");
    set_owner_check_interval(Duration::from_millis(5));
    let mut q = Queue::<u64>::new(4).unwrap();
    q.set_spin_limit(0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut marked = 0;
    for trial in 0..100 {
        let before = q.hook_sleepers().0;
        let child = fork(|| loop {
            let _ = q.get_timeout(Duration::from_micros(200));
        });
        std::thread::sleep(Duration::from_micros(100 + next(&mut seed) % 2_000));
        child.kill(BOUND);
        // A new child may take over a dead one's entry (and clear its mark).
        marked += u32::from(q.hook_sleepers().0 > before);
        q.put(trial).unwrap();
        assert_eq!(q.get().unwrap(), trial);
    }
    eprintln!("{marked} of 100 consumers were killed with a new mark up");
    assert!(
        marked > 0,
        "no kill landed while a consumer was marked asleep"
    );
    std::thread::sleep(Duration::from_millis(1_100));
    q.put(100).unwrap();
    assert_eq!(q.hook_sleepers(), (0, 0));
    assert_eq!(q.get().unwrap(), 100);
    // A live sleeper keeps its mark and is woken.
    let child = fork(|| match q.get_timeout(Duration::from_secs(20)) {
        Ok(42) => 0,
        _ => 1,
    });
    wait_until(BOUND, "a consumer asleep", || q.hook_sleepers() == (1, 0));
    q.put(42).unwrap();
    child.wait_ok(BOUND);
}

/// A joiner killed asleep in `join` is forgotten by the `task_done` that brings
/// the count to zero, once its sleep would have ended: later ones do not wake
/// anybody for it.
#[test]
fn a_joiner_killed_asleep_is_forgotten() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "joiner killed asleep");
    set_owner_check_interval(Duration::from_millis(5));
    let q = JoinableQueue::<u64>::new(4).unwrap();
    q.put(1).unwrap();
    let child = fork(|| {
        let _ = q.join();
        0
    });
    wait_until(BOUND, "the joiner never slept", || q.hook_joiners() == 1);
    child.kill(BOUND);
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    assert_eq!(q.hook_joiners(), 0);
    // A live joiner is still woken.
    q.put(2).unwrap();
    let child = fork(|| match q.join_timeout(Duration::from_secs(20)) {
        Ok(()) => 0,
        Err(_) => 1,
    });
    wait_until(BOUND, "the live joiner never slept", || {
        q.hook_joiners() == 1
    });
    assert_eq!(q.get().unwrap(), 2);
    q.task_done().unwrap();
    child.wait_ok(BOUND);
}

/// A producer killed while it streams a large message (the lane full, waiting
/// for the receiver) costs that message, counted in `lost`; the receiver goes on
/// to the next message, and the next large message streams through.
#[test]
fn a_large_message_whose_producer_is_killed_mid_stream_is_counted_lost() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "large message, producer killed");
    set_owner_check_interval(Duration::from_millis(5));
    let q = ByteQueue::new(8, 64).unwrap();
    let big: Vec<u8> = (0..4usize << 20).map(|i| i as u8).collect();
    let child = fork(|| {
        q.put_bytes(&big).unwrap();
        0
    });
    // The announcement is in the ring; the lane (256 KiB) fills and the
    // producer waits for room: kill it there.
    wait_until(BOUND, "the announcement", || q.qsize() == 1);
    std::thread::sleep(Duration::from_millis(50));
    child.kill(BOUND);
    q.put_bytes(b"after").unwrap();
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"after");
    assert_eq!(q.lost(), 1);
    // The lane is usable again (its last producer's lock is taken over).
    let next = fork(|| {
        q.put_bytes(&big).unwrap();
        0
    });
    assert!(q.get_bytes_timeout(BOUND).unwrap() == big);
    next.wait_ok(BOUND);
    assert_eq!(q.lost(), 1);
}

/// A receiver killed while it takes a large message: the producer, stalled,
/// finds it dead, counts the message lost and returns; the next large message
/// reaches another receiver whole.
#[test]
fn a_large_message_whose_receiver_is_killed_mid_stream_is_counted_lost() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "large message, receiver killed");
    set_owner_check_interval(Duration::from_millis(5));
    let q = ByteQueue::new(8, 64).unwrap();
    let ready = multiproc_shm::Shared::anonymous(std::sync::atomic::AtomicU32::new(0)).unwrap();
    let receiver = fork(|| {
        ready.store(1, std::sync::atomic::Ordering::SeqCst);
        let _ = q.get_bytes();
        0
    });
    wait_until(BOUND, "the receiver", || {
        ready.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    let big = vec![0x5a_u8; 512 << 20];
    std::thread::scope(|s| {
        let put = s.spawn(|| q.put_bytes(&big));
        std::thread::sleep(Duration::from_millis(20));
        receiver.kill(BOUND);
        let t = Instant::now();
        put.join().unwrap().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the put did not hang"
        );
    });
    assert_eq!(
        q.lost(),
        1,
        "killed mid-stream (512 MiB take longer than 20 ms)"
    );
    let small: Vec<u8> = vec![7; 300_000];
    let next = fork(|| {
        if q.get_bytes_timeout(BOUND).unwrap() == small {
            0
        } else {
            1
        }
    });
    q.put_bytes(&small).unwrap();
    next.wait_ok(BOUND);
    assert_eq!(q.lost(), 1);
}

/// A byte queue with a lane of 4 KiB, a message of 64 KiB that streams
/// through it (the producer waits for room after the first 4 KiB) and the
/// producer, forked, putting it and then `"after"`.
fn a_message_over_a_small_lane() -> (ByteQueue, Vec<u8>, Child) {
    set_owner_check_interval(Duration::from_millis(5));
    let q = ByteQueue::with_lane(multiproc_shm::Location::Anonymous, 4, 24, 4096).unwrap();
    let big: Vec<u8> = (0..64usize << 10).map(|i| (i % 251) as u8).collect();
    let producer = fork(|| {
        q.put_bytes(&big).unwrap();
        q.put_bytes(b"after").unwrap();
        0
    });
    (q, big, producer)
}

/// A receiver descheduled (here: asleep) for twenty check intervals between
/// taking a large message's announcement and registering for its stream is
/// alive: its producer waits for it, and the message arrives whole, counted
/// lost by nobody. The streaming kill trials found this on a loaded machine:
/// a producer that found its announcement taken and no receiver registered
/// after a check interval took the taker for dead, abandoned a live
/// receiver's message and counted it lost, and the receiver counted it
/// again.
#[test]
fn a_receiver_slow_to_begin_a_large_message_gets_it_whole() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "slow receiver");
    let (q, big, producer) = a_message_over_a_small_lane();
    let got = q
        .hook_get_bytes_with_pause(BOUND, || std::thread::sleep(Duration::from_millis(100)))
        .unwrap();
    assert!(got.as_deref() == Some(&big[..]), "the message, whole");
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"after");
    producer.wait_ok(BOUND);
    assert_eq!(q.lost(), 0);
}

/// A receiver killed between taking a large message's announcement and
/// registering: its producer, stalled on a full lane, finds it dead, counts
/// the message lost once and returns; its next message arrives.
#[test]
fn a_receiver_killed_before_it_begins_a_large_message_costs_that_message_once() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "receiver killed before it begins");
    let (q, _, producer) = a_message_over_a_small_lane();
    die_after(|| {
        let _ = q.hook_get_bytes_with_pause(BOUND, || die_here());
    });
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"after");
    producer.wait_ok(BOUND);
    assert_eq!(q.lost(), 1, "counted once");
}

/// Small messages put and taken until the ring has come round past every
/// slot (the four of [`a_message_over_a_small_lane`]'s queue) once.
fn come_round(q: &ByteQueue) {
    for i in 0..4u8 {
        q.put_bytes(&[i]).unwrap();
        assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), [i]);
    }
}

/// A taker killed between its claim of a large message's announcement and
/// the free of its slot: its producer, stalled on the full lane, finds it
/// dead, and puts that come round to the slot find it held by a dead
/// consumer. Each counted the message lost (two losses for one message,
/// and a `JoinableQueue`'s `join` one item early); now the producer frees
/// the slot as the ring's skip does, and the message is counted once.
#[test]
fn a_taker_killed_holding_the_announcement_costs_that_message_once() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "taker killed holding its slot");
    let (q, _, producer) = a_message_over_a_small_lane();
    wait_until(BOUND, "the announcement", || q.qsize() == 1);
    die_after(|| q.hook_claim_get_and_stop());
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"after");
    producer.wait_ok(BOUND);
    come_round(&q);
    assert_eq!(q.lost(), 1, "counted once");
}

/// The same, the other way round: the puts come round to the dead taker's
/// slot (its producer stopped) and count the message; the producer, let go
/// on, finds the taker dead and the loss counted, and counts nothing more.
#[test]
fn a_taker_killed_holding_the_announcement_is_counted_once_by_a_skip_first() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "taker killed, slot skipped first");
    let (q, _, producer) = a_message_over_a_small_lane();
    wait_until(BOUND, "the announcement", || q.qsize() == 1);
    producer.signal(libc::SIGSTOP);
    die_after(|| q.hook_claim_get_and_stop());
    come_round(&q);
    assert_eq!(q.lost(), 1, "counted by the skip");
    producer.signal(libc::SIGCONT);
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"after");
    producer.wait_ok(BOUND);
    assert_eq!(q.lost(), 1, "counted once");
}

/// In a `JoinableByteQueue`, a large message whose taker was killed holding
/// its announcement's slot leaves the unfinished count once: the skip of
/// its slot (puts that came round) and the lane's decision (the next large
/// put) each counted it lost, and `join` returned while an item taken was
/// not yet marked done.
#[test]
fn a_dead_takers_large_message_leaves_a_joinable_queue_once() {
    let _dog = Watchdog::arm(
        Duration::from_secs(60),
        "joinable: a dead taker's large message",
    );
    set_owner_check_interval(Duration::from_millis(5));
    let q = JoinableByteQueue::new(4, 24).unwrap();
    // Smaller than the lane: its producer returns once it is in.
    let big = vec![7u8; 1000];
    q.put_bytes(&big).unwrap();
    die_after(|| q.hook_claim_get_and_stop());
    q.put_bytes(b"held").unwrap();
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), b"held");
    for i in 0..4u8 {
        q.put_bytes(&[i]).unwrap();
        assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), [i]);
        q.task_done().unwrap();
    }
    // The next large put waits for the lane, finds the taker dead.
    q.put_bytes(&big).unwrap();
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), big);
    q.task_done().unwrap();
    assert_eq!(q.lost(), 1);
    assert_eq!(q.unfinished(), 1, "\"held\" is not done");
    assert!(matches!(
        q.join_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    q.task_done().unwrap();
    q.join_timeout(BOUND).unwrap();
}

/// A large message: 8 MiB (32 lanes' worth), every byte telling its place.
fn eight_mib() -> Vec<u8> {
    (0..8usize << 20).map(|i| (i % 251) as u8).collect()
}

/// A byte queue and a forked producer that has begun to stream
/// [`eight_mib`] into it (its announcement is in the ring).
fn a_large_message_begun() -> (ByteQueue, Child) {
    set_owner_check_interval(Duration::from_millis(50));
    let q = ByteQueue::new(4, 64).unwrap();
    let producer = fork(|| {
        q.put_bytes(&eight_mib()).unwrap();
        0
    });
    wait_until(BOUND, "the announcement", || q.qsize() == 1);
    (q, producer)
}

/// A large message whose stream has begun is taken from the queue: a get
/// whose timeout passes while its bytes are still coming reads it whole
/// (Python's `get` reads a begun message whole), instead of abandoning it as
/// lost. Its timeout of 1 µs passes before the second lane-full is written.
#[test]
fn a_large_message_begun_in_time_is_read_whole_past_the_timeout() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "large past the timeout");
    let (q, producer) = a_large_message_begun();
    let got = q.get_bytes_timeout(Duration::from_micros(1)).unwrap();
    assert!(got == eight_mib(), "{} bytes, damaged", got.len());
    assert_eq!(q.lost(), 0);
    producer.wait_ok(BOUND);
}

/// A stream that stalls after the timeout (its producer stopped, alive) is
/// given up after a check interval: the get answers `Timeout`, the message
/// is counted lost, and the producer, let go on, stops and the queue works.
#[test]
fn a_large_message_that_stalls_past_the_timeout_is_given_up_and_counted() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "stalled large message");
    let (q, producer) = a_large_message_begun();
    producer.signal(libc::SIGSTOP);
    let t = Instant::now();
    assert!(matches!(
        q.get_bytes_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() < BOUND, "given up in time");
    assert_eq!(q.lost(), 1);
    producer.signal(libc::SIGCONT);
    producer.wait_ok(BOUND);
    q.put_bytes(&[9; 100]).unwrap();
    assert_eq!(q.get_bytes_timeout(BOUND).unwrap(), [9; 100]);
}

/// Where the table of threads that use a queue lies: after the control
/// block's four lines, an entry of 128 bytes (owner, put claim's first and
/// end, get claim's first and end) for each of `PARTICIPANTS` threads.
const PARTICIPANTS_AT: usize = 4 * 128;

/// Every entry of the table of threads written over by a peer: owners that
/// name no live thread, claims announced past the cursor or longer than the
/// ring. A thread new to the queue answers `Corrupted` (before: the table
/// read as full, `TooManyParticipants`, on every call for ever, which a
/// pool took for a passing error and tried again in a loop), while a table
/// of dead owners whose claims are plausible is taken over as before.
#[test]
fn a_table_of_threads_written_over_is_corrupted_not_full() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "garbage table");
    let q = ByteQueue::new(4, 16).unwrap();
    q.put_bytes(b"one").unwrap(); // tail 1, head 0
    let seg = q.segment();
    let word = |entry: usize, field: usize| PARTICIPANTS_AT + entry * 128 + field * 8;
    let garbage = |first: u64, end: u64, get: bool| {
        for i in 0..multiproc_queue::PARTICIPANTS {
            // SAFETY: words inside the segment's contents, aligned; the test
            // is the segment's only user while it writes them.
            let field = |f: usize| unsafe { &*seg.as_ptr().add(word(i, f)).cast::<AtomicU64>() };
            // A record naming no live thread (its id past any pid).
            field(0).store(0x7fff_fff0_0000_0000 | i as u64, Ordering::SeqCst);
            let (at, other) = if get { (3, 1) } else { (1, 3) };
            field(at).store(first, Ordering::SeqCst);
            field(at + 1).store(end, Ordering::SeqCst);
            field(other).store(u64::MAX, Ordering::SeqCst);
        }
    };
    let new_thread_gets = || {
        std::thread::scope(|s| {
            s.spawn(|| q.get_bytes_timeout(Duration::from_millis(50)))
                .join()
        })
        .unwrap()
    };
    for (first, end, get, what) in [
        (1 << 40, 0, false, "a put claimed past the tail"),
        (0, 1 << 30, false, "a put claim longer than the ring"),
        (5, 6, true, "a get claimed past the head"),
    ] {
        garbage(first, end, get);
        match new_thread_gets() {
            Err(Error::Corrupted(Corruption::Claim {
                first: f,
                end: e,
                cursor,
            })) => {
                assert_eq!((f, cursor), (first, if get { 0 } else { 1 }), "{what}");
                assert!(e == end || e == first + 1, "{what}: end {e}");
            }
            other => panic!("{what}: expected Corrupted(Claim), got {other:?}"),
        }
    }
    // Dead owners, a put claimed at 0 not yet taken: not free, and no
    // garbage either (a claim a producer killed mid-put leaves).
    garbage(0, 1, false);
    assert!(matches!(
        new_thread_gets(),
        Err(Error::TooManyParticipants(_))
    ));
    // Dead owners, nothing claimed: taken over.
    garbage(u64::MAX, 0, false);
    assert_eq!(new_thread_gets().unwrap(), b"one");
}

/// A large put that waits for the lane to be free (the last stream's
/// announcement never taken) or for room in it (nobody reads) answers
/// `Closed` when the queue is closed, as a blocked put does (before: it
/// waited out its timeout, and without one for ever; a pool's streaming
/// thread then kept its `Drop` waiting). The abandoned stream is counted
/// lost by the get that drains its announcement.
#[test]
fn a_large_put_waiting_on_the_lane_answers_closed_at_a_close() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "large put at a close");
    let fits = vec![3u8; 200 << 10]; // the lane holds all of it
    let over = vec![4u8; 600 << 10]; // more than the lane holds
    for (first, second, what) in [
        (Some(&fits), &fits, "waiting for the lane"),
        (None, &over, "waiting for room"),
    ] {
        let q = ByteQueue::new(4, 64).unwrap();
        if let Some(first) = first {
            q.put_bytes(first).unwrap();
        }
        let put = std::thread::scope(|s| {
            let put = s.spawn(|| q.put_bytes_timeout(second, Duration::from_secs(30)));
            if first.is_some() {
                // Waits before it announces: nothing to see but time.
                std::thread::sleep(Duration::from_millis(100));
            } else {
                // Announced, then streaming until the lane is full.
                wait_until(BOUND, "the announcement", || q.qsize() == 1);
                std::thread::sleep(Duration::from_millis(20));
            }
            q.close();
            put.join().unwrap()
        });
        assert!(matches!(put, Err(Error::Closed)), "{what}: {put:?}");
        if first.is_some() {
            assert!(q.get_bytes().unwrap() == fits, "{what}: the first, whole");
        }
        // The second's announcement (if it was made) is drained as lost.
        assert!(matches!(q.get_bytes(), Err(Error::Closed)), "{what}");
        assert_eq!(q.lost(), u64::from(first.is_none()), "{what}");
    }
}
