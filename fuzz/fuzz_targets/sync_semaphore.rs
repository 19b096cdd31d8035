//! A `Semaphore` and a `BoundedSemaphore` (the state word, the bound, the
//! seats of owned permits) as a buggy or hostile process may have written
//! them: acquires, releases and owned permits answer and never panic or hang.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::Fresh;
use libfuzzer_sys::fuzz_target;
use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, BoundedSemaphore, Semaphore};

struct Prims {
    s: Shared<Semaphore>,
    b: Shared<BoundedSemaphore>,
    fresh: [Fresh; 2],
}

fn prims() -> &'static Prims {
    static P: OnceLock<Prims> = OnceLock::new();
    P.get_or_init(|| {
        set_owner_check_interval(Duration::from_millis(1));
        let s = Shared::anonymous(Semaphore::new(2)).unwrap();
        let b = Shared::anonymous(BoundedSemaphore::new(2)).unwrap();
        let fresh = [Fresh::of(s.segment()), Fresh::of(b.segment())];
        Prims { s, b, fresh }
    })
}

fn exercise(s: &Semaphore, op: u8) {
    let _ = s.value();
    let _ = s.try_acquire();
    let _ = s.acquire_timeout(Duration::ZERO);
    let _ = s.release(u32::from(op % 4));
    if let Ok(g) = s.try_acquire_owned() {
        let _held = s.acquire_owned_timeout(Duration::ZERO);
        drop(g);
    }
    let _ = s.acquire_owned_timeout(Duration::ZERO);
}

fuzz_target!(|data: &[u8]| {
    let p = prims();
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);
    p.fresh[0].reset_and_scribble(p.s.segment(), bytes, std::mem::size_of::<Semaphore>());
    exercise(&p.s, op);
    p.fresh[1].reset_and_scribble(p.b.segment(), bytes, std::mem::size_of::<BoundedSemaphore>());
    let _ = p.b.bound();
    exercise(&p.b, op);
});
