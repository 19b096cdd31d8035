//! Python's `JoinableQueue`: two workers take items and mark each done with
//! `task_done`; the main process puts ten items and `join`s, which returns once
//! every item is done — after every worker's "done" line.
//!
//! `cargo run -p multiproc-queue --example joinable`

use std::time::Duration;

use multiproc_proc::Process;
use multiproc_queue::JoinableQueue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = JoinableQueue::<u32>::new(4)?;
    let mut workers: Vec<_> = (0..2)
        .map(|w| {
            let q = &q;
            // Python's daemon workers in `while True: item = q.get()`: they
            // end with the main process.
            Process::new(move || loop {
                let item = q.get().expect("get");
                std::thread::sleep(Duration::from_millis(20));
                println!("worker {w}: item {item} done");
                q.task_done().expect("task_done");
            })
            .daemon(true)
        })
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    for item in 0..10 {
        q.put(item)?;
    }
    println!("main: all items put, joining");
    q.join()?;
    println!("main: all 10 items done ({} unfinished)", q.unfinished());
    Ok(())
}
