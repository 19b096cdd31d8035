//! The lock word shared by [`Mutex`](crate::Mutex), [`Lock`](crate::Lock) and
//! [`RLock`](crate::RLock), and the algorithm that recovers it from a dead holder.
//!
//! # Why not a PI futex or the robust list
//! The kernel's robust-futex list (`set_robust_list`) is one per thread and glibc
//! owns it, so a library cannot add its locks to it. `FUTEX_LOCK_PI` hands a dead
//! owner's lock to a queued waiter, but answers `ESRCH` when the owner died with no
//! waiter queued (user space must recover then anyway), cannot tell a recycled tid
//! from its first holder, and hands the lock off in FIFO order with a syscall on
//! every contended unlock, which halves throughput under contention. So the word is
//! a plain futex, and a waiter that has slept one check interval (default 50 ms,
//! see [`set_owner_check_interval`]) asks `/proc`
//! whether the owner still lives; so does, once, a timed acquire whose time runs
//! out first (a zero timeout makes no futex call and sets no `WAITERS` bit). The uncontended path is one CAS and one store to
//! lock, one swap to unlock.
//!
//! # The lock word
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0–29 | owner | tid of the holding thread; 0 = unlocked (Linux tids are below 2²²) |
//! | 30 | [`WAITERS`] | someone may be asleep on the word: unlock must wake one |
//! | 31 | [`OWNER_DIED`] | the holder took the lock over from a dead holder and has not yet called `mark_consistent` |
//! | all of 0–29, no flags | [`NOT_RECOVERABLE`] | a recovered lock was released without `mark_consistent`: every acquire fails |
//!
//! The owner record beside the word holds `tid << 32 | identity token` of the holder
//! (written right after the CAS that takes the lock), so that a waiter can tell a
//! recycled tid from the thread that took the lock.
//!
//! Garbage in the word (a peer scribbled over it) is handled like any other value:
//! an owner that does not exist is "dead" and the lock is recovered with
//! [`Acquired::OwnerDied`]; an owner that is this very thread is
//! [`Fail::WouldDeadlock`]; a live unrelated thread is waited on — use the timed
//! acquire where that matters.

use std::time::Duration;

use crate::identity::tid_of;
use crate::primitive::{
    current_owner, owner_alive, spin, wait, wake, AtomicU32, AtomicU64, Deadline, Ordering,
};

/// Bits of the word that hold the owner's tid.
pub const TID_MASK: u32 = (1 << 30) - 1;
/// Someone may be sleeping on the word.
pub const WAITERS: u32 = 1 << 30;
/// The holder recovered the lock from a dead holder and has not marked it consistent.
pub const OWNER_DIED: u32 = 1 << 31;
/// The lock was abandoned after a recovery: no acquire can succeed.
pub const NOT_RECOVERABLE: u32 = TID_MASK;

/// Spins before sleeping: a hand-off between processes costs ~0.15 µs spinning and
/// ~40 µs sleeping here, so a short spin wins most hand-offs. Under loom a spin is
/// a yield, and one is enough to explore the interleavings.
const SPIN_LIMIT: u32 = if cfg!(multiproc_loom) { 1 } else { 100 };

static CHECK_INTERVAL_NS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(50_000_000);

/// How long a waiter sleeps before it checks whether the holder is still alive.
///
/// A holder's death is noticed at most this long (plus a `/proc` read) after the
/// first waiter started to sleep, so the default of 50 ms keeps recovery within
/// 100 ms. Applies to this process's waiters; clamped to 1 ms – 60 s. Waiters
/// in a [`Semaphore`](crate::Semaphore), an [`Event`](crate::Event) and a
/// `multiproc-queue` queue also wake this often, so that one killed asleep is
/// soon forgotten by the counts that spare wakers a syscall.
///
/// # Examples
/// ```
/// multiproc_sync::set_owner_check_interval(std::time::Duration::from_millis(10));
/// assert_eq!(multiproc_sync::owner_check_interval(), std::time::Duration::from_millis(10));
/// ```
pub fn set_owner_check_interval(interval: Duration) {
    let ns = interval
        .clamp(Duration::from_millis(1), Duration::from_secs(60))
        .as_nanos() as u64;
    CHECK_INTERVAL_NS.store(ns, std::sync::atomic::Ordering::Relaxed);
}

