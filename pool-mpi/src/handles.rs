//! What rank 0's calls hand back: [`MpiResult`] (Python's `AsyncResult`)
//! and the iterators of `imap` and `imap_unordered`, waiting on the
//! [`MpiPool`]'s hub; and the [`Tasks`](crate::Tasks) and
//! [`Pending`](crate::Pending) implementations.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_pool::{Error, Result};
use multiproc_sync::futex::try_yield;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::hub::{forget_unsent, Aborted, Gathered, Hub, Job};
use crate::pool::MpiPool;
use crate::world::WATCH;
use crate::{serve, wire};

/// A pending result of an [`MpiPool`] (Python's `AsyncResult`). Dropping
/// it forgets its job's result, but not its callbacks, which run all the
/// same (as the local pool's [`AsyncResult`](multiproc_pool::AsyncResult)).
pub struct MpiResult<T> {
    hub: Arc<Hub>,
    job: Option<u64>,
    /// How its caller decodes the answer, for a job without a finisher (a
    /// plain `apply_async`: the thread that receives only files its answer).
    decode: Option<fn(Gathered, usize) -> Result<T>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for MpiResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiResult").field("job", &self.job).finish()
    }
}

impl<T: Send + 'static> MpiResult<T> {
    /// The handle of a job whose finisher makes its outcome.
    pub(crate) fn new(hub: &Arc<Hub>, job: u64) -> MpiResult<T> {
        MpiResult {
            hub: Arc::clone(hub),
            job: Some(job),
            decode: None,
            _t: PhantomData,
        }
    }

    /// The handle of a job without a finisher, whose answer its caller
    /// decodes with `decode` (in `get`, or in `successful`).
    pub(crate) fn decoded_by_caller(
        hub: &Arc<Hub>,
        job: u64,
        decode: fn(Gathered, usize) -> Result<T>,
    ) -> MpiResult<T> {
        let mut r = MpiResult::new(hub, job);
        r.decode = Some(decode);
        r
    }

    /// Waits for the result and takes it (Python's `get()`).
    ///
    /// # Errors
    /// The task's failure, [`Error::Terminated`], [`Error::Rank`].
    pub fn get(mut self) -> Result<T> {
        self.take(None)
    }

    /// [`get`](MpiResult::get), waiting at most `timeout`; after
    /// [`Error::Timeout`] the handle may be asked again. While it waits,
    /// this thread receives answers (see
    /// [`apply_async_with`](MpiPool::apply_async_with)): a callback of
    /// another job whose answer it files runs here, and the call returns
    /// once that callback has, even past `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`]; as for [`get`](MpiResult::get);
    /// [`Error::AlreadyTaken`] after a successful call.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        // A timeout too large for the clock waits for ever.
        self.take(Instant::now().checked_add(timeout))
    }

    /// Waits until the result is there.
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// [`wait`](MpiResult::wait), at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Whether the result is there.
    pub fn ready(&self) -> bool {
        let Some(job) = self.job else { return true };
        self.hub.lock().jobs.get(&job).is_none_or(Job::done)
    }

    /// Whether the task succeeded; `None` while it runs.
    pub fn successful(&self) -> Option<bool> {
        let job = self.job?;
        let mut st = self.hub.lock();
        let j = st.jobs.get_mut(&job)?;
        if j.aborted.is_some() {
            return Some(false);
        }
        if let Some(decode) = self.decode.filter(|_| j.outcome.is_none() && j.complete()) {
            let r = decode(std::mem::take(&mut j.gathered), j.total);
            j.outcome = Some(Box::new(r));
        }
        let outcome = j.outcome.as_ref()?;
        outcome.downcast_ref::<Result<T>>().map(Result::is_ok)
    }

    /// Takes the task back if it was not sent to a rank yet; whether it was.
    pub fn cancel(&self) -> bool {
        let Some(job) = self.job else { return false };
        let mut st = self.hub.lock();
        // Only a job none of whose chunks went out can be taken back.
        if st.sent_any(job) || forget_unsent(&mut st, job) == 0 {
            return false;
        }
        if let Some(j) = st.jobs.get_mut(&job) {
            j.aborted = Some(Aborted::Cancelled);
        }
        drop(st);
        self.hub.wake();
        true
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<()> {
        let Some(job) = self.job else { return Ok(()) };
        let mut st = self.hub.lock();
        // An answer often comes within microseconds: watch for a change a
        // little (yielding) before sleeping, which costs a trip through the
        // scheduler to wake from.
        let mut watch_until =
            deadline.map_or(Instant::now() + WATCH, |d| d.min(Instant::now() + WATCH));
        loop {
            if st.jobs.get(&job).is_none_or(Job::done) {
                return Ok(());
            }
            if let Some(receiver) = crate::receiver::receiver_here(&self.hub) {
                // A callback waiting: the answer comes through this thread.
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::Timeout);
                }
                drop(st);
                receiver.step();
                st = self.hub.lock();
                continue;
            }
            if Instant::now() < watch_until {
                let seen = self.hub.changes.load(std::sync::atomic::Ordering::Acquire);
                drop(st);
                // Receiving the answers itself meanwhile (the receiver thread
                // stands back), yielding when none has come; sleeping at once
                // while yields hand a busy program a time slice (`try_yield`).
                while self.hub.changes.load(std::sync::atomic::Ordering::Acquire) == seen
                    && Instant::now() < watch_until
                {
                    if !crate::receiver::receive_here(&self.hub) && !try_yield() {
                        watch_until = Instant::now();
                    }
                }
                st = self.hub.lock();
                continue;
            }
            // Asleep from here: the receiver thread receives again.
            self.hub.note_stopped_driving();
            st = self.hub.wait(st, deadline)?;
        }
    }

    fn take(&mut self, deadline: Option<Instant>) -> Result<T> {
        let Some(job) = self.job else {
            return Err(Error::AlreadyTaken);
        };
        self.wait_until(deadline)?;
        let j = self.hub.lock().forget_job(job);
        self.job = None;
        let Some(j) = j else {
            return Err(Error::Terminated);
        };
        if let Some(a) = &j.aborted {
            return Err(a.error());
        }
        let complete = j.complete();
        match (j.outcome, self.decode) {
            (Some(o), _) => o
                .downcast::<Result<T>>()
                .map_or(Err(Error::Terminated), |r| *r),
            (None, Some(decode)) if complete => decode(j.gathered, j.total),
            (None, _) => Err(Error::Terminated),
        }
    }
}

