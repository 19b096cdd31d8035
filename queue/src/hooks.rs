//! Test hooks: a producer or consumer stopped between the steps of an
//! operation (as one killed there would be), counts of sleepers, and the fuzz
//! entry point. Not part of the API: compiled with the `test-hooks` feature,
//! which this crate's own tests and the fuzz targets turn on, and hidden from
//! the documentation.

use crate::ring::Msg;
use crate::{ByteQueue, Joinable, Queue};
use multiproc_shm::ShmSafe;

#[doc(hidden)]
impl<T: ShmSafe + Copy> Queue<T> {
    /// Claims the next slot for putting and returns without publishing, as a
    /// producer killed right after its claim. The slot stays stuck until this
    /// thread is dead.
    pub fn hook_claim_put_and_stop(&self) {
        self.raw.claim_put_and_stop();
    }

    /// How many consumers and producers are recorded as asleep (or about to
    /// sleep), live or not.
    pub fn hook_sleepers(&self) -> (u32, u32) {
        self.raw.ring().sleepers()
    }

    /// Claims the next message without taking it or freeing its slot.
    pub fn hook_claim_get_and_stop(&self) {
        self.raw
            .ring()
            .claim_get_and_stop(self.raw.ring().participant());
    }

    /// Claims the next slot, calls `pause` (where a test stops the process),
    /// then publishes `item`; whether it claimed.
    pub fn hook_put_with_pause(&self, item: T, pause: impl FnOnce()) -> bool {
        let ring = self.raw.ring();
        ring.put_with_pause(ring.participant(), Queue::item_msg(&item), pause)
    }

    /// Claims the next message, calls `pause`, then takes it (and drops it) and
    /// frees its slot; whether it claimed.
    pub fn hook_get_with_pause(&self, pause: impl FnOnce()) -> bool {
        let ring = self.raw.ring();
        let mut scratch = vec![0u8; std::mem::size_of::<T>()];
        ring.get_with_pause(ring.participant(), &mut scratch, pause)
    }

    /// Claims slots for all of `items` at once (if that many are free) and
    /// publishes only the first `publish`, as a producer killed halfway through
    /// `put_many`; how many slots it claimed.
    pub fn hook_put_many_and_stop(&self, items: &[T], publish: usize) -> usize {
        let msgs: Vec<Msg> = items.iter().map(Queue::item_msg).collect();
        let ring = self.raw.ring();
        ring.push_some_and_stop(ring.participant(), &msgs, publish)
            .unwrap_or(0)
    }

    /// Claims up to `max` messages at once and takes only the first `take`, as a
    /// consumer killed halfway through `get_many`; how many it claimed.
    pub fn hook_get_many_and_stop(&self, max: usize, take: usize) -> usize {
        let ring = self.raw.ring();
        let mut scratch = vec![0u8; std::mem::size_of::<T>()];
        ring.pop_some_and_stop(ring.participant(), max, take, &mut scratch)
            .unwrap_or(0)
    }

    /// Tries to claim positions `pos..pos + n` for putting (`get`: for
    /// getting), as a claimer that read the cursor as `pos` and raced another
    /// for it would; whether it won.
    pub fn hook_claim_at(&self, pos: u64, n: u64, get: bool) -> bool {
        let ring = self.raw.ring();
        ring.claim_at(ring.participant(), pos, n, get)
    }
}

#[doc(hidden)]
impl<Q> Joinable<Q>
where
    Q: crate::joinable::Inner,
{
    /// Threads counted asleep in `join`, live or not.
    pub fn hook_joiners(&self) -> u32 {
        crate::joinable::raw_of(self)
            .ring()
            .ctl()
            .wake
            .0
            .join_sleepers
            .count()
    }
}

#[doc(hidden)]
impl ByteQueue {
    /// As [`Queue::hook_claim_put_and_stop`].
    pub fn hook_claim_put_and_stop(&self) {
        self.raw.claim_put_and_stop();
    }

    /// As [`Queue::hook_claim_get_and_stop`].
    pub fn hook_claim_get_and_stop(&self) {
        self.raw
            .ring()
            .claim_get_and_stop(self.raw.ring().participant());
    }

    /// As [`Queue::hook_sleepers`].
    pub fn hook_sleepers(&self) -> (u32, u32) {
        self.raw.ring().sleepers()
    }

