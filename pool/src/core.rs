//! The pool's parent side: its workers, and the driver that moves answers
//! from the result queue to the jobs ([`Job`]) and tasks ([`Task`]) to the
//! workers.
//!
//! # Who does the work
//! There is no thread per duty as in Python's pool. Whoever waits drives: a
//! thread waiting for a result takes the driver's lock (if free), reads the
//! result queue itself — so a blocking `apply` sees its answer as soon as the
//! worker publishes it, without a hand-off — files each answer under its job,
//! sends queued tasks to the workers that freed room, notices dead workers and
//! late tasks, and goes back to waiting. Threads that find the driver busy
//! sleep on a condition variable the driver signals. A background thread
//! drives only while nobody waits and work is outstanding (`map_async` with
//! callbacks, say), and looks for dead workers now and then when idle.
//!
//! # A worker's death
//! Each worker has an inbox of its own and a slot in shared memory naming
//! the task (and item) it runs, written before the task starts. When a
//! worker's pidfd turns readable, the driver first files every answer
//! already published, then: the task the slot names, if still unanswered,
//! failed at the item the slot names (`WorkerDied`, or `TimedOut` when the
//! driver killed it for its timeout); the items of that task before and after
//! it, and every other task sent to that worker and unanswered, go back to
//! the front of the queue under new numbers (so an item before the crashed
//! one, whose answer died unpublished, runs a second time); the inbox is
//! emptied and the worker replaced. Nothing else fails and nothing waits
//! forever.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_proc::{ForkServer, ServerChild};
use multiproc_sync::futex::try_yield;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;

use crate::buffers::spare;
use crate::colocation;
use crate::error::{Error, Exit, Result};
use crate::job::{Answer, Finish, Job, Part, ANSWER_INLINE};
use crate::pace::{self, Pace};
use crate::seq::{self, SeqTable};
use crate::task::{Target, Task};
use crate::wire;
use crate::worker::{Channels, EXIT_CORRUPTED, READY};

/// A map keyed by the pool's own sequence numbers (the side map of a
/// [`SeqTable`]): no hostile keys, so a multiplicative hash instead of
/// SipHash (`benches/NOTES.md`).
pub(crate) type SeqMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<SeqHasher>>;

/// Fibonacci hashing of one `u64`.
#[derive(Default)]
pub(crate) struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

thread_local! {
    /// The pool whose driver's lock this thread holds (its `Inner`'s
    /// address; 0: none). Finishers — the user's callbacks — run under that
    /// lock, so a callback that calls its pool again and waits would wait for
    /// the driver forever (Python's pool deadlocks so); it drives itself
    /// instead ([`Inner::wait_until`]).
    static DRIVING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The pools (by [`Inner::id`]) whose queues (the answers', or an
    /// inbox) had no entry free for this thread, and when it found so: a
    /// queue keeps one for each thread that uses it, 64 at most, and a
    /// program of more threads that call one pool takes them all. This
    /// thread then leaves the reading and the sending to the background
    /// thread, which took its entries when the pool started
    /// ([`Inner::wait_until`], [`Inner::queue`]), for [`ENTRY_RETRY`]; then
    /// it tries again (the threads that held the entries may have ended).
    static NO_ENTRY: std::cell::RefCell<Vec<(u64, Instant)>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Whether this thread is a pool's background thread.
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Numbers the pools of this process, for [`NO_ENTRY`] (an address may be
/// a later pool's).
static POOL_IDS: AtomicU64 = AtomicU64::new(1);

/// How long a thread that found no entry free in a pool's queues leaves
/// them to the background thread before it tries again ([`NO_ENTRY`]). A
/// try that finds the table still full asks the system about every entry's
/// owner (0.2-0.35 ms for 64 live threads on the Intel VM of
/// `benches/NOTES.md`), so it stays rare: at most once a second a thread.
const ENTRY_RETRY: Duration = Duration::from_secs(1);

/// The driver's lock, held, and this thread marked as its holder until dropped.
struct Driving<'a> {
    _guard: MutexGuard<'a, ()>,
    /// What the mark was before (another pool's, when drives nest).
    outer: usize,
}

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        DRIVING.with(|d| d.set(self.outer));
    }
}

/// The jobs a driving round completed. A round of a pipelined
/// `apply_async` completes a job an answer, about eight a round, and
/// growing a `Vec` for them (and for the answers, [`Batch`]) cost a few
/// allocations a round (`benches/NOTES.md`).
pub(crate) type Finished = smallvec::SmallVec<[u64; 16]>;

/// The answers a driving round takes (up to 256; a round of small tasks
/// takes about as many as the workers hold).
type Batch = smallvec::SmallVec<[Answer; 16]>;

/// Consecutive deaths before `READY` after which the pool stops replacing
/// workers (CPython's pool respawns forever: gh-87472).
pub(crate) const MAX_INIT_DEATHS: u32 = 3;

/// Room the queue of unsent tasks keeps however short it gets (see
/// [`seq::trim`]).
const PENDING_KEPT: usize = 1024;

/// The background thread's idle looks (one each [`IDLE_LOOK`]) with nothing
/// outstanding after which the tables give back the room a burst left
/// ([`State::trim`]): about ten seconds (one in unit tests). Growing the
/// room again is dear (a fresh pool's first burst of 100 000 tasks took
/// 46-71 ms, the next ones 29-43: the tables doubling, fresh pages): a
/// program that sends bursts every few seconds keeps it, one that goes
/// quiet gives it back.
const IDLE_LOOKS_BEFORE_TRIM: u32 = if cfg!(test) { 10 } else { 100 };

/// How long the background thread sleeps when idle before it looks at the
/// workers.
const IDLE_LOOK: Duration = Duration::from_millis(100);

/// Work (by the measured time of its tasks, see `Pace`) a worker that is
/// awake on another CPU may have queued before a task goes to a worker that
/// would need waking (asleep on its inbox, or sharing the sender's CPU)
/// rather than behind it: waking a worker takes 10-20 µs on a VM, so a
/// `map` of 10 trivial items spread over both workers of a 2-CPU pool took
/// 23-25 µs, 4.2-4.8 on the one awake (`benches/NOTES.md`). Longer tasks
/// spread as before: a worker that holds one already gets the next only if
/// it has the fewest. A function measured at this or more also gets its
/// sends to idle workers timed (see `Pace`), so that a measure that says
/// slow can be corrected by them.
pub(crate) const WAKE_WORTH: u64 = 20_000;

/// How long after a caller's last round of driving the background thread
/// leaves outstanding work to callers: a caller that takes its results in
/// windows (submits a few dozen tasks, then waits for them, and again)
/// drives each window itself, and the background thread, woken by each
/// window's first task, drove beside it, both spinning for the same answers
/// on two CPUs with the workers, and the caller, finding the driver's lock
/// taken, slept on the state until the background thread filed its answers.
/// Windows of 64 `apply_async`s took 1.2-1.8 µs a task, 0.6-0.7 with this
/// (`benches/NOTES.md`). Work nobody waits for (callbacks, a burst being
/// submitted) is driven at most this late.
const CALLER_DRIVES_GRACE: Duration = Duration::from_micros(200);

/// How long a driver sleeps on the result queue before it looks at the
/// workers' pidfds and the task timeouts.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// How long a driver waits for answers, at most, while a worker that ran its
/// last task (`maxtasksperchild`) exits: a process's exit takes some tens of
/// microseconds.
const RETIRE_LOOK: Duration = Duration::from_micros(50);

/// A worker slot's parent-side record.
struct Worker {
    child: Option<ServerChild<'static>>,
    pid: u32,
    /// Tasks sent to it and not answered.
    sent: usize,
    /// The (task, item) its slot named at the last look, and since when.
    running: Option<((u64, u64), Instant)>,
    /// The task it was killed for (its timeout).
    killed_for: Option<u64>,
    /// When its current task started, as the driver saw it (the round that
    /// filed the answer before it); `None` when not known (see [`Pace`]).
    since: Option<Instant>,
    /// Tasks it answered (it exits after `maxtasksperchild` of them).
    ran: u64,
}

