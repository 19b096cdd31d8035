//! A byte queue's large-message lane (its control words and its bytes) and an
//! announcement in its ring, as a buggy or hostile process may have written
//! them: forged announcements taken, real large messages put over a lane a
//! peer wrote and taken; none may panic, wait for long, or touch memory
//! outside the queue, and a message put whole comes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiproc_queue::fuzz_lane_bytes(data);
});
