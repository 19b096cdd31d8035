//! The tutorial's producer–consumer: a cook makes ten buns, an eater eats them,
//! a queue between them balances their speeds. The tutorial's consumer loops
//! forever; here the producer closes the queue when done, so the consumer ends.
//!
//! `cargo run -p multiproc-queue --example producer_consumer`

use std::time::Duration;

use multiproc_proc::{getpid, Process};
use multiproc_queue::{ByteQueue, Error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = ByteQueue::new(4, 64)?;
    let mut producer = Process::new(|| {
        for i in 0..10u64 {
            std::thread::sleep(Duration::from_millis(20 + 30 * (i % 3)));
            let bun = format!("bun {i}");
            q.put_bytes(bun.as_bytes()).expect("put");
            println!("{} made {bun}", getpid());
        }
        q.close();
    });
    let mut consumer = Process::new(|| loop {
        match q.get_bytes() {
            Ok(bun) => {
                std::thread::sleep(Duration::from_millis(40));
                println!("{} ate {}", getpid(), String::from_utf8_lossy(&bun));
            }
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    });
    producer.start()?;
    consumer.start()?;
    println!("main");
    producer.join()?;
    consumer.join()?;
    Ok(())
}
