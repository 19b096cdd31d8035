//! The tutorial's `os.fork` and `os.wait`: `fork` returns twice; the child prints
//! its pid and its parent's, works a while and fails (Python: an exception, exit
//! status 1); the parent works, then `wait`s and sees the raw status 256.
//!
//! `cargo run -p multiproc-proc --example fork_wait`

use std::time::Duration;

use multiproc_proc::{fork, getpid, getppid, wait_any, Fork};

fn main() -> Result<(), multiproc_proc::Error> {
    // SAFETY: this program is single-threaded; the child prints, sleeps, and ends
    // with std::process::exit, never returning into main's parent code.
    match unsafe { fork() }? {
        Fork::Child => {
            println!("child: pid {}, parent {}", getpid(), getppid());
            for _ in 0..10 {
                println!("child working");
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("child: failing on purpose (Python: an uncaught exception)");
            std::process::exit(1);
        }
        Fork::Parent { child } => {
            println!("parent: pid {}, parent {}", getpid(), getppid());
            for _ in 0..5 {
                println!("parent working");
                std::thread::sleep(Duration::from_millis(100));
            }
            println!("parent: task done, waiting for child {child}");
            let (pid, status) = wait_any()?;
            println!("child {pid} ended: raw status {} ({status})", status.raw());
            assert_eq!(status.raw(), 256);
        }
    }
    Ok(())
}
