//! [`Pool`], its [`Builder`], and [`FnPool`].

use std::any::TypeId;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{mpsc, Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_proc::ForkServer;
use multiproc_queue::ByteQueue;
use multiproc_shm::{Location, SharedSlice};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::core::{
    task_buffer, Finish, Finisher, Gathered, Inner, Job, Part, Starts, State, Target, Task,
};
use crate::error::{Error, Result};
use crate::raw;
use crate::wire::{self, TARGET_CLOSURE, TARGET_FN};
use crate::worker::{self, Channels, Closure, Setup, Slot, ANSWER_GROUP};

/// Default most tasks a worker's inbox holds (sent, not yet answered); long
/// tasks are sent fewer at a time (see the crate's "Which worker runs a task").
/// Sixteen: pipelined trivial `apply_async`s ran about 7 % faster than with
/// eight (each driving round files and sends more at once), and only trivial
/// tasks fill it. (Each slot is a queue slot of the largest inline message,
/// mapped but touched only as far as messages reach.)
pub const DEFAULT_INBOX: usize = 16;
/// Default largest message (arguments or results of one task) carried in a
/// queue slot; larger ones stream through the queue's lane. A lane carries
/// one message at a time, so a worker whose next chunk streams gets it only
/// once it has read the one before, and a streamed message costs about 15-20
/// µs of hand-offs on two vCPUs: when this was 16 KiB, a `map` of a million
/// numbers in chunks of 2 000 (18 KB) took 9-11 ns an item, against 4-5 in
/// chunks of 1 800, which fit (`benches/NOTES.md`). At 128 KiB, only chunks
/// large enough to amortise that cost stream. Slots are mapped at this size
/// but touched only as far as the messages written into them reach: a slot
/// costs address space (16 slots for a worker's inbox, 17 for each worker in
/// the answers' queues), not memory.
pub const DEFAULT_MAX_INLINE: usize = 128 * 1024;
/// Default bytes of the lane of each worker's inbox and of the answers'
/// queue (see [`Builder::lane_bytes`]): a map of a million numbers in Python's
/// chunks sends chunks and answers of about 1.1 MB.
pub const DEFAULT_LANE: usize = 2 << 20;

/// Configures a [`Pool`] (Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild)`, and this crate's own knobs).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let pool = multiproc_pool::Pool::builder()
///     .processes(2)
///     .maxtasksperchild(100)
///     .task_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(pool.processes(), 2);
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
#[must_use]
pub struct Builder {
    processes: usize,
    initializer: Option<Box<dyn Fn() + Send>>,
    max_tasks: Option<u64>,
    inbox: usize,
    max_inline: usize,
    lane: usize,
    task_timeout: Option<Duration>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            processes: 0,
            initializer: None,
            max_tasks: None,
            inbox: DEFAULT_INBOX,
            max_inline: DEFAULT_MAX_INLINE,
            lane: DEFAULT_LANE,
            task_timeout: None,
        }
    }
}

impl Builder {
    /// Worker processes; 0 (the default) is one per CPU this process may use
    /// (see [`default_processes`]).
    pub fn processes(mut self, n: usize) -> Builder {
        self.processes = n;
        self
    }

    /// Runs `f` in each worker when it starts, before its first task (Python's
    /// `initializer`; capture what would be `initargs`). A worker whose
    /// initializer panics or kills it is replaced; after three such deaths in
    /// a row the pool stops replacing them and fails every pending task with
    /// [`Error::InitializerFailed`].
    pub fn initializer(mut self, f: impl Fn() + Send + 'static) -> Builder {
        self.initializer = Some(Box::new(f));
        self
    }

    /// Replaces each worker after it has run `n` tasks (Python's
    /// `maxtasksperchild`; a task is one chunk of a map). As in Python, `n`
    /// is at least 1: [`build`](Builder::build) refuses 0 with
    /// [`Error::OutOfRange`].
    pub fn maxtasksperchild(mut self, n: u64) -> Builder {
        self.max_tasks = Some(n);
        self
    }

    /// The most tasks sent ahead to each worker (default [`DEFAULT_INBOX`]),
    /// 1 to 2³⁰ ([`build`](Builder::build) refuses others with
    /// [`Error::OutOfRange`]); tasks measured to take long go fewer at a time
    /// (see the crate's "Which worker runs a task").
    pub fn inbox_depth(mut self, n: usize) -> Builder {
        self.inbox = n;
        self
    }

    /// The largest task message carried in a queue slot (default
    /// [`DEFAULT_MAX_INLINE`]); larger ones stream through the lane, one at
    /// a time. Any size works either way; every slot of the pool's queues is
    /// mapped at this size (touched only as far as messages reach).
    pub fn max_inline(mut self, bytes: usize) -> Builder {
        self.max_inline = bytes;
        self
    }

    /// Bytes of the lane of each worker's inbox and of the answers' queue
    /// (default [`DEFAULT_LANE`]), through which a task or an answer larger
    /// than [`max_inline`](Builder::max_inline) streams. One up to this size
    /// is sent whole without waiting for its reader: a map's next chunk goes
    /// into its worker's inbox while the worker still runs the one before,
    /// and a worker's answer goes out while the parent is busy. A larger one
    /// streams as the reader makes room, the two sides taking turns when they
    /// share a CPU. A lane's memory is touched only up to the largest message
    /// sent through it. A multiple of 64 from 64 bytes to 1 GiB
    /// ([`Error::Queue`] with `LaneSize` otherwise, from `build`).
    pub fn lane_bytes(mut self, bytes: usize) -> Builder {
        self.lane = bytes;
        self
    }

    /// Kills the worker of an item that runs longer than `limit`; the item
    /// fails with [`Error::TimedOut`] and the worker is replaced. Checked
    /// every few milliseconds while someone waits on the pool, or its
    /// background thread drives it.
    pub fn task_timeout(mut self, limit: Duration) -> Builder {
        self.task_timeout = Some(limit);
        self
    }

    /// Starts the pool.
    ///
    /// # Errors
    /// [`Error::Shm`]/[`Error::Queue`] if the shared memory cannot be made,
    /// [`Error::Proc`] if the processes cannot be started.
    pub fn build(self) -> Result<Pool> {
        self.start(None)
    }

    /// Starts a pool around one closure: `f` is captured once, here, and
    /// every worker (and replacement) inherits it — a model loaded once, a
    /// table built once — so tasks carry only the arguments.
    ///
    /// # Errors
    /// As for [`build`](Builder::build).
    pub fn build_with_fn<A, R>(self, f: impl Fn(A) -> R + Send + 'static) -> Result<FnPool<A, R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let closure: Box<Closure> =
            Box::new(move |input, count, out, at| wire::run_items(&f, input, count, out, at));
        Ok(FnPool {
            pool: self.start(Some(closure))?,
            _types: PhantomData,
        })
    }

