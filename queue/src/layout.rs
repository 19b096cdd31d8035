//! The queue's memory: a control block, then `capacity` slots.
//!
//! ```text
//! Control (9 216 bytes, 128-aligned)
//!   line 0   tail: next position a producer claims          (producers write)
//!   line 1   head: next position a consumer claims          (consumers write)
//!   line 2   futex words, sleeper masks (a bit per participant) and the
//!            joiners' count, lost-message count, tasks done
//!   line 3   geometry (layout version, capacity, message size, slot size, fixed
//!            or variable length, pipe or queue, lane size) and the `ends` word:
//!            the closed flag and the write and read handles held (see `ends`)
//!   64 × Participant  {thread record, positions it is putting (first, end),
//!                     positions it is getting (first, end)}, 128 bytes each (no
//!                     false sharing)
//!   32 × Holder       {process record, write handles it holds}
//!   32 × Holder       {process record, read handles it holds} (pipes only)
//!   line     the large-message lane's control (see `large`)
//! Slot × capacity, each slot_size bytes: 8, 16, 32 or 64 (several slots to a
//! cache line) or a multiple of 64
//!   seq: u64   Vyukov's sequence, doubled: == 2·pos free for the producer of pos,
//!              == 2·pos + 1 holds the message of pos, == 2·(pos + capacity) free
//!              again (doubling keeps the states apart even for capacity 1)
//!   len: u32   message length, then 4 bytes of padding — only in a variable-length
//!              ring (`ByteQueue`, `Pipe`); in a fixed-length one (`Queue<T>`) every
//!              message is exactly the message size and data follows seq
//!   data: [u8; message size, rounded up to 8 (at least 16 in a variable-length
//!              ring: the announcement of a large message)]
//! Lane: lane_bytes of a variable-length ring (0 for a fixed one), through which
//! a message larger than a slot streams (see `large`).
//! ```
//!
//! Small slots share cache lines on purpose: a producer that fills four 16-byte
//! slots moves one line to the consumer, not four (a third of the time per
//! message; see `benches/NOTES.md`).
//!
//! Positions are 64-bit and never wrap, so the capacity need not be a power of
//! two: slot `pos % capacity` serves positions `pos`, `pos + capacity`, … (a mask
//! when it is one). Every value here may have been written
//! by a buggy or hostile peer: the ring masks positions, checks lengths against
//! the message size, and copies a message out before looking at it.

use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::Corruption;

/// Threads that can use one queue at once with dead-peer detection (4 under loom,
/// to keep the models small).
pub const PARTICIPANTS: usize = if cfg!(multiproc_loom) { 4 } else { 64 };
// One bit per participant in the sleeper masks (`Wake::get_sleepers`).
const _: () = assert!(PARTICIPANTS <= 64);
/// Processes that can hold one queue open for writing (or a pipe direction
/// open for reading) at once and be tracked.
pub const HOLDERS: usize = if cfg!(multiproc_loom) { 2 } else { 32 };
/// A participant's first-position field when it is not putting or getting anything.
pub(crate) const IDLE: u64 = u64::MAX;
/// Largest capacity (positions are 64-bit; capacities fit the header's count).
pub const MAX_CAPACITY: usize = 1 << 30;
/// Largest message a slot can hold (larger ones stream through the lane).
pub const MAX_MESSAGE: usize = 1 << 24;
/// Bytes of a byte queue's lane by default: larger messages stream through it
/// in turn.
pub const LANE_BYTES: usize = if cfg!(multiproc_loom) { 64 } else { 256 * 1024 };
/// The smallest and largest lane a byte queue may have.
pub(crate) const LANE_MIN: usize = 64;
pub(crate) const LANE_MAX: usize = 1 << 30;
/// The version of this layout, in every control block: a queue made by a build
/// with another layout is refused with a clear error, not misread.
pub(crate) const LAYOUT_VERSION: u32 = 6;

/// One cache line (128 bytes: two 64-byte lines, as adjacent-line prefetch pairs them).
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub(crate) T);

