//! The tutorial's blocking and non-blocking processes, and daemons.
//!
//! `cargo run -p multiproc-proc --example blocking -- MODE`, MODE one of:
//! - `one-blocking`: start a worker, join it, then print "Finished";
//! - `one-nonblocking`: start a worker and print "Finished" at once (the worker
//!   finishes later; the program waits for it at exit, as Python does);
//! - `serial`: start and join each of two workers in turn: takes t1 + t2;
//! - `parallel` (default): start both, then join both: takes max(t1, t2);
//! - `daemon`: a daemon worker is terminated when the main program ends, so its
//!   "done" line never appears.

use std::time::{Duration, Instant};

use multiproc_proc::Process;

fn worker(name: &'static str, start: Instant) -> impl FnOnce() {
    move || {
        println!("{:5.2}s: {name} start...", start.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(1));
        println!("{:5.2}s: {name} done...", start.elapsed().as_secs_f64());
    }
}

fn main() -> Result<(), multiproc_proc::Error> {
    let start = Instant::now();
    let mode = std::env::args().nth(1).unwrap_or_else(|| "parallel".into());
    match mode.as_str() {
        "one-blocking" => {
            let mut t = Process::new(worker("张三", start));
            t.start()?;
            t.join()?;
        }
        "one-nonblocking" => {
            let mut t = Process::new(worker("张三", start));
            t.start()?;
            drop(t); // not joined: reaped when this program exits
        }
        "serial" => {
            let mut t1 = Process::new(worker("张三", start));
            t1.start()?;
            t1.join()?;
            let mut t2 = Process::new(worker("李四", start));
            t2.start()?;
            t2.join()?;
        }
        "parallel" => {
            let mut t1 = Process::new(worker("张三", start));
            let mut t2 = Process::new(worker("李四", start));
            t1.start()?;
            t2.start()?;
            t1.join()?;
            t2.join()?;
        }
        "daemon" => {
            let mut d = Process::new(worker("守护", start)).daemon(true);
            d.start()?;
            std::thread::sleep(Duration::from_millis(200));
            std::mem::forget(d); // the end of main, not the handle, ends it
        }
        other => {
            eprintln!("unknown mode {other:?}; see the comment at the top of examples/blocking.rs");
            std::process::exit(2);
        }
    }
    println!("{:5.2}s: Finished ({mode})", start.elapsed().as_secs_f64());
    Ok(())
}
