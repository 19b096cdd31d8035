//! [`Process`]: Python's `multiprocessing.Process`, started by `fork`.

use std::cell::OnceCell;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::registry::{self, Entry, Identity, Name};
use crate::status::{ChildResult, WaitStatus};
use crate::{sys, Discarded, Error, Result};

enum State {
    New,
    Running {
        pid: u32,
        pidfd: OwnedFd,
    },
    Finished {
        pid: u32,
        pidfd: OwnedFd,
        status: WaitStatus,
    },
    Closed,
}

/// A child process running a closure, started by `fork`.
///
/// Python's `Process(target=..., name=..., daemon=...)`: [`start`](Process::start),
/// [`join`](Process::join), [`is_alive`](Process::is_alive),
/// [`exitcode`](Process::exitcode) (`-N` when killed by signal `N`),
/// [`terminate`](Process::terminate), [`kill`](Process::kill),
/// [`sentinel`](Process::sentinel), [`close`](Process::close).
///
/// Every started child is held by a pidfd, so `join`, `terminate`, `kill` and
/// `is_alive` never act on a recycled pid.
///
/// In the child, the closure's return value ([`ChildResult`]) becomes the exit code; a
/// panic prints its message and exits with 1 (Python's traceback and exitcode 1);
/// stdout and stderr are flushed, and the child leaves with `_exit`: the parent's
/// exit handlers and destructors never run twice and the child never returns into
/// the parent's code. An `exit` in the closure (`std::process::exit`, Python's
/// `sys.exit`, or C's `exit`) leaves the same way, with its status: the exit
/// handlers the parent registered (`atexit`; a fork copies them) do not run in
/// the child, as they do not in Python's — except those the parent registered
/// after its first start, which run first (the child's way out is registered
/// then, once: in each child it would cost every start two page faults). This
/// needs glibc's `on_exit`; with another C library they all run, as after any
/// `fork`. Before it leaves, the child terminates its own daemonic children
/// and joins the others, as Python does.
///
/// Threads the closure started are not waited for: the child leaves once the
/// closure returns, as a Rust program ends when `main` returns, where Python's
/// child first joins its non-daemonic threads (CPython's
/// `test_wait_for_threads`). Rust marks no thread daemonic, so waiting for
/// every thread would wait for ever on one that never ends (a pool's, a
/// runtime's): join yours in the closure.
///
/// # Reaping
/// A child is reaped by `join`, by `is_alive`/`exitcode` once it has ended, by
/// `drop` if it has ended by then, and otherwise later: at the next `start` or
/// [`active_children`](crate::active_children) call, or when this process exits
/// (which waits for non-daemonic children, as Python does). Dropping the handle
/// never ends the child (as in Python, and as with `std::process::Child`): a
/// daemonic child runs on until this process exits — which terminates it, then
/// kills it after a grace second — or is killed by the kernel if this process
/// dies abruptly.
///
/// The kernel's part of that (the parent-death signal) fires when the *thread*
/// that called `start` ends, not only the process: start daemons from a thread
/// that lives as long as they should (the main thread, typically).
///
/// # Forking from a multi-threaded process
/// `fork` copies only the calling thread. A lock another thread held at that
/// moment — including the allocator's or stdout's — stays locked in the child
/// forever. Start processes before starting threads, keep the child to simple
/// work, or use the [`ForkServer`](crate::ForkServer).
///
/// # Examples
/// ```
/// use multiproc_proc::Process;
/// let mut p = Process::new(|| 3).named("worker");
/// p.start()?;
/// assert_eq!(p.join()?, 3);
/// assert_eq!(p.exitcode(), Some(3));
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub struct Process<'a> {
    name: Name,
    /// Its identity (Python's `_identity`), which a `named` process keeps.
    identity: Identity,
    /// `name` as text, made at the first [`name`](Process::name) call.
    text: OnceCell<String>,
    daemon: bool,
    target: Option<Box<dyn FnOnce() -> i32 + 'a>>,
    state: State,
}

