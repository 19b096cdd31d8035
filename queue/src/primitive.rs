//! The one door to atomics, futex waits and liveness checks, switched to loom's
//! stand-ins under `--cfg multiproc_loom` (see `multiproc-sync`'s module of the
//! same name for why a yielding futex is a faithful one).

#[cfg(not(multiproc_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    pub(crate) use multiproc_sync::futex::{try_yield, try_yield_watching, wait, wake, Deadline};
    pub(crate) use multiproc_sync::owner::{current_process, process_alive};
    pub(crate) use multiproc_sync::owner::{current_thread, thread_alive};

    #[inline]
    pub(crate) fn spin() {
        std::hint::spin_loop();
    }

    /// Asks for the cache line at `p` in a state this core may write
    /// (`prefetchw`): a hint, which never faults and changes no memory. Where the
    /// instruction is missing it does nothing.
    #[inline(always)]
    pub(crate) fn prefetch_for_write(p: *const u8) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetchw only hints the cache; it reads and writes nothing
        // architecturally and never faults, whatever the address.
        unsafe {
            std::arch::asm!(
                "prefetchw [{0}]",
                in(reg) p,
                options(nostack, readonly, preserves_flags)
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }
}

#[cfg(multiproc_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    pub(crate) use multiproc_sync::futex::Deadline;

    pub(crate) fn wait(word: &AtomicU32, expected: u32, _deadline: Option<&Deadline>) -> bool {
        if word.load(Ordering::SeqCst) == expected {
            loom::thread::yield_now();
        }
        true
    }

    /// Says it woke one: the models never look for sleepers killed asleep.
    pub(crate) fn wake(_word: &AtomicU32, _n: u32) -> u32 {
        1
    }

    loom::lazy_static! {
        /// Thread numbers, and the threads a model declared dead (`model::die`);
        /// both start afresh in each execution, which keeps the model deterministic.
        static ref NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        pub(crate) static ref DEAD: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
    }

    pub(crate) fn current_thread() -> u64 {
        use std::cell::Cell;
        loom::thread_local! {
            static ME: Cell<u64> = Cell::new(0);
        }
        ME.with(|me| {
            if me.get() == 0 {
                me.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 32 | 1);
            }
            me.get()
        })
    }

    pub(crate) fn thread_alive(record: u64) -> bool {
        !DEAD.lock().unwrap().contains(&record)
    }

    pub(crate) fn current_process() -> u64 {
        1 << 32 | 1
    }

    pub(crate) fn process_alive(_record: u64) -> bool {
        true
    }

    pub(crate) fn spin() {
        loom::thread::yield_now();
    }

    /// The OS's yield, which the models never see (nothing is timed there).
    pub(crate) fn try_yield() -> bool {
        std::thread::yield_now();
        true
    }

    /// As `try_yield`.
    pub(crate) fn try_yield_watching(_moved: impl Fn() -> u64, _enough: u64) -> bool {
        try_yield()
    }

    /// Nothing: a cache hint, which the models need not see.
    pub(crate) fn prefetch_for_write(_p: *const u8) {}

    /// One loom cell per slot, touched wherever the slot's data is read or
    /// written: the data is plain memory, which loom does not see, so this is how
    /// a model learns of a read and a write of one slot that no happens-before
    /// edge orders (loom then fails the model).
    pub(crate) struct DataCells(Vec<loom::cell::UnsafeCell<()>>);

    impl DataCells {
        pub(crate) fn new(slots: usize) -> DataCells {
            DataCells(
                (0..slots)
                    .map(|_| loom::cell::UnsafeCell::new(()))
                    .collect(),
            )
        }

        pub(crate) fn read(&self, slot: usize) {
            self.0[slot].with(|_| ());
        }

        pub(crate) fn write(&self, slot: usize) {
            self.0[slot].with_mut(|_| ());
        }
    }
}

pub(crate) use imp::*;