    fn start(self, closure: Option<Box<Closure>>) -> Result<Pool> {
        let processes = if self.processes == 0 {
            default_processes()
        } else {
            self.processes
        };
        const MAX_PROCESSES: usize = 4096;
        if processes > MAX_PROCESSES {
            return Err(Error::OutOfRange {
                what: "a pool's processes",
                value: processes as u64,
                min: 0,
                max: MAX_PROCESSES as u64,
            });
        }
        if self.max_tasks == Some(0) {
            return Err(Error::OutOfRange {
                what: "a pool's maxtasksperchild",
                value: 0,
                min: 1,
                max: u64::MAX,
            });
        }
        let depth = self.inbox;
        if !(1..=multiproc_queue::MAX_CAPACITY).contains(&depth) {
            return Err(Error::OutOfRange {
                what: "a pool's inbox depth",
                value: depth as u64,
                min: 1,
                max: multiproc_queue::MAX_CAPACITY as u64,
            });
        }
        // An answer queue for each group of workers, with room for every
        // answer its workers can have outstanding: a worker never waits on a
        // full answer queue while the driver waits on it. (Too many for a
        // queue is its `OutOfRange`.)
        let results = (0..processes.div_ceil(ANSWER_GROUP).max(1))
            .map(|g| {
                let workers = (processes - g * ANSWER_GROUP).min(ANSWER_GROUP);
                ByteQueue::with_lane(
                    Location::Anonymous,
                    workers.saturating_mul(depth).saturating_add(workers + 1),
                    self.max_inline,
                    self.lane,
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let inboxes = (0..processes)
            .map(|_| ByteQueue::with_lane(Location::Anonymous, depth, self.max_inline, self.lane))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let slots = SharedSlice::<Slot>::anonymous(processes)?;
        let channels = Arc::new(Channels {
            results,
            inboxes,
            slots,
        });
        let setup = Setup {
            channels: Arc::clone(&channels),
            initializer: self.initializer,
            closure,
            max_tasks: self.max_tasks,
            build: wire::build_id(),
        };
        let (task_timeout, max_tasks) = (self.task_timeout, self.max_tasks);
        // The pool's thread forks the zygote: a zygote dies with the thread
        // that forked it (its parent-death signal), and this thread lives as
        // long as the pool.
        let (tx, rx) = mpsc::channel();
        let background = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || {
                // Its workers set the panic hook: see `no_panic_in_flight`.
                worker::no_panic_in_flight();
                let zygote = ForkServer::builder()
                    .entry_fn("worker", move |args| {
                        let word = |i: usize| {
                            args.get(i..i + 4)
                                .and_then(|b| b.try_into().ok())
                                .map_or(u32::MAX, u32::from_le_bytes)
                        };
                        worker::run(&setup, word(0) as usize, word(4))
                    })
                    .allow_threads()
                    .start();
                // The watcher's eventfd, after the zygote's fork: no worker
                // holds a copy.
                let wake = crate::core::watcher_wake().map_err(|source| {
                    Error::Proc(multiproc_proc::Error::Io {
                        op: "make an eventfd",
                        source,
                    })
                });
                let inner = match (zygote, wake) {
                    (Ok(z), Ok(wake)) => Arc::new(Inner::new(
                        channels,
                        z,
                        processes,
                        depth,
                        task_timeout,
                        max_tasks,
                        wake,
                    )),
                    (Err(e), _) => {
                        let _ = tx.send(Err(Error::from(e)));
                        return;
                    }
                    (_, Err(e)) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if tx.send(Ok(Arc::clone(&inner))).is_ok() {
                    inner.background();
                }
            })
            .map_err(|source| {
                Error::Proc(multiproc_proc::Error::Io {
                    op: "spawn a thread",
                    source,
                })
            })?;
        let inner = rx.recv().map_err(|_| {
            Error::Proc(multiproc_proc::Error::ServerGone {
                why: multiproc_proc::Gone::Closed,
            })
        })??;
        // From here on, dropping `pool` stops what was started.
        let mut pool = Pool {
            inner,
            background: Some(background),
            helpers: Vec::new(),
        };
        for w in 0..pool.processes() {
            let streaming = Arc::clone(&pool.inner);
            pool.helpers.push(
                std::thread::Builder::new()
                    .name("multiproc-pool-streamer".into())
                    // It only puts a message's bytes through a queue.
                    .stack_size(256 << 10)
                    .spawn(move || streaming.streamer(w))
                    .map_err(|source| {
                        Error::Proc(multiproc_proc::Error::Io {
                            op: "spawn a thread",
                            source,
                        })
                    })?,
            );
        }
        let watching = Arc::clone(&pool.inner);
        pool.helpers.push(
            std::thread::Builder::new()
                .name("multiproc-pool-watcher".into())
                // It only polls descriptors.
                .stack_size(256 << 10)
                .spawn(move || watching.watcher())
                .map_err(|source| {
                    Error::Proc(multiproc_proc::Error::Io {
                        op: "spawn a thread",
                        source,
                    })
                })?,
        );
        pool.inner.start_workers()?;
        Ok(pool)
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`, for Linux,
/// that never hangs when a worker dies.
///
/// Tasks name a function every worker has: a `fn` item, a closure that
/// captures nothing, or a `fn` pointer (see [Tasks](crate#tasks); every
/// call that takes a function answers [`Error::Captures`] for a closure
/// that holds a pointer's worth of data, and a larger one does not
/// compile), whose arguments and result travel encoded with serde
/// (postcard). Several arguments travel as a tuple, or through
/// [`starmap`](Pool::starmap). For a closure that captures (a model loaded
/// once), make the pool around it: [`Pool::with_fn`].
///
/// Dropping the pool terminates it (Python's `with Pool() as p:`); to let
/// queued work finish first, [`close`](Pool::close) then [`join`](Pool::join).
///
/// A pool belongs to the process that made it: a forked child's copy answers
/// [`Error::OtherProcess`] and its drop leaves the workers alone.
///
/// # Examples
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// let pool = multiproc_pool::Pool::new(2)?;
/// assert_eq!(pool.apply(square, 7)?, 49);
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// let r = pool.apply_async(square, 3)?;
/// assert_eq!(r.get()?, 9);
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub struct Pool {
    inner: Arc<Inner>,
    background: Option<JoinHandle<()>>,
    /// The pool's other threads: a streamer per worker (see
    /// `Inner::streamer`) and the watcher of the workers' ends
    /// (`Inner::watcher`).
    helpers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Not part of the API: whether this thread leaves this pool's queues to
    /// its background thread for now (it found no entry free in them).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn bystander_here(&self) -> bool {
        self.inner.no_entry_here()
    }

    /// A pool of `processes` workers (0: one per CPU this process may use, see
    /// [`default_processes`]).
    ///
    /// # Errors
    /// As for [`Builder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for the other settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A pool of `processes` workers around `f` (see [`Builder::build_with_fn`]).
    ///
    /// # Errors
    /// As for [`Builder::build`].
    ///
    /// # Examples
    /// ```
    /// let table: Vec<u64> = (0..1000).map(|i| i * 3).collect(); // built once
    /// let pool = multiproc_pool::Pool::with_fn(2, move |i: usize| table[i])?;
    /// assert_eq!(pool.map([1, 10, 100])?, [3, 30, 300]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn with_fn<A, R>(
        processes: usize,
        f: impl Fn(A) -> R + Send + 'static,
    ) -> Result<FnPool<A, R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::builder().processes(processes).build_with_fn(f)
    }

    /// Its number of worker processes.
    pub fn processes(&self) -> usize {
        self.inner.processes
    }

    /// The `buffersize` of `imap` and `imap_unordered`: [`IMAP_BUFFER`], or
    /// `processes` if more.
    fn imap_buffersize(&self) -> usize {
        self.processes().max(IMAP_BUFFER)
    }

    /// The pids of its workers now (a dead one is replaced under a new pid).
    pub fn pids(&self) -> Vec<u32> {
        self.inner.pids()
    }

    /// Runs `f(args)` in a worker and waits for the result (Python's `apply`).
    ///
    /// # Errors
    /// The task's own failure ([`Error::Panicked`], [`Error::WorkerDied`],
    /// [`Error::TimedOut`], a codec error), or [`Error::Closed`].
    pub fn apply<A, R>(&self, f: impl Fn(A) -> R + Copy + 'static, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_target(target_of(f)?, args)
    }

    /// Sends `f(args)` to a worker; the result comes through the handle
    /// (Python's `apply_async`).
    ///
    /// # Errors
    /// [`Error::Closed`], or [`Error::EncodeArgs`].
    pub fn apply_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = target_of(f)?;
        self.submit_one(target, args, None)
    }

    /// [`apply_async`](Pool::apply_async) with Python's `callback` and
    /// `error_callback`: one of them runs in this process when the task ends,
    /// on the thread that drives the pool then (one waiting on it, or the
    /// pool's background thread); keep them short. A callback that panics
    /// makes the job's result [`Error::CallbackPanicked`]; the pool goes on.
    /// A callback may call the pool again and wait (`apply`, `get`): the
    /// thread that runs it drives the pool meanwhile (Python's pool
    /// deadlocks there).
    ///
    /// The callbacks run whether or not the handle is kept, as Python's do
    /// when its `AsyncResult` is dropped (`pool.apply_async(f, callback=cb)`):
    /// a handle dropped before they have run leaves its job to the pool until
    /// they have, then the job is forgotten. [`terminate`](Pool::terminate)
    /// drops the callbacks of the jobs it cuts short.
    ///
    /// The pool drops results of yours on its own threads where nobody is
    /// left to take them: a forgotten job's outcome, the result a panicking
    /// callback was given, a map's results decoded before an item that
    /// failed. A `Drop` of yours that panics there is printed by the panic
    /// hook and goes no further: the thread, and the job's answer, go on.
    ///
    /// # Errors
    /// As for [`apply_async`](Pool::apply_async).
    ///
    /// # Examples
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// fn cube(x: i64) -> i64 { x * x * x }
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// let s = Arc::clone(&seen);
    /// let r = pool.apply_async_with(cube, 3, move |v| s.lock().unwrap().push(*v), |_| {})?;
    /// assert_eq!(r.get()?, 27);
    /// assert_eq!(*seen.lock().unwrap(), [27]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn apply_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = target_of(f)?;
        let finisher = finisher(decode_one::<R>, callback, error_callback);
        self.submit_one(target, args, Some(finisher))
    }

