//! [`Pipe`]: Python's `Pipe(duplex)`, a pair of [`Connection`]s over byte queues.

use std::time::Duration;

use crate::{ByteQueue, Error, Result};

/// One end of a pipe: `send_bytes`/`recv_bytes`, `poll`, `close` (and `send`/`recv`
/// of any serde type with the `serde` feature).
///
/// # Examples
/// ```
/// let (a, b) = multiproc_queue::Pipe::new(true)?;
/// a.send_bytes(b"ping")?;
/// assert!(b.poll(Some(std::time::Duration::from_secs(1)))?);
/// assert_eq!(b.recv_bytes()?, b"ping");
/// b.send_bytes(b"pong")?;
/// assert_eq!(a.recv_bytes()?, b"pong");
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    send: Option<ByteQueue>,
    recv: Option<ByteQueue>,
}

/// Makes pipes.
#[derive(Debug)]
pub struct Pipe;

/// Messages a pipe direction holds by default.
pub const PIPE_CAPACITY: usize = 64;
/// The largest message a pipe carries by default.
pub const PIPE_MESSAGE: usize = 16 * 1024;

impl Pipe {
    /// A pipe (anonymous: shared with children forked later). With `duplex` both
    /// ends send and receive; without, the first end only receives and the second
    /// only sends, as in Python.
    ///
    /// As in Python, where a reader gets `EOFError` once every copy of the write
    /// end is closed: a receive answers [`Error::Disconnected`] once no live
    /// process holds the other end — so after forking, drop the end the child
    /// uses in the parent (and the parent's end in the child, if it may outlive
    /// the parent), and a child that exits without `close` is noticed within the
    /// owner-check interval.
    ///
    /// # Errors
    /// [`Error::Shm`] when the segments cannot be made.
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::Pipe::new(false)?; // a receives, b sends
    /// b.send_bytes(b"x")?;
    /// assert_eq!(a.recv_bytes()?, b"x");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new(duplex: bool) -> Result<(Connection, Connection)> {
        Pipe::with_capacity(duplex, PIPE_CAPACITY, PIPE_MESSAGE)
    }

    /// A pipe whose directions hold `capacity` messages of up to `max_message` bytes.
    ///
    /// # Errors
    /// As for [`Pipe::new`].
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::Pipe::with_capacity(true, 2, 8)?;
    /// assert!(a.send_bytes(&[0; 9]).is_err());
    /// b.send_bytes(&[1; 8])?;
    /// assert_eq!(a.recv_bytes()?, [1; 8]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn with_capacity(
        duplex: bool,
        capacity: usize,
        max_message: usize,
    ) -> Result<(Connection, Connection)> {
        let memfd = multiproc_shm::Location::Memfd;
        let there = ByteQueue::new_in(memfd, capacity, max_message)?;
        if duplex {
            let mut back = ByteQueue::new_in(memfd, capacity, max_message)?;
            let back2 = clone_anonymous(&back)?;
            let mut there2 = clone_anonymous(&there)?;
            // A receiving handle is no writer: once every process holding the
            // sending end is gone, a receive answers Disconnected.
            back.stop_writing();
            there2.stop_writing();
            Ok((
                Connection {
                    send: Some(there),
                    recv: Some(back),
                },
                Connection {
                    send: Some(back2),
                    recv: Some(there2),
                },
            ))
        } else {
            let there2 = clone_anonymous(&there)?;
            let mut there = there;
            there.stop_writing();
            Ok((
                Connection {
                    send: None,
                    recv: Some(there),
                },
                Connection {
                    send: Some(there2),
                    recv: None,
                },
            ))
        }
    }
}

/// A second handle on a pipe direction's queue: a pipe's queues are memfd-backed,
/// so the other end maps the same descriptor.
fn clone_anonymous(q: &ByteQueue) -> Result<ByteQueue> {
    q.handle_clone()
}

impl Connection {
    fn sender(&self) -> Result<&ByteQueue> {
        self.send.as_ref().ok_or_else(|| {
            Error::InvalidArgument("this end of a one-way pipe only receives".into())
        })
    }

