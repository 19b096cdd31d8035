//! Shared memory across `fork`: four children each fill their quarter of a
//! shared table of squares, and a shared counter counts the entries they wrote.
//! The parent sees every value after joining them — memory a plain `fork` would
//! have copied, not shared.
//!
//! Run: `cargo run --release -p multiproc-shm --example fork_squares`

use std::sync::atomic::{AtomicU64, Ordering};

use multiproc_shm::{Shared, SharedSlice};

const CHILDREN: usize = 4;
const PER_CHILD: usize = 8;

fn main() -> Result<(), multiproc_shm::Error> {
    // Plain numbers that several processes write: copied in and out with
    // volatile accesses (a `&[u64]` into memory others write would be a data race).
    let table = SharedSlice::<u64>::anonymous(CHILDREN * PER_CHILD)?;
    let written = Shared::anonymous(AtomicU64::new(0))?;
    let mut private = 0u64; // not shared: each child gets its own copy

    let mut pids = Vec::new();
    for child in 0..CHILDREN {
        // SAFETY: this program is single-threaded; the child only writes into the
        // mappings and then leaves with _exit, never returning into main.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            panic!("fork failed: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            for i in child * PER_CHILD..(child + 1) * PER_CHILD {
                table.write_volatile(i, (i * i) as u64)?;
                written.fetch_add(1, Ordering::SeqCst);
                private += 1;
            }
            // The child's private copy counted only its own entries.
            let code = if private == PER_CHILD as u64 { 0 } else { 1 };
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        println!("started child {child} as pid {pid}");
        pids.push(pid);
    }
    for pid in pids {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer and pid our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    let squares = table.to_vec_volatile();
    println!("squares written by the children: {squares:?}");
    println!(
        "shared counter: {} (expected {}); the parent's private counter: {private} (children changed only their copies)",
        written.load(Ordering::SeqCst),
        CHILDREN * PER_CHILD
    );
    assert!(squares
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i * i) as u64));
    assert_eq!(
        written.load(Ordering::SeqCst),
        (CHILDREN * PER_CHILD) as u64
    );
    assert_eq!(private, 0);
    Ok(())
}
