//! [`Queue<T>`], [`JoinableQueue<T>`] and [`ByteQueue`]: Python's `Queue`,
//! `JoinableQueue` and `SimpleQueue` over the shared-memory ring.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Duration;

use multiproc_shm::{Location, Segment, ShmSafe};

use crate::raw::{deadline, RawQueue, Spec};
use crate::ring::Msg;
use crate::{Error, Result};

/// A bounded queue of `T` between threads and processes: Python's
/// `multiprocessing.Queue(maxsize)`, without pipes or pickling.
///
/// Messages are copied into shared memory slots; `T` is plain data
/// ([`ShmSafe`]). Create it anonymous before `fork`, or named and
/// [`open`](Queue::open) it from unrelated processes: opening checks the element
/// type and the queue's geometry.
///
/// | Python | here |
/// |---|---|
/// | `put(x)`, `put(x, timeout=t)`, `put_nowait(x)` | [`put`](Queue::put), [`put_timeout`](Queue::put_timeout), [`put_nowait`](Queue::put_nowait) (→ [`Error::Full`]) |
/// | `get()`, `get(timeout=t)`, `get_nowait()` | [`get`](Queue::get), [`get_timeout`](Queue::get_timeout) (→ [`Error::Timeout`]), [`get_nowait`](Queue::get_nowait) (→ [`Error::Empty`]) |
/// | `qsize()`, `empty()`, `full()` | the same names; approximate, as in Python |
/// | `close()` | [`close`](Queue::close): puts fail, gets drain then answer [`Error::Closed`] |
///
/// # When a peer dies
/// A producer killed between claiming a slot and publishing it, or a consumer
/// killed between claiming a message and freeing its slot, does not stall the
/// others: a waiter that finds the slot stuck for one
/// [owner check interval](multiproc_sync::set_owner_check_interval) checks the
/// claimer's thread and skips the slot if it is dead. The message is lost, and
/// counted in [`lost`](Queue::lost); nothing is delivered twice. Up to 64 threads
/// can use a queue at once ([`Error::TooManyParticipants`] past that).
///
/// A blocked `get` on an empty queue answers [`Error::Disconnected`] once no live
/// process holds a write handle (every handle is one, as in Python, until
/// [`stop_writing`](Queue::stop_writing); children forked with a handle count).
///
/// # Examples
/// ```
/// use multiproc_queue::{Error, Queue};
/// let q = Queue::<u64>::new(3)?;
/// q.put(1)?;
/// q.put(2)?;
/// q.put(3)?;
/// assert!(q.full());
/// assert!(matches!(q.put_nowait(4), Err(Error::Full)));
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.qsize(), 2);
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct Queue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

fn queue_type_name<T>(joinable: bool) -> String {
    format!(
        "multiproc_queue::{}<{}> ({} bytes, align {})",
        if joinable { "JoinableQueue" } else { "Queue" },
        std::any::type_name::<T>(),
        std::mem::size_of::<T>(),
        std::mem::align_of::<T>()
    )
}

fn as_msg<T>(item: &T) -> Msg {
    Msg {
        ptr: (item as *const T).cast(),
        len: std::mem::size_of::<T>(),
    }
}

