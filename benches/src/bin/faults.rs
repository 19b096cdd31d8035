//! Every fault scenario, many trials each, and one table of what happened.
//!
//! Each row kills or corrupts a peer of a primitive, over and over, and counts
//! what the survivors saw:
//!
//! - **hangs**: a survivor's bounded call ran past the bound (5 s), or a process
//!   that should have ended did not (a daemon that outlived its parent, a pool
//!   worker that outlived its pool);
//! - **dups**: a message received twice, or a permit given back twice;
//! - **lost, reported**: what the dead peer's death cost, and the survivors were
//!   told (`OwnerDied`, `BrokenBarrier`, `NoLiveSetter`, a queue's `lost()`
//!   count, a pool item's `WorkerDied`, `Disconnected`, `ServerGone`);
//! - **lost, unreported**: what went missing without a word (a lock taken clean
//!   from a dead holder, a message neither delivered nor counted);
//! - **crashes**: a survivor or a bystander that panicked, died of a signal, or
//!   read a torn message;
//! - **worst recovery**: the longest time from the kill to the survivor's answer.
//!
//! Every row must read zero hangs, dups, unreported losses and crashes; the
//! program exits non-zero otherwise. The kill-at-every-store tests
//! (`*/tests/every_write.rs`) cover the windows inside each operation store by
//! store; these rows add real schedules, sleeping peers and garbage.
//!
//! Run: `scripts/faults` (or `scripts/faults --quick`, a 250th of the trials,
//! which `.ci/run` runs).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_bench::monotonic_ns as now_ns;
use multiproc_pool::Pool;
use multiproc_proc::{ForkServer, Process};
use multiproc_queue::{pipe, ByteQueue, Error as QError, Queue, SpscQueue};
use multiproc_shm::{Shared, SharedSlice};
use multiproc_sync::{
    set_owner_check_interval, Barrier, BoundedSemaphore, Condition, Error, Event, Lock, LockError,
    Mutex, RLock, Semaphore,
};
use multiproc_testkit::{fork, Child, ChildExit};

const BOUND: Duration = Duration::from_secs(5);

/// One scenario's tally.
#[derive(Default)]
struct Row {
    name: &'static str,
    trials: u32,
    hangs: u32,
    dups: u64,
    lost_reported: u64,
    lost_unreported: u64,
    crashes: u32,
    worst: Option<Duration>,
}

impl Row {
    fn new(name: &'static str) -> Row {
        Row {
            name,
            ..Row::default()
        }
    }

    fn recovered_after(&mut self, d: Duration) {
        self.worst = Some(self.worst.map_or(d, |w| w.max(d)));
    }

    /// A loss a survivor in another process was told of at `told_ns`, after
    /// the kill at `killed_ns` (both `now_ns` times).
    fn reported(&mut self, told_ns: u64, killed_ns: u64) {
        self.lost_reported += 1;
        self.recovered_after(Duration::from_nanos(told_ns.saturating_sub(killed_ns)));
    }

    fn clean(&self) -> bool {
        self.hangs == 0 && self.dups == 0 && self.lost_unreported == 0 && self.crashes == 0
    }