    /// `f` over `items`, in order (Python's `map`), in chunks of Python's size:
    /// `len / (4 × processes)`, rounded up.
    ///
    /// # Errors
    /// [`Error::Item`] with the lowest failing index and its error;
    /// [`Error::Closed`]. Once a worker's death or a timeout fails an item,
    /// the map's chunks wholly above it still queued in the parent (or sent
    /// to the dead worker) are not run (the answer is that failure, or a
    /// lower one, already: a map whose
    /// every item kills its worker fails after a few deaths, not one an
    /// item); [`map_each_async`](Pool::map_each_async) runs every item and
    /// answers each one's outcome.
    pub fn map<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_chunked(f, items, None)?.get()
    }

    /// [`map`](Pool::map) with a chunk size of the caller's choosing (Python's
    /// `chunksize`). A `chunksize` of 0 counts as 1 (Python's `map` answers
    /// a list of `None`s for it).
    ///
    /// # Errors
    /// As for [`map`](Pool::map).
    pub fn map_chunked<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_chunked(f, items, Some(chunksize))?.get()
    }

    /// [`map`](Pool::map) without waiting (Python's `map_async`).
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Item`] if an argument cannot be encoded.
    pub fn map_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_chunked(f, items, None)
    }

    /// [`map_async`](Pool::map_async) with a chunk size.
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    pub fn map_async_chunked<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = target_of(f)?;
        self.submit_map(target, items, chunksize, None)
    }

    /// [`map_async`](Pool::map_async) with Python's `callback` (given the
    /// whole list) and `error_callback` (see
    /// [`apply_async_with`](Pool::apply_async_with)).
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    pub fn map_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = target_of(f)?;
        let finisher = finisher(decode_map::<R>, callback, error_callback);
        self.submit_map(target, items, None, Some(finisher))
    }

    /// [`map_async`](Pool::map_async) that answers every item's own outcome,
    /// in order, instead of the first failure: an item that panicked or whose
    /// worker died fails alone, and the others' results are kept (as
    /// [`imap`](Pool::imap) gives them, but for the whole input at once and in
    /// chunks). `chunksize` `None` is Python's.
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    ///
    /// # Examples
    /// ```
    /// fn inverse(x: u32) -> u32 { 12 / x }
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// let each = pool.map_each_async(inverse, [1, 0, 3], None)?.get()?;
    /// assert_eq!(each[0].as_ref().ok(), Some(&12));
    /// assert!(matches!(each[1], Err(multiproc_pool::Error::Panicked { .. })));
    /// assert_eq!(each[2].as_ref().ok(), Some(&4));
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn map_each_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_each(target_of(f)?, items, chunksize, None, Outcomes::Each)
    }

    /// [`map_each_async`](Pool::map_each_async) with Python's `callback`,
    /// given every item's outcome and run in this process as for
    /// [`apply_async_with`](Pool::apply_async_with). It runs even when nobody
    /// asks the handle, and when the handle is dropped (as there). Items
    /// fail one by one here, so there is no `error_callback`: a job that is
    /// cancelled or whose pool is terminated ends without a callback, as
    /// every job of the pool does.
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    ///
    /// # Examples
    /// ```
    /// use std::sync::mpsc;
    /// fn inverse(x: u32) -> u32 { 12 / x }
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// let (tx, rx) = mpsc::channel::<Vec<bool>>();
    /// // The handle is not kept: the callback runs all the same.
    /// pool.map_each_async_with(inverse, [1, 0, 3], None, move |each| {
    ///     tx.send(each.iter().map(|r| r.is_ok()).collect()).unwrap();
    /// })?;
    /// assert_eq!(rx.recv().unwrap(), [true, false, true]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn map_each_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<Result<R>>) + Send + 'static,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_each_as(f, items, chunksize, callback, Outcomes::Each)
    }

    /// [`map_each_async`](Pool::map_each_async) for [`starmap`](Pool::starmap)'s
    /// two-argument functions.
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    pub fn starmap_each_async<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.submit_each(target_of2(f)?, items, chunksize, None, Outcomes::Each)
    }

    /// [`starmap_each_async`](Pool::starmap_each_async) with a callback, as
    /// [`map_each_async_with`](Pool::map_each_async_with).
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    pub fn starmap_each_async_with<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<Result<R>>) + Send + 'static,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_each_as(f, items, chunksize, callback, Outcomes::Each)
    }

    /// [`map_each_async_with`](Pool::map_each_async_with), except that once a
    /// worker's death or a timeout fails an item, the items above it that
    /// have not been sent yet are not run: each answers
    /// [`Error::Terminated`]. Not part of the API: how the MPI pool's ranks
    /// run a chunk of a `map`, which answers only its lowest failing item, so
    /// that a map whose every item kills its worker costs a few deaths, not
    /// one (and a new worker) an item.
    #[doc(hidden)]
    pub fn map_each_below_death_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<Result<R>>) + Send + 'static,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_each_as(f, items, chunksize, callback, Outcomes::EachBelowDeath)
    }

    /// [`map_each_below_death_async_with`](Pool::map_each_below_death_async_with)
    /// for two-argument functions. Not part of the API.
    #[doc(hidden)]
    pub fn starmap_each_below_death_async_with<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<Result<R>>) + Send + 'static,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_each_as(f, items, chunksize, callback, Outcomes::EachBelowDeath)
    }

    /// `f(a, b)` over pairs, in order (Python's `starmap`; for more
    /// arguments, take a tuple and use [`map`](Pool::map)).
    ///
    /// # Errors
    /// As for [`map`](Pool::map).
    ///
    /// # Examples
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn starmap<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_async_chunked(f, items, None)?.get()
    }

    /// [`starmap`](Pool::starmap) with a chunk size of the caller's choosing
    /// (Python's `chunksize`).
    ///
    /// # Errors
    /// As for [`map`](Pool::map).
    pub fn starmap_chunked<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_async_chunked(f, items, Some(chunksize))?.get()
    }

    /// [`starmap`](Pool::starmap) without waiting (Python's `starmap_async`).
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    ///
    /// # Examples
    /// ```
    /// fn mul(a: u64, b: u64) -> u64 { a * b }
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// let r = pool.starmap_async(mul, [(2, 3), (4, 5)])?;
    /// assert_eq!(r.get()?, [6, 20]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn starmap_async<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_async_chunked(f, items, None)
    }

    /// [`starmap_async`](Pool::starmap_async) with a chunk size.
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    pub fn starmap_async_chunked<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = target_of2(f)?;
        self.submit_map(target, items, chunksize, None)
    }

    /// [`starmap_async`](Pool::starmap_async) with Python's `callback` and
    /// `error_callback`, as [`map_async_with`](Pool::map_async_with).
    ///
    /// # Errors
    /// As for [`map_async`](Pool::map_async).
    pub fn starmap_async_with<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<MapResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let target = target_of2(f)?;
        let finisher = finisher(decode_map::<R>, callback, error_callback);
        self.submit_map(target, items, None, Some(finisher))
    }

    /// `f` over `items`, lazily and in order (Python's `imap`): items are read
    /// and sent as results are taken, at most `processes + buffersize` chunks
    /// ahead (here: `buffersize` = [`IMAP_BUFFER`] or `processes` if more,
    /// chunks of 1), so an endless input works. Each result is a `Result`: a
    /// failed item does not end the iteration. Dropped before its end, an
    /// `imap` drops the chunks it read ahead that no worker holds yet.
    ///
    /// Because the input is read as results are taken (Python's `imap` sends
    /// all of it at once), take an `imap`'s results before
    /// [`join`](Pool::join): read on after `join` has stopped the workers, it
    /// yields the results of what was already sent, then [`Error::Joined`],
    /// then ends; after [`terminate`](Pool::terminate), what had come, then
    /// [`Error::Terminated`]. It never waits for workers that are gone.
    ///
    /// An input that panics is read no further: the results of the chunks
    /// read before it are yielded first, then the panic resumes in the
    /// reader (where Python's `imap` raises the input's exception; the items
    /// of the chunk being read are lost, as there);
    /// [`imap_unordered`](Pool::imap_unordered) resumes it once every result
    /// sent before it is taken.
    ///
    /// # Examples
    /// ```
    /// fn double(x: u64) -> u64 { 2 * x }
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// let firsts: Vec<u64> = pool.imap(double, 0..).take(3).map(Result::unwrap).collect();
    /// assert_eq!(firsts, [0, 2, 4]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn imap<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> IMap<'_, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_with(f, items, 1, self.imap_buffersize())
    }

    /// [`imap`](Pool::imap) with Python's `chunksize` and `buffersize`: up to
    /// `processes + buffersize` chunks of `chunksize` items are read ahead of
    /// the results taken. A `chunksize` of 0 counts as 1 (Python's `imap`
    /// raises `ValueError` for it); a `buffersize` of 0 reads only as many
    /// chunks ahead as there are workers (Python's `buffersize` must be 1 or
    /// more, or `None` for no bound).
    pub fn imap_with<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMap<'_, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        IMap::new(
            self,
            target_of(f),
            items.into_iter(),
            chunksize,
            buffersize,
            true,
        )
    }

    /// [`imap`](Pool::imap) in the order results come (Python's
    /// `imap_unordered`), each with its item's index.
    ///
    /// # Examples
    /// ```
    /// fn double(x: u64) -> u64 { 2 * x }
    /// let pool = multiproc_pool::Pool::new(2)?;
    /// let mut got: Vec<(usize, u64)> =
    ///     pool.imap_unordered(double, [5, 6, 7]).map(|(i, r)| (i, r.unwrap())).collect();
    /// got.sort();
    /// assert_eq!(got, [(0, 10), (1, 12), (2, 14)]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn imap_unordered<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> IMapUnordered<'_, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_unordered_with(f, items, 1, self.imap_buffersize())
    }

    /// [`imap_unordered`](Pool::imap_unordered) with Python's `chunksize`
    /// and `buffersize` (as [`imap_with`](Pool::imap_with) reads them, 0s
    /// included).
    pub fn imap_unordered_with<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMapUnordered<'_, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let input = items.into_iter();
        IMapUnordered(IMap::new(
            self,
            target_of(f),
            input,
            chunksize,
            buffersize,
            false,
        ))
    }

    /// Takes no more tasks; those queued still run (Python's `close`).
    pub fn close(&self) {
        self.inner.lock().closed = true;
    }

    /// Waits for every task to end and every worker to exit (Python's `join`).
    ///
    /// # Errors
    /// [`Error::NotClosed`] unless [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) came first.
    pub fn join(&self) -> Result<()> {
        if !self.inner.lock().closed {
            return Err(Error::NotClosed);
        }
        self.inner.join(None)
    }

    /// [`join`](Pool::join), waiting at most `timeout` for the tasks.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`join`](Pool::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        if !self.inner.lock().closed {
            return Err(Error::NotClosed);
        }
        // A timeout too large for the clock waits for ever.
        self.inner.join(Instant::now().checked_add(timeout))
    }

    /// Kills the workers now; what has not answered fails with
    /// [`Error::Terminated`] (Python's `terminate`).
    pub fn terminate(&self) {
        self.inner.terminate();
    }

    fn apply_target<A, R>(&self, target: Target, args: A) -> Result<R>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        // Counted as waiting from the submission on, so that the background
        // thread is not woken to drive a job its caller drives at once.
        let mut r = self.submit_one_as::<A, R>(target, args, None, true)?;
        r.take_counted(None)
    }

    fn submit_one<A, R>(
        &self,
        target: Target,
        args: A,
        finisher: Option<Finisher>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_one_as(target, args, finisher, false)
    }

    /// `submit_one`; with `waiting`, the caller is counted as waiting for it
    /// already (it calls `take_counted` next).
    fn submit_one_as<A, R>(
        &self,
        target: Target,
        args: A,
        finisher: Option<Finisher>,
        waiting: bool,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        // A raw number goes straight into the task record; anything else
        // (a raw tuple too) is encoded into a buffer first.
        enum Arg {
            Raw(raw::Entry),
            Encoded(Vec<u8>),
        }
        let arg = match raw::entry(&args) {
            Some(e) => Arg::Raw(e),
            None => {
                let mut bytes = task_buffer();
                wire::encode_arg(&args, &mut bytes).map_err(Error::EncodeArgs)?;
                Arg::Encoded(bytes)
            }
        };
        let job = {
            let (mut st, job) = self.inner.new_job(Job::new(false, finisher))?;
            let task = match arg {
                Arg::Raw(e) => Task::one_raw(job, target, &e),
                Arg::Encoded(bytes) => Task::new(job, 0, 1, target, bytes, Starts::Stride(0)),
            };
            self.inner.queue(&mut st, task);
            if waiting {
                st.waiting += 1;
            } else {
                self.inner.nudge(&mut st);
            }
            job
        };
        Ok(AsyncResult::new(&self.inner, job, decode_one::<R>))
    }

    fn submit_map<A, R>(
        &self,
        target: Target,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        finisher: Option<Finisher>,
    ) -> Result<MapResult<R>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        self.submit_map_as(target, items, chunksize, finisher, Outcomes::Lowest)
    }

    /// `map_each` with a callback, answering `outcomes` (`Each`, or
    /// `EachBelowDeath` for the MPI pool's chunks).
    fn map_each_as<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<Result<R>>) + Send + 'static,
        outcomes: Outcomes,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let finisher = finisher(decode_each::<R>, callback, |_| {});
        let target = target_of(f)?;
        self.submit_each(target, items, chunksize, Some(finisher), outcomes)
    }

    /// [`map_each_as`](Pool::map_each_as) for two-argument functions.
    fn starmap_each_as<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<Result<R>>) + Send + 'static,
        outcomes: Outcomes,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let finisher = finisher(decode_each::<R>, callback, |_| {});
        let target = target_of2(f)?;
        self.submit_each(target, items, chunksize, Some(finisher), outcomes)
    }

    /// Every item's own outcome, for [`map_each_async`](Pool::map_each_async)
    /// (`Outcomes::Each` or `Outcomes::EachBelowDeath`).
    fn submit_each<A, R>(
        &self,
        target: Target,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        finisher: Option<Finisher>,
        outcomes: Outcomes,
    ) -> Result<AsyncResult<Vec<Result<R>>>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        let r = self.submit_map_as::<A, R>(target, items, chunksize, finisher, outcomes)?;
        Ok(r.retyped(decode_each::<R>))
    }

    fn submit_map_as<A, R>(
        &self,
        target: Target,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        finisher: Option<Finisher>,
        outcomes: Outcomes,
    ) -> Result<MapResult<R>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        // Python's chunk size needs the length: an iterator that knows it
        // exactly (a range, a Vec) is encoded as it goes, any other is
        // collected first.
        let items = items.into_iter();
        match items.size_hint() {
            (lo, Some(hi)) if lo == hi => {
                self.feed_map(target, lo, items, chunksize, finisher, outcomes)
            }
            _ => {
                let items: Vec<A> = items.collect();
                let len = items.len();
                self.feed_map(
                    target,
                    len,
                    items.into_iter(),
                    chunksize,
                    finisher,
                    outcomes,
                )
            }
        }
    }

    /// Sends the `len` items of `items` as chunks of a new job; unless
    /// `outcomes` is `Lowest`, the handle decodes every item's own outcome
    /// instead (see [`map_each_async`](Pool::map_each_async)), and is
    /// re-typed by its caller.
    fn feed_map<A, R>(
        &self,
        target: Target,
        len: usize,
        mut items: impl Iterator<Item = A>,
        chunksize: Option<usize>,
        finisher: Option<Finisher>,
        outcomes: Outcomes,
    ) -> Result<MapResult<R>>
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'static,
    {
        let chunk = chunksize
            .unwrap_or_else(|| python_chunksize(len, self.processes()))
            .max(1);
        let finisher_none = finisher.is_none();
        // Each chunk is sent as soon as it is encoded, so the workers start
        // while the rest is encoded; the job counts as fed once all are in.
        let job = {
            let job = Job::new(true, finisher);
            // A map answers its lowest failing item's error; each item's own
            // outcome is wanted only with `Outcomes::Each`.
            let job = if outcomes == Outcomes::Each {
                job
            } else {
                job.fail_fast()
            };
            let (mut st, job) = self.inner.new_job(job)?;
            self.inner.nudge(&mut st);
            job
        };
        // A job fed no further (an item that cannot be encoded, or an input
        // or a `Serialize` that panics) is forgotten: its queued chunks are
        // dropped, its answers too as they come, and no entry is left behind.
        let mut unfed = Abandon {
            inner: &self.inner,
            job: Some(job),
        };
        let mut first = 0;
        loop {
            // An iterator whose size hint was wrong only makes more or fewer
            // chunks: the job's total is what was sent.
            let (args, starts, n) = encode_chunk(items.by_ref(), chunk, first)?;
            if n == 0 {
                break;
            }
            let task = Task::new(job, first, n as u32, target, args, starts);
            let mut st = self.inner.lock();
            self.inner.queue(&mut st, task);
            first += n;
        }
        unfed.job = None;
        let complete = {
            let mut st = self.inner.lock();
            let complete = st.jobs.get_mut(&job).is_some_and(|j| {
                j.feeding = false;
                j.complete()
            });
            self.inner.nudge(&mut st);
            complete
        };
        if complete {
            // Every answer came before the job was fed: its finisher runs here.
            self.inner.finish(&[job]);
        }
        let mut result = AsyncResult::new(&self.inner, job, decode_map::<R>);
        if finisher_none && outcomes == Outcomes::Lowest {
            result.early = Some(Box::new(Early {
                start: output::<R>,
                step: decode_part_onto::<R>,
                rest: decode_map_onto::<R>,
            }));
        }
        Ok(result)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if crate::core::my_pid() != self.inner.owner {
            // A copy in a forked child (a closure that owned the pool): the
            // workers, threads and zygote are the parent's. Leave them be, and
            // free nothing that another process's threads may hold.
            std::mem::forget(self.background.take());
            std::mem::forget(std::mem::take(&mut self.helpers));
            std::mem::forget(Arc::clone(&self.inner));
            return;
        }
        self.inner.terminate();
        self.inner.shut_down();
        let here = std::thread::current().id();
        for t in self
            .background
            .take()
            .into_iter()
            .chain(self.helpers.drain(..))
        {
            // Dropped by a callback that the background thread runs (which
            // held the last handle): that thread cannot join itself; it ends
            // on its own once the callback returns (shut down above).
            if t.thread().id() != here {
                let _ = t.join();
            }
        }
        self.inner.end_zygote();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.inner.processes)
            .field("pids", &self.pids())
            .finish()
    }
}

