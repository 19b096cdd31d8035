//! A producer or consumer killed at every store its operation makes into the
//! queue's memory (see `multiproc_testkit::every_write` for how: the victim runs
//! with the segment write-protected and steps each store from a `SIGSEGV`
//! handler). After each kill the parent, as the surviving peer, drains the
//! queue, cycles it through its whole capacity, and classifies what became of
//! the victim's messages: each is delivered once, or counted lost, or was
//! never sent (killed before its claim) or already taken (killed after the
//! slot was freed) — and those classes follow one another in that order as
//! the kill moves later. Nothing is delivered twice; nothing is missing
//! without being counted, except what the victim itself took.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::time::{Duration, Instant};

use multiproc_queue::{ByteQueue, Consumer, Error, JoinableQueue, Producer, Queue, SpscQueue};
use multiproc_sync::set_owner_check_interval;
use multiproc_testkit::every_write::{armed, every_write, Outcome, Report};
use multiproc_testkit::{fork, wait_until, Child, ChildExit, Watchdog};

/// Generous: a dead peer's slot is skipped after one check interval (5 ms here).
const BOUND: Duration = Duration::from_secs(10);
const CAPACITY: usize = 4;

/// The operations under test, for `Queue<u64>` and for `ByteQueue` (whose
/// paths are its own), with u64 messages.
trait Q: Sized {
    const NAME: &'static str;
    fn make() -> Self;
    fn region(&self) -> (*mut u8, usize);
    fn put(&self, m: u64);
    fn put_timeout(&self, m: u64) -> Result<(), Error>;
    fn try_put(&self, m: u64) -> Result<(), Error>;
    fn put_many(&self, ms: &[u64]);
    fn get(&self) -> u64;
    fn get_timeout(&self, d: Duration) -> Result<u64, Error>;
    fn get_many(&self, max: usize) -> Vec<u64>;
    fn lost(&self) -> u64;
    fn empty(&self) -> bool;
    /// Consumers and producers asleep.
    fn sleepers(&self) -> (u32, u32);
}

impl Q for Queue<u64> {
    const NAME: &'static str = "Queue<u64>";
    fn make() -> Self {
        Queue::new(CAPACITY).unwrap()
    }
    fn region(&self) -> (*mut u8, usize) {
        (self.segment().as_ptr(), self.segment().len())
    }
    fn put(&self, m: u64) {
        Queue::put(self, m).unwrap();
    }
    fn put_timeout(&self, m: u64) -> Result<(), Error> {
        Queue::put_timeout(self, m, BOUND)
    }
    fn try_put(&self, m: u64) -> Result<(), Error> {
        Queue::try_put(self, m)
    }
    fn put_many(&self, ms: &[u64]) {
        Queue::put_many(self, ms).unwrap();
    }
    fn get(&self) -> u64 {
        Queue::get(self).unwrap()
    }
    fn get_timeout(&self, d: Duration) -> Result<u64, Error> {
        Queue::get_timeout(self, d)
    }
    fn get_many(&self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        Queue::get_many(self, &mut out, max).unwrap();
        out
    }
    fn lost(&self) -> u64 {
        Queue::lost(self)
    }
    fn empty(&self) -> bool {
        Queue::empty(self)
    }
    fn sleepers(&self) -> (u32, u32) {
        self.hook_sleepers()
    }
}

impl Q for ByteQueue {
    const NAME: &'static str = "ByteQueue";
    fn make() -> Self {
        ByteQueue::new(CAPACITY, 16).unwrap()
    }
    fn region(&self) -> (*mut u8, usize) {
        (self.segment().as_ptr(), self.segment().len())
    }
    fn put(&self, m: u64) {
        self.put_bytes(&m.to_le_bytes()).unwrap();
    }
    fn put_timeout(&self, m: u64) -> Result<(), Error> {
        self.put_bytes_timeout(&m.to_le_bytes(), BOUND)
    }
    fn try_put(&self, m: u64) -> Result<(), Error> {
        self.try_put_bytes(&m.to_le_bytes())
    }
    fn put_many(&self, ms: &[u64]) {
        let bytes: Vec<[u8; 8]> = ms.iter().map(|m| m.to_le_bytes()).collect();
        self.put_bytes_many(&bytes).unwrap();
    }
    fn get(&self) -> u64 {
        decode(&self.get_bytes().unwrap())
    }
    fn get_timeout(&self, d: Duration) -> Result<u64, Error> {
        self.get_bytes_timeout(d).map(|b| decode(&b))
    }
    fn get_many(&self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        self.get_bytes_many(&mut out, max).unwrap();
        out.iter().map(|b| decode(b)).collect()
    }
    fn lost(&self) -> u64 {
        ByteQueue::lost(self)
    }
    fn empty(&self) -> bool {
        ByteQueue::empty(self)
    }
    fn sleepers(&self) -> (u32, u32) {
        self.hook_sleepers()
    }
}

