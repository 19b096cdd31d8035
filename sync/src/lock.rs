//! Python's shapes: [`Lock`] (`acquire(block, timeout)`, `release`, `locked`) and
//! the re-entrant [`RLock`].

use std::time::Duration;

use crate::mutex::fail_to_error;
use crate::primitive::{AtomicU32, Ordering};
use crate::raw_mutex::{deadline_after, Acquired, Fail, Holder, RawMutex};
use crate::{Error, LockError, LockResult, Result};

/// Maps a raw acquire to this crate's answer: `Ok(())` acquired, `Err(OwnerDied)`
/// acquired from a dead holder, and the failures.
fn acquired(r: std::result::Result<Acquired, Fail>) -> Result<()> {
    match r {
        Ok(Acquired::Clean) => Ok(()),
        Ok(Acquired::OwnerDied) => Err(Error::OwnerDied),
        Err(f) => Err(Error::from(fail_to_error::<()>(f))),
    }
}

/// Python's `multiprocessing.Lock`: a non-reentrant lock without data, usable
/// between threads and processes, recovered from a dead holder.
///
/// `#[repr(C)]`, 16 bytes; all-zero bytes are an unlocked lock.
///
/// # Examples
/// ```
/// use multiproc_sync::Lock;
/// let lock = Lock::new();
/// lock.acquire()?;
/// assert!(lock.locked());
/// assert!(lock.try_acquire().is_err());  // held: the attempt that does not wait fails
/// lock.release()?;
/// assert!(lock.release().is_err());      // releasing an unlocked lock is an error
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Lock {
    raw: RawMutex,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] around a RawMutex: atomics only, every bit pattern handled.
unsafe impl multiproc_shm::ShmSafe for Lock {}
#[cfg(not(multiproc_loom))]
// SAFETY: every access through `&self` is atomic (or under its own robust
// lock), made to work with other processes doing the same.
unsafe impl multiproc_shm::ShmSync for Lock {}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Lock>() == 16);

