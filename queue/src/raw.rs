//! [`RawQueue`]: a ring in a segment, with this handle's roles (writer, reader),
//! blocking put and get, closing and joining. The typed queues, the byte queue
//! and the pipe are thin layers over it.

use std::ptr::NonNull;
use std::time::Duration;

use multiproc_shm::{Location, Segment, TypeInfo};
use multiproc_sync::futex::sleep_ends_by;
use multiproc_sync::owner_check_interval;

use crate::ends::{self, Role};
use crate::layout::{self, Control, PARTICIPANTS};
use crate::primitive::{wait, wake, AtomicU64, Deadline, Ordering};
use crate::ring::{Msg, PopFail, PushFail, Ring};
use crate::waiter::{Waiter, SPINS};
use crate::Corruption;
use crate::{Error, Result};

/// A queue's shared state plus this handle's view of it.
pub(crate) struct RawQueue {
    seg: Segment,
    ring: Ring,
    /// Whether this handle counts as a writer (see `Error::Disconnected`).
    writer: bool,
    /// Whether it counts as a reader (pipe directions only).
    reader: bool,
    /// Tries before a blocking call sleeps (this handle only).
    spins: u32,
}

/// The roles a new handle takes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Roles {
    /// Counted as a writer.
    pub(crate) writer: bool,
    /// Counted as a reader (pipe directions only).
    pub(crate) reader: bool,
}

impl Roles {
    /// A queue handle: every one writes, as in Python.
    pub(crate) const WRITER: Roles = Roles {
        writer: true,
        reader: false,
    };
    /// A receiving handle: neither (see `open_receiver`).
    pub(crate) const NONE: Roles = Roles {
        writer: false,
        reader: false,
    };
    /// The receiving end of a pipe direction.
    pub(crate) const READER: Roles = Roles {
        writer: false,
        reader: true,
    };
}

/// How a new queue is made.
pub(crate) struct Spec<'a> {
    pub(crate) location: Location<'a>,
    pub(crate) capacity: usize,
    pub(crate) msg_max: usize,
    /// Every message is exactly `msg_max` bytes (`Queue<T>`).
    pub(crate) fixed: bool,
    pub(crate) type_name: String,
    pub(crate) joinable: bool,
    /// A pipe direction: read handles are counted, and a put with none left
    /// fails at once.
    pub(crate) pipe: bool,
    /// Bytes of the large-message lane (0 for a fixed-length ring).
    pub(crate) lane: usize,
}

impl RawQueue {
    pub(crate) fn create(spec: Spec<'_>) -> Result<RawQueue> {
        if spec.capacity == 0 || spec.capacity > layout::MAX_CAPACITY {
            return Err(Error::OutOfRange {
                what: "a queue's capacity",
                value: spec.capacity as u64,
                min: 1,
                max: layout::MAX_CAPACITY as u64,
            });
        }
        if spec.msg_max > layout::MAX_MESSAGE {
            return Err(Error::OutOfRange {
                what: "a queue's message size",
                value: spec.msg_max as u64,
                min: 0,
                max: layout::MAX_MESSAGE as u64,
            });
        }
        let capacity = spec.capacity;
        if !layout::lane_ok(spec.lane as u64, spec.fixed) {
            return Err(Error::LaneSize { bytes: spec.lane });
        }
        let len = layout::total_len(capacity, spec.msg_max, spec.fixed, spec.lane);
        // Described as 128-byte lines, the alignment of the control block.
        let info = TypeInfo::custom(&spec.type_name, 128, 128, len.div_ceil(128) as u64);
        let seg = Segment::create_typed(spec.location, info, |p| {
            // SAFETY: create_typed passes 128-aligned, zeroed memory of len bytes
            // that nobody else sees before it publishes the header; the geometry
            // was checked above.
            unsafe {
                layout::init(
                    p,
                    capacity,
                    spec.msg_max,
                    spec.fixed,
                    spec.joinable,
                    spec.pipe,
                    spec.lane,
                )
            }
        })?;
        RawQueue::attach(seg, &spec.type_name, Roles::WRITER)
    }

