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

use multiproc_pool::{AsyncResult, Error, Function, Pool};
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

    /// Sends one message of answers: to rank 0 at once when small, else
    /// through the answering thread.
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
    fn answer(&self, entries: impl FnOnce(&mut Vec<u8>)) {
        let mut out = Vec::new();
        if self.frame(&mut out, None, entries) {
            self.out.post(out);
        }
    }

    /// The answer whose entries `entries` writes, framed and appended to
    /// `out` (answers batched into one message are framed in place, with no
    /// buffer of their own), naming the first item a worker's death or a
    /// timeout failed; `false` if an answer was given already (nothing
    /// appended). A `Serialize` that panics, or an answer larger than one
    /// MPI message, fails every item instead: rank 0 always hears of the
    /// chunk.
    fn frame(
        &self,
        out: &mut Vec<u8>,
        first_death: Option<u32>,
        entries: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        if self.sent.swap(true, Ordering::AcqRel) {
            return false;
        }
        let at = wire::start_frame(out);
        wire::answer_header(out, self.id, self.count, first_death);
        let mark = out.len();
        let fail = |out: &mut Vec<u8>, e: RemoteError| {
            out.truncate(mark);
            for _ in 0..self.count {
                wire::put_failure(out, &e);
            }
        };
        let wrote = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entries(out)));
        if wrote.is_err() {
            let e = RemoteError::Codec {
                what: CodecWhat::EncodeResult,
                message: "the result's Serialize panicked".to_owned(),
            };
            fail(out, e);
        }
        if out.len() - at > MAX_MESSAGE {
            let e = RemoteError::Other(format!(
                "the chunk's answer of {} bytes is more than one MPI message carries \
                 (2 GiB): use smaller chunks",
                out.len() - at
            ));
            fail(out, e);
        }
        wire::end_frame(out, at);
        true
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

/// A local job of one or more tasks: kept until it ends (dropping the local
/// handle would forget the job and its callback).
pub(crate) struct Held {
    replies: Vec<Arc<Reply>>,
    job: Box<dyn LocalJob>,
}

impl Held {
    /// Whether the local job ended; if it ended without its callback
    /// answering (its pool was terminated), answers for its tasks.
    pub(crate) fn settled(self) -> Result<(), Held> {
        if !self.job.ready() {
            return Err(self);
        }
        let Held { replies, job } = self;
        let e = RemoteError::of(&job.failure());
        for r in &replies {
            r.fail_all(&e);
        }
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

/// One task of a [`wire::TASK`] message: its arguments, and where its
/// answer goes.
pub(crate) struct Task<'m> {
    args: &'m [u8],
    reply: Arc<Reply>,
}

/// A server: starts the items of `tasks` with the function at `f` on `pool`
/// as one local job (local chunks of `chunk` items, `None` for Python's
/// size); the local pool's callback answers each task through its reply.
/// With `below_death` (a chunk of a `map`, see [`wire::BELOW_DEATH`]), the
/// items above the first that a worker's death or a timeout fails are not
/// run if not sent yet. `None`: every task answered already (its arguments
/// did not decode, or the pool refused the job).
///
/// # Safety
/// `f` must be the address of a `fn` of the types the server was
/// monomorphised for, unless the server is made for its function
/// ([`server_own`], which does not read `f`).
pub(crate) type Server = unsafe fn(
    pool: &Pool,
    f: usize,
    tasks: Vec<Task<'_>>,
    chunk: Option<usize>,
    below_death: bool,
) -> Option<Held>;

/// The server of `fn(A) -> R`.
///
/// # Safety
/// `f` is the address of a `fn(A) -> R` (see [`Server`]).
pub(crate) unsafe fn server<A, R>(
    pool: &Pool,
    f: usize,
    tasks: Vec<Task<'_>>,
    chunk: Option<usize>,
    below_death: bool,
) -> Option<Held>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: rank 0 sent the address of a fn(A) -> R with this very server
    // (the caller's contract; the build identity was checked at start).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    serve_with(pool, f, tasks, chunk, below_death)
}

