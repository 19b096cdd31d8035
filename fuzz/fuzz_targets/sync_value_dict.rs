//! A `Value`, an `Array` and a `SharedDict` (its count, tombstones and
//! entries: states, lengths, hashes) as a buggy or hostile process may have
//! written their segments: reads, writes, lookups, inserts and removals
//! answer (a value or `Corrupted`/`Full`) and never panic, hang or read out
//! of bounds.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc_sync::{set_owner_check_interval, SharedDict, Value};

fuzz_target!(|data: &[u8]| {
    set_owner_check_interval(Duration::from_millis(1));
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);

    let v = Value::new(7u64).unwrap();
    let n = bytes.len().min(v.segment().len());
    let _ = v.segment().write_volatile(0, &bytes[..n]);
    let _ = v.get();
    let _ = v.set(u64::from(op));
    let _ = v.get();

    let a = Value::new([0u32; 4]).unwrap();
    let n = bytes.len().min(a.segment().len());
    let _ = a.segment().write_volatile(0, &bytes[..n]);
    let _ = a.get_at(usize::from(op % 6));
    let _ = a.set_at(usize::from(op % 5), 1);

    let d = SharedDict::<8, 8, 16>::new().unwrap();
    d.insert("seed", "value").unwrap();
    let n = bytes.len().min(d.segment().len());
    let _ = d.segment().write_volatile(0, &bytes[..n]);
    let key = [b'k', op];
    let _ = d.get("seed");
    let _ = d.len();
    let _ = d.items();
    let _ = d.keys();
    let _ = d.insert(key, bytes.get(..bytes.len().min(16)).unwrap_or(&[]));
    let _ = d.contains_key(key);
    let _ = d.remove(key);
    let _ = d.remove("seed");
    if op & 1 != 0 {
        let _ = d.clear();
        let _ = d.insert("after", "clear");
    }
});