#[repr(C)]
pub(crate) struct Wake {
    /// Bumped by a producer that wakes consumers; consumers sleep on it.
    pub(crate) put_seq: AtomicU32,
    /// Bumped by a consumer that wakes producers; producers sleep on it.
    pub(crate) get_seq: AtomicU32,
    /// JoinableQueue: bumped when the unfinished count reaches zero; `join`
    /// sleeps on it.
    pub(crate) join_seq: AtomicU32,
    pub(crate) reserved: AtomicU32,
    /// Threads asleep in `join` (a count that forgets those killed asleep).
    pub(crate) join_sleepers: multiproc_sync::futex::Sleepers,
    /// Consumers asleep, or about to sleep, on `put_seq`: bit `i` for
    /// participant `i`. A bit per sleeper rather than a count, so that the bit
    /// of a thread killed asleep can be told apart and cleared
    /// (`Ring::forget_dead_sleepers`); a count would stay up for good, and every
    /// put would pay a futex wake for the dead.
    pub(crate) get_sleepers: AtomicU64,
    /// Producers asleep, or about to sleep, on `get_seq`, as for consumers.
    pub(crate) put_sleepers: AtomicU64,
    /// When every thread recorded in the two masks has surely woken by itself
    /// (`multiproc_sync::futex::sleep_ends_by`): until then, a bit may belong to
    /// a live thread on its way to sleep, and nobody looks for the dead.
    pub(crate) sleep_until: AtomicU64,
    /// Messages lost to a dead producer or consumer, or to corruption.
    pub(crate) lost: AtomicU64,
    /// JoinableQueue: `task_done` calls. The unfinished count is the positions
    /// claimed for putting (`tail`) less those done and lost: there is no count
    /// to keep on the put path, so a producer killed anywhere in a put leaves it
    /// right.
    pub(crate) done: AtomicU64,
}

#[repr(C)]
pub(crate) struct Geometry {
    pub(crate) layout: AtomicU32,
    /// 1 when every message is exactly `msg_max` bytes (no length in the slots).
    pub(crate) fixed: AtomicU32,
    pub(crate) capacity: AtomicU64,
    pub(crate) msg_max: AtomicU64,
    pub(crate) slot_size: AtomicU64,
    /// The closed flag and the handle counts (see `ends`): the word a put's
    /// fast path reads.
    pub(crate) ends: AtomicU64,
    pub(crate) joinable: AtomicU32,
    /// 1 for a pipe direction: its read handles are counted too, and a put
    /// with none left fails at once.
    pub(crate) pipe: AtomicU32,
    /// Bytes of the lane after the slots (0: no large messages).
    pub(crate) lane_bytes: AtomicU64,
}

/// One thread's entry: who it is and which positions it is claiming. Each has its
/// own 128 bytes: its thread writes the claimed position on every put and get, and
/// entries sharing a line would bounce it between processes.
#[repr(C, align(128))]
pub struct Participant {
    /// Thread record of its owner (`multiproc_sync::owner`), 0 when free.
    pub(crate) owner: AtomicU64,
    /// The positions it is putting, `put_pos..put_end` (written before it claims
    /// them), or `put_pos == IDLE`. A single claim writes only `put_pos`: an end
    /// not past it reads as one position (see `ring::Claims`).
    pub(crate) put_pos: AtomicU64,
    pub(crate) put_end: AtomicU64,
    /// The positions it is getting, `get_pos..get_end`, as for putting.
    pub(crate) get_pos: AtomicU64,
    pub(crate) get_end: AtomicU64,
}

/// A process that holds handles of one role (writing, or reading a pipe).
#[repr(C)]
pub(crate) struct Holder {
    /// Process record, 0 when free.
    pub(crate) owner: AtomicU64,
    /// Handles of that role the process holds.
    pub(crate) handles: AtomicU64,
}

/// The large-message lane's control (see `large` for the protocol).
#[repr(C)]
pub(crate) struct Lane {
    /// Held by the producer streaming a message through the lane.
    pub(crate) send: multiproc_sync::Lock,
    /// Thread record of that producer.
    pub(crate) producer: AtomicU64,
    /// Thread record of the receiver of the current stream, 0 until one took
    /// its announcement.
    pub(crate) receiver: AtomicU64,
    /// The stream the lane carries now.
    pub(crate) stream: AtomicU64,
    /// Its length in bytes.
    pub(crate) total: AtomicU64,
    /// The ring position of its announcement.
    pub(crate) first_pos: AtomicU64,
    /// `stream << 48 | bytes written` of the current stream.
    pub(crate) written: AtomicU64,
    /// `stream << 48 | bytes read` of the current stream.
    pub(crate) read: AtomicU64,
    /// Bumped after each write; the receiver sleeps on it.
    pub(crate) write_seq: AtomicU32,
    /// Bumped after each read; the producer sleeps on it.
    pub(crate) read_seq: AtomicU32,
    /// Bit 0: the receiver may be asleep on `write_seq`; bit 1: the producer
    /// may be asleep on `read_seq`.
    pub(crate) sleeping: AtomicU32,
    pub(crate) reserved: AtomicU32,
    /// One past the highest ring position of an announcement whose taker
    /// died holding its slot and whose slot a skip freed (0: none): that
    /// skip counted the message lost, so the lane's own decision about the
    /// stream counts nothing more (see `large`).
    pub(crate) skipped: AtomicU64,
}

