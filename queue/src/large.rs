//! Messages larger than a slot: announced in the ring, streamed through the lane.
//!
//! A byte queue's slots are sized for its usual messages; Python's `Queue` and
//! `Pipe` carry objects of any size. A larger message goes in two parts: an
//! *announcement* in the ring, a slot like any other message (its length field
//! carries [`LARGE`](crate::ring::LARGE); its 16 bytes name the stream and its
//! total length), and the bytes themselves, streamed through the queue's *lane*
//! — a ring of bytes after the slots ([`LANE_BYTES`](crate::layout::LANE_BYTES)).
//! Whoever takes the announcement, as it would any message, receives the stream.
//! Other messages keep flowing through the slots meanwhile, in both directions
//! of the announcement; only one large message streams through a lane at a time.
//!
//! # The lane's control (`layout::Lane`)
//!
//! | field | written by | meaning |
//! |---|---|---|
//! | `send` | producers | a robust lock: the one producer streaming now holds it |
//! | `stream` | the producer | the stream the lane carries: bumped by each new large message |
//! | `total`, `first_pos` | the producer | its length; the ring position of its announcement |
//! | `producer` | the producer | its thread record, for the receiver's liveness check |
//! | `receiver` | the receiver | its thread record once it took the announcement; 0 before; [`NO_RECEIVER`] once a producer found the taker dead |
//! | `written` | the producer | `stream << 48 \| bytes written` (or [`ABANDONED`]) |
//! | `read` | the receiver | `stream << 48 \| bytes read` (or [`ABANDONED`]), moved by compare-and-swap |
//! | `write_seq`, `read_seq` | each side | futex words, bumped after each write (read) |
//! | `sleeping` | each side | who may be asleep, so that the other makes a wake-up syscall only then |
//! | `skipped` | the ring's skip of a dead consumer's slot | one past the position of the last announcement whose taker died holding its slot, freed (and its loss counted) by that skip |
//!
//! # A producer
//! 1. Takes `send` (a dead holder's is taken over: its stream is abandoned).
//! 2. Waits until the lane is free: the last stream read to its end or abandoned,
//!    or its receiver dead, or its announcement taken by a consumer that died
//!    before registering (taken, no receiver for a check interval, and no
//!    live thread's claim on its position: see `receiver_gone`), or its
//!    producer dead.
//! 3. Starts a stream: `receiver = 0`, `total`, `written = read = stream << 48`,
//!    then `stream` (Release: the publication of the new stream).
//! 4. Puts the announcement into the ring, as any message.
//! 5. Streams: copies as much as there is room for (the lane holds
//!    `written − read ≤ LANE_BYTES`), then publishes `written` (Release), wakes
//!    the receiver if it sleeps, and so on. It returns once the last byte is in
//!    the lane — as a write into a pipe returns once its bytes are in the pipe's
//!    buffer — and releases `send`.
//!
//! # A receiver
//! 1. Takes the announcement from the ring, as any message; checks that `stream`
//!    and `total` match it (else the stream was abandoned: the message is lost).
//! 2. Registers: `receiver` from 0 to its record (a compare-and-swap that
//!    fails once its producer found it dead: [`NO_RECEIVER`]). Until then
//!    its claim of the announcement's position, which stays in its
//!    participant entry until its next claim, tells a stalled producer that
//!    it lives: a receiver descheduled between the two steps is waited for.
//!    One that does not take the message whole undoes its registration (the
//!    lane may have been reset under it to the next stream, whose receiver
//!    it must not be).
//! 3. Copies what `written` says is there (volatile reads, into the message it
//!    is building; nothing is allocated ahead of the bytes), checks that
//!    `written` still names its stream (else the lane was reset under it: lost),
//!    and moves `read` on by compare-and-swap (which fails if the lane was
//!    reset), waking the producer if it sleeps.
//!
//! # Memory order
//!
//! | Release | pairs with the Acquire of | carries |
//! |---|---|---|
//! | the producer's store of `stream` | the receiver's load of `stream` | the new stream's fields |
//! | the producer's store of `written` | the receiver's load of `written` | the bytes below it |
//! | the receiver's CAS of `read` | the producer's load of `read` | the receiver is done with the bytes below it |
//! | a skip's mark of `skipped`, then its free of the slot (both SeqCst) | a decider's look at the slot, then at `skipped` (both SeqCst) | the loss is counted by the skip |
//!
//! # When a peer dies, or gives up
//! A producer that dies mid-stream holds `send`: its receiver, stalled for a
//! check interval, finds `producer` dead and counts the message lost; the next
//! producer takes `send` over and resets the lane. A receiver that dies
//! mid-stream: the producer, stalled, finds `receiver` dead, counts the message
//! lost and returns; the next producer finds the lane free. A taker that dies
//! before it registers is found by the same stall (or by the next producer's
//! wait for the lane): if it died holding the announcement's slot, the
//! ring's skip of a dead consumer's slot frees it and counts the loss — the
//! stalled producer's own skip, or another producer's that came round to the
//! slot first and marked `skipped` — and the lane counts nothing more; if it
//! died after it freed the slot, the lane counts it. Each loss once.
//!
//! A receiver's timeout bounds the wait for a message to begin. Once it has
//! taken the announcement the message is no longer in the queue for anyone
//! else, so it reads on past its deadline while the bytes keep coming (as
//! Python's `get` reads a message whole once it has begun); only when the
//! stream stalls for a check interval after the deadline does it give up:
//! it marks `read` [`ABANDONED`] (and counts the message lost), and the
//! producer stops. A receive with a length limit (a `Connection`'s
//! `recv_bytes_max`) that takes an announcement of a longer message
//! registers, then marks `read` so at once: the producer stops, and the
//! receiver answers `MessageOverLimit` having read and allocated nothing.
//! A producer whose timeout passes mid-stream marks
//! `written` (its put answers `Timeout`: the message was not sent), and the
//! receiver stops. A `close` does the same to a producer that waits, for the
//! lane to be free or for room in it (its put answers `Closed`; `close` wakes
//! it): a stream whose consumers are gone may wait for ever otherwise, its
//! announcement never taken. Every loss is counted in the queue's `lost()`,
//! never silent.

