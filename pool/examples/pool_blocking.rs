//! The tutorial's pool examples: tasks added to a `Pool(4)` blocking
//! (`apply`: each task starts after the previous one ends) and not
//! (`apply_async`: up to four run at once), then `close` and `join`; and a
//! callback that fires while the main program goes on (boiling water while
//! playing a game).
//!
//! Run: `cargo run --release -p multiproc-pool --example pool_blocking -- apply|apply_async|callback`

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc_pool::Pool;

/// Set before the pool starts: its workers inherit it, so every process
/// prints times from the same start (CLOCK_MONOTONIC is the same clock in
/// every process).
static START: OnceLock<Instant> = OnceLock::new();

fn ms() -> u128 {
    START.get().map_or(0, |s| s.elapsed().as_millis())
}

/// The tutorial's `test(num)`: a task of 100 ms.
fn test(num: u32) {
    println!(
        "{:>5}ms: start task {num} (pid {})",
        ms(),
        std::process::id()
    );
    std::thread::sleep(Duration::from_millis(100));
    println!("{:>5}ms: end task {num}", ms());
}

/// The tutorial's `test()` of the callback example: boiling water.
fn boil(_: ()) -> String {
    for _ in 0..3 {
        println!("{:>5}ms: boiling water...", ms());
        std::thread::sleep(Duration::from_millis(100));
    }
    "the water boils".to_owned()
}

fn main() -> Result<(), multiproc_pool::Error> {
    START.get_or_init(Instant::now);
    let mode = std::env::args().nth(1).unwrap_or_else(|| "apply".into());
    match mode.as_str() {
        "apply" | "apply_async" => {
            let pool = Pool::new(4)?;
            let mut pending = Vec::new();
            for i in 0..10 {
                if mode == "apply" {
                    pool.apply(test, i)?; // blocks until task i has ended
                } else {
                    pending.push(pool.apply_async(test, i)?); // returns at once
                }
            }
            println!("{:>5}ms: all tasks added", ms());
            pool.close(); // no new tasks
            pool.join()?; // wait for the queued ones and the workers
            println!("{:>5}ms: pool joined", ms());
            for p in pending {
                p.get()?;
            }
        }
        "callback" => {
            let pool = Pool::new(3)?;
            // The handle is not kept (Python's `pool.apply_async(test,
            // callback=fun_callback)`): the callback runs all the same.
            pool.apply_async_with(
                boil,
                (),
                |message| println!("{:>5}ms: callback: {message}", ms()),
                |e| println!("{:>5}ms: error callback: {e}", ms()),
            )?;
            for _ in 0..8 {
                println!("{:>5}ms: playing a game", ms());
                std::thread::sleep(Duration::from_millis(100));
            }
            pool.close();
            pool.join()?;
        }
        other => {
            eprintln!("unknown mode {other:?}: apply, apply_async or callback");
            std::process::exit(2);
        }
    }
    Ok(())
}
