//! [`Semaphore`] and its bounded form: Python's `Semaphore` / `BoundedSemaphore`.
//!
//! # The state word
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0–31 | count | permits free now; the futex word waiters sleep on |
//! | 32–62 | seat | the owned-permit step in flight: seat `i` + 1, or 0 for none |
//! | 63 | [`RELEASING`] | that step gives a permit back (clear: it takes one) |
//!
//! Beside it, [`SLOTS`](crate::SLOTS) seats record who holds an owned permit:
//!
//! | seat value | meaning |
//! |---|---|
//! | 0 | free |
//! | a process record | that process is taking a permit (only under the ledger) |
//! | record \| [`HOLDING`] | that process holds a permit; it is given back if the process dies |
//!
//! # Transitions
//!
//! | operation | steps (each a single atomic write) | under the ledger |
//! |---|---|---|
//! | `acquire` | count − 1 (CAS while count > 0) | no |
//! | `release(n)` | count + n (CAS, refused past the bound) | no |
//! | `acquire_owned` | seat 0 → record; CAS count − 1 *and* seat tag := `i` + 1; seat → record \| HOLDING; tag := 0 | yes |
//! | owned release | CAS count + 1 *and* tag := (`i` + 1) \| RELEASING; seat → 0; tag := 0 | yes |
//! | the dead's permits | for each seat HOLDING a dead record: the owned release, on its behalf | yes |
//!
//! The ledger is a robust [`RawMutex`]. Its next holder after a death first
//! finishes what the state word's tag names (`finish_step`): a permit taken for
//! seat `i` marks it HOLDING; a permit given back frees it. Then it frees every
//! seat holding a bare record (taken, no permit). So a process killed between
//! any two steps neither loses its permit nor has it returned twice: the one
//! write that moves the count also says which seat it was for.
//!
//! # Memory ordering
//! `SYNC:` pairs: a taker's Acquire CAS on the state pairs with a releaser's
//! Release (or SeqCst) CAS, so what the releaser wrote before is seen by the
//! taker. Sleeping: a waiter counts itself in `sleepers` (SeqCst) before the
//! futex reads the count; a releaser adds to the count (SeqCst) before it reads
//! `sleepers`: either the releaser sees the sleeper and wakes it, or the sleeper
//! sees the permit. Seats are read and written under the ledger only (Relaxed),
//! except by `give_back`'s CAS of a holder's own seat when the ledger is
//! unusable.

use std::time::Duration;

use crate::primitive::{
    current_process, process_alive, wait_low, wake_low, AtomicU32, AtomicU64, Deadline, Ordering,
};
use crate::raw_mutex::{deadline_after, Acquired, RawMutex};
use crate::sleepers::Sleepers;
use crate::slots::Slots;
use crate::{Error, Result};

/// A counting semaphore, process-shared.
///
/// The count is the futex word (the low half of a 64-bit state word); a count of
/// sleepers lets `release` skip the wake-up syscall when nobody sleeps, and
/// forgets a sleeper killed asleep within about a second (so `release` does
/// not pay a syscall for the dead from then on). Its bounded form,
/// [`BoundedSemaphore`], refuses a `release` that would take the count above
/// its initial value.
///
/// # When a holder dies
/// A semaphore has no owner: one process may release what another acquired, and
/// signalling that way is common. So plain [`acquire`](Semaphore::acquire) /
/// [`release`](Semaphore::release) permits are not tracked, and a waiter relies on
/// its timeout. Permits taken with [`acquire_owned`](Semaphore::acquire_owned) are
/// used like a lock: each is recorded in a seat (up to [`SLOTS`](crate::SLOTS)
/// at once) and given back by its guard; when its holder dies, a waiter notices
/// within the owner check interval and returns it. A holder killed at any
/// instruction of taking or giving back an owned permit neither loses it nor
/// has it returned twice: owned steps take a small robust lock (the ledger),
/// and the compare-and-swap that moves the count also names the seat in the
/// state word, so the next ledger holder, finishing the step for the dead,
/// knows whether the count moved. Plain `acquire`/`release` never take the
/// ledger and leave that name alone.
///
/// `#[repr(C)]`, 176 bytes. All-zero bytes are a semaphore with count 0.
///
/// # Examples
/// ```
/// use multiproc_sync::Semaphore;
/// let s = Semaphore::new(2);
/// s.try_acquire()?;
/// s.acquire();
/// assert!(s.try_acquire().is_err());
/// s.release(3)?; // no bound: Python's Semaphore
/// assert_eq!(s.value(), 3);
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Semaphore {
    /// Low half: the count, which is the futex word. High half: the owned-permit
    /// step in flight, naming its seat ([`acquiring`], [`releasing`]), or 0.
    state: AtomicU64,
    sleepers: Sleepers,
    /// The largest value a release may make, when `flags` has [`BOUNDED`].
    bound: AtomicU32,
    /// [`BOUNDED`], or 0.
    flags: AtomicU32,
    /// Held for each owned-permit step (a few instructions; never while
    /// sleeping for a permit). Robust: a holder killed in a step leaves its
    /// seat named in `state`, and the next holder finishes the step.
    ledger: RawMutex,
    /// Holders of owned permits: 0 when free; a process record while that
    /// process takes a permit (only under `ledger`); record | [`HOLDING`] once
    /// it holds one.
    seats: Slots,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics and a RawMutex (valid for every bit pattern);
// every value is handled (a count is a count, a garbage seat or step is cleared).
unsafe impl multiproc_shm::ShmSafe for Semaphore {}
#[cfg(not(multiproc_loom))]
// SAFETY: every access through `&self` is atomic (or under its own robust
// lock), made to work with other processes doing the same.
unsafe impl multiproc_shm::ShmSync for Semaphore {}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Semaphore>() == 176);

