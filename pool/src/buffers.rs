//! The buffers tasks and answers are encoded into, and the large ones kept
//! for reuse ([`spare`]).

use crate::wire;

/// A buffer to encode a task's arguments into: room for the header first.
pub(crate) fn task_buffer() -> Vec<u8> {
    // This thread's last small task's buffer, if it kept one (see `reuse`);
    // else a new one with room for small arguments too (growing it costs a
    // realloc).
    let mut msg = ENCODE.take();
    if msg.capacity() == 0 {
        msg = Vec::with_capacity(64);
    }
    msg.clear();
    msg.resize(wire::TASK_HEADER, 0);
    msg
}

thread_local! {
    /// A buffer to encode the next task into, left by the last small task
    /// (whose bytes went inline into its record).
    static ENCODE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Keeps `buf` for this thread's next [`task_buffer`], unless it is large.
pub(crate) fn reuse(buf: Vec<u8>) {
    if buf.capacity() <= 4096 {
        ENCODE.set(buf);
    }
}

/// [`task_buffer`] for a chunk of `items` items: a large one reuses a spare
/// buffer (see [`spare`]).
pub(crate) fn chunk_buffer(items: usize) -> Vec<u8> {
    if items < spare::CHUNK_ITEMS {
        return task_buffer();
    }
    let mut msg = spare::take();
    msg.resize(wire::TASK_HEADER, 0);
    msg
}

/// Gives `advice` to the whole `page`-sized pages inside `v`'s allocation
/// (its capacity), if there are any: advice that changes nothing this process
/// reads there (how faults fill the pages, what a child sees). A refusal (a
/// kernel without the advice) only leaves the pages as they were.
pub(crate) fn advise_whole_pages<T>(v: &Vec<T>, page: usize, advice: libc::c_int) {
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    let start = (v.as_ptr() as usize).next_multiple_of(page);
    let end = (v.as_ptr() as usize).saturating_add(bytes) / page * page;
    if end > start {
        // SAFETY: the range is whole pages inside `v`'s allocation, which `v`
        // owns (no allocator data lies there), and the advice leaves what
        // this process reads there as it is (the caller's contract above).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
    }
}

/// Marks (`wipe`) or unmarks the whole pages inside `v`'s allocation
/// `MADV_WIPEONFORK`: a fork then leaves them writable here (no copy on the
/// next write to each while the child lives, and no fault once it is gone)
/// and gives the child zeros. Only for memory no child reads, and unmarked
/// before it is freed: the allocator may hand it out again to data a child
/// needs. A kernel or an allocator's mapping that refuses the advice leaves
/// the pages as they were: the error is only a missed saving, and unmarking
/// an unmarked page does nothing.
pub(crate) fn wipe_on_fork<T>(v: &Vec<T>, wipe: bool) {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => return,
    };
    // Neither advice changes what this process reads there: only what a
    // later fork's child sees.
    let advice = if wipe {
        libc::MADV_WIPEONFORK
    } else {
        libc::MADV_KEEPONFORK
    };
    advise_whole_pages(v, page, advice);
}

/// Large message buffers kept for reuse, process-wide. A map's chunks and
/// their answers are buffers of a megabyte or more; freed, glibc hands them
/// back to the kernel, and the next map pays a page fault per 4 KiB to get
/// them again (two fifths of the parent's time in a trivial map). At most
/// [`KEPT`](spare::KEPT) buffers and [`KEPT_BYTES`](spare::KEPT_BYTES) are
/// kept. Only `try_lock` is used: a forked child whose copy of the lock was
/// held by another thread at the fork allocates as usual instead of waiting.
///
/// A fork of this process (`pmap`'s, a `Process`'s, the user's own)
/// write-protects every private page for copy-on-write, and each page of a
/// kept buffer written after it faults once, even after the child is gone:
/// about 2 200 of the 4 700 faults a trivial 1 M-item map took after a fork
/// (6.2 ns an item against 4.5 without them). So while a buffer of
/// [`WIPE_MIN`](spare::WIPE_MIN) or more is kept, its whole pages are marked
/// `MADV_WIPEONFORK`: a fork leaves them writable here and gives the child
/// zeros (its copy of the list is only ever taken empty). The mark is
/// cleared when a buffer is taken (in a child too), before anyone writes or
/// frees it, so memory that the allocator hands out again never carries it
/// (a child would see zeros in its data).
pub(crate) mod spare {
    use std::sync::Mutex;

    /// Smaller buffers come cheaply from malloc's free lists: not kept.
    pub(crate) const MIN: usize = 64 << 10;
    /// At most this many buffers…
    pub(crate) const KEPT: usize = 16;
    /// …of at most this many bytes in all.
    pub(crate) const KEPT_BYTES: usize = 32 << 20;
    /// A chunk of this many items or more is encoded into a spare buffer.
    pub(crate) const CHUNK_ITEMS: usize = 4096;
    /// Kept buffers of this size or more are marked wipe-on-fork: two
    /// `madvise` calls a reuse cost more than the faults they save below it
    /// (a map of 100 000 items, 100 KiB chunks, was a tenth slower marked).
    pub(crate) const WIPE_MIN: usize = 1 << 20;

