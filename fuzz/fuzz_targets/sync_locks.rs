//! A `Mutex`, a `Lock` and an `RLock` (the lock word, its owner record, the
//! recursion count) as a buggy or hostile process may have written them:
//! every call answers (a guard, `OwnerDied`, `WouldBlock`, `Timeout`,
//! `WouldDeadlock`, `NotRecoverable`) and never panics or hangs.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::Fresh;
use libfuzzer_sys::fuzz_target;
use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, Lock, LockError, Mutex, RLock};

struct Prims {
    m: Shared<Mutex<u64>>,
    l: Shared<Lock>,
    r: Shared<RLock>,
    fresh: [Fresh; 3],
}

fn prims() -> &'static Prims {
    static P: OnceLock<Prims> = OnceLock::new();
    P.get_or_init(|| {
        set_owner_check_interval(Duration::from_millis(1));
        let (m, l, r) = (
            Shared::anonymous(Mutex::new(0u64)).unwrap(),
            Shared::anonymous(Lock::new()).unwrap(),
            Shared::anonymous(RLock::new()).unwrap(),
        );
        let fresh = [Fresh::of(m.segment()), Fresh::of(l.segment()), Fresh::of(r.segment())];
        Prims { m, l, r, fresh }
    })
}

fuzz_target!(|data: &[u8]| {
    let p = prims();
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);

    p.fresh[0].reset_and_scribble(p.m.segment(), bytes, std::mem::size_of::<Mutex<u64>>());
    let _ = p.m.is_locked();
    for attempt in [p.m.try_lock(), p.m.lock_timeout(Duration::ZERO)] {
        match attempt {
            Ok(mut g) => *g += 1,
            Err(LockError::OwnerDied(mut g)) if op & 1 == 1 => g.mark_consistent(),
            Err(_) => {}
        }
    }

    p.fresh[1].reset_and_scribble(p.l.segment(), bytes, std::mem::size_of::<Lock>());
    let _ = p.l.locked();
    if p.l.try_acquire().is_ok() || p.l.acquire_timeout(Duration::ZERO).is_ok() {
        let _ = p.l.release();
    }
    if op & 2 != 0 {
        p.l.mark_consistent();
    }
    let _ = p.l.release();

    p.fresh[2].reset_and_scribble(p.r.segment(), bytes, std::mem::size_of::<RLock>());
    let _ = (p.r.count(), p.r.locked());
    if p.r.acquire_timeout(Duration::ZERO).is_ok() {
        let _ = p.r.acquire_timeout(Duration::ZERO);
        let _ = p.r.release();
    }
    if op & 4 != 0 {
        p.r.mark_consistent();
    }
    let _ = p.r.release();
    let _ = p.r.release();
});
