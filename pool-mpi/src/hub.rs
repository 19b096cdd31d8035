//! Rank 0's books: the jobs, the chunks not sent yet and each rank's load
//! ([`State`], in the [`Hub`] the pool, its handles and the receiver thread
//! share), and how chunks are dealt to the ranks.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_pool::{Error, Result, SeqTable};

use crate::posted;
use crate::wire;
use crate::world::{DEPTH, ITEMS_AHEAD, MOST_AHEAD};

/// What a finished job's answers are, before they are decoded.
#[derive(Default)]
pub(crate) struct Gathered {
    /// `(first item, rank, entries)` per answered chunk.
    pub(crate) parts: Vec<(usize, usize, Vec<u8>)>,
    /// Items that failed without an answer.
    pub(crate) failed: Vec<(usize, Error)>,
}

pub(crate) type Finisher = Box<dyn FnOnce(Gathered, usize) -> Box<dyn Any + Send> + Send>;

pub(crate) struct Job {
    pub(crate) total: usize,
    pub(crate) feeding: bool,
    pub(crate) answered: usize,
    pub(crate) gathered: Gathered,
    /// Decodes and runs the callbacks when the job completes (`None` for an
    /// `imap`, whose iterator takes the parts as they come).
    pub(crate) finisher: Option<Finisher>,
    pub(crate) outcome: Option<Box<dyn Any + Send>>,
    /// Failed as a whole (terminated, cancelled, a rank died).
    pub(crate) aborted: Option<Aborted>,
    pub(crate) finishing: bool,
    /// A `map`, which answers its lowest failing item's error: its chunks
    /// carry [`wire::BELOW_DEATH`], and once a worker's death or a timeout
    /// fails item `run_below`, its chunks wholly above it not sent yet are
    /// not sent (counted as answered; they would only be dropped). A map
    /// whose every item kills its worker then costs a few deaths on each
    /// rank, not one (and a new worker) an item.
    pub(crate) below_death: bool,
    pub(crate) run_below: usize,
    /// Its finisher runs callbacks the user gave (not only the decoding).
    pub(crate) calls_back: bool,
    /// Its handle was dropped while those callbacks were still to run: kept
    /// until they have run, as Python runs a callback whether or not its
    /// `AsyncResult` is kept, then forgotten (see [`Job::detach`]).
    pub(crate) detached: bool,
}

#[derive(Clone)]
pub(crate) enum Aborted {
    Terminated,
    Cancelled,
    Rank(usize, String),
}

impl Aborted {
    pub(crate) fn error(&self) -> Error {
        match self {
            Aborted::Terminated => Error::Terminated,
            Aborted::Cancelled => Error::Cancelled,
            Aborted::Rank(rank, message) => Error::Rank {
                rank: *rank,
                message: message.clone(),
            },
        }
    }
}

impl Job {
    /// Every item answered (or the job failed as a whole).
    pub(crate) fn complete(&self) -> bool {
        self.aborted.is_some() || (!self.feeding && self.answered >= self.total)
    }
    pub(crate) fn done(&self) -> bool {
        self.aborted.is_some()
            || (self.complete()
                && !self.finishing
                && (self.finisher.is_none() || self.outcome.is_some()))
    }

    /// Its handle is dropped: whether the job stays, detached, because the
    /// user's callbacks are still to run (it is forgotten once they have);
    /// if not, the caller forgets it now.
    pub(crate) fn detach(&mut self) -> bool {
        self.detached = self.calls_back
            && self.aborted.is_none()
            && (self.finisher.is_some() || self.finishing);
        self.detached
    }
}

/// A chunk sent or waiting to be.
pub(crate) struct Chunk {
    pub(crate) job: u64,
    pub(crate) first: usize,
    pub(crate) count: u32,
    /// Its message while not sent yet.
    pub(crate) msg: Option<Vec<u8>>,
    pub(crate) rank: usize,
}

/// A rank's chunks and items in flight, its local processes, and how many
/// items it may have in flight.
#[derive(Default, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) chunks: usize,
    pub(crate) items: usize,
    pub(crate) processes: usize,
    /// Its look-ahead in items beyond `ITEMS_AHEAD` a process (0: none yet).
    grown: usize,
}

impl Load {
    /// How many items it may have in flight (beyond [`DEPTH`] chunks a
    /// process).
    pub(crate) fn ahead(&self) -> usize {
        ITEMS_AHEAD * self.processes + self.grown
    }

