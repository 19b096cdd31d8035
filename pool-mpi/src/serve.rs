//! How a serving rank runs a task: the *server* function named in the task,
//! monomorphised on rank 0 for the task's types, decodes the arguments,
//! hands them to the rank's local [`Pool`] and, once it answers, encodes each
//! item's outcome. It needs MPI only to receive and send the bytes, so it is
//! tested here against a real local pool without MPI.

// Without the `mpi` feature only the unit tests use this module.
#![cfg_attr(not(feature = "mpi"), allow(dead_code))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use multiproc_pool::{AsyncResult, Error, Pool};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{self, CodecWhat, RemoteError, TaskHeader};

/// One answer for rank 0, framed: length, chunk id, items, entries.
pub(crate) type Answer = Vec<u8>;

/// The largest message MPI carries (its counts are `int`).
const MAX_MESSAGE: usize = i32::MAX as usize;

/// Where a serving rank's answers go: small ones straight to rank 0 from
/// the thread that has them (the local pool's callback: no hand-over to
/// another thread), larger ones through the answering thread (a channel
/// whose `None` ends it), so that a large send never holds up the local
/// pool's thread.
pub(crate) struct Outbox {
    to: Sender<Option<Answer>>,
    /// Sends an answer itself (a serving rank's MPI send); `None`: every
    /// answer goes through the channel (the unit tests read them there).
    direct: Option<Direct>,
}

/// A send of one small answer to rank 0.
pub(crate) type Direct = Box<dyn Fn(&[u8]) + Send + Sync>;

impl Outbox {
    pub(crate) fn new(to: Sender<Option<Answer>>, direct: Option<Direct>) -> Arc<Outbox> {
        Arc::new(Outbox { to, direct })
    }

    /// Ends the answering thread once the answers given before are sent.
    pub(crate) fn end(&self) {
        let _ = self.to.send(None);
    }

    fn post(&self, answer: Answer) {
        match &self.direct {
            Some(send) if answer.len() <= wire::BATCH => send(&answer),
            _ => {
                let _ = self.to.send(Some(answer));
            }
        }
    }
}

/// Where a task's answer goes, once: the local pool's callback gives it as
/// the job ends, or the serving loop for a job that ended without one (its
/// pool terminated).
pub(crate) struct Reply {
    id: u64,
    count: u32,
    sent: AtomicBool,
    out: Arc<Outbox>,
}

impl Reply {
    pub(crate) fn new(id: u64, count: u32, out: Arc<Outbox>) -> Arc<Reply> {
        Arc::new(Reply {
            id,
            count,
            sent: AtomicBool::new(false),
            out,
        })
    }

    /// Sends the answer whose entries `entries` writes, unless one was sent.
    /// A `Serialize` that panics, or an answer larger than one MPI message,
    /// fails every item instead: rank 0 always hears of the chunk.
    fn answer(&self, entries: impl FnOnce(&mut Vec<u8>)) {
        if self.sent.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut out = Vec::new();
        let at = wire::start_frame(&mut out);
        wire::answer_header(&mut out, self.id, self.count);
        let mark = out.len();
        let fail = |out: &mut Vec<u8>, e: RemoteError| {
            out.truncate(mark);
            for _ in 0..self.count {
                wire::put_failure(out, &e);
            }
        };
        let wrote = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entries(&mut out)));
        if wrote.is_err() {
            let e = RemoteError::Codec {
                what: CodecWhat::EncodeResult,
                message: "the result's Serialize panicked".to_owned(),
            };
            fail(&mut out, e);
        }
        if out.len() > MAX_MESSAGE {
            let e = RemoteError::Other(format!(
                "the chunk's answer of {} bytes is more than one MPI message carries \
                 (2 GiB): use smaller chunks",
                out.len()
            ));
            fail(&mut out, e);
        }
        wire::end_frame(&mut out, at);
        self.out.post(out);
    }

    /// Every item failed with `e`.
    fn fail_all(&self, e: &RemoteError) {
        self.answer(|out| {
            for _ in 0..self.count {
                wire::put_failure(out, e);
            }
        });
    }
}

/// A task the local pool runs: kept until it ends (dropping the local
/// handle would forget the job and its callback).
pub(crate) struct Held {
    reply: Arc<Reply>,
    job: Box<dyn LocalJob>,
}

impl Held {
    /// Whether the local job ended; if it ended without its callback
    /// answering (its pool was terminated), answers for it.
    pub(crate) fn settled(self) -> Result<(), Held> {
        if !self.job.ready() {
            return Err(self);
        }
        let Held { reply, job } = self;
        reply.fail_all(&RemoteError::of(&job.failure()));
        Ok(())
    }
}

