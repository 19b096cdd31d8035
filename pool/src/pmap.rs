//! [`pmap`]: a parallel map whose workers are forked for the call, so the
//! closure may capture and borrow anything.
//!
//! Workers claim chunks of item indices from a shared cursor, note in their
//! slot the chunk and the item they are on, and send each chunk's results
//! back through a queue (serde, as the pool's answers). The caller gathers
//! the results while it waits. A worker that dies fails exactly the item its
//! slot names ([`Error::WorkerDied`]); the rest of its chunk — items before it,
//! whose results died unsent, and items after it, never run — goes to a
//! second round of workers once the first has ended; only the items below
//! the lowest failure so far, the only ones that can still change the answer
//! (the call fails with the lowest failing item).

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_proc::Process;
use multiproc_queue::ByteQueue;
use multiproc_shm::{Shared, SharedSlice};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Exit, Result};
use crate::wire;
use crate::worker::ANSWER_GROUP;

multiproc_shm::shm_struct! {
    /// A pmap worker's record: the chunk it claimed and the item it runs.
    sync struct PSlot {
        /// The claimed chunk, `first..end` (both 0 between chunks).
        first: AtomicU64,
        end: AtomicU64,
        /// The item it runs now, plus one (0: none).
        item: AtomicU64,
        reserved: [AtomicU64; 13],
    }
}

// A line of 128 bytes of its own per worker: a shared one would bounce.
const _: () = assert!(std::mem::size_of::<PSlot>() == 128);

/// How [`pmap_with`] splits the work.
#[derive(Debug, Clone, Copy, Default)]
pub struct PmapOptions {
    /// Worker processes (0: one per CPU this process may use, see
    /// [`default_processes`](crate::default_processes)).
    pub processes: usize,
    /// Items a worker claims at once (0: Python's map chunk size,
    /// `len / (4 × processes)` rounded up).
    pub chunksize: usize,
    /// How long one item may run (`None`: as long as it takes): a worker
    /// still on an item past it is killed, and the item fails with
    /// [`Error::TimedOut`], as the pool's
    /// [`task_timeout`](crate::Builder::task_timeout) does. Measured from
    /// when the caller first sees the worker on the item, so an item is
    /// given up between `timeout` and a few milliseconds more.
    pub timeout: Option<Duration>,
}

/// `f` over `items` in worker processes forked for the call, in order.
///
/// The closure may capture and borrow anything: the workers are copies of
/// this process made at the call. Only results travel back. Forking copies
/// only the calling thread: as with any fork, a lock another thread holds
/// stays held in the workers (see `multiproc_proc::Process`). The workers are
/// daemonic, as Python's pool workers are, so that none outlives the call's
/// process: a `pmap` inside the closure answers
/// `Error::Proc(DaemonChildren)` (Python's "daemonic processes are not
/// allowed to have children"); a [`Pool`](crate::Pool) made inside it works.
///
/// Each call pays its forks, and a fork copies the page tables of the
/// memory the process has touched: a fork and join of a worker took
/// 0.4-0.5 ms in a small process on a 2-vCPU VM, 1.1-2.9 ms in the
/// benchmark report's, and 28 ms after 1 GB was written (`benches/NOTES.md`).
/// For many small calls from a large process, a [`Pool`](crate::Pool),
/// forked once, is the cheaper tool.
///
/// # Errors
/// [`Error::Item`] with the lowest failing index: [`Error::Panicked`],
/// [`Error::WorkerDied`], [`Error::TimedOut`] (see
/// [`PmapOptions::timeout`]), a codec error. Items above it that a dead worker
/// left unrun are not run again (their results would only be dropped).
/// [`Error::Proc`] if workers cannot
/// be started; [`Error::Corrupted`] if the closure's unsafe code wrote over
/// the call's shared memory where the result queue's checks find it.
///
/// # Examples
/// ```
/// let offset = 10u64; // borrowed by the workers
/// let squares = multiproc_pool::pmap(&[1u64, 2, 3], |x| x * x + offset)?;
/// assert_eq!(squares, [11, 14, 19]);
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub fn pmap<T, R, F>(items: &[T], f: F) -> Result<Vec<R>>
where
    T: Sync,
    F: Fn(&T) -> R + Sync,
    R: Serialize + DeserializeOwned,
{
    pmap_with(items, f, PmapOptions::default())
}

