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
    /// Nobody is left at the other end: a get found the queue empty and no live
    /// process holds it open for writing (Python's `EOFError` on a pipe), or a
    /// send into a pipe found no live process holding the receiving end
    /// (Python's `BrokenPipeError`).
    #[error(
        "the other end is gone: every process that could write to this queue (or read this \
         pipe direction) has exited, closed it or dropped it"
    )]
    Disconnected,
    /// This end of a pipe was closed with `Connection::close`.
    #[error("this end of the pipe was closed; it can neither send nor receive")]
    EndClosed,
    /// A one-way pipe's end was asked to do what the other end does.
    #[error("this end of a one-way pipe only {}", if *.sends { "sends" } else { "receives" })]
    OneWay {
        /// Whether this end is the sending one.
        sends: bool,
    },
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
    /// A message over a slot's size, which only a put that may wait can carry
    /// (it streams), was given to a `try_put`.
    #[error(
        "a message of {len} bytes is over the {max} bytes of a slot: it streams, which may wait; \
         use put or put_timeout"
    )]
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
    /// A value could not be encoded (the `serde` feature).
    #[cfg(feature = "serde")]
    #[error("could not encode the value: {source}")]
    Encode {
        /// postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// A message could not be decoded as the type asked for (the `serde`
    /// feature); the message is taken.
    #[cfg(feature = "serde")]
    #[error("the message is not a value of the type asked for: {source}")]
    Decode {
        /// postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// An operating-system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Creating or opening the segment failed.
    #[error(transparent)]
    Shm(#[from] multiproc_shm::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
