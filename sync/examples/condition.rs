//! The tutorial's condition variable: a worker waits until the main process
//! notifies it. The tutorial sleeps before notifying so that the worker is already
//! waiting (a notify nobody waits for is lost); waiting for a *condition* with
//! `wait_while` needs no such sleep.
//!
//! `cargo run -p multiproc-sync --example condition`

use multiproc_proc::Process;
use multiproc_shm::Shared;
use multiproc_sync::{Condition, Mutex};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ready = Shared::anonymous(Mutex::new(0u32))?;
    let condition = Shared::anonymous(Condition::new())?;
    let mut worker = Process::new(|| {
        println!("inside worker");
        let guard = ready.lock().expect("lock");
        println!("Worker is waiting");
        let _guard = condition.wait_while(guard, |r| *r == 0).expect("wait");
        println!("Worker is done waiting");
    });
    worker.start()?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    {
        let mut r = ready.lock().expect("lock");
        println!("Main is notifying worker");
        *r = 1;
        condition.notify_one();
    }
    worker.join()?;
    Ok(())
}
