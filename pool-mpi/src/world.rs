//! The MPI backend: [`init`], the serving ranks' loop, and [`MpiPool`] on
//! rank 0 with its hub and receiver thread (the handles its calls return
//! are in `handles.rs`).
//!
//! # Protocol
//! | who | does |
//! |---|---|
//! | every rank | `MPI_Init_thread(MULTIPLE)` in [`init`] |
//! | rank k > 0 | makes its local [`Pool`], sends [`HELLO`](wire::HELLO), then receives tasks until [`STOP`](wire::STOP); each message's tasks go to the local pool at once (single items in a row for one function as one local job), and the local pool's callback sends their answers (together when they fit 64 KiB; one over 64 KiB through an answering thread); then `MPI_Finalize` and exit |
//! | rank 0 | receives every hello (refusing another build), returns the [`MpiPool`]; a thread receives answers; chunks go to the least loaded rank, at most [`DEPTH`] per local process in flight on each (more while they are small: [`ITEMS_AHEAD`] a process, twice as many each time a rank runs out, up to [`MOST_AHEAD`]), those ready together in one message; a task for a rank that is busy, while the receiver thread is awake, is left for that thread to send with the next ones |
//! | rank 0, drop | `STOP` to every rank (join: after the last answer; terminate: at once), `MPI_Finalize` |
//!
//! # Waiting
//! MPI's blocking receive spins a core. On a machine whose cores run the
//! workers, both sides look for messages with `MPI_Improbe` and back off:
//! yielding (never spinning without it) for [`HOT`] after the last message,
//! then sleeping longer and longer, up to [`MAX_NAP`] (yielding rather than
//! sleeping early: a thread woken on an idle core of a virtual machine can
//! take tens of microseconds to run, `benches/NOTES.md`). Rank 0's receiver
//! sleeps on a condition variable while nothing is in flight; a caller
//! waiting for a result watches for it for [`WATCH`], yielding, before it
//! sleeps. Tasks and answers are posted without waiting for the receiving
//! rank (`posted`): a blocking send between ranks of one machine spins until
//! that rank's poller runs, which can be milliseconds while its workers
//! fill the cores.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use multiproc_pool::{Error, Pool, Result, SeqTable, IMAP_BUFFER};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::handles::{MpiIMap, MpiIMapUnordered, MpiResult};
use crate::posted;
use crate::serve::{self, Server};
use crate::wire::{self, Hello};

/// Chunks in flight on a rank, per local worker process: enough that a
/// rank's workers never wait for rank 0 between chunks.
pub const DEPTH: usize = 2;

/// Items in flight on a rank, per local worker process, while its chunks
/// are small (a stream of `apply_async`, a map of small chunks): more than
/// [`DEPTH`] chunks, so that a round trip to the rank is paid for many
/// tasks at once. The least: a rank that answers everything it had before
/// more reaches it is given twice as many, up to [`MOST_AHEAD`] a process
/// (see `Load::answered`).
pub const ITEMS_AHEAD: usize = 32;

/// The most items in flight on a rank per local worker process, however
/// short its tasks.
pub const MOST_AHEAD: usize = 4096;

/// The longest sleep between two looks for a message.
const MAX_NAP: Duration = Duration::from_micros(200);

/// How long a caller waiting for a result watches for it before sleeping.
pub(crate) const WATCH: Duration = Duration::from_micros(100);

/// How long a rank waits at its end for the messages it posted to be
/// taken (see `posted`).
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How long rank 0 waits for every rank's hello.
const HELLO_LIMIT: Duration = Duration::from_secs(120);

/// Starts MPI and, on every rank but 0, serves tasks in a local pool of this
/// machine's cores until rank 0 is done, then exits the process. On rank 0,
/// returns the pool over the other ranks. Call it first in `main`, before
/// anything whose effects the serving ranks must not repeat.
///
/// # Errors
/// On rank 0: [`Error::Rank`] when MPI was started already, lacks
/// `MPI_THREAD_MULTIPLE`, runs on one rank only, or a rank runs another
/// build or could not make its pool.
pub fn init() -> Result<MpiPool> {
    init_with(|| Pool::new(0))
}

