//! [`Joinable<Q>`]: Python's `JoinableQueue` — a queue that counts unfinished
//! items — over [`Queue<T>`] ([`JoinableQueue<T>`]) or [`ByteQueue`]
//! ([`JoinableByteQueue`]). The counting lives in the ring (`ring::wake`): every
//! position claimed for putting is an item, minus those marked done or lost, so a
//! producer killed anywhere in a put leaves the count right.

use std::time::Duration;

use multiproc_shm::{Location, ShmSafe};

use crate::raw::{deadline, RawQueue, Roles};
use crate::{ByteQueue, Queue, Result};

/// A queue that knows its [`RawQueue`]: what `Joinable` needs of it (this
/// crate's queues only).
pub trait Inner: sealed::Sealed {}

mod sealed {
    /// The queues `Joinable` wraps: this crate's own.
    pub trait Sealed {
        fn raw_ref(&self) -> RawRef<'_>;
    }

    /// A queue's raw handle, behind a type no other crate can name.
    pub struct RawRef<'a>(pub(crate) &'a crate::raw::RawQueue);
}

impl<T> Inner for Queue<T> {}
impl<T> sealed::Sealed for Queue<T> {
    fn raw_ref(&self) -> sealed::RawRef<'_> {
        sealed::RawRef(&self.raw)
    }
}
impl Inner for ByteQueue {}
impl sealed::Sealed for ByteQueue {
    fn raw_ref(&self) -> sealed::RawRef<'_> {
        sealed::RawRef(&self.raw)
    }
}

/// Python's `JoinableQueue`: a queue that counts unfinished items, with
/// [`task_done`](Joinable::task_done) and [`join`](Joinable::join). It derefs to
/// the queue it wraps for `put`, `get` and the rest.
///
/// # Examples
/// ```
/// let q = multiproc_queue::JoinableQueue::<u8>::new(4)?;
/// q.put(1)?;
/// q.get()?;
/// q.task_done()?;
/// q.join()?; // every item put has been marked done
/// assert!(q.task_done().is_err());
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct Joinable<Q> {
    q: Q,
}

/// Python's `JoinableQueue` for plain data.
pub type JoinableQueue<T> = Joinable<Queue<T>>;

/// Python's `JoinableQueue` for byte (or, with the `serde` feature, any
/// `Serialize`) messages.
///
/// # Examples
/// ```
/// let q = multiproc_queue::JoinableByteQueue::new(4, 64)?;
/// q.put_bytes(b"job")?;
/// assert_eq!(q.get_bytes()?, b"job");
/// q.task_done()?;
/// q.join()?;
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub type JoinableByteQueue = Joinable<ByteQueue>;

/// The raw queue under a joinable one (for the test hooks).
#[cfg(feature = "test-hooks")]
pub(crate) fn raw_of<Q: Inner>(j: &Joinable<Q>) -> &RawQueue {
    j.raw()
}

impl<Q: Inner> Joinable<Q> {
    fn raw(&self) -> &RawQueue {
        sealed::Sealed::raw_ref(&self.q).0
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    /// [`Error::TaskDoneTooMany`](crate::Error::TaskDoneTooMany) when called more
    /// often than items were put.
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
        self.raw().task_done()
    }

    /// Waits until every item put has been marked done. An item lost to a dead
    /// producer or consumer (see `lost`) counts as done: nobody could ever mark
    /// it. `join` itself looks for such items on every round (a put claimed and
    /// never published, a get claimed and never finished, by a process that
    /// died), so it does not wait for a later `get` or `put` to find them. A
    /// consumer that dies after `get` returned an item, before its
    /// `task_done`, still holds `join` up (as in Python): see
    /// [`join_timeout`](Joinable::join_timeout).
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a corrupted count.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableQueue::<u8>::new(2)?;
    /// q.join()?; // nothing put: returns at once
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.raw().join(None)
    }

    /// [`join`](Joinable::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::JoinableQueue::<u8>::new(2)?;
    /// q.put(1)?;
    /// assert!(matches!(q.join_timeout(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.raw().join(deadline(Some(timeout)))
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
        self.raw().unfinished()
    }
}

impl<T: ShmSafe + Copy> Joinable<Queue<T>> {
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
        Ok(Joinable {
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
        Ok(Joinable {
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
    /// ```
    pub fn open(name: &str) -> Result<JoinableQueue<T>> {
        Ok(Joinable {
            q: Queue::open_as(name, true, Roles::WRITER)?,
        })
    }
}

impl Joinable<ByteQueue> {
    /// An anonymous joinable byte queue.
    ///
    /// # Errors
    /// As for [`ByteQueue::new`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::JoinableByteQueue::new(2, 16)?;
    /// assert_eq!(q.unfinished(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(maxsize: usize, max_inline: usize) -> Result<JoinableByteQueue> {
        Ok(Joinable {
            q: ByteQueue::make(Location::Anonymous, maxsize, max_inline, true, false)?,
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
    /// let q = multiproc_queue::JoinableByteQueue::create(&name, 2, 16)?;
    /// q.put_bytes(b"x")?;
    /// assert_eq!(multiproc_queue::JoinableByteQueue::open(&name)?.unfinished(), 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn create(name: &str, maxsize: usize, max_inline: usize) -> Result<JoinableByteQueue> {
        Ok(Joinable {
            q: ByteQueue::make(Location::Named(name), maxsize, max_inline, true, false)?,
        })
    }

    /// Opens a named joinable byte queue.
    ///
    /// # Errors
    /// As for [`ByteQueue::open`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::JoinableByteQueue::open("no-such-jbq-here").is_err());
    /// ```
    pub fn open(name: &str) -> Result<JoinableByteQueue> {
        Ok(Joinable {
            q: ByteQueue::open_as(name, true, Roles::WRITER)?,
        })
    }
}

impl<Q> std::ops::Deref for Joinable<Q> {
    type Target = Q;
    fn deref(&self) -> &Q {
        &self.q
    }
}

impl<Q> std::ops::DerefMut for Joinable<Q> {
    fn deref_mut(&mut self) -> &mut Q {
        &mut self.q
    }
}

impl<Q: Inner + std::fmt::Debug> std::fmt::Debug for Joinable<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joinable")
            .field("queue", &self.q)
            .field("unfinished", &self.unfinished())
            .finish()
    }
}