#[repr(C)]
pub(crate) struct Control {
    pub(crate) tail: Line<AtomicU64>,
    pub(crate) head: Line<AtomicU64>,
    pub(crate) wake: Line<Wake>,
    pub(crate) geometry: Line<Geometry>,
    pub(crate) participants: [Participant; PARTICIPANTS],
    pub(crate) writers: [Holder; HOLDERS],
    pub(crate) readers: [Holder; HOLDERS],
    pub(crate) lane: Line<Lane>,
}

#[cfg(not(multiproc_loom))]
const _: () = assert!(
    std::mem::size_of::<Control>() == 4 * 128 + PARTICIPANTS * 128 + 2 * HOLDERS * 16 + 128
);
#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Lane>() <= 128);
#[cfg(not(multiproc_loom))]
const _: () = assert!(
    std::mem::size_of::<Wake>() == 72
        && std::mem::size_of::<Geometry>() == 56
        && std::mem::size_of::<Participant>() == 128
        && std::mem::size_of::<Holder>() == 16
        && std::mem::size_of::<Lane>() == 96
);

/// Where a slot's length (a u32) lies, in a variable-length ring: after the
/// sequence (8 bytes; more under loom, whose atomics are larger).
pub(crate) const LEN_OFFSET: usize = std::mem::size_of::<AtomicU64>().next_multiple_of(8);
#[cfg(not(multiproc_loom))]
const _: () = assert!(LEN_OFFSET == 8);

/// Bytes of a slot's header: the sequence, and in a variable-length ring the
/// message length (a u32, padded to 8): 8 or 16 bytes.
pub(crate) fn slot_header(fixed: bool) -> usize {
    if fixed {
        LEN_OFFSET
    } else {
        LEN_OFFSET + std::mem::size_of::<AtomicU32>().next_multiple_of(8)
    }
}

/// Bytes of a large message's announcement in a slot: its stream and length.
pub(crate) const ANNOUNCEMENT: usize = 16;

/// Bytes per slot for messages of up to `msg_max` bytes: a power of two up to a
/// cache line (so that no slot straddles two), else whole lines. A
/// variable-length slot holds at least a large message's announcement.
pub(crate) fn slot_size(msg_max: usize, fixed: bool) -> usize {
    let data = if fixed {
        msg_max
    } else {
        msg_max.max(ANNOUNCEMENT)
    };
    let raw = slot_header(fixed) + data.next_multiple_of(8);
    if raw <= 64 {
        raw.next_power_of_two()
    } else {
        raw.next_multiple_of(64)
    }
}

/// Bytes of the whole structure, with a lane of `lane` bytes (0 for a fixed ring).
pub(crate) fn total_len(capacity: usize, msg_max: usize, fixed: bool, lane: usize) -> usize {
    std::mem::size_of::<Control>() + capacity * slot_size(msg_max, fixed) + lane
}

/// Whether `lane` bytes are a lane a ring of this kind may have: none for a
/// fixed-length ring; a multiple of 64 from [`LANE_MIN`] to [`LANE_MAX`] else.
pub(crate) fn lane_ok(lane: u64, fixed: bool) -> bool {
    if fixed {
        lane == 0
    } else {
        (LANE_MIN as u64..=LANE_MAX as u64).contains(&lane) && lane.is_multiple_of(64)
    }
}

