//! [`wait`]: Python's `multiprocessing.connection.wait` — wait until any of
//! several connections, queues or process sentinels is ready.
//!
//! A queue (or a connection's receiving side) is ready when a `get` would not
//! block: a message is there, or the queue is closed, or no writer is left. A
//! descriptor (a [`Process`](https://docs.rs/multiproc-proc)'s sentinel, any
//! `AsFd`) is ready when it is readable — a pidfd when its process has ended.
//!
//! How it sleeps: queues signal through futexes and descriptors through `poll`,
//! and no one call waits on both. Over queues only, the waiting thread counts
//! itself a sleeper of each (so that their producers wake it) and sleeps on all
//! their futexes at once (`futex_waitv`). Over descriptors only, it `poll`s.
//! Over both, a helper thread `poll`s the descriptors and, when one is ready,
//! wakes the waiting thread through a futex of its own among the others; the
//! helper is stopped (an eventfd) and joined before `wait` returns. Every sleep
//! is bounded by the owner check interval, and readiness is looked at again
//! after each, once the claims of dead producers at the queues' heads are
//! skipped (as a get skips them: a message behind one is ready).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use multiproc_sync::futex::{self, Deadline, WAIT_ANY_MAX};
use multiproc_sync::owner_check_interval;

use crate::raw::{deadline, RawQueue};
use crate::{sys, ByteQueue, Connection, Error, Joinable, Queue, Result};

/// What [`wait`] can wait on: this crate's queues and connections, and any
/// descriptor (`AsFd`), such as a process sentinel.
pub trait Waitable: sealed::Sealed {}

mod sealed {
    /// How [`Waitable`](super::Waitable) things are waited on (this crate's).
    pub trait Sealed {
        fn wait_on(&self) -> super::WaitOn<'_>;
    }
}

/// One thing to wait on, as [`wait`] sees it.
#[doc(hidden)]
pub struct WaitOn<'a>(On<'a>);

enum On<'a> {
    /// A queue: ready when a get would not block.
    Queue(&'a RawQueue),
    /// A descriptor: ready when readable.
    Fd(BorrowedFd<'a>),
    /// Ready at once (a closed end, or one that does not receive: a receive
    /// would fail without waiting).
    Now,
}

impl<T> Waitable for Queue<T> {}
impl<T> sealed::Sealed for Queue<T> {
    fn wait_on(&self) -> WaitOn<'_> {
        WaitOn(On::Queue(&self.raw))
    }
}

impl Waitable for ByteQueue {}
impl sealed::Sealed for ByteQueue {
    fn wait_on(&self) -> WaitOn<'_> {
        WaitOn(On::Queue(&self.raw))
    }
}

impl<Q: Waitable> Waitable for Joinable<Q> {}
impl<Q: Waitable> sealed::Sealed for Joinable<Q> {
    fn wait_on(&self) -> WaitOn<'_> {
        (**self).wait_on()
    }
}

#[cfg(feature = "serde")]
impl<V> Waitable for crate::ValueQueue<V> {}
#[cfg(feature = "serde")]
impl<V> sealed::Sealed for crate::ValueQueue<V> {
    fn wait_on(&self) -> WaitOn<'_> {
        self.bytes().wait_on()
    }
}

impl Waitable for Connection {}
impl sealed::Sealed for Connection {
    fn wait_on(&self) -> WaitOn<'_> {
        match self.receiving() {
            Some(q) => q.wait_on(),
            None => WaitOn(On::Now),
        }
    }
}

impl<F: AsFd> Waitable for F {}
impl<F: AsFd> sealed::Sealed for F {
    fn wait_on(&self) -> WaitOn<'_> {
        WaitOn(On::Fd(self.as_fd()))
    }
}

/// Waits until at least one of `objects` is ready; returns the indices of those
/// that are (Python's `wait(object_list)`, which returns the objects).
///
/// # Errors
/// [`Error::TooManyParticipants`] when this thread cannot take a participant
/// entry in one of the queues; [`Error::OutOfRange`] past 128 queues;
/// [`Error::Io`] when `poll` fails.
///
/// # Examples
/// ```
/// use multiproc_queue::{pipe, wait, Queue};
/// let (a, b) = pipe(true)?;
/// let q = Queue::<u32>::new(4)?;
/// q.put(7)?;
/// assert_eq!(wait(&[&a, &q])?, [1]); // the queue holds a message; the pipe is empty
/// b.send_bytes(b"hi")?;
/// assert_eq!(wait(&[&a, &q])?, [0, 1]);
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable]) -> Result<Vec<usize>> {
    wait_until(objects, None)
}

/// [`wait`], for at most `timeout`: an empty list when nothing became ready in
/// time (Python's `wait(object_list, timeout)`).
///
/// # Errors
/// As for [`wait`].
///
/// # Examples
/// A process sentinel and a pipe: whichever comes first.
/// ```
/// use std::time::Duration;
/// use multiproc_queue::{pipe, wait_timeout};
/// let (a, _b) = pipe(true)?;
/// let (r, w) = std::io::pipe().unwrap(); // any descriptor will do
/// assert!(wait_timeout(&[&a, &r], Duration::from_millis(5))?.is_empty());
/// drop(w); // the read end is at its end now: ready
/// assert_eq!(wait_timeout(&[&a, &r], Duration::from_secs(5))?, [1]);
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub fn wait_timeout(objects: &[&dyn Waitable], timeout: Duration) -> Result<Vec<usize>> {
    wait_until(objects, deadline(Some(timeout)))
}

