//! The libc calls of this crate other than the futex ones (those are in
//! [`crate::futex`]): the monotonic clock, thread ids, fork handlers.

use std::time::Duration;

/// An absolute point on `CLOCK_MONOTONIC`, the clock futex timeouts use.
///
/// Waits take a deadline rather than a duration so that a wait that is woken
/// spuriously, or retried after `EINTR`, does not start its timeout again.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub(crate) ts: libc::timespec,
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