use multiproc_sync::owner_check_interval;
use multiproc_sync::LockError;

use crate::layout::{Lane, ANNOUNCEMENT};
use crate::primitive::{
    current_thread, spin, thread_alive, try_yield, wait, wake, Deadline, Ordering,
};
use crate::raw::RawQueue;
use crate::ring::{copy_out_raw, Msg};
use crate::Corruption;
use crate::{Error, Result};

/// Bits of a position word that count bytes; the rest tags the stream.
const POS_BITS: u32 = 48;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
/// The byte count that says the side that writes the word gave up on the stream.
pub(crate) const ABANDONED: u64 = POS_MASK;
/// The largest message: below [`ABANDONED`].
pub(crate) const MAX_LARGE: u64 = ABANDONED - 1;
/// How long a side of the lane spins (yielding now and then) before it sleeps.
/// The other side's step it waits for — a receiver copying what is in the lane
/// (256 KiB in some tens of µs), a producer starting the next message — takes
/// about as long as a futex wake-up here, and sleeping there made every
/// message of 64 KiB cost two wake-ups (`benches/NOTES.md`).
const LANE_SPIN: std::time::Duration = std::time::Duration::from_micros(50);
/// The most room a receiver makes ahead for a message (its announced length
/// is a peer's word, not trusted for an allocation of any size); past it,
/// the buffer grows as the bytes come.
const RESERVE_AHEAD: usize = 64 << 20;
/// `receiver` once a producer found its announcement taken by a thread that
/// died before it registered: a late registration fails, and the loss is
/// counted once, by that producer. No thread's record (its tid would be
/// `u32::MAX`).
const NO_RECEIVER: u64 = u64::MAX;

