//! Copies between private memory and memory other processes may write.
//!
//! Rust's memory model knows nothing of other processes: a plain read of bytes
//! a peer writes at the same time is a data race, which the compiler may assume
//! never happens. Volatile accesses are the tool the language gives for memory
//! outside the program's control — each one happens, once, as written — so
//! every copy out of or into shared memory that is not done by atomics goes
//! through here. A copy racing a writer may mix old and new bytes (torn); the
//! types placed in shared memory are valid for every bit pattern, so a torn
//! value is still a value.
//!
//! The copies move 8-byte words where both sides allow, and single bytes at
//! the edges: a byte-at-a-time volatile loop would be eight times the work.

/// Copies `dst.len()` bytes from `src` into `dst` with volatile reads.
///
/// # Safety
/// `src` must be valid for reads of `dst.len()` bytes for the whole call
/// (a live mapping); `dst` must not overlap it.
pub(crate) unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    // Bytes until the source is 8-aligned, then words, then the tail.
    while i < n && !(src as usize + i).is_multiple_of(8) {
        // SAFETY: i < n, inside the source (the caller's contract).
        dst[i] = unsafe { src.add(i).read_volatile() };
        i += 1;
    }
    while i + 8 <= n {
        // SAFETY: src + i is 8-aligned and the 8 bytes are inside the source.
        let word = unsafe { src.add(i).cast::<u64>().read_volatile() };
        dst[i..i + 8].copy_from_slice(&word.to_ne_bytes());
        i += 8;
    }
    while i < n {
        // SAFETY: as above.
        dst[i] = unsafe { src.add(i).read_volatile() };
        i += 1;
    }
}

/// Copies `src` to `dst` with volatile writes.
///
/// # Safety
/// `dst` must be valid for writes of `src.len()` bytes for the whole call
/// (a live, writable mapping); `src` must not overlap it.
pub(crate) unsafe fn copy_in(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let mut i = 0;
    while i < n && !(dst as usize + i).is_multiple_of(8) {
        // SAFETY: i < n, inside the destination (the caller's contract).
        unsafe { dst.add(i).write_volatile(src[i]) };
        i += 1;
    }
    while i + 8 <= n {
        let word = u64::from_ne_bytes(src[i..i + 8].try_into().expect("8 bytes"));
        // SAFETY: dst + i is 8-aligned and the 8 bytes are inside the destination.
        unsafe { dst.add(i).cast::<u64>().write_volatile(word) };
        i += 8;
    }
    while i < n {
        // SAFETY: as above.
        unsafe { dst.add(i).write_volatile(src[i]) };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_at_every_alignment() {
        let shared: Vec<u8> = (0..64u8).collect();
        for start in 0..9 {
            for len in 0..40 {
                let mut out = vec![0xAA; len];
                // SAFETY: start + len <= 64, inside `shared`; `out` is separate.
                unsafe { copy_out(shared.as_ptr().add(start), &mut out) };
                assert_eq!(&out[..], &shared[start..start + len]);
                let mut back = vec![0u8; 64];
                // SAFETY: as above, into `back`.
                unsafe { copy_in(&out, back.as_mut_ptr().add(start)) };
                assert_eq!(&back[start..start + len], &out[..]);
                assert!(back[..start].iter().all(|&b| b == 0));
                assert!(back[start + len..].iter().all(|&b| b == 0));
            }
        }
    }
}
