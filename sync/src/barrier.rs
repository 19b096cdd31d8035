//! [`Barrier`]: Python's `Barrier(parties, action, timeout)` with `wait`, `abort`,
//! `reset`, `n_waiting` and a broken state.
//!
//! # The word
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0–30 | `gen` | the round: bumped when the last party arrives and the round opens, and by `reset` |
//! | 31 | [`BROKEN`] | `abort`ed, a wait timed out, or an action panicked; every wait fails until `reset` |
//! | 32–47 | `count` | parties arrived in this round |
//!
//! The low half (`gen` and [`BROKEN`]) is the futex word: a waiter sleeps until it
//! changes. An arrival takes its index with one compare-and-swap on the whole
//! word (`count + 1`). The party that makes `count` reach `parties` runs the
//! action, then *opens* the round: one compare-and-swap to `gen + 1, count 0`, and
//! a wake-up of everyone. While a round is opening (`count == parties`), a new
//! arrival belongs to the next round: it waits for the low half to change, then
//! arrives again — as Python's barrier makes arrivals wait while it drains.
//!
//! `reset` starts a new round at once and records the round it cut short in
//! `reset_gen` (with [`VALID`]): that round's waiters fail instead of passing.
//!
//! # Rejected design
//! `count` and `gen` in one 32-bit word (16 + 15 bits): an arrival that came while
//! the last one was between its two compare-and-swaps saw `count == parties` and
//! answered `Corrupted`, and six processes looping on a barrier of three hit it
//! at once; with 15 bits a waiter descheduled for 32 768 rounds of the others took
//! a later round for its own.

use std::time::Duration;

use crate::primitive::{wait_low, wake_low, AtomicU32, AtomicU64, Deadline, Ordering};
use crate::raw_mutex::{deadline_after, owner_check_interval};
use crate::slots::{Seat, Slots};
use crate::{Error, Result};

/// Bits 0–30: the round.
const GEN_MASK: u64 = 0x7fff_ffff;
/// Bit 31: broken until `reset`.
pub(crate) const BROKEN: u64 = 1 << 31;
/// The futex half of the word.
const LOW: u64 = 0xffff_ffff;
/// One arrival.
const ARRIVAL: u64 = 1 << 32;
/// Bits 32–47: parties arrived.
const COUNT_MASK: u64 = 0xffff;
/// Marks `reset_gen` as holding a round.
const VALID: u32 = 1 << 31;

/// The most parties a barrier can have.
pub const MAX_PARTIES: u32 = COUNT_MASK as u32;

fn gen(w: u64) -> u32 {
    (w & GEN_MASK) as u32
}

fn count(w: u64) -> u32 {
    ((w >> 32) & COUNT_MASK) as u32
}

fn broken(w: u64) -> bool {
    w & BROKEN != 0
}

/// The word of a fresh round after `gen`.
fn next_round(gen: u32) -> u64 {
    u64::from(gen.wrapping_add(1)) & GEN_MASK
}

