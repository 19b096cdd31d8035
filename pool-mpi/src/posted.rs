//! Sends that do not wait for the receiving rank: `MPI_Isend`, each buffer
//! kept until MPI is done with it.
//!
//! A blocking `MPI_Send` of a few hundred bytes between two ranks of one
//! machine (OpenMPI's shared-memory transport) returns only once the
//! receiving rank has called into MPI, and spins until then. On a machine
//! whose cores that rank's workers fill, its polling thread can wait
//! milliseconds for a core: sends of a CPU-bound map's chunks took from
//! 30 µs to 8 ms (most 1-7 ms), spinning a core the workers needed
//! (`benches/NOTES.md`). So task
//! and answer messages are posted here and the polling threads, which call
//! into MPI anyway, complete them.
//!
//! | who | does |
//! |---|---|
//! | any thread | [`post`]: `MPI_Isend` of the bytes, kept in [`POSTED`] with the request |
//! | the polling thread of the rank | [`complete`] in each round: `MPI_Test` of every request, frees the buffers of those done |
//! | the rank, before `MPI_Finalize` | [`drain`]: completes what it can within a limit; a buffer MPI may still read is leaked, never freed |
//!
//! Messages between two ranks keep the order they were posted in (MPI's
//! non-overtaking rule holds for nonblocking sends as for blocking ones).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mpi::datatype::Equivalence;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::SimpleCommunicator;
use multiproc_sync::futex::try_yield;

/// A posted send: its request, and the bytes MPI reads until it completes.
struct Sent {
    request: ffi::MPI_Request,
    /// Read by MPI, through the pointer `post` gave it.
    _bytes: Vec<u8>,
}

// SAFETY: MPI runs with MPI_THREAD_MULTIPLE (`init` refuses less), under
// which a request may be completed by any thread; [`POSTED`]'s lock lets
// one thread at a time touch it. The bytes' heap buffer does not move with
// the `Vec`.
unsafe impl Send for Sent {}

/// This process's posted sends that MPI has not completed yet.
static POSTED: Mutex<Vec<Sent>> = Mutex::new(Vec::new());

fn posted() -> MutexGuard<'static, Vec<Sent>> {
    POSTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `bytes` to `rank` with `tag` in the world communicator, without
/// waiting. The caller has checked that the length fits an `i32`.
pub(crate) fn post(rank: usize, tag: i32, bytes: Vec<u8>) {
    let count = i32::try_from(bytes.len()).expect("a message's length is checked to fit an i32");
    let world = SimpleCommunicator::world();
    let mut sends = posted();
    let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
    // SAFETY: the buffer holds `count` bytes of `MPI_UINT8_T` and lives,
    // unmoved, in `POSTED` until `MPI_Test` says the send is complete (or
    // is leaked); `request` is written by `MPI_Isend` (whose failure aborts
    // the job under MPI's default error handler).
    let request = unsafe {
        ffi::MPI_Isend(
            bytes.as_ptr().cast(),
            count,
            u8::equivalent_datatype().as_raw(),
            rank as i32,
            tag,
            world.as_raw(),
            request.as_mut_ptr(),
        );
        request.assume_init()
    };
    sends.push(Sent {
        request,
        _bytes: bytes,
    });
}

/// Completes the posted sends MPI is done with; whether any are left.
pub(crate) fn complete() -> bool {
    let mut sends = posted();
    if sends.is_empty() {
        return false;
    }
    sends.retain_mut(|s| {
        let mut done = 0;
        // SAFETY: an active request of ours (a completed one is removed
        // here, never tested again); the status is ignored.
        unsafe { ffi::MPI_Test(&mut s.request, &mut done, ffi::RSMPI_STATUS_IGNORE) };
        done == 0
    });
    !sends.is_empty()
}

/// Completes the posted sends, waiting at most `limit` for the receivers;
/// the buffers of sends still incomplete then are leaked (MPI may still
/// read them), and their number returned.
pub(crate) fn drain(limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    while complete() {
        if Instant::now() >= deadline {
            let left = std::mem::take(&mut *posted());
            let n = left.len();
            std::mem::forget(left);
            return n;
        }
        if !try_yield() {
            std::thread::sleep(Duration::from_micros(10));
        }
    }
    0
}
