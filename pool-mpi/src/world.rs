//! The MPI backend: [`init`] and its protocol. The serving ranks' loop is
//! in `rank.rs`; on rank 0, [`MpiPool`] is in `pool.rs`, its books in
//! `hub.rs`, the thread that receives the ranks' answers in `receiver.rs`,
//! and the handles its calls return in `handles.rs`.
//!
//! # Protocol
//! | who | does |
//! |---|---|
//! | every rank | `MPI_Init_thread(MULTIPLE)` in [`init`] |
//! | rank k > 0 | makes its local [`Pool`], sends [`HELLO`](wire::HELLO), then receives tasks until [`STOP`](wire::STOP); each message's tasks go to the local pool at once (single items in a row for one function as one local job), and the local pool's callback sends their answers (together when they fit 64 KiB; one over 64 KiB through an answering thread); then `MPI_Finalize` and exit |
//! | rank 0 | receives every hello (refusing another build), returns the [`MpiPool`]; a thread receives answers (a caller waiting for a result receives them meanwhile); chunks go to the least loaded rank, at most [`DEPTH`] per local process in flight on each (more while they are small: [`ITEMS_AHEAD`] a process, twice as many each time a rank runs out, up to [`MOST_AHEAD`]), those ready together in one message; a task for a rank that is busy, while the receiver thread (or a caller waiting for a result) looks for messages, is left for it to send with the next ones |
//! | rank 0, drop | `STOP` to every rank (join: after the last answer; terminate: at once), `MPI_Finalize` |
//!
//! # Waiting
//! MPI's blocking receive spins a core. On a machine whose cores run the
//! workers, both sides look for messages with `MPI_Improbe` and back off:
//! yielding (never spinning without it) for [`HOT`] after the last message,
//! then sleeping longer and longer, up to [`MAX_NAP`] (yielding rather than
//! sleeping early: a thread woken on an idle core of a virtual machine can
//! take tens of microseconds to run, `benches/NOTES.md`). Rank 0's receiver
//! sleeps on a condition variable while nothing is in flight. A caller
//! waiting for a result receives the answers itself for [`WATCH`]
//! (yielding when none has come) before it sleeps, as a local pool's caller
//! drives it, and the receiver thread stands back meanwhile (it took turns
//! with the caller at MPI's probe, on the CPUs the ranks need;
//! `benches/NOTES.md`): so a callback runs on whichever of the two filed its
//! answer. Tasks and answers are posted without waiting for the receiving
//! rank (`posted`): a blocking send between ranks of one machine spins until
//! that rank's poller runs, which can be milliseconds while its workers
//! fill the cores.

use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use multiproc_pool::{Error, Pool, Result};

use crate::pool::MpiPool;
use crate::rank::serve_rank;
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

/// How long a caller waiting for a result receives answers itself before
/// it sleeps.
pub(crate) const WATCH: Duration = Duration::from_micros(100);

/// How long a rank waits at its end for the messages it posted to be
/// taken (see `posted`).
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How long rank 0 waits for every rank's hello.
const HELLO_LIMIT: Duration = Duration::from_secs(120);

/// Starts MPI and, on every rank but 0, serves tasks in a local pool of this
/// machine's cores until rank 0 is done, then exits the process. On rank 0,
/// returns the pool over the other ranks. Call it first in `main`, before
/// anything whose effects the serving ranks must not repeat.
///
/// # Errors
/// On rank 0: [`Error::Rank`] when MPI was started already, lacks
/// `MPI_THREAD_MULTIPLE`, runs on one rank only, a rank runs another build
/// or could not make its pool, or rank 0 could not start the thread that
/// receives the ranks' answers (every rank is stopped then).
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
    MpiPool::start(universe, ranks)
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
            return bad(problem);
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

pub(crate) fn stop_all(world: &SimpleCommunicator, size: usize, how: u8) {
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
pub(crate) struct Napper {
    since: Instant,
    pub(crate) sleep: Duration,
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
    pub(crate) fn nap(&mut self) {
        // While hot, a yield, whatever the last one cost. A yield that ran
        // another task for a slice turns a local pool's yields into sleeps
        // for a while (`multiproc_sync::futex::try_yield`), and this
        // poller's did the same at first; but on one machine the
        // tasks a rank's poller yields to are mostly the job's own (the
        // other rank's, the local pools'), and each nap cost tens to
        // hundreds of microseconds before the next look: pipelined tasks
        // over two ranks in windows of 64 took 6.2-8.9 µs a task with the
        // naps, 2.5-4.4 with the yields, and beside a busy process 17-21
        // against 5.6-8.7 (`benches/NOTES.md`).
        if self.since.elapsed() < HOT {
            std::thread::yield_now();
            return;
        }
        self.sleep = (self.sleep * 2).clamp(Duration::from_micros(10), MAX_NAP);
        std::thread::sleep(self.sleep);
    }

    /// Still yielding: a message now is seen within microseconds.
    pub(crate) fn hot(&self) -> bool {
        self.since.elapsed() < HOT
    }

    pub(crate) fn reset(&mut self) {
        self.since = Instant::now();
        self.sleep = Duration::ZERO;
    }
}

/// The CPUs this process may run on and those its parent (the launcher's
/// process: mpirun's daemon, Slurm's step) may, when this process has fewer:
/// it was bound at launch, and a pool made here (`init()`'s is as large as
/// the CPUs it may use) runs every worker on them. A container's own limit
/// binds the launcher too, so it does not count.
pub(crate) fn bound_at_launch() -> Option<(usize, usize)> {
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

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