    /// Counts a child's end: `want` is fine, a timeout is a hang, anything
    /// else a crash.
    fn child_ended(&mut self, child: &mut Child, want: ChildExit) -> bool {
        match child.wait_timeout(BOUND) {
            Some(e) if e == want => true,
            None => {
                self.hangs += 1;
                false
            }
            Some(_) => {
                self.crashes += 1;
                false
            }
        }
    }
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Forks a child that runs `hold` (which takes something and raises `ready`,
/// then never returns), waits for it to be ready, lets it run 0–300 µs, and
/// SIGKILLs it; the time of the kill, in `now_ns` terms, or `None` when it
/// never got ready (counted as a hang).
fn kill_holder(row: &mut Row, seed: &mut u64, hold: impl FnOnce(&AtomicU32)) -> Option<u64> {
    let ready = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut child = fork(|| {
        hold(&ready);
        3
    });
    let t = Instant::now();
    while ready.load(Ordering::SeqCst) == 0 {
        if t.elapsed() > BOUND {
            row.hangs += 1;
            return None;
        }
        std::hint::spin_loop();
    }
    std::thread::sleep(Duration::from_micros(next(seed) % 300));
    child.signal(libc::SIGKILL);
    let killed = now_ns();
    if child.wait_timeout(BOUND) != Some(ChildExit::Signaled(libc::SIGKILL)) {
        row.crashes += 1;
    }
    Some(killed)
}

fn since(ns: u64) -> Duration {
    Duration::from_nanos(now_ns().saturating_sub(ns))
}

fn spin_forever() -> ! {
    loop {
        std::hint::spin_loop();
    }
}

/// A lock's holder killed, no waiter: the next acquire answers `OwnerDied`.
fn holder_killed<L: Sync>(
    name: &'static str,
    trials: u32,
    lock: &L,
    hold: impl Fn(&L),
    take: impl Fn(&L) -> Result<bool, ()>,
) -> Row {
    let mut row = Row::new(name);
    let mut seed = 0x1234_5678_9abc_def1;
    for _ in 0..trials {
        row.trials += 1;
        let Some(killed) = kill_holder(&mut row, &mut seed, |ready| {
            hold(lock);
            ready.store(1, Ordering::SeqCst);
            spin_forever()
        }) else {
            continue;
        };
        match take(lock) {
            Ok(true) => {
                row.lost_reported += 1;
                row.recovered_after(since(killed));
            }
            Ok(false) => row.lost_unreported += 1,
            Err(()) => row.hangs += 1,
        }
    }
    row
}

/// A mutex's holder killed while another process sleeps waiting for it.
fn holder_killed_with_a_waiter(trials: u32) -> Row {
    let mut row = Row::new("Mutex holder killed, a waiter asleep");
    let m = Shared::anonymous(Mutex::new(0u64)).unwrap();
    let took = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let mut seed = 0x0bad_cafe_dead_beef;
    for _ in 0..trials {
        row.trials += 1;
        let holding = Shared::anonymous(AtomicU32::new(0)).unwrap();
        let mut holder = fork(|| {
            let _g = m.lock();
            holding.store(1, Ordering::SeqCst);
            spin_forever()
        });
        while holding.load(Ordering::SeqCst) == 0 {
            std::hint::spin_loop();
        }
        let mut waiter = fork(|| match m.lock_timeout(BOUND) {
            Err(LockError::OwnerDied(mut g)) => {
                took.store(now_ns(), Ordering::SeqCst);
                g.mark_consistent();
                0
            }
            Ok(_) => 1,
            Err(_) => 2,
        });
        // Long enough for the waiter to spin out and fall asleep.
        std::thread::sleep(Duration::from_millis(2 + next(&mut seed) % 3));
        holder.signal(libc::SIGKILL);
        let killed = now_ns();
        let _ = holder.wait_timeout(BOUND);
        match waiter.wait_timeout(BOUND) {
            Some(ChildExit::Exited(0)) => {
                row.reported(took.load(Ordering::SeqCst), killed);
            }
            Some(ChildExit::Exited(1)) => row.lost_unreported += 1,
            Some(ChildExit::Exited(2)) | None => row.hangs += 1,
            Some(_) => row.crashes += 1,
        }
    }
    row
}

fn semaphore_owner_killed(trials: u32) -> Row {
    let mut row = Row::new("owned permits' holder killed");
    let sem = Shared::anonymous(BoundedSemaphore::new(2)).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d;
    for _ in 0..trials {
        row.trials += 1;
        let Some(killed) = kill_holder(&mut row, &mut seed, |ready| {
            let _a = sem.acquire_owned();
            let _b = sem.acquire_owned();
            ready.store(1, Ordering::SeqCst);
            spin_forever()
        }) else {
            continue;
        };
        let a = sem.acquire_owned_timeout(BOUND);
        let b = sem.acquire_owned_timeout(BOUND);
        if a.is_err() || b.is_err() {
            row.hangs += 1;
            continue;
        }
        row.lost_reported += 2;
        row.recovered_after(since(killed));
        if sem.try_acquire_owned().is_ok() {
            row.dups += 1;
        }
    }
    row
}

fn barrier_member_killed(trials: u32) -> Row {
    let mut row = Row::new("Barrier member killed before arriving");
    let b = Shared::anonymous(Barrier::new(2).unwrap()).unwrap();
    let broke = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..trials {
        row.trials += 1;
        b.reset();
        let mut partner = fork(|| {
            let me = b.join().unwrap();
            match me.wait_timeout(BOUND) {
                Err(Error::BrokenBarrier) => {
                    broke.store(now_ns(), Ordering::SeqCst);
                    0
                }
                Ok(_) => 1,
                Err(_) => 2,
            }
        });
        let Some(killed) = kill_holder(&mut row, &mut seed, |ready| {
            let _me = b.join().unwrap();
            ready.store(1, Ordering::SeqCst);
            spin_forever()
        }) else {
            continue;
        };
        match partner.wait_timeout(BOUND) {
            Some(ChildExit::Exited(0)) => {
                row.reported(broke.load(Ordering::SeqCst), killed);
            }
            Some(ChildExit::Exited(1)) => row.crashes += 1, // passed with one of two
            Some(ChildExit::Exited(2)) | None => row.hangs += 1,
            Some(_) => row.crashes += 1,
        }
    }
    row
}

fn event_setter_killed(trials: u32) -> Row {
    let mut row = Row::new("Event's only setter killed");
    let mut seed = 0x5851_f42d_4c95_7f2d;
    for _ in 0..trials {
        row.trials += 1;
        let e = Shared::anonymous(Event::new()).unwrap();
        let told = Shared::anonymous(AtomicU64::new(0)).unwrap();
        let Some(killed) = kill_holder(&mut row, &mut seed, |ready| {
            let _s = e.register_setter().unwrap();
            ready.store(1, Ordering::SeqCst);
            spin_forever()
        }) else {
            continue;
        };
        let mut waiter = fork(|| match e.wait_checked_timeout(BOUND) {
            Err(Error::NoLiveSetter) => {
                told.store(now_ns(), Ordering::SeqCst);
                0
            }
            _ => 1,
        });
        if row.child_ended(&mut waiter, ChildExit::Exited(0)) {
            row.reported(told.load(Ordering::SeqCst), killed);
        }
    }
    row
}

/// A producer killed mid-stream beside a live one: every message of the
/// survivor arrives once, in order; the victim's arrive once, in order, and
/// a gap in them is counted lost.
fn producer_killed(trials: u32) -> Row {
    let mut row = Row::new("Queue producer killed mid-stream");
    let mut seed = 0x1357_9bdf_2468_ace0;
    const K: u64 = 300;
    for _ in 0..trials {
        row.trials += 1;
        let q = Queue::<u64>::new(8).unwrap();
        let mut victim = fork(|| {
            for i in 1.. {
                q.put(i).unwrap();
            }
            0
        });
        let mut survivor = fork(|| {
            for i in 1..=K {
                q.put(1 << 48 | i).unwrap();
            }
            0
        });
        let kill_after = Duration::from_micros(next(&mut seed) % 3000);
        let start = Instant::now();
        let (mut killed, mut next_s, mut last_v, mut got_v) = (None, 1, 0, 0u64);
        loop {
            if killed.is_none() && start.elapsed() >= kill_after {
                victim.signal(libc::SIGKILL);
                killed = Some(Instant::now());
            }
            if killed.is_some() && next_s > K {
                break;
            }
            let Ok(m) = q.get_timeout(BOUND) else {
                row.hangs += 1;
                break;
            };
            if m >> 48 == 1 {
                if m & 0xffff_ffff != next_s {
                    row.dups += 1;
                }
                next_s += 1;
            } else {
                if m <= last_v {
                    row.dups += 1;
                }
                last_v = m;
                got_v += 1;
            }
        }
        let _ = victim.wait_timeout(BOUND);
        row.child_ended(&mut survivor, ChildExit::Exited(0));
        while let Ok(m) = q.try_get() {
            if m <= last_v {
                row.dups += 1;
            }
            last_v = m;
            got_v += 1;
        }
        // The victim put 1..=n; a message it claimed and never published is
        // the gap (at most one, at the end).
        let missing = last_v.saturating_sub(got_v);
        let lost = q.lost();
        row.lost_reported += lost;
        row.lost_unreported += missing.saturating_sub(lost);
        if let Some(k) = killed {
            row.recovered_after(k.elapsed().min(BOUND));
        }
    }
    // Recovery here is the whole drain after the kill, not one skip.
    row
}

/// What the consumer rows do to their queue: each message carries an index,
/// as a `u64` or at the head of a 64 KiB message.
trait Consumed: Sync {
    /// How many messages a trial's producer puts at most.
    const K: u64;
    fn put(&self, i: u64);
    /// The victim's get (it unwraps: the victim is killed anyway).
    fn get(&self) -> u64;
    /// The index of the message taken, `None` when it is torn or out of range.
    fn get_timeout(&self, d: Duration) -> Result<Option<u64>, QError>;
    fn lost(&self) -> u64;
    fn empty(&self) -> bool;
}

impl Consumed for Queue<u64> {
    const K: u64 = 50_000;
    fn put(&self, i: u64) {
        Queue::put(self, i).unwrap();
    }
    fn get(&self) -> u64 {
        Queue::get(self).unwrap()
    }
    fn get_timeout(&self, d: Duration) -> Result<Option<u64>, QError> {
        Queue::get_timeout(self, d).map(|i| Some(i).filter(|&i| i < Self::K))
    }
    fn lost(&self) -> u64 {
        Queue::lost(self)
    }
    fn empty(&self) -> bool {
        Queue::empty(self)
    }
}

/// A byte queue of 64 KiB messages, which stream through its lane.
struct Large(ByteQueue);

impl Large {
    fn msg(i: u64) -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; 64 << 10];
        v[..8].copy_from_slice(&i.to_le_bytes());
        v
    }

