//! [`ByteQueue`]: byte messages of any size (and, with the `serde` feature, any
//! `Serialize` type): those up to the slot size in a slot each, larger ones
//! streamed through the lane (see [`large`](crate::large)).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc_shm::{Location, Segment};
use multiproc_sync::futex::Deadline;

use crate::large::Received;
use crate::layout::ANNOUNCEMENT;
use crate::raw::{deadline, RawQueue, Roles, Spec};
use crate::ring::Msg;
use crate::Corruption;
use crate::{Error, Result};

/// A bounded queue of byte messages of any size, between threads and processes:
/// Python's `Queue` for bytes (or, with the `serde` feature, any `Serialize`
/// value).
///
/// A message up to `max_inline` bytes (fixed at creation) is copied into a slot
/// of its own, in one step: the fast path. A larger one is announced in a slot
/// and streamed through the queue's lane of 256 KiB (or the size given to
/// [`with_lane`](ByteQueue::with_lane)), while small messages keep flowing;
/// only one large message streams at a time, and its `put` returns once its
/// last byte is in the lane (as a write into a pipe does), so a message larger
/// than the lane needs a receiver to go through. Choose `max_inline` for the usual
/// message: every slot is that big.
///
/// | Python | here |
/// |---|---|
/// | `put(b)`, `put(b, timeout=t)`, `put_nowait(b)` | [`put_bytes`](ByteQueue::put_bytes), [`put_bytes_timeout`](ByteQueue::put_bytes_timeout), [`try_put_bytes`](ByteQueue::try_put_bytes) |
/// | `get()`, `get(timeout=t)`, `get_nowait()` | [`get_bytes`](ByteQueue::get_bytes), [`get_bytes_timeout`](ByteQueue::get_bytes_timeout), [`try_get_bytes`](ByteQueue::try_get_bytes) (and `_into` forms that reuse a buffer) |
/// | any picklable object | [`put_value`](ByteQueue::put_value) / [`get_value`](ByteQueue::get_value) (feature `serde`), or [`ValueQueue`](crate::ValueQueue) for one type |
///
/// Otherwise it behaves as [`Queue`](crate::Queue): the same errors, the same
/// handling of dead peers (a large message whose producer or receiver dies
/// mid-stream is counted in [`lost`](ByteQueue::lost)).
///
/// # Examples
/// ```
/// let q = multiproc_queue::ByteQueue::new(16, 64)?;
/// q.put_bytes(b"hello")?;
/// assert_eq!(q.get_bytes()?, b"hello");
/// q.put_bytes(&[7; 65])?; // over the slot size: streamed through the lane
/// assert_eq!(q.get_bytes()?, [7; 65]);
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct ByteQueue {
    pub(crate) raw: RawQueue,
    /// This handle's last `poll` or `empty` found no message, and no get has
    /// found one at its first look since: as a consumer it is caught up with
    /// its producers, and its next get does not ask for the next slot's line
    /// (see `get_into_with`). A cache hint's switch only.
    caught_up: AtomicBool,
}

pub(crate) const BYTE_QUEUE: &str = "multiproc_queue::ByteQueue";

/// The length limit of a get that has none.
const NO_LIMIT: usize = usize::MAX;

/// `buf`'s length, or, over `limit`, `buf` emptied and the error that says so.
#[inline(always)]
fn within(buf: &mut Vec<u8>, limit: usize) -> Result<usize> {
    if buf.len() > limit {
        return Err(over_limit(buf, limit));
    }
    Ok(buf.len())
}

#[cold]
fn over_limit(buf: &mut Vec<u8>, limit: usize) -> Error {
    let len = buf.len() as u64;
    buf.clear();
    Error::MessageOverLimit { len, max: limit }
}

/// The type name a byte queue's segment header carries.
fn byte_queue_type_name(joinable: bool) -> &'static str {
    if joinable {
        "multiproc_queue::JoinableByteQueue"
    } else {
        BYTE_QUEUE
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of at least `len` bytes (at least
/// one), which the general gets copy each message into before handing it on.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            if s.len() < len.max(1) {
                s.resize(len.max(1), 0);
            }
            f(&mut s)
        }
        // In use further up this thread's stack: a fresh one.
        Err(_) => f(&mut vec![0; len.max(1)]),
    })
}

