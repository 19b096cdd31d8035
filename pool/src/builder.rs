//! [`Builder`]: a pool's settings, their defaults, and the start of a pool
//! from them (the memory it shares with its workers, its zygote and threads).

use std::marker::PhantomData;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use multiproc_proc::ForkServer;
use multiproc_queue::ByteQueue;
use multiproc_shm::{Location, SharedSlice};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::core::Inner;
use crate::error::{Error, Result};
use crate::pool::{default_processes, FnPool, Pool};
use crate::wire;
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
        // A worker spins and yields for its next task itself, then sleeps
        // in the inbox's get, which gets no spins of its own (and so no
        // yields): see `worker::next_task`.
        let inboxes = (0..processes)
            .map(|_| {
                let mut inbox =
                    ByteQueue::with_lane(Location::Anonymous, depth, self.max_inline, self.lane)?;
                inbox.set_spin_limit(0);
                Ok(inbox)
            })
            .collect::<std::result::Result<Vec<_>, multiproc_queue::Error>>()?;
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
                        // Python's name for a pool's worker process.
                        multiproc_proc::set_current_process_name(format!(
                            "ForkPoolWorker-{}",
                            word(8)
                        ));
                        worker::run(&setup, word(0) as usize, word(4))
                    })
                    .allow_threads()
                    .start();
                // The watcher's eventfd, after the zygote's fork: no worker
                // holds a copy.
                let wake = crate::core::watcher_fds().map_err(|source| {
                    Error::Proc(multiproc_proc::Error::Io {
                        op: "make the watcher's eventfd and epoll set",
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
                        crate::core::Deaths::new(wake),
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
