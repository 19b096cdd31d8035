//! Every libc call of this crate: the futex syscall, the monotonic clock, thread ids.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

/// An absolute point on `CLOCK_MONOTONIC`, the clock futex timeouts use.
///
/// Waits take a deadline rather than a duration so that a wait that is woken
/// spuriously, or retried after `EINTR`, does not start its timeout again.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    ts: libc::timespec,
}

impl Deadline {
    /// `timeout` from now. A timeout too large to represent means "never".
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::futex::Deadline::after(std::time::Duration::from_secs(60)).unwrap();
    /// assert!(!d.passed());
    /// ```
    pub fn after(timeout: Duration) -> Option<Deadline> {
        let now = now();
        let secs = i64::try_from(timeout.as_secs()).ok()?;
        let mut sec = now.tv_sec.checked_add(secs)?;
        let mut nsec = now.tv_nsec + i64::from(timeout.subsec_nanos());
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.checked_add(1)?;
        }
        Some(Deadline {
            ts: libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
        })
    }

    /// Time left until the deadline (zero once it has passed).
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::futex::Deadline::after(std::time::Duration::from_secs(60)).unwrap();
    /// assert!(d.remaining() <= std::time::Duration::from_secs(60));
    /// ```
    pub fn remaining(&self) -> Duration {
        let now = now();
        let left = (i128::from(self.ts.tv_sec) - i128::from(now.tv_sec)) * 1_000_000_000
            + (i128::from(self.ts.tv_nsec) - i128::from(now.tv_nsec));
        if left <= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
        }
    }

    /// Whether the deadline has passed.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::futex::Deadline::after(std::time::Duration::ZERO).unwrap();
    /// assert!(d.passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The earlier of two deadlines (`None` is "never").
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::futex::Deadline;
    /// let soon = Deadline::after(Duration::from_millis(1));
    /// let late = Deadline::after(Duration::from_secs(60));
    /// assert!(Deadline::earliest(soon, late).unwrap().remaining() <= Duration::from_millis(1));
    /// assert!(Deadline::earliest(None, None).is_none());
    /// ```
    pub fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(a), Some(b)) => Some(
                if (a.ts.tv_sec, a.ts.tv_nsec) <= (b.ts.tv_sec, b.ts.tv_nsec) {
                    a
                } else {
                    b
                },
            ),
            (a, None) => a,
            (None, b) => b,
        }
    }
}

pub(crate) fn now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

/// `FUTEX_WAIT_BITSET` (shared, not private) until `deadline`: sleeps while
/// `*word == expected`. Returns `false` only when the deadline passed.
///
/// Retries on `EINTR`; returns `true` at once on `EAGAIN` (the value had changed)
/// and on a wake-up, which may be spurious: callers re-check their condition.
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
    futex_wait_at(word.as_ptr(), expected, deadline)
}

/// [`futex_wait`] on the low half of a 64-bit word (its first four bytes: this
/// crate builds only for little-endian targets), for a futex word that shares
/// one atomic with other state.
pub(crate) fn futex_wait_low(word: &AtomicU64, expected: u32, deadline: Option<&Deadline>) -> bool {
    futex_wait_at(word.as_ptr().cast::<u32>(), expected, deadline)
}

/// [`futex_wake`] on the low half of a 64-bit word (see [`futex_wait_low`]).
pub(crate) fn futex_wake_low(word: &AtomicU64, n: u32) -> u32 {
    futex_wake_at(word.as_ptr().cast::<u32>(), n)
}

fn futex_wait_at(word: *mut u32, expected: u32, deadline: Option<&Deadline>) -> bool {
    let ts = deadline.map_or(std::ptr::null(), |d| &d.ts as *const libc::timespec);
    loop {
        // SAFETY: word points to a live, aligned u32 (the callers pass an
        // AtomicU32, or the first half of an AtomicU64). FUTEX_WAIT_BITSET reads ts as an absolute CLOCK_MONOTONIC time; ts
        // is NULL or a valid timespec. No FUTEX_PRIVATE_FLAG: the word may be in
        // memory shared with other processes.
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

/// `FUTEX_WAKE` (shared): wakes up to `n` waiters on `word`; returns how many woke.
pub fn futex_wake(word: &AtomicU32, n: u32) -> u32 {
    futex_wake_at(word.as_ptr(), n)
}

fn futex_wake_at(word: *mut u32, n: u32) -> u32 {
    let n = n.min(i32::MAX as u32);
    // SAFETY: word points to a live, aligned u32; FUTEX_WAKE takes no other pointer.
    let r = unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, n) };
    r.max(0) as u32
}

/// The calling thread's kernel thread id.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Registers `child` to run in the child after `fork` (`pthread_atfork`).
pub fn at_fork_child(child: extern "C" fn()) {
    // SAFETY: the handler is a plain function with static lifetime; NULL prepare
    // and parent handlers are allowed.
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

/// One futex for [`futex_wait_any`]: `struct futex_waitv` of the kernel.
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

/// Sleeps until one of `words` no longer holds its expected value or is woken,
/// or `deadline` passes (`futex_waitv`, Linux 5.16; shared futexes). Returns
/// `false` only when the deadline passed. On a kernel without `futex_waitv` it
/// naps a millisecond and returns `true`: callers look again either way.
pub fn futex_wait_any(words: &[(&AtomicU32, u32)], deadline: Option<&Deadline>) -> bool {
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
