//! The tutorial's `Queue(3)`: `full`/`empty`, `put` with a timeout on a full
//! queue, `put_nowait`/`get_nowait`, then a child process and the parent talking
//! through a queue.
//!
//! `cargo run -p multiproc-queue --example queue_methods`

use std::time::Duration;

use multiproc_proc::Process;
use multiproc_queue::{Error, Queue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = Queue::<u32>::new(3)?;
    for m in 1..=3 {
        q.put(m)?;
    }
    println!("full after three puts: {}", q.full());
    match q.put_timeout(4, Duration::from_millis(200)) {
        Err(Error::Timeout) => println!("put with a timeout on a full queue: timed out"),
        other => println!("unexpected: {other:?}"),
    }
    match q.try_put(4) {
        Err(Error::Full) => println!("put_nowait on a full queue: Full"),
        other => println!("unexpected: {other:?}"),
    }
    while !q.empty() {
        println!("got {}", q.get()?);
    }
    match q.try_get() {
        Err(Error::Empty) => println!("get_nowait on an empty queue: Empty"),
        other => println!("unexpected: {other:?}"),
    }

    // A child writes, the parent reads.
    let mut child = Process::new(|| {
        for m in [10, 20, 30] {
            q.put(m).expect("put");
            println!("child put {m}");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    child.start()?;
    for _ in 0..3 {
        println!("parent got {}", q.get_timeout(Duration::from_secs(5))?);
    }
    child.join()?;
    Ok(())
}
