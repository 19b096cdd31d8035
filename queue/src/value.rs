//! Values of any serde type: [`ByteQueue::put_value`]/[`get_value`](ByteQueue::get_value)
//! for mixed types, and [`ValueQueue<V>`] for one type recorded in the segment
//! (Python's `Queue` carrying any picklable object). Encoded with postcard.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Duration;

use multiproc_shm::{Location, Segment};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bytes::byte_ring;
use crate::raw::{RawQueue, Roles, Spec};
use crate::{ByteQueue, Error, Result};

thread_local! {
    static CODEC: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's empty encoding buffer (a fresh one if it is in
/// use: a `Serialize` that puts while it is serialised), so that `put_value`
/// and `get_value` do not allocate per message. A buffer grown past 64 KiB is
/// given back afterwards.
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

fn encode<V: Serialize + ?Sized>(value: &V, buf: &mut Vec<u8>) -> Result<()> {
    postcard::to_io(value, &mut *buf)
        .map(drop)
        .map_err(|source| Error::Encode { source })
}

/// `buf` as one `V`, every byte of it: a value sent as another type often
/// reads as a `V` from its first bytes (a string's length as a number), and
/// what is left over tells it.
fn decode<V: DeserializeOwned>(buf: &[u8]) -> Result<V> {
    let (value, rest) =
        postcard::take_from_bytes(buf).map_err(|source| Error::Decode { source })?;
    if !rest.is_empty() {
        return Err(Error::DecodeLeftOver {
            left: rest.len(),
            len: buf.len(),
        });
    }
    Ok(value)
}

impl ByteQueue {
    /// Puts any `Serialize` value (Python's `put` of a picklable object), of any
    /// encoded size.
    ///
    /// # Errors
    /// [`Error::Encode`], and as for [`put_bytes`](ByteQueue::put_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 64)?;
    /// q.put_value(&("job", 7u32))?;
    /// assert_eq!(q.get_value::<(String, u32)>()?, ("job".to_string(), 7));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_value<V: Serialize + ?Sized>(&self, value: &V) -> Result<()> {
        with_codec_buffer(|buf| {
            encode(value, buf)?;
            self.put_bytes(buf)
        })
    }

    /// [`put_value`](ByteQueue::put_value), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`put_value`](ByteQueue::put_value).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(1, 64)?;
    /// q.put_value_timeout(&1u8, Duration::from_secs(1))?;
    /// assert!(matches!(q.put_value_timeout(&2u8, Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_value_timeout<V: Serialize + ?Sized>(
        &self,
        value: &V,
        timeout: Duration,
    ) -> Result<()> {
        with_codec_buffer(|buf| {
            encode(value, buf)?;
            self.put_bytes_timeout(buf, timeout)
        })
    }

    /// [`put_value`](ByteQueue::put_value) if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`], and as for [`try_put_bytes`](ByteQueue::try_put_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(1, 64)?;
    /// q.try_put_value(&1u8)?;
    /// assert!(q.try_put_value(&2u8).is_err());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_put_value<V: Serialize + ?Sized>(&self, value: &V) -> Result<()> {
        with_codec_buffer(|buf| {
            encode(value, buf)?;
            self.try_put_bytes(buf)
        })
    }

    /// Takes the next message as a `V` (Python's `get`).
    ///
    /// # Errors
    /// [`Error::Decode`] or [`Error::DecodeLeftOver`] when the message is
    /// not a `V` (the message is gone), and as for
    /// [`get_bytes`](ByteQueue::get_bytes).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 64)?;
    /// q.put_value(&vec![1.5f64, 2.5])?;
    /// assert_eq!(q.get_value::<Vec<f64>>()?, [1.5, 2.5]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_value<V: DeserializeOwned>(&self) -> Result<V> {
        with_codec_buffer(|buf| {
            self.get_bytes_into(buf)?;
            decode(buf)
        })
    }

    /// [`get_value`](ByteQueue::get_value), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get_value`](ByteQueue::get_value).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ByteQueue::new(4, 64)?;
    /// assert!(matches!(q.get_value_timeout::<u8>(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_value_timeout<V: DeserializeOwned>(&self, timeout: Duration) -> Result<V> {
        with_codec_buffer(|buf| {
            self.get_bytes_into_timeout(buf, timeout)?;
            decode(buf)
        })
    }

    /// [`get_value`](ByteQueue::get_value) if a message is there now.
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get_value`](ByteQueue::get_value).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ByteQueue::new(4, 64)?;
    /// assert!(matches!(q.try_get_value::<u8>(), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_get_value<V: DeserializeOwned>(&self) -> Result<V> {
        with_codec_buffer(|buf| {
            self.try_get_bytes_into(buf)?;
            decode(buf)
        })
    }
}

/// A queue of `V`s of any serde type and size: what Python's `Queue` is for
/// picklable objects. The value type is recorded in the segment's header, and
/// [`open`](ValueQueue::open) refuses a queue of another type (as
/// [`Queue<T>`](crate::Queue) does), so one queue cannot mix types. Built on a
/// [`ByteQueue`]: small values go in a slot each, larger ones stream.
///
/// # Examples
/// ```
/// use multiproc_queue::ValueQueue;
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Job { id: u32, name: String }
///
/// let q = ValueQueue::<Job>::new(16)?;
/// q.put(&Job { id: 1, name: "resize".into() })?;
/// assert_eq!(q.get()?, Job { id: 1, name: "resize".into() });
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct ValueQueue<V> {
    q: ByteQueue,
    _v: PhantomData<fn(V) -> V>,
}

