//! The segment header as another process may have written it: any bytes must give
//! an error or a payload range inside them, never a panic or an out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snap) = multiproc_shm::check_header_bytes(data) {
        let end = snap.payload_offset + snap.payload_len;
        assert!(end <= data.len() as u64);
    }
});
