//! Workers, and the driver, that share one CPU while another idles.
//!
//! A scheduler may place a woken task on the CPU of the task that woke it, or
//! beside another running one (a VM's kernel that packs tasks onto running
//! vCPUs does so even when the other vCPU is idle); the idle CPU takes work
//! only at a balancing tick, milliseconds later. Two cases cost the pool:
//!
//! - A blocking `apply` is a hand-off each way: the driver puts a task and
//!   waits for its answer, the worker answers and waits for the next task,
//!   each spinning a few microseconds before it sleeps. On two CPUs that is a
//!   round trip of 0.4-1 µs. On one, each side's spin only keeps the other
//!   from running, and as each sleeps in turn the scheduler sees one task
//!   there and never spreads them out: seen for tens of milliseconds at a
//!   time after the pool idled, and 17.6 µs an `apply` pinned to one CPU.
//! - A map's first chunks wake every worker at once, and two of them queued
//!   on one CPU run one after the other until the balancer moves one: a
//!   CPU-bound map of 28 ms took 31-36 in most rounds. `pmap`'s workers,
//!   forked for the call, met the same.
//!
//! What each side does about it:
//!
//! | who    | publishes (in the worker's `Slot`, on a change) | when                                | what                                                        |
//! |--------|-------------------------------------------------|-------------------------------------|-------------------------------------------------------------|
//! | driver | `driver_cpu`, when it sends the worker a task   | waits, after [`EARLY_SPINS`], and every busy worker waited on its CPU | yields (up to [`SHARED_YIELDS`]), then sleeps      |
//! | worker | `cpu`, each time it waits for a task            | waits, and its driver sent from its CPU | yields at once (up to [`SHARED_YIELDS`]), then sleeps; after [`MOVE_AFTER`] such waits in a row, moves to another CPU |
//! | worker | `pid`, at start                                 | starts a chunk, and another worker with an unstarted task is runnable on its CPU (`/proc`, at most every [`LOOK_EVERY`]) | moves to another CPU |
//! | `pmap`'s parent | —                                      | in the first milliseconds of a call, two of its workers are runnable on one CPU (`/proc`) | moves the later one to another CPU ([`spread_processes`]) |
//!
//! The last two only where there are no more workers than CPUs to run them
//! on: past that, some must share a CPU whatever anyone does.
//!
//! A yield runs the peer at once (3.9 µs an `apply` on one CPU); each is a
//! [`try_yield`](multiproc_sync::futex::try_yield), which a side skips (and
//! sleeps at once) while its yields hand a busy program beside the pool a
//! whole time slice instead. A move ends the sharing: the scheduler
//! migrates the worker at once and leaves it where it is (its allowed CPUs
//! are given back unchanged). Every decision
//! here changes only how or where a side waits or runs, never what it waits
//! for: a wrong guess costs time, not an answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::worker::Channels;

/// Spins before a waiting driver asks where its workers run: about two
/// microseconds (a spin is some 25 ns here), twice a trivial task's round
/// trip between two CPUs on the slowest placements seen here (0.4-1 µs), so
/// that the fast case never asks (asking reads lines the workers write).
pub(crate) const EARLY_SPINS: u32 = 80;

/// Yields, before it sleeps, of a waiting side whose peer shares its CPU. A
/// yield runs the peer at once; and while both are runnable the scheduler's
/// balancing can see two tasks on one CPU (two sides that take turns sleeping
/// look like one).
pub(crate) const SHARED_YIELDS: u32 = 64;

/// Waits in a row a worker finds its driver on its own CPU before it moves
/// (about a quarter of a millisecond of blocking `apply`s sharing a CPU).
pub(crate) const MOVE_AFTER: u32 = 64;

/// The CPU this thread runs on, plus one; 0 if unknown (`sched_getcpu`, a
/// read of the kernel's `rseq` area: about a nanosecond).
pub(crate) fn this_cpu() -> u64 {
    // SAFETY: no arguments, no memory of ours touched.
    let cpu = unsafe { libc::sched_getcpu() };
    u64::try_from(cpu).map_or(0, |c| c + 1)
}

