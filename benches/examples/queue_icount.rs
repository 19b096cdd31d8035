//! Instructions per put+get in one thread, ours against ArrayQueue: run under
//! `valgrind --tool=callgrind` (counts are repeatable, unlike times here).
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    if which == "ours" {
        let q = multiproc_queue::Queue::<u64>::new(1024).unwrap();
        for i in 0..n {
            q.put(i).unwrap();
            std::hint::black_box(q.get().unwrap());
        }
    } else {
        let q = crossbeam_queue::ArrayQueue::<u64>::new(1024);
        for i in 0..n {
            q.push(i).unwrap();
            std::hint::black_box(q.pop().unwrap());
        }
    }
}
