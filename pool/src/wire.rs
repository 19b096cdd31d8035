//! What travels between the pool and its workers, and how a worker runs it.
//!
//! # A task
//! One message in a worker's inbox carries a *chunk*: one or more items of one
//! job, for one function. Header (little endian), then the items' arguments,
//! concatenated, each a tag byte and a body: [`ARG`] and the value
//! postcard-encoded (self-delimiting), or a primitive number's raw tag and its
//! little-endian bytes, or a raw tuple of such numbers (see
//! [`raw`]):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | `seq`: the task's number, unique in the pool, never 0 |
//! | 1 | target: [`TARGET_FN`] or [`TARGET_CLOSURE`] |
//! | 8 | the function's offset from [`anchor`] (`TARGET_FN`) |
//! | 8 | the trampoline's offset from [`anchor`] (`TARGET_FN`) |
//! | 4 | `count`: items in the chunk |
//!
//! A function is named by its offset from a function of this crate, not by
//! its address: workers are forked from the same image, where the two are the
//! same, but an offset also holds in a process that runs the same binary at
//! another base address (a later MPI backend). Before it takes a task, a
//! worker checks that its [`build_id`] is the pool's: a stranger's offset is
//! then an error, never a jump.
//!
//! The trampoline is a generic function monomorphised in the parent: for a
//! `fn` item or a closure that captures nothing, `tramp_zst::<F, A, R>`,
//! made for that function alone (it calls it inline; the function's offset
//! is not read); for a `fn` pointer, `tramp::<A, R>`, made for its types,
//! which turns the offset back into a `fn(A) -> R`. Either decodes each
//! argument, calls, and encodes each result.
//!
//! # An answer
//! One message in the shared result queue per task: its `seq` (8 bytes), its
//! `count` (4), then one entry per item: a tag byte and a postcard body —
//! [`OK`] and the result, [`PANICKED`] and `(message, location)`,
//! [`ENCODE_FAILED`] / [`DECODE_FAILED`] and the codec's message — or, for a
//! result that is a primitive number or a tuple of them, its raw entry.
//!
//! A worker runs a chunk's items under one `catch_unwind`: a panic ends that
//! run at its item (whose entry says so), and the next run starts after it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::raw::{self, Prim};

/// The task names a function by its offset (see the module's doc).
pub(crate) const TARGET_FN: u8 = 0;
/// The task is for the closure the pool was made around (`Pool::with_fn`).
pub(crate) const TARGET_CLOSURE: u8 = 1;

/// Bytes of a task's header.
pub(crate) const TASK_HEADER: usize = 29;
/// Bytes of an answer's header.
pub(crate) const ANSWER_HEADER: usize = 12;

/// The tag of an argument encoded by postcard (raw ones have [`raw`]'s tags).
pub(crate) const ARG: u8 = 0;

/// Item tags in an answer (raw results have [`raw`]'s tags).
pub(crate) const OK: u8 = 0;
pub(crate) const PANICKED: u8 = 1;
pub(crate) const ENCODE_FAILED: u8 = 2;
pub(crate) const DECODE_FAILED: u8 = 3;

/// The fixed point functions are named from. Never inlined, so it has an
/// address; its body keeps two anchors from being merged into one.
#[inline(never)]
pub(crate) fn anchor() -> u64 {
    std::hint::black_box(0x6d70_706f_6f6c)
}

/// `addr`'s offset from [`anchor`].
pub(crate) fn offset_of(addr: usize) -> i64 {
    (addr as i64).wrapping_sub(anchor_address() as i64)
}

fn anchor_address() -> usize {
    let f: fn() -> u64 = anchor;
    f as usize
}

/// The address at `offset` from [`anchor`].
pub(crate) fn address_at(offset: i64) -> usize {
    (anchor_address() as i64).wrapping_add(offset) as usize
}

/// A task's header.
pub(crate) fn task_header(seq: u64, target: u8, fns: (i64, i64), count: u32) -> [u8; TASK_HEADER] {
    let mut h = [0; TASK_HEADER];
    h[..8].copy_from_slice(&seq.to_le_bytes());
    h[8] = target;
    h[9..17].copy_from_slice(&fns.0.to_le_bytes());
    h[17..25].copy_from_slice(&fns.1.to_le_bytes());
    h[25..29].copy_from_slice(&count.to_le_bytes());
    h
}

/// A task's header as read by a worker.
pub(crate) struct TaskHeader {
    pub(crate) seq: u64,
    pub(crate) target: u8,
    pub(crate) fn_off: i64,
    pub(crate) tramp_off: i64,
    pub(crate) count: u32,
}

/// Reads a task's header; `None` for a message too short to hold one.
pub(crate) fn read_task(msg: &[u8]) -> Option<(TaskHeader, &[u8])> {
    let u64_at = |i: usize| Some(u64::from_le_bytes(msg.get(i..i + 8)?.try_into().ok()?));
    let header = TaskHeader {
        seq: u64_at(0)?,
        target: *msg.get(8)?,
        fn_off: u64_at(9)? as i64,
        tramp_off: u64_at(17)? as i64,
        count: u32::from_le_bytes(msg.get(25..29)?.try_into().ok()?),
    };
    Some((header, &msg[TASK_HEADER..]))
}

/// Writes an answer's header.
pub(crate) fn answer_header(out: &mut Vec<u8>, seq: u64, count: u32) {
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
}

/// Reads an answer's header: `(seq, count, items)`.
pub(crate) fn read_answer(msg: &[u8]) -> Option<(u64, u32, &[u8])> {
    let seq = u64::from_le_bytes(msg.get(0..8)?.try_into().ok()?);
    let count = u32::from_le_bytes(msg.get(8..12)?.try_into().ok()?);
    Some((seq, count, &msg[ANSWER_HEADER..]))
}

