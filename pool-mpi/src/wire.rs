//! What travels between rank 0 and the ranks that serve it.
//!
//! Every message is a byte buffer with an MPI tag that says what it is:
//!
//! | tag | from → to | bytes (little endian) |
//! |---|---|---|
//! | [`HELLO`] | rank k → 0, once | build identity (8), pid (4), local processes (4), host name's length (4), host name, then why it cannot serve (empty if it can) |
//! | [`TASK`] | 0 → k | one or more frames, each a task: chunk id (8), function offset (8), server offset (8), items (4), local chunk size (4, 0 = Python's), then each item's argument by postcard |
//! | [`ANSWER`] | k → 0 | one or more frames, each an answer: chunk id (8), items (4), then one entry per item |
//! | [`STOP`] | 0 → k | 1 byte: [`STOP_JOIN`] (finish what was sent) or [`STOP_NOW`] |
//!
//! A frame is its length (4) and that many bytes: small tasks for one rank
//! that are ready together travel as one message (up to [`BATCH`] bytes), so
//! that they pay one MPI message for many, and a serving rank answers the
//! tasks of one local job in one message too.
//!
//! An entry is [`OK`] and the result by postcard, or [`FAILED`] and a
//! [`RemoteError`] by postcard. A function is named by its offset from
//! [`anchor`], as in `multiproc-pool`: ranks run the same executable, maybe
//! at other base addresses, and a rank whose build identity is not rank 0's
//! is refused before any task is sent to it.

// Without the `mpi` feature only the unit tests use this module.
#![cfg_attr(not(feature = "mpi"), allow(dead_code))]

use std::time::Duration;

use multiproc_pool::{Error, Exit};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// MPI tags (MPI promises tags up to 32767 only).
pub(crate) const HELLO: i32 = 7101;
pub(crate) const TASK: i32 = 7102;
pub(crate) const ANSWER: i32 = 7103;
pub(crate) const STOP: i32 = 7104;

/// [`STOP`]'s byte.
pub(crate) const STOP_JOIN: u8 = 0;
pub(crate) const STOP_NOW: u8 = 1;

/// Entry tags.
pub(crate) const OK: u8 = 0;
pub(crate) const FAILED: u8 = 1;

/// Bytes of a task's header.
pub(crate) const TASK_HEADER: usize = 36;
/// Bytes of an answer's header.
pub(crate) const ANSWER_HEADER: usize = 16;

/// A task's flag: a chunk of a `map`, which answers only its lowest failing
/// item: once a worker's death or a timeout fails one of its items, the
/// serving rank runs none of the items above it that its local pool has not
/// sent yet (see `serve`).
pub(crate) const BELOW_DEATH: u32 = 1;

/// An answer's "no item died" (see [`answer_header`]).
const NO_DEATH: u32 = u32::MAX;

/// The fixed point functions are named from (never inlined, so it has an
/// address; its body keeps it from being merged with another function).
#[inline(never)]
pub(crate) fn anchor() -> u64 {
    std::hint::black_box(0x6d70_6d70_6900)
}

fn anchor_address() -> usize {
    let f: fn() -> u64 = anchor;
    f as usize
}

/// `addr`'s offset from [`anchor`].
pub(crate) fn offset_of(addr: usize) -> i64 {
    (addr as i64).wrapping_sub(anchor_address() as i64)
}

/// The address at `offset` from [`anchor`].
pub(crate) fn address_at(offset: i64) -> usize {
    (anchor_address() as i64).wrapping_add(offset) as usize
}

/// A serving rank's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) build: u64,
    pub(crate) pid: u32,
    pub(crate) processes: u32,
    pub(crate) host: String,
    /// Why the rank cannot serve (its pool could not be made).
    pub(crate) problem: Option<String>,
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.host.len());
        out.extend_from_slice(&self.build.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.processes.to_le_bytes());
        let host_len = u32::try_from(self.host.len()).unwrap_or(0);
        out.extend_from_slice(&host_len.to_le_bytes());
        out.extend_from_slice(&self.host.as_bytes()[..host_len as usize]);
        if let Some(p) = &self.problem {
            out.extend_from_slice(p.as_bytes());
        }
        out
    }

    pub(crate) fn decode(msg: &[u8]) -> Option<Hello> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(msg.get(i..i + 4)?.try_into().ok()?));
        let host_len = u32_at(16)? as usize;
        let host = msg.get(20..20usize.checked_add(host_len)?)?;
        let problem = &msg[20 + host_len..];
        Some(Hello {
            build: u64::from_le_bytes(msg.get(0..8)?.try_into().ok()?),
            pid: u32_at(8)?,
            processes: u32_at(12)?,
            host: String::from_utf8_lossy(host).into_owned(),
            problem: (!problem.is_empty()).then(|| String::from_utf8_lossy(problem).into_owned()),
        })
    }
}

