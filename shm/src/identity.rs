//! Who a process or thread is, in a form that survives id reuse.
//!
//! A pid (or tid) alone is not an identity: after a task dies its id is handed out
//! again. Each is paired here with a 64-bit *token* that tells a recycled id from
//! the task that first had it:
//!
//! - the **pidfs inode number** of the task (`fstat` of a pidfd; Linux 6.9 and
//!   later, with `PIDFD_THREAD` for threads). The kernel takes it from a 64-bit
//!   counter bumped for every task it creates, so no two tasks of one boot share
//!   it (checked here: it kept growing past a wrap of the pid space);
//! - where pidfds or `PIDFD_THREAD` are missing, the task's **start time** in
//!   clock ticks after boot (field 22 of `/proc/ID/stat`). That leaves a window:
//!   a task that dies and whose id is handed to a new task *within the same
//!   clock tick of its start* (10 ms at the usual `USER_HZ` of 100) is taken for
//!   the new one. The kernel hands ids out in a cycle, so that takes `pid_max`
//!   task creations within one tick.
//!
//! A token says which kind it is ([`TOKEN_PIDFS`]); a check recomputes the token of
//! the same kind. The segment header records its creator this way, and
//! `multiproc-sync` records lock owners and participants this way.
//!
//! Where neither can be had for a task that exists — no pidfs and no `/proc`
//! mounted (a container or chroot on a kernel before 6.9), a `/proc` that
//! hides other users' tasks (`hidepid`), a process at its limit of open files
//! (both need a descriptor) — its token is 0, *unknown*, and a check against
//! an unknown token, or against one of the other kind, says alive: a live
//! owner is never taken for dead for want of a way to tell. What is lost
//! there is only the recycled-id check (an owner's id taken by a new task
//! reads alive while that task lives), and a process that died and is not yet
//! reaped reads alive until it is (`kill(id, 0)` finds its zombie).
//!
//! Computing a token allocates nothing and takes no lock (plain syscalls and a
//! stack buffer), so a fork handler may do it in the child of a multi-threaded
//! program.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// Set in a token that is a pidfs inode number (clear: a start time in ticks).
pub const TOKEN_PIDFS: u64 = 1 << 63;

/// A process's pid and identity token.
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
    /// What tells this process from a later one with the same pid (see the
    /// [module docs](crate::identity)); 0 if unknown.
    pub token: u64,
}

/// This process's pid and token, cached; recomputed after `fork` (when the pid changes).
static CURRENT_PID: AtomicU64 = AtomicU64::new(0);
static CURRENT_TOKEN: AtomicU64 = AtomicU64::new(0);

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
                token: CURRENT_TOKEN.load(Ordering::Relaxed),
            };
        }
        let token = token_of(pid, Task::Process, Kind::Best).unwrap_or(0);
        CURRENT_TOKEN.store(token, Ordering::Relaxed);
        CURRENT_PID.store(u64::from(pid), Ordering::Release);
        ProcessIdentity { pid, token }
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
        let token = token_of(pid, Task::Process, Kind::Best)?;
        Some(ProcessIdentity { pid, token })
    }

    /// Whether this very process still runs: its pid exists, is not a zombie, and
    /// has the same token (so it was not recycled). A token of 0 (unknown) checks
    /// the pid only.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_shm::ProcessIdentity::current().is_alive());
    /// ```
    pub fn is_alive(&self) -> bool {
        self.pid != 0 && task_alive(self.pid, Task::Process, self.token)
    }
}

/// A process (thread-group leader) or a single thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// A process: its pid.
    Process,
    /// One thread: its tid.
    Thread,
}

/// Which token to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The pidfs inode if this kernel offers it, else the start time.
    Best,
    /// The start time (to compare with a token of that kind).
    StartTime,
}

/// The token of the live task `id` (see the module docs), or `None` when there is
/// no such task or it has ended (a zombie); 0 for a task that exists when
/// nothing here tells its token.
///
/// # Examples
/// ```
/// use multiproc_shm::identity::{task_token, Task};
/// let me = task_token(std::process::id(), Task::Process).unwrap();
/// assert_eq!(task_token(std::process::id(), Task::Process), Some(me));
/// assert_eq!(task_token(0x3fff_fff0, Task::Thread), None); // no such thread
/// ```
pub fn task_token(id: u32, task: Task) -> Option<u64> {
    token_of(id, task, Kind::Best)
}

/// Whether the task `id` runs and still has `token` (computed the same way as
/// `token` was: a pidfs token is compared with a pidfs token). A `token` of 0
/// (unknown) checks that some live task has `id`; so does a token that
/// cannot be recomputed now (see the [module docs](crate::identity)).
///
/// # Examples
/// ```
/// use multiproc_shm::identity::{task_alive, task_token, Task};
/// let pid = std::process::id();
/// let me = task_token(pid, Task::Process).unwrap();
/// assert!(task_alive(pid, Task::Process, me));
/// assert!(!task_alive(pid, Task::Process, me ^ 1)); // another token: a recycled pid
/// ```
pub fn task_alive(id: u32, task: Task, token: u64) -> bool {
    match task_token_like(id, task, token) {
        None => false,
        Some(now) => !comparable(now, token) || now == token,
    }
}

/// Whether two tokens of one task tell a recycled id from the task: both
/// known, and of one kind. A pidfs token recomputed as a start time (its
/// `pidfd_open` failed for want of a descriptor), or as unknown, cannot.
///
/// # Examples
/// ```
/// use multiproc_shm::identity::{comparable, TOKEN_PIDFS};
/// assert!(comparable(5 | TOKEN_PIDFS, 6 | TOKEN_PIDFS));
/// assert!(!comparable(5, 6 | TOKEN_PIDFS)); // a start time, a pidfs inode
/// assert!(!comparable(0, 6)); // unknown
/// ```
pub fn comparable(now: u64, then: u64) -> bool {
    now != 0 && then != 0 && (now ^ then) & TOKEN_PIDFS == 0
}

