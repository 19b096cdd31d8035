//! The bounded MPMC ring over the memory laid out in [`layout`](crate::layout):
//! Vyukov's algorithm with per-slot sequence numbers and 64-bit positions, plus
//! the bookkeeping that lets a waiter skip a slot whose producer or consumer died.
//! The whole protocol is here; the submodules hold its parts:
//! [`claims`] (announcing claims, finding and skipping a dead peer's),
//! [`wake`] (sleepers and wake-ups, lost and finished counts) and [`hints`]
//! (cache-line requests).
//!
//! # Positions
//!
//! | word | written by | meaning |
//! |---|---|---|
//! | `tail` | producers (CAS) | the next position a producer claims |
//! | `head` | consumers (CAS) | the next position a consumer claims |
//!
//! Positions are 64-bit and never wrap; position `p` uses slot `p % capacity`
//! (a mask when the capacity is a power of two). A claim moves a cursor from `p`
//! to `p + n` with one compare-and-swap, taking positions `p..p + n`.
//!
//! Every run keeps `head ≤ tail ≤ head + capacity` (a consumer claims only
//! published positions; a producer only a slot whose last message was taken).
//! The cold paths, where a ring reads as empty or full, check it
//! ([`Ring::positions`]), and check that a claimed slot is not older than its
//! claim: a peer's garbage there is `Corrupted`, never a wait for a claim that
//! no thread made.
//!
//! # The states of a slot
//!
//! A slot's sequence, for the position `p` it serves (doubled, so that the three
//! states stay apart even in a ring of one slot):
//!
//! | `seq` | state | next step, by whom |
//! |---|---|---|
//! | `2p` ([`free_for`]) | free for the producer of `p` | a producer claims `p` (CAS `tail`), writes the message and its length, stores `2p + 1` |
//! | `2p + 1` ([`holding`]) | holds the message of `p` | a consumer claims `p` (CAS `head`), copies the message out, stores `2(p + capacity)` |
//! | `2(p + capacity)` | free for the producer of the next lap | as the first row, for `p + capacity` |
//!
//! A producer that finds `seq < 2p` has lapped the consumers: full, unless
//! `head > p − capacity`, when a consumer has claimed the old message and not
//! yet freed the slot ([`PushFail::ConsumerInFlight`]). A consumer that finds
//! `seq < 2p + 1` has caught up: empty, unless `tail > p`, when a producer has
//! claimed `p` and not yet published it ([`PopFail::ProducerInFlight`]).
//!
//! # Memory order
//!
//! | Release | pairs with the Acquire of | carries |
//! |---|---|---|
//! | the producer's store of `2p + 1` (`publish_claimed`, `push_one`, `push_bytes_one`) | the consumer's load of `seq` before its claim | the message and its length |
//! | the consumer's store of `2(p + capacity)` (`take_claimed`, `pop_one`, `pop_bytes_one`) | the producer's load of `seq` before its claim | the consumer is done reading the slot |
//! | the claim's CAS on `tail`/`head` (SeqCst) | a peer's Acquire load of the cursor | the claimer's announcement (see below) |
//!
//! The claim CAS is SeqCst for a second reason: it orders the claim before the
//! claimer's read of the sleeper masks, against a sleeper's SeqCst setting of its
//! bit before its last look at the ring, so that no wake-up is lost (see
//! [`wake`]).
//!
//! # A claim is announced before it is made
//! Before a thread CASes `tail` (or `head`) from `p` to `p + n`, it writes
//! `p..p + n` into its participant entry. So a consumer that finds slot `p`
//! unpublished while `tail > p` knows the claimer is one of the participants
//! whose put range covers `p`. If every such participant's thread is dead, the
//! claim can never be completed: the consumer takes the position itself, frees
//! the slot for the next lap, and counts the message lost. Producers do the same
//! for a consumer that died between claiming a message and freeing its slot. A
//! joinable queue's `join` does both on every round
//! ([`Ring::resolve_dead_claims`]): its count must not wait for a get or a put
//! that may never come. A
//! batch announces its whole range, so a claimer that dies halfway through
//! publishing (or freeing) a batch leaves every slot it did not finish findable.
//! A claimer whose CAS fails withdraws its announcement at once; a single claim
//! writes only the first position (see [`claims`]).
//!
//! # Nothing read is trusted
//! Every value here may have been written by a buggy or hostile peer: positions
//! are reduced to a slot index before use, a length is checked against the slot
//! before the message is copied out (with volatile reads, into private memory),
//! and a sequence ahead of the cursor is `Corrupted`, never an out-of-bounds
//! access; so are cursors apart by more than the protocol allows, and a
//! claimed slot whose sequence is older than the claim (see "Positions").

