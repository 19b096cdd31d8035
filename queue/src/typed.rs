//! [`Queue<T>`]: Python's `Queue` (and `SimpleQueue`) for plain-data `T`.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Duration;

use multiproc_shm::{Location, Segment, ShmSafe};

use crate::raw::{deadline, RawQueue, Roles, Spec};
use crate::ring::Msg;
use crate::{Corruption, Error, Result};

/// A bounded queue of `T` between threads and processes: Python's
/// `multiprocessing.Queue(maxsize)`, without pipes or pickling.
///
/// Messages are copied into shared memory slots; `T` is plain data
/// ([`ShmSafe`]). Create it anonymous before `fork`, or named and
/// [`open`](Queue::open) it from unrelated processes: opening checks the element
/// type and the queue's geometry. For any serde type, see
/// [`ValueQueue`](crate::ValueQueue) (feature `serde`).
///
/// | Python | here |
/// |---|---|
/// | `put(x)`, `put(x, timeout=t)`, `put_nowait(x)` | [`put`](Queue::put), [`put_timeout`](Queue::put_timeout) (→ [`Error::Timeout`]), [`try_put`](Queue::try_put) (→ [`Error::Full`]) |
/// | `get()`, `get(timeout=t)`, `get_nowait()` | [`get`](Queue::get), [`get_timeout`](Queue::get_timeout) (→ [`Error::Timeout`]), [`try_get`](Queue::try_get) (→ [`Error::Empty`]) |
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
/// A `get` on an empty queue answers [`Error::Disconnected`] once no live
/// process holds a write handle: at once when every write handle was dropped,
/// within an owner check interval when the last holders were killed. Every
/// handle writes, as in Python, until [`stop_writing`](Queue::stop_writing);
/// children forked with a handle hold it too.
///
/// # Examples
/// ```
/// use multiproc_queue::{Error, Queue};
/// let q = Queue::<u64>::new(3)?;
/// q.put(1)?;
/// q.put(2)?;
/// q.put(3)?;
/// assert!(q.full());
/// assert!(matches!(q.try_put(4), Err(Error::Full)));
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.qsize(), 2);
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct Queue<T> {
    pub(crate) raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

/// The type name a `Queue<T>`'s (or `JoinableQueue<T>`'s) segment header carries.
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
        large: false,
    }
}

/// Reads a `T` from the bytes of one message.
fn read_item<T: ShmSafe>(bytes: &[u8]) -> Result<T> {
    if bytes.len() != std::mem::size_of::<T>() {
        return Err(Error::Corrupted(Corruption::ItemSize {
            len: bytes.len(),
            size: std::mem::size_of::<T>(),
        }));
    }
    // SAFETY: the bytes are size_of::<T>() long and private; T is ShmSafe, so any
    // bytes are a valid T; read_unaligned needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Runs `f` on a zeroed scratch `T`, as bytes (the general gets copy into it).
fn with_item_scratch<T, R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut scratch = MaybeUninit::<T>::zeroed();
    // SAFETY: a zeroed MaybeUninit<T> is size_of::<T>() initialised bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast::<u8>(), std::mem::size_of::<T>())
    };
    f(bytes)
}

impl<T: ShmSafe + Copy> Queue<T> {
    /// An anonymous queue of `maxsize` slots (exactly: `full()` after `maxsize` puts), shared
    /// with children forked after it.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a `maxsize` of 0 or over 2³⁰; [`Error::Shm`].
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

    pub(crate) fn make(location: Location<'_>, maxsize: usize, joinable: bool) -> Result<Queue<T>> {
        let raw = RawQueue::create(Spec {
            location,
            capacity: maxsize,
            msg_max: std::mem::size_of::<T>(),
            fixed: true,
            type_name: queue_type_name::<T>(joinable),
            joinable,
            pipe: false,
            lane: 0,
        })?;
        Queue::from_raw(raw)
    }

