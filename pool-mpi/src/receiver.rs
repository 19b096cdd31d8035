//! Rank 0's receiver thread: takes the ranks' answers and files them
//! under their jobs, and notices a rank that died. A caller waiting for a
//! result takes and files answers too ([`receive_here`]); the thread stands
//! back while one does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpi::point_to_point::{MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use multiproc_pool::Error;

use crate::hub::{
    abort_all, dispatch, forget_unsent_above, run_finisher, send_all, take_finisher, Aborted,
    Finisher, Gathered, Hub, State,
};
use crate::posted;
use crate::wire;
use crate::world::{host_name, Napper, RankInfo};

/// The receiver thread: files answers, sends what waits, watches the ranks
/// on this host.
pub(crate) fn receive_answers(hub: Arc<Hub>, ranks: &[RankInfo]) {
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
    pub(crate) hub: Arc<Hub>,
    pub(crate) world: SimpleCommunicator,
    pub(crate) here: String,
    pub(crate) watch: Vec<(usize, std::os::fd::OwnedFd, u32)>,
    pub(crate) nap: std::cell::RefCell<Napper>,
    last_watch: std::cell::Cell<Instant>,
}

impl Receiver {
    pub(crate) fn new(hub: Arc<Hub>, ranks: &[RankInfo]) -> Receiver {
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
        // A caller that waits receives the answers itself (see
        // [`receive_here`]): this thread stands back meanwhile, and tasks
        // left for it to send are the caller's to send.
        let driven = hub.caller_drives();
        let hot = driven || self.nap.borrow().hot();
        hub.hot.store(hot, std::sync::atomic::Ordering::Relaxed);
        send_deferred(hub);
        if !driven {
            if let Some((rank, msg)) = take_answer(&self.world) {
                self.nap.borrow_mut().reset();
                // Runs the finishers of the jobs it completes (callbacks).
                file_answers(hub, rank, msg);
                return true;
            }
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
        if driven {
            // Off the CPU while the caller receives; hot again when it
            // stops (answers are in flight).
            self.nap.borrow_mut().reset();
            std::thread::sleep(STAND_BACK);
        } else {
            self.nap.borrow_mut().nap();
        }
        true
    }
}

/// The receiver thread's sleep between two looks at whether a caller still
/// receives (the timer's slack makes it about 100 µs here).
const STAND_BACK: Duration = Duration::from_micros(50);

/// Sends the tasks left for whoever looks for messages (`State::deferred`).
fn send_deferred(hub: &Hub) {
    if hub
        .has_deferred
        .swap(false, std::sync::atomic::Ordering::Acquire)
    {
        let sends = std::mem::take(&mut hub.lock().deferred);
        send_all(sends);
    }
}

/// One look for answers by a caller that waits for a result, as the local
/// pool's callers drive it: sends the tasks left for the receiver thread,
/// takes one answer message if one has come, and files it, running the
/// finishers it completes (callbacks included) on this thread. `false` when
/// there was none, or when callers may no longer call MPI (the pool ends).
/// The receiver thread stands back for [`DROVE`](crate::hub::DROVE) after a
/// caller's last look (it took turns with the caller at MPI's probe, on the
/// CPUs the ranks' pollers and workers need; `benches/NOTES.md`).
pub(crate) fn receive_here(hub: &Hub) -> bool {
    let (rank, msg) = {
        // Held only for the MPI calls: a callback run below may end the pool,
        // whose end takes this lock to write.
        let Ok(open) = hub.callers_receive.try_read() else {
            return false;
        };
        if !*open || hub.finalized.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        hub.note_drove();
        posted::complete();
        send_deferred(hub);
        let Some(answer) = take_answer(&SimpleCommunicator::world()) else {
            return false;
        };
        answer
    };
    file_answers(hub, rank, msg);
    true
}

/// One answer message from any rank, if one has come: its sender and bytes.
fn take_answer(world: &SimpleCommunicator) -> Option<(usize, Vec<u8>)> {
    let m = world
        .any_process()
        .immediate_matched_probe_with_tag(wire::ANSWER)?;
    let (msg, status) = m.matched_receive_vec::<u8>();
    Some((usize::try_from(status.source_rank()).unwrap_or(0), msg))
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