    /// Checks an opened segment and attaches to it, taking `roles`.
    pub(crate) fn attach(seg: Segment, type_name: &str, roles: Roles) -> Result<RawQueue> {
        let want = TypeInfo::custom(type_name, 128, 128, 0);
        if !seg.type_info().same_type(&want) {
            return Err(Error::Shm(multiproc_shm::Error::LayoutMismatch {
                what: seg
                    .name()
                    .map_or_else(|| "the segment".to_owned(), |n| format!("segment {n:?}")),
                expected: type_name.to_owned(),
                found: seg.type_info().type_name.clone(),
            }));
        }
        if seg.len() < std::mem::size_of::<Control>() {
            return Err(Error::Corrupted(Corruption::TooSmall {
                needed: std::mem::size_of::<Control>(),
                len: seg.len(),
            }));
        }
        let base = NonNull::new(seg.as_ptr()).expect("a mapping is never at NULL");
        // SAFETY: the segment holds at least a Control, 128-aligned (its header
        // says align 128), and Control is atomics only.
        let ctl = unsafe { base.cast::<Control>().as_ref() };
        let checked = layout::check(ctl, seg.len()).map_err(Error::Corrupted)?;
        // SAFETY: geometry checked against this mapping, which `seg` keeps alive
        // for as long as the RawQueue (the Ring is dropped with it).
        let ring = unsafe { Ring::new(base, &checked) };
        let mut q = RawQueue {
            seg,
            ring,
            writer: false,
            reader: false,
            spins: SPINS,
        };
        q.take_roles(roles);
        Ok(q)
    }

    /// Registers this handle in `roles` (beyond those it has).
    pub(crate) fn take_roles(&mut self, roles: Roles) {
        if roles.writer && !self.writer {
            ends::open_handle(self.ctl(), Role::Write);
            self.writer = true;
        }
        if roles.reader && !self.reader && self.ring.is_pipe() {
            ends::open_handle(self.ctl(), Role::Read);
            self.reader = true;
        }
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn set_spins(&mut self, spins: u32) {
        self.spins = spins;
    }

    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    fn ctl(&self) -> &Control {
        self.ring.ctl()
    }

    /// Takes this thread's entry now (see `ByteQueue::enter`).
    pub(crate) fn enter(&self) -> Result<()> {
        self.participant().map(|_| ())
    }

    fn participant(&self) -> Result<&layout::Participant> {
        self.ring
            .participant()
            .ok_or_else(|| match self.ring.garbage_participant() {
                Some(c) => Error::Corrupted(c),
                None => Error::TooManyParticipants(PARTICIPANTS),
            })
    }

    // --- roles ---

    /// Stops counting this handle as a writer (it can still put).
    pub(crate) fn unregister_writer(&mut self) {
        if std::mem::replace(&mut self.writer, false) {
            ends::close_handle(self.ctl(), Role::Write);
        }
    }

    /// Stops counting this handle as a reader.
    pub(crate) fn unregister_reader(&mut self) {
        if std::mem::replace(&mut self.reader, false) {
            ends::close_handle(self.ctl(), Role::Read);
        }
    }

    /// Whether any live process holds the queue open for writing.
    fn any_live_writer(&self) -> bool {
        ends::any_live(self.ctl(), Role::Write)
    }

    /// Whether no process holds a write handle at all (the count is 0): then no
    /// message can come, and nothing needs checking.
    fn no_writer_left(&self) -> bool {
        ends::count(ends::load(self.ctl()), Role::Write) == 0
    }

    /// In a pipe direction, whether no live process can read what is put.
    pub(crate) fn no_reader_left(&self) -> bool {
        self.ring.is_pipe() && !ends::any_live(self.ctl(), Role::Read)
    }

    // --- putting ---

    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.ring.msg_max() {
            return Err(Error::MessageTooLarge {
                len,
                max: self.ring.msg_max(),
            });
        }
        Ok(())
    }

    /// Tries before a blocking call sleeps (this handle's spin limit).
    #[inline]
    pub(crate) fn spins(&self) -> u32 {
        self.spins
    }

    /// Whether a put may take the one-message fast path: the queue is open and,
    /// in a pipe direction, someone holds a read handle.
    #[inline(always)]
    pub(crate) fn fast_put_allowed(&self) -> bool {
        ends::put_allowed(ends::load(self.ctl()), self.ring.is_pipe())
    }