/// A task's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskHeader {
    pub(crate) id: u64,
    pub(crate) fn_off: i64,
    pub(crate) serve_off: i64,
    pub(crate) count: u32,
    pub(crate) chunk: u32,
    /// [`BELOW_DEATH`] or 0.
    pub(crate) flags: u32,
}

impl TaskHeader {
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.fn_off.to_le_bytes());
        out.extend_from_slice(&self.serve_off.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
    }

    /// The header and the arguments; `None` for a message too short.
    pub(crate) fn read(msg: &[u8]) -> Option<(TaskHeader, &[u8])> {
        let u64_at = |i: usize| Some(u64::from_le_bytes(msg.get(i..i + 8)?.try_into().ok()?));
        let u32_at = |i: usize| Some(u32::from_le_bytes(msg.get(i..i + 4)?.try_into().ok()?));
        let h = TaskHeader {
            id: u64_at(0)?,
            fn_off: u64_at(8)? as i64,
            serve_off: u64_at(16)? as i64,
            count: u32_at(24)?,
            chunk: u32_at(28)?,
            flags: u32_at(32)?,
        };
        Some((h, &msg[TASK_HEADER..]))
    }
}

/// Bytes of a frame's length.
pub(crate) const FRAME: usize = 4;

/// Frames are put together in one message while it stays this small; a
/// larger frame travels alone.
pub(crate) const BATCH: usize = 64 * 1024;

/// Starts a frame at the end of `out`: where its length goes, for
/// [`end_frame`].
pub(crate) fn start_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME]);
    at
}

/// Writes the length of the frame started at `at`; `false` when it is too
/// long for one (4 GiB), which no MPI message carries anyway.
pub(crate) fn end_frame(out: &mut [u8], at: usize) -> bool {
    let Ok(len) = u32::try_from(out.len() - at - FRAME) else {
        return false;
    };
    out[at..at + FRAME].copy_from_slice(&len.to_le_bytes());
    true
}

/// The frames of a message, in order. A length that runs past the end
/// stops them there and sets [`Frames::torn`].
pub(crate) struct Frames<'m> {
    rest: &'m [u8],
    pub(crate) torn: bool,
}

pub(crate) fn frames(msg: &[u8]) -> Frames<'_> {
    Frames {
        rest: msg,
        torn: false,
    }
}

impl<'m> Iterator for Frames<'m> {
    type Item = &'m [u8];

    fn next(&mut self) -> Option<&'m [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let len = self
            .rest
            .get(..FRAME)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        match len.and_then(|len| self.rest.get(FRAME..FRAME.checked_add(len)?)) {
            Some(frame) => {
                self.rest = &self.rest[FRAME + frame.len()..];
                Some(frame)
            }
            None => {
                self.torn = true;
                self.rest = &[];
                None
            }
        }
    }
}

/// Writes an answer's header: its task's id, its items, and the first of
/// them (from the task's first) that a worker's death or a timeout failed.
pub(crate) fn answer_header(out: &mut Vec<u8>, id: u64, count: u32, first_death: Option<u32>) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&first_death.unwrap_or(NO_DEATH).to_le_bytes());
}

/// An answer's header and entries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AnswerHeader {
    pub(crate) id: u64,
    pub(crate) count: u32,
    /// See [`answer_header`]; a value past `count` (a peer's garbage) reads
    /// as none. Rank 0 only skips work with it: a rank that named a death
    /// where there was none would make a map fail with
    /// [`Error::Terminated`] for an item
    /// not run, an error, never a wrong result.
    pub(crate) first_death: Option<u32>,
}

/// Reads an answer's header: the header and the entries.
pub(crate) fn read_answer(msg: &[u8]) -> Option<(AnswerHeader, &[u8])> {
    let u32_at = |i: usize| Some(u32::from_le_bytes(msg.get(i..i + 4)?.try_into().ok()?));
    let id = u64::from_le_bytes(msg.get(0..8)?.try_into().ok()?);
    let count = u32_at(8)?;
    let first_death = Some(u32_at(12)?).filter(|&d| d < count);
    Some((
        AnswerHeader {
            id,
            count,
            first_death,
        },
        &msg[ANSWER_HEADER..],
    ))
}

