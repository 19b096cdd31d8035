//! The crate's one error type.

use std::time::Duration;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (`exit`, or returning from its loop).
    Code(i32),
    /// A signal killed it (`SIGKILL` = 9, `SIGSEGV` = 11, `SIGABRT` = 6 …).
    Signal(i32),
    /// It ended, and how is not known: its status was taken before the call
    /// could read it — the calling process ignores `SIGCHLD` (the kernel
    /// reaps children), or a `SIGCHLD` handler there reaped it (a `pmap`
    /// worker; the pool's workers are reaped by its fork server, which keeps
    /// their statuses whatever `SIGCHLD`'s action).
    Unknown,
}

impl Exit {
    /// From Python's `exitcode` (what `join` answers): `-N` for signal `N`.
    pub(crate) fn of_exitcode(code: i32) -> Exit {
        if code < 0 {
            Exit::Signal(-code)
        } else {
            Exit::Code(code)
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => write!(f, "was killed by signal {s}"),
            Exit::Unknown => write!(
                f,
                "ended, its status taken first (this process ignores SIGCHLD, or a handler reaped it)"
            ),
        }
    }
}

/// Why a task, or a call on the pool, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked in its worker; the worker goes on.
    #[error("the task panicked at {location}: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
        /// Where it panicked (`file:line:column`).
        location: String,
    },
    /// The worker running the task died (killed, crashed, or called `exit`)
    /// before answering. Exactly the task it was running fails so; the tasks
    /// queued behind it run on other workers.
    #[error("the worker (pid {pid}) running the task {how} before answering")]
    WorkerDied {
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        how: Exit,
    },
    /// The task ran past the pool's per-task timeout: its worker was killed
    /// (and replaced).
    #[error(
        "the task ran past the pool's task timeout of {limit:?}; its worker (pid {pid}) was killed"
    )]
    TimedOut {
        /// The worker's pid.
        pid: u32,
        /// The timeout.
        limit: Duration,
    },
    /// Workers kept dying before taking a task (the initializer failed or
    /// killed them, or something kills them as they start): the pool stopped
    /// replacing them and fails what is pending.
    #[error("{deaths} workers in a row died before taking a task (the last {last}): the initializer fails, or something kills them as they start; nothing more will run")]
    InitializerFailed {
        /// Consecutive deaths before any task.
        deaths: u32,
        /// How the last one ended.
        last: Exit,
    },
    /// A worker that ended could not be replaced: the zygote that forks the
    /// workers is gone (killed from outside), or its fork failed (`EAGAIN`
    /// at a limit of processes, `ENOMEM`), or this process could not take in
    /// the new worker's pidfd (at its limit of open files). The pool stopped,
    /// as for [`Error::InitializerFailed`]: every task not answered, and every
    /// task submitted after, fails with this. Make a new pool once the cause
    /// is fixed.
    #[error("a worker that ended could not be replaced ({why}); the pool stopped, and nothing more will run on it")]
    ReplacementFailed {
        /// What the start of its replacement answered.
        why: String,
    },
    /// The memory the pool shares with its workers was written over (by a
    /// task's unsafe code, or another process), or the descriptors by which
    /// it sees its workers end were closed by other code in this process
    /// (against Rust's I/O safety: a program that closes every descriptor
    /// it does not know): what it reads from them cannot be trusted, so the
    /// pool stopped its workers, and fails every task not answered before
    /// and every task submitted after. Make a new pool.
    #[error("the pool was damaged from outside ({what}); its answers cannot be trusted, so it stopped: make a new pool")]
    Corrupted {
        /// Where it was found.
        what: String,
    },
    /// The arguments could not be encoded (in this process).
    #[error("could not encode the task's arguments: {0}")]
    EncodeArgs(#[source] postcard::Error),
    /// The result could not be decoded as the type asked for (in this process).
    #[error("could not decode the task's result: {0}")]
    DecodeResult(#[source] postcard::Error),
    /// The result type's `Deserialize` panicked, in this process, on a
    /// worker's answer: the panic's message. The answer's later items are
    /// lost with it (where they start is unknown), as for
    /// [`DecodeResult`](Error::DecodeResult).
    #[error("the result's Deserialize panicked: {message}")]
    DecodePanicked {
        /// The panic's message.
        message: String,
    },
    /// The worker could not decode the arguments or encode the result (its
    /// message: the error itself stayed in the worker).
    #[error("the worker could not {what}: {message}")]
    WorkerCodec {
        /// `"decode the arguments"` or `"encode the result"`.
        what: &'static str,
        /// The codec's message.
        message: String,
    },
    /// A callback given with the task panicked; the pool goes on.
    #[error("the task's callback panicked: {message}")]
    CallbackPanicked {
        /// The panic's message.
        message: String,
    },
    /// A map's item failed (the lowest index among those that did).
    #[error("item {index} failed: {source}")]
    Item {
        /// The item's index in the input.
        index: usize,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Submitting to a pool that was closed or terminated (Python's
    /// `ValueError: Pool not running`).
    #[error("the pool is closed: it takes no new tasks")]
    Closed,
    /// A pool used from a process other than the one that made it (a forked
    /// child's copy): its workers answer to their own pool only.
    #[error("this pool belongs to process {owner}; a forked child cannot use it (make a pool in the child)")]
    OtherProcess {
        /// The process that made the pool.
        owner: u32,
    },
    /// An `imap` read on after `join` stopped the workers, with input not
    /// yet sent: `imap` reads its input as its results are taken (Python's
    /// sends all of it at once), so take an `imap`'s results before `join`.
    /// Its results that came before are yielded first.
    #[error("join() stopped the workers before this imap's input was all sent; take an imap's results before join()")]
    Joined,
    /// `join` on a pool that was neither closed nor terminated (Python's
    /// `ValueError: Pool is still running`).
    #[error("join() needs close() or terminate() first")]
    NotClosed,
    /// The result was taken already (by `get` or a successful `get_timeout`).
    #[error("the result was taken already")]
    AlreadyTaken,
    /// The pool was terminated (or dropped) before the task answered.
    #[error("the pool was terminated before the task answered")]
    Terminated,
    /// The task was cancelled before it was sent to a worker.
    #[error("the task was cancelled")]
    Cancelled,
    /// A wait's timeout passed (`get_timeout`, `wait_timeout`, `join_timeout`).
    #[error("timed out")]
    Timeout,
    /// A worker runs another build of the program than this process, so the
    /// functions named in tasks would not be the same.
    #[error("a worker runs another build of the program (build identity {found:#x}, expected {expected:#x})")]
    BuildMismatch {
        /// The worker's build identity.
        found: u64,
        /// This process's.
        expected: u64,
    },
    /// A rank of a pool spread over MPI (`multiproc-pool-mpi`) failed, died
    /// or refused: which, and why.
    #[error("rank {rank}: {message}")]
    Rank {
        /// The rank, in `MPI_COMM_WORLD`.
        rank: usize,
        /// What happened.
        message: String,
    },
    /// A task's function is none that a worker has: a closure that
    /// captures data of this process (of a pointer's size; larger ones are
    /// refused as the program is compiled), or another type of a pointer's
    /// size that calls (an `extern "C" fn`, a reference to a function). A
    /// pool made around a closure ([`Pool::with_fn`](crate::Pool::with_fn))
    /// or [`pmap`](crate::pmap()) takes one that captures.
    #[error("{function} holds {bytes} bytes that no worker has: a pool's task is a fn item, a closure that captures nothing, or a fn pointer (Pool::with_fn and pmap take a closure that captures)")]
    Captures {
        /// The closure's type.
        function: &'static str,
        /// The bytes it captures.
        bytes: usize,
    },
    /// A count or size out of range (a pool of 0 processes after `cpu_count`, …).
    #[error("{what} must be {min} to {max}, not {value}")]
    OutOfRange {
        /// What was given.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A queue between the pool and its workers failed.
    #[error(transparent)]
    Queue(#[from] multiproc_queue::Error),
    /// Starting or controlling a process failed.
    #[error(transparent)]
    Proc(#[from] multiproc_proc::Error),
    /// Shared memory failed.
    #[error(transparent)]
    Shm(#[from] multiproc_shm::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