/// `flags` bit: `bound` limits releases (a [`BoundedSemaphore`]).
const BOUNDED: u32 = 1;

/// How long a call that is out of time (a `try_` form, a zero timeout, a
/// deadline just passed) waits for the ledger before giving up on its last
/// look: the ledger is held for a few atomic steps, so a holder that keeps it
/// longer is descheduled or dead. The ledger's timed lock looks at its holder
/// once when this runs out, so a dead holder is still taken over.
const LEDGER_PATIENCE: Duration = Duration::from_micros(200);

/// A seat's mark for a permit held. Process records never set the top two bits
/// (a pid is at most 2^22), so the mark cannot be mistaken for part of one.
const HOLDING: u64 = 1 << 63;
/// The step-in-flight half of `state` when the step gave a permit back.
const RELEASING: u32 = 1 << 31;

/// The step-in-flight tag of an owned acquire that took a permit for seat `i`.
fn acquiring(i: usize) -> u32 {
    i as u32 + 1
}

/// The step-in-flight tag of an owned release that gave seat `i`'s permit back.
fn releasing(i: usize) -> u32 {
    acquiring(i) | RELEASING
}

fn count(state: u64) -> u32 {
    state as u32
}

fn tag(state: u64) -> u32 {
    (state >> 32) as u32
}

fn state_of(tag: u32, count: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(count)
}

/// Steps of an owned acquire or release, named for the fault tests, which kill a
/// holder right after one (see `hook_acquire_owned_with_hook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub enum OwnedStep {
    /// A seat is taken, no permit yet.
    SeatTaken,
    /// The permit is taken and the seat named in the state word.
    PermitTaken,
    /// The seat is marked as holding; the state word still names it.
    SeatMarked,
    /// The permit is given back and the seat named in the state word.
    PermitReturned,
    /// The seat is freed; the state word still names it.
    SeatFreed,
}

/// What one owned-acquire attempt found.
enum Owned {
    /// A permit, recorded in this seat.
    Taken(usize),
    /// No permit free now (the seat was given back).
    Empty,
    /// No seat free, or the ledger unusable: the caller takes an untracked permit.
    Untracked,
    /// The deadline passed while waiting for the ledger.
    TimedOut,
}

impl Semaphore {
    /// A semaphore with `value` permits (Python's `Semaphore(value)`).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Semaphore::new(3).value(), 3);
    /// ```
    pub fn new(value: u32) -> Semaphore {
        Semaphore::with_bound(value, None)
    }

    fn with_bound(value: u32, bound: Option<u32>) -> Semaphore {
        Semaphore {
            state: AtomicU64::new(u64::from(value)),
            sleepers: Sleepers::new(),
            bound: AtomicU32::new(bound.unwrap_or(0)),
            flags: AtomicU32::new(if bound.is_some() { BOUNDED } else { 0 }),
            ledger: RawMutex::new(),
            seats: Slots::new(),
        }
    }