    /// Takes the next message within `timeout`, as `get_bytes_timeout` does,
    /// and calls `pause` between taking a large message's announcement and
    /// receiving its stream (where a receiver descheduled, stopped or killed
    /// between the two steps is). `None` when the message was lost.
    pub fn hook_get_bytes_with_pause(
        &self,
        timeout: std::time::Duration,
        pause: impl FnOnce(),
    ) -> crate::Result<Option<Vec<u8>>> {
        let deadline = crate::raw::deadline(Some(timeout));
        let ring = self.raw.ring();
        let mut scratch = vec![0u8; ring.msg_max().max(ring.data_max())];
        let (mut msg, mut large) = (Vec::new(), false);
        self.raw
            .get(1, deadline, false, &mut scratch, |m, is_large| {
                msg = m.to_vec();
                large = is_large;
            })?;
        if !large {
            return Ok(Some(msg));
        }
        pause();
        let mut out = Vec::new();
        Ok(
            match self.raw.get_large(&msg, &mut out, usize::MAX, deadline)? {
                crate::large::Received::Whole => Some(out),
                crate::large::Received::Lost => None,
            },
        )
    }
}

/// The bytes of a well-formed queue for the fuzz seed `name` (see
/// `fuzz/README.md`), holding one message; byte queues with the smallest lane,
/// so that seeds stay small.
pub fn fuzz_seed(name: &str) -> Option<Vec<u8>> {
    use multiproc_shm::{Location, Segment};
    fn bytes(seg: &Segment) -> Vec<u8> {
        let mut b = vec![0; seg.len()];
        seg.read_volatile(0, &mut b).expect("inside the segment");
        b
    }
    let byte_queue = |capacity, max_inline, msg: &[u8]| {
        let q = ByteQueue::make_with_lane(
            Location::Anonymous,
            capacity,
            max_inline,
            false,
            false,
            crate::layout::LANE_MIN,
        )
        .ok()?;
        q.put_bytes(msg).ok()?;
        Some(bytes(q.segment()))
    };
    let queue = |capacity| {
        let q = Queue::<u64>::new(capacity).ok()?;
        q.put(0x5eed).ok()?;
        Some(bytes(q.segment()))
    };
    match name {
        "valid-capacity-2" => queue(2),
        "valid-capacity-16" => queue(16),
        "valid-bytes-capacity-3" => byte_queue(3, 24, b"seed"),
        "valid-bytes-capacity-4-of-64" => byte_queue(4, 64, &[0x5e; 64]),
        "lane-put" => Some(lane_seed(0, false)),
        "lane-announced" => Some(lane_seed(1, true)),
        "lane-announced-over-limit" => Some(lane_seed(5, true)),
        _ => None,
    }
}

/// Runs the ring's checks and operations over `bytes` taken as a queue's memory
/// (control block and slots), as another process could have written it: the
/// entry point of the `queue_memory` fuzz target. Never panics, never touches
/// memory outside a copy of `bytes`. Returns how many messages the gets took,
/// or why the bytes were refused before any operation (too short, or the
/// geometry check's answer).
pub fn fuzz_ring_bytes(bytes: &[u8]) -> std::result::Result<usize, String> {
    use crate::{layout, ring};
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    if bytes.len() < std::mem::size_of::<layout::Control>() {
        return Err(format!("{} bytes hold no control block", bytes.len()));
    }
    let Ok(mem) = Layout::from_size_align(bytes.len(), 128) else {
        return Err("no such allocation".into());
    };
    // SAFETY: a non-zero size; checked for NULL below.
    let Some(base) = std::ptr::NonNull::new(unsafe { alloc_zeroed(mem) }) else {
        return Err("allocation failed".into());
    };
    // SAFETY: base is valid for bytes.len() bytes and does not overlap `bytes`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.as_ptr(), bytes.len()) };
    // SAFETY: 128-aligned memory of at least a Control, made of atomics only.
    let ctl = unsafe { base.cast::<layout::Control>().as_ref() };
    let checked = layout::check(ctl, bytes.len());
    let mut taken = 0;
    if let Ok(checked) = &checked {
        // SAFETY: the geometry was checked against this allocation, which outlives the ring.
        let ring = unsafe { ring::Ring::new(base, checked) };
        // A fixed-length ring takes messages of exactly msg_max bytes.
        let item = vec![0x5a_u8; checked.msg_max];
        let msg = ring::Msg {
            ptr: item.as_ptr(),
            len: if checked.fixed {
                checked.msg_max
            } else {
                checked.msg_max.min(8)
            },
            large: false,
        };
        let mut scratch = vec![0u8; checked.msg_max.max(layout::ANNOUNCEMENT)];
        let part = ring.participant();
        for _ in 0..4 {
            let _ = ring.try_push(part, &[msg, msg]);
            taken += ring
                .try_pop(part, 3, &mut scratch, |m, _| {
                    assert!(m.len() <= checked.msg_max.max(layout::ANNOUNCEMENT))
                })
                .unwrap_or(0);
            let _ = ring.len();
            let _ = ring.has_room();
            let _ = ring.has_message();
            let _ = ring.claim_in_flight();
            if ring.fits_fixed::<u64>() {
                // The fast paths of a Queue<u64>, as Queue checks before using them.
                // SAFETY: checked just above; a u64 is valid for any bytes.
                unsafe {
                    let _ = ring.push_one(part, &0x5a5a_u64);
                    taken += usize::from(ring.pop_one::<u64>(part).is_some());
                }
            }
            if !checked.fixed {
                // The fast paths of a ByteQueue, which attaches only to such a ring.
                let _ = ring.push_bytes_one(part, &item[..checked.msg_max.min(8)]);
                let mut out = Vec::new();
                if let Some(Ok(large)) = ring.pop_bytes_one(part, &mut out, true) {
                    assert!(
                        out.len() <= checked.msg_max
                            || (large && out.len() == layout::ANNOUNCEMENT)
                    );
                    taken += 1;
                }
            }
            let mut spins = 3;
            ring.spin_for_message(&mut spins);
            ring.spin_for_room(&mut spins);
        }
    }
    // SAFETY: allocated above with this layout.
    unsafe { dealloc(base.as_ptr(), mem) };
    checked.map(|_| taken).map_err(|e| e.to_string())
}