fn decode(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("an 8-byte message, whole"))
}

/// What the survivor finds after a kill: the messages it drained, then the
/// queue cycled through its capacity (which also reuses, and so frees, a slot
/// a dead consumer held), and the messages counted lost by then.
struct Aftermath {
    drained: Vec<u64>,
    lost: u64,
}

fn aftermath<T: Q>(q: &T) -> Aftermath {
    let t = Instant::now();
    let mut drained = Vec::new();
    while !q.empty() {
        match q.get_timeout(Duration::from_millis(50)) {
            Ok(m) => drained.push(m),
            Err(Error::Timeout) => {}
            Err(e) => panic!("{}: drain: {e}", T::NAME),
        }
        assert!(t.elapsed() < BOUND, "{}: the drain stalled", T::NAME);
    }
    // The whole capacity, twice: every slot is put to and taken from, and the
    // queue says full and empty when it is.
    for lap in 0..2u64 {
        for i in 0..CAPACITY as u64 {
            q.put_timeout(1000 + lap * 100 + i)
                .unwrap_or_else(|e| panic!("{}: put {i} of lap {lap}: {e}", T::NAME));
        }
        assert!(
            matches!(q.try_put(9999), Err(Error::Full)),
            "{}: full after {CAPACITY} puts",
            T::NAME
        );
        for i in 0..CAPACITY as u64 {
            assert_eq!(
                q.get_timeout(BOUND).unwrap(),
                1000 + lap * 100 + i,
                "{}: the cycle's messages in order",
                T::NAME
            );
        }
        assert!(q.empty(), "{}: empty after the cycle", T::NAME);
    }
    Aftermath {
        drained,
        lost: q.lost(),
    }
}

/// A queue whose positions are not at 0: two messages went through it.
fn used<T: Q>() -> T {
    set_owner_check_interval(Duration::from_millis(5));
    let q = T::make();
    q.put(1);
    q.put(2);
    assert_eq!(q.get(), 1);
    assert_eq!(q.get(), 2);
    q
}

fn print(name: &str, what: &str, r: &Report, classes: &[(&str, usize)]) {
    eprintln!(
        "{name} {what}: {} stores, {} kills, {} completed; {classes:?}\n  store offsets: {:?}",
        r.writes, r.killed, r.completed, r.offsets
    );
}

/// The victim puts message 7 into a queue holding 3; classes in kill order:
/// never sent, counted lost, delivered.
fn put_one<T: Q>() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "put killed at every store");
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || {
            let q = used::<T>();
            q.put(3);
            q
        },
        T::region,
        |q| armed(|| q.put(7)),
        |q, outcome| {
            let a = aftermath(q);
            let sevens = a.drained.iter().filter(|&&m| m == 7).count();
            assert!(sevens <= 1, "{outcome:?}: delivered twice: {:?}", a.drained);
            assert_eq!(a.drained[0], 3, "{outcome:?}: {:?}", a.drained);
            let class = match (sevens, a.lost) {
                (0, 0) => 0, // never sent
                (0, 1) => 1, // counted lost
                (1, 0) => 2, // delivered
                other => panic!("{outcome:?}: (delivered, lost) = {other:?}"),
            };
            if outcome == Outcome::Completed {
                assert_eq!(class, 2, "a completed put is delivered");
            }
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        T::NAME,
        "put",
        &report,
        &classes.into_inner(),
        &["not sent", "lost", "delivered"],
    );
}

