//! [`Sleepers`]: how many threads sleep on a futex word, so that a waker can skip
//! the wake-up syscall when nobody does — a count that forgets threads killed
//! asleep.

use std::time::Duration;

use crate::primitive::{AtomicU64, Deadline, Ordering};
use crate::raw_mutex::owner_check_interval;

/// Added to each sleeper's bound before its count may be called stale.
const SLACK_MS: u64 = 1_000;

/// A count of threads asleep on a futex word, so that a waker can skip the
/// wake-up syscall when nobody sleeps — which forgets threads killed asleep.
///
/// A plain count stays up for good when a sleeper is killed between counting
/// itself in and out, and from then on every wake-up (every `release` of a
/// semaphore) pays a futex syscall for nobody: 30 times the cost of the
/// operation. Here every sleep is bounded (by what the sleeper gives
/// [`enter`](Sleepers::enter); this crate's waiters sleep at most one owner
/// check interval at a time), and each sleeper pushes forward the
/// time by which every counted sleeper will have woken by itself. A waker whose
/// syscall woke nobody, past that time, knows the count holds only the dead (or
/// threads stopped for that long) and starts it afresh in a new epoch; a thread
/// still counted in the old epoch then leaves without touching the new count.
///
/// The slack makes a live thread that is merely slow between counting itself in
/// and sleeping (descheduled for over a second) the only one a reset can miss:
/// it loses one wake-up, which its own bounded sleep makes good.
///
/// `#[repr(C)]`, 16 bytes; all-zero bytes are an empty count.
///
/// # Examples
/// ```
/// use std::sync::atomic::AtomicU32;
/// use std::time::Duration;
/// use multiproc_sync::futex::{wait, wake, Deadline, Sleepers};
///
/// let (word, sleepers) = (AtomicU32::new(0), Sleepers::new());
/// // A sleeper: counted in, a bounded sleep, counted out.
/// let deadline = Deadline::after(Duration::from_millis(1));
/// let woke = sleepers.sleep(deadline, |d| wait(&word, 0, d));
/// assert!(!woke); // nobody changed the word: its deadline passed
/// // A waker: a syscall only when someone may sleep.
/// if sleepers.any() && wake(&word, 1) == 0 {
///     sleepers.woke_nobody();
/// }
/// assert_eq!(sleepers.count(), 0);
/// ```
#[repr(C)]
pub struct Sleepers {
    /// High half: the epoch, bumped when a stale count is dropped. Low half:
    /// threads asleep or about to sleep.
    word: AtomicU64,
    /// `CLOCK_MONOTONIC` milliseconds after which every thread counted so far
    /// has woken by itself (or is dead, or stopped).
    until: AtomicU64,
}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Sleepers>() == 16);

/// What a sleeper leaves with: the epoch it was counted in.
#[must_use]
pub struct Ticket(u32);

impl Default for Sleepers {
    fn default() -> Sleepers {
        Sleepers::new()
    }
}

impl Sleepers {
    /// An empty count.
    pub fn new() -> Sleepers {
        Sleepers {
            word: AtomicU64::new(0),
            until: AtomicU64::new(0),
        }
    }

    /// Whether anyone may sleep. SeqCst: the callers' protocols order this
    /// read after their own SeqCst change of the futex word, against
    /// [`enter`](Sleepers::enter) before the sleeper's read of it.
    #[inline]
    pub fn any(&self) -> bool {
        self.word.load(Ordering::SeqCst) as u32 != 0
    }

    /// Counts the caller in before it sleeps at most `bound` (SeqCst, see
    /// [`any`](Sleepers::any)). A sleep without a bound must be cut into
    /// bounded ones, each counted in and out.
    pub fn enter(&self, bound: Duration) -> Ticket {
        self.until.fetch_max(sleep_ends_by(bound), Ordering::SeqCst);
        Ticket((self.word.fetch_add(1, Ordering::SeqCst) >> 32) as u32)
    }