/// The local handle, whatever its type.
trait LocalJob: Send {
    fn ready(&self) -> bool;
    /// Why a job that ended without its callback failed.
    fn failure(self: Box<Self>) -> Error;
}

impl<R: Send + 'static> LocalJob for AsyncResult<Vec<Result<R, Error>>> {
    fn ready(&self) -> bool {
        AsyncResult::ready(self)
    }

    fn failure(self: Box<Self>) -> Error {
        match (*self).get() {
            Err(e) => e,
            Ok(_) => Error::Rank {
                rank: 0,
                message: "the local job ended without answering".to_owned(),
            },
        }
    }
}

/// A server: starts the items of `args` with the function at `f` on `pool`
/// (local chunks of `chunk` items, `None` for Python's size); the local
/// pool's callback answers through `reply`. `None`: answered already (the
/// arguments did not decode, the pool refused the job).
///
/// # Safety
/// `f` must be the address of a `fn` of the types the server was
/// monomorphised for.
pub(crate) type Server = unsafe fn(
    pool: &Pool,
    f: usize,
    args: &[u8],
    chunk: Option<usize>,
    reply: Arc<Reply>,
) -> Option<Held>;

/// The server of `fn(A) -> R`.
///
/// # Safety
/// `f` is the address of a `fn(A) -> R` (see [`Server`]).
pub(crate) unsafe fn server<A, R>(
    pool: &Pool,
    f: usize,
    args: &[u8],
    chunk: Option<usize>,
    reply: Arc<Reply>,
) -> Option<Held>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: rank 0 sent the address of a fn(A) -> R with this very server
    // (the caller's contract; the build identity was checked at start).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    start(args, reply, |items, answer| {
        pool.map_each_async_with(f, items, chunk, answer)
    })
}

/// The server of `fn(A, B) -> R` over `(A, B)` arguments (`starmap`).
///
/// # Safety
/// `f` is the address of a `fn(A, B) -> R` (see [`Server`]).
pub(crate) unsafe fn server2<A, B, R>(
    pool: &Pool,
    f: usize,
    args: &[u8],
    chunk: Option<usize>,
    reply: Arc<Reply>,
) -> Option<Held>
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: as in `server`, for a fn(A, B) -> R.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(f) };
    start(args, reply, |items, answer| {
        pool.starmap_each_async_with(f, items, chunk, answer)
    })
}

/// The local pool's callback of a task: answers every item's outcome.
type AnswerEach<R> = Box<dyn FnOnce(&Vec<Result<R, Error>>) + Send>;

/// Decodes a task's arguments and starts them with `submit` on the local
/// pool, whose callback answers through `reply`; `None` once answered
/// already (the arguments did not decode, the pool refused the job).
fn start<T, R>(
    args: &[u8],
    reply: Arc<Reply>,
    submit: impl FnOnce(
        Vec<T>,
        AnswerEach<R>,
    ) -> multiproc_pool::Result<AsyncResult<Vec<Result<R, Error>>>>,
) -> Option<Held>
where
    T: DeserializeOwned,
    R: Serialize + Send + 'static,
{
    let items = decoded::<T>(args, &reply)?;
    let answers = Arc::clone(&reply);
    match submit(items, Box::new(move |each| answer_each(&answers, each))) {
        Ok(job) => Some(Held {
            reply,
            job: Box::new(job),
        }),
        Err(e) => {
            reply.fail_all(&RemoteError::of(&e));
            None
        }
    }
}

/// The arguments, or `None` once every item is answered as undecodable.
fn decoded<A: DeserializeOwned>(args: &[u8], reply: &Reply) -> Option<Vec<A>> {
    decode_args::<A>(args, reply.count)
        .map_err(|message| {
            reply.fail_all(&RemoteError::Codec {
                what: CodecWhat::DecodeArgs,
                message,
            });
        })
        .ok()
}

/// The local pool's callback: every item's outcome, encoded.
fn answer_each<R: Serialize>(reply: &Reply, each: &[Result<R, Error>]) {
    if each.len() != reply.count as usize {
        // Never seen: the local pool answers every item.
        let e = RemoteError::Other(format!(
            "the local pool answered {} items of {}",
            each.len(),
            reply.count
        ));
        return reply.fail_all(&e);
    }
    reply.answer(|out| {
        for o in each {
            wire::put_outcome(out, o);
        }
    });
}

