//! The bounded MPMC ring over the memory laid out in [`layout`](crate::layout):
//! Vyukov's algorithm with per-slot sequence numbers (doubled, so that any
//! capacity from 1 works) and 64-bit positions, plus the
//! bookkeeping that lets a waiter skip a slot whose producer or consumer died.
//!
//! # A claim is announced before it is made
//! Before a thread CASes `tail` (or `head`) from `pos` to `pos + n`, it writes
//! `pos..pos + n` into its participant entry; the CAS is a Release. So a consumer
//! that finds slot `pos` unpublished while `tail > pos` knows the claimer is one of
//! the participants whose put range covers `pos`. If every such participant's
//! thread is dead, the claim can never be completed: the consumer takes the
//! position itself, frees the slot for the next round, and counts the message
//! lost. Producers do the same for a consumer that died between claiming a
//! message and freeing its slot. A batch announces its whole range, so a claimer
//! that dies halfway through publishing (or freeing) a batch leaves every slot it
//! did not finish findable.
//!
//! A claimer whose CAS fails withdraws its announcement at once: a range left
//! behind by a lost race would name a live thread for a position another thread
//! claimed, and if that other thread died there, nobody could ever skip it.
//!
//! A single claim (every `put`/`get` fast path) writes only the first position;
//! the end left by an earlier batch of the same thread is then at most that
//! position (the cursor only grows, and a lost batch resets it), which reads as
//! "one position". One store less per operation: 1P→1C streaming measured 9.6
//! against 7.9 ns per message when every claim wrote both, alternating builds.

use std::ptr::NonNull;

use crate::layout::{Checked, Control, Participant, IDLE, PARTICIPANTS};
#[cfg(multiproc_loom)]
use crate::primitive::DataCells;
use crate::primitive::{current_thread, thread_alive, wake, AtomicU32, AtomicU64, Ordering};
use multiproc_sync::futex::overdue;

/// Why a push did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum PushFail {
    /// Every slot holds a message.
    Full,
    /// The slot for the next position is being emptied by a consumer (of position `0`).
    ConsumerInFlight(u64),
    /// A value in shared memory is impossible.
    Corrupted(String),
}

/// Why a pop did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum PopFail {
    /// No message.
    Empty,
    /// A producer claimed position `0` and has not published it yet.
    ProducerInFlight(u64),
    /// A value in shared memory is impossible.
    Corrupted(String),
}

/// A message to copy in: raw bytes (a `T` may have padding, so no `&[u8]`).
#[derive(Clone, Copy)]
pub struct Msg {
    /// Where its bytes are.
    pub ptr: *const u8,
    /// How many.
    pub len: usize,
}

/// `Ring::mask` of a capacity that is not a power of two (no capacity has this mask).
const NO_MASK: u64 = u64::MAX;

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

/// A slot's header: its sequence, and its message length in a variable-length ring.
struct SlotHeader<'a> {
    seq: &'a AtomicU64,
    len: Option<&'a AtomicU32>,
}

/// A view of a ring in some mapping; does not own the memory.
pub struct Ring {
    ctl: NonNull<Control>,
    slots: NonNull<u8>,
    slot_size: usize,
    cap: u64,
    /// `cap - 1` when cap is a power of two (index by mask), else [`NO_MASK`]
    /// (index by `%`).
    mask: u64,
    msg_max: usize,
    /// Every message is `msg_max` bytes; slots hold no length.
    fixed: bool,
    /// How far ahead a producer that found the ring full waits for room before
    /// it goes on (see `spin_for_room`): a quarter of the capacity, 0 below 8.
    slip: u64,
    /// How many positions on the slot whose line a producer asks for after it
    /// published (see `claim_next_line`): the first slot of the next cache
    /// line; 0 in a ring of fewer than four such lines.
    next_line: u64,
    /// Accesses to slot data, for the loom models.
    #[cfg(multiproc_loom)]
    cells: DataCells,
}

