//! A process pool for Linux: Python's `multiprocessing.Pool` that never hangs
//! when a worker dies, and [`pmap()`].
//!
//! | Python | here |
//! |---|---|
//! | `Pool(processes, initializer, maxtasksperchild)` | [`Pool::new`], [`Pool::builder`] |
//! | `pool.apply(f, (x,))` | [`Pool::apply`]`(f, x)` |
//! | `pool.apply_async(f, (x,), callback, error_callback)` | [`Pool::apply_async`], [`Pool::apply_async_with`] → [`AsyncResult`] (`get`, `get_timeout`, `wait`, `ready`, `successful`) |
//! | `pool.map(f, xs, chunksize)`, `map_async` | [`Pool::map`], [`Pool::map_chunked`], [`Pool::map_async`] |
//! | `pool.starmap(f, pairs, chunksize)`, `starmap_async` | [`Pool::starmap`], [`Pool::starmap_chunked`], [`Pool::starmap_async`], [`Pool::starmap_async_with`] |
//! | `pool.imap(f, xs, chunksize, buffersize)`, `imap_unordered` | [`Pool::imap`], [`Pool::imap_with`], [`Pool::imap_unordered`], [`Pool::imap_unordered_with`] |
//! | `close()`, `join()`, `terminate()`, `with Pool() as p:` | [`Pool::close`], [`Pool::join`], [`Pool::terminate`], drop |
//! | a pool around one loaded model | [`Pool::with_fn`] → [`FnPool`] |
//! | `current_process().name` in a task: `ForkPoolWorker-N`; `parent_process()`: the pool's maker | the same ([`multiproc_proc::current_process`], [`multiproc_proc::parent_process`]; N counts this pool's workers, replacements too, where Python counts every process the program made; a worker is not daemonic here, so a task may start processes and `pmap`s) |
//!
//! # Tasks
//! A task names a function every worker has — a `fn` item, a closure that
//! captures nothing, or a `fn` pointer — and carries its argument and result
//! encoded with serde
//! (postcard; a value that serializes as one primitive number, such as a
//! `u64`, an `f64`, a `bool` or a newtype of one, travels as its bytes,
//! which spares a map of numbers most of its coding, and so does a tuple, an
//! array, a tuple struct or a struct of such numbers, 64 bytes of them at
//! most (and 16 fields when their kinds differ): its fields' kinds, then
//! their bytes); several arguments go as a tuple or through
//! [`starmap`](Pool::starmap). A `fn` item or a closure that captures
//! nothing (a type of its own, of no size) gets a trampoline made for it
//! alone, which decodes each argument, calls it inline and encodes each
//! result; a `fn` pointer, chosen as the program runs, is sent beside a
//! trampoline made for its types, which calls through it (an item of a
//! trivial map costs its workers about a fifth more that way). Either is
//! sent as its offset from a function of this crate, checked against the
//! worker's build identity, so a mismatched peer is an error and never a
//! jump. A closure that captures goes into the pool when it is made
//! ([`Pool::with_fn`]), or into [`pmap()`], whose workers are forked for the
//! call; given to a task, it does not compile, or (one that holds a
//! pointer's worth, such as a `u64`) it is [`Error::Captures`].
//!
//! ```compile_fail
//! let pool = multiproc_pool::Pool::new(1)?;
//! let (low, high) = (10u64, 20u64);
//! // Captures 16 bytes, which no worker has: refused as it is compiled.
//! let kept = pool.map(move |x: u64| x.clamp(low, high), 0..100)?;
//! # Ok::<(), multiproc_pool::Error>(())
//! ```
//!
//! Bytes: an argument or result that is a `Vec<u8>` travels as one block
//! (a blocking `apply` of 1 MiB: 0.3-0.4 ms here, a third of Python's
//! `Pool.apply` of as many `bytes`), as a `serde_bytes::ByteBuf` does.
//! Inside another type (a struct's field, a tuple) serde still encodes a
//! `Vec<u8>` a byte at a time, which took 1.1-2.3 ms for 1 MiB: mark such a
//! field `#[serde(with = "serde_bytes")]` (the report's bytes rows;
//! `benches/NOTES.md`).
//!
//! ```
//! fn checksum(data: Vec<u8>) -> u8 {
//!     data.iter().fold(0, |a, &b| a.wrapping_add(b))
//! }
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Named {
//!     name: String,
//!     #[serde(with = "serde_bytes")]
//!     data: Vec<u8>,
//! }
//! fn named_checksum(n: Named) -> u8 {
//!     checksum(n.data)
//! }
//! let pool = multiproc_pool::Pool::new(2)?;
//! assert_eq!(pool.apply(checksum, vec![1u8; 1 << 20])?, 0);
//! let named = Named { name: "ones".into(), data: vec![1u8; 1 << 20] };
//! assert_eq!(pool.apply(named_checksum, named)?, 0);
//! # Ok::<(), multiproc_pool::Error>(())
//! ```
//!
//! # Workers, and their deaths
//! The pool forks a small single-threaded *zygote* when it starts, and the
//! zygote forks every worker and every replacement: a pool made in a program
//! that runs threads works, and keeps working after it starts more. (It
//! waits for a thread in the middle of a panic to leave the panic hook
//! before it forks: a zygote forked meanwhile kept the hook's lock held,
//! and every worker hung at start. A lock of the program's own that another
//! thread holds at that moment stays held in the workers, as with any fork.) Each
//! worker has an inbox of its own and a slot in shared memory naming the
//! task and item it runs, written before the item starts; answers come back
//! through a queue shared by each group of 32 workers (a queue tracks at most
//! 64 threads), one message per task. So when a worker is
//! killed, crashes, aborts or exits mid-task, exactly the item it was running
//! fails with [`Error::WorkerDied`] (its pid and signal or exit code), the
//! rest of its tasks run on other workers, and the worker is replaced:
//! nothing waits forever. A thread of the pool waits on every worker's
//! pidfd, so an end is seen at once, not at the next periodic look (a task
//! that kills its worker answers `WorkerDied` in about 0.3 ms here; Python's
//! `ProcessPoolExecutor` takes 1-1.6 ms to answer `BrokenProcessPool`, and is
//! then broken). An item of a chunk that finished before the one
//! that crashed lost its answer with the worker and runs a second time; no
//! item after it ran. A `map`, whose answer is then that failure, drops its
//! chunks above it still queued in the parent (and the dead worker's), rather
//! than run them to discard their results. A task that panics answers
//! [`Error::Panicked`] with the
//! message and location, and its worker goes on. An initializer that fails
//! three workers in a row fails everything pending with
//! [`Error::InitializerFailed`] instead of respawning forever; so do three
//! workers in a row killed from outside before they take a task (the pool
//! cannot tell the two apart). A worker that cannot be replaced (its zygote
//! killed from outside, a fork refused at a limit of processes) stops the
//! pool the same way, with [`Error::ReplacementFailed`] saying why (a
//! zygote's workers die with it). The zygote is not made again: it is a
//! fork of the program as it was when the pool started, and a fork made
//! later, beside the program's threads, could copy a lock one of them holds
//! (Python's `Pool` forks each replacement from the program itself, and
//! starts its `forkserver` again after a death, a fresh interpreter). A task
//! whose unsafe code writes over the memory the pool shares with its workers (an
//! inbox, the answer queue) is found by the queues' checks (or by an inbox
//! that reads as closed while the pool runs): the pool stops its workers and
//! fails every task not answered, and every later one, with
//! [`Error::Corrupted`], rather than wait for answers that cannot come or
//! trust ones it cannot check; make a new pool. So does a pool whose
//! descriptors (its workers' pidfds) other code in the process closed
//! behind its back, against Rust's I/O safety (a late "close every
//! descriptor"): it no longer takes each worker for dead, and no thread of
//! it spins on a closed descriptor (a debug build of `std` aborts such a
//! program first, at its own check, when the descriptor is dropped). Workers die
//! with the pool's process (parent-death signals down the chain), and
//! dropping the pool kills them: nothing is left behind, and no segment is
//! named (the pool's memory is anonymous, inherited through `fork`).
//!
//! # Which worker runs a task
//! Python's `Pool` gives each task to whichever worker is free. Here tasks
//! are sent ahead into the inboxes (a worker that waited for the parent
//! between short tasks would idle most of the time), to the worker with the
//! fewest outstanding, but only as many as cover about a millisecond of
//! work by the measured time of the task's function (at most
//! [`Builder::inbox_depth`], at least the running task and the next): behind
//! a long task at most one more waits while another worker is free. A
//! function's first tasks, not timed yet, go two to a worker. Short tasks
//! (by that measured time) go to a worker that is awake on another CPU
//! while it has under 20 µs of work queued, rather than to one that would
//! need waking (asleep on its inbox, or sharing the sender's CPU): a wake
//! costs more than that, and a `map` of ten trivial items took 23-25 µs
//! spread over both workers of a 2-CPU pool, 4-5 µs on the awake one. A
//! task sent to an idle worker is timed too while its function has no
//! measure (or one that says slow) and the worker takes it at once: the
//! single items of an `imap` get one (an `imap` of two trivial items took
//! 13-14 µs, 1.3-2.5 once timed). An idle worker that last waited on the
//! same CPU as a worker with tasks is passed over the same way (the two
//! could only take turns there): an `imap` of ten trivial items, its two
//! workers left on one CPU by the scheduler, took 16-20 µs spread over
//! both, 5.5-7 on one.
//!
//! # Who does the work in this process
//! No thread per duty: whoever waits on the pool reads its answers (so a
//! blocking [`apply`](Pool::apply) sees its answer the moment the worker
//! publishes it), and a background thread drives only while work is
//! outstanding and nobody waits, nor drove in the last 200 µs (a caller
//! that takes its results in windows drives each window itself; the
//! background thread driving beside it made windows of 64 tasks 1.6-2.8
//! times slower). Callbacks run on whichever of these files the
//! answer. (Besides, a thread a worker puts messages larger than a slot
//! through its inbox's lane, and one thread waits on the workers' pidfds
//! and wakes the driver when one ends; neither reads answers.)
//!
//! Any number of threads may call one pool. A queue keeps an entry for each
//! thread that uses it (64 at most, [`multiproc_queue::PARTICIPANTS`]); the
//! workers and the pool's own threads take theirs when they start, so a
//! program whose callers took all the rest still has its tasks sent and
//! answered: a caller that finds no entry free, in the answers' queue or in
//! an inbox, leaves the sending and the driving to the background thread
//! (before, with some 60 threads that had called it, a later caller waited
//! for ever and a worker that had not answered yet left). It tries the
//! queues again a second later, when the threads that held their entries
//! may have ended.
//!
//! Whoever waits (this process for an answer, a worker for its next task)
//! spins for a few microseconds before it sleeps, which makes a round trip
//! between two CPUs a fraction of a microsecond. While the last task sent
//! was of a function measured short, this process looks for answers for
//! 40 µs more before it sleeps: on a VM, a sleep and its wake-up cost tens
//! of microseconds (a futex round trip took 38-41 µs on an AMD EPYC one), and
//! a caller that takes results in batches (a few dozen `apply_async`s, then
//! their `get`s) slept at each batch's tail while its workers, left without
//! tasks, went to sleep too (batches of 64 on two CPUs, eight alternated
//! runs: 0.80-1.41 µs a task before, median 1.02; 0.59-1.00 with the watch,
//! median 0.69). When the two sides find
//! themselves on one CPU (a scheduler that puts a woken task beside the one
//! that woke it does this), each yields to the other instead, and a worker
//! that keeps finding its caller on its own CPU moves itself to another of
//! the CPUs it may run on (its allowed set is left as it was). A blocking
//! `apply` on one shared CPU took 17.6 µs before, 3.9 µs with the yields. In
//! the same way a worker that starts a chunk of a map while another worker,
//! woken with it, waits to start on the same CPU moves off, so that both
//! run at once; and for the first milliseconds of a [`pmap()`] its parent moves
//! one of two workers it finds runnable on one CPU.
//!
//! A yield runs whichever task is runnable on the CPU, and beside a busy
//! program that is no part of the pool (a build, a browser, another job on a
//! shared machine) it hands that program its whole time slice, 1-4 ms here.
//! So every yield of the pool's threads and workers is timed
//! ([`multiproc_sync::futex::try_yield`]): after one that took that long, a
//! thread sleeps at once instead for the next 20 ms, and the put that wakes
//! it runs it again within microseconds. With one busy process on a
//! two-CPU machine, the pipelined `apply_async` took 13-60 µs a task before
//! (the queues' yields, made whatever they cost, held the workers off their
//! tasks for slices at a time) and 0.7 µs after (0.43 µs on the idle
//! machine); a blocking `apply` 25-50 µs before, 1.7 µs after.
//!
//! A burst of tasks out at once grows the pool's tables (a million
//! `apply_async`s, about 300 MB); once the pool has had nothing outstanding
//! for about ten seconds, the background thread gives that room back
//! (bursts a few seconds apart keep it), and the buffers kept for the next
//! large map (up to 32 MiB). Held memory matters beyond its size: every
//! `fork` of the process copies its page tables.
//!
//! The same holds for the zygote, a copy of this process as it was when the
//! pool was made: each worker it forks, at the start and for each
//! replacement, copies the page tables of the memory the program had
//! touched by then. With workers replaced after every task
//! ([`Builder::maxtasksperchild`] of 1), a task took 0.2-0.3 ms in a small
//! process, 2.8 ms after the program had touched 100 MB, 9 ms after 500 MB
//! and 17 ms after 1 GB (Python's pool, which forks its main process for a
//! replacement, 1.4, 3.7 and 10 ms for the first three). Make the pool
//! before large allocations where that matters.
//!
//! # Blocking, timeouts, not waiting
//! As everywhere in the workspace: `op()` waits as long as it takes,
//! `op_timeout(d)` at most `d` ([`Error::Timeout`]):
//! [`AsyncResult::get`]/[`AsyncResult::get_timeout`],
//! [`AsyncResult::wait`]/[`AsyncResult::wait_timeout`],
//! [`Pool::join`]/[`Pool::join_timeout`]. A per-task limit is a setting
//! ([`Builder::task_timeout`]).
//!
//! # Example
//! ```
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! let pool = multiproc_pool::Pool::new(2)?;
//! assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
//! let pending = pool.apply_async(square, 12)?;
//! assert_eq!(pending.get()?, 144);
//! # Ok::<(), multiproc_pool::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod buffers;
mod builder;
mod colocation;
mod core;
mod error;
mod handle;
#[cfg(feature = "test-hooks")]
mod hooks;
mod imap;
mod job;
mod pace;
mod pmap;
mod pool;
mod raw;
mod seq;
mod task;
mod wire;
mod worker;

pub use builder::{Builder, DEFAULT_INBOX, DEFAULT_LANE, DEFAULT_MAX_INLINE};
pub use error::{Error, Exit, Result};
pub use handle::{AsyncResult, MapResult};
pub use imap::{IMap, IMapUnordered, IMAP_BUFFER};
pub use pmap::{pmap, pmap_with, PmapOptions};
pub use pool::{default_processes, FnPool, Pool};

/// This build's identity: what a worker checks before it takes a function
/// named by its offset (see [Tasks](crate#tasks)). Two processes that run the
/// same executable agree on it; another build of the program (or another
/// program) does not. A pool in other processes that are not forked from this
/// one, such as `multiproc-pool-mpi`'s ranks, compares it before sending them
/// any task.
pub fn build_id() -> u64 {
    wire::build_id()
}

/// Not part of the API: what a task's function is, for the MPI pool, which
/// sends its tasks as the pool does (see [Tasks](crate#tasks)).
#[doc(hidden)]
pub use pool::{function_of, function_of2, Function};
#[doc(hidden)]
pub use wire::conjure;

/// Not part of the API: a value's encoding as the pool's tasks carry it
/// (postcard; a `Vec<u8>` as one block), for the MPI pool's.
#[doc(hidden)]
pub use wire::{decode_from as decode_value, encode_into as encode_value};

/// Not part of the API: the table the pool keeps its jobs and tasks in,
/// which the MPI pool's rank 0 uses for its own (see the `seq` module).
#[doc(hidden)]
pub use seq::SeqTable;

#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use hooks::{die_while_answering, fuzz_messages};
