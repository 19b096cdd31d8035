//! Who a process is, in a form that survives pid reuse: pid plus start time.
//!
//! A pid alone is not an identity: after a process dies its pid is handed out again.
//! The start time (field 22 of `/proc/PID/stat`, in clock ticks since boot) tells a
//! recycled pid from the process that first had it. The segment header records its
//! creator this way, and `multiproc-sync` records lock owners this way.

use std::sync::atomic::{AtomicU64, Ordering};

/// A process's pid and start time.
///
/// # Examples
/// ```
/// use multiproc_shm::ProcessIdentity;
/// let me = ProcessIdentity::current();
/// assert_eq!(me.pid, std::process::id());
/// assert!(me.is_alive());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22); 0 if unknown.
    pub start_time: u64,
}

/// `pid << 32 | low 32 bits of start time`, cached for `current()`; 0 = not cached.
static CURRENT_PID: AtomicU64 = AtomicU64::new(0);
static CURRENT_START: AtomicU64 = AtomicU64::new(0);

impl ProcessIdentity {
    /// The calling process. Cached, and recomputed after `fork` (when the pid changes).
    ///
    /// # Examples
    /// ```
    /// let me = multiproc_shm::ProcessIdentity::current();
    /// assert_eq!(me.pid, std::process::id());
    /// ```
    pub fn current() -> ProcessIdentity {
        let pid = crate::sys::getpid();
        if CURRENT_PID.load(Ordering::Acquire) == u64::from(pid) {
            return ProcessIdentity {
                pid,
                start_time: CURRENT_START.load(Ordering::Relaxed),
            };
        }
        let start_time = read_stat(pid).map(|s| s.start_time).unwrap_or(0);
        CURRENT_START.store(start_time, Ordering::Relaxed);
        CURRENT_PID.store(u64::from(pid), Ordering::Release);
        ProcessIdentity { pid, start_time }
    }

    /// The live process that now has `pid`, or `None` if there is none (or it is a
    /// zombie: dead, not yet reaped).
    ///
    /// # Examples
    /// ```
    /// let me = multiproc_shm::ProcessIdentity::current();
    /// assert_eq!(multiproc_shm::ProcessIdentity::of(me.pid), Some(me));
    /// ```
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        let stat = read_stat(pid)?;
        (!stat.zombie).then_some(ProcessIdentity {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still runs: its pid exists, is not a zombie, and
    /// has the same start time (so it was not recycled).
    ///
    /// When `/proc` cannot be read (hidepid, another user), falls back to `kill(pid, 0)`.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_shm::ProcessIdentity::current().is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        match read_stat(self.pid) {
            Some(stat) => {
                !stat.zombie && (self.start_time == 0 || stat.start_time == self.start_time)
            }
            // No stat file: the process is gone, unless /proc itself is unreadable.
            None if std::path::Path::new("/proc/self/stat").exists() => false,
            None => crate::sys::pid_exists(self.pid),
        }
    }
}

struct Stat {
    zombie: bool,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume
    // after the last ')'. Then field 3 is the state and field 22 the start time.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        zombie: state == "Z" || state == "X",
        start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_is_alive_and_a_made_up_one_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.is_alive());
        assert_eq!(ProcessIdentity::of(me.pid), Some(me));
        let recycled = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !recycled.is_alive(),
            "a different start time means a recycled pid"
        );
        assert!(!ProcessIdentity {
            pid: 0,
            start_time: 0
        }
        .is_alive());
    }
}
