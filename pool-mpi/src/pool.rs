//! [`MpiPool`]: the pool's calls on rank 0, over the serving ranks.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use multiproc_pool::{Error, Result, IMAP_BUFFER};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::handles::{MpiIMap, MpiIMapUnordered, MpiResult};
use crate::hub::{
    abort_all, dispatch, forget_unsent, run_finisher, send_all, take_finisher, Aborted, Chunk,
    Finisher, Gathered, Hub, Job, Load, State,
};
use crate::posted;
use crate::receiver::receive_answers;
use crate::serve::{self, Server};
use crate::wire;
use crate::world::{stop_all, RankInfo, DRAIN_LIMIT};

/// The pool over MPI ranks, on rank 0: the calls of
/// [`multiproc_pool::Pool`] (and [`Tasks`](crate::Tasks)), each task run in
/// the local pool of one of the other ranks.
///
/// Dropping it terminates it (Python's context manager), stops every rank
/// and finalises MPI; [`close`](MpiPool::close) then [`join`](MpiPool::join)
/// first to let the tasks sent finish.
pub struct MpiPool {
    pub(crate) hub: Arc<Hub>,
    pub(crate) ranks: Vec<RankInfo>,
    pub(crate) receiver: Mutex<Option<JoinHandle<()>>>,
    pub(crate) universe: Mutex<Option<Universe>>,
    pub(crate) size: usize,
    pub(crate) ended: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MpiPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiPool")
            .field("ranks", &self.ranks)
            .finish()
    }
}

