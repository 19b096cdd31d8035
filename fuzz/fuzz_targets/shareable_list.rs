//! A `ShareableList`'s segment as a buggy or hostile process may have
//! written it (its count, its table of rooms, the items' states and bytes):
//! opening it answers a list or `Corrupted`, and every read and write
//! answers a value or an error, never a panic, a hang or a read out of
//! bounds. (`count` and `index` are reads in a loop; their wait for a
//! writer, a second an item left half written, would only slow the run.)
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::Fresh;
use libfuzzer_sys::fuzz_target;
use multiproc_shm::{Item, Location, Segment, ShareableList};

struct Made {
    list: ShareableList,
    fresh: Fresh,
}

fn made() -> &'static Made {
    static M: OnceLock<Made> = OnceLock::new();
    M.get_or_init(|| {
        let list = ShareableList::new_in(
            Location::Memfd,
            [
                Item::from("howdy"),
                Item::from(&b"HoWdY"[..]),
                Item::from(-273.154),
                Item::from(100),
                Item::None,
                Item::from(true),
                Item::from("a longer string, of three words"),
            ],
        )
        .unwrap();
        let fresh = Fresh::of(list.segment());
        Made { list, fresh }
    })
}

fuzz_target!(|data: &[u8]| {
    let m = made();
    let (ops, bytes) = data.split_at(data.len().min(1));
    let op = ops.first().copied().unwrap_or(0);
    let now = Duration::ZERO;
    m.fresh.reset_and_scribble(m.list.segment(), bytes, usize::MAX);

    // This process's copy of the rooms was checked at creation: reads and
    // writes through it stay inside them whatever the table says now.
    let i = usize::from(op % 8);
    let _ = m.list.get_timeout(i, now);
    // And into a buffer kept (of a string, of bytes, of nothing).
    let mut kept = match op % 3 {
        0 => Item::Str(String::with_capacity(16)),
        1 => Item::Bytes(vec![1; 40]),
        _ => Item::None,
    };
    let _ = m.list.get_into_timeout(i, &mut kept, now);
    let _ = m.list.set_timeout(usize::from(op / 8 % 8), i64::from(op), now);

    // A process that opens it now checks the table.
    let fd = m.list.segment().fd().unwrap().try_clone_to_owned().unwrap();
    if let Ok(other) = ShareableList::from_segment(Segment::from_fd(fd).unwrap()) {
        for i in 0..other.len() {
            let _ = other.get_timeout(i, now);
        }
        let _ = other.set_timeout(i, "eight by", now);
        let _ = format!("{other:?}");
    }
});
