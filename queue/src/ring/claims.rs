//! Announcing claims, and finding and skipping the claim of a dead peer (see
//! the module docs of [`ring`](super)).
//!
//! A single claim (every `put`/`get` fast path) writes only the first position
//! of its announcement; the end left by an earlier batch of the same thread is
//! then at most that position (the cursor only grows, and a lost batch resets
//! it), which reads as "one position": one store less per operation.

use super::{free_for, holding, Ring};
use crate::layout::{Participant, IDLE, PARTICIPANTS};
use crate::primitive::{current_thread, thread_alive, AtomicU64, Ordering};
use crate::Corruption;

/// Where a claimer announces the positions it is about to claim: one of a
/// participant's two ranges (putting or getting).
#[derive(Clone, Copy)]
pub(crate) struct Claims<'a> {
    first: &'a AtomicU64,
    end: &'a AtomicU64,
}

impl Claims<'_> {
    /// The positions `p` is putting.
    pub(crate) fn puts(p: &Participant) -> Claims<'_> {
        Claims {
            first: &p.put_pos,
            end: &p.put_end,
        }
    }

    /// The positions `p` is getting.
    pub(crate) fn gets(p: &Participant) -> Claims<'_> {
        Claims {
            first: &p.get_pos,
            end: &p.get_end,
        }
    }

    /// Announces `first..first + n` (before the claim). A single position writes
    /// only `first`: the `end` a batch left is at most any position its owner
    /// claims later (the cursor only grows), and reads as "one position".
    #[inline(always)]
    fn announce(self, first: u64, n: u64) {
        self.first.store(first, Ordering::Relaxed);
        if n != 1 {
            self.end.store(first.wrapping_add(n), Ordering::Relaxed);
        }
    }

    /// The announced positions as `(first, end)`, if any: one position when
    /// `end` is not past `first` (read from shared memory, so the arithmetic
    /// wraps rather than trusting either).
    fn range(self) -> Option<(u64, u64)> {
        let first = self.first.load(Ordering::Acquire);
        let end = self.end.load(Ordering::Acquire);
        if first == IDLE {
            return None;
        }
        let len = end.wrapping_sub(first);
        Some((
            first,
            first.wrapping_add(if len as i64 > 0 { len } else { 1 }),
        ))
    }

    /// Whether the announced range holds `pos`.
    fn covers(self, pos: u64) -> bool {
        self.range()
            .is_some_and(|(first, end)| pos.wrapping_sub(first) < end.wrapping_sub(first))
    }

    /// Announces nothing (and forgets a batch's end, which a lost claim may have
    /// left past positions its owner claims next).
    #[inline(always)]
    fn clear(self) {
        self.first.store(IDLE, Ordering::Relaxed);
        self.end.store(0, Ordering::Relaxed);
    }
}