/// postcard into the end of a `Vec` (postcard's own `to_extend` wants the
/// `Vec` by value).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();
    // Inlined: postcard pushes a `Vec<u8>`'s bytes one at a time, and a call
    // a byte made a 1 MiB argument cost about 1.3 ms to encode.
    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // A varint is 1 to 10 bytes: byte pushes beat a call to memcpy
        // (which extend_from_slice makes for a length it cannot see).
        if data.len() <= 16 {
            self.0.reserve(data.len());
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value`, postcard-encoded, to `out`. On error `out` may hold part
/// of it: callers that go on truncate. A `Vec<u8>` goes as one block (see
/// `Block`).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> postcard::Result<()> {
    if let Some(bytes) = as_byte_vec(value) {
        return postcard::serialize_with_flavor(&Block(bytes), Append(out));
    }
    postcard::serialize_with_flavor(value, Append(out))
}

/// Reads a `T`, postcard-encoded, from the start of `bytes`: it and the rest.
/// A `Vec<u8>` is read as one block (see `Block`).
#[inline(always)]
pub fn decode_from<T: DeserializeOwned>(bytes: &[u8]) -> postcard::Result<(T, &[u8])> {
    if is_byte_vec::<T>() {
        let (block, rest) = postcard::take_from_bytes::<OwnedBlock>(bytes)?;
        if let Ok(value) = byte_vec_as::<T>(block.0) {
            return Ok((value, rest));
        }
    }
    postcard::take_from_bytes::<T>(bytes)
}

/// Bytes that serde encodes as one block (`serialize_bytes`), as postcard
/// writes a `Vec<u8>` (its length, then its bytes) but with one copy, where
/// serde's `Vec<u8>` makes a call a byte each way (a 1 MiB argument took
/// 1.1-2.3 ms, as long as Python's `Pool.apply` of as many `bytes`:
/// `benches/NOTES.md`). What either writes, either reads.
struct Block<'a>(&'a [u8]);

impl Serialize for Block<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A [`Block`] read back (one copy out of the message).
struct OwnedBlock(Vec<u8>);

impl<'de> serde::Deserialize<'de> for OwnedBlock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        deserializer.deserialize_byte_buf(Bytes).map(OwnedBlock)
    }
}

/// Whether `T` is `Vec<u8>` (for types that need not be `'static`: an
/// argument's or a result's).
#[inline(always)]
fn is_byte_vec<T: ?Sized>() -> bool {
    typeid::of::<T>() == typeid::of::<Vec<u8>>()
}

/// `value` as the `Vec<u8>` it is, if it is one.
#[inline(always)]
fn as_byte_vec<T: ?Sized>(value: &T) -> Option<&Vec<u8>> {
    // SAFETY: `T` is `Vec<u8>` (the same type identity, and `Vec<u8>` has no
    // lifetime the identity could leave out): the pointer is to one.
    is_byte_vec::<T>().then(|| unsafe { &*(value as *const T).cast::<Vec<u8>>() })
}

/// `bytes` as a `T`, if `T` is `Vec<u8>`; `bytes` back otherwise.
#[inline(always)]
fn byte_vec_as<T>(bytes: Vec<u8>) -> Result<T, Vec<u8>> {
    if !is_byte_vec::<T>() {
        return Err(bytes);
    }
    let bytes = std::mem::ManuallyDrop::new(bytes);
    // SAFETY: `T` is `Vec<u8>` (see `as_byte_vec`); the value is moved out
    // of the `ManuallyDrop`, which never drops it.
    Ok(unsafe { std::ptr::read((&*bytes as *const Vec<u8>).cast::<T>()) })
}

/// Appends one argument: raw if it is a primitive number or a tuple of them,
/// else [`ARG`] and its postcard encoding. On error `out` may hold part of it.
#[inline(always)]
pub(crate) fn encode_arg<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> postcard::Result<()> {
    if raw::put(value, out) {
        return Ok(());
    }
    out.push(ARG);
    encode_into(value, out)
}

/// Reads the argument at the start of `bytes`: it and the rest, or why not.
#[inline(always)]
fn decode_arg<A: DeserializeOwned>(bytes: &[u8]) -> Result<(A, &[u8]), String> {
    match bytes.split_first() {
        Some((&ARG, body)) => decode_from::<A>(body).map_err(|e| e.to_string()),
        Some((&(raw::TUPLE | raw::SAME), _)) => raw::get_tuple::<A>(bytes)
            .ok_or_else(|| "a raw tuple that is not this argument's type".to_owned()),
        Some((&tag, body)) => match Prim::of_tag(tag) {
            Some(prim) => raw::get::<A>(prim, body)
                .ok_or_else(|| format!("a raw {prim:?} that is not this argument's type")),
            None => Err(format!("an argument tagged {tag}")),
        },
        None => Err("the arguments end early".to_owned()),
    }
}

/// Appends a result's entry: raw if it is a primitive number or a tuple of
/// them, else [`OK`] and its postcard encoding, or [`ENCODE_FAILED`].
#[inline(always)]
fn put_result<R: Serialize>(value: &R, out: &mut Vec<u8>) {
    if raw::put(value, out) {
        return;
    }
    let mark = out.len();
    out.push(OK);
    if let Err(e) = encode_into(value, out) {
        out.truncate(mark);
        failed(out, ENCODE_FAILED, &e.to_string());
    }
}

/// [`put_result`], leaving `out` as it was if `R`'s `Serialize` panics (a
/// raw run keeps no mark of where the item's entry starts: see [`RawRun`]).
#[inline(always)]
fn put_whole<R: Serialize>(value: &R, out: &mut Vec<u8>) {
    if let Some(e) = raw::entry(value) {
        raw::append(out, &e.bytes, e.len);
        return;
    }
    struct Truncate<'a>(&'a mut Vec<u8>, usize);
    impl Drop for Truncate<'_> {
        fn drop(&mut self) {
            self.0.truncate(self.1);
        }
    }
    let mark = out.len();
    let guard = Truncate(out, mark);
    put_result(value, guard.0);
    // Whole: keep it.
    std::mem::forget(guard);
}

/// Where a worker says which item it is running: the parent reads it when the
/// worker dies, to know which item died with it.
pub(crate) type Progress = AtomicU64;

/// A trampoline: runs `count` items of `input` with the function at `f`
/// (or, for one made for its function, [`tramp_zst`], that function; `f` is
/// not read), appending one answer entry per item to `out`.
///
/// # Safety
/// `f` must be the address of a `fn` of the types the trampoline was
/// monomorphised for, unless the trampoline is made for its function.
pub(crate) type Tramp =
    unsafe fn(f: usize, input: &[u8], count: u32, out: &mut Vec<u8>, at: &Progress);

/// The trampoline of `fn(A) -> R`.
///
/// # Safety
/// `f` is the address of a `fn(A) -> R` (see [`Tramp`]).
pub(crate) unsafe fn tramp<A: DeserializeOwned, R: Serialize>(
    f: usize,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
    at: &Progress,
) {
    // SAFETY: the parent sent the address of a fn(A) -> R, with this very
    // trampoline (the caller's contract; the build identity was checked).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    run_items(&f, input, count, out, at);
}

/// The trampoline of `F`, a `fn` item or a closure that captures nothing:
/// made for that function alone, so that the call is inlined into the loop
/// that runs each item (a call through a pointer an item kept the loop's
/// state in memory; a trivial map's workers took about a fifth longer). `f`
/// is not read.
///
/// # Safety
/// `F` is zero-sized and `Copy` (see `pool::target_of`).
pub(crate) unsafe fn tramp_zst<F: Fn(A) -> R + Copy, A: DeserializeOwned, R: Serialize>(
    _f: usize,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
    at: &Progress,
) {
    // SAFETY: F is zero-sized (no bytes to make) and Copy: the function the
    // parent holds, copied (the caller's contract).
    let f = unsafe { conjure::<F>() };
    run_items(&f, input, count, out, at);
}

/// [`tramp_zst`] for `F(A, B) -> R` over `(A, B)` arguments (`starmap`).
///
/// # Safety
/// As for [`tramp_zst`].
pub(crate) unsafe fn tramp2_zst<
    F: Fn(A, B) -> R + Copy,
    A: DeserializeOwned,
    B: DeserializeOwned,
    R: Serialize,
>(
    _f: usize,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
    at: &Progress,
) {
    // SAFETY: as in tramp_zst.
    let f = unsafe { conjure::<F>() };
    run_items(&|(a, b): (A, B)| f(a, b), input, count, out, at);
}

/// A value of the zero-sized type `F` (a task's function of
/// [`Function::Own`](crate::Function::Own)). Not part of the API:
/// the MPI pool's ranks make theirs so.
///
/// # Safety
/// `F` is zero-sized and `Copy`, and a value of it exists in the pool's
/// process (a zero-sized `Copy` value has no bytes to differ in: this is a
/// copy of it).
#[doc(hidden)]
pub unsafe fn conjure<F: Copy>() -> F {
    // Folded away: made for zero-sized types only (`pool::target_of`),
    // though compiled for others beside them.
    assert!(std::mem::size_of::<F>() == 0, "a function with data");
    // SAFETY: a zero-sized type's values have no bytes, so "all zeros" is
    // each of them (the caller's contract says one may be made).
    unsafe { std::mem::zeroed::<F>() }
}

/// The trampoline of `fn(A, B) -> R` over `(A, B)` arguments (`starmap`).
///
/// # Safety
/// `f` is the address of a `fn(A, B) -> R` (see [`Tramp`]).
pub(crate) unsafe fn tramp2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    f: usize,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
    at: &Progress,
) {
    // SAFETY: as in tramp, for a fn(A, B) -> R.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(f) };
    run_items(&|(a, b): (A, B)| f(a, b), input, count, out, at);
}

