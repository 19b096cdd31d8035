//! Instructions per uncontended lock+increment+unlock, ours against std's (and
//! per semaphore try_acquire+release, `semaphore`): run under
//! `valgrind --tool=callgrind` (repeatable, unlike times on this machine).
fn main() {
    const N: u64 = 1_000_000;
    match std::env::args().nth(1).as_deref() {
        Some("semaphore") => {
            let s = multiproc_shm::Shared::anonymous(multiproc_sync::Semaphore::new(1)).unwrap();
            for _ in 0..N {
                let _ = std::hint::black_box(&s).try_acquire();
                s.release(1).unwrap();
            }
        }
        Some("ours") => {
            let m = multiproc_shm::Shared::anonymous(multiproc_sync::Mutex::new(0u64)).unwrap();
            for _ in 0..N {
                *std::hint::black_box(&m).lock().unwrap() += 1;
            }
        }
        _ => {
            let m = std::sync::Mutex::new(0u64);
            for _ in 0..N {
                *std::hint::black_box(&m).lock().unwrap() += 1;
            }
        }
    }
}