    /// Notes an answer message that answered `answered` items. A rank left
    /// with less than one item a process had answered all it held, or
    /// nearly: it waits for rank 0 now, and is given twice as many from
    /// here on. A rank left with more than half its look-ahead still to
    /// run has room to spare: what it grew shrinks by an eighth (never
    /// below [`ITEMS_AHEAD`] a process). Short tasks so keep about a round
    /// trip's worth in flight. A rank also runs dry at the end of each
    /// burst, and starts the next one with twice its look-ahead; long tasks
    /// never run it dry while they last, and bring it back to about
    /// [`ITEMS_AHEAD`] a process within a few answers.
    pub(crate) fn answered(&mut self, answered: usize) {
        if answered == 0 {
            return;
        }
        let ahead = self.ahead();
        let most = MOST_AHEAD * self.processes;
        if self.items < self.processes {
            self.grown = (2 * ahead)
                .min(most)
                .saturating_sub(ITEMS_AHEAD * self.processes);
        } else if self.items > ahead / 2 {
            // (Seven eighths, rounded down: it reaches nothing.)
            self.grown = self.grown * 7 / 8;
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) next_job: u64,
    pub(crate) next_chunk: u64,
    pub(crate) jobs: SeqTable<Job>,
    pub(crate) chunks: SeqTable<Chunk>,
    /// Chunk ids not sent yet, oldest first.
    pub(crate) unsent: VecDeque<u64>,
    /// What each rank has in flight (index = rank).
    pub(crate) ranks: Vec<Load>,
    /// Tasks for ranks that were busy, left for the thread that looks for
    /// messages (the receiver thread, or a waiting caller) to send together
    /// (see [`MpiPool::send_chunk`](crate::MpiPool::send_chunk)).
    pub(crate) deferred: Vec<(usize, Vec<u8>)>,
    pub(crate) closed: bool,
    /// The receiver thread is to end once nothing is in flight.
    pub(crate) stopping: bool,
    pub(crate) stopped: bool,
    pub(crate) broken: Option<Aborted>,
}

/// Room a table of rank 0 keeps however few entries it holds.
const ROOM_KEPT: usize = 1024;

impl State {
    /// Takes `job` out of the table, and gives back the room a burst left.
    pub(crate) fn forget_job(&mut self, job: u64) -> Option<Job> {
        let j = self.jobs.remove(&job);
        self.jobs.trim();
        j
    }
}

/// Gives back most of a queue's room once it uses a quarter of it or less,
/// keeping room for twice what it holds (at least [`ROOM_KEPT`]): a burst
/// of `apply_async`s grows rank 0's tables, which never give their room
/// back by themselves (its job and chunk tables are trimmed the same way,
/// by [`SeqTable::trim`]).
fn trim_queue<T>(queue: &mut VecDeque<T>) {
    let need = queue.len().max(ROOM_KEPT);
    if queue.capacity() / 4 > need {
        queue.shrink_to(2 * need);
    }
}

pub(crate) struct Hub {
    pub(crate) st: Mutex<State>,
    pub(crate) cv: Condvar,
    /// Threads asleep on `cv` (counted under `st`'s lock): a wake with
    /// none is no system call (one a task, before, when the receiver
    /// polled and the caller watched).
    pub(crate) sleepers: std::sync::atomic::AtomicUsize,
    /// Counts [`Hub::wake`]s: a waiter watches it for a while before it
    /// sleeps on `cv`.
    pub(crate) changes: std::sync::atomic::AtomicU64,
    /// The receiver thread, or a waiting caller, is looking for messages
    /// without sleeping: a task left in `State::deferred` is sent soon
    /// (within microseconds, or the receiver thread's nap while it stands
    /// back for a caller).
    pub(crate) hot: std::sync::atomic::AtomicBool,
    /// `State::deferred` has tasks.
    pub(crate) has_deferred: std::sync::atomic::AtomicBool,
    /// MPI was finalized (the pool dropped): the receiver loop makes no MPI
    /// call any more. Set by a drop on the receiver thread itself (a callback
    /// that held the last handle), whose loop goes on once the callback
    /// returns.
    pub(crate) finalized: std::sync::atomic::AtomicBool,
    /// When a waiting caller last looked for answers itself, in nanoseconds
    /// since `epoch` (0: not since it stopped): the receiver thread stands
    /// back meanwhile (see [`Hub::caller_drives`]).
    pub(crate) drove: std::sync::atomic::AtomicU64,
    pub(crate) epoch: Instant,
    /// `true` while callers may make MPI calls to receive answers: the pool's
    /// end sets it `false` (under the write lock, so after any caller's
    /// receive in progress) before MPI is finalized.
    pub(crate) callers_receive: std::sync::RwLock<bool>,
}

/// How long after a waiting caller's last look for answers the receiver
/// thread stands back (it would only take turns with the caller at MPI's
/// probe, and take a CPU the ranks' pollers and workers need).
pub(crate) const DROVE: Duration = Duration::from_micros(200);

impl Hub {
    /// Notes that a waiting caller looks for answers itself now.
    pub(crate) fn note_drove(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.drove
            .store(now.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Notes that the waiting caller stopped looking (it goes to sleep): the
    /// receiver thread takes over at its next step. (A caller that has its
    /// result says nothing: it most often waits again at once, and the
    /// receiver thread takes over [`DROVE`] after its last look.)
    pub(crate) fn note_stopped_driving(&self) {
        self.drove.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a waiting caller looked for answers less than [`DROVE`] ago.
    pub(crate) fn caller_drives(&self) -> bool {
        let at = self.drove.load(std::sync::atomic::Ordering::Relaxed);
        at != 0
            && Duration::from_nanos(at)
                .checked_add(DROVE)
                .is_some_and(|until| self.epoch.elapsed() < until)
    }

    /// Wakes every waiter: something was filed or changed. Called after
    /// the change, made under `st`'s lock: a thread that counted itself in
    /// `sleepers` before that lock was taken is seen (the lock orders the
    /// two), and one that counts itself later saw the change.
    pub(crate) fn wake(&self) {
        use std::sync::atomic::Ordering;
        self.changes.fetch_add(1, Ordering::Release);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.cv.notify_all();
        }
    }

    /// Sleeps on `cv` for at most `limit`, counted in `sleepers`.
    pub(crate) fn sleep<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        limit: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        use std::sync::atomic::Ordering;
        use std::sync::PoisonError;
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        let st = match limit {
            None => self.cv.wait(st).unwrap_or_else(PoisonError::into_inner),
            Some(left) => {
                self.cv
                    .wait_timeout(st, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        st
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.st
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sleeps on the condition variable until a change is signalled, or
    /// `deadline` (`None`: no limit); `Err(Timeout)` if it has passed already.
    pub(crate) fn wait<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, State>> {
        Ok(match deadline {
            None => self.sleep(st, None),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => self.sleep(st, Some(left)),
                _ => return Err(Error::Timeout),
            },
        })
    }
}

impl State {
    /// Whether a chunk of `job` went to a rank.
    pub(crate) fn sent_any(&self, job: u64) -> bool {
        self.chunks
            .values()
            .any(|c| c.job == job && c.msg.is_none())
    }
}

/// Drops the chunks of `job` not sent yet; how many there were.
pub(crate) fn forget_unsent(st: &mut State, job: u64) -> usize {
    let before = st.chunks.len();
    st.chunks.retain(|_, c| c.job != job || c.msg.is_none());
    let chunks = &st.chunks;
    st.unsent.retain(|c| chunks.contains_key(c));
    before - st.chunks.len()
}

/// Fails every job as a whole.
pub(crate) fn abort_all(st: &mut State, why: &Aborted) {
    // A detached job cut short: no callback runs for it now, and no handle
    // will ask.
    st.jobs
        .retain(|_, job| !(job.detached && !job.done() && job.aborted.is_none()));
    for job in st.jobs.values_mut() {
        if !job.done() && job.aborted.is_none() {
            job.aborted = Some(why.clone());
        }
    }
}

/// Assigns unsent chunks to the least loaded ranks with room: the messages
/// to send, by rank. A rank has room while it has fewer than [`DEPTH`]
/// chunks per local process in flight, or fewer items than its look-ahead
/// (small tasks: at least [`ITEMS_AHEAD`] a process, more for a rank that
/// ran out of them, see `Load::answered`); the least loaded has the fewest
/// items in flight per process.
pub(crate) fn dispatch(st: &mut State) -> Vec<(usize, Vec<u8>)> {
    let mut sends = Vec::new();
    while let Some(&id) = st.unsent.front() {
        let Some(count) = st.chunks.get(&id).map(|c| c.count as usize) else {
            st.unsent.pop_front();
            continue;
        };
        let best = (1..st.ranks.len())
            .filter(|&r| {
                let k = &st.ranks[r];
                k.chunks < DEPTH * k.processes || k.items + count <= k.ahead()
            })
            .min_by_key(|&r| st.ranks[r].items * 1024 / st.ranks[r].processes.max(1));
        let Some(rank) = best else { break };
        st.unsent.pop_front();
        trim_queue(&mut st.unsent);
        let Some(chunk) = st.chunks.get_mut(&id) else {
            continue;
        };
        let Some(msg) = chunk.msg.take() else {
            continue;
        };
        chunk.rank = rank;
        st.ranks[rank].chunks += 1;
        st.ranks[rank].items += count;
        sends.push((rank, msg));
    }
    sends
}

/// Sends the tasks, those to one rank together in messages of up to
/// [`wire::BATCH`] bytes (a larger one alone).
pub(crate) fn send_all(mut sends: Vec<(usize, Vec<u8>)>) {
    if sends.is_empty() {
        return;
    }
    let send = |rank: usize, msg: Vec<u8>| posted::post(rank, wire::TASK, msg);
    // By rank, each rank's tasks in the order they were given.
    sends.sort_by_key(|(rank, _)| *rank);
    let mut batch: Option<(usize, Vec<u8>)> = None;
    for (rank, msg) in sends {
        match &mut batch {
            Some((r, b)) if *r == rank && b.len() + msg.len() <= wire::BATCH => {
                b.extend_from_slice(&msg);
            }
            _ => {
                if let Some((r, b)) = batch.take() {
                    send(r, b);
                }
                batch = Some((rank, msg));
            }
        }
    }
    if let Some((r, b)) = batch {
        send(r, b);
    }
}

/// Takes a complete job's finisher to run outside the lock.
pub(crate) fn take_finisher(j: &mut Job) -> Option<(Finisher, Gathered, usize)> {
    if !j.complete() || j.aborted.is_some() || j.finishing {
        return None;
    }
    let fin = j.finisher.take()?;
    j.finishing = true;
    Some((fin, std::mem::take(&mut j.gathered), j.total))
}

pub(crate) fn run_finisher(hub: &Hub, job: u64, fin: Finisher, g: Gathered, total: usize) {
    let outcome = fin(g, total);
    let forgotten = {
        let mut st = hub.lock();
        match st.jobs.get_mut(&job) {
            Some(j) if !j.detached => {
                j.outcome = Some(outcome);
                j.finishing = false;
                None
            }
            // Detached (or gone): nobody will take the outcome.
            Some(_) => Some((st.forget_job(job), outcome)),
            None => Some((None, outcome)),
        }
    };
    // Dropped after the lock; its drop is the user's code: a `Drop` that
    // panics must not end this thread (the receiver thread, most often).
    wire::drop_quietly(forgotten);
    hub.wake();
}

/// Forgets `job`'s chunks not sent yet that lie wholly above item `at`:
/// how many items they held.
pub(crate) fn forget_unsent_above(st: &mut State, job: u64, at: usize) -> usize {
    let mut items = 0;
    st.chunks.retain(|_, c| {
        let skip = c.job == job && c.msg.is_some() && c.first > at;
        if skip {
            items += c.count as usize;
        }
        !skip
    });
    let chunks = &st.chunks;
    st.unsent.retain(|c| chunks.contains_key(c));
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(processes: usize, items: usize) -> Load {
        Load {
            processes,
            items,
            ..Load::default()
        }
    }

    #[test]
    fn a_rank_that_runs_out_of_tasks_gets_twice_as_many_up_to_the_most() {
        let mut k = load(2, 0);
        assert_eq!(k.ahead(), 2 * ITEMS_AHEAD);
        // It answered all it had (none left): doubled, and again.
        k.answered(64);
        assert_eq!(k.ahead(), 4 * ITEMS_AHEAD);
        k.answered(128);
        assert_eq!(k.ahead(), 8 * ITEMS_AHEAD);
        // One item left for two processes is running out too.
        k.items = 1;
        k.answered(10);
        assert_eq!(k.ahead(), 16 * ITEMS_AHEAD);
        for _ in 0..20 {
            k.answered(1);
        }
        assert_eq!(k.ahead(), 2 * MOST_AHEAD, "never past the most");
    }

    #[test]
    fn room_to_spare_shrinks_it_by_an_eighth_never_below_the_least() {
        let mut k = load(2, 0);
        k.answered(1);
        k.answered(1);
        assert_eq!(k.ahead(), 256);
        // More than half of it still to run: an eighth of what it grew.
        k.items = 200;
        k.answered(5);
        assert_eq!(k.ahead(), 64 + 192 - 192 / 8);
        for _ in 0..100 {
            k.answered(5);
        }
        assert_eq!(
            k.ahead(),
            2 * ITEMS_AHEAD,
            "never below ITEMS_AHEAD a process"
        );
        // Between the two (work for every process, not half the look-ahead
        // left): unchanged. An answer of nothing changes nothing.
        k.items = 10;
        k.answered(5);
        assert_eq!(k.ahead(), 64);
        k.items = 0;
        k.answered(0);
        assert_eq!(k.ahead(), 64);
    }
}