    /// The one-message fast path of a put: `push` (one of the ring's one-message
    /// pushes) if the queue is open and this thread has its participant entry;
    /// with `spins`, it keeps trying while the next slot is not free yet (see
    /// `Ring::spin_for_room`). `false` leaves the general path to find out why.
    #[inline(always)]
    pub(crate) fn fast_put(
        &self,
        mut spins: u32,
        push: impl Fn(&Ring, &layout::Participant) -> bool,
    ) -> bool {
        if !self.fast_put_allowed() {
            return false;
        }
        let ring = &self.ring;
        let Some(part) = ring.participant() else {
            return false;
        };
        loop {
            if push(ring, part) {
                return true;
            }
            if spins == 0 {
                return false;
            }
            ring.spin_for_room(&mut spins);
        }
    }

    /// The one-message fast path of a get: what `pop` (one of the ring's
    /// one-message pops) took, if it took one; with `spins`, it keeps trying
    /// while the next message is not there yet, reading only that slot's
    /// sequence between tries (see `Ring::spin_for_message`), and takes a
    /// message that arrives at once — what a hand-off between spinning
    /// processes costs.
    #[inline(always)]
    pub(crate) fn fast_get<R>(
        &self,
        mut spins: u32,
        mut pop: impl FnMut(&Ring, &layout::Participant) -> Option<R>,
    ) -> Option<R> {
        let ring = &self.ring;
        let part = ring.participant()?;
        loop {
            if let Some(r) = pop(ring, part) {
                return Some(r);
            }
            if spins == 0 {
                return None;
            }
            ring.spin_for_message(&mut spins);
        }
    }

    fn is_closed(&self) -> bool {
        ends::load(self.ctl()) & ends::CLOSED != 0
    }

    /// Why a put cannot go on at all, if it cannot: closed, or a pipe direction
    /// whose every reader is gone.
    fn put_refused(&self) -> Option<Error> {
        let e = ends::load(self.ctl());
        if e & ends::CLOSED != 0 {
            return Some(Error::Closed);
        }
        if self.ring.is_pipe() && ends::count(e, Role::Read) == 0 {
            return Some(Error::Disconnected);
        }
        None
    }

    /// Puts `msgs` (in order), waiting for room until `deadline` (forever if
    /// `None`); `nowait` fails with `Full` instead of waiting. Returns how many
    /// went in before an error.
    pub(crate) fn put(
        &self,
        msgs: &[Msg],
        deadline: Option<Deadline>,
        nowait: bool,
    ) -> (usize, Result<()>) {
        self.put_at(msgs, deadline, nowait, &mut None)
    }

    /// [`put`](RawQueue::put), recording in `first` the position the first
    /// message went to.
    pub(crate) fn put_at(
        &self,
        msgs: &[Msg],
        deadline: Option<Deadline>,
        nowait: bool,
        first: &mut Option<u64>,
    ) -> (usize, Result<()>) {
        if let Some(m) = msgs.iter().find(|m| {
            m.len
                > if m.large {
                    self.ring.data_max()
                } else {
                    self.ring.msg_max()
                }
        }) {
            return (0, self.check_len(m.len));
        }
        let part = match self.participant() {
            Ok(p) => p,
            Err(e) => return (0, Err(e)),
        };
        let mut done = 0;
        let mut waiter = Waiter::new(self.spins);
        if !nowait {
            // Watch the slot before looking at anything else (see spin_until):
            // `try_push` reads `head` when the slot is taken.
            waiter.spin_until(|| self.ring.has_room());
        }
        while done < msgs.len() {
            if let Some(e) = self.put_refused() {
                return (done, Err(e));
            }
            let batch = &msgs[done..];
            let pushed = self.ring.try_push_at(Some(part), batch);
            let n = pushed.as_ref().map_or(0, |&(n, _)| n);
            let step = match pushed {
                Ok((_, pos)) => {
                    first.get_or_insert(pos);
                    done += n;
                    waiter = Waiter::new(self.spins);
                    continue;
                }
                Err(PushFail::Corrupted(e)) => return (done, Err(Error::Corrupted(e))),
                Err(_) if nowait => return (done, Err(Error::Full)),
                // A full pipe direction whose readers were all killed would
                // wait for ever: nobody frees a slot.
                Err(_) if self.no_reader_left() => return (done, Err(Error::Disconnected)),
                Err(PushFail::Full) => waiter.wait(
                    deadline.as_ref(),
                    || self.ring.has_room(),
                    || self.ring.head_now(),
                    || self.sleep_for_room(part, deadline.as_ref(), false),
                ),
                Err(PushFail::ConsumerInFlight(round)) => waiter.in_flight(
                    deadline.as_ref(),
                    || self.ring.has_room(),
                    || self.ring.skip_dead_consumer(round),
                    || self.sleep_for_room(part, deadline.as_ref(), true),
                ),
            };
            if let Err(e) = step {
                return (done, Err(e));
            }
        }
        (done, Ok(()))
    }