/// Runs each item: decodes its argument, calls `call` (catching a panic),
/// encodes the result; records the item's index in `at` first.
pub(crate) fn run_items<A: DeserializeOwned, R: Serialize>(
    call: &impl Fn(A) -> R,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
    at: &Progress,
) {
    // Every item takes at least its tag byte: a count larger than the
    // arguments (a scribbled header) would only multiply error entries.
    let count = count.min(u32::try_from(input.len()).unwrap_or(u32::MAX));
    let mut c = Cursor {
        rest: input,
        i: 0,
        mark: out.len(),
        decoded: false,
        run: None,
    };
    while c.i < count {
        // One catch_unwind for a run of items: it costs a call through the
        // unwinding machinery, too much for every item of a trivial map.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while c.i < count {
                // A run of raw arguments of one kind goes through a loop made
                // for that kind, a run of raw tuples of one shape through a
                // loop that compares each entry's head with the first's;
                // anything else (and a raw value the type refuses) one item
                // at a time.
                if let Some(prim) = c.rest.first().and_then(|&t| Prim::of_tag(t)) {
                    let ran = raw::by_kind!(prim, |K, W| run_raw(
                        call,
                        &mut c,
                        (count, 1 + W),
                        out,
                        at,
                        raw::get_known::<A, K, W>
                    ));
                    if ran > 0 {
                        continue;
                    }
                } else if let Some(shape) = raw::Shape::of(c.rest) {
                    let run = (count, shape.stride);
                    let ran = match shape.same {
                        Some(prim) => raw::by_kind!(prim, |K, W| run_raw(
                            call,
                            &mut c,
                            run,
                            out,
                            at,
                            |entry| shape.get_same::<A, K, W>(entry)
                        )),
                        None => run_raw(call, &mut c, run, out, at, |entry| shape.get(entry)),
                    };
                    if ran > 0 {
                        continue;
                    }
                }
                at.store(u64::from(c.i), Ordering::Relaxed);
                (c.mark, c.decoded) = (out.len(), false);
                let arg = match decode_arg::<A>(c.rest) {
                    Ok((arg, after)) => {
                        c.rest = after;
                        arg
                    }
                    Err(message) => {
                        // The items after it cannot be found either.
                        for _ in c.i..count {
                            failed(out, DECODE_FAILED, &message);
                        }
                        c.i = count;
                        return;
                    }
                };
                c.decoded = true;
                put_result(&call(arg), out);
                c.i += 1;
            }
        }));
        let Err(payload) = run else { break };
        if let Some(run) = c.run.take() {
            // Inside a raw run, which keeps only the item and whether its
            // argument was decoded: where the rest starts follows from the
            // run's fixed stride, and the answer holds nothing of the item
            // (`put_whole`).
            let done = (c.i - run.first) as usize + usize::from(c.decoded);
            c.rest = run.start.get(done * run.stride..).unwrap_or(&[]);
            c.mark = out.len();
        }
        out.truncate(c.mark);
        if !c.decoded {
            // A Deserialize that panicked: where the next item starts is unknown.
            for _ in c.i..count {
                failed(out, DECODE_FAILED, "the argument's Deserialize panicked");
            }
            return;
        }
        let (message, location) = crate::worker::last_panic(&*payload);
        out.push(PANICKED);
        // Two strings always encode.
        let _ = encode_into(&(message, location), out);
        c.i += 1;
    }
}

/// Where [`run_items`] is: the arguments left, the item's index, where its
/// entry starts in the answer, and whether its argument was decoded (a panic
/// after that is the call's); a raw run keeps them in its own loop and puts
/// back only the item and whether its argument was decoded (see [`RawRun`]
/// and [`RawLoop`]).
struct Cursor<'a> {
    rest: &'a [u8],
    i: u32,
    mark: usize,
    decoded: bool,
    run: Option<RawRun<'a>>,
}

/// A raw run under way ([`run_raw`]): its first item, where its arguments
/// start, and their stride. A panic in it finds where the next argument
/// starts from these and the item, so that the loop stores no position an
/// item (each store a loop over a call through a pointer makes is a spill
/// and a reload: a trivial map of a million items took about 8 % longer).
struct RawRun<'a> {
    first: u32,
    start: &'a [u8],
    stride: usize,
}

/// Runs items while `read` finds their arguments: raw entries of one kind
/// or shape, each `stride` bytes, that an `A` accepts (the loop of a map of
/// numbers or tuples of numbers, made for one kind, or one type of tuple,
/// so that the check of each entry's head and the conversion fold to a few
/// instructions). How many it ran; the cursor is left as [`run_items`]
/// keeps it for a panic in the call, from the loop's own state (see
/// [`RawLoop`]).
#[inline(never)]
fn run_raw<'a, A: DeserializeOwned, R: Serialize>(
    call: &impl Fn(A) -> R,
    c: &mut Cursor<'a>,
    (count, stride): (u32, usize),
    out: &mut Vec<u8>,
    at: &Progress,
    read: impl Fn(&'a [u8]) -> Option<(A, &'a [u8])>,
) -> u32 {
    let (first, rest) = (c.i, c.rest);
    c.run = Some(RawRun {
        first,
        start: rest,
        stride,
    });
    let mut l = RawLoop {
        i: first,
        decoded: false,
        rest,
        len: out.len(),
        c,
        out,
    };
    while l.i < count {
        // Before the decoding, as in `run_items`: an `A` whose `Deserialize`
        // panics fails this item and those after it.
        l.decoded = false;
        let Some((arg, after)) = read(l.rest) else {
            break;
        };
        at.store(u64::from(l.i), Ordering::Relaxed);
        l.decoded = true;
        l.rest = after;
        let result = call(arg);
        // The result is dropped before its entry is counted in: a `Drop`
        // that panics fails the item (`Panicked`) and leaves no entry.
        if let Some(e) = raw::entry(&result) {
            drop(result);
            l.append(&e);
        } else {
            // SAFETY: the first `len` bytes are written (`RawLoop`).
            unsafe { l.out.set_len(l.len) };
            put_whole(&result, l.out);
            drop(result);
            l.len = l.out.len();
        }
        l.i += 1;
    }
    let ran = l.i - first;
    drop(l);
    (c.mark, c.run) = (out.len(), None);
    ran
}

/// The state of [`run_raw`]'s loop: the item, whether its argument was
/// decoded, the arguments left and the answer's length, put back into the
/// cursor and the answer when the loop ends or a call in it panics (its
/// `Drop`), rather than stored into them at every item. The answer's length
/// counts an item's entry only once its result is dropped, so that a `Drop`
/// that panics leaves no entry behind (a raw run once kept it, and added the
/// panic's after it: every later result moved one place).
///
/// Its invariant: the answer's first `len` bytes are written.
struct RawLoop<'c, 'a> {
    i: u32,
    decoded: bool,
    rest: &'a [u8],
    len: usize,
    c: &'c mut Cursor<'a>,
    out: &'c mut Vec<u8>,
}

impl RawLoop<'_, '_> {
    /// Appends a raw entry (see [`raw::append`]), the length kept here.
    #[inline(always)]
    fn append(&mut self, e: &raw::Entry) {
        if self.out.capacity() - self.len < 9 {
            // SAFETY: the first `len` bytes are written (the invariant).
            unsafe { self.out.set_len(self.len) };
            self.out.reserve(9);
        }
        // SAFETY: there is room for 9 bytes past `len` (above); the entry's
        // first `e.len` (at most 9) are counted in.
        unsafe {
            std::ptr::copy_nonoverlapping(e.bytes.as_ptr(), self.out.as_mut_ptr().add(self.len), 9);
        }
        self.len += e.len.min(9);
    }
}

impl Drop for RawLoop<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: the first `len` bytes are written (the invariant), and
        // `len` never passes the capacity (`append`, `put_whole`).
        unsafe { self.out.set_len(self.len) };
        (self.c.i, self.c.decoded, self.c.rest) = (self.i, self.decoded, self.rest);
    }
}