/// `raw`, if its ring is one of variable-length messages, as every byte queue's
/// is; a segment that says otherwise was written by something else.
pub(crate) fn byte_ring(raw: RawQueue) -> Result<RawQueue> {
    if raw.ring().is_fixed() {
        return Err(Error::Corrupted(Corruption::FixedRing));
    }
    Ok(raw)
}

/// What the general path of a get took: a message, or a large one's announcement.
struct Taken {
    bytes: Vec<u8>,
    large: bool,
}

impl ByteQueue {
    /// An anonymous queue of `maxsize` slots for messages of any size, each up
    /// to `max_inline` bytes in a slot of its own (larger ones streamed).
    ///
    /// # Errors
    /// As for [`Queue::new`](crate::Queue::new), and [`Error::OutOfRange`]
    /// for a `max_inline` over 16 MiB.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 100)?;
    /// assert_eq!(q.max_inline(), 100);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(maxsize: usize, max_inline: usize) -> Result<ByteQueue> {
        ByteQueue::new_in(Location::Anonymous, maxsize, max_inline)
    }

    /// A named byte queue.
    ///
    /// # Errors
    /// As for [`new`](ByteQueue::new), plus naming errors.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-bq-{}", std::process::id());
    /// let q = multiproc_queue::ByteQueue::create(&name, 4, 16)?;
    /// q.put_bytes(b"x")?;
    /// assert_eq!(multiproc_queue::ByteQueue::open(&name)?.get_bytes()?, b"x");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn create(name: &str, maxsize: usize, max_inline: usize) -> Result<ByteQueue> {
        ByteQueue::new_in(Location::Named(name), maxsize, max_inline)
    }

    /// A byte queue at `location`.
    ///
    /// # Errors
    /// As for [`new`](ByteQueue::new).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new_in(multiproc_shm::Location::Memfd, 4, 16)?;
    /// assert!(q.segment().fd().is_some());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, maxsize: usize, max_inline: usize) -> Result<ByteQueue> {
        ByteQueue::make(location, maxsize, max_inline, false, false)
    }

    /// A byte queue at `location` whose lane holds `lane_bytes` (the default,
    /// [`LANE_BYTES`](crate::LANE_BYTES), is 256 KiB): a large message up to
    /// the lane's size is `put` whole before any receiver reads it, where a
    /// larger one waits for its receiver to make room as it streams. A
    /// producer and a consumer that share a CPU then take turns once a
    /// message, not once a lane's worth. The lane is part of the queue's
    /// memory; only as much of it as the largest message is ever touched.
    ///
    /// # Errors
    /// [`Error::LaneSize`] unless `lane_bytes` is a multiple of 64 from 64
    /// bytes to 1 GiB; otherwise as for [`new`](ByteQueue::new).
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::Location;
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::with_lane(Location::Anonymous, 4, 64, 1 << 20)?;
    /// // 600 KiB with nobody reading yet: in the lane at once.
    /// q.put_bytes_timeout(&vec![7; 600 << 10], Duration::ZERO)?;
    /// assert_eq!(q.get_bytes()?.len(), 600 << 10);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn with_lane(
        location: Location<'_>,
        maxsize: usize,
        max_inline: usize,
        lane_bytes: usize,
    ) -> Result<ByteQueue> {
        ByteQueue::make_with_lane(location, maxsize, max_inline, false, false, lane_bytes)
    }

    pub(crate) fn make(
        location: Location<'_>,
        maxsize: usize,
        max_inline: usize,
        joinable: bool,
        pipe: bool,
    ) -> Result<ByteQueue> {
        ByteQueue::make_with_lane(
            location,
            maxsize,
            max_inline,
            joinable,
            pipe,
            crate::LANE_BYTES,
        )
    }

    pub(crate) fn make_with_lane(
        location: Location<'_>,
        maxsize: usize,
        max_inline: usize,
        joinable: bool,
        pipe: bool,
        lane: usize,
    ) -> Result<ByteQueue> {
        Ok(ByteQueue::from_raw(RawQueue::create(Spec {
            location,
            capacity: maxsize,
            msg_max: max_inline,
            fixed: false,
            type_name: byte_queue_type_name(joinable).to_owned(),
            joinable,
            pipe,
            lane,
        })?))
    }

    /// A handle on `raw` (a ring of byte slots).
    pub(crate) fn from_raw(raw: RawQueue) -> ByteQueue {
        ByteQueue {
            raw,
            caught_up: AtomicBool::new(false),
        }
    }

    /// Notes that a look for a message found none (a store only on a change:
    /// the line may be shared by threads using this handle).
    #[inline(always)]
    fn set_caught_up(&self, now: bool) {
        if self.caught_up.load(Ordering::Relaxed) != now {
            self.caught_up.store(now, Ordering::Relaxed);
        }
    }

    /// Opens a named byte queue (a write handle).
    ///
    /// # Errors
    /// As for [`Queue::open`](crate::Queue::open).
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ByteQueue::open("no-such-bq-here").is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<ByteQueue> {
        ByteQueue::open_as(name, false, Roles::WRITER)
    }

    /// Opens the named byte queue `name`, which must hold exactly `maxsize`
    /// messages of up to `max_inline` bytes in their slots.
    ///
    /// # Errors
    /// [`Error::CapacityMismatch`] or [`Error::MessageSizeMismatch`] for another
    /// size, then as for [`open`](ByteQueue::open).
    ///
    /// # Examples
    /// ```
    /// use multiproc_queue::{ByteQueue, Error};
    /// let name = format!("doc-bq-sized-{}", std::process::id());
    /// let _q = ByteQueue::create(&name, 8, 64)?;
    /// assert!(ByteQueue::open_sized(&name, 8, 64).is_ok());
    /// assert!(matches!(ByteQueue::open_sized(&name, 16, 64), Err(Error::CapacityMismatch { found: 8, expected: 16 })));
    /// assert!(matches!(ByteQueue::open_sized(&name, 8, 32), Err(Error::MessageSizeMismatch { found: 64, expected: 32 })));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open_sized(name: &str, maxsize: usize, max_inline: usize) -> Result<ByteQueue> {
        let q = ByteQueue::open(name)?;
        if q.capacity() != maxsize {
            return Err(Error::CapacityMismatch {
                found: q.capacity(),
                expected: maxsize,
            });
        }
        if q.max_inline() != max_inline {
            return Err(Error::MessageSizeMismatch {
                found: q.max_inline(),
                expected: max_inline,
            });
        }
        Ok(q)
    }

    /// Opens a named byte queue without counting as a writer, so that a blocked
    /// get can see [`Error::Disconnected`] when the writers are gone (as
    /// [`Queue::open_receiver`](crate::Queue::open_receiver)).
    ///
    /// # Errors
    /// As for [`open`](ByteQueue::open).
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-bq-recv-{}", std::process::id());
    /// let w = multiproc_queue::ByteQueue::create(&name, 4, 16)?;
    /// let r = multiproc_queue::ByteQueue::open_receiver(&name)?;
    /// w.put_bytes(b"hi")?;
    /// assert_eq!(r.get_bytes()?, b"hi");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open_receiver(name: &str) -> Result<ByteQueue> {
        ByteQueue::open_as(name, false, Roles::NONE)
    }

    pub(crate) fn open_as(name: &str, joinable: bool, roles: Roles) -> Result<ByteQueue> {
        let type_name = byte_queue_type_name(joinable);
        Ok(ByteQueue::from_raw(byte_ring(RawQueue::attach(
            Segment::open(name)?,
            type_name,
            roles,
        )?)?))
    }

    /// How many times a blocking put or get of this handle retries before it
    /// yields and then sleeps (see [`Queue::set_spin_limit`](crate::Queue::set_spin_limit)).
    ///
    /// # Examples
    /// ```
    /// let mut q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.set_spin_limit(0); // sleep at once when empty
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn set_spin_limit(&mut self, spins: u32) {
        self.raw.set_spins(spins);
    }

    /// Stops counting this handle as a writer.
    ///
    /// # Examples
    /// ```
    /// let mut q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.stop_writing();
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn stop_writing(&mut self) {
        self.raw.unregister_writer();
    }

    /// The largest message that goes in a slot of its own (larger ones stream).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ByteQueue::new(4, 16)?.max_inline(), 16);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn max_inline(&self) -> usize {
        self.raw.ring().msg_max()
    }

    /// The one-message fast path of the puts: `true` if `msg` went in (see
    /// `RawQueue::fast_put`); a message over the slot size is the general path's.
    #[inline(always)]
    fn fast_put(&self, msg: &[u8], spins: u32) -> bool {
        if msg.len() > self.max_inline() {
            return false;
        }
        // One try here (the message going in is the common case), written
        // out rather than through `RawQueue::fast_put`'s closure, which the
        // compiler kept out of line; the spinning is that function's.
        if !self.raw.fast_put_allowed() {
            return false;
        }
        let ring = self.raw.ring();
        let Some(part) = ring.participant() else {
            return false;
        };
        if ring.push_bytes_one(Some(part), msg) {
            return true;
        }
        spins > 0 && self.fast_put_spinning(msg, spins)
    }

    /// The rest of [`fast_put`](Self::fast_put): spinning for room.
    #[inline(never)]
    fn fast_put_spinning(&self, msg: &[u8], spins: u32) -> bool {
        self.raw
            .fast_put(spins, |ring, part| ring.push_bytes_one(Some(part), msg))
    }

    /// The general path of the puts (waiting, sleeping, large messages, and
    /// every error).
    #[cold]
    #[inline(never)]
    fn put_bytes_slow(&self, msg: &[u8], deadline: Option<Deadline>, nowait: bool) -> Result<()> {
        if msg.len() > self.max_inline() {
            if nowait {
                return Err(Error::MessageTooLarge {
                    len: msg.len(),
                    max: self.max_inline(),
                });
            }
            return self.raw.put_large(msg, deadline);
        }
        self.raw.put(&[Msg::of(msg)], deadline, nowait).1
    }

    /// Puts a message, waiting for room.
    ///
    /// # Errors
    /// As for [`Queue::put`](crate::Queue::put).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes(b"abcd")?;
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn put_bytes(&self, msg: &[u8]) -> Result<()> {
        if self.fast_put(msg, self.raw.spins()) {
            return Ok(());
        }
        self.put_bytes_slow(msg, None, false)
    }

    /// Puts a message, waiting at most `timeout` for room (and, for a large one,
    /// for its receiver to take its bytes: past the timeout the message is
    /// abandoned, and counted lost).
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`put_bytes`](ByteQueue::put_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes(b"a")?;
    /// assert!(matches!(q.put_bytes_timeout(b"b", Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        if self.fast_put(msg, self.raw.spins()) {
            return Ok(());
        }
        self.put_bytes_slow(msg, deadline(Some(timeout)), false)
    }

    /// Puts a message if there is room now (Python's `put_nowait`). A message
    /// over the slot size is refused: streaming it would wait for a receiver.
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::MessageTooLarge`] for a message over
    /// [`max_inline`](ByteQueue::max_inline), and as for
    /// [`put_bytes`](ByteQueue::put_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.try_put_bytes(b"a")?;
    /// assert!(matches!(q.try_put_bytes(b"b"), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put_bytes(&self, msg: &[u8]) -> Result<()> {
        if self.fast_put(msg, 0) {
            return Ok(());
        }
        self.put_bytes_slow(msg, None, true)
    }

    /// Puts every message, in order, claiming as many slots at once as are free
    /// (as [`Queue::put_many`](crate::Queue::put_many)); a message over the slot
    /// size streams in its turn.
    ///
    /// # Errors
    /// As for [`put_bytes`](ByteQueue::put_bytes); messages before a failure
    /// went in.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(8, 16)?;
    /// q.put_bytes_many(&[&b"a"[..], b"bc", b""])?;
    /// assert_eq!(q.qsize(), 3);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes_many<M: AsRef<[u8]>>(&self, msgs: &[M]) -> Result<()> {
        self.put_bytes_many_with(msgs, None).1
    }

    /// Puts messages in order, as [`put_bytes_many`](ByteQueue::put_bytes_many)
    /// does, until all went in or `timeout` passes; returns how many went in
    /// (fewer than `msgs.len()` when the time ran out after some went in).
    ///
    /// # Errors
    /// [`Error::Timeout`] when none went in in time, and as for
    /// [`put_bytes`](ByteQueue::put_bytes) when the first failed.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(2, 16)?;
    /// assert_eq!(q.put_bytes_many_timeout(&[b"a", b"b", b"c"], Duration::from_millis(1))?, 2);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes_many_timeout<M: AsRef<[u8]>>(
        &self,
        msgs: &[M],
        timeout: Duration,
    ) -> Result<usize> {
        match self.put_bytes_many_with(msgs, deadline(Some(timeout))) {
            (0, Err(e)) => Err(e),
            (n, _) => Ok(n),
        }
    }

    /// Runs of messages that fit a slot go in a batch each; larger ones stream.
    fn put_bytes_many_with<M: AsRef<[u8]>>(
        &self,
        msgs: &[M],
        deadline: Option<Deadline>,
    ) -> (usize, Result<()>) {
        let max = self.max_inline();
        let mut done = 0;
        while done < msgs.len() {
            let rest = &msgs[done..];
            let small = rest.iter().take_while(|m| m.as_ref().len() <= max).count();
            if small == 0 {
                if let Err(e) = self.raw.put_large(rest[0].as_ref(), deadline) {
                    return (done, Err(e));
                }
                done += 1;
                continue;
            }
            let batch: Vec<Msg> = rest[..small].iter().map(|m| Msg::of(m.as_ref())).collect();
            let (n, r) = self.raw.put(&batch, deadline, false);
            done += n;
            if r.is_err() {
                return (done, r);
            }
        }
        (done, Ok(()))
    }

    /// Takes the next message, waiting for one.
    ///
    /// # Errors
    /// As for [`Queue::get`](crate::Queue::get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.put_bytes(b"abc")?;
    /// assert_eq!(q.get_bytes()?, b"abc");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn get_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_into_with(&mut out, NO_LIMIT, None, false)?;
        Ok(out)
    }

    /// Takes the next message, waiting at most `timeout` for one to arrive.
    ///
    /// A large message whose stream has begun is read whole, past the timeout
    /// if its bytes are still coming (as Python's `get` reads a message whole
    /// once it has begun): taken from the queue, it would otherwise be lost.
    /// Only a stream that stalls for an owner check interval after the timeout
    /// is given up (answered `Timeout`, counted in [`lost`](ByteQueue::lost)).
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// assert!(matches!(q.get_bytes_timeout(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_into_with(&mut out, NO_LIMIT, deadline(Some(timeout)), false)?;
        Ok(out)
    }

    /// Takes the next message if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// assert!(matches!(q.try_get_bytes(), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_into_with(&mut out, NO_LIMIT, None, true)?;
        Ok(out)
    }

    /// Takes the next message into `buf`, replacing what it held, and returns
    /// its length. A buffer reused from one message to the next saves an
    /// allocation per message (Python's `recv_bytes_into`, except that the
    /// buffer grows to fit: no `BufferTooShort`). On an error `buf` holds no
    /// message.
    ///
    /// # Errors
    /// As for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.put_bytes(b"hello")?;
    /// q.put_bytes(b"hi")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(q.get_bytes_into(&mut buf)?, 5);
    /// assert_eq!(buf, b"hello");
    /// assert_eq!(q.get_bytes_into(&mut buf)?, 2);
    /// assert_eq!(buf, b"hi");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn get_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.get_into_with(buf, NO_LIMIT, None, false)
    }

    /// [`get_bytes_into`](ByteQueue::get_bytes_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// let mut buf = Vec::new();
    /// assert!(q.get_bytes_into_timeout(&mut buf, Duration::from_millis(1)).is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_into_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.get_into_with(buf, NO_LIMIT, deadline(Some(timeout)), false)
    }

    /// [`get_bytes_into`](ByteQueue::get_bytes_into) if a message is there now.
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// let mut buf = Vec::new();
    /// assert!(matches!(q.try_get_bytes_into(&mut buf), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_get_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.get_into_with(buf, NO_LIMIT, None, true)
    }

    /// Every get: one try of the fast path here (a message that is there is
    /// the common case; written out rather than through `RawQueue::fast_get`'s
    /// closure, which the compiler kept out of line), then the rest out of
    /// line. A get that finds its message at this first look is behind its
    /// producer and asks for the next slot's line (`Ring::claim_next_line`),
    /// unless this handle's last `poll` or `empty` found the queue empty (a
    /// consumer that polls, then gets: caught up, as one that waited in its
    /// get, whose rest does not ask either).
    ///
    /// A message longer than `limit` is dropped and answered
    /// [`Error::MessageOverLimit`] (a large one before its bytes are read);
    /// [`NO_LIMIT`] folds the check away.
    #[inline(always)]
    fn get_into_with(
        &self,
        buf: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        let ring = self.raw.ring();
        if let Some(part) = ring.participant() {
            let caught_up = self.caught_up.load(Ordering::Relaxed);
            let taken = ring.pop_bytes_one(Some(part), buf, !caught_up);
            if taken.is_some() && caught_up {
                self.set_caught_up(false);
            }
            match taken {
                Some(Ok(false)) => return within(buf, limit),
                Some(taken) => return self.got(taken, buf, limit, deadline, nowait),
                None => {} // nothing taken
            }
        }
        self.get_into_rest(buf, limit, deadline, nowait)
    }

    /// The rest of every get: spinning for a message, an announcement's large
    /// message (a lost one, to the next message), and the general path.
    #[inline(never)]
    fn get_into_rest(
        &self,
        buf: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        let spins = if nowait { 0 } else { self.raw.spins() };
        match self.raw.fast_get(spins, |ring, part| {
            ring.pop_bytes_one(Some(part), buf, false)
        }) {
            Some(taken) => self.got(taken, buf, limit, deadline, nowait),
            None => self.get_bytes_slow(buf, limit, deadline, nowait),
        }
    }

    /// What a get's fast path took into `buf`: a message, a large message's
    /// announcement (its message is received next), or a corrupt slot.
    #[inline]
    fn got(
        &self,
        taken: std::result::Result<bool, crate::Corruption>,
        buf: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        match taken {
            Ok(false) => within(buf, limit),
            Ok(true) => self.receive_announced(buf, limit, deadline, nowait),
            Err(e) => Err(Error::Corrupted(e)),
        }
    }

    /// The general path of the gets (waiting, sleeping, and every error), through
    /// this thread's scratch buffer of a slot's size.
    #[cold]
    #[inline(never)]
    fn get_bytes_slow(
        &self,
        buf: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        let mut large = false;
        with_scratch(self.raw.ring().data_max(), |s| {
            self.raw.get(1, deadline, nowait, s, |m, is_large| {
                buf.clear();
                buf.extend_from_slice(m);
                large = is_large;
            })
        })?;
        if large {
            return self.receive_announced(buf, limit, deadline, nowait);
        }
        within(buf, limit)
    }

    /// `buf` holds an announcement: receive its message into `buf`; when it was
    /// lost, take the next message instead (within the same deadline).
    #[cold]
    fn receive_announced(
        &self,
        buf: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        let mut ann = [0u8; ANNOUNCEMENT];
        let n = buf.len().min(ANNOUNCEMENT);
        ann[..n].copy_from_slice(&buf[..n]);
        match self.raw.get_large(&ann, buf, limit, deadline)? {
            Received::Whole => Ok(buf.len()),
            Received::Lost => self.get_into_with(buf, limit, deadline, nowait),
        }
    }

    /// Takes the next message into `buf` if it is at most `limit` bytes long
    /// (Python's `recv_bytes(maxlength)`, for [`Connection`](crate::Connection)).
    pub(crate) fn get_bytes_into_limited(
        &self,
        buf: &mut Vec<u8>,
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        self.get_into_with(buf, limit, deadline(timeout), false)
    }

    /// Takes up to `max` messages at once into `out`, waiting for the first;
    /// returns how many (0 at once for a `max` of 0).
    ///
    /// # Errors
    /// As for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(8, 16)?;
    /// q.put_bytes_many(&[&b"a"[..], b"bc"])?;
    /// let mut out = Vec::new();
    /// assert_eq!(q.get_bytes_many(&mut out, 8)?, 2);
    /// assert_eq!(out, [b"a".to_vec(), b"bc".to_vec()]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_many(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize> {
        self.get_bytes_many_with(out, max, None, false)
    }

    /// [`get_bytes_many`](ByteQueue::get_bytes_many), waiting at most `timeout`
    /// for the first.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(8, 16)?;
    /// let mut out = Vec::new();
    /// assert!(q.get_bytes_many_timeout(&mut out, 8, Duration::from_millis(1)).is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_many_timeout(
        &self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        self.get_bytes_many_with(out, max, deadline(Some(timeout)), false)
    }

    /// [`get_bytes_many`](ByteQueue::get_bytes_many) of what is there now.
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(8, 16)?;
    /// let mut out = Vec::new();
    /// assert!(matches!(q.try_get_bytes_many(&mut out, 8), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_get_bytes_many(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize> {
        self.get_bytes_many_with(out, max, None, true)
    }

    fn get_bytes_many_with(
        &self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        deadline: Option<Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        let mut taken = Vec::new();
        with_scratch(self.raw.ring().data_max(), |s| {
            self.raw.get(max, deadline, nowait, s, |m, large| {
                taken.push(Taken {
                    bytes: m.to_vec(),
                    large,
                })
            })
        })?;
        // The batch is out of the ring; now the large messages it announced, in
        // their turn. A lost one is left out.
        let mut n = 0;
        for t in taken {
            if t.large {
                let mut msg = Vec::new();
                if let Received::Whole =
                    self.raw.get_large(&t.bytes, &mut msg, NO_LIMIT, deadline)?
                {
                    out.push(msg);
                    n += 1;
                }
            } else {
                out.push(t.bytes);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether a message is waiting now (Python's `poll()`).
    ///
    /// # Errors
    /// [`Error::Closed`] once closed and drained, [`Error::Disconnected`] once
    /// empty with no writer left.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// assert!(!q.poll()?);
    /// q.put_bytes(b"x")?;
    /// assert!(q.poll()?);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn poll(&self) -> Result<bool> {
        self.poll_until(Deadline::after(Duration::ZERO))
    }

    /// Whether a message is waiting, waiting at most `timeout` for one (Python's
    /// `poll(timeout)`; `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    /// As for [`poll`](ByteQueue::poll).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// assert!(!q.poll_timeout(Duration::from_millis(1))?);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool> {
        self.poll_until(deadline(Some(timeout)))
    }

    /// The polls: waits for a message, noting whether there was none at first.
    fn poll_until(&self, deadline: Option<Deadline>) -> Result<bool> {
        self.set_caught_up(!self.raw.ring().has_message());
        self.raw.wait_readable(deadline)
    }

    /// Messages in the queue (approximate, as in Python); a large message counts
    /// once.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.put_bytes(b"x")?;
    /// assert_eq!(q.qsize(), 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.raw.ring().len()
    }

    /// Whether it looks empty (approximate).
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ByteQueue::new(4, 16)?.empty());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        let empty = self.qsize() == 0;
        if empty {
            self.set_caught_up(true);
        }
        empty
    }

    /// Whether a message is there to take at once (approximate while others
    /// work): one look at the slot a `get` would take next, with no system
    /// call and no look at the queue's ends (a closed or abandoned queue says
    /// so at the `get`). The look to spin on while waiting for a message:
    /// [`empty`](ByteQueue::empty) compares the two positions, and the
    /// producers claim theirs by compare-and-swap, so that each look takes
    /// that line from a producer and its next claim waits to take it back
    /// (a pool's blocking `apply` took a quarter less time once its spin
    /// looked here instead, `benches/NOTES.md`). A message a producer has claimed and not yet
    /// written, or never will (it died), is not there to take: `empty` counts
    /// it, a `get` waits for it or skips it.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// assert!(!q.has_message());
    /// q.put_bytes(b"x")?;
    /// assert!(q.has_message());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn has_message(&self) -> bool {
        let ready = self.raw.ring().has_message();
        if !ready {
            self.set_caught_up(true);
        }
        ready
    }

    /// Asks for the cache line of the slot the next put will fill, so that
    /// it crosses from the consumer that freed it before that put needs it:
    /// a hint, which changes no memory. For a queue's only producer that
    /// knows the next slot is free (fewer messages in the queue than it
    /// holds): asked of a slot that still holds a message, it takes that
    /// line from a consumer about to read it.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.put_bytes(b"one")?;
    /// q.ask_for_next_put();
    /// q.put_bytes(b"two")?;
    /// assert_eq!(q.get_bytes()?, b"one");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn ask_for_next_put(&self) {
        self.raw.ring().claim_next_put();
    }

    /// Whether a consumer is asleep on the queue, waiting for a message (a
    /// put would wake it, which costs the putter a system call and the
    /// consumer the time to be scheduled): a hint, out of date as soon as it
    /// is read, for a producer that can choose between queues.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// assert!(!q.consumers_asleep());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn consumers_asleep(&self) -> bool {
        self.raw.ring().consumers_asleep()
    }

    /// Whether every slot looks taken (approximate).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 16)?;
    /// q.put_bytes(b"x")?;
    /// assert!(q.full());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn full(&self) -> bool {
        self.qsize() >= self.capacity()
    }

    /// The number of slots.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ByteQueue::new(4, 16)?.capacity(), 4);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.raw.ring().capacity()
    }

    /// Whether it was closed.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.close();
    /// assert!(q.is_closed());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.raw.closed()
    }

    /// Takes this thread's entry in the queue's table of threads now, rather
    /// than at its first put or get (see the crate's "How many at once"): a
    /// thread that must be able to use the queue later, however many others
    /// come meanwhile, takes it first. Idempotent.
    ///
    /// # Errors
    /// [`Error::TooManyParticipants`] when every entry is taken;
    /// [`Error::Corrupted`] when the table was written over.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.enter()?;
    /// q.put_bytes(b"mine")?;
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn enter(&self) -> Result<()> {
        self.raw.enter()
    }

    /// Closes it for everyone (see [`Queue::close`](crate::Queue::close)).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.put_bytes(b"last")?;
    /// q.close();
    /// assert_eq!(q.get_bytes()?, b"last");
    /// assert!(matches!(q.get_bytes(), Err(multiproc_queue::Error::Closed)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn close(&self) {
        self.raw.close();
    }

    /// Messages lost to dead producers or consumers, or to corruption.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ByteQueue::new(4, 16)?.lost(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.raw.lost()
    }

    /// The segment underneath.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ByteQueue::new(4, 16)?.segment().len() > 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.raw.segment()
    }

    /// A second handle on a memfd-backed queue (for the other end of a pipe),
    /// taking `roles`.
    pub(crate) fn handle_clone(&self, roles: Roles) -> Result<ByteQueue> {
        let fd = self
            .segment()
            .fd()
            .expect("a pipe's queues live in memfds")
            .try_clone_to_owned()
            .map_err(|source| Error::Io { op: "dup", source })?;
        Ok(ByteQueue::from_raw(byte_ring(RawQueue::attach(
            Segment::from_fd(fd)?,
            BYTE_QUEUE,
            roles,
        )?)?))
    }
}

