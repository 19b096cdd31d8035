//! [`Mutex<T>`]: std's shape, process-shared, recovered from a dead holder.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::time::Duration;

use crate::raw_mutex::{deadline_after, Acquired, Fail, RawMutex};
use crate::{LockError, LockResult};

/// A mutual-exclusion lock around a `T`, usable between threads and — placed in
/// shared memory — between processes.
///
/// When the holder dies (a process SIGKILLed, a thread gone) the next acquirer gets
/// the lock within the [owner check interval](crate::set_owner_check_interval)
/// with [`LockError::OwnerDied`], which carries the guard: repair the data and call
/// [`MutexGuard::mark_consistent`], or drop the guard and every later acquire fails
/// with [`LockError::NotRecoverable`]. There is no poisoning on panic: a panicking
/// holder's guard unlocks as it unwinds.
///
/// `#[repr(C)]`: a 16-byte lock word and owner record, then the `T`. All-zero bytes
/// are an unlocked mutex around a zeroed `T`.
///
/// # Examples
/// Between processes, through an anonymous segment inherited by `fork`:
/// ```
/// use multiproc_shm::Shared;
/// use multiproc_sync::Mutex;
///
/// let counter = Shared::anonymous(Mutex::new(0u64))?;
/// *counter.lock().unwrap() += 1;
/// assert_eq!(*counter.lock().unwrap(), 1);
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one thread at a time access to the T, so sharing the
// Mutex between threads needs only T: Send (as for std's Mutex).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: moving the Mutex moves the T.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of a RawMutex (atomics only, every bit pattern handled by the
// algorithm) and an UnsafeCell<T> with T: ShmSafe (no pointers, any bits valid).
unsafe impl<T: multiproc_shm::ShmSafe + Send> multiproc_shm::ShmSafe for Mutex<T> {}
#[cfg(not(multiproc_loom))]
// SAFETY: `&self` reaches the lock word through atomics and the data only
// under the process-shared lock.
unsafe impl<T: multiproc_shm::ShmSafe + Send> multiproc_shm::ShmSync for Mutex<T> {}

// The lock word and owner record, then the data.
#[cfg(not(multiproc_loom))]
const _: () =
    assert!(std::mem::size_of::<Mutex<()>>() == 16 && std::mem::size_of::<Mutex<u64>>() == 24);

impl<T> Mutex<T> {
    /// A new, unlocked mutex around `value`.
    ///
    /// # Examples
    /// ```
    /// let m = multiproc_sync::Mutex::new(5);
    /// assert_eq!(m.into_inner(), 5);
    /// ```
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// The value, consuming the mutex.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Mutex::new(4).into_inner(), 4);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the mutex, sleeping until it is free.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (holding the guard) when the previous holder died;
    /// [`LockError::NotRecoverable`]; [`LockError::WouldDeadlock`] when this thread
    /// holds it already.
    ///
    /// # Examples
    /// ```
    /// let m = multiproc_sync::Mutex::new(vec![1]);
    /// m.lock().unwrap().push(2);
    /// assert_eq!(*m.lock().unwrap(), [1, 2]);
    /// ```
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.raw.lock(None))
    }

    /// Acquires the mutex, waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`lock`](Mutex::lock), plus [`LockError::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc_sync::Mutex::new(());
    /// let held = m.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(matches!(
    ///         m.lock_timeout(Duration::from_millis(10)),
    ///         Err(multiproc_sync::LockError::Timeout)
    ///     )));
    /// });
    /// drop(held);
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.raw.lock(deadline_after(Some(timeout)).as_ref()))
    }

    /// Acquires the mutex if it is free.
    ///
    /// # Errors
    /// [`LockError::WouldBlock`] when it is held, [`LockError::NotRecoverable`].
    ///
    /// # Examples
    /// ```
    /// let m = multiproc_sync::Mutex::new(1);
    /// let g = m.try_lock().unwrap();
    /// assert!(matches!(m.try_lock(), Err(multiproc_sync::LockError::WouldBlock)));
    /// ```
    #[inline]
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.raw.try_lock())
    }

    /// Whether some thread holds the mutex right now (a hint: it may change at once).
    ///
    /// # Examples
    /// ```
    /// let m = multiproc_sync::Mutex::new(());
    /// let g = m.lock().unwrap();
    /// assert!(m.is_locked());
    /// drop(g);
    /// assert!(!m.is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Whether the lock word says a waiter may be asleep (its `WAITERS` bit).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn hook_waiters(&self) -> bool {
        self.raw.word().load(crate::primitive::Ordering::Relaxed) & crate::raw_mutex::WAITERS != 0
    }

    /// The value, through `&mut` (no locking needed).
    ///
    /// # Examples
    /// ```
    /// let mut m = multiproc_sync::Mutex::new(1);
    /// *m.get_mut() += 1;
    /// assert_eq!(m.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    #[inline]
    fn guard(&self, r: Result<Acquired, Fail>) -> LockResult<MutexGuard<'_, T>> {
        let guard = |recovered| MutexGuard {
            mutex: self,
            recovered,
            _not_send: PhantomData,
        };
        match r {
            Ok(Acquired::Clean) => Ok(guard(false)),
            Ok(Acquired::OwnerDied) => Err(LockError::OwnerDied(guard(true))),
            Err(f) => Err(fail_to_error(f)),
        }
    }
}