/// Everything the pool's threads share, under one lock.
pub(crate) struct State {
    workers: Vec<Worker>,
    inflight: SeqTable<Task>,
    pending: VecDeque<Task>,
    pub(crate) jobs: SeqTable<Job>,
    next_seq: u64,
    next_job: u64,
    /// No new tasks (close or terminate).
    pub(crate) closed: bool,
    pub(crate) terminated: bool,
    /// `join` stopped the workers: nothing queued would ever run.
    joined: bool,
    /// Why the pool stopped for good (see [`Broken`]).
    broken: Option<Broken>,
    /// The shared memory was found written over where the pool could not
    /// stop at once (sending): the next driving round does.
    corrupted: Option<String>,
    init_deaths: u32,
    /// Threads inside a wait (driving, or on the condition variable).
    pub(crate) waiting: usize,
    /// Of those, the ones that cannot use the queues ([`NO_ENTRY`]): the
    /// background thread drives for them.
    bystanders: usize,
    /// Threads asleep on `changed`.
    sleepers: usize,
    /// The background thread sleeps on `idle` and nobody woke it yet (the
    /// waker clears it: see [`Inner::nudge`]).
    bg_asleep: bool,
    shutdown: bool,
    /// When the driver last looked at the workers.
    last_check: Instant,
    /// When a caller (not the background thread) last ended a round of
    /// driving (see [`CALLER_DRIVES_GRACE`]).
    caller_drove: Instant,
    /// Large task messages to stream: (worker, seq, message).
    streams: VecDeque<(usize, u64, Arc<Vec<u8>>)>,
    /// How long tasks take, by function: how many a worker may hold.
    pace: Pace,
    /// Workers started so far, replacements too: the N of the next one's
    /// name, `ForkPoolWorker-N` (Python's).
    started: u32,
}

impl State {
    /// Gives back the room a burst of tasks left in the tables (a million
    /// `apply_async`s grew them to about 300 MB, held for as long as the
    /// pool lived, and copied as page tables by every later `fork` of the
    /// process), and the spare buffers of large maps. Called once the pool
    /// has been idle a while, so that bursts back to back keep their room.
    fn trim(&mut self) {
        self.jobs.trim();
        self.inflight.trim();
        seq::trim(&mut self.pending, PENDING_KEPT);
        // And the large buffers kept for the next map (process-wide, up to
        // `spare::KEPT_BYTES`; another pool that still maps makes them anew).
        spare::release();
    }
}

#[cfg(test)]
impl State {
    /// The room the tables of tasks hold (for tests).
    pub(crate) fn inflight_capacity(&self) -> usize {
        self.inflight.capacity()
    }

    pub(crate) fn pending_capacity(&self) -> usize {
        self.pending.capacity()
    }

    /// Tasks sent and not answered, and tasks not sent (for tests).
    pub(crate) fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Tasks sent to each worker and not answered.
    #[cfg(test)]
    pub(crate) fn sent_by_worker(&self) -> Vec<usize> {
        self.workers.iter().map(|w| w.sent).collect()
    }

    /// The measured time of a single-item task of `target`, if any.
    pub(crate) fn measured_ns(&mut self, target: Target) -> Option<u64> {
        self.pace.task_ns(target, 1)
    }
}

/// The watcher's eventfd and set (see [`Deaths`]), made before the pool's
/// threads start.
///
/// # Errors
/// When the process may open no more descriptors.
pub(crate) fn watcher_fds() -> std::io::Result<(EventFd, Epoll)> {
    use nix::sys::eventfd::EfdFlags;
    let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    let set = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    set.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_EVENT))?;
    Ok((wake, set))
}

/// The watcher's event for its eventfd (a worker's event carries its pid).
const WAKE_EVENT: u64 = u64::MAX;

/// How the driver learns at once that a worker ended, rather than at its
/// next look at the workers (every [`CHECK_EVERY`] while someone waits: a
/// task that killed its worker took 5.4 ms to answer `WorkerDied`).
pub(crate) struct Deaths {
    /// Written to make the watcher stop (the pool ends).
    wake: EventFd,
    /// What the watcher waits on: `wake`, and each worker's pidfd, added as
    /// the worker starts, once-only (`EPOLLONESHOT`: a pidfd turns readable
    /// once, when its process ends). The set holds the pidfds themselves,
    /// so a pool of N workers holds N descriptors (copies of them, for
    /// `poll` while the driver may close its own, would hold 2N), and a
    /// pidfd closed everywhere leaves the set by itself.
    set: Epoll,
    /// Set by the watcher when a worker's pidfd became readable: the next
    /// driving round looks at the workers.
    seen: AtomicBool,
}

impl Deaths {
    pub(crate) fn new((wake, set): (EventFd, Epoll)) -> Deaths {
        Deaths {
            wake,
            set,
            seen: AtomicBool::new(false),
        }
    }
}

/// The message the watcher puts into the answers to wake a driver that
/// sleeps on them: an answer to no task (task numbers start at 1), which
/// filing drops.
const DEATH_NOTICE: [u8; wire::ANSWER_HEADER] = [0; wire::ANSWER_HEADER];

/// The pool's parent side.
pub(crate) struct Inner {
    /// This pool's number in the process ([`POOL_IDS`]).
    id: u64,
    /// The process that made the pool.
    pub(crate) owner: u32,
    pub(crate) channels: Arc<Channels>,
    zygote: Arc<ForkServer>,
    pub(crate) processes: usize,
    depth: usize,
    task_timeout: Option<Duration>,
    /// Python's `maxtasksperchild`: a worker exits after answering this many.
    max_tasks: Option<u64>,
    /// Workers that answered their last task and have not been replaced yet
    /// (see [`Inner::drive_once`]): read without the lock, to shorten the
    /// driver's wait for answers while one exits.
    retiring: AtomicUsize,
    /// How a worker's end is known at once (see [`Inner::watcher`]).
    deaths: Deaths,
    pub(crate) state: Mutex<State>,
    /// Signalled when jobs complete (and when the driver's lock is released).
    changed: Condvar,
    /// The background thread's sleep.
    idle: Condvar,
    /// The streamer's sleep (see [`Inner::streamer`]).
    streams_ready: Condvar,
    /// Held by the thread that reads the result queue.
    driver: Mutex<()>,
    /// The last task sent was of a function measured short (under
    /// [`WAKE_WORTH`]): its answer is due within microseconds, and a driver
    /// waiting for answers watches [`DUE_WATCH`] longer before it sleeps
    /// (see [`receive`]).
    pub(crate) answer_due: AtomicBool,
}

impl Inner {
    pub(crate) fn new(
        channels: Arc<Channels>,
        zygote: ForkServer,
        processes: usize,
        depth: usize,
        task_timeout: Option<Duration>,
        max_tasks: Option<u64>,
        deaths: Deaths,
    ) -> Inner {
        let workers = (0..processes)
            .map(|_| Worker {
                child: None,
                pid: 0,
                sent: 0,
                running: None,
                killed_for: None,
                since: None,
                ran: 0,
            })
            .collect();
        Inner {
            id: POOL_IDS.fetch_add(1, Ordering::Relaxed),
            owner: my_pid(),
            channels,
            zygote: Arc::new(zygote),
            processes,
            depth,
            task_timeout,
            max_tasks,
            retiring: AtomicUsize::new(0),
            deaths,
            state: Mutex::new(State {
                workers,
                inflight: SeqTable::default(),
                pending: VecDeque::new(),
                jobs: SeqTable::default(),
                next_seq: 1,
                next_job: 1,
                started: 0,
                closed: false,
                terminated: false,
                joined: false,
                broken: None,
                corrupted: None,
                init_deaths: 0,
                waiting: 0,
                bystanders: 0,
                sleepers: 0,
                bg_asleep: false,
                shutdown: false,
                last_check: Instant::now(),
                caller_drove: Instant::now(),
                streams: VecDeque::new(),
                pace: Pace::default(),
            }),
            changed: Condvar::new(),
            idle: Condvar::new(),
            streams_ready: Condvar::new(),
            driver: Mutex::new(()),
            answer_due: AtomicBool::new(false),
        }
    }