    /// Takes a permit if one is free now (Python's `acquire(block=False)`).
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when none is free.
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::{Error, Semaphore};
    /// let s = Semaphore::new(1);
    /// s.try_acquire()?;
    /// assert!(matches!(s.try_acquire(), Err(Error::WouldBlock)));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<()> {
        if self.take() {
            Ok(())
        } else {
            Err(Error::WouldBlock)
        }
    }

    /// Takes a permit, waiting as long as it takes (Python's `acquire()`).
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_sync::Semaphore::new(1);
    /// s.acquire();
    /// assert_eq!(s.value(), 0);
    /// ```
    pub fn acquire(&self) {
        if !self.take() {
            self.acquire_until(None);
        }
    }

    /// Takes a permit, waiting at most `timeout` (Python's `acquire(timeout=t)`).
    ///
    /// # Errors
    /// [`Error::Timeout`] when `timeout` passed first.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Error, Semaphore};
    /// let s = Semaphore::new(0);
    /// assert!(matches!(s.acquire_timeout(Duration::from_millis(5)), Err(Error::Timeout)));
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        if self.take() || self.acquire_until(deadline_after(Some(timeout))) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// Takes a permit if one is free: the fast path of every acquire.
    #[inline]
    fn take(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        while count(s) > 0 {
            // The count is the low half and above 0: `s - 1` leaves the tag alone.
            // SYNC: Acquire pairs with the Release in `release`.
            match self
                .state
                .compare_exchange_weak(s, s - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// `acquire` with a deadline.
    fn acquire_until(&self, deadline: Option<Deadline>) -> bool {
        loop {
            if self.take() {
                return true;
            }
            if !self.sleep_while_empty(deadline) {
                return self.take();
            }
        }
    }

    /// Sleeps while no permit is free, until woken, `deadline` or the owner check
    /// interval (after which it gives back the permits of dead holders);
    /// `false` once `deadline` passed.
    fn sleep_while_empty(&self, deadline: Option<Deadline>) -> bool {
        // SYNC: SeqCst orders this increment before the futex's read of the
        // count, against `release`'s SeqCst add then read of `sleepers`: either
        // the releaser sees us, or we see its permit.
        let woke = self
            .sleepers
            .sleep(deadline, |d| wait_low(&self.state, 0, d));
        if !woke {
            // Also when the deadline passed: callers that only ever wait a
            // little (less than a check interval) must still get the permits
            // of the dead back.
            self.return_permits_of_the_dead();
            if deadline.as_ref().is_some_and(Deadline::passed) {
                return false;
            }
        }
        true
    }

    /// Takes a permit like a lock, waiting as long as it takes: the returned
    /// guard gives it back on drop, and if this process dies holding it, a
    /// waiter gives it back for it.
    ///
    /// Past [`SLOTS`](crate::SLOTS) owned permits at once the extra ones work,
    /// but are not returned if their holder dies.
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_sync::Semaphore::new(1);
    /// let permit = s.acquire_owned();
    /// assert_eq!(s.value(), 0);
    /// drop(permit);
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn acquire_owned(&self) -> SemaphoreGuard<'_> {
        loop {
            if let Some(g) = self.acquire_owned_stepping(None, &|_| {}) {
                return g;
            }
        }
    }

    /// [`acquire_owned`](Semaphore::acquire_owned) if a permit is free now.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when none is free (or another process is in the
    /// middle of recording its own owned permit and does not finish within
    /// 200 µs).
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::{Error, Semaphore};
    /// let s = Semaphore::new(1);
    /// let permit = s.try_acquire_owned()?;
    /// assert!(matches!(s.try_acquire_owned(), Err(Error::WouldBlock)));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn try_acquire_owned(&self) -> Result<SemaphoreGuard<'_>> {
        self.acquire_owned_stepping(Some(Duration::ZERO), &|_| {})
            .ok_or(Error::WouldBlock)
    }

    /// [`acquire_owned`](Semaphore::acquire_owned), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] when `timeout` passed first.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Error, Semaphore};
    /// let s = Semaphore::new(1);
    /// let permit = s.acquire_owned_timeout(Duration::from_secs(1))?;
    /// assert!(matches!(
    ///     s.acquire_owned_timeout(Duration::from_millis(5)),
    ///     Err(Error::Timeout)
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn acquire_owned_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>> {
        self.acquire_owned_stepping(Some(timeout), &|_| {})
            .ok_or(Error::Timeout)
    }

    /// `acquire_owned`, calling `step` after each step (the fault tests' hook).
    #[inline(always)]
    fn acquire_owned_stepping(
        &self,
        timeout: Option<Duration>,
        step: &dyn Fn(OwnedStep),
    ) -> Option<SemaphoreGuard<'_>> {
        let deadline = deadline_after(timeout);
        let guard = |permit| SemaphoreGuard { sem: self, permit };
        // After the deadline (at once, for a zero timeout), one last try, as
        // `acquire` makes, waiting for the ledger at most `LEDGER_PATIENCE`.
        let mut last = false;
        loop {
            let until = if last {
                Deadline::after(LEDGER_PATIENCE)
            } else {
                deadline
            };
            match self.take_owned(until, step) {
                Owned::Taken(i) => return Some(guard(Permit::Seat(i))),
                Owned::Untracked if last => return self.take().then(|| guard(Permit::Untracked)),
                Owned::Untracked => {
                    return self
                        .acquire_until(deadline)
                        .then(|| guard(Permit::Untracked))
                }
                Owned::TimedOut => return None,
                Owned::Empty if last => return None,
                Owned::Empty => {}
            }
            last = !self.sleep_while_empty(deadline);
        }
    }

    /// One attempt at an owned permit, under the ledger: take a free seat
    /// (recording this process), then in one compare-and-swap take a permit and
    /// name the seat in the state word ([`acquiring`]), then mark the seat
    /// [`HOLDING`], then clear the name. A holder killed after any of these
    /// leaves what the next ledger holder needs to finish or undo it: a seat
    /// without the mark that the state word does not name got no permit.
    fn take_owned(&self, deadline: Option<Deadline>, step: &dyn Fn(OwnedStep)) -> Owned {
        let Some(_ledger) = self.lock_ledger(deadline) else {
            return if deadline.as_ref().is_some_and(Deadline::passed) {
                Owned::TimedOut
            } else {
                Owned::Untracked
            };
        };
        let me = current_process() & !HOLDING;
        let Some(i) = self.seats.claim(me) else {
            return Owned::Untracked;
        };
        step(OwnedStep::SeatTaken);
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if count(s) == 0 {
                self.seats.records()[i].store(0, Ordering::Relaxed);
                return Owned::Empty;
            }
            // SYNC: Acquire pairs with the Release in `release`, as in `take`.
            match self.state.compare_exchange_weak(
                s,
                state_of(acquiring(i), count(s) - 1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        step(OwnedStep::PermitTaken);
        self.seats.records()[i].store(me | HOLDING, Ordering::Relaxed);
        step(OwnedStep::SeatMarked);
        self.clear_step();
        Owned::Taken(i)
    }

    /// Gives back the permit of seat `i` and frees the seat, under the ledger,
    /// mirroring `take_owned`: one compare-and-swap returns the permit and names
    /// the seat ([`releasing`]), then the seat is freed, then the name cleared.
    /// Nothing is returned when the seat no longer holds `holder` (a waiter
    /// judged its holder dead and returned the permit already).
    fn give_back(&self, i: usize, holder: Option<u64>, step: &dyn Fn(OwnedStep)) -> u32 {
        let seat = self.seats.records()[i].load(Ordering::Relaxed);
        if seat & HOLDING == 0 || holder.is_some_and(|h| h != seat) {
            return 0;
        }
        let limit = self.limit();
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if count(s) >= limit {
                // Only a peer's garbage gets here: this permit was counted out of
                // the bound. Free the seat without passing the bound.
                self.seats.records()[i].store(0, Ordering::Relaxed);
                return 0;
            }
            // SYNC: Release pairs with the Acquire of the next taker, as in release.
            match self.state.compare_exchange_weak(
                s,
                state_of(releasing(i), count(s) + 1),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        step(OwnedStep::PermitReturned);
        self.seats.records()[i].store(0, Ordering::Relaxed);
        step(OwnedStep::SeatFreed);
        self.clear_step();
        1
    }

    /// Clears the step-in-flight half of the state word, keeping the count.
    fn clear_step(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        while tag(s) != 0 {
            match self.state.compare_exchange_weak(
                s,
                state_of(0, count(s)),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    /// Takes the ledger, waiting until `deadline`, and finishes whatever owned
    /// step a holder killed in it left (`None` on timeout, or when the ledger is
    /// unusable: a peer wrote garbage over it).
    fn lock_ledger(&self, deadline: Option<Deadline>) -> Option<Ledger<'_>> {
        let died = match self.ledger.lock(deadline.as_ref()) {
            Ok(Acquired::Clean) => false,
            Ok(Acquired::OwnerDied) => true,
            Err(_) => return None,
        };
        let ledger = Ledger(&self.ledger);
        self.finish_step();
        if died {
            // A seat taken without a permit by the dead holder (the state word
            // named none, or `finish_step` has marked it): free it.
            for seat in self.seats.records() {
                let s = seat.load(Ordering::Relaxed);
                if s != 0 && s & HOLDING == 0 {
                    seat.store(0, Ordering::Relaxed);
                }
            }
            // SAFETY: we hold the ledger; the seats and the state word are
            // consistent again.
            unsafe { self.ledger.mark_consistent() };
        }
        Some(ledger)
    }

    /// Finishes the owned step the state word names, if any (its taker died, or
    /// a peer wrote the name): a permit taken for seat `i` marks the seat
    /// holding; a permit given back for it frees the seat. Under the ledger.
    fn finish_step(&self) {
        let t = tag(self.state.load(Ordering::Acquire));
        if t == 0 {
            return;
        }
        let i = (t & !RELEASING) as usize;
        if let Some(seat) = i.checked_sub(1).and_then(|i| self.seats.records().get(i)) {
            let s = seat.load(Ordering::Relaxed);
            if t & RELEASING != 0 {
                seat.store(0, Ordering::Relaxed);
            } else if s != 0 {
                seat.store(s | HOLDING, Ordering::Relaxed);
            }
        }
        self.clear_step();
    }

    /// Gives back the owned permits whose holders died, under the ledger (a
    /// waiter that finds it busy for long leaves it to the next check).
    fn return_permits_of_the_dead(&self) {
        let Some(_ledger) = self.lock_ledger(Deadline::after(LEDGER_PATIENCE)) else {
            return;
        };
        let mut n = 0;
        for (i, seat) in self.seats.records().iter().enumerate() {
            let s = seat.load(Ordering::Relaxed);
            if s & HOLDING != 0 && !process_alive(s & !HOLDING) {
                n += self.give_back(i, None, &|_| {});
            }
        }
        if n > 0 {
            self.wake_sleepers(n);
        }
    }

    /// The largest count allowed.
    fn limit(&self) -> u32 {
        if self.flags.load(Ordering::Relaxed) & BOUNDED != 0 {
            self.bound.load(Ordering::Relaxed)
        } else {
            u32::MAX
        }
    }

    /// Returns `n` permits and wakes up to `n` waiters.
    ///
    /// # Errors
    /// [`Error::ValueTooLarge`] when a [`BoundedSemaphore`] would exceed its bound, or
    /// the count would pass `u32::MAX`; nothing is released then.
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_sync::Semaphore::new(0);
    /// s.release(2)?;
    /// assert_eq!(s.value(), 2);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    #[inline]
    pub fn release(&self, n: u32) -> Result<()> {
        let limit = self.limit();
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let v = count(s);
            if v.checked_add(n).is_none_or(|x| x > limit) {
                return Err(too_large(v, n, limit));
            }
            // The count stays within u32: `s + n` leaves the tag alone.
            // SYNC: SeqCst (a Release) pairs with the Acquire in `try_acquire`, and
            // with the sleepers protocol described in `sleep_while_empty`.
            match self.state.compare_exchange_weak(
                s,
                s + u64::from(n),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        self.wake_sleepers(n);
        Ok(())
    }

    /// Test hook: threads counted asleep (live or not).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn hook_sleepers(&self) -> u32 {
        self.sleepers.count()
    }

    /// Wakes up to `n` waiters for permits, if any sleep (see `sleep_while_empty`).
    #[inline]
    fn wake_sleepers(&self, n: u32) {
        if self.sleepers.any() && wake_low(&self.state, n) == 0 {
            self.sleepers.woke_nobody();
        }
    }

    /// The current count (a hint: it may change at once).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Semaphore::new(5).value(), 5);
    /// ```
    pub fn value(&self) -> u32 {
        count(self.state.load(Ordering::Relaxed))
    }

    /// Test hook: `acquire_owned`, then on drop of the guard `release`, calling
    /// `die` after each step: the fault tests SIGKILL the process at a chosen
    /// step there. Not part of the API.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn hook_acquire_owned_with_hook<'a>(
        &'a self,
        timeout: Option<Duration>,
        hook: &'a dyn Fn(OwnedStep),
    ) -> Option<HookedGuard<'a>> {
        let g = self.acquire_owned_stepping(timeout, hook)?;
        Some(HookedGuard { guard: g, hook })
    }
}

/// The ledger, held; unlocks on drop.
struct Ledger<'a>(&'a RawMutex);

impl Drop for Ledger<'_> {
    fn drop(&mut self) {
        // SAFETY: built only by `lock_ledger`, which took the lock in this thread.
        unsafe { self.0.unlock() };
    }
}