/// Writes a fresh control block and slots at `base`.
///
/// # Safety
/// - `base` is aligned to 128 and valid for writes of `total_len(capacity, msg_max, fixed, lane)` bytes;
/// - nothing else uses that memory until this returns;
/// - `capacity` is 1 to [`MAX_CAPACITY`], `msg_max` ≤ [`MAX_MESSAGE`].
pub(crate) unsafe fn init(
    base: *mut u8,
    capacity: usize,
    msg_max: usize,
    fixed: bool,
    joinable: bool,
    pipe: bool,
    lane: usize,
) {
    debug_assert!((1..=MAX_CAPACITY).contains(&capacity));
    debug_assert!(msg_max <= MAX_MESSAGE);
    debug_assert!(lane_ok(lane as u64, fixed));
    debug_assert_eq!(base as usize % 128, 0);
    let ctl = base.cast::<Control>();
    // SAFETY: base is valid and aligned for a Control (caller), and unused.
    unsafe {
        ctl.write(Control {
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            wake: Line(Wake {
                put_seq: AtomicU32::new(0),
                get_seq: AtomicU32::new(0),
                join_seq: AtomicU32::new(0),
                reserved: AtomicU32::new(0),
                join_sleepers: multiproc_sync::futex::Sleepers::new(),
                get_sleepers: AtomicU64::new(0),
                put_sleepers: AtomicU64::new(0),
                sleep_until: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                done: AtomicU64::new(0),
            }),
            geometry: Line(Geometry {
                layout: AtomicU32::new(LAYOUT_VERSION),
                fixed: AtomicU32::new(u32::from(fixed)),
                capacity: AtomicU64::new(capacity as u64),
                msg_max: AtomicU64::new(msg_max as u64),
                slot_size: AtomicU64::new(slot_size(msg_max, fixed) as u64),
                ends: AtomicU64::new(0),
                joinable: AtomicU32::new(u32::from(joinable)),
                pipe: AtomicU32::new(u32::from(pipe)),
                lane_bytes: AtomicU64::new(lane as u64),
            }),
            participants: std::array::from_fn(|_| Participant {
                owner: AtomicU64::new(0),
                put_pos: AtomicU64::new(IDLE),
                put_end: AtomicU64::new(IDLE),
                get_pos: AtomicU64::new(IDLE),
                get_end: AtomicU64::new(IDLE),
            }),
            writers: std::array::from_fn(|_| Holder {
                owner: AtomicU64::new(0),
                handles: AtomicU64::new(0),
            }),
            readers: std::array::from_fn(|_| Holder {
                owner: AtomicU64::new(0),
                handles: AtomicU64::new(0),
            }),
            lane: Line(Lane {
                send: multiproc_sync::Lock::new(),
                producer: AtomicU64::new(0),
                receiver: AtomicU64::new(0),
                stream: AtomicU64::new(0),
                total: AtomicU64::new(0),
                first_pos: AtomicU64::new(0),
                written: AtomicU64::new(0),
                read: AtomicU64::new(0),
                write_seq: AtomicU32::new(0),
                read_seq: AtomicU32::new(0),
                sleeping: AtomicU32::new(0),
                reserved: AtomicU32::new(0),
                skipped: AtomicU64::new(0),
            }),
        })
    };
    let slots = base.wrapping_add(std::mem::size_of::<Control>());
    for i in 0..capacity {
        let slot = slots.wrapping_add(i * slot_size(msg_max, fixed));
        // SAFETY: slot i lies inside the region (caller) and is 8-aligned (slot
        // sizes are multiples of 8 after a 128-aligned control block); its header
        // is a u64 sequence, then in a variable-length ring a u32 length.
        unsafe {
            slot.cast::<AtomicU64>().write(AtomicU64::new(2 * i as u64));
            if !fixed {
                slot.add(LEN_OFFSET)
                    .cast::<AtomicU32>()
                    .write(AtomicU32::new(0));
            }
        }
    }
}

/// The geometry a control block claims, checked against the mapping it lies in.
pub(crate) struct Checked {
    pub(crate) capacity: usize,
    pub(crate) msg_max: usize,
    pub(crate) fixed: bool,
    pub(crate) pipe: bool,
    pub(crate) lane_bytes: usize,
}

/// Checks the geometry of the control block at `ctl` against `len` bytes of mapping.
pub(crate) fn check(ctl: &Control, len: usize) -> Result<Checked, Corruption> {
    let g = &ctl.geometry.0;
    let layout = g.layout.load(Ordering::Relaxed);
    if layout != LAYOUT_VERSION {
        return Err(Corruption::LayoutVersion {
            found: layout.into(),
            expected: LAYOUT_VERSION.into(),
        });
    }
    let fixed = match g.fixed.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        f => return Err(field("the fixed-length flag", f.into())),
    };
    let capacity = g.capacity.load(Ordering::Relaxed);
    let msg_max = g.msg_max.load(Ordering::Relaxed);
    let slot = g.slot_size.load(Ordering::Relaxed);
    if capacity == 0 || capacity > MAX_CAPACITY as u64 {
        return Err(field("the capacity", capacity));
    }
    if msg_max > MAX_MESSAGE as u64 {
        return Err(field("the message size", msg_max));
    }
    let (capacity, msg_max) = (capacity as usize, msg_max as usize);
    if slot != slot_size(msg_max, fixed) as u64 {
        return Err(Corruption::SlotSize {
            slot,
            msg_max: msg_max as u64,
        });
    }
    let pipe = match g.pipe.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        f => return Err(field("the pipe flag", f.into())),
    };
    let lane = g.lane_bytes.load(Ordering::Relaxed);
    if !lane_ok(lane, fixed) {
        return Err(Corruption::Lane { bytes: lane, fixed });
    }
    let needed = total_len(capacity, msg_max, fixed, lane as usize);
    if needed > len {
        return Err(Corruption::TooSmall { needed, len });
    }
    Ok(Checked {
        capacity,
        msg_max,
        fixed,
        pipe,
        lane_bytes: lane as usize,
    })
}

/// A geometry field of an impossible value.
fn field(what: &'static str, value: u64) -> Corruption {
    Corruption::Field { what, value }
}
