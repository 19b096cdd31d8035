//! [`IMap`] and [`IMapUnordered`]: a map read lazily, as it runs.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{Gathered, Job};
use crate::pool::{encode_chunk, Pool, CLOSURE};
use crate::task::{Target, Task};
use crate::wire;

/// The `buffersize` of [`Pool::imap`] and [`Pool::imap_unordered`], or
/// `processes` if that is more: they read up to `processes + buffersize`
/// chunks ahead of the results taken. Reading ahead hides the round trip to
/// the workers, paid once every `processes + buffersize` items: with a
/// `buffersize` of 2 (the pool's `processes`, the former default) an ordered
/// `imap` of trivial items took 4.9 µs an item, with 8 2.1, with 64 0.7
/// (`benches/NOTES.md`). Python's `imap` reads its whole input ahead.
pub const IMAP_BUFFER: usize = 64;

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
    /// Lists kept from one round to the next, empty between (a round that
    /// made its own allocated a few blocks an item: `benches/NOTES.md`):
    /// the tasks a feed makes, and the job's list of answers, swapped in
    /// for the one a gather takes.
    tasks: Vec<Task>,
    spare_parts: smallvec::SmallVec<[crate::job::Part; 1]>,
}

impl<'p, R, I, A> IMap<'p, R, I>
where
    I: Iterator<Item = A>,
    A: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// An `imap` of `target` (its error, if it has none, is the first and
    /// last thing yielded).
    pub(crate) fn new(
        pool: &'p Pool,
        target: Result<Target>,
        input: I,
        chunksize: usize,
        buffersize: usize,
        ordered: bool,
    ) -> IMap<'p, R, I> {
        let chunksize = chunksize.max(1);
        let (target, job) = match target {
            Ok(t) => {
                // Room for the answers that may come between two looks: as
                // many as its chunks in flight, as far as the input says.
                let mut job = Job::new(true, None);
                let ahead = pool.processes().saturating_add(buffersize);
                let told = input.size_hint().1.map_or(ahead, |n| n.div_ceil(chunksize));
                job.expect_parts(ahead.min(told));
                (t, pool.inner.new_job(job).map(|(_, job)| job))
            }
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
            tasks: Vec::new(),
            spare_parts: smallvec::SmallVec::new(),
        }
    }

    /// Reads and sends chunks while fewer than `ahead` items are out.
    fn feed(&mut self, job: u64) {
        let mut tasks = std::mem::take(&mut self.tasks);
        // Room for the chunks this round may read, as far as the input says.
        let wanted = (self.ahead.saturating_sub(self.fed - self.taken)).div_ceil(self.chunksize);
        let told = self
            .input
            .size_hint()
            .1
            .map_or(wanted, |n| n.div_ceil(self.chunksize));
        tasks.reserve(wanted.min(told));
        while !self.exhausted && self.fed - self.taken < self.ahead {
            let input = &mut self.input;
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // (Inline for a chunk of one, the default: no allocation an item.)
                input
                    .by_ref()
                    .take(self.chunksize)
                    .collect::<smallvec::SmallVec<[A; 1]>>()
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
            // Made at once, so that a message small enough to go in its
            // record gives its buffer back for the next chunk to encode in.
            match encode_chunk(items.iter(), items.len(), self.fed) {
                Ok((args, starts, n)) => {
                    tasks.push(Task::new(
                        job,
                        self.fed,
                        n as u32,
                        self.target,
                        args,
                        starts,
                    ));
                }
                Err(e) => {
                    self.stop = Some(e);
                    self.exhausted = true;
                    break;
                }
            }
            self.fed += items.len();
        }
        let mut st = self.pool.inner.lock();
        for task in tasks.drain(..) {
            self.pool.inner.queue(&mut st, task);
        }
        self.tasks = tasks;
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
        let (mut gathered, aborted) = match st.jobs.get_mut(&job) {
            Some(j) => (
                Gathered {
                    parts: std::mem::replace(
                        &mut j.gathered.parts,
                        std::mem::take(&mut self.spare_parts),
                    ),
                    failed: std::mem::take(&mut j.gathered.failed),
                },
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
        // The list, emptied, is the next gather's to swap in.
        gathered.parts.clear();
        self.spare_parts = std::mem::take(&mut gathered.parts);
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
pub struct IMapUnordered<'p, R, I>(pub(crate) IMap<'p, R, I>);

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