/// Slot size of a value queue: values that encode to more stream.
pub const VALUE_INLINE: usize = 240;

fn value_type_name<V>() -> String {
    format!(
        "multiproc_queue::ValueQueue<{}>",
        std::any::type_name::<V>()
    )
}

impl<V: Serialize + DeserializeOwned> ValueQueue<V> {
    /// An anonymous queue of `maxsize` values (each encoded in up to
    /// [`VALUE_INLINE`] bytes goes in a slot; larger ones stream).
    ///
    /// # Errors
    /// As for [`ByteQueue::new`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<String>::new(4)?;
    /// assert_eq!(q.capacity(), 4);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(maxsize: usize) -> Result<ValueQueue<V>> {
        ValueQueue::new_in(Location::Anonymous, maxsize)
    }

    /// A named value queue.
    ///
    /// # Errors
    /// As for [`ByteQueue::create`].
    ///
    /// # Examples
    /// ```
    /// use multiproc_queue::ValueQueue;
    /// let name = format!("doc-vq-{}", std::process::id());
    /// let q = ValueQueue::<Vec<u8>>::create(&name, 4)?;
    /// q.put(&vec![1, 2])?;
    /// assert_eq!(ValueQueue::<Vec<u8>>::open(&name)?.get()?, [1, 2]);
    /// assert!(ValueQueue::<String>::open(&name).is_err()); // another type
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn create(name: &str, maxsize: usize) -> Result<ValueQueue<V>> {
        ValueQueue::new_in(Location::Named(name), maxsize)
    }

    /// A value queue at `location`.
    ///
    /// # Errors
    /// As for [`ByteQueue::new_in`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<u64>::new_in(multiproc_shm::Location::Memfd, 4)?;
    /// assert!(q.segment().fd().is_some());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, maxsize: usize) -> Result<ValueQueue<V>> {
        let raw = RawQueue::create(Spec {
            location,
            capacity: maxsize,
            msg_max: VALUE_INLINE,
            fixed: false,
            type_name: value_type_name::<V>(),
            joinable: false,
            pipe: false,
            lane: crate::LANE_BYTES,
        })?;
        Ok(ValueQueue {
            q: ByteQueue::from_raw(raw),
            _v: PhantomData,
        })
    }

    /// Opens the named value queue `name`, which must carry `V`s.
    ///
    /// # Errors
    /// [`Error::Shm`] with `LayoutMismatch` for a queue of another type, and as
    /// for [`ByteQueue::open`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ValueQueue::<u8>::open("no-such-vq-here").is_err());
    /// ```
    pub fn open(name: &str) -> Result<ValueQueue<V>> {
        let raw = RawQueue::attach(Segment::open(name)?, &value_type_name::<V>(), Roles::WRITER)?;
        Ok(ValueQueue {
            q: ByteQueue::from_raw(byte_ring(raw)?),
            _v: PhantomData,
        })
    }

    /// Puts `value`, waiting for room.
    ///
    /// # Errors
    /// [`Error::Encode`], and as for [`ByteQueue::put_bytes`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<String>::new(4)?;
    /// q.put(&"hi".to_string())?;
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put(&self, value: &V) -> Result<()> {
        self.q.put_value(value)
    }

    /// Puts `value`, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`put`](ValueQueue::put).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ValueQueue::<u8>::new(1)?;
    /// q.put(&1)?;
    /// assert!(matches!(q.put_timeout(&2, Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_timeout(&self, value: &V, timeout: Duration) -> Result<()> {
        self.q.put_value_timeout(value, timeout)
    }

    /// Puts `value` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    /// [`Error::Full`], and as for [`ByteQueue::try_put_bytes`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<u8>::new(1)?;
    /// q.try_put(&1)?;
    /// assert!(matches!(q.try_put(&2), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: &V) -> Result<()> {
        self.q.try_put_value(value)
    }

    /// Takes the next value, waiting for one.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::DecodeLeftOver`], and as for
    /// [`ByteQueue::get_bytes`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<Vec<u32>>::new(4)?;
    /// q.put(&vec![3; 1000])?; // encodes to more than a slot: streamed
    /// assert_eq!(q.get()?, vec![3; 1000]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get(&self) -> Result<V> {
        self.q.get_value()
    }

    /// Takes the next value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get`](ValueQueue::get).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::ValueQueue::<u8>::new(4)?;
    /// assert!(matches!(q.get_timeout(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<V> {
        self.q.get_value_timeout(timeout)
    }

    /// Takes the next value if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get`](ValueQueue::get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<u8>::new(4)?;
    /// assert!(matches!(q.try_get(), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<V> {
        self.q.try_get_value()
    }

    /// Values in the queue (approximate).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<u8>::new(4)?;
    /// q.put(&1)?;
    /// assert_eq!(q.qsize(), 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.q.qsize()
    }

    /// Whether it looks empty (approximate).
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ValueQueue::<u8>::new(4)?.empty());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.q.empty()
    }

    /// Whether a value is there to take at once (approximate while others
    /// work; see [`ByteQueue::has_message`](crate::ByteQueue::has_message)).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<u8>::new(4)?;
    /// assert!(!q.has_message());
    /// q.put(&1)?;
    /// assert!(q.has_message());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn has_message(&self) -> bool {
        self.q.has_message()
    }

    /// Whether it looks full (approximate).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<u8>::new(1)?;
    /// q.put(&1)?;
    /// assert!(q.full());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn full(&self) -> bool {
        self.q.full()
    }

    /// The number of slots.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ValueQueue::<u8>::new(4)?.capacity(), 4);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// Closes it for everyone (see [`Queue::close`](crate::Queue::close)).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::ValueQueue::<u8>::new(4)?;
    /// q.close();
    /// assert!(matches!(q.put(&1), Err(multiproc_queue::Error::Closed)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn close(&self) {
        self.q.close();
    }

    /// Values lost to dead producers or consumers, or to corruption.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::ValueQueue::<u8>::new(4)?.lost(), 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.q.lost()
    }

    /// Stops counting this handle as a writer.
    ///
    /// # Examples
    /// ```
    /// let mut q = multiproc_queue::ValueQueue::<u8>::new(4)?;
    /// q.stop_writing();
    /// assert!(matches!(q.get(), Err(multiproc_queue::Error::Disconnected)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn stop_writing(&mut self) {
        self.q.stop_writing();
    }

    /// The segment underneath.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::ValueQueue::<u8>::new(4)?.segment().len() > 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.q.segment()
    }
}

impl<V> ValueQueue<V> {
    /// The byte queue underneath.
    pub(crate) fn bytes(&self) -> &ByteQueue {
        &self.q
    }
}

impl<V> std::fmt::Debug for ValueQueue<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueQueue")
            .field("type", &std::any::type_name::<V>())
            .field("queue", &self.q)
            .finish()
    }
}