/// Appends the answer entries of items `0..count`: `call(k)`'s result, or
/// why there is none (a panic's message). `before(k)` runs first for each
/// item (where the caller notes it runs). One `catch_unwind` for a run of
/// items, as in [`run_items`]: a panic ends the run at its item, and the next
/// run starts after it.
pub(crate) fn answer_items<R: Serialize>(
    out: &mut Vec<u8>,
    count: usize,
    call: impl Fn(usize) -> R,
    before: impl Fn(usize),
) {
    let (mut k, mut mark) = (0, out.len());
    while k < count {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if k == 0 {
                before(0);
                put_result(&call(0), out);
                k = 1;
                room_for_the_rest(out, out.len() - mark, count - 1);
            }
            while k < count {
                before(k);
                mark = out.len();
                put_result(&call(k), out);
                k += 1;
            }
        }));
        let Err(payload) = run else { break };
        out.truncate(mark);
        let (message, location) = crate::worker::last_panic(&*payload);
        out.push(PANICKED);
        // Two strings always encode.
        let _ = encode_into(&(message, location), out);
        k += 1;
    }
}

/// Makes room in `out` for `left` more entries as long as the first, `len`
/// bytes, when that one is short (as raw entries are, and raw results of
/// one type all take as much; for others it is a guess), at most
/// [`ROOM_FOR_REST`] bytes: a buffer grown by doubling copies what it holds
/// at each step (a `pmap` worker's first answer of 125 000 numbers went
/// through ten reallocations, 4 KiB to 2 MiB).
fn room_for_the_rest(out: &mut Vec<u8>, len: usize, left: usize) {
    if len <= raw::ROOM_PAST {
        out.reserve_exact(
            left.saturating_mul(len)
                .min(ROOM_FOR_REST)
                .saturating_add(raw::ROOM_PAST),
        );
    }
}

/// The most room [`room_for_the_rest`] makes ahead: past it, doubling.
const ROOM_FOR_REST: usize = 64 << 20;

/// Appends a failed item's entry.
fn failed(out: &mut Vec<u8>, tag: u8, message: &str) {
    out.push(tag);
    let _ = encode_into(message, out);
}

/// Runs `decode`, which calls the result type's `Deserialize` (the user's
/// code, run in this process): a panic there is an
/// [`Error::DecodePanicked`] for the item, not the end of the thread that
/// decodes (the pool's background thread, running a job's callbacks, died
/// of one and left the job unfinished for ever).
#[inline(always)]
fn guarded<T>(decode: impl FnOnce() -> T) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).map_err(|p| {
        Error::DecodePanicked {
            message: crate::worker::panic_text(&*p),
        }
    })
}

/// Drops `value`, the user's type, on a thread of the pool's: a panic in its
/// `Drop` (printed by the panic hook as any panic) must not end that thread,
/// which may be the background thread, nor stand in for the error the caller
/// is owed.
pub(crate) fn drop_quietly<T>(value: T) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
}

/// Reads entries while they are raw results of one kind (or raw tuples of
/// one shape) that read as `R`s, at most `max`, appending them to `out`: how
/// many, the rest of the entries, and the error of the entry after them if
/// `R`'s `Deserialize` panicked there (the rest is then empty: the later
/// entries are lost, as after any entry that cannot be read). A loop made
/// for the first entry's kind (see [`by_kind`](crate::raw::by_kind)) or
/// shape ([`Shape`](crate::raw::Shape)); 0 when it is not a raw result.
pub(crate) fn read_raw_run<'a, R: DeserializeOwned>(
    entries: &'a [u8],
    max: usize,
    out: &mut Vec<R>,
) -> (usize, &'a [u8], Option<Error>) {
    #[inline(never)]
    fn run<'a, R: DeserializeOwned>(
        mut entries: &'a [u8],
        (max, stride): (usize, usize),
        out: &mut Vec<R>,
        read: impl Fn(&'a [u8]) -> Option<(R, &'a [u8])>,
    ) -> (usize, &'a [u8]) {
        let room = max.min(entries.len() / stride);
        out.reserve(room);
        // Written through one pointer, the length set once (and on a panic
        // in `R`'s `Deserialize`, by the guard's drop): a `push` an item
        // kept the length in memory.
        let mut at = SetLenOnDrop {
            len: out.len(),
            vec: out,
        };
        let mut n = 0;
        while n < room {
            let Some((v, rest)) = read(entries) else {
                break;
            };
            // SAFETY: `room` values were reserved past the length the guard
            // started at, and `n` of them are written.
            unsafe { at.vec.as_mut_ptr().add(at.len).write(v) };
            at.len += 1;
            entries = rest;
            n += 1;
        }
        (n, entries)
    }
    let before = out.len();
    // One guard for the run (one an item costs as much as the item).
    let ran = if let Some(prim) = entries.first().and_then(|&t| Prim::of_tag(t)) {
        guarded(|| {
            raw::by_kind!(prim, |K, W| run(
                entries,
                (max, 1 + W),
                &mut *out,
                raw::get_known::<R, K, W>
            ))
        })
    } else if let Some(shape) = raw::Shape::of(entries) {
        let sized = (max, shape.stride);
        guarded(|| match shape.same {
            Some(prim) => raw::by_kind!(prim, |K, W| run(entries, sized, &mut *out, |entry| {
                shape.get_same::<R, K, W>(entry)
            })),
            None => run(entries, sized, &mut *out, |entry| shape.get(entry)),
        })
    } else {
        return (0, entries, None);
    };
    match ran {
        Ok((n, rest)) => (n, rest, None),
        Err(e) => (out.len() - before, &[], Some(e)),
    }
}

/// Sets a `Vec`'s length when dropped (at the end of a loop that writes
/// past its length, or when that loop unwinds).
struct SetLenOnDrop<'a, R> {
    vec: &'a mut Vec<R>,
    len: usize,
}

impl<R> Drop for SetLenOnDrop<'_, R> {
    fn drop(&mut self) {
        // SAFETY: the writer keeps `len` at the values written.
        unsafe { self.vec.set_len(self.len) };
    }
}

/// Reads `count` results into `out`: runs of raw results through
/// [`read_raw_run`], anything else one entry at a time. Stops at the first
/// entry that is not an `R`: its place among the `count`, and why.
pub(crate) fn read_results<R: DeserializeOwned>(
    mut entries: &[u8],
    count: usize,
    out: &mut Vec<R>,
) -> Result<(), (usize, Error)> {
    let mut i = 0;
    while i < count {
        let (n, rest, failed) = read_raw_run(entries, count - i, out);
        (i, entries) = (i + n, rest);
        if let Some(e) = failed {
            return Err((i, e));
        }
        if i == count {
            break;
        }
        match read_item::<R>(entries) {
            (Ok(v), rest) => {
                out.push(v);
                entries = rest;
                i += 1;
            }
            (Err(e), _) => return Err((i, e)),
        }
    }
    Ok(())
}

