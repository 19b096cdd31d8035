//! The futex layer, and the only one: the system calls that wait and wake on an
//! `AtomicU32` that may live in memory shared between processes (never
//! `FUTEX_PRIVATE_FLAG`). This crate's `primitive` module and
//! `multiproc-queue`'s re-export these functions as they are (or loom's
//! stand-ins under `--cfg multiproc_loom`); and [`try_yield`], the yield a
//! waiter makes between spinning and sleeping.
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

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

pub use crate::sleepers::{overdue, sleep_ends_by, Sleepers, Ticket};
pub use crate::sys::Deadline;
pub use crate::yielding::{try_yield, try_yield_watching, SKIP_FOR, SLOW_YIELD};

/// Sleeps while `*word == expected`, until woken or `deadline`
/// (`FUTEX_WAIT_BITSET`, an absolute `CLOCK_MONOTONIC` time). Returns `false`
/// only when the deadline passed; `true` on a wake-up (possibly spurious) or when
/// the word did not hold `expected` (`EAGAIN`). Retries on `EINTR`. Callers
/// re-check their condition.
///
/// # Examples
/// ```
/// use std::sync::atomic::AtomicU32;
/// let w = AtomicU32::new(1);
/// assert!(multiproc_sync::futex::wait(&w, 0, None)); // not 0: returns at once
/// ```
#[inline]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
    wait_at(word.as_ptr(), expected, deadline)
}

/// Wakes up to `n` sleepers on `word` (`FUTEX_WAKE`); returns how many were woken.
///
/// # Examples
/// ```
/// use std::sync::atomic::AtomicU32;
/// assert_eq!(multiproc_sync::futex::wake(&AtomicU32::new(0), 1), 0);
/// ```
#[inline]
pub fn wake(word: &AtomicU32, n: u32) -> u32 {
    wake_at(word.as_ptr(), n)
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
    wake_at(word.as_ptr(), u32::MAX)
}

/// [`wait`] on the low half of a 64-bit word (its first four bytes: this
/// crate builds only for little-endian targets), for a futex word that shares
/// one atomic with other state.
#[inline]
pub(crate) fn wait_low(word: &AtomicU64, expected: u32, deadline: Option<&Deadline>) -> bool {
    wait_at(word.as_ptr().cast::<u32>(), expected, deadline)
}

/// [`wake`] on the low half of a 64-bit word (see [`wait_low`]).
#[inline]
pub(crate) fn wake_low(word: &AtomicU64, n: u32) -> u32 {
    wake_at(word.as_ptr().cast::<u32>(), n)
}

fn wait_at(word: *mut u32, expected: u32, deadline: Option<&Deadline>) -> bool {
    let ts = deadline.map_or(std::ptr::null(), |d| &d.ts as *const libc::timespec);
    loop {
        // SAFETY: word points to a live, aligned u32 (the callers pass an
        // AtomicU32, or the first half of an AtomicU64). FUTEX_WAIT_BITSET reads
        // ts as an absolute CLOCK_MONOTONIC time; ts is NULL or a valid timespec.
        // No FUTEX_PRIVATE_FLAG: the word may be in memory shared with other
        // processes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word,
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if r == 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return false,
            _ => return true, // EAGAIN: the value changed before we slept.
        }
    }
}

fn wake_at(word: *mut u32, n: u32) -> u32 {
    let n = n.min(i32::MAX as u32);
    // SAFETY: word points to a live, aligned u32; FUTEX_WAKE takes no other pointer.
    let r = unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, n) };
    r.max(0) as u32
}

/// One futex for [`wait_any`]: `struct futex_waitv` of the kernel.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32`: the word is 32 bits (and, without `FUTEX2_PRIVATE`, may be
/// shared between processes).
const FUTEX2_SIZE_U32: u32 = 0x02;

/// The most words one `futex_waitv` takes (`FUTEX_WAITV_MAX`).
pub const WAIT_ANY_MAX: usize = 128;

/// Sleeps until one of `words` does not hold its expected value, or is woken,
/// or `deadline` passes (`futex_waitv`, Linux 5.16; shared futexes): how one
/// thread waits on several queues at once. Returns `false` only when the
/// deadline passed; callers look again after every return. At most
/// [`WAIT_ANY_MAX`] words. On a kernel without `futex_waitv` it naps a
/// millisecond and returns `true`.
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
    debug_assert!(!words.is_empty() && words.len() <= WAIT_ANY_MAX);
    let waiters: Vec<FutexWaitv> = words
        .iter()
        .take(WAIT_ANY_MAX)
        .map(|(w, expected)| FutexWaitv {
            val: u64::from(*expected),
            uaddr: w.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        })
        .collect();
    let ts = deadline.map_or(std::ptr::null(), |d| &d.ts as *const libc::timespec);
    loop {
        // SAFETY: waiters points to waiters.len() valid futex_waitv entries whose
        // uaddr fields are live, aligned u32 words; ts is NULL or a valid absolute
        // CLOCK_MONOTONIC timespec.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                waiters.as_ptr(),
                waiters.len() as libc::c_uint,
                0 as libc::c_uint,
                ts,
                libc::CLOCK_MONOTONIC,
            )
        };
        if r >= 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ETIMEDOUT) => return false,
            Some(libc::ENOSYS) => {
                std::thread::sleep(Duration::from_millis(1));
                return deadline.is_none_or(|d| !d.passed());
            }
            _ => return true, // EAGAIN: a word changed before we slept.
        }
    }
}