/// [`pmap`] with a number of processes and a chunk size.
///
/// # Errors
/// As for [`pmap`].
pub fn pmap_with<T, R, F>(items: &[T], f: F, options: PmapOptions) -> Result<Vec<R>>
where
    T: Sync,
    F: Fn(&T) -> R + Sync,
    R: Serialize + DeserializeOwned,
{
    let mut out = Outcomes {
        results: Slots::new(),
        failed: BTreeMap::new(),
        last_death: None,
    };
    // Room for every result, made before the first fork and kept from it.
    out.results.reserve_items(items.len());
    out.results.keep_from_forks();
    // Every item at first, without a list of a word an item.
    let mut todo = Todo::All(items.len());
    while todo.len() > 0 {
        let redo = round(items, &f, options, &todo, &mut out)?;
        if redo.len() == todo.len() {
            // Workers that die before they note a claim: no round would ever
            // end it. Every item left fails, with the last such death (one
            // there always is: a worker leaves with code 0 only once every
            // item is claimed, and this round finished none).
            let (pid, how) = out.last_death.unwrap_or((0, Exit::Signal(libc::SIGKILL)));
            for &index in &redo {
                out.failed.insert(index, Error::WorkerDied { pid, how });
            }
            break;
        }
        // Only an item below the lowest failure can change the answer now:
        // the rest of the dead workers' chunks above it would run only to be
        // dropped (and a closure that kills its worker on every item would
        // fork a round for every item or two).
        let below = out.failed.keys().next().copied().unwrap_or(usize::MAX);
        todo = Todo::Listed(redo.into_iter().filter(|&i| i < below).collect());
    }
    // The lowest index without a result says why (or that it never ran).
    let lowest = (0..items.len()).find(|&i| !out.results.is_written(i));
    if let Some(index) = lowest {
        let e = out.failed.remove(&index).unwrap_or(Error::Terminated);
        return Err(Error::Item {
            index,
            source: Box::new(e),
        });
    }
    // Every item has its result: the slots are the answer.
    out.results.into_vec().ok_or(Error::Terminated)
}

/// What [`pmap_with`] has of each item: its result, or why there is none.
struct Outcomes<R> {
    /// Made before the first round's workers are forked, and kept from
    /// their forks ([`Slots::keep_from_forks`]): pages the workers shared
    /// would be copied on the caller's first write to each while they live.
    results: Slots<R>,
    failed: BTreeMap<usize, Error>,
    /// The last worker that ended with anything but code 0: its pid and how.
    last_death: Option<(u32, Exit)>,
}

impl<R> Outcomes<R> {
    /// Whether item `index` has an outcome.
    fn has(&self, index: usize) -> bool {
        self.results.is_written(index) || self.failed.contains_key(&index)
    }

    /// Files item `index`'s outcome (an index out of range is ignored); 1 if
    /// it had none before.
    fn file(&mut self, index: Option<&usize>, r: Result<R>) -> usize {
        let Some(&index) = index.filter(|&&i| i < self.results.len()) else {
            return 0;
        };
        let new = usize::from(!self.has(index));
        match r {
            Ok(v) => {
                self.results.put(index, v);
                if !self.failed.is_empty() {
                    self.failed.remove(&index);
                }
            }
            Err(e) => {
                self.results.clear(index);
                self.failed.insert(index, e);
            }
        }
        new
    }
}

/// One result an item, written in any order: a `Vec<R>` being filled, and a
/// flag an item saying which are written. Once every item has its result
/// this memory is what [`pmap_with`] returns (no `Option` an item, and no
/// second `Vec` to collect them into).
struct Slots<R> {
    data: Vec<MaybeUninit<R>>,
    written: Vec<bool>,
    /// Its pages are marked wipe-on-fork (see [`Slots::keep_from_forks`]).
    wiped: bool,
}

/// Slots of this many bytes or more are kept from the workers' forks.
const WIPE_MIN: usize = 1 << 20;

