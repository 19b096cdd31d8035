//! A `Barrier` (its word, parties, reset round, member seats), an `Event`
//! (flag, sleepers, setter seats) and a `Condition` (sequence, tokens,
//! waiters) as a buggy or hostile process may have written them: waits with
//! no time to wait, aborts, resets, sets and notifies answer and never panic
//! or hang.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::Fresh;
use libfuzzer_sys::fuzz_target;
use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, Barrier, Condition, Event, Mutex};

struct Prims {
    b: Shared<Barrier>,
    e: Shared<Event>,
    c: Shared<Condition>,
    fresh: [Fresh; 3],
}

fn prims() -> &'static Prims {
    static P: OnceLock<Prims> = OnceLock::new();
    P.get_or_init(|| {
        set_owner_check_interval(Duration::from_millis(1));
        let b = Shared::anonymous(Barrier::new(2).unwrap()).unwrap();
        let e = Shared::anonymous(Event::new()).unwrap();
        let c = Shared::anonymous(Condition::new()).unwrap();
        let fresh = [Fresh::of(b.segment()), Fresh::of(e.segment()), Fresh::of(c.segment())];
        Prims { b, e, c, fresh }
    })
}

fuzz_target!(|data: &[u8]| {
    let p = prims();
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);

    p.fresh[0].reset_and_scribble(p.b.segment(), bytes, std::mem::size_of::<Barrier>());
    let b = &p.b;
    let _ = (b.parties(), b.n_waiting(), b.broken(), b.timeout());
    let _ = b.wait_timeout(Duration::ZERO);
    if let Ok(me) = b.join() {
        let _ = me.wait_timeout(Duration::ZERO);
    }
    if op & 1 != 0 {
        b.abort();
    }
    b.reset();
    let _ = b.wait_timeout(Duration::ZERO);

    p.fresh[1].reset_and_scribble(p.e.segment(), bytes, std::mem::size_of::<Event>());
    let e = &p.e;
    let _ = e.is_set();
    let _ = e.wait_timeout(Duration::ZERO);
    let _ = e.wait_checked_timeout(Duration::ZERO);
    if let Ok(setter) = e.register_setter() {
        if op & 2 != 0 {
            setter.set();
        }
    }
    e.clear();
    e.set();
    let _ = e.wait_timeout(Duration::ZERO);

    p.fresh[2].reset_and_scribble(p.c.segment(), bytes, std::mem::size_of::<Condition>());
    let m = Mutex::new(0u32);
    if let Ok(g) = m.lock() {
        let _ = p.c.wait_timeout(g, Duration::ZERO);
    }
    p.c.notify(u32::from(op));
    p.c.notify_one();
    p.c.notify_all();
});
