//! Requests for cache lines a put or get is about to need (`prefetchw`): hints,
//! which change no memory and never fault. Measurements behind each choice are
//! in `benches/NOTES.md`.

use super::Ring;

impl Ring {
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
    pub(super) fn claim_next_line(&self, pos: u64) {
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