impl<T> Drop for MpiResult<T> {
    fn drop(&mut self) {
        if let Some(job) = self.job {
            let mut st = self.hub.lock();
            // Kept while the user's callbacks are still to run; else
            // forgotten now (answers still coming are dropped as they arrive).
            if !st.jobs.get_mut(&job).is_some_and(Job::detach) {
                let forgotten = st.forget_job(job);
                drop(st);
                drop(forgotten);
            }
        }
    }
}

/// The iterator of [`MpiPool::imap`]: each item's `Result<R>`, in order.
pub struct MpiIMap<'p, A, R, I> {
    pool: &'p MpiPool,
    job: Option<u64>,
    /// How its tasks cross (see [`serve::func_of`]).
    func: (usize, serve::Server),
    _args: PhantomData<fn(A)>,
    items: I,
    chunk: usize,
    /// Chunks allowed ahead of what was taken.
    window: usize,
    ordered: bool,
    /// Items sent so far, and yielded so far.
    sent: usize,
    yielded: usize,
    exhausted: bool,
    ready: BTreeMap<usize, Result<R>>,
    /// The first failure to send, yielded once.
    error: Option<Error>,
    /// The input panicked while a chunk was read: resumed in the reader once
    /// every result sent before it is taken (as [`multiproc_pool::Pool::imap`]).
    input_panic: Option<Box<dyn std::any::Any + Send>>,
}