/// The victim gets from a queue holding 3, 4, 5; classes in kill order: not
/// taken, counted lost, taken by the victim.
fn get_one<T: Q>() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "get killed at every store");
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || {
            let q = used::<T>();
            for m in [3, 4, 5] {
                q.put(m);
            }
            q
        },
        T::region,
        |q| assert_eq!(armed(|| q.get()), 3),
        |q, outcome| {
            let a = aftermath(q);
            let class = match (a.drained.as_slice(), a.lost) {
                ([3, 4, 5], 0) => 0, // not taken
                ([4, 5], 1) => 1,    // counted lost
                ([4, 5], 0) => 2,    // taken by the victim
                (d, l) => panic!("{outcome:?}: drained {d:?}, lost {l}"),
            };
            if outcome == Outcome::Completed {
                assert_eq!(class, 2, "a completed get took its message");
            }
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        T::NAME,
        "get",
        &report,
        &classes.into_inner(),
        &["not taken", "lost", "taken"],
    );
}

/// The victim puts 7, 8, 9 in one batch into a queue holding 3: the batch is
/// claimed whole, so either nothing was sent, or every message is delivered
/// or counted lost; what is delivered is in order, once, and only grows as
/// the kill moves later.
fn put_batch<T: Q>() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "put_many killed at every store");
    let delivered = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || {
            let q = used::<T>();
            q.put(3);
            q
        },
        T::region,
        |q| armed(|| q.put_many(&[7, 8, 9])),
        |q, outcome| {
            let a = aftermath(q);
            assert_eq!(a.drained[0], 3, "{outcome:?}: {:?}", a.drained);
            let mine: Vec<u64> = a.drained[1..].to_vec();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]) && mine.iter().all(|m| (7..=9).contains(m)),
                "{outcome:?}: in order, once: {mine:?}"
            );
            let d = mine.len() as u64;
            assert!(
                a.lost == 3 - d || (d == 0 && a.lost == 0),
                "{outcome:?}: {d} delivered, {} counted lost",
                a.lost
            );
            if outcome == Outcome::Completed {
                assert_eq!(d, 3, "a completed batch is delivered");
            }
            delivered.borrow_mut().push(d as usize);
        },
        BOUND,
    );
    // The counting run first, then the kill points in order.
    let d = delivered.into_inner().split_off(1);
    assert!(
        d.windows(2).all(|w| w[0] <= w[1]),
        "{}: delivered by kill point: {d:?}",
        T::NAME
    );
    print(T::NAME, "put_many", &report, &[]);
    eprintln!("  delivered per kill point: {d:?}");
}

/// The victim takes up to 3 in one batch from a queue holding 3, 4, 5, 6, 7:
/// its claim is whole, so the survivor gets either all five or 6, 7; of the
/// three claimed, those not counted lost were taken by the victim, and their
/// number only grows as the kill moves later.
fn get_batch<T: Q>() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "get_many killed at every store");
    let taken = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || {
            let q = used::<T>();
            q.put_many(&[3, 4, 5]);
            q
        },
        T::region,
        |q| assert_eq!(armed(|| q.get_many(3)), [3, 4, 5]),
        |q, outcome| {
            // Two more behind the batch, put after the kill (the ring holds four).
            q.put(6);
            let a = aftermath(q);
            let t = match (a.drained.as_slice(), a.lost) {
                ([3, 4, 5, 6], 0) => 0,
                ([6], l) if l <= 3 => 3 - l as usize,
                (d, l) => panic!("{outcome:?}: drained {d:?}, lost {l}"),
            };
            if outcome == Outcome::Completed {
                assert_eq!(t, 3, "a completed batch took all three");
            }
            taken.borrow_mut().push(t);
        },
        BOUND,
    );
    let t = taken.into_inner().split_off(1);
    assert!(
        t.windows(2).all(|w| w[0] <= w[1]),
        "{}: taken by kill point: {t:?}",
        T::NAME
    );
    print(T::NAME, "get_many", &report, &[]);
    eprintln!("  taken by the victim per kill point: {t:?}");
}