/// The error of a release past the bound (out of line: `release` stays small).
#[cold]
fn too_large(v: u32, n: u32, limit: u32) -> Error {
    Error::ValueTooLarge {
        what: "semaphore value",
        value: u64::from(v) + u64::from(n),
        limit: u64::from(limit),
    }
}

/// A permit taken with [`Semaphore::acquire_owned`]; released on drop.
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
    permit: Permit,
}

/// Where a guard's permit is recorded.
enum Permit {
    /// In this seat.
    Seat(usize),
    /// Nowhere: taken past SLOTS owned permits (not returned if its holder dies).
    Untracked,
    /// Given back already.
    Returned,
}

impl SemaphoreGuard<'_> {
    fn release_with(&mut self, step: &dyn Fn(OwnedStep)) {
        let sem = self.sem;
        let i = match std::mem::replace(&mut self.permit, Permit::Returned) {
            Permit::Seat(i) => i,
            Permit::Untracked => {
                // Cannot exceed the bound: this permit was counted out of it.
                let _ = sem.release(1);
                return;
            }
            Permit::Returned => return,
        };
        let me = current_process() & !HOLDING;
        match sem.lock_ledger(None) {
            Some(_ledger) => {
                if sem.give_back(i, Some(me | HOLDING), step) > 0 {
                    sem.wake_sleepers(1);
                }
            }
            // A ledger a peer scribbled over: give the permit back untracked.
            None => {
                let seat = &sem.seats.records()[i];
                if seat
                    .compare_exchange(me | HOLDING, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    let _ = sem.release(1);
                }
            }
        }
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.release_with(&|_| {});
    }
}