/// A barrier for `parties` threads or processes (Python's `Barrier`).
///
/// Each [`wait`](Barrier::wait) returns the party's arrival index, `0..parties`,
/// different for each party of a round. Any number of threads or processes may
/// use one barrier in turn: rounds form from whoever arrives, and an arrival
/// while a round is opening waits for the next one.
///
/// As in Python, a wait that times out breaks the barrier, and it and every
/// other wait of the round (and every later one, until [`reset`](Barrier::reset))
/// fail with [`Error::BrokenBarrier`]; so do [`abort`](Barrier::abort) and an
/// action that panics. A default timeout can be given at creation
/// ([`with_timeout`](Barrier::with_timeout)); an action, run by the last party of
/// each round before the others go on, with [`with_action`](Barrier::with_action).
///
/// # When a party dies
/// A party that dies before arriving would hang the others forever. Parties that
/// [`join`](Barrier::join) are recorded in participant slots (up to
/// [`SLOTS`](crate::SLOTS)); their waits check the slots every owner check
/// interval, and a member that died without leaving breaks the barrier: every
/// wait fails with [`Error::BrokenBarrier`] instead of hanging. The dead member
/// keeps breaking members' waits until [`reset`](Barrier::reset) forgets it. A
/// plain [`wait`](Barrier::wait) is anonymous and relies on its timeout (or the
/// barrier's default) — so does a wait during the opening of a round whose last
/// party died in its action.
///
/// `#[repr(C)]`, 152 bytes. All-zero bytes are not a barrier (0 parties: every
/// wait answers `Corrupted`); make one with [`Barrier::new`].
///
/// # Examples
/// ```
/// use multiproc_sync::Barrier;
/// let b = Barrier::new(3)?;
/// let mut indices: Vec<u32> = std::thread::scope(|s| {
///     let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait().unwrap())).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]); // each party gets its own arrival index
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Barrier {
    /// `gen | BROKEN | count << 32` (see the module docs).
    word: AtomicU64,
    parties: AtomicU32,
    /// The round a `reset` cut short, `| VALID`; 0 when none.
    reset_gen: AtomicU32,
    /// The default timeout of a wait, in milliseconds; 0 for none.
    timeout_ms: AtomicU64,
    /// Members that joined and have not left.
    members: Slots,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics; impossible values (parties 0, more arrived than
// parties) are detected and reported as Corrupted.
unsafe impl multiproc_shm::ShmSafe for Barrier {}
#[cfg(not(multiproc_loom))]
// SAFETY: every access through `&self` is atomic (or under its own robust
// lock), made to work with other processes doing the same.
unsafe impl multiproc_shm::ShmSync for Barrier {}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Barrier>() == 152);

impl Barrier {
    /// A barrier for `parties` parties (1 to [`MAX_PARTIES`]), without a default
    /// timeout.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for 0 or more than [`MAX_PARTIES`].
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(4)?;
    /// assert_eq!(b.parties(), 4);
    /// assert!(multiproc_sync::Barrier::new(0).is_err());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::OutOfRange {
                what: "a barrier's parties",
                value: u64::from(parties),
                min: 1,
                max: u64::from(MAX_PARTIES),
            });
        }
        Ok(Barrier {
            word: AtomicU64::new(0),
            parties: AtomicU32::new(parties),
            reset_gen: AtomicU32::new(0),
            timeout_ms: AtomicU64::new(0),
            members: Slots::new(),
        })
    }

    /// A barrier whose [`wait`](Barrier::wait) gives up after `timeout`
    /// (Python's `Barrier(parties, timeout=t)`), breaking the barrier. Rounded up
    /// to a whole millisecond.
    ///
    /// # Errors
    /// As for [`new`](Barrier::new).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Barrier, Error};
    /// let b = Barrier::with_timeout(2, Duration::from_millis(5))?;
    /// assert!(matches!(b.wait(), Err(Error::BrokenBarrier))); // nobody else came
    /// assert!(b.broken());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn with_timeout(parties: u32, timeout: Duration) -> Result<Barrier> {
        let b = Barrier::new(parties)?;
        let ms = timeout.as_nanos().div_ceil(1_000_000).max(1);
        b.timeout_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(b)
    }

    /// The number of parties.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Barrier::new(2)?.parties(), 2);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed)
    }

    /// The default timeout of [`wait`](Barrier::wait), if one was given.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let b = multiproc_sync::Barrier::with_timeout(2, Duration::from_secs(1))?;
    /// assert_eq!(b.timeout(), Some(Duration::from_secs(1)));
    /// assert_eq!(multiproc_sync::Barrier::new(2)?.timeout(), None);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        match self.timeout_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Parties waiting in this round (Python's `n_waiting`): 0 while the barrier
    /// is broken or a round is opening.
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(2)?;
    /// assert_eq!(b.n_waiting(), 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        let w = self.word.load(Ordering::Relaxed);
        let n = count(w);
        if broken(w) || n >= self.parties() {
            0
        } else {
            n
        }
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(2)?;
    /// b.abort();
    /// assert!(b.broken());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn broken(&self) -> bool {
        broken(self.word.load(Ordering::Relaxed))
    }

    /// Waits until all parties have arrived, or the default timeout passes;
    /// returns this party's arrival index, `0..parties`, different for each.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken, is reset
    /// while waiting, or the default timeout passes (which breaks it for the
    /// others too, as in Python); [`Error::Corrupted`] when the shared state is
    /// impossible.
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// assert_eq!(b.wait()?, 0); // one party: passes at once
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait(&self) -> Result<u32> {
        self.wait_inner(self.timeout(), false, None)
    }

    /// [`wait`](Barrier::wait), giving up after `timeout` instead of the default.
    ///
    /// # Errors
    /// As for [`wait`](Barrier::wait): past `timeout`, [`Error::BrokenBarrier`]
    /// here and in every other wait of the round.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let b = multiproc_sync::Barrier::new(2)?;
    /// assert!(b.wait_timeout(Duration::from_millis(1)).is_err());
    /// assert!(b.broken());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_inner(Some(timeout), false, None)
    }

    /// A handle on this barrier whose waits run `action` when this party is the
    /// last of its round, before the others go on (Python's `action`). The action
    /// is a closure of this process: give every party the same one to have
    /// Python's meaning (whichever arrives last runs it, once per round). An
    /// action that panics breaks the barrier, and the panic goes on in its party.
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let b = multiproc_sync::Barrier::new(2)?;
    /// let rounds = AtomicU32::new(0);
    /// let count = || { rounds.fetch_add(1, Ordering::SeqCst); };
    /// std::thread::scope(|s| {
    ///     s.spawn(|| b.with_action(count).wait().unwrap());
    ///     b.with_action(count).wait().unwrap();
    /// });
    /// assert_eq!(rounds.load(Ordering::SeqCst), 1); // once for the round
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn with_action<F: Fn()>(&self, action: F) -> WithAction<'_, F> {
        WithAction {
            barrier: self,
            member: false,
            action,
        }
    }

    /// Registers this process as a member: if it dies without dropping the returned
    /// [`BarrierMember`], members waiting at the barrier see it broken.
    ///
    /// # Errors
    /// [`Error::Full`] when [`SLOTS`](crate::SLOTS) members are registered already.
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// let me = b.join()?;
    /// assert_eq!(me.wait()?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn join(&self) -> Result<BarrierMember<'_>> {
        Ok(BarrierMember {
            barrier: self,
            _seat: self.members.take_seat_or_full()?,
        })
    }

    fn wait_inner(
        &self,
        timeout: Option<Duration>,
        check_members: bool,
        action: Option<&dyn Fn()>,
    ) -> Result<u32> {
        let parties = self.parties();
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::Corrupted {
                what: "a barrier's parties",
                value: u64::from(parties),
            });
        }
        let deadline = deadline_after(timeout);
        let (index, gen) = self.arrive(parties, deadline.as_ref(), check_members)?;
        if index + 1 == parties {
            self.open(parties, gen, action)?;
            return Ok(index);
        }
        loop {
            // SYNC: Acquire pairs with the Release in `open`/`reset`.
            let cur = self.word.load(Ordering::Acquire);
            // The round first: one that opened before an abort has passed.
            if self::gen(cur) != gen {
                return if self.reset_gen.load(Ordering::Acquire) == gen | VALID {
                    Err(Error::BrokenBarrier)
                } else {
                    Ok(index)
                };
            }
            if broken(cur) {
                return Err(Error::BrokenBarrier);
            }
            self.sleep(cur, deadline.as_ref(), check_members)?;
        }
    }

    /// Counts this party in: its index and round. An arrival while the last
    /// round is opening waits for it to open first.
    fn arrive(
        &self,
        parties: u32,
        deadline: Option<&Deadline>,
        check_members: bool,
    ) -> Result<(u32, u32)> {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if broken(w) {
                return Err(Error::BrokenBarrier);
            }
            let arrived = count(w);
            if arrived > parties {
                return Err(Error::Corrupted {
                    what: "the parties arrived at a barrier",
                    value: u64::from(arrived),
                });
            }
            if arrived == parties {
                // The round is opening: this arrival is for the next one.
                self.sleep(w, deadline, check_members)?;
                w = self.word.load(Ordering::Acquire);
                continue;
            }
            // SYNC: AcqRel: each arrival sees the writes of those before it.
            match self.word.compare_exchange_weak(
                w,
                w + ARRIVAL,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok((arrived, gen(w))),
                Err(now) => w = now,
            }
        }
    }

    /// Sleeps while the word's low half is as in `w`, at most one check interval
    /// (members) or until `deadline`: past the deadline, or when a member died,
    /// breaks the barrier and answers [`Error::BrokenBarrier`].
    fn sleep(&self, w: u64, deadline: Option<&Deadline>, check_members: bool) -> Result<()> {
        let check_at = check_members
            .then(|| Deadline::after(owner_check_interval()))
            .flatten();
        let until = Deadline::earliest(deadline.copied(), check_at);
        let woke = wait_low(&self.word, (w & LOW) as u32, until.as_ref());
        // A round that opened (or broke) while this waiter slept counts, even
        // if the one who opened it died before its wake-up came.
        // SYNC: Acquire pairs with the Release in `open`/`reset`.
        let changed = self.word.load(Ordering::Acquire) & LOW != w & LOW;
        let given_up = !woke
            && !changed
            && (deadline.is_some_and(Deadline::passed)
                || (check_members && self.members.any_dead()));
        if given_up {
            self.abort();
            return Err(Error::BrokenBarrier);
        }
        Ok(())
    }

    /// The last party arrived: run the action, start the next round and wake
    /// everyone.
    fn open(&self, parties: u32, gen: u32, action: Option<&dyn Fn()>) -> Result<()> {
        if let Some(action) = action {
            // Breaks the barrier if the action unwinds (Python: an action that
            // raises breaks it).
            struct BreakOnUnwind<'a>(&'a Barrier);
            impl Drop for BreakOnUnwind<'_> {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }
            let guard = BreakOnUnwind(self);
            action();
            std::mem::forget(guard);
        }
        let next = next_round(gen);
        // A reset of the next round's number, 2³¹ rounds ago, must not fail that
        // round's waiters.
        let _ = self.reset_gen.compare_exchange(
            next as u32 | VALID,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let full = u64::from(gen) | (u64::from(parties) << 32);
        // SYNC: Release pairs with the waiters' Acquire load of the word.
        let r = self
            .word
            .compare_exchange(full, next, Ordering::Release, Ordering::Relaxed);
        wake_low(&self.word, u32::MAX);
        r.map(drop).map_err(|_| Error::BrokenBarrier)
    }

    /// Breaks the barrier: current and future waits fail with
    /// [`Error::BrokenBarrier`] until [`reset`](Barrier::reset).
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(2)?;
    /// b.abort();
    /// assert!(matches!(b.wait(), Err(multiproc_sync::Error::BrokenBarrier)));
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn abort(&self) {
        self.word.fetch_or(BROKEN, Ordering::AcqRel);
        wake_low(&self.word, u32::MAX);
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now fail
    /// with [`Error::BrokenBarrier`]. It also forgets the members that died
    /// without leaving (see "When a party dies"): until then each of them breaks
    /// every member's wait, so after a death the survivors reset the barrier
    /// (and let a replacement [`join`](Barrier::join)) to carry on.
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(2)?;
    /// b.abort();
    /// assert!(b.wait().is_err());
    /// b.reset();
    /// assert!(!b.broken());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn reset(&self) {
        // First, so that no wait of the new round sees a death from before.
        self.members.forget_dead();
        let w = self.word.load(Ordering::Acquire);
        self.reset_gen.store(gen(w) | VALID, Ordering::Release);
        // SYNC: Release pairs with the waiters' Acquire load of the word.
        self.word.store(next_round(gen(w)), Ordering::Release);
        wake_low(&self.word, u32::MAX);
    }
}