/// Reads one item's entry from an answer: the result, or why there is none;
/// and the rest of the entries (none after an entry that cannot be read,
/// or whose `Deserialize` panicked: where the next one starts is unknown).
pub(crate) fn read_item<R: DeserializeOwned>(entries: &[u8]) -> (Result<R, Error>, &[u8]) {
    let Some((&tag, body)) = entries.split_first() else {
        let e = postcard::Error::DeserializeUnexpectedEnd;
        return (Err(Error::DecodeResult(e)), entries);
    };
    // Only `R`'s own decoding is guarded, and it hands back no more than the
    // value and where it ends: what a guard carries out is copied through
    // memory, and a pipelined `apply_async` decodes an item a task.
    match tag {
        OK => match guarded(|| decode_from::<R>(body)) {
            Ok(Ok((value, rest))) => (Ok(value), rest),
            // A result that is not an R: the entry's end is unknown, so the
            // answer's later entries are lost with it.
            Ok(Err(e)) => (Err(Error::DecodeResult(e)), &[]),
            Err(panicked) => (Err(panicked), &[]),
        },
        PANICKED => match postcard::take_from_bytes::<(String, String)>(body) {
            Ok(((message, location), rest)) => (Err(Error::Panicked { message, location }), rest),
            Err(e) => (Err(Error::DecodeResult(e)), &[]),
        },
        ENCODE_FAILED | DECODE_FAILED => match postcard::take_from_bytes::<String>(body) {
            Ok((message, rest)) => {
                let what = if tag == ENCODE_FAILED {
                    "encode the result"
                } else {
                    "decode the arguments"
                };
                (Err(Error::WorkerCodec { what, message }), rest)
            }
            Err(e) => (Err(Error::DecodeResult(e)), &[]),
        },
        raw::TUPLE | raw::SAME => match guarded(|| raw::get_tuple::<R>(entries)) {
            Ok(Some((value, rest))) => (Ok(value), rest),
            Ok(None) => {
                let e = postcard::Error::DeserializeBadEncoding;
                (Err(Error::DecodeResult(e)), &[])
            }
            Err(panicked) => (Err(panicked), &[]),
        },
        tag => match Prim::of_tag(tag).map(|prim| guarded(|| raw::get::<R>(prim, body))) {
            Some(Ok(Some((value, rest)))) => (Ok(value), rest),
            Some(Err(panicked)) => (Err(panicked), &[]),
            _ => {
                let e = postcard::Error::DeserializeBadEncoding;
                (Err(Error::DecodeResult(e)), &[])
            }
        },
    }
}

/// This build's identity: the main executable's GNU build-id where the
/// linker wrote one, the crate's version, and the distance between two of
/// its functions (which moves with any change to the code around them).
pub(crate) fn build_id() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let mut h = Fnv::new();
        h.write(env!("CARGO_PKG_VERSION").as_bytes());
        let t: Tramp = tramp::<u64, u64>;
        h.write(&offset_of(t as usize).to_le_bytes());
        h.write(&gnu_build_id());
        h.finish()
    })
}

/// FNV-1a, 64 bits: enough to tell builds apart.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The main executable's `NT_GNU_BUILD_ID` note, or nothing.
fn gnu_build_id() -> Vec<u8> {
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the
        // call, and `data` is the Vec given below.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<u8>>()) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        for ph in headers.iter().filter(|p| p.p_type == libc::PT_NOTE) {
            let start = (info.dlpi_addr as usize).wrapping_add(ph.p_vaddr as usize);
            // SAFETY: a loaded PT_NOTE segment is mapped readable, p_memsz long.
            let notes =
                unsafe { std::slice::from_raw_parts(start as *const u8, ph.p_memsz as usize) };
            if let Some(id) = find_build_id(notes) {
                out.extend_from_slice(id);
                break;
            }
        }
        1 // the first object is the executable: stop there
    }
    let mut out = Vec::new();
    // SAFETY: the callback only reads the headers it is given and writes `out`.
    unsafe { libc::dl_iterate_phdr(Some(first_object), (&mut out as *mut Vec<u8>).cast()) };
    out
}