/// `count` arguments by postcard, one after another. A `Deserialize` that
/// panics is caught: a rank never dies of a bad argument.
fn decode_args<A: DeserializeOwned>(mut bytes: &[u8], count: u32) -> Result<Vec<A>, String> {
    // Every item takes at least a byte: a scribbled count cannot make a
    // large allocation.
    let mut items = Vec::with_capacity((count as usize).min(bytes.len()));
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..count {
            let (a, rest) = postcard::take_from_bytes::<A>(bytes).map_err(|e| e.to_string())?;
            items.push(a);
            bytes = rest;
        }
        Ok::<(), String>(())
    }));
    match run {
        Ok(Ok(())) if bytes.is_empty() => Ok(items),
        Ok(Ok(())) => Err("the task has more bytes than its items".to_owned()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the argument's Deserialize panicked".to_owned()),
    }
}

/// Runs one task (a frame of a [`wire::TASK`] message) on `pool`, its
/// answer to go to `out`: the local job to keep until it ends, or `None`
/// when it is answered already, or when the task is too short to name its
/// chunk (nothing can be answered).
///
/// # Safety
/// The message comes from rank 0 of the same build (checked at start): its
/// offsets name a function and its server of matching types.
pub(crate) unsafe fn run_task(pool: &Pool, task: &[u8], out: &Arc<Outbox>) -> Option<Held> {
    let (h, args) = TaskHeader::read(task)?;
    let f = wire::address_at(h.fn_off);
    // SAFETY: the caller's contract: the offset names a Server.
    let serve = unsafe { std::mem::transmute::<usize, Server>(wire::address_at(h.serve_off)) };
    let chunk = (h.chunk > 0).then_some(h.chunk as usize);
    let reply = Reply::new(h.id, h.count, Arc::clone(out));
    // SAFETY: the caller's contract: `f` matches the server's types.
    unsafe { serve(pool, f, args, chunk, reply) }
}