mod claims;
mod hints;
#[cfg(any(feature = "test-hooks", multiproc_loom))]
mod hooks;
mod wake;

pub(crate) use claims::Claims;

use std::ptr::NonNull;

use crate::layout::{Checked, Control, Participant, ANNOUNCEMENT};
#[cfg(multiproc_loom)]
use crate::primitive::DataCells;
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::Corruption;
use hints::next_line_step;

/// Why a push did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum PushFail {
    /// Every slot holds a message.
    Full,
    /// The slot for the next position is being emptied by a consumer (of position `0`).
    ConsumerInFlight(u64),
    /// A value in shared memory is impossible.
    Corrupted(Corruption),
}

/// Why a pop did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum PopFail {
    /// No message.
    Empty,
    /// A producer claimed position `0` and has not published it yet.
    ProducerInFlight(u64),
    /// A value in shared memory is impossible.
    Corrupted(Corruption),
}

/// A message to copy in: raw bytes (a `T` may have padding, so no `&[u8]`).
#[derive(Clone, Copy)]
pub struct Msg {
    /// Where its bytes are.
    pub ptr: *const u8,
    /// How many.
    pub len: usize,
    /// The announcement of a large message (see `large`), not a message itself.
    pub large: bool,
}

impl Msg {
    /// The bytes of `b`, as a message.
    pub fn of(b: &[u8]) -> Msg {
        Msg {
            ptr: b.as_ptr(),
            len: b.len(),
            large: false,
        }
    }
}

/// The bit of a slot's length that marks a large message's announcement; the
/// rest of the length is then [`ANNOUNCEMENT`]. Messages are at most
/// `MAX_MESSAGE` (2²⁴) bytes, so no length sets it.
pub(crate) const LARGE: u32 = 1 << 31;