    fn index(m: &[u8]) -> u64 {
        m.get(..8)
            .map_or(u64::MAX, |b| u64::from_le_bytes(b.try_into().unwrap()))
    }
}

impl Consumed for Large {
    const K: u64 = 5_000;
    fn put(&self, i: u64) {
        self.0.put_bytes(&Large::msg(i)).unwrap();
    }
    fn get(&self) -> u64 {
        Large::index(&self.0.get_bytes().unwrap())
    }
    fn get_timeout(&self, d: Duration) -> Result<Option<u64>, QError> {
        let m = self.0.get_bytes_timeout(d)?;
        let i = Large::index(&m);
        Ok(Some(i).filter(|&i| i < Self::K && m == Large::msg(i)))
    }
    fn lost(&self) -> u64 {
        self.0.lost()
    }
    fn empty(&self) -> bool {
        self.0.empty()
    }
}

/// A consumer killed mid-stream: nothing received twice; what is missing was
/// counted lost, or is the one message the victim took just before its death.
fn consumer_killed(trials: u32) -> Row {
    consumer_killed_in(
        "Queue consumer killed mid-stream",
        0x0f1e_2d3c_4b5a_6978,
        trials,
        || Queue::<u64>::new(4).unwrap(),
    )
}

/// A consumer of 64 KiB messages (streamed through the lane) killed
/// mid-message: as `consumer_killed`; the message it was taking is counted
/// lost by the producer, which finds the receiver dead.
fn large_consumer_killed(trials: u32) -> Row {
    consumer_killed_in(
        "ByteQueue 64 KiB consumer killed mid-message",
        0x5be0_cd19_137e_2179,
        trials,
        || Large(ByteQueue::new(4, 64).unwrap()),
    )
}