/// A registered party of a [`Barrier`] (see [`Barrier::join`]); leaves on drop.
pub struct BarrierMember<'a> {
    barrier: &'a Barrier,
    /// Leaves the member list on drop.
    _seat: Seat<'a>,
}

impl<'a> BarrierMember<'a> {
    /// [`Barrier::wait`], also watching the other members: one that died without
    /// leaving breaks the barrier ([`Error::BrokenBarrier`]).
    ///
    /// # Errors
    /// As for [`Barrier::wait`].
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// let me = b.join()?;
    /// assert_eq!(me.wait()?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait(&self) -> Result<u32> {
        self.barrier.wait_inner(self.barrier.timeout(), true, None)
    }

    /// [`wait`](BarrierMember::wait), giving up after `timeout`.
    ///
    /// # Errors
    /// As for [`Barrier::wait_timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// assert_eq!(b.join()?.wait_timeout(Duration::from_secs(1))?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.barrier.wait_inner(Some(timeout), true, None)
    }

    /// [`Barrier::with_action`] for this member.
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// let me = b.join()?;
    /// let ran = std::cell::Cell::new(false);
    /// me.with_action(|| ran.set(true)).wait()?;
    /// assert!(ran.get());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn with_action<F: Fn()>(&self, action: F) -> WithAction<'a, F> {
        WithAction {
            barrier: self.barrier,
            member: true,
            action,
        }
    }
}

