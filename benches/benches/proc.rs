//! Start + join of a trivial child beside raw `fork` + `_exit` + `waitpid`.
// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc_bench::raw_fork_exit_wait;
use multiproc_proc::Process;

fn start_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("start+join a trivial child");
    g.bench_function("multiproc Process", |b| {
        b.iter(|| {
            let mut p = Process::new(|| ());
            p.start().unwrap();
            p.join().unwrap()
        })
    });
    g.bench_function("raw fork+_exit+waitpid", |b| b.iter(raw_fork_exit_wait));
    g.finish();
}

criterion_group!(benches, start_join);
criterion_main!(benches);