impl MpiPool {
    /// Rank 0's pool over `ranks`, which have greeted it. A receiver
    /// thread that cannot be started (the system's limit of threads) stops
    /// every rank and is the error.
    pub(crate) fn start(universe: Universe, ranks: Vec<RankInfo>) -> Result<MpiPool> {
        let size = ranks.len() + 1;
        let mut st = State {
            next_job: 1,
            next_chunk: 1,
            ranks: vec![Load::default(); size],
            ..State::default()
        };
        for r in &ranks {
            st.ranks[r.rank].processes = r.processes.max(1);
        }
        let hub = Arc::new(Hub {
            st: Mutex::new(st),
            cv: Condvar::new(),
            sleepers: std::sync::atomic::AtomicUsize::new(0),
            changes: std::sync::atomic::AtomicU64::new(0),
            hot: std::sync::atomic::AtomicBool::new(false),
            has_deferred: std::sync::atomic::AtomicBool::new(false),
            finalized: std::sync::atomic::AtomicBool::new(false),
            drove: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
            callers_receive: std::sync::RwLock::new(true),
        });
        let spawned = {
            let hub = Arc::clone(&hub);
            let ranks = ranks.clone();
            std::thread::Builder::new()
                .name("mpi-answers".into())
                .spawn(move || receive_answers(hub, &ranks))
        };
        let receiver = match spawned {
            Ok(receiver) => receiver,
            Err(source) => {
                stop_all(&SimpleCommunicator::world(), size, wire::STOP_NOW);
                drop(universe);
                return Err(Error::Rank {
                    rank: 0,
                    message: format!(
                        "could not start the thread that receives the ranks' answers: {source}"
                    ),
                });
            }
        };
        Ok(MpiPool {
            hub,
            ranks,
            receiver: Mutex::new(Some(receiver)),
            universe: Mutex::new(Some(universe)),
            size,
            ended: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The serving ranks, as they greeted rank 0.
    pub fn ranks(&self) -> &[RankInfo] {
        &self.ranks
    }

    /// Worker processes on all ranks together.
    pub fn processes(&self) -> usize {
        self.ranks.iter().map(|r| r.processes).sum()
    }

    /// The `buffersize` of `imap` and `imap_unordered`: [`IMAP_BUFFER`], or
    /// `processes` if more (as the local pool's).
    fn imap_buffersize(&self) -> usize {
        self.processes().max(IMAP_BUFFER)
    }

    /// Runs `f(args)` on a rank and waits for it (Python's `apply`).
    ///
    /// # Errors
    /// The task's failure ([`Error::Panicked`], [`Error::WorkerDied`] …),
    /// [`Error::Closed`], [`Error::Rank`].
    pub fn apply<A, R>(&self, f: impl Fn(A) -> R + Copy + 'static, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Sends `f(args)` to a rank (Python's `apply_async`).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::EncodeArgs`], [`Error::Rank`].
    pub fn apply_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
    ) -> Result<MpiResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        // No finisher: the thread that receives only files the answer, and `get`
        // decodes it on the caller's thread (the local pool's way).
        self.submit_one(f, args, None, false)
    }

    /// [`apply_async`](MpiPool::apply_async) with Python's `callback` and
    /// `error_callback`, run in this process on the thread that receives
    /// the answer: the pool's receiver thread, or a thread of yours waiting
    /// on this pool for a result (it receives answers meanwhile, as a local
    /// pool's caller drives it); a callback that panics makes the result
    /// [`Error::CallbackPanicked`]. A callback may call the pool again and
    /// wait (`apply`, `get`, an `imap`): that thread receives meanwhile
    /// (Python's pool deadlocks there). The callbacks run whether or not the
    /// handle is kept, as Python's do, and a `Drop` of yours that panics on
    /// that thread (a result nobody is left to take) goes no further (the
    /// local pool's
    /// [`apply_async_with`](multiproc_pool::Pool::apply_async_with)).
    ///
    /// # Errors
    /// As for [`apply_async`](MpiPool::apply_async).
    pub fn apply_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<MpiResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let finisher = finisher(decode_one::<R>, callback, error_callback);
        self.submit_one(f, args, Some(finisher), true)
    }

    /// Sends one task whose finisher is `finisher` (`calls_back`: it runs
    /// the user's callbacks); without one, its handle decodes the answer.
    fn submit_one<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
        finisher: Option<Finisher>,
        calls_back: bool,
    ) -> Result<MpiResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let func = serve::func_of(f)?;
        let mut args_bytes = Vec::new();
        wire::postcard_append(&args, &mut args_bytes).map_err(Error::EncodeArgs)?;
        let by_caller = finisher.is_none();
        let job = self.new_job(finisher, false, calls_back)?;
        self.send_chunk(job, 0, func.0, func.1, 1, None, &args_bytes)?;
        Ok(if by_caller {
            MpiResult::decoded_by_caller(&self.hub, job, decode_one::<R>)
        } else {
            MpiResult::new(&self.hub, job)
        })
    }

    /// `f` over `items`, in order (Python's `map`), in chunks of Python's
    /// size for all the ranks' processes: `len / (4 × processes)`, rounded
    /// up. Each rank splits a chunk again for its own workers.
    ///
    /// # Errors
    /// [`Error::Item`] with the lowest failing index and its error;
    /// [`Error::Closed`]; [`Error::Rank`].
    pub fn map<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](MpiPool::map) with a chunk size (Python's `chunksize`).
    ///
    /// # Errors
    /// As for [`map`](MpiPool::map).
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
        let func = serve::func_of(f)?;
        let items: Vec<A> = items.into_iter().collect();
        self.feed_map(func.0, func.1, items, Some(chunksize), None)?
            .get()
    }

    /// [`map`](MpiPool::map) without waiting (Python's `map_async`).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::Item`] for an argument that does not
    /// encode, [`Error::Rank`].
    pub fn map_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<MpiResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let func = serve::func_of(f)?;
        let items: Vec<A> = items.into_iter().collect();
        self.feed_map(func.0, func.1, items, None, None)
    }

    /// [`map_async`](MpiPool::map_async) with Python's `callback` (given
    /// the whole list) and `error_callback`.
    ///
    /// # Errors
    /// As for [`map_async`](MpiPool::map_async).
    pub fn map_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<MpiResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let func = serve::func_of(f)?;
        let items: Vec<A> = items.into_iter().collect();
        let fin = finisher(decode_map::<R>, callback, error_callback);
        self.feed_map(func.0, func.1, items, None, Some(fin))
    }

