//! [`Condvar`]: Python's `Condition`, bound at wait time to a [`Mutex`] guard.

use std::time::Duration;

use crate::mutex::MutexGuard;
use crate::primitive::{wait, wake, AtomicU32, Deadline, Ordering};
use crate::raw_mutex::deadline_after;
use crate::sleepers::Sleepers;
use crate::LockResult;

/// A condition variable for [`Mutex`](crate::Mutex), process-shared.
///
/// A sequence counter is the futex word: `wait` reads it while holding the mutex,
/// unlocks, and sleeps only while it is unchanged; every `notify` bumps it first.
/// So a notify that comes between the unlock and the sleep is never lost. A
/// count of sleepers ([`Sleepers`](crate::futex::Sleepers)) spares `notify` the
/// wake-up syscall when nobody waits.
///
/// As with every condition variable, a wait may return without a notify (a
/// spurious wake-up, a timeout): wait in a loop on the condition, or use
/// [`wait_while`](Condvar::wait_while), Python's `wait_for`. A waiter whose
/// notifier died is woken by its timeout — use the timed waits where that matters.
///
/// `#[repr(C)]`, 24 bytes; all-zero bytes are a new condition variable.
///
/// # Examples
/// ```
/// use multiproc_sync::{Condvar, Mutex};
/// let pair = (Mutex::new(false), Condvar::new());
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *pair.0.lock().unwrap() = true;
///         pair.1.notify_all();
///     });
///     let ready = pair.1.wait_while(pair.0.lock().unwrap(), |r| !*r).unwrap();
///     assert!(*ready);
/// });
/// ```
#[repr(C)]
pub struct Condvar {
    seq: AtomicU32,
    reserved: AtomicU32,
    sleepers: Sleepers,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics; any value of the counter is valid.
unsafe impl multiproc_shm::ShmSafe for Condvar {}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

/// Python's name for [`Condvar`].
pub type Condition = Condvar;

impl Condvar {
    /// A new condition variable.
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify_all(); // nobody waits: nothing happens
    /// ```
    pub fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            sleepers: Sleepers::new(),
        }
    }

    /// Unlocks `guard`'s mutex, sleeps until notified (or spuriously woken), relocks.
    ///
    /// A recovered guard that was not marked consistent is released as abandoned
    /// (the mutex becomes not recoverable), as if it had been dropped.
    ///
    /// # Errors
    /// What relocking the mutex answers (see [`Mutex::lock`](crate::Mutex::lock)).
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(false), Condvar::new());
    /// std::thread::scope(|s| {
    ///     s.spawn(|| { *m.lock().unwrap() = true; c.notify_one(); });
    ///     let mut g = m.lock().unwrap();
    ///     while !*g {
    ///         g = c.wait(g).unwrap();
    ///     }
    /// });
    /// ```
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| e.map(|(g, _)| g))
    }

    /// [`wait`](Condvar::wait) for at most `timeout`; the `bool` is `true` when it
    /// timed out.
    ///
    /// # Errors
    /// As for [`wait`](Condvar::wait).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(()), Condvar::new());
    /// let (_g, timed_out) = c.wait_timeout(m.lock().unwrap(), Duration::from_millis(1)).unwrap();
    /// assert!(timed_out);
    /// ```
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        self.wait_until(guard, deadline_after(Some(timeout)).as_ref())
    }

    /// Waits while `condition` holds (Python's `wait_for(predicate)`, negated as in std).
    ///
    /// # Errors
    /// As for [`wait`](Condvar::wait).
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(3), Condvar::new());
    /// let g = c.wait_while(m.lock().unwrap(), |n| *n == 0).unwrap(); // already true: no wait
    /// assert_eq!(*g, 3);
    /// ```
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition` holds, at most `timeout` in all; the `bool` is `true`
    /// when it gave up with the condition still holding (Python's
    /// `wait_for(predicate, timeout)` returning `False`).
    ///
    /// # Errors
    /// As for [`wait`](Condvar::wait).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(0), Condvar::new());
    /// let (g, timed_out) = c.wait_timeout_while(m.lock().unwrap(), Duration::from_millis(5), |n| *n == 0).unwrap();
    /// assert!(timed_out && *g == 0);
    /// ```
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        let deadline = deadline_after(Some(timeout));
        while condition(&mut *guard) {
            let (g, timed_out) = self.wait_until(guard, deadline.as_ref())?;
            guard = g;
            if timed_out {
                let still = condition(&mut *guard);
                return Ok((guard, still));
            }
        }
        Ok((guard, false))
    }

    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<&Deadline>,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        // Read the counter while holding the mutex: a notify after our unlock changes it.
        let seq = self.seq.load(Ordering::Acquire);
        let mutex = guard.mutex();
        drop(guard);
        let woke = loop {
            // SYNC: SeqCst (counting in) orders our count before the futex's read
            // of `seq`, against `notify`'s SeqCst bump then read of the count:
            // either it sees us, or we see its bump. Each sleep is bounded, so
            // that a waiter killed asleep is forgotten; a bound that passes
            // before the deadline is slept again, not returned as a wake-up.
            let woke = self
                .sleepers
                .sleep(deadline.copied(), |d| wait(&self.seq, seq, d));
            if woke || deadline.is_some_and(Deadline::passed) {
                break woke;
            }
        };
        match mutex.lock() {
            Ok(g) => Ok((g, !woke)),
            Err(e) => Err(e.map(|g| (g, !woke))),
        }
    }

    /// Wakes one waiter (Python's `notify()`).
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify_one();
    /// ```
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`).
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify(2); // Python's notify(n)
    /// ```
    pub fn notify(&self, n: u32) {
        // SYNC: Release pairs with the Acquire load in `wait_until`; SeqCst, then
        // the SeqCst read of the count: see `wait_until`.
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.any() && wake(&self.seq, n) == 0 {
            self.sleepers.woke_nobody();
        }
    }

    /// Wakes every waiter (Python's `notify_all()`).
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify_all();
    /// ```
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