/// A byte queue with a small lane, and its memory once warmed up (a
/// large message put and taken, so that its handle's participant record is
/// in it), for [`fuzz_lane_bytes`]: one for the whole run, put back to these
/// bytes before each input (a new queue per input would spend the run in
/// `mmap`).
struct LaneRig {
    q: ByteQueue,
    fresh: Vec<u8>,
    /// Where the lane's control and its bytes lie in the segment, and how
    /// many bytes it holds.
    ctl_at: usize,
    lane_at: usize,
    lane_bytes: usize,
}

/// Its lane: messages up to 256 bytes go in whole with nobody reading, the
/// longer ones stall (and their puts time out) past it.
const LANE_RIG_BYTES: usize = 256;

fn lane_rig() -> &'static LaneRig {
    static RIG: std::sync::OnceLock<LaneRig> = std::sync::OnceLock::new();
    RIG.get_or_init(|| {
        // A stalled stream is given up after a check interval: short, so
        // that an input costs at most a few milliseconds.
        multiproc_sync::set_owner_check_interval(std::time::Duration::from_millis(1));
        let q = ByteQueue::make_with_lane(
            multiproc_shm::Location::Anonymous,
            4,
            64,
            false,
            false,
            LANE_RIG_BYTES,
        )
        .expect("a byte queue");
        q.put_bytes(&[1; 100])
            .expect("a large message in an empty queue");
        assert_eq!(q.get_bytes().expect("the message just put").len(), 100);
        let mut fresh = vec![0; q.segment().len()];
        q.segment()
            .read_volatile(0, &mut fresh)
            .expect("inside the segment");
        let (lane, lane_bytes) = q.raw.ring().lane();
        LaneRig {
            ctl_at: std::mem::offset_of!(crate::layout::Control, lane),
            // The lane's bytes follow the slots, in the same mapping.
            lane_at: lane as usize - q.segment().as_ptr() as usize,
            lane_bytes,
            q,
            fresh,
        }
    })
}

/// An input of [`fuzz_lane_bytes`] whose lane is a real one: as the last
/// stream left it, or (`written`) carrying a stream of 100 bytes that nobody
/// has taken yet, with its announcement.
fn lane_seed(op: u8, written: bool) -> Vec<u8> {
    let rig = lane_rig();
    let (q, seg) = (&rig.q, rig.q.segment());
    seg.write_volatile(0, &rig.fresh)
        .expect("inside the segment");
    let msg = [0x5e; 100];
    if written {
        q.put_bytes(&msg)
            .expect("a large message in an empty queue");
    }
    let lane = &q.raw.ring().ctl().lane.0;
    let stream = lane.stream.load(std::sync::atomic::Ordering::Relaxed);
    let mut seed = vec![op, 0];
    seed.extend_from_slice(&stream.to_le_bytes());
    seed.extend_from_slice(&(msg.len() as u64).to_le_bytes());
    let mut ctl = vec![0; std::mem::size_of::<crate::layout::Lane>()];
    seg.read_volatile(rig.ctl_at, &mut ctl)
        .expect("inside the segment");
    seed.extend_from_slice(&ctl);
    let mut bytes = vec![0; rig.lane_bytes];
    seg.read_volatile(rig.lane_at, &mut bytes)
        .expect("inside the segment");
    seed.extend_from_slice(&bytes);
    seg.write_volatile(0, &rig.fresh)
        .expect("inside the segment");
    seed
}

