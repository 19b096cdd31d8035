//! [`Pool`] and [`FnPool`]: submitting tasks, chunks and maps.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::buffers::task_buffer;
use crate::builder::Builder;
use crate::core::Inner;
use crate::error::{Error, Result};
use crate::handle::{
    decode_each, decode_map, decode_map_onto, decode_one, decode_part_onto, finisher, output,
    AsyncResult, Early, MapResult,
};
use crate::imap::{IMap, IMapUnordered, IMAP_BUFFER};
use crate::job::{Finisher, Job};
use crate::raw;
use crate::task::{Starts, Target, Task};
use crate::wire::{self, TARGET_CLOSURE, TARGET_FN};

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
    pub(crate) inner: Arc<Inner>,
    pub(crate) background: Option<JoinHandle<()>>,
    /// The pool's other threads: a streamer per worker (see
    /// `Inner::streamer`) and the watcher of the workers' ends
    /// (`Inner::watcher`).
    pub(crate) helpers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Not part of the API: whether this thread is marked as one that found
    /// no entry free in this pool's queues (a mark that ran out included,
    /// until the thread's next look drops it).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn bystander_here(&self) -> bool {
        self.inner.no_entry_marked_here()
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
            let mut job = Job::new(true, finisher);
            job.expect_parts(len.div_ceil(chunk));
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
    pub(crate) pool: Pool,
    pub(crate) _types: PhantomData<fn(A) -> R>,
}

