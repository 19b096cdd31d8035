//! The tutorials' `Semaphore`: five processes share a semaphore of two
//! permits, so at most two work at once and the five tasks of 300 ms take
//! three rounds (about 0.9 s), not one (0.3 s, unbounded) or five (1.5 s,
//! one at a time). Each line says how many are inside.
//!
//! `cargo run -p multiproc-sync --example semaphore`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_proc::Process;
use multiproc_shm::Shared;
use multiproc_sync::Semaphore;

const PERMITS: u32 = 2;
const TASKS: usize = 5;
const WORK: Duration = Duration::from_millis(300);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sem = Shared::anonymous(Semaphore::new(PERMITS))?;
    let inside = Shared::anonymous(AtomicU32::new(0))?;
    let t = Instant::now();
    let mut ps: Vec<_> = (0..TASKS)
        .map(|i| {
            let (sem, inside) = (&sem, &inside);
            Process::new(move || {
                // `with sem:` — the guard gives the permit back, and so would
                // this process's death.
                let _permit = sem.acquire_owned();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                println!("task {i} in, {now} inside");
                std::thread::sleep(WORK);
                inside.fetch_sub(1, Ordering::SeqCst);
                println!("task {i} out");
            })
        })
        .collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &mut ps {
        p.join()?;
    }
    println!(
        "{TASKS} tasks of {} ms, {PERMITS} at a time: {:.1} s",
        WORK.as_millis(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
