//! [`pipe`]: Python's `Pipe(duplex)`, a pair of [`Connection`]s over byte queues.

use std::time::Duration;

use crate::raw::Roles;
use crate::{ByteQueue, Error, Result};

/// Messages each direction of a pipe holds in its slots by default.
pub const PIPE_CAPACITY: usize = 64;
/// The largest message that goes in a slot of its own by default; larger ones
/// stream through the direction's lane (any size works).
pub const PIPE_MESSAGE: usize = 16 * 1024;

/// One end of a pipe: `send_bytes`/`recv_bytes`, `poll`, `close` (and
/// `send`/`recv` of any serde type with the `serde` feature).
///
/// Each direction of a pipe is a [`ByteQueue`] (in a memfd, shared with children
/// forked after the pipe was made) whose ends are counted: a receive answers
/// [`Error::Disconnected`] once the sending end is gone (every copy of it
/// closed or dropped, in every process — as Python's `recv` raises `EOFError`),
/// and a send answers [`Error::Disconnected`] once the receiving end is gone (as
/// Python's `send` raises `BrokenPipeError`): at once when the ends were closed
/// or dropped, and when the process holding them was killed, as soon as the
/// send would otherwise have to wait (the direction is full), or within an
/// owner check interval for a receive.
///
/// # Examples
/// ```
/// let (a, b) = multiproc_queue::pipe(true)?;
/// a.send_bytes(b"ping")?;
/// assert!(b.poll_timeout(std::time::Duration::from_secs(1))?);
/// assert_eq!(b.recv_bytes()?, b"ping");
/// b.send_bytes(b"pong")?;
/// assert_eq!(a.recv_bytes()?, b"pong");
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    send: Option<ByteQueue>,
    recv: Option<ByteQueue>,
    closed: bool,
}

/// A pipe (Python's `Pipe(duplex)`), shared with children forked later. With
/// `duplex` both ends send and receive; without, the first end only receives
/// and the second only sends, as in Python. Messages of any size: up to
/// [`PIPE_MESSAGE`] bytes go in a slot each ([`PIPE_CAPACITY`] of them per
/// direction), larger ones stream.
///
/// After forking, drop (or [`close`](Connection::close)) the end each process
/// does not use, as Python's documentation says: an end stays open while any
/// process holds it.
///
/// # Errors
/// [`Error::Shm`] when the segments cannot be made.
///
/// # Examples
/// ```
/// let (a, b) = multiproc_queue::pipe(false)?; // a receives, b sends
/// b.send_bytes(b"x")?;
/// assert_eq!(a.recv_bytes()?, b"x");
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    pipe_with(duplex, PIPE_CAPACITY, PIPE_MESSAGE)
}

/// A pipe whose directions hold `capacity` messages of up to `max_inline` bytes
/// in their slots (larger ones stream). Smaller slots make small messages
/// cheaper: several share a cache line.
///
/// # Errors
/// As for [`pipe`].
///
/// # Examples
/// ```
/// let (a, b) = multiproc_queue::pipe_with(true, 2, 8)?;
/// b.send_bytes(&[1; 8])?;
/// assert_eq!(a.recv_bytes()?, [1; 8]);
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub fn pipe_with(
    duplex: bool,
    capacity: usize,
    max_inline: usize,
) -> Result<(Connection, Connection)> {
    // A direction: the creating handle writes; a second handle on the same memfd
    // is its counted reader.
    let direction = || -> Result<(ByteQueue, ByteQueue)> {
        let w = ByteQueue::make(
            multiproc_shm::Location::Memfd,
            capacity,
            max_inline,
            false,
            true,
        )?;
        let r = w.handle_clone(Roles::READER)?;
        Ok((w, r))
    };
    let connection = |send, recv| Connection {
        send,
        recv,
        closed: false,
    };
    let (there_w, there_r) = direction()?;
    if duplex {
        let (back_w, back_r) = direction()?;
        Ok((
            connection(Some(there_w), Some(back_r)),
            connection(Some(back_w), Some(there_r)),
        ))
    } else {
        Ok((
            connection(None, Some(there_r)),
            connection(Some(there_w), None),
        ))
    }
}

impl Connection {
    // A match, not `ok_or`: `ok_or` makes the error value on every call and
    // drops it again (two dozen instructions a message). An end holds its
    // queues exactly until `close`, which empties both: `closed` is looked
    // at only to say why there is none.
    #[inline]
    fn sender(&self) -> Result<&ByteQueue> {
        match &self.send {
            Some(q) => Ok(q),
            None if self.closed => Err(Error::EndClosed),
            None => Err(Error::OneWay { sends: false }),
        }
    }

    #[inline]
    fn receiver(&self) -> Result<&ByteQueue> {
        match &self.recv {
            Some(q) => Ok(q),
            None if self.closed => Err(Error::EndClosed),
            None => Err(Error::OneWay { sends: true }),
        }
    }