impl Default for Lock {
    fn default() -> Lock {
        Lock::new()
    }
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_sync::Lock::new().locked());
    /// ```
    pub fn new() -> Lock {
        Lock {
            raw: RawMutex::new(),
        }
    }

    /// Takes the lock, waiting as long as it takes (Python's `acquire()`).
    ///
    /// # Errors
    /// [`Error::OwnerDied`]: acquired, but the previous holder died — repair, then
    /// [`mark_consistent`](Lock::mark_consistent), then [`release`](Lock::release).
    /// [`Error::NotRecoverable`], [`Error::WouldDeadlock`].
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// l.acquire()?;
    /// assert!(l.locked());
    /// l.release()?;
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<()> {
        acquired(self.raw.lock(None))
    }

    /// Takes the lock if it is free now (Python's `acquire(block=False)`).
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when it is held, and as for [`acquire`](Lock::acquire).
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// l.try_acquire()?;
    /// assert!(matches!(l.try_acquire(), Err(multiproc_sync::Error::WouldBlock)));
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<()> {
        acquired(self.raw.try_lock())
    }

    /// Takes the lock, waiting at most `timeout` (Python's `acquire(timeout=t)`).
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`acquire`](Lock::acquire).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let l = multiproc_sync::Lock::new();
    /// l.acquire_timeout(Duration::from_secs(1))?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(matches!(
    ///         l.acquire_timeout(Duration::from_millis(5)),
    ///         Err(multiproc_sync::Error::Timeout)
    ///     )));
    /// });
    /// l.release()?;
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        acquired(self.raw.lock(deadline_after(Some(timeout)).as_ref()))
    }

    /// Python's `release()`. As in Python, any thread may release a held `Lock`.
    ///
    /// # Errors
    /// [`Error::NotLocked`] when it is not held. Releasing a recovered lock that was
    /// not marked consistent makes it not recoverable (and is not an error).
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// l.acquire()?;
    /// l.release()?;
    /// assert!(matches!(l.release(), Err(multiproc_sync::Error::NotLocked)));
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        if !self.raw.is_locked() {
            return Err(Error::NotLocked);
        }
        if self.raw.is_inconsistent() {
            // SAFETY: Python's Lock may be released by any thread; it is held.
            unsafe { self.raw.unlock_not_recoverable() };
        } else {
            // SAFETY: as above.
            unsafe { self.raw.unlock() };
        }
        Ok(())
    }

    /// Python's `locked()`.
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// l.acquire()?;
    /// assert!(l.locked());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether the lock word says a waiter may be asleep (its `WAITERS` bit).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn hook_waiters(&self) -> bool {
        self.raw.word().load(crate::primitive::Ordering::Relaxed) & crate::raw_mutex::WAITERS != 0
    }

    /// Declares the data repaired after [`Error::OwnerDied`]; call before `release`.
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// match l.acquire() {
    ///     Err(multiproc_sync::Error::OwnerDied) => { /* repair */ l.mark_consistent(); }
    ///     other => { other?; }
    /// }
    /// l.release()?;
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn mark_consistent(&self) {
        if self.raw.is_held_by_current_thread() {
            // SAFETY: the calling thread holds the lock.
            unsafe { self.raw.mark_consistent() };
        }
    }

    /// Takes the lock and returns a guard that releases it on drop: Python's
    /// `with lock:`, which no early return or `?` can leave held.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (holding the guard: repair, then
    /// [`mark_consistent`](LockGuard::mark_consistent)) when the last holder
    /// died holding it; [`LockError::NotRecoverable`];
    /// [`LockError::WouldDeadlock`] when this thread holds it already.
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// {
    ///     let _held = l.lock().unwrap(); // with lock:
    ///     assert!(l.locked());
    /// }
    /// assert!(!l.locked());
    /// ```
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        self.guard(self.raw.lock(None))
    }

    /// [`lock`](Lock::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`lock`](Lock::lock), and [`LockError::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let l = multiproc_sync::Lock::new();
    /// let _held = l.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(matches!(
    ///         l.lock_timeout(Duration::from_millis(5)),
    ///         Err(multiproc_sync::LockError::Timeout)
    ///     )));
    /// });
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<LockGuard<'_>> {
        self.guard(self.raw.lock(deadline_after(Some(timeout)).as_ref()))
    }

    /// [`lock`](Lock::lock) if the lock is free now.
    ///
    /// # Errors
    /// [`LockError::WouldBlock`] when it is held, [`LockError::NotRecoverable`].
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// let _held = l.try_lock().unwrap();
    /// assert!(matches!(l.try_lock(), Err(multiproc_sync::LockError::WouldBlock)));
    /// ```
    pub fn try_lock(&self) -> LockResult<LockGuard<'_>> {
        self.guard(self.raw.try_lock())
    }

    fn guard(&self, r: std::result::Result<Acquired, Fail>) -> LockResult<LockGuard<'_>> {
        let guard = |recovered| LockGuard {
            lock: self,
            recovered,
            _not_send: std::marker::PhantomData,
        };
        match r {
            Ok(Acquired::Clean) => Ok(guard(false)),
            Ok(Acquired::OwnerDied) => Err(LockError::OwnerDied(guard(true))),
            Err(f) => Err(fail_to_error(f)),
        }
    }
}

/// A held [`Lock`] (see [`Lock::lock`]); releases it on drop.
///
/// A guard from [`LockError::OwnerDied`] is *recovered*: call
/// [`mark_consistent`](LockGuard::mark_consistent) once the data is repaired, or
/// the lock becomes not recoverable when the guard drops.
pub struct LockGuard<'a> {
    lock: &'a Lock,
    recovered: bool,
    /// The lock is owned by this thread's id: the guard must not move to another thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether this guard took the lock over from a holder that died.
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// assert!(!l.lock().unwrap().is_recovered());
    /// ```
    pub fn is_recovered(&self) -> bool {
        self.recovered
    }

    /// Declares the data repaired after an [`OwnerDied`](LockError::OwnerDied).
    ///
    /// # Examples
    /// ```
    /// let l = multiproc_sync::Lock::new();
    /// let mut g = match l.lock() {
    ///     Ok(g) => g,
    ///     Err(multiproc_sync::LockError::OwnerDied(mut g)) => { g.mark_consistent(); g }
    ///     Err(e) => panic!("{e}"),
    /// };
    /// ```
    pub fn mark_consistent(&mut self) {
        if self.recovered {
            // SAFETY: this guard holds the lock.
            unsafe { self.lock.raw.mark_consistent() };
            self.recovered = false;
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.recovered {
            // SAFETY: this guard holds the lock; it was recovered and not repaired.
            unsafe { self.lock.raw.unlock_not_recoverable() };
        } else {
            // SAFETY: this guard holds the lock.
            unsafe { self.lock.raw.unlock() };
        }
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("recovered", &self.recovered)
            .finish()
    }
}

