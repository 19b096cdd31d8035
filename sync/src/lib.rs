//! Process-shared synchronisation for Linux, built on the futex syscall.
//!
//! Python's `multiprocessing` primitives — `Lock`, `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Condition`, `Event`, `Barrier`, `Value`, `Array` and
//! `Manager().dict()` — that work the same between threads and between processes,
//! and that a killed process cannot hang.
//!
//! | Python | here |
//! |---|---|
//! | `Lock()` | [`Lock`] (Python's shape) or [`Mutex<T>`] (std's shape, with the data inside) |
//! | `RLock()` | [`RLock`] |
//! | `Condition(lock)` | [`Condition`] (= [`Condvar`]) with a [`Mutex`] |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | [`Semaphore::new`], [`BoundedSemaphore::new`] |
//! | `Event()` | [`Event`] |
//! | `Barrier(n)` | [`Barrier`] |
//! | `Value('i', 0)`, `Array('d', [1.0, 2.0])` | [`Value::new(0i32)`](Value::new), [`Array::new([1.0f64, 2.0])`](Array) |
//! | `Array('d', 1_000_000)` (zeroed, from its size); `arr[:]`, `arr[:] = xs` | [`Array::<f64, 1_000_000>::zeroed()`](Value::zeroed) (built in place: no copy on the stack); [`to_vec`](Value::to_vec), [`copy_from_slice`](Value::copy_from_slice) |
//! | `Manager().dict()` | [`SharedDict`] |
//!
//! # Blocking, timeouts, not waiting
//! Every blocking call comes in three forms: `op()` waits as long as it takes;
//! `try_op()` never waits (answering [`Error::WouldBlock`], or
//! [`LockError::WouldBlock`] from the guard-returning locks); `op_timeout(d)`
//! waits at most `d` (answering [`Error::Timeout`] / [`LockError::Timeout`]).
//! So `acquire`/`try_acquire`/`acquire_timeout` on [`Lock`], [`RLock`] and
//! [`Semaphore`] (and `acquire_owned`… for owned permits), `lock`/`try_lock`/
//! `lock_timeout` on [`Mutex`], [`Lock`], [`RLock`] and [`Value`] (with
//! `get_timeout`/`set_timeout` too; [`SharedDict`] takes a per-handle
//! timeout, `set_timeout`), and
//! `wait`/`wait_timeout` on [`Event`], [`Barrier`] and [`Condvar`] (whose
//! `wait_while` and `wait_timeout_while` are std's, and Python's `wait_for`).
//! Where Python answers `False` — `acquire(block=False)`, `acquire(timeout=t)`,
//! `Event.wait(t)` — this crate answers the error that says which. A call that
//! cannot wait has one form.
//!
//! Every type is `#[repr(C)]` and [`ShmSafe`](multiproc_shm::ShmSafe): put it in a
//! segment from `multiproc-shm` — anonymous before `fork`, or named and opened by
//! an unrelated process.
//!
//! # When a holder dies
//! A process SIGKILLed while holding a [`Mutex`], [`Lock`] or [`RLock`] does not hang
//! the others: the next acquirer gets the lock within the
//! [owner check interval](set_owner_check_interval) (50 ms by default) with an
//! `OwnerDied` indication — [`LockError::OwnerDied`] carrying the guard, or
//! [`Error::OwnerDied`] from Python-shaped `acquire` — repairs the data and marks it
//! consistent; if it does not, every later acquire gets `NotRecoverable`. The
//! mechanism and its reasons are in the docs of the lock word (`raw_mutex.rs`).
//! [`Semaphore`], [`Barrier`], [`Event`] and [`Condvar`] have no owner word.
//! Permits taken with [`Semaphore::acquire_owned`], parties registered with
//! [`Barrier::join`] and setters registered with [`Event::register_setter`] are
//! recorded in per-participant slots, so a dead holder's permit is returned, a dead
//! party breaks the barrier (until a [`reset`](Barrier::reset) forgets it), and a
//! waiter whose setters all died is told so (a new setter may take a dead one's
//! place) — instead of hanging; otherwise waiters rely on timeouts, and every blocking call
//! has a timed form. A timed call whose time runs out before a check interval
//! has passed still looks at the holders once, so callers that only ever wait
//! a little recover from the dead too. An owned permit survives its holder being killed at any
//! instruction of taking or giving it back: the count and the seat it is recorded
//! in are changed in one step (see [`Semaphore`]).
//!
//! # Example: a lock between two processes
//! ```
//! use multiproc_shm::Shared;
//! use multiproc_sync::Mutex;
//!
//! let name = format!("doc-sync-{}", std::process::id());
//! let a = Shared::create(&name, Mutex::new([0u64; 4]))?;
//! // In another process:
//! let b = Shared::<Mutex<[u64; 4]>>::open(&name)?;
//! b.lock().unwrap()[0] += 1;
//! assert_eq!(a.lock().unwrap()[0], 1);
//! # Ok::<(), multiproc_sync::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
// Under loom the futex syscalls and /proc checks are replaced, so they go unused.
#![cfg_attr(multiproc_loom, allow(dead_code, unused_imports))]