    /// The state, even if a thread panicked holding it (every update is
    /// made whole before anything that can panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts every worker.
    pub(crate) fn start_workers(&self) -> Result<()> {
        let mut st = self.lock();
        for w in 0..self.processes {
            self.spawn(&mut st, w)?;
        }
        Ok(())
    }

    /// Starts (or replaces) the worker of slot `w`.
    fn spawn(&self, st: &mut State, w: usize) -> Result<()> {
        let slot = &self.channels.slots[w];
        slot.task.store(0, Ordering::Relaxed);
        slot.item.store(0, Ordering::Relaxed);
        slot.state.store(0, Ordering::Relaxed);
        // The worker's slot, the zygote's pid (its parent must be that), and
        // its number among the pool's workers (its name's).
        st.started = st.started.wrapping_add(1);
        let mut args = (w as u32).to_le_bytes().to_vec();
        args.extend_from_slice(&self.zygote.pid().to_le_bytes());
        args.extend_from_slice(&st.started.to_le_bytes());
        let child = self.zygote.spawn_shared("worker", &args)?;
        let worker = &mut st.workers[w];
        worker.pid = child.pid();
        worker.child = Some(child);
        worker.sent = 0;
        worker.running = None;
        worker.killed_for = None;
        worker.since = None;
        worker.ran = 0;
        // The watcher watches it too from now on. (Refused, say for the
        // system's limit of watches: the driver's looks at the workers see
        // its end, later.)
        if let Some(child) = &worker.child {
            let _ = self.deaths.set.add(
                child.sentinel(),
                EpollEvent::new(
                    EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT,
                    u64::from(child.pid()),
                ),
            );
        }
        Ok(())
    }

    /// Whether the watcher saw a worker end since the last driving round.
    #[cfg(test)]
    pub(crate) fn deaths_seen(&self) -> bool {
        self.deaths.seen.load(Ordering::Acquire)
    }

    /// The watcher thread: waits on every worker's pidfd at once (the set
    /// of [`Deaths`]), and when one becomes readable (the worker ended)
    /// tells the driver, which may be asleep on the answers: a flag, and a
    /// notice in the answers that wakes it. Each end is told once (each
    /// pidfd is in the set once-only); the thread ends with the pool.
    pub(crate) fn watcher(self: Arc<Self>) {
        // Its entry in the answer queue it tells deaths through, taken now,
        // as the background thread's are.
        let _ = self.channels.results[0].enter();
        let mut events = [EpollEvent::empty(); 16];
        loop {
            if self.lock().shutdown {
                return;
            }
            // A second at most, then a look at `shutdown` again.
            let n = match self
                .deaths
                .set
                .wait(&mut events, EpollTimeout::from(1_000u16))
            {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                // Its descriptor closed by other code in this process
                // (against Rust's I/O safety: a program that closes every
                // descriptor): the driver's periodic look at the workers
                // does without the watcher.
                Err(_) => return,
            };
            let mut ended = false;
            for event in &events[..n] {
                if event.data() == WAKE_EVENT {
                    let _ = self.deaths.wake.read();
                } else {
                    ended = true;
                }
            }
            if ended {
                self.deaths.seen.store(true, Ordering::Release);
                // Full: the driver has answers to take, and wakes anyway.
                let _ = self.channels.results[0].try_put_bytes(&DEATH_NOTICE);
            }
        }
    }

    /// How many more tasks worker `w` may be sent before it has all those it
    /// will run (`maxtasksperchild`, counting those it holds): a task sent
    /// past them would wait in its inbox for its replacement, while the
    /// other workers may be free.
    fn room_left(&self, w: &Worker) -> u64 {
        self.max_tasks
            .map_or(u64::MAX, |max| max.saturating_sub(w.ran + w.sent as u64))
    }

    /// A new job's number, and the state, locked. The owner is checked
    /// before the lock is taken: in a forked child (a closure that owned a
    /// copy of the pool) a parent's thread that held the lock at the fork
    /// holds it there for ever.
    pub(crate) fn new_job(&self, job: Job) -> Result<(MutexGuard<'_, State>, u64)> {
        if my_pid() != self.owner {
            return Err(Error::OtherProcess { owner: self.owner });
        }
        let mut st = self.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        let id = st.next_job;
        st.next_job += 1;
        st.jobs.insert(id, job);
        Ok((st, id))
    }

    /// Queues `task` for its job (whose count it adds to), and sends what fits.
    pub(crate) fn queue(&self, st: &mut State, task: Task) {
        if st.joined || st.terminated {
            // No worker will run it (an `imap` read on after `join` or
            // `terminate`): its job ends with what it has, and this error.
            if let Some(job) = st.jobs.get_mut(&task.job) {
                let why = if st.terminated {
                    Error::Terminated
                } else {
                    Error::Joined
                };
                job.aborted.get_or_insert_with(|| Box::new(why));
            }
            return;
        }
        if let Some(job) = st.jobs.get_mut(&task.job) {
            job.total += task.count as usize;
            if job.skips(&task) {
                job.answered += task.count as usize;
                return;
            }
        }
        if let Some(broken) = st.broken.clone() {
            fail_task(st, &task, || broken.error());
            return;
        }
        st.pending.push_back(task);
        if self.no_entry_here() {
            // It cannot send (see `NO_ENTRY`): the background thread does.
            self.nudge(st);
        } else {
            self.fill(st);
        }
    }