impl<'p, A, R, I> MpiIMap<'p, A, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(
        pool: &'p MpiPool,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
        chunksize: usize,
        buffersize: usize,
        ordered: bool,
    ) -> Self {
        // A function no rank has is the first and last thing yielded.
        let (func, job) = match serve::func_of(f) {
            Ok(func) => (func, pool.new_job(None, true, false)),
            Err(e) => ((0, serve::server::<A, R> as serve::Server), Err(e)),
        };
        let (job, error) = match job {
            Ok(j) => (Some(j), None),
            Err(e) => (None, Some(e)),
        };
        MpiIMap {
            pool,
            job,
            func,
            _args: PhantomData,
            items,
            chunk: chunksize.max(1),
            window: pool.processes().saturating_add(buffersize),
            ordered,
            sent: 0,
            yielded: 0,
            exhausted: false,
            ready: BTreeMap::new(),
            error,
            input_panic: None,
        }
    }

    /// The unordered form's items: `(index, result)`; waiting for one until
    /// `deadline` (`Err(Timeout)` past it, nothing taken).
    fn next_indexed(&mut self, deadline: Option<Instant>) -> Result<Option<(usize, Result<R>)>> {
        if let Some(e) = self.error.take() {
            self.exhausted = true;
            return Ok(Some((self.yielded, Err(e))));
        }
        let Some(job) = self.job else {
            return Ok(None);
        };
        loop {
            self.top_up(job);
            let taken = if self.ordered {
                self.ready.remove(&self.yielded).map(|r| (self.yielded, r))
            } else {
                self.ready.pop_first()
            };
            if let Some(got) = taken {
                self.yielded += 1;
                return Ok(Some(got));
            }
            if self.exhausted && self.yielded >= self.sent {
                if let Some(payload) = self.input_panic.take() {
                    std::panic::resume_unwind(payload);
                }
                return Ok(None);
            }
            // Wait for parts of this job.
            let mut st = self.pool.hub.lock();
            loop {
                let Some(j) = st.jobs.get_mut(&job) else {
                    return Ok(None);
                };
                if let Some(a) = &j.aborted {
                    // Every item not answered fails the same way.
                    let e = a.clone();
                    for i in self.yielded..self.sent {
                        self.ready.entry(i).or_insert_with(|| Err(e.error()));
                    }
                    // Terminated (or a rank died): no more input is read.
                    self.exhausted = true;
                    break;
                }
                let g = std::mem::take(&mut j.gathered);
                if !g.parts.is_empty() || !g.failed.is_empty() {
                    drop(st);
                    self.file(g);
                    break;
                }
                if let Some(receiver) = crate::receiver::receiver_here(&self.pool.hub) {
                    // Iterated in a callback: the answers come through this thread.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Error::Timeout);
                    }
                    drop(st);
                    receiver.step();
                    st = self.pool.hub.lock();
                    continue;
                }
                st = self.pool.hub.wait(st, deadline)?;
            }
        }
    }

    /// [`next`](Iterator::next), waiting at most `timeout` for the result, as
    /// [`multiproc_pool::IMap::next_timeout`] does: `Err(Error::Timeout)` when it
    /// did not come in time (the iteration goes on), `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Result<R>>> {
        // A timeout too large for the clock waits for ever.
        let deadline = Instant::now().checked_add(timeout);
        Ok(self.next_indexed(deadline)?.map(|(_, r)| r))
    }

    fn file(&mut self, g: Gathered) {
        for (first, rank, entries) in g.parts {
            let mut rest = &entries[..];
            let mut i = first;
            while !rest.is_empty() && i < self.sent {
                let (r, after) = wire::read_entry::<R>(rest, rank);
                self.ready.insert(i, r);
                rest = after;
                i += 1;
            }
        }
        for (i, e) in g.failed {
            self.ready.insert(i, Err(e));
        }
    }

    /// Sends chunks while fewer than `window` are ahead of what was taken.
    fn top_up(&mut self, job: u64) {
        while !self.exhausted
            && self.sent
                < self
                    .yielded
                    .saturating_add(self.window.saturating_mul(self.chunk))
        {
            let mut bytes = Vec::new();
            let first = self.sent;
            let mut n = 0u32;
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for item in self.items.by_ref().take(self.chunk) {
                    if let Err(e) = wire::postcard_append(&item, &mut bytes) {
                        self.ready
                            .insert(first + n as usize, Err(Error::EncodeArgs(e)));
                        // Its place is taken by the error; the chunk sends the rest.
                        self.sent += 1;
                        continue;
                    }
                    n += 1;
                }
            }));
            if let Err(payload) = read {
                // The chunk being read is lost, as in Python; the input is
                // not read again.
                self.ready.retain(|&i, _| i < first);
                self.sent = first;
                self.input_panic = Some(payload);
                self.exhausted = true;
                if let Some(j) = self.pool.hub.lock().jobs.get_mut(&job) {
                    j.feeding = false;
                }
                break;
            }
            if n == 0 {
                if self.sent == first {
                    self.exhausted = true;
                    let mut st = self.pool.hub.lock();
                    if let Some(j) = st.jobs.get_mut(&job) {
                        j.feeding = false;
                    }
                }
                continue;
            }
            // Items whose encoding failed were counted into `sent` as they came.
            let first = self.sent;
            self.sent += n as usize;
            let (f, server) = self.func;
            if let Err(e) = self
                .pool
                .send_chunk(job, first, f, server, n, Some(1), &bytes)
            {
                for i in first..self.sent {
                    self.ready.insert(i, Err(copy_error(&e)));
                }
                // Nothing more can be sent (the pool ended, or broke): the
                // iteration ends after these.
                self.exhausted = true;
                if let Some(j) = self.pool.hub.lock().jobs.get_mut(&job) {
                    j.feeding = false;
                }
            }
        }
    }
}

