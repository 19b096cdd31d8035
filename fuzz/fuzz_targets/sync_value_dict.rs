//! A `Value`, an `Array` and a `SharedDict` (its count, tombstones and
//! entries: states, lengths, hashes) as a buggy or hostile process may have
//! written their segments: reads, writes, lookups, inserts and removals
//! answer (a value, `Timeout`, `Corrupted`, `Full`) and never panic, hang or
//! read out of bounds.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::Fresh;
use libfuzzer_sys::fuzz_target;
use multiproc_sync::{set_owner_check_interval, Array, SharedDict, Value};

type Dict = SharedDict<8, 8, 16>;

struct Prims {
    v: Value<u64>,
    a: Array<u32, 4>,
    d: Dict,
    fresh: [Fresh; 3],
}

fn prims() -> &'static Prims {
    static P: OnceLock<Prims> = OnceLock::new();
    P.get_or_init(|| {
        set_owner_check_interval(Duration::from_millis(1));
        let v = Value::new(7u64).unwrap();
        let a = Array::new([0u32; 4]).unwrap();
        let mut d = Dict::new().unwrap();
        // A lock word that names a live process is waited on: not for long.
        d.set_timeout(Some(Duration::ZERO));
        d.insert("seed", "value").unwrap();
        let fresh = [Fresh::of(v.segment()), Fresh::of(a.segment()), Fresh::of(d.segment())];
        Prims { v, a, d, fresh }
    })
}

fuzz_target!(|data: &[u8]| {
    let p = prims();
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);
    let now = Duration::ZERO;

    p.fresh[0].reset_and_scribble(p.v.segment(), bytes, usize::MAX);
    let _ = p.v.get_timeout(now);
    let _ = p.v.set_timeout(u64::from(op), now);
    if let Ok(mut g) = p.v.lock_timeout(now) {
        *g += 1;
    }

    p.fresh[1].reset_and_scribble(p.a.segment(), bytes, usize::MAX);
    let _ = p.a.get_at_timeout(usize::from(op % 6), now);
    let _ = p.a.set_at_timeout(usize::from(op % 5), 1, now);

    p.fresh[2].reset_and_scribble(p.d.segment(), bytes, usize::MAX);
    let d = &p.d;
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