/// The token of the live task `id` of the same kind as `like` (a pidfs inode
/// number when `like` has [`TOKEN_PIDFS`] or is 0, else a start time), for
/// callers that keep only part of a token and compare that part.
///
/// # Examples
/// ```
/// use multiproc_shm::identity::{task_token, task_token_like, Task, TOKEN_PIDFS};
/// let pid = std::process::id();
/// let best = task_token(pid, Task::Process).unwrap();
/// assert_eq!(task_token_like(pid, Task::Process, best), Some(best));
/// let start = task_token_like(pid, Task::Process, 1).unwrap(); // a start time
/// assert_eq!(start & TOKEN_PIDFS, 0);
/// ```
pub fn task_token_like(id: u32, task: Task, like: u64) -> Option<u64> {
    let kind = if like & TOKEN_PIDFS != 0 || like == 0 {
        Kind::Best
    } else {
        Kind::StartTime
    };
    token_of(id, task, kind)
}

fn token_of(id: u32, task: Task, kind: Kind) -> Option<u64> {
    if id == 0 || id > i32::MAX as u32 {
        return None;
    }
    if kind == Kind::Best {
        match pidfs_token(id, task) {
            Pidfs::Token(t) => return Some(t),
            Pidfs::Gone => return None,
            Pidfs::Unsupported => {}
        }
    }
    match read_stat(id) {
        Some(stat) => (!stat.zombie).then_some(stat.start_time & !TOKEN_PIDFS),
        // Nothing to read: the task is gone, or nothing here can say (no
        // `/proc`, `hidepid`, no descriptor left). One that exists has an
        // unknown token.
        None => crate::sys::task_exists(id).then_some(0),
    }
}

enum Pidfs {
    Token(u64),
    /// No such task, or it has ended.
    Gone,
    /// This kernel has no pidfds, or none for threads: fall back to `/proc`.
    Unsupported,
}

fn pidfs_token(id: u32, task: Task) -> Pidfs {
    let fd = match crate::sys::pidfd_open(id, task == Task::Thread) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Pidfs::Gone,
        Err(_) => return Pidfs::Unsupported,
    };
    // A pidfd is readable once its task has ended (a zombie, for a process).
    match crate::sys::poll_readable_now(fd.as_fd()) {
        Ok(true) => return Pidfs::Gone,
        Ok(false) => {}
        Err(_) => return Pidfs::Unsupported,
    }
    match crate::sys::inode(fd.as_fd()) {
        // Before pidfs (Linux 6.9) every pidfd shared one anonymous inode.
        Ok(ino) if ino > 1 => Pidfs::Token(ino | TOKEN_PIDFS),
        _ => Pidfs::Unsupported,
    }
}

/// What `/proc/ID/stat` says of a task.
pub(crate) struct Stat {
    /// State `Z` or `X`: ended, not reaped.
    pub(crate) zombie: bool,
    /// Field 22: start time in clock ticks after boot.
    pub(crate) start_time: u64,
}

/// Parses `/proc/ID/stat` (ID a pid or a tid). The command name (field 2) may hold
/// spaces and parentheses: fields resume after the last `)`, then field 3 is the
/// state and field 22 the start time. Read into a stack buffer with plain
/// syscalls: no allocation, so a fork handler may call it.
pub(crate) fn read_stat(id: u32) -> Option<Stat> {
    let mut buf = [0u8; 1024];
    let n = crate::sys::read_proc_stat(id, &mut buf)?;
    let text = &buf[..n];
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text.get(close + 2..)?.split(|&b| b == b' ');
    let state = fields.next()?;
    let start_time = parse_u64(fields.nth(18)?)?;
    Some(Stat {
        zombie: state == b"Z" || state == b"X",
        start_time,
    })
}

/// A decimal number (possibly followed by a newline), without allocating.
fn parse_u64(field: &[u8]) -> Option<u64> {
    let digits = field.strip_suffix(b"\n").unwrap_or(field);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
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
            token: me.token ^ 1,
            ..me
        };
        assert!(!recycled.is_alive(), "another token means a recycled pid");
        assert!(!ProcessIdentity { pid: 0, token: 0 }.is_alive());
    }

    #[test]
    fn threads_have_tokens_of_their_own_that_end_with_them() {
        let tid = || {
            // SAFETY: gettid has no preconditions.
            unsafe { libc::gettid() as u32 }
        };
        let main = task_token(tid(), Task::Thread).unwrap();
        let (other, other_tid) = std::thread::spawn(move || {
            let t = tid();
            (task_token(t, Task::Thread).unwrap(), t)
        })
        .join()
        .unwrap();
        assert_ne!(main, other);
        assert!(task_alive(tid(), Task::Thread, main));
        assert!(!task_alive(other_tid, Task::Thread, other), "it exited");
    }

    #[test]
    fn stat_fields_are_read_without_allocating() {
        assert_eq!(parse_u64(b"12345"), Some(12345));
        assert_eq!(parse_u64(b"7\n"), Some(7));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
        let me = read_stat(std::process::id()).unwrap();
        assert!(!me.zombie && me.start_time > 0);
        assert!(read_stat(0x3fff_fff0).is_none());
    }

    #[test]
    fn a_start_time_token_is_compared_as_one() {
        let pid = std::process::id();
        let start = read_stat(pid).unwrap().start_time;
        assert!(task_alive(pid, Task::Process, start));
        assert!(!task_alive(pid, Task::Process, start + 1));
    }
}
