//! The one door to atomics, futex waits and owner checks.
//!
//! Everything in this crate that touches an atomic or sleeps goes through here, so
//! that under `--cfg multiproc_loom` the algorithms run against loom's atomics and a
//! futex stand-in: `wait` yields (a futex wait may always wake spuriously, so this
//! is a correct, if busy, futex), `wake` does nothing (and says it woke one), every owner is alive, and
//! each loom thread has its own owner id.

#[cfg(not(multiproc_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    pub(crate) use crate::sys::Deadline;

    /// Sleeps while `*word == expected`, until woken or `deadline`; `false` on timeout.
    #[inline]
    pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
        crate::sys::futex_wait(word, expected, deadline)
    }

    /// Wakes up to `n` sleepers on `word`; returns how many it woke.
    #[inline]
    pub(crate) fn wake(word: &AtomicU32, n: u32) -> u32 {
        crate::sys::futex_wake(word, n)
    }

    /// `wait` on the low 32 bits of a 64-bit word.
    #[inline]
    pub(crate) fn wait_low(word: &AtomicU64, expected: u32, deadline: Option<&Deadline>) -> bool {
        crate::sys::futex_wait_low(word, expected, deadline)
    }

    /// `wake` on the low 32 bits of a 64-bit word.
    #[inline]
    pub(crate) fn wake_low(word: &AtomicU64, n: u32) -> u32 {
        crate::sys::futex_wake_low(word, n)
    }

    /// This thread's owner record.
    #[inline]
    pub(crate) fn current_owner() -> u64 {
        crate::identity::current()
    }

    /// Whether the lock owner `tid` (with owner record `record`) still runs.
    pub(crate) fn owner_alive(tid: u32, record: u64) -> bool {
        crate::identity::owner_alive(tid, record)
    }

    /// One round of a spin-wait.
    #[inline]
    pub(crate) fn spin() {
        std::hint::spin_loop();
    }

    /// This process's participant record.
    pub(crate) fn current_process() -> u64 {
        crate::identity::current_process()
    }

    /// Whether the process in a participant record still runs.
    pub(crate) fn process_alive(record: u64) -> bool {
        crate::identity::process_alive(record)
    }
}

#[cfg(multiproc_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    pub(crate) use crate::sys::Deadline;

    pub(crate) fn wait(word: &AtomicU32, expected: u32, _deadline: Option<&Deadline>) -> bool {
        if word.load(Ordering::SeqCst) == expected {
            loom::thread::yield_now();
        }
        true
    }

    /// Says it woke one (see `Sleepers::woke_nobody`, which the models never reach).
    pub(crate) fn wake(_word: &AtomicU32, _n: u32) -> u32 {
        1
    }

    pub(crate) fn wait_low(word: &AtomicU64, expected: u32, _deadline: Option<&Deadline>) -> bool {
        if word.load(Ordering::SeqCst) as u32 == expected {
            loom::thread::yield_now();
        }
        true
    }

    pub(crate) fn wake_low(_word: &AtomicU64, _n: u32) -> u32 {
        1
    }

    pub(crate) fn current_owner() -> u64 {
        use std::cell::Cell;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        loom::thread_local! {
            static ME: Cell<u64> = Cell::new(0);
        }
        ME.with(|me| {
            if me.get() == 0 {
                let tid = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 0x3fff_0000 + 1;
                me.set(crate::identity::pack(tid, 1));
            }
            me.get()
        })
    }

    pub(crate) fn owner_alive(_tid: u32, _record: u64) -> bool {
        true
    }

    pub(crate) fn spin() {
        loom::thread::yield_now();
    }

    pub(crate) fn current_process() -> u64 {
        current_owner()
    }

    pub(crate) fn process_alive(_record: u64) -> bool {
        true
    }
}

pub(crate) use imp::*;
