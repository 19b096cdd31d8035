//! The tutorial's orphans and zombies.
//!
//! - A zombie: a child that has ended and that its parent has not waited for
//!   stays in the process table (state `Z` in `/proc/PID/stat`, `<defunct>` in
//!   `ps`) until its parent reaps it.
//! - An orphan: a child whose parent ended goes on running and is adopted —
//!   by init, or by the nearest ancestor that asked to be a subreaper (this
//!   program does, so that it can reap the orphan and leave nothing behind).
//!
//! `cargo run -p multiproc-proc --example orphan_zombie`

use std::time::{Duration, Instant};

use multiproc_proc::{fork, getpid, getppid, set_child_subreaper, wait_any, Fork};

/// The state letter of process `pid` (`R`, `S`, `Z`, ...), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: single-threaded so far; the child only exits.
    let child = match unsafe { fork() }? {
        Fork::Child => std::process::exit(0),
        Fork::Parent { child } => child,
    };
    let t = Instant::now();
    while state(child) != Some('Z') && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "zombie: child {child} ended, not yet waited for: state {}",
        state(child).unwrap_or('?')
    );
    let (reaped, _) = wait_any()?;
    println!(
        "zombie: reaped {reaped}; in the process table now: {}",
        state(child).is_some()
    );

    set_child_subreaper(true)?;
    let me = getpid();
    // SAFETY: single-threaded; the child and grandchild print, sleep and exit.
    match unsafe { fork() }? {
        Fork::Child => {
            let parent = getpid();
            // SAFETY: single-threaded child; the grandchild prints and exits.
            match unsafe { fork() }.expect("fork") {
                Fork::Child => {
                    println!("orphan: my parent is {parent}");
                    let t = Instant::now();
                    while getppid() == parent && t.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    println!(
                        "orphan: my parent ended; adopted by {} (the program, {me}, a subreaper)",
                        getppid()
                    );
                    std::process::exit(0);
                }
                Fork::Parent { .. } => {
                    std::thread::sleep(Duration::from_millis(200));
                    println!("orphan's parent {parent}: ending before my child");
                    std::process::exit(0);
                }
            }
        }
        Fork::Parent { .. } => {
            // The child, then the adopted grandchild.
            wait_any()?;
            wait_any()?;
            println!("program: reaped both");
        }
    }
    Ok(())
}
