//! The crate's one error type.

use std::io;

/// What can go wrong controlling processes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `start` on a process that was started already (Python: "cannot start a process twice").
    #[error("process {name:?} was already started; create a new Process to run it again")]
    AlreadyStarted {
        /// The process's name.
        name: String,
    },
    /// `join`, `terminate` and the like on a process never started.
    #[error("process {name:?} was never started; call start() first")]
    NotStarted {
        /// The process's name.
        name: String,
    },
    /// Use of a process after `close`.
    #[error("process {name:?} was closed")]
    Closed {
        /// The process's name.
        name: String,
    },
    /// `close` on a process that still runs (Python raises `ValueError`).
    #[error("process {name:?} (pid {pid}) is still running; join() or kill() it before close()")]
    StillRunning {
        /// The process's name.
        name: String,
        /// Its pid.
        pid: u32,
    },
    /// A daemon process tried to start a child (Python: "daemonic processes are not
    /// allowed to have children").
    #[error("daemonic processes are not allowed to have children")]
    DaemonChildren,
    /// `send` of a number no signal has: 0 (a check that the process is
    /// there) to `SIGRTMAX` are, whatever state the process is in.
    #[error("{signal} is not a signal number: signals are 0 to {max} (see signal(7))")]
    InvalidSignal {
        /// The number given.
        signal: i32,
        /// The largest signal number here (`SIGRTMAX`).
        max: i32,
    },
    /// The wait timed out (an `op_timeout`): the process still runs.
    #[error("timed out; the process still runs")]
    Timeout,
    /// The fork server was asked for an entry it does not know.
    #[error("the fork server has no entry named {name:?}; register it before starting the server")]
    UnknownEntry {
        /// The name asked for.
        name: String,
    },
    /// The fork server could not start the child.
    #[error("the fork server could not start the child: its {op} failed: {source}")]
    SpawnFailed {
        /// The server's call that failed (`"fork"`, `"pidfd_open"`).
        op: &'static str,
        /// The server's OS error.
        #[source]
        source: io::Error,
    },
    /// The fork server must be started while the process has one thread.
    #[error("the fork server must be started while this process is single-threaded ({threads} threads now); start it first thing in main")]
    NotSingleThreaded {
        /// Threads running now.
        threads: usize,
    },
    /// Arguments for a fork-server entry are larger than a request may carry.
    #[error("fork-server arguments are {len} bytes; at most {max} fit in a request (pass bigger data through shared memory)")]
    TooLarge {
        /// Their length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The fork server is gone (it died, or was shut down).
    #[error("the fork server is gone: {why}")]
    ServerGone {
        /// How it was found gone.
        #[source]
        why: Gone,
    },
    /// The child ended, and its exit status is gone: the kernel reaped it
    /// (this process ignores `SIGCHLD`), or another wait in this process did
    /// (see [`Discarded`]). (Python's `Process` answers `exitcode` `None`
    /// then, and `is_alive` `True`, for ever.)
    #[error("process {pid} ended but its exit status is gone: {why}")]
    StatusDiscarded {
        /// The child's pid.
        pid: u32,
        /// Who took the status.
        why: Discarded,
    },
    /// A system call this crate cannot do without is refused here: above
    /// all `pidfd_open` (Linux 5.3), through which every [`Process`], fork
    /// server and pool watches and signals its children without racing a
    /// reused pid. The kernel is older than that, or the program runs under
    /// a tool or sandbox that does not pass the call on: valgrind 3.19
    /// (Debian 12's) answers `ENOSYS`, and some seccomp profiles `ENOSYS` or
    /// `EPERM`. Python's `multiprocessing` does without pidfds; this crate
    /// does not, so it says which call, and why, rather than an `Io` error.
    ///
    /// [`Process`]: crate::Process
    #[error(
        "{op} is not available here ({source}); this crate needs it to watch and signal \
         its child processes: Linux 5.3 or later, and no tool or sandbox that refuses the \
         call (valgrind 3.19 refuses it, as do some seccomp filters)"
    )]
    Unsupported {
        /// The call refused (`"pidfd_open"`).
        op: &'static str,
        /// The OS error (`ENOSYS`, or `EPERM` from a filter).
        #[source]
        source: io::Error,
    },
    /// A call that opens a descriptor (a child's pidfd, above all) found
    /// this process holding as many open files as `RLIMIT_NOFILE` allows
    /// (`EMFILE`): every started child holds one until it is joined or
    /// dropped, so a program that keeps many at once meets it first.
    #[error(
        "{op} failed: this process has as many open files as it may (RLIMIT_NOFILE {}); \
         raise the limit (`ulimit -n`, setrlimit), or join or drop processes before starting more",
        limit.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
    )]
    TooManyOpenFiles {
        /// The call.
        op: &'static str,
        /// The limit, if it could be read.
        limit: Option<u64>,
    },
    /// An operating-system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Who took a child's exit status before its handle could
/// ([`Error::StatusDiscarded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Discarded {
    /// The kernel: this process ignores `SIGCHLD` (`SIG_IGN`, or
    /// `SA_NOCLDWAIT`), so children are reaped as they end and no status is
    /// kept.
    #[error(
        "this process ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT), so the kernel reaps its \
         children; restore SIGCHLD's default action (SIG_DFL) before starting processes"
    )]
    SigchldIgnored,
    /// Another wait in this process reaped it first: a `SIGCHLD` handler or a
    /// wait for any child (`wait_any`, `waitpid(-1, …)`).
    #[error(
        "another wait in this process reaped it first (a SIGCHLD handler, or a wait for any \
         child such as wait_any or waitpid(-1)); wait there only for pids of your own"
    )]
    ReapedElsewhere,
}

/// How a fork server was found gone ([`Error::ServerGone`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Gone {
    /// It closed the connection: it exited or was killed.
    #[error("it closed the connection (it exited or was killed)")]
    Closed,
    /// Talking to it failed.
    #[error("talking to it failed: {0}")]
    Io(#[source] io::Error),
    /// A descriptor it sent (a new child's pidfd) was dropped on its way in:
    /// this process holds as many open files as `RLIMIT_NOFILE` allows. The
    /// child it was for runs on, unwatched.
    #[error(
        "a descriptor it sent was dropped: this process has as many open files as it may \
         (RLIMIT_NOFILE {}); raise the limit (`ulimit -n`, setrlimit) or use fewer processes",
        limit.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
    )]
    DescriptorDropped {
        /// The limit, if it could be read.
        limit: Option<u64>,
    },
    /// It sent a message this side cannot read: a different build, or memory
    /// trouble in the server.
    #[error("it sent a malformed message of {len} bytes")]
    Malformed {
        /// The message's length.
        len: usize,
    },
}

impl Error {
    /// An OS error of `op`: [`Error::Unsupported`] when the call is refused
    /// as missing (`ENOSYS`; for `pidfd_open`, which has no other cause for
    /// them, `EPERM` and `EACCES` too: a seccomp filter's),
    /// [`Error::TooManyOpenFiles`] at `EMFILE`, else [`Error::Io`].
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| {
            let missing = match source.raw_os_error() {
                Some(libc::ENOSYS) => true,
                Some(libc::EPERM | libc::EACCES) => op == "pidfd_open",
                Some(libc::EMFILE) => {
                    return Error::TooManyOpenFiles {
                        op,
                        limit: crate::sys::open_files_limit(),
                    }
                }
                _ => false,
            };
            if missing {
                Error::Unsupported { op, source }
            } else {
                Error::Io { op, source }
            }
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