/// [`init`], with the serving ranks' local pool made by `make_pool` (its
/// size, initializer, `maxtasksperchild`, task timeout …).
///
/// # Errors
/// As for [`init`].
pub fn init_with(make_pool: impl FnOnce() -> Result<Pool>) -> Result<MpiPool> {
    let fail = |message: &str| Error::Rank {
        rank: 0,
        message: message.to_owned(),
    };
    let (universe, level) = mpi::initialize_with_threading(Threading::Multiple)
        .ok_or_else(|| fail("MPI was initialised already in this process"))?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    if rank != 0 {
        let code = serve_rank(universe, level, make_pool);
        std::process::exit(code);
    }
    if level < Threading::Multiple {
        drop(universe);
        return Err(fail("the MPI library does not offer MPI_THREAD_MULTIPLE"));
    }
    if size < 2 {
        drop(universe);
        return Err(fail(
            "one rank only: run the program under mpirun -np N with N ≥ 2 (rank 0 runs the \
             program, the others serve it), or use multiproc_pool::Pool on one machine",
        ));
    }
    let ranks = match greet(&world, size as usize) {
        Ok(ranks) => ranks,
        Err(e) => {
            stop_all(&world, size as usize, wire::STOP_NOW);
            drop(universe);
            return Err(e);
        }
    };
    Ok(MpiPool::start(universe, ranks))
}

/// A serving rank, as rank 0 saw it greet.
#[derive(Debug, Clone)]
pub struct RankInfo {
    /// Its rank in `MPI_COMM_WORLD`.
    pub rank: usize,
    /// Its process id, on its host.
    pub pid: u32,
    /// Its host's name.
    pub host: String,
    /// Its local pool's worker processes.
    pub processes: usize,
}

/// Receives every rank's hello; refuses another build, or a rank whose pool
/// failed.
fn greet(world: &SimpleCommunicator, size: usize) -> Result<Vec<RankInfo>> {
    let mut ranks: Vec<Option<RankInfo>> = vec![None; size];
    let deadline = Instant::now() + HELLO_LIMIT;
    let mut nap = Napper::default();
    let mut seen = 0;
    while seen < size - 1 {
        let Some(m) = world
            .any_process()
            .immediate_matched_probe_with_tag(wire::HELLO)
        else {
            if Instant::now() > deadline {
                let missing: Vec<usize> = (1..size).filter(|&r| ranks[r].is_none()).collect();
                return Err(Error::Rank {
                    rank: missing.first().copied().unwrap_or(0),
                    message: format!("ranks {missing:?} did not start within {HELLO_LIMIT:?}"),
                });
            }
            nap.nap();
            continue;
        };
        let (msg, status) = m.matched_receive_vec::<u8>();
        nap.reset();
        let rank = usize::try_from(status.source_rank()).unwrap_or(0);
        let bad = |message: String| Err(Error::Rank { rank, message });
        let Some(hello) = Hello::decode(&msg) else {
            return bad("its greeting is too short".to_owned());
        };
        if let Some(problem) = hello.problem {
            return bad(format!("could not make its local pool: {problem}"));
        }
        let expected = multiproc_pool::build_id();
        if hello.build != expected {
            return bad(format!(
                "runs another build of the program (build identity {:#x}, rank 0's {expected:#x}): \
                 every rank must run the same executable",
                hello.build
            ));
        }
        if rank == 0 || rank >= size || ranks[rank].is_some() {
            return bad("greeted twice".to_owned());
        }
        ranks[rank] = Some(RankInfo {
            rank,
            pid: hello.pid,
            host: hello.host,
            processes: hello.processes as usize,
        });
        seen += 1;
    }
    Ok(ranks.into_iter().flatten().collect())
}

fn stop_all(world: &SimpleCommunicator, size: usize, how: u8) {
    for r in 1..size {
        world
            .process_at_rank(r as i32)
            .send_with_tag(&[how][..], wire::STOP);
    }
}

/// Yields, then sleeps longer and longer, while no message comes: a rank
/// that just had a message stays hot for the next (a stream of tasks, or
/// the answer a caller waits for), an idle one costs little. It never spins
/// without yielding: the thread it would keep off its vCPU is often the one
/// it waits for (on one machine the other rank's, or this rank's local pool;
/// a 20 µs spin first made a blocking `apply` over two ranks take twice as
/// long, `benches/NOTES.md`).
struct Napper {
    since: Instant,
    sleep: Duration,
}

impl Default for Napper {
    fn default() -> Napper {
        Napper {
            since: Instant::now(),
            sleep: Duration::ZERO,
        }
    }
}

/// Yielding for this long after the last message.
const HOT: Duration = Duration::from_micros(300);