impl<'a> Process<'a> {
    /// A process that will run `target` when started, named `Process-N`
    /// (the N-th made in this process), or `Process-M:N` when this process
    /// is `Process-M` (started by this crate), as Python numbers them.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| Ok::<u8, String>(4));
    /// p.start()?;
    /// assert_eq!(p.join()?, 4);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn new<R: ChildResult>(target: impl FnOnce() -> R + 'a) -> Process<'a> {
        Process::of_kind("Process", target)
    }

    /// [`new`](Process::new), with `kind` for `Process` in its default name.
    fn of_kind<R: ChildResult>(kind: &'static str, target: impl FnOnce() -> R + 'a) -> Process<'a> {
        let identity = registry::lock().next_identity();
        Process {
            name: Name::Numbered {
                kind,
                identity: identity.clone(),
            },
            identity,
            text: OnceCell::new(),
            daemon: false,
            target: Some(Box::new(move || target().exit_code())),
            state: State::New,
        }
    }

    /// A process made from a value that says what it runs: Python's subclass
    /// of `Process` that overrides `run` (and may set `name`). The value is
    /// moved into the child, which calls [`Run::run`] on it.
    ///
    /// # Examples
    /// ```
    /// use multiproc_proc::{Process, Run};
    ///
    /// struct Chat {
    ///     person: String,
    /// }
    ///
    /// impl Run for Chat {
    ///     type Output = ();
    ///     fn run(self) {
    ///         println!("{} is chatting", self.person);
    ///     }
    ///     fn name(&self) -> Option<String> {
    ///         Some(format!("chat with {}", self.person))
    ///     }
    /// }
    ///
    /// let mut p = Process::from_run(Chat { person: "Ann".into() });
    /// assert_eq!(p.name(), "chat with Ann");
    /// p.start()?;
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn from_run<T: Run + 'a>(target: T) -> Process<'a> {
        let name = target.name();
        let p = Process::of_kind(type_name_alone::<T>(), move || target.run());
        match name {
            Some(name) => p.named(name),
            None => p,
        }
    }

    /// Sets the name (builder style; Python's `Process(name=...)`). Once it is
    /// started, as Python's `p.name = ...`: the parent's name for it
    /// ([`active_children`](crate::active_children) too) changes, the
    /// child's own does not.
    ///
    /// # Examples
    /// ```
    /// let p = multiproc_proc::Process::new(|| ()).named("loader");
    /// assert_eq!(p.name(), "loader");
    /// ```
    pub fn named(mut self, name: impl Into<String>) -> Process<'a> {
        self.name = Name::Given(name.into().into());
        self.text = OnceCell::new();
        if let State::Running { pid, .. } = self.state {
            let mut st = registry::lock();
            if let Some(e) = st.children.iter_mut().find(|e| e.pid == pid) {
                e.name = self.name.clone();
            }
        }
        self
    }

    /// Makes it daemonic (builder style): it never outlives this process, and may
    /// not start children of its own. Once it is started this changes nothing
    /// ([`is_daemon`](Process::is_daemon) goes on telling what the child is),
    /// where Python raises `AssertionError` ("process has already started").
    ///
    /// # Examples
    /// ```
    /// let p = multiproc_proc::Process::new(|| ()).daemon(true);
    /// assert!(p.is_daemon());
    /// ```
    pub fn daemon(mut self, daemon: bool) -> Process<'a> {
        if matches!(self.state, State::New) {
            self.daemon = daemon;
        }
        self
    }

    /// The name (`Process-N` unless [`named`](Process::named); Python's `name`).
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_proc::Process::new(|| ()).name().starts_with("Process-"));
    /// ```
    pub fn name(&self) -> &str {
        match &self.name {
            Name::Given(name) => name,
            name => self.text.get_or_init(|| name.to_string()),
        }
    }

    /// Whether it is daemonic.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_proc::Process::new(|| ()).is_daemon());
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The pid, once started.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| ());
    /// assert_eq!(p.pid(), None);
    /// p.start()?;
    /// assert!(p.pid().is_some());
    /// p.join()?;
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        match self.state {
            State::Running { pid, .. } | State::Finished { pid, .. } => Some(pid),
            State::New | State::Closed => None,
        }
    }

    /// Starts the child: forks, and runs the closure there.
    ///
    /// Stdout is flushed first (what it holds would be written twice, as
    /// Python's `start` flushes), and stdout's and stderr's locks are held
    /// across the fork: a thread in the middle of a `println!` finishes it
    /// first, and the child can print (a lock copied while another thread
    /// held it stays held in the child, by a thread it does not have). A
    /// thread that holds one stream's lock while it waits for the other's
    /// would wait for this call, and this call for it.
    ///
    /// The child is held by a pidfd, opened after the fork. So that a start
    /// at the limit of open files fails before its fork (Python's fails at
    /// its `pipe`, before its fork, too), rather than with a child that has
    /// begun its closure, the first start keeps one descriptor open for
    /// good (an unbound Unix socket, close-on-exec): a pidfd that finds no
    /// other slot takes its, and the next start opens another or fails
    /// there.
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`], [`Error::Closed`], [`Error::DaemonChildren`] in a
    /// daemonic process, [`Error::TooManyOpenFiles`] at the limit of open
    /// files (nothing forked; the same `Process` may start once descriptors
    /// are freed), [`Error::Io`] when `fork` or `pidfd_open` fails otherwise,
    /// [`Error::Unsupported`] where `pidfd_open` is refused (an old kernel, a
    /// tool or sandbox that does not pass it on).
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| ());
    /// p.start()?;
    /// assert!(p.start().is_err()); // not twice
    /// p.join()?;
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn start(&mut self) -> Result<()> {
        match self.state {
            State::New => {}
            State::Closed => {
                return Err(Error::Closed {
                    name: self.name().to_owned(),
                })
            }
            _ => {
                return Err(Error::AlreadyStarted {
                    name: self.name().to_owned(),
                })
            }
        }
        if registry::is_daemon() {
            return Err(Error::DaemonChildren);
        }
        // In a process that ignores SIGCHLD the kernel reaps a child the
        // moment it ends (and a SIGCHLD handler may), and its pid cannot be
        // opened after that: the child then waits until its parent holds its
        // pidfd (a pipe; only then, as it costs the child a wake-up).
        let handshake = if sys::reaping() != sys::Reaping::Waited {
            Some(sys::handshake_pipe().map_err(Error::io("pipe2"))?)
        } else {
            None
        };
        // Stdout flushed (or what it holds is written twice, by parent and
        // child), and both streams held across the fork (see `StdStreams`).
        // Taken before the registry: a thread that holds a stream's lock may
        // make a `Process` (which takes the registry) meanwhile.
        let streams = sys::hold_std_streams();
        let mut st = registry::lock();
        st.reap_orphans();
        st.ensure_at_exit();
        // At the limit of open files the start fails here, before a child
        // exists, rather than after its fork (its pidfd refused, the child,
        // already running its closure, killed): see `State::spare`.
        if st.spare.is_none() {
            keep_a_spare(&mut st)?;
        }
        let target = self.target.take().expect("a new process has its target");
        let parent = (sys::getpid(), st.my_name());
        // Register before forking: after fork every page the parent writes is
        // copied, so the parent only patches the pid in afterwards.
        st.children.push(Entry {
            pid: 0,
            name: self.name.clone(),
            daemon: self.daemon,
            orphan: None,
        });
        let slot = st.children.len() - 1;
        // SAFETY: the child below runs the closure and leaves with _exit; the
        // registry lock and the standard streams' are held across fork, so the
        // child does not inherit them held by a thread it does not have. Other
        // locks are the documented hazard.
        let pid = match unsafe { sys::fork() } {
            Ok(pid) => pid,
            Err(e) => {
                st.children.pop();
                return Err(Error::io("fork")(e));
            }
        };
        drop(streams);
        if pid == 0 {
            if let Some((read, write)) = handshake {
                // Its own write end closed first: a parent that dies before
                // writing leaves the read at end of file, not blocked.
                drop(write);
                sys::await_byte(read.as_fd());
                drop(read);
            }
            if self.daemon
                && (sys::set_parent_death_signal(libc::SIGKILL).is_err()
                    || sys::getppid() != parent.0)
            {
                // The parent died before the death signal was armed: go as it would.
                sys::exit_now(1);
            }
            // Every page written from here on is copied (copy-on-write): the child
            // path writes as little as it can, and allocates nothing.
            if self.daemon {
                registry::set_daemon(true);
            }
            // The parent's children, still listed, are forgotten at this
            // process's first look (`registry::lock`), if it makes one.
            // SAFETY: a bitwise copy of the name, without writing to `self` (whose
            // page the child would copy): the child leaves by exit_now below and
            // never drops `self`, so the String has one owner here.
            st.me.name = Some(unsafe { std::ptr::read(&self.name) });
            // SAFETY: the same for the identity.
            st.become_child(unsafe { std::ptr::read(&self.identity) });
            st.me.parent = Some(parent);
            // Its pidfd is opened by the first parent_process() call, not here:
            // a system call and a page less for every child (the one inherited
            // names this process's own parent, if any: not ours).
            st.me.parent_pidfd = None;
            drop(st);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(target)).unwrap_or(1);
            // (An `exit` in `target` leaves by `registry::at_exit`, which
            // the parent registered before this fork.)
            registry::exit_cleanup();
            // stderr is unbuffered; stdout may hold a partial line.
            let _ = std::io::stdout().flush();
            sys::exit_now(code);
        }
        let pid = pid as u32;
        let pidfd = match sys::pidfd_open(pid as libc::pid_t) {
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => pidfd_in_spare_slot(&mut st, pid),
            r => r,
        };
        if let Some((read, write)) = handshake {
            sys::send_byte(write.as_fd());
            drop((read, write));
        }
        let pidfd = match pidfd {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd we cannot control it safely: end it now.
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::waitpid(pid, false);
                st.children.remove(slot);
                return Err(Error::io("pidfd_open")(e));
            }
        };
        st.children[slot].pid = pid;
        drop(st);
        self.state = State::Running { pid, pidfd };
        Ok(())
    }

    /// Waits for the child to end; returns its [exitcode](Process::exitcode).
    ///
    /// # Errors
    /// [`Error::NotStarted`], [`Error::Closed`], [`Error::Io`];
    /// [`Error::StatusDiscarded`] once the child has ended if this process
    /// ignores `SIGCHLD` (the kernel then reaps children and keeps no status),
    /// or if another wait in this process reaped it first (a `SIGCHLD`
    /// handler, [`wait_any`](crate::wait_any));
    /// [`is_alive`](Process::is_alive) then answers `false` and
    /// [`exitcode`](Process::exitcode) `None`.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| 2);
    /// p.start()?;
    /// assert_eq!(p.join()?, 2);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn join(&mut self) -> Result<i32> {
        Ok(self.join_timeout_inner(None)?.expect("no timeout"))
    }

    /// [`join`](Process::join), waiting at most `timeout` (Python's
    /// `join(timeout)` followed by a look at `exitcode`). A timeout too large
    /// for the clock (`Duration::MAX`) waits as `join` does.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it still runs, and as for [`join`](Process::join).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let mut p = multiproc_proc::Process::new(|| std::thread::sleep(Duration::from_secs(5)));
    /// p.start()?;
    /// assert!(matches!(
    ///     p.join_timeout(Duration::from_millis(10)),
    ///     Err(multiproc_proc::Error::Timeout)
    /// ));
    /// p.kill()?;
    /// assert_eq!(p.join()?, -9);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<i32> {
        self.join_timeout_inner(Some(timeout))?
            .ok_or(Error::Timeout)
    }

    fn join_timeout_inner(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        match &self.state {
            State::New => Err(Error::NotStarted {
                name: self.name().to_owned(),
            }),
            State::Closed => Err(Error::Closed {
                name: self.name().to_owned(),
            }),
            State::Finished { status, .. } => Ok(Some(status.exitcode())),
            State::Running { pidfd, .. } => {
                // Without a timeout, waitid blocks by itself: no poll needed.
                if timeout.is_some()
                    && !sys::poll_readable(pidfd.as_fd(), timeout).map_err(Error::io("poll"))?
                {
                    return Ok(None);
                }
                Ok(self.reap(false)?.map(WaitStatus::exitcode))
            }
        }
    }

    /// Reaps a running child if it has ended (or waits when `!nohang`).
    fn reap(&mut self, nohang: bool) -> Result<Option<WaitStatus>> {
        let State::Running { pid, pidfd } = &self.state else {
            return Ok(None);
        };
        let raw = match sys::wait_pidfd(pidfd.as_fd(), nohang) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(None),
            // Ended, and reaped by someone else (the pidfd is ours, so the
            // child was ours): no status is left to wait for.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                let why = if sys::reaping() == sys::Reaping::ByKernel {
                    Discarded::SigchldIgnored
                } else {
                    Discarded::ReapedElsewhere
                };
                return Err(Error::StatusDiscarded { pid: *pid, why });
            }
            Err(e) => return Err(Error::io("waitid")(e)),
        };
        let pid = *pid;
        let status = WaitStatus::from_raw(raw);
        let State::Running { pidfd, .. } = std::mem::replace(&mut self.state, State::Closed) else {
            unreachable!("checked above");
        };
        self.state = State::Finished { pid, pidfd, status };
        registry::lock().remove(pid);
        Ok(Some(status))
    }

    /// Whether the child still runs (reaps it if it has ended).
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| std::thread::sleep(std::time::Duration::from_secs(10)));
    /// p.start()?;
    /// assert!(p.is_alive());
    /// p.kill()?;
    /// p.join()?;
    /// assert!(!p.is_alive());
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn is_alive(&mut self) -> bool {
        matches!(self.state, State::Running { .. }) && matches!(self.reap(true), Ok(None))
    }

    /// Python's `exitcode`: `None` while running (or not started), the exit code,
    /// or `-N` when killed by signal `N`.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| 1);
    /// assert_eq!(p.exitcode(), None);
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(1));
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn exitcode(&mut self) -> Option<i32> {
        let _ = self.reap(true);
        match &self.state {
            State::Finished { status, .. } => Some(status.exitcode()),
            _ => None,
        }
    }

    /// The raw wait status, once reaped.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| 1);
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.wait_status().unwrap().raw(), 256);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn wait_status(&self) -> Option<WaitStatus> {
        match &self.state {
            State::Finished { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Sends SIGTERM (Python's `terminate()`). Nothing happens if it has ended.
    ///
    /// # Errors
    /// [`Error::NotStarted`], [`Error::Closed`], [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| std::thread::sleep(std::time::Duration::from_secs(10)));
    /// p.start()?;
    /// p.terminate()?;
    /// assert_eq!(p.join()?, -15);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn terminate(&self) -> Result<()> {
        self.send(libc::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`). Nothing happens if it has ended.
    ///
    /// # Errors
    /// As for [`terminate`](Process::terminate).
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| std::thread::sleep(std::time::Duration::from_secs(10)));
    /// p.start()?;
    /// p.kill()?;
    /// assert_eq!(p.join()?, -9);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.send(libc::SIGKILL)
    }

    /// Sends `signal` through the pidfd. Nothing happens if it has ended
    /// (as for [`terminate`](Process::terminate)); 0 sends nothing and only
    /// checks, as `kill(2)` does.
    ///
    /// # Errors
    /// [`Error::InvalidSignal`] for a number no signal has (in any state:
    /// not only while the process runs, when the kernel would refuse it);
    /// as for [`terminate`](Process::terminate).
    ///
    /// A child inherits the signals its parent ignores: a program started
    /// as a shell script's background job ignores `SIGINT` (POSIX), and so
    /// do its children, which a `SIGINT` then does not end (a Python child
    /// no more than ours).
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| std::thread::sleep(std::time::Duration::from_secs(10)));
    /// p.start()?;
    /// p.send(libc::SIGUSR1)?;
    /// assert_eq!(p.join()?, -libc::SIGUSR1);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn send(&self, signal: i32) -> Result<()> {
        let max = libc::SIGRTMAX();
        if !(0..=max).contains(&signal) {
            return Err(Error::InvalidSignal { signal, max });
        }
        match &self.state {
            State::New => Err(Error::NotStarted {
                name: self.name().to_owned(),
            }),
            State::Closed => Err(Error::Closed {
                name: self.name().to_owned(),
            }),
            State::Finished { .. } => Ok(()),
            State::Running { pidfd, .. } => match sys::pidfd_send_signal(pidfd.as_fd(), signal) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()), // ended meanwhile
                r => r.map_err(Error::io("pidfd_send_signal")),
            },
        }
    }

    /// The pidfd: readable (for `poll`) once the child has ended. Python's `sentinel`.
    ///
    /// # Errors
    /// [`Error::NotStarted`], [`Error::Closed`].
    ///
    /// # Examples
    /// ```
    /// use std::os::fd::AsRawFd;
    /// let mut p = multiproc_proc::Process::new(|| ());
    /// p.start()?;
    /// let mut pfd = libc::pollfd { fd: p.sentinel()?.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    /// // SAFETY: one valid pollfd.
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1); // readable once it ends
    /// p.join()?;
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        match &self.state {
            State::Running { pidfd, .. } | State::Finished { pidfd, .. } => Ok(pidfd.as_fd()),
            State::New => Err(Error::NotStarted {
                name: self.name().to_owned(),
            }),
            State::Closed => Err(Error::Closed {
                name: self.name().to_owned(),
            }),
        }
    }

    /// Releases the handle's resources (Python's `close()`).
    ///
    /// # Errors
    /// [`Error::StillRunning`] if the child has not ended.
    ///
    /// # Examples
    /// ```
    /// let mut p = multiproc_proc::Process::new(|| ());
    /// p.start()?;
    /// p.join()?;
    /// p.close()?;
    /// assert!(p.join().is_err());
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn close(&mut self) -> Result<()> {
        if let State::Running { pid, .. } = self.state {
            if self.reap(true)?.is_none() {
                return Err(Error::StillRunning {
                    name: self.name().to_owned(),
                    pid,
                });
            }
        }
        self.state = State::Closed;
        Ok(())
    }
}

