//! [`Task`]: what the pool sends a worker (a function's [`Target`], the
//! encoded arguments of one item or a chunk), and the buffers it is encoded in.

use std::sync::Arc;

use crate::buffers::{reuse, spare, task_buffer};
use crate::wire;

/// Where a task's function is: a `fn` (offsets from the anchor) or the pool's
/// closure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Target {
    pub(crate) kind: u8,
    pub(crate) fns: (i64, i64),
}

/// A chunk of a job's items, queued or sent.
pub(crate) struct Task {
    pub(crate) job: u64,
    /// Index of its first item in the job.
    pub(crate) first: usize,
    pub(crate) count: u32,
    pub(crate) target: Target,
    /// The whole inbox message: the header (its `seq` written when sent),
    /// then the encoded arguments, concatenated. Made once: sending puts
    /// these bytes as they are, and a stream shares them (no copy).
    pub(crate) msg: Msg,
    /// Where each item's arguments start, from the start of the arguments
    /// (for a task of more than one item: a death splits it).
    pub(crate) starts: Starts,
    /// Its number once sent; the worker it went to (`u32::MAX`: none yet;
    /// a `u32` so that it packs beside `count`: a task record a burst keeps
    /// by the hundred thousand, `benches/NOTES.md`).
    pub(crate) seq: u64,
    pub(crate) worker: u32,
}

/// A task's message: its own until a stream needs it too (most tasks never
/// stream, and an `Arc` for each cost an allocation a task).
pub(crate) enum Msg {
    /// A small message (a single task's, most often) in the record itself:
    /// no allocation by the submitting thread for the driver's to free.
    Inline {
        len: u8,
        buf: [u8; MSG_INLINE],
    },
    Own(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

/// The longest task message kept inline in its [`Task`] (the header and
/// 19 bytes of arguments).
const MSG_INLINE: usize = 48;
const _: () = assert!(wire::TASK_HEADER + 9 <= MSG_INLINE);

impl Msg {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Msg::Inline { len, buf } => &buf[..usize::from(*len)],
            Msg::Own(v) => v,
            Msg::Shared(v) => v,
        }
    }

    /// The bytes to write (copied first if a stream still holds them).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Msg::Inline { len, buf } => &mut buf[..usize::from(*len)],
            Msg::Own(v) => v,
            Msg::Shared(v) => Arc::make_mut(v).as_mut_slice(),
        }
    }

    /// The bytes, shared (with a stream), without a copy.
    pub(crate) fn shared(&mut self) -> Arc<Vec<u8>> {
        let shared = match std::mem::replace(self, Msg::Own(Vec::new())) {
            Msg::Inline { len, buf } => Arc::new(buf[..usize::from(len)].to_vec()),
            Msg::Own(v) => Arc::new(v),
            Msg::Shared(v) => v,
        };
        *self = Msg::Shared(Arc::clone(&shared));
        shared
    }
}

/// Where each item of a task starts in its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Starts {
    /// Item `i` starts at `i × stride`: every item is as long (a chunk of
    /// raw numbers, or a single item), and no list is kept.
    Stride(u32),
    /// Item `i` starts at `list[i]` (boxed: 8 bytes shorter than a `Vec`).
    List(Box<[u32]>),
}

impl Starts {
    /// Where item `i` starts, in arguments `len` bytes long (`len` for the
    /// end, or an item past it).
    pub(crate) fn of(&self, i: usize, len: usize) -> usize {
        match self {
            Starts::Stride(_) if i == 0 => 0,
            // A stride of 0: a task of one item.
            Starts::Stride(0) => len,
            Starts::Stride(s) => i.saturating_mul(*s as usize).min(len),
            Starts::List(v) => v.get(i).map_or(len, |&s| s as usize),
        }
    }
}

impl Task {
    /// A task of `count` items whose arguments were encoded into `msg` after
    /// the room [`task_buffer`] left for the header.
    pub(crate) fn new(
        job: u64,
        first: usize,
        count: u32,
        target: Target,
        mut msg: Vec<u8>,
        starts: Starts,
    ) -> Task {
        msg[..wire::TASK_HEADER].copy_from_slice(&wire::task_header(
            0,
            target.kind,
            target.fns,
            count,
        ));
        let msg = if msg.len() <= MSG_INLINE {
            let mut buf = [0; MSG_INLINE];
            buf[..msg.len()].copy_from_slice(&msg);
            let len = msg.len() as u8;
            reuse(msg);
            Msg::Inline { len, buf }
        } else {
            Msg::Own(msg)
        };
        Task::unsent(job, first, count, target, msg, starts)
    }

