//! A `Barrier` (its word, parties, reset round, member seats), an `Event`
//! (flag, sleepers, setter seats) and a `Condition` (sequence, tokens,
//! waiters) as a buggy or hostile process may have written them: waits with
//! no time to wait, aborts, resets, sets and notifies answer and never panic
//! or hang.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, Barrier, Condition, Event, Mutex};

fn scribble<T: multiproc_shm::ShmSafe>(shared: &Shared<T>, bytes: &[u8]) {
    let n = bytes.len().min(std::mem::size_of::<T>());
    shared.segment().write_volatile(0, &bytes[..n]).unwrap();
}

fuzz_target!(|data: &[u8]| {
    set_owner_check_interval(Duration::from_millis(1));
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);

    let b = Shared::anonymous(Barrier::new(2).unwrap()).unwrap();
    scribble(&b, bytes);
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

    let e = Shared::anonymous(Event::new()).unwrap();
    scribble(&e, bytes);
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

    let m = Mutex::new(0u32);
    let c = Shared::anonymous(Condition::new()).unwrap();
    scribble(&c, bytes);
    if let Ok(g) = m.lock() {
        let _ = c.wait_timeout(g, Duration::ZERO);
    }
    c.notify(u32::from(op));
    c.notify_one();
    c.notify_all();
});
