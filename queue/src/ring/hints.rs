//! Requests for cache lines a put or get is about to need (`prefetchw`): hints,
//! which change no memory and never fault. Measurements behind each choice are
//! in `benches/NOTES.md`.

use super::Ring;

impl Ring {
    /// Asks for the cache line of the next slot that does not share `pos`'s
    /// line, for writing. A producer asks once `pos` is published (unless it
    /// is replying: see
    /// [`claim_next_line_unless_replying`](Ring::claim_next_line_unless_replying)):
    /// the consumers freed that line a lap ago and hold it, and without the hint
    /// the producer's next claim (a locked instruction, which waits for every
    /// earlier store) would wait for it to cross (a third faster, one line
    /// ahead; more lines did worse).
    ///
    /// A byte queue's consumer asks as soon as it has claimed `pos`, only
    /// where every slot has a line or more to itself (`next_line` is 1), so
    /// that the next message's line crosses while this one is copied out; with
    /// slots that share a line its hint took lines its producer was filling,
    /// and `pop_one` does not ask. It asks only when the message was there at
    /// its get's first look (it is behind its producer, and the next message
    /// is likely written): a consumer that waited for its message is caught
    /// up, the next slot is the one its producer writes next, and taking that
    /// line from under the producer cost a Pipe's request+reply 1.5-1.8×
    /// (64 slots of 16 KiB each way; `benches/NOTES.md`).
    ///
    /// A byte queue's producer does not ask where every slot has a line or
    /// more to itself: there the next slot's line is the one an idle consumer
    /// is watching for the next message, and taking it from under the
    /// consumer cost a Pipe's request+reply 1.3-1.9× (the consumer's own hint
    /// there, and streaming, measured the same either way; `benches/NOTES.md`).
    ///
    /// Neither asks in a ring of fewer than four lines, where the next line
    /// may hold what a peer is reading or writing (a ping-pong through a ring
    /// of one slot).
    #[inline(always)]
    pub(super) fn claim_next_line(&self, pos: u64) {
        if self.next_line != 0 {
            crate::primitive::prefetch_for_write(self.slot_start(pos.wrapping_add(self.next_line)));
        }
    }

    /// A producer's [`claim_next_line`](Ring::claim_next_line) after its put of
    /// one message published `pos`, unless this thread's last get spun
    /// waiting for its message (see [`note_get_waited`]; a get that sleeps at
    /// once, with a spin limit of 0, leaves no mark): such a put is most likely a
    /// reply, or the next request of a thread that waits for each answer, and
    /// its consumer is as likely waiting for it. The next line is then the
    /// one that consumer watches once it has taken this line's messages: the
    /// ask took it from the consumer, the consumer's watch took it back, and
    /// the producer's next write took it once more. A request+reply through
    /// two queues of 16 or more slots of 8 bytes cost 1.2-1.35× what it did
    /// through queues of fewer than four lines, where nothing asks, and
    /// through queues of four or more 56-byte slots 1.6-2.0×; without the ask
    /// 1.0-1.2× and 1.0-1.5× (`benches/NOTES.md`). A producer that streams
    /// never waits in a get, and asks as before.
    #[inline(always)]
    pub(super) fn claim_next_line_unless_replying(&self, pos: u64) {
        if self.next_line != 0 && !GET_WAITED.replace(false) {
            self.claim_next_line(pos);
        }
    }

    /// Asks for the line of the slot the next put will fill, for writing (a
    /// sole producer that knows that slot is free: see
    /// `ByteQueue::ask_for_next_put`).
    pub(crate) fn claim_next_put(&self) {
        let tail = self.ctl().tail.0.load(std::sync::atomic::Ordering::Relaxed);
        crate::primitive::prefetch_for_write(self.slot_start(tail));
    }

    /// Asks for the lines of the slots from `pos` on that a batch of `n` puts
    /// will fill (at most a ring's worth), for writing, before the batch reads
    /// their sequences: the lines then cross once, together, instead of one
    /// after another and twice each (read, then written); a consumer's batch
    /// did worse with it. Not in a ring of fewer than four lines.
    pub(super) fn claim_lines(&self, pos: u64, n: u64) {
        if self.next_line == 0 {
            return;
        }
        let mut i = 0;
        while i < n.min(self.cap) {
            crate::primitive::prefetch_for_write(self.slot_start(pos.wrapping_add(i)));
            i += self.next_line;
        }
    }
}

std::thread_local! {
    /// Whether this thread's last get on any queue spun waiting for its message
    /// since its last put of one message (see
    /// [`Ring::claim_next_line_unless_replying`]): a hint, read and cleared
    /// by that put.
    static GET_WAITED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes that a get of this thread is spinning, waiting for its message:
/// see [`Ring::claim_next_line_unless_replying`].
#[inline(always)]
pub(super) fn note_get_waited() {
    GET_WAITED.set(true);
}

/// `Ring::next_line` for `capacity` slots of `slot_size` bytes (a power of two
/// up to a line, else whole lines; slots start on a line): the positions from a
/// slot to the first slot of the next line, or 0 when the ring has fewer than
/// four lines' worth of such steps.
pub(super) fn next_line_step(capacity: u64, slot_size: usize) -> u64 {
    let step = (64 / slot_size).max(1) as u64;
    if capacity >= 4 * step {
        step
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::{next_line_step, GET_WAITED};

    /// A get that spins waiting for its message marks the thread; the next put into
    /// a ring where producers ask for lines reads and clears the mark (and
    /// does not ask), one into a ring where none ask leaves it; a put with
    /// no wait before it finds no mark (and asks, as a streaming producer).
    #[test]
    fn a_put_after_a_get_that_waited_is_told_so_once() {
        use std::time::Duration;
        let (big, small) = (
            crate::Queue::<u64>::new(64).unwrap(),
            crate::Queue::<u64>::new(1).unwrap(),
        );
        GET_WAITED.set(false);
        big.put(1).unwrap();
        assert!(!GET_WAITED.get());
        assert_eq!(big.get().unwrap(), 1); // there at once: no wait
        assert!(!GET_WAITED.get());
        assert!(small.get_timeout(Duration::from_millis(1)).is_err());
        assert!(GET_WAITED.get(), "an empty queue's get waited");
        small.put(2).unwrap(); // fewer than four lines: no ask, the mark kept
        assert!(GET_WAITED.get());
        big.put(3).unwrap();
        assert!(!GET_WAITED.get(), "the put read the mark");
    }

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