/// A task's failure as it crosses ranks: the local pool's [`Error`] for an
/// item, in a form that encodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RemoteError {
    Panicked {
        message: String,
        location: String,
    },
    WorkerDied {
        pid: u32,
        how: RemoteExit,
    },
    TimedOut {
        pid: u32,
        limit_ns: u64,
    },
    InitializerFailed {
        deaths: u32,
        last: RemoteExit,
    },
    /// The rank could not decode the arguments (`true`) or its worker could
    /// not encode the result or decode the arguments (`WorkerCodec`).
    Codec {
        what: CodecWhat,
        message: String,
    },
    /// The result type's `Deserialize` panicked on the serving rank
    /// (`DecodePanicked`).
    DecodePanicked(String),
    /// Anything else, as its message.
    Other(String),
}

/// [`Exit`], encodable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RemoteExit {
    Code(i32),
    Signal(i32),
    Unknown,
}

/// Which codec failed (the pool's `WorkerCodec::what`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CodecWhat {
    DecodeArgs,
    EncodeResult,
}

impl CodecWhat {
    fn text(self) -> &'static str {
        match self {
            CodecWhat::DecodeArgs => "decode the arguments",
            CodecWhat::EncodeResult => "encode the result",
        }
    }
}

impl From<Exit> for RemoteExit {
    fn from(e: Exit) -> RemoteExit {
        match e {
            Exit::Code(c) => RemoteExit::Code(c),
            Exit::Signal(s) => RemoteExit::Signal(s),
            Exit::Unknown => RemoteExit::Unknown,
        }
    }
}

impl From<RemoteExit> for Exit {
    fn from(e: RemoteExit) -> Exit {
        match e {
            RemoteExit::Code(c) => Exit::Code(c),
            RemoteExit::Signal(s) => Exit::Signal(s),
            RemoteExit::Unknown => Exit::Unknown,
        }
    }
}

impl RemoteError {
    /// The serving rank's view of a local failure.
    pub(crate) fn of(e: &Error) -> RemoteError {
        match e {
            Error::Panicked { message, location } => RemoteError::Panicked {
                message: message.clone(),
                location: location.clone(),
            },
            Error::WorkerDied { pid, how } => RemoteError::WorkerDied {
                pid: *pid,
                how: (*how).into(),
            },
            Error::TimedOut { pid, limit } => RemoteError::TimedOut {
                pid: *pid,
                limit_ns: u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX),
            },
            Error::InitializerFailed { deaths, last } => RemoteError::InitializerFailed {
                deaths: *deaths,
                last: (*last).into(),
            },
            Error::WorkerCodec { what, message } => RemoteError::Codec {
                what: if what.starts_with("decode") {
                    CodecWhat::DecodeArgs
                } else {
                    CodecWhat::EncodeResult
                },
                message: message.clone(),
            },
            Error::DecodePanicked { message } => RemoteError::DecodePanicked(message.clone()),
            // A map's item error carries the item's own.
            Error::Item { source, .. } => RemoteError::of(source),
            other => RemoteError::Other(other.to_string()),
        }
    }

    /// Rank 0's error for an item that failed on `rank`.
    pub(crate) fn into_error(self, rank: usize) -> Error {
        match self {
            RemoteError::Panicked { message, location } => Error::Panicked { message, location },
            RemoteError::WorkerDied { pid, how } => Error::WorkerDied {
                pid,
                how: how.into(),
            },
            RemoteError::TimedOut { pid, limit_ns } => Error::TimedOut {
                pid,
                limit: Duration::from_nanos(limit_ns),
            },
            RemoteError::InitializerFailed { deaths, last } => Error::InitializerFailed {
                deaths,
                last: last.into(),
            },
            RemoteError::Codec { what, message } => Error::WorkerCodec {
                what: what.text(),
                message,
            },
            RemoteError::DecodePanicked(message) => Error::DecodePanicked { message },
            RemoteError::Other(message) => Error::Rank { rank, message },
        }
    }
}