// The semaphore's futex word is the first half of a 64-bit atomic.
#[cfg(not(target_endian = "little"))]
compile_error!("multiproc-sync builds only for little-endian targets");

mod barrier;
mod condvar;
#[cfg(not(multiproc_loom))]
mod dict;
mod error;
mod event;
pub mod futex;
mod identity;
mod lock;
mod mutex;
mod primitive;
mod raw_mutex;
mod semaphore;
mod sleepers;
mod slots;
mod sys;
#[cfg(not(multiproc_loom))]
mod value;
mod yielding;

pub use barrier::{Barrier, BarrierMember, MAX_PARTIES};
pub use condvar::{Condition, Condvar};
#[cfg(not(multiproc_loom))]
pub use dict::SharedDict;
pub use error::{Error, LockError, LockResult, Result};
pub use event::{Event, EventSetter};
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use mutex::{Mutex, MutexGuard};
pub use raw_mutex::{owner_check_interval, set_owner_check_interval};

/// Identities of threads and processes that survive id reuse, for structures in
/// shared memory that record who is working on them (`multiproc-queue` does).
pub mod owner {
    /// The calling thread's record: `tid << 32 | low 32 bits of its identity token`
    /// (see [`multiproc_shm::identity`]).
    ///
    /// # Examples
    /// ```
    /// let me = multiproc_sync::owner::current_thread();
    /// assert!(multiproc_sync::owner::thread_alive(me));
    /// ```
    #[inline]
    pub fn current_thread() -> u64 {
        crate::identity::current()
    }

    /// Whether the thread in `record` still runs (not exited, not a recycled tid).
    ///
    /// # Examples
    /// ```
    /// let me = multiproc_sync::owner::current_thread();
    /// assert!(multiproc_sync::owner::thread_alive(me));
    /// assert!(!multiproc_sync::owner::thread_alive(0));
    /// ```
    pub fn thread_alive(record: u64) -> bool {
        crate::identity::thread_alive(record)
    }

    /// The calling process's record: `pid << 32 | low 32 bits of its identity token`.
    ///
    /// # Examples
    /// ```
    /// let me = multiproc_sync::owner::current_process();
    /// assert_eq!(multiproc_sync::owner::id_of(me), std::process::id());
    /// ```
    pub fn current_process() -> u64 {
        crate::identity::current_process()
    }

    /// The tid or pid in a record.
    ///
    /// # Examples
    /// ```
    /// let me = multiproc_sync::owner::current_thread();
    /// assert_ne!(multiproc_sync::owner::id_of(me), 0);
    /// ```
    pub fn id_of(record: u64) -> u32 {
        crate::identity::tid_of(record)
    }

    /// Whether the process in `record` still runs (not exited, not a recycled pid).
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_sync::owner::process_alive(multiproc_sync::owner::current_process()));
    /// ```
    pub fn process_alive(record: u64) -> bool {
        crate::identity::process_alive(record)
    }
}
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use semaphore::{HookedGuard, OwnedStep};
pub use slots::SLOTS;
#[cfg(not(multiproc_loom))]
pub use value::{Array, Value, ValueGuard};
