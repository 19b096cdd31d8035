//! `ShareableList`'s integer get+set and string get (and `get_into`), alone, for profiles
//! (`perf record`) and A/B runs (`scripts/ab`): ns per operation, best of
//! five rounds.
use std::hint::black_box;
use std::time::Instant;

use multiproc_shm::{Item, ShareableList};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let sl =
        ShareableList::anonymous([Item::Int(0), Item::from("thirty-two bytes of a string....")])
            .expect("list");
    let (mut set, mut get, mut into) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let mut item = Item::None;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            match black_box(&sl).get(0) {
                Ok(Item::Int(v)) => sl.set(0, v + 1).expect("set"),
                other => panic!("{other:?}"),
            }
        }
        set = set.min(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            black_box(black_box(&sl).get(1).expect("get"));
        }
        get = get.min(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            black_box(&sl).get_into(1, &mut item).expect("get_into");
            black_box(&item);
        }
        into = into.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("int get+set {set:.1} ns, 32-byte str get {get:.1} ns, get_into {into:.1} ns");
}