/// Reads a `T` from the bytes of one message.
fn read_item<T: ShmSafe>(bytes: &[u8]) -> Result<T> {
    if bytes.len() != std::mem::size_of::<T>() {
        return Err(Error::Corrupted(format!(
            "a message of {} bytes in a queue of {}-byte items",
            bytes.len(),
            std::mem::size_of::<T>()
        )));
    }
    // SAFETY: the bytes are size_of::<T>() long and private; T is ShmSafe, so any
    // bytes are a valid T; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl<T: ShmSafe + Copy> Queue<T> {
    /// An anonymous queue of `maxsize` slots (exactly: `full()` after `maxsize` puts), shared
    /// with children forked after it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `maxsize` of 0 or over 2³⁰; [`Error::Shm`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// assert_eq!(q.capacity(), 2);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(maxsize: usize) -> Result<Queue<T>> {
        Queue::new_in(Location::Anonymous, maxsize)
    }

    /// A named queue, opened elsewhere with [`open`](Queue::open).
    ///
    /// # Errors
    /// As for [`new`](Queue::new), plus naming errors.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-q-create-{}", std::process::id());
    /// let q = multiproc_queue::Queue::<u32>::create(&name, 4)?;
    /// q.put(1)?;
    /// assert_eq!(multiproc_queue::Queue::<u32>::open(&name)?.get()?, 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn create(name: &str, maxsize: usize) -> Result<Queue<T>> {
        Queue::new_in(Location::Named(name), maxsize)
    }

    /// A queue at `location`.
    ///
    /// # Errors
    /// As for [`new`](Queue::new).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new_in(multiproc_shm::Location::Memfd, 4)?;
    /// assert!(q.segment().fd().is_some());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, maxsize: usize) -> Result<Queue<T>> {
        Queue::make(location, maxsize, false)
    }

    fn make(location: Location<'_>, maxsize: usize, joinable: bool) -> Result<Queue<T>> {
        let raw = RawQueue::create(Spec {
            location,
            capacity: maxsize,
            msg_max: std::mem::size_of::<T>(),
            fixed: true,
            type_name: queue_type_name::<T>(joinable),
            joinable,
        })?;
        Queue::from_raw(raw)
    }

    /// A handle over `raw`, once its ring is known to carry `T`s: fixed length,
    /// messages of exactly `size_of::<T>()` bytes. The type name in the header
    /// says so already, but only a peer wrote it; the fast paths rely on this.
    fn from_raw(raw: RawQueue) -> Result<Queue<T>> {
        if !raw.ring().fits_fixed::<T>() {
            return Err(Error::Corrupted(format!(
                "the queue carries messages of up to {} bytes, not fixed {}-byte items",
                raw.ring().msg_max(),
                std::mem::size_of::<T>()
            )));
        }
        Ok(Queue {
            raw,
            _t: PhantomData,
        })
    }

    /// Opens the named queue `name` (a write handle, as in Python).
    ///
    /// # Errors
    /// [`Error::Shm`] — `LayoutMismatch` for a queue of another `T` — and
    /// [`Error::Corrupted`] for an impossible geometry.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::Queue::<u32>::open("no-such-queue-here").is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Queue<T>> {
        Queue::open_as(name, false, true)
    }

    /// Opens the named queue `name`, which must have exactly `maxsize` slots.
    ///
    /// # Errors
    /// [`Error::CapacityMismatch`] for another size, then as for [`open`](Queue::open).
    ///
    /// # Examples
    /// ```
    /// use multiproc_queue::{Error, Queue};
    /// let name = format!("doc-queue-cap-{}", std::process::id());
    /// let _q = Queue::<u8>::create(&name, 8)?;
    /// assert!(Queue::<u8>::open_sized(&name, 8).is_ok());
    /// assert!(matches!(Queue::<u8>::open_sized(&name, 16), Err(Error::CapacityMismatch { found: 8, expected: 16 })));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open_sized(name: &str, maxsize: usize) -> Result<Queue<T>> {
        let q = Queue::open(name)?;
        if q.capacity() != maxsize {
            return Err(Error::CapacityMismatch {
                found: q.capacity(),
                expected: maxsize,
            });
        }
        Ok(q)
    }

    /// Opens the named queue without counting as a writer, so that a blocked `get`
    /// can see [`Error::Disconnected`] when the writers are gone.
    ///
    /// # Errors
    /// As for [`open`](Queue::open).
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-q-recv-{}", std::process::id());
    /// let _w = multiproc_queue::Queue::<u32>::create(&name, 4)?;
    /// let r = multiproc_queue::Queue::<u32>::open_receiver(&name)?;
    /// assert!(r.empty());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open_receiver(name: &str) -> Result<Queue<T>> {
        Queue::open_as(name, false, false)
    }

    fn open_as(name: &str, joinable: bool, writer: bool) -> Result<Queue<T>> {
        let seg = Segment::open(name)?;
        let raw = RawQueue::attach(seg, &queue_type_name::<T>(joinable), writer)?;
        Queue::from_raw(raw)
    }

    /// Stops counting this handle as a writer (it can still put).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let mut q = multiproc_queue::Queue::<u32>::new(4)?;
    /// q.stop_writing(); // no writer left anywhere:
    /// assert!(matches!(q.get_timeout(Duration::from_secs(5)), Err(multiproc_queue::Error::Disconnected)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn stop_writing(&mut self) {
        self.raw.unregister_writer();
    }

    /// How many times a blocking `put`/`get` of this handle retries before it
    /// yields and then sleeps on the futex: up to this many tries on the fast
    /// path, as many again on the general one (default 200, a few microseconds in
    /// all). 0 sleeps at once.
    ///
    /// # Examples
    /// ```
    /// let mut q = multiproc_queue::Queue::<u32>::new(4)?;
    /// q.set_spin_limit(0); // sleep at once when empty
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn set_spin_limit(&mut self, spins: u32) {
        self.raw.set_spins(spins);
    }

    /// The one-message fast path: `true` if `item` went in (see
    /// `RawQueue::fast_put`).
    #[inline(always)]
    fn fast_put(&self, item: &T, spins: u32) -> bool {
        // SAFETY: a Queue<T> attaches only to a ring that fits T (from_raw).
        self.raw.fast_put(spins, |ring, part| unsafe {
            ring.push_one(Some(part), item)
        })
    }

    /// The one-message fast path: the next item, if it got one (see
    /// `RawQueue::fast_get`).
    #[inline(always)]
    fn fast_get(&self, spins: u32) -> Option<T> {
        // SAFETY: a Queue<T> attaches only to a ring that fits T (from_raw); T is
        // ShmSafe, so valid for any bytes.
        self.raw
            .fast_get(spins, |ring, part| unsafe { ring.pop_one::<T>(Some(part)) })
    }

    /// Puts `item`, waiting for room.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::Corrupted`], [`Error::TooManyParticipants`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(1)?;
    /// q.put(5)?;
    /// assert_eq!(q.get()?, 5);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn put(&self, item: T) -> Result<()> {
        if self.fast_put(&item, self.raw.spins()) {
            return Ok(());
        }
        self.put_with(item, None, false)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`put`](Queue::put).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::Queue::<u32>::new(1)?;
    /// q.put(1)?;
    /// assert!(matches!(q.put_timeout(2, Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        if self.fast_put(&item, self.raw.spins()) {
            return Ok(());
        }
        self.put_with(item, deadline(Some(timeout)), false)
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`], and as for [`put`](Queue::put).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(1)?;
    /// q.put_nowait(1)?;
    /// assert!(matches!(q.put_nowait(2), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_nowait(&self, item: T) -> Result<()> {
        if self.fast_put(&item, 0) {
            return Ok(());
        }
        self.put_with(item, None, true)
    }

    /// The general path of every put (see `get_with`).
    #[cold]
    #[inline(never)]
    fn put_with(
        &self,
        item: T,
        deadline: Option<multiproc_sync::futex::Deadline>,
        nowait: bool,
    ) -> Result<()> {
        self.raw.put(&[as_msg(&item)], deadline, nowait).1
    }

    /// Puts every item, in order, claiming as many slots at once as are free.
    ///
    /// # Errors
    /// As for [`put`](Queue::put); items before the failure went in.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(8)?;
    /// q.put_many(&[1, 2, 3])?;
    /// assert_eq!(q.qsize(), 3);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_many(&self, items: &[T]) -> Result<()> {
        let msgs: Vec<Msg> = items.iter().map(as_msg).collect();
        self.raw.put(&msgs, None, false).1
    }

    /// Puts items in order, as [`put_many`](Queue::put_many) does, until all went
    /// in or `timeout` passes; returns how many went in (as `Write::write` does:
    /// fewer than `items.len()` when the time ran out after some went in).
    ///
    /// # Errors
    /// [`Error::Timeout`] when none went in in time, and as for
    /// [`put`](Queue::put) when the first failed.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// assert_eq!(q.put_many_timeout(&[1, 2, 3], Duration::from_millis(1))?, 2);
    /// assert!(matches!(q.put_many_timeout(&[4], Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_many_timeout(&self, items: &[T], timeout: Duration) -> Result<usize> {
        let msgs: Vec<Msg> = items.iter().map(as_msg).collect();
        match self.raw.put(&msgs, deadline(Some(timeout)), false) {
            (0, Err(e)) => Err(e),
            (n, _) => Ok(n),
        }
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    /// [`Error::Closed`] once closed and drained; [`Error::Disconnected`];
    /// [`Error::Corrupted`]; [`Error::TooManyParticipants`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// q.put(7)?;
    /// assert_eq!(q.get()?, 7);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn get(&self) -> Result<T> {
        if let Some(v) = self.fast_get(self.raw.spins()) {
            return Ok(v);
        }
        self.get_with(None, false)
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get`](Queue::get).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// assert!(matches!(q.get_timeout(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        if let Some(v) = self.fast_get(self.raw.spins()) {
            return Ok(v);
        }
        self.get_with(deadline(Some(timeout)), false)
    }

    /// Takes the next item if there is one.
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get`](Queue::get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// assert!(matches!(q.get_nowait(), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_nowait(&self) -> Result<T> {
        if let Some(v) = self.fast_get(0) {
            return Ok(v);
        }
        self.get_with(None, true)
    }

    /// The general path of every get: the slow half, kept out of line so that
    /// the fast path inlines small into its caller.
    #[cold]
    #[inline(never)]
    fn get_with(
        &self,
        deadline: Option<multiproc_sync::futex::Deadline>,
        nowait: bool,
    ) -> Result<T> {
        let mut scratch = MaybeUninit::<T>::zeroed();
        // SAFETY: a zeroed MaybeUninit<T> is size_of::<T>() initialised bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                scratch.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<T>(),
            )
        };
        let mut out = None;
        self.raw.get(1, deadline, nowait, bytes, |m| {
            out = Some(read_item::<T>(m))
        })?;
        out.expect("get returned one message")
    }

    /// Takes up to `max` items at once into `out`, waiting at most `timeout`
    /// (forever if `None`) for the first; returns how many.
    ///
    /// # Errors
    /// As for [`get_timeout`](Queue::get_timeout).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(8)?;
    /// q.put_many(&[1, 2, 3])?;
    /// let mut out = Vec::new();
    /// assert_eq!(q.get_many(&mut out, 10, None)?, 3);
    /// assert_eq!(out, [1, 2, 3]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_many(
        &self,
        out: &mut Vec<T>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        let mut scratch = MaybeUninit::<T>::zeroed();
        // SAFETY: as in get_with.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                scratch.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<T>(),
            )
        };
        let mut bad = None;
        let n = self.raw.get(max, deadline(timeout), false, bytes, |m| {
            match read_item::<T>(m) {
                Ok(v) => out.push(v),
                Err(e) => bad = Some(e),
            }
        })?;
        bad.map_or(Ok(n), Err)
    }

    /// Items in the queue (approximate, as in Python).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// q.put(1)?;
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
    /// assert!(multiproc_queue::Queue::<u32>::new(2)?.empty());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether it looks full (approximate).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(1)?;
    /// q.put(1)?;
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
    /// assert_eq!(multiproc_queue::Queue::<u32>::new(5)?.capacity(), 5);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.raw.ring().capacity()
    }

    /// Closes it: puts fail with [`Error::Closed`]; gets drain, then answer it.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// q.close();
    /// assert!(matches!(q.put(1), Err(multiproc_queue::Error::Closed)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn close(&self) {
        self.raw.close();
    }

    /// Whether it was closed.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// q.close();
    /// assert!(q.is_closed());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.raw.closed()
    }

    /// Messages lost to dead producers or consumers, or to corruption.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::Queue::<u32>::new(2)?.lost(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.raw.lost()
    }

    /// The segment underneath.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::Queue::<u32>::new(2)?.segment().len() > 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.raw.segment()
    }

    /// Test hook for fault tests: claims the next slot for putting and returns
    /// without publishing, as a producer killed right after its claim. Never use
    /// it otherwise: the slot stays stuck until this thread is dead.
    #[doc(hidden)]
    pub fn __claim_put_and_stop(&self) {
        self.raw.claim_put_and_stop();
    }

    /// Test hook: how many consumers and producers are recorded as asleep (or
    /// about to sleep), live or not.
    #[doc(hidden)]
    pub fn __sleepers(&self) -> (u32, u32) {
        self.raw.ring().sleepers()
    }

    /// Test hook: claims the next message without taking it or freeing its slot.
    #[doc(hidden)]
    pub fn __claim_get_and_stop(&self) {
        self.raw
            .ring()
            .claim_get_and_stop(self.raw.ring().participant());
    }

    /// Test hook: claims the next slot, calls `pause` (where a test stops the
    /// process), then publishes `item`; whether it claimed.
    #[doc(hidden)]
    pub fn __put_with_pause(&self, item: T, pause: impl FnOnce()) -> bool {
        let ring = self.raw.ring();
        ring.put_with_pause(ring.participant(), as_msg(&item), pause)
    }

    /// Test hook: claims the next message, calls `pause`, then takes it (and
    /// drops it) and frees its slot; whether it claimed.
    #[doc(hidden)]
    pub fn __get_with_pause(&self, pause: impl FnOnce()) -> bool {
        let ring = self.raw.ring();
        let mut scratch = vec![0u8; std::mem::size_of::<T>()];
        ring.get_with_pause(ring.participant(), &mut scratch, pause)
    }

    /// Test hook: claims slots for all of `items` at once (if that many are free)
    /// and publishes only the first `publish`, as a producer killed halfway
    /// through `put_many`; how many slots it claimed.
    #[doc(hidden)]
    pub fn __put_many_and_stop(&self, items: &[T], publish: usize) -> usize {
        let msgs: Vec<Msg> = items.iter().map(as_msg).collect();
        let ring = self.raw.ring();
        ring.push_some_and_stop(ring.participant(), &msgs, publish)
            .unwrap_or(0)
    }

    /// Test hook: claims up to `max` messages at once and takes only the first
    /// `take`, as a consumer killed halfway through `get_many`; how many it
    /// claimed.
    #[doc(hidden)]
    pub fn __get_many_and_stop(&self, max: usize, take: usize) -> usize {
        let ring = self.raw.ring();
        let mut scratch = vec![0u8; std::mem::size_of::<T>()];
        ring.pop_some_and_stop(ring.participant(), max, take, &mut scratch)
            .unwrap_or(0)
    }

    /// Test hook: tries to claim positions `pos..pos + n` for putting (`get`:
    /// for getting), as a claimer that read the cursor as `pos` and raced another
    /// for it would; whether it won. Never use it otherwise.
    #[doc(hidden)]
    pub fn __claim_at(&self, pos: u64, n: u64, get: bool) -> bool {
        let ring = self.raw.ring();
        ring.claim_at(ring.participant(), pos, n, get)
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.raw.ring().capacity())
            .field("len", &self.raw.ring().len())
            .finish()
    }
}

/// Python's `JoinableQueue`: a [`Queue`] that counts unfinished items, with
/// [`task_done`](JoinableQueue::task_done) and [`join`](JoinableQueue::join).
///
/// # Examples
/// ```
/// let q = multiproc_queue::JoinableQueue::<u8>::new(4)?;
/// q.put(1)?;
/// q.get()?;
/// q.task_done()?;
/// q.join(None)?; // every item put has been marked done
/// assert!(q.task_done().is_err());
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T: ShmSafe + Copy> JoinableQueue<T> {
    /// An anonymous joinable queue.
    ///
    /// # Errors
    /// As for [`Queue::new`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableQueue::<u8>::new(2)?;
    /// assert_eq!(q.unfinished(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(maxsize: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            q: Queue::make(Location::Anonymous, maxsize, true)?,
        })
    }

    /// A named joinable queue.
    ///
    /// # Errors
    /// As for [`Queue::create`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-jq-{}", std::process::id());
    /// let q = multiproc_queue::JoinableQueue::<u8>::create(&name, 2)?;
    /// q.put(1)?;
    /// assert_eq!(multiproc_queue::JoinableQueue::<u8>::open(&name)?.unfinished(), 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn create(name: &str, maxsize: usize) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            q: Queue::make(Location::Named(name), maxsize, true)?,
        })
    }

    /// Opens a named joinable queue.
    ///
    /// # Errors
    /// As for [`Queue::open`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::JoinableQueue::<u8>::open("no-such-jq-here").is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            q: Queue::open_as(name, true, true)?,
        })
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    /// [`Error::TaskDoneTooMany`] when called more often than items were put.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableQueue::<u8>::new(2)?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// assert_eq!(q.unfinished(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.q.raw.task_done()
    }

    /// Waits until every item put has been marked done, at most `timeout`. An
    /// item lost to a dead producer or consumer (see [`lost`](Queue::lost)) counts
    /// as done: nobody could ever mark it. A consumer that dies after `get`
    /// returned an item, before its `task_done`, still holds `join` up (as in
    /// Python), hence the timeout.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableQueue::<u8>::new(2)?;
    /// q.join(None)?; // nothing put: returns at once
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.q.raw.join(deadline(timeout))
    }

    /// Items put and not yet marked done.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableQueue::<u8>::new(2)?;
    /// q.put(1)?;
    /// assert_eq!(q.unfinished(), 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn unfinished(&self) -> u32 {
        self.q.raw.unfinished()
    }

    /// Test hook: threads counted asleep in `join`, live or not.
    #[doc(hidden)]
    pub fn __joiners(&self) -> u32 {
        self.q.raw.ring().ctl().wake.0.join_sleepers.count()
    }

    /// Test hook: as [`Queue::__claim_put_and_stop`] (the claimed position counts
    /// as an unfinished item, as every put's does).
    #[doc(hidden)]
    pub fn __claim_put_and_stop(&self) {
        self.q.__claim_put_and_stop();
    }

    /// Test hook: as [`Queue::__claim_get_and_stop`].
    #[doc(hidden)]
    pub fn __claim_get_and_stop(&self) {
        self.q.__claim_get_and_stop();
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T> std::ops::DerefMut for JoinableQueue<T> {
    fn deref_mut(&mut self) -> &mut Queue<T> {
        &mut self.q
    }
}

/// A bounded queue of byte messages up to a size fixed at creation: for
/// variable-length messages, and (with the `serde` feature) any `Serialize` type.
///
/// A message over the size gets [`Error::MessageTooLarge`], and nothing of it is
/// written. Otherwise it behaves as [`Queue`].
///
/// # Examples
/// ```
/// let q = multiproc_queue::ByteQueue::new(16, 64)?;
/// q.put_bytes(b"hello")?;
/// assert_eq!(q.get_bytes()?, b"hello");
/// assert!(q.put_bytes(&[0; 65]).is_err());
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct ByteQueue {
    raw: RawQueue,
}

const BYTE_QUEUE: &str = "multiproc_queue::ByteQueue";

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
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len.max(1) {
            s.resize(len.max(1), 0);
        }
        f(&mut s)
    })
}