    /// `f(a, b)` over pairs, in order (Python's `starmap`).
    ///
    /// # Errors
    /// As for [`map`](MpiPool::map).
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
        self.starmap_async(f, items)?.get()
    }

    /// [`starmap`](MpiPool::starmap) with a chunk size of the caller's
    /// choosing (Python's `chunksize`).
    ///
    /// # Errors
    /// As for [`map`](MpiPool::map).
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
        self.feed_starmap(f, items, Some(chunksize), None)?.get()
    }

    /// [`starmap`](MpiPool::starmap) without waiting (Python's `starmap_async`).
    ///
    /// # Errors
    /// As for [`map_async`](MpiPool::map_async).
    pub fn starmap_async<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<MpiResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.feed_starmap(f, items, None, None)
    }

    /// [`starmap_async`](MpiPool::starmap_async) with Python's `callback` and
    /// `error_callback`.
    ///
    /// # Errors
    /// As for [`map_async`](MpiPool::map_async).
    pub fn starmap_async_with<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        callback: impl FnOnce(&Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<MpiResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let fin = finisher(decode_map::<R>, callback, error_callback);
        self.feed_starmap(f, items, None, Some(fin))
    }

    /// The starmaps' [`feed_map`](MpiPool::feed_map): pairs to `f`'s server.
    fn feed_starmap<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
        fin: Option<Finisher>,
    ) -> Result<MpiResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let func = serve::func_of2(f)?;
        let items: Vec<(A, B)> = items.into_iter().collect();
        self.feed_map(func.0, func.1, items, chunksize, fin)
    }

    /// `f` over `items`, lazily and in order (Python's `imap`): chunks of
    /// one item, at most `processes + buffersize` of them ahead of what was
    /// taken (here: `buffersize` = [`IMAP_BUFFER`] or `processes` if more,
    /// as the local pool's `imap`; each chunk crosses ranks, and reading only
    /// `processes` ahead made an ordered `imap` of trivial items on two ranks
    /// 17-20 µs an item against 3-4). A failed item does not end the iteration. Take its results
    /// before [`join`](MpiPool::join): read on after `join`, it yields the
    /// results of what was sent, then [`Error::Joined`], then ends; after
    /// [`terminate`](MpiPool::terminate), what is not answered fails with
    /// [`Error::Terminated`], and it ends.
    pub fn imap<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> MpiIMap<'_, A, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_with(f, items, 1, self.imap_buffersize())
    }

    /// [`imap`](MpiPool::imap) with Python's `chunksize` and `buffersize`:
    /// at most `processes + buffersize` chunks are read ahead.
    pub fn imap_with<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> MpiIMap<'_, A, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiIMap::new(self, f, items.into_iter(), chunksize, buffersize, true)
    }

    /// [`imap`](MpiPool::imap) in the order results come, each with its
    /// item's index (Python's `imap_unordered`).
    pub fn imap_unordered<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> MpiIMapUnordered<'_, A, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.imap_unordered_with(f, items, 1, self.imap_buffersize())
    }

    /// [`imap_unordered`](MpiPool::imap_unordered) with Python's `chunksize`
    /// and `buffersize`, as [`imap_with`](MpiPool::imap_with).
    pub fn imap_unordered_with<A, R, I>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
        chunksize: usize,
        buffersize: usize,
    ) -> MpiIMapUnordered<'_, A, R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiIMapUnordered(MpiIMap::new(
            self,
            f,
            items.into_iter(),
            chunksize,
            buffersize,
            false,
        ))
    }

    /// Takes no new tasks; those sent still run (Python's `close`).
    pub fn close(&self) {
        self.hub.lock().closed = true;
    }

    /// Waits for every task sent after [`close`](MpiPool::close), then
    /// stops the ranks (Python's `join`). An [`imap`](MpiPool::imap) reads its
    /// input as its results are taken (Python's sends all of it at once), so
    /// take its results before `join`: read on after `join`, it yields the
    /// results of what was already sent, then [`Error::Joined`], then ends
    /// (as the local pool's does).
    ///
    /// # Errors
    /// [`Error::NotClosed`].
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// [`join`](MpiPool::join), waiting at most `timeout` for the tasks; on
    /// [`Error::Timeout`] the ranks are not stopped, and `join` may be asked
    /// again.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`join`](MpiPool::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        // A timeout too large for the clock waits for ever.
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        {
            let mut st = self.hub.lock();
            if !st.closed {
                return Err(Error::NotClosed);
            }
            // A job still fed (an imap) counts once what it sent is in: its
            // iterator may be in this very thread.
            while st.broken.is_none()
                && !(st.chunks.is_empty() && st.jobs.values().all(|j| j.done() || j.feeding))
            {
                st = self.hub.wait(st, deadline)?;
            }
        }
        self.end(wire::STOP_JOIN);
        Ok(())
    }

    /// Stops at once: every pending task fails with [`Error::Terminated`],
    /// and the ranks stop their workers (Python's `terminate`).
    pub fn terminate(&self) {
        {
            let mut st = self.hub.lock();
            st.closed = true;
            abort_all(&mut st, &Aborted::Terminated);
        }
        self.hub.wake();
        self.end(wire::STOP_NOW);
    }

    /// Stops the receiver thread and the ranks, once.
    pub(crate) fn end(&self, how: u8) {
        if self.ended.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        // No caller receives from here on (one receiving now finishes first;
        // none holds it while it runs a callback, which may be this call).
        *self
            .hub
            .callers_receive
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        {
            let mut st = self.hub.lock();
            st.stopping = true;
            if how == wire::STOP_NOW {
                st.chunks.clear();
                st.unsent.clear();
                st.deferred.clear();
            }
        }
        self.hub.wake();
        if let Some(t) = self.receiver.lock().ok().and_then(|mut r| r.take()) {
            // Ended by a callback on the receiver thread (it dropped the last
            // handle): that thread cannot join itself. It does the rest of
            // the ending here, and its loop stops at its next step (see
            // `Hub::finalized`).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        // The ranks complete the tasks posted to them while they poll, before
        // they see the stop; a rank that died never will.
        let broken = self.hub.lock().broken.is_some();
        posted::drain(if broken { Duration::ZERO } else { DRAIN_LIMIT });
        stop_all(&SimpleCommunicator::world(), self.size, how);
    }

    /// A new job; `calls_back`: its finisher runs the user's callbacks.
    pub(crate) fn new_job(
        &self,
        finisher: Option<Finisher>,
        feeding: bool,
        calls_back: bool,
    ) -> Result<u64> {
        let mut st = self.hub.lock();
        if let Some(b) = &st.broken {
            return Err(b.error());
        }
        if st.closed {
            return Err(Error::Closed);
        }
        let id = st.next_job;
        st.next_job += 1;
        st.jobs.insert(
            id,
            Job {
                total: 0,
                feeding,
                answered: 0,
                gathered: Gathered::default(),
                finisher,
                outcome: None,
                aborted: None,
                finishing: false,
                below_death: false,
                run_below: usize::MAX,
                calls_back,
                detached: false,
            },
        );
        Ok(id)
    }

    /// Queues one chunk of `job` and sends what the ranks have room for.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_chunk(
        &self,
        job: u64,
        first: usize,
        f: usize,
        server: Server,
        count: u32,
        local_chunk: Option<usize>,
        args: &[u8],
    ) -> Result<()> {
        let sends = {
            let mut st = self.hub.lock();
            if let Some(b) = &st.broken {
                return Err(b.error());
            }
            if st.stopping {
                // After join or terminate (an imap read on): no rank would run it.
                return Err(match st.jobs.get(&job).and_then(|j| j.aborted.as_ref()) {
                    Some(a) => a.error(),
                    None => Error::Joined,
                });
            }
            let below_death = match st.jobs.get_mut(&job) {
                // Wholly above an item that a death failed: not run.
                Some(j) if first > j.run_below => {
                    j.total += count as usize;
                    j.answered += count as usize;
                    return Ok(());
                }
                Some(j) => j.below_death,
                None => false,
            };
            let id = st.next_chunk;
            st.next_chunk += 1;
            let flags = if below_death { wire::BELOW_DEATH } else { 0 };
            let msg = serve::task_message(id, f, server, count, local_chunk, flags, args);
            if i32::try_from(msg.len()).is_err() {
                return Err(Error::OutOfRange {
                    what: "a chunk's bytes (one MPI message)",
                    value: msg.len() as u64,
                    min: 0,
                    max: i32::MAX as u64,
                });
            }
            if let Some(j) = st.jobs.get_mut(&job) {
                j.total += count as usize;
            }
            st.chunks.insert(
                id,
                Chunk {
                    job,
                    first,
                    count,
                    msg: Some(msg),
                    rank: 0,
                },
            );
            st.unsent.push_back(id);
            let sends = dispatch(&mut st);
            // A task for a rank that has others in flight, while the receiver
            // thread (or a waiting caller) looks for messages and so sends it
            // soon (within microseconds, or the receiver thread's 50 µs nap
            // while it stands back for a caller), waits for it:
            // the tasks a caller submits in a row then share a message, and
            // the rank runs them as one local job. A task for an idle rank
            // goes now.
            if self.hub.hot.load(std::sync::atomic::Ordering::Relaxed) {
                let (later, now): (Vec<_>, Vec<_>) = sends.into_iter().partition(|(rank, msg)| {
                    st.ranks[*rank].chunks > 1 && msg.len() <= wire::BATCH
                });
                if !later.is_empty() {
                    st.deferred.extend(later);
                    self.hub
                        .has_deferred
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                now
            } else {
                sends
            }
        };
        // Sent first, then the receiver woken (a wake of a sleeping thread
        // is a system call that can take microseconds on a virtual machine).
        send_all(sends);
        self.hub.wake();
        Ok(())
    }

    /// Sends `items` as chunks of a new map job.
    fn feed_map<A: Serialize, T>(
        &self,
        f: usize,
        server: Server,
        items: Vec<A>,
        chunksize: Option<usize>,
        finisher_given: Option<Finisher>,
    ) -> Result<MpiResult<T>>
    where
        T: MapOutcome + Send + 'static,
    {
        let len = items.len();
        let chunk = chunksize
            .unwrap_or_else(|| len.div_ceil(4 * self.processes().max(1)))
            .max(1);
        let calls_back = finisher_given.is_some();
        let fin = finisher_given.unwrap_or_else(|| T::finisher());
        let job = self.new_job(Some(fin), true, calls_back)?;
        if let Some(j) = self.hub.lock().jobs.get_mut(&job) {
            // Answers its lowest failing item only (`decode_map`).
            j.below_death = true;
        }
        // Until every chunk is sent, a way out (an error, or an item whose
        // `Serialize` panics) forgets the job: nothing would ever end it.
        let mut unfed = Abandon {
            pool: self,
            job: Some(job),
        };
        let mut bytes = Vec::new();
        let mut items = items.into_iter().enumerate().peekable();
        while items.peek().is_some() {
            bytes.clear();
            let mut first = None;
            let mut n = 0u32;
            for (i, item) in items.by_ref().take(chunk) {
                first.get_or_insert(i);
                if let Err(e) = wire::postcard_append(&item, &mut bytes) {
                    return Err(Error::Item {
                        index: i,
                        source: Box::new(Error::EncodeArgs(e)),
                    });
                }
                n += 1;
            }
            self.send_chunk(job, first.unwrap_or(0), f, server, n, None, &bytes)?;
        }
        unfed.job = None;
        let finished = {
            let mut st = self.hub.lock();
            st.jobs.get_mut(&job).and_then(|j| {
                j.feeding = false;
                take_finisher(j)
            })
        };
        if let Some((fin, g, total)) = finished {
            run_finisher(&self.hub, job, fin, g, total);
        }
        Ok(MpiResult::new(&self.hub, job))
    }

    /// Forgets a job whose feeding failed.
    fn abandon(&self, job: u64) {
        let mut st = self.hub.lock();
        st.forget_job(job);
        forget_unsent(&mut st, job);
    }

    /// The room rank 0's tables hold (entries they have room for): for a
    /// test that a burst's room goes back once it is taken.
    #[doc(hidden)]
    pub fn room_kept(&self) -> usize {
        let st = self.hub.lock();
        st.jobs.capacity() + st.chunks.capacity() + st.unsent.capacity()
    }

    /// How many jobs rank 0 keeps (not yet taken or dropped): for tests
    /// that look for a job left behind.
    #[doc(hidden)]
    pub fn jobs_kept(&self) -> usize {
        self.hub.lock().jobs.len()
    }
}