    /// One bounded sleep of `part`'s thread, marked in a sleeper mask
    /// (`get_sleepers` or `put_sleepers`): stamps when the sleep surely ends,
    /// sets the thread's bit (SeqCst; the stamp first, so that a waker that sees
    /// the bit sees the stamp), calls `sleep` with the earlier of `deadline` and
    /// one check interval, and clears the bit. Returns what `sleep` returned.
    fn marked_asleep(
        &self,
        mask: &AtomicU64,
        part: &layout::Participant,
        deadline: Option<&Deadline>,
        sleep: impl FnOnce(Option<&Deadline>) -> bool,
    ) -> bool {
        let bit = self.ring.sleeper_bit(part);
        let interval = owner_check_interval();
        let w = &self.ctl().wake.0;
        w.sleep_until
            .fetch_max(sleep_ends_by(interval), Ordering::Relaxed);
        mask.fetch_or(bit, Ordering::SeqCst);
        let woke = sleep(Deadline::earliest(deadline.copied(), Deadline::after(interval)).as_ref());
        mask.fetch_and(!bit, Ordering::SeqCst);
        woke
    }

    /// Sleeps until a consumer frees a slot, or a check interval passes. With
    /// `in_flight` (a live consumer is slow to free the slot we need), a claimed
    /// slot is no reason to stay awake: its free wakes us.
    fn sleep_for_room(
        &self,
        part: &layout::Participant,
        deadline: Option<&Deadline>,
        in_flight: bool,
    ) -> Result<()> {
        let w = &self.ctl().wake.0;
        let seen = w.get_seq.load(Ordering::Acquire);
        // SYNC: marked (SeqCst), then the SeqCst reads in room_claimed: see
        // Ring::wake_producers.
        let woke = self.marked_asleep(&w.put_sleepers, part, deadline, |d| {
            self.ring.has_room()
                || (!in_flight && self.ring.room_claimed())
                || self.is_closed()
                || wait(&w.get_seq, seen, d)
        });
        if !woke && deadline.is_some_and(Deadline::passed) {
            return Err(Error::Timeout);
        }
        Ok(())
    }

    // --- getting ---

    /// Takes up to `max` messages (at least one, waiting until `deadline`;
    /// `nowait` fails with `Empty` instead of waiting); up to none takes
    /// nothing and waits for nothing.
    pub(crate) fn get(
        &self,
        max: usize,
        deadline: Option<Deadline>,
        nowait: bool,
        scratch: &mut [u8],
        mut sink: impl FnMut(&[u8], bool),
    ) -> Result<usize> {
        debug_assert!(scratch.len() >= self.ring.msg_max());
        if max == 0 {
            return Ok(0);
        }
        let part = self.participant()?;
        let mut waiter = Waiter::new(self.spins);
        if !nowait {
            // Watch the slot before looking at anything else (see spin_until).
            waiter.spin_until(|| self.ring.has_message());
        }
        loop {
            let step = match self.ring.try_pop(Some(part), max, scratch, &mut sink) {
                Ok(n) => return Ok(n),
                Err(PopFail::Corrupted(e)) => return Err(Error::Corrupted(e)),
                Err(PopFail::Empty) if self.is_closed() => return Err(Error::Closed),
                Err(PopFail::Empty) if self.no_writer_left() => {
                    // The count reached 0 after the last writer published
                    // (AcqRel): one more look sees its last message.
                    match self.ring.try_pop(Some(part), max, scratch, &mut sink) {
                        Ok(n) => return Ok(n),
                        Err(PopFail::Corrupted(e)) => return Err(Error::Corrupted(e)),
                        Err(PopFail::Empty) => return Err(Error::Disconnected),
                        Err(PopFail::ProducerInFlight(_)) => Ok(()),
                    }
                }
                Err(_) if nowait => return Err(Error::Empty),
                Err(PopFail::Empty) => waiter.wait(
                    deadline.as_ref(),
                    || self.ring.has_message(),
                    || self.ring.tail_now(),
                    || self.sleep_for_message(part, deadline.as_ref(), false),
                ),
                Err(PopFail::ProducerInFlight(pos)) => waiter.in_flight(
                    deadline.as_ref(),
                    || self.ring.has_message(),
                    || self.ring.skip_dead_producer(pos),
                    || self.sleep_for_message(part, deadline.as_ref(), true),
                ),
            };
            step?;
        }
    }

