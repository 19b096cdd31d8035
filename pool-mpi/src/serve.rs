//! How a serving rank runs a task: the *server* function named in the task,
//! monomorphised on rank 0 for the task's types, decodes the arguments,
//! hands them to the rank's local [`Pool`] and, once it answers, encodes each
//! item's outcome. It needs MPI only to receive and send the bytes, so it is
//! tested here against a real local pool without MPI.

// Without the `mpi` feature only the unit tests use this module.
#![cfg_attr(not(feature = "mpi"), allow(dead_code))]

use multiproc_pool::{AsyncResult, Error, Pool};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::{self, CodecWhat, RemoteError, TaskHeader};

/// The outcome of a task sent to the local pool: waits for it and returns
/// the answer's entries.
pub(crate) type Answering = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// A server: starts `count` items of `args` with the function at `f` on
/// `pool` (local chunks of `chunk` items, `None` for Python's size).
///
/// # Safety
/// `f` must be the address of a `fn` of the types the server was
/// monomorphised for.
pub(crate) type Server =
    unsafe fn(pool: &Pool, f: usize, args: &[u8], count: u32, chunk: Option<usize>) -> Answering;

/// The server of `fn(A) -> R`.
///
/// # Safety
/// `f` is the address of a `fn(A) -> R` (see [`Server`]).
pub(crate) unsafe fn server<A, R>(
    pool: &Pool,
    f: usize,
    args: &[u8],
    count: u32,
    chunk: Option<usize>,
) -> Answering
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: rank 0 sent the address of a fn(A) -> R with this very server
    // (the caller's contract; the build identity was checked at start).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    match decode_args::<A>(args, count) {
        Ok(items) => answering(pool.map_each_async(f, items, chunk), count),
        Err(message) => all_failed(count, CodecWhat::DecodeArgs, message),
    }
}

/// The server of `fn(A, B) -> R` over `(A, B)` arguments (`starmap`).
///
/// # Safety
/// `f` is the address of a `fn(A, B) -> R` (see [`Server`]).
pub(crate) unsafe fn server2<A, B, R>(
    pool: &Pool,
    f: usize,
    args: &[u8],
    count: u32,
    chunk: Option<usize>,
) -> Answering
where
    A: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    // SAFETY: as in `server`, for a fn(A, B) -> R.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(f) };
    match decode_args::<(A, B)>(args, count) {
        Ok(items) => answering(pool.starmap_each_async(f, items, chunk), count),
        Err(message) => all_failed(count, CodecWhat::DecodeArgs, message),
    }
}

/// Waits for the local pool's outcomes and encodes them.
fn answering<R>(
    handle: multiproc_pool::Result<AsyncResult<Vec<Result<R, Error>>>>,
    count: u32,
) -> Answering
where
    R: Serialize + Send + 'static,
{
    Box::new(move || {
        let mut out = Vec::new();
        match handle.and_then(AsyncResult::get) {
            Ok(outcomes) => {
                for o in &outcomes {
                    wire::put_outcome(&mut out, o);
                }
            }
            Err(e) => {
                let e = RemoteError::of(&e);
                for _ in 0..count {
                    wire::put_failure(&mut out, &e);
                }
            }
        }
        out
    })
}

fn all_failed(count: u32, what: CodecWhat, message: String) -> Answering {
    Box::new(move || {
        let mut out = Vec::new();
        let e = RemoteError::Codec { what, message };
        for _ in 0..count {
            wire::put_failure(&mut out, &e);
        }
        out
    })
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

/// Runs one task message on `pool`: the answering to wait on (which yields
/// the whole answer message), or `None` for a message too short to name its
/// chunk (nothing can be answered).
///
/// # Safety
/// The message comes from rank 0 of the same build (checked at start): its
/// offsets name a function and its server of matching types.
pub(crate) unsafe fn run_task(pool: &Pool, msg: &[u8]) -> Option<(TaskHeader, Answering)> {
    let (h, args) = TaskHeader::read(msg)?;
    let f = wire::address_at(h.fn_off);
    // SAFETY: the caller's contract: the offset names a Server.
    let serve = unsafe { std::mem::transmute::<usize, Server>(wire::address_at(h.serve_off)) };
    let chunk = (h.chunk > 0).then_some(h.chunk as usize);
    // SAFETY: the caller's contract: `f` matches the server's types.
    let answering = unsafe { serve(pool, f, args, h.count, chunk) };
    Some((h, answering))
}

/// Encodes a task for [`run_task`]: `f` with its server `serve`, over
/// `items` (`count` of them, encoded already).
pub(crate) fn task_message(
    id: u64,
    f: usize,
    serve: Server,
    count: u32,
    chunk: Option<usize>,
    args: &[u8],
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(wire::TASK_HEADER + args.len());
    TaskHeader {
        id,
        fn_off: wire::offset_of(f),
        serve_off: wire::offset_of(serve as usize),
        count,
        chunk: chunk.map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX)),
    }
    .write(&mut msg);
    msg.extend_from_slice(args);
    msg
}

#[cfg(test)]
mod tests {
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

    fn outcomes<R: DeserializeOwned>(mut entries: &[u8], n: usize) -> Vec<Result<R, Error>> {
        let mut out = Vec::new();
        for _ in 0..n {
            let (r, rest) = wire::read_entry::<R>(entries, 1);
            out.push(r);
            entries = rest;
        }
        assert!(entries.is_empty());
        out
    }

    #[test]
    fn a_task_runs_on_the_local_pool_and_each_item_answers_for_itself() {
        let pool = Pool::new(2).unwrap();
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
        let (h, answering) = unsafe { run_task(&pool, &msg) }.unwrap();
        assert_eq!((h.id, h.count), (5, 4));
        let got = outcomes::<u32>(&answering(), 4);
        assert_eq!(got[0].as_ref().ok(), Some(&12));
        assert!(
            matches!(got[1], Err(Error::Panicked { .. })),
            "{:?}",
            got[1]
        );
        assert_eq!(got[2].as_ref().ok(), Some(&4));
        assert_eq!(got[3].as_ref().ok(), Some(&3));

        let pairs = encode(&[("a".to_owned(), 1u8), ("b".to_owned(), 2)]);
        let f = join as fn(String, u8) -> String as usize;
        let msg = task_message(6, f, server2::<String, u8, String>, 2, None, &pairs);
        // SAFETY: as above, for `join`.
        let (_, answering) = unsafe { run_task(&pool, &msg) }.unwrap();
        let got = outcomes::<String>(&answering(), 2);
        assert_eq!(got[0].as_ref().ok().map(String::as_str), Some("a1"));
        assert_eq!(got[1].as_ref().ok().map(String::as_str), Some("b2"));
    }

    #[test]
    fn arguments_that_do_not_decode_fail_every_item_of_the_task() {
        let pool = Pool::new(1).unwrap();
        let f = inverse as fn(u32) -> u32 as usize;
        // Three items announced, one given; then one given with bytes left over.
        for (count, args) in [(3, encode(&[1u32])), (1, encode(&[1u32, 2]))] {
            let msg = task_message(1, f, server::<u32, u32>, count, None, &args);
            // SAFETY: the offsets name `inverse` and its server.
            let (_, answering) = unsafe { run_task(&pool, &msg) }.unwrap();
            let got = outcomes::<u32>(&answering(), count as usize);
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
        assert!(unsafe { run_task(&pool, &[0; 10]) }.is_none());
    }
}
