//! Who holds a lock: the holding thread's id and identity token, packed in a `u64`.
//!
//! A lock word holds the owner's thread id (tid); the lock's owner record holds
//! `tid << 32 | low 32 bits of the thread's identity token` (see
//! [`multiproc_shm::identity`]: the pidfs inode number of the thread where the
//! kernel has one, else its start time), with bit 61 saying which kind. A waiter
//! that suspects the owner is dead recomputes the token: no such thread, one that
//! ended, or one with another token (the tid was recycled) all mean the owner
//! died.
//!
//! With pidfs tokens a recycled tid is told apart unless 2³² tasks were created
//! since the holder (the low 32 bits of the kernel's inode counter came round
//! again, with the same tid). With start times, unless the tid was recycled
//! within the clock tick (10 ms) in which the holder started.

use std::cell::Cell;
use std::sync::Once;

use multiproc_shm::identity::{comparable, task_token, task_token_like, Task, TOKEN_PIDFS};

/// Set in a record whose low half comes from a pidfs token. Bits 62 and 63 are
/// never set in a record: structures that keep records may use them as marks
/// (the semaphore's seats do).
const PIDFS_RECORD: u64 = 1 << 61;
/// The bits of a record's high half that hold the id (Linux ids are below 2²²).
const ID_BITS: u32 = (1 << 29) - 1;

thread_local! {
    /// This thread's owner record, 0 until first computed. Reset in a forked child,
    /// whose only thread has a new tid.
    static ME: Cell<u64> = const { Cell::new(0) };
}

/// This thread's owner record.
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
    let v = record(tid, task_token(tid, Task::Thread).unwrap_or(0));
    ME.with(|m| m.set(v));
    v
}

extern "C" fn reset_after_fork() {
    // The child's one thread is the one that called fork: forget the parent's tid.
    // (A thread-local write: no allocation, no lock.)
    ME.with(|m| m.set(0));
}

/// The record of task `id` with identity `token`.
pub(crate) fn record(id: u32, token: u64) -> u64 {
    let kind = if token & TOKEN_PIDFS != 0 {
        PIDFS_RECORD
    } else {
        0
    };
    kind | (u64::from(id & ID_BITS) << 32) | (token & 0xffff_ffff)
}

/// `id << 32 | low`: a record from its parts (the loom models make up their own).
#[cfg(multiproc_loom)]
pub(crate) fn pack(id: u32, low: u64) -> u64 {
    (u64::from(id & ID_BITS) << 32) | (low & 0xffff_ffff)
}

/// The tid (or pid) in a record.
pub(crate) fn tid_of(record: u64) -> u32 {
    (record >> 32) as u32 & ID_BITS
}

/// Whether task `id` runs and matches `record` (its token recomputed the same way).
/// A token unknown when the record was made (a start-time record of 0) or
/// now, or recomputed as the other kind (a pidfs one that needed a
/// descriptor this process did not have), cannot tell a recycled id: the
/// live task with `id` is taken for the owner, never a live owner for dead
/// (see [`multiproc_shm::identity::comparable`]).
fn matches(id: u32, task: Task, record: u64) -> bool {
    let pidfs = record & PIDFS_RECORD != 0;
    let like = if pidfs {
        TOKEN_PIDFS
    } else {
        // Any start time: asks for a token of that kind.
        1
    };
    // The recorded part of the token, with its kind: 0 (unknown) only for a
    // start-time record of 0.
    let then = (record & 0xffff_ffff) | if pidfs { TOKEN_PIDFS } else { 0 };
    task_token_like(id, task, like)
        .is_some_and(|now| !comparable(now, then) || self::record(id, now) == record)
}

/// Whether the thread `tid` that holds a lock is alive, given the lock's owner
/// `record` (which may be stale: written just after the lock word, or scribbled).
///
/// Dead means: no such thread, one that ended, or — when the record names this
/// tid — a thread with another token (the tid was recycled).
pub(crate) fn owner_alive(tid: u32, record: u64) -> bool {
    if tid_of(record) != tid {
        // A stale record does not condemn a live tid.
        return task_token(tid, Task::Thread).is_some();
    }
    matches(tid, Task::Thread, record)
}

/// This process's participant record.
pub(crate) fn current_process() -> u64 {
    let me = multiproc_shm::ProcessIdentity::current();
    record(me.pid, me.token)
}

/// Whether the process in a participant record still runs (and is not a recycled pid).
pub(crate) fn process_alive(record: u64) -> bool {
    let pid = tid_of(record);
    pid != 0 && matches(pid, Task::Process, record)
}

/// Whether the thread in a record still runs (and is not a recycled tid).
pub(crate) fn thread_alive(record: u64) -> bool {
    let tid = tid_of(record);
    tid != 0 && matches(tid, Task::Thread, record)
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
        assert!(thread_alive(me));
        assert!(
            !owner_alive(tid, me ^ 1),
            "same tid, another token: recycled"
        );
        assert!(
            owner_alive(tid, record(tid + 1, 0)),
            "a stale record does not condemn a live tid"
        );
        assert!(!owner_alive(0x3fff_fff0, 0), "no such thread");
        let other = std::thread::spawn(current).join().unwrap();
        assert_ne!(tid_of(other), tid);
        assert!(
            !owner_alive(tid_of(other), other),
            "an exited thread is dead"
        );
        assert!(process_alive(current_process()));
        assert!(!process_alive(current_process() ^ 1));
    }

    #[test]
    fn records_use_pidfs_tokens_where_the_kernel_has_them() {
        // Linux 6.9 and later give every thread a pidfs inode of its own.
        let me = current();
        let pidfs = me & PIDFS_RECORD != 0;
        eprintln!(
            "owner records use {}",
            if pidfs {
                "pidfs inode numbers"
            } else {
                "start times"
            }
        );
        // A start-time record of this thread is recognised too.
        let tid = crate::sys::gettid();
        let start = task_token_like(tid, Task::Thread, 1).unwrap();
        assert!(owner_alive(tid, record(tid, start)));
    }
}