    /// Sends queued tasks to the workers with room in their inboxes (fewest
    /// outstanding first), under the state lock: a message is in a worker's
    /// inbox exactly when its task is in flight to that worker, so the inbox
    /// a death empties holds nothing sent later. A message too large for a slot
    /// streams, which waits for the worker to read it: it is queued in
    /// `streams` for the streamer thread (see [`Inner::streamer`]).
    pub(crate) fn fill(&self, st: &mut State) {
        // Inboxes that said full (up to 64 looked at).
        let mut refused = 0u64;
        // The task's measured time and as many as cover a short while of it
        // (see `Pace`), worked out again only for a task of another kind or
        // size.
        let mut pace_of: Option<((Target, u32), Option<u64>, usize)> = None;
        let mut cpu = None; // this thread's, read at the first choice
        while let Some(next) = st.pending.front() {
            let kind = (next.target, next.count);
            let (task_ns, limit) = match pace_of {
                Some((k, task_ns, limit)) if k == kind => (task_ns, limit),
                _ => {
                    let task_ns = st.pace.task_ns(kind.0, kind.1);
                    let limit = pace::in_flight_for(task_ns, self.depth);
                    pace_of = Some((kind, task_ns, limit));
                    (task_ns, limit)
                }
            };
            let open = |w: usize| {
                st.workers[w].child.is_some()
                    && st.workers[w].sent < limit
                    && self.room_left(&st.workers[w]) > 0
                    && (w >= 64 || refused & (1 << w) == 0)
            };
            // The worker with the fewest in flight; but while it would need
            // waking, or it is idle and shares its CPU with a worker that has
            // tasks, a short task goes to one that is awake on another CPU
            // and has little queued (see `WAKE_WORTH`), first one that shares
            // its CPU with no worker that has tasks (see `Inner::crowded`).
            let Some(fewest) = (0..st.workers.len())
                .filter(|&w| open(w))
                .min_by_key(|&w| st.workers[w].sent)
            else {
                return;
            };
            let here = *cpu.get_or_insert_with(colocation::this_cpu);
            let crowded = |w: usize| self.crowded(&st.workers, w);
            let w = if self.ready_elsewhere(fewest, here)
                && (st.workers[fewest].sent > 0 || !crowded(fewest))
            {
                fewest
            } else {
                task_ns
                    .and_then(|ns| {
                        (0..st.workers.len())
                            .filter(|&w| {
                                open(w)
                                    && self.ready_elsewhere(w, here)
                                    && (st.workers[w].sent as u64).saturating_mul(ns) < WAKE_WORTH
                            })
                            .min_by_key(|&w| (crowded(w), st.workers[w].sent))
                    })
                    .unwrap_or(fewest)
            };
            let mut task = st.pending.pop_front().expect("checked non-empty");
            task.number(st.next_seq, w);
            st.next_seq += 1;
            let inbox = &self.channels.inboxes[w];
            // An inbox the bookkeeping says has room but the queue finds full
            // holds a slot a dead worker claimed and never freed (killed inside
            // its get): a put that times out at once looks for the dead
            // claimer and frees the slot (a `try_put` never does).
            let put = match inbox.try_put_bytes(task.msg.bytes()) {
                Err(multiproc_queue::Error::Full) => {
                    inbox.put_bytes_timeout(task.msg.bytes(), Duration::ZERO)
                }
                other => other,
            };
            match put {
                Ok(()) => {}
                Err(multiproc_queue::Error::MessageTooLarge { .. }) => {
                    st.streams.push_back((w, task.seq, task.msg.shared()));
                    // Each streamer takes only its worker's streams.
                    self.streams_ready.notify_all();
                }
                // No entry free for this thread (it and others sent to the
                // worker, living on): the background thread sends from now.
                Err(e @ multiproc_queue::Error::TooManyParticipants(_)) => {
                    self.no_entry(st, &format!("worker slot {w}'s inbox"), &e);
                    st.pending.push_front(task);
                    return;
                }
                // Written over: nothing sent to it can be trusted to arrive.
                // The next driving round stops the pool (it has no place to
                // report the tasks that fail from here).
                Err(e) if corrupts(&e, st) => {
                    st.corrupted
                        .get_or_insert_with(|| format!("worker slot {w}'s inbox: {e}"));
                    st.pending.push_front(task);
                    return;
                }
                // Full (a stale stream landed after a death emptied it), or
                // closed (the pool ends): the task waits for another turn.
                Err(_) => {
                    st.pending.push_front(task);
                    if w < 64 {
                        refused |= 1 << w;
                        continue;
                    }
                    return;
                }
            }
            colocation::note(&self.channels.slots[w].driver_cpu, here);
            // (A load first: a store at every send would take the line from
            // the other driving thread each time.)
            let due = task_ns.is_some_and(|ns| ns < WAKE_WORTH);
            if self.answer_due.load(Ordering::Relaxed) != due {
                self.answer_due.store(due, Ordering::Relaxed);
            }
            let worker = &mut st.workers[w];
            // A task sent to an idle worker that takes it at once is timed
            // from here, while its function's measure is missing or says
            // slow (see `Pace`): tasks sent one at a time (an `imap`'s, a
            // blocking `apply`'s) get a measure, and a clock read a send
            // only until they have one that says short.
            if worker.sent == 0
                && task_ns.is_none_or(|ns| ns >= WAKE_WORTH)
                && self.ready_elsewhere(w, here)
            {
                worker.since = Some(Instant::now());
            }
            worker.sent += 1;
            // A worker with tasks queued behind the one it runs, and room
            // left in its inbox: the slot the next put fills is free (the
            // worker freed it a lap ago and holds its line) and nobody watches
            // it, so its line is asked for now rather than missed by that put
            // (a pipelined burst 3-7 % faster, `benches/NOTES.md`). Not for a
            // worker with one task or none, which is about to watch that slot.
            if worker.sent >= 2 && worker.sent < self.depth {
                inbox.ask_for_next_put();
            }
            st.inflight.insert(task.seq, task);
        }
    }

    /// Whether worker `w` would take a task at once: not asleep on its inbox
    /// (a put would have to wake it), and last seen waiting on a CPU other
    /// than `here`, this thread's (where it runs only once this thread
    /// yields). `here` 0: this thread's CPU is not known. Both looks are at
    /// words the worker writes in shared memory: hints, whatever their
    /// value, which only choose among the live workers that have room.
    fn ready_elsewhere(&self, w: usize, here: u64) -> bool {
        !self.channels.inboxes[w].consumers_asleep()
            && (here == 0 || self.channels.slots[w].cpu.load(Ordering::Relaxed) != here)
    }

    /// Whether another worker with tasks in flight last waited on the CPU
    /// worker `w` last waited on: the two could only take turns there, and a
    /// short task is better queued behind the other's (a hint, as in
    /// [`Inner::ready_elsewhere`]).
    fn crowded(&self, workers: &[Worker], w: usize) -> bool {
        let slots = &self.channels.slots;
        let cpu = slots[w].cpu.load(Ordering::Relaxed);
        cpu != 0
            && (workers.iter().zip(slots.iter()).enumerate()).any(|(v, (other, slot))| {
                v != w && other.sent > 0 && slot.cpu.load(Ordering::Relaxed) == cpu
            })
    }

    /// The streamer thread of worker `w` (one per worker): puts the large task
    /// messages `fill` queued for it into its inbox, one stream at a time. A
    /// stream waits for its worker to read it, so one thread for all the
    /// workers would keep every other worker's next chunk behind a busy
    /// worker's (a map of large chunks ran its two workers at 1.3 cores in
    /// all); and no thread that drives (or submits) may do this:
    /// a driver blocked on a busy worker would leave that worker's own large
    /// answer unread, and both would wait for good. A worker that dies while
    /// its stream waits is replaced by whoever drives, and the replacement
    /// takes the stream (its task, re-sent meanwhile under a new number, then
    /// runs twice; the stale answer is dropped).
    pub(crate) fn streamer(self: Arc<Self>, w: usize) {
        // Its entry in the inbox, taken now (see `background`).
        let _ = self.channels.inboxes[w].enter();
        loop {
            let msg = {
                let mut st = self.lock();
                loop {
                    if st.shutdown {
                        return;
                    }
                    let mine = st.streams.iter().position(|(to, _, _)| *to == w);
                    match mine.and_then(|i| st.streams.remove(i)) {
                        // Still in flight to that worker?
                        Some((_, seq, msg))
                            if st.inflight.get(&seq).is_some_and(|t| t.worker() == w) =>
                        {
                            break msg;
                        }
                        Some(_) => continue,
                        None => {
                            st = self
                                .streams_ready
                                .wait(st)
                                .unwrap_or_else(|e| e.into_inner());
                        }
                    }
                }
            };
            // Fails only when the pool ends (the inbox is closed).
            let _ = self.channels.inboxes[w].put_bytes(&msg);
            // The last holder of the bytes (the task was answered meanwhile)
            // gives the buffer back.
            if let Ok(bytes) = Arc::try_unwrap(msg) {
                spare::give(bytes);
            }
        }
    }

