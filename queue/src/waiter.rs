//! [`Waiter`]: how a blocked put or get waits — spin, yield, then sleep — and how
//! it waits out a peer in the middle of an operation on the slot it needs.

use multiproc_sync::owner_check_interval;

use crate::primitive::{spin, try_yield_watching, Deadline};
use crate::{Error, Result};

/// Tries before a blocking call sleeps: a hand-off by spinning costs a fraction
/// of a microsecond, by sleeping tens (`benches/NOTES.md`).
pub(crate) const SPINS: u32 = 200;

/// How a blocked put or get waits, step by step: spin a little, then sleep on the
/// futex (for a full or empty ring), or yield while a peer is mid-operation on the
/// slot we need — checking every owner check interval whether that peer died.
pub(crate) struct Waiter {
    spins_left: u32,
    yields_left: u32,
    in_flight_since: Option<std::time::Instant>,
}

/// Yields before sleeping, after the spins: when processes outnumber cores, the
/// peer we wait for may need our core, and a yield is far cheaper than a futex
/// sleep and the wake-up syscall it costs the peer. But a yield runs whichever
/// task is runnable, and beside a busy program that is no peer it hands that
/// program a time slice: each is a [`try_yield_watching`] of the ring's
/// positions, and a slow one that saw them move by less than [`WORKED`] turns
/// this thread's yields into sleeps for a while.
const YIELDS: u32 = 32;

/// Positions the other side must have moved the ring by during a yield that
/// took a slice, for that slice to count as its work: more than the one
/// message (or slot) a request and its reply make. A round trip through two
/// queues beside a busy process took 37 µs with every yield made, 0.66 µs
/// with those turned into sleeps; four processes at one queue on two CPUs, whose slices move the ring a
/// long way, keep their yields (`benches/NOTES.md`).
const WORKED: u64 = 2;

impl Waiter {
    pub(crate) fn new(spins: u32) -> Waiter {
        Waiter {
            spins_left: spins,
            yields_left: if spins == 0 { 0 } else { YIELDS },
            in_flight_since: None,
        }
    }

    /// Spins until `ready` (or the spins run out). `ready` looks only at the slot
    /// we need: reading the other side's index while spinning would pull its
    /// cache line away from it on every probe.
    pub(crate) fn spin_until(&mut self, ready: impl Fn() -> bool) {
        while self.spins_left > 0 && !ready() {
            self.spins_left -= 1;
            spin();
        }
    }

    /// One step of waiting for room or a message: spin (until `ready`), yield,
    /// or `sleep`. `moved` reads the position the other side moves (the tail
    /// for a waiting consumer, the head for a waiting producer).
    pub(crate) fn wait(
        &mut self,
        deadline: Option<&Deadline>,
        ready: impl Fn() -> bool,
        moved: impl Fn() -> u64,
        sleep: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.in_flight_since = None;
        if self.spins_left > 0 {
            self.spin_until(ready);
            return Ok(());
        }
        if self.yields_left > 0 {
            self.yields_left -= 1;
            if try_yield_watching(moved, WORKED) {
                return Ok(());
            }
            // Yields cost a busy program's slice here now: sleep.
            self.yields_left = 0;
        }
        if deadline.is_some_and(Deadline::passed) {
            return Err(Error::Timeout);
        }
        sleep()
    }

    /// One step of waiting for a peer that claimed our slot to finish with it.
    /// It finishes within nanoseconds unless it was descheduled or died, so this
    /// spins, then yields. After a check interval, or when `deadline` has
    /// passed, `skip` checks for a dead peer;
    /// a peer still alive then is stopped or starved, so from there on each step
    /// naps (`nap`: sleeps until the peer's publish or free wakes it, or another
    /// check interval passes) and checks again, instead of burning a core.
    pub(crate) fn in_flight(
        &mut self,
        deadline: Option<&Deadline>,
        ready: impl Fn() -> bool,
        skip: impl FnOnce() -> bool,
        nap: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if self.spins_left > 0 {
            self.spin_until(ready);
            return Ok(());
        }
        if deadline.is_some_and(Deadline::passed) {
            // One look for a dead peer before giving up: a caller that only
            // ever waits briefly (shorter than the check interval) would
            // otherwise never skip a dead producer's claim, and stall for good.
            if skip() {
                self.in_flight_since = None;
                return Ok(());
            }
            return Err(Error::Timeout);
        }
        let since = *self
            .in_flight_since
            .get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < owner_check_interval() {
            std::thread::yield_now();
            return Ok(());
        }
        if skip() {
            self.in_flight_since = None;
            return Ok(());
        }
        nap()
    }
}
