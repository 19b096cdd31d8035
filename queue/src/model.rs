//! The ring's algorithm on heap memory, for the loom models only
//! (`cfg(multiproc_loom)`: never in a build users see).

use std::alloc::{alloc_zeroed, Layout};
use std::ptr::NonNull;

use crate::layout::Control;
pub use crate::ring::{Msg, PopFail, PushFail, Ring};

/// A ring of `capacity` slots for messages of up to `msg_max` bytes on the
/// heap (variable length, as a `ByteQueue`'s). Leaked: loom models are short.
pub fn ring(capacity: usize, msg_max: usize) -> Ring {
    make(capacity, msg_max, false)
}

/// A fixed-length ring of `capacity` slots for `u64`s, as a `Queue<u64>`'s.
pub fn fixed_ring(capacity: usize) -> Ring {
    make(capacity, 8, true)
}

/// `Queue::put`'s one-message fast path on a [`fixed_ring`]: whether `v` went in.
pub fn push_one(ring: &Ring, v: u64) -> bool {
    assert!(ring.fits_fixed::<u64>(), "a fixed_ring");
    // SAFETY: checked just above.
    unsafe { ring.push_one(ring.participant(), &v) }
}

/// `Queue::get`'s one-message fast path on a [`fixed_ring`].
pub fn pop_one(ring: &Ring) -> Option<u64> {
    assert!(ring.fits_fixed::<u64>(), "a fixed_ring");
    // SAFETY: checked just above; a u64 is valid for any bytes.
    unsafe { ring.pop_one(ring.participant()) }
}

/// `ByteQueue`'s one-message fast path of the puts on a [`ring`]: whether
/// `msg` went in.
pub fn push_bytes_one(ring: &Ring, msg: &[u8]) -> bool {
    ring.push_bytes_one(ring.participant(), msg)
}

/// `ByteQueue`'s one-message fast path of the gets on a [`ring`]: the
/// message, if one was there (`Err` says what was corrupted).
pub fn pop_bytes_one(ring: &Ring) -> Option<Result<Vec<u8>, crate::Corruption>> {
    let mut out = Vec::new();
    ring.pop_bytes_one(ring.participant(), &mut out, true)
        .map(|r| r.map(|_| out))
}

fn make(capacity: usize, msg_max: usize, fixed: bool) -> Ring {
    let lane = if fixed { 0 } else { crate::LANE_BYTES };
    let len = crate::layout::total_len(capacity, msg_max, fixed, lane);
    let layout = Layout::from_size_align(len, 128).expect("layout");
    // SAFETY: a non-zero size; the result is checked for NULL.
    let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("alloc");
    // SAFETY: 128-aligned, len bytes, unused.
    unsafe { crate::layout::init(base.as_ptr(), capacity, msg_max, fixed, false, false, lane) };
    // SAFETY: initialised just above.
    let checked =
        crate::layout::check(unsafe { base.cast::<Control>().as_ref() }, len).expect("geometry");
    // SAFETY: the memory is leaked, so it outlives the ring.
    unsafe { Ring::new(base, &checked) }
}

/// Declares the calling (loom) thread dead, as a SIGKILL would.
pub fn die() {
    crate::primitive::DEAD
        .lock()
        .unwrap()
        .push(crate::primitive::current_thread());
}

/// Sets the closed flag, as `Queue::close` does.
pub fn close(ring: &Ring) {
    ring.ctl()
        .geometry
        .0
        .ends
        .fetch_or(crate::ends::CLOSED, crate::primitive::Ordering::Release);
}

/// Whether the closed flag is set.
pub fn is_closed(ring: &Ring) -> bool {
    ring.ctl()
        .geometry
        .0
        .ends
        .load(crate::primitive::Ordering::Acquire)
        & crate::ends::CLOSED
        != 0
}

/// Claims a slot for putting and stops (a producer about to be killed).
pub fn claim_put_and_stop(ring: &Ring) {
    ring.claim_put_and_stop(ring.participant());
}

/// Claims the next message for getting and stops (a consumer about to be
/// killed).
pub fn claim_get_and_stop(ring: &Ring) {
    ring.claim_get_and_stop(ring.participant());
}

/// The skip of a dead consumer's slot at `pos`, as a producer that comes
/// round to it does: whether it freed the slot (and counted the loss).
pub fn skip_dead_consumer(ring: &Ring, pos: u64) -> bool {
    ring.skip_dead_consumer(pos)
}

/// The lane's decision about the large message announced at `first`, whose
/// taker died before it registered (`RawQueue::receiver_gone`): the loss is
/// counted, unless a skip of the taker's slot counted it.
pub fn lane_gives_up_on_taker(ring: &Ring, first: u64) {
    if !ring.takers_loss_counted(first) {
        ring.count_lost();
    }
}

/// The messages counted lost.
pub fn lost(ring: &Ring) -> u64 {
    ring.ctl()
        .wake
        .0
        .lost
        .load(crate::primitive::Ordering::SeqCst)
}