    /// Waits until `done(state)`, driving while it waits; `Err(Timeout)` past
    /// `deadline`. The caller has counted itself in `waiting`; this counts it out.
    pub(crate) fn wait_until<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        deadline: Option<Instant>,
        done: &dyn Fn(&State) -> bool,
    ) -> (MutexGuard<'a, State>, Result<()>) {
        let mut bystander = self.no_entry_here();
        let result = loop {
            if done(&st) {
                break Ok(());
            }
            if st.terminated || st.shutdown {
                break Ok(()); // the caller finds its job aborted
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break Err(Error::Timeout),
                },
                None => None,
            };
            let slice = left.map_or(CHECK_EVERY, |l| l.min(CHECK_EVERY));
            // A bystander's mark that has run out is dropped here too, so
            // that a long wait tries the queues again (see `ENTRY_RETRY`).
            if bystander {
                bystander = self.no_entry_here();
            }
            let driving = if bystander { None } else { self.try_drive() };
            // This thread drives already, further up its stack: a callback
            // (run by the driver) that calls its pool again. It drives from
            // here too, rather than wait for itself for ever.
            let nested = driving.is_none() && self.driven_here();
            match driving {
                Some(driving) => {
                    drop(st);
                    self.drive_once(slice, true);
                    drop(driving);
                    st = self.lock();
                    // Someone may be waiting for the driver's lock to be free.
                    if st.sleepers > 0 {
                        self.changed.notify_all();
                    }
                    // The round found no entry for this thread: from now on
                    // the background thread drives for it.
                    bystander = self.no_entry_here();
                }
                None if nested => {
                    drop(st);
                    // (Not counted as a caller's round: the round further up
                    // this stack counted itself, and on the background
                    // thread this one would hold that thread off itself.)
                    self.drive_once(slice, false);
                    st = self.lock();
                }
                None => {
                    st.sleepers += 1;
                    if bystander {
                        st.bystanders += 1;
                        self.nudge(&mut st);
                    }
                    st = self
                        .changed
                        .wait_timeout(st, slice)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    st.sleepers -= 1;
                    if bystander {
                        st.bystanders -= 1;
                    }
                }
            }
        };
        st.waiting -= 1;
        if outstanding(&st) {
            self.nudge(&mut st);
        }
        (st, result)
    }

    /// One round of the driver: waits up to `slice` for answers, files them,
    /// sends what fits, runs finished jobs' finishers; then looks at the
    /// workers. Called with the driver's lock held and the state's released;
    /// `by_caller`: not by the background thread (see
    /// [`CALLER_DRIVES_GRACE`]).
    pub(crate) fn drive_once(&self, slice: Duration, by_caller: bool) {
        // While a worker exits after its last task, its end is looked for
        // soon (the round's wait for answers does not see it).
        let slice = if self.max_tasks.is_some() && self.retiring.load(Ordering::Relaxed) > 0 {
            slice.min(RETIRE_LOOK)
        } else {
            slice
        };
        let mut answers = Batch::new();
        let mut failed = None;
        // A timeout (or a message lost to a dead worker) leaves the list empty:
        // the workers are looked at below.
        let watch = if self.answer_due.load(Ordering::Relaxed) {
            DUE_WATCH
        } else {
            Duration::ZERO
        };
        match receive(&self.channels, slice, watch) {
            Ok(Some(msg)) => {
                answers.push(msg);
                // (A look at the next slot first: an empty try costs
                // several times as much, see `receive`.)
                'batch: for results in &self.channels.results {
                    while answers.len() < 256 && results.has_message() {
                        match try_take_answer(results) {
                            Ok(msg) => answers.push(msg),
                            Err(e) => {
                                failed = Some(e);
                                break 'batch;
                            }
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
        let mut finished = Finished::new();
        {
            let mut st = self.lock();
            let idle = answers.is_empty();
            let now = Instant::now();
            if by_caller {
                st.caller_drove = now;
            }
            for msg in answers {
                file_answer(&mut st, msg, now, &mut finished);
            }
            if let Some(e) = failed {
                self.answers_failed(&mut st, &e);
            }
            // A worker that answered its last task (`maxtasksperchild`)
            // exits: it is looked for at every round until replaced, where a
            // look every CHECK_EVERY left each replacement a few ms late
            // (a pool of one task a worker ran 2.9 ms a task, Python's 1.8).
            let retiring = self.max_tasks.map_or(0, |max| {
                let n = (st.workers.iter())
                    .filter(|w| w.child.is_some() && w.ran >= max)
                    .count();
                self.retiring.store(n, Ordering::Relaxed);
                n
            });
            // (A load first: a swap at every round would take the line.)
            let ended = self.deaths.seen.load(Ordering::Relaxed)
                && self.deaths.seen.swap(false, Ordering::Acquire);
            // Looking costs a poll(2): on every idle round, when the watcher
            // saw a worker end, and every CHECK_EVERY while answers keep coming.
            if idle || ended || retiring > 0 || now.duration_since(st.last_check) >= CHECK_EVERY {
                st.last_check = now;
                self.check_workers(&mut st, &mut finished);
            }
            self.fill(&mut st);
            if let Some(what) = st.corrupted.take() {
                self.break_pool(&mut st, Broken::Corrupted(what), &mut finished);
            }
            if !finished.is_empty() && st.sleepers > 0 {
                self.changed.notify_all();
            }
            // Only jobs with a finisher need another look (and the lock again).
            finished.retain(|id| {
                st.jobs
                    .get(id)
                    .is_some_and(|j| matches!(j.finish, Finish::Pending(_)))
            });
        }
        if !finished.is_empty() {
            self.finish(&finished);
        }
    }

    /// Runs the finishers of `jobs` (outside the state lock) and signals waiters.
    pub(crate) fn finish(&self, jobs: &[u64]) {
        let mut any = false;
        for &id in jobs {
            let taken = {
                let mut st = self.lock();
                st.jobs.get_mut(&id).and_then(|job| {
                    match std::mem::replace(&mut job.finish, Finish::Running) {
                        Finish::Pending(f) => {
                            Some((f, std::mem::take(&mut job.gathered), job.total))
                        }
                        other => {
                            job.finish = other;
                            None
                        }
                    }
                })
            };
            if let Some((f, gathered, total)) = taken {
                let outcome = f(gathered, total);
                let mut st = self.lock();
                // Detached (or gone): nobody will take the outcome. It is
                // dropped after the lock, and its drop is the user's code (a
                // `Drop` that panics must not end this thread, which may be
                // the background thread).
                let forgotten = match st.jobs.get_mut(&id) {
                    Some(job) if !job.detached => {
                        job.finish = Finish::Done(outcome);
                        None
                    }
                    Some(_) => Some((st.jobs.remove(&id), outcome)),
                    None => Some((None, outcome)),
                };
                drop(st);
                crate::wire::drop_quietly(forgotten);
                any = true;
            }
        }
        if any {
            let st = self.lock();
            if st.sleepers > 0 {
                self.changed.notify_all();
            }
        }
    }

    /// Looks for workers that died (pidfd readable) and tasks past their
    /// timeout; handles both.
    fn check_workers(&self, st: &mut State, finished: &mut Finished) {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        use std::os::fd::{AsFd, AsRawFd};
        let mut fds = Vec::with_capacity(st.workers.len());
        let mut which = Vec::with_capacity(st.workers.len());
        for (w, worker) in st.workers.iter().enumerate() {
            if let Some(child) = &worker.child {
                fds.push(PollFd::new(child.sentinel(), PollFlags::POLLIN));
                which.push(w);
            }
        }
        if !fds.is_empty() && nix::poll::poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
            // A pidfd closed by other code in this process (against Rust's
            // I/O safety) says nothing of its worker, which may well run:
            // the pool cannot see its workers end any more, and stops
            // rather than take every worker for dead and replace it (or
            // fail every task with `InitializerFailed`, as it once did).
            let closed = (fds.iter().zip(&which))
                .find(|(fd, _)| {
                    fd.revents()
                        .is_some_and(|r| r.contains(PollFlags::POLLNVAL))
                })
                .map(|(fd, &w)| (w, fd.as_fd().as_raw_fd()));
            if let Some((w, fd)) = closed {
                drop(fds);
                let what = format!(
                    "worker slot {w}'s process descriptor (fd {fd}) was closed by other \
                     code in this process, so the pool cannot see its workers end"
                );
                self.break_pool(st, Broken::Corrupted(what), finished);
                return;
            }
            let dead: Vec<usize> = (fds.iter().zip(&which))
                .filter(|(fd, _)| fd.any().unwrap_or(false))
                .map(|(_, &w)| w)
                .collect();
            drop(fds);
            for w in dead {
                self.worker_died(st, w, finished);
            }
        }
        if let Some(limit) = self.task_timeout {
            self.check_timeouts(st, limit);
        }
    }

    /// Kills the workers whose current item has run past `limit`.
    fn check_timeouts(&self, st: &mut State, limit: Duration) {
        let now = Instant::now();
        for (w, worker) in st.workers.iter_mut().enumerate() {
            let slot = &self.channels.slots[w];
            let at = (
                slot.task.load(Ordering::Acquire),
                slot.item.load(Ordering::Relaxed),
            );
            if at.0 == 0 || worker.child.is_none() {
                worker.running = None;
                continue;
            }
            match worker.running {
                Some((was, since)) if was == at => {
                    if now.duration_since(since) > limit && worker.killed_for.is_none() {
                        worker.killed_for = Some(at.0);
                        if let Some(child) = &worker.child {
                            let _ = child.kill();
                        }
                    }
                }
                _ => worker.running = Some((at, now)),
            }
        }
    }

    /// Worker `w` has ended: attributes its task, re-queues the rest, replaces it.
    fn worker_died(&self, st: &mut State, w: usize, finished: &mut Finished) {
        // Every answer it published before it died is filed first. A queue
        // that fails its checks here stops the pool now, as it would at the
        // next driving round, before the slot (likely written over with it)
        // is read for the task the worker died in.
        loop {
            match try_take_answer(self.channels.answers_of(w)) {
                Ok(msg) => file_answer(st, msg, Instant::now(), finished),
                Err(e) => {
                    note_answers_failed(st, &e);
                    break;
                }
            }
        }
        if let Some(what) = st.corrupted.take() {
            self.break_pool(st, Broken::Corrupted(what), finished);
        }
        let Some(mut child) = st.workers[w].child.take() else {
            return;
        };
        let pid = st.workers[w].pid;
        let how = match child.join() {
            Ok(code) => Exit::of_exitcode(code),
            Err(_) => Exit::Signal(libc::SIGKILL),
        };
        // Out of the watcher's set now: a pidfd closed while a copy lives
        // on (in a process the caller forked meanwhile) would stay in it,
        // one entry a worker ever started.
        let _ = self.deaths.set.delete(child.sentinel());
        drop(child);
        // A worker that found its queues written over, or whose inbox reads
        // as closed while the pool still runs (no replacement could take a
        // task from it): the pool stops.
        let inbox = &self.channels.inboxes[w];
        if how == Exit::Code(EXIT_CORRUPTED) || (inbox.is_closed() && !stopping(st)) {
            let what = if how == Exit::Code(EXIT_CORRUPTED) {
                format!("worker {pid} found its queues written over")
            } else {
                format!("worker slot {w}'s inbox reads as closed")
            };
            self.break_pool(st, Broken::Corrupted(what), finished);
        }
        let slot = &self.channels.slots[w];
        let running = slot.task.load(Ordering::Acquire);
        let item = slot.item.load(Ordering::Acquire) as usize;
        let ready = slot.state.load(Ordering::Acquire) == READY;
        let killed_for = st.workers[w].killed_for;
        // Its unanswered tasks, oldest first.
        let mut mine: Vec<u64> = st
            .inflight
            .iter()
            .filter(|(_, t)| t.worker() == w)
            .map(|(s, _)| s)
            .collect();
        mine.sort_unstable();
        let mut requeue = Vec::new();
        for seq in mine {
            let task = st.inflight.remove(&seq).expect("listed above");
            if seq == running && item < task.count as usize {
                let error = if killed_for == Some(seq) {
                    Error::TimedOut {
                        pid,
                        limit: self.task_timeout.unwrap_or_default(),
                    }
                } else {
                    Error::WorkerDied { pid, how }
                };
                fail_item(st, task.job, task.first + item, error, finished);
                if item > 0 {
                    requeue.push(task.sub(0..item));
                }
                if item + 1 < task.count as usize {
                    requeue.push(task.sub(item + 1..task.count as usize));
                }
            } else {
                requeue.push(task);
            }
        }
        for task in requeue.into_iter().rev() {
            st.pending.push_front(task);
        }
        skip_above_failures(st, finished);
        st.workers[w].sent = 0;
        st.workers[w].since = None;
        // What it never took stays in its inbox: it was re-queued above.
        while self.channels.inboxes[w].try_get_bytes().is_ok() {}
        if ready {
            st.init_deaths = 0;
        } else {
            st.init_deaths += 1;
            if st.init_deaths >= MAX_INIT_DEATHS {
                let deaths = st.init_deaths;
                self.break_pool(st, Broken::Initializer { deaths, last: how }, finished);
                return;
            }
        }
        if st.terminated || st.shutdown || st.broken.is_some() {
            return;
        }
        if let Err(e) = self.spawn(st, w) {
            // The zygote is gone, or cannot fork: nothing is replaced any more.
            self.break_pool(st, Broken::Replacement(e.to_string()), finished);
        }
    }

    /// The pool stops for good (see [`Broken`]): fails everything queued and
    /// sent, and stops the remaining workers (none is replaced from now on).
    fn break_pool(&self, st: &mut State, why: Broken, finished: &mut Finished) {
        // The first reason stands (a second worker may find the same harm).
        let why = st.broken.get_or_insert(why).clone();
        let tasks: Vec<Task> = st
            .pending
            .drain(..)
            .chain(st.inflight.drain().map(|(_, t)| t))
            .collect();
        for task in &tasks {
            fail_task(st, task, || why.error());
            finished.push(task.job);
        }
        st.streams.clear();
        for worker in &mut st.workers {
            if let Some(child) = &worker.child {
                let _ = child.kill();
            }
        }
    }

    /// Ends every worker at once and fails what has not answered with
    /// `Terminated` (Python's `terminate`).
    pub(crate) fn terminate(&self) {
        let children: Vec<ServerChild<'static>> = {
            let mut st = self.lock();
            st.closed = true;
            st.terminated = true;
            st.pending.clear();
            st.inflight.clear();
            st.streams.clear();
            // A detached job cut short: no callback runs for it now, and no
            // handle will ask.
            let gone: Vec<u64> = (st.jobs.iter())
                .filter(|(_, job)| job.detached && !job.complete())
                .map(|(id, _)| id)
                .collect();
            for id in &gone {
                st.jobs.remove(id);
            }
            for job in st.jobs.values_mut() {
                if !job.complete() {
                    job.aborted = Some(Box::new(Error::Terminated));
                }
            }
            take_children(&mut st)
        };
        self.stop_workers(children, Some(Instant::now()));
        self.changed.notify_all();
    }

    /// Closes the inboxes (a worker exits when it finds its own closed and
    /// empty), waits for `children` until `deadline`, then kills and reaps
    /// what is left.
    fn stop_workers(&self, children: Vec<ServerChild<'static>>, deadline: Option<Instant>) {
        for inbox in &self.channels.inboxes {
            inbox.close();
        }
        for mut child in children {
            let _ = match deadline {
                Some(d) => child.join_timeout(d.saturating_duration_since(Instant::now())),
                None => child.join(),
            };
            let _ = child.kill();
            let _ = child.join();
        }
    }

    /// Waits until every job is complete, then lets the workers finish and
    /// joins them (Python's `close` then `join`).
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<()> {
        let mut st = self.lock();
        st.waiting += 1;
        let (st, r) = self.wait_until(st, deadline, &|st| st.terminated || !outstanding(st));
        r?;
        let mut st = st;
        st.joined = true;
        let children = take_children(&mut st);
        drop(st);
        self.stop_workers(children, deadline);
        Ok(())
    }

    /// The background thread: drives while work is outstanding and nobody
    /// waits (nor drove in the last [`CALLER_DRIVES_GRACE`]); otherwise looks
    /// at the workers every so often.
    pub(crate) fn background(self: Arc<Self>) {
        BACKGROUND.with(|b| b.set(true));
        // This thread's entry in each queue, taken now: however many
        // threads call the pool later, one can read the answers and send
        // the tasks.
        for q in self.channels.results.iter().chain(&self.channels.inboxes) {
            let _ = q.enter();
        }
        // Idle looks in a row (see `IDLE_LOOKS_BEFORE_TRIM`).
        let mut idle_looks = 0u32;
        loop {
            let mut st = self.lock();
            if st.shutdown {
                return;
            }
            if st.waiting == st.bystanders && outstanding(&st) {
                idle_looks = 0;
                // A caller drives, or did a moment ago: left to it a while.
                // (Not counted asleep: a submission does not wake this wait.)
                let since = st.caller_drove.elapsed();
                if since < CALLER_DRIVES_GRACE {
                    drop(self.idle.wait_timeout(st, CALLER_DRIVES_GRACE - since));
                    continue;
                }
                drop(st);
                if let Some(driving) = self.try_drive() {
                    self.drive_once(CHECK_EVERY * 4, false);
                    drop(driving);
                    let st = self.lock();
                    if st.sleepers > 0 {
                        self.changed.notify_all();
                    }
                }
                continue;
            }
            st.bg_asleep = true;
            st = self
                .idle
                .wait_timeout(st, IDLE_LOOK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.bg_asleep = false;
            if st.waiting == st.bystanders && !outstanding(&st) {
                idle_looks += 1;
                if idle_looks == IDLE_LOOKS_BEFORE_TRIM {
                    st.trim();
                }
            } else {
                idle_looks = 0;
            }
            // Idle: replace workers that died meanwhile.
            if st.waiting == st.bystanders && !st.terminated && !st.shutdown {
                if let Some(driving) = self.try_drive() {
                    let mut finished = Finished::new();
                    self.check_workers(&mut st, &mut finished);
                    self.fill(&mut st);
                    drop(st);
                    self.finish(&finished);
                    drop(driving);
                }
            }
        }
    }

    /// The driver's lock, if free, marked as held by this thread (see
    /// [`Driving`]).
    fn try_drive(&self) -> Option<Driving<'_>> {
        let guard = self.driver.try_lock().ok()?;
        let pool = self as *const Inner as usize;
        let outer = DRIVING.with(|d| d.replace(pool));
        Some(Driving {
            _guard: guard,
            outer,
        })
    }

    /// Whether this thread found no entry free for it in one of this pool's
    /// queues less than [`ENTRY_RETRY`] ago ([`NO_ENTRY`]). A mark that old
    /// is dropped: the thread tries the queues again, and marks itself again
    /// if they are still full.
    pub(crate) fn no_entry_here(&self) -> bool {
        NO_ENTRY.with_borrow_mut(|pools| {
            if pools.is_empty() {
                return false;
            }
            let Some(at) = pools.iter().position(|&(id, _)| id == self.id) else {
                return false;
            };
            if pools[at].1.elapsed() < ENTRY_RETRY {
                return true;
            }
            pools.swap_remove(at);
            false
        })
    }

    /// Whether this thread has a mark for this pool in [`NO_ENTRY`], run
    /// out or not (for the tests: [`Inner::no_entry_here`] drops one that
    /// ran out).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn no_entry_marked_here(&self) -> bool {
        NO_ENTRY.with_borrow(|pools| pools.iter().any(|&(id, _)| id == self.id))
    }

    /// Notes `e`, from reading the answer queues on this thread: no entry
    /// free is this thread's to live with ([`NO_ENTRY`]), except on the
    /// background thread, which took its entries at the start (lost, they
    /// were written over); else see [`note_answers_failed`].
    fn answers_failed(&self, st: &mut State, e: &multiproc_queue::Error) {
        if matches!(e, multiproc_queue::Error::TooManyParticipants(_)) {
            self.no_entry(st, "the workers' answer queue", e);
        } else {
            note_answers_failed(st, e);
        }
    }

    /// This thread found no entry free in `queue` (`e`): it marks itself a
    /// bystander of this pool ([`NO_ENTRY`]); on the background thread,
    /// whose entries were taken at its start, the queue was written over.
    fn no_entry(&self, st: &mut State, queue: &str, e: &multiproc_queue::Error) {
        if BACKGROUND.with(|b| b.get()) {
            st.corrupted.get_or_insert_with(|| {
                format!("{queue}: the pool's own entry in it is gone ({e})")
            });
        } else {
            NO_ENTRY.with_borrow_mut(|pools| {
                // Marks of pools that are gone, and old ones, go with it.
                pools.retain(|&(id, at)| id != self.id && at.elapsed() < ENTRY_RETRY);
                pools.push((self.id, Instant::now()));
            });
        }
    }

    /// Whether this thread holds this pool's driver's lock.
    fn driven_here(&self) -> bool {
        DRIVING.with(|d| d.get() == self as *const Inner as usize)
    }

    /// Wakes the background thread if work came while it sleeps and nobody
    /// waits. Once a sleep: the flag is cleared here, not only when the thread
    /// runs again, so the submissions made before it runs do not each pay a
    /// wake (`std`'s `notify_one` is a futex call even with nobody asleep;
    /// one a task made a pipelined `apply_async` on a pool of one worker a
    /// third slower, `benches/NOTES.md`).
    pub(crate) fn nudge(&self, st: &mut State) {
        if st.bg_asleep && st.waiting == st.bystanders {
            st.bg_asleep = false;
            self.idle.notify_one();
        }
    }

    /// Ends and reaps the zygote, which dies anyway with the background
    /// thread that forked it (its parent-death signal): a result handle that
    /// outlives the pool keeps this state, and would keep a zombie with it.
    pub(crate) fn end_zygote(&self) {
        self.zygote.shut_down();
    }

    /// Stops the background thread (it exits at its next look).
    pub(crate) fn shut_down(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        drop(st);
        let _ = self.deaths.wake.write(1);
        self.idle.notify_all();
        self.changed.notify_all();
        self.streams_ready.notify_all();
    }

    /// Cancels the job's tasks that no worker has been sent; `true` if the
    /// whole job was still unsent (it then fails with `Cancelled`).
    pub(crate) fn cancel(&self, job: u64) -> bool {
        let mut st = self.lock();
        if st.inflight.values().any(|t| t.job == job) {
            return false;
        }
        let before = st.pending.len();
        st.pending.retain(|t| t.job != job);
        let removed = before != st.pending.len();
        match st.jobs.get_mut(&job) {
            Some(j) if removed && j.answered == 0 => {
                j.aborted = Some(Box::new(Error::Cancelled));
                true
            }
            _ => false,
        }
    }

    /// Forgets job `job`: its queued tasks are dropped, and its answers, if
    /// they still come, are dropped on arrival.
    pub(crate) fn abandon(&self, job: u64) {
        let mut st = self.lock();
        st.pending.retain(|t| t.job != job);
        st.jobs.remove(&job);
    }

    /// The pids of the running workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let st = self.lock();
        st.workers
            .iter()
            .filter(|w| w.child.is_some())
            .map(|w| w.pid)
            .collect()
    }
}

