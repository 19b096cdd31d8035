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

    pub(crate) use crate::futex::{wait, wait_low, wake, wake_low};
    pub(crate) use crate::identity::{current as current_owner, owner_alive};
    pub(crate) use crate::identity::{current_process, process_alive};
    pub(crate) use crate::sys::Deadline;

    /// One round of a spin-wait.
    #[inline]
    pub(crate) fn spin() {
        std::hint::spin_loop();
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
