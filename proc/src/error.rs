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
    /// The fork server was asked for an entry it does not know.
    #[error("the fork server has no entry named {0:?}; register it before starting the server")]
    UnknownEntry(String),
    /// The fork server could not start the child.
    #[error("the fork server could not start the child: {0}")]
    SpawnFailed(String),
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
    #[error("the fork server is gone: {0}")]
    ServerGone(String),
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

impl Error {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { op, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