/// A pool made around one closure ([`Pool::with_fn`]): the same calls as
/// [`Pool`]'s, without the function argument.
pub struct FnPool<A, R> {
    pool: Pool,
    _types: PhantomData<fn(A) -> R>,
}

const CLOSURE: Target = Target {
    kind: TARGET_CLOSURE,
    fns: (0, 0),
};

impl<A, R> FnPool<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    /// The pool underneath (its workers run only the closure).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// [`Pool::apply`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::apply`].
    pub fn apply(&self, args: A) -> Result<R> {
        self.pool.apply_target(CLOSURE, args)
    }

    /// [`Pool::apply_async`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::apply_async`].
    pub fn apply_async(&self, args: A) -> Result<AsyncResult<R>> {
        self.pool.submit_one(CLOSURE, args, None)
    }

    /// [`Pool::map`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::map`].
    pub fn map(&self, items: impl IntoIterator<Item = A>) -> Result<Vec<R>> {
        self.pool.submit_map(CLOSURE, items, None, None)?.get()
    }

    /// [`Pool::map_async`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::map_async`].
    pub fn map_async(&self, items: impl IntoIterator<Item = A>) -> Result<MapResult<R>> {
        self.pool.submit_map(CLOSURE, items, None, None)
    }

    /// [`Pool::apply_async_with`] of the closure: Python's `callback` and
    /// `error_callback`, which run whether or not the handle is kept.
    ///
    /// # Errors
    /// As for [`Pool::apply_async`].
    pub fn apply_async_with(
        &self,
        args: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<AsyncResult<R>> {
        let finisher = finisher(decode_one::<R>, callback, error_callback);
        self.pool.submit_one(CLOSURE, args, Some(finisher))
    }

    /// [`Pool::map_chunked`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::map`].
    pub fn map_chunked(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>> {
        self.map_async_chunked(items, Some(chunksize))?.get()
    }

    /// [`Pool::map_async_chunked`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::map_async`].
    pub fn map_async_chunked(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>> {
        self.pool.submit_map(CLOSURE, items, chunksize, None)
    }

    /// [`Pool::map_async_with`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::map_async`].
    pub fn map_async_with(
        &self,
        items: impl IntoIterator<Item = A>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<MapResult<R>> {
        let finisher = finisher(decode_map::<R>, callback, error_callback);
        self.pool.submit_map(CLOSURE, items, None, Some(finisher))
    }

    /// [`Pool::map_each_async`] of the closure: every item's own outcome.
    ///
    /// # Errors
    /// As for [`Pool::map_async`].
    pub fn map_each_async(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<Result<R>>>> {
        self.pool
            .submit_each(CLOSURE, items, chunksize, None, Outcomes::Each)
    }

    /// [`Pool::map_each_async_with`] of the closure.
    ///
    /// # Errors
    /// As for [`Pool::map_async`].
    pub fn map_each_async_with(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callback: impl FnOnce(&Vec<Result<R>>) + Send + 'static,
    ) -> Result<AsyncResult<Vec<Result<R>>>> {
        let finisher = finisher(decode_each::<R>, callback, |_| {});
        self.pool
            .submit_each(CLOSURE, items, chunksize, Some(finisher), Outcomes::Each)
    }

    /// [`Pool::imap`] of the closure.
    pub fn imap<I: IntoIterator<Item = A>>(&self, items: I) -> IMap<'_, R, I::IntoIter> {
        self.imap_with(items, 1, self.pool.imap_buffersize())
    }

    /// [`Pool::imap_with`] of the closure: Python's `chunksize`, and how
    /// many chunks may be read ahead.
    pub fn imap_with<I: IntoIterator<Item = A>>(
        &self,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMap<'_, R, I::IntoIter> {
        IMap::new(
            &self.pool,
            Ok(CLOSURE),
            items.into_iter(),
            chunksize,
            buffersize,
            true,
        )
    }

    /// [`Pool::imap_unordered`] of the closure.
    pub fn imap_unordered<I: IntoIterator<Item = A>>(
        &self,
        items: I,
    ) -> IMapUnordered<'_, R, I::IntoIter> {
        self.imap_unordered_with(items, 1, self.pool.imap_buffersize())
    }

    /// [`Pool::imap_unordered_with`] of the closure.
    pub fn imap_unordered_with<I: IntoIterator<Item = A>>(
        &self,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> IMapUnordered<'_, R, I::IntoIter> {
        IMapUnordered(IMap::new(
            &self.pool,
            Ok(CLOSURE),
            items.into_iter(),
            chunksize,
            buffersize,
            false,
        ))
    }

    /// [`Pool::close`].
    pub fn close(&self) {
        self.pool.close();
    }

    /// [`Pool::join`].
    ///
    /// # Errors
    /// As for [`Pool::join`].
    pub fn join(&self) -> Result<()> {
        self.pool.join()
    }

    /// [`Pool::join_timeout`].
    ///
    /// # Errors
    /// As for [`Pool::join_timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.pool.join_timeout(timeout)
    }

    /// [`Pool::terminate`].
    pub fn terminate(&self) {
        self.pool.terminate();
    }
}

/// Workers when none is asked for (a pool of 0, `pmap`'s default): one per
/// CPU this process may use — its affinity mask
/// ([`cpu_count`](multiproc_proc::cpu_count)), bounded by a cgroup CPU quota
/// (a container's `--cpus`, a pod's CPU limit), as
/// `std::thread::available_parallelism` and rayon count them. Python's
/// `Pool()` takes `os.cpu_count()`, every CPU of the machine, and so runs 64
/// workers in a container limited to 2 CPUs of a 64-CPU host, each getting a
/// thirty-second of a CPU.
///
/// # Examples
/// ```
/// let n = multiproc_pool::default_processes();
/// assert!(n >= 1 && n <= multiproc_proc::cpu_count());
/// ```
pub fn default_processes() -> usize {
    let mask = multiproc_proc::cpu_count();
    std::thread::available_parallelism().map_or(mask, |n| n.get().min(mask))
}

/// A task's target for `fn` `f` with trampoline `tramp`.
fn fn_target(f: usize, tramp: wire::Tramp) -> Target {
    Target {
        kind: TARGET_FN,
        fns: (wire::offset_of(f), wire::offset_of(tramp as usize)),
    }
}

/// A task's target for a function whose trampoline `tramp` is made for it
/// alone (it reads no function offset: 0).
fn own_target(tramp: wire::Tramp) -> Target {
    Target {
        kind: TARGET_FN,
        fns: (0, wire::offset_of(tramp as usize)),
    }
}

/// What a task's function is (see [Tasks](crate#tasks)): a `fn` item or a
/// closure that captures nothing (zero-sized, and `Copy`: a worker makes
/// its own, as a copy would be), whose trampoline is made for it and calls
/// it inline; or a `fn` pointer, sent as its address. Not part of the API:
/// the MPI pool sends its tasks the same way.
#[doc(hidden)]
pub enum Function {
    /// Made for it: see [`conjure`](crate::conjure).
    Own,
    /// A `fn` pointer's address.
    Pointer(usize),
}

/// What `f` is (see [`Function`]). Anything else holds data of this process
/// that no worker has: most such closures are refused as the program is
/// compiled, those of a pointer's size here ([`Error::Captures`]).
#[doc(hidden)]
pub fn function_of<F, A, R>(f: F) -> Result<Function>
where
    F: Fn(A) -> R + Copy + 'static,
    A: 'static,
    R: 'static,
{
    function_as::<F, fn(A) -> R>(f, |p| p as usize)
}

/// [`function_of`] for a two-argument function (`starmap`).
#[doc(hidden)]
pub fn function_of2<F, A, B, R>(f: F) -> Result<Function>
where
    F: Fn(A, B) -> R + Copy + 'static,
    A: 'static,
    B: 'static,
    R: 'static,
{
    function_as::<F, fn(A, B) -> R>(f, |p| p as usize)
}

/// [`function_of`] for `F` whose `fn` pointer type is `P` (`address` reads
/// a `P`'s).
fn function_as<F: Copy + 'static, P: Copy + 'static>(
    f: F,
    address: impl Fn(P) -> usize,
) -> Result<Function> {
    sized_as_a_function::<F>();
    if std::mem::size_of::<F>() == 0 {
        Ok(Function::Own)
    } else if TypeId::of::<F>() == TypeId::of::<P>() {
        // SAFETY: F is P (its type's identity, just compared).
        Ok(Function::Pointer(address(unsafe {
            std::mem::transmute_copy::<F, P>(&f)
        })))
    } else {
        Err(captures::<F>())
    }
}

/// The target of a task of `f` (see [`Function`]).
fn target_of<F, A, R>(f: F) -> Result<Target>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    Ok(match function_of(f)? {
        Function::Own => own_target(wire::tramp_zst::<F, A, R>),
        Function::Pointer(f) => fn_target(f, wire::tramp::<A, R>),
    })
}

/// [`target_of`] for a two-argument function (`starmap`).
fn target_of2<F, A, B, R>(f: F) -> Result<Target>
where
    F: Fn(A, B) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    B: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    Ok(match function_of2(f)? {
        Function::Own => own_target(wire::tramp2_zst::<F, A, B, R>),
        Function::Pointer(f) => fn_target(f, wire::tramp2::<A, B, R>),
    })
}

/// Refuses, as the program is compiled, a function that is neither
/// zero-sized nor of a pointer's size: a closure that captures data. (An
/// assertion on a generic type's size fails when the code is generated: a
/// build or a test reports it, `cargo check` does not.)
fn sized_as_a_function<F>() {
    const {
        assert!(
            std::mem::size_of::<F>() == 0
                || std::mem::size_of::<F>() == std::mem::size_of::<fn()>(),
            "a pool's task must be a fn item, a closure that captures nothing, or a fn pointer: \
             a closure that captures data runs in a pool made around it (Pool::with_fn) or in pmap"
        )
    };
}

/// The error for a closure `F` that captures data of a pointer's size.
fn captures<F>() -> Error {
    Error::Captures {
        function: std::any::type_name::<F>(),
        bytes: std::mem::size_of::<F>(),
    }
}

/// Python's default chunk size for a map of `len` items.
fn python_chunksize(len: usize, processes: usize) -> usize {
    // divmod(len, 4 × processes), plus one if there is a remainder.
    len.div_ceil(4 * processes.max(1))
}

/// The most bytes of room a chunk is given ahead of an input that does not
/// say how long it is (past them it grows as any `Vec`).
const UNHINTED_ROOM: usize = 1 << 20;