/// This process's id, with no system call after the first (`getpid` was a
/// tenth of a blocking `apply`'s time in the caller): cached, and forgotten in
/// a forked child by a fork handler that makes one atomic store.
pub(crate) fn my_pid() -> u32 {
    static PID: AtomicU32 = AtomicU32::new(0);
    static HANDLER: std::sync::Once = std::sync::Once::new();
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    HANDLER.call_once(|| {
        extern "C" fn forget() {
            PID.store(0, Ordering::Relaxed);
        }
        // SAFETY: the handler is a plain function with static lifetime that
        // makes one atomic store (async-signal-safe, as a fork child needs).
        unsafe { libc::pthread_atfork(None, None, Some(forget)) };
    });
    let pid = std::process::id();
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// Tries before the driver sleeps on the result queue: a hand-off by spinning
/// costs a fraction of a microsecond, by sleeping tens (`benches/NOTES.md`).
const SPINS: u32 = 200;

/// How much longer a driver looks for answers before it sleeps when one is
/// due within microseconds (the last task sent was of a function measured
/// short, see [`Inner::answer_due`]): about what a sleep and its wake-up
/// cost where they cost most (a futex round trip took 38-41 µs on an AMD
/// EPYC VM, 7-8 on an Intel one), so that a caller that takes results in
/// windows (submits a few dozen tasks, then waits for them) does not sleep
/// at each window's tail while its workers, left without tasks, go to sleep
/// too (`benches/NOTES.md`).
const DUE_WATCH: Duration = Duration::from_micros(40);

/// Looks at the answer queues between two clock reads while a driver
/// watches for [`DUE_WATCH`].
const WATCH_LOOKS: u32 = 32;

/// The next answer, waiting at most `slice` for one to arrive: spin on
/// `try_get_bytes` (which, once it takes a large answer's announcement,
/// receives the whole stream, however long it takes) — for `watch` more
/// when an answer is due soon (see [`DUE_WATCH`]) — or yield if the
/// workers share this CPU, then sleep until one is there, then take it.
/// (`get_bytes_timeout` would give up on a large answer whose worker stalls
/// for a check interval past the slice: a worker may be descheduled that
/// long on a loaded machine, and the answer would be lost.)
fn receive(
    ch: &Channels,
    slice: Duration,
    watch: Duration,
) -> multiproc_queue::Result<Option<Answer>> {
    // An answer if one is there, in any of the answer queues (`Some(Err)`: a
    // ring failed). A look at the slot each ring's next get takes first: an
    // empty try goes through the queue's general path (its end checks, its
    // scratch buffer), several times as long, and an answer that lands
    // meanwhile waits; and a look at the ring's positions (`empty`) would
    // take, at every spin, the line of the position that the workers claim
    // by compare-and-swap when they answer (a blocking `apply` took 0.78-0.84
    // µs with that look, 0.60-0.63 without, `benches/NOTES.md`).
    let look = || -> Option<multiproc_queue::Result<Option<Answer>>> {
        for results in &ch.results {
            if !results.has_message() {
                continue;
            }
            match try_take_answer(results) {
                Ok(msg) => return Some(Ok(Some(msg))),
                Err(multiproc_queue::Error::Empty) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        None
    };
    // Whether the spin ran out on a CPU of its own (not given up for
    // yields to workers on this one).
    let mut spun_out = true;
    for i in 0..SPINS {
        if let Some(answer) = look() {
            return answer;
        }
        // Past a round trip's worth, a look at where the workers run: when
        // they share this thread's CPU, spinning only holds them off
        // (`colocation`); a yield runs them.
        if i == colocation::EARLY_SPINS && colocation::shares_cpu(ch, colocation::this_cpu()) {
            let until = Instant::now() + slice;
            for _ in 0..colocation::SHARED_YIELDS {
                // Past a yield that ran a busy task for a slice, the poll
                // below sleeps until an answer comes instead.
                if !try_yield() {
                    break;
                }
                if let Some(answer) = look() {
                    return answer;
                }
                if Instant::now() >= until {
                    return Ok(None);
                }
            }
            spun_out = false;
            break;
        }
        std::hint::spin_loop();
    }
    if spun_out && !watch.is_zero() {
        // An answer due soon: watched on rather than slept for (see
        // `DUE_WATCH`).
        let until = Instant::now() + watch.min(slice);
        loop {
            for _ in 0..WATCH_LOOKS {
                if let Some(answer) = look() {
                    return answer;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                break;
            }
        }
    }
    let ready = match ch.results.as_slice() {
        [results] => results.poll_timeout(slice),
        all => {
            let all: Vec<&dyn multiproc_queue::Waitable> = all
                .iter()
                .map(|q| q as &dyn multiproc_queue::Waitable)
                .collect();
            multiproc_queue::wait_timeout(&all, slice).map(|ready| !ready.is_empty())
        }
    };
    match ready {
        Ok(true) => look().unwrap_or(Ok(None)),
        Ok(false) | Err(multiproc_queue::Error::Timeout) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `try_get_bytes`, received into a buffer this thread keeps: a small answer
/// is copied out to a `Vec` of its size, a large one keeps the buffer (a
/// spare one, if there is, takes its place; it goes back to the spares at the
/// next small answer, so that a thread holds no large buffer between maps).
fn try_take_answer(results: &multiproc_queue::ByteQueue) -> multiproc_queue::Result<Answer> {
    thread_local! {
        static RX: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    RX.with_borrow_mut(|rx| {
        let n = results.try_get_bytes_into(rx)?;
        if n <= ANSWER_INLINE {
            let mut buf = [0; ANSWER_INLINE];
            buf[..n].copy_from_slice(&rx[..n]);
            return Ok(Answer::Inline { len: n as u8, buf });
        }
        Ok(Answer::Heap(if n < spare::MIN {
            let msg = rx[..n].to_vec();
            if rx.capacity() >= spare::MIN {
                spare::give(std::mem::take(rx));
            }
            msg
        } else {
            std::mem::replace(rx, spare::take())
        }))
    })
}

/// The workers' handles, taken out of the state (no more replacing them).
fn take_children(st: &mut State) -> Vec<ServerChild<'static>> {
    st.workers
        .iter_mut()
        .filter_map(|w| w.child.take())
        .collect()
}

/// Why a pool stopped for good: every task not answered fails with its
/// error, and so does every task submitted after.
#[derive(Clone)]
enum Broken {
    /// Workers kept dying before their first task (or could not be started).
    Initializer { deaths: u32, last: Exit },
    /// The shared memory was written over where this says.
    Corrupted(String),
    /// A worker could not be replaced: why.
    Replacement(String),
}

impl Broken {
    fn error(&self) -> Error {
        match self {
            Broken::Initializer { deaths, last } => Error::InitializerFailed {
                deaths: *deaths,
                last: *last,
            },
            Broken::Corrupted(what) => Error::Corrupted { what: what.clone() },
            Broken::Replacement(why) => Error::ReplacementFailed { why: why.clone() },
        }
    }
}

/// Whether the pool is ending its workers itself (so closed inboxes are its own).
fn stopping(st: &State) -> bool {
    st.joined || st.terminated || st.shutdown
}

/// Whether `e`, from one of the pool's queues, says its memory was written
/// over: a check of the queue failed, or it reads as closed while the pool,
/// the only one that closes them, has not.
fn corrupts(e: &multiproc_queue::Error, st: &State) -> bool {
    match e {
        multiproc_queue::Error::Corrupted(_) => true,
        multiproc_queue::Error::Closed => !stopping(st),
        _ => false,
    }
}

/// Notes `e`, from reading the workers' answer queue, for the driving round
/// to stop the pool if it says the queue was written over (see [`corrupts`]).
fn note_answers_failed(st: &mut State, e: &multiproc_queue::Error) {
    if corrupts(e, st) {
        st.corrupted
            .get_or_insert_with(|| format!("the workers' answer queue: {e}"));
    }
}

/// Whether any task is queued or sent.
pub(crate) fn outstanding(st: &State) -> bool {
    !st.pending.is_empty() || !st.inflight.is_empty()
}

/// Files one answer under its job; notes the job in `finished` if complete.
/// `now` is the driver's round's time: the task is timed by it (see
/// [`Pace`]).
fn file_answer(st: &mut State, msg: Answer, now: Instant, finished: &mut Finished) {
    let Some((seq, _, _)) = wire::read_answer(msg.bytes()) else {
        return; // not an answer: a peer's garbage
    };
    // An answer for a task no longer in flight (re-sent after a death, or
    // terminated) is dropped: each item gets one outcome.
    // Read where it lies, then dropped there: moving a task record out of
    // the table copied all of it (128 bytes) for five fields.
    let Some(task) = st.inflight.get(&seq) else {
        return;
    };
    let (job, first, count, target, w) =
        (task.job, task.first, task.count, task.target, task.worker());
    st.inflight.forget(&seq);
    if let Some(w) = st.workers.get_mut(w) {
        if let Some(since) = w.since {
            st.pace
                .record(target, now.saturating_duration_since(since), count);
        }
        w.sent = w.sent.saturating_sub(1);
        w.ran += 1;
        // Its next task (if it holds one) starts now, as far as is known.
        w.since = (w.sent > 0).then_some(now);
    }
    if let Some(j) = st.jobs.get_mut(&job) {
        j.answered += count as usize;
        j.gathered.parts.push(Part { first, count, msg });
        if j.complete() {
            finished.push(job);
        }
    }
}

/// Records item `index` of `job` as failed.
fn fail_item(st: &mut State, job: u64, index: usize, error: Error, finished: &mut Finished) {
    if let Some(j) = st.jobs.get_mut(&job) {
        j.answered += 1;
        if j.fail_fast {
            j.run_below = j.run_below.min(index);
        }
        j.gathered.failed.push((index, error));
        if j.complete() {
            finished.push(job);
        }
    }
}

/// Drops the queued tasks that their fail-fast jobs need no longer run (see
/// [`Job::fail_fast`]), counting their items as answered.
fn skip_above_failures(st: &mut State, finished: &mut Finished) {
    let State { pending, jobs, .. } = st;
    pending.retain(|task| {
        let Some(j) = jobs.get_mut(&task.job).filter(|j| j.skips(task)) else {
            return true;
        };
        j.answered += task.count as usize;
        if j.complete() && !finished.contains(&task.job) {
            finished.push(task.job);
        }
        false
    });
}

/// Records every item of `task` as failed with `error()`.
fn fail_task(st: &mut State, task: &Task, error: impl Fn() -> Error) {
    if let Some(j) = st.jobs.get_mut(&task.job) {
        for i in 0..task.count as usize {
            j.answered += 1;
            j.gathered.failed.push((task.first + i, error()));
        }
    }
}