fn wait_until(objects: &[&dyn Waitable], deadline: Option<Deadline>) -> Result<Vec<usize>> {
    let ons: Vec<WaitOn<'_>> = objects.iter().map(|o| o.wait_on()).collect();
    let queues = ons.iter().filter(|o| matches!(o.0, On::Queue(_))).count();
    if queues > WAIT_ANY_MAX - 1 {
        return Err(Error::OutOfRange {
            what: "the queues in one wait",
            value: queues as u64,
            min: 0,
            max: (WAIT_ANY_MAX - 1) as u64,
        });
    }
    loop {
        let ready = ready_now(&ons)?;
        if !ready.is_empty() {
            return Ok(ready);
        }
        if deadline.as_ref().is_some_and(Deadline::passed) {
            // One look for a dead producer's claim before giving up, as a
            // get's: a caller that only ever waits briefly would otherwise
            // never see what is behind it.
            return if skip_dead_claims(&ons)? {
                ready_now(&ons)
            } else {
                Ok(ready)
            };
        }
        sleep_until_change(&ons, deadline)?;
        skip_dead_claims(&ons)?;
    }
}

/// Skips the claims of dead producers at the heads of the queues among
/// `ons` (see [`RawQueue::skip_dead_claim`]): a queue whose head is such a
/// claim, with a message behind it, is ready, since a get would skip the
/// claim and return the message. Made after a sleep, so at most once a
/// check interval while nothing changes: the look at the claimers' processes
/// costs more than a look at the ring. Whether any was skipped.
fn skip_dead_claims(ons: &[WaitOn<'_>]) -> Result<bool> {
    let mut skipped = false;
    for o in ons {
        if let On::Queue(q) = o.0 {
            // Several dead claims in a row are skipped one at a time.
            while q.skip_dead_claim()? {
                skipped = true;
            }
        }
    }
    Ok(skipped)
}

/// The descriptors among `ons`, in order.
fn descriptors<'a>(ons: &[WaitOn<'a>]) -> Vec<BorrowedFd<'a>> {
    ons.iter()
        .filter_map(|o| match o.0 {
            On::Fd(fd) => Some(fd),
            _ => None,
        })
        .collect()
}

/// The indices of the objects ready now.
fn ready_now(ons: &[WaitOn<'_>]) -> Result<Vec<usize>> {
    let fds = descriptors(ons);
    let mut fd_ready = if fds.is_empty() {
        Vec::new()
    } else {
        sys::poll_readable(&fds, Some(Duration::ZERO))
            .map_err(|source| Error::Io { op: "poll", source })?
    }
    .into_iter();
    let mut ready = Vec::new();
    for (i, o) in ons.iter().enumerate() {
        let r = match o.0 {
            On::Queue(q) => q.readable_now(),
            On::Fd(_) => fd_ready.next().unwrap_or(false),
            On::Now => true,
        };
        if r {
            ready.push(i);
        }
    }
    Ok(ready)
}

/// One bounded sleep until a queue may have a message or a descriptor may be
/// readable (see the module docs).
fn sleep_until_change(ons: &[WaitOn<'_>], deadline: Option<Deadline>) -> Result<()> {
    let until = Deadline::earliest(deadline, Deadline::after(owner_check_interval()));
    let fds = descriptors(ons);
    let queues: Vec<&RawQueue> = ons
        .iter()
        .filter_map(|o| match o.0 {
            On::Queue(q) => Some(q),
            _ => None,
        })
        .collect();
    if queues.is_empty() {
        let left = until.map(|d| d.remaining());
        sys::poll_readable(&fds, left).map_err(|source| Error::Io { op: "poll", source })?;
        return Ok(());
    }
    // Counted a sleeper of every queue first, then one more look: a put after
    // it sees the mark and wakes us.
    let marks = queues
        .iter()
        .map(|q| q.mark_waiting_for_message())
        .collect::<Result<Vec<_>>>()?;
    if !ready_now(ons)?.is_empty() {
        return Ok(());
    }
    let mut words: Vec<(&AtomicU32, u32)> = marks.iter().map(|m| m.word()).collect();
    if fds.is_empty() {
        futex::wait_any(&words, until.as_ref());
        return Ok(());
    }
    // Descriptors too: a helper polls them and wakes us through `fd_ready`.
    let fd_ready = AtomicU32::new(0);
    let flags = EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
    let stop = EventFd::from_flags(flags).map_err(|e| Error::Io {
        op: "eventfd",
        source: e.into(),
    })?;
    let raw_fds: Vec<i32> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    std::thread::scope(|s| {
        let helper = s.spawn(|| {
            let stop_fd = stop.as_fd();
            let mut all: Vec<BorrowedFd<'_>> = raw_fds
                .iter()
                // SAFETY: the descriptors are borrowed by `ons` for the whole
                // call, which outlives this scoped thread.
                .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
                .collect();
            all.push(stop_fd);
            let left = until.map(|d| d.remaining());
            if let Ok(r) = sys::poll_readable(&all, left) {
                if r.iter().any(|&x| x) {
                    fd_ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    futex::wake(&fd_ready, 1);
                }
            }
        });
        words.push((&fd_ready, 0));
        futex::wait_any(&words, until.as_ref());
        // An error (the counter at its maximum) leaves it readable anyway.
        let _ = stop.write(1);
        // A panic in the helper would be a bug in poll's wrapper; nothing to
        // recover there: readiness is looked at again by the caller anyway.
        let _ = helper.join();
    });
    Ok(())
}
