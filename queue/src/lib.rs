//! A lock-free bounded multi-process queue in shared memory, and `Pipe`.
//!
//! Python's `multiprocessing.Queue`, `SimpleQueue`, `JoinableQueue` and `Pipe` for
//! Rust processes — through shared memory instead of pipes and pickling.
//!
//! | Python | here |
//! |---|---|
//! | `Queue(maxsize)` | [`Queue<T>`] for plain-data `T`; [`ByteQueue`] for byte (or serde) messages |
//! | `SimpleQueue()` | [`Queue`] (it is already lock-free) |
//! | `JoinableQueue()`, `task_done`, `join` | [`JoinableQueue`]; [`JoinableByteQueue`] for byte (or serde) messages |
//! | `Pipe(duplex)`, `send`/`recv`, `send_bytes`/`recv_bytes`, `recv_bytes_into`, `poll`, `close` | [`Pipe::new`], [`Connection`] (`recv_bytes_into` grows a `Vec` to fit) |
//! | `queue.Full`, `queue.Empty` | [`Error::Full`], [`Error::Empty`], and [`Error::Timeout`], [`Error::Closed`], [`Error::Disconnected`] |
//!
//! The ring is Vyukov's bounded MPMC queue with 64-bit positions (see the `layout`
//! and `ring` modules): one CAS claims a slot (or a run of slots, for
//! [`Queue::put_many`]/[`Queue::get_many`]), a sequence number publishes it. A
//! blocking call spins briefly, then sleeps on a futex; a put or get makes a
//! wake-up syscall only when someone sleeps (the sleepers are one bit each in a
//! word the fast path reads). A producer that has published asks for the next
//! slot line for writing (`prefetchw` on x86-64), so that its next claim does not
//! wait for that line to come back from the consumers that freed it; a batch put
//! asks for all the lines it will fill (see `Ring::claim_next_line` in `ring`).
//!
//! # When a peer dies
//! A producer killed between claiming a slot and publishing it — in a `put`, or
//! anywhere in a [`Queue::put_many`] — does not stall the consumers: each claim is
//! announced (the whole run of slots, for a batch) before it is made, so a
//! consumer that waits on the slot past the owner-check interval finds the
//! claimer, sees that its thread is gone (its identity token guards against a reused
//! pid), skips the slot and counts the message in [`Queue::lost`]. Producers do
//! the same for a consumer killed between claiming messages and freeing their
//! slots. Nothing is delivered twice. When every process that had the queue
//! open for writing is gone, a blocked `get` returns [`Error::Disconnected`].
//! A consumer (producer) killed while asleep leaves its bit in a mask of
//! sleepers; once every recorded sleep has surely ended (about a second), the
//! first put (get) whose wake-up finds nobody asleep clears the bits of the
//! dead, so later ones make no syscall for them.
//!
//! Memory: a 9 KiB control block, then one slot per message of capacity. A slot
//! is an 8-byte sequence, the message (rounded up to 8 bytes) and, in a
//! [`ByteQueue`], its length; slots up to a cache line are rounded up to a power
//! of two and share lines (a `Queue<u64>` slot is 16 bytes, four to a line, and a
//! 1024-slot `Queue<u64>` takes 25 KiB), larger ones take whole lines.
//!
//! # Example: two processes
//! ```
//! use multiproc_queue::Queue;
//! let q = Queue::<u64>::new(1024)?;
//! // SAFETY: single-threaded doctest; the child only puts and _exits.
//! match unsafe { libc::fork() } {
//!     0 => {
//!         for i in 0..100 { q.put(i).unwrap(); }
//!         unsafe { libc::_exit(0) };
//!     }
//!     pid => {
//!         let sum: u64 = (0..100).map(|_| q.get().unwrap()).sum();
//!         assert_eq!(sum, 4950);
//!         unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
//!     }
//! }
//! # Ok::<(), multiproc_queue::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(multiproc_loom, allow(dead_code, unused_imports))]

mod error;
pub mod layout;
mod pipe;
mod primitive;
mod queue;
mod raw;
mod ring;

pub use error::{Error, Result};
pub use pipe::{Connection, Pipe, PIPE_CAPACITY, PIPE_MESSAGE};
pub use queue::{ByteQueue, JoinableByteQueue, JoinableQueue, Queue};

