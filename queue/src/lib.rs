//! A lock-free bounded multi-process queue in shared memory, and `Pipe`.
//!
//! Python's `multiprocessing.Queue`, `SimpleQueue`, `JoinableQueue` and `Pipe` for
//! Rust processes — through shared memory instead of pipes and pickling.
//!
//! | Python | here |
//! |---|---|
//! | `Queue(maxsize)` of any objects | [`ValueQueue<V>`] (feature `serde`): any serde type, any size, the type checked when opened |
//! | `Queue(maxsize)` of plain data | [`Queue<T>`]: `T` copied into a slot, no encoding |
//! | `Queue(maxsize)` of bytes | [`ByteQueue`]: any size (small ones in a slot each, large ones streamed) |
//! | `SimpleQueue()` | [`Queue`] (it is already lock-free) |
//! | a `Queue` that one process puts into and one gets from | [`SpscQueue<T>`]: no compare-and-swap and no barrier on a put or get; each end held by one process at a time |
//! | `JoinableQueue()`, `task_done`, `join` | [`JoinableQueue`]; [`JoinableByteQueue`] |
//! | `Pipe(duplex)`, `send`/`recv`, `send_bytes`/`recv_bytes`, `recv_bytes(maxlength)`, `recv_bytes_into`, `poll`, `close` | [`pipe()`], [`Connection`] (`recv_bytes_max`; `recv_bytes_into` grows a `Vec` to fit) |
//! | `connection.wait(objects, timeout)` | [`wait()`], [`wait_timeout`]: connections, queues, process sentinels |
//! | `queue.Full`, `queue.Empty`, `EOFError`, `BrokenPipeError` | [`Error::Full`], [`Error::Empty`], [`Error::Disconnected`], and [`Error::Timeout`], [`Error::Closed`] |
//!
//! Python's `Queue()` with no `maxsize` (or one of 0 or less) has no bound; a
//! ring in shared memory is sized when it is made, so here `maxsize` is at
//! least 1 (0 is [`Error::OutOfRange`]): give the most messages that may wait
//! at once (a slot of a `Queue<u64>` takes 16 bytes).
//!
//! # Blocking, timeouts, not waiting
//! Every blocking call comes in three forms, in every type of this crate: `op()`
//! waits as long as it takes; `try_op()` never waits (answering [`Error::Full`]
//! or [`Error::Empty`] where it would); `op_timeout(d)` waits at most `d`
//! (answering [`Error::Timeout`]). So `put`/`try_put`/`put_timeout`,
//! `get`/`try_get`/`get_timeout`, `recv_bytes`/`recv_bytes_timeout`,
//! `join`/`join_timeout`. Python's `put_nowait` and `get_nowait` are the
//! `try_` forms (rustdoc finds them under the Python names too); `poll()` looks
//! without waiting, as Python's does.
//!
//! The ring is Vyukov's bounded MPMC queue with 64-bit positions (see the `layout`
//! and `ring` modules): one CAS claims a slot (or a run of slots, for
//! [`Queue::put_many`]/[`Queue::get_many`]), a sequence number publishes it. A
//! blocking call spins briefly, yields a few times (a peer waiting for this CPU
//! runs at once), then sleeps on a futex; a put or get makes a wake-up syscall
//! only when someone sleeps (the sleepers are one bit each in a word the fast
//! path reads). A yield that handed a busy program beside the queue a time
//! slice, while the other side barely moved the ring, turns the thread's
//! yields into sleeps for a while
//! ([`multiproc_sync::futex::try_yield_watching`]): a request and its reply
//! through two queues, beside one busy process on two CPUs, took 37 µs with
//! every yield made, 0.7 µs with those yields turned into sleeps.
//!
//! A producer that has published asks for the next slot line for writing
//! (`prefetchw` on x86-64), so that its next claim does not wait for that line
//! to come back from the consumers that freed it; a batch put asks for all the
//! lines it will fill (see `Ring::claim_next_line` in `ring`). A put made
//! after its thread's last get spun waiting for its message (a reply, or the next
//! request of a thread that waits for each answer) does not ask: its consumer
//! likely waits too, and watches that next line once it has this one's
//! messages (`Ring::claim_next_line_unless_replying`).
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
//! open for writing is gone, a `get` on the empty queue returns
//! [`Error::Disconnected`]; a send into a pipe nobody can read any more does too.
//! A consumer (producer) killed while asleep leaves its bit in a mask of
//! sleepers; once every recorded sleep has surely ended (about a second), the
//! first put (get) whose wake-up finds nobody asleep clears the bits of the
//! dead, so later ones make no syscall for them.
//!
//! # How many at once
//! A queue keeps an entry for each thread that uses it, in any process, for
//! the dead-peer detection above: at most [`PARTICIPANTS`] (64) at once. A
//! thread takes its entry at its first put or get and keeps it while it
//! lives; a thread of a process that ended (or a thread that ended) leaves its
//! entry free for the next. One more is refused with
//! [`Error::TooManyParticipants`] at once, a typed error rather than a wait
//! (Python's `Queue` has no such bound). So with more producer processes than
//! that, a consumer that comes last could find every entry taken: take the
//! consumer's entry first ([`Queue::enter`] or [`ByteQueue::enter`] before the
//! producers start), or give
//! each group of producers a queue of its own (the process pool answers
//! through one queue for each 32 workers). A table that a peer wrote over —
//! a dead thread's entry announcing positions no claim can have — answers
//! [`Error::Corrupted`] ([`Corruption::Claim`]) instead, since it would
//! never free.
//!
//! Memory: a 10 KiB control block, then one slot per message of capacity. A slot
//! is an 8-byte sequence, the message (rounded up to 8 bytes) and, in a
//! [`ByteQueue`], its length; slots up to a cache line are rounded up to a power
//! of two and share lines (a `Queue<u64>` slot is 16 bytes, four to a line, and a
//! 1024-slot `Queue<u64>` takes 26 KiB), larger ones take whole lines. A byte
//! queue adds a 256 KiB lane for large messages (another size with
//! [`ByteQueue::with_lane`]), touched only as far as the largest message
//! streamed through it.
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