/// Appends one item's entry: its result, or why there is none.
pub(crate) fn put_outcome<R: Serialize>(out: &mut Vec<u8>, outcome: &Result<R, Error>) {
    match outcome {
        Ok(value) => {
            let mark = out.len();
            out.push(OK);
            if let Err(e) = postcard_append(value, out) {
                out.truncate(mark);
                put_failure(
                    out,
                    &RemoteError::Codec {
                        what: CodecWhat::EncodeResult,
                        message: e.to_string(),
                    },
                );
            }
        }
        Err(e) => put_failure(out, &RemoteError::of(e)),
    }
}

/// Appends a failed item's entry.
pub(crate) fn put_failure(out: &mut Vec<u8>, e: &RemoteError) {
    out.push(FAILED);
    // An enum of strings and numbers always encodes.
    let _ = postcard_append(e, out);
}

/// Appends `value` by postcard, as the local pool encodes its tasks' (a
/// `Vec<u8>` as one block, where serde writes it a byte at a time). On
/// error `out` is left as it was (a chunk goes on past an item that fails).
pub(crate) fn postcard_append<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> postcard::Result<()> {
    let mark = out.len();
    multiproc_pool::encode_value(value, out).inspect_err(|_| out.truncate(mark))
}

/// Reads one entry, answered by `rank`: the item's outcome and the rest of
/// the entries (empty when an entry cannot be read: where the next one
/// starts is unknown). A `Deserialize` of `R` that panics (the user's code)
/// is the item's [`Error::DecodePanicked`], not the end of the thread that
/// reads (the receiver thread, running callbacks).
pub(crate) fn read_entry<R: DeserializeOwned>(
    entries: &[u8],
    rank: usize,
) -> (Result<R, Error>, &[u8]) {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_entry_unguarded(entries, rank)
    }))
    .unwrap_or_else(|p| {
        let message = panic_text(&*p);
        (Err(Error::DecodePanicked { message }), &[])
    })
}

/// Drops `value`, the user's type, on a thread of the pool's: a panic in its
/// `Drop` (printed by the panic hook as any panic) must not end that thread,
/// which may be the receiver thread, nor stand in for the error the caller
/// is owed.
pub(crate) fn drop_quietly<T>(value: T) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
}

