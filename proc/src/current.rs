//! The thin layer: `fork`, `wait_any`, pids, the current and parent process,
//! children, CPU count, subreaper.

use std::os::fd::AsFd;
use std::time::Duration;

use crate::registry;
use crate::status::WaitStatus;
use crate::{sys, Error, Result};

/// What `fork` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent {
        /// The child's pid.
        child: u32,
    },
    /// In the child.
    Child,
}

/// `fork()`: returns twice, [`Fork::Parent`] with the child's pid in the parent and
/// [`Fork::Child`] in the child. Python's `os.fork`.
///
/// Prefer [`Process`](crate::Process), which holds the child by a pidfd, reaps it,
/// and keeps the child from returning into the parent's code.
///
/// The child has no children of its own: the parent's `Process` children are
/// not listed by [`active_children`] there, and its `exit` (which runs the
/// at-exit clean-up that terminates daemonic children) leaves them alone.
/// Its `exit` runs the exit handlers it inherited, as after `os.fork` —
/// unless this process was itself started by a [`Process`](crate::Process)
/// (or a fork server): then the copy leaves by `_exit` after the clean-up,
/// as that process would (see [`Process`](crate::Process)).
///
/// # Safety
/// - If this process has other threads, the child has only the calling one: until
///   it calls `exec` or `_exit` it may only do what is async-signal-safe (see
///   `signal-safety(7)`) — no allocation, no locks, no `println!`.
/// - The child must not return into code that assumes it is the parent; end it with
///   `std::process::exit` or `libc::_exit`.
///
/// # Errors
/// [`Error::Io`] when `fork` fails (`EAGAIN`, `ENOMEM`).
///
/// # Examples
/// ```
/// use multiproc_proc::{fork, wait_any, Fork};
/// // SAFETY: single-threaded doctest; the child only calls _exit.
/// match unsafe { fork() }? {
///     Fork::Child => unsafe { libc::_exit(7) },
///     Fork::Parent { child } => {
///         let (pid, status) = wait_any()?;
///         assert_eq!(pid, child);
///         assert_eq!(status.exit_code(), Some(7));
///     }
/// }
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub unsafe fn fork() -> Result<Fork> {
    // SAFETY: the caller upholds the child's restrictions.
    match unsafe { sys::fork() }.map_err(Error::io("fork"))? {
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent { child: pid as u32 }),
    }
}

/// Waits for any child to end and reaps it: Python's `os.wait()`, returning the pid
/// and the raw status (256 for `exit(1)`).
///
/// It may reap a child a [`Process`](crate::Process) handle holds; that handle's
/// `join` then fails. Use one or the other for a given child.
///
/// # Errors
/// [`Error::Io`] with `ECHILD` when there are no children.
///
/// # Examples
/// ```
/// use multiproc_proc::{fork, wait_any, Fork};
/// // SAFETY: single-threaded doctest; the child only calls _exit.
/// if let Fork::Child = unsafe { fork() }? {
///     unsafe { libc::_exit(3) };
/// }
/// assert_eq!(wait_any()?.1.exit_code(), Some(3));
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub fn wait_any() -> Result<(u32, WaitStatus)> {
    let (pid, raw) = sys::wait_any().map_err(Error::io("wait"))?;
    Ok((pid as u32, WaitStatus::from_raw(raw)))
}

/// [`wait_any`] without waiting: a child that has ended, reaped, or `None`
/// while every child still runs (Python's `os.waitpid(-1, os.WNOHANG)`).
///
/// # Errors
/// [`Error::Io`] with `ECHILD` when there are no children.
///
/// # Examples
/// ```
/// use multiproc_proc::{fork, try_wait_any, Fork};
/// // SAFETY: single-threaded doctest; the child only sleeps and calls _exit.
/// if let Fork::Child = unsafe { fork() }? {
///     unsafe { libc::sleep(1); libc::_exit(0) };
/// }
/// assert!(try_wait_any()?.is_none());
/// # multiproc_proc::wait_any()?;
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub fn try_wait_any() -> Result<Option<(u32, WaitStatus)>> {
    let reaped = sys::try_wait_any().map_err(Error::io("waitpid"))?;
    Ok(reaped.map(|(pid, raw)| (pid as u32, WaitStatus::from_raw(raw))))
}

