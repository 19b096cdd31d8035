//! Messages another process may have sent: a `Pipe`'s serde values (postcard
//! decoding into a few types), and the pool's tasks and answers (headers,
//! item tags, raw numbers and tuples, postcard bodies). Decoding answers a
//! value or an error and never panics, allocates what the bytes ask for, or
//! hangs.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use multiproc_queue::Connection;

/// One pipe for the whole run (a new one per input would be mostly mmap).
fn pipe() -> &'static (Connection, Connection) {
    static P: OnceLock<(Connection, Connection)> = OnceLock::new();
    P.get_or_init(|| multiproc_queue::pipe(false).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = pipe();
    for _ in 0..3 {
        b.send_bytes(data).unwrap();
    }
    let _ = a.recv::<(u64, String, Vec<u8>)>();
    let _ = a.recv::<Option<f64>>();
    let _ = a.recv::<std::collections::BTreeMap<String, Vec<u32>>>();
    multiproc_pool::fuzz_messages(data);
});