    /// A handle over `raw`, once its ring is known to carry `T`s: fixed length,
    /// messages of exactly `size_of::<T>()` bytes. The type name in the header
    /// says so already, but only a peer wrote it; the fast paths rely on this.
    fn from_raw(raw: RawQueue) -> Result<Queue<T>> {
        if !raw.ring().fits_fixed::<T>() {
            return Err(Error::Corrupted(Corruption::NotItems {
                msg_max: raw.ring().msg_max() as u64,
                size: std::mem::size_of::<T>(),
            }));
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
        Queue::open_as(name, false, Roles::WRITER)
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
        Queue::open_as(name, false, Roles::NONE)
    }

    pub(crate) fn open_as(name: &str, joinable: bool, roles: Roles) -> Result<Queue<T>> {
        let seg = Segment::open(name)?;
        let raw = RawQueue::attach(seg, &queue_type_name::<T>(joinable), roles)?;
        Queue::from_raw(raw)
    }

    /// Stops counting this handle as a writer (it can still put).
    ///
    /// # Examples
    /// ```
    /// let mut q = multiproc_queue::Queue::<u32>::new(4)?;
    /// q.stop_writing(); // no writer left anywhere:
    /// assert!(matches!(q.get(), Err(multiproc_queue::Error::Disconnected)));
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

    /// Puts `item` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    /// [`Error::Full`], and as for [`put`](Queue::put).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(1)?;
    /// q.try_put(1)?;
    /// assert!(matches!(q.try_put(2), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<()> {
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

    /// Puts items in order while there is room now; returns how many went in.
    ///
    /// # Errors
    /// [`Error::Full`] when none fit, and as for [`put`](Queue::put).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// assert_eq!(q.try_put_many(&[1, 2, 3])?, 2);
    /// assert!(matches!(q.try_put_many(&[4]), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_put_many(&self, items: &[T]) -> Result<usize> {
        let msgs: Vec<Msg> = items.iter().map(as_msg).collect();
        match self.raw.put(&msgs, None, true) {
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

    /// Takes the next item if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get`](Queue::get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// assert!(matches!(q.try_get(), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
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
        let mut out = None;
        with_item_scratch::<T, _>(|bytes| {
            self.raw.get(1, deadline, nowait, bytes, |m, _| {
                out = Some(read_item::<T>(m))
            })
        })?;
        // A get that answers Ok has handed its message to the sink: `out` is set.
        out.unwrap_or(Err(Error::Empty))
    }

    /// Takes up to `max` items at once into `out`, waiting for the first; returns
    /// how many (0 at once for a `max` of 0).
    ///
    /// # Errors
    /// As for [`get`](Queue::get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(8)?;
    /// q.put_many(&[1, 2, 3])?;
    /// let mut out = Vec::new();
    /// assert_eq!(q.get_many(&mut out, 10)?, 3);
    /// assert_eq!(out, [1, 2, 3]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_many(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        self.get_many_with(out, max, None, false)
    }

    /// [`get_many`](Queue::get_many), waiting at most `timeout` for the first.
    ///
    /// # Errors
    /// As for [`get_timeout`](Queue::get_timeout).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::Queue::<u32>::new(8)?;
    /// let mut out = Vec::new();
    /// assert!(matches!(q.get_many_timeout(&mut out, 4, Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_many_timeout(
        &self,
        out: &mut Vec<T>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        self.get_many_with(out, max, deadline(Some(timeout)), false)
    }

    /// [`get_many`](Queue::get_many) of what is there now.
    ///
    /// # Errors
    /// As for [`try_get`](Queue::try_get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(8)?;
    /// q.put(9)?;
    /// let mut out = Vec::new();
    /// assert_eq!(q.try_get_many(&mut out, 4)?, 1);
    /// assert!(matches!(q.try_get_many(&mut out, 4), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_get_many(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        self.get_many_with(out, max, None, true)
    }

    fn get_many_with(
        &self,
        out: &mut Vec<T>,
        max: usize,
        deadline: Option<multiproc_sync::futex::Deadline>,
        nowait: bool,
    ) -> Result<usize> {
        let mut bad = None;
        let n = with_item_scratch::<T, _>(|bytes| {
            self.raw.get(max, deadline, nowait, bytes, |m, _| {
                match read_item::<T>(m) {
                    Ok(v) => out.push(v),
                    Err(e) => bad = Some(e),
                }
            })
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

    /// Whether an item is there to take at once (approximate while others
    /// work): one look at the slot a `get` takes next, the look to spin on
    /// (see [`ByteQueue::has_message`](crate::ByteQueue::has_message)).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// assert!(!q.has_message());
    /// q.put(7)?;
    /// assert!(q.has_message());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn has_message(&self) -> bool {
        self.raw.ring().has_message()
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

    /// Takes this thread's entry in the queue's table of threads now (see
    /// [`ByteQueue::enter`](crate::ByteQueue::enter)).
    ///
    /// # Errors
    /// [`Error::TooManyParticipants`] when every entry is taken;
    /// [`Error::Corrupted`] when the table was written over.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::Queue::<u32>::new(2)?;
    /// q.enter()?;
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn enter(&self) -> Result<()> {
        self.raw.enter()
    }

    /// Closes it for everyone: puts fail with [`Error::Closed`]; gets drain, then
    /// answer it. (Python's `Queue.close` only stops the calling process's puts;
    /// here it ends the queue, which is what a consumer loop waits for.)
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

    #[cfg(feature = "test-hooks")]
    pub(crate) fn item_msg(item: &T) -> Msg {
        as_msg(item)
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