/// [`wait_any`], waiting at most `timeout`: [`Error::Timeout`] if no child
/// ended by then. No descriptor stands for "any child", so this looks with
/// [`try_wait_any`] in naps that grow from 50 µs to 1 ms: a child that ends
/// is seen within about a millisecond.
///
/// # Errors
/// [`Error::Timeout`]; [`Error::Io`] with `ECHILD` when there are no children.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use multiproc_proc::{fork, wait_any_timeout, Error, Fork};
/// // SAFETY: single-threaded doctest; the child only sleeps and calls _exit.
/// if let Fork::Child = unsafe { fork() }? {
///     unsafe { libc::usleep(200_000); libc::_exit(4) };
/// }
/// assert!(matches!(wait_any_timeout(Duration::from_millis(10)), Err(Error::Timeout)));
/// assert_eq!(wait_any_timeout(Duration::from_secs(60))?.1.exit_code(), Some(4));
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub fn wait_any_timeout(timeout: std::time::Duration) -> Result<(u32, WaitStatus)> {
    use std::time::{Duration, Instant};
    // A timeout too large for the clock waits for ever.
    let deadline = Instant::now().checked_add(timeout);
    let mut nap = Duration::from_micros(50);
    loop {
        if let Some(reaped) = try_wait_any()? {
            return Ok(reaped);
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left,
                _ => return Err(Error::Timeout),
            },
            None => nap,
        };
        std::thread::sleep(nap.min(left));
        nap = (nap * 2).min(Duration::from_millis(1));
    }
}

/// This process's pid (`os.getpid()`).
///
/// # Examples
/// ```
/// assert_eq!(multiproc_proc::getpid(), std::process::id());
/// ```
pub fn getpid() -> u32 {
    sys::getpid()
}

/// The parent's pid (`os.getppid()`).
///
/// # Examples
/// ```
/// assert!(multiproc_proc::getppid() > 0);
/// ```
pub fn getppid() -> u32 {
    sys::getppid()
}

/// A process as `current_process()`, `parent_process()` and `active_children()` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: u32,
    /// Its name: `MainProcess` for a process not started by this crate.
    pub name: String,
    /// Whether it is daemonic.
    pub daemon: bool,
}

/// This process (Python's `current_process()`).
///
/// # Examples
/// ```
/// let me = multiproc_proc::current_process();
/// assert_eq!(me.name, "MainProcess");
/// assert_eq!(me.pid, std::process::id());
/// ```
pub fn current_process() -> ProcessInfo {
    let st = registry::lock();
    ProcessInfo {
        pid: sys::getpid(),
        name: st.my_name().to_string(),
        daemon: registry::is_daemon(),
    }
}

/// Renames this process (Python's `current_process().name = name`): what
/// [`current_process`] says from now on here, and what the processes it
/// starts see as their parent's name. A pool's workers are named so
/// (`ForkPoolWorker-N`).
///
/// # Examples
/// ```
/// multiproc_proc::set_current_process_name("loader");
/// assert_eq!(multiproc_proc::current_process().name, "loader");
/// ```
pub fn set_current_process_name(name: impl Into<String>) {
    registry::lock().me.name = Some(registry::Name::Given(name.into().into()));
}

/// The process that started this one with [`Process`](crate::Process) (or,
/// in a child of a [`ForkServer`](crate::ForkServer) such as a pool's
/// worker, the process that made the server), or `None` in a process not
/// started that way (Python's `parent_process()`): its pid and name,
/// whether it still runs, and a way to wait for it to end.
///
/// # Examples
/// ```
/// assert!(multiproc_proc::parent_process().is_none()); // not started by Process
/// let mut p = multiproc_proc::Process::new(|| {
///     let parent = multiproc_proc::parent_process().expect("started by Process");
///     i32::from(!(parent.is_alive() && parent.pid() == multiproc_proc::getppid()))
/// });
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let mut st = registry::lock();
    let (pid, name) = st.me.parent.clone()?;
    if st.me.parent_pidfd.is_none() {
        // Opened at the first call (not at the fork: most children never
        // ask). While the parent is this process's parent its pid cannot be
        // recycled, and when it ends this process is given another parent at
        // once: a pidfd opened first and checked after against getppid is the
        // parent's. None when the parent has ended (or the kernel has no
        // pidfds); the next call tries again.
        st.me.parent_pidfd = sys::pidfd_open(pid as libc::pid_t)
            .ok()
            .filter(|_| sys::getppid() == pid);
    }
    let pidfd = st
        .me
        .parent_pidfd
        .as_ref()
        .and_then(|fd| fd.try_clone().ok());
    Some(ParentProcess {
        pid,
        name: name.to_string(),
        pidfd,
    })
}