impl Napper {
    fn nap(&mut self) {
        if self.since.elapsed() < HOT {
            std::thread::yield_now();
        } else {
            self.sleep = (self.sleep * 2).clamp(Duration::from_micros(10), MAX_NAP);
            std::thread::sleep(self.sleep);
        }
    }

    /// Still yielding: a message now is seen within microseconds.
    fn hot(&self) -> bool {
        self.since.elapsed() < HOT
    }

    fn reset(&mut self) {
        self.since = Instant::now();
        self.sleep = Duration::ZERO;
    }
}

/// The CPUs this process may run on and those its parent (the launcher's
/// process: mpirun's daemon, Slurm's step) may, when this process has fewer:
/// it was bound at launch, and a pool made here (`init()`'s is as large as
/// the CPUs it may use) runs every worker on them. A container's own limit
/// binds the launcher too, so it does not count.
fn bound_at_launch() -> Option<(usize, usize)> {
    let count = |pid: libc::pid_t| {
        // SAFETY: an all-zero `cpu_set_t` is an empty set, and the call
        // writes at most `size_of::<cpu_set_t>()` bytes into it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as above; a pid that is gone is an error, not UB.
        let r = unsafe { libc::sched_getaffinity(pid, size, &mut set) };
        // SAFETY: counts the bits of a set the call filled.
        (r == 0).then(|| unsafe { libc::CPU_COUNT(&set) } as usize)
    };
    let ours = count(0)?;
    // SAFETY: getppid has no preconditions.
    let launcher = count(unsafe { libc::getppid() })?;
    (ours < launcher).then_some((ours, launcher))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// A serving rank's life: the process's exit code.
fn serve_rank(
    universe: Universe,
    level: Threading,
    make_pool: impl FnOnce() -> Result<Pool>,
) -> i32 {
    let world = universe.world();
    let pool = if level < Threading::Multiple {
        Err("the MPI library does not offer MPI_THREAD_MULTIPLE".to_owned())
    } else {
        make_pool().map_err(|e| e.to_string())
    };
    let hello = Hello {
        build: multiproc_pool::build_id(),
        pid: std::process::id(),
        processes: pool.as_ref().map_or(0, |p| p.processes() as u32),
        host: host_name(),
        problem: pool.as_ref().err().cloned(),
    };
    let root = world.process_at_rank(0);
    root.send_with_tag(&hello.encode()[..], wire::HELLO);
    let Ok(pool) = pool else {
        // Rank 0 answers with a stop.
        let _ = receive_stop(&world);
        drop(universe);
        return 1;
    };
    if let Some((ours, launcher)) = bound_at_launch() {
        eprintln!(
            "multiproc-pool-mpi: rank {} (pid {} on {}) may run on {ours} of the {launcher} \
             CPUs its launcher may, and its pool's {} workers share them: mpirun binds each \
             rank to one core by default when it starts one or two; start it with \
             `mpirun --bind-to none`",
            world.rank(),
            std::process::id(),
            hello.host,
            pool.processes()
        );
    }
    let stopped_now = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<Option<serve::Answer>>();
    let answerer = {
        let stopped_now = Arc::clone(&stopped_now);
        std::thread::Builder::new()
            .name("mpi-answerer".into())
            .spawn(move || {
                while let Ok(Some(answer)) = rx.recv() {
                    answer_root(answer, &stopped_now);
                }
            })
            .expect("spawn the answering thread")
    };
    let outbox = {
        let stopped_now = Arc::clone(&stopped_now);
        serve::Outbox::new(
            tx,
            Some(Box::new(move |answer: &[u8]| {
                answer_root(answer.to_vec(), &stopped_now)
            })),
        )
    };
    // Local jobs until they end, oldest first.
    let mut held: VecDeque<serve::Held> = VecDeque::new();
    let mut last_settle = Instant::now();
    let mut nap = Napper::default();
    let how = loop {
        posted::complete();
        if let Some(m) = root.immediate_matched_probe_with_tag(wire::TASK) {
            let (msg, _) = m.matched_receive_vec::<u8>();
            nap.reset();
            let mut tasks = wire::frames(&msg);
            // SAFETY: rank 0 runs this build (its greeting was checked
            // before it sent any task), so the offsets name a server and a
            // function of matching types.
            held.extend(unsafe { serve::run_tasks(&pool, tasks.by_ref(), &outbox) });
            if tasks.torn {
                eprintln!("multiproc-pool-mpi: a task message from rank 0 was cut short");
            }
            settle(&mut held);
            continue;
        }
        if let Some(m) = root.immediate_matched_probe_with_tag(wire::STOP) {
            let (msg, _) = m.matched_receive_vec::<u8>();
            break msg.first().copied().unwrap_or(wire::STOP_NOW);
        }
        if last_settle.elapsed() > Duration::from_millis(1) {
            last_settle = Instant::now();
            settle(&mut held);
        }
        nap.nap();
    };
    if how == wire::STOP_NOW {
        stopped_now.store(true, std::sync::atomic::Ordering::Relaxed);
        pool.terminate();
    } else {
        // Every job sent ends, and its callback answers.
        pool.close();
        let _ = pool.join();
    }
    for h in held {
        // Ended: answered by its callback, or now.
        let _ = h.settled();
    }
    outbox.end();
    let _ = answerer.join();
    let leaked = posted::drain(DRAIN_LIMIT);
    if leaked > 0 {
        eprintln!("multiproc-pool-mpi: {leaked} answers to rank 0 were not taken before the end");
    }
    drop(pool);
    drop(universe);
    0
}

/// Drops the oldest local jobs that ended (answering for those that ended
/// without their callback).
fn settle(held: &mut VecDeque<serve::Held>) {
    while let Some(h) = held.pop_front() {
        if let Err(h) = h.settled() {
            held.push_front(h);
            return;
        }
    }
}

/// Posts one answer (message) to rank 0, unless rank 0 stopped listening.
fn answer_root(answer: Vec<u8>, stopped_now: &std::sync::atomic::AtomicBool) {
    if !stopped_now.load(std::sync::atomic::Ordering::Relaxed) {
        posted::post(0, wire::ANSWER, answer);
    }
}

fn receive_stop(world: &SimpleCommunicator) -> u8 {
    let (msg, _) = world
        .process_at_rank(0)
        .matched_probe_with_tag(wire::STOP)
        .matched_receive_vec::<u8>();
    msg.first().copied().unwrap_or(wire::STOP_NOW)
}

/// What a finished job's answers are, before they are decoded.
#[derive(Default)]
pub(crate) struct Gathered {
    /// `(first item, rank, entries)` per answered chunk.
    pub(crate) parts: Vec<(usize, usize, Vec<u8>)>,
    /// Items that failed without an answer.
    pub(crate) failed: Vec<(usize, Error)>,
}

type Finisher = Box<dyn FnOnce(Gathered, usize) -> Box<dyn Any + Send> + Send>;

pub(crate) struct Job {
    pub(crate) total: usize,
    pub(crate) feeding: bool,
    answered: usize,
    pub(crate) gathered: Gathered,
    /// Decodes and runs the callbacks when the job completes (`None` for an
    /// `imap`, whose iterator takes the parts as they come).
    finisher: Option<Finisher>,
    pub(crate) outcome: Option<Box<dyn Any + Send>>,
    /// Failed as a whole (terminated, cancelled, a rank died).
    pub(crate) aborted: Option<Aborted>,
    finishing: bool,
    /// A `map`, which answers its lowest failing item's error: its chunks
    /// carry [`wire::BELOW_DEATH`], and once a worker's death or a timeout
    /// fails item `run_below`, its chunks wholly above it not sent yet are
    /// not sent (counted as answered; they would only be dropped). A map
    /// whose every item kills its worker then costs a few deaths on each
    /// rank, not one (and a new worker) an item.
    below_death: bool,
    run_below: usize,
    /// Its finisher runs callbacks the user gave (not only the decoding).
    calls_back: bool,
    /// Its handle was dropped while those callbacks were still to run: kept
    /// until they have run, as Python runs a callback whether or not its
    /// `AsyncResult` is kept, then forgotten (see [`Job::detach`]).
    detached: bool,
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
struct Chunk {
    job: u64,
    first: usize,
    count: u32,
    /// Its message while not sent yet.
    msg: Option<Vec<u8>>,
    rank: usize,
}

/// A rank's chunks and items in flight, its local processes, and how many
/// items it may have in flight.
#[derive(Default, Clone, Copy)]
struct Load {
    chunks: usize,
    items: usize,
    processes: usize,
    /// Its look-ahead in items beyond `ITEMS_AHEAD` a process (0: none yet).
    grown: usize,
}

impl Load {
    /// How many items it may have in flight (beyond [`DEPTH`] chunks a
    /// process).
    fn ahead(&self) -> usize {
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
    fn answered(&mut self, answered: usize) {
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
    next_job: u64,
    next_chunk: u64,
    pub(crate) jobs: SeqTable<Job>,
    chunks: SeqTable<Chunk>,
    /// Chunk ids not sent yet, oldest first.
    unsent: VecDeque<u64>,
    /// What each rank has in flight (index = rank).
    ranks: Vec<Load>,
    /// Tasks for ranks that were busy, left for the receiver thread to send
    /// together (see [`MpiPool::send_chunk`]).
    deferred: Vec<(usize, Vec<u8>)>,
    closed: bool,
    /// The receiver thread is to end once nothing is in flight.
    stopping: bool,
    stopped: bool,
    broken: Option<Aborted>,
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
    cv: Condvar,
    /// Threads asleep on `cv` (counted under `st`'s lock): a wake with
    /// none is no system call (one a task, before, when the receiver
    /// polled and the caller watched).
    sleepers: std::sync::atomic::AtomicUsize,
    /// Counts [`Hub::wake`]s: a waiter watches it for a while before it
    /// sleeps on `cv`.
    pub(crate) changes: std::sync::atomic::AtomicU64,
    /// The receiver thread is looking for messages without sleeping.
    pub(crate) hot: std::sync::atomic::AtomicBool,
    /// `State::deferred` has tasks.
    pub(crate) has_deferred: std::sync::atomic::AtomicBool,
    /// MPI was finalized (the pool dropped): the receiver loop makes no MPI
    /// call any more. Set by a drop on the receiver thread itself (a callback
    /// that held the last handle), whose loop goes on once the callback
    /// returns.
    pub(crate) finalized: std::sync::atomic::AtomicBool,
}

impl Hub {
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
    fn sleep<'a>(
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

/// The pool over MPI ranks, on rank 0: the calls of
/// [`multiproc_pool::Pool`] (and [`Tasks`](crate::Tasks)), each task run in
/// the local pool of one of the other ranks.
///
/// Dropping it terminates it (Python's context manager), stops every rank
/// and finalises MPI; [`close`](MpiPool::close) then [`join`](MpiPool::join)
/// first to let the tasks sent finish.
pub struct MpiPool {
    pub(crate) hub: Arc<Hub>,
    ranks: Vec<RankInfo>,
    receiver: Mutex<Option<JoinHandle<()>>>,
    universe: Mutex<Option<Universe>>,
    size: usize,
    ended: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MpiPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiPool")
            .field("ranks", &self.ranks)
            .finish()
    }
}

impl MpiPool {
    fn start(universe: Universe, ranks: Vec<RankInfo>) -> MpiPool {
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
        });
        let receiver = {
            let hub = Arc::clone(&hub);
            let ranks = ranks.clone();
            std::thread::Builder::new()
                .name("mpi-answers".into())
                .spawn(move || receive_answers(hub, &ranks))
                .expect("spawn the MPI receiver thread")
        };
        MpiPool {
            hub,
            ranks,
            receiver: Mutex::new(Some(receiver)),
            universe: Mutex::new(Some(universe)),
            size,
            ended: std::sync::atomic::AtomicBool::new(false),
        }
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
        // No finisher: the receiver thread only files the answer, and `get`
        // decodes it on the caller's thread (the local pool's way).
        self.submit_one(f, args, None, false)
    }

    /// [`apply_async`](MpiPool::apply_async) with Python's `callback` and
    /// `error_callback`, run in this process on the thread that receives
    /// answers; a callback that panics makes the result
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
    fn end(&self, how: u8) {
        if self.ended.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
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
            // thread is awake to send it within microseconds, waits for it:
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
    pool: &'a MpiPool,
    job: Option<u64>,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job {
            self.pool.abandon(job);
        }
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

/// Fails every job as a whole.
fn abort_all(st: &mut State, why: &Aborted) {
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
fn dispatch(st: &mut State) -> Vec<(usize, Vec<u8>)> {
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
fn send_all(mut sends: Vec<(usize, Vec<u8>)>) {
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
fn take_finisher(j: &mut Job) -> Option<(Finisher, Gathered, usize)> {
    if !j.complete() || j.aborted.is_some() || j.finishing {
        return None;
    }
    let fin = j.finisher.take()?;
    j.finishing = true;
    Some((fin, std::mem::take(&mut j.gathered), j.total))
}

fn run_finisher(hub: &Hub, job: u64, fin: Finisher, g: Gathered, total: usize) {
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

/// The receiver thread: files answers, sends what waits, watches the ranks
/// on this host.
fn receive_answers(hub: Arc<Hub>, ranks: &[RankInfo]) {
    let receiver = std::rc::Rc::new(Receiver::new(hub, ranks));
    RECEIVER.with(|r| *r.borrow_mut() = Some(std::rc::Rc::clone(&receiver)));
    while receiver.step() {}
    RECEIVER.with(|r| *r.borrow_mut() = None);
}

thread_local! {
    /// On the receiver thread, its loop. The finishers — the user's
    /// callbacks — run on this thread (see [`file_answers`]); a callback that
    /// waits on the pool would wait for this very thread, for ever, so it
    /// runs the loop's steps itself while it waits ([`receiver_here`]).
    static RECEIVER: std::cell::RefCell<Option<std::rc::Rc<Receiver>>> =
        const { std::cell::RefCell::new(None) };
}

/// The receiver loop of `hub`, if this thread is its receiver thread.
pub(crate) fn receiver_here(hub: &Hub) -> Option<std::rc::Rc<Receiver>> {
    RECEIVER
        .with(|r| r.borrow().clone())
        .filter(|r| std::ptr::eq(&*r.hub, hub))
}

/// The receiver loop's state. Its steps may nest (a callback run by one
/// step waits, and runs steps): what changes is in cells, borrowed only
/// between calls that could run a callback.
pub(crate) struct Receiver {
    hub: Arc<Hub>,
    world: SimpleCommunicator,
    here: String,
    watch: Vec<(usize, std::os::fd::OwnedFd, u32)>,
    nap: std::cell::RefCell<Napper>,
    last_watch: std::cell::Cell<Instant>,
}

impl Receiver {
    fn new(hub: Arc<Hub>, ranks: &[RankInfo]) -> Receiver {
        let here = host_name();
        let watch = ranks
            .iter()
            .filter(|r| r.host == here)
            .filter_map(|r| pidfd(r.pid).map(|fd| (r.rank, fd, r.pid)))
            .collect();
        Receiver {
            hub,
            world: SimpleCommunicator::world(),
            here,
            watch,
            nap: std::cell::RefCell::new(Napper::default()),
            last_watch: std::cell::Cell::new(Instant::now()),
        }
    }

    /// One round of the loop; `false` once the receiver is to end.
    pub(crate) fn step(&self) -> bool {
        let hub = &*self.hub;
        if hub.finalized.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        posted::complete();
        let hot = self.nap.borrow().hot();
        hub.hot.store(hot, std::sync::atomic::Ordering::Relaxed);
        if hub
            .has_deferred
            .swap(false, std::sync::atomic::Ordering::Acquire)
        {
            let sends = std::mem::take(&mut hub.lock().deferred);
            send_all(sends);
        }
        if let Some(m) = self
            .world
            .any_process()
            .immediate_matched_probe_with_tag(wire::ANSWER)
        {
            let (msg, status) = m.matched_receive_vec::<u8>();
            self.nap.borrow_mut().reset();
            let rank = usize::try_from(status.source_rank()).unwrap_or(0);
            // Runs the finishers of the jobs it completes (callbacks).
            file_answers(hub, rank, msg);
            return true;
        }
        if self.last_watch.get().elapsed() > Duration::from_millis(20) {
            self.last_watch.set(Instant::now());
            if let Some((rank, pid)) = dead_rank(&self.watch) {
                let here = &self.here;
                let why = Aborted::Rank(
                    rank,
                    format!(
                        "rank {rank} (pid {pid} on {here}) died; MPI ends the whole job \
                         when a rank dies"
                    ),
                );
                eprintln!("multiproc-pool-mpi: {}", why.error());
                let mut st = hub.lock();
                abort_all(&mut st, &why);
                st.broken = Some(why);
                st.chunks.clear();
                st.unsent.clear();
                st.deferred.clear();
                drop(st);
                hub.wake();
            }
        }
        let mut st = hub.lock();
        if st.chunks.values().all(|c| c.msg.is_some()) {
            // Nothing in flight: sleep until a submission (or the end).
            if st.stopping {
                st.stopped = true;
                return false;
            }
            drop(hub.sleep(st, Some(Duration::from_millis(20))));
            self.nap.borrow_mut().reset();
            return true;
        }
        drop(st);
        self.nap.borrow_mut().nap();
        true
    }
}

fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(pid, 0), integer arguments only; it returns a new
    // descriptor or -1 (nix has no wrapper for it).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(pid), 0) } as i32;
    // SAFETY: a descriptor just returned to us, owned by nothing else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The first watched rank whose process ended.
fn dead_rank(watch: &[(usize, std::os::fd::OwnedFd, u32)]) -> Option<(usize, u32)> {
    use std::os::fd::AsRawFd;
    for (rank, fd, pid) in watch {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        if n > 0 && p.revents & libc::POLLIN != 0 {
            return Some((*rank, *pid));
        }
    }
    None
}

/// Files the answers of one message under their jobs; sends what the freed
/// room allows; runs the finishers of the jobs they completed.
fn file_answers(hub: &Hub, rank: usize, mut msg: Vec<u8>) {
    let alone = wire::frames(&msg)
        .next()
        .is_some_and(|a| wire::FRAME + a.len() == msg.len());
    let (sends, finished) = {
        let mut st = hub.lock();
        let before = st.ranks.get(rank).map_or(0, |k| k.items);
        let mut finished = Vec::new();
        if alone {
            // One answer: its entries keep the message's buffer.
            msg.drain(..wire::FRAME);
            if let Some(done) = file_answer(&mut st, rank, msg) {
                finished.push(done);
            }
        } else {
            let mut answers = wire::frames(&msg);
            for a in answers.by_ref() {
                if let Some(done) = file_answer(&mut st, rank, a.to_vec()) {
                    finished.push(done);
                }
            }
            if answers.torn {
                eprintln!("multiproc-pool-mpi: an answer message from rank {rank} was cut short");
            }
        }
        if let Some(k) = st.ranks.get_mut(rank) {
            k.answered(before.saturating_sub(k.items));
        }
        (dispatch(&mut st), finished)
    };
    send_all(sends);
    for (job, (fin, g, total)) in finished {
        run_finisher(hub, job, fin, g, total);
    }
    hub.wake();
}

/// Files one answer (chunk id, items, entries) under its job: the job's
/// finisher to run, if the answer completed it.
fn file_answer(
    st: &mut State,
    rank: usize,
    mut answer: Vec<u8>,
) -> Option<(u64, (Finisher, Gathered, usize))> {
    let (
        wire::AnswerHeader {
            id,
            count,
            first_death,
        },
        _,
    ) = wire::read_answer(&answer)?;
    let chunk = st.chunks.remove(&id)?; // else a chunk of a job that is gone
    st.chunks.trim();
    if let Some(k) = st.ranks.get_mut(chunk.rank) {
        k.chunks = k.chunks.saturating_sub(1);
        k.items = k.items.saturating_sub(chunk.count as usize);
    }
    let j = st.jobs.get_mut(&chunk.job)?;
    if count != chunk.count || chunk.rank != rank {
        // Not what was sent there: every item of the chunk fails.
        let e = format!(
            "answered {count} items for a chunk of {} sent to rank {}",
            chunk.count, chunk.rank
        );
        for i in 0..chunk.count as usize {
            j.gathered.failed.push((
                chunk.first + i,
                Error::Rank {
                    rank,
                    message: e.clone(),
                },
            ));
        }
    } else {
        answer.drain(..wire::ANSWER_HEADER);
        j.gathered.parts.push((chunk.first, rank, answer));
    }
    j.answered += chunk.count as usize;
    // (An answer that is not what was sent there failed its items above.)
    let as_sent = count == chunk.count && chunk.rank == rank;
    if let Some(d) = first_death.filter(|_| j.below_death && as_sent) {
        let at = chunk.first + d as usize;
        if at < j.run_below {
            j.run_below = at;
            let skipped = forget_unsent_above(st, chunk.job, at);
            if let Some(j) = st.jobs.get_mut(&chunk.job) {
                j.answered += skipped;
            }
        }
    }
    let j = st.jobs.get_mut(&chunk.job)?;
    take_finisher(j).map(|f| (chunk.job, f))
}

/// Forgets `job`'s chunks not sent yet that lie wholly above item `at`:
/// how many items they held.
fn forget_unsent_above(st: &mut State, job: u64, at: usize) -> usize {
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

    fn load(processes: usize, items: usize) -> Load {
        Load {
            processes,
            items,
            ..Load::default()
        }
    }

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