/// A panic payload's text.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// [`read_entry`], where `R`'s `Deserialize` may panic.
fn read_entry_unguarded<R: DeserializeOwned>(
    entries: &[u8],
    rank: usize,
) -> (Result<R, Error>, &[u8]) {
    match entries.split_first() {
        Some((&OK, body)) => match multiproc_pool::decode_value::<R>(body) {
            Ok((v, rest)) => (Ok(v), rest),
            Err(e) => (Err(Error::DecodeResult(e)), &[]),
        },
        Some((&FAILED, body)) => match postcard::take_from_bytes::<RemoteError>(body) {
            Ok((e, rest)) => (Err(e.into_error(rank)), rest),
            Err(e) => (Err(Error::DecodeResult(e)), &[]),
        },
        Some((&tag, _)) => (
            Err(Error::Rank {
                rank,
                message: format!("an answer's entry tagged {tag}"),
            }),
            &[],
        ),
        None => (
            Err(Error::Rank {
                rank,
                message: "an answer with fewer entries than items".to_owned(),
            }),
            &[],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value that fails to encode leaves the buffer as it was (a chunk
    /// goes on with the items after it), and a `Vec<u8>` is encoded as
    /// postcard encodes it, whichever side reads it.
    #[test]
    fn an_item_that_fails_to_encode_leaves_nothing_behind() {
        /// A sequence of unknown length, which postcard refuses.
        struct Unknown;
        impl Serialize for Unknown {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq((0..3u8).filter(|x| x % 2 == 0))
            }
        }
        // Refused after a few bytes of it are written.
        let failing = (7u8, vec![1u8; 3], Unknown);
        let mut out = vec![1, 2, 3];
        assert!(postcard_append(&failing, &mut out).is_err());
        assert_eq!(out, [1, 2, 3]);
        let bytes = vec![5u8; 300];
        postcard_append(&bytes, &mut out).unwrap();
        assert_eq!(out[3..], postcard::to_allocvec(&bytes).unwrap()[..]);
    }

    #[test]
    fn headers_round_trip_and_short_messages_are_refused() {
        let h = TaskHeader {
            id: 7,
            fn_off: -12345,
            serve_off: 678,
            count: 3,
            chunk: 2,
            flags: BELOW_DEATH,
        };
        let mut msg = Vec::new();
        h.write(&mut msg);
        msg.extend_from_slice(b"args");
        assert_eq!(msg.len(), TASK_HEADER + 4);
        assert_eq!(TaskHeader::read(&msg), Some((h, &b"args"[..])));
        assert_eq!(TaskHeader::read(&msg[..TASK_HEADER - 1]), None);

        let header = |id, count, first_death| AnswerHeader {
            id,
            count,
            first_death,
        };
        let mut a = Vec::new();
        answer_header(&mut a, 9, 2, None);
        assert_eq!(read_answer(&a), Some((header(9, 2, None), &[][..])));
        assert_eq!(read_answer(&a[..ANSWER_HEADER - 1]), None);
        a.clear();
        answer_header(&mut a, 9, 2, Some(1));
        assert_eq!(read_answer(&a), Some((header(9, 2, Some(1)), &[][..])));
        // A first death past the items (garbage) reads as none.
        a.clear();
        answer_header(&mut a, 9, 2, Some(2));
        assert_eq!(read_answer(&a), Some((header(9, 2, None), &[][..])));

        let mut batch = Vec::new();
        for part in [&b"one"[..], b"", b"three"] {
            let at = start_frame(&mut batch);
            batch.extend_from_slice(part);
            assert!(end_frame(&mut batch, at));
        }
        let mut f = frames(&batch);
        assert_eq!(f.by_ref().collect::<Vec<_>>(), [&b"one"[..], b"", b"three"]);
        assert!(!f.torn);
        // A length past the end (or cut short) stops the frames there.
        for cut in [batch.len() - 1, FRAME + 3 + 2] {
            let mut f = frames(&batch[..cut]);
            let got: Vec<_> = f.by_ref().collect();
            assert!(f.torn && got.len() < 3, "{cut}: {got:?}");
        }
        let mut huge = batch.clone();
        huge[..FRAME].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut f = frames(&huge);
        assert_eq!(f.next(), None);
        assert!(f.torn);

        let hello = Hello {
            build: 0xdead_beef,
            pid: 42,
            processes: 4,
            host: "node-1".into(),
            problem: None,
        };
        assert_eq!(Hello::decode(&hello.encode()), Some(hello.clone()));
        let sick = Hello {
            problem: Some("fork failed".into()),
            ..hello
        };
        assert_eq!(Hello::decode(&sick.encode()), Some(sick));
        assert_eq!(Hello::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn every_item_failure_crosses_ranks_as_the_pools_own_error() {
        let cases = [
            Error::Panicked {
                message: "boom".into(),
                location: "a.rs:1:2".into(),
            },
            Error::WorkerDied {
                pid: 5,
                how: Exit::Signal(9),
            },
            Error::TimedOut {
                pid: 6,
                limit: Duration::from_millis(250),
            },
            Error::InitializerFailed {
                deaths: 3,
                last: Exit::Code(2),
            },
            Error::WorkerCodec {
                what: "encode the result",
                message: "too deep".into(),
            },
        ];
        for e in cases {
            let mut out = Vec::new();
            put_outcome::<u8>(&mut out, &Err(e));
            let (back, rest) = read_entry::<u8>(&out, 3);
            assert!(rest.is_empty());
            let back = back.unwrap_err();
            let e2 = match &back {
                Error::Panicked { message, location } => {
                    message == "boom" && location == "a.rs:1:2"
                }
                Error::WorkerDied { pid, how } => *pid == 5 && *how == Exit::Signal(9),
                Error::TimedOut { pid, limit } => *pid == 6 && *limit == Duration::from_millis(250),
                Error::InitializerFailed { deaths, last } => *deaths == 3 && *last == Exit::Code(2),
                Error::WorkerCodec { what, message } => {
                    *what == "encode the result" && message == "too deep"
                }
                _ => false,
            };
            assert!(e2, "{back:?}");
        }
        // Anything else names the rank.
        let mut out = Vec::new();
        put_outcome::<u8>(&mut out, &Err(Error::Terminated));
        let (back, _) = read_entry::<u8>(&out, 4);
        assert!(
            matches!(back, Err(Error::Rank { rank: 4, ref message }) if message.contains("terminated")),
            "{back:?}"
        );
    }

    #[test]
    fn hostile_entries_are_errors_not_panics() {
        for bytes in [&[][..], &[9], &[OK], &[FAILED, 200, 200], &[OK, 0xff, 0xff]] {
            let (r, _) = read_entry::<String>(bytes, 1);
            assert!(r.is_err(), "{bytes:?}");
        }
    }
}