    fn receiver(&self) -> Result<&ByteQueue> {
        self.recv
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("this end of a one-way pipe only sends".into()))
    }

    /// Sends a message (Python's `send_bytes`).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Closed`] after the other end closed.
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::Pipe::new(true)?;
    /// a.send_bytes(b"hi")?;
    /// assert_eq!(b.recv_bytes()?, b"hi");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn send_bytes(&self, msg: &[u8]) -> Result<()> {
        self.sender()?.put_bytes(msg)
    }

    /// Sends a message, waiting at most `timeout` for room (the pipe holds
    /// [`PIPE_CAPACITY`] messages unless made with [`Pipe::with_capacity`]).
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`send_bytes`](Connection::send_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::Pipe::with_capacity(true, 1, 8)?;
    /// a.send_bytes(b"1")?;
    /// assert!(matches!(a.send_bytes_timeout(b"2", Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn send_bytes_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.sender()?.put_bytes_timeout(msg, Some(timeout))
    }

    /// Receives a message (Python's `recv_bytes`).
    ///
    /// # Errors
    /// [`Error::Closed`] once the other end closed and everything was read;
    /// [`Error::Disconnected`] once no live process holds the other end (see
    /// [`Pipe::new`]).
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::Pipe::new(true)?;
    /// b.send_bytes(b"yo")?;
    /// assert_eq!(a.recv_bytes()?, b"yo");
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.receiver()?.get_bytes()
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
    /// let (a, b) = multiproc_queue::Pipe::new(false)?;
    /// let mut buf = Vec::new();
    /// for msg in [&b"one"[..], b"three"] {
    ///     b.send_bytes(msg)?;
    ///     assert_eq!(a.recv_bytes_into(&mut buf)?, msg.len());
    ///     assert_eq!(buf, msg);
    /// }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.receiver()?.get_bytes_into(buf)
    }

    /// Receives a message into `buf`, waiting at most `timeout` (see
    /// [`recv_bytes_into`](Connection::recv_bytes_into)).
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::Pipe::new(true)?;
    /// let mut buf = Vec::new();
    /// assert!(matches!(a.recv_bytes_into_timeout(&mut buf, Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_bytes_into_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.receiver()?
            .get_bytes_into_with(buf, Some(timeout), false)
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::Pipe::new(true)?;
    /// assert!(matches!(a.recv_bytes_timeout(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.receiver()?.get_bytes_with(Some(timeout), false)
    }

    /// Whether a message is waiting, waiting at most `timeout` (Python's `poll`).
    ///
    /// # Errors
    /// [`Error::Closed`] once the other end closed and everything was read;
    /// as for [`ByteQueue::poll`](crate::ByteQueue::poll).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc_queue::Pipe::new(true)?;
    /// assert!(!a.poll(Some(Duration::from_millis(1)))?);
    /// b.send_bytes(b"!")?;
    /// assert!(a.poll(None)?);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.receiver()?.poll(timeout)
    }

    /// How many times this end's blocking sends and receives retry before they
    /// yield and then sleep (see [`Queue::set_spin_limit`](crate::Queue::set_spin_limit);
    /// default 200, about 5 µs). A request/reply loop between processes whose
    /// replies take longer than that, or that are often off their cores, may
    /// trade CPU for latency with a larger limit; 0 sleeps at once.
    ///
    /// # Examples
    /// ```
    /// let (mut a, b) = multiproc_queue::Pipe::new(true)?;
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

    /// Closes this end: the other end's receives drain, then answer [`Error::Closed`].
    ///
    /// # Examples
    /// ```
    /// let (a, b) = multiproc_queue::Pipe::new(true)?;
    /// a.send_bytes(b"last")?;
    /// a.close();
    /// assert_eq!(b.recv_bytes()?, b"last");
    /// assert!(matches!(b.recv_bytes(), Err(multiproc_queue::Error::Closed)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn close(&self) {
        if let Some(q) = &self.send {
            q.close();
        }
    }

    /// Sends any `Serialize` value (Python's `send`).
    ///
    /// # Errors
    /// [`Error::Codec`], and as for [`send_bytes`](Connection::send_bytes).
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// let (a, b) = multiproc_queue::Pipe::new(true)?;
    /// a.send(&(1u8, "two".to_string()))?;
    /// assert_eq!(b.recv::<(u8, String)>()?, (1, "two".to_string()));
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn send<V: serde::Serialize>(&self, value: &V) -> Result<()> {
        self.sender()?.put_value(value)
    }

    /// Sends a value, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Codec`], and as for [`send_bytes_timeout`](Connection::send_bytes_timeout).
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use std::time::Duration;
    /// let (a, b) = multiproc_queue::Pipe::with_capacity(true, 1, 64)?;
    /// a.send_timeout(&"one", Duration::from_secs(1))?;
    /// assert!(matches!(a.send_timeout(&"two", Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// assert_eq!(b.recv::<String>()?, "one");
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn send_timeout<V: serde::Serialize>(&self, value: &V, timeout: Duration) -> Result<()> {
        self.sender()?.put_value_timeout(value, Some(timeout))
    }

    /// Receives a value (Python's `recv`).
    ///
    /// # Errors
    /// [`Error::Codec`], and as for [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// let (a, b) = multiproc_queue::Pipe::new(true)?;
    /// b.send(&vec![1.5f64])?;
    /// assert_eq!(a.recv::<Vec<f64>>()?, [1.5]);
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn recv<V: serde::de::DeserializeOwned>(&self) -> Result<V> {
        self.receiver()?.get_value()
    }

    /// Receives a value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Codec`], and as for [`recv_bytes_timeout`](Connection::recv_bytes_timeout).
    ///
    /// # Examples
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// use std::time::Duration;
    /// let (a, _b) = multiproc_queue::Pipe::new(true)?;
    /// assert!(matches!(a.recv_timeout::<u32>(Duration::from_millis(1)), Err(multiproc_queue::Error::Timeout)));
    /// # }
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn recv_timeout<V: serde::de::DeserializeOwned>(&self, timeout: Duration) -> Result<V> {
        self.receiver()?.get_value_timeout(Some(timeout))
    }
}