/// The server of `F`, a `fn` item or a closure that captures nothing (see
/// [`multiproc_pool::Function`]): made for it alone, so that the rank's
/// local pool runs it with a trampoline of its own. `f` is not read.
///
/// # Safety
/// `F` is zero-sized and `Copy` (see [`func_of`]).
pub(crate) unsafe fn server_own<F, A, R>(
    pool: &Pool,
    _f: usize,
    tasks: Vec<Task<'_>>,
    chunk: Option<usize>,
    below_death: bool,
) -> Option<Held>
where
    F: Fn(A) -> R + Copy + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: F is zero-sized and Copy, and rank 0 holds one (the caller's
    // contract).
    let f = unsafe { multiproc_pool::conjure::<F>() };
    serve_with(pool, f, tasks, chunk, below_death)
}

/// Starts `tasks` of `f` on the local pool (see [`Server`]).
fn serve_with<A, R>(
    pool: &Pool,
    f: impl Fn(A) -> R + Copy + 'static,
    tasks: Vec<Task<'_>>,
    chunk: Option<usize>,
    below_death: bool,
) -> Option<Held>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    start(tasks, |items, answer| {
        if below_death {
            pool.map_each_below_death_async_with(f, items, chunk, answer)
        } else {
            pool.map_each_async_with(f, items, chunk, answer)
        }
    })
}

/// The server of `fn(A, B) -> R` over `(A, B)` arguments (`starmap`).
///
/// # Safety
/// `f` is the address of a `fn(A, B) -> R` (see [`Server`]).
pub(crate) unsafe fn server2<A, B, R>(
    pool: &Pool,
    f: usize,
    tasks: Vec<Task<'_>>,
    chunk: Option<usize>,
    below_death: bool,
) -> Option<Held>
where
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: as in `server`, for a fn(A, B) -> R.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(f) };
    serve_with2(pool, f, tasks, chunk, below_death)
}

/// [`server_own`] for a two-argument function (`starmap`).
///
/// # Safety
/// As for [`server_own`].
pub(crate) unsafe fn server2_own<F, A, B, R>(
    pool: &Pool,
    _f: usize,
    tasks: Vec<Task<'_>>,
    chunk: Option<usize>,
    below_death: bool,
) -> Option<Held>
where
    F: Fn(A, B) -> R + Copy + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: as in `server_own`.
    let f = unsafe { multiproc_pool::conjure::<F>() };
    serve_with2(pool, f, tasks, chunk, below_death)
}

/// [`serve_with`] for a two-argument function.
fn serve_with2<A, B, R>(
    pool: &Pool,
    f: impl Fn(A, B) -> R + Copy + 'static,
    tasks: Vec<Task<'_>>,
    chunk: Option<usize>,
    below_death: bool,
) -> Option<Held>
where
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    start(tasks, |items, answer| {
        if below_death {
            pool.starmap_each_below_death_async_with(f, items, chunk, answer)
        } else {
            pool.starmap_each_async_with(f, items, chunk, answer)
        }
    })
}

/// How a task of `f` crosses to the ranks: the function's address (0 when
/// its server is made for it) and its server (see
/// [`multiproc_pool::Function`]).
pub(crate) fn func_of<F, A, R>(f: F) -> Result<(usize, Server), Error>
where
    F: Fn(A) -> R + Copy + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    Ok(match multiproc_pool::function_of(f)? {
        Function::Own => (0, server_own::<F, A, R>),
        Function::Pointer(f) => (f, server::<A, R>),
    })
}

/// [`func_of`] for a two-argument function (`starmap`).
pub(crate) fn func_of2<F, A, B, R>(f: F) -> Result<(usize, Server), Error>
where
    F: Fn(A, B) -> R + Copy + 'static,
    A: Serialize + DeserializeOwned + 'static,
    B: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    Ok(match multiproc_pool::function_of2(f)? {
        Function::Own => (0, server2_own::<F, A, B, R>),
        Function::Pointer(f) => (f, server2::<A, B, R>),
    })
}

/// The local pool's callback of a job: answers every item's outcome.
type AnswerEach<R> = Box<dyn FnOnce(&Vec<Result<R, Error>>) + Send>;

