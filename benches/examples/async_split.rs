//! The pipelined `apply_async`'s halves: 100 000 trivial tasks submitted
//! (ns a task), then taken; every other round waits until every answer is in
//! before taking, so that its get half is the take alone (the background
//! thread drove meanwhile), and the pipelined rounds' get half is the driving
//! the caller does besides.
use multiproc_bench::pool::trivial;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let pool = multiproc_pool::Pool::new(0).unwrap();
    let n = 100_000u64;
    for _ in 0..3 {
        black_box(pool.map(trivial, 0..1000).unwrap());
    }
    for round in 0..6 {
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| pool.apply_async(trivial, i).unwrap())
            .collect();
        let t1 = Instant::now();
        if round % 2 == 1 {
            // Let every answer come in first.
            while !handles.last().unwrap().ready() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let t2 = Instant::now();
        for h in handles {
            black_box(h.get().unwrap());
        }
        let t3 = Instant::now();
        let ns = |a: Instant, b: Instant| (b - a).as_nanos() as f64 / n as f64;
        println!(
            "{}: submit {:.0} ns/task, get {:.0} ns/task{}",
            if round % 2 == 1 {
                "answers in first"
            } else {
                "pipelined"
            },
            ns(t0, t1),
            ns(t2, t3),
            if round % 2 == 1 {
                String::new()
            } else {
                format!(", all {:.0}", ns(t0, t3))
            }
        );
    }
}