/// A [`Barrier`] (or member) whose waits run an action when last (see
/// [`Barrier::with_action`]).
pub struct WithAction<'a, F> {
    barrier: &'a Barrier,
    member: bool,
    action: F,
}

impl<F: Fn()> WithAction<'_, F> {
    /// [`Barrier::wait`], running the action if this party is the last.
    ///
    /// # Errors
    /// As for [`Barrier::wait`].
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// assert_eq!(b.with_action(|| println!("all here")).wait()?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait(&self) -> Result<u32> {
        self.barrier
            .wait_inner(self.barrier.timeout(), self.member, Some(&self.action))
    }

    /// [`Barrier::wait_timeout`], running the action if this party is the last.
    ///
    /// # Errors
    /// As for [`Barrier::wait_timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// assert_eq!(b.with_action(|| ()).wait_timeout(Duration::from_secs(1))?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.barrier
            .wait_inner(Some(timeout), self.member, Some(&self.action))
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn garbage_counts_are_corrupted_not_a_hang() {
        let b = Barrier::new(3).unwrap();
        b.word.store(4 << 32, Ordering::Relaxed);
        assert!(matches!(
            b.wait_timeout(Duration::from_secs(5)),
            Err(Error::Corrupted { .. })
        ));
        b.parties.store(0, Ordering::Relaxed);
        assert!(matches!(b.wait(), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn an_arrival_while_a_round_opens_waits_for_the_next_round() {
        let b = Barrier::new(2).unwrap();
        // As the last party leaves it between its two compare-and-swaps.
        b.word.store(2 << 32 | 5, Ordering::Relaxed);
        assert_eq!(b.n_waiting(), 0);
        std::thread::scope(|s| {
            let late = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(count(b.word.load(Ordering::Relaxed)), 2, "it waits");
            // The opening ends: round 6 starts empty.
            b.word.store(6, Ordering::Relaxed);
            wake_low(&b.word, u32::MAX);
            while b.n_waiting() == 0 {
                std::thread::yield_now();
            }
            assert_eq!(b.wait_timeout(Duration::from_secs(10)).unwrap(), 1);
            assert_eq!(late.join().unwrap().unwrap(), 0);
        });
    }
}
