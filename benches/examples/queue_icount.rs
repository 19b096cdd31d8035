//! Instructions per put+get in one thread, ours (`ours`: `Queue<u64>`;
//! `bytes`: a `ByteQueue`; `pipe`: a duplex `Pipe`'s send and receive;
//! `spsc`: an `SpscQueue<u64>`) against ArrayQueue (`rtrb`: against rtrb's
//! ring): run under `valgrind --tool=callgrind` or `perf stat -e
//! instructions` (counts are repeatable, unlike times here).
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    if which == "pipe" {
        let (a, b) = multiproc_queue::pipe(true).unwrap();
        let mut buf = Vec::new();
        for i in 0..n {
            a.send_bytes(&i.to_ne_bytes()).unwrap();
            b.recv_bytes_into(&mut buf).unwrap();
            std::hint::black_box(&buf);
        }
    } else if which == "bytes" {
        let q = multiproc_queue::ByteQueue::new(64, 64).unwrap();
        let mut buf = Vec::new();
        for i in 0..n {
            q.put_bytes(&i.to_ne_bytes()).unwrap();
            q.get_bytes_into(&mut buf).unwrap();
            std::hint::black_box(&buf);
        }
    } else if which == "spsc" {
        let q = multiproc_queue::SpscQueue::<u64>::new(1024).unwrap();
        let (mut tx, mut rx) = (q.producer().unwrap(), q.consumer().unwrap());
        for i in 0..n {
            tx.put(i).unwrap();
            std::hint::black_box(rx.get().unwrap());
        }
    } else if which == "rtrb" {
        let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(1024);
        for i in 0..n {
            tx.push(i).unwrap();
            std::hint::black_box(rx.pop().unwrap());
        }
    } else if which == "ours" {
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
