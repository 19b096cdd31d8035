//! The tutorial's printing race: five processes each print "running", sleep, and
//! print "done". Without a lock their lines interleave; with a process-shared
//! `Lock` each process's two lines stay together (concurrency becomes serial).
//!
//! `cargo run -p multiproc-sync --example lock_printing`

use std::time::Duration;

use multiproc_proc::{getpid, Process};
use multiproc_shm::Shared;
use multiproc_sync::Lock;

fn work(n: u64, lock: Option<&Lock>) {
    if let Some(l) = lock {
        l.acquire().expect("acquire");
    }
    println!("{n}: {} is running", getpid());
    std::thread::sleep(Duration::from_millis(50 + 37 * ((n * 7) % 5)));
    println!("{n}: {} is done", getpid());
    if let Some(l) = lock {
        l.release().expect("release");
    }
}

fn run(lock: Option<&Lock>) -> Result<(), multiproc_proc::Error> {
    let mut ps: Vec<_> = (0..5)
        .map(|n| Process::new(move || work(n, lock)))
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &mut ps {
        p.join()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("-- without a lock: the two lines of each process drift apart");
    run(None)?;
    println!("-- with a Lock: each process's lines stay together");
    let lock = Shared::anonymous(Lock::new())?;
    run(Some(&lock))?;
    Ok(())
}
