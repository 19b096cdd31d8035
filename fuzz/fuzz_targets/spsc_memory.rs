//! An `SpscQueue`'s memory (control block and slots) as a buggy or hostile
//! process may have written it: opening checks it, then both ends are taken
//! and puts and gets that do not wait run over it; none may panic, wait, or
//! touch memory outside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc_queue::fuzz_spsc_bytes(data);
});