/// Forgets its job when dropped while still armed (see `feed_map`).
struct Abandon<'a> {
    pub(crate) pool: &'a MpiPool,
    pub(crate) job: Option<u64>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job {
            self.pool.abandon(job);
        }
    }
}

impl Drop for MpiPool {
    fn drop(&mut self) {
        self.terminate();
        let universe = self.universe.lock().ok().and_then(|mut u| u.take());
        self.hub
            .finalized
            .store(true, std::sync::atomic::Ordering::Release);
        // MPI_Finalize: every rank calls it as it stops. Dropped by a callback,
        // this runs on the receiver thread, not the one that initialised MPI:
        // the standard says finalize "should" run on that one; OpenMPI (with
        // MPI_THREAD_MULTIPLE, which `init` requires) accepts it, as the test
        // of that case shows.
        drop(universe);
    }
}

/// Every item's outcome, in order.
fn decode_items<R: DeserializeOwned>(g: Gathered, total: usize) -> Vec<Result<R>> {
    let mut out: Vec<Option<Result<R>>> = (0..total).map(|_| None).collect();
    for (first, rank, entries) in &g.parts {
        let mut rest = &entries[..];
        let mut i = *first;
        while i < total && out[i].is_none() {
            let (r, after) = wire::read_entry::<R>(rest, *rank);
            out[i] = Some(r);
            rest = after;
            i += 1;
            if rest.is_empty() {
                break;
            }
        }
    }
    for (i, e) in g.failed {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(Err(e));
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or(Err(Error::Terminated)))
        .collect()
}