impl<R> Slots<R> {
    fn new() -> Slots<R> {
        Slots {
            data: Vec::new(),
            written: Vec::new(),
            wiped: false,
        }
    }

    /// Marks its whole pages wipe-on-fork ([`crate::buffers::wipe_on_fork`]),
    /// if it holds [`WIPE_MIN`] bytes or more, until it is dropped or taken:
    /// a worker forked after it gets zeros there (it never reads them), and
    /// the caller's writes to them while the workers live are not copies of
    /// shared pages. Made before the first fork and marked, a trivial map's
    /// results went in without the copy-on-write faults they took when the
    /// slots came from memory the workers shared.
    fn keep_from_forks(&mut self) {
        let bytes = self.data.capacity() * std::mem::size_of::<R>() + self.written.capacity();
        if !self.wiped && bytes >= WIPE_MIN {
            crate::buffers::wipe_on_fork(&self.data, true);
            crate::buffers::wipe_on_fork(&self.written, true);
            self.wiped = true;
        }
    }

    /// Unmarks what [`keep_from_forks`](Slots::keep_from_forks) marked:
    /// before its memory goes back to the allocator or to the caller.
    fn give_back_to_forks(&mut self) {
        if std::mem::replace(&mut self.wiped, false) {
            crate::buffers::wipe_on_fork(&self.data, false);
            crate::buffers::wipe_on_fork(&self.written, false);
        }
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    /// Room for `n` results (it never shrinks), none of the new ones written.
    fn reserve_items(&mut self, n: usize) {
        if self.data.len() >= n {
            return;
        }
        if self.data.capacity() == 0 {
            // Huge pages for a large one (see `pool::output`).
            self.data = crate::handle::output(n);
        }
        self.data.resize_with(n, MaybeUninit::uninit);
        self.written.resize(n, false);
    }

    fn is_written(&self, i: usize) -> bool {
        self.written.get(i).copied().unwrap_or(false)
    }

    /// Writes item `i`'s result (`i` below [`len`](Slots::len)), over the
    /// one it had.
    fn put(&mut self, i: usize, v: R) {
        self.clear(i);
        self.data[i].write(v);
        self.written[i] = true;
    }

    /// Writes the results of `run` (drained) to the items from `start` on,
    /// over any they had (items past [`len`](Slots::len) are dropped): how
    /// many had none before.
    fn put_run(&mut self, start: usize, run: &mut Vec<R>) -> usize {
        let end = start.saturating_add(run.len()).min(self.len());
        let mut new = 0;
        let slots = self.data.get_mut(start..end).unwrap_or_default();
        let flags = self.written.get_mut(start..end).unwrap_or_default();
        for ((slot, written), v) in slots.iter_mut().zip(flags.iter_mut()).zip(run.drain(..)) {
            if std::mem::replace(written, false) {
                // SAFETY: its flag said it was written; the flag is down
                // before the drop (as in `clear`).
                unsafe { slot.assume_init_drop() };
            } else {
                new += 1;
            }
            slot.write(v);
            *written = true;
        }
        run.clear();
        new
    }

    /// Drops item `i`'s result, if it has one.
    fn clear(&mut self, i: usize) {
        if self
            .written
            .get_mut(i)
            .is_some_and(|w| std::mem::replace(w, false))
        {
            // SAFETY: its flag said it was written; the flag is down before
            // the drop, so a drop that panics leaves nothing to drop twice.
            unsafe { self.data[i].assume_init_drop() };
        }
    }

    /// The results, if every item has one.
    fn into_vec(mut self) -> Option<Vec<R>> {
        if !self.written.iter().all(|&w| w) {
            return None;
        }
        self.give_back_to_forks();
        // Nothing is left for `drop` to drop.
        self.written.clear();
        let mut data = std::mem::ManuallyDrop::new(std::mem::take(&mut self.data));
        // SAFETY: every element is written (checked above), and a
        // `MaybeUninit<R>` has `R`'s size and alignment, so this is an
        // allocation of `R`s of the same length and capacity.
        Some(unsafe {
            Vec::from_raw_parts(data.as_mut_ptr().cast::<R>(), data.len(), data.capacity())
        })
    }
}

impl<R> Drop for Slots<R> {
    fn drop(&mut self) {
        self.give_back_to_forks();
        for (slot, w) in self.data.iter_mut().zip(&mut self.written) {
            if std::mem::replace(w, false) {
                // SAFETY: written (its flag said so), and dropped once: the
                // flag is down first.
                unsafe { slot.assume_init_drop() };
            }
        }
    }
}

/// The items a round runs: indices into `items`, in the order the workers
/// claim them (a chunk is a run of them).
enum Todo {
    /// `0..n`: every item, the first round.
    All(usize),
    /// Those left by a round whose workers died.
    Listed(Vec<usize>),
}

impl Todo {
    fn len(&self) -> usize {
        match self {
            Todo::All(n) => *n,
            Todo::Listed(v) => v.len(),
        }
    }