    static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// A spare buffer, empty; or a new empty one.
    pub(crate) fn take() -> Vec<u8> {
        let mut v = SPARE
            .try_lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        wipe_on_fork(&v, false);
        v.clear();
        v
    }

    /// Keeps `v` for reuse if it is large and there is room; frees it otherwise.
    pub(crate) fn give(v: Vec<u8>) {
        if v.capacity() < MIN || v.capacity() > KEPT_BYTES {
            return;
        }
        if let Ok(mut s) = SPARE.try_lock() {
            let kept: usize = s.iter().map(Vec::capacity).sum();
            if s.len() < KEPT && kept + v.capacity() <= KEPT_BYTES {
                wipe_on_fork(&v, true);
                s.push(v);
            }
        }
    }

    /// Frees every kept buffer (a pool that went quiet: see `State::trim`),
    /// unmarked first. Only `try_lock`, as everywhere here: kept buffers a
    /// busy thread holds the list for are freed at the next quiet spell.
    pub(crate) fn release() {
        let kept = SPARE
            .try_lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        for v in kept {
            wipe_on_fork(&v, false);
        }
    }

    /// [`super::wipe_on_fork`] for a buffer of [`WIPE_MIN`] or more.
    fn wipe_on_fork(v: &Vec<u8>, wipe: bool) {
        if v.capacity() >= WIPE_MIN {
            super::wipe_on_fork(v, wipe);
        }
    }

    /// How many buffers are kept (for tests).
    #[cfg(test)]
    pub(crate) fn kept() -> usize {
        SPARE.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::spare;
    use multiproc_testkit::ChildExit;
    use std::time::Duration;

    /// The byte at `addr` as a child forked now reads it (its exit code).
    fn byte_in_a_child(addr: usize) -> ChildExit {
        multiproc_testkit::fork(move || {
            // SAFETY: `addr` is inside a live buffer of the parent, which the
            // child has a copy of.
            i32::from(unsafe { std::ptr::read_volatile(addr as *const u8) })
        })
        .wait(Duration::from_secs(60))
    }

    #[test]
    fn a_large_kept_buffer_reads_as_zeros_in_a_child_forked_while_it_is_kept() {
        let big = vec![0xA5_u8; spare::WIPE_MIN + (64 << 10)];
        let small = vec![0x5A_u8; spare::MIN];
        let in_big = big.as_ptr() as usize + big.len() / 2;
        let in_small = small.as_ptr() as usize + small.len() / 2;
        spare::give(small);
        spare::give(big);
        assert_eq!(spare::kept(), 2);
        assert_eq!(
            byte_in_a_child(in_big),
            ChildExit::Exited(0),
            "a kept buffer of WIPE_MIN or more is not copied into a child"
        );
        assert_eq!(
            byte_in_a_child(in_small),
            ChildExit::Exited(0x5A),
            "a smaller kept buffer is copied as usual"
        );
        // Taken (the last given comes first), the buffer still holds its
        // bytes here, and a child forked now sees them: the mark is cleared.
        let v = spare::take();
        assert_eq!(
            v.as_ptr() as usize + (spare::WIPE_MIN + (64 << 10)) / 2,
            in_big
        );
        // SAFETY: inside `v`'s allocation; written before it was given.
        let here = unsafe { std::ptr::read_volatile(in_big as *const u8) };
        assert_eq!(here, 0xA5);
        assert_eq!(
            byte_in_a_child(in_big),
            ChildExit::Exited(0xA5),
            "a taken buffer is plain memory again"
        );
        drop(v);
        drop(spare::take());
        assert_eq!(spare::kept(), 0);
    }

    #[test]
    fn spare_buffers_are_kept_within_their_bounds_and_come_back_empty() {
        // Small buffers are not kept.
        spare::give(Vec::with_capacity(spare::MIN - 1));
        assert_eq!(spare::kept(), 0);
        // A large one is, and comes back empty with its room.
        let mut big = Vec::with_capacity(spare::MIN);
        big.extend_from_slice(b"left over");
        spare::give(big);
        assert_eq!(spare::kept(), 1);
        let v = spare::take();
        assert!(v.is_empty() && v.capacity() >= spare::MIN);
        assert_eq!(spare::kept(), 0);
        // Nothing kept: a new, empty buffer.
        assert_eq!(spare::take().capacity(), 0);
        // At most KEPT buffers, and at most KEPT_BYTES in all.
        for _ in 0..spare::KEPT + 3 {
            spare::give(Vec::with_capacity(spare::MIN));
        }
        assert_eq!(spare::kept(), spare::KEPT);
        while spare::kept() > 0 {
            drop(spare::take());
        }
        let half = spare::KEPT_BYTES / 2 + 1;
        spare::give(Vec::with_capacity(half));
        spare::give(Vec::with_capacity(half));
        assert_eq!(spare::kept(), 1, "two halves and a byte are over the bound");
        spare::give(Vec::with_capacity(spare::KEPT_BYTES + 1));
        assert_eq!(spare::kept(), 1, "a buffer over the bound on its own");
    }
}