/// The parent of a process started by [`Process`](crate::Process) (see
/// [`parent_process`]), held by a pidfd opened while it was still this
/// process's parent: it cannot be confused with a later process that got the
/// same pid.
#[derive(Debug)]
pub struct ParentProcess {
    pid: u32,
    name: String,
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl ParentProcess {
    /// Its pid.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| {
    ///     multiproc_proc::parent_process().map_or(1, |p| i32::from(p.pid() != multiproc_proc::getppid()))
    /// });
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its name (`MainProcess` for a program's main process).
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| {
    ///     multiproc_proc::parent_process().map_or(1, |p| i32::from(p.name() != "MainProcess"))
    /// });
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it still runs.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| {
    ///     i32::from(!multiproc_proc::parent_process().is_some_and(|p| p.is_alive()))
    /// });
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => !sys::poll_readable(fd.as_fd(), Some(Duration::ZERO)).unwrap_or(true),
            None => false,
        }
    }

    /// Waits until it has ended (Python's `parent_process().join()`).
    ///
    /// # Errors
    /// [`Error::Io`] if waiting fails.
    ///
    /// # Examples
    /// See [`join_timeout`](ParentProcess::join_timeout).
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// [`join`](ParentProcess::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it still runs; [`Error::Io`] if waiting fails.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let mut p = multiproc_proc::Process::new(|| {
    ///     let parent = multiproc_proc::parent_process().unwrap();
    ///     // The parent waits for us: it does not end within 10 ms.
    ///     match parent.join_timeout(Duration::from_millis(10)) {
    ///         Err(multiproc_proc::Error::Timeout) => 0,
    ///         _ => 1,
    ///     }
    /// });
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(Some(timeout))
    }

    /// Waits for the pidfd to turn readable, forever when `timeout` is `None`.
    fn join_until(&self, timeout: Option<Duration>) -> Result<()> {
        let Some(fd) = &self.pidfd else {
            return Ok(());
        };
        if sys::poll_readable(fd.as_fd(), timeout).map_err(Error::io("poll"))? {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// The pidfd (Python's `sentinel`): readable once the parent has ended.
    /// `None` when the parent had ended before this process could open one.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| {
    ///     i32::from(multiproc_proc::parent_process().unwrap().sentinel().is_none())
    /// });
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }
}

/// This process's children that still run (Python's `active_children()`); as in
/// Python, reaps the finished ones whose handles were dropped.
///
/// # Examples
/// ```
/// let mut p = multiproc_proc::Process::new(|| std::thread::sleep(std::time::Duration::from_millis(200)));
/// p.start()?;
/// assert!(multiproc_proc::active_children().iter().any(|c| Some(c.pid) == p.pid()));
/// p.join()?;
/// assert!(multiproc_proc::active_children().is_empty());
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    let mut st = registry::lock();
    st.reap_orphans();
    let mut orphan_ended = false;
    let active = st
        .children
        .iter()
        .filter(|e| {
            let ended = registry::is_zombie(e.pid);
            orphan_ended |= ended && e.orphan.is_some();
            !ended
        })
        .map(|e| ProcessInfo {
            pid: e.pid,
            name: e.name.to_string(),
            daemon: e.daemon,
        })
        .collect();
    if orphan_ended {
        // A child whose handle was dropped ended between the reaping above and
        // this look: reap it too, rather than leave a zombie that the list no
        // longer shows.
        st.reap_orphans();
    }
    active
}

/// The number of CPUs this process may run on (its affinity mask; Python's
/// `os.process_cpu_count()`, which `multiprocessing.cpu_count` users usually want).
///
/// # Examples
/// ```
/// assert!(multiproc_proc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::affinity_cpus()
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphaned
/// descendants are re-parented to it instead of to init, so a supervisor can reap
/// them with [`wait_any`].
///
/// # Errors
/// [`Error::Io`] if `prctl` fails.
///
/// # Examples
/// ```
/// multiproc_proc::set_child_subreaper(true)?;
/// multiproc_proc::set_child_subreaper(false)?;
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub fn set_child_subreaper(on: bool) -> Result<()> {
    sys::set_child_subreaper(on).map_err(Error::io("prctl(PR_SET_CHILD_SUBREAPER)"))
}

/// Reaps the finished children whose handles were dropped, now.
///
/// # Examples
/// ```
/// let mut p = multiproc_proc::Process::new(|| ());
/// p.start()?;
/// drop(p); // not joined
/// std::thread::sleep(std::time::Duration::from_millis(50));
/// multiproc_proc::reap_orphans();
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub fn reap_orphans() {
    registry::lock().reap_orphans();
}
