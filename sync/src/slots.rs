//! Per-participant slots for primitives without an owner word: each slot holds the
//! record of one live participant (`pid << 32 | low 32 bits of its identity token`), or
//! 0 when free. A participant that died leaves its record behind, and a waiter that
//! checks the slots finds it. A dead record stays until something decides the
//! death has been dealt with: a new registration that may stand in for it
//! ([`Slots::take_seat_reclaiming`]), or an explicit [`Slots::forget_dead`].

use crate::primitive::{current_process, process_alive, AtomicU64, Ordering};

/// How many participants a [`Semaphore`](crate::Semaphore) (owned permits),
/// [`Barrier`](crate::Barrier) or [`Event`](crate::Event) (setters) tracks at
/// once. Past that, participation still works, untracked.
pub const SLOTS: usize = 16;

/// A fixed table of participant records in shared memory. All zeroes: empty.
#[repr(C)]
pub(crate) struct Slots {
    slot: [AtomicU64; SLOTS],
}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Slots>() == SLOTS * 8);

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            slot: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Takes a free slot for the calling process; `None` when all are taken. The
    /// seat frees it when dropped.
    pub(crate) fn take_seat(&self) -> Option<Seat<'_>> {
        let me = current_process();
        let index = self.claim(me)?;
        Some(Seat {
            slots: self,
            index,
            me,
        })
    }

    /// Takes a free slot for the calling process, or says the slots are full.
    pub(crate) fn take_seat_or_full(&self) -> crate::Result<Seat<'_>> {
        self.take_seat()
            .ok_or(crate::Error::Full { capacity: SLOTS })
    }

    /// As [`take_seat_or_full`](Slots::take_seat_or_full), but when no slot is
    /// free it takes over one whose participant died, so that dead records do not
    /// fill the table for good. Only for tables where a live newcomer may stand in
    /// for the dead (an event's setters), not where a death must be seen (a
    /// barrier's members).
    pub(crate) fn take_seat_reclaiming(&self) -> crate::Result<Seat<'_>> {
        let me = current_process();
        let index = self.claim(me).or_else(|| {
            self.slot.iter().position(|s| {
                let rec = s.load(Ordering::Relaxed);
                rec != 0
                    && !process_alive(rec)
                    && s.compare_exchange(rec, me, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
            })
        });
        index
            .map(|index| Seat {
                slots: self,
                index,
                me,
            })
            .ok_or(crate::Error::Full { capacity: SLOTS })
    }

    /// Takes a free slot for `me`; `None` when all are taken.
    /// Claims a free slot for `me` without a [`Seat`] to free it: for a
    /// caller that keeps its own protocol over the slots (the semaphore's
    /// owned permits). Its index.
    pub(crate) fn claim(&self, me: u64) -> Option<usize> {
        self.slot.iter().position(|s| {
            s.load(Ordering::Relaxed) == 0
                && s.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Frees every slot whose participant died.
    pub(crate) fn forget_dead(&self) {
        for s in &self.slot {
            let rec = s.load(Ordering::Relaxed);
            if rec != 0 && !process_alive(rec) {
                let _ = s.compare_exchange(rec, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Frees slot `i` if it still holds `me`.
    fn free(&self, i: usize, me: u64) {
        if let Some(s) = self.slot.get(i) {
            let _ = s.compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Whether any recorded participant is alive.
    /// The slots themselves, for such a caller.
    pub(crate) fn records(&self) -> &[AtomicU64; SLOTS] {
        &self.slot
    }

    pub(crate) fn any_alive(&self) -> bool {
        self.slot.iter().any(|s| {
            let rec = s.load(Ordering::Relaxed);
            rec != 0 && process_alive(rec)
        })
    }

    /// Whether any recorded participant is dead (without freeing it).
    pub(crate) fn any_dead(&self) -> bool {
        self.slot.iter().any(|s| {
            let rec = s.load(Ordering::Relaxed);
            rec != 0 && !process_alive(rec)
        })
    }
}

/// A slot held by the calling process; freed on drop.
pub(crate) struct Seat<'a> {
    slots: &'a Slots,
    index: usize,
    me: u64,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.slots.free(self.index, self.me);
    }
}