    /// The `k`th, if there is one (`k` may come from a worker's answer).
    #[inline]
    fn get(&self, k: u64) -> Option<usize> {
        let k = usize::try_from(k).ok()?;
        match self {
            Todo::All(n) => (k < *n).then_some(k),
            Todo::Listed(v) => v.get(k).copied(),
        }
    }

    /// The `k`th, which is there (`k` below [`len`](Todo::len)).
    #[inline]
    fn at(&self, k: u64) -> usize {
        self.get(k).expect("an index below the round's length")
    }
}

/// One round over the items `todo` (indices into `items`); returns the
/// indices to run again (those without an outcome: the unsent rest of dead
/// workers' chunks).
fn round<T, R, F>(
    items: &[T],
    f: &F,
    options: PmapOptions,
    todo: &Todo,
    out: &mut Outcomes<R>,
) -> Result<Vec<usize>>
where
    T: Sync,
    F: Fn(&T) -> R + Sync,
    R: Serialize + DeserializeOwned,
{
    let processes = if options.processes == 0 {
        crate::default_processes()
    } else {
        options.processes
    }
    .clamp(1, todo.len().max(1));
    // A chunk larger than the input is the whole input (and the workers'
    // claims, each a chunk further, cannot overflow the cursor).
    let chunk = if options.chunksize == 0 {
        todo.len().div_ceil(4 * processes)
    } else {
        options.chunksize
    }
    .clamp(1, todo.len().max(1)) as u64;
    // Everything the workers share, made before they are forked.
    let cursor = Shared::anonymous(AtomicU64::new(0))?;
    let slots = SharedSlice::<PSlot>::anonymous(processes)?;
    // A result queue for each group of workers (see `worker::ANSWER_GROUP`:
    // one queue took at most 63 writers besides this thread).
    let queues = (0..processes.div_ceil(ANSWER_GROUP))
        .map(|g| {
            let writers = (processes - g * ANSWER_GROUP).min(ANSWER_GROUP);
            ByteQueue::new(4 * writers + 4, crate::DEFAULT_MAX_INLINE)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let queue_of = |w: usize| &queues[w / ANSWER_GROUP];
    let n = todo.len() as u64;
    let mut workers: Vec<Process<'_>> = Vec::with_capacity(processes);
    // The workers set the panic hook: see `no_panic_in_flight`.
    crate::worker::no_panic_in_flight();
    for w in 0..processes {
        let (cursor, slot, queue) = (&cursor, &slots[w], queue_of(w));
        let mut p =
            Process::new(move || work(items, f, todo, chunk, n, cursor, slot, queue)).daemon(true);
        if let Err(e) = p.start() {
            // (At the limit of open files, say.) The workers started so far
            // are ended and reaped, not left to run on, or to wait for ever
            // on a result queue that nobody reads.
            end_all(&mut workers);
            return Err(e.into());
        }
        workers.push(p);
    }
    // (Taken now: a handle forgets its pid once it reaps the process.)
    let pids: Vec<u32> = workers.iter().map(|p| p.pid().unwrap_or(0)).collect();
    out.results.reserve_items(items.len());
    let mut alive = processes;
    let mut ended = vec![false; processes];
    // Each worker's item as last seen (its slot's word) and since when; and
    // whether it was killed for its timeout.
    let mut on_item: Vec<(u64, Instant)> = vec![(0, Instant::now()); processes];
    let mut timed_out = vec![false; processes];
    let mut missing = todo.len();
    // In the first milliseconds, two workers forked onto one CPU would run
    // one after the other until the scheduler's balancing moves one: look
    // more often, and move one off (`colocation`).
    let spread_until = Instant::now() + SPREAD_FOR;
    let mut next_spread = Instant::now();
    while alive > 0 {
        let now = Instant::now();
        let spreading = alive > 1 && now < spread_until;
        if spreading && now >= next_spread {
            next_spread = now + SPREAD_LOOK;
            // Only workers not reaped yet: their pids are still theirs.
            let pids: Vec<u32> = (workers.iter().zip(&ended))
                .filter(|(_, &ended)| !ended)
                .filter_map(|(p, _)| p.pid())
                .collect();
            crate::colocation::spread_processes(&pids);
        }
        // Each chunk's results, as they come; then a look at the workers.
        // (try_get_bytes receives a large result it took whole, however long
        // its stream takes; see `core::receive`.)
        let look = if spreading { SPREAD_LOOK } else { LOOK };
        if missing > 0 {
            let ready = match queues.as_slice() {
                [queue] => queue
                    .poll_timeout(look)
                    .map(|r| if r { vec![0] } else { Vec::new() }),
                all => {
                    let all: Vec<&dyn multiproc_queue::Waitable> = all
                        .iter()
                        .map(|q| q as &dyn multiproc_queue::Waitable)
                        .collect();
                    multiproc_queue::wait_timeout(&all, look)
                }
            };
            let (ready, mut failed) = match ready {
                Ok(ready) => (ready, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            for q in ready {
                match queues[q].try_get_bytes() {
                    Ok(msg) => missing -= file(&msg, todo, out),
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            match failed {
                None
                | Some(
                    multiproc_queue::Error::Empty
                    | multiproc_queue::Error::Timeout
                    // Every writer gone: the workers' ends are seen below.
                    | multiproc_queue::Error::Disconnected,
                ) => {}
                Some(e) => return Err(stop(&mut workers, e)),
            }
        }
        if let Some(limit) = options.timeout {
            let now = Instant::now();
            for (w, p) in workers.iter().enumerate() {
                if ended[w] || timed_out[w] {
                    continue;
                }
                let item = slots[w].item.load(Ordering::Acquire);
                if item != on_item[w].0 {
                    on_item[w] = (item, now);
                } else if item != 0 && now.duration_since(on_item[w].1) > limit {
                    // Still on the same item: its death below fails it.
                    let _ = p.kill();
                    timed_out[w] = true;
                }
            }
        }
        for (w, p) in workers.iter_mut().enumerate() {
            if ended[w] {
                continue;
            }
            // Ended (and reaped) if its pidfd is readable now. Once every
            // result is in, each worker is on its way out (the cursor is
            // spent): wait for it rather than look again in 2 ms, which cost
            // a call of short items most of its time.
            let wait = if missing == 0 {
                Duration::from_secs(10)
            } else {
                Duration::ZERO
            };
            // How it ended: `None` when it left with code 0.
            let how = match p.join_timeout(wait) {
                Err(multiproc_proc::Error::Timeout) if missing == 0 => {
                    // Stuck on its way out: nothing of ours is left in it.
                    let _ = p.kill();
                    Some(
                        p.join()
                            .map_or(Exit::Signal(libc::SIGKILL), Exit::of_exitcode),
                    )
                }
                Err(multiproc_proc::Error::Timeout) => continue,
                Ok(0) => None,
                Ok(code) => Some(Exit::of_exitcode(code)),
                // Reaped by the kernel (this process ignores SIGCHLD) or by a
                // SIGCHLD handler: if its slot names a claim, it died in it.
                Err(multiproc_proc::Error::StatusDiscarded { .. }) => Some(Exit::Unknown),
                Err(_) => Some(Exit::Signal(libc::SIGKILL)),
            };
            ended[w] = true;
            alive -= 1;
            // Its last chunk's results were sent before it exited, if at all.
            // A queue that fails here fails the call as above: a worker that
            // wrote over it ends (its own answer cannot be sent), and its
            // slot, written over too, would name a random item as the one
            // it died in.
            loop {
                match queue_of(w).try_get_bytes() {
                    Ok(msg) => missing -= file(&msg, todo, out),
                    Err(
                        multiproc_queue::Error::Empty
                        | multiproc_queue::Error::Timeout
                        | multiproc_queue::Error::Disconnected,
                    ) => break,
                    Err(e) => return Err(stop(&mut workers, e)),
                }
            }
            if let Some(how) = how {
                out.last_death = Some((pids[w], how));
            }
            let slot = &slots[w];
            let (first, end, item) = (
                slot.first.load(Ordering::Acquire),
                slot.end.load(Ordering::Acquire),
                slot.item.load(Ordering::Acquire),
            );
            let Some(how) = how.filter(|_| end > first) else {
                continue;
            };
            let pid = pids[w];
            if (first..end.min(n)).contains(&item.wrapping_sub(1)) {
                let index = todo.at(item - 1);
                if !out.has(index) {
                    let error = match options.timeout {
                        Some(limit) if timed_out[w] => Error::TimedOut { pid, limit },
                        _ => Error::WorkerDied { pid, how },
                    };
                    out.file(Some(&index), Err(error));
                }
            }
        }
    }
    // Every item of the round has its outcome (the count is of new ones).
    if missing == 0 {
        return Ok(Vec::new());
    }
    // The rest of dead workers' chunks (and anything claimed by a worker that
    // died before noting it) runs again.
    Ok((0..n)
        .map(|k| todo.at(k))
        .filter(|&i| !out.has(i))
        .collect())
}

/// Kills `workers`, then reaps them.
fn end_all(workers: &mut [Process]) {
    for p in workers.iter() {
        let _ = p.kill();
    }
    for p in workers.iter_mut() {
        let _ = p.join();
    }
}

/// Ends a round whose result queue failed `e`: kills and reaps its workers;
/// the call's error.
fn stop(workers: &mut [Process], e: multiproc_queue::Error) -> Error {
    end_all(workers);
    match e {
        // Its checks failed, it reads as closed (only this process would
        // close it), or its table of threads as full (it has this thread and
        // at most `ANSWER_GROUP` workers): a worker wrote over it, and no
        // result read from it can be trusted; nor will the workers' results
        // come.
        multiproc_queue::Error::Corrupted(_)
        | multiproc_queue::Error::Closed
        | multiproc_queue::Error::TooManyParticipants(_) => Error::Corrupted {
            what: format!("pmap's result queue: {e}"),
        },
        e => Error::Queue(e),
    }
}

/// How long the parent waits for results before it looks at its workers.
const LOOK: Duration = Duration::from_millis(2);

/// For how long after the workers start the parent looks whether two share a
/// CPU, and how often.
const SPREAD_FOR: Duration = Duration::from_millis(6);
const SPREAD_LOOK: Duration = Duration::from_micros(500);

/// A worker: claims chunks of `todo` until none is left.
#[allow(clippy::too_many_arguments)]
fn work<T, R, F>(
    items: &[T],
    f: &F,
    todo: &Todo,
    chunk: u64,
    n: u64,
    cursor: &AtomicU64,
    slot: &PSlot,
    queue: &ByteQueue,
) -> i32
where
    F: Fn(&T) -> R,
    R: Serialize,
{
    crate::worker::quiet_panics();
    let mut out = Vec::new();
    loop {
        let first = cursor.fetch_add(chunk, Ordering::AcqRel);
        if first >= n {
            return 0;
        }
        let end = (first + chunk).min(n);
        slot.item.store(0, Ordering::Relaxed);
        slot.first.store(first, Ordering::Relaxed);
        slot.end.store(end, Ordering::Release);
        out.clear();
        wire::answer_header(&mut out, first, (end - first) as u32);
        wire::answer_items(
            &mut out,
            (end - first) as usize,
            |k| f(&items[todo.at(first + k as u64)]),
            |k| slot.item.store(first + k as u64 + 1, Ordering::Release),
        );
        // On no item now: a death while the results are sent reruns the
        // chunk (their results die with it) and fails none of its items, and
        // a wait for room in the queue is no item past its timeout.
        slot.item.store(0, Ordering::Release);
        if queue.put_bytes(&out).is_err() {
            return 1;
        }
        slot.first.store(0, Ordering::Relaxed);
        slot.end.store(0, Ordering::Release);
    }
}

/// Files a chunk's results; how many items had none before.
fn file<R: DeserializeOwned>(msg: &[u8], todo: &Todo, out: &mut Outcomes<R>) -> usize {
    let Some((first, count, mut entries)) = wire::read_answer(msg) else {
        return 0;
    };
    // (No further than the round's items: a count written over would
    // otherwise be walked item by item, up to 2³² of them.)
    let (mut k, end) = (
        first,
        first
            .saturating_add(u64::from(count))
            .min(todo.len() as u64),
    );
    let (mut filed, mut run) = (0, Vec::new());
    while k < end {
        // Runs of raw results through the loop made for their kind, anything
        // else one entry at a time.
        let (n, rest, failed) = wire::read_raw_run::<R>(entries, (end - k) as usize, &mut run);
        entries = rest;
        match todo {
            // The first round's items are their own indices: the run goes in
            // as a block (one look a slot, where filing one by one looked up
            // each index and the failures: a sixth of a trivial pmap's time).
            Todo::All(_) if out.failed.is_empty() => {
                let start = k as usize; // below `end`, a `usize` (the round's length)
                k += run.len() as u64;
                filed += out.results.put_run(start, &mut run);
            }
            _ => {
                for v in run.drain(..) {
                    filed += out.file(todo.get(k).as_ref(), Ok(v));
                    k += 1;
                }
            }
        }
        if let Some(e) = failed {
            // `R`'s `Deserialize` panicked on item `k` (the entries after it
            // are lost: each reads as an error below).
            filed += out.file(todo.get(k).as_ref(), Err(e));
            k += 1;
        } else if n == 0 {
            let (r, rest) = wire::read_item::<R>(entries);
            entries = rest;
            filed += out.file(todo.get(k).as_ref(), r);
            k += 1;
        }
    }
    filed
}

#[cfg(test)]
mod tests {
    use super::Slots;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops in `DROPS`.
    struct Counted(u32);
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The byte at `addr` as a child forked now reads it (its exit code).
    fn byte_in_a_child(addr: usize) -> multiproc_testkit::ChildExit {
        multiproc_testkit::fork(move || {
            // SAFETY: `addr` is inside a live buffer of the parent, which the
            // child has a copy of (or zeros, where marked wipe-on-fork).
            i32::from(unsafe { std::ptr::read_volatile(addr as *const u8) })
        })
        .wait(std::time::Duration::from_secs(60))
    }

    /// Slots kept from forks read as zeros in a child forked meanwhile (the
    /// workers never read them), and as what they hold once given back or
    /// taken: memory handed to the caller, or back to the allocator, must
    /// reach a later fork's child whole.
    #[test]
    fn slots_kept_from_forks_are_zeros_in_a_child_until_given_back() {
        use multiproc_testkit::ChildExit::Exited;
        let n = super::WIPE_MIN / 8 + 1024;
        let mid = n / 2;
        let filled = |s: &mut Slots<u64>| {
            s.reserve_items(n);
            s.keep_from_forks();
            let mut run = vec![0xA5_u64; n];
            assert_eq!(s.put_run(0, &mut run), n);
            s.data.as_ptr() as usize + mid * 8
        };
        let mut s = Slots::new();
        let addr = filled(&mut s);
        assert_eq!(byte_in_a_child(addr), Exited(0), "kept: zeros in a child");
        s.give_back_to_forks();
        assert_eq!(byte_in_a_child(addr), Exited(0xA5), "given back: copied");
        // Taken (how a pmap returns them): unmarked on the way out.
        let mut s = Slots::new();
        let addr = filled(&mut s);
        assert_eq!(byte_in_a_child(addr), Exited(0));
        let v = s.into_vec().expect("every item written");
        assert_eq!((v[mid], v.as_ptr() as usize + mid * 8), (0xA5, addr));
        assert_eq!(byte_in_a_child(addr), Exited(0xA5), "taken: copied");
        // Small slots are not marked.
        let mut s: Slots<u64> = Slots::new();
        s.reserve_items(16);
        s.keep_from_forks();
        assert!(!s.wiped);
    }

    /// Mappings of this process marked wipe-on-fork (`wf` in smaps).
    fn marked_mappings() -> usize {
        std::fs::read_to_string("/proc/self/smaps")
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "wf"))
            .count()
    }

    /// Slots dropped with their marks (a pmap that failed) are unmarked
    /// before their memory goes back to the allocator, which would hand it
    /// out again to data a later fork's child reads.
    #[test]
    fn slots_dropped_while_kept_from_forks_leave_no_mark_behind() {
        // From malloc's heap, which stays mapped once they are freed (a
        // mapping of their own would go with them, marks and all).
        // SAFETY: mallopt takes plain integers; this test's process only.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) };
        assert_eq!(marked_mappings(), 0);
        let mut s: Slots<u64> = Slots::new();
        s.reserve_items(super::WIPE_MIN / 8 + 1024);
        s.keep_from_forks();
        assert!(marked_mappings() > 0, "the slots were not marked");
        drop(s);
        assert_eq!(
            marked_mappings(),
            0,
            "a dropped slots' mark was left behind"
        );
    }

    #[test]
    fn a_run_put_at_once_counts_the_new_items_and_drops_what_it_replaces() {
        let drops = || DROPS.load(Ordering::SeqCst);
        let mut s = Slots::new();
        s.reserve_items(5);
        s.put(2, Counted(2));
        let before = drops();
        let mut run = vec![
            Counted(11),
            Counted(12),
            Counted(13),
            Counted(14),
            Counted(15),
        ];
        // Items 1-4 (2 had a result: replaced and dropped); the fifth of the
        // run lies past the slots and is dropped.
        assert_eq!(s.put_run(1, &mut run), 3);
        assert!(run.is_empty());
        assert_eq!(
            drops() - before,
            2,
            "the replaced result and the one past the end"
        );
        assert!(!s.is_written(0) && (1..5).all(|i| s.is_written(i)));
        s.put(0, Counted(10));
        let v = s.into_vec().expect("every item written");
        assert_eq!(
            v.iter().map(|c| c.0).collect::<Vec<_>>(),
            [10, 11, 12, 13, 14]
        );
        // A run starting past the end writes nothing.
        let mut s: Slots<Counted> = Slots::new();
        s.reserve_items(2);
        let mut run = vec![Counted(1)];
        assert_eq!(s.put_run(5, &mut run), 0);
        assert!(run.is_empty() && !s.is_written(0) && !s.is_written(1));
    }

    #[test]
    fn slots_drop_each_result_once_whatever_is_written_and_in_what_order() {
        let drops = || DROPS.load(Ordering::SeqCst);
        let before = drops();
        // Written out of order, one twice, one cleared, one never: dropped
        // with holes.
        let mut s = Slots::new();
        s.reserve_items(4);
        assert_eq!(s.len(), 4);
        s.put(2, Counted(2));
        s.put(0, Counted(0));
        s.put(2, Counted(22)); // the first 2 is dropped here
        s.put(3, Counted(3));
        s.clear(3);
        s.clear(1); // never written: nothing
        assert!(s.is_written(0) && !s.is_written(1) && s.is_written(2) && !s.is_written(3));
        assert!(!s.is_written(9));
        assert_eq!(drops() - before, 2);
        assert!(s.into_vec().is_none(), "a Vec with holes");
        assert_eq!(
            drops() - before,
            4,
            "the holed slots dropped what they held"
        );
        // Every slot written: the Vec holds them in order, dropped with it.
        let mut s = Slots::new();
        s.reserve_items(3);
        for i in [1u32, 2, 0] {
            s.put(i as usize, Counted(i));
        }
        s.reserve_items(2); // never shrinks
        let v = s.into_vec().expect("every slot written");
        assert_eq!(v.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(drops() - before, 4, "nothing dropped by into_vec");
        drop(v);
        assert_eq!(drops() - before, 7);
    }
}