/// Encodes up to `max` items of a chunk: their bytes, where each starts, and
/// how many there were.
fn encode_chunk<T: Serialize>(
    items: impl Iterator<Item = T>,
    max: usize,
    first: usize,
) -> Result<(Vec<u8>, Starts, usize)> {
    let mut msg = crate::core::chunk_buffer(max);
    let mut items = items.take(max);
    // Appends item `i`: how long it is.
    let put = |item: &T, msg: &mut Vec<u8>, i: usize| -> Result<usize> {
        let before = msg.len();
        wire::encode_arg(item, msg).map_err(|e| Error::Item {
            index: first + i,
            source: Box::new(Error::EncodeArgs(e)),
        })?;
        Ok(msg.len() - before)
    };
    let Some(item) = items.next() else {
        return Ok((msg, Starts::Stride(0), 0));
    };
    let stride = put(&item, &mut msg, 0)?;
    // Room for the rest at the first item's size: one allocation instead of
    // a doubling series of copies for a large chunk. For the items the input
    // says it has, not for the chunk size, which may be far larger than the
    // input (Python's `chunksize=10**12` makes one chunk; a room of that many
    // items would abort the process): as many as its upper bound, and no
    // more than its lower bound or `UNHINTED_ROOM` bytes' worth.
    let (lower, upper) = items.size_hint();
    let guess = lower.max(UNHINTED_ROOM / stride.max(1));
    // (And the 8 bytes past the last a raw number's 9-byte copy may write:
    // see `put_raw_run`.)
    msg.reserve(
        stride
            .saturating_mul(upper.unwrap_or(guess).min(guess))
            .saturating_add(8),
    );
    // Items as long as the first need no list of starts (a chunk of raw
    // numbers): a loop that only checks each length, until one differs; raw
    // numbers first through a loop of their own.
    let mut n = 1;
    let mut held = None;
    let first_tag = msg.get(msg.len() - stride).copied();
    if stride <= 9 && first_tag.and_then(raw::Prim::of_tag).is_some() {
        let (ran, left, rest) = put_raw_run(items, stride, &mut msg);
        (n, held, items) = (n + ran, left, rest);
    }
    let mut list = None::<Vec<u32>>;
    for item in held.into_iter().chain(items.by_ref()) {
        let len = put(&item, &mut msg, n)?;
        n += 1;
        if len != stride {
            list = Some((0..n as u32).map(|k| k * stride as u32).collect());
            break;
        }
    }
    if let Some(list) = &mut list {
        for item in items {
            list.push((msg.len() - wire::TASK_HEADER) as u32);
            put(&item, &mut msg, n)?;
            n += 1;
        }
    }
    let starts = match list {
        Some(list) => Starts::List(list.into_boxed_slice()),
        // A task of one item needs no stride.
        None if n == 1 => Starts::Stride(0),
        None => Starts::Stride(stride as u32),
    };
    Ok((msg, starts, n))
}

/// Appends the raw entries of `items` while each is a raw number `stride`
/// bytes long (tag included): how many, the first item that was not one (not
/// written), and the rest of `items`. The entries go through one pointer, a
/// block at a time (as many as the input says it has left, at most
/// [`RAW_BLOCK`]): a `Vec` grown an item at a time kept its length and
/// capacity in memory (a trivial map of a million items took 5-8 % longer,
/// `benches/NOTES.md`). The iterator is taken by value, so that its state
/// stays in registers (through a `&mut`, each item stored it back to memory,
/// which the bytes written may alias).
fn put_raw_run<T: Serialize, I: Iterator<Item = T>>(
    mut items: I,
    stride: usize,
    msg: &mut Vec<u8>,
) -> (usize, Option<T>, I) {
    let mut n = 0;
    loop {
        let block = items
            .size_hint()
            .1
            .map_or(RAW_BLOCK, |left| left.clamp(1, RAW_BLOCK));
        // Each entry is copied as 9 bytes, past its own end when shorter:
        // the last one needs 9 - stride bytes more than the block's.
        msg.reserve(block * stride + (9 - stride));
        let spare = msg.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let (mut k, mut at) = (0, 0);
        while k < block {
            let item = items.next();
            let e = item
                .as_ref()
                .and_then(raw::entry)
                .filter(|e| e.len == stride);
            let Some(e) = e else {
                // SAFETY: the `at` bytes past the length were written by the
                // turns before this one.
                unsafe { msg.set_len(msg.len() + at) };
                return (n + k, item, items);
            };
            // SAFETY: `at` is at most (block - 1) × stride here, and the room
            // reserved past the length is block × stride + 9 - stride.
            unsafe { std::ptr::copy_nonoverlapping(e.bytes.as_ptr(), spare.add(at), 9) };
            at += stride;
            k += 1;
        }
        // SAFETY: the `at` bytes past the length were written just above.
        unsafe { msg.set_len(msg.len() + at) };
        n += k;
    }
}

/// The most raw entries [`put_raw_run`] makes room for at a time.
const RAW_BLOCK: usize = 1024;

/// [`decode_items`] as a job's decoding (it cannot fail as a whole).
fn decode_each<R: DeserializeOwned>(g: Gathered, total: usize) -> Result<Vec<Result<R>>> {
    Ok(decode_items(g, total))
}

/// Every item's outcome, in order.
fn decode_items<R: DeserializeOwned>(g: Gathered, total: usize) -> Vec<Result<R>> {
    let mut out: Vec<Option<Result<R>>> = (0..total).map(|_| None).collect();
    for part in &g.parts {
        let mut entries = part.entries();
        for i in 0..part.count as usize {
            let (r, rest) = wire::read_item::<R>(entries);
            entries = rest;
            if let Some(slot) = out.get_mut(part.first + i) {
                *slot = Some(r);
            }
        }
    }
    for (i, e) in g.failed.into_vec() {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(Err(e));
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or(Err(Error::Terminated)))
        .collect()
}

/// An `apply`'s outcome.
fn decode_one<R: DeserializeOwned>(g: Gathered, total: usize) -> Result<R> {
    // The usual case, one answer for the one item: read at once, with no
    // list of outcomes made for it.
    if let ([part], []) = (&g.parts[..], g.failed.as_slice()) {
        if part.first == 0 && part.count == 1 {
            return wire::read_item::<R>(part.entries()).0;
        }
    }
    decode_items(g, total.max(1))
        .into_iter()
        .next()
        .unwrap_or(Err(Error::Terminated))
}

/// A `map`'s outcome: every result, or the lowest failing item's error.
/// Decodes straight into the result vector, part after part in item order,
/// stopping at the first failure (a million results are a million small
/// values: no per-item `Result` on the way).
fn decode_map<R: DeserializeOwned>(g: Gathered, total: usize) -> Result<Vec<R>> {
    decode_map_onto(output(total), g, total)
}

/// An empty output with room for `total` results. One of [`HUGE_MIN`] bytes
/// or more has the whole huge pages inside it advised `MADV_HUGEPAGE`: the
/// decoding then faults once a 2 MiB page instead of once a 4 KiB one (a map
/// of 10 M trivial `u64`s, 80 MB of output, took 20 000 faults, a fifth of
/// its time, `benches/NOTES.md`). Only that large: glibc maps a buffer of
/// 32 MiB or more on its own and unmaps it when it is freed, so the advice
/// goes with it, where a smaller one may come from its heap, whose memory
/// outlives the buffer. A kernel without transparent huge pages refuses the
/// advice, which only leaves the faults as they were.
pub(crate) fn output<R>(total: usize) -> Vec<R> {
    let v: Vec<R> = Vec::with_capacity(total);
    if v.capacity().saturating_mul(std::mem::size_of::<R>()) >= HUGE_MIN {
        crate::core::advise_whole_pages(&v, HUGE_PAGE, libc::MADV_HUGEPAGE);
    }
    v
}

/// Outputs of this many bytes or more are advised huge pages (see [`output`]).
const HUGE_MIN: usize = 32 << 20;
/// A transparent huge page on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// [`decode_map`] onto the first `out.len()` items, decoded already (their
/// parts are no longer in `g`).
fn decode_map_onto<R: DeserializeOwned>(
    mut out: Vec<R>,
    mut g: Gathered,
    total: usize,
) -> Result<Vec<R>> {
    g.parts.sort_unstable_by_key(|p| p.first);
    let mut failed = g.failed.into_vec();
    failed.sort_unstable_by_key(|(i, _)| *i);
    let mut failed = failed.into_iter().peekable();
    let mut parts = g.parts.iter().peekable();
    let item_error = |index, e| Error::Item {
        index,
        source: Box::new(e),
    };
    while out.len() < total {
        let index = out.len();
        let e = match parts.next_if(|p| p.first == index) {
            Some(part) => match wire::read_results(part.entries(), part.count as usize, &mut out) {
                Ok(()) => continue,
                Err((i, e)) => item_error(index + i, e),
            },
            None => match failed.next_if(|(i, _)| *i == index) {
                Some((_, e)) => item_error(index, e),
                // No answer and no failure: the job was cut short.
                None => item_error(index, Error::Terminated),
            },
        };
        // The results before it are the user's values, dropped here (often
        // on the background thread).
        wire::drop_quietly(out);
        return Err(e);
    }
    Ok(out)
}

/// Appends the items of `part` to `out` if every one of them is a result of
/// type `R`; `false`, and `out` as it was, if not.
fn decode_part_onto<R: DeserializeOwned>(out: &mut Vec<R>, part: &Part) -> bool {
    let before = out.len();
    let read = wire::read_results(part.entries(), part.count as usize, out);
    if read.is_err() {
        wire::drop_quietly(out.drain(before..));
    }
    read.is_ok()
}

/// Parts a map's `get` lets gather in its job's list before it takes them
/// all (see `take_early`): it waits for the next part in order, looking
/// through at most this many.
const EARLY_SCAN: usize = 64;

/// A finisher that decodes with `decode` and runs the callback that fits.
fn finisher<T: Send + 'static>(
    decode: fn(Gathered, usize) -> Result<T>,
    callback: impl FnOnce(&T) + Send + 'static,
    error_callback: impl FnOnce(&Error) + Send + 'static,
) -> Finisher {
    Box::new(move |g, total| {
        let r = decode(g, total);
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &r {
            Ok(v) => callback(v),
            Err(e) => error_callback(e),
        }));
        let r = match ran {
            Ok(()) => r,
            Err(p) => {
                let message = worker::panic_text(&*p);
                wire::drop_quietly(r);
                Err(Error::CallbackPanicked { message })
            }
        };
        Box::new(r)
    })
}

/// The `buffersize` of [`Pool::imap`] and [`Pool::imap_unordered`], or
/// `processes` if that is more: they read up to `processes + buffersize`
/// chunks ahead of the results taken. Reading ahead hides the round trip to
/// the workers, paid once every `processes + buffersize` items: with a
/// `buffersize` of 2 (the pool's `processes`, the former default) an ordered
/// `imap` of trivial items took 4.9 µs an item, with 8 2.1, with 64 0.7
/// (`benches/NOTES.md`). Python's `imap` reads its whole input ahead.
pub const IMAP_BUFFER: usize = 64;

/// The handle of an [`apply_async`](Pool::apply_async) (Python's `AsyncResult`).
///
/// Dropping it forgets its job's result (its tasks still run; their
/// answers are dropped as they come), but not its callbacks: those of an
/// `_with` call run all the same, as in Python (see
/// [`Pool::apply_async_with`]).
pub struct AsyncResult<T> {
    inner: Arc<Inner>,
    job: JobId,
    decode: fn(Gathered, usize) -> Result<T>,
    /// A map's way of decoding its answers while it runs (see [`Early`]).
    /// (Boxed: inline, its three `fn`s made every handle 56 bytes, not 40;
    /// 100 000 pipelined `apply_async` handles held 5.6 MB of fresh pages,
    /// and the smaller handle took them 9 % faster, 325 ns a task against
    /// 357, medians of ten alternated runs. The job number in one word
    /// ([`JobId`]) made it 32 bytes: 314 against 332.)
    early: Option<Box<Early<T>>>,
}