/// The current owner check interval (see [`set_owner_check_interval`]).
///
/// # Examples
/// ```
/// assert!(multiproc_sync::owner_check_interval() >= std::time::Duration::from_millis(1));
/// ```
pub fn owner_check_interval() -> Duration {
    Duration::from_nanos(CHECK_INTERVAL_NS.load(std::sync::atomic::Ordering::Relaxed))
}

/// How an acquire succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock was free or released normally.
    Clean,
    /// The lock was taken over from a holder that died holding it.
    OwnerDied,
}

/// Why an acquire failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// `try_lock` found it held.
    WouldBlock,
    /// The deadline passed.
    Timeout,
    /// The lock was abandoned after a recovery.
    NotRecoverable,
    /// The word says this thread holds it already.
    WouldDeadlock,
}

/// A lock word and its owner record: 16 bytes, `#[repr(C)]`, valid for every bit pattern.
#[repr(C)]
pub(crate) struct RawMutex {
    word: AtomicU32,
    reserved: AtomicU32,
    owner: AtomicU64,
}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<RawMutex>() == 16);

impl RawMutex {
    pub(crate) fn new() -> RawMutex {
        RawMutex {
            word: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub(crate) fn try_lock(&self) -> Result<Acquired, Fail> {
        let me = current_owner();
        // SYNC: Acquire pairs with the Release swap in `unlock`.
        match self
            .word
            .compare_exchange(0, tid_of(me), Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => {
                self.record_owner(me);
                Ok(Acquired::Clean)
            }
            Err(NOT_RECOVERABLE) => Err(Fail::NotRecoverable),
            Err(_) => Err(Fail::WouldBlock),
        }
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`).
    ///
    /// Inline, unlike glibc's `pthread_mutex_lock`: out of line, two processes
    /// taking turns at one lock did worse (`benches/NOTES.md`).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<&Deadline>) -> Result<Acquired, Fail> {
        let me = current_owner();
        // SYNC: Acquire pairs with the Release swap in `unlock`.
        if self
            .word
            .compare_exchange(0, tid_of(me), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.record_owner(me);
            return Ok(Acquired::Clean);
        }
        self.lock_contended(me, deadline)
    }

    /// Writes `me` into the owner record, unless it holds `me` already (this
    /// thread took the lock last): the same record either way, and an uncontended
    /// relock then costs a load, not a store the unlock must wait for.
    #[inline(always)]
    fn record_owner(&self, me: u64) {
        if self.owner.load(Ordering::Relaxed) != me {
            self.owner.store(me, Ordering::Relaxed);
        }
    }

    #[cold]
    fn lock_contended(&self, me: u64, deadline: Option<&Deadline>) -> Result<Acquired, Fail> {
        let tid = tid_of(me);
        let mut w = self.spin_while_held();
        loop {
            if w == 0 {
                // Take it with WAITERS set: others may be asleep, and we cannot tell.
                // SYNC: Acquire pairs with the Release swap in `unlock`.
                match self.word.compare_exchange(
                    0,
                    tid | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.owner.store(me, Ordering::Relaxed);
                        return Ok(Acquired::Clean);
                    }
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            if w == NOT_RECOVERABLE {
                return Err(Fail::NotRecoverable);
            }
            let holder = w & TID_MASK;
            if holder == tid {
                return Err(Fail::WouldDeadlock);
            }
            if deadline.is_some_and(Deadline::passed) {
                // Out of time (or none given, as in a zero timeout): no sleep,
                // and no WAITERS bit to cost the holder a wake-up. One look at
                // the holder first, so that callers that only ever wait a
                // little (less than a check interval) still take over a dead
                // holder's lock.
                return match self.take_over_if_dead(w, holder, me) {
                    Some(taken) => Ok(taken),
                    None => Err(Fail::Timeout),
                };
            }
            if w & WAITERS == 0 {
                if let Err(now) =
                    self.word
                        .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                {
                    w = now;
                    continue;
                }
                w |= WAITERS;
            }
            let check_at = Deadline::after(owner_check_interval());
            let until = Deadline::earliest(deadline.copied(), check_at);
            // Past the deadline, the top of the loop looks at the holder once
            // and gives up.
            if !wait(&self.word, w, until.as_ref()) && !deadline.is_some_and(Deadline::passed) {
                // A whole check interval with the same holder: is it still alive?
                if let Some(taken) = self.take_over_if_dead(w, holder, me) {
                    return Ok(taken);
                }
            }
            w = self.word.load(Ordering::Relaxed);
        }
    }

    /// Takes the lock over from `holder` if the word is still `w` and the
    /// holder is dead (a `/proc` read): `Some(OwnerDied)` then.
    fn take_over_if_dead(&self, w: u32, holder: u32, me: u64) -> Option<Acquired> {
        if self.word.load(Ordering::Relaxed) != w
            || owner_alive(holder, self.owner.load(Ordering::Relaxed))
        {
            return None;
        }
        // SYNC: Acquire pairs with whatever Release the dead holder's
        // predecessor made; the dead holder's own writes are suspect, which is
        // what OWNER_DIED tells the new holder. WAITERS: others may sleep.
        self.word
            .compare_exchange(
                w,
                tid_of(me) | WAITERS | OWNER_DIED,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()?;
        self.owner.store(me, Ordering::Relaxed);
        Some(Acquired::OwnerDied)
    }

    /// Spins a little while the lock is held and nobody sleeps; returns the word.
    fn spin_while_held(&self) -> u32 {
        let mut left = SPIN_LIMIT;
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 || w & WAITERS != 0 || left == 0 {
                return w;
            }
            spin();
            left -= 1;
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// - the calling thread holds the lock (or, for Python's `Lock`, the caller
    ///   takes responsibility for releasing a lock another thread holds).
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        // SYNC: Release pairs with the Acquire CAS in `lock`/`try_lock`: the next
        // holder sees every write made under the lock.
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            self.wake_one();
        }
    }

    #[cold]
    fn wake_one(&self) {
        wake(&self.word, 1);
    }

    /// Releases a recovered lock that was never marked consistent: from now on every
    /// acquire fails with `NotRecoverable`, and every sleeper is woken to see that.
    ///
    /// # Safety
    /// - the calling thread holds the lock.
    pub(crate) unsafe fn unlock_not_recoverable(&self) {
        self.word.store(NOT_RECOVERABLE, Ordering::Release);
        wake(&self.word, u32::MAX);
    }

    /// Clears OWNER_DIED: the holder repaired the data.
    ///
    /// # Safety
    /// - the calling thread holds the lock.
    pub(crate) unsafe fn mark_consistent(&self) {
        self.word.fetch_and(!OWNER_DIED, Ordering::Relaxed);
    }

    /// Whether the word says OWNER_DIED (a recovered, not yet repaired lock).
    pub(crate) fn is_inconsistent(&self) -> bool {
        let w = self.word.load(Ordering::Relaxed);
        w != NOT_RECOVERABLE && w & OWNER_DIED != 0
    }

    /// Whether some thread holds the lock (or it is not recoverable).
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// Whether the calling thread holds the lock.
    pub(crate) fn is_held_by_current_thread(&self) -> bool {
        let w = self.word.load(Ordering::Relaxed);
        w != NOT_RECOVERABLE && w & TID_MASK == tid_of(current_owner())
    }

    /// Who holds the lock, for `Debug` (Python's `repr` of a lock names its
    /// owner). A snapshot: the holder may change as it is read.
    pub(crate) fn holder(&self) -> Holder {
        let w = self.word.load(Ordering::Relaxed);
        let tid = w & TID_MASK;
        if w == NOT_RECOVERABLE {
            Holder::NotRecoverable
        } else if tid == 0 {
            Holder::Nobody
        } else if tid == tid_of(current_owner()) {
            Holder::ThisThread
        } else {
            match process_of(tid) {
                Some(pid) if pid == std::process::id() => Holder::OtherThread { tid },
                pid => Holder::OtherProcess { tid, pid },
            }
        }
    }

    /// The raw word, for tests and diagnostics.
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }
}

/// Who holds a lock ([`RawMutex::holder`]), as the locks' `Debug` shows it.
/// Python's `repr` says the same in its words: `owner=None`,
/// `owner=MainProcess` (the caller), `owner=SomeOtherThread`,
/// `owner=SomeOtherProcess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody: the lock is free.
    Nobody,
    /// The calling thread.
    ThisThread,
    /// Another thread of this process.
    OtherThread { tid: u32 },
    /// A thread of another process, whose pid `/proc` gives; `None` when no
    /// such thread runs (its holder died: the next acquire recovers the
    /// lock) or `/proc` cannot say.
    OtherProcess { tid: u32, pid: Option<u32> },
    /// A recovered lock released without `mark_consistent`: no acquire
    /// succeeds.
    NotRecoverable,
}

/// The process of thread `tid` (its `Tgid` in `/proc`), if it runs.
fn process_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Tgid:"))?;
    line.trim().parse().ok()
}

/// Converts an optional timeout into a deadline (`None`: wait forever).
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Deadline> {
    timeout.and_then(Deadline::after)
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    fn short_interval() {
        set_owner_check_interval(Duration::from_millis(2));
    }

    #[test]
    fn garbage_owner_that_does_not_exist_is_recovered() {
        short_interval();
        let m = RawMutex::new();
        m.word().store(0x3fff_0000, Ordering::Relaxed); // no such thread
        assert_eq!(m.lock(None), Ok(Acquired::OwnerDied));
        assert!(m.is_inconsistent());
        // SAFETY: this thread holds it.
        unsafe { m.mark_consistent() };
        // SAFETY: this thread holds it.
        unsafe { m.unlock() };
        assert_eq!(m.try_lock(), Ok(Acquired::Clean));
    }

    #[test]
    fn flags_without_an_owner_are_recovered() {
        short_interval();
        for w in [WAITERS, OWNER_DIED, WAITERS | OWNER_DIED] {
            let m = RawMutex::new();
            m.word().store(w, Ordering::Relaxed);
            assert_eq!(m.lock(None), Ok(Acquired::OwnerDied), "{w:#x}");
        }
    }

    #[test]
    fn own_tid_in_the_word_is_a_deadlock_not_a_hang() {
        let m = RawMutex::new();
        assert_eq!(m.lock(None), Ok(Acquired::Clean));
        assert_eq!(m.lock(None), Err(Fail::WouldDeadlock));
        assert_eq!(m.try_lock(), Err(Fail::WouldBlock));
    }

    #[test]
    fn not_recoverable_stays_so() {
        let m = RawMutex::new();
        m.word().store(NOT_RECOVERABLE, Ordering::Relaxed);
        assert_eq!(m.lock(None), Err(Fail::NotRecoverable));
        assert_eq!(m.try_lock(), Err(Fail::NotRecoverable));
    }

    #[test]
    fn unrepaired_recovery_makes_it_not_recoverable() {
        short_interval();
        let m = RawMutex::new();
        m.word().store(0x3fff_0001, Ordering::Relaxed);
        assert_eq!(m.lock(None), Ok(Acquired::OwnerDied));
        // SAFETY: this thread holds it.
        unsafe { m.unlock_not_recoverable() };
        assert_eq!(m.lock(None), Err(Fail::NotRecoverable));
    }

    #[test]
    fn any_word_gives_an_answer_within_the_timeout() {
        short_interval();
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..300 {
            // xorshift: cheap, deterministic garbage.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let m = RawMutex::new();
            m.word().store(x, Ordering::Relaxed);
            let t = std::time::Instant::now();
            let r = m.lock(Deadline::after(Duration::from_millis(20)).as_ref());
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{x:#x} took {:?}",
                t.elapsed()
            );
            match r {
                Ok(_) | Err(Fail::Timeout | Fail::NotRecoverable | Fail::WouldDeadlock) => {}
                Err(Fail::WouldBlock) => panic!("lock never answers WouldBlock"),
            }
        }
    }

    #[test]
    fn a_lock_held_by_a_thread_that_exited_is_recovered() {
        short_interval();
        let m = RawMutex::new();
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(m.lock(None), Ok(Acquired::Clean)));
        });
        // The thread is gone; its tid is in the word.
        assert_eq!(m.lock(None), Ok(Acquired::OwnerDied));
    }
}
