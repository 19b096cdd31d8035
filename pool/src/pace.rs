//! How long a task of each function takes, as the driver sees it, and so how
//! many tasks a worker may hold at once.
//!
//! Tasks go into per-worker inboxes (see `POOL.md`), so a task sent to a
//! worker waits there behind that worker's earlier tasks even when another
//! worker is free: with every task sent at once, a map's chunks are split
//! evenly before any runs, and a slow chunk (or a worker that shares its
//! core) holds up the ones queued behind it while the other workers idle.
//! Python's `Pool` hands each task to whichever worker is free. Short tasks
//! need a few queued ahead (a worker would otherwise wait for the driver
//! between tasks); long ones need only the next one. So each worker holds at
//! most as many tasks as cover [`LOOKAHEAD`] of work by the measured time of
//! the next task's function, at least [`MIN_IN_FLIGHT`] (the one running and
//! the next), at most the inbox's depth; a function not timed yet gets
//! [`MIN_IN_FLIGHT`] until its first back-to-back task is.
//!
//! A task's time is measured by the driver, with the clock it reads once a
//! round: from the answer of the worker's previous task (the worker went on
//! to this one at once, if it had it) to this task's answer. A task sent to
//! an idle worker is timed from its send (a clock read) only while its
//! function has no measure or one that says slow (at least `WAKE_WORTH`),
//! and only when that worker is awake on another CPU (so it takes the task
//! at once: a wake-up in the measure made trivial tasks look slow, and sent
//! them to sleeping workers; `benches/NOTES.md`). Tasks that only ever go
//! one at a time (an `imap`'s single items) are timed that way; a blocking
//! `apply` reads the clock only until its function has a short measure.
//! Answers filed in the same round give the first of them the round's time
//! and the rest none; the average over a run of tasks is still about right,
//! and the decision needs only the order of magnitude.

use std::time::Duration;

use crate::task::Target;

/// Work a worker has queued ahead of it: enough to cover the driver's
/// response to an answer (tens of microseconds when it sleeps) many times over.
pub(crate) const LOOKAHEAD: Duration = Duration::from_millis(1);

/// The fewest tasks a worker may hold: the one it runs and the next, so that
/// it never waits for the driver between two.
pub(crate) const MIN_IN_FLIGHT: usize = 2;

/// Functions remembered: the oldest is forgotten past this many.
const REMEMBERED: usize = 32;

/// Measured nanoseconds per item, by function.
#[derive(Default)]
pub(crate) struct Pace {
    /// (function, nanoseconds per item, smoothed).
    known: Vec<(Target, u64)>,
    /// The entry the last lookup found (bursts name one function).
    last: usize,
    /// The entry a new function replaces once `known` is full.
    next: usize,
}

impl Pace {
    /// The entry of `target`, if it has one (the last one found first).
    fn find(&mut self, target: Target) -> Option<usize> {
        if self.known.get(self.last).is_some_and(|&(t, _)| t == target) {
            return Some(self.last);
        }
        let i = self.known.iter().position(|&(t, _)| t == target)?;
        self.last = i;
        Some(i)
    }

    /// Nanoseconds per item of `target`'s tasks, if any was timed.
    fn per_item(&mut self, target: Target) -> Option<u64> {
        self.find(target).map(|i| self.known[i].1)
    }

    /// Records that a task of `items` items of `target` took `took`.
    pub(crate) fn record(&mut self, target: Target, took: Duration, items: u32) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX) / u64::from(items.max(1));
        match self.find(target) {
            // Smoothed over the last few tasks: one slow or fast one moves
            // it by a quarter.
            Some(i) => {
                let ns = &mut self.known[i].1;
                *ns = (*ns - *ns / 4).saturating_add(sample / 4);
            }
            None if self.known.len() < REMEMBERED => {
                self.known.push((target, sample));
                self.last = self.known.len() - 1;
            }
            None => {
                self.known[self.next] = (target, sample);
                self.last = self.next;
                self.next = (self.next + 1) % REMEMBERED;
            }
        }
    }

    /// How many tasks a worker may hold when the next to send is a task of
    /// `items` items of `target`, in an inbox of `depth`.
    /// Nanoseconds a task of `items` items of `target` takes, if timed.
    pub(crate) fn task_ns(&mut self, target: Target, items: u32) -> Option<u64> {
        self.per_item(target)
            .map(|ns| ns.saturating_mul(u64::from(items.max(1))))
    }

    /// How many tasks of `items` items of `target` a worker may hold (the
    /// driver caches the task time and calls [`in_flight_for`]).
    #[cfg(test)]
    pub(crate) fn in_flight(&mut self, target: Target, items: u32, depth: usize) -> usize {
        in_flight_for(self.task_ns(target, items), depth)
    }
}