/// The victim puts 7 into an empty queue while a consumer is asleep in a get;
/// after the kill the parent puts 8. The consumer gets 7 then 8 (delivered),
/// or only 8 (never sent, or counted lost): a put killed anywhere, even
/// between its publish and its wake-up, leaves no consumer asleep for good.
fn put_to_a_sleeper<T: Q>() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "put to a sleeper killed at every store",
    );
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || {
            let q = used::<T>();
            let consumer = fork(|| match q.get_timeout(BOUND) {
                Ok(7) => match q.get_timeout(BOUND) {
                    Ok(8) => 7,
                    _ => 50,
                },
                Ok(8) => 8,
                _ => 60,
            });
            wait_until(BOUND, "the consumer asleep", || q.sleepers().0 == 1);
            (q, std::cell::RefCell::new(consumer))
        },
        |(q, _)| q.region(),
        |(q, _)| armed(|| q.put(7)),
        |(q, consumer), outcome| {
            q.put(8);
            let got = consumer.borrow_mut().wait_timeout(BOUND);
            let a = aftermath(q);
            assert!(a.drained.is_empty(), "{outcome:?}: {:?}", a.drained);
            let class = match (got, a.lost) {
                (Some(ChildExit::Exited(8)), 0) => 0,
                (Some(ChildExit::Exited(8)), 1) => 1,
                (Some(ChildExit::Exited(7)), 0) => 2,
                other => panic!("{outcome:?}: (consumer, lost) = {other:?}"),
            };
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        T::NAME,
        "put to a sleeper",
        &report,
        &classes.into_inner(),
        &["not sent", "lost", "delivered"],
    );
}

/// The victim gets from a full queue (3, 4, 5, 6) while a producer is asleep
/// in a put of 7. The producer's put completes whatever the kill point: the
/// victim freed the slot, or the producer skips the dead consumer's claim
/// (counting it lost), or the parent's gets make room.
fn get_from_full<T: Q>() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "get from full killed at every store",
    );
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || {
            let q = used::<T>();
            for m in 3..=6 {
                q.put(m);
            }
            let producer: Child = fork(|| match q.put_timeout(7) {
                Ok(()) => 0,
                Err(_) => 1,
            });
            wait_until(BOUND, "the producer asleep", || q.sleepers().1 == 1);
            (q, std::cell::RefCell::new(producer))
        },
        |(q, _)| q.region(),
        |(q, _)| assert_eq!(armed(|| q.get()), 3),
        |(q, producer), outcome| {
            let t = Instant::now();
            let mut got = Vec::new();
            while got.last() != Some(&7) {
                match q.get_timeout(Duration::from_millis(50)) {
                    Ok(m) => got.push(m),
                    Err(Error::Timeout) => {}
                    Err(e) => panic!("{outcome:?}: {e}"),
                }
                assert!(t.elapsed() < BOUND, "{outcome:?}: no 7 after {got:?}");
            }
            assert_eq!(
                producer.borrow_mut().wait_timeout(BOUND),
                Some(ChildExit::Exited(0))
            );
            let a = aftermath(q);
            assert!(a.drained.is_empty(), "{outcome:?}: {:?}", a.drained);
            let class = match (got.as_slice(), a.lost) {
                ([3, 4, 5, 6, 7], 0) => 0,
                ([4, 5, 6, 7], 1) => 1,
                ([4, 5, 6, 7], 0) => 2,
                (g, l) => panic!("{outcome:?}: got {g:?}, lost {l}"),
            };
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        T::NAME,
        "get from a full queue",
        &report,
        &classes.into_inner(),
        &["not taken", "lost", "taken"],
    );
}

/// The classes seen, one per run (the counting run first, then kill points
/// 1..=W), must follow `names` in order as the kill moves later, and the last
/// class must be reached by the completed run.
fn check_order(name: &str, what: &str, report: &Report, classes: &[usize], names: &[&str]) {
    // The counting run comes first and completed; the kill runs follow in order.
    let kills = &classes[1..];
    assert!(
        kills.windows(2).all(|w| w[0] <= w[1]),
        "{name} {what}: classes out of order by kill point: {kills:?} ({names:?})"
    );
    let counts: Vec<(&str, usize)> = names
        .iter()
        .enumerate()
        .map(|(c, n)| (*n, kills.iter().filter(|&&k| k == c).count()))
        .collect();
    print(name, what, report, &counts);
}

#[test]
fn a_queue_put_killed_at_every_store() {
    put_one::<Queue<u64>>();
}

