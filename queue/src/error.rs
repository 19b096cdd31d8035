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
    /// A message longer than the limit its receive set (Python's
    /// `recv_bytes(maxlength)`, which raises `OSError`). The message was taken
    /// and dropped (a streamed one before its bytes were read); the next
    /// receive gets the next message.
    #[error(
        "a message of {len} bytes is over the {max} bytes this receive accepts; it was dropped"
    )]
    MessageOverLimit {
        /// Its length (a streamed message's as its sender announced it).
        len: u64,
        /// The receive's limit.
        max: usize,
    },
    /// Shared state is impossible: another process wrote over it (or a
    /// different build of this crate made it; see [`Corruption`]).
    #[error("the queue's shared memory is corrupted: {0}")]
    Corrupted(Corruption),
    /// An end of an [`SpscQueue`](crate::SpscQueue) was asked for while a live
    /// process holds it (this one, too: an end is held once).
    #[error(
        "the {end} end of this SPSC queue is held by process {pid}; it has one {end} at a \
         time: drop that handle first, or use a Queue for several"
    )]
    EndTaken {
        /// `"producer"` or `"consumer"`.
        end: &'static str,
        /// The holder's pid.
        pid: u32,
    },
    /// An [`SpscQueue`](crate::SpscQueue) end was used in a process forked from
    /// the one that took it: the copy is the parent's.
    #[error(
        "this {end} end was taken by the parent of this forked process; take the end again \
         here (SpscQueue::{end}) once the parent has dropped its own"
    )]
    NotThisProcess {
        /// `"producer"` or `"consumer"`.
        end: &'static str,
    },
    /// More threads use the queue at once than it has participant entries for.
    #[error(
        "more than {0} threads use this queue at once; each needs an entry for dead-peer detection"
    )]
    TooManyParticipants(usize),
    /// `task_done` called more times than there were messages (Python's `ValueError`).
    #[error("task_done() called more times than there were items")]
    TaskDoneTooMany,
    /// A count or size outside what is allowed.
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
    /// A large-message lane of a size that is not a multiple of 64 bytes from
    /// 64 bytes to 1 GiB.
    #[error("a lane of {bytes} bytes: it must be a multiple of 64 from 64 bytes to 1 GiB")]
    LaneSize {
        /// The size asked for.
        bytes: usize,
    },
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
    /// A message decoded as the type asked for with bytes left over (the
    /// `serde` feature): it was sent as another type, whose first bytes
    /// happen to read as one of these (postcard's encoding carries no type,
    /// so a type that reads exactly the same bytes, `u32` for a `u64`, is
    /// not told apart); the message is taken.
    #[cfg(feature = "serde")]
    #[error(
        "the message is not a value of the type asked for: {left} of its {len} bytes are \
         left over once one is read (was it sent as another type?)"
    )]
    DecodeLeftOver {
        /// Bytes not read.
        left: usize,
        /// The message's length.
        len: usize,
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

/// What a queue's shared memory holds that cannot be (in [`Error::Corrupted`]).
///
/// Everything a queue reads from shared memory is checked before it is used;
/// a value no well-behaved peer writes is answered with one of these, and the
/// operation changes nothing it should not (a message that cannot be read is
/// counted lost, its slot freed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The segment was laid out by another version of this crate.
    #[error(
        "queue layout version {found}, this build reads version {expected}: use the same \
         multiproc version on both sides"
    )]
    LayoutVersion {
        /// The segment's version.
        found: u64,
        /// This build's.
        expected: u64,
    },
    /// A field of the segment's geometry has an impossible value.
    #[error("{what} is {value}")]
    Field {
        /// The field (`"the capacity"`, `"the pipe flag"` …).
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// The slot size does not match the message size.
    #[error("slot size {slot} does not fit messages of {msg_max} bytes")]
    SlotSize {
        /// The slot size read.
        slot: u64,
        /// The message size read.
        msg_max: u64,
    },
    /// A large-message lane size the ring cannot have.
    #[error("a lane of {bytes} bytes in a ring of {} messages", if *.fixed { "fixed-length" } else { "variable-length" })]
    Lane {
        /// The lane size read.
        bytes: u64,
        /// Whether the ring is of fixed-length messages.
        fixed: bool,
    },
    /// The geometry needs more bytes than the segment has.
    #[error("the queue needs {needed} bytes; the segment has {len}")]
    TooSmall {
        /// Bytes the geometry needs.
        needed: usize,
        /// The segment's length.
        len: usize,
    },
    /// A byte queue's segment describes a ring of fixed-length messages.
    #[error("a byte queue's segment describes a ring of fixed-length messages")]
    FixedRing,
    /// A typed queue's segment does not carry fixed items of the type's size.
    #[error("the queue carries messages of up to {msg_max} bytes, not fixed {size}-byte items")]
    NotItems {
        /// The ring's message size.
        msg_max: u64,
        /// The type's size.
        size: usize,
    },
    /// A slot's sequence number is impossible for its position.
    #[error("the slot of position {pos} has sequence {seq}")]
    Sequence {
        /// The position.
        pos: u64,
        /// The sequence read.
        seq: u64,
    },
    /// The head and tail positions are impossible together: a consumer ahead
    /// of every producer, or producers more than a capacity ahead of every
    /// consumer (no run of the protocol makes either; see the ring's
    /// "Positions").
    #[error("the queue's head {head} and tail {tail} are impossible for a capacity of {capacity}")]
    Positions {
        /// The head read.
        head: u64,
        /// The tail read.
        tail: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A slot claims a message longer than a slot holds.
    #[error("the message of position {pos} claims {len} bytes, over the {max} a slot holds")]
    Length {
        /// The position.
        pos: u64,
        /// The length read.
        len: usize,
        /// The slot's message size.
        max: usize,
    },
    /// A typed queue's message has another size than its items.
    #[error("a message of {len} bytes in a queue of {size}-byte items")]
    ItemSize {
        /// The message's length.
        len: usize,
        /// The item size.
        size: usize,
    },
    /// A dead thread's entry in the table of threads that use the queue
    /// announces positions no claim can have: past the cursor they are
    /// claimed from, or more than a capacity of them. Found when no entry is
    /// free for a new thread.
    #[error(
        "a dead thread's entry announces positions {first}..{end}, which no claim can have \
         with the cursor at {cursor}"
    )]
    Claim {
        /// The first position announced.
        first: u64,
        /// The end announced.
        end: u64,
        /// The cursor (tail for a put, head for a get) they are claimed from.
        cursor: u64,
    },
    /// The lock of the large-message lane cannot be used (a holder recovered it
    /// and left it inconsistent, or a peer wrote over it).
    #[error("the large-message lane's lock is unusable")]
    LaneLock,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
