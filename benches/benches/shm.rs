//! `ShareableList`'s item hot paths beside a process-shared `pthread_mutex`
//! around a bare `u64` (the report's `list` section; Python's
//! `ShareableList` is measured there, by `python3`).
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc_bench::PthreadMutex;
use multiproc_shm::{Item, ShareableList};

fn items(c: &mut Criterion) {
    let mut g = c.benchmark_group("ShareableList item");
    let sl =
        ShareableList::anonymous([Item::Int(0), Item::from("thirty-two bytes of a string....")])
            .unwrap();
    g.bench_function("int get+set (sl[0] = sl[0] + 1)", |b| {
        b.iter(|| match black_box(&sl).get(0) {
            Ok(Item::Int(v)) => sl.set(0, v + 1).unwrap(),
            other => panic!("{other:?}"),
        })
    });
    g.bench_function("32-byte str get", |b| {
        b.iter(|| black_box(black_box(&sl).get(1).unwrap()))
    });
    let mut item = Item::None;
    g.bench_function("32-byte str get_into (a buffer kept)", |b| {
        b.iter(|| {
            black_box(&sl).get_into(1, &mut item).unwrap();
            black_box(&item);
        })
    });
    let p = PthreadMutex::new(false);
    g.bench_function("pthread_mutex (process-shared) around a u64 += 1", |b| {
        b.iter(|| black_box(&p).increment())
    });
    g.finish();
}

criterion_group!(benches, items);
criterion_main!(benches);