#[test]
fn a_byte_queue_put_killed_at_every_store() {
    put_one::<ByteQueue>();
}

#[test]
fn a_queue_get_killed_at_every_store() {
    get_one::<Queue<u64>>();
}

#[test]
fn a_byte_queue_get_killed_at_every_store() {
    get_one::<ByteQueue>();
}

#[test]
fn a_queue_put_many_killed_at_every_store() {
    put_batch::<Queue<u64>>();
}

#[test]
fn a_byte_queue_put_many_killed_at_every_store() {
    put_batch::<ByteQueue>();
}

#[test]
fn a_queue_get_many_killed_at_every_store() {
    get_batch::<Queue<u64>>();
}

#[test]
fn a_byte_queue_get_many_killed_at_every_store() {
    get_batch::<ByteQueue>();
}

#[test]
fn a_queue_put_to_a_sleeper_killed_at_every_store() {
    put_to_a_sleeper::<Queue<u64>>();
}

#[test]
fn a_byte_queue_put_to_a_sleeper_killed_at_every_store() {
    put_to_a_sleeper::<ByteQueue>();
}

#[test]
fn a_queue_get_from_a_full_queue_killed_at_every_store() {
    get_from_full::<Queue<u64>>();
}

#[test]
fn a_byte_queue_get_from_a_full_queue_killed_at_every_store() {
    get_from_full::<ByteQueue>();
}

/// A used joinable queue holding `waiting` (one item put, taken and done
/// before it), and a forked joiner waiting in `join` (exit 0 once it returns,
/// 1 if it times out).
fn joinable_with_a_joiner(waiting: u64) -> (JoinableQueue<u64>, std::cell::RefCell<Child>) {
    set_owner_check_interval(Duration::from_millis(5));
    let q = JoinableQueue::<u64>::new(CAPACITY).unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    q.put(waiting).unwrap();
    let joiner = fork(|| match q.join_timeout(BOUND) {
        Ok(()) => 0,
        Err(_) => 1,
    });
    (q, std::cell::RefCell::new(joiner))
}

/// The joiner of [`joinable_with_a_joiner`] returned from `join`, within the bound.
fn joiner_returned(joiner: &std::cell::RefCell<Child>, outcome: Outcome, class: usize) {
    assert_eq!(
        joiner.borrow_mut().wait_timeout(BOUND),
        Some(ChildExit::Exited(0)),
        "{outcome:?}: the joiner (class {class})"
    );
}

/// A worker's `get` and `task_done` killed at every store, while a joiner
/// sleeps in `join`. The parent, as the surviving worker, then takes what is
/// left (or finds it counted lost), and marks done an item the victim took and
/// could not mark (as a Python program must: `join` waits for it). The joiner
/// must return within the bound every time — a loss counts as done and wakes it
/// — and the count must end at zero with the queue working. Classes in kill
/// order: never taken, lost in the get, taken and not done, done.
#[test]
fn a_joinable_queue_get_and_task_done_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "joinable get and task_done killed at every store",
    );
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || joinable_with_a_joiner(7),
        |(q, _)| (q.segment().as_ptr(), q.segment().len()),
        |(q, _)| {
            wait_until(BOUND, "the joiner asleep", || q.hook_joiners() == 1);
            armed(|| {
                assert_eq!(q.get().unwrap(), 7);
                q.task_done().unwrap();
            })
        },
        |(q, joiner), outcome| {
            // A join looks for claims of the dead: a slot the victim claimed
            // and did not free is counted lost after it, deterministically.
            let _ = q.join_timeout(Duration::ZERO);
            let class = match q.get_timeout(Duration::from_millis(50)) {
                Ok(7) => {
                    q.task_done().unwrap();
                    0
                }
                Ok(other) => panic!("{outcome:?}: got {other}"),
                Err(Error::Timeout | Error::Empty) if q.lost() == 1 => 1,
                Err(Error::Timeout | Error::Empty) if q.unfinished() == 1 => {
                    q.task_done().unwrap();
                    2
                }
                Err(Error::Timeout | Error::Empty) => 3,
                Err(e) => panic!("{outcome:?}: {e}"),
            };
            assert!(q.lost() <= 1, "{outcome:?}: lost {}", q.lost());
            joiner_returned(joiner, outcome, class);
            assert_eq!(q.unfinished(), 0, "{outcome:?}");
            assert!(matches!(q.task_done(), Err(Error::TaskDoneTooMany)));
            // Works as new, twice round the ring (so a producer meets any slot
            // the victim claimed and did not free): the count is exactly the
            // items put and not done at every step.
            for lap in 0..2u64 {
                for i in 0..CAPACITY as u64 {
                    q.put_timeout(100 + i, BOUND)
                        .unwrap_or_else(|e| panic!("{outcome:?}: lap {lap} put {i}: {e}"));
                }
                assert_eq!(
                    q.unfinished(),
                    CAPACITY as u32,
                    "{outcome:?}: lap {lap}, lost {}",
                    q.lost()
                );
                for i in 0..CAPACITY as u64 {
                    assert_eq!(q.get_timeout(BOUND).unwrap(), 100 + i, "{outcome:?}");
                    q.task_done().unwrap();
                }
                q.join_timeout(BOUND).unwrap();
            }
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    let classes = classes.into_inner();
    assert_eq!(classes.last(), Some(&3), "killed after task_done: done");
    assert!(classes.contains(&1) && classes.contains(&2), "{classes:?}");
    check_order(
        "JoinableQueue<u64>",
        "get, task_done; a joiner asleep",
        &report,
        &classes,
        &["never taken", "lost in the get", "taken, not done", "done"],
    );
}

