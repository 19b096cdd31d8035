//! A driver and a worker that share one CPU.
//!
//! A blocking `apply` is a hand-off each way: the driver puts a task and
//! waits for its answer, the worker answers and waits for the next task, each
//! spinning a few microseconds before it sleeps. On two CPUs that is a round
//! trip of about 0.4 µs. But a scheduler may place a woken task on the CPU of
//! the task that woke it (a VM's kernel that packs tasks onto running vCPUs
//! does so even when the other vCPU is idle), and then the two take turns on
//! one CPU: each side's spin only keeps the other from running, and as each
//! sleeps in turn the scheduler sees one task there and never spreads them
//! out. Seen here for tens of milliseconds at a time after the pool idled:
//! `apply` took 17.6 µs pinned to one CPU.
//!
//! What each side does about it:
//!
//! | who    | publishes (in the worker's `Slot`, on a change)  | when it finds its peer on its own CPU                         |
//! |--------|--------------------------------------------------|---------------------------------------------------------------|
//! | driver | `driver_cpu`, when it sends the worker a task    | after [`EARLY_SPINS`], yields (up to [`SHARED_YIELDS`]), sleeps |
//! | worker | `cpu`, each time it waits for a task             | yields at once (up to [`SHARED_YIELDS`]), sleeps; after [`MOVE_AFTER`] such waits in a row, moves to another CPU |
//!
//! A yield runs the peer at once (3.9 µs an `apply` on one CPU). The move
//! ends the sharing: the scheduler migrates the worker at once and leaves it
//! where it is, and from there both sides spin again. Every decision here
//! changes only how a side waits, never what it waits for: a wrong guess
//! costs time, not an answer.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Moves this process off `cpu` (a [`this_cpu`]) to another of the CPUs it
/// may run on, then allows it all of them again: the scheduler migrates it at
/// once and leaves it where it is. False if it may run nowhere else (or the
/// system refuses).
pub(crate) fn move_off(cpu: u64) -> bool {
    let Some(c) = cpu.checked_sub(1).and_then(|c| usize::try_from(c).ok()) else {
        return false;
    };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: a zeroed cpu_set_t is an empty set; `CPU_CLR` ignores a CPU
    // past the set's size; the calls read and write only the sets given, of
    // the size given.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return false;
        }
        let mut others = allowed;
        libc::CPU_CLR(c, &mut others);
        if libc::CPU_COUNT(&others) == 0 || libc::sched_setaffinity(0, size, &others) != 0 {
            return false;
        }
        // Back to what it was (a failure would leave it off one CPU only).
        libc::sched_setaffinity(0, size, &allowed);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> libc::cpu_set_t {
        // SAFETY: a zeroed set, filled by the call for this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
                0
            );
            set
        }
    }

    fn set_allowed(set: &libc::cpu_set_t) {
        // SAFETY: a valid set of its own size, for this thread.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) };
        assert_eq!(rc, 0);
    }

    fn same(a: &libc::cpu_set_t, b: &libc::cpu_set_t) -> bool {
        // SAFETY: CPU_EQUAL only reads both sets.
        unsafe { libc::CPU_EQUAL(a, b) }
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