/// Names the holder, as Python's `repr` does: `Lock { owner: Nobody }`,
/// `Lock { owner: ThisThread }`, `Lock { owner: OtherThread { tid: 41 } }`,
/// `Lock { owner: OtherProcess { tid: 40, pid: Some(40) } }`.
impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("owner", &self.raw.holder())
            .finish()
    }
}

/// Python's `multiprocessing.RLock`: re-entrant for the thread that holds it, with
/// a count; only that thread may release it.
///
/// `#[repr(C)]`, 24 bytes; all-zero bytes are an unlocked lock.
///
/// # Examples
/// ```
/// use multiproc_sync::{Error, RLock};
/// let r = RLock::new();
/// r.acquire()?;
/// r.acquire()?;                        // again, same thread
/// assert_eq!(r.count(), 2);
/// r.release()?;
/// r.release()?;
/// assert!(matches!(r.release(), Err(Error::NotOwner)));
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(C)]
pub struct RLock {
    raw: RawMutex,
    /// Times the holder acquired it; touched only by the holder.
    count: AtomicU32,
    reserved: AtomicU32,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of a RawMutex and atomics; every bit pattern handled (the
// count is only trusted by the thread that holds the lock, and checked).
unsafe impl multiproc_shm::ShmSafe for RLock {}
#[cfg(not(multiproc_loom))]
// SAFETY: every access through `&self` is atomic (or under its own robust
// lock), made to work with other processes doing the same.
unsafe impl multiproc_shm::ShmSync for RLock {}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<RLock>() == 24);

impl Default for RLock {
    fn default() -> RLock {
        RLock::new()
    }
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::RLock::new().count(), 0);
    /// ```
    pub fn new() -> RLock {
        RLock {
            raw: RawMutex::new(),
            count: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
        }
    }