/// A stream given up because its receiver is gone: whether its loss is
/// counted yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    /// The one who gave it up counts it.
    Uncounted,
    /// Counted already (by the ring's skip of its taker's slot).
    Counted,
}

impl Loss {
    fn count(self, ring: &crate::ring::Ring) {
        if self == Loss::Uncounted {
            ring.count_lost();
        }
    }
}

/// `sleeping` bits.
const RECEIVER_ASLEEP: u32 = 1;
const PRODUCER_ASLEEP: u32 = 2;

fn tagged(stream: u64, pos: u64) -> u64 {
    (stream << POS_BITS) | (pos & POS_MASK)
}

fn tag_of(word: u64) -> u64 {
    word >> POS_BITS
}

fn pos_of(word: u64) -> u64 {
    word & POS_MASK
}

/// The stream's tag as a position word carries it (its low 16 bits).
fn tag(stream: u64) -> u64 {
    stream & 0xffff
}

/// The 16 bytes of an announcement: the stream, then the total length.
fn announcement(stream: u64, total: u64) -> [u8; ANNOUNCEMENT] {
    let mut a = [0u8; ANNOUNCEMENT];
    a[..8].copy_from_slice(&stream.to_le_bytes());
    a[8..].copy_from_slice(&total.to_le_bytes());
    a
}

/// The stream and total length an announcement names.
fn parse(ann: &[u8]) -> Option<(u64, u64)> {
    let stream = u64::from_le_bytes(ann.get(..8)?.try_into().ok()?);
    let total = u64::from_le_bytes(ann.get(8..16)?.try_into().ok()?);
    Some((stream, total))
}

/// How a receive of a large message ended.
pub(crate) enum Received {
    /// The whole message is in the buffer.
    Whole,
    /// The stream was abandoned or reset: the message is lost (counted).
    Lost,
}

/// A `stalled since` clock that starts on the first stall.
struct Stall(Option<std::time::Instant>);

impl Stall {
    fn new() -> Stall {
        Stall(None)
    }

