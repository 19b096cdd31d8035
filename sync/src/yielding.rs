//! [`try_yield`]: the yield a waiter makes between spinning and sleeping —
//! skipped for a while once a yield on this thread handed its CPU to a
//! task that kept it for a time slice.
//!
//! A waiter that has spun out its budget yields before it sleeps: when the
//! processes outnumber the CPUs, the peer it waits for is often runnable on
//! its own CPU, and a yield runs that peer at once for a fraction of what a
//! futex sleep and the peer's wake-up syscall cost (four processes at one
//! queue on two CPUs move messages about twice as fast with the yields).
//!
//! But a yield gives the CPU to *whichever* task is runnable there. Where
//! that is a task of no concern to the waiter (a busy process beside the
//! program, on a laptop or a shared machine), the scheduler runs it for a
//! whole slice (the yielder's turn comes back after 1-4 ms here, against
//! well under a microsecond when nothing else is runnable), and a waiter that
//! yields a few dozen times loses tens of milliseconds while its message has
//! long arrived. With one busy process on a two-CPU machine, the pool's
//! pipelined `apply_async` took 80 times as long as on the idle machine
//! (`benches/NOTES.md`). A sleeping waiter has no such problem: the put
//! that wakes it puts it back on a CPU at once.
//!
//! So each yield is timed. One that took longer than [`SLOW_YIELD`] ran
//! another task for a slice; from then on, for [`SKIP_FOR`], this thread's
//! waiters skip their yields and sleep at once ([`try_yield`] answers
//! `false` without yielding). Then they try a yield again.
//!
//! | what the last slow yield says | `try_yield` |
//! |---|---|
//! | none, or over [`SKIP_FOR`] ago | yields; `true` (and times it) |
//! | less than [`SKIP_FOR`] ago | `false`, at once (the caller sleeps) |
//!
//! Each thread keeps its own: a busy process beside one CPU slows only the
//! threads that meet it. A wrong guess costs time, never an answer: a waiter
//! that sleeps instead of yielding is woken by the same put.
//!
//! [`try_yield`] counts every slow yield. It is for a waiter whose one peer
//! gives it work a little at a time (a pool's worker and its driver, a large
//! message's lane, a rank's poller). A queue's blocking put and get use
//! [`try_yield_watching`] with the ring's positions: with several producers
//! and consumers on few CPUs, a yield that runs one of them for a whole
//! slice is work the queue needs done (the ring moves a long way meanwhile),
//! and they moved messages fastest with every such yield made, even beside
//! a busy process (`benches/NOTES.md`).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A yield that took longer than this ran another task for its slice (a
/// slice is 0.75 ms or more; a yield to a peer that does a step of work and
/// waits again takes microseconds).
pub const SLOW_YIELD: Duration = Duration::from_micros(100);

/// How long a thread's waiters skip their yields after a slow one: a retry
/// that meets the busy task again costs one slice in this many.
pub const SKIP_FOR: Duration = Duration::from_millis(20);