/// `Ring::mask` of a capacity that is not a power of two (no capacity has this mask).
const NO_MASK: u64 = u64::MAX;

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
    /// A pipe direction (read handles are counted).
    pipe: bool,
    /// How far ahead a producer that found the ring full waits for room before
    /// it goes on (see `spin_for_room`): a quarter of the capacity, 0 below 8.
    slip: u64,
    /// How many positions on the slot whose line a producer asks for after it
    /// published (see `claim_next_line`): the first slot of the next cache
    /// line; 0 in a ring of fewer than four such lines.
    next_line: u64,
    /// The lane after the slots, and its size (0 in a fixed-length ring).
    lane: NonNull<u8>,
    lane_bytes: usize,
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
            pipe: checked.pipe,
            // SAFETY: the lane follows the slots inside the mapping (checked).
            lane: unsafe {
                base.add(
                    std::mem::size_of::<Control>()
                        + checked.capacity
                            * crate::layout::slot_size(checked.msg_max, checked.fixed),
                )
            },
            lane_bytes: checked.lane_bytes,
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
        self.slot_starting(self.slot_start(pos))
    }

    /// The header and data of the slot whose sequence is `seq` (one that
    /// `seq_of` gave): the fast paths have it from their claim already, and
    /// reducing the position again costs a dozen instructions.
    #[inline(always)]
    fn slot_of_seq<'a>(&'a self, seq: &'a AtomicU64) -> (SlotHeader<'a>, *mut u8) {
        self.slot_starting((seq as *const AtomicU64).cast::<u8>().cast_mut())
    }

    /// The header and data of the slot that starts at `p` (a slot's start).
    #[inline(always)]
    fn slot_starting(&self, p: *mut u8) -> (SlotHeader<'_>, *mut u8) {
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

    /// The length of the message in a claimed slot, and whether it is a large
    /// message's announcement — unchecked: from shared memory (see `checked_len`).
    #[inline]
    fn len_of(&self, h: &SlotHeader<'_>) -> (usize, bool) {
        match h.len {
            None => (self.msg_max, false),
            Some(l) => {
                let raw = l.load(Ordering::Relaxed);
                ((raw & !LARGE) as usize, raw & LARGE != 0)
            }
        }
    }

    /// Whether a length read from a slot is one this ring's slots can hold: at
    /// most `msg_max` for a message, exactly an announcement's for one.
    #[inline(always)]
    fn checked_len(&self, len: usize, large: bool) -> bool {
        if large {
            len == ANNOUNCEMENT
        } else {
            len <= self.msg_max
        }
    }

    /// Records the length of the message written into a claimed slot. In a
    /// fixed-length ring every message is `msg_max` bytes (the caller's promise).
    #[inline]
    fn set_len(&self, h: &SlotHeader<'_>, len: usize, large: bool) {
        debug_assert!(h.len.is_some() || len == self.msg_max);
        if let Some(l) = h.len {
            l.store(
                len as u32 | if large { LARGE } else { 0 },
                Ordering::Relaxed,
            );
        }
    }

    /// The most bytes a slot's data area holds: `msg_max`, or an announcement in
    /// a variable-length ring. Scratch buffers for the general gets are this big.
    pub(crate) fn data_max(&self) -> usize {
        if self.fixed {
            self.msg_max
        } else {
            self.msg_max.max(ANNOUNCEMENT)
        }
    }

    /// Puts up to `msgs.len()` messages with one claim; returns how many.
    ///
    /// Every message must be at most `msg_max` bytes (the caller checks).
    #[cfg(any(feature = "test-hooks", multiproc_loom))]
    pub fn try_push(&self, part: Option<&Participant>, msgs: &[Msg]) -> Result<usize, PushFail> {
        self.try_push_stopping(part, msgs, usize::MAX)
            .map(|(n, _)| n)
    }

    /// `try_push`, returning also the position of the first message put.
    pub(crate) fn try_push_at(
        &self,
        part: Option<&Participant>,
        msgs: &[Msg],
    ) -> Result<(usize, u64), PushFail> {
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
    ) -> Result<(usize, u64), PushFail> {
        debug_assert!(msgs.iter().all(|m| m.len <= self.data_max()));
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
                        return Ok((n, pos));
                    }
                    Err(t) => pos = t,
                }
            } else if dif < 0 {
                return Err(self.push_blocked(pos, seq));
            } else {
                let t = c.tail.0.load(Ordering::Relaxed);
                if t == pos {
                    return Err(PushFail::Corrupted(Corruption::Sequence { pos, seq }));
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
            unsafe { copy_in(m.ptr, data, m.len) };
            self.set_len(&h, m.len, m.large);
            // SYNC: publishes the message (pairs with the Acquire load of seq in
            // try_pop).
            h.seq
                .store(holding(pos.wrapping_add(i as u64)), Ordering::Release);
        }
    }

    /// Takes up to `max` messages with one claim, handing each to `sink` (copied
    /// into private memory with volatile reads first, with whether it is a large
    /// message's announcement); returns how many.
    pub fn try_pop(
        &self,
        part: Option<&Participant>,
        max: usize,
        scratch: &mut [u8],
        sink: impl FnMut(&[u8], bool),
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
        mut sink: impl FnMut(&[u8], bool),
        take: usize,
    ) -> Result<usize, PopFail> {
        debug_assert!(scratch.len() >= self.data_max() && max >= 1);
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
                return Err(self.pop_blocked(pos));
            } else {
                let hd = c.head.0.load(Ordering::Relaxed);
                if hd == pos {
                    return Err(PopFail::Corrupted(Corruption::Sequence { pos, seq }));
                }
                pos = hd;
            }
        }
    }

    /// Why the producer of `pos` found its slot not yet free (at sequence
    /// `seq`): full, a consumer's claim of the slot's last message not yet
    /// freed, or shared memory that no run of the protocol leaves.
    #[cold]
    #[inline(never)]
    fn push_blocked(&self, pos: u64, seq: u64) -> PushFail {
        let Some(round) = pos.checked_sub(self.cap) else {
            return PushFail::Corrupted(Corruption::Sequence { pos, seq });
        };
        let head = match self.positions() {
            Ok((head, _)) => head,
            Err(e) => return PushFail::Corrupted(e),
        };
        // The slot still holds round `round`'s message: full, unless a
        // consumer has claimed it and not yet freed it.
        if head <= round {
            return PushFail::Full;
        }
        // SYNC: the Acquire load of `head` past `round` (in `positions`)
        // synchronizes with the CAS that took `round` (every later one is a
        // read-modify-write in its release sequence); its maker loaded
        // `holding(round)` before it (a consumer) or `free_for(round)` (one
        // skipping a dead producer's claim), so this later load reads at least
        // that (read-read coherence; a slot's sequence only grows).
        let now = self.slot(pos).0.seq.load(Ordering::Acquire);
        if (now.wrapping_sub(free_for(round)) as i64) < 0 {
            return PushFail::Corrupted(Corruption::Sequence { pos, seq: now });
        }
        PushFail::ConsumerInFlight(round)
    }

    /// Why the consumer of `pos` found no message there: empty, a producer's
    /// claim not yet published, or shared memory that no run of the protocol
    /// leaves.
    #[cold]
    #[inline(never)]
    fn pop_blocked(&self, pos: u64) -> PopFail {
        let tail = match self.positions() {
            Ok((_, tail)) => tail,
            Err(e) => return PopFail::Corrupted(e),
        };
        if tail <= pos {
            return PopFail::Empty;
        }
        // SYNC: the Acquire load of `tail` past `pos` synchronizes with the
        // CAS that claimed `pos` (every later claim is a read-modify-write in
        // its release sequence); the claimer loaded `free_for(pos)` before it,
        // so this later load reads that or a later value.
        let seq = self.slot(pos).0.seq.load(Ordering::Acquire);
        if (seq.wrapping_sub(free_for(pos)) as i64) < 0 {
            return PopFail::Corrupted(Corruption::Sequence { pos, seq });
        }
        PopFail::ProducerInFlight(pos)
    }

    /// The head and the tail, read head, tail, head (all Acquire), checked
    /// against what every run of the protocol keeps: `head ≤ tail ≤ head +
    /// capacity`. A consumer claims only published positions, so the tail
    /// was past the head it read; a producer claims only a slot whose last
    /// message a consumer took, so the head was within a capacity of the tail
    /// it read (the cursors only grow, and each load is ordered after the
    /// claim that wrote the value before it). Read only on the cold paths (a
    /// ring that looks empty or full): garbage there would otherwise have a
    /// waiter skip positions one by one that no producer claimed, or wait
    /// for a consumer that no claim names.
    pub(crate) fn positions(&self) -> Result<(u64, u64), Corruption> {
        let c = self.ctl();
        let first = c.head.0.load(Ordering::Acquire);
        let tail = c.tail.0.load(Ordering::Acquire);
        let head = c.head.0.load(Ordering::Acquire);
        if first > tail || tail > head.saturating_add(self.cap) {
            return Err(Corruption::Positions {
                head,
                tail,
                capacity: self.cap,
            });
        }
        Ok((head, tail))
    }

    /// Copies out and frees the `n` slots claimed from `pos` (only the first
    /// `take` of them, returning without waking anyone, in the test hook).
    fn take_claimed(
        &self,
        pos: u64,
        n: usize,
        scratch: &mut [u8],
        sink: &mut impl FnMut(&[u8], bool),
        take: usize,
    ) -> Result<usize, PopFail> {
        if take < n {
            let _ = self.take_claimed(pos, take, scratch, sink, take);
            return Ok(n);
        }
        let mut bad = None;
        for i in 0..n as u64 {
            let (h, data) = self.slot(pos.wrapping_add(i));
            let (len, large) = self.len_of(&h);
            let ok = self.checked_len(len, large);
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
                sink(&scratch[..len], large);
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
    fn oversize(&self, pos: u64, len: usize) -> Corruption {
        Corruption::Length {
            pos,
            len,
            max: self.msg_max,
        }
    }

    /// Whether the slot the next put needs is free (a re-check before sleeping).
    pub(crate) fn has_room(&self) -> bool {
        let pos = self.ctl().tail.0.load(Ordering::Acquire);
        self.slot(pos).0.seq.load(Ordering::Acquire) == free_for(pos)
    }

    /// The head as it is now: a hint of the consumers' progress (unchecked:
    /// see [`Ring::positions`] for values to act on).
    pub(crate) fn head_now(&self) -> u64 {
        self.ctl().head.0.load(Ordering::Relaxed)
    }

    /// The tail as it is now: a hint of the producers' progress, as
    /// [`Ring::head_now`].
    pub(crate) fn tail_now(&self) -> u64 {
        self.ctl().tail.0.load(Ordering::Relaxed)
    }

    /// Whether the next message is published (a re-check before sleeping).
    pub(crate) fn has_message(&self) -> bool {
        let pos = self.ctl().head.0.load(Ordering::Acquire);
        self.slot(pos).0.seq.load(Ordering::Acquire) == holding(pos)
    }

    /// Whether a consumer sleeps on the ring (a put would wake it). One
    /// relaxed load of the sleepers' mask, a line written only as consumers
    /// go to sleep and wake.
    pub(crate) fn consumers_asleep(&self) -> bool {
        self.ctl().wake.0.get_sleepers.load(Ordering::Relaxed) != 0
    }

    /// Whether a producer has claimed the position a consumer needs next (so a
    /// message is coming: no need to sleep for it). SeqCst: see `wake_consumers`.
    pub(crate) fn message_claimed(&self) -> bool {
        let c = self.ctl();
        c.tail.0.load(Ordering::SeqCst) > c.head.0.load(Ordering::SeqCst)
    }

    /// The next position, if a producer has claimed it and not yet published
    /// it (or died before it could).
    pub(crate) fn claim_in_flight(&self) -> Result<Option<u64>, Corruption> {
        let pos = self.ctl().head.0.load(Ordering::Acquire);
        match self.pop_blocked(pos) {
            PopFail::ProducerInFlight(pos) if !self.has_message() => Ok(Some(pos)),
            PopFail::Corrupted(e) => Err(e),
            _ => Ok(None),
        }
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

    /// The large-message lane: its first byte and its size.
    pub(crate) fn lane(&self) -> (*mut u8, usize) {
        (self.lane.as_ptr(), self.lane_bytes)
    }

    /// Whether this ring is a pipe direction (read handles are counted).
    #[inline(always)]
    pub(crate) fn is_pipe(&self) -> bool {
        self.pipe
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
        hints::note_get_waited();
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
        self.claim_next_line_unless_replying(pos);
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
        let Some((pos, seq)) = self.claim_one(&self.ctl().tail.0, free_for, part.map(Claims::puts))
        else {
            return false;
        };
        // As publish_claimed, for the one slot the claim found already.
        let (h, data) = self.slot_of_seq(seq);
        self.track_write(pos);
        // SAFETY: the claim gives us this slot until we publish it; msg.len()
        // <= msg_max fits its data area.
        unsafe { copy_in(msg.as_ptr(), data, msg.len()) };
        self.set_len(&h, msg.len(), false);
        // SYNC: publishes the message (pairs with the Acquire load of seq in
        // the pops).
        seq.store(holding(pos), Ordering::Release);
        // Not where every slot has a line or more to itself (see claim_next_line).
        if self.next_line != 1 {
            self.claim_next_line_unless_replying(pos);
        }
        self.wake_consumers(1);
        true
    }

    /// Takes one message into `out` (replacing what it held) if the next message
    /// is published and nobody else claims it first: the fast path of
    /// `ByteQueue`'s gets; `Ok(true)` when what it took is a large message's
    /// announcement. `None` leaves the general path to find out why. A length
    /// over `msg_max` (a peer's garbage) frees the slot, counts it lost and
    /// answers what is wrong, as `try_pop`'s `Corrupted` does. `behind`: the
    /// message was there at the get's first look, so the consumer is behind
    /// its producer and may ask for the next slot's line (see
    /// `claim_next_line`).
    #[inline(always)]
    pub(crate) fn pop_bytes_one(
        &self,
        part: Option<&Participant>,
        out: &mut Vec<u8>,
        behind: bool,
    ) -> Option<Result<bool, Corruption>> {
        let (pos, seq) = self.claim_one(&self.ctl().head.0, holding, part.map(Claims::gets))?;
        // Only where every slot has a line or more to itself, and only for a
        // consumer that is behind (see claim_next_line).
        if behind && self.next_line == 1 {
            self.claim_next_line(pos);
        }
        let (h, data) = self.slot_of_seq(seq);
        // Read once: the check and the copy use this private value.
        let (len, large) = self.len_of(&h);
        let ok = self.checked_len(len, large);
        if ok {
            self.track_read(pos);
            // Into the spare capacity: nothing is zero-filled first.
            out.clear();
            out.reserve(len);
            // SAFETY: the slot's data area holds len <= msg_max bytes (checked);
            // `out` has room for len bytes, all written before they count.
            unsafe {
                copy_out_raw(data, out.as_mut_ptr(), len);
                out.set_len(len);
            }
        }
        // SYNC: frees the slot (pairs with the Acquire load of seq in the puts).
        h.seq
            .store(free_for(pos.wrapping_add(self.cap)), Ordering::Release);
        self.wake_producers(1);
        if ok {
            return Some(Ok(large));
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

/// Copies a message into a claimed slot: a short one (up to 16 bytes, the
/// common small message) as at most two overlapping word moves, the rest
/// with `memcpy` (whose call and size dispatch cost more than the copy of a
/// few bytes).
///
/// # Safety
/// `src` is readable and `dst` writable for `len` bytes; they do not overlap.
#[inline(always)]
unsafe fn copy_in(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: in every arm, both ranges are valid for len bytes (the
    // caller's), which the words (8 or 4 bytes, len at least that) and the
    // single bytes stay inside.
    unsafe {
        match len {
            8..=16 => copy_two_words::<u64>(src, dst, len),
            4..=7 => copy_two_words::<u32>(src, dst, len),
            0..=3 => {
                for i in 0..len {
                    dst.add(i).write(src.add(i).read());
                }
            }
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// Copies `len` bytes as two words of `W` that overlap when `len` is less
/// than two of them: the first word and the last.
///
/// # Safety
/// As [`copy_in`], with `size_of::<W>() <= len <= 2 * size_of::<W>()`.
#[inline(always)]
unsafe fn copy_two_words<W: Copy>(src: *const u8, dst: *mut u8, len: usize) {
    let last = len - std::mem::size_of::<W>();
    // SAFETY: both words lie inside the caller's ranges (0..size and
    // last..len); unaligned reads and writes.
    unsafe {
        let (a, b) = (
            src.cast::<W>().read_unaligned(),
            src.add(last).cast::<W>().read_unaligned(),
        );
        dst.cast::<W>().write_unaligned(a);
        dst.add(last).cast::<W>().write_unaligned(b);
    }
}

/// Copies `out.len()` bytes from shared memory into private memory, as volatile
/// reads do: whatever bytes a peer left there arrive, and the compiler assumes
/// nothing about them.
#[inline]
pub(crate) fn copy_out(src: *const u8, out: &mut [u8]) {
    // SAFETY: out is valid for writes of its length; the caller's src is
    // readable for as many bytes.
    unsafe { copy_out_raw(src, out.as_mut_ptr(), out.len()) }
}

/// [`copy_out`] into raw memory (a `Vec`'s spare capacity, which need not be
/// zeroed first).
///
/// # Safety
/// `src` is readable and `dst` writable for `len` bytes; they do not overlap.
#[inline]
pub(crate) unsafe fn copy_out_raw(src: *const u8, dst: *mut u8, len: usize) {
    // Long copies with `rep movsb`, which x86-64 runs at memcpy speed: an
    // instruction the compiler cannot see into, so a peer writing the source
    // meanwhile is not a data race in Rust's model (as for volatile reads),
    // where a word loop of volatile reads ran at a third of the speed.
    #[cfg(all(target_arch = "x86_64", not(multiproc_loom)))]
    if len >= 256 {
        // SAFETY: the caller's ranges; the direction flag is clear (the ABI
        // guarantees it on function entry and nothing here sets it).
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") src => _,
                inout("rdi") dst => _,
                options(nostack, preserves_flags)
            );
        }
        return;
    }
    // The common small message: one aligned word.
    if len == 8 && (src as usize).is_multiple_of(8) {
        // SAFETY: src is 8-aligned and readable for 8 bytes (the caller's);
        // the volatile read copies whatever a peer left there; dst is
        // writable for 8 bytes.
        unsafe {
            let w = src.cast::<u64>().read_volatile();
            dst.cast::<u64>().write_unaligned(w);
        }
        return;
    }
    // Words where the source is aligned for them (slot data is; a lane
    // offset need not be), bytes otherwise.
    let words = if (src as usize).is_multiple_of(8) {
        len / 8
    } else {
        0
    };
    for i in 0..words {
        // SAFETY: src is 8-aligned with at least len bytes; the volatile read
        // copies whatever a peer left there into private memory; dst is
        // writable for len bytes.
        unsafe {
            let w = src.add(i * 8).cast::<u64>().read_volatile();
            dst.add(i * 8).cast::<u64>().write_unaligned(w);
        }
    }
    for i in words * 8..len {
        // SAFETY: as above, one byte at a time for the tail.
        unsafe { dst.add(i).write(src.add(i).read_volatile()) };
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::{copy_in, copy_out};

    #[test]
    fn copies_in_and_out_are_exact_at_every_short_length_and_alignment() {
        let src: Vec<u8> = (1..=80u8).collect();
        for len in 0..=40 {
            for offset in 0..8 {
                // Into a slot-like buffer: exactly len bytes change.
                let mut dst = vec![0xAAu8; 64];
                // SAFETY: src has offset + len bytes; dst has 8 + len.
                unsafe { copy_in(src.as_ptr().add(offset), dst.as_mut_ptr().add(8), len) };
                assert_eq!(
                    &dst[8..8 + len],
                    &src[offset..offset + len],
                    "in, len {len}"
                );
                assert!(dst[..8].iter().chain(&dst[8 + len..]).all(|&b| b == 0xAA));
                // Out of it, from an aligned and a misaligned start.
                let mut out = vec![0u8; len];
                copy_out(src[offset..].as_ptr(), &mut out);
                assert_eq!(out, &src[offset..offset + len], "out, len {len}");
            }
        }
    }
}
