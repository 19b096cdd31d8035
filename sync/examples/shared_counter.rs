//! The tutorial's shared counters. Ten processes each add one to a `Value`, a
//! thousand times:
//! - read, then write (Python's `n.value += 1` without the lock): updates are lost;
//! - under `get_lock()` (Python's `with n.get_lock(): n.value += 1`): exact.
//!
//! And `Manager().dict()`: ten processes add one to `d["value"]` under a `Lock`.
//!
//! `cargo run --release -p multiproc-sync --example shared_counter`

use multiproc_proc::Process;
use multiproc_shm::Shared;
use multiproc_sync::{Lock, SharedDict, Value};

const PROCS: usize = 10;
const TIMES: usize = 1000;

fn run_all(f: impl Fn() + Copy) -> Result<(), multiproc_proc::Error> {
    let mut ps: Vec<_> = (0..PROCS).map(|_| Process::new(f)).collect();
    for p in &mut ps {
        p.start()?;
    }
    for p in &mut ps {
        p.join()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let racy = Value::new(0i64)?;
    run_all(|| {
        for _ in 0..TIMES {
            let v = racy.get().expect("get"); // lock, read, unlock ...
            racy.set(v + 1).expect("set"); //   ... lock, write, unlock: another process may have written between
        }
    })?;
    println!(
        "get then set, no lock held across: {} (expected {})",
        racy.get()?,
        PROCS * TIMES
    );

    let exact = Value::new(0i64)?;
    run_all(|| {
        for _ in 0..TIMES {
            let _held = exact.get_lock().lock().expect("lock"); // with n.get_lock():
            exact.set(exact.get().expect("get") + 1).expect("set"); //     n.value += 1
        }
    })?;
    println!(
        "under get_lock():                   {} (expected {})",
        exact.get()?,
        PROCS * TIMES
    );
    assert_eq!(exact.get()?, (PROCS * TIMES) as i64);

    let d = SharedDict::<16, 16, 16>::new()?;
    let lock = Shared::anonymous(Lock::new())?;
    d.insert("value", 0u64.to_le_bytes())?;
    run_all(|| {
        lock.acquire().expect("acquire");
        let v = u64::from_le_bytes(
            d.get("value")
                .expect("get")
                .expect("present")
                .try_into()
                .expect("8 bytes"),
        );
        d.insert("value", (v + 1).to_le_bytes()).expect("insert");
        lock.release().expect("release");
    })?;
    let v = u64::from_le_bytes(
        d.get("value")?
            .expect("present")
            .try_into()
            .expect("8 bytes"),
    );
    println!("Manager().dict() counter, 10 processes under a Lock: {v}");
    assert_eq!(v, PROCS as u64);
    Ok(())
}
