//! The futex layer: wait and wake on an `AtomicU32` that may live in memory shared
//! between processes (never `FUTEX_PRIVATE_FLAG`).
//!
//! Public because `multiproc-queue` blocks on it too. Waits take an absolute
//! [`Deadline`] on `CLOCK_MONOTONIC`, so that spurious wake-ups and `EINTR` retries
//! do not stretch a timeout.
//!
//! # Examples
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use multiproc_sync::futex::{wait, wake, Deadline};
//!
//! let word = AtomicU32::new(0);
//! // Nobody changes the word: the wait ends at its deadline.
//! assert!(!wait(&word, 0, Deadline::after(Duration::from_millis(1)).as_ref()));
//! // The word is not the expected value: no sleep at all.
//! word.store(1, Ordering::SeqCst);
//! assert!(wait(&word, 0, None));
//! assert_eq!(wake(&word, 1), 0); // nobody was asleep
//! ```

use std::sync::atomic::AtomicU32;

pub use crate::sleepers::{overdue, sleep_ends_by, Sleepers, Ticket};
pub use crate::sys::{Deadline, WAIT_ANY_MAX};

/// Sleeps while `*word == expected`, until woken or `deadline`. Returns `false`
/// only when the deadline passed; `true` on a wake-up (possibly spurious) or when
/// the word did not hold `expected`. Callers re-check their condition.
///
/// # Examples
/// ```
/// use std::sync::atomic::AtomicU32;
/// let w = AtomicU32::new(1);
/// assert!(multiproc_sync::futex::wait(&w, 0, None)); // not 0: returns at once
/// ```
#[inline]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
    crate::sys::futex_wait(word, expected, deadline)
}

/// Wakes up to `n` sleepers on `word`; returns how many were woken.
///
/// # Examples
/// ```
/// use std::sync::atomic::AtomicU32;
/// assert_eq!(multiproc_sync::futex::wake(&AtomicU32::new(0), 1), 0);
/// ```
#[inline]
pub fn wake(word: &AtomicU32, n: u32) -> u32 {
    crate::sys::futex_wake(word, n)
}

/// Wakes every sleeper on `word`; returns how many were woken.
///
/// # Examples
/// ```
/// use std::sync::atomic::AtomicU32;
/// assert_eq!(multiproc_sync::futex::wake_all(&AtomicU32::new(0)), 0);
/// ```
#[inline]
pub fn wake_all(word: &AtomicU32) -> u32 {
    crate::sys::futex_wake(word, u32::MAX)
}

/// Sleeps until one of `words` does not hold its expected value, or is woken,
/// or `deadline` passes (`futex_waitv`): how one thread waits on several
/// queues at once. Returns `false` only when the deadline passed; callers look
/// again after every return. At most [`WAIT_ANY_MAX`] words.
///
/// # Examples
/// ```
/// use std::sync::atomic::AtomicU32;
/// use std::time::Duration;
/// use multiproc_sync::futex::{wait_any, Deadline};
/// let (a, b) = (AtomicU32::new(0), AtomicU32::new(5));
/// // Neither changes: the deadline passes.
/// assert!(!wait_any(&[(&a, 0), (&b, 5)], Deadline::after(Duration::from_millis(1)).as_ref()));
/// // b does not hold 4: no sleep at all.
/// assert!(wait_any(&[(&a, 0), (&b, 4)], None));
/// ```
pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<&Deadline>) -> bool {
    crate::sys::futex_wait_any(words, deadline)
}