/// Stores `value` in `cell` unless it holds it already: a line written only
/// on a change stays in every reader's cache.
pub(crate) fn note(cell: &AtomicU64, value: u64) {
    if cell.load(Ordering::Relaxed) != value {
        cell.store(value, Ordering::Relaxed);
    }
}

/// Whether every worker that may answer soon (running a task, or with one in
/// its inbox) last waited on `cpu` (a [`this_cpu`]): the driver's spinning
/// would then only keep them from running.
pub(crate) fn shares_cpu(ch: &Channels, cpu: u64) -> bool {
    cpu != 0
        && ch.slots.iter().zip(&ch.inboxes).all(|(slot, inbox)| {
            slot.cpu.load(Ordering::Relaxed) == cpu
                || (slot.task.load(Ordering::Relaxed) == 0 && inbox.qsize() == 0)
        })
}

/// How often a worker may look in `/proc` for a worker queued behind it.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(1);

/// Called by worker `me` as it starts a chunk of a map: if another worker
/// has a task it has not started and is queued on this worker's CPU (woken
/// there, behind this one), this one moves off, so that both run. A look in
/// `/proc` (some microseconds) is made only when another worker has an
/// unstarted task, and at most once per [`LOOK_EVERY`].
pub(crate) fn spread(ch: &Channels, me: usize, next_look: &mut Option<Instant>) {
    // The other workers with a task they have not started.
    let unstarted = || {
        ch.slots
            .iter()
            .zip(&ch.inboxes)
            .enumerate()
            .filter(move |&(w, (other, inbox))| {
                w != me && other.task.load(Ordering::Relaxed) == 0 && inbox.qsize() != 0
            })
            .map(|(_, (other, _))| other)
    };
    if unstarted().next().is_none() {
        return;
    }
    let now = Instant::now();
    if next_look.is_some_and(|t| now < t) {
        return;
    }
    *next_look = Some(now + LOOK_EVERY);
    // More workers than CPUs: some share one whatever this one does.
    if ch.slots.len() > allowed_cpus() {
        return;
    }
    let cpu = this_cpu();
    let stacked =
        cpu != 0 && unstarted().any(|other| runnable_on(other.pid.load(Ordering::Relaxed), cpu));
    if stacked {
        move_off(cpu);
    }
}

/// Whether process `pid` is runnable and queued on (or running on) `cpu` (a
/// [`this_cpu`]).
fn runnable_on(pid: u64, cpu: u64) -> bool {
    runnable_cpu(pid) == Some(cpu)
}

/// The CPU (a [`this_cpu`]) process `pid` is queued on or runs on, if it is
/// runnable: its state and CPU in `/proc/<pid>/stat`.
fn runnable_cpu(pid: u64) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command (which may hold spaces) start after the
    // last ')': the state is field 3, the CPU field 39.
    let rest = &stat[stat.rfind(") ")? + 2..];
    let mut fields = rest.split(' ');
    if fields.next() != Some("R") {
        return None;
    }
    fields.nth(35)?.parse::<u64>().ok().map(|c| c + 1)
}

/// For the parent of worker processes just started (`pmap`'s): if two of
/// `pids` are runnable on one CPU, moves the later one to another of its
/// allowed CPUs. True if it moved one. (A look in `/proc` per process.)
pub(crate) fn spread_processes(pids: &[u32]) -> bool {
    // More workers than CPUs: some share one whatever the parent does.
    if pids.len() > allowed_cpus() {
        return false;
    }
    let cpus: Vec<Option<u64>> = pids.iter().map(|&p| runnable_cpu(u64::from(p))).collect();
    for (i, &cpu) in cpus.iter().enumerate() {
        if let Some(cpu) = cpu {
            if cpus[..i].contains(&Some(cpu)) {
                return libc::pid_t::try_from(pids[i]).is_ok_and(|pid| move_task_off(pid, cpu));
            }
        }
    }
    false
}

/// How many CPUs this thread may run on (0 if the system will not say).
fn allowed_cpus() -> usize {
    allowed_set(0).map_or(0, |set| {
        // SAFETY: CPU_COUNT only reads the set.
        let n = unsafe { libc::CPU_COUNT(&set) };
        usize::try_from(n).unwrap_or(0)
    })
}

