//! Shared by the sync targets: one segment per primitive for the whole run
//! (making one per input would spend most of the time in mmap), put back to
//! its fresh bytes before each input's garbage is written over it.

use multiproc_shm::Segment;

/// A segment's fresh payload bytes, read once.
pub struct Fresh {
    bytes: Vec<u8>,
}

impl Fresh {
    pub fn of(seg: &Segment) -> Fresh {
        let mut bytes = vec![0; seg.len()];
        seg.read_volatile(0, &mut bytes).unwrap();
        Fresh { bytes }
    }

    /// Puts `seg` back to its fresh bytes, then writes `garbage` over its
    /// start (at most `limit` bytes of it), as a peer would.
    pub fn reset_and_scribble(&self, seg: &Segment, garbage: &[u8], limit: usize) {
        seg.write_volatile(0, &self.bytes).unwrap();
        let n = garbage.len().min(limit).min(self.bytes.len());
        seg.write_volatile(0, &garbage[..n]).unwrap();
    }
}