    /// Takes the lock, waiting as long as it takes (Python's `acquire()`);
    /// re-entering adds one to the count.
    ///
    /// # Errors
    /// As for [`Lock::acquire`], and [`Error::ValueTooLarge`] past 2³² − 1 entries.
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// r.acquire()?;
    /// r.acquire()?;
    /// assert_eq!(r.count(), 2);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<()> {
        self.enter(|| self.raw.lock(None))
    }

    /// Takes the lock if it is free now or held by this thread.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when another thread holds it, and as for
    /// [`acquire`](RLock::acquire).
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// r.try_acquire()?;
    /// r.try_acquire()?; // this thread holds it: re-entered
    /// assert_eq!(r.count(), 2);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<()> {
        self.enter(|| self.raw.try_lock())
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`acquire`](RLock::acquire).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let r = multiproc_sync::RLock::new();
    /// r.acquire_timeout(Duration::from_secs(1))?;
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        self.enter(|| self.raw.lock(deadline_after(Some(timeout)).as_ref()))
    }

    /// Re-enters if this thread holds the lock, else takes it with `take`.
    fn enter(&self, take: impl FnOnce() -> std::result::Result<Acquired, Fail>) -> Result<()> {
        if self.raw.is_held_by_current_thread() {
            let n = self.count.load(Ordering::Relaxed);
            let n = n.checked_add(1).ok_or(Error::ValueTooLarge {
                what: "RLock recursion count",
                value: u64::from(n) + 1,
                limit: u64::from(u32::MAX),
            })?;
            self.count.store(n, Ordering::Relaxed);
            return Ok(());
        }
        let answer = acquired(take());
        if matches!(answer, Ok(()) | Err(Error::OwnerDied)) {
            self.count.store(1, Ordering::Relaxed);
        }
        answer
    }

    /// Python's `release()`: one level down; the lock is free at zero.
    ///
    /// # Errors
    /// [`Error::NotOwner`] when the calling thread does not hold it.
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// r.acquire()?;
    /// r.release()?;
    /// assert!(!r.locked());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        if !self.raw.is_held_by_current_thread() {
            return Err(Error::NotOwner);
        }
        let n = self.count.load(Ordering::Relaxed);
        if n > 1 {
            self.count.store(n - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.count.store(0, Ordering::Relaxed);
        if self.raw.is_inconsistent() {
            // SAFETY: the calling thread holds the lock (checked above).
            unsafe { self.raw.unlock_not_recoverable() };
        } else {
            // SAFETY: as above.
            unsafe { self.raw.unlock() };
        }
        Ok(())
    }

    /// How many times the calling thread holds it (0 if it does not).
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// r.acquire()?;
    /// assert_eq!(r.count(), 1);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn count(&self) -> u32 {
        if self.raw.is_held_by_current_thread() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether any thread holds it.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_sync::RLock::new().locked());
    /// ```
    pub fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Declares the data repaired after [`Error::OwnerDied`].
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// r.mark_consistent(); // not held: nothing happens
    /// ```
    pub fn mark_consistent(&self) {
        if self.raw.is_held_by_current_thread() {
            // SAFETY: the calling thread holds the lock.
            unsafe { self.raw.mark_consistent() };
        }
    }

    /// Acquires (blocking) and returns a guard that releases one level on drop.
    ///
    /// # Errors
    /// As for [`acquire`](RLock::acquire); an `OwnerDied` carries the guard.
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// let outer = r.lock().unwrap();
    /// let inner = r.lock().unwrap();
    /// assert_eq!(r.count(), 2);
    /// ```
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        let guard = RLockGuard {
            lock: self,
            _not_send: std::marker::PhantomData,
        };
        rlock_guard(self.acquire(), guard)
    }

    /// [`lock`](RLock::lock) if the lock is free now or held by this thread.
    ///
    /// # Errors
    /// [`LockError::WouldBlock`] when another thread holds it, and as for
    /// [`lock`](RLock::lock).
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// let g = r.try_lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(matches!(r.try_lock(), Err(multiproc_sync::LockError::WouldBlock))));
    /// });
    /// ```
    pub fn try_lock(&self) -> LockResult<RLockGuard<'_>> {
        let guard = RLockGuard {
            lock: self,
            _not_send: std::marker::PhantomData,
        };
        rlock_guard(self.try_acquire(), guard)
    }

    /// [`lock`](RLock::lock), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockError::Timeout`], and as for [`lock`](RLock::lock).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let r = multiproc_sync::RLock::new();
    /// let g = r.lock_timeout(Duration::from_secs(1)).unwrap();
    /// assert_eq!(r.count(), 1);
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<RLockGuard<'_>> {
        let guard = RLockGuard {
            lock: self,
            _not_send: std::marker::PhantomData,
        };
        rlock_guard(self.acquire_timeout(timeout), guard)
    }
}

/// The guard-returning answer for an `RLock` acquire's answer.
fn rlock_guard<'a>(r: Result<()>, guard: RLockGuard<'a>) -> LockResult<RLockGuard<'a>> {
    match r {
        Ok(()) => Ok(guard),
        Err(Error::OwnerDied) => Err(LockError::OwnerDied(guard)),
        Err(e) => {
            // Not taken: the guard must release nothing (this thread may hold
            // the lock at an outer level).
            std::mem::forget(guard);
            Err(match e {
                Error::NotRecoverable => LockError::NotRecoverable,
                Error::WouldBlock => LockError::WouldBlock,
                Error::Timeout => LockError::Timeout,
                // Re-entering never deadlocks: only the recursion count
                // overflowing (2³² entries) lands here.
                _ => LockError::WouldDeadlock,
            })
        }
    }
}

/// Names the holder as [`Lock`]'s does, with the count when the caller holds
/// it (Python's `repr` says `nonzero` for another holder's count, which only
/// that holder reads).
impl std::fmt::Debug for RLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owner = self.raw.holder();
        let mut d = f.debug_struct("RLock");
        d.field("owner", &owner);
        if owner == Holder::ThisThread {
            d.field("count", &self.count());
        }
        d.finish()
    }
}

/// Holds one level of an [`RLock`]; releases it on drop.
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Declares the data repaired after an `OwnerDied`.
    ///
    /// # Examples
    /// ```
    /// let r = multiproc_sync::RLock::new();
    /// let mut g = r.lock().unwrap();
    /// g.mark_consistent(); // only matters after OwnerDied
    /// ```
    pub fn mark_consistent(&mut self) {
        self.lock.mark_consistent();
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // Cannot fail: the guard's thread holds the lock.
        let _ = self.lock.release();
    }
}