// Four words: every pipelined task holds one (see `early`).
const _: () = assert!(std::mem::size_of::<AsyncResult<u64>>() == 32);

/// A handle's job number (they start at 1), or none once taken: a word, where
/// an `Option<u64>` takes two.
#[derive(Clone, Copy)]
struct JobId(Option<std::num::NonZeroU64>);

impl JobId {
    fn new(job: u64) -> JobId {
        JobId(std::num::NonZeroU64::new(job))
    }

    fn get(self) -> Option<u64> {
        self.0.map(std::num::NonZeroU64::get)
    }

    fn take(&mut self) -> Option<u64> {
        self.0.take().map(std::num::NonZeroU64::get)
    }
}

/// How a blocking `get` of a map decodes each chunk's answer as soon as it
/// and every chunk before it are in, while the workers run the rest, so that
/// the decoding overlaps their run instead of following it
/// (`benches/NOTES.md`).
struct Early<T> {
    /// An empty output with room for `total` items.
    start: fn(usize) -> T,
    /// Appends a part's items to the output; `false` (the output as before)
    /// if one of them is not a result, which the end then reports.
    step: fn(&mut T, &Part) -> bool,
    /// Decodes the parts left onto the output (as `decode` does from none).
    rest: fn(T, Gathered, usize) -> Result<T>,
}

/// What a map's handle answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcomes {
    /// Its lowest failing item's error, or every result (`map`): once a
    /// death or a timeout fails an item, the items above it not sent yet
    /// are not run (see `Job::fail_fast`).
    Lowest,
    /// Every item's own outcome (`map_each`): every item runs.
    Each,
    /// Every item's own outcome up to the lowest item a death or a timeout
    /// failed; the items above it not sent yet are not run and answer
    /// [`Error::Terminated`] (the MPI pool's chunks of a `map`).
    EachBelowDeath,
}

/// Forgets its job when dropped while still armed (see `feed_map`).
struct Abandon<'a> {
    inner: &'a Inner,
    job: Option<u64>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job {
            self.inner.abandon(job);
        }
    }
}

/// The handle of a [`map_async`](Pool::map_async) (Python's `MapResult`).
pub type MapResult<R> = AsyncResult<Vec<R>>;

impl<T: Send + 'static> AsyncResult<T> {
    fn new(
        inner: &Arc<Inner>,
        job: u64,
        decode: fn(Gathered, usize) -> Result<T>,
    ) -> AsyncResult<T> {
        AsyncResult {
            inner: Arc::clone(inner),
            job: JobId::new(job),
            decode,
            early: None,
        }
    }

    /// The same job, decoded by `decode` into another type.
    fn retyped<U: Send + 'static>(
        mut self,
        decode: fn(Gathered, usize) -> Result<U>,
    ) -> AsyncResult<U> {
        AsyncResult {
            inner: Arc::clone(&self.inner),
            job: JobId(self.job.0.take()),
            decode,
            early: None,
        }
    }

    /// Waits for the result and takes it (Python's `get()`).
    ///
    /// # Errors
    /// The task's failure, [`Error::Terminated`], [`Error::Cancelled`].
    pub fn get(mut self) -> Result<T> {
        match self.early.take() {
            Some(early) if self.job.get().is_some() => self.take_early(*early),
            _ => self.take(None),
        }
    }

    /// [`get`](AsyncResult::get), waiting at most `timeout`; after a
    /// [`Error::Timeout`] the handle may be asked again. A timeout too large
    /// for the clock (`Duration::MAX`) waits as `get` does; so for every
    /// `_timeout` call of the pool.
    ///
    /// # Errors
    /// [`Error::Timeout`]; as for [`get`](AsyncResult::get); and
    /// [`Error::AlreadyTaken`] after a successful call.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        // A timeout too large for the clock waits for ever.
        self.take(Instant::now().checked_add(timeout))
    }

    /// Waits until the result is there (Python's `wait()`).
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Waits at most `timeout` for the result (Python's `wait(timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Whether the result is there (Python's `ready()`).
    pub fn ready(&self) -> bool {
        let Some(job) = self.job.get() else {
            return true;
        };
        let st = self.inner.lock();
        st.jobs.get(&job).is_none_or(Job::done) || st.terminated
    }

    /// Whether it succeeded; `None` while not [`ready`](AsyncResult::ready)
    /// (Python raises `ValueError` then).
    pub fn successful(&self) -> Option<bool> {
        let job = self.job.get()?;
        let mut st = self.inner.lock();
        let terminated = st.terminated;
        let j = st.jobs.get_mut(&job)?;
        if !j.done() && !terminated {
            return None;
        }
        if j.aborted.is_some() || (!j.done() && terminated) {
            return Some(false);
        }
        if !matches!(j.finish, Finish::Done(_)) {
            let total = j.total;
            let r = (self.decode)(std::mem::take(&mut j.gathered), total);
            j.finish = Finish::Done(Box::new(r));
        }
        match &j.finish {
            Finish::Done(o) => o.downcast_ref::<Result<T>>().map(Result::is_ok),
            _ => None,
        }
    }

    /// Takes it out of the queue if no worker has been sent it yet; `true` if
    /// so (its `get` then answers [`Error::Cancelled`]).
    pub fn cancel(&self) -> bool {
        self.job.get().is_some_and(|job| self.inner.cancel(job))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<()> {
        let Some(job) = self.job.get() else {
            return Ok(());
        };
        let mut st = self.inner.lock();
        st.waiting += 1;
        let (_st, r) = self
            .inner
            .wait_until(st, deadline, &|st| st.jobs.get(&job).is_none_or(Job::done));
        r
    }

    fn take(&mut self, deadline: Option<Instant>) -> Result<T> {
        if self.job.get().is_none() {
            return Err(Error::AlreadyTaken);
        }
        // One lock to count itself in and take what is there (a pipelined
        // caller's results are mostly in when it asks).
        let mut st = self.inner.lock();
        st.waiting += 1;
        take_locked(&self.inner, &mut self.job, st, deadline, self.decode)
    }

    /// `get` of a map: decodes each chunk's answer once it and every chunk
    /// before it are in, then the rest as `take` does.
    fn take_early(&mut self, early: Early<T>) -> Result<T> {
        let Some(job) = self.job.get() else {
            return Err(Error::AlreadyTaken);
        };
        let mut st = self.inner.lock();
        let mut out = (early.start)(st.jobs.get(&job).map_or(0, |j| j.total));
        let mut next = 0usize;
        // Parts taken from the job and not decoded yet (a later one came
        // first), by their first item: the job's list is looked through only
        // while it is short (it is emptied into this map once it holds
        // `EARLY_SCAN`), where a scan of every part in for the next one made
        // a map of 100 000 chunks spend half its time scanning.
        let mut held: HashMap<usize, Part> = HashMap::new();
        // A second part with the same first item (never seen): kept for the end.
        let mut twins = Vec::new();
        loop {
            // Counted as waiting only while it waits (and so drives): while
            // it decodes, the background thread takes the answers.
            st.waiting += 1;
            let (s, r) = self.inner.wait_until(st, None, &|st| {
                st.jobs.get(&job).is_none_or(|j| {
                    let parts = &j.gathered.parts;
                    j.done() || parts.len() >= EARLY_SCAN || parts.iter().any(|p| p.first == next)
                })
            });
            st = s;
            r?;
            let Some(j) = st.jobs.get_mut(&job) else {
                break;
            };
            for part in j.gathered.parts.drain(..) {
                match held.entry(part.first) {
                    Entry::Vacant(e) => {
                        e.insert(part);
                    }
                    Entry::Occupied(_) => twins.push(part),
                }
            }
            // Every part in order from `next` (one lock for a run of them).
            let mut run = Vec::new();
            let mut at = next;
            while let Some(part) = held.remove(&at) {
                at += part.count as usize;
                run.push(part);
            }
            if run.is_empty() {
                if j.done() {
                    break; // nothing in order to decode: the end does the rest
                }
                continue;
            }
            drop(st);
            let mut bad = Vec::new();
            for part in run {
                if bad.is_empty() && (early.step)(&mut out, &part) {
                    next += part.count as usize;
                } else {
                    bad.push(part);
                }
            }
            st = self.inner.lock();
            if !bad.is_empty() {
                // The end finds what is wrong, in order.
                if let Some(j) = st.jobs.get_mut(&job) {
                    j.gathered.parts.extend(bad);
                }
                break;
            }
        }
        // What was taken and not decoded goes back for the end.
        if let Some(j) = st.jobs.get_mut(&job) {
            j.gathered.parts.extend(held.into_values().chain(twins));
        }
        st.waiting += 1;
        take_locked(&self.inner, &mut self.job, st, None, |g, total| {
            (early.rest)(out, g, total)
        })
    }

    /// `take`, the caller counted in `waiting` already.
    fn take_counted(&mut self, deadline: Option<Instant>) -> Result<T> {
        let st = self.inner.lock();
        take_locked(&self.inner, &mut self.job, st, deadline, self.decode)
    }
}

/// Waits until the job is done and takes it: its failure, what
/// `successful` (or a finisher) decoded already, or what `decode` makes
/// of its answers. The caller counted itself in `waiting` already, and
/// holds the state. (A function of its own: the guard borrows the
/// handle's `inner` while its `job` is taken.)
fn take_locked<'a, T: Send + 'static>(
    inner: &'a Inner,
    handle_job: &mut JobId,
    mut st: MutexGuard<'a, State>,
    deadline: Option<Instant>,
    decode: impl FnOnce(Gathered, usize) -> Result<T>,
) -> Result<T> {
    let Some(job) = handle_job.get() else {
        st.waiting -= 1;
        return Err(Error::AlreadyTaken);
    };
    let (mut st, r) = inner.wait_until(st, deadline, &|st| st.jobs.get(&job).is_none_or(Job::done));
    r?;
    handle_job.take();
    // What the take needs, taken out where the record lies, which is then
    // dropped there: moving the whole record out of the table copied it all.
    let Some(j) = st.jobs.get_mut(&job) else {
        return Err(Error::Terminated);
    };
    let (complete, total) = (j.complete(), j.total);
    let aborted = j.aborted.take();
    let finish = std::mem::replace(&mut j.finish, Finish::ByCaller);
    let gathered = std::mem::take(&mut j.gathered);
    st.jobs.forget(&job);
    drop(st);
    if let Some(e) = aborted {
        return Err(*e);
    }
    if !complete {
        return Err(Error::Terminated);
    }
    if let Finish::Done(outcome) = finish {
        return match outcome.downcast::<Result<T>>() {
            Ok(r) => *r,
            Err(_) => Err(Error::Terminated), // never: made for this T
        };
    }
    decode(gathered, total)
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        if let Some(job) = self.job.get() {
            let mut st = self.inner.lock();
            // Kept while callbacks are still to run; else forgotten now, and
            // its answers, if they still come, are dropped on arrival.
            if !st.jobs.get_mut(&job).is_some_and(Job::detach) {
                let forgotten = st.jobs.remove(&job);
                drop(st);
                drop(forgotten);
            }
        }
    }
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job.get())
            .finish()
    }
}

/// The iterator of [`Pool::imap`]: each item's result, in order.
pub struct IMap<'p, R, I> {
    pool: &'p Pool,
    target: Target,
    input: I,
    job: Option<u64>,
    chunksize: usize,
    /// Items that may be read ahead of those taken.
    ahead: usize,
    fed: usize,
    taken: usize,
    exhausted: bool,
    ordered: bool,
    /// Results come but not yet taken (in order: by index).
    ready: BTreeMap<usize, Result<R>>,
    arrived: VecDeque<(usize, Result<R>)>,
    /// Why the iteration cannot go on (an item that cannot be encoded, a
    /// closed pool): yielded once, then the end.
    stop: Option<Error>,
    /// The job ended before every item sent was answered (`terminate`, or
    /// fed after `join`): `stop` is yielded after what is in order.
    aborted: bool,
    /// The input panicked while a chunk was read: resumed in the reader once
    /// the results of every chunk sent before it are taken (where Python's
    /// `imap` raises the input's exception).
    input_panic: Option<Box<dyn std::any::Any + Send>>,
}