/// `raw`, if its ring is one of variable-length messages, as every byte queue's
/// is; a segment that says otherwise was written by something else.
fn byte_ring(raw: RawQueue) -> Result<RawQueue> {
    if raw.ring().is_fixed() {
        return Err(Error::Corrupted(
            "a byte queue's segment describes a ring of fixed-length messages".into(),
        ));
    }
    Ok(raw)
}

/// The ring's view of byte messages (pointers into `msgs`, which outlive it).
fn as_msgs<M: AsRef<[u8]>>(msgs: &[M]) -> Vec<Msg> {
    msgs.iter()
        .map(|m| Msg {
            ptr: m.as_ref().as_ptr(),
            len: m.as_ref().len(),
        })
        .collect()
}

impl ByteQueue {
    /// An anonymous queue of `maxsize` messages of up to `max_message` bytes.
    ///
    /// # Errors
    /// As for [`Queue::new`], and [`Error::InvalidArgument`] for a message size over 16 MiB.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 100)?;
    /// assert_eq!(q.max_message(), 100);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(maxsize: usize, max_message: usize) -> Result<ByteQueue> {
        ByteQueue::new_in(Location::Anonymous, maxsize, max_message)
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
    pub fn create(name: &str, maxsize: usize, max_message: usize) -> Result<ByteQueue> {
        ByteQueue::new_in(Location::Named(name), maxsize, max_message)
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
    pub fn new_in(location: Location<'_>, maxsize: usize, max_message: usize) -> Result<ByteQueue> {
        ByteQueue::make(location, maxsize, max_message, false)
    }

    fn make(
        location: Location<'_>,
        maxsize: usize,
        max_message: usize,
        joinable: bool,
    ) -> Result<ByteQueue> {
        Ok(ByteQueue {
            raw: RawQueue::create(Spec {
                location,
                capacity: maxsize,
                msg_max: max_message,
                fixed: false,
                type_name: byte_queue_type_name(joinable).to_owned(),
                joinable,
            })?,
        })
    }

    /// Opens a named byte queue (a write handle).
    ///
    /// # Errors
    /// As for [`Queue::open`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ByteQueue::open("no-such-bq-here").is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<ByteQueue> {
        ByteQueue::open_as(name, false, true)
    }