    /// A task of one item whose argument is the raw entry `arg`: its message
    /// made in the record itself, with no buffer to encode into and no
    /// variable-length copy (the trivial pipelined `apply_async`'s case).
    pub(crate) fn one_raw(job: u64, target: Target, arg: &crate::raw::Entry) -> Task {
        let mut buf = [0; MSG_INLINE];
        buf[..wire::TASK_HEADER].copy_from_slice(&wire::task_header(0, target.kind, target.fns, 1));
        // Fixed-size: the entry's 9 bytes, of which `arg.len` count.
        buf[wire::TASK_HEADER..wire::TASK_HEADER + 9].copy_from_slice(&arg.bytes);
        let len = (wire::TASK_HEADER + arg.len) as u8;
        Task::unsent(
            job,
            0,
            1,
            target,
            Msg::Inline { len, buf },
            Starts::Stride(0),
        )
    }

    /// The record of a task not sent yet (inline: it is built in place,
    /// not moved, a task a submission).
    #[inline(always)]
    pub(crate) fn unsent(
        job: u64,
        first: usize,
        count: u32,
        target: Target,
        msg: Msg,
        starts: Starts,
    ) -> Task {
        Task {
            job,
            first,
            count,
            target,
            msg,
            starts,
            seq: 0,
            worker: u32::MAX,
        }
    }

    /// The worker slot it went to (`u32::MAX` as a `usize`: none yet).
    pub(crate) fn worker(&self) -> usize {
        self.worker as usize
    }

    pub(crate) fn args(&self) -> &[u8] {
        &self.msg.bytes()[wire::TASK_HEADER..]
    }

    /// The items `range` of this task, as a task of their own.
    pub(crate) fn sub(&self, range: std::ops::Range<usize>) -> Task {
        let args = self.args();
        let start = |i: usize| self.starts.of(i, args.len());
        let base = start(range.start);
        let mut msg = task_buffer();
        msg.extend_from_slice(&args[base..start(range.end)]);
        let starts = match &self.starts {
            Starts::Stride(s) => Starts::Stride(*s),
            Starts::List(_) => Starts::List(
                (range.start..range.end)
                    .map(|i| (start(i) - base) as u32)
                    .collect(),
            ),
        };
        Task::new(
            self.job,
            self.first + range.start,
            range.len() as u32,
            self.target,
            msg,
            starts,
        )
    }

    /// Numbers it `seq` (in its message too), for worker `w`.
    pub(crate) fn number(&mut self, seq: u64, w: usize) {
        self.seq = seq;
        // Worker slots number at most 4 096 (`Builder::build`'s bound).
        self.worker = w as u32;
        // Shared only with a stream still queued for a worker that died:
        // then the bytes are copied, and the stream keeps the old number.
        self.msg.bytes_mut()[..8].copy_from_slice(&seq.to_le_bytes());
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        match &mut self.msg {
            Msg::Inline { .. } => {}
            Msg::Own(msg) => spare::give(std::mem::take(msg)),
            Msg::Shared(msg) => {
                if let Some(msg) = Arc::get_mut(msg) {
                    spare::give(std::mem::take(msg));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single task of a raw argument made in its record says what one
    /// encoded into a buffer says, byte for byte, for every width.
    #[test]
    fn a_raw_single_task_is_the_encoded_one() {
        fn both<T: serde::Serialize>(v: T) {
            let target = Target {
                kind: crate::wire::TARGET_FN,
                fns: (-123_456, 789),
            };
            let mut bytes = task_buffer();
            crate::wire::encode_arg(&v, &mut bytes).unwrap();
            let encoded = Task::new(7, 0, 1, target, bytes, Starts::Stride(0));
            let raw = Task::one_raw(7, target, &crate::raw::entry(&v).expect("raw"));
            assert_eq!(raw.msg.bytes(), encoded.msg.bytes());
            assert_eq!(
                (raw.job, raw.first, raw.count, raw.target, &raw.starts),
                (
                    encoded.job,
                    encoded.first,
                    encoded.count,
                    encoded.target,
                    &encoded.starts
                )
            );
        }
        both(200u8);
        both(-3i16);
        both(u32::MAX);
        both(0x0102_0304_0506_0708u64);
        both(-1.5f64);
        both(2.5f32);
    }
}