/// The consumer rows' trials: a producer, a victim consumer killed at a
/// random point, and this process consuming beside it.
fn consumer_killed_in<Q: Consumed>(
    name: &'static str,
    mut seed: u64,
    trials: u32,
    make: impl Fn() -> Q,
) -> Row {
    let mut row = Row::new(name);
    for _ in 0..trials {
        row.trials += 1;
        let q = make();
        let victim_got = SharedSlice::<AtomicU64>::anonymous(Q::K.div_ceil(64) as usize).unwrap();
        // [stop, how many the producer put]: it stops once the victim is dead.
        let ctl = SharedSlice::<AtomicU64>::anonymous(2).unwrap();
        let mut producer = fork(|| {
            let mut i = 0;
            while i < Q::K && ctl[0].load(Ordering::SeqCst) == 0 {
                q.put(i);
                i += 1;
            }
            ctl[1].store(i, Ordering::SeqCst);
            0
        });
        let mut victim = fork(|| loop {
            let i = q.get();
            victim_got[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 2000));
        victim.signal(libc::SIGKILL);
        let killed = Instant::now();
        let _ = victim.wait_timeout(BOUND);
        ctl[0].store(1, Ordering::SeqCst);
        let mut mine = vec![false; Q::K as usize];
        let mut producer_done = false;
        loop {
            match q.get_timeout(Duration::from_millis(20)) {
                Ok(Some(i)) => {
                    if mine[i as usize] {
                        row.dups += 1;
                    }
                    mine[i as usize] = true;
                }
                Ok(None) => row.crashes += 1,
                Err(QError::Timeout) => {
                    if !producer_done {
                        producer_done = row.child_ended(&mut producer, ChildExit::Exited(0));
                        if !producer_done {
                            break;
                        }
                    } else if q.empty() {
                        break;
                    }
                }
                Err(_) => {
                    row.crashes += 1;
                    break;
                }
            }
            if killed.elapsed() > BOUND * 2 {
                row.hangs += 1;
                break;
            }
        }
        row.recovered_after(killed.elapsed());
        let theirs =
            |i: u64| victim_got[(i / 64) as usize].load(Ordering::SeqCst) & (1 << (i % 64)) != 0;
        let put = ctl[1].load(Ordering::SeqCst);
        row.dups += (0..put).filter(|&i| mine[i as usize] && theirs(i)).count() as u64;
        let missing = (0..put)
            .filter(|&i| !mine[i as usize] && !theirs(i))
            .count() as u64;
        let lost = q.lost();
        row.lost_reported += lost;
        // One message may have reached the victim, which died before noting it.
        row.lost_unreported += missing.saturating_sub(lost + 1);
    }
    row
}

/// An `SpscQueue` producer killed mid-stream: everything it published arrives,
/// in order, once; the consumer is told (`Disconnected`) and a new producer
/// takes the end over.
fn spsc_producer_killed(trials: u32) -> Row {
    let mut row = Row::new("SpscQueue producer killed mid-stream, taken over");
    let mut seed = 0x5eed_0f5b_5c0d_e001;
    for _ in 0..trials {
        row.trials += 1;
        let q = SpscQueue::<u64>::new(8).unwrap();
        let mut rx = q.consumer().unwrap();
        let mut victim = fork(|| {
            let mut tx = q.producer().unwrap();
            for i in 1.. {
                tx.put(i).unwrap();
            }
            0
        });
        // The kill clock starts once the victim holds its end (its first
        // item came): killed before it took the end, it leaves one never
        // taken, which the consumer waits for as for a producer yet to come
        // (one trial in about 500 read as a hang where the kill came within
        // microseconds of the fork).
        let mut killed_ns = None;
        let mut last = match rx.get_timeout(BOUND) {
            Ok(m) => m,
            Err(_) => {
                row.hangs += 1;
                victim.signal(libc::SIGKILL);
                let _ = victim.wait_timeout(BOUND);
                continue;
            }
        };
        let kill_after = Duration::from_micros(next(&mut seed) % 3000);
        let start = Instant::now();
        loop {
            if killed_ns.is_none() && start.elapsed() >= kill_after {
                victim.signal(libc::SIGKILL);
                killed_ns = Some(now_ns());
            }
            match rx.get_timeout(BOUND) {
                Ok(m) => {
                    if m <= last {
                        row.dups += 1;
                    } else {
                        row.lost_unreported += m - last - 1;
                    }
                    last = m;
                }
                Err(QError::Disconnected) => {
                    if let Some(k) = killed_ns {
                        row.recovered_after(Duration::from_nanos(now_ns().saturating_sub(k)));
                    } else {
                        row.crashes += 1;
                    }
                    break;
                }
                Err(_) => {
                    row.hangs += 1;
                    break;
                }
            }
        }
        let _ = victim.wait_timeout(BOUND);
        match q.producer() {
            Ok(mut tx) => {
                let ok = tx.put(1 << 48).is_ok() && matches!(rx.try_get(), Ok(m) if m == 1 << 48);
                if !ok {
                    row.crashes += 1;
                }
            }
            Err(_) => row.crashes += 1,
        }
    }
    row
}

/// An `SpscQueue` consumer killed mid-stream: nothing it took is taken again by
/// the next consumer, and nothing is missing but (at most) the one item the
/// victim took just before its death and had not noted; the producer is told.
fn spsc_consumer_killed(trials: u32) -> Row {
    let mut row = Row::new("SpscQueue consumer killed mid-stream, taken over");
    let mut seed = 0x0dd5_eed5_c0ff_ee01;
    const K: u64 = 50_000;
    for _ in 0..trials {
        row.trials += 1;
        let q = SpscQueue::<u64>::new(4).unwrap();
        let mut tx = q.producer().unwrap();
        let victim_got = SharedSlice::<AtomicU64>::anonymous(K.div_ceil(64) as usize).unwrap();
        let mut victim = fork(|| {
            let mut rx = q.consumer().unwrap();
            loop {
                let i = rx.get().unwrap();
                victim_got[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::SeqCst);
            }
        });
        // The kill clock starts once the victim holds its end (it took the
        // first item): killed before it took the end, it leaves one never
        // taken, for which the producer waits as for a consumer yet to come.
        let (mut killed_ns, mut put) = (None, 1);
        let taken = || victim_got[0].load(Ordering::SeqCst) & 1 != 0;
        let waited = Instant::now();
        let started = tx.put_timeout(0, BOUND).is_ok() && {
            while !taken() && waited.elapsed() < BOUND {
                std::thread::sleep(Duration::from_micros(20));
            }
            taken()
        };
        if !started {
            row.hangs += 1;
            victim.signal(libc::SIGKILL);
            let _ = victim.wait_timeout(BOUND);
            continue;
        }
        let kill_after = Duration::from_micros(next(&mut seed) % 2000);
        let start = Instant::now();
        while put < K {
            if killed_ns.is_none() && start.elapsed() >= kill_after {
                victim.signal(libc::SIGKILL);
                killed_ns = Some(now_ns());
            }
            match tx.put_timeout(put, BOUND) {
                Ok(()) => put += 1,
                Err(QError::Disconnected) if killed_ns.is_some() => {
                    row.recovered_after(Duration::from_nanos(
                        now_ns().saturating_sub(killed_ns.unwrap_or(0)),
                    ));
                    break;
                }
                Err(QError::Timeout) => {
                    row.hangs += 1;
                    break;
                }
                Err(_) => {
                    row.crashes += 1;
                    break;
                }
            }
        }
        if killed_ns.is_none() {
            victim.signal(libc::SIGKILL);
        }
        let _ = victim.wait_timeout(BOUND);
        let mut mine = vec![false; K as usize];
        match q.consumer() {
            Ok(mut rx) => {
                while let Ok(i) = rx.try_get() {
                    match mine.get_mut(i as usize) {
                        Some(seen) if !*seen => *seen = true,
                        Some(_) => row.dups += 1,
                        None => row.crashes += 1,
                    }
                }
            }
            Err(_) => row.crashes += 1,
        }
        let theirs =
            |i: u64| victim_got[(i / 64) as usize].load(Ordering::SeqCst) & (1 << (i % 64)) != 0;
        row.dups += (0..put).filter(|&i| mine[i as usize] && theirs(i)).count() as u64;
        let missing = (0..put)
            .filter(|&i| !mine[i as usize] && !theirs(i))
            .count() as u64;
        row.lost_unreported += missing.saturating_sub(1);
    }
    row
}

/// A producer of 64 KiB messages (streamed through the lane) killed
/// mid-stream: each message arrives whole or is counted lost.
fn large_producer_killed(trials: u32) -> Row {
    let mut row = Row::new("ByteQueue 64 KiB producer killed mid-message");
    let mut seed = 0x7a5b_3c1d_9e8f_2a4b;
    let msg = Large::msg;
    for _ in 0..trials {
        row.trials += 1;
        let q = ByteQueue::new(4, 64).unwrap();
        let mut victim = fork(|| {
            for i in 1.. {
                q.put_bytes(&msg(i)).unwrap();
            }
            0
        });
        let kill_after = Duration::from_micros(next(&mut seed) % 2000);
        let start = Instant::now();
        let (mut killed, mut last, mut got) = (None, 0u64, 0u64);
        loop {
            if killed.is_none() && start.elapsed() >= kill_after {
                victim.signal(libc::SIGKILL);
                killed = Some(Instant::now());
                let _ = victim.wait_timeout(BOUND);
            }
            match q.get_bytes_timeout(Duration::from_millis(20)) {
                Ok(m) => {
                    let i = u64::from_le_bytes(m[..8].try_into().unwrap_or_default());
                    if m != msg(i) {
                        row.crashes += 1;
                    }
                    if i <= last {
                        row.dups += 1;
                    }
                    last = i;
                    got += 1;
                }
                Err(QError::Timeout | QError::Disconnected) if killed.is_some() => {
                    if q.empty() {
                        break;
                    }
                }
                Err(QError::Timeout) => {}
                Err(_) => {
                    row.crashes += 1;
                    break;
                }
            }
            if killed.is_some_and(|k| k.elapsed() > BOUND) {
                row.hangs += 1;
                break;
            }
        }
        if let Some(k) = killed {
            row.recovered_after(k.elapsed());
        }
        let lost = q.lost();
        row.lost_reported += lost;
        row.lost_unreported += last.saturating_sub(got).saturating_sub(lost);
    }
    row
}

/// Message `i` of the pipe row: its index, then 0 to 20 000 bytes of `i as u8`
/// (some over the slot size, so they stream).
fn pipe_msg(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.resize(8 + (i as usize * 7919) % 20_000, i as u8);
    m
}

/// The sending end's process killed mid-stream: the receiver gets whole
/// messages, then `Disconnected`, never a hang.
fn pipe_peer_killed(trials: u32) -> Row {
    let mut row = Row::new("Pipe sender killed mid-stream");
    let mut seed = 0x3c6e_f372_fe94_f82b;
    for _ in 0..trials {
        row.trials += 1;
        let (rx, tx) = pipe(false).unwrap();
        let mut victim = fork(|| {
            for i in 0u64.. {
                tx.send_bytes(&pipe_msg(i)).unwrap();
            }
            0
        });
        drop(tx);
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 2000));
        victim.signal(libc::SIGKILL);
        let killed = Instant::now();
        let _ = victim.wait_timeout(BOUND);
        let mut expect = 0u64;
        loop {
            match rx.recv_bytes_timeout(BOUND) {
                Ok(m) => {
                    let i = m
                        .get(..8)
                        .map_or(u64::MAX, |b| u64::from_le_bytes(b.try_into().unwrap()));
                    if m != pipe_msg(i) {
                        row.crashes += 1; // torn
                    } else if i != expect {
                        // One sender, in order: a gap is a silent loss.
                        row.lost_unreported += i.saturating_sub(expect);
                        row.dups += u64::from(i < expect);
                    }
                    expect = i + 1;
                }
                Err(QError::Disconnected) => {
                    // The message in flight at the kill is what the
                    // disconnection reports.
                    row.lost_reported += 1;
                    row.recovered_after(killed.elapsed());
                    break;
                }
                Err(QError::Timeout) => {
                    row.hangs += 1;
                    break;
                }
                Err(_) => {
                    row.crashes += 1;
                    break;
                }
            }
        }
    }
    row
}