pub(crate) const CLOSURE: Target = Target {
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
pub(crate) fn encode_chunk<T: Serialize>(
    items: impl Iterator<Item = T>,
    max: usize,
    first: usize,
) -> Result<(Vec<u8>, Starts, usize)> {
    let mut items = items.take(max);
    // No item, no buffer (a map's last look at its input took this thread's
    // kept one and dropped it: a small map allocated two a call).
    let Some(item) = items.next() else {
        return Ok((Vec::new(), Starts::Stride(0), 0));
    };
    let mut msg = crate::buffers::chunk_buffer(max);
    // Appends item `i`: how long it is.
    let put = |item: &T, msg: &mut Vec<u8>, i: usize| -> Result<usize> {
        let before = msg.len();
        wire::encode_arg(item, msg).map_err(|e| Error::Item {
            index: first + i,
            source: Box::new(Error::EncodeArgs(e)),
        })?;
        Ok(msg.len() - before)
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
    // (And the room a raw entry's write asks for past the length: with only
    // what the entries take, the last writes doubled the buffer of every
    // chunk the hint had sized, an 18 KB copy for a chunk of 2 000 `u64`s,
    // 2.4 MB for one of Python's chunks of pairs.)
    let room = stride
        .saturating_mul(upper.unwrap_or(guess).min(guess))
        .saturating_add(raw::ROOM_PAST);
    if msg.capacity() - msg.len() < room {
        if msg.capacity() >= crate::buffers::spare::MIN {
            // A new buffer of the size needed, the few bytes so far copied
            // over: `reserve` would have grown a kept buffer a little too
            // small (an answer's, a few bytes shorter than a task of as many
            // items) to twice its size, copying all of it. It goes back.
            let mut fresh = Vec::with_capacity(msg.len().saturating_add(room));
            fresh.extend_from_slice(&msg);
            crate::buffers::spare::give(std::mem::replace(&mut msg, fresh));
        } else {
            msg.reserve_exact(room);
        }
    }
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
        assert!(
            crate::buffers::spare::kept() > 0,
            "a large map kept no buffer"
        );
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
        assert_eq!(crate::buffers::spare::kept(), 0, "spare buffers kept");
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

    /// A driver waits longer before it sleeps while the last task sent was
    /// of a function measured short (its answer is due within microseconds;
    /// `core::DUE_WATCH`), and not for one not measured yet or measured
    /// slow. Each task is sent to an idle pool, so the measure read just
    /// before its submission is the one its send went by (a measure moves
    /// only as answers are filed: on a loaded machine a short function's
    /// can read slow for a while, and the flag must follow it).
    #[test]
    fn answers_are_watched_for_only_while_the_last_task_sent_is_short() {
        use crate::core::WAKE_WORTH;
        use std::sync::atomic::Ordering;
        fn plus_one(x: u64) -> u64 {
            x + 1
        }
        fn nap(ms: u64) -> u64 {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        }
        // Sends one task of `f` to the idle pool: whether the flag says
        // what the measure it was sent by says, and that measure.
        fn send<F: Fn(u64) -> u64 + Copy + 'static>(pool: &Pool, f: F, arg: u64) -> Option<u64> {
            let measured = pool.inner.lock().measured_ns(target_of(f).unwrap());
            let h = pool.apply_async(f, arg).unwrap();
            let flag = pool.inner.answer_due.load(Ordering::Relaxed);
            assert_eq!(h.get().unwrap(), f(arg));
            assert_eq!(
                flag,
                measured.is_some_and(|ns| ns < WAKE_WORTH),
                "the flag after a send measured {measured:?}"
            );
            measured
        }
        let pool = Pool::new(2).unwrap();
        let due = || pool.inner.answer_due.load(Ordering::Relaxed);
        assert!(!due(), "nothing sent yet");
        // A function never timed: its answer may be long in coming.
        assert_eq!(send(&pool, nap, 20), None);
        // Bursts time the short function (tasks back to back are), and
        // sends of it then set the flag.
        let mut short_seen = false;
        for _ in 0..200 {
            let hs: Vec<_> = (0..64)
                .map(|i| pool.apply_async(plus_one, i).unwrap())
                .collect();
            for (i, h) in (0..).zip(hs) {
                assert_eq!(h.get().unwrap(), i + 1);
            }
            if send(&pool, plus_one, 1).is_some_and(|ns| ns < WAKE_WORTH) {
                short_seen = true;
                break;
            }
        }
        assert!(short_seen, "the short function never measured short");
        assert!(due());
        // A function measured slow (tasks back to back on each worker are
        // timed): not watched for.
        for _ in 0..20 {
            let hs: Vec<_> = (0..4).map(|_| pool.apply_async(nap, 5).unwrap()).collect();
            for h in hs {
                assert_eq!(h.get().unwrap(), 5);
            }
            if send(&pool, nap, 5).is_some_and(|ns| ns >= WAKE_WORTH) {
                assert!(!due());
                return;
            }
        }
        panic!("a 5 ms task never measured slow");
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
        // (No items: no message, not even a header.)
        let len = msg.len().saturating_sub(wire::TASK_HEADER);
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

    /// A chunk whose input says how many items it has is encoded into one
    /// allocation of the size it needs, for numbers of every width and raw
    /// tuples: growing it once more copies the whole chunk.
    #[test]
    fn a_sized_chunk_of_raw_numbers_or_tuples_is_allocated_once() {
        fn check<T: Serialize>(items: Vec<T>) {
            let n = items.len();
            let (msg, _, got) = encode_chunk(items.iter(), n, 0).unwrap();
            assert_eq!(got, n);
            // (A chunk of a few items may stay in the buffer its first
            // item's write grew from 64 bytes.)
            assert!(
                msg.capacity() <= (msg.len() + raw::ROOM_PAST).max(128),
                "{} items of {}: {} bytes in a buffer of {}",
                n,
                std::any::type_name::<T>(),
                msg.len(),
                msg.capacity()
            );
        }
        // (Below `spare::CHUNK_ITEMS`: a larger chunk may reuse a spare buffer.)
        for n in [2, 1_023, 1_024, 1_025, 2_000, 4_095] {
            check((0..n as u64).collect());
            check((0..n as u32).collect());
            check((0..n).map(|k| k as u8).collect());
            check((0..n).map(|k| k as f64).collect());
            check((0..n as u64).map(|k| (k, k as u32)).collect());
            check((0..n as u16).map(|k| (k, k, k as u8)).collect());
        }
    }

    /// A large chunk takes a kept buffer; one a little too small for it (an
    /// answer's, a few bytes shorter than a task of as many items) is given
    /// back, and the chunk gets a buffer of its size, not one grown to twice
    /// the kept one's.
    #[test]
    fn a_large_chunk_given_a_kept_buffer_too_small_gets_one_of_its_size() {
        let items: Vec<u64> = (0..10_000).collect();
        let need = wire::TASK_HEADER + 9 * items.len() + raw::ROOM_PAST;
        assert!(items.len() >= crate::buffers::spare::CHUNK_ITEMS);
        assert!(need - 26 >= crate::buffers::spare::MIN);
        crate::buffers::spare::give(Vec::with_capacity(need - 26));
        let (msg, _, n) = encode_chunk(items.iter(), items.len(), 0).unwrap();
        assert_eq!(n, items.len());
        assert_eq!(msg.len(), need - raw::ROOM_PAST);
        assert!(
            msg.capacity() <= need,
            "{} bytes in a buffer of {}",
            msg.len(),
            msg.capacity()
        );
        assert_eq!(crate::buffers::spare::kept(), 1, "the kept one went back");
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
