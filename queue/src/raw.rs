//! [`RawQueue`]: a ring in a segment, with blocking, closing, joining and the
//! register of processes that hold it open for writing.

use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use multiproc_shm::{Location, Segment, TypeInfo};
use multiproc_sync::futex::sleep_ends_by;
use multiproc_sync::owner_check_interval;

use crate::layout::{self, Control, PARTICIPANTS};
use crate::primitive::{
    current_process, process_alive, spin, wait, wake, AtomicU64, Deadline, Ordering,
};
use crate::ring::{Msg, PopFail, PushFail, Ring};
use crate::{Error, Result};

/// Tries before a blocking call sleeps: a hand-off by spinning costs ~0.15 µs here,
/// by sleeping ~40 µs.
const SPINS: u32 = 200;

/// Control blocks of the queues this process holds write handles on (one entry per
/// handle), so that a child forked with those handles is registered as a writer
/// too (see `register_children`). Atomics only: the fork handler may not lock.
static WRITE_HANDLES: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

/// How a blocked put or get waits, step by step: spin a little, then sleep on the
/// futex (for a full or empty ring), or yield while a peer is mid-operation on the
/// slot we need — checking every owner check interval whether that peer died.
struct Waiter {
    spins_left: u32,
    yields_left: u32,
    in_flight_since: Option<std::time::Instant>,
}

/// Yields before sleeping, after the spins: when processes outnumber cores, the
/// peer we wait for may need our core, and a yield is far cheaper than a futex
/// sleep and the wake-up syscall it costs the peer.
const YIELDS: u32 = 32;

impl Waiter {
    fn new(spins: u32) -> Waiter {
        Waiter {
            spins_left: spins,
            yields_left: if spins == 0 { 0 } else { YIELDS },
            in_flight_since: None,
        }
    }

    /// Spins until `ready` (or the spins run out). `ready` looks only at the slot
    /// we need: reading the other side's index while spinning would pull its
    /// cache line away from it on every probe.
    fn spin_until(&mut self, ready: impl Fn() -> bool) {
        while self.spins_left > 0 && !ready() {
            self.spins_left -= 1;
            spin();
        }
    }

    /// One step of waiting for room or a message: spin (until `ready`), yield,
    /// or `sleep`.
    fn wait(
        &mut self,
        deadline: Option<&Deadline>,
        ready: impl Fn() -> bool,
        sleep: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.in_flight_since = None;
        if self.spins_left > 0 {
            self.spin_until(ready);
            return Ok(());
        }
        if self.yields_left > 0 {
            self.yields_left -= 1;
            std::thread::yield_now();
            return Ok(());
        }
        if deadline.is_some_and(Deadline::passed) {
            return Err(Error::Timeout);
        }
        sleep()
    }