impl<'p, R, I, A> IMap<'p, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// An `imap` of `target` (its error, if it has none, is the first and
    /// last thing yielded).
    fn new(
        pool: &'p Pool,
        target: Result<Target>,
        input: I,
        chunksize: usize,
        buffersize: usize,
        ordered: bool,
    ) -> IMap<'p, R, I> {
        let chunksize = chunksize.max(1);
        let (target, job) = match target {
            Ok(t) => (
                t,
                pool.inner.new_job(Job::new(true, None)).map(|(_, job)| job),
            ),
            Err(e) => (CLOSURE, Err(e)),
        };
        let (job, stop) = match job {
            Ok(j) => (Some(j), None),
            Err(e) => (None, Some(e)),
        };
        IMap {
            pool,
            target,
            input,
            job,
            chunksize,
            ahead: (pool.processes().saturating_add(buffersize)).saturating_mul(chunksize),
            fed: 0,
            taken: 0,
            exhausted: false,
            ordered,
            ready: BTreeMap::new(),
            arrived: VecDeque::new(),
            stop,
            aborted: false,
            input_panic: None,
        }
    }

    /// Reads and sends chunks while fewer than `ahead` items are out.
    fn feed(&mut self, job: u64) {
        let mut tasks = Vec::new();
        while !self.exhausted && self.fed - self.taken < self.ahead {
            let input = &mut self.input;
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                input.by_ref().take(self.chunksize).collect::<Vec<A>>()
            }));
            let items = match read {
                Ok(items) => items,
                Err(payload) => {
                    // The chunk being read is lost, as in Python; the input
                    // is not read again.
                    self.input_panic = Some(payload);
                    self.exhausted = true;
                    break;
                }
            };
            if items.len() < self.chunksize {
                self.exhausted = true;
            }
            if items.is_empty() {
                break;
            }
            match encode_chunk(items.iter(), items.len(), self.fed) {
                Ok((args, starts, n)) => tasks.push((self.fed, n as u32, args, starts)),
                Err(e) => {
                    self.stop = Some(e);
                    self.exhausted = true;
                    break;
                }
            }
            self.fed += items.len();
        }
        let mut st = self.pool.inner.lock();
        for (first, count, args, starts) in tasks {
            self.pool.inner.queue(
                &mut st,
                Task::new(job, first, count, self.target, args, starts),
            );
        }
        if self.exhausted {
            if let Some(j) = st.jobs.get_mut(&job) {
                j.feeding = false;
            }
        }
        self.pool.inner.nudge(&mut st);
        drop(st);
    }

    /// Waits for answers (until `deadline`: `Err(Timeout)` past it) and
    /// decodes those that came into `ready` / `arrived`.
    fn gather(&mut self, job: u64, deadline: Option<Instant>) -> Result<()> {
        let mut st = self.pool.inner.lock();
        st.waiting += 1;
        let has_news = |st: &crate::core::State| {
            st.jobs.get(&job).is_none_or(|j| {
                !j.gathered.parts.is_empty() || !j.gathered.failed.is_empty() || j.aborted.is_some()
            })
        };
        let (mut st, waited) = self.pool.inner.wait_until(st, deadline, &has_news);
        let (gathered, aborted) = match st.jobs.get_mut(&job) {
            Some(j) => (
                std::mem::take(&mut j.gathered),
                j.aborted.take().map(|e| *e),
            ),
            None => (Gathered::default(), Some(Error::Terminated)),
        };
        drop(st);
        for part in &gathered.parts {
            let mut entries = part.entries();
            for i in 0..part.count as usize {
                let (r, rest) = wire::read_item::<R>(entries);
                entries = rest;
                self.put(part.first + i, r);
            }
        }
        for (i, e) in gathered.failed.into_vec() {
            self.put(i, Err(e));
        }
        if let Some(e) = aborted {
            // Nothing more will come: what is in order is yielded, then
            // this error, then the end.
            self.stop = Some(e);
            self.exhausted = true;
            self.aborted = true;
        }
        waited
    }

    fn put(&mut self, index: usize, r: Result<R>) {
        if self.ordered {
            self.ready.insert(index, r);
        } else {
            self.arrived.push_back((index, r));
        }
    }

    /// The next result (with its index), `None` at the end; waiting for it
    /// until `deadline` (`Err(Timeout)` past it, nothing taken).
    fn next_result(&mut self, deadline: Option<Instant>) -> Result<Option<(usize, Result<R>)>> {
        let mut timed_out = false;
        loop {
            if self.ordered {
                if let Some(r) = self.ready.remove(&self.taken) {
                    self.taken += 1;
                    return Ok(Some((self.taken - 1, r)));
                }
            } else if let Some((i, r)) = self.arrived.pop_front() {
                self.taken += 1;
                return Ok(Some((i, r)));
            }
            let Some(job) = self.job else {
                return Ok(self.stop.take().map(|e| (self.taken, Err(e))));
            };
            if self.aborted || (self.stop.is_some() && self.taken >= self.fed) {
                self.finish();
                return Ok(self.stop.take().map(|e| (self.taken, Err(e))));
            }
            if self.taken >= self.fed {
                if let Some(payload) = self.input_panic.take() {
                    self.finish();
                    std::panic::resume_unwind(payload);
                }
            }
            if self.exhausted && self.taken >= self.fed {
                self.finish();
                return Ok(None);
            }
            if timed_out {
                return Err(Error::Timeout);
            }
            if self.stop.is_none() {
                self.feed(job);
            }
            if self.taken >= self.fed && self.exhausted {
                continue;
            }
            timed_out = self.gather(job, deadline).is_err();
        }
    }

    fn finish(&mut self) {
        if let Some(job) = self.job.take() {
            self.pool.inner.lock().jobs.remove(&job);
        }
    }
}

impl<R, I> Drop for IMap<'_, R, I> {
    fn drop(&mut self) {
        // Dropped before its end: the chunks read ahead and not sent yet are
        // dropped too (only those a worker holds still run).
        if let Some(job) = self.job.take() {
            self.pool.inner.abandon(job);
        }
    }
}

impl<R, I, A> Iterator for IMap<'_, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;
    fn next(&mut self) -> Option<Result<R>> {
        self.next_result(None)
            .unwrap_or_else(|e| Some((self.taken, Err(e))))
            .map(|(_, r)| r)
    }
}

impl<R, I, A> IMap<'_, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// [`next`](Iterator::next), waiting at most `timeout` for the result
    /// (Python's `next(timeout)`): `Err(Error::Timeout)` when it did not come
    /// in time, and the iteration goes on (the next call waits for the same
    /// result); `Ok(None)` at the end. Only the wait for results is bounded:
    /// reading the input, as results are taken, is not.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = multiproc_pool::Pool::new(1)?;
    /// let mut it = pool.imap(nap, [300, 0]);
    /// assert!(matches!(it.next_timeout(Duration::from_millis(1)), Err(multiproc_pool::Error::Timeout)));
    /// assert_eq!(it.next_timeout(Duration::from_secs(60))?.unwrap()?, 300);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Result<R>>> {
        // A timeout too large for the clock waits for ever.
        let deadline = Instant::now().checked_add(timeout);
        Ok(self.next_result(deadline)?.map(|(_, r)| r))
    }
}

/// The iterator of [`Pool::imap_unordered`]: `(index, result)` as they come.
pub struct IMapUnordered<'p, R, I>(IMap<'p, R, I>);

impl<R, I, A> Iterator for IMapUnordered<'_, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = (usize, Result<R>);
    fn next(&mut self) -> Option<(usize, Result<R>)> {
        let taken = self.0.taken;
        self.0
            .next_result(None)
            .unwrap_or_else(|e| Some((taken, Err(e))))
    }
}