/// Runs the ring's checks and operations over `bytes` taken as a queue's memory
/// (control block and slots), as another process could have written it: the
/// entry point of the `queue_memory` fuzz target. Never panics, never touches
/// memory outside a copy of `bytes`. Returns how many messages the gets took,
/// or why the bytes were refused before any operation (too short, or the
/// geometry check's answer).
#[cfg(not(multiproc_loom))]
#[doc(hidden)]
pub fn __fuzz_ring_bytes(bytes: &[u8]) -> std::result::Result<usize, String> {
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    if bytes.len() < std::mem::size_of::<layout::Control>() {
        return Err(format!("{} bytes hold no control block", bytes.len()));
    }
    let Ok(mem) = Layout::from_size_align(bytes.len(), 128) else {
        return Err("no such allocation".into());
    };
    // SAFETY: a non-zero size; checked for NULL below.
    let Some(base) = std::ptr::NonNull::new(unsafe { alloc_zeroed(mem) }) else {
        return Err("allocation failed".into());
    };
    // SAFETY: base is valid for bytes.len() bytes and does not overlap `bytes`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.as_ptr(), bytes.len()) };
    // SAFETY: 128-aligned memory of at least a Control, made of atomics only.
    let ctl = unsafe { base.cast::<layout::Control>().as_ref() };
    let checked = layout::check(ctl, bytes.len());
    let mut taken = 0;
    if let Ok(checked) = &checked {
        // SAFETY: the geometry was checked against this allocation, which outlives the ring.
        let ring = unsafe { ring::Ring::new(base, checked) };
        // A fixed-length ring takes messages of exactly msg_max bytes.
        let item = vec![0x5a_u8; checked.msg_max];
        let msg = ring::Msg {
            ptr: item.as_ptr(),
            len: if checked.fixed {
                checked.msg_max
            } else {
                checked.msg_max.min(8)
            },
        };
        let mut scratch = vec![0u8; checked.msg_max.max(1)];
        let part = ring.participant();
        for _ in 0..4 {
            let _ = ring.try_push(part, &[msg, msg]);
            taken += ring
                .try_pop(part, 3, &mut scratch, |m| {
                    assert!(m.len() <= checked.msg_max)
                })
                .unwrap_or(0);
            let _ = ring.len();
            let _ = ring.has_room();
            let _ = ring.has_message();
            if ring.fits_fixed::<u64>() {
                // The fast paths of a Queue<u64>, as Queue checks before using them.
                // SAFETY: checked just above; a u64 is valid for any bytes.
                unsafe {
                    let _ = ring.push_one(part, &0x5a5a_u64);
                    taken += usize::from(ring.pop_one::<u64>(part).is_some());
                }
            }
            if !checked.fixed {
                // The fast paths of a ByteQueue, which attaches only to such a ring.
                let _ = ring.push_bytes_one(part, &item[..checked.msg_max.min(8)]);
                let mut out = Vec::new();
                if let Some(Ok(())) = ring.pop_bytes_one(part, &mut out) {
                    assert!(out.len() <= checked.msg_max);
                    taken += 1;
                }
            }
            let mut spins = 3;
            ring.spin_for_message(&mut spins);
            ring.spin_for_room(&mut spins);
        }
    }
    // SAFETY: allocated above with this layout.
    unsafe { dealloc(base.as_ptr(), mem) };
    checked.map(|_| taken)
}

/// The ring's algorithm on heap memory, for the loom models only.
#[cfg(multiproc_loom)]
#[doc(hidden)]
pub mod model {
    use std::alloc::{alloc_zeroed, Layout};
    use std::ptr::NonNull;

    use crate::layout::Control;
    pub use crate::ring::{Msg, PopFail, PushFail, Ring};

    /// A ring of `capacity` slots for messages of up to `msg_max` bytes on the
    /// heap (variable length, as a `ByteQueue`'s). Leaked: loom models are short.
    pub fn ring(capacity: usize, msg_max: usize) -> Ring {
        make(capacity, msg_max, false)
    }

    /// A fixed-length ring of `capacity` slots for `u64`s, as a `Queue<u64>`'s.
    pub fn fixed_ring(capacity: usize) -> Ring {
        make(capacity, 8, true)
    }

    /// `Queue::put`'s one-message fast path on a [`fixed_ring`]: whether `v` went in.
    pub fn push_one(ring: &Ring, v: u64) -> bool {
        assert!(ring.fits_fixed::<u64>(), "a fixed_ring");
        // SAFETY: checked just above.
        unsafe { ring.push_one(ring.participant(), &v) }
    }

    /// `Queue::get`'s one-message fast path on a [`fixed_ring`].
    pub fn pop_one(ring: &Ring) -> Option<u64> {
        assert!(ring.fits_fixed::<u64>(), "a fixed_ring");
        // SAFETY: checked just above; a u64 is valid for any bytes.
        unsafe { ring.pop_one(ring.participant()) }
    }

    /// `ByteQueue`'s one-message fast path of the puts on a [`ring`]: whether
    /// `msg` went in.
    pub fn push_bytes_one(ring: &Ring, msg: &[u8]) -> bool {
        ring.push_bytes_one(ring.participant(), msg)
    }

    /// `ByteQueue`'s one-message fast path of the gets on a [`ring`]: the
    /// message, if one was there (`Err` says what was corrupted).
    pub fn pop_bytes_one(ring: &Ring) -> Option<Result<Vec<u8>, String>> {
        let mut out = Vec::new();
        ring.pop_bytes_one(ring.participant(), &mut out)
            .map(|r| r.map(|()| out))
    }

    fn make(capacity: usize, msg_max: usize, fixed: bool) -> Ring {
        let len = crate::layout::total_len(capacity, msg_max, fixed);
        let layout = Layout::from_size_align(len, 128).expect("layout");
        // SAFETY: a non-zero size; the result is checked for NULL.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("alloc");
        // SAFETY: 128-aligned, len bytes, unused.
        unsafe { crate::layout::init(base.as_ptr(), capacity, msg_max, fixed, false) };
        // SAFETY: initialised just above.
        let checked = crate::layout::check(unsafe { base.cast::<Control>().as_ref() }, len)
            .expect("geometry");
        // SAFETY: the memory is leaked, so it outlives the ring.
        unsafe { Ring::new(base, &checked) }
    }

    /// Declares the calling (loom) thread dead, as a SIGKILL would.
    pub fn die() {
        crate::primitive::DEAD
            .lock()
            .unwrap()
            .push(crate::primitive::current_thread());
    }

    /// Sets the closed flag, as `Queue::close` does.
    pub fn close(ring: &Ring) {
        ring.ctl()
            .geometry
            .0
            .closed
            .store(1, crate::primitive::Ordering::Release);
    }

    /// Whether the closed flag is set.
    pub fn is_closed(ring: &Ring) -> bool {
        ring.ctl()
            .geometry
            .0
            .closed
            .load(crate::primitive::Ordering::Acquire)
            != 0
    }

    /// Claims a slot for putting and stops (a producer about to be killed).
    pub fn claim_put_and_stop(ring: &Ring) {
        ring.claim_put_and_stop(ring.participant());
    }
}