// SAFETY: Ring is pointers into a mapping whose owner keeps it alive as long as the
// Ring; everything it touches there is atomic or copied under the slot protocol.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// A view of the ring at `base`.
    ///
    /// # Safety
    /// - `base` holds a control block whose geometry `checked` was read from and
    ///   validated against the mapping, which outlives the Ring.
    pub(crate) unsafe fn new(base: NonNull<u8>, checked: &Checked) -> Ring {
        Ring {
            ctl: base.cast(),
            // SAFETY: the slots follow the control block inside the mapping (checked).
            slots: unsafe { base.add(std::mem::size_of::<Control>()) },
            slot_size: crate::layout::slot_size(checked.msg_max, checked.fixed),
            cap: checked.capacity as u64,
            mask: if checked.capacity.is_power_of_two() {
                checked.capacity as u64 - 1
            } else {
                NO_MASK
            },
            msg_max: checked.msg_max,
            fixed: checked.fixed,
            slip: if checked.capacity >= 8 {
                checked.capacity as u64 / 4
            } else {
                0
            },
            next_line: next_line_step(
                checked.capacity as u64,
                crate::layout::slot_size(checked.msg_max, checked.fixed),
            ),
            #[cfg(multiproc_loom)]
            cells: DataCells::new(checked.capacity),
        }
    }

    #[inline]
    pub(crate) fn ctl(&self) -> &Control {
        // SAFETY: the mapping outlives self (Ring::new's contract); Control is atomics only.
        unsafe { self.ctl.as_ref() }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap as usize
    }

    pub(crate) fn msg_max(&self) -> usize {
        self.msg_max
    }

    /// The header and data of the slot for `pos` (reduced: any position is in bounds).
    #[inline]
    fn slot(&self, pos: u64) -> (SlotHeader<'_>, *mut u8) {
        let p = self.slot_start(pos);
        // SAFETY: a slot starts with an 8-aligned u64 sequence, followed in a
        // variable-length ring by a u32 length (layout::slot_header bytes in all),
        // inside the mapping (slot_start).
        unsafe {
            (
                SlotHeader {
                    seq: &*p.cast::<AtomicU64>(),
                    len: (!self.fixed)
                        .then(|| &*p.add(crate::layout::LEN_OFFSET).cast::<AtomicU32>()),
                },
                p.add(crate::layout::slot_header(self.fixed)),
            )
        }
    }

    /// Where the slot of `pos` begins (reduced: any position is in bounds).
    #[inline(always)]
    fn slot_start(&self, pos: u64) -> *mut u8 {
        // SAFETY: index < cap, and cap slots of slot_size bytes lie in the mapping
        // (checked when the ring was made).
        unsafe { self.slots.as_ptr().add(self.index(pos) * self.slot_size) }
    }

    /// The slot index of `pos`.
    #[inline]
    fn index(&self, pos: u64) -> usize {
        (if self.mask != NO_MASK {
            pos & self.mask
        } else {
            pos % self.cap
        }) as usize
    }

    /// Tells the loom models that the data of `pos`'s slot is read now (nothing
    /// otherwise: not even the index is computed).
    #[inline(always)]
    fn track_read(&self, pos: u64) {
        #[cfg(multiproc_loom)]
        self.cells.read(self.index(pos));
        #[cfg(not(multiproc_loom))]
        let _ = pos;
    }

    /// As `track_read`, for a write.
    #[inline(always)]
    fn track_write(&self, pos: u64) {
        #[cfg(multiproc_loom)]
        self.cells.write(self.index(pos));
        #[cfg(not(multiproc_loom))]
        let _ = pos;
    }

    /// The length of the message in a claimed slot (unchecked: from shared memory).
    #[inline]
    fn len_of(&self, h: &SlotHeader<'_>) -> usize {
        h.len
            .map_or(self.msg_max, |l| l.load(Ordering::Relaxed) as usize)
    }

    /// Records the length of the message written into a claimed slot. In a
    /// fixed-length ring every message is `msg_max` bytes (the caller's promise).
    #[inline]
    fn set_len(&self, h: &SlotHeader<'_>, len: usize) {
        debug_assert!(h.len.is_some() || len == self.msg_max);
        if let Some(l) = h.len {
            l.store(len as u32, Ordering::Relaxed);
        }
    }

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
    fn participant_slow(&self, me: u64, start: usize) -> Option<&Participant> {
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

    /// Whether a dead participant's last claims are resolved, so that its entry may
    /// be reused without hiding a claim a waiter still needs to find.
    fn settled(&self, p: &Participant) -> bool {
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
    fn claim(
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

    /// Puts up to `msgs.len()` messages with one claim; returns how many.
    ///
    /// Every message must be at most `msg_max` bytes (the caller checks).
    pub fn try_push(&self, part: Option<&Participant>, msgs: &[Msg]) -> Result<usize, PushFail> {
        self.try_push_stopping(part, msgs, usize::MAX)
    }

    /// `try_push`, which publishes only the first `publish` of the messages it
    /// claims and returns without waking anyone when that leaves some out (the
    /// test hook for a producer killed halfway through a batch; `usize::MAX`
    /// otherwise).
    #[inline(always)]
    fn try_push_stopping(
        &self,
        part: Option<&Participant>,
        msgs: &[Msg],
        publish: usize,
    ) -> Result<usize, PushFail> {
        debug_assert!(msgs.iter().all(|m| m.len <= self.msg_max));
        let c = self.ctl();
        let mut pos = c.tail.0.load(Ordering::Relaxed);
        loop {
            let (h, _) = self.slot(pos);
            let seq = h.seq.load(Ordering::Acquire);
            let dif = seq.wrapping_sub(free_for(pos)) as i64;
            if dif == 0 {
                if msgs.len() > 1 {
                    self.claim_lines(pos, msgs.len() as u64);
                }
                // Free slots in a row from pos (at least this one).
                let n = 1
                    + (1..msgs.len() as u64)
                        .take_while(|&i| {
                            self.slot(pos.wrapping_add(i)).0.seq.load(Ordering::Acquire)
                                == free_for(pos.wrapping_add(i))
                        })
                        .count();
                match self.claim(&c.tail.0, pos, n as u64, part.map(Claims::puts)) {
                    Ok(()) => {
                        self.publish_claimed(pos, &msgs[..n.min(publish)]);
                        if publish >= n {
                            self.claim_next_line(pos.wrapping_add(n as u64 - 1));
                            self.wake_consumers(n as u32);
                        }
                        return Ok(n);
                    }
                    Err(t) => pos = t,
                }
            } else if dif < 0 {
                let Some(round) = pos.checked_sub(self.cap) else {
                    return Err(PushFail::Corrupted(format!(
                        "slot of position {pos} has sequence {seq}"
                    )));
                };
                // The slot still holds round `round`'s message: full, unless a
                // consumer has claimed it and not yet freed it.
                return Err(if c.head.0.load(Ordering::Acquire) > round {
                    PushFail::ConsumerInFlight(round)
                } else {
                    PushFail::Full
                });
            } else {
                let t = c.tail.0.load(Ordering::Relaxed);
                if t == pos {
                    return Err(PushFail::Corrupted(format!(
                        "slot of position {pos} has sequence {seq}, ahead of the tail"
                    )));
                }
                pos = t;
            }
        }
    }

    /// Copies `msgs` into the slots claimed from `pos` and publishes them.
    #[inline(always)]
    fn publish_claimed(&self, pos: u64, msgs: &[Msg]) {
        for (i, m) in msgs.iter().enumerate() {
            let (h, data) = self.slot(pos.wrapping_add(i as u64));
            self.track_write(pos.wrapping_add(i as u64));
            // SAFETY: the claim gives us this slot until we publish it; m.len <=
            // msg_max fits its data area; m.ptr is valid for m.len bytes (caller).
            unsafe { std::ptr::copy_nonoverlapping(m.ptr, data, m.len) };
            self.set_len(&h, m.len);
            // SYNC: publishes the message (pairs with the Acquire load of seq in
            // try_pop).
            h.seq
                .store(holding(pos.wrapping_add(i as u64)), Ordering::Release);
        }
    }

    /// Takes up to `max` messages with one claim, handing each to `sink` (copied
    /// into private memory with volatile reads first); returns how many.
    pub fn try_pop(
        &self,
        part: Option<&Participant>,
        max: usize,
        scratch: &mut [u8],
        sink: impl FnMut(&[u8]),
    ) -> Result<usize, PopFail> {
        self.try_pop_stopping(part, max, scratch, sink, usize::MAX)
    }

    /// `try_pop`, which takes and frees only the first `take` of the messages it
    /// claims (the test hook for a consumer killed halfway through a batch;
    /// `usize::MAX` otherwise).
    #[inline(always)]
    fn try_pop_stopping(
        &self,
        part: Option<&Participant>,
        max: usize,
        scratch: &mut [u8],
        mut sink: impl FnMut(&[u8]),
        take: usize,
    ) -> Result<usize, PopFail> {
        debug_assert!(scratch.len() >= self.msg_max && max >= 1);
        let c = self.ctl();
        let mut pos = c.head.0.load(Ordering::Relaxed);
        loop {
            let (h, _) = self.slot(pos);
            let seq = h.seq.load(Ordering::Acquire);
            let dif = seq.wrapping_sub(holding(pos)) as i64;
            if dif == 0 {
                let n = 1
                    + (1..max as u64)
                        .take_while(|&i| {
                            self.slot(pos.wrapping_add(i)).0.seq.load(Ordering::Acquire)
                                == holding(pos.wrapping_add(i))
                        })
                        .count();
                match self.claim(&c.head.0, pos, n as u64, part.map(Claims::gets)) {
                    Ok(()) => return self.take_claimed(pos, n, scratch, &mut sink, take),
                    Err(hd) => pos = hd,
                }
            } else if dif < 0 {
                return Err(if c.tail.0.load(Ordering::Acquire) > pos {
                    PopFail::ProducerInFlight(pos)
                } else {
                    PopFail::Empty
                });
            } else {
                let hd = c.head.0.load(Ordering::Relaxed);
                if hd == pos {
                    return Err(PopFail::Corrupted(format!(
                        "slot of position {pos} has sequence {seq}, ahead of the head"
                    )));
                }
                pos = hd;
            }
        }
    }

    /// Copies out and frees the `n` slots claimed from `pos` (only the first
    /// `take` of them, returning without waking anyone, in the test hook).
    fn take_claimed(
        &self,
        pos: u64,
        n: usize,
        scratch: &mut [u8],
        sink: &mut impl FnMut(&[u8]),
        take: usize,
    ) -> Result<usize, PopFail> {
        if take < n {
            let _ = self.take_claimed(pos, take, scratch, sink, take);
            return Ok(n);
        }
        let mut bad = None;
        for i in 0..n as u64 {
            let (h, data) = self.slot(pos.wrapping_add(i));
            let len = self.len_of(&h);
            let ok = len <= self.msg_max;
            if ok {
                self.track_read(pos.wrapping_add(i));
                copy_out(data, &mut scratch[..len]);
            }
            // SYNC: frees the slot for position pos + i + cap (pairs with the
            // Acquire load of seq in try_push).
            h.seq.store(
                free_for(pos.wrapping_add(i).wrapping_add(self.cap)),
                Ordering::Release,
            );
            if ok {
                sink(&scratch[..len]);
            } else {
                self.count_lost();
                bad.get_or_insert_with(|| self.oversize(pos.wrapping_add(i), len));
            }
        }
        self.wake_producers(n as u32);
        match bad {
            Some(e) => Err(PopFail::Corrupted(e)),
            None => Ok(n),
        }
    }

    /// What `Corrupted` says of a message whose length is over what a slot holds.
    #[cold]
    fn oversize(&self, pos: u64, len: usize) -> String {
        format!(
            "message of position {pos} claims {len} bytes, over the {} a slot holds",
            self.msg_max
        )
    }

    /// Test hook: announce and claim the next position for putting, then stop (as
    /// a producer killed right after its claim would).
    pub(crate) fn claim_put_and_stop(&self, part: Option<&Participant>) {
        let pos = self.ctl().tail.0.load(Ordering::Acquire);
        self.claim_at(part, pos, 1, false);
    }

    /// Test hook: announce and claim the next message, then stop (as a consumer
    /// killed right after its claim would).
    pub(crate) fn claim_get_and_stop(&self, part: Option<&Participant>) {
        let pos = self.ctl().head.0.load(Ordering::Acquire);
        self.claim_at(part, pos, 1, true);
    }

    /// Test hook: claims the next slot for putting (if it is free) as `push_one`
    /// does, calls `pause` (a producer stopped between claim and publish), then
    /// publishes `msg`; whether it claimed. A fixed-length ring only.
    pub(crate) fn put_with_pause(
        &self,
        part: Option<&Participant>,
        msg: Msg,
        pause: impl FnOnce(),
    ) -> bool {
        let Some((pos, _)) = self.claim_one(&self.ctl().tail.0, free_for, part.map(Claims::puts))
        else {
            return false;
        };
        pause();
        self.publish_claimed(pos, &[msg]);
        self.wake_consumers(1);
        true
    }

    /// Test hook: claims the next message (if there is one) as `pop_one` does,
    /// calls `pause` (a consumer stopped between claim and free), then takes it
    /// into `scratch` and frees its slot; whether it claimed. A fixed-length ring
    /// only.
    pub(crate) fn get_with_pause(
        &self,
        part: Option<&Participant>,
        scratch: &mut [u8],
        pause: impl FnOnce(),
    ) -> bool {
        let Some((pos, _)) = self.claim_one(&self.ctl().head.0, holding, part.map(Claims::gets))
        else {
            return false;
        };
        pause();
        self.take_claimed(pos, 1, scratch, &mut |_| {}, usize::MAX)
            .is_ok()
    }

    /// Test hook: `try_push` that claims slots for all of `msgs` (if that many
    /// are free) and publishes only the first `publish`, as a producer killed
    /// halfway through a batch; returns how many it claimed.
    pub(crate) fn push_some_and_stop(
        &self,
        part: Option<&Participant>,
        msgs: &[Msg],
        publish: usize,
    ) -> Result<usize, PushFail> {
        self.try_push_stopping(part, msgs, publish)
    }

    /// Test hook: `try_pop` that claims up to `max` messages and takes only the
    /// first `take`, as a consumer killed halfway through a batch.
    pub(crate) fn pop_some_and_stop(
        &self,
        part: Option<&Participant>,
        max: usize,
        take: usize,
        scratch: &mut [u8],
    ) -> Result<usize, PopFail> {
        self.try_pop_stopping(part, max, scratch, |_| {}, take)
    }

    /// Test hook: tries to claim positions `pos..pos + n` for putting (`get`: for
    /// getting) as a claimer that read the cursor as `pos` would; whether it won.
    /// A claim that loses leaves no announcement behind.
    pub(crate) fn claim_at(&self, part: Option<&Participant>, pos: u64, n: u64, get: bool) -> bool {
        let c = self.ctl();
        if get {
            self.claim(&c.head.0, pos, n, part.map(Claims::gets))
                .is_ok()
        } else {
            self.claim(&c.tail.0, pos, n, part.map(Claims::puts))
                .is_ok()
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
    pub(crate) fn skip_dead_consumer(&self, round: u64) -> bool {
        if !self.claimers_dead(round, Claims::gets) {
            return false;
        }
        let (h, _) = self.slot(round);
        let freed = h
            .seq
            .compare_exchange(
                holding(round),
                free_for(round.wrapping_add(self.cap)),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok();
        if freed {
            self.count_lost();
            self.wake_producers(1);
        }
        freed
    }

    /// Counts one message lost (to a dead peer or to corruption). In a
    /// `JoinableQueue` it can never be marked done, so it leaves the unfinished
    /// count too (see `unfinished`): otherwise `join` would wait for it forever.
    #[cold]
    fn count_lost(&self) {
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

    /// Whether at least one participant announced a range holding `pos` in
    /// `claims`, and all that did are dead.
    fn claimers_dead(&self, pos: u64, claims: fn(&Participant) -> Claims<'_>) -> bool {
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

    /// Wakes sleeping consumers after a publication.
    ///
    /// No wake-up is lost although the publication is a plain Release store: our
    /// SeqCst CAS on `tail` precedes this SeqCst load of `get_sleepers`, and a
    /// consumer sets its bit there (SeqCst) before it reads `tail` (SeqCst) to
    /// decide whether to sleep. If this load misses the consumer, the consumer's
    /// read sees our claim, and it waits for the publication without sleeping on
    /// the futex (see `RawQueue::sleep_for_message`).
    #[inline]
    fn wake_consumers(&self, n: u32) {
        if self.ctl().wake.0.get_sleepers.load(Ordering::SeqCst) != 0 {
            self.wake_consumers_now(n);
        }
    }

    /// The wake-up itself, out of line: the fast paths stay small.
    #[cold]
    #[inline(never)]
    fn wake_consumers_now(&self, n: u32) {
        let w = &self.ctl().wake.0;
        w.put_seq.fetch_add(1, Ordering::Release);
        if wake(&w.put_seq, n) == 0 && overdue(w.sleep_until.load(Ordering::Acquire)) {
            self.forget_dead_sleepers(&w.get_sleepers);
        }
    }

    /// Wakes sleeping producers after slots were freed; the mirror image of
    /// `wake_consumers`, with `head` and `put_sleepers`.
    #[inline]
    fn wake_producers(&self, n: u32) {
        if self.ctl().wake.0.put_sleepers.load(Ordering::SeqCst) != 0 {
            self.wake_producers_now(n);
        }
    }

    /// The wake-up itself, out of line: the fast paths stay small.
    #[cold]
    #[inline(never)]
    fn wake_producers_now(&self, n: u32) {
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
    fn forget_dead_sleepers(&self, mask: &AtomicU64) {
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

    /// Whether the slot the next put needs is free (a re-check before sleeping).
    pub(crate) fn has_room(&self) -> bool {
        let pos = self.ctl().tail.0.load(Ordering::Acquire);
        self.slot(pos).0.seq.load(Ordering::Acquire) == free_for(pos)
    }

    /// Whether the next message is published (a re-check before sleeping).
    pub(crate) fn has_message(&self) -> bool {
        let pos = self.ctl().head.0.load(Ordering::Acquire);
        self.slot(pos).0.seq.load(Ordering::Acquire) == holding(pos)
    }

    /// Whether a producer has claimed the position a consumer needs next (so a
    /// message is coming: no need to sleep for it). SeqCst: see `wake_consumers`.
    pub(crate) fn message_claimed(&self) -> bool {
        let c = self.ctl();
        c.tail.0.load(Ordering::SeqCst) > c.head.0.load(Ordering::SeqCst)
    }

    /// The next position, if a producer has claimed it and not yet published
    /// it (or died before it could).
    pub(crate) fn claim_in_flight(&self) -> Option<u64> {
        let c = self.ctl();
        let pos = c.head.0.load(Ordering::Acquire);
        (c.tail.0.load(Ordering::Acquire) > pos && !self.has_message()).then_some(pos)
    }

    /// Whether a consumer has claimed the message in the slot the next put needs
    /// (so it is about to be freed). SeqCst: see `wake_producers`.
    pub(crate) fn room_claimed(&self) -> bool {
        let c = self.ctl();
        let tail = c.tail.0.load(Ordering::SeqCst);
        c.head.0.load(Ordering::SeqCst).saturating_add(self.cap) > tail
    }

    /// Whether every message of this ring is `msg_max` bytes long.
    pub(crate) fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// Whether this ring can carry `T`s on the one-message fast paths: fixed
    /// length, and messages of exactly `size_of::<T>()` bytes. `Queue<T>` checks
    /// it once, when it attaches.
    pub(crate) fn fits_fixed<T>(&self) -> bool {
        self.fixed && self.msg_max == std::mem::size_of::<T>()
    }

    /// The sequence of the slot for `pos` (in either kind of ring: it starts
    /// every slot).
    #[inline(always)]
    fn seq_of(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: as in `slot`.
        unsafe { &*self.slot_start(pos).cast::<AtomicU64>() }
    }

    /// Pauses (taking one of `spins` per pause) while the slot of `pos` still says
    /// `waiting` — empty for a consumer, holding the last lap's message for a
    /// producer — and returns at once if it says anything else (ready, or moved
    /// on by a peer: the caller's next try sorts that out). A waiter that spins
    /// this way reads one word, which its peer is about to write, and leaves the
    /// core to its sibling between reads.
    ///
    /// It pauses at least once, so that a caller that retries until `spins` run
    /// out ends even when the slot holds something unexpected (a peer's garbage).
    #[inline(always)]
    fn spin_on_slot(&self, pos: u64, waiting: u64, spins: &mut u32) {
        let seq = self.seq_of(pos);
        loop {
            *spins = spins.saturating_sub(1);
            crate::primitive::spin();
            if *spins == 0 || seq.load(Ordering::Relaxed) != waiting {
                return;
            }
        }
    }

    /// Spins (see `spin_on_slot`) while the slot of the next message is empty.
    #[inline(always)]
    pub(crate) fn spin_for_message(&self, spins: &mut u32) {
        let pos = self.ctl().head.0.load(Ordering::Relaxed);
        self.spin_on_slot(pos, free_for(pos), spins);
    }

    /// Spins (see `spin_on_slot`) while the slot the next put needs still holds
    /// the message of the lap before — and then, while spins are left, until
    /// the slot a quarter of the ring further on is free too. A producer that
    /// found the ring full thus starts again only once the consumers are well
    /// ahead, and fills lines they have left instead of the one they are
    /// freeing: one producer to one consumer process, 8-byte messages, that
    /// took the median of 15 rounds from 15-19 ns per message to 8-10 here
    /// (the slow rounds went). It costs the consumers nothing: they have the
    /// rest of the ring to take meanwhile.
    #[inline(always)]
    pub(crate) fn spin_for_room(&self, spins: &mut u32) {
        let pos = self.ctl().tail.0.load(Ordering::Relaxed);
        self.spin_on_slot(pos, holding(pos.wrapping_sub(self.cap)), spins);
        if self.slip != 0 && *spins > 0 {
            let ahead = pos.wrapping_add(self.slip);
            self.spin_on_slot(ahead, holding(ahead.wrapping_sub(self.cap)), spins);
        }
    }

    /// Asks for the cache line of the next slot that does not share `pos`'s
    /// line, for writing. A producer asks once `pos` is published: the
    /// consumers freed that line a lap ago and hold it, and without the hint
    /// the producer's next claim (a locked instruction, which waits for every
    /// earlier store) would wait for it to cross. One producer to one consumer
    /// process, 8-byte messages, on an Intel Xeon VM whose line bounces in
    /// about 120 ns: 22-27 ns per message without (median of 7 rounds), 14-16
    /// with, alternating builds; the report's rows went from 17.8-19.0 to
    /// 13.2-13.4 ns, and two producers and two consumers from 29.5-32.1 to
    /// 25.2-26.1. Two to four lines ahead did worse (15-27 ns).
    ///
    /// A byte queue's consumer asks as soon as it has claimed `pos`, only
    /// where every slot has a line or more to itself (`next_line` is 1), so
    /// that the next message's line crosses while this one is copied out:
    /// through a `Pipe` (16 KiB slots), `recv_bytes` went from 71-77 to 56-58
    /// ns per message and `recv_bytes_into` from 49-51 to 48. With slots that
    /// share a line the consumer's hint took lines its producer was filling:
    /// 8-byte messages, 20-22 ns per message against 32-40. In a
    /// `Queue<[u64; 8]>` (128-byte slots) it made no difference we could see
    /// (49-61 ns against 51-60), so `pop_one` does not ask.
    ///
    /// Neither asks in a ring of fewer than four lines, where the next line
    /// may hold what a peer is reading or writing (a ping-pong through a ring
    /// of one slot).
    #[inline(always)]
    fn claim_next_line(&self, pos: u64) {
        if self.next_line != 0 {
            crate::primitive::prefetch_for_write(self.slot_start(pos.wrapping_add(self.next_line)));
        }
    }

    /// Asks for the lines of the slots from `pos` on that a batch of `n` puts
    /// will fill (at most a ring's worth), for writing, before the batch reads
    /// their sequences: the lines then cross once, together, instead of one
    /// after another and twice each (read, then written). One producer to one
    /// consumer process in batches of 32 8-byte messages, on the Intel Xeon VM
    /// of `claim_next_line`: 10.9-14.1 ns per message without (best of 7
    /// rounds, 16 runs), 9.7-11.8 with, alternating builds; the same in a
    /// consumer's batch did worse (13-14.5 ns against 11.3-13.4). Not in a
    /// ring of fewer than four lines.
    fn claim_lines(&self, pos: u64, n: u64) {
        if self.next_line == 0 {
            return;
        }
        let mut i = 0;
        while i < n.min(self.cap) {
            crate::primitive::prefetch_for_write(self.slot_start(pos.wrapping_add(i)));
            i += self.next_line;
        }
    }

    /// Claims the next position of `cursor` (`tail` or `head`) if its slot says
    /// `ready(pos)` and nobody claims it first, announcing it in `announce`
    /// before the claim (see the module docs): the shared first half of the
    /// one-message fast paths. Returns the position and its slot's sequence.
    #[inline(always)]
    fn claim_one(
        &self,
        cursor: &AtomicU64,
        ready: fn(u64) -> u64,
        claims: Option<Claims<'_>>,
    ) -> Option<(u64, &AtomicU64)> {
        let pos = cursor.load(Ordering::Relaxed);
        let seq = self.seq_of(pos);
        if seq.load(Ordering::Acquire) != ready(pos) {
            return None;
        }
        self.claim(cursor, pos, 1, claims).ok()?;
        Some((pos, seq))
    }

    /// Where the data of the slot whose sequence is `seq` begins, in a ring of
    /// fixed-length messages or not (`fixed`, which the fast paths know).
    #[inline(always)]
    fn data_after(seq: &AtomicU64, fixed: bool) -> *mut u8 {
        // SAFETY: seq starts a slot (seq_of), whose data follows its header
        // inside the slot.
        unsafe {
            (seq as *const AtomicU64)
                .cast::<u8>()
                .cast_mut()
                .add(crate::layout::slot_header(fixed))
        }
    }

    /// Puts one `T` if the next slot is free and nobody else claims it first: the
    /// fast path of `put`. `false` leaves the general path (`try_push`, the
    /// waiting) to find out why: it reads neither `head` nor anything else the
    /// consumers write, which would cost them the line.
    ///
    /// # Safety
    /// - [`fits_fixed::<T>`](Ring::fits_fixed) holds.
    #[inline(always)]
    pub(crate) unsafe fn push_one<T: Copy>(&self, part: Option<&Participant>, item: &T) -> bool {
        debug_assert!(self.fits_fixed::<T>());
        let Some((pos, seq)) = self.claim_one(&self.ctl().tail.0, free_for, part.map(Claims::puts))
        else {
            return false;
        };
        let data = Ring::data_after(seq, true);
        self.track_write(pos);
        // SAFETY: the claim gives us the slot; its data area holds msg_max ==
        // size_of::<T>() bytes (the caller's promise).
        unsafe { data.cast::<T>().write_unaligned(*item) };
        // SYNC: publishes the message (pairs with the Acquire load of seq in pop).
        seq.store(holding(pos), Ordering::Release);
        self.claim_next_line(pos);
        self.wake_consumers(1);
        true
    }

    /// Takes one `T` if the next message is published and nobody else claims it
    /// first: the fast path of `get`. `None` leaves the general path to find out
    /// why (reading `tail` here would cost the producer its cache line).
    ///
    /// # Safety
    /// - [`fits_fixed::<T>`](Ring::fits_fixed) holds, and `T` is valid for any
    ///   bytes (a peer may have written anything there).
    #[inline(always)]
    pub(crate) unsafe fn pop_one<T: Copy>(&self, part: Option<&Participant>) -> Option<T> {
        debug_assert!(self.fits_fixed::<T>());
        let (pos, seq) = self.claim_one(&self.ctl().head.0, holding, part.map(Claims::gets))?;
        let data = Ring::data_after(seq, true);
        self.track_read(pos);
        let item = if std::mem::align_of::<T>() <= 8 {
            // SAFETY: the claim gives us the slot; data is 8-aligned (so aligned for
            // T) and holds size_of::<T>() bytes; the volatile read copies whatever a
            // peer left there into private memory, and T is valid for any bytes
            // (the caller's promise).
            unsafe { data.cast::<T>().read_volatile() }
        } else {
            let mut v = std::mem::MaybeUninit::<T>::zeroed();
            // SAFETY: a zeroed MaybeUninit is size_of::<T>() initialised bytes.
            copy_out(data, unsafe {
                std::slice::from_raw_parts_mut(
                    v.as_mut_ptr().cast::<u8>(),
                    std::mem::size_of::<T>(),
                )
            });
            // SAFETY: every byte was written; T is valid for any bytes.
            unsafe { v.assume_init() }
        };
        // SYNC: frees the slot (pairs with the Acquire load of seq in push).
        seq.store(free_for(pos.wrapping_add(self.cap)), Ordering::Release);
        self.wake_producers(1);
        Some(item)
    }

    /// Puts one byte message if it fits a slot, the next slot is free and
    /// nobody else claims it first: the fast path of `ByteQueue`'s puts, as
    /// `push_one` is of `Queue`'s. `false` leaves the general path to find out
    /// why (and to refuse a message that does not fit).
    #[inline(always)]
    pub(crate) fn push_bytes_one(&self, part: Option<&Participant>, msg: &[u8]) -> bool {
        if msg.len() > self.msg_max {
            return false;
        }
        let Some((pos, _)) = self.claim_one(&self.ctl().tail.0, free_for, part.map(Claims::puts))
        else {
            return false;
        };
        self.publish_claimed(
            pos,
            &[Msg {
                ptr: msg.as_ptr(),
                len: msg.len(),
            }],
        );
        self.claim_next_line(pos);
        self.wake_consumers(1);
        true
    }

    /// Takes one message into `out` (replacing what it held) if the next message
    /// is published and nobody else claims it first: the fast path of
    /// `ByteQueue`'s gets. `None` leaves the general path to find out why. A
    /// length over `msg_max` (a peer's garbage) frees the slot, counts it lost
    /// and answers what is wrong, as `try_pop`'s `Corrupted` does.
    #[inline(always)]
    pub(crate) fn pop_bytes_one(
        &self,
        part: Option<&Participant>,
        out: &mut Vec<u8>,
    ) -> Option<Result<(), String>> {
        let (pos, _) = self.claim_one(&self.ctl().head.0, holding, part.map(Claims::gets))?;
        // Only where every slot has a line or more to itself (see claim_next_line).
        if self.next_line == 1 {
            self.claim_next_line(pos);
        }
        let (h, data) = self.slot(pos);
        // Read once: the check and the copy use this private value.
        let len = self.len_of(&h);
        let ok = len <= self.msg_max;
        if ok {
            self.track_read(pos);
            // Zero-fills only what the buffer grows by; the copy overwrites all.
            out.resize(len, 0);
            copy_out(data, out);
        }
        // SYNC: frees the slot (pairs with the Acquire load of seq in the puts).
        h.seq
            .store(free_for(pos.wrapping_add(self.cap)), Ordering::Release);
        self.wake_producers(1);
        if ok {
            return Some(Ok(()));
        }
        self.count_lost();
        Some(Err(self.oversize(pos, len)))
    }

    /// Messages in the ring now (approximate while others work).
    pub fn len(&self) -> usize {
        let c = self.ctl();
        let head = c.head.0.load(Ordering::Acquire);
        let tail = c.tail.0.load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.cap) as usize
    }
}

/// The sequence of a slot free for the producer of `pos`. Positions may come from
/// memory a peer scribbled on, so all arithmetic on them wraps.
#[inline]
fn free_for(pos: u64) -> u64 {
    pos.wrapping_mul(2)
}

/// The sequence of a slot holding the message of `pos`.
#[inline]
fn holding(pos: u64) -> u64 {
    pos.wrapping_mul(2).wrapping_add(1)
}

/// `Ring::next_line` for `capacity` slots of `slot_size` bytes (a power of two
/// up to a line, else whole lines; slots start on a line): the positions from a
/// slot to the first slot of the next line, or 0 when the ring has fewer than
/// four lines' worth of such steps.
fn next_line_step(capacity: u64, slot_size: usize) -> u64 {
    let step = (64 / slot_size).max(1) as u64;
    if capacity >= 4 * step {
        step
    } else {
        0
    }
}

/// Where this thread's participant entry is looked for first: its tid modulo the
/// entries (tids are handed out in sequence, so threads started together land
/// apart; a collision only sends one of them on to the next free entry).
#[inline]
fn start_index(me: u64) -> usize {
    (me >> 32) as usize % PARTICIPANTS
}

/// Copies `out.len()` bytes from shared memory with volatile reads, 8 at a time.
#[inline]
fn copy_out(src: *const u8, out: &mut [u8]) {
    let words = out.len() / 8;
    for i in 0..words {
        // SAFETY: src is 8-aligned slot data with at least out.len() bytes; the
        // volatile read copies whatever a peer left there into private memory.
        let w = unsafe { src.add(i * 8).cast::<u64>().read_volatile() };
        out[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }
    for (i, b) in out.iter_mut().enumerate().skip(words * 8) {
        // SAFETY: as above, one byte at a time for the tail.
        *b = unsafe { src.add(i).read_volatile() };
    }
}

#[cfg(test)]
mod tests {
    use super::next_line_step;

    #[test]
    fn the_line_a_producer_asks_for_is_the_next_one_and_never_its_own() {
        // 8-byte messages: 16-byte slots, four to a line.
        assert_eq!(next_line_step(1024, 16), 4);
        assert_eq!(next_line_step(16, 16), 4);
        // Fewer than four lines: no hint (it could take the line a consumer reads).
        assert_eq!(next_line_step(8, 16), 0);
        assert_eq!(next_line_step(1, 16), 0);
        // A slot of a line or more: the next slot.
        assert_eq!(next_line_step(64, 16 * 1024), 1);
        assert_eq!(next_line_step(4, 64), 1);
        assert_eq!(next_line_step(3, 128), 0);
        // Eight-byte slots (a queue of a zero-sized type: the sequence alone).
        assert_eq!(next_line_step(64, 8), 8);
        assert_eq!(next_line_step(31, 8), 0);
    }
}