/// A peer writes garbage over a queue's whole segment while a process uses
/// it: every call returns (a value or a typed error), nothing panics.
fn scribbled_queue(trials: u32) -> Row {
    let mut row = Row::new("garbage over a queue in use");
    let mut seed = 0xfeed_face_cafe_beef;
    for _ in 0..trials {
        row.trials += 1;
        let q = ByteQueue::new(8, 32).unwrap();
        let s = next(&mut seed);
        let mut user = fork(|| {
            let t = Instant::now();
            let mut buf = Vec::new();
            while t.elapsed() < Duration::from_millis(30) {
                let _ = q.put_bytes_timeout(b"twelve bytes", Duration::from_millis(2));
                let _ = q.get_bytes_into_timeout(&mut buf, Duration::from_millis(2));
                let _ = q.qsize();
            }
            0
        });
        let seg = q.segment();
        let mut x = s;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            let off = (next(&mut x) as usize % seg.len()) & !7;
            let _ = seg.write_volatile(off, &next(&mut x).to_ne_bytes());
        }
        row.child_ended(&mut user, ChildExit::Exited(0));
    }
    row
}

multiproc_shm::shm_struct! {
    sync struct Prims {
        mutex: Mutex<u64>,
        lock: Lock,
        rlock: RLock,
        sem: Semaphore,
        event: Event,
        barrier: Barrier,
        cond: Condition,
    }
}