/// How many tasks that take `task_ns` each ([`Pace::task_ns`]; `None`: not
/// timed yet) a worker may hold, with an inbox `depth` deep.
pub(crate) fn in_flight_for(task_ns: Option<u64>, depth: usize) -> usize {
    let wanted = match task_ns {
        None => MIN_IN_FLIGHT,
        Some(task) => {
            let ahead = LOOKAHEAD.as_nanos() as u64 / task.max(1);
            usize::try_from(ahead)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
                .max(MIN_IN_FLIGHT)
        }
    };
    wanted.min(depth).max(1)
}

#[cfg(test)]
mod tests {
    use super::{Pace, LOOKAHEAD, MIN_IN_FLIGHT, REMEMBERED};
    use crate::task::Target;
    use std::time::Duration;

    fn f(n: i64) -> Target {
        Target {
            kind: 0,
            fns: (n, 0),
        }
    }

    #[test]
    fn an_untimed_function_gets_the_running_task_and_the_next() {
        let mut p = Pace::default();
        assert_eq!(p.in_flight(f(1), 1, 8), MIN_IN_FLIGHT);
        assert_eq!(
            p.in_flight(f(1), 1, 1),
            1,
            "never more than the inbox holds"
        );
    }

    #[test]
    fn short_tasks_fill_the_inbox_and_long_ones_keep_one_queued() {
        let mut p = Pace::default();
        p.record(f(1), Duration::from_micros(2), 1);
        assert_eq!(p.in_flight(f(1), 1, 8), 8);
        p.record(f(2), Duration::from_millis(7), 1);
        assert_eq!(p.in_flight(f(2), 1, 8), MIN_IN_FLIGHT);
        // Per item: a chunk of 1 000 items of 2 µs each takes 2 ms.
        p.record(f(3), Duration::from_millis(2), 1_000);
        assert_eq!(p.in_flight(f(3), 1, 8), 8);
        assert_eq!(p.in_flight(f(3), 1_000, 8), MIN_IN_FLIGHT);
        // In between: LOOKAHEAD of queued work, and the running one.
        p.record(f(4), LOOKAHEAD / 4, 1);
        assert_eq!(p.in_flight(f(4), 1, 8), 5);
        // Zero time (a coarse measure) counts as short.
        p.record(f(5), Duration::ZERO, 3);
        assert_eq!(p.in_flight(f(5), 3, 8), 8);
    }

    #[test]
    fn the_measure_follows_a_function_that_slows_down() {
        let mut p = Pace::default();
        p.record(f(1), Duration::from_micros(1), 1);
        assert_eq!(p.in_flight(f(1), 1, 8), 8);
        for _ in 0..20 {
            p.record(f(1), Duration::from_millis(10), 1);
        }
        assert_eq!(p.in_flight(f(1), 1, 8), MIN_IN_FLIGHT);
        // One fast task does not undo it.
        p.record(f(1), Duration::ZERO, 1);
        assert_eq!(p.in_flight(f(1), 1, 8), MIN_IN_FLIGHT);
    }

    #[test]
    fn at_most_remembered_functions_are_kept_the_oldest_forgotten() {
        let mut p = Pace::default();
        for i in 0..REMEMBERED as i64 + 1 {
            p.record(f(i), Duration::from_millis(10), 1);
        }
        assert_eq!(p.known.len(), REMEMBERED);
        assert_eq!(p.in_flight(f(0), 1, 8), MIN_IN_FLIGHT, "forgotten: untimed");
        assert!(p.per_item(f(0)).is_none());
        assert!(p.per_item(f(REMEMBERED as i64)).is_some());
        assert!(p.per_item(f(1)).is_some());
    }
}
