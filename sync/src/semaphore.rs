//! [`Semaphore`] and its bounded form: Python's `Semaphore` / `BoundedSemaphore`.

use std::time::Duration;

use crate::primitive::{wait, wake, AtomicU32, Deadline, Ordering};
use crate::raw_mutex::{deadline_after, owner_check_interval};
use crate::slots::{Seat, Slots};
use crate::{Error, Result};

/// A counting semaphore, process-shared.
///
/// The count is the futex word; a count of sleepers lets `release` skip the wake-up
/// syscall when nobody sleeps. A bounded semaphore refuses a `release` that would
/// take the count above its initial value, as Python's `BoundedSemaphore` does.
///
/// # When a holder dies
/// A semaphore has no owner: one process may release what another acquired, and
/// signalling that way is common. So plain [`acquire`](Semaphore::acquire) /
/// [`release`](Semaphore::release) permits are not tracked, and a waiter relies on
/// its timeout. Permits taken with [`acquire_owned`](Semaphore::acquire_owned) are
/// used like a lock: each is recorded in a participant slot (up to
/// [`SLOTS`](crate::SLOTS) at once) and given back by its guard; when its holder
/// dies, a waiter notices within the owner check interval and returns it.
///
/// `#[repr(C)]`, 144 bytes. All-zero bytes are an unbounded semaphore with count 0.
///
/// # Examples
/// ```
/// use multiproc_sync::Semaphore;
/// let s = Semaphore::bounded(2);
/// assert!(s.try_acquire());
/// assert!(s.try_acquire());
/// assert!(!s.try_acquire());
/// s.release(2)?;
/// assert!(s.release(1).is_err()); // above the bound
/// assert_eq!(s.value(), 2);
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Semaphore {
    value: AtomicU32,
    sleepers: AtomicU32,
    /// Largest allowed value; 0 means unbounded.
    bound: AtomicU32,
    reserved: AtomicU32,
    /// Holders of permits taken with `acquire_owned`.
    owners: Slots,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics; every value is handled (a count is a count).
unsafe impl multiproc_shm::ShmSafe for Semaphore {}

/// Python's `BoundedSemaphore`: a [`Semaphore`] made with [`Semaphore::bounded`].
pub type BoundedSemaphore = Semaphore;

impl Semaphore {
    /// A semaphore with `value` permits (Python's `Semaphore(value)`).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Semaphore::new(3).value(), 3);
    /// ```
    pub fn new(value: u32) -> Semaphore {
        Semaphore::with_bound(value, 0)
    }

    /// A semaphore with `value` permits that may never hold more
    /// (Python's `BoundedSemaphore(value)`).
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_sync::BoundedSemaphore::bounded(1);
    /// assert!(s.release(1).is_err());
    /// ```
    pub fn bounded(value: u32) -> Semaphore {
        Semaphore::with_bound(value, value.max(1))
    }

    fn with_bound(value: u32, bound: u32) -> Semaphore {
        Semaphore {
            value: AtomicU32::new(value),
            sleepers: AtomicU32::new(0),
            bound: AtomicU32::new(bound),
            reserved: AtomicU32::new(0),
            owners: Slots::new(),
        }
    }

    /// Takes a permit if one is free.
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_sync::Semaphore::new(1);
    /// assert!(s.try_acquire());
    /// assert!(!s.try_acquire());
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            // SYNC: Acquire pairs with the Release in `release`.
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Takes a permit, waiting at most `timeout` (forever if `None`); `false` on timeout.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let s = multiproc_sync::Semaphore::new(0);
    /// assert!(!s.acquire(Some(Duration::from_millis(5))));
    /// ```
    pub fn acquire(&self, timeout: Option<Duration>) -> bool {
        if self.try_acquire() {
            return true;
        }
        let deadline = deadline_after(timeout);
        loop {
            if self.try_acquire() {
                return true;
            }
            // SYNC: SeqCst orders this increment before the futex's read of the
            // value, against `release`'s SeqCst add then read of `sleepers`: either
            // the releaser sees us, or we see its permit.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let check_at = Deadline::after(owner_check_interval());
            let woke = wait(
                &self.value,
                0,
                Deadline::earliest(deadline, check_at).as_ref(),
            );
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if !woke {
                if deadline.as_ref().is_some_and(Deadline::passed) {
                    return self.try_acquire();
                }
                self.return_permits_of_the_dead();
            }
        }
    }

    /// Gives back the owned permits whose holders died.
    fn return_permits_of_the_dead(&self) {
        let n = self.owners.reap_dead();
        if n > 0 {
            // Cannot exceed the bound: these permits were counted out of it.
            let _ = self.release(n);
        }
    }

    /// Takes a permit like a lock: the returned guard gives it back on drop, and if
    /// this process dies holding it, a waiter gives it back for it.
    ///
    /// `None` when `timeout` passed. Past [`SLOTS`](crate::SLOTS) owned permits at once
    /// the extra ones work, but are not returned if their holder dies.
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_sync::Semaphore::new(1);
    /// let permit = s.acquire_owned(None).unwrap();
    /// assert_eq!(s.value(), 0);
    /// drop(permit);
    /// assert_eq!(s.value(), 1);
    /// ```
    pub fn acquire_owned(&self, timeout: Option<Duration>) -> Option<SemaphoreGuard<'_>> {
        if !self.acquire(timeout) {
            return None;
        }
        Some(SemaphoreGuard {
            sem: self,
            seat: self.owners.take_seat(),
        })
    }

    /// Returns `n` permits and wakes up to `n` waiters.
    ///
    /// # Errors
    /// [`Error::ValueTooLarge`] when a bounded semaphore would exceed its bound, or
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
        let bound = self.bound.load(Ordering::Relaxed);
        let limit = if bound == 0 { u32::MAX } else { bound };
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            let Some(new) = v.checked_add(n).filter(|&x| x <= limit) else {
                return Err(too_large(v, n, limit));
            };
            // SYNC: SeqCst (a Release) pairs with the Acquire in `try_acquire`, and
            // with the sleepers protocol described in `acquire`.
            match self
                .value
                .compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            wake(&self.value, n);
        }
        Ok(())
    }

    /// The current count (a hint: it may change at once).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Semaphore::new(5).value(), 5);
    /// ```
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
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
    /// The permit's slot; `None` past SLOTS owned permits (untracked).
    seat: Option<Seat<'a>>,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // If a reclaimer freed our slot, it also returned our permit (it judged
        // this process dead); only release when we freed it ourselves.
        let ours = self.seat.take().is_none_or(Seat::leave);
        if ours {
            // Cannot exceed the bound: this permit was counted out of it.
            let _ = self.sem.release(1);
        }
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}