/// A peer writes garbage over every sync primitive while a process uses them
/// with timeouts: every call returns, nothing panics.
fn scribbled_sync(trials: u32) -> Row {
    let mut row = Row::new("garbage over the sync primitives in use");
    let mut seed = 0xabad_1dea_f00d_d00d;
    for _ in 0..trials {
        row.trials += 1;
        let p = Shared::anonymous(Prims {
            mutex: Mutex::new(0),
            lock: Lock::new(),
            rlock: RLock::new(),
            sem: Semaphore::new(1),
            event: Event::new(),
            barrier: Barrier::new(2).unwrap(),
            cond: Condition::new(),
        })
        .unwrap();
        let d = Duration::from_millis(1);
        let mut user = fork(|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                if let Ok(g) = p.mutex.lock_timeout(d) {
                    let _ = p.cond.wait_timeout(g, d);
                }
                if p.lock.acquire_timeout(d).is_ok() {
                    let _ = p.lock.release();
                }
                if p.rlock.acquire_timeout(d).is_ok() {
                    let _ = p.rlock.release();
                }
                if p.sem.acquire_timeout(d).is_ok() {
                    let _ = p.sem.release(1);
                }
                let _ = p.event.wait_timeout(d);
                let _ = p.barrier.wait_timeout(d);
                p.barrier.reset();
                p.cond.notify_all();
            }
            0
        });
        let seg = p.segment();
        let mut x = next(&mut seed);
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            let off = (next(&mut x) as usize % seg.len()) & !3;
            let _ = seg.write_volatile(off, &(next(&mut x) as u32).to_ne_bytes());
        }
        row.child_ended(&mut user, ChildExit::Exited(0));
    }
    row
}