/// A producer's `put` into a joinable queue killed at every store, while a
/// joiner waits for an item already there. The parent takes that item and
/// marks it done, then takes the victim's item if it arrived: a put the victim
/// claimed and never published must not hold `join` up for ever (nobody may
/// come to get it), so the joiner returns every time. Classes in kill order:
/// never sent, counted lost, delivered.
#[test]
fn a_joinable_queue_put_killed_at_every_store() {
    let _dog = Watchdog::arm(
        Duration::from_secs(120),
        "joinable put killed at every store",
    );
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || joinable_with_a_joiner(6),
        |(q, _)| (q.segment().as_ptr(), q.segment().len()),
        |(q, _)| {
            wait_until(BOUND, "the joiner asleep", || q.hook_joiners() == 1);
            armed(|| q.put(7).unwrap())
        },
        |(q, joiner), outcome| {
            assert_eq!(q.get_timeout(BOUND).unwrap(), 6, "{outcome:?}");
            q.task_done().unwrap();
            let _ = q.join_timeout(Duration::ZERO);
            let class = match q.try_get() {
                Ok(7) => {
                    q.task_done().unwrap();
                    2
                }
                Ok(other) => panic!("{outcome:?}: got {other}"),
                Err(Error::Empty) if q.lost() == 1 => 1,
                Err(Error::Empty) => 0,
                Err(e) => panic!("{outcome:?}: {e}"),
            };
            joiner_returned(joiner, outcome, class);
            assert_eq!(q.unfinished(), 0, "{outcome:?}");
            for i in 0..2 * CAPACITY as u64 {
                q.put_timeout(100 + i, BOUND).unwrap();
                assert_eq!(q.get_timeout(BOUND).unwrap(), 100 + i, "{outcome:?}");
                q.task_done().unwrap();
            }
            q.join_timeout(BOUND).unwrap();
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    let classes = classes.into_inner();
    assert!(
        classes.contains(&1),
        "no kill between claim and publication: {classes:?}"
    );
    check_order(
        "JoinableQueue<u64>",
        "put; a joiner waiting",
        &report,
        &classes,
        &["never sent", "lost", "delivered"],
    );
}

/// A message over the slot size, streamed through the lane.
fn large(tag: u8) -> Vec<u8> {
    (0..100u8).map(|i| i ^ tag).collect()
}

/// A byte queue whose slots hold 16 bytes: 100-byte messages take the lane.
fn used_lane() -> ByteQueue {
    set_owner_check_interval(Duration::from_millis(5));
    let q = ByteQueue::new(CAPACITY, 16).unwrap();
    q.put_bytes(&large(1)).unwrap();
    assert_eq!(q.get_bytes().unwrap(), large(1));
    q
}

/// Drains a byte queue whole (the dead peer's claims skipped), then cycles it.
fn drain_bytes(q: &ByteQueue, outcome: Outcome) -> Vec<Vec<u8>> {
    let t = Instant::now();
    let mut drained = Vec::new();
    while !q.empty() {
        match q.get_bytes_timeout(Duration::from_millis(50)) {
            Ok(m) => drained.push(m),
            Err(Error::Timeout) => {}
            Err(e) => panic!("{outcome:?}: drain: {e}"),
        }
        assert!(t.elapsed() < BOUND, "{outcome:?}: the drain stalled");
    }
    for lap in 0..2u8 {
        q.put_bytes_timeout(&large(10 + lap), BOUND).unwrap();
        assert_eq!(
            q.get_bytes_timeout(BOUND).unwrap(),
            large(10 + lap),
            "{outcome:?}"
        );
    }
    drained
}

/// A large message's put killed at every store: the message arrives whole, or
/// is counted lost, or was never sent; never torn.
#[test]
fn a_large_put_killed_at_every_store() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "large put killed at every store");
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        used_lane,
        |q| (q.segment().as_ptr(), q.segment().len()),
        |q| armed(|| q.put_bytes(&large(7)).unwrap()),
        |q, outcome| {
            let drained = drain_bytes(q, outcome);
            let class = match (drained.as_slice(), q.lost()) {
                ([], 0) => 0,
                ([], 1) => 1,
                ([m], 0) if *m == large(7) => 2,
                (d, l) => panic!("{outcome:?}: drained {d:?}, lost {l}"),
            };
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        "ByteQueue",
        "large put",
        &report,
        &classes.into_inner(),
        &["not sent", "lost", "delivered"],
    );
}