pub(crate) fn fail_to_error<G>(f: Fail) -> LockError<G> {
    match f {
        Fail::WouldBlock => LockError::WouldBlock,
        Fail::Timeout => LockError::Timeout,
        Fail::NotRecoverable => LockError::NotRecoverable,
        Fail::WouldDeadlock => LockError::WouldDeadlock,
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("owner", &self.raw.holder())
            .finish_non_exhaustive()
    }
}

/// Proof of holding a [`Mutex`]; unlocks on drop.
///
/// A guard from [`LockError::OwnerDied`] is *recovered*: call
/// [`mark_consistent`](MutexGuard::mark_consistent) once the data is repaired.
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    recovered: bool,
    /// The lock is owned by this thread's id: the guard must not move to another thread.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a &MutexGuard only gives &T, which is fine to share when T: Sync.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Whether this guard took the lock over from a holder that died.
    ///
    /// # Examples
    /// ```
    /// let m = multiproc_sync::Mutex::new(());
    /// assert!(!m.lock().unwrap().is_recovered());
    /// ```
    pub fn is_recovered(&self) -> bool {
        self.recovered
    }

    /// Declares the data repaired after an [`OwnerDied`](LockError::OwnerDied):
    /// the lock goes on working normally after this guard drops.
    ///
    /// # Examples
    /// ```
    /// # use multiproc_sync::{LockError, Mutex};
    /// # let m = Mutex::new(0);
    /// let mut g = match m.lock() {
    ///     Ok(g) => g,
    ///     Err(LockError::OwnerDied(mut g)) => {
    ///         *g = 0; // repair
    ///         g.mark_consistent();
    ///         g
    ///     }
    ///     Err(e) => panic!("{e}"),
    /// };
    /// *g += 1;
    /// ```
    pub fn mark_consistent(&mut self) {
        if self.recovered {
            // SAFETY: this guard holds the lock.
            unsafe { self.mutex.raw.mark_consistent() };
            self.recovered = false;
        }
    }

    /// The mutex this guard holds.
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T: ?Sized> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other thread or process that
        // follows the protocol accesses the data.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; &mut self excludes other uses of this guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.recovered {
            // SAFETY: this guard holds the lock; it was recovered and not repaired.
            unsafe { self.mutex.raw.unlock_not_recoverable() };
        } else {
            // SAFETY: this guard holds the lock.
            unsafe { self.mutex.raw.unlock() };
        }
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