    /// Opens the named byte queue `name`, which must hold exactly `maxsize`
    /// messages of up to `max_message` bytes.
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
    pub fn open_sized(name: &str, maxsize: usize, max_message: usize) -> Result<ByteQueue> {
        let q = ByteQueue::open(name)?;
        if q.capacity() != maxsize {
            return Err(Error::CapacityMismatch {
                found: q.capacity(),
                expected: maxsize,
            });
        }
        if q.max_message() != max_message {
            return Err(Error::MessageSizeMismatch {
                found: q.max_message(),
                expected: max_message,
            });
        }
        Ok(q)
    }

    /// Opens a named byte queue without counting as a writer, so that a blocked
    /// get can see [`Error::Disconnected`] when the writers are gone (as
    /// [`Queue::open_receiver`]).
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
        ByteQueue::open_as(name, false, false)
    }

    fn open_as(name: &str, joinable: bool, writer: bool) -> Result<ByteQueue> {
        let type_name = byte_queue_type_name(joinable);
        Ok(ByteQueue {
            raw: byte_ring(RawQueue::attach(Segment::open(name)?, type_name, writer)?)?,
        })
    }

    /// How many times a blocking put or get of this handle retries before it
    /// yields and then sleeps (see [`Queue::set_spin_limit`]).
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

    /// A second handle on a memfd-backed queue (for the other end of a pipe).
    pub(crate) fn handle_clone(&self) -> Result<ByteQueue> {
        let fd = self
            .segment()
            .fd()
            .ok_or_else(|| Error::InvalidArgument("only a memfd queue can be cloned".into()))?
            .try_clone_to_owned()
            .map_err(|e| Error::InvalidArgument(format!("dup of the queue's memfd: {e}")))?;
        Ok(ByteQueue {
            raw: byte_ring(RawQueue::attach(Segment::from_fd(fd)?, BYTE_QUEUE, true)?)?,
        })
    }

    /// The largest message.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ByteQueue::new(4, 16)?.max_message(), 16);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn max_message(&self) -> usize {
        self.raw.ring().msg_max()
    }

    /// Puts a message, waiting for room (at most `timeout` if given).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Timeout`], and as for [`Queue::put`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes(b"a")?;
    /// assert!(matches!(q.put_bytes_timeout(b"b", Some(Duration::from_millis(1))), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes_timeout(&self, msg: &[u8], timeout: Option<Duration>) -> Result<()> {
        if self.fast_put(msg, self.raw.spins()) {
            return Ok(());
        }
        self.put_bytes_slow(msg, deadline(timeout), false)
    }

    /// The one-message fast path of the puts: `true` if `msg` went in (see
    /// `RawQueue::fast_put`); a message over the size is the general path's to
    /// refuse, at once rather than after spinning.
    #[inline(always)]
    fn fast_put(&self, msg: &[u8], spins: u32) -> bool {
        msg.len() <= self.max_message()
            && self
                .raw
                .fast_put(spins, |ring, part| ring.push_bytes_one(Some(part), msg))
    }

    /// The general path of the puts (waiting, sleeping, and every error).
    #[cold]
    #[inline(never)]
    fn put_bytes_slow(
        &self,
        msg: &[u8],
        deadline: Option<multiproc_sync::futex::Deadline>,
        nowait: bool,
    ) -> Result<()> {
        self.raw.put(&as_msgs(&[msg]), deadline, nowait).1
    }

    /// Puts a message, waiting for room.
    ///
    /// # Errors
    /// As for [`put_bytes_timeout`](ByteQueue::put_bytes_timeout).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes(b"abcd")?;
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes(&self, msg: &[u8]) -> Result<()> {
        self.put_bytes_timeout(msg, None)
    }

    /// Puts a message if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::MessageTooLarge`], and as for [`Queue::put`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes_nowait(b"a")?;
    /// assert!(matches!(q.put_bytes_nowait(b"b"), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes_nowait(&self, msg: &[u8]) -> Result<()> {
        if self.fast_put(msg, 0) {
            return Ok(());
        }
        self.put_bytes_slow(msg, None, true)
    }

    /// Takes the next message, waiting at most `timeout` (forever if `None`);
    /// `nowait` answers [`Error::Empty`] instead of waiting.
    ///
    /// # Errors
    /// As for [`Queue::get`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// assert!(matches!(q.get_bytes_with(None, true), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_with(&self, timeout: Option<Duration>, nowait: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_bytes_into_with(&mut out, timeout, nowait)?;
        Ok(out)
    }

    /// Takes the next message into `buf`, replacing what it held, and returns
    /// its length; waits at most `timeout` (forever if `None`), and `nowait`
    /// answers [`Error::Empty`] instead of waiting. A buffer reused from one
    /// message to the next saves an allocation per message (Python's
    /// `recv_bytes_into`, except that the buffer grows to fit: no
    /// `BufferTooShort`). On an error `buf` is left as it was.
    ///
    /// # Errors
    /// As for [`Queue::get`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.put_bytes(b"hello")?;
    /// q.put_bytes(b"hi")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(q.get_bytes_into_with(&mut buf, None, false)?, 5);
    /// assert_eq!(buf, b"hello");
    /// assert_eq!(q.get_bytes_into_with(&mut buf, None, false)?, 2);
    /// assert_eq!(buf, b"hi");
    /// assert!(matches!(q.get_bytes_into_with(&mut buf, None, true), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_into_with(
        &self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
        nowait: bool,
    ) -> Result<usize> {
        let spins = if nowait { 0 } else { self.raw.spins() };
        match self
            .raw
            .fast_get(spins, |ring, part| ring.pop_bytes_one(Some(part), buf))
        {
            Some(Ok(())) => Ok(buf.len()),
            Some(Err(e)) => Err(Error::Corrupted(e)),
            None => self.get_bytes_slow(buf, deadline(timeout), nowait),
        }
    }

    /// The general path of the gets (waiting, sleeping, and every error), through
    /// this thread's scratch buffer of a slot's size.
    #[cold]
    #[inline(never)]
    fn get_bytes_slow(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<multiproc_sync::futex::Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        with_scratch(self.max_message(), |s| {
            self.raw.get(1, deadline, nowait, s, |m| {
                buf.clear();
                buf.extend_from_slice(m);
            })
        })?;
        Ok(buf.len())
    }

    /// Takes the next message into `buf`, waiting for one (see
    /// [`get_bytes_into_with`](ByteQueue::get_bytes_into_with)).
    ///
    /// # Errors
    /// As for [`Queue::get`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 16)?;
    /// q.put_bytes(b"abc")?;
    /// let mut buf = Vec::with_capacity(16);
    /// assert_eq!(q.get_bytes_into(&mut buf)?, 3);
    /// assert_eq!(buf, b"abc");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.get_bytes_into_with(buf, None, false)
    }

    /// Puts every message, in order, claiming as many slots at once as are free
    /// (as [`Queue::put_many`]). A message over the size refuses the whole
    /// batch before any of it goes in.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], and as for [`put_bytes`](ByteQueue::put_bytes);
    /// messages before another failure went in.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(8, 16)?;
    /// q.put_bytes_many(&[&b"a"[..], b"bc", b""])?;
    /// assert_eq!(q.qsize(), 3);
    /// assert!(q.put_bytes_many(&[&b"d"[..], &[0; 17]]).is_err());
    /// assert_eq!(q.qsize(), 3, "nothing of a refused batch went in");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes_many<M: AsRef<[u8]>>(&self, msgs: &[M]) -> Result<()> {
        self.raw.put(&as_msgs(msgs), None, false).1
    }

    /// Puts messages in order, as [`put_bytes_many`](ByteQueue::put_bytes_many)
    /// does, until all went in or `timeout` passes; returns how many went in
    /// (fewer than `msgs.len()` when the time ran out after some went in).
    ///
    /// # Errors
    /// [`Error::Timeout`] when none went in in time, and as for
    /// [`put_bytes_many`](ByteQueue::put_bytes_many) when the first failed.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(2, 16)?;
    /// assert_eq!(q.put_bytes_many_timeout(&[b"1", b"2", b"3"], Duration::from_millis(1))?, 2);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_bytes_many_timeout<M: AsRef<[u8]>>(
        &self,
        msgs: &[M],
        timeout: Duration,
    ) -> Result<usize> {
        match self.raw.put(&as_msgs(msgs), deadline(Some(timeout)), false) {
            (0, Err(e)) => Err(e),
            (n, _) => Ok(n),
        }
    }

    /// Takes up to `max` messages at once, appending them to `out`, waiting at
    /// most `timeout` (forever if `None`) for the first; returns how many.
    ///
    /// # Errors
    /// As for [`get_bytes_with`](ByteQueue::get_bytes_with).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(8, 16)?;
    /// q.put_bytes_many(&[&b"a"[..], b"bc"])?;
    /// let mut out = Vec::new();
    /// assert_eq!(q.get_bytes_many(&mut out, 10, None)?, 2);
    /// assert_eq!(out, [&b"a"[..], b"bc"]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes_many(
        &self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        with_scratch(self.max_message(), |s| {
            self.raw
                .get(max, deadline(timeout), false, s, |m| out.push(m.to_vec()))
        })
    }

    /// Takes the next message, waiting for one.
    ///
    /// # Errors
    /// As for [`Queue::get`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes(b"")?;
    /// assert_eq!(q.get_bytes()?, b"");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_bytes(&self) -> Result<Vec<u8>> {
        self.get_bytes_with(None, false)
    }

    /// Waits until a message is there, at most `timeout`; `false` on timeout.
    ///
    /// # Errors
    /// [`Error::Closed`] once closed and drained; [`Error::Disconnected`];
    /// [`Error::TooManyParticipants`], as for a get (a thread that waits takes
    /// a participant entry, so that a put can wake it).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes(b"a")?;
    /// assert!(q.poll(None)?);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.raw.wait_readable(deadline(timeout))
    }

    /// Test hook: as [`Queue::__claim_put_and_stop`].
    #[doc(hidden)]
    pub fn __claim_put_and_stop(&self) {
        self.raw.claim_put_and_stop();
    }

    /// Messages in the queue (approximate).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(2, 4)?;
    /// q.put_bytes(b"a")?;
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
    /// assert!(multiproc_queue::ByteQueue::new(2, 4)?.empty());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether it looks full (approximate).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 4)?;
    /// q.put_bytes(b"a")?;
    /// assert!(q.full());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn full(&self) -> bool {
        self.qsize() >= self.capacity()
    }

    /// The number of slots (messages it holds).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ByteQueue::new(5, 4)?.capacity(), 5);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.raw.ring().capacity()
    }

    /// Whether it was closed.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(2, 4)?;
    /// q.close();
    /// assert!(q.is_closed());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.raw.closed()
    }

    /// Closes it (see [`Queue::close`]).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(2, 4)?;
    /// q.close();
    /// assert!(q.put_bytes(b"a").is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn close(&self) {
        self.raw.close();
    }

    /// Messages lost to dead peers or corruption.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ByteQueue::new(2, 4)?.lost(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.raw.lost()
    }

    /// The segment underneath.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ByteQueue::new(2, 4)?.segment().len() > 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.raw.segment()
    }

    /// Encodes `value` (postcard) and puts it.
    ///
    /// # Errors
    /// [`Error::Codec`], then as for [`put_bytes`](ByteQueue::put_bytes).
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// let q = multiproc_queue::ByteQueue::new(2, 64)?;
    /// q.put_value(&("job", 3u32))?;
    /// assert_eq!(q.get_value::<(String, u32)>()?, ("job".to_string(), 3));
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn put_value<V: serde::Serialize>(&self, value: &V) -> Result<()> {
        self.put_value_timeout(value, None)
    }

    /// Encodes `value` and puts it, waiting at most `timeout` for room (forever
    /// if `None`).
    ///
    /// # Errors
    /// [`Error::Codec`], then as for [`put_bytes_timeout`](ByteQueue::put_bytes_timeout).
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(1, 64)?;
    /// q.put_value(&1u8)?;
    /// assert!(matches!(q.put_value_timeout(&2u8, Some(Duration::from_millis(1))), Err(multiproc_queue::Error::Timeout)));
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn put_value_timeout<V: serde::Serialize>(
        &self,
        value: &V,
        timeout: Option<Duration>,
    ) -> Result<()> {
        with_codec_buffer(|buf| {
            postcard::to_io(value, &mut *buf).map_err(|e| Error::Codec(e.to_string()))?;
            self.put_bytes_timeout(buf, timeout)
        })
    }

    /// Takes a message and decodes it (postcard).
    ///
    /// # Errors
    /// As for [`get_bytes`](ByteQueue::get_bytes), and [`Error::Codec`].
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// let q = multiproc_queue::ByteQueue::new(2, 64)?;
    /// q.put_value(&vec![1u8, 2])?;
    /// assert_eq!(q.get_value::<Vec<u8>>()?, [1, 2]);
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn get_value<V: serde::de::DeserializeOwned>(&self) -> Result<V> {
        self.get_value_timeout(None)
    }

    /// Takes a message and decodes it, waiting at most `timeout` (forever if
    /// `None`).
    ///
    /// # Errors
    /// As for [`get_bytes_with`](ByteQueue::get_bytes_with), and [`Error::Codec`].
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(1, 64)?;
    /// assert!(matches!(q.get_value_timeout::<u8>(Some(Duration::from_millis(1))), Err(multiproc_queue::Error::Timeout)));
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn get_value_timeout<V: serde::de::DeserializeOwned>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<V> {
        with_codec_buffer(|buf| {
            self.get_bytes_into_with(buf, timeout, false)?;
            postcard::from_bytes(buf).map_err(|e| Error::Codec(e.to_string()))
        })
    }
}