impl<R, I, A> IMapUnordered<'_, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// [`next`](Iterator::next), waiting at most `timeout` for a result (see
    /// [`IMap::next_timeout`]).
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(usize, Result<R>)>> {
        self.0.next_result(Instant::now().checked_add(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sq(x: u64) -> u64 {
        x * x
    }

    /// A map whose input panics, or whose item cannot be encoded, leaves no
    /// job in the pool's table (an input that panicked left one for good).
    #[test]
    fn a_map_fed_no_further_leaves_no_job_behind() {
        let pool = Pool::new(1).unwrap();
        let bad = (0..100u64).map(|x| if x == 50 { panic!("bad item") } else { x });
        let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.map_chunked(sq, bad, 10)
        }));
        assert!(mapped.is_err());
        assert_eq!(pool.map(sq, 0..4).unwrap(), [0, 1, 4, 9]);
        assert_eq!(pool.inner.lock().jobs.len(), 0);
        #[derive(serde::Deserialize)]
        struct Unencodable;
        impl Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        fn zero(_: Unencodable) -> u64 {
            0
        }
        let items = (0..30).map(|_| Unencodable);
        assert!(matches!(
            pool.map_chunked(zero, items, 10),
            Err(Error::Item { index: 0, .. })
        ));
        assert_eq!(pool.inner.lock().jobs.len(), 0);
    }

    /// A burst of `apply_async`s taken leaves no room held in the pool's
    /// tables (a million held 276 MB for as long as the pool lived), nor the
    /// spare buffers of a large map, once the pool is quiet.
    #[test]
    fn a_burst_of_tasks_taken_gives_the_tables_room_back() {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.map(sq, 0..1_000_000u64).unwrap().len(), 1_000_000);
        assert!(crate::core::spare::kept() > 0, "a large map kept no buffer");
        let held = |pool: &Pool| {
            let st = pool.inner.lock();
            (
                st.jobs.capacity(),
                st.inflight_capacity(),
                st.pending_capacity(),
            )
        };
        let before = held(&pool);
        let handles: Vec<_> = (0..50_000u64)
            .map(|i| pool.apply_async(sq, i).unwrap())
            .collect();
        let during = held(&pool);
        assert!(
            during.0 >= 10_000,
            "the burst was not out at once: {during:?}"
        );
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.get().unwrap(), (i * i) as u64);
        }
        // Kept while the pool is busy (bursts back to back keep their room)...
        assert_eq!(pool.apply(sq, 3).unwrap(), 9);
        assert!(held(&pool).0 >= 10_000, "trimmed while busy");
        // ...and given back once it idles (about a second in unit tests, ten
        // otherwise).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = held(&pool);
        while !(after.0 <= 64 && after.1 <= 64 && after.2 <= 4 * 1024) {
            assert!(
                Instant::now() < deadline,
                "room kept after the burst: {after:?} (before {before:?}, during {during:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
            after = held(&pool);
        }
        assert_eq!(crate::core::spare::kept(), 0, "spare buffers kept");
        assert_eq!(pool.apply(sq, 4).unwrap(), 16);
    }

    /// CPython's `test_release_task_refs` (issue 29861): a task's arguments
    /// and results are not kept alive once they are done with. Here the
    /// pool holds only their bytes: once a `map` and an `apply_async` are
    /// taken, no value made in this process is left (the results the caller
    /// dropped were the only copies), and no job, task or answer is left in
    /// the pool's tables.
    #[test]
    fn a_tasks_arguments_and_results_are_not_kept_once_taken() {
        use std::sync::atomic::{AtomicIsize, Ordering};
        static LIVE: AtomicIsize = AtomicIsize::new(0);
        #[derive(serde::Serialize)]
        struct Counted(u64);
        impl Counted {
            fn new(x: u64) -> Counted {
                LIVE.fetch_add(1, Ordering::SeqCst);
                Counted(x)
            }
        }
        impl<'de> serde::Deserialize<'de> for Counted {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Counted, D::Error> {
                Ok(Counted::new(u64::deserialize(d)?))
            }
        }
        impl Drop for Counted {
            fn drop(&mut self) {
                LIVE.fetch_sub(1, Ordering::SeqCst);
            }
        }
        fn identity(c: Counted) -> Counted {
            c
        }
        let pool = Pool::new(2).unwrap();
        let objs: Vec<Counted> = (0..10).map(Counted::new).collect();
        let out = pool.map(identity, objs).unwrap();
        assert_eq!(out.iter().map(|c| c.0).sum::<u64>(), 45);
        drop(out);
        let one = pool.apply_async(identity, Counted::new(7)).unwrap();
        assert_eq!(one.get().unwrap().0, 7);
        assert_eq!(LIVE.load(Ordering::SeqCst), 0, "a value outlived its task");
        let st = pool.inner.lock();
        assert_eq!(
            (st.jobs.len(), st.inflight_len(), st.pending_len()),
            (0, 0, 0),
            "a job or task was kept"
        );
    }

    /// Tasks sent one at a time to idle workers (an `imap`'s single items)
    /// are timed when the worker takes them at once, so that the driver
    /// knows them for short and sends them to a worker that is awake rather
    /// than wake one (`benches/NOTES.md`, "Small `imap`s": 13-14 µs an `imap`
    /// of two items on two CPUs, 1.3-2.5 once timed). Such a send is timed
    /// only while a worker is seen waiting awake on another CPU than the
    /// driver's, which two CPUs give within a few rounds.
    #[test]
    fn tasks_sent_one_at_a_time_to_idle_workers_are_timed() {
        fn plus_one(x: u64) -> u64 {
            x + 1
        }
        if multiproc_proc::cpu_count() < 2 {
            eprintln!("skipped: needs two CPUs (a worker awake beside the driver)");
            return;
        }
        let pool = Pool::new(2).unwrap();
        let target = target_of(plus_one).unwrap();
        let mut rounds = 0;
        while pool.inner.lock().measured_ns(target).is_none() && rounds < 20_000 {
            let out: Vec<u64> = pool.imap(plus_one, [1, 2]).map(|r| r.unwrap()).collect();
            assert_eq!(out, [2, 3]);
            rounds += 1;
        }
        assert!(
            pool.inner.lock().measured_ns(target).is_some(),
            "{rounds} imaps of two items, and their function never timed"
        );
        eprintln!("timed after {rounds} imaps");
    }

    /// Python runs a task's callback whether or not its `AsyncResult` is
    /// kept (the tutorial's `pool.apply_async(test, callback=fun_callback)`).
    /// A dropped handle's callbacks (and error callbacks) run here too, each
    /// once, and its job is forgotten once they have; a dropped handle
    /// without callbacks is forgotten at once; `terminate` forgets the
    /// dropped handles' jobs it cuts short, whose callbacks never run.
    #[test]
    fn a_dropped_handles_callbacks_run_and_then_its_job_is_forgotten() {
        use std::sync::mpsc;
        fn nap(ms: u64) -> u64 {
            assert!(ms < 1_000, "too long a nap");
            std::thread::sleep(Duration::from_millis(ms));
            ms
        }
        let pool = Pool::new(2).unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let ok = |tx: &mpsc::Sender<String>| {
            let tx = tx.clone();
            move |v: &u64| tx.send(format!("ok {v}")).unwrap()
        };
        let failed = |tx: &mpsc::Sender<String>| {
            let tx = tx.clone();
            move |_: &Error| tx.send("failed".to_owned()).unwrap()
        };
        drop(
            pool.apply_async_with(nap, 30, ok(&tx), failed(&tx))
                .unwrap(),
        );
        drop(
            pool.apply_async_with(nap, 5_000, ok(&tx), failed(&tx))
                .unwrap(),
        );
        let all = tx.clone();
        drop(
            pool.map_async_with(
                sq,
                1..4,
                move |v| all.send(format!("{v:?}")).unwrap(),
                |_| {},
            )
            .unwrap(),
        );
        // No callbacks: forgotten at once.
        drop(pool.apply_async(nap, 40).unwrap());
        let mut got: Vec<String> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, ["[1, 4, 9]", "failed", "ok 30"]);
        // Each job is forgotten once its callback has run (just after).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pool.inner.lock().jobs.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(pool.inner.lock().jobs.len(), 0, "a job was kept");
        // A dropped handle's job that terminate cuts short: no callback, and
        // no job left.
        drop(
            pool.apply_async_with(nap, 900, ok(&tx), failed(&tx))
                .unwrap(),
        );
        let kept = pool
            .apply_async_with(nap, 900, ok(&tx), failed(&tx))
            .unwrap();
        pool.terminate();
        assert_eq!(pool.inner.lock().jobs.len(), 1, "only the kept one");
        assert!(matches!(kept.get(), Err(Error::Terminated)));
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        assert_eq!(pool.inner.lock().jobs.len(), 0);
    }

    /// A worker that will exit after `maxtasksperchild` tasks is sent no
    /// more than those: the one task past them it was sent (two go to each
    /// worker at first) waited in its inbox until its replacement came,
    /// while the other worker may have been free. Its end is looked for at
    /// every driving round until it is replaced (2.9 → 0.28 ms a task with
    /// one task a worker, `benches/NOTES.md`).
    #[test]
    fn a_worker_is_sent_no_more_tasks_than_it_will_run() {
        fn nap(ms: u64) -> u64 {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        }
        let pool = Pool::builder()
            .processes(2)
            .maxtasksperchild(1)
            .build()
            .unwrap();
        let handles: Vec<_> = (0..6)
            .map(|_| pool.apply_async(nap, 300).unwrap())
            .collect();
        {
            let st = pool.inner.lock();
            assert_eq!(st.sent_by_worker(), [1, 1], "one task a worker");
            assert_eq!(st.pending_len(), 4);
        }
        for h in handles {
            assert_eq!(h.get().unwrap(), 300);
        }
        // Without the limit, two a worker (the fewest sent ahead).
        let pool = Pool::new(2).unwrap();
        let handles: Vec<_> = (0..6)
            .map(|_| pool.apply_async(nap, 300).unwrap())
            .collect();
        assert_eq!(pool.inner.lock().sent_by_worker(), [2, 2]);
        drop(handles);
    }

    /// A worker's end is seen at once by the pool's watcher thread (its
    /// pidfd, polled with the others), not at the driver's next look at the
    /// workers: the flag it sets makes the next driving round look, and the
    /// notice it puts into the answers wakes a driver asleep on them (a task
    /// that killed its worker answered `WorkerDied` after 5.4 ms, the look's
    /// period; 0.3 ms with the watcher, `benches/NOTES.md`).
    #[test]
    fn a_workers_end_is_seen_at_once_by_the_watcher() {
        let pool = Pool::new(1).unwrap();
        let pid = pool.pids()[0];
        assert!(!pool.inner.deaths_seen());
        // SAFETY: a signal to the pool's own worker.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        // Nobody drives (nothing is outstanding): only the watcher sets it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pool.inner.deaths_seen() {
            assert!(Instant::now() < deadline, "the end was not seen");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(pool.apply(sq, 3).unwrap(), 9);
        assert_ne!(pool.pids()[0], pid, "replaced");
    }

    /// Where each item starts, as the task records it.
    fn starts_of(items: &[impl Serialize]) -> (Starts, Vec<usize>, usize) {
        let (msg, starts, n) = encode_chunk(items.iter(), items.len(), 0).unwrap();
        let len = msg.len() - wire::TASK_HEADER;
        let at = (0..=n).map(|i| starts.of(i, len)).collect();
        (starts, at, n)
    }

    /// A chunk's message is each item's argument encoded in turn, whatever
    /// loop wrote it: raw numbers go through blocks of their own, until an
    /// item of another kind or length (past a block or inside one).
    #[test]
    fn a_chunk_encodes_as_its_items_one_by_one_across_raw_blocks() {
        #[derive(Serialize, Clone)]
        #[serde(untagged)]
        enum N {
            Wide(u64),
            Narrow(u8),
            Text(String),
            Pair(u64, u32),
        }
        /// An iterator whose size hint is wrong (as the `Iterator` contract
        /// allows): it says nothing is left.
        struct Liar<I>(I);
        impl<I: Iterator> Iterator for Liar<I> {
            type Item = I::Item;
            fn next(&mut self) -> Option<I::Item> {
                self.0.next()
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                (0, Some(0))
            }
        }
        let wide = |k: u64| N::Wide(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let runs: Vec<Vec<N>> = vec![
            (0..3_000).map(wide).collect(),
            (0..2_500)
                .map(|k| if k == 2_049 { N::Narrow(7) } else { wide(k) })
                .collect(),
            (0..1_500)
                .map(|k| {
                    if k == 700 {
                        N::Text("x".into())
                    } else {
                        wide(k)
                    }
                })
                .collect(),
            (0..1_100).map(|k| N::Narrow(k as u8)).collect(),
            vec![N::Text("first".into()), wide(1), wide(2)],
            // Raw tuples, one stride, then a number, then tuples again.
            (0..2_000)
                .map(|k| {
                    if k == 999 {
                        wide(k)
                    } else {
                        N::Pair(k, k as u32)
                    }
                })
                .collect(),
        ];
        for (items, liar) in runs.iter().flat_map(|r| [(r, false), (r, true)]) {
            let (msg, starts, n) = if liar {
                encode_chunk(Liar(items.iter()), items.len(), 0).unwrap()
            } else {
                encode_chunk(items.iter(), items.len(), 0).unwrap()
            };
            let mut want = Vec::new();
            let mut at = Vec::new();
            for item in items {
                at.push(want.len());
                wire::encode_arg(item, &mut want).unwrap();
            }
            at.push(want.len());
            assert_eq!(n, items.len());
            assert!(
                msg[wire::TASK_HEADER..] == want[..],
                "{} items",
                items.len()
            );
            let len = want.len();
            assert_eq!((0..=n).map(|i| starts.of(i, len)).collect::<Vec<_>>(), at);
        }
    }

    #[test]
    fn a_chunk_of_equal_items_keeps_a_stride_and_any_other_a_list() {
        let (s, at, n) = starts_of(&[1u64, 2, 3]);
        assert_eq!((s, at, n), (Starts::Stride(9), vec![0, 9, 18, 27], 3));
        // Strings of different lengths: postcard, a list from the first odd one.
        let (s, at, _) = starts_of(&["a", "b", "ccc", "d"]);
        assert!(matches!(s, Starts::List(_)), "{s:?}");
        assert_eq!(at, vec![0, 3, 6, 11, 14]);
        // One item: its arguments are everything.
        let (s, at, _) = starts_of(&["only"]);
        assert_eq!((s, at), (Starts::Stride(0), vec![0, 6]));
        // The second item differs, or only the last one does.
        let (s, at, _) = starts_of(&["a", "bb"]);
        assert!(matches!(s, Starts::List(_)), "{s:?}");
        assert_eq!(at, vec![0, 3, 7]);
        let (_, at, _) = starts_of(&[Some(1u8), Some(2), None]);
        assert_eq!(at, vec![0, 3, 6, 8]);
        let (s, at, n) = starts_of(&[0u8; 0]);
        assert_eq!((s, at, n), (Starts::Stride(0), vec![0], 0));
    }
}
