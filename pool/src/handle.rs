//! [`AsyncResult`] (and [`MapResult`]): a job's handle, and how a job's
//! answers are decoded into its result.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::core::{Inner, State};
use crate::error::{Error, Result};
use crate::job::{Finish, Finisher, Gathered, Job, Part};
use crate::wire;
use crate::worker;

/// The handle of an [`apply_async`](crate::Pool::apply_async) (Python's `AsyncResult`).
///
/// Dropping it forgets its job's result (its tasks still run; their
/// answers are dropped as they come), but not its callbacks: those of an
/// `_with` call run all the same, as in Python (see
/// [`Pool::apply_async_with`](crate::Pool::apply_async_with)).
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
    pub(crate) early: Option<Box<Early<T>>>,
}

// Four words: every pipelined task holds one (see `early`).
const _: () = assert!(std::mem::size_of::<AsyncResult<u64>>() == 32);

/// A handle's job number (they start at 1), or none once taken: a word, where
/// an `Option<u64>` takes two.
#[derive(Clone, Copy)]
struct JobId(Option<std::num::NonZeroU64>);

impl JobId {
    pub(crate) fn new(job: u64) -> JobId {
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
pub(crate) struct Early<T> {
    /// An empty output with room for `total` items.
    pub(crate) start: fn(usize) -> T,
    /// Appends a part's items to the output; `false` (the output as before)
    /// if one of them is not a result, which the end then reports.
    pub(crate) step: fn(&mut T, &Part) -> bool,
    /// Decodes the parts left onto the output (as `decode` does from none).
    pub(crate) rest: fn(T, Gathered, usize) -> Result<T>,
}

/// The handle of a [`map_async`](crate::Pool::map_async) (Python's `MapResult`).
pub type MapResult<R> = AsyncResult<Vec<R>>;

impl<T: Send + 'static> AsyncResult<T> {
    pub(crate) fn new(
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
    pub(crate) fn retyped<U: Send + 'static>(
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
    /// `_timeout` call of the pool. While it waits, this thread may file the
    /// workers' answers (see the crate docs, "Who does the work in this
    /// process"): a callback of another job it completes runs here, and the
    /// call returns once that callback has, even past `timeout`.
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
        // The parts in order from `next`, taken in one lock.
        let mut run = Vec::new();
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
            // Every part in order from `next` (one lock for a run of them):
            // a part that comes in order goes straight to the run, so that
            // a small map whose answers came in order makes no table.
            let mut at = next;
            run.reserve(j.gathered.parts.len());
            for part in j.gathered.parts.drain(..) {
                if part.first == at {
                    at += part.count as usize;
                    run.push(part);
                    continue;
                }
                match held.entry(part.first) {
                    Entry::Vacant(e) => {
                        e.insert(part);
                    }
                    Entry::Occupied(_) => twins.push(part),
                }
            }
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
            for part in run.drain(..) {
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
    pub(crate) fn take_counted(&mut self, deadline: Option<Instant>) -> Result<T> {
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

/// [`decode_items`] as a job's decoding (it cannot fail as a whole).
pub(crate) fn decode_each<R: DeserializeOwned>(
    g: Gathered,
    total: usize,
) -> Result<Vec<Result<R>>> {
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
pub(crate) fn decode_one<R: DeserializeOwned>(g: Gathered, total: usize) -> Result<R> {
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
pub(crate) fn decode_map<R: DeserializeOwned>(g: Gathered, total: usize) -> Result<Vec<R>> {
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
        crate::buffers::advise_whole_pages(&v, HUGE_PAGE, libc::MADV_HUGEPAGE);
    }
    v
}

/// Outputs of this many bytes or more are advised huge pages (see [`output`]).
const HUGE_MIN: usize = 32 << 20;
/// A transparent huge page on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// [`decode_map`] onto the first `out.len()` items, decoded already (their
/// parts are no longer in `g`).
pub(crate) fn decode_map_onto<R: DeserializeOwned>(
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
pub(crate) fn decode_part_onto<R: DeserializeOwned>(out: &mut Vec<R>, part: &Part) -> bool {
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
pub(crate) const EARLY_SCAN: usize = 64;

/// A finisher that decodes with `decode` and runs the callback that fits.
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
                let message = worker::panic_text(&*p);
                wire::drop_quietly(r);
                Err(Error::CallbackPanicked { message })
            }
        };
        Box::new(r)
    })
}