impl std::fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteQueue")
            .field("capacity", &self.raw.ring().capacity())
            .field("max_inline", &self.max_inline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The consumer's cache hint follows what the handle last saw: a poll or
    /// `empty` that found nothing marks it caught up (its next get does not
    /// ask for the next slot's line), a get that finds a message at its first
    /// look unmarks it, and a poll that finds a message leaves it behind.
    #[test]
    fn a_handle_is_caught_up_after_finding_nothing_until_a_get_takes_a_message() {
        let q = ByteQueue::new(8, 16).unwrap();
        let caught_up = |q: &ByteQueue| q.caught_up.load(Ordering::Relaxed);
        assert!(!caught_up(&q));
        assert!(!q.poll().unwrap());
        assert!(caught_up(&q));
        q.put_bytes(b"one").unwrap();
        q.put_bytes(b"two").unwrap();
        assert!(!q.empty());
        assert!(caught_up(&q), "a look that finds a message changes nothing");
        assert_eq!(q.get_bytes().unwrap(), b"one");
        assert!(!caught_up(&q));
        assert!(q.poll().unwrap());
        assert!(!caught_up(&q));
        assert_eq!(q.try_get_bytes().unwrap(), b"two");
        assert!(q.empty());
        assert!(caught_up(&q));
        assert!(!q.poll_timeout(Duration::from_millis(1)).unwrap());
        assert!(caught_up(&q));
    }
}