#[cfg(feature = "serde")]
thread_local! {
    static CODEC: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's empty encoding buffer (a fresh one if it is in
/// use: a `Serialize` that puts while it is serialised), so that `put_value`
/// and `get_value` do not allocate per message. A buffer grown past 64 KiB is
/// given back afterwards.
#[cfg(feature = "serde")]
fn with_codec_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    const KEEP: usize = 64 * 1024;
    CODEC.with(|c| match c.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > KEEP {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// Python's `JoinableQueue` for byte (or, with the `serde` feature, any
/// `Serialize`) messages: a [`ByteQueue`] that counts unfinished messages, with
/// [`task_done`](JoinableByteQueue::task_done) and
/// [`join`](JoinableByteQueue::join), as [`JoinableQueue`] does for plain data.
///
/// # Examples
/// ```
/// let q = multiproc_queue::JoinableByteQueue::new(4, 64)?;
/// q.put_bytes(b"job")?;
/// assert_eq!(q.get_bytes()?, b"job");
/// q.task_done()?;
/// q.join(None)?; // every message put has been marked done
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct JoinableByteQueue {
    q: ByteQueue,
}

impl JoinableByteQueue {
    /// An anonymous joinable byte queue of `maxsize` messages of up to
    /// `max_message` bytes.
    ///
    /// # Errors
    /// As for [`ByteQueue::new`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableByteQueue::new(2, 8)?;
    /// assert_eq!(q.unfinished(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(maxsize: usize, max_message: usize) -> Result<JoinableByteQueue> {
        Ok(JoinableByteQueue {
            q: ByteQueue::make(Location::Anonymous, maxsize, max_message, true)?,
        })
    }

    /// A named joinable byte queue.
    ///
    /// # Errors
    /// As for [`ByteQueue::create`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-jbq-{}", std::process::id());
    /// let q = multiproc_queue::JoinableByteQueue::create(&name, 2, 8)?;
    /// q.put_bytes(b"x")?;
    /// assert_eq!(multiproc_queue::JoinableByteQueue::open(&name)?.unfinished(), 1);
    /// // A plain byte queue of that name it is not:
    /// assert!(multiproc_queue::ByteQueue::open(&name).is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn create(name: &str, maxsize: usize, max_message: usize) -> Result<JoinableByteQueue> {
        Ok(JoinableByteQueue {
            q: ByteQueue::make(Location::Named(name), maxsize, max_message, true)?,
        })
    }

    /// Opens a named joinable byte queue (a write handle).
    ///
    /// # Errors
    /// As for [`ByteQueue::open`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::JoinableByteQueue::open("no-such-jbq-here").is_err());
    /// ```
    pub fn open(name: &str) -> Result<JoinableByteQueue> {
        Ok(JoinableByteQueue {
            q: ByteQueue::open_as(name, true, true)?,
        })
    }

    /// Marks one message taken with a get as processed.
    ///
    /// # Errors
    /// [`Error::TaskDoneTooMany`] when called more often than messages were put.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableByteQueue::new(2, 8)?;
    /// assert!(q.task_done().is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.q.raw.task_done()
    }

    /// Waits until every message put has been marked done, at most `timeout`
    /// (see [`JoinableQueue::join`]: a lost message counts as done).
    ///
    /// # Errors
    /// [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::JoinableByteQueue::new(2, 8)?;
    /// q.put_bytes(b"x")?;
    /// assert!(matches!(q.join(Some(Duration::from_millis(1))), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.q.raw.join(deadline(timeout))
    }

    /// Messages put and not yet marked done.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableByteQueue::new(2, 8)?;
    /// q.put_bytes(b"x")?;
    /// assert_eq!(q.unfinished(), 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn unfinished(&self) -> u32 {
        self.q.raw.unfinished()
    }
}

impl std::ops::Deref for JoinableByteQueue {
    type Target = ByteQueue;
    fn deref(&self) -> &ByteQueue {
        &self.q
    }
}

impl std::ops::DerefMut for JoinableByteQueue {
    fn deref_mut(&mut self) -> &mut ByteQueue {
        &mut self.q
    }
}

impl std::fmt::Debug for JoinableByteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableByteQueue")
            .field("queue", &self.q)
            .field("unfinished", &self.unfinished())
            .finish()
    }
}

impl std::fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteQueue")
            .field("capacity", &self.raw.ring().capacity())
            .field("max_message", &self.max_message())
            .finish()
    }
}
