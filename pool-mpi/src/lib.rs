//! The calls of [`multiproc_pool::Pool`] — `apply`, `apply_async`, `map`,
//! `imap`, `imap_unordered`, `starmap`, `starmap_async`, callbacks, `close`/`join`/`terminate`
//! — spread over MPI ranks, as `mpi4py.futures` does for Python.
//!
//! ```text
//! fn main() -> multiproc_pool::Result<()> {
//!     let pool = multiproc_pool_mpi::init()?;   // was: multiproc_pool::Pool::new(0)?
//!     println!("{:?}", pool.map(square, 0..10)?);
//!     Ok(())
//! }
//! ```
//! ```text
//! mpirun --bind-to none -np 3 target/release/my_program
//! ```
//!
//! # How it runs
//! [`init`] (call it first in `main`) starts MPI on every rank. Rank 0
//! returns from it with an [`MpiPool`] and runs the program; every other rank
//! makes a local [`Pool`](multiproc_pool::Pool) of its machine's cores,
//! serves rank 0's tasks in it, and exits when rank 0 drops the pool (or
//! ends). One rank per node is the intended layout (`mpirun --map-by
//! ppr:1:node --bind-to none`, plus one for rank 0). Give `--bind-to none`:
//! by default `mpirun` binds each rank to one core (with one or two ranks)
//! or one socket, and a rank's pool then runs every worker there (and
//! [`init`]'s pool, as large as the CPUs the rank may use, has one worker). A
//! serving rank that may run on fewer CPUs than its launcher says so on
//! stderr, once, with that advice.
//!
//! A task crosses ranks as it crosses processes in the local pool: its
//! function is a `fn` item or a closure that captures nothing, whose server
//! is made for it (and the rank's local pool runs it inline), or a `fn`
//! pointer, named by its offset from a function of this crate (ranks run the
//! same executable, perhaps at other base addresses); arguments and results
//! go by serde (postcard). A closure that captures is refused as the local
//! pool refuses it. Every rank's build identity is compared with rank 0's
//! before any task is sent: a rank that runs another build is refused
//! ([`Error::Rank`](multiproc_pool::Error::Rank)), never jumped into.
//! Arguments and results of any size up to 2 GiB a chunk (one MPI message;
//! larger chunks are refused with an error) — MPI takes its rendezvous path
//! above its eager limit.
//!
//! # Failures
//! - Inside a rank, the local pool's own guarantees hold: a worker process
//!   killed mid-task fails exactly that item with
//!   [`Error::WorkerDied`](multiproc_pool::Error::WorkerDied) (its pid is on
//!   that rank's host), and the rest complete; a panic is
//!   [`Error::Panicked`](multiproc_pool::Error::Panicked). A `map`, which
//!   answers its lowest failing item, stops early as the local pool's does:
//!   once a death or a timeout fails an item, rank 0 sends none of the
//!   chunks wholly above it, and a rank runs none of its chunk's items above
//!   it that its local pool has not sent yet (a map whose every item kills
//!   its worker costs a few deaths on each rank, not one an item). `imap`
//!   and `apply_async` run every item.
//! - A rank that dies ends the job: MPI is fail-stop, and `mpirun` kills the
//!   other ranks and exits non-zero, naming the rank. Rank 0 also watches the
//!   ranks on its own host (pidfds): when one dies, every pending task fails
//!   with [`Error::Rank`](multiproc_pool::Error::Rank) naming it, and the
//!   message is printed on stderr, whichever comes first.
//! - The local pools' workers die with their rank (parent-death signals), so
//!   nothing is left behind.
//!
//! # One program, one machine or many
//! [`Tasks`] is implemented by both [`multiproc_pool::Pool`] and
//! [`MpiPool`]: code written against `&impl Tasks` runs on either.
//!
//! # Building
//! The MPI backend is the `mpi` feature. It needs an MPI library and
//! libclang (Debian: `apt-get install libopenmpi-dev openmpi-bin
//! libclang-dev`); without the feature this crate has the [`Tasks`] and
//! [`Pending`] traits only.

#![deny(unsafe_op_in_unsafe_fn)]
// Without the `mpi` feature, `init` and `MpiPool`, which the docs name, are
// not built.
#![cfg_attr(not(feature = "mpi"), allow(rustdoc::broken_intra_doc_links))]

mod api;
// The wire format and the serving side need MPI only to move their bytes:
// their unit tests run without it, against a real local pool.
#[cfg(feature = "mpi")]
mod handles;
#[cfg(feature = "mpi")]
mod hub;
#[cfg(feature = "mpi")]
mod pool;
#[cfg(feature = "mpi")]
mod posted;
#[cfg(feature = "mpi")]
mod rank;
#[cfg(feature = "mpi")]
mod receiver;
#[cfg(any(feature = "mpi", test))]
mod serve;
#[cfg(any(feature = "mpi", test))]
mod wire;
#[cfg(feature = "mpi")]
mod world;

pub use api::{Pending, Tasks};
#[cfg(feature = "mpi")]
pub use handles::{MpiIMap, MpiIMapUnordered, MpiResult};
#[cfg(feature = "mpi")]
pub use pool::MpiPool;
#[cfg(feature = "mpi")]
pub use world::{init, init_with, RankInfo, DEPTH, ITEMS_AHEAD, MOST_AHEAD};