/// Decodes the tasks' arguments (a task whose arguments do not decode is
/// answered so at once) and starts them with `submit` as one local job,
/// whose callback answers each task; `None` once every task is answered
/// already.
fn start<T, R>(
    tasks: Vec<Task<'_>>,
    submit: impl FnOnce(
        Vec<T>,
        AnswerEach<R>,
    ) -> multiproc_pool::Result<AsyncResult<Vec<Result<R, Error>>>>,
) -> Option<Held>
where
    T: DeserializeOwned,
    R: Serialize + Send + 'static,
{
    let mut items = Vec::new();
    let mut replies = Vec::with_capacity(tasks.len());
    for t in tasks {
        match decode_args_into::<T>(t.args, t.reply.count, &mut items) {
            Ok(()) => replies.push(t.reply),
            Err(message) => t.reply.fail_all(&RemoteError::Codec {
                what: CodecWhat::DecodeArgs,
                message,
            }),
        }
    }
    if replies.is_empty() {
        return None;
    }
    let answers = replies.clone();
    match submit(items, Box::new(move |each| answer_each(&answers, each))) {
        Ok(job) => Some(Held {
            replies,
            job: Box::new(job),
        }),
        Err(e) => {
            let e = RemoteError::of(&e);
            for r in &replies {
                r.fail_all(&e);
            }
            None
        }
    }
}

/// The local pool's callback: each task's items' outcomes, encoded, the
/// answers that fit together in one message.
fn answer_each<R: Serialize>(replies: &[Arc<Reply>], each: &[Result<R, Error>]) {
    let expected: usize = replies.iter().map(|r| r.count as usize).sum();
    if each.len() != expected {
        // Never seen: the local pool answers every item.
        let e = RemoteError::Other(format!(
            "the local pool answered {} items of {expected}",
            each.len()
        ));
        for r in replies {
            r.fail_all(&e);
        }
        return;
    }
    let Some(first) = replies.first() else { return };
    // Framed straight into messages of up to `wire::BATCH` bytes; a larger
    // answer goes alone.
    let mut batch = Vec::with_capacity(256);
    let mut rest = each;
    for r in replies {
        let (mine, after) = rest.split_at(r.count as usize);
        rest = after;
        let first_death = mine
            .iter()
            .position(|o| matches!(o, Err(Error::WorkerDied { .. } | Error::TimedOut { .. })))
            .and_then(|i| u32::try_from(i).ok());
        let before = batch.len();
        r.frame(&mut batch, first_death, |out| {
            for o in mine {
                wire::put_outcome(out, o);
            }
        });
        if batch.len() > wire::BATCH && before > 0 {
            // This answer does not fit beside the ones before it: they go
            // now, and it starts the next message.
            let this = batch.split_off(before);
            first.out.post(std::mem::replace(&mut batch, this));
        }
        if batch.len() > wire::BATCH {
            first.out.post(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        first.out.post(batch);
    }
}

/// `count` arguments by postcard, one after another, appended to `items`
/// (on failure, `items` is left as it was). A `Deserialize` that panics is
/// caught: a rank never dies of a bad argument.
fn decode_args_into<A: DeserializeOwned>(
    mut bytes: &[u8],
    count: u32,
    items: &mut Vec<A>,
) -> Result<(), String> {
    let before = items.len();
    // Every item takes at least a byte: a scribbled count cannot make a
    // large allocation.
    items.reserve((count as usize).min(bytes.len()));
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..count {
            let (a, rest) = multiproc_pool::decode_value::<A>(bytes).map_err(|e| e.to_string())?;
            items.push(a);
            bytes = rest;
        }
        Ok::<(), String>(())
    }));
    let r = match run {
        Ok(Ok(())) if bytes.is_empty() => return Ok(()),
        Ok(Ok(())) => Err("the task has more bytes than its items".to_owned()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the argument's Deserialize panicked".to_owned()),
    };
    // The arguments decoded before the failure are the user's values,
    // dropped here; a `Drop` that panics goes no further.
    wire::drop_quietly(items.drain(before..).collect::<Vec<A>>());
    r
}

