//! A queue's memory (control block and slots) as a buggy or hostile process may
//! have written it: geometry checks, then puts and gets over it must never panic,
//! loop forever, or touch memory outside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc_queue::fuzz_ring_bytes(data);
});
