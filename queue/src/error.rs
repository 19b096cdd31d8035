//! The crate's one error type.

/// What can go wrong with a queue or pipe. `Full`, `Empty`, `Timeout`, `Closed` and
/// `Disconnected` are distinct, as Python's `queue.Full`/`queue.Empty` are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `put_nowait` on a full queue.
    #[error("the queue is full")]
    Full,
    /// `get_nowait` on an empty queue.
    #[error("the queue is empty")]
    Empty,
    /// A blocking call's timeout passed.
    #[error("timed out")]
    Timeout,
    /// The queue was closed: no more puts; gets drain what is left, then answer this.
    #[error("the queue is closed")]
    Closed,
    /// The queue is empty and no live process holds it open for writing.
    #[error(
        "the queue is empty and every process that could write to it has exited or dropped it"
    )]
    Disconnected,
    /// An opened queue has another capacity than the opener expected.
    #[error("the queue has {found} slots, not the {expected} expected; open it with its own size")]
    CapacityMismatch {
        /// Its capacity.
        found: usize,
        /// The capacity asked for.
        expected: usize,
    },
    /// An opened byte queue carries messages of another size than the opener
    /// expected.
    #[error("the queue carries messages of up to {found} bytes, not the {expected} expected; open it with its own size")]
    MessageSizeMismatch {
        /// Its message size.
        found: usize,
        /// The message size asked for.
        expected: usize,
    },
    /// A message is larger than the queue's message size.
    #[error("message of {len} bytes is larger than the {max} bytes this queue was made for")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The queue's message size.
        max: usize,
    },
    /// Shared state is impossible: another process wrote over it.
    #[error("the queue's shared memory is corrupted: {0}")]
    Corrupted(String),
    /// More threads use the queue at once than it has participant entries for.
    #[error(
        "more than {0} threads use this queue at once; each needs an entry for dead-peer detection"
    )]
    TooManyParticipants(usize),
    /// `task_done` called more times than there were messages (Python's `ValueError`).
    #[error("task_done() called more times than there were items")]
    TaskDoneTooMany,
    /// An invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Encoding or decoding a value (the `serde` feature).
    #[error("could not encode or decode a message: {0}")]
    Codec(String),
    /// Creating or opening the segment failed.
    #[error(transparent)]
    Shm(#[from] multiproc_shm::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
