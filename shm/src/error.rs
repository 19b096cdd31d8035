//! The crate's one error type.

use std::io;
use std::time::Duration;

/// Why a size cannot be a segment's ([`Error::InvalidSize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeProblem {
    /// It is 0 bytes: a segment holds at least one (Python's `SharedMemory`
    /// refuses size 0 too).
    #[error(
        "is 0 bytes: a segment holds at least one byte (Python's SharedMemory refuses size 0 too)"
    )]
    Zero,
    /// Its size in bytes overflows.
    #[error("overflows: its size in bytes is larger than 2^64")]
    Overflow,
    /// Its alignment is larger than a page.
    #[error("needs an alignment of {align} bytes, larger than a page")]
    AlignmentAbovePage {
        /// The alignment asked for.
        align: u64,
    },
    /// It does not fit in the address space.
    #[error("of {bytes} bytes does not fit in the address space")]
    AboveAddressSpace {
        /// Its size in bytes.
        bytes: u64,
    },
}

/// Everything that can go wrong creating, opening or using a segment.
///
/// Each variant says what happened and what to do; OS errors keep their
/// [`io::Error`] as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The segment name cannot be used.
    #[error("invalid shared-memory name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A size or count cannot be mapped (zero, or too large for the address space).
    #[error("invalid segment size: {what} {problem}")]
    InvalidSize {
        /// What was to be mapped: the contents' type and count, or the file.
        what: String,
        /// What is wrong with its size.
        problem: SizeProblem,
    },

    /// A byte range reaches past the end of a [`Segment`](crate::Segment).
    #[error("{bytes} bytes at offset {offset} reach past the {len} bytes of the segment")]
    PastEnd {
        /// Where the range starts.
        offset: usize,
        /// How many bytes it has.
        bytes: usize,
        /// The segment's length.
        len: usize,
    },

    /// An element range reaches past the end of a [`SharedSlice`](crate::SharedSlice).
    #[error("elements {start}..{start}+{count} reach past the {len} elements of the slice")]
    OutOfBounds {
        /// The first element asked for.
        start: usize,
        /// How many.
        count: usize,
        /// The slice's length.
        len: usize,
    },

    /// `create` found a segment of that name already there.
    #[error(
        "shared-memory segment {name:?} already exists; open it, pick another name, or remove \
         a leftover with `multiproc_shm::remove_stale` or by unlinking /dev/shm{name}"
    )]
    AlreadyExists {
        /// The segment's name.
        name: String,
        /// The OS error (`EEXIST`).
        #[source]
        source: io::Error,
    },

    /// `open` found no segment of that name.
    #[error("shared-memory segment {name:?} does not exist (has its creator started, or already unlinked it?)")]
    NotFound {
        /// The segment's name.
        name: String,
        /// The OS error (`ENOENT`).
        #[source]
        source: io::Error,
    },

    /// The filesystem under a named or file segment has no room for it (a
    /// full or small `/dev/shm`, as containers often have). Its pages are
    /// reserved when it is made, so that this is an error then rather than a
    /// `SIGBUS` at the first touch of a page past the room.
    #[error(
        "no room for {what} of {len} bytes on its filesystem ({source}): free room there \
         (for /dev/shm in a container, a larger --shm-size), or make the segment anonymous \
         or memfd, which /dev/shm's size does not bound"
    )]
    NoRoom {
        /// The segment or file.
        what: String,
        /// Its size.
        len: u64,
        /// The OS error (`ENOSPC`, or `EFBIG` past the filesystem's largest file).
        #[source]
        source: io::Error,
    },

    /// An operating-system call failed.
    #[error("{op} failed for {what}: {source}")]
    Io {
        /// The call that failed (`shm_open`, `mmap`, `ftruncate`, …).
        op: &'static str,
        /// The segment, file or size it was about.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The segment is smaller than its header and contents need: truncated, or not
    /// finished by its creator.
    #[error("segment {what} is too small: {actual} bytes where {needed} are needed (truncated, or not a multiproc segment)")]
    TooSmall {
        /// The segment or file.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes there.
        actual: u64,
    },

    /// The bytes at the start are not a multiproc header.
    #[error(
        "{what} is not a multiproc segment (magic {found:#018x}); it was made by another program"
    )]
    NotMultiproc {
        /// The segment or file.
        what: String,
        /// The first eight bytes found.
        found: u64,
    },

    /// The segment was written by another version of the header format.
    #[error("{what} has header format version {found}, this build reads version {expected}; use the same multiproc version on both sides")]
    VersionMismatch {
        /// The segment or file.
        what: String,
        /// Version found.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },

    /// The segment holds another type or shape than the one asked for.
    #[error("{what} holds {found}, not the {expected} asked for; open it with the type it was created with")]
    LayoutMismatch {
        /// The segment or file.
        what: String,
        /// What the caller asked for.
        expected: String,
        /// What the header says is there.
        found: String,
    },

    /// The creator did not finish initialising within the wait.
    #[error("{what} was not initialised by its creator (pid {creator_pid}) within {waited:?}; it may have died while creating it")]
    NotReady {
        /// The segment or file.
        what: String,
        /// The pid in the header (0 if not yet written).
        creator_pid: u32,
        /// How long `open` waited.
        waited: Duration,
    },

    /// The segment's file is not one this process could have made, so its
    /// contents cannot be trusted: another user's, open to group or others, or
    /// not a regular file.
    #[error(
        "{what} is {problem}: it may be a stranger's. If it is not yours, remove it; \
         if you share it with other users on purpose, open it with \
         `OpenOptions::new().any_user(true)`"
    )]
    NotTrusted {
        /// The segment or file.
        what: String,
        /// What is wrong with it.
        problem: TrustProblem,
    },

    /// An index past the end of a [`ShareableList`](crate::ShareableList)
    /// (Python's `IndexError`).
    #[error("index {index} is out of range for a ShareableList of {len} items")]
    ListIndex {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },

    /// A string or bytes item longer than the room its place in a
    /// [`ShareableList`](crate::ShareableList) has (Python's `ValueError:
    /// bytes/str item exceeds available storage`): nothing was written.
    #[error(
        "item {index} would take {len} bytes, more than the {room} bytes of room it has (a \
         ShareableList's items keep the room they were made with: make the list with a longer \
         item there)"
    )]
    ItemTooLong {
        /// Where it was to go.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// The room there, in bytes.
        room: usize,
    },

    /// A writer of a [`ShareableList`](crate::ShareableList)'s item did not
    /// finish it within the wait (killed mid-write, or stopped): the item
    /// is half written until the next write of it.
    #[error(
        "item {index} of {what} was left half written: its writer did not finish it within \
         {waited:?} (killed mid-write?); write the item again"
    )]
    ItemUnfinished {
        /// The list.
        what: String,
        /// The item.
        index: usize,
        /// How long this call waited.
        waited: Duration,
    },

    /// Other processes kept taking turns at a
    /// [`ShareableList`](crate::ShareableList)'s item (reading or writing
    /// it) for the whole wait: nothing was read or written. Seen with a
    /// short timeout among busy writers, or a peer that writes over the
    /// item's turn word without end.
    #[error(
        "item {index} of {what} stayed busy with other readers and writers through {waited:?} \
         of waiting; try again, or with a longer timeout"
    )]
    ItemBusy {
        /// The list.
        what: String,
        /// The item.
        index: usize,
        /// The wait this call was given.
        waited: Duration,
    },

    /// A [`ShareableList`](crate::ShareableList)'s item holds a kind or a length
    /// bytes that no writer of this crate leaves: another process wrote over
    /// it. Writing the item again repairs it.
    #[error("item {index} of {what} is corrupted: {reason}; write the item again")]
    CorruptedItem {
        /// The list.
        what: String,
        /// The item.
        index: usize,
        /// Which check failed.
        reason: String,
    },

    /// The header's fields contradict each other: another process wrote over it.
    #[error("{what} has a corrupted header: {reason}")]
    Corrupted {
        /// The segment or file.
        what: String,
        /// Which check failed.
        reason: String,
    },
}

/// Why a segment's file is not trusted (see [`Error::NotTrusted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustProblem {
    /// A FIFO, a directory, a device…: no segment this crate makes.
    NotRegularFile {
        /// The file type bits of its mode (`st_mode & S_IFMT`).
        file_type: u32,
    },
    /// Owned by another user.
    Owner {
        /// Its owner.
        uid: u32,
        /// This process's effective user.
        euid: u32,
    },
    /// Group or others may read or write it.
    Permissions {
        /// Its permission bits.
        mode: u32,
    },
}

impl std::fmt::Display for TrustProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustProblem::NotRegularFile { file_type } => {
                write!(f, "not a regular file (file type {file_type:#o})")
            }
            TrustProblem::Owner { uid, euid } => {
                write!(f, "owned by user {uid}, not by this process's user {euid}")
            }
            TrustProblem::Permissions { mode } => write!(
                f,
                "readable or writable by group or others (mode {mode:#o}, not 0600)"
            ),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            op,
            what: what.into(),
            source,
        }
    }
}