/// Opens the registry's spare descriptor (see `State::spare`): out of
/// line, as it happens once in a process (and a start's frame is the stack
/// a child's every start writes after its fork).
#[cold]
#[inline(never)]
fn keep_a_spare(st: &mut registry::Guard) -> Result<()> {
    st.spare = Some(registry::Spare::open()?);
    Ok(())
}

/// `pidfd_open` at the limit of open files: the spare descriptor's slot,
/// for it (the lowest free number; another thread may open a file between
/// the two calls, and the caller ends the child then). The next start
/// keeps another spare, or fails before its fork.
#[cold]
#[inline(never)]
fn pidfd_in_spare_slot(st: &mut registry::Guard, pid: u32) -> std::io::Result<OwnedFd> {
    if let Some(spare) = st.spare.take() {
        spare.give_up();
    }
    sys::pidfd_open(pid as libc::pid_t)
}

impl Drop for Process<'_> {
    fn drop(&mut self) {
        if !matches!(self.state, State::Running { .. }) || !matches!(self.reap(true), Ok(None)) {
            return; // not running, or reaped just now
        }
        let State::Running { pid, pidfd } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return;
        };
        // Leave it running, daemon or not, as Python and std's `Child` do; the
        // registry reaps it later, and terminates a daemon when this process
        // exits (see "Reaping").
        let mut st = registry::lock();
        if let Some(e) = st.children.iter_mut().find(|e| e.pid == pid) {
            e.orphan = Some(pidfd);
        }
    }
}

