//! A `Semaphore` and a `BoundedSemaphore` (the state word, the bound, the
//! seats of owned permits) as a buggy or hostile process may have written
//! them: acquires, releases and owned permits answer and never panic or hang.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc_shm::Shared;
use multiproc_sync::{set_owner_check_interval, BoundedSemaphore, Semaphore};

fn scribble<T: multiproc_shm::ShmSafe>(shared: &Shared<T>, bytes: &[u8]) {
    let n = bytes.len().min(std::mem::size_of::<T>());
    shared.segment().write_volatile(0, &bytes[..n]).unwrap();
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
    set_owner_check_interval(Duration::from_millis(1));
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);
    let s = Shared::anonymous(Semaphore::new(2)).unwrap();
    scribble(&s, bytes);
    exercise(&s, op);
    let b = Shared::anonymous(BoundedSemaphore::new(2)).unwrap();
    scribble(&b, bytes);
    let _ = b.bound();
    exercise(&b, op);
});