    /// Counts the caller out, unless its count was dropped as stale meanwhile.
    pub fn leave(&self, ticket: Ticket) {
        let mut w = self.word.load(Ordering::Relaxed);
        // A word a peer scribbled over may say anything: the loop ends when the
        // epoch moved, the count is 0, or the decrement lands.
        while (w >> 32) as u32 == ticket.0 && w as u32 != 0 {
            match self
                .word
                .compare_exchange_weak(w, w - 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => w = now,
            }
        }
    }

    /// One counted, bounded sleep: counts the caller in, calls `wait` with the
    /// earlier of `deadline` and one owner check interval from now, counts the
    /// caller out, and returns what `wait` returned. Callers loop, looking
    /// again between sleeps, until their condition or their own deadline.
    pub fn sleep(
        &self,
        deadline: Option<Deadline>,
        wait: impl FnOnce(Option<&Deadline>) -> bool,
    ) -> bool {
        if deadline.as_ref().is_some_and(Deadline::passed) {
            // Out of time already (a zero timeout): no sleep, no futex call,
            // no count to take back.
            return false;
        }
        let interval = owner_check_interval();
        let ticket = self.enter(interval);
        let woke = wait(Deadline::earliest(deadline, Deadline::after(interval)).as_ref());
        self.leave(ticket);
        woke
    }

    /// After a wake-up that woke nobody: drops the count if it is stale.
    #[cold]
    pub fn woke_nobody(&self) {
        let w = self.word.load(Ordering::SeqCst);
        if w as u32 != 0 && overdue(self.until.load(Ordering::SeqCst)) {
            let next_epoch = u64::from(((w >> 32) as u32).wrapping_add(1)) << 32;
            let _ = self
                .word
                .compare_exchange(w, next_epoch, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    /// Sleepers counted now, live or not (for tests and diagnostics).
    pub fn count(&self) -> u32 {
        self.word.load(Ordering::Relaxed) as u32
    }
}

/// A time stamp for shared memory: the `CLOCK_MONOTONIC` millisecond by which a
/// sleep of at most `bound` that starts now has surely ended — a second of slack
/// included, for a thread descheduled between stamping and sleeping. Every
/// process reads the same clock; see [`overdue`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use multiproc_sync::futex::{overdue, sleep_ends_by};
/// assert!(!overdue(sleep_ends_by(Duration::from_millis(1))));
/// assert!(overdue(0));
/// ```
pub fn sleep_ends_by(bound: Duration) -> u64 {
    let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    now_ms().saturating_add(bound_ms).saturating_add(SLACK_MS)
}

/// Whether the time [`sleep_ends_by`] stamped has passed: every sleep it
/// covered has ended, so a sleeper still recorded then is dead (or stopped).
/// Never true under loom, whose futex stand-in never says it woke nobody.
pub fn overdue(stamp: u64) -> bool {
    !cfg!(multiproc_loom) && now_ms() > stamp
}

/// `CLOCK_MONOTONIC` in milliseconds: one clock for every process.
#[cfg(not(multiproc_loom))]
fn now_ms() -> u64 {
    let t = crate::sys::now();
    (t.tv_sec as u64).saturating_mul(1000) + t.tv_nsec as u64 / 1_000_000
}

/// Under loom no count is ever stale (see `overdue`).
#[cfg(multiproc_loom)]
fn now_ms() -> u64 {
    0
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_stale_count_is_dropped_and_its_sleepers_leave_without_touching_the_new_one() {
        let s = Sleepers::new();
        let dead = s.enter(Duration::from_millis(5));
        assert!(s.any());
        s.woke_nobody();
        assert_eq!(s.count(), 1, "not stale before its bound and the slack");
        s.until.store(0, Ordering::SeqCst); // as if that time had passed
        s.woke_nobody();
        assert_eq!(s.count(), 0);
        assert!(!s.any());
        let live = s.enter(Duration::from_millis(5));
        s.leave(dead);
        assert_eq!(
            s.count(),
            1,
            "the old epoch's leave leaves the new count alone"
        );
        s.leave(live);
        assert_eq!(s.count(), 0);
        s.leave(Ticket(1));
        assert_eq!(s.count(), 0, "never below zero");
    }
}