    /// Sends a message of any size (Python's `send_bytes`).
    ///
    /// # Errors
    /// [`Error::Disconnected`] when the other end is gone, [`Error::EndClosed`]
    /// after [`close`](Connection::close), [`Error::OneWay`] on the receiving end
    /// of a one-way pipe.
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::pipe(true)?;
    /// a.send_bytes(b"hi")?;
    /// assert_eq!(b.recv_bytes()?, b"hi");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn send_bytes(&self, msg: &[u8]) -> Result<()> {
        self.sender()?.put_bytes(msg)
    }

    /// Sends a message, waiting at most `timeout` for room (and for a large
    /// message, for the other end to take it).
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`send_bytes`](Connection::send_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::pipe_with(true, 1, 8)?;
    /// a.send_bytes(b"1")?;
    /// assert!(matches!(a.send_bytes_timeout(b"2", Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn send_bytes_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.sender()?.put_bytes_timeout(msg, timeout)
    }

    /// Receives a message (Python's `recv_bytes`).
    ///
    /// # Errors
    /// [`Error::Disconnected`] once the other end is gone and everything it sent
    /// was received; [`Error::EndClosed`]; [`Error::OneWay`].
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::pipe(true)?;
    /// b.send_bytes(b"yo")?;
    /// assert_eq!(a.recv_bytes()?, b"yo");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.receiver()?.get_bytes()
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::pipe(true)?;
    /// assert!(matches!(a.recv_bytes_timeout(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.receiver()?.get_bytes_timeout(timeout)
    }

    /// Receives a message of at most `maxlength` bytes (Python's
    /// `recv_bytes(maxlength)`): a longer one is dropped and answered
    /// [`Error::MessageOverLimit`], so that a peer cannot make this process
    /// allocate more than it chose to. A streamed message is refused from its
    /// announced length, before a byte of it is read or allocated; its sender's
    /// `send_bytes` returns as if it had been received.
    ///
    /// Unlike Python's, whose connection is unusable after the error, this end
    /// goes on: the next receive gets the next message.
    ///
    /// # Errors
    /// [`Error::MessageOverLimit`], and as for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// use multiproc_queue::Error;
    /// let (a, b) = multiproc_queue::pipe(true)?;
    /// b.send_bytes(&[0; 100_000])?;
    /// b.send_bytes(b"small")?;
    /// assert!(matches!(a.recv_bytes_max(1024), Err(Error::MessageOverLimit { len: 100_000, max: 1024 })));
    /// assert_eq!(a.recv_bytes_max(1024)?, b"small");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "maxlength")]
    pub fn recv_bytes_max(&self, maxlength: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.receiver()?
            .get_bytes_into_limited(&mut buf, maxlength, None)?;
        Ok(buf)
    }

    /// [`recv_bytes_max`](Connection::recv_bytes_max), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`recv_bytes_max`](Connection::recv_bytes_max).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::pipe(true)?;
    /// assert!(matches!(a.recv_bytes_max_timeout(8, Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_bytes_max_timeout(&self, maxlength: usize, timeout: Duration) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.receiver()?
            .get_bytes_into_limited(&mut buf, maxlength, Some(timeout))?;
        Ok(buf)
    }

    /// Receives a message into `buf`, replacing what it held, and returns its
    /// length (Python's `recv_bytes_into`, except that the buffer grows to fit:
    /// no `BufferTooShort`). Reusing one buffer saves an allocation per message.
    ///
    /// # Errors
    /// As for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::pipe(false)?;
    /// let mut buf = Vec::new();
    /// for msg in [&b"one"[..], b"three"] {
    ///     b.send_bytes(msg)?;
    ///     assert_eq!(a.recv_bytes_into(&mut buf)?, msg.len());
    ///     assert_eq!(buf, msg);
    /// }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.receiver()?.get_bytes_into(buf)
    }

    /// [`recv_bytes_into`](Connection::recv_bytes_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::pipe(true)?;
    /// let mut buf = Vec::new();
    /// assert!(matches!(a.recv_bytes_into_timeout(&mut buf, Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_bytes_into_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.receiver()?.get_bytes_into_timeout(buf, timeout)
    }

    /// Whether a message is waiting now (Python's `poll()`).
    ///
    /// # Errors
    /// [`Error::Disconnected`] once the other end is gone and nothing is left;
    /// [`Error::EndClosed`]; [`Error::OneWay`].
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::pipe(true)?;
    /// assert!(!a.poll()?);
    /// b.send_bytes(b"!")?;
    /// assert!(a.poll()?);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn poll(&self) -> Result<bool> {
        self.receiver()?.poll()
    }

    /// Whether a message is waiting, waiting at most `timeout` for one (Python's
    /// `poll(timeout)`; `Duration::MAX` for `poll(None)`).
    ///
    /// # Errors
    /// As for [`poll`](Connection::poll).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc_queue::pipe(true)?;
    /// assert!(!a.poll_timeout(Duration::from_millis(1))?);
    /// b.send_bytes(b"!")?;
    /// assert!(a.poll_timeout(Duration::MAX)?);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool> {
        self.receiver()?.poll_timeout(timeout)
    }

    /// How many times this end's blocking sends and receives retry before they
    /// yield and then sleep (see [`Queue::set_spin_limit`](crate::Queue::set_spin_limit);
    /// default 200, about 5 µs). A request/reply loop between processes whose
    /// replies take longer than that, or that are often off their cores, may
    /// trade CPU for latency with a larger limit; 0 sleeps at once.
    ///
    /// # Examples
    /// ```
    /// let (mut a, b) = multiproc_queue::pipe(true)?;
    /// a.set_spin_limit(20_000);
    /// b.send_bytes(b"x")?;
    /// assert_eq!(a.recv_bytes()?, b"x");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn set_spin_limit(&mut self, spins: u32) {
        for q in [&mut self.send, &mut self.recv].into_iter().flatten() {
            q.set_spin_limit(spins);
        }
    }

    /// Closes this end, in both directions (Python's `close()`): it can no longer
    /// send or receive ([`Error::EndClosed`]); the other end receives what was
    /// sent, then [`Error::Disconnected`], and its sends fail with
    /// [`Error::Disconnected`] — once no other process holds a copy of this end.
    /// Dropping the end does the same.
    ///
    /// # Examples
    /// ```
    /// use multiproc_queue::Error;
    /// let (mut a, b) = multiproc_queue::pipe(true)?;
    /// a.send_bytes(b"last")?;
    /// a.close();
    /// assert!(matches!(a.recv_bytes(), Err(Error::EndClosed)));
    /// assert_eq!(b.recv_bytes()?, b"last");
    /// assert!(matches!(b.recv_bytes(), Err(Error::Disconnected)));
    /// assert!(matches!(b.send_bytes(b"?"), Err(Error::Disconnected)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.send = None;
        self.recv = None;
        self.closed = true;
    }

    /// Whether [`close`](Connection::close) was called on this end.
    ///
    /// # Examples
    /// ```
    /// let (mut a, _b) = multiproc_queue::pipe(true)?;
    /// a.close();
    /// assert!(a.is_closed());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The receiving direction's queue (for [`wait`](crate::wait())).
    pub(crate) fn receiving(&self) -> Option<&ByteQueue> {
        if self.closed {
            None
        } else {
            self.recv.as_ref()
        }
    }
}

