//! Sleepers and wake-ups, and the counts of lost and finished messages (see
//! the module docs of [`ring`](super)).
//!
//! A sleeping consumer (producer) sets its participant's bit in `get_sleepers`
//! (`put_sleepers`) with SeqCst, then looks at the ring once more, then sleeps on
//! `put_seq` (`get_seq`). A producer (consumer) claims with a SeqCst CAS, then
//! reads the mask (SeqCst): if it misses the sleeper's bit, the sleeper's last
//! look sees the claim, and it waits for the publication without sleeping.

use super::Ring;
use crate::layout::Participant;
use crate::primitive::{thread_alive, wake, AtomicU64, Ordering};
use multiproc_sync::futex::overdue;

impl Ring {
    /// Counts one message lost (to a dead peer or to corruption). In a
    /// `JoinableQueue` it can never be marked done, so it leaves the unfinished
    /// count too (see `unfinished`): otherwise `join` would wait for it forever.
    #[cold]
    pub(crate) fn count_lost(&self) {
        // SYNC: SeqCst, then the SeqCst reads in `wake_joiners`: see `join`.
        self.ctl().wake.0.lost.fetch_add(1, Ordering::SeqCst);
        self.wake_joiners();
    }
    /// A `JoinableQueue`'s unfinished items: every position claimed for putting
    /// (so every item put, published or not) that was neither marked done nor
    /// lost. Read from shared memory: it saturates rather than trusting the
    /// counts.
    pub(crate) fn unfinished(&self) -> u64 {
        self.unfinished_given(self.ctl().wake.0.done.load(Ordering::SeqCst))
    }
    /// `unfinished`, with `done` tasks done.
    pub(crate) fn unfinished_given(&self, done: u64) -> u64 {
        let w = &self.ctl().wake.0;
        let gone = done.saturating_add(w.lost.load(Ordering::SeqCst));
        self.ctl()
            .tail
            .0
            .load(Ordering::SeqCst)
            .saturating_sub(gone)
    }
    /// Wakes the threads in `join` if nothing is unfinished any more.
    pub(crate) fn wake_joiners(&self) {
        let w = &self.ctl().wake.0;
        if w.join_sleepers.any() && self.unfinished() == 0 {
            w.join_seq.fetch_add(1, Ordering::SeqCst);
            if wake(&w.join_seq, u32::MAX) == 0 {
                w.join_sleepers.woke_nobody();
            }
        }
    }
    /// Wakes sleeping consumers after a publication.
    ///
    /// No wake-up is lost although the publication is a plain Release store: our
    /// SeqCst CAS on `tail` precedes this SeqCst load of `get_sleepers`, and a
    /// consumer sets its bit there (SeqCst) before it reads `tail` (SeqCst) to
    /// decide whether to sleep. If this load misses the consumer, the consumer's
    /// read sees our claim, and it waits for the publication without sleeping on
    /// the futex (see `RawQueue::sleep_for_message`).
    #[inline]
    pub(super) fn wake_consumers(&self, n: u32) {
        if self.ctl().wake.0.get_sleepers.load(Ordering::SeqCst) != 0 {
            self.wake_consumers_now(n);
        }
    }
    /// The wake-up itself, out of line: the fast paths stay small.
    #[cold]
    #[inline(never)]
    pub(super) fn wake_consumers_now(&self, n: u32) {
        let w = &self.ctl().wake.0;
        w.put_seq.fetch_add(1, Ordering::Release);
        if wake(&w.put_seq, n) == 0 && overdue(w.sleep_until.load(Ordering::Acquire)) {
            self.forget_dead_sleepers(&w.get_sleepers);
        }
    }
    /// Wakes sleeping producers after slots were freed; the mirror image of
    /// `wake_consumers`, with `head` and `put_sleepers`.
    #[inline]
    pub(super) fn wake_producers(&self, n: u32) {
        if self.ctl().wake.0.put_sleepers.load(Ordering::SeqCst) != 0 {
            self.wake_producers_now(n);
        }
    }
    /// The wake-up itself, out of line: the fast paths stay small.
    #[cold]
    #[inline(never)]
    pub(super) fn wake_producers_now(&self, n: u32) {
        let w = &self.ctl().wake.0;
        w.get_seq.fetch_add(1, Ordering::Release);
        if wake(&w.get_seq, n) == 0 && overdue(w.sleep_until.load(Ordering::Acquire)) {
            self.forget_dead_sleepers(&w.put_sleepers);
        }
    }
    /// The bit of participant `p` in the sleeper masks (`Wake::get_sleepers`).
    pub(crate) fn sleeper_bit(&self, p: &Participant) -> u64 {
        let first = self.ctl().participants.as_ptr() as usize;
        let index = (p as *const Participant as usize - first) / std::mem::size_of::<Participant>();
        1 << index
    }
    /// How many consumers and producers the sleeper masks hold (for tests).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn sleepers(&self) -> (u32, u32) {
        let w = &self.ctl().wake.0;
        (
            w.get_sleepers.load(Ordering::Relaxed).count_ones(),
            w.put_sleepers.load(Ordering::Relaxed).count_ones(),
        )
    }
    /// Clears the bits in a sleeper mask of threads that cannot be asleep: their
    /// participant entry is free, or its owner is dead. A thread killed asleep
    /// never clears its own bit, and every put (or get) would pay a futex wake
    /// for it from then on. Called only when a wake found nobody asleep and every
    /// recorded sleep has surely ended (`Wake::sleep_until`): a live sleeper
    /// between setting its bit and sleeping — common in a sleeping ping-pong —
    /// costs no `/proc` reads, and a dead one is cleared about a second after
    /// it died.
    ///
    /// A bit cleared just as a new thread takes the entry over and goes to sleep
    /// loses that thread's wake-up, which costs it one check interval: every
    /// sleep is bounded by one.
    #[cold]
    pub(super) fn forget_dead_sleepers(&self, mask: &AtomicU64) {
        let parts = &self.ctl().participants;
        let mut m = mask.load(Ordering::Acquire);
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let owner = parts.get(i).map_or(0, |p| p.owner.load(Ordering::Acquire));
            if owner == 0 || !thread_alive(owner) {
                mask.fetch_and(!(1u64 << i), Ordering::AcqRel);
            }
        }
    }
}