mod bytes;
mod ends;
mod error;
#[cfg(feature = "test-hooks")]
mod hooks;
mod joinable;
mod large;
mod layout;
#[cfg(multiproc_loom)]
#[doc(hidden)]
pub mod model;
mod pipe;
mod primitive;
mod raw;
mod ring;
// Its fast paths have no loom model: their barrier is membarrier(2) (see the
// module), which loom cannot express.
#[cfg(not(multiproc_loom))]
mod spsc;
mod sys;
mod typed;
#[cfg(feature = "serde")]
mod value;
// The waiting of `wait` is futexes and descriptors, outside the loom models.
#[cfg(not(multiproc_loom))]
mod wait;
mod waiter;

pub use bytes::ByteQueue;
pub use error::{Corruption, Error, Result};
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use hooks::{fuzz_lane_bytes, fuzz_ring_bytes, fuzz_seed};
pub use joinable::{Joinable, JoinableByteQueue, JoinableQueue};
pub use layout::{HOLDERS, LANE_BYTES, MAX_CAPACITY, MAX_MESSAGE, PARTICIPANTS};
pub use pipe::{pipe, pipe_with, Connection, PIPE_CAPACITY, PIPE_MESSAGE};
#[cfg(all(feature = "test-hooks", not(multiproc_loom)))]
#[doc(hidden)]
pub use spsc::{fuzz_spsc_bytes, refuse_membarrier_here};
#[cfg(not(multiproc_loom))]
pub use spsc::{Consumer, Producer, SpscQueue};
pub use typed::Queue;
#[cfg(feature = "serde")]
pub use value::{ValueQueue, VALUE_INLINE};
#[cfg(not(multiproc_loom))]
pub use wait::{wait, wait_timeout, Waitable};
