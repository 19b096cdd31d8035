//! A `Mutex`, a `Lock` and an `RLock` (the lock word, its owner record, the
//! recursion count) as a buggy or hostile process may have written them:
//! every call answers (a guard, `OwnerDied`, `WouldBlock`, `Timeout`,
//! `WouldDeadlock`, `NotRecoverable`) and never panics or hangs.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, Lock, LockError, Mutex, RLock};

/// Writes `bytes` over the value in `shared`, as a peer would.
fn scribble<T: multiproc_shm::ShmSafe>(shared: &Shared<T>, bytes: &[u8]) {
    let n = bytes.len().min(std::mem::size_of::<T>());
    shared.segment().write_volatile(0, &bytes[..n]).unwrap();
}

fuzz_target!(|data: &[u8]| {
    set_owner_check_interval(Duration::from_millis(1));
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);

    let m = Shared::anonymous(Mutex::new(0u64)).unwrap();
    scribble(&m, bytes);
    let _ = m.is_locked();
    for attempt in [m.try_lock(), m.lock_timeout(Duration::ZERO)] {
        match attempt {
            Ok(mut g) => *g += 1,
            Err(LockError::OwnerDied(mut g)) if op & 1 == 1 => g.mark_consistent(),
            Err(_) => {}
        }
    }

    let l = Shared::anonymous(Lock::new()).unwrap();
    scribble(&l, bytes);
    let _ = l.locked();
    if l.try_acquire().is_ok() || l.acquire_timeout(Duration::ZERO).is_ok() {
        let _ = l.release();
    }
    if op & 2 != 0 {
        l.mark_consistent();
    }
    let _ = l.release();

    let r = Shared::anonymous(RLock::new()).unwrap();
    scribble(&r, bytes);
    let _ = (r.count(), r.locked());
    if r.acquire_timeout(Duration::ZERO).is_ok() {
        let _ = r.acquire_timeout(Duration::ZERO);
        let _ = r.release();
    }
    if op & 4 != 0 {
        r.mark_consistent();
    }
    let _ = r.release();
    let _ = r.release();
});
