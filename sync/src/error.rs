//! The crate's errors.

use std::fmt;

/// Everything that can go wrong in this crate, apart from [`LockError`] (which can
/// carry a guard).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock is now held by the caller, but its previous holder died holding it:
    /// check and repair the data, then call `mark_consistent` before releasing.
    #[error("acquired, but the previous holder died while holding the lock: repair the data, then call mark_consistent() before release()")]
    OwnerDied,
    /// A recovered lock was released without `mark_consistent`; it cannot be used again.
    #[error("the lock is not recoverable: a holder that recovered it from a dead process released it without mark_consistent()")]
    NotRecoverable,
    /// The wait timed out (an `op_timeout`).
    #[error("timed out")]
    Timeout,
    /// Taking it would have to wait (a `try_op`).
    #[error("not available without waiting")]
    WouldBlock,
    /// The calling thread already holds this (non-reentrant) lock.
    #[error("the calling thread already holds this lock; acquiring it again would deadlock (use RLock to re-enter)")]
    WouldDeadlock,
    /// `release` of an `RLock` by a thread that does not hold it.
    #[error("release() by a thread that does not hold the lock")]
    NotOwner,
    /// `release` of a lock that is not held.
    #[error("release() of a lock that is not held")]
    NotLocked,
    /// A bounded semaphore released above its initial value, or a counter overflow.
    #[error("{what}: {value} would exceed the limit {limit}")]
    ValueTooLarge {
        /// What overflowed.
        what: &'static str,
        /// The value it would have reached.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The barrier is broken (aborted, reset, or a wait timed out).
    #[error(
        "the barrier is broken (aborted, reset, or a party timed out); reset() it to use it again"
    )]
    BrokenBarrier,
    /// Every process registered to set an event died without setting it.
    #[error("every process registered to set this event died without setting it or leaving")]
    NoLiveSetter,
    /// A fixed-capacity structure has no room left.
    #[error("full: all {capacity} entries are in use")]
    Full {
        /// The capacity.
        capacity: usize,
    },
    /// A key or value is longer than the slot made for it.
    #[error("{what} is {len} bytes, longer than the {max} bytes this dictionary was made for")]
    TooLong {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The slot's size.
        max: usize,
    },
    /// A value read from shared memory is impossible: another process wrote over it.
    #[error("shared state is corrupted: {what} is {value}")]
    Corrupted {
        /// What was read (`"a barrier's parties"`, `"a dictionary slot's state"` …).
        what: &'static str,
        /// The impossible value.
        value: u64,
    },
    /// A count, size or index outside what is allowed.
    #[error("{what} must be {min} to {max}, not {value}")]
    OutOfRange {
        /// What was given.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// Creating or opening the shared-memory segment failed.
    #[error(transparent)]
    Shm(#[from] multiproc_shm::Error),
}

/// Why a guard-returning lock call did not simply succeed.
///
/// [`OwnerDied`](LockError::OwnerDied) carries the guard: the lock *is* held, as
/// with `EOWNERDEAD` from a robust `pthread_mutex_lock`.
pub enum LockError<G> {
    /// Acquired, but the previous holder died holding it. Repair the data, then call
    /// `mark_consistent` on the guard; dropping it unrepaired makes the lock
    /// [`NotRecoverable`](LockError::NotRecoverable) for everyone.
    OwnerDied(G),
    /// A recovered lock was released without `mark_consistent`.
    NotRecoverable,
    /// The timeout passed.
    Timeout,
    /// `try_lock` found the lock held.
    WouldBlock,
    /// The calling thread already holds this lock.
    WouldDeadlock,
}

/// `Result` of a guard-returning lock call.
pub type LockResult<G> = Result<G, LockError<G>>;

impl<G> LockError<G> {
    /// The guard of an [`OwnerDied`](LockError::OwnerDied), if this is one.
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::LockError;
    /// let e: LockError<u8> = LockError::OwnerDied(7);
    /// assert_eq!(e.into_guard(), Some(7));
    /// ```
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// Applies `f` to the guard inside.
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::LockError;
    /// let e: LockError<u8> = LockError::OwnerDied(7);
    /// assert_eq!(e.map(|g| g + 1).into_guard(), Some(8));
    /// ```
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::NotRecoverable => LockError::NotRecoverable,
            LockError::Timeout => LockError::Timeout,
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::WouldDeadlock => LockError::WouldDeadlock,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            LockError::OwnerDied(_) => "OwnerDied",
            LockError::NotRecoverable => "NotRecoverable",
            LockError::Timeout => "Timeout",
            LockError::WouldBlock => "WouldBlock",
            LockError::WouldDeadlock => "WouldDeadlock",
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => fmt::Display::fmt(&Error::OwnerDied, f),
            LockError::NotRecoverable => fmt::Display::fmt(&Error::NotRecoverable, f),
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
            LockError::WouldBlock => f.write_str("the lock is held (try_lock)"),
            LockError::WouldDeadlock => fmt::Display::fmt(&Error::WouldDeadlock, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

impl<G> From<LockError<G>> for Error {
    /// Drops the guard of an `OwnerDied` (which makes the lock not recoverable).
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::OwnerDied(_) => Error::OwnerDied,
            LockError::NotRecoverable => Error::NotRecoverable,
            LockError::Timeout => Error::Timeout,
            LockError::WouldBlock => Error::WouldBlock,
            LockError::WouldDeadlock => Error::WouldDeadlock,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