/// The descriptor of the GNU build-id note among ELF `notes`.
fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], i: usize| Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?));
    while notes.len() >= 12 {
        let (name_len, desc_len, kind) = (
            word(notes, 0)? as usize,
            word(notes, 4)? as usize,
            word(notes, 8)?,
        );
        let name_end = 12 + name_len.next_multiple_of(4);
        let desc_end = name_end.checked_add(desc_len.next_multiple_of(4))?;
        let name = notes.get(12..12 + name_len)?;
        let desc = notes.get(name_end..name_end + desc_len)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_end..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_come_back_to_the_same_function() {
        fn double(x: u64) -> u64 {
            2 * x
        }
        let off = offset_of(double as fn(u64) -> u64 as usize);
        // SAFETY: the address of `double`, a fn(u64) -> u64.
        let f = unsafe { std::mem::transmute::<usize, fn(u64) -> u64>(address_at(off)) };
        assert_eq!(f(21), 42);
    }

    #[test]
    fn the_build_identity_is_stable_and_has_the_executables_note() {
        assert_eq!(build_id(), build_id());
        // Debian's toolchain links with --build-id.
        assert!(!gnu_build_id().is_empty());
    }

    #[test]
    fn items_round_trip_with_panics_and_bad_arguments() {
        let mut input = Vec::new();
        for x in [1u32, 0, 3] {
            encode_arg(&x, &mut input).unwrap();
        }
        let at = Progress::new(0);
        let mut out = Vec::new();
        crate::worker::quiet_panics();
        run_items(&|x: u32| 12 / x, &input, 3, &mut out, &at);
        let (a, rest) = read_item::<u32>(&out);
        let (b, rest) = read_item::<u32>(rest);
        let (c, rest) = read_item::<u32>(rest);
        assert_eq!(a.unwrap(), 12);
        assert!(
            matches!(b, Err(Error::Panicked { ref message, .. }) if message.contains("divide by zero")),
            "{b:?}"
        );
        assert_eq!(c.unwrap(), 4);
        assert!(rest.is_empty());
        assert_eq!(at.load(Ordering::Relaxed), 2);
        // Arguments that are not u32s: every item says so.
        let mut out = Vec::new();
        run_items(
            &|x: u32| x,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            2,
            &mut out,
            &at,
        );
        let (a, rest) = read_item::<u32>(&out);
        let (b, _) = read_item::<u32>(rest);
        assert!(
            matches!(a, Err(Error::WorkerCodec { .. }))
                && matches!(b, Err(Error::WorkerCodec { .. }))
        );
    }

    /// A number whose `Deserialize` panics on 3 (a type that checks its
    /// values by panicking): raw on the wire, as a `u64`.
    #[derive(Debug, PartialEq)]
    struct NoThree(u64);

    impl<'de> serde::Deserialize<'de> for NoThree {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NoThree, D::Error> {
            let v = u64::deserialize(d)?;
            assert!(v != 3, "no three");
            Ok(NoThree(v))
        }
    }

    /// The same, by postcard (a struct is not raw).
    #[derive(Debug, PartialEq, serde::Serialize)]
    struct NoThreeField {
        v: u64,
    }

    impl<'de> serde::Deserialize<'de> for NoThreeField {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NoThreeField, D::Error> {
            #[derive(serde::Deserialize)]
            struct Plain {
                v: u64,
            }
            let p = Plain::deserialize(d)?;
            assert!(p.v != 3, "no three");
            Ok(NoThreeField { v: p.v })
        }
    }

    /// In a worker, an argument whose `Deserialize` panics in a run of raw
    /// numbers fails its own item and those after it (where they start is
    /// not known in general): the items before it keep their results. (The
    /// run's loop once kept the mark of the item before, so its result was
    /// cut off, and the panic was filed as the item before's.)
    #[test]
    fn an_argument_whose_deserialize_panics_fails_from_its_own_item() {
        let mut input = Vec::new();
        for x in 1..=5u64 {
            encode_arg(&x, &mut input).unwrap();
        }
        let at = Progress::new(0);
        let mut out = Vec::new();
        crate::worker::quiet_panics();
        run_items(&|n: NoThree| n.0 * 10, &input, 5, &mut out, &at);
        let mut entries = &out[..];
        let mut got = Vec::new();
        for _ in 0..5 {
            let (r, rest) = read_item::<u64>(entries);
            got.push(r);
            entries = rest;
        }
        assert!(entries.is_empty());
        assert_eq!(got[0].as_ref().ok(), Some(&10));
        assert_eq!(got[1].as_ref().ok(), Some(&20));
        for r in &got[2..] {
            assert!(
                matches!(r, Err(Error::WorkerCodec { what, .. }) if what.starts_with("decode")),
                "{got:?}"
            );
        }
    }

    /// In this process, a result whose `Deserialize` panics is that item's
    /// `DecodePanicked`, raw or by postcard, one at a time or in a run: the
    /// results before it are kept, and the panic does not leave the decoder.
    #[test]
    fn a_result_whose_deserialize_panics_is_that_items_error() {
        let mut out = Vec::new();
        for x in 1..=5u64 {
            put_result(&x, &mut out);
        }
        let mut got: Vec<NoThree> = Vec::new();
        let (n, rest, failed) = read_raw_run::<NoThree>(&out, 5, &mut got);
        assert_eq!((n, got.len(), rest.len()), (2, 2, 0));
        assert!(
            matches!(failed, Some(Error::DecodePanicked { ref message }) if message == "no three"),
            "{failed:?}"
        );
        let mut all: Vec<NoThree> = Vec::new();
        let r = read_results::<NoThree>(&out, 5, &mut all);
        assert!(matches!(r, Err((2, Error::DecodePanicked { .. }))), "{r:?}");
        assert_eq!(all, [NoThree(1), NoThree(2)]);
        // One at a time, and by postcard.
        let (r, _) = read_item::<NoThree>(&out[18..]);
        assert!(matches!(r, Err(Error::DecodePanicked { .. })), "{r:?}");
        let mut out = Vec::new();
        for v in [1, 3, 4] {
            put_result(&NoThreeField { v }, &mut out);
        }
        let (a, rest) = read_item::<NoThreeField>(&out);
        let (b, rest) = read_item::<NoThreeField>(rest);
        assert_eq!(a.unwrap(), NoThreeField { v: 1 });
        assert!(matches!(b, Err(Error::DecodePanicked { .. })), "{b:?}");
        assert!(rest.is_empty(), "the entries after it are lost");
    }

    #[test]
    fn primitive_numbers_travel_raw_and_the_rest_by_postcard() {
        let at = Progress::new(0);
        // Raw arguments and raw results: a tag and 8 bytes each.
        let mut input = Vec::new();
        for x in [1.5f64, -2.0] {
            encode_arg(&x, &mut input).unwrap();
        }
        assert_eq!(input.len(), 18);
        let mut out = Vec::new();
        run_items(&|x: f64| x * 2.0, &input, 2, &mut out, &at);
        assert_eq!(out.len(), 18, "two raw results");
        let (a, rest) = read_item::<f64>(&out);
        let (b, _) = read_item::<f64>(rest);
        assert_eq!((a.unwrap(), b.unwrap()), (3.0, -4.0));
        // A raw result read as a type that does not take it: a decode error.
        let (c, _) = read_item::<u8>(&out);
        assert!(matches!(c, Err(Error::DecodeResult(_))), "{c:?}");
        // Compound values go by postcard, tagged.
        let mut input = Vec::new();
        encode_arg(&(7u64, "seven".to_owned()), &mut input).unwrap();
        assert_eq!(input[0], ARG);
        let mut out = Vec::new();
        run_items(
            &|(n, s): (u64, String)| format!("{s}={n}"),
            &input,
            1,
            &mut out,
            &at,
        );
        assert_eq!(out[0], OK);
        assert_eq!(read_item::<String>(&out).0.unwrap(), "seven=7");
    }

    /// A number whose kind depends on its value: arguments and results of
    /// several raw kinds in one chunk, which the loops made for one kind
    /// must hand over to each other (and to the general path) in order.
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone, Copy)]
    #[serde(untagged)]
    enum Num {
        Small(u8),
        Big(u64),
        Neg(i32),
        Real(f64),
    }

    #[test]
    fn runs_of_raw_numbers_of_mixed_kinds_keep_their_order() {
        let at = Progress::new(0);
        let args: Vec<Num> = (0..200u64)
            .map(|i| match i % 7 {
                0..=2 => Num::Big(1000 + i),
                3 => Num::Small(i as u8),
                4 => Num::Neg(-(i as i32)),
                _ => Num::Real(i as f64 / 4.0),
            })
            .collect();
        let mut input = Vec::new();
        for a in &args {
            encode_arg(a, &mut input).unwrap();
        }
        // Results change kind on another rhythm; every 50th panics.
        let f = |n: Num| -> Num {
            let v = match n {
                Num::Small(x) => u64::from(x),
                Num::Big(x) => x,
                Num::Neg(x) => x.unsigned_abs().into(),
                Num::Real(x) => x as u64,
            };
            assert!(v % 50 != 7, "fifty");
            if v % 3 == 0 {
                Num::Neg(-(v as i32))
            } else {
                Num::Big(v * 2)
            }
        };
        crate::worker::quiet_panics();
        let mut out = Vec::new();
        run_items(&f, &input, args.len() as u32, &mut out, &at);
        let mut entries = &out[..];
        let mut got: Vec<Result<Num, String>> = Vec::new();
        while got.len() < args.len() {
            let mut run = Vec::new();
            let (n, rest, failed) = read_raw_run::<Num>(entries, args.len() - got.len(), &mut run);
            assert!(failed.is_none(), "{failed:?}");
            got.extend(run.into_iter().map(Ok));
            entries = rest;
            if n == 0 {
                let (r, rest) = read_item::<Num>(entries);
                got.push(r.map_err(|e| e.to_string()));
                entries = rest;
            }
        }
        assert!(entries.is_empty());
        for (a, g) in args.iter().zip(&got) {
            let expect = std::panic::catch_unwind(|| f(*a)).map_err(|_| ());
            // Untagged, a value comes back as the first variant that takes
            // it (Big(8) as Small(8)): compare the numbers.
            let value = |n: Num| match n {
                Num::Small(x) => f64::from(x),
                Num::Big(x) => x as f64,
                Num::Neg(x) => f64::from(x),
                Num::Real(x) => x,
            };
            match (expect, g) {
                (Ok(e), Ok(g)) => assert_eq!(value(e), value(*g), "{a:?}"),
                (Err(()), Err(msg)) => assert!(msg.contains("fifty"), "{msg}"),
                (e, g) => panic!("{a:?}: expected {e:?}, got {g:?}"),
            }
        }
        assert!(got.iter().any(Result::is_err), "no item panicked");
    }

    /// A `Vec<u8>` goes as one block, in the very bytes postcard writes for
    /// it a byte at a time, so either side reads what the other wrote; as
    /// an argument and as a result, of every length a varint's byte count
    /// changes at.
    #[test]
    fn a_byte_vec_is_one_block_in_postcards_own_encoding() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut ours = Vec::new();
            encode_into(&v, &mut ours).unwrap();
            let theirs = postcard::to_allocvec(&v).unwrap();
            assert_eq!(ours, theirs, "{len} bytes");
            // Read back by the block path and by postcard's own, with
            // something after it.
            ours.push(0xAB);
            let (back, rest) = decode_from::<Vec<u8>>(&ours).unwrap();
            assert_eq!((back, rest), (v.clone(), &[0xAB][..]));
            let (back, _) = postcard::take_from_bytes::<Vec<u8>>(&ours).unwrap();
            assert_eq!(back, v);
            // As an argument, and as a result among others.
            let mut arg = Vec::new();
            encode_arg(&v, &mut arg).unwrap();
            assert_eq!(decode_arg::<Vec<u8>>(&arg).unwrap().0, v);
            let mut answer = Vec::new();
            answer_items(
                &mut answer,
                2,
                |k| if k == 0 { v.clone() } else { vec![9] },
                |_| {},
            );
            let (first, rest) = read_item::<Vec<u8>>(&answer);
            assert_eq!(first.unwrap(), v);
            assert_eq!(read_item::<Vec<u8>>(rest).0.unwrap(), [9]);
        }
        // Cut short: an error, never a read past the end.
        let mut cut = Vec::new();
        encode_into(&vec![5u8; 1000], &mut cut).unwrap();
        cut.truncate(500);
        assert!(decode_from::<Vec<u8>>(&cut).is_err());
        // The block path is the one taken, for this type only.
        assert!(is_byte_vec::<Vec<u8>>() && as_byte_vec(&vec![1u8]).is_some());
        assert!(!is_byte_vec::<Vec<i8>>() && !is_byte_vec::<[u8]>() && !is_byte_vec::<&[u8]>());
        assert_eq!(byte_vec_as::<Vec<u8>>(vec![3]), Ok(vec![3]));
        assert!(byte_vec_as::<String>(vec![3]).is_err());
        // Other types are not taken for one.
        let mut words = Vec::new();
        encode_into(&vec![1u16, 2, 3], &mut words).unwrap();
        assert_eq!(words, postcard::to_allocvec(&vec![1u16, 2, 3]).unwrap());
        assert_eq!(decode_from::<Vec<u16>>(&words).unwrap().0, [1, 2, 3]);
    }

    /// Answers of raw results are written into room made for all of them
    /// after the first: one allocation, where doubling copied the answer at
    /// every step.
    #[test]
    fn raw_answers_are_written_into_one_allocation() {
        for count in [2usize, 1_000, 125_000] {
            let mut out = Vec::new();
            answer_items(&mut out, count, |k| k as u64, |_| {});
            assert!(
                out.capacity() <= out.len() + raw::ROOM_PAST,
                "{count} answers: {} bytes in a buffer of {}",
                out.len(),
                out.capacity()
            );
            let mut out = Vec::new();
            answer_items(&mut out, count, |k| (k as u32, k as u8), |_| {});
            assert!(out.capacity() <= out.len() + raw::ROOM_PAST);
        }
    }

    #[test]
    fn answers_of_a_run_keep_their_places_around_panics() {
        crate::worker::quiet_panics();
        let seen = std::cell::RefCell::new(Vec::new());
        let mut out = Vec::new();
        answer_items(
            &mut out,
            6,
            |k| {
                assert!(k % 3 != 1, "item {k}");
                k as u64 * 10
            },
            |k| seen.borrow_mut().push(k),
        );
        assert_eq!(*seen.borrow(), [0, 1, 2, 3, 4, 5]);
        let mut entries = &out[..];
        for k in 0..6u64 {
            let (r, rest) = read_item::<u64>(entries);
            entries = rest;
            match r {
                Ok(v) => assert_eq!(v, k * 10),
                Err(Error::Panicked { message, .. }) => {
                    assert_eq!(k % 3, 1);
                    assert!(message.contains(&format!("item {k}")), "{message}");
                }
                Err(e) => panic!("item {k}: {e}"),
            }
        }
        assert!(entries.is_empty());
    }

    /// In a long run of raw arguments, an item whose call panics, or whose
    /// result's `Serialize` panics after writing part of it, is that item's
    /// `Panicked`; every other item keeps its result, in its place (a raw run
    /// keeps no mark of where each entry starts: it finds the next argument
    /// from its stride, and a result is appended whole or not at all).
    #[test]
    fn a_raw_run_keeps_every_answer_in_place_around_panics() {
        crate::worker::quiet_panics();
        let n = 3_000u64;
        let mut input = Vec::new();
        for x in 0..n {
            encode_arg(&x, &mut input).unwrap();
        }
        let at = Progress::new(0);
        let mut out = Vec::new();
        PANICS.with(|p| p.set((u64::MAX, 11, 4)));
        let call = |x: u64| {
            assert!(x % 7 != 3, "call {x}");
            Fickle(x)
        };
        run_items(&call, &input, n as u32, &mut out, &at);
        let mut entries = &out[..];
        for x in 0..n {
            let want = if x % 7 == 3 {
                Some("call")
            } else if x % 11 == 4 {
                Some(if x.is_multiple_of(2) {
                    "after the number"
                } else {
                    "half way"
                })
            } else {
                None
            };
            let (got, rest) = read_fickle(entries, x);
            entries = rest;
            match (want, got) {
                (None, Ok(())) => {}
                (Some(m), Err(Error::Panicked { message, .. })) if message.contains(m) => {}
                (w, g) => panic!("item {x}: wanted {w:?}, got {g:?}"),
            }
        }
        assert!(entries.is_empty(), "{} bytes left", entries.len());
        assert_eq!(at.load(Ordering::Relaxed), n - 1);
    }

    /// A result whose `Drop` panics on some values, written as a number
    /// (`raw`) or as text.
    struct Sticky {
        value: u64,
        raw: bool,
    }

    impl Serialize for Sticky {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.raw {
                s.serialize_u64(self.value)
            } else {
                s.serialize_str(&self.value.to_string())
            }
        }
    }

    impl Drop for Sticky {
        fn drop(&mut self) {
            if self.value % 5 == 2 {
                panic!("drop {}", self.value);
            }
        }
    }

    /// A result whose `Drop` panics (after its entry may have been written)
    /// fails its item with `Panicked` and leaves no entry of its own: every
    /// other item keeps its result in its place, in a raw run and item by
    /// item, for results written raw and by postcard. (A raw run once kept
    /// such an item's entry and added the panic's after it: every later
    /// result moved one place.)
    #[test]
    fn a_result_whose_drop_panics_fails_its_item_alone() {
        crate::worker::quiet_panics();
        let n = 200u64;
        for raw_args in [true, false] {
            for raw in [true, false] {
                let mut input = Vec::new();
                for x in 0..n {
                    if raw_args {
                        encode_arg(&x, &mut input).unwrap();
                    } else {
                        encode_arg(&x.to_string(), &mut input).unwrap();
                    }
                }
                let at = Progress::new(0);
                let mut out = Vec::new();
                if raw_args {
                    run_items(
                        &|value: u64| Sticky { value, raw },
                        &input,
                        n as u32,
                        &mut out,
                        &at,
                    );
                } else {
                    let call = |text: String| Sticky {
                        value: text.parse().unwrap(),
                        raw,
                    };
                    run_items(&call, &input, n as u32, &mut out, &at);
                }
                let mut entries = &out[..];
                for x in 0..n {
                    let got = if raw {
                        let (got, rest) = read_item::<u64>(entries);
                        entries = rest;
                        got
                    } else {
                        let (got, rest) = read_item::<String>(entries);
                        entries = rest;
                        got.map(|t| t.parse().unwrap())
                    };
                    match got {
                        Ok(v) if x % 5 != 2 && v == x => {}
                        Err(Error::Panicked { message, .. })
                            if x % 5 == 2 && message == format!("drop {x}") => {}
                        g => panic!("raw args {raw_args}, raw {raw}: item {x} answered {g:?}"),
                    }
                }
                assert!(entries.is_empty(), "{} bytes left", entries.len());
            }
        }
    }

    thread_local! {
        /// What [`Picky`] and [`Fickle`] panic on: a `Deserialize` on this
        /// value, a `Serialize` on values `v % .1 == .2`.
        static PANICS: std::cell::Cell<(u64, u64, u64)> = const { std::cell::Cell::new((u64::MAX, 1, 1)) };
    }

    /// An argument whose `Deserialize` panics on one value (see [`PANICS`]).
    struct Picky(u64);

    impl<'de> serde::Deserialize<'de> for Picky {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Picky, D::Error> {
            let v = u64::deserialize(d)?;
            assert!(v != PANICS.with(|p| p.get().0), "no {v}");
            Ok(Picky(v))
        }
    }

    /// A result that is a raw number when even, a raw tuple `(x, 1u8)` when
    /// `x % 4 == 1` and a postcard pair `("one", x)` when `x % 4 == 3`, whose
    /// `Serialize` panics after writing part of itself on some values (see
    /// [`PANICS`]).
    struct Fickle(u64);

    impl serde::Serialize for Fickle {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let (_, m, r) = PANICS.with(|p| p.get());
            let x = self.0;
            if x.is_multiple_of(2) {
                let out = s.serialize_u64(x);
                assert!(x % m != r, "after the number");
                return out;
            }
            let mut t = s.serialize_tuple(2)?;
            if x % 4 == 1 {
                t.serialize_element(&x)?;
                assert!(x % m != r, "half way");
                t.serialize_element(&1u8)?;
            } else {
                // The string refuses the raw tuple before the panic: it is
                // postcard's bytes that are cut half way.
                t.serialize_element("one")?;
                assert!(x % m != r, "half way");
                t.serialize_element(&x)?;
            }
            t.end()
        }
    }

    /// Reads a [`Fickle`]'s entry for `x`, checking its value.
    fn read_fickle(entries: &[u8], x: u64) -> (Result<(), Error>, &[u8]) {
        match x % 4 {
            0 | 2 => {
                let (r, rest) = read_item::<u64>(entries);
                (r.map(|v| assert_eq!(v, x)), rest)
            }
            1 => {
                let (r, rest) = read_item::<(u64, u8)>(entries);
                (r.map(|v| assert_eq!(v, (x, 1))), rest)
            }
            _ => {
                let (r, rest) = read_item::<(String, u64)>(entries);
                (r.map(|v| assert_eq!(v, ("one".to_owned(), x))), rest)
            }
        }
    }

    proptest::proptest! {
        /// Runs of raw arguments of two kinds (8 bytes and 1), whose calls,
        /// results' `Serialize` and arguments' `Deserialize` panic where the
        /// case says, answer as the items would one by one: each a result,
        /// or `Panicked`, and from a `Deserialize` that panicked on, every
        /// item a decoding failure.
        #[test]
        fn raw_runs_answer_as_items_one_by_one(
            items in proptest::collection::vec((proptest::bool::ANY, 0u16..1000), 0..3000),
            call in (2u64..40, 0u64..40),
            ser in (2u64..40, 0u64..40),
            bad in 0u64..2000,
        ) {
            crate::worker::quiet_panics();
            PANICS.with(|p| p.set((bad, ser.0, ser.1)));
            let value = |&(wide, v): &(bool, u16)| if wide { u64::from(v) } else { u64::from(v as u8) };
            let mut input = Vec::new();
            for it in &items {
                if it.0 {
                    encode_arg(&value(it), &mut input).unwrap();
                } else {
                    encode_arg(&(value(it) as u8), &mut input).unwrap();
                }
            }
            let at = Progress::new(0);
            let mut out = Vec::new();
            let f = |a: Picky| {
                assert!(a.0 % call.0 != call.1, "call {}", a.0);
                Fickle(a.0)
            };
            run_items(&f, &input, items.len() as u32, &mut out, &at);
            let mut entries = &out[..];
            let mut undecodable = false;
            for (k, it) in items.iter().enumerate() {
                let x = value(it);
                undecodable |= x == bad;
                let (got, rest) = read_fickle(entries, x);
                entries = rest;
                let want = if undecodable {
                    Some("decode")
                } else if x % call.0 == call.1 {
                    Some("call")
                } else if x % ser.0 == ser.1 {
                    Some(if x.is_multiple_of(2) { "after the number" } else { "half way" })
                } else {
                    None
                };
                match (want, got) {
                    (None, Ok(())) => {}
                    (Some("decode"), Err(Error::WorkerCodec { what, .. })) if what.starts_with("decode") => {}
                    (Some(m), Err(Error::Panicked { message, .. })) if message.contains(m) => {}
                    (w, g) => proptest::prop_assert!(false, "item {k} ({x}): wanted {w:?}, got {g:?}"),
                }
            }
            proptest::prop_assert!(entries.is_empty(), "{} bytes left", entries.len());
        }
    }

    /// One number or a pair of them, of kinds that depend on the values: a
    /// chunk of these is a mix of raw numbers and raw tuples of several
    /// shapes, which the loops made for one kind or one shape must hand over
    /// to each other in order.
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone, Copy)]
    #[serde(untagged)]
    enum Shaped {
        One(Num),
        Two(Num, Num),
    }

    impl Shaped {
        fn numbers(self) -> Vec<f64> {
            let value = |n: Num| match n {
                Num::Small(x) => f64::from(x),
                Num::Big(x) => x as f64,
                Num::Neg(x) => f64::from(x),
                Num::Real(x) => x,
            };
            match self {
                Shaped::One(a) => vec![value(a)],
                Shaped::Two(a, b) => vec![value(a), value(b)],
            }
        }
    }

    fn num(kind: u8, v: u16) -> Num {
        match kind % 4 {
            0 => Num::Small(v as u8),
            1 => Num::Big(u64::from(v) << 20),
            2 => Num::Neg(-i32::from(v)),
            _ => Num::Real(f64::from(v) / 8.0),
        }
    }

    proptest::proptest! {
        /// Chunks of raw numbers and raw tuples of changing shapes, whose
        /// calls panic where the case says and whose results change shape on
        /// another rhythm, answer as the items would one by one.
        #[test]
        fn raw_tuples_of_changing_shapes_answer_as_items_one_by_one(
            items in proptest::collection::vec(
                (0u8..3, 0u8..4, 0u8..4, proptest::num::u16::ANY, proptest::num::u16::ANY),
                0..600,
            ),
            call in (2u64..40, 0u64..40),
        ) {
            crate::worker::quiet_panics();
            let args: Vec<Shaped> = items
                .iter()
                .map(|&(pair, ka, kb, a, b)| match pair {
                    0 => Shaped::One(num(ka, a)),
                    _ => Shaped::Two(num(ka, a), num(kb, b)),
                })
                .collect();
            let f = |s: Shaped| -> Shaped {
                let n = s.numbers();
                let sum = n.iter().sum::<f64>().abs() as u64;
                assert!(sum % call.0 != call.1, "call {sum}");
                match sum % 3 {
                    0 => Shaped::One(Num::Big(sum)),
                    1 => Shaped::Two(Num::Real(n[0]), Num::Small(n.len() as u8)),
                    _ => Shaped::Two(Num::Neg(-(n.len() as i32)), Num::Big(sum)),
                }
            };
            let mut input = Vec::new();
            for a in &args {
                encode_arg(a, &mut input).unwrap();
            }
            let at = Progress::new(0);
            let mut out = Vec::new();
            run_items(&f, &input, args.len() as u32, &mut out, &at);
            let mut entries = &out[..];
            let mut got: Vec<Result<Shaped, Error>> = Vec::new();
            while got.len() < args.len() {
                let mut run = Vec::new();
                let (n, rest, failed) =
                    read_raw_run::<Shaped>(entries, args.len() - got.len(), &mut run);
                proptest::prop_assert!(failed.is_none(), "{failed:?}");
                got.extend(run.into_iter().map(Ok));
                entries = rest;
                if n == 0 {
                    let (r, rest) = read_item::<Shaped>(entries);
                    got.push(r);
                    entries = rest;
                }
            }
            proptest::prop_assert!(entries.is_empty(), "{} bytes left", entries.len());
            for (k, (a, g)) in args.iter().zip(&got).enumerate() {
                match (std::panic::catch_unwind(|| f(*a)), g) {
                    (Ok(e), Ok(g)) => proptest::prop_assert_eq!(e.numbers(), g.numbers(), "item {}", k),
                    (Err(_), Err(Error::Panicked { message, .. })) if message.contains("call") => {}
                    (e, g) => proptest::prop_assert!(false, "item {k} {a:?}: expected {e:?}, got {g:?}"),
                }
            }
        }
    }

    #[test]
    fn a_count_larger_than_the_arguments_does_not_multiply_the_answer() {
        let at = Progress::new(0);
        let mut out = Vec::new();
        // Three bytes of garbage claiming a million items: at most three entries.
        run_items(&|x: u64| x, &[0xee, 1, 2], 1_000_000, &mut out, &at);
        let mut entries = &out[..];
        let mut n = 0;
        while !entries.is_empty() {
            let (r, rest) = read_item::<u64>(entries);
            assert!(matches!(r, Err(Error::WorkerCodec { .. })), "{r:?}");
            entries = rest;
            n += 1;
        }
        assert!((1..=3).contains(&n), "{n} entries");
    }
}