/// A large message's get killed at every store: the survivor gets it whole,
/// or it is counted lost, or the victim took it; the small message behind it
/// arrives either way.
#[test]
fn a_large_get_killed_at_every_store() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "large get killed at every store");
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || {
            let q = used_lane();
            q.put_bytes(&large(7)).unwrap();
            // Inline: the lane carries one message at a time.
            q.put_bytes(b"eight").unwrap();
            q
        },
        |q| (q.segment().as_ptr(), q.segment().len()),
        |q| assert_eq!(armed(|| q.get_bytes().unwrap()), large(7)),
        |q, outcome| {
            let drained = drain_bytes(q, outcome);
            let lost = q.lost();
            let class = match (drained.as_slice(), lost) {
                ([a, b], 0) if *a == large(7) && b == b"eight" => 0,
                ([b], 1) if b == b"eight" => 1,
                ([b], 0) if b == b"eight" => 2,
                (d, l) => panic!("{outcome:?}: drained {} messages, lost {l}", d.len()),
            };
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        "ByteQueue",
        "large get",
        &report,
        &classes.into_inner(),
        &["not taken", "lost", "taken"],
    );
}

/// An `SpscQueue` and the parent's end of it, for the every-store tests.
struct Spsc<E> {
    q: SpscQueue<u64>,
    end: std::cell::RefCell<E>,
}

impl<E> Spsc<E> {
    fn region(&self) -> (*mut u8, usize) {
        (self.q.segment().as_ptr(), self.q.segment().len())
    }
}

/// An `SpscQueue` holding `items`, its consumer the parent's.
fn spsc_for_a_producer(items: &[u64]) -> Spsc<Consumer<u64>> {
    let q = SpscQueue::<u64>::new(CAPACITY).unwrap();
    q.producer().unwrap().put_many(items).unwrap();
    let end = std::cell::RefCell::new(q.consumer().unwrap());
    Spsc { q, end }
}

/// An `SpscQueue` holding `items`, its producer the parent's.
fn spsc_for_a_consumer(items: &[u64]) -> Spsc<Producer<u64>> {
    let q = SpscQueue::<u64>::new(CAPACITY).unwrap();
    let mut tx = q.producer().unwrap();
    tx.put_many(items).unwrap();
    let end = std::cell::RefCell::new(tx);
    Spsc { q, end }
}

