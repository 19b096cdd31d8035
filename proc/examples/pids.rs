//! The tutorial's parent and child: the child is started asynchronously (the
//! parent's lines come first), and its parent is this program; then memory is
//! isolated between processes: a child that sets a global to 0 leaves the
//! parent's at 100.
//!
//! `cargo run -p multiproc-proc --example pids`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_proc::{getpid, getppid, Process};

/// Python's module-level `n = 100`.
static N: AtomicU32 = AtomicU32::new(100);

fn main() -> Result<(), multiproc_proc::Error> {
    let mut p = Process::new(|| {
        println!("aaaa");
        std::thread::sleep(Duration::from_secs(1));
        println!("child: pid {}", getpid());
        println!("child's parent: pid {}", getppid());
        println!("12345");
    });
    p.start()?;
    println!("**********");
    println!("parent: pid {}", getpid());
    println!("parent's parent: pid {}", getppid());
    p.join()?;

    let mut p = Process::new(|| {
        N.store(0, Ordering::Relaxed);
        println!("in the child: {}", N.load(Ordering::Relaxed));
    });
    p.start()?;
    p.join()?;
    println!("in the parent: {}", N.load(Ordering::Relaxed));
    Ok(())
}
