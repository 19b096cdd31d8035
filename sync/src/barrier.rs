//! [`Barrier`]: Python's `Barrier(parties)` with `wait(timeout)`, `abort`, `reset`
//! and a broken state.

use std::time::Duration;

use crate::primitive::{wait, wake, AtomicU32, Deadline, Ordering};
use crate::raw_mutex::{deadline_after, owner_check_interval};
use crate::slots::{Seat, Slots};
use crate::{Error, Result};

/// Bits 0–15 of the word: parties arrived in the current generation.
const COUNT_MASK: u32 = 0xffff;
/// Bits 16–30: the generation, bumped each time the barrier opens or is reset.
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x7fff;
/// Bit 31: broken (aborted, or a party timed out) until `reset`.
const BROKEN: u32 = 1 << 31;
/// Marks `reset_gen` as holding a generation.
const VALID: u32 = 1 << 31;

/// The most parties a barrier can have.
pub const MAX_PARTIES: u32 = COUNT_MASK;

/// A barrier for `parties` threads or processes.
///
/// # The word
///
/// | bits | meaning |
/// |---|---|
/// | 0–15 | parties arrived in this generation |
/// | 16–30 | generation: bumped when the last party arrives (or on `reset`) |
/// | 31 | broken: `abort`ed or a party timed out; waits fail until `reset` |
///
/// Waiters sleep on the word until the generation changes. `reset` records the
/// generation it cut short in `reset_gen`, so its waiters fail instead of passing.
///
/// # When a party dies
/// A party that dies before arriving would hang the others forever. Parties that
/// [`join`](Barrier::join) are recorded in participant slots (up to
/// [`SLOTS`](crate::SLOTS)); their waiters check the slots every owner check
/// interval, and a member that died without leaving breaks the barrier:
/// everyone waiting gets [`Error::BrokenBarrier`] instead of hanging. The dead
/// member keeps breaking members' waits until [`reset`](Barrier::reset) forgets
/// it. Plain [`wait`](Barrier::wait) is anonymous and relies on its timeout.
///
/// `#[repr(C)]`, 144 bytes.
///
/// # Examples
/// ```
/// use multiproc_sync::Barrier;
/// let b = Barrier::new(3)?;
/// let mut indices: Vec<u32> = std::thread::scope(|s| {
///     let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait(None).unwrap())).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]); // each party gets its own arrival index
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Barrier {
    word: AtomicU32,
    parties: AtomicU32,
    reset_gen: AtomicU32,
    reserved: AtomicU32,
    /// Members that joined and have not left.
    members: Slots,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics; impossible values (parties 0, too many arrived)
// are detected and reported as Corrupted.
unsafe impl multiproc_shm::ShmSafe for Barrier {}

impl Barrier {
    /// A barrier for `parties` parties (1 to [`MAX_PARTIES`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 or more than [`MAX_PARTIES`].
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
            return Err(Error::InvalidArgument(format!(
                "a barrier needs 1 to {MAX_PARTIES} parties, not {parties}"
            )));
        }
        Ok(Barrier {
            word: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            reset_gen: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            members: Slots::new(),
        })
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

    /// Parties waiting now (Python's `n_waiting`).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Barrier::new(2)?.n_waiting(), 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn n_waiting(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & COUNT_MASK
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
        self.word.load(Ordering::Relaxed) & BROKEN != 0
    }

    /// Waits until all parties have arrived; returns this party's arrival index,
    /// `0..parties`, different for each.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken or is reset while
    /// waiting; [`Error::Timeout`] when `timeout` passes — which also breaks the
    /// barrier for the others, as in Python; [`Error::Corrupted`] when the shared
    /// state is impossible.
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(1)?;
    /// assert_eq!(b.wait(None)?, 0); // one party: passes at once
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        self.wait_checking(timeout, false)
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
    /// assert_eq!(me.wait(None)?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn join(&self) -> Result<BarrierMember<'_>> {
        Ok(BarrierMember {
            barrier: self,
            _seat: self.members.take_seat_or_full()?,
        })
    }

    fn wait_checking(&self, timeout: Option<Duration>, check_members: bool) -> Result<u32> {
        let parties = self.parties();
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::Corrupted(format!("barrier has {parties} parties")));
        }
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if w & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            if w & COUNT_MASK >= parties {
                return Err(Error::Corrupted(format!(
                    "{} parties arrived at a barrier for {parties}",
                    w & COUNT_MASK
                )));
            }
            // SYNC: AcqRel: each arrival sees the writes of those before it.
            match self
                .word
                .compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        let index = w & COUNT_MASK;
        let gen = (w >> GEN_SHIFT) & GEN_MASK;
        if index + 1 == parties {
            return self.open(w + 1, gen).map(|()| index);
        }
        let deadline = deadline_after(timeout);
        loop {
            // SYNC: Acquire pairs with the Release in `open`/`reset`.
            let cur = self.word.load(Ordering::Acquire);
            if (cur >> GEN_SHIFT) & GEN_MASK != gen {
                return if self.reset_gen.load(Ordering::Acquire) == gen | VALID {
                    Err(Error::BrokenBarrier)
                } else {
                    Ok(index)
                };
            }
            if cur & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            let check_at = check_members
                .then(|| Deadline::after(owner_check_interval()))
                .flatten();
            if !wait(
                &self.word,
                cur,
                Deadline::earliest(deadline, check_at).as_ref(),
            ) {
                if deadline.as_ref().is_some_and(Deadline::passed) {
                    self.abort();
                    return Err(Error::Timeout);
                }
                if self.members.any_dead() {
                    self.abort();
                    return Err(Error::BrokenBarrier);
                }
            }
        }
    }

    /// The last party arrived: start the next generation and wake everyone.
    fn open(&self, full: u32, gen: u32) -> Result<()> {
        let next = ((gen + 1) & GEN_MASK) << GEN_SHIFT;
        // A reset of the next generation's number, 32768 generations ago, must not
        // fail that generation's waiters.
        let _ = self.reset_gen.compare_exchange(
            (next >> GEN_SHIFT) | VALID,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        // SYNC: Release pairs with the waiters' Acquire load of the word.
        let r = self
            .word
            .compare_exchange(full, next, Ordering::Release, Ordering::Relaxed);
        wake(&self.word, u32::MAX);
        r.map(drop).map_err(|_| Error::BrokenBarrier)
    }

    /// Breaks the barrier: current and future waits fail with
    /// [`Error::BrokenBarrier`] until [`reset`](Barrier::reset).
    ///
    /// # Examples
    /// ```
    /// let b = multiproc_sync::Barrier::new(2)?;
    /// b.abort();
    /// assert!(matches!(b.wait(None), Err(multiproc_sync::Error::BrokenBarrier)));
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn abort(&self) {
        self.word.fetch_or(BROKEN, Ordering::AcqRel);
        wake(&self.word, u32::MAX);
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
    /// assert!(b.wait(None).is_err());
    /// b.reset();
    /// assert!(!b.broken());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn reset(&self) {
        // First, so that no wait of the new generation sees a death from before.
        self.members.forget_dead();
        let w = self.word.load(Ordering::Acquire);
        let gen = (w >> GEN_SHIFT) & GEN_MASK;
        self.reset_gen.store(gen | VALID, Ordering::Release);
        // SYNC: Release pairs with the waiters' Acquire load of the word.
        self.word
            .store(((gen + 1) & GEN_MASK) << GEN_SHIFT, Ordering::Release);
        wake(&self.word, u32::MAX);
    }
}

/// A registered party of a [`Barrier`] (see [`Barrier::join`]); leaves on drop.
pub struct BarrierMember<'a> {
    barrier: &'a Barrier,
    /// Leaves the member list on drop.
    _seat: Seat<'a>,
}

impl BarrierMember<'_> {
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
    /// assert_eq!(me.wait(None)?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> Result<u32> {
        self.barrier.wait_checking(timeout, true)
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