    /// One step of waiting for a peer that claimed our slot to finish with it.
    /// It finishes within nanoseconds unless it was descheduled or died, so this
    /// spins, then yields. After a check interval, `skip` checks for a dead peer;
    /// a peer still alive then is stopped or starved, so from there on each step
    /// naps (`nap`: sleeps until the peer's publish or free wakes it, or another
    /// check interval passes) and checks again, instead of burning a core.
    fn in_flight(
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

/// A queue's shared state plus this handle's view of it.
pub(crate) struct RawQueue {
    seg: Segment,
    ring: Ring,
    /// Whether this handle counts as a writer (see `Error::Disconnected`).
    writer: bool,
    /// Tries before a blocking call sleeps (this handle only).
    spins: u32,
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
}

impl RawQueue {
    pub(crate) fn create(spec: Spec<'_>) -> Result<RawQueue> {
        if spec.capacity == 0 || spec.capacity > layout::MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "capacity must be 1 to {}, not {}",
                layout::MAX_CAPACITY,
                spec.capacity
            )));
        }
        if spec.msg_max > layout::MAX_MESSAGE {
            return Err(Error::InvalidArgument(format!(
                "message size must be at most {}, not {}",
                layout::MAX_MESSAGE,
                spec.msg_max
            )));
        }
        let capacity = spec.capacity;
        let len = layout::total_len(capacity, spec.msg_max, spec.fixed);
        // Described as 128-byte lines, the alignment of the control block.
        let info = TypeInfo::custom(&spec.type_name, 128, 128, len.div_ceil(128) as u64);
        let seg = Segment::create_typed(spec.location, info, |p| {
            // SAFETY: create_typed passes 128-aligned, zeroed memory of len bytes
            // that nobody else sees before it publishes the header; the geometry
            // was checked above.
            unsafe { layout::init(p, capacity, spec.msg_max, spec.fixed, spec.joinable) }
        })?;
        RawQueue::attach(seg, &spec.type_name, true)
    }

    /// Checks an opened segment and attaches to it.
    pub(crate) fn attach(seg: Segment, type_name: &str, writer: bool) -> Result<RawQueue> {
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
            return Err(Error::Corrupted(format!(
                "{} bytes cannot hold a queue",
                seg.len()
            )));
        }
        let base = NonNull::new(seg.as_ptr()).expect("a mapping is never at NULL");
        // SAFETY: the segment holds at least a Control, 128-aligned (its header
        // says align 128), and Control is atomics only.
        let ctl = unsafe { base.cast::<Control>().as_ref() };
        let checked = layout::check(ctl, seg.len()).map_err(Error::Corrupted)?;
        // SAFETY: geometry checked against this mapping, which `seg` keeps alive
        // for as long as the RawQueue (the Ring is dropped with it).
        let ring = unsafe { Ring::new(base, &checked) };
        let q = RawQueue {
            seg,
            ring,
            writer,
            spins: SPINS,
        };
        if writer {
            q.register_writer();
        }
        Ok(q)
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

    fn participant(&self) -> Result<&layout::Participant> {
        self.ring
            .participant()
            .ok_or(Error::TooManyParticipants(PARTICIPANTS))
    }

    // --- writers ---

    /// Counts this process as holding one more write handle.
    fn register_writer(&self) {
        ensure_fork_handler();
        add_writer(self.ctl());
        // Past 64 write handles in this process, children forked with the extra
        // ones are not counted as writers (documented on the queue types).
        let addr = self.ctl() as *const Control as usize;
        let _ = WRITE_HANDLES.iter().any(|s| {
            s.compare_exchange(0, addr, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
    }

    /// Stops counting this handle as a writer.
    pub(crate) fn unregister_writer(&mut self) {
        if !std::mem::replace(&mut self.writer, false) {
            return;
        }
        let addr = self.ctl() as *const Control as usize;
        let _ = WRITE_HANDLES.iter().any(|s| {
            s.compare_exchange(addr, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        let me = current_process();
        for w in &self.ctl().writers {
            if w.owner.load(Ordering::Acquire) == me {
                if w.handles.fetch_sub(1, Ordering::AcqRel) <= 1 {
                    let _ = w
                        .owner
                        .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
                return;
            }
        }
    }

    /// Whether any live process holds the queue open for writing.
    fn any_live_writer(&self) -> bool {
        self.ctl().writers.iter().any(|w| {
            let o = w.owner.load(Ordering::Acquire);
            o != 0 && w.handles.load(Ordering::Acquire) > 0 && process_alive(o)
        })
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

    /// Whether a put may take the one-message fast path (the queue is open).
    #[inline(always)]
    pub(crate) fn fast_put_allowed(&self) -> bool {
        self.ctl().geometry.0.closed.load(Ordering::Relaxed) == 0
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
        self.ctl().geometry.0.closed.load(Ordering::Acquire) != 0
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
        if let Some(m) = msgs.iter().find(|m| m.len > self.ring.msg_max()) {
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
            if self.is_closed() {
                return (done, Err(Error::Closed));
            }
            let batch = &msgs[done..];
            let pushed = self.ring.try_push(Some(part), batch);
            let n = *pushed.as_ref().unwrap_or(&0);
            let step = match pushed {
                Ok(_) => {
                    done += n;
                    waiter = Waiter::new(self.spins);
                    continue;
                }
                Err(PushFail::Corrupted(e)) => return (done, Err(Error::Corrupted(e))),
                Err(_) if nowait => return (done, Err(Error::Full)),
                Err(PushFail::Full) => waiter.wait(
                    deadline.as_ref(),
                    || self.ring.has_room(),
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

    /// Takes up to `max` messages (at least one), waiting until `deadline`;
    /// `nowait` fails with `Empty` instead of waiting.
    pub(crate) fn get(
        &self,
        max: usize,
        deadline: Option<Deadline>,
        nowait: bool,
        scratch: &mut [u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<usize> {
        debug_assert!(scratch.len() >= self.ring.msg_max());
        let part = self.participant()?;
        let mut waiter = Waiter::new(self.spins);
        if !nowait {
            // Watch the slot before looking at anything else (see spin_until).
            waiter.spin_until(|| self.ring.has_message());
        }
        loop {
            let step = match self
                .ring
                .try_pop(Some(part), max.max(1), scratch, &mut sink)
            {
                Ok(n) => return Ok(n),
                Err(PopFail::Corrupted(e)) => return Err(Error::Corrupted(e)),
                Err(PopFail::Empty) if self.is_closed() => return Err(Error::Closed),
                Err(_) if nowait => return Err(Error::Empty),
                Err(PopFail::Empty) => waiter.wait(
                    deadline.as_ref(),
                    || self.ring.has_message(),
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
            if self.ring.len() == 0 && !self.any_live_writer() {
                return Err(Error::Disconnected);
            }
        }
        Ok(())
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
            let step = if let Some(pos) = self.ring.claim_in_flight() {
                waiter.in_flight(
                    deadline.as_ref(),
                    || self.ring.has_message(),
                    || self.ring.skip_dead_producer(pos),
                    || self.sleep_for_message(part, deadline.as_ref(), true),
                )
            } else if self.is_closed() {
                return Err(Error::Closed);
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
        c.geometry.0.closed.store(1, Ordering::Release);
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
        self.ring.release_participant();
    }
}

/// Adds one write handle of this process to `ctl`'s writer register.
fn add_writer(ctl: &Control) {
    let me = current_process();
    for w in &ctl.writers {
        if w.owner.load(Ordering::Acquire) == me {
            w.handles.fetch_add(1, Ordering::AcqRel);
            return;
        }
    }
    for w in &ctl.writers {
        let o = w.owner.load(Ordering::Acquire);
        let free = o == 0 || !process_alive(o);
        if free
            && w.owner
                .compare_exchange(o, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            w.handles.store(1, Ordering::Release);
            return;
        }
    }
    // More than WRITERS live writer processes: this one is not counted, so a
    // reader may report Disconnected while it lives. Documented on the types.
}

fn ensure_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn child() {
            // A forked child inherits its parent's write handles: count it as a
            // writer of each. Only atomics and the mapping are touched.
            for slot in &WRITE_HANDLES {
                let addr = slot.load(Ordering::Acquire);
                if addr != 0 {
                    // SAFETY: addr is the control block of a queue a live handle of
                    // this process (inherited from the parent) keeps mapped.
                    add_writer(unsafe { &*(addr as *const Control) });
                }
            }
        }
        // SAFETY: the handler is a plain function with static lifetime.
        unsafe { libc::pthread_atfork(None, None, Some(child)) };
    });
}

/// Converts an optional timeout into a deadline.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Deadline> {
    timeout.and_then(Deadline::after)
}