/// The victim takes the producing end of an `SpscQueue` holding 3 and makes
/// `put` (of `sent`); the parent holds the consumer. Classes in kill order:
/// not sent (the consumer then sees `Disconnected` after 3), all delivered. A
/// new producer takes the end over either way.
fn spsc_put_killed(what: &str, put: fn(&mut Producer<u64>), sent: &[u64]) {
    set_owner_check_interval(Duration::from_millis(5));
    let _dog = Watchdog::arm(Duration::from_secs(120), "spsc put killed at every store");
    let classes = std::cell::RefCell::new(Vec::new());
    let report = every_write(
        || spsc_for_a_producer(&[3]),
        Spsc::region,
        |s| {
            let mut tx = s.q.producer().unwrap();
            armed(|| put(&mut tx));
            std::mem::forget(tx); // as _exit would: the end stays this process's
        },
        |s, outcome| {
            let mut rx = s.end.borrow_mut();
            let mut got = Vec::new();
            let end = loop {
                match rx.get_timeout(BOUND) {
                    Ok(v) => got.push(v),
                    Err(e) => break e,
                }
            };
            assert!(matches!(end, Error::Disconnected), "{outcome:?}: {end}");
            let class = match got.split_first() {
                Some((3, [])) => 0,
                Some((3, rest)) if rest == sent => 1,
                _ => panic!("{outcome:?}: {got:?}"),
            };
            if outcome == Outcome::Completed {
                assert_eq!(class, 1, "a completed {what} is delivered");
            }
            let mut tx = s.q.producer().expect("the dead producer's end, taken over");
            tx.put(8).unwrap();
            assert_eq!(rx.get_timeout(BOUND).unwrap(), 8, "{outcome:?}");
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        "SpscQueue<u64>",
        what,
        &report,
        &classes.into_inner(),
        &["not sent", "delivered"],
    );
}

/// The victim takes the consuming end of an `SpscQueue` holding 3, 4, 5, 6
/// and makes `get` (of `taken` items); the parent holds the producer. Classes
/// in kill order: nothing taken (the next consumer gets from 3), all taken
/// (the next gets from after them). Never part, never given twice.
fn spsc_get_killed(what: &str, get: fn(&mut Consumer<u64>), taken: usize) {
    let _dog = Watchdog::arm(Duration::from_secs(120), "spsc get killed at every store");
    let classes = std::cell::RefCell::new(Vec::new());
    let all = [3, 4, 5, 6];
    let report = every_write(
        || spsc_for_a_consumer(&all),
        Spsc::region,
        |s| {
            let mut rx = s.q.consumer().unwrap();
            armed(|| get(&mut rx));
            std::mem::forget(rx);
        },
        |s, outcome| {
            let mut rx = s.q.consumer().expect("the dead consumer's end, taken over");
            let mut got = Vec::new();
            while let Ok(v) = rx.try_get() {
                got.push(v);
            }
            let class = if got == all {
                0
            } else if got == all[taken..] {
                1
            } else {
                panic!("{outcome:?}: {got:?}")
            };
            if outcome == Outcome::Completed {
                assert_eq!(class, 1, "a completed {what} took its items");
            }
            s.end.borrow_mut().put(5).unwrap();
            assert_eq!(rx.try_get().unwrap(), 5);
            classes.borrow_mut().push(class);
        },
        BOUND,
    );
    check_order(
        "SpscQueue<u64>",
        what,
        &report,
        &classes.into_inner(),
        &["none taken", "all taken"],
    );
}

#[test]
fn an_spsc_put_killed_at_every_store() {
    spsc_put_killed("put", |tx| tx.put(7).unwrap(), &[7]);
}

/// One store publishes the whole batch: all three arrive, or none does.
#[test]
fn an_spsc_put_many_killed_at_every_store() {
    spsc_put_killed(
        "put_many",
        |tx| tx.put_many(&[7, 8, 9]).unwrap(),
        &[7, 8, 9],
    );
}

#[test]
fn an_spsc_get_killed_at_every_store() {
    spsc_get_killed("get", |rx| assert_eq!(rx.get().unwrap(), 3), 1);
}

#[test]
fn an_spsc_get_many_killed_at_every_store() {
    spsc_get_killed(
        "get_many",
        |rx| assert_eq!(rx.get_many(&mut Vec::new(), 3).unwrap(), 3),
        3,
    );
}
