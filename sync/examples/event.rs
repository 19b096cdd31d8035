//! The tutorials' `Event`: three workers wait for an event; the main process
//! sets it after half a second, and every worker wakes. A wait with a timeout
//! on an event nobody sets answers that it timed out (Python's `wait` returning
//! `False`).
//!
//! `cargo run -p multiproc-sync --example event`

use std::time::Duration;

use multiproc_proc::Process;
use multiproc_shm::Shared;
use multiproc_sync::Event;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let event = Shared::anonymous(Event::new())?;
    let mut workers: Vec<_> = (0..3)
        .map(|i| {
            let event = &event;
            Process::new(move || {
                println!("worker {i}: waiting for the event");
                event.wait();
                println!("worker {i}: the event is set, going on");
            })
        })
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    std::thread::sleep(Duration::from_millis(500));
    println!("main: is_set {}; setting the event", event.is_set());
    event.set();
    for w in &mut workers {
        w.join()?;
    }
    println!("main: is_set {}", event.is_set());
    event.clear();
    let timed_out = event.wait_timeout(Duration::from_millis(100)).is_err();
    println!("main: cleared; a wait of 100 ms timed out: {timed_out}");
    Ok(())
}