    /// Whether a whole check interval has passed since the first stall.
    fn long(&mut self) -> bool {
        let since = *self.0.get_or_insert_with(std::time::Instant::now);
        since.elapsed() >= owner_check_interval()
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

impl RawQueue {
    fn lane(&self) -> &Lane {
        &self.ring().ctl().lane.0
    }

    /// Puts `msg`, larger than a slot, through the lane (see the module docs).
    ///
    /// # Errors
    /// [`Error::Timeout`] (the stream, if started, is abandoned: its receiver
    /// counts it lost), [`Error::Closed`], [`Error::Disconnected`],
    /// [`Error::OutOfRange`] past 2⁴⁸ bytes.
    pub(crate) fn put_large(&self, msg: &[u8], deadline: Option<Deadline>) -> Result<()> {
        let total = msg.len() as u64;
        if total > MAX_LARGE {
            return Err(Error::OutOfRange {
                what: "a large message's length",
                value: total,
                min: 0,
                max: MAX_LARGE,
            });
        }
        let (_, lane_bytes) = self.ring().lane();
        if lane_bytes == 0 {
            return Err(Error::Corrupted(Corruption::Lane {
                bytes: 0,
                fixed: false,
            }));
        }
        let lane = self.lane();
        let guard = match deadline {
            None => lane.send.lock(),
            Some(d) => lane.send.lock_timeout(d.remaining()),
        };
        let _held = match guard {
            Ok(g) => g,
            // The last producer died mid-stream: its stream is abandoned, and the
            // lane is ours to reset.
            Err(LockError::OwnerDied(mut g)) => {
                g.mark_consistent();
                g
            }
            Err(LockError::Timeout) => return Err(Error::Timeout),
            Err(_) => return Err(Error::Corrupted(Corruption::LaneLock)),
        };
        self.wait_lane_free(deadline)?;
        let stream = lane.stream.load(Ordering::Relaxed).wrapping_add(1).max(1);
        lane.receiver.store(0, Ordering::Relaxed);
        lane.total.store(total, Ordering::Relaxed);
        lane.first_pos.store(u64::MAX, Ordering::Relaxed);
        lane.written
            .store(tagged(tag(stream), 0), Ordering::Relaxed);
        lane.read.store(tagged(tag(stream), 0), Ordering::Relaxed);
        lane.producer.store(current_thread(), Ordering::Relaxed);
        // SYNC: publishes the new stream's fields (pairs with the Acquire load of
        // `stream` in `get_large`).
        lane.stream.store(stream, Ordering::Release);

        let ann = announcement(stream, total);
        let mut first = None;
        let (_, put) = self.put_at(
            &[Msg {
                ptr: ann.as_ptr(),
                len: ANNOUNCEMENT,
                large: true,
            }],
            deadline,
            false,
            &mut first,
        );
        if let Err(e) = put {
            // Nobody can take a stream that was never announced.
            lane.written
                .store(tagged(tag(stream), ABANDONED), Ordering::Release);
            return Err(e);
        }
        lane.first_pos
            .store(first.unwrap_or(u64::MAX), Ordering::Release);
        let streamed = self.stream_bytes(stream, msg, deadline);
        if streamed.is_err() {
            // Whatever stopped us, the receiver must stop too, and the next
            // producer find the lane free.
            lane.written
                .store(tagged(tag(stream), ABANDONED), Ordering::Release);
            self.wake_lane(&lane.write_seq, RECEIVER_ASLEEP);
        }
        streamed
    }

    /// Copies `msg` into the lane as the receiver makes room (step 5).
    fn stream_bytes(&self, stream: u64, msg: &[u8], deadline: Option<Deadline>) -> Result<()> {
        let lane = self.lane();
        let (buf, lane_bytes) = self.ring().lane();
        let total = msg.len() as u64;
        let mut sent = 0u64;
        let mut stall = Stall::new();
        while sent < total {
            // SYNC: Acquire pairs with the receiver's CAS of `read`: the bytes
            // below it are read, and free to overwrite.
            let r = lane.read.load(Ordering::Acquire);
            if tag_of(r) != tag(stream) || pos_of(r) == ABANDONED {
                // The receiver gave up (and counted the loss), or the word is a
                // peer's garbage: nothing more to send.
                return Ok(());
            }
            let in_lane = sent.saturating_sub(pos_of(r));
            let room = (lane_bytes as u64).saturating_sub(in_lane);
            if room == 0 {
                if deadline.as_ref().is_some_and(Deadline::passed) {
                    return Err(Error::Timeout);
                }
                // Closed while the stream waits for room: the put fails as a
                // blocked put does at a close (the caller abandons the
                // stream; a receiver counts it lost).
                if self.closed() {
                    return Err(Error::Closed);
                }
                if stall.long() {
                    if let Some(loss) = self.receiver_gone(lane) {
                        lane.written
                            .store(tagged(tag(stream), ABANDONED), Ordering::Release);
                        loss.count(self.ring());
                        return Ok(());
                    }
                    if self.no_reader_left() {
                        return Err(Error::Disconnected);
                    }
                }
                self.sleep_on_lane(&lane.read_seq, PRODUCER_ASLEEP, deadline, || {
                    lane.read.load(Ordering::Acquire) != r
                });
                continue;
            }
            stall.reset();
            let at = (sent % lane_bytes as u64) as usize;
            let n = room.min(total - sent).min((lane_bytes - at) as u64) as usize;
            // SAFETY: at + n <= lane_bytes, inside the lane; the protocol gives the
            // producer the lane bytes from `read` to `read + LANE_BYTES` (the
            // receiver reads none of them until `written` says so); msg holds
            // sent + n bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr().add(sent as usize), buf.add(at), n)
            };
            sent += n as u64;
            // SYNC: publishes the bytes below `sent` (pairs with the Acquire load
            // of `written` in `receive_bytes`).
            lane.written
                .store(tagged(tag(stream), sent), Ordering::Release);
            self.wake_lane(&lane.write_seq, RECEIVER_ASLEEP);
        }
        Ok(())
    }

    /// Whether the current stream's receiver is gone: registered and dead, or
    /// never registered although its announcement was taken and its taker is
    /// dead. Called after a check interval of no progress.
    ///
    /// A taker has not registered yet for as long as it is descheduled between
    /// the two steps; its claim of the announcement's position, announced in
    /// its participant entry, stays there until its next claim, which comes
    /// after its registration: while a live participant's claim holds the
    /// position, the taker is alive, and is waited for. Else the decision is
    /// made by compare-and-swap of `receiver` to [`NO_RECEIVER`], which a late
    /// registration then fails (and the loss is counted once: by the caller
    /// of this, or already by the skip of the taker's slot, [`Loss`]). Every
    /// taker has an entry: a thread that finds none free is refused before
    /// it claims ([`Error::TooManyParticipants`]), and a dead thread's entry
    /// is taken by another only once its claims are settled (its slots
    /// freed).
    ///
    /// `None` while the receiver may live; else who counts the loss.
    fn receiver_gone(&self, lane: &Lane) -> Option<Loss> {
        let dead = |record| (!thread_alive(record)).then_some(Loss::Uncounted);
        match lane.receiver.load(Ordering::Acquire) {
            0 => {
                let first = lane.first_pos.load(Ordering::Acquire);
                // SYNC: Acquire pairs with the taker's SeqCst claim of `head`:
                // its announcement of `first`, made before, is seen below.
                let taken =
                    first != u64::MAX && self.ring().ctl().head.0.load(Ordering::Acquire) > first;
                if !taken || self.ring().live_getter(first) {
                    return None;
                }
                match lane.receiver.compare_exchange(
                    0,
                    NO_RECEIVER,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    // Its taker died before it registered: counted already
                    // if a skip of its slot counted it (see
                    // `Ring::takers_loss_counted`).
                    Ok(_) => Some(if self.ring().takers_loss_counted(first) {
                        Loss::Counted
                    } else {
                        Loss::Uncounted
                    }),
                    // It registered meanwhile.
                    Err(record) => dead(record),
                }
            }
            record => dead(record),
        }
    }

    /// Waits until the last stream is done with the lane (step 2).
    fn wait_lane_free(&self, deadline: Option<Deadline>) -> Result<()> {
        let lane = self.lane();
        let mut stall = Stall::new();
        loop {
            let stream = lane.stream.load(Ordering::Acquire);
            let r = lane.read.load(Ordering::Acquire);
            let w = lane.written.load(Ordering::Acquire);
            let total = lane.total.load(Ordering::Acquire);
            let done = stream == 0 // never used
                || tag_of(r) != tag(stream) // garbage: reset it
                || pos_of(r) == ABANDONED
                || pos_of(r) >= total
                || pos_of(w) == ABANDONED
                || (pos_of(w) < total && !thread_alive(lane.producer.load(Ordering::Acquire)));
            if done {
                return Ok(());
            }
            if deadline.as_ref().is_some_and(Deadline::passed) {
                return Err(Error::Timeout);
            }
            // Closed meanwhile: this put has not begun, and fails as any put
            // after a close does (a stream nobody will read may hold the lane
            // for good: its announcement untaken, its consumers gone).
            if self.closed() {
                return Err(Error::Closed);
            }
            if stall.long() {
                if let Some(loss) = self.receiver_gone(lane) {
                    loss.count(self.ring());
                    return Ok(());
                }
            }
            self.sleep_on_lane(&lane.read_seq, PRODUCER_ASLEEP, deadline, || {
                lane.read.load(Ordering::Acquire) != r
            });
        }
    }

    /// Receives the large message `ann` announced into `out`, replacing what it
    /// held (see the module docs).
    ///
    /// # Errors
    /// [`Error::Timeout`] when the stream stalls for a check interval after
    /// `deadline` has passed (the message is then abandoned, and counted lost);
    /// [`Error::MessageOverLimit`] when its length is over `limit` (abandoned
    /// before a byte is read; the caller is told, so not counted lost).
    pub(crate) fn get_large(
        &self,
        ann: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Deadline>,
    ) -> Result<Received> {
        let lane = self.lane();
        // No stream is 0 (see `put_large`): a zeroed announcement is garbage.
        let Some((stream, total)) = parse(ann).filter(|&(s, _)| s != 0) else {
            self.ring().count_lost();
            return Ok(Received::Lost);
        };
        // SYNC: Acquire pairs with the producer's Release store of `stream`.
        if lane.stream.load(Ordering::Acquire) != stream
            || lane.total.load(Ordering::Relaxed) != total
        {
            // Abandoned (or a peer's garbage): nothing to receive.
            self.ring().count_lost();
            return Ok(Received::Lost);
        }
        let me = current_thread();
        if let Err(now) = lane
            .receiver
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
        {
            // Given up by its producer, which counted the loss (NO_RECEIVER);
            // else a peer's garbage.
            if now != NO_RECEIVER {
                self.ring().count_lost();
            }
            return Ok(Received::Lost);
        }
        let received = self.receive_registered(stream, total, out, limit, deadline);
        if !matches!(received, Ok(Received::Whole)) {
            // Registered, and not received whole: if the lane was reset
            // between our look at `stream` and our registration (its producer
            // dead, the next one starting), the registration is the next
            // stream's, whose taker it would keep out and whose producer wait
            // on us for ever. Undone; for our own stream it no longer matters.
            let _ = lane
                .receiver
                .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        received
    }

    /// The rest of [`get_large`](Self::get_large), once this thread is the
    /// stream's registered receiver.
    fn receive_registered(
        &self,
        stream: u64,
        total: u64,
        out: &mut Vec<u8>,
        limit: usize,
        deadline: Option<Deadline>,
    ) -> Result<Received> {
        out.clear();
        if total > limit as u64 {
            // Refused before a byte is read or a byte allocated: the
            // producer, finding `read` abandoned, stops and returns (the
            // caller is told, so the message is not counted lost).
            self.give_up_reading(stream, 0);
            return Err(Error::MessageOverLimit {
                len: total,
                max: limit,
            });
        }
        // Room for the whole message at once, up to `RESERVE_AHEAD` (the
        // length is a peer's word): grown a piece at a time, `out` doubled
        // and copied what it held at each step (a 1.1 MB message through a
        // new `Vec` went through four reallocations). A refusal only leaves
        // the growing to the pieces.
        let _ =
            out.try_reserve(usize::try_from(total).map_or(RESERVE_AHEAD, |t| t.min(RESERVE_AHEAD)));
        match self.receive_bytes(stream, total, out, deadline) {
            Ok(true) => Ok(Received::Whole),
            Ok(false) => {
                out.clear();
                self.ring().count_lost();
                Ok(Received::Lost)
            }
            Err(e) => {
                out.clear();
                self.ring().count_lost();
                Err(e)
            }
        }
    }

    /// Copies the stream into `out` as the producer writes it (receiver step
    /// 3); `false` when the stream was abandoned or reset.
    fn receive_bytes(
        &self,
        stream: u64,
        total: u64,
        out: &mut Vec<u8>,
        deadline: Option<Deadline>,
    ) -> Result<bool> {
        let lane = self.lane();
        let (buf, lane_bytes) = self.ring().lane();
        let mut got = 0u64;
        let mut stall = Stall::new();
        while got < total {
            // SYNC: Acquire pairs with the producer's Release store of `written`.
            let w = lane.written.load(Ordering::Acquire);
            if tag_of(w) != tag(stream) || pos_of(w) == ABANDONED || pos_of(w) < got {
                return Ok(false);
            }
            let ready = pos_of(w).min(total) - got;
            if ready == 0 {
                // The message is taken: past the deadline it is still read
                // whole while its bytes keep coming, and given up only when
                // they stop for a check interval (module docs).
                let late = deadline.as_ref().is_some_and(Deadline::passed);
                if stall.long() {
                    if !thread_alive(lane.producer.load(Ordering::Acquire)) {
                        return Ok(false);
                    }
                    if late {
                        self.give_up_reading(stream, got);
                        return Err(Error::Timeout);
                    }
                }
                let until = if late { None } else { deadline };
                self.sleep_on_lane(&lane.write_seq, RECEIVER_ASLEEP, until, || {
                    lane.written.load(Ordering::Acquire) != w
                });
                continue;
            }
            stall.reset();
            let at = (got % lane_bytes as u64) as usize;
            let n = ready.min((lane_bytes - at) as u64) as usize;
            let start = out.len();
            out.reserve(n);
            // Copies as volatile reads do: a peer may be writing these bytes
            // (it should not). Into the spare capacity, not zeroed first.
            // SAFETY: at + n <= lane_bytes, inside the lane; `reserve` made
            // room for n bytes after `start`, all of which the copy writes.
            unsafe {
                copy_out_raw(buf.add(at), out.as_mut_ptr().add(start), n);
                out.set_len(start + n);
            }
            // The lane may have been reset while we copied: then what we copied
            // belongs to another stream.
            if tag_of(lane.written.load(Ordering::Acquire)) != tag(stream) {
                return Ok(false);
            }
            // SYNC: Release pairs with the producer's Acquire load of `read`:
            // we are done with these bytes. A CAS: a lane reset meanwhile wins.
            if lane
                .read
                .compare_exchange(
                    tagged(tag(stream), got),
                    tagged(tag(stream), got + n as u64),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                return Ok(false);
            }
            got += n as u64;
            self.wake_lane(&lane.read_seq, PRODUCER_ASLEEP);
        }
        Ok(true)
    }

    /// Marks the stream abandoned by its receiver, so that its producer stops.
    fn give_up_reading(&self, stream: u64, got: u64) {
        let lane = self.lane();
        let _ = lane.read.compare_exchange(
            tagged(tag(stream), got),
            tagged(tag(stream), ABANDONED),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        self.wake_lane(&lane.read_seq, PRODUCER_ASLEEP);
    }

    /// Bumps `seq` and wakes the other side if its `asleep` bit says it may sleep.
    fn wake_lane(&self, seq: &crate::primitive::AtomicU32, asleep: u32) {
        // SYNC: SeqCst, then the SeqCst read of `sleeping`, against the sleeper's
        // SeqCst setting of its bit before its last look: see `sleep_on_lane`.
        seq.fetch_add(1, Ordering::SeqCst);
        if self.lane().sleeping.load(Ordering::SeqCst) & asleep != 0 {
            wake(seq, 1);
        }
    }

    /// One bounded sleep on `seq` (at most a check interval, or until
    /// `deadline`) unless `changed` already: spins up to [`LANE_SPIN`] first,
    /// then marks `asleep` and sleeps.
    fn sleep_on_lane(
        &self,
        seq: &crate::primitive::AtomicU32,
        asleep: u32,
        deadline: Option<Deadline>,
        changed: impl Fn() -> bool,
    ) {
        let started = std::time::Instant::now();
        let mut spins = 0u32;
        while !changed() {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                if started.elapsed() >= LANE_SPIN {
                    break;
                }
                // The other side may need this core (more processes than
                // cores); but while a yield here hands a busy program its
                // time slice instead, sleep at once (see `try_yield`).
                if !try_yield() {
                    break;
                }
            } else {
                spin();
            }
        }
        if changed() {
            return;
        }
        let lane = self.lane();
        let seen = seq.load(Ordering::SeqCst);
        lane.sleeping.fetch_or(asleep, Ordering::SeqCst);
        if !changed() {
            let until = Deadline::earliest(deadline, Deadline::after(owner_check_interval()));
            wait(seq, seen, until.as_ref());
        }
        lane.sleeping.fetch_and(!asleep, Ordering::SeqCst);
    }
}