impl std::fmt::Debug for Process<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::New => "initial".to_owned(),
            State::Running { pid, .. } => format!("started, pid {pid}"),
            State::Finished { pid, status, .. } => format!("stopped, pid {pid}, {status}"),
            State::Closed => "closed".to_owned(),
        };
        f.debug_struct("Process")
            .field("name", &self.name())
            .field("daemon", &self.daemon)
            .field("state", &state)
            .finish()
    }
}

/// What a process runs, as a type: Python's subclass of `Process` with its own
/// `__init__` state and `run`. Make the process with [`Process::from_run`].
pub trait Run {
    /// What `run` returns; it becomes the exit code (see [`ChildResult`]).
    type Output: ChildResult;

    /// The body of the process (Python's `run`), called in the child.
    fn run(self) -> Self::Output;

    /// The process's name (Python's `self.name = ...` in `__init__`); `None`
    /// keeps the default: the type's name and the process's number, as
    /// Python names a subclass's process (`Chat-1` for a `Chat`; the name
    /// [`std::any::type_name`] gives, without its path or type parameters).
    fn name(&self) -> Option<String> {
        None
    }
}

/// `T`'s name without its path or parameters: `Chat` for
/// `my_crate::chat::Chat<u8>`.
fn type_name_alone<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let path = full.split('<').next().unwrap_or(full);
    let name = path.rsplit("::").next().unwrap_or(path);
    // A tuple, a slice, a reference: no one word names it.
    let word = |c: char| c.is_alphanumeric() || c == '_';
    if !name.is_empty() && path.chars().all(|c| word(c) || c == ':') {
        name
    } else {
        "Process"
    }
}

#[cfg(test)]
mod tests {
    use super::type_name_alone;

    struct Chat<T>(T);

    #[test]
    fn a_type_is_named_by_its_last_word_or_not_at_all() {
        assert_eq!(type_name_alone::<Chat<Vec<u8>>>(), "Chat");
        assert_eq!(type_name_alone::<u64>(), "u64");
        assert_eq!(type_name_alone::<(u8, Chat<u8>)>(), "Process");
        assert_eq!(type_name_alone::<&str>(), "Process");
        assert_eq!(type_name_alone::<[u8]>(), "Process");
        let _ = Chat(0);
    }
}