    /// Sleeps until a producer publishes, or a check interval passes; then a queue
    /// that nobody can write to any more is `Disconnected`. With `in_flight` (a
    /// live producer is slow to publish the message we need), a claimed message is
    /// no reason to stay awake: its publish wakes us.
    fn sleep_for_message(
        &self,
        part: &layout::Participant,
        deadline: Option<&Deadline>,
        in_flight: bool,
    ) -> Result<()> {
        let w = &self.ctl().wake.0;
        let seen = w.put_seq.load(Ordering::Acquire);
        // SYNC: marked (SeqCst), then the SeqCst reads in message_claimed: see
        // Ring::wake_consumers.
        let woke = self.marked_asleep(&w.get_sleepers, part, deadline, |d| {
            self.ring.has_message()
                || (!in_flight && self.ring.message_claimed())
                || self.is_closed()
                || wait(&w.put_seq, seen, d)
        });
        if !woke {
            if deadline.is_some_and(Deadline::passed) {
                return Err(Error::Timeout);
            }
            // SYNC: the writers first (Acquire, pairing with the last
            // writer's AcqRel release of its count, which follows its last
            // publish), then the ring: read the other way round, an empty
            // ring seen before that publish and no writer seen after it lost
            // the last message (seen under ASan: `Disconnected` before it).
            if !self.any_live_writer() && self.ring.len() == 0 {
                return Err(Error::Disconnected);
            }
        }
        Ok(())
    }

    /// Whether a get would not block now: a message is there, or the queue is
    /// closed, or no writer is left (for [`wait`](crate::wait())).
    pub(crate) fn readable_now(&self) -> bool {
        self.ring.has_message() || self.is_closed() || self.no_writer_left()
    }

    /// Skips the claim at the head if every thread that may have made it is
    /// dead (counted lost), as a waiting get does, so that a message behind
    /// it can be got: whether it skipped one. A live producer's claim is
    /// never skipped.
    pub(crate) fn skip_dead_claim(&self) -> Result<bool> {
        Ok(
            match self.ring.claim_in_flight().map_err(Error::Corrupted)? {
                Some(pos) => self.ring.skip_dead_producer(pos),
                None => false,
            },
        )
    }

