//! Who holds a lock: the holding thread's id and start time, packed in a `u64`.
//!
//! A lock word holds the owner's thread id (tid); the lock's owner record holds
//! `tid << 32 | low 32 bits of the thread's start time`. A waiter that suspects the
//! owner is dead checks `/proc/TID/stat`: no such thread, a zombie, or a thread with
//! another start time (the tid was recycled) all mean the owner died.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    /// This thread's owner record, 0 until first computed. Reset in a forked child,
    /// whose only thread has a new tid.
    static ME: Cell<u64> = const { Cell::new(0) };
}

/// This thread's owner record (`tid << 32 | start time low bits`).
#[inline]
pub(crate) fn current() -> u64 {
    let v = ME.with(Cell::get);
    if v != 0 {
        v
    } else {
        current_slow()
    }
}

#[cold]
fn current_slow() -> u64 {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| crate::sys::at_fork_child(reset_after_fork));
    let tid = crate::sys::gettid();
    let start = thread_start_time(tid).unwrap_or(0);
    let v = pack(tid, start);
    ME.with(|m| m.set(v));
    v
}

extern "C" fn reset_after_fork() {
    // The child's one thread is the one that called fork: forget the parent's tid.
    ME.with(|m| m.set(0));
}

/// `tid << 32 | start & 0xffff_ffff`.
pub(crate) fn pack(tid: u32, start: u64) -> u64 {
    (u64::from(tid) << 32) | (start & 0xffff_ffff)
}

/// The tid in a record.
pub(crate) fn tid_of(record: u64) -> u32 {
    (record >> 32) as u32
}

/// Field 22 of `/proc/TID/stat` (start time in clock ticks), or `None` if the
/// thread does not exist or is a zombie.
fn thread_start_time(tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the thread `tid` that holds a lock is alive, given the lock's owner
/// `record` (which may be stale: written just after the lock word, or scribbled).
///
/// Dead means: no such thread, a zombie, or — when the record names this tid — a
/// thread with another start time (the tid was recycled).
pub(crate) fn owner_alive(tid: u32, record: u64) -> bool {
    match thread_start_time(tid) {
        None => false,
        Some(start) => tid_of(record) != tid || pack(tid, start) == record,
    }
}

/// This process's participant record: `pid << 32 | low 32 bits of its start time`.
pub(crate) fn current_process() -> u64 {
    let me = multiproc_shm::ProcessIdentity::current();
    pack(me.pid, me.start_time)
}

/// Whether the process in a participant record still runs (and is not a recycled pid).
pub(crate) fn process_alive(record: u64) -> bool {
    match multiproc_shm::ProcessIdentity::of(tid_of(record)) {
        Some(p) => pack(p.pid, p.start_time) == record,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_is_alive_and_a_recycled_record_is_not() {
        let me = current();
        let tid = tid_of(me);
        assert_eq!(tid, crate::sys::gettid());
        assert!(owner_alive(tid, me));
        assert!(
            !owner_alive(tid, me ^ 1),
            "same tid, another start time: recycled"
        );
        assert!(
            owner_alive(tid, pack(tid + 1, 0)),
            "a stale record does not condemn a live tid"
        );
        assert!(!owner_alive(0x3fff_fff0, 0), "no such thread");
        let other = std::thread::spawn(current).join().unwrap();
        assert_ne!(tid_of(other), tid);
        assert!(
            !owner_alive(tid_of(other), other),
            "an exited thread is dead"
        );
    }
}