/// The test hook's guard (see `Semaphore::hook_acquire_owned_with_hook`).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub struct HookedGuard<'a> {
    guard: SemaphoreGuard<'a>,
    hook: &'a dyn Fn(OwnedStep),
}

#[cfg(feature = "test-hooks")]
impl Drop for HookedGuard<'_> {
    fn drop(&mut self) {
        self.guard.release_with(self.hook);
    }
}

/// Python's `BoundedSemaphore`: a [`Semaphore`] whose value may never go above
/// the value it was made with — a `release` that would take it there fails with
/// [`Error::ValueTooLarge`] and changes nothing. `BoundedSemaphore::new(0)` can
/// never be released.
///
/// It is a `Semaphore` (through `Deref`) whose bound lives in the shared state,
/// so every handle on it refuses the same releases. A separate type, so that
/// the bounded kind cannot be made by mistake for the plain one, and a segment
/// made for one cannot be opened as the other.
///
/// `#[repr(transparent)]` over a [`Semaphore`]: 176 bytes.
///
/// # Examples
/// ```
/// use multiproc_sync::BoundedSemaphore;
/// let s = BoundedSemaphore::new(2);
/// s.try_acquire()?;
/// s.release(1)?;
/// assert!(s.release(1).is_err()); // above the initial value
/// assert_eq!(s.value(), 2);
/// assert!(BoundedSemaphore::new(0).release(1).is_err());
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(transparent)]
pub struct BoundedSemaphore(Semaphore);

#[cfg(not(multiproc_loom))]
// SAFETY: a transparent wrapper of a Semaphore, which is ShmSafe.
unsafe impl multiproc_shm::ShmSafe for BoundedSemaphore {}
#[cfg(not(multiproc_loom))]
// SAFETY: every access through `&self` is atomic (or under its own robust
// lock), made to work with other processes doing the same.
unsafe impl multiproc_shm::ShmSync for BoundedSemaphore {}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<BoundedSemaphore>() == 176);

impl BoundedSemaphore {
    /// A semaphore with `value` permits that may never hold more (Python's
    /// `BoundedSemaphore(value)`).
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_sync::BoundedSemaphore::new(1);
    /// assert_eq!(s.bound(), 1);
    /// assert!(s.release(1).is_err());
    /// ```
    pub fn new(value: u32) -> BoundedSemaphore {
        BoundedSemaphore(Semaphore::with_bound(value, Some(value)))
    }

    /// The largest value (the initial one).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::BoundedSemaphore::new(3).bound(), 3);
    /// ```
    pub fn bound(&self) -> u32 {
        self.0.limit()
    }
}

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;
    fn deref(&self) -> &Semaphore {
        &self.0
    }
}

impl std::fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("bound", &self.bound())
            .finish()
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}
