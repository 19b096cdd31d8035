//! The tutorial's `Pool(4)` with five tasks of random length: four start at
//! once, the fifth when a worker frees up (on that worker's pid); `close`
//! then `join` waits for all of them.
//!
//! Run: `cargo run --release -p multiproc-pool --example pool_tasks`

use std::time::{Duration, Instant};

use multiproc_pool::Pool;

/// The tutorial's `long_time_task(name)`: up to 0.3 s (the tutorial's 3 s,
/// shortened).
fn long_time_task(name: u32) {
    println!("Run task {name} ({})...", std::process::id());
    let start = Instant::now();
    // A pseudo-random length from the pid and the task, as random.random() would.
    let ms = (u64::from(std::process::id()) * 7919 + u64::from(name) * 104_729) % 300;
    std::thread::sleep(Duration::from_millis(ms));
    println!(
        "Task {name} runs {:.2} seconds.",
        start.elapsed().as_secs_f64()
    );
}

fn main() -> Result<(), multiproc_pool::Error> {
    println!("Parent process {}.", std::process::id());
    let p = Pool::new(4)?;
    let tasks: Vec<_> = (0..5)
        .map(|i| p.apply_async(long_time_task, i))
        .collect::<Result<_, _>>()?;
    println!("Waiting for all subprocesses done...");
    p.close();
    p.join()?;
    for t in tasks {
        t.get()?;
    }
    println!("All subprocesses done.");
    Ok(())
}