/// Runs the tasks of a [`wire::TASK`] message (its frames) on `pool`, their
/// answers to go to `out`: the local jobs to keep until they end. Single
/// items in a row for one function (a stream of `apply_async`) become one
/// local job, each item still its own local chunk; every other task is a
/// job of its own. A task too short to name its chunk is dropped (nothing
/// can be answered).
///
/// # Safety
/// The message comes from rank 0 of the same build (checked at start): its
/// offsets name a function and its server of matching types.
pub(crate) unsafe fn run_tasks<'m>(
    pool: &Pool,
    frames: impl Iterator<Item = &'m [u8]>,
    out: &Arc<Outbox>,
) -> Vec<Held> {
    let mut held = Vec::new();
    let mut group: Option<(TaskHeader, Vec<Task<'m>>)> = None;
    let mut run = |(h, tasks): (TaskHeader, Vec<Task<'m>>)| {
        let f = wire::address_at(h.fn_off);
        // SAFETY: the caller's contract: the offset names a Server.
        let serve = unsafe { std::mem::transmute::<usize, Server>(wire::address_at(h.serve_off)) };
        // A group of single items: each its own local chunk, as each was
        // its own task.
        let chunk = if tasks.len() > 1 {
            Some(1)
        } else {
            (h.chunk > 0).then_some(h.chunk as usize)
        };
        let below_death = h.flags & wire::BELOW_DEATH != 0;
        // SAFETY: the caller's contract: `f` matches the server's types.
        held.extend(unsafe { serve(pool, f, tasks, chunk, below_death) });
    };
    for frame in frames {
        let Some((h, args)) = TaskHeader::read(frame) else {
            continue;
        };
        let task = Task {
            args,
            reply: Reply::new(h.id, h.count, Arc::clone(out)),
        };
        match &mut group {
            Some((g, tasks))
                if h.count == 1
                    && g.count == 1
                    && (g.fn_off, g.serve_off, g.chunk, g.flags)
                        == (h.fn_off, h.serve_off, h.chunk, h.flags) =>
            {
                tasks.push(task);
            }
            _ => {
                if let Some(g) = group.take() {
                    run(g);
                }
                group = Some((h, vec![task]));
            }
        }
    }
    if let Some(g) = group {
        run(g);
    }
    held
}

/// Encodes a task, framed, for [`run_tasks`]: `f` with its server `serve`,
/// over `items` (`count` of them, encoded already); `flags` as
/// [`wire::BELOW_DEATH`].
pub(crate) fn task_message(
    id: u64,
    f: usize,
    serve: Server,
    count: u32,
    chunk: Option<usize>,
    flags: u32,
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
        flags,
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

    /// `n` bytes of `n % 251`: answers of a chosen size.
    fn bytes_of(n: u32) -> Vec<u8> {
        vec![(n % 251) as u8; n as usize]
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
        let (wire::AnswerHeader { id, count, .. }, entries) =
            wire::read_answer(unframed(&frame)).unwrap();
        (id, outcomes(count, entries))
    }

    /// Runs the one task of the message `msg`.
    ///
    /// # Safety
    /// As for [`run_tasks`].
    unsafe fn run_one(pool: &Pool, msg: &[u8], out: &Arc<Outbox>) -> Option<Held> {
        // SAFETY: the caller's.
        let mut held = unsafe { run_tasks(pool, wire::frames(msg), out) };
        assert!(held.len() <= 1);
        held.pop()
    }

    /// An answer's items' outcomes.
    fn outcomes<R: DeserializeOwned>(count: u32, mut entries: &[u8]) -> Vec<Result<R, Error>> {
        let mut out = Vec::new();
        for _ in 0..count {
            let (r, rest) = wire::read_entry::<R>(entries, 1);
            out.push(r);
            entries = rest;
        }
        assert!(entries.is_empty());
        out
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
            0,
            &args,
        );
        // SAFETY: the offsets name `inverse` and its server, in this build.
        let held = unsafe { run_one(&pool, &msg, &out) }.unwrap();
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
        let msg = task_message(6, f, server2::<String, u8, String>, 2, None, 0, &pairs);
        // SAFETY: as above, for `join`.
        let _held = unsafe { run_one(&pool, &msg, &out) }.unwrap();
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
            let msg = task_message(1, f, server::<u32, u32>, count, None, 0, &args);
            // SAFETY: the offsets name `inverse` and its server.
            let held = unsafe { run_one(&pool, &msg, &out) };
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
        let short = [&10u32.to_le_bytes()[..], &[0; 10]].concat();
        // SAFETY: too short to be run at all.
        assert!(unsafe { run_one(&pool, &short, &out) }.is_none());
        assert!(rx.try_recv().is_err());
    }

    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    /// Notes that it began (a byte appended to the file at `path`), then
    /// kills its worker.
    fn note_and_die((path, _): (String, u32)) -> u32 {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        {
            let _ = f.write_all(b".");
        }
        // SAFETY: a plain kill of this process (a worker).
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        0
    }

    /// A chunk of a `map` (`BELOW_DEATH`) whose every item kills its worker:
    /// its answer names item 0 as the first death, and what the local pool
    /// had not sent when it died is not run (every item ran, each costing a
    /// new worker, before). Without the flag every item runs.
    #[test]
    fn a_map_chunk_whose_items_kill_their_workers_stops_at_the_first_death() {
        let pool = Pool::new(2).unwrap();
        let (tx, rx) = channel();
        let out = Outbox::new(tx, None);
        let path = std::env::temp_dir().join(format!("serve_deaths_{}", std::process::id()));
        let f = note_and_die as fn((String, u32)) -> u32 as usize;
        for (id, count, flags) in [(1, 400u32, wire::BELOW_DEATH), (2, 20, 0)] {
            let _ = std::fs::remove_file(&path);
            let items: Vec<(String, u32)> = (0..count)
                .map(|i| (path.display().to_string(), i))
                .collect();
            let msg = task_message(
                id,
                f,
                server::<(String, u32), u32>,
                count,
                None,
                flags,
                &encode(&items),
            );
            // SAFETY: the offsets name `note_and_die` and its server.
            let held = unsafe { run_one(&pool, &msg, &out) }.unwrap();
            let frame = rx.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
            let (h, entries) = wire::read_answer(unframed(&frame)).unwrap();
            drop(held);
            let begun = std::fs::metadata(&path).map_or(0, |m| m.len());
            let _ = std::fs::remove_file(&path);
            assert_eq!((h.id, h.count, h.first_death), (id, count, Some(0)));
            let got = outcomes::<u32>(count, entries);
            assert!(
                matches!(got[0], Err(Error::WorkerDied { .. })),
                "{:?}",
                got[0]
            );
            assert!(got.iter().all(Result::is_err));
            if flags == wire::BELOW_DEATH {
                assert!((1..=64).contains(&begun), "{begun} items begun");
            } else {
                assert_eq!(begun, u64::from(count), "every item runs without the flag");
            }
        }
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
            0,
            &encode(&[5_000u64, 1]),
        );
        // SAFETY: the offsets name `nap` and its server.
        let held = unsafe { run_one(&pool, &msg, &out) }.unwrap();
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

    #[test]
    fn single_items_in_a_row_for_one_function_run_as_one_job_and_answer_together() {
        let pool = Pool::new(2).unwrap();
        let (tx, rx) = channel();
        let out = Outbox::new(tx, None);
        let inv = inverse as fn(u32) -> u32 as usize;
        let mut msg = Vec::new();
        // Five single items of `inverse` (one panics), one whose arguments
        // do not decode, one of `join`, one chunk of two of `inverse`.
        for (id, x) in [(10, 1u32), (11, 2), (12, 0), (13, 3), (14, 4)] {
            msg.extend(task_message(
                id,
                inv,
                server::<u32, u32>,
                1,
                None,
                0,
                &encode(&[x]),
            ));
        }
        msg.extend(task_message(
            15,
            inv,
            server::<u32, u32>,
            1,
            None,
            0,
            &encode(&[1u32, 2]),
        ));
        let pair = encode(&[("c".to_owned(), 3u8)]);
        let f = join as fn(String, u8) -> String as usize;
        msg.extend(task_message(
            16,
            f,
            server2::<String, u8, String>,
            1,
            None,
            0,
            &pair,
        ));
        msg.extend(task_message(
            17,
            inv,
            server::<u32, u32>,
            2,
            None,
            0,
            &encode(&[6u32, 12]),
        ));
        // SAFETY: the offsets name `inverse`, `join` and their servers.
        let held = unsafe { run_tasks(&pool, wire::frames(&msg), &out) };
        assert_eq!(
            held.len(),
            3,
            "one job for the six single items, one each for the rest"
        );
        let mut by_id = std::collections::BTreeMap::new();
        let mut messages = Vec::new();
        while by_id.len() < 8 {
            let m = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
            let mut ids = Vec::new();
            let mut frames = wire::frames(&m);
            for a in frames.by_ref() {
                let (wire::AnswerHeader { id, count, .. }, entries) = wire::read_answer(a).unwrap();
                ids.push(id);
                assert!(
                    by_id.insert(id, (count, entries.to_vec())).is_none(),
                    "{id} twice"
                );
            }
            assert!(!frames.torn);
            messages.push(ids);
        }
        // The undecodable one at once, alone; the group's five in one message.
        assert!(messages.contains(&vec![15]), "{messages:?}");
        assert!(messages.contains(&vec![10, 11, 12, 13, 14]), "{messages:?}");
        for (id, want) in [
            (10, Some(12)),
            (11, Some(6)),
            (12, None),
            (13, Some(4)),
            (14, Some(3)),
        ] {
            let (count, entries) = &by_id[&id];
            let got = outcomes::<u32>(*count, entries);
            match want {
                Some(v) => assert_eq!(got[0].as_ref().ok(), Some(&v), "{id}"),
                None => assert!(matches!(got[0], Err(Error::Panicked { .. })), "{got:?}"),
            }
        }
        let (count, entries) = &by_id[&15];
        assert!(matches!(
            outcomes::<u32>(*count, entries)[0],
            Err(Error::WorkerCodec {
                what: "decode the arguments",
                ..
            })
        ));
        let (count, entries) = &by_id[&16];
        assert_eq!(
            outcomes::<String>(*count, entries)[0]
                .as_ref()
                .ok()
                .map(String::as_str),
            Some("c3")
        );
        let (count, entries) = &by_id[&17];
        let got = outcomes::<u32>(*count, entries);
        assert_eq!(
            (got[0].as_ref().ok(), got[1].as_ref().ok()),
            (Some(&2), Some(&1))
        );
        for h in held {
            settled_soon(h);
        }
        assert!(rx.try_recv().is_err(), "an answer twice");
    }

    /// Single items whose answers are too large to share one message
    /// (`wire::BATCH`) go in several, each whole, each once; small ones
    /// share: answers are framed straight into the messages.
    #[test]
    fn answers_too_large_to_share_a_message_go_in_several_each_whole() {
        let pool = Pool::new(2).unwrap();
        let (tx, rx) = channel();
        let out = Outbox::new(tx, None);
        let f = bytes_of as fn(u32) -> Vec<u8> as usize;
        let big = (wire::BATCH / 2 + 1000) as u32;
        let sizes = [10u32, big, 20, big, big + 1, 30, 40, 2 * wire::BATCH as u32];
        let mut msg = Vec::new();
        for (id, n) in (100u64..).zip(sizes) {
            msg.extend(task_message(
                id,
                f,
                server::<u32, Vec<u8>>,
                1,
                None,
                0,
                &encode(&[n]),
            ));
        }
        // SAFETY: the offset names `bytes_of` and its server.
        let held = unsafe { run_tasks(&pool, wire::frames(&msg), &out) };
        assert_eq!(held.len(), 1, "one job for the single items");
        let mut got = std::collections::BTreeMap::new();
        let mut messages = Vec::new();
        while got.len() < sizes.len() {
            let m = rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
            let mut frames = wire::frames(&m);
            let mut ids = Vec::new();
            for a in frames.by_ref() {
                let (wire::AnswerHeader { id, count, .. }, entries) = wire::read_answer(a).unwrap();
                let r = outcomes::<Vec<u8>>(count, entries).remove(0).unwrap();
                assert!(got.insert(id, r).is_none(), "{id} twice");
                ids.push(id);
            }
            assert!(!frames.torn);
            assert!(
                m.len() <= wire::BATCH || ids.len() == 1,
                "a message of {} bytes holds {ids:?}",
                m.len()
            );
            messages.push(ids);
        }
        // In order, as many as fit in `BATCH` bytes together; the one
        // larger than that alone.
        assert_eq!(
            messages,
            [
                vec![100, 101, 102],
                vec![103],
                vec![104, 105, 106],
                vec![107]
            ]
        );
        for (id, n) in (100u64..).zip(sizes) {
            assert_eq!(got[&id], bytes_of(n), "answer {id}");
        }
        assert!(rx.try_recv().is_err(), "an answer went out twice");
        settled_soon(held.into_iter().next().unwrap());
    }
}