/// The CPUs task `tid` (0: this thread) may run on, if the system says.
fn allowed_set(tid: libc::pid_t) -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is an empty set, which the call fills, of
    // the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of_val(&set);
        (libc::sched_getaffinity(tid, size, &mut set) == 0).then_some(set)
    }
}

/// Moves this thread off `cpu` (a [`this_cpu`]) to another of the CPUs it
/// may run on, then allows it all of them again: the scheduler migrates it at
/// once and leaves it where it is. False if it may run nowhere else (or the
/// system refuses).
pub(crate) fn move_off(cpu: u64) -> bool {
    move_task_off(0, cpu)
}

/// [`move_off`] for task `tid` (0: this thread); a task queued on `cpu` is
/// moved as well as a running one.
fn move_task_off(tid: libc::pid_t, cpu: u64) -> bool {
    let Some(c) = cpu.checked_sub(1).and_then(|c| usize::try_from(c).ok()) else {
        return false;
    };
    let Some(allowed) = allowed_set(tid) else {
        return false;
    };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `CPU_CLR` ignores a CPU past the set's size; the calls read
    // only the sets given, of the size given.
    unsafe {
        let mut others = allowed;
        libc::CPU_CLR(c, &mut others);
        if libc::CPU_COUNT(&others) == 0 || libc::sched_setaffinity(tid, size, &others) != 0 {
            return false;
        }
        // Back to what it was (a failure would leave it off one CPU only).
        libc::sched_setaffinity(tid, size, &allowed);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Slot;
    use multiproc_queue::ByteQueue;

    /// The CPUs this thread may run on.
    fn allowed() -> libc::cpu_set_t {
        allowed_of(0)
    }

    fn allowed_of(pid: libc::pid_t) -> libc::cpu_set_t {
        allowed_set(pid).expect("sched_getaffinity")
    }

    fn set_allowed(set: &libc::cpu_set_t) {
        set_allowed_of(0, set);
    }

    fn set_allowed_of(pid: libc::pid_t, set: &libc::cpu_set_t) {
        // SAFETY: a valid set of its own size, for `pid`.
        let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(set), set) };
        assert_eq!(rc, 0);
    }

    fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
        // SAFETY: CPU_EQUAL only reads both sets.
        unsafe { libc::CPU_EQUAL(a, b) }
    }

    fn only(cpu: usize) -> libc::cpu_set_t {
        // SAFETY: a zeroed set is empty; CPU_SET writes inside it.
        unsafe {
            let mut only: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut only);
            only
        }
    }

    /// Two CPUs this thread may run on (0-based), if it has two.
    fn two_cpus() -> Option<(usize, usize)> {
        let set = allowed();
        // SAFETY: CPU_ISSET only reads the set.
        let mut cpus =
            (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) });
        Some((cpus.next()?, cpus.next()?))
    }

    /// A forked child that spins on `cpu` (0-based) until it is killed.
    /// Returned once it has pinned itself there: a child only queued on that
    /// CPU, before its first instruction, already reads as runnable there
    /// (this VM's scheduler queues a new task on a busy CPU), and would pin
    /// itself later, over what the test set meanwhile.
    fn spinner(cpu: usize) -> multiproc_testkit::Child {
        let child = multiproc_testkit::fork(move || {
            set_allowed(&only(cpu));
            loop {
                std::hint::spin_loop();
            }
        });
        let pid = child.pid() as u64;
        multiproc_testkit::wait_until(Duration::from_secs(10), "the spinner runs", || {
            same(&allowed_of(pid as libc::pid_t), &only(cpu)) && runnable_on(pid, cpu as u64 + 1)
        });
        child
    }

    /// Two workers' channels in this process, the second one with a task in
    /// its inbox that it has not started, and `pid` as its process.
    fn second_worker_waiting(pid: u64) -> Channels {
        workers_with_the_second_waiting(2, pid)
    }

    /// [`second_worker_waiting`] among `n` workers.
    fn workers_with_the_second_waiting(n: usize, pid: u64) -> Channels {
        let ch = Channels {
            results: vec![ByteQueue::new(4, 64).unwrap()],
            inboxes: (0..n).map(|_| ByteQueue::new(4, 64).unwrap()).collect(),
            slots: multiproc_shm::SharedSlice::<Slot>::anonymous(n).unwrap(),
        };
        ch.inboxes[1].put_bytes(b"a task").unwrap();
        ch.slots[1].pid.store(pid, Ordering::Relaxed);
        ch
    }

    #[test]
    fn runnable_on_reads_a_process_state_and_cpu() {
        let _dog = multiproc_testkit::Watchdog::arm(Duration::from_secs(60), "runnable_on");
        let Some((a, b)) = two_cpus() else {
            eprintln!("skipped: this thread may run on one CPU only");
            return;
        };
        let spinning = spinner(a);
        let pid = spinning.pid() as u64;
        assert!(runnable_on(pid, a as u64 + 1));
        assert!(!runnable_on(pid, b as u64 + 1));
        let sleeping = multiproc_testkit::fork(|| {
            std::thread::sleep(Duration::from_secs(60));
            0
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!runnable_on(sleeping.pid() as u64, a as u64 + 1));
        assert!(!runnable_on(sleeping.pid() as u64, b as u64 + 1));
        assert!(!runnable_on(0, a as u64 + 1));
        spinning.kill(Duration::from_secs(10));
        sleeping.kill(Duration::from_secs(10));
    }

    /// Worker 0 (this thread) starts a chunk on CPU `a` while worker 1, its
    /// task not started, is runnable on `a` too: worker 0 moves off, and its
    /// CPUs are as they were. (The thread is held on `a`, then let go: a
    /// scheduler that moved it in between would make the try say nothing, so
    /// it is tried again.)
    #[test]
    fn a_worker_moves_off_a_cpu_where_another_waits_to_start() {
        let _dog = multiproc_testkit::Watchdog::arm(Duration::from_secs(60), "spread");
        let Some((a, _)) = two_cpus() else {
            eprintln!("skipped: this thread may run on one CPU only");
            return;
        };
        let before = allowed();
        let other = spinner(a);
        let ch = second_worker_waiting(other.pid() as u64);
        let moved = (0..20).any(|_| {
            set_allowed(&only(a));
            set_allowed(&before);
            let here = this_cpu();
            spread(&ch, 0, &mut None);
            here == a as u64 + 1 && this_cpu() != here
        });
        assert!(moved, "worker 0 stayed on the CPU where worker 1 waits");
        assert!(same(&allowed(), &before), "its CPUs were not given back");
        other.kill(Duration::from_secs(10));
    }

    /// The same with more workers than CPUs: worker 0 stays (some must
    /// share a CPU).
    #[test]
    fn a_worker_stays_when_workers_outnumber_cpus() {
        let _dog = multiproc_testkit::Watchdog::arm(Duration::from_secs(60), "spread many");
        let Some((a, _)) = two_cpus() else {
            eprintln!("skipped: this thread may run on one CPU only");
            return;
        };
        let before = allowed();
        let other = spinner(a);
        let ch = workers_with_the_second_waiting(allowed_cpus() + 1, other.pid() as u64);
        stays_on(
            a,
            &before,
            &ch,
            "worker 0 moved though workers outnumber CPUs",
        );
        other.kill(Duration::from_secs(10));
    }

    /// The same with worker 1 runnable on another CPU: worker 0 stays.
    #[test]
    fn a_worker_stays_when_the_other_waits_on_another_cpu() {
        let _dog = multiproc_testkit::Watchdog::arm(Duration::from_secs(60), "spread stays");
        let Some((a, b)) = two_cpus() else {
            eprintln!("skipped: this thread may run on one CPU only");
            return;
        };
        let before = allowed();
        let elsewhere = spinner(b);
        let ch = second_worker_waiting(elsewhere.pid() as u64);
        stays_on(
            a,
            &before,
            &ch,
            "worker 0 moved though nobody waits on its CPU",
        );
        elsewhere.kill(Duration::from_secs(10));
    }

    /// Holds this thread (worker 0) on CPU `a`, lets it go back to `before`,
    /// and asserts that starting a chunk leaves it where it is.
    fn stays_on(a: usize, before: &libc::cpu_set_t, ch: &Channels, why: &str) {
        set_allowed(&only(a));
        set_allowed(before);
        let here = this_cpu();
        spread(ch, 0, &mut None);
        assert_eq!(this_cpu(), here, "{why}");
    }

    /// Two spinning workers on one CPU (held there, then let go): the parent
    /// moves one off, and both keep the CPUs they had. (A scheduler that
    /// spreads them first makes the try say nothing; it is tried again.)
    #[test]
    fn a_parent_spreads_two_workers_runnable_on_one_cpu() {
        let _dog = multiproc_testkit::Watchdog::arm(Duration::from_secs(60), "spread processes");
        let Some((a, _)) = two_cpus() else {
            eprintln!("skipped: this thread may run on one CPU only");
            return;
        };
        let all = allowed();
        let spinners = [spinner(a), spinner(a)];
        let pids = spinners.each_ref().map(|s| s.pid());
        let on_a = Some(a as u64 + 1);
        let moved = (0..20).any(|_| {
            for &pid in &pids {
                set_allowed_of(pid, &only(a));
            }
            for &pid in &pids {
                set_allowed_of(pid, &all);
            }
            spread_processes(&pids.map(|p| p as u32))
                && runnable_cpu(pids[1] as u64).is_some_and(|c| Some(c) != on_a)
        });
        assert!(moved, "the second was not moved off the CPU they shared");
        for &pid in &pids {
            assert!(same(&allowed_of(pid), &all), "worker {pid}'s CPUs changed");
        }
        // Listed more times than there are CPUs: nothing to do either.
        set_allowed_of(pids[1], &only(a));
        set_allowed_of(pids[1], &all);
        let many: Vec<u32> = (pids.iter().cycle().take(allowed_cpus() + 1))
            .map(|&p| p as u32)
            .collect();
        assert!(!spread_processes(&many));
        // Each held on a CPU of its own: nothing to do.
        let b = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET only reads the set.
            .find(|&c| c != a && unsafe { libc::CPU_ISSET(c, &all) })
            .expect("a second CPU");
        set_allowed_of(pids[0], &only(a));
        set_allowed_of(pids[1], &only(b));
        multiproc_testkit::wait_until(Duration::from_secs(10), "apart", || {
            runnable_cpu(pids[1] as u64) == Some(b as u64 + 1)
        });
        assert!(!spread_processes(&pids.map(|p| p as u32)));
        for s in spinners {
            s.kill(Duration::from_secs(10));
        }
    }

    #[test]
    fn this_cpu_is_one_this_thread_may_run_on() {
        let cpu = this_cpu();
        assert_ne!(cpu, 0, "sched_getcpu failed");
        // SAFETY: CPU_ISSET only reads the set.
        assert!(unsafe { libc::CPU_ISSET((cpu - 1) as usize, &allowed()) });
    }

    #[test]
    fn move_off_moves_this_thread_and_gives_it_back_its_cpus() {
        let before = allowed();
        // SAFETY: CPU_COUNT only reads the set.
        if unsafe { libc::CPU_COUNT(&before) } < 2 {
            eprintln!("skipped: this thread may run on one CPU only");
            return;
        }
        let cpu = this_cpu();
        assert!(move_off(cpu));
        assert_ne!(this_cpu(), cpu, "still on the CPU it moved off");
        assert!(same(&allowed(), &before), "its CPUs were not given back");
    }

    #[test]
    fn move_off_refuses_when_there_is_nowhere_else_and_changes_nothing() {
        let before = allowed();
        let cpu = this_cpu();
        // SAFETY: a zeroed set is empty; CPU_SET writes inside it.
        let only = unsafe {
            let mut only: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET((cpu - 1) as usize, &mut only);
            only
        };
        set_allowed(&only);
        assert!(!move_off(cpu));
        assert_eq!(this_cpu(), cpu);
        assert!(same(&allowed(), &only));
        assert!(!move_off(0), "an unknown CPU is not one to move off");
        set_allowed(&before);
    }
}