    /// Counts this thread as a consumer asleep on this queue (so that a put
    /// wakes it) until the mark drops: for [`wait`](crate::wait()), which sleeps
    /// on several queues at once.
    pub(crate) fn mark_waiting_for_message(&self) -> Result<WaitingMark<'_>> {
        let part = self.participant()?;
        let bit = self.ring.sleeper_bit(part);
        let w = &self.ctl().wake.0;
        let seen = w.put_seq.load(Ordering::Acquire);
        w.sleep_until
            .fetch_max(sleep_ends_by(owner_check_interval()), Ordering::Relaxed);
        // SYNC: SeqCst, then the caller's look at the ring: see Ring::wake_consumers.
        w.get_sleepers.fetch_or(bit, Ordering::SeqCst);
        Ok(WaitingMark {
            raw: self,
            bit,
            seen,
        })
    }

    /// Waits until the next message is published (without taking it); `false`
    /// on timeout. A claim still in flight is waited out as a get does, and
    /// skipped if its producer died: it is no message to read.
    pub(crate) fn wait_readable(&self, deadline: Option<Deadline>) -> Result<bool> {
        let part = self.participant()?;
        let mut waiter = Waiter::new(self.spins);
        loop {
            if self.ring.has_message() {
                return Ok(true);
            }
            let step = if let Some(pos) = self.ring.claim_in_flight().map_err(Error::Corrupted)? {
                waiter.in_flight(
                    deadline.as_ref(),
                    || self.ring.has_message(),
                    || self.ring.skip_dead_producer(pos),
                    || self.sleep_for_message(part, deadline.as_ref(), true),
                )
            } else if self.is_closed() {
                return Err(Error::Closed);
            } else if self.no_writer_left() {
                return if self.ring.has_message() {
                    Ok(true)
                } else {
                    Err(Error::Disconnected)
                };
            } else {
                self.sleep_for_message(part, deadline.as_ref(), false)
            };
            match step {
                Err(Error::Timeout) => return Ok(false),
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
    }

    // --- state ---

    pub(crate) fn close(&self) {
        let c = self.ctl();
        ends::close(c);
        c.wake.0.put_seq.fetch_add(1, Ordering::Release);
        c.wake.0.get_seq.fetch_add(1, Ordering::Release);
        wake(&c.wake.0.put_seq, u32::MAX);
        wake(&c.wake.0.get_seq, u32::MAX);
        // A large put waiting on the lane looks again too.
        let lane = &c.lane.0;
        lane.read_seq.fetch_add(1, Ordering::SeqCst);
        wake(&lane.read_seq, u32::MAX);
    }

    /// Wakes every sleeper, producers and consumers, so that each looks again.
    pub(crate) fn wake_all(&self) {
        let c = self.ctl();
        c.wake.0.put_seq.fetch_add(1, Ordering::Release);
        c.wake.0.get_seq.fetch_add(1, Ordering::Release);
        wake(&c.wake.0.put_seq, u32::MAX);
        wake(&c.wake.0.get_seq, u32::MAX);
    }

    pub(crate) fn closed(&self) -> bool {
        self.is_closed()
    }

    pub(crate) fn lost(&self) -> u64 {
        self.ctl().wake.0.lost.load(Ordering::Relaxed)
    }

    pub(crate) fn task_done(&self) -> Result<()> {
        let done = &self.ctl().wake.0.done;
        let mut cur = done.load(Ordering::SeqCst);
        loop {
            if self.ring.unfinished_given(cur) == 0 {
                return Err(Error::TaskDoneTooMany);
            }
            // SYNC: SeqCst, then the SeqCst reads in `wake_joiners`: see `join`.
            match done.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.ring.wake_joiners();
        Ok(())
    }

    /// Waits until every item put was marked done or lost.
    pub(crate) fn join(&self, deadline: Option<Deadline>) -> Result<()> {
        let w = &self.ctl().wake.0;
        loop {
            if self.ring.unfinished() == 0 {
                return Ok(());
            }
            // An item a dead peer claimed counts as done once it is counted
            // lost; nobody else may ever come to count it (no more puts or
            // gets): look for such claims on every round.
            if self.ring.resolve_dead_claims() > 0 {
                continue;
            }
            let seen = w.join_seq.load(Ordering::SeqCst);
            // SYNC: register, then look again (SeqCst both): a task_done or a loss
            // that brings the count to zero after our look sees us registered
            // and bumps join_seq, so the wait below returns. Each sleep is
            // bounded, so that a joiner killed asleep is forgotten.
            let woke = w.join_sleepers.sleep(deadline, |d| {
                self.ring.unfinished() == 0 || wait(&w.join_seq, seen, d)
            });
            if !woke && deadline.as_ref().is_some_and(Deadline::passed) {
                return Err(Error::Timeout);
            }
        }
    }

    /// Test hook: claims the next slot and stops (a producer killed there).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn claim_put_and_stop(&self) {
        self.ring.claim_put_and_stop(self.ring.participant());
    }

    pub(crate) fn unfinished(&self) -> u32 {
        u32::try_from(self.ring.unfinished()).unwrap_or(u32::MAX)
    }
}

impl Drop for RawQueue {
    fn drop(&mut self) {
        self.unregister_writer();
        self.unregister_reader();
        // A reader or writer leaving may be what a sleeper waits for: its put
        // (get) then fails with Disconnected.
        if self.ring.is_pipe() {
            self.wake_all();
        }
        self.ring.release_participant();
    }
}

/// A thread counted asleep on a queue's `put_seq` (see
/// `RawQueue::mark_waiting_for_message`); uncounted on drop.
pub(crate) struct WaitingMark<'a> {
    raw: &'a RawQueue,
    bit: u64,
    seen: u32,
}

impl WaitingMark<'_> {
    /// The futex word to sleep on, and the value it held before the mark.
    pub(crate) fn word(&self) -> (&crate::primitive::AtomicU32, u32) {
        (&self.raw.ctl().wake.0.put_seq, self.seen)
    }
}

impl Drop for WaitingMark<'_> {
    fn drop(&mut self) {
        self.raw
            .ctl()
            .wake
            .0
            .get_sleepers
            .fetch_and(!self.bit, Ordering::SeqCst);
    }
}

/// Converts an optional timeout into a deadline.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Deadline> {
    timeout.and_then(Deadline::after)
}