/// A daemon's parent SIGKILLed: the daemon ends too (no stray process).
fn daemons_parent_killed(trials: u32) -> Row {
    let mut row = Row::new("parent of a daemon killed");
    for _ in 0..trials {
        row.trials += 1;
        let daemon_pid = Shared::anonymous(AtomicU32::new(0)).unwrap();
        let mut parent = fork(|| {
            let mut d = Process::new(|| loop {
                std::thread::sleep(Duration::from_secs(1));
            })
            .daemon(true);
            d.start().unwrap();
            daemon_pid.store(d.pid().unwrap(), Ordering::SeqCst);
            std::mem::forget(d);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let t = Instant::now();
        while daemon_pid.load(Ordering::SeqCst) == 0 && t.elapsed() < BOUND {
            std::thread::yield_now();
        }
        let pid = daemon_pid.load(Ordering::SeqCst);
        // SAFETY: pidfd_open with plain integers; the daemon is not reaped by
        // us, so its pid names it until it ends.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        parent.signal(libc::SIGKILL);
        let killed = Instant::now();
        let _ = parent.wait_timeout(BOUND);
        if fd < 0 {
            row.recovered_after(killed.elapsed()); // gone already
            continue;
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ended = unsafe { libc::poll(&mut p, 1, BOUND.as_millis() as i32) } == 1;
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
        if ended {
            row.recovered_after(killed.elapsed());
        } else {
            row.hangs += 1;
            // SAFETY: kill(2) on the stray daemon.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    row
}

fn triple(args: &[u8]) -> i32 {
    i32::from(args.first().copied().unwrap_or(0)) * 3
}

/// The fork server killed under its client: the next spawn answers
/// `ServerGone`.
fn fork_server_killed(trials: u32) -> Row {
    let mut row = Row::new("fork server killed");
    for _ in 0..trials {
        row.trials += 1;
        let mut client = fork(|| {
            let server = ForkServer::builder()
                .entry("triple", triple)
                .start()
                .unwrap();
            let mut c = server.spawn("triple", &[2]).unwrap();
            if c.join().unwrap() != 6 {
                return 3;
            }
            // SAFETY: kill(2) on the server's pid.
            unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
            let answer = match server.spawn("triple", &[1]) {
                Err(multiproc_proc::Error::ServerGone { .. }) => 0,
                Ok(_) => 1,
                Err(_) => 2,
            };
            answer
        });
        let t = Instant::now();
        if row.child_ended(&mut client, ChildExit::Exited(0)) {
            row.lost_reported += 1;
            row.recovered_after(t.elapsed());
        }
    }
    row
}

fn work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..2_000 {
        h = h.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(h);
    x * 3
}

/// Pool workers SIGKILLed at random moments of maps: the killed item fails
/// with `WorkerDied`, every other item is right, the map returns.
fn pool_worker_killed(trials: u32) -> Row {
    let mut row = Row::new("pool worker killed mid-map");
    let pool = Pool::new(2).unwrap();
    let mut seed = 0x6a09_e667_f3bc_c908;
    for _ in 0..trials {
        row.trials += 1;
        let pids = pool.pids();
        let victim = pids[(next(&mut seed) % pids.len() as u64) as usize];
        // The map below takes a few milliseconds on two workers.
        let delay = Duration::from_micros(next(&mut seed) % 3_000);
        let killed = std::sync::Arc::new(AtomicU64::new(0));
        let k = killed.clone();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: kill(2) on a worker's pid.
            unsafe { libc::kill(victim as i32, libc::SIGKILL) };
            k.store(now_ns(), Ordering::SeqCst);
        });
        let t = Instant::now();
        match pool.map(work, 0..5_000u64) {
            Ok(v) => {
                if v.iter().enumerate().any(|(i, &r)| r != i as u64 * 3) {
                    row.crashes += 1;
                }
            }
            Err(multiproc_pool::Error::Item { source, .. })
                if matches!(*source, multiproc_pool::Error::WorkerDied { .. }) =>
            {
                row.lost_reported += 1;
                row.recovered_after(since(killed.load(Ordering::SeqCst)));
            }
            Err(_) => row.crashes += 1,
        }
        if t.elapsed() > BOUND {
            row.hangs += 1;
        }
        killer.join().unwrap();
    }
    row
}

/// The process that owns a pool SIGKILLed mid-map: no worker and no zygote
/// outlives it.
fn pool_owner_killed(trials: u32) -> Row {
    let mut row = Row::new("process owning a pool killed mid-map");
    for _ in 0..trials {
        row.trials += 1;
        let pids = SharedSlice::<AtomicU32>::anonymous(8).unwrap();
        let mut owner = fork(|| {
            let pool = Pool::new(2).unwrap();
            for (slot, pid) in pids.iter().zip(pool.pids()) {
                slot.store(pid, Ordering::SeqCst);
            }
            loop {
                let _ = pool.map(work, 0..100_000u64);
            }
        });
        let t = Instant::now();
        while pids[1].load(Ordering::SeqCst) == 0 && t.elapsed() < BOUND {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        owner.signal(libc::SIGKILL);
        let killed = Instant::now();
        let _ = owner.wait_timeout(BOUND);
        for slot in pids.iter() {
            let pid = slot.load(Ordering::SeqCst);
            if pid == 0 {
                continue;
            }
            let gone = || {
                // A reaped process has no /proc entry; a zombie's state is Z.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .is_some_and(|r| r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(true)
            };
            while !gone() && killed.elapsed() < BOUND {
                std::thread::sleep(Duration::from_millis(1));
            }
            if !gone() {
                row.hangs += 1;
                // SAFETY: kill(2) on the stray worker.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        row.recovered_after(killed.elapsed());
    }
    row
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // The full run is about two minutes here; --quick a 250th of the
    // trials (at least one a row).
    let n = |full: u32| if quick { full.div_ceil(50) } else { full * 5 };
    set_owner_check_interval(Duration::from_millis(5));
    // Forks happen from this thread only; the pool rows, whose pools run
    // threads, come last.
    let mutex = Shared::anonymous(Mutex::new(0u64)).unwrap();
    let lock = Shared::anonymous(Lock::new()).unwrap();
    let rlock = Shared::anonymous(RLock::new()).unwrap();
    let rows = vec![
        holder_killed(
            "Mutex holder killed",
            n(200),
            &*mutex,
            |m| std::mem::forget(m.lock()),
            |m| match m.lock_timeout(BOUND) {
                Err(LockError::OwnerDied(mut g)) => {
                    g.mark_consistent();
                    Ok(true)
                }
                Ok(_) => Ok(false),
                Err(_) => Err(()),
            },
        ),
        holder_killed_with_a_waiter(n(100)),
        holder_killed(
            "Lock holder killed",
            n(200),
            &*lock,
            |l| drop(l.acquire()),
            |l| {
                let r = match l.acquire_timeout(BOUND) {
                    Err(Error::OwnerDied) => {
                        l.mark_consistent();
                        Ok(true)
                    }
                    Ok(()) => Ok(false),
                    Err(_) => return Err(()),
                };
                let _ = l.release();
                r
            },
        ),
        holder_killed(
            "RLock holder killed (held twice)",
            n(200),
            &*rlock,
            |r| {
                let _ = r.acquire();
                let _ = r.acquire();
            },
            |r| {
                let out = match r.acquire_timeout(BOUND) {
                    Err(Error::OwnerDied) => {
                        r.mark_consistent();
                        Ok(true)
                    }
                    Ok(()) => Ok(false),
                    Err(_) => return Err(()),
                };
                let _ = r.release();
                out
            },
        ),
        semaphore_owner_killed(n(100)),
        barrier_member_killed(n(100)),
        event_setter_killed(n(100)),
        producer_killed(n(200)),
        consumer_killed(n(100)),
        spsc_producer_killed(n(100)),
        spsc_consumer_killed(n(100)),
        large_producer_killed(n(50)),
        large_consumer_killed(n(50)),
        pipe_peer_killed(n(50)),
        scribbled_queue(n(50)),
        scribbled_sync(n(50)),
        daemons_parent_killed(n(50)),
        fork_server_killed(n(20)),
        pool_owner_killed(n(20)),
        pool_worker_killed(n(50)),
    ];
    println!(
        "| scenario | trials | hangs | dups | lost, reported | lost, unreported | crashes | worst recovery |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |{}",
            r.name,
            r.trials,
            r.hangs,
            r.dups,
            r.lost_reported,
            r.lost_unreported,
            r.crashes,
            r.worst.map_or("–".to_owned(), |w| format!(
                "{:.1} ms",
                w.as_secs_f64() * 1e3
            )),
            if r.clean() { "" } else { " ✗" }
        );
    }
    let bad = rows.iter().filter(|r| !r.clean()).count();
    if bad > 0 {
        eprintln!("{bad} scenario(s) with hangs, duplicates, unreported losses or crashes");
        std::process::exit(1);
    }
}