/// The large-message lane (its control words and its bytes) and an
/// announcement in the ring, as a buggy or hostile process may have written
/// them, for the `lane_memory` fuzz target. The input's first byte chooses
/// what happens, the second a message's length; then 16 bytes of an
/// announcement, the lane's control, its bytes, and its control again:
///
/// - a forged announcement, put into the ring as a producer puts one, then
///   taken (with or without a length limit);
/// - or a real large message put over a lane a peer wrote (the put answers
///   or fails with a typed error), the lane written over again by the peer
///   meanwhile or not, then taken.
///
/// Every call waits at most a few milliseconds and none may panic or touch
/// memory outside the queue. Where nobody wrote over the lane after the put,
/// a put that succeeded is taken whole and unchanged (the producer reset the
/// lane it found): anything else is a silent loss, and panics. Returns how
/// many messages were taken.
pub fn fuzz_lane_bytes(data: &[u8]) -> std::result::Result<usize, String> {
    use crate::layout::{Lane, ANNOUNCEMENT};
    use std::time::Duration;
    let rig = lane_rig();
    let (q, seg) = (&rig.q, rig.q.segment());
    seg.write_volatile(0, &rig.fresh)
        .map_err(|e| e.to_string())?;
    let op = data.first().copied().unwrap_or(0);
    let len = 65 + 3 * usize::from(data.get(1).copied().unwrap_or(0));
    let rest = data.get(2..).unwrap_or(&[]);
    let (ann, rest) = rest.split_at(rest.len().min(ANNOUNCEMENT));
    let ctl_len = std::mem::size_of::<Lane>();
    let (ctl, bytes) = rest.split_at(rest.len().min(ctl_len));
    let (ctl_at, lane_at, lane_bytes) = (rig.ctl_at, rig.lane_at, rig.lane_bytes);
    let scribble = |ctl: &[u8], bytes: &[u8]| -> std::result::Result<(), String> {
        seg.write_volatile(ctl_at, ctl).map_err(|e| e.to_string())?;
        let bytes = &bytes[..bytes.len().min(lane_bytes)];
        seg.write_volatile(lane_at, bytes)
            .map_err(|e| e.to_string())
    };
    let limit = if op & 4 != 0 { len - 1 } else { usize::MAX };
    let mut out = Vec::new();
    let mut taken = 0;
    if op & 1 != 0 {
        // A forged announcement of a stream the lane may or may not carry.
        scribble(ctl, bytes)?;
        let ring = q.raw.ring();
        let msg = Msg {
            ptr: ann.as_ptr(),
            len: ann.len(),
            large: true,
        };
        if ring.try_push(ring.participant(), &[msg]).is_ok() {
            if let Ok(n) = q.get_bytes_into_limited(&mut out, limit, Some(Duration::ZERO)) {
                assert!(n <= limit && n == out.len());
                taken += 1;
            }
        }
        return Ok(taken);
    }
    // A real message, over a lane a peer wrote.
    scribble(ctl, bytes)?;
    let msg: Vec<u8> = (0..len).map(|i| i as u8 ^ op).collect();
    let timeout = if op & 8 != 0 {
        Duration::from_millis(1)
    } else {
        Duration::ZERO
    };
    let put = q.put_bytes_timeout(&msg, timeout);
    let written_over = op & 2 != 0;
    if written_over {
        // The peer writes the lane's control again, mid-flight, from the
        // input's bytes past the lane's.
        let again = bytes.get(lane_bytes..).unwrap_or(&[]);
        scribble(&again[..again.len().min(ctl_len)], &[])?;
    }
    let got = q.get_bytes_into_limited(&mut out, limit, Some(Duration::ZERO));
    if let Ok(n) = got {
        assert!(n <= limit && n == out.len());
        taken += 1;
    }
    if put.is_ok() && !written_over {
        // Fits the lane (256 bytes) whole, with nobody reading yet.
        if len <= lane_bytes {
            match got {
                Ok(_) => assert!(out == msg, "a message put whole came back changed"),
                Err(crate::Error::MessageOverLimit { len: l, max }) => {
                    assert_eq!((l, max), (len as u64, limit));
                }
                Err(e) => panic!("a message put whole was not taken: {e}"),
            }
        }
    }
    Ok(taken)
}