/// The one item of an `apply`: what [`decode_items`] would make of item 0,
/// without a vector of every item (an `apply_async` decodes one a task).
fn decode_one<R: DeserializeOwned>(g: Gathered, _total: usize) -> Result<R> {
    let mut r = (g.parts.iter())
        .find(|(first, _, _)| *first == 0)
        .map(|(_, rank, entries)| wire::read_entry::<R>(entries, *rank).0);
    for (i, e) in g.failed {
        if i == 0 {
            r = Some(Err(e));
        }
    }
    r.unwrap_or(Err(Error::Terminated))
}

fn decode_map<R: DeserializeOwned>(g: Gathered, total: usize) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(total);
    let mut items = decode_items::<R>(g, total).into_iter().enumerate();
    while let Some((index, r)) = items.next() {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                // The other results are the user's values, dropped here (on
                // the receiver thread, most often).
                wire::drop_quietly((out, items));
                return Err(Error::Item {
                    index,
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(out)
}

/// A map's outcome type knows its plain finisher.
trait MapOutcome: Sized {
    fn finisher() -> Finisher;
}

impl<R: DeserializeOwned + Send + 'static> MapOutcome for Vec<R> {
    fn finisher() -> Finisher {
        finisher(decode_map::<R>, |_| {}, |_| {})
    }
}

pub(crate) fn finisher<T: Send + 'static>(
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
                let message = wire::panic_text(&*p);
                wire::drop_quietly(r);
                Err(Error::CallbackPanicked { message })
            }
        };
        Box::new(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An apply's one item, decoded without a vector of items, reads as
    /// `decode_items` reads item 0: its answer, an item failure in its
    /// place, a failure without an answer over it, nothing at all.
    #[test]
    fn one_item_decodes_as_item_zero_of_the_items() {
        let entry = |v: &Result<u64>| {
            let mut out = Vec::new();
            wire::put_outcome(&mut out, v);
            out
        };
        let gathered = |parts: &[(usize, Vec<u8>)], failed: &[usize]| Gathered {
            parts: parts
                .iter()
                .map(|(first, e)| (*first, 1, e.clone()))
                .collect(),
            failed: failed.iter().map(|&i| (i, Error::Cancelled)).collect(),
        };
        let (ok, failed) = (entry(&Ok(42)), entry(&Err(Error::Timeout)));
        let cases: Vec<Gathered> = vec![
            gathered(&[(0, ok.clone())], &[]),
            gathered(&[(1, failed.clone()), (0, ok.clone())], &[1]),
            gathered(&[(0, failed.clone())], &[]),
            gathered(&[(0, ok.clone())], &[0]),
            gathered(&[(0, Vec::new())], &[]),
            gathered(&[(2, ok.clone())], &[]),
            gathered(&[], &[]),
        ];
        for g in cases {
            let copy = Gathered {
                parts: g.parts.clone(),
                failed: (g.failed.iter())
                    .map(|&(i, _)| (i, Error::Cancelled))
                    .collect(),
            };
            let one = format!("{:?}", decode_one::<u64>(g, 1));
            let all = format!("{:?}", decode_items::<u64>(copy, 1).remove(0));
            assert_eq!(one, all);
        }
    }
}