/// Encodes a task, framed, for [`run_task`]: `f` with its server `serve`,
/// over `items` (`count` of them, encoded already).
pub(crate) fn task_message(
    id: u64,
    f: usize,
    serve: Server,
    count: u32,
    chunk: Option<usize>,
    args: &[u8],
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(wire::FRAME + wire::TASK_HEADER + args.len());
    let at = wire::start_frame(&mut msg);
    TaskHeader {
        id,
        fn_off: wire::offset_of(f),
        serve_off: wire::offset_of(serve as usize),
        count,
        chunk: chunk.map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX)),
    }
    .write(&mut msg);
    msg.extend_from_slice(args);
    // Longer than a frame holds: the caller refuses it (longer than an MPI
    // message).
    wire::end_frame(&mut msg, at);
    msg
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{channel, Receiver};
    use std::time::Duration;

    use super::*;

    fn inverse(x: u32) -> u32 {
        12 / x
    }

    fn join(a: String, b: u8) -> String {
        format!("{a}{b}")
    }

    fn encode<T: Serialize>(items: &[T]) -> Vec<u8> {
        let mut out = Vec::new();
        for x in items {
            wire::postcard_append(x, &mut out).unwrap();
        }
        out
    }

    /// The task inside its frame.
    fn unframed(msg: &[u8]) -> &[u8] {
        let mut f = wire::frames(msg);
        let task = f.next().unwrap();
        assert!(f.next().is_none() && !f.torn);
        task
    }

    /// The next answer through `rx`: its chunk id and outcomes.
    fn answer<R: DeserializeOwned>(rx: &Receiver<Option<Answer>>) -> (u64, Vec<Result<R, Error>>) {
        let frame = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
        let (id, count, mut entries) = wire::read_answer(unframed(&frame)).unwrap();
        let mut out = Vec::new();
        for _ in 0..count {
            let (r, rest) = wire::read_entry::<R>(entries, 1);
            out.push(r);
            entries = rest;
        }
        assert!(entries.is_empty());
        (id, out)
    }

    /// Settles `held`, which is to end within seconds.
    fn settled_soon(mut held: Held) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Err(h) = held.settled() {
            held = h;
            assert!(std::time::Instant::now() < deadline, "never settled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_task_runs_on_the_local_pool_and_each_item_answers_for_itself() {
        let pool = Pool::new(2).unwrap();
        let (tx, rx) = channel();
        let out = Outbox::new(tx, None);
        let args = encode(&[1u32, 0, 3, 4]);
        let msg = task_message(
            5,
            inverse as fn(u32) -> u32 as usize,
            server::<u32, u32>,
            4,
            Some(1),
            &args,
        );
        // SAFETY: the offsets name `inverse` and its server, in this build.
        let held = unsafe { run_task(&pool, unframed(&msg), &out) }.unwrap();
        // Answered by the local pool's callback, without anyone waiting.
        let (id, got) = answer::<u32>(&rx);
        assert_eq!(id, 5);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].as_ref().ok(), Some(&12));
        assert!(
            matches!(got[1], Err(Error::Panicked { .. })),
            "{:?}",
            got[1]
        );
        assert_eq!(got[2].as_ref().ok(), Some(&4));
        assert_eq!(got[3].as_ref().ok(), Some(&3));
        // Settled soon after (the callback answers just before its job is
        // marked done), and settling sends nothing more.
        settled_soon(held);
        assert!(rx.try_recv().is_err());

        let pairs = encode(&[("a".to_owned(), 1u8), ("b".to_owned(), 2)]);
        let f = join as fn(String, u8) -> String as usize;
        let msg = task_message(6, f, server2::<String, u8, String>, 2, None, &pairs);
        // SAFETY: as above, for `join`.
        let _held = unsafe { run_task(&pool, unframed(&msg), &out) }.unwrap();
        let (id, got) = answer::<String>(&rx);
        assert_eq!(id, 6);
        assert_eq!(got[0].as_ref().ok().map(String::as_str), Some("a1"));
        assert_eq!(got[1].as_ref().ok().map(String::as_str), Some("b2"));
    }

    #[test]
    fn arguments_that_do_not_decode_fail_every_item_of_the_task() {
        let pool = Pool::new(1).unwrap();
        let (tx, rx) = channel();
        let out = Outbox::new(tx, None);
        let f = inverse as fn(u32) -> u32 as usize;
        // Three items announced, one given; then one given with bytes left over.
        for (count, args) in [(3, encode(&[1u32])), (1, encode(&[1u32, 2]))] {
            let msg = task_message(1, f, server::<u32, u32>, count, None, &args);
            // SAFETY: the offsets name `inverse` and its server.
            let held = unsafe { run_task(&pool, unframed(&msg), &out) };
            assert!(held.is_none(), "answered at once");
            let (_, got) = answer::<u32>(&rx);
            assert_eq!(got.len(), count as usize);
            assert!(
                got.iter().all(|r| matches!(
                    r,
                    Err(Error::WorkerCodec {
                        what: "decode the arguments",
                        ..
                    })
                )),
                "{got:?}"
            );
        }
        // SAFETY: too short to be run at all.
        assert!(unsafe { run_task(&pool, &[0; 10], &out) }.is_none());
        assert!(rx.try_recv().is_err());
    }

    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    #[test]
    fn a_job_its_pool_terminated_is_answered_by_settling_it() {
        let pool = Pool::new(1).unwrap();
        let (tx, rx) = channel();
        let out = Outbox::new(tx, None);
        let f = nap as fn(u64) -> u64 as usize;
        let msg = task_message(
            8,
            f,
            server::<u64, u64>,
            2,
            Some(1),
            &encode(&[5_000u64, 1]),
        );
        // SAFETY: the offsets name `nap` and its server.
        let held = unsafe { run_task(&pool, unframed(&msg), &out) }.unwrap();
        std::thread::sleep(Duration::from_millis(50));
        pool.terminate();
        // No callback for a terminated job: settling answers for it.
        settled_soon(held);
        let (id, got) = answer::<u64>(&rx);
        assert_eq!(id, 8);
        assert!(
            got.len() == 2
                && got.iter().all(
                    |r| matches!(r, Err(Error::Rank { message, .. }) if message.contains("terminated"))
                ),
            "{got:?}"
        );
    }

    #[test]
    fn an_answer_is_sent_once_and_a_panicking_encoder_fails_its_items() {
        let (tx, rx) = channel();
        let reply = Reply::new(3, 2, Outbox::new(tx, None));
        reply.answer(|_| panic!("a Serialize that panics"));
        reply.fail_all(&RemoteError::Other("late".into()));
        let (id, got) = answer::<u8>(&rx);
        assert_eq!(id, 3);
        assert!(
            got.iter().all(|r| matches!(
                r,
                Err(Error::WorkerCodec {
                    what: "encode the result",
                    ..
                })
            )),
            "{got:?}"
        );
        assert!(rx.try_recv().is_err(), "a second answer went out");
    }
}