#[cfg(feature = "serde")]
impl Connection {
    /// Sends any `Serialize` value, of any encoded size (Python's `send`).
    ///
    /// # Errors
    /// [`Error::Encode`], and as for [`send_bytes`](Connection::send_bytes).
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::pipe(true)?;
    /// a.send(&(1u8, "two".to_string()))?;
    /// assert_eq!(b.recv::<(u8, String)>()?, (1, "two".to_string()));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn send<V: serde::Serialize + ?Sized>(&self, value: &V) -> Result<()> {
        self.sender()?.put_value(value)
    }

    /// Sends a value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Encode`], and as for [`send_bytes_timeout`](Connection::send_bytes_timeout).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc_queue::pipe_with(true, 1, 64)?;
    /// a.send_timeout(&"one", Duration::from_secs(1))?;
    /// assert!(matches!(a.send_timeout(&"two", Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// assert_eq!(b.recv::<String>()?, "one");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn send_timeout<V: serde::Serialize + ?Sized>(
        &self,
        value: &V,
        timeout: Duration,
    ) -> Result<()> {
        self.sender()?.put_value_timeout(value, timeout)
    }

    /// Receives a value (Python's `recv`).
    ///
    /// # Errors
    /// [`Error::Decode`] or [`Error::DecodeLeftOver`] when the message is
    /// not a `V`, and as for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::pipe(true)?;
    /// b.send(&vec![1.5f64])?;
    /// assert_eq!(a.recv::<Vec<f64>>()?, [1.5]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv<V: serde::de::DeserializeOwned>(&self) -> Result<V> {
        self.receiver()?.get_value()
    }

    /// Receives a value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Decode`] or [`Error::DecodeLeftOver`], and as for
    /// [`recv_bytes_timeout`](Connection::recv_bytes_timeout).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::pipe(true)?;
    /// assert!(matches!(a.recv_timeout::<u32>(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_timeout<V: serde::de::DeserializeOwned>(&self, timeout: Duration) -> Result<V> {
        self.receiver()?.get_value_timeout(timeout)
    }
}