/// The error again, for each item it fails.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Closed => Error::Closed,
        Error::Joined => Error::Joined,
        Error::Terminated => Error::Terminated,
        Error::Rank { rank, message } => Error::Rank {
            rank: *rank,
            message: message.clone(),
        },
        other => Error::Rank {
            rank: 0,
            message: other.to_string(),
        },
    }
}

/// The iterator of [`MpiPool::imap_unordered`]: `(index, result)` in the
/// order results come.
pub struct MpiIMapUnordered<'p, A, R, I>(pub(crate) MpiIMap<'p, A, R, I>);

impl<A, R, I> Iterator for MpiIMapUnordered<'_, A, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Item = (usize, Result<R>);
    fn next(&mut self) -> Option<Self::Item> {
        let yielded = self.0.yielded;
        self.0
            .next_indexed(None)
            .unwrap_or_else(|e| Some((yielded, Err(e))))
    }
}

impl<A, R, I> MpiIMapUnordered<'_, A, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    /// [`next`](Iterator::next), waiting at most `timeout` for a result (see
    /// [`MpiIMap::next_timeout`]).
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(usize, Result<R>)>> {
        self.0.next_indexed(Instant::now().checked_add(timeout))
    }
}

impl<A, R, I> Iterator for MpiIMap<'_, A, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;
    fn next(&mut self) -> Option<Result<R>> {
        let yielded = self.yielded;
        self.next_indexed(None)
            .unwrap_or_else(|e| Some((yielded, Err(e))))
            .map(|(_, r)| r)
    }
}

impl<A, R, I> Drop for MpiIMap<'_, A, R, I> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            // Answers still coming are dropped as they arrive.
            self.pool.hub.lock().forget_job(job);
        }
    }
}

impl<T: Send + 'static> crate::Pending<T> for MpiResult<T> {
    fn get(self) -> Result<T> {
        MpiResult::get(self)
    }
    fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        MpiResult::get_timeout(self, timeout)
    }
    fn wait(&self) {
        MpiResult::wait(self);
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        MpiResult::wait_timeout(self, timeout)
    }
    fn ready(&self) -> bool {
        MpiResult::ready(self)
    }
    fn successful(&self) -> Option<bool> {
        MpiResult::successful(self)
    }
}

impl crate::Tasks for MpiPool {
    type Pending<T: Send + 'static> = MpiResult<T>;

    fn processes(&self) -> usize {
        MpiPool::processes(self)
    }

    fn apply<A, R>(&self, f: impl Fn(A) -> R + Copy + 'static, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::apply(self, f, args)
    }

    fn apply_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
    ) -> Result<MpiResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::apply_async(self, f, args)
    }

    fn apply_async_with<A, R>(
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
        MpiPool::apply_async_with(self, f, args, callback, error_callback)
    }

    fn map<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::map(self, f, items)
    }

    fn map_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<MpiResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::map_async(self, f, items)
    }

    fn starmap<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::starmap(self, f, items)
    }

    fn starmap_async<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<MpiResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::starmap_async(self, f, items)
    }

    fn imap<'a, A, R, I>(
        &'a self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> impl Iterator<Item = Result<R>> + 'a
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::imap(self, f, items)
    }

    fn imap_unordered<'a, A, R, I>(
        &'a self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> impl Iterator<Item = (usize, Result<R>)> + 'a
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        MpiPool::imap_unordered(self, f, items)
    }

    fn close(&self) {
        MpiPool::close(self);
    }

    fn join(&self) -> Result<()> {
        MpiPool::join(self)
    }

    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        MpiPool::join_timeout(self, timeout)
    }

    fn terminate(&self) {
        MpiPool::terminate(self);
    }
}