thread_local! {
    /// Until when this thread's waiters skip their yields.
    static SKIP_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Yields the CPU (`sched_yield`), unless a yield on this thread ran
/// another task for a whole slice less than [`SKIP_FOR`] ago; whether it
/// yielded. A waiter that gets `false` should sleep (on its futex) rather
/// than spin or yield again: see the module documentation.
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use multiproc_sync::futex::{try_yield, wait, Deadline};
///
/// let word = AtomicU32::new(0);
/// // A waiter past its spins: a few yields, then a sleep.
/// for _ in 0..4 {
///     if word.load(Ordering::Acquire) != 0 || !try_yield() {
///         break;
///     }
/// }
/// if word.load(Ordering::Acquire) == 0 {
///     wait(&word, 0, Deadline::after(Duration::from_millis(1)).as_ref());
/// }
/// ```
pub fn try_yield() -> bool {
    try_yield_watching(|| 0, 1)
}

/// [`try_yield`] for a waiter whose peers may hold its CPU for good reason:
/// a slow yield marks the thread only if `progress()` (a count its peers move
/// as they work, such as a queue's positions) moved by less than `enough`
/// meanwhile. Where several producers and consumers share few CPUs, a yield
/// that runs one of them for a whole slice moves the ring a long way, and
/// yielding again pays; beside a busy program the peer moves it by the one
/// message (or slot) the waiter waits for, if at all.
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use multiproc_sync::futex::try_yield_watching;
///
/// let moved = AtomicU64::new(0); // a queue's tail, say
/// let yielded = try_yield_watching(|| moved.load(Ordering::Relaxed), 2);
/// # let _ = yielded;
/// ```
pub fn try_yield_watching(progress: impl Fn() -> u64, enough: u64) -> bool {
    let start = Instant::now();
    if SKIP_UNTIL.get().is_some_and(|until| start < until) {
        return false;
    }
    let before = progress();
    std::thread::yield_now();
    let took = start.elapsed();
    if took >= SLOW_YIELD && progress().wrapping_sub(before) < enough {
        SKIP_UNTIL.set(Some(start + took + SKIP_FOR));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiproc_testkit::{pin, set_cpus};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[test]
    fn a_busy_task_on_the_cpu_turns_the_yields_off_and_they_come_back() {
        // This thread and a thread that never waits, on one CPU.
        // SAFETY: sched_getcpu takes nothing and touches no memory of ours.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap();
        let had = pin(0, cpu);
        let stop = AtomicBool::new(false);
        let (found, then) = std::thread::scope(|s| {
            s.spawn(|| {
                pin(0, cpu);
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
            // The scheduler gives the busy thread a slice at one of the
            // first yields (a third of them here; every one on older
            // kernels): a yield timed slow, and the next ones skipped.
            let found = (0..10_000).position(|_| !try_yield());
            let then = try_yield();
            stop.store(true, Ordering::Relaxed);
            (found, then)
        });
        set_cpus(0, &had);
        assert!(
            found.is_some(),
            "no yield was found slow beside a busy thread"
        );
        assert!(!then, "the yields stay off for a while");
        // Once SKIP_FOR has passed, it yields again.
        std::thread::sleep(SKIP_FOR + Duration::from_millis(5));
        assert!(try_yield());
    }

    #[test]
    fn a_slow_yield_that_saw_enough_progress_leaves_the_yields_on() {
        // SAFETY: sched_getcpu takes nothing and touches no memory of ours.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap();
        let had = pin(0, cpu);
        let (stop, count) = (AtomicBool::new(false), AtomicU64::new(0));
        let (slow, marked) = std::thread::scope(|s| {
            // A peer that works (counts) whenever it has the CPU.
            s.spawn(|| {
                pin(0, cpu);
                while !stop.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
            while count.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            // Each slow yield in which the peer ran (its count moved), and
            // whether it marked the thread. A slow yield in which the peer
            // did not run — another task on this CPU took the slice (a test
            // beside this one, a busy machine), or the host took the virtual
            // CPU away — rightly marks, and is not counted: under two busy
            // loops, 251 of 982 slow yields were such and marked (counted
            // as the peer's, they failed this test). A preemption between
            // the count read here and the one inside may still make a
            // counted one mark: a few may.
            let (mut slow, mut marked) = (0u32, 0u32);
            for _ in 0..2_000 {
                SKIP_UNTIL.set(None);
                let (t, before) = (Instant::now(), count.load(Ordering::Relaxed));
                assert!(try_yield_watching(|| count.load(Ordering::Relaxed), 2));
                let ran = count.load(Ordering::Relaxed) - before >= 2;
                if t.elapsed() >= SLOW_YIELD && ran {
                    slow += 1;
                    marked += u32::from(SKIP_UNTIL.get().is_some());
                }
            }
            stop.store(true, Ordering::Relaxed);
            (slow, marked)
        });
        set_cpus(0, &had);
        assert!(slow >= 10, "{slow} yields ran the peer for a slice");
        assert!(
            marked * 4 <= slow,
            "{marked} of {slow} slow yields, each of which ran a working peer, marked the thread"
        );
    }

    #[test]
    fn each_thread_keeps_its_own_mark() {
        SKIP_UNTIL.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(!try_yield());
        let other = std::thread::spawn(|| SKIP_UNTIL.get()).join().unwrap();
        assert_eq!(other, None);
    }
}