impl Ring {
    /// This thread's participant entry, claimed on first use.
    #[inline]
    pub fn participant(&self) -> Option<&Participant> {
        let me = current_thread();
        let parts = &self.ctl().participants;
        let start = start_index(me);
        let p = &parts[start];
        if p.owner.load(Ordering::Relaxed) == me {
            return Some(p);
        }
        self.participant_slow(me, start)
    }
    #[cold]
    pub(super) fn participant_slow(&self, me: u64, start: usize) -> Option<&Participant> {
        let parts = &self.ctl().participants;
        let order = || (0..PARTICIPANTS).map(|i| &parts[(start + i) % PARTICIPANTS]);
        if let Some(p) = order().find(|p| p.owner.load(Ordering::Relaxed) == me) {
            return Some(p);
        }
        for p in order() {
            let owner = p.owner.load(Ordering::Acquire);
            let free = owner == 0 || (!thread_alive(owner) && self.settled(p));
            if free
                && p.owner
                    .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                Claims::puts(p).clear();
                Claims::gets(p).clear();
                // A dead owner may have been killed asleep; we are not.
                let w = &self.ctl().wake.0;
                let bit = self.sleeper_bit(p);
                w.get_sleepers.fetch_and(!bit, Ordering::AcqRel);
                w.put_sleepers.fetch_and(!bit, Ordering::AcqRel);
                return Some(p);
            }
        }
        None
    }
    /// When no entry of the participant table can be taken: whether that is a
    /// peer's garbage rather than 64 threads in use. An entry whose owner is
    /// dead and whose announced claim no run of the protocol makes — positions
    /// past the cursor they are claimed from (a claimer announces what it read
    /// from the cursor, which only grows), or more than a capacity of them —
    /// would never settle, and would keep every later thread out for good.
    pub(crate) fn garbage_participant(&self) -> Option<Corruption> {
        let c = self.ctl();
        for p in &c.participants {
            let owner = p.owner.load(Ordering::Acquire);
            // Dead first: its claim and the cursor are read after its end, so
            // the cursor is at least what the owner read from it.
            if owner == 0 || thread_alive(owner) {
                continue;
            }
            for (claims, cursor) in [(Claims::puts(p), &c.tail.0), (Claims::gets(p), &c.head.0)] {
                let Some((first, end)) = claims.range() else {
                    continue;
                };
                let cursor = cursor.load(Ordering::Acquire);
                if first > cursor || end.wrapping_sub(first) > self.cap {
                    return Some(Corruption::Claim { first, end, cursor });
                }
            }
        }
        None
    }

    /// Whether a dead participant's last claims are resolved, so that its entry may
    /// be reused without hiding a claim a waiter still needs to find.
    pub(super) fn settled(&self, p: &Participant) -> bool {
        let c = self.ctl();
        // Every position it put has been taken; every slot it got has been
        // refilled for the next lap (so it was freed).
        Claims::puts(p)
            .range()
            .is_none_or(|(_, end)| end <= c.head.0.load(Ordering::Acquire))
            && Claims::gets(p).range().is_none_or(|(_, end)| {
                end.saturating_add(self.cap) <= c.tail.0.load(Ordering::Acquire)
            })
    }
    /// Claims `pos..pos + n` of `cursor` (`tail` or `head`) if nobody else claimed
    /// `pos` first, announcing the range in `claims` before (see the module docs)
    /// and withdrawing it if the claim fails. `Err` holds the cursor's value.
    #[inline(always)]
    pub(super) fn claim(
        &self,
        cursor: &AtomicU64,
        pos: u64,
        n: u64,
        claims: Option<Claims<'_>>,
    ) -> Result<(), u64> {
        let end = pos.wrapping_add(n);
        if let Some(c) = claims {
            c.announce(pos, n);
        }
        // SYNC: a peer that sees the cursor past pos (Acquire) also sees the
        // announcement. SeqCst: see `wake_consumers` and `wake_producers`.
        match cursor.compare_exchange(pos, end, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            Err(now) => {
                // Lost to another claimer: withdraw the announcement (two
                // stores, inline: a call here costs the fast paths registers).
                if let Some(c) = claims {
                    c.clear();
                }
                Err(now)
            }
        }
    }
    /// Frees this thread's entry (when its handle goes away).
    pub(crate) fn release_participant(&self) {
        let me = current_thread();
        for p in &self.ctl().participants {
            let _ = p
                .owner
                .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
    /// Consumer side: if every thread that may have claimed `pos` for putting is
    /// dead, take the position, free its slot and count the message lost.
    pub fn skip_dead_producer(&self, pos: u64) -> bool {
        let c = self.ctl();
        let (h, _) = self.slot(pos);
        if h.seq.load(Ordering::Acquire) != free_for(pos) || !self.claimers_dead(pos, Claims::puts)
        {
            return false;
        }
        if c.head
            .0
            .compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        h.seq
            .store(free_for(pos.wrapping_add(self.cap)), Ordering::SeqCst);
        self.count_lost();
        self.wake_producers(1);
        true
    }
    /// Producer side: if every thread that may have claimed position `round` for
    /// getting is dead, free its slot and count the message lost.
    ///
    /// A large message's announcement is marked first in the lane's
    /// `skipped`: the lane's decision that the stream's taker is gone (see
    /// `large`) then knows the loss is counted here, and counts nothing more.
    pub(crate) fn skip_dead_consumer(&self, round: u64) -> bool {
        if !self.claimers_dead(round, Claims::gets) {
            return false;
        }
        let (h, _) = self.slot(round);
        // SYNC: Acquire pairs with the publication of the message at `round`
        // (its length is read below).
        if h.seq.load(Ordering::Acquire) != holding(round) {
            return false;
        }
        if self.len_of(&h).1 {
            // SYNC: SeqCst, before the SeqCst free below: a decider that sees
            // the slot freed sees the mark (`takers_loss_counted`).
            self.ctl()
                .lane
                .0
                .skipped
                .fetch_max(round.wrapping_add(1), Ordering::SeqCst);
        }
        let freed = h
            .seq
            .compare_exchange(
                holding(round),
                free_for(round.wrapping_add(self.cap)),
                Ordering::SeqCst,
                // A failure is a look in the SeqCst order too: a decider
                // that lost to another skip sees that skip's mark.
                Ordering::SeqCst,
            )
            .is_ok();
        if freed {
            self.count_lost();
            self.wake_producers(1);
        }
        freed
    }
    /// Whether the loss of the large message announced at `first`, whose
    /// taker died before it registered for the stream, is counted already
    /// (else the lane's caller counts it). A taker killed between its claim
    /// of the announcement and the free of its slot leaves the slot held,
    /// and the skip of a dead consumer's slot counts the message when it
    /// frees it (a producer that comes round to it, or a joiner); the lane
    /// counting it too made two losses of one message. So the slot, if still
    /// held, is freed here by that same skip (which counts it, once, whoever
    /// frees it); freed by another's skip, `skipped` says so; freed by the
    /// taker itself (it died after), the loss is not counted yet.
    pub(crate) fn takers_loss_counted(&self, first: u64) -> bool {
        if self.skip_dead_consumer(first) {
            return true;
        }
        // SYNC: after the skip's look at the slot (Acquire, or a SeqCst
        // compare-and-swap that failed): a skip that freed it marked
        // `skipped` before its free.
        self.ctl().lane.0.skipped.load(Ordering::SeqCst) > first
    }
    /// A joiner's look for dead claims that nobody else may ever resolve: the
    /// message at `head` that a dead producer claimed and never published (a
    /// consumer resolves it only when it comes to get), and every slot a dead
    /// consumer claimed and never freed (a producer resolves it only when it
    /// comes round to put). Each is freed and counted lost exactly once (the
    /// same compare-and-swaps as the skips above), so the unfinished count no
    /// longer waits for puts or gets that may never come. How many it resolved.
    pub(crate) fn resolve_dead_claims(&self) -> u64 {
        let c = self.ctl();
        let head = c.head.0.load(Ordering::Acquire);
        let mut resolved = 0;
        if c.tail.0.load(Ordering::Acquire) > head && self.skip_dead_producer(head) {
            resolved += 1;
        }
        for p in &c.participants {
            if p.owner.load(Ordering::Acquire) == 0 {
                continue;
            }
            let Some((first, end)) = Claims::gets(p).range() else {
                continue;
            };
            // Positions already claimed (below head), at most a ring's worth
            // (the range is read from shared memory).
            let end = end.min(head);
            for pos in first.max(end.saturating_sub(self.cap))..end {
                let (h, _) = self.slot(pos);
                if h.seq.load(Ordering::Acquire) == holding(pos) && self.skip_dead_consumer(pos) {
                    resolved += 1;
                }
            }
        }
        resolved
    }

    /// Whether a live participant announced a get of a range holding `pos`. A
    /// claimer's announcement stays until its next claim, so this finds a live
    /// thread that took the message at `pos` and has not yet claimed another.
    pub(crate) fn live_getter(&self, pos: u64) -> bool {
        self.ctl().participants.iter().any(|p| {
            let owner = p.owner.load(Ordering::Acquire);
            owner != 0 && Claims::gets(p).covers(pos) && thread_alive(owner)
        })
    }

    /// Whether at least one participant announced a range holding `pos` in
    /// `claims`, and all that did are dead.
    pub(super) fn claimers_dead(&self, pos: u64, claims: fn(&Participant) -> Claims<'_>) -> bool {
        let mut dead = false;
        for p in &self.ctl().participants {
            let owner = p.owner.load(Ordering::Acquire);
            if owner == 0 || !claims(p).covers(pos) {
                continue;
            }
            if thread_alive(owner) {
                return false;
            }
            dead = true;
        }
        dead
    }
}

/// Where this thread's participant entry is looked for first: its tid modulo the
/// entries (tids are handed out in sequence, so threads started together land
/// apart; a collision only sends one of them on to the next free entry).
#[inline]
fn start_index(me: u64) -> usize {
    (me >> 32) as usize % PARTICIPANTS
}
