//! Memory that several processes see.
//!
//! `multiproc-shm` maps memory shared between processes on Linux and places typed
//! values in it — Python's `multiprocessing.shared_memory.SharedMemory`, `RawValue`
//! and `RawArray`, with a checked header so that a process never trusts bytes it
//! did not validate.
//!
//! | Python | here |
//! |---|---|
//! | `SharedMemory(name, create=True, size=n)` | [`Segment::create`] |
//! | `SharedMemory(create=True, size=n)` (a name picked for you) | [`Segment::new_in(Location::NewName, n)`](Location::NewName) |
//! | `SharedMemory(name)` | [`Segment::open`] |
//! | `shm.unlink()` | [`Segment::unlink`] (the creator also unlinks on drop) |
//! | `RawValue(c_double, 0.0)` | [`Shared::anonymous(0.0f64)`](Shared::anonymous) |
//! | `RawArray(c_int, 10)` | [`SharedSlice::<i32>::anonymous(10)`](SharedSlice::anonymous) |
//! | `ShareableList([1, 'a', None], name=n)` | [`ShareableList::create(n, [Item::from(1), "a".into(), Item::None])`](ShareableList::create) |
//! | `ShareableList(name=n)` | [`ShareableList::open`] |
//! | `ShareableList([...])` (a name picked for you) | [`ShareableList::new_in(Location::NewName, [...])`](ShareableList::new_in) |
//! | the resource tracker | a tracker process per creator, started with its first named segment (see [`set_tracking`]); [`remove_stale`] for the rest |
//!
//! A creator that dies without removing its named segments (killed, or ended
//! by `_exit`) leaves nothing behind: the first named segment a process
//! creates starts a small tracker process that holds a pidfd of it and, once
//! it is dead, removes each name it registered that is still its own and that
//! no live process maps (a name still in use is removed when its last user is
//! gone). [`set_tracking`] describes the tracker and turns it off.
//!
//! Four kinds of memory ([`Location`]): anonymous (`MAP_SHARED | MAP_ANONYMOUS`,
//! inherited by children after `fork`), named (POSIX `shm_open`, opened by name from
//! any process), `memfd` (shared through its descriptor) and file-backed (memmap2,
//! persistent).
//!
//! # Reading and writing memory others write
//! Another process may write shared memory at any instruction, and a Rust
//! reference (`&T`, `&mut T`) promises the compiler that nobody does while it
//! lives. So the safe surface gives references only where that holds and
//! copies everywhere else:
//! - [`ShmSync`] types — atomics, the primitives of `multiproc-sync`, and
//!   [`shm_struct!`]`{ sync struct … }`s of them — are used in place, through
//!   `&T` ([`Shared`] and [`SharedSlice`] dereference to them);
//! - plain data ([`ShmSafe`] but not `ShmSync`: numbers, arrays and structs of
//!   them) is copied in and out with volatile accesses —
//!   [`Shared::read_volatile`]/[`Shared::write_volatile`],
//!   [`SharedSlice::read_volatile`], [`SharedSlice::write_slice_volatile`],
//!   [`SharedSlice::to_vec_volatile`], [`Segment::read_volatile`] — or kept
//!   behind a `multiproc_sync::Mutex`;
//! - where the processes cooperate and a reference is wanted,
//!   [`Shared::get_unchecked`], [`SharedSlice::as_slice`] and
//!   [`Segment::as_slice`] (and their `_mut` forms) are `unsafe`, with the
//!   promise to keep spelled out in their `# Safety`.
//!
//! # The header
//! Every segment starts with a 128-byte [header]: magic, format version, the
//! size, alignment, count and type fingerprint of what it holds, its creator's pid
//! and [identity token](identity), and an init state. Opening checks all of it and answers a bad
//! segment with a distinct [`Error`] — [`TooSmall`](Error::TooSmall),
//! [`NotMultiproc`](Error::NotMultiproc), [`VersionMismatch`](Error::VersionMismatch),
//! [`LayoutMismatch`](Error::LayoutMismatch), [`Corrupted`](Error::Corrupted) — and
//! waits (bounded) for a creator that has not finished initialising.
//!
//! # Example: create, then open as another process would
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use multiproc_shm::{Shared, SharedSlice};
//!
//! let name = format!("doc-lib-{}", std::process::id());
//! // Process A creates a counter and a table.
//! let counter = Shared::create(&format!("{name}-n"), AtomicU64::new(0))?;
//! let table = SharedSlice::<f64>::create(&format!("{name}-t"), 3)?;
//! table.write_volatile(1, 2.5)?;
//!
//! // Process B opens them by name; the header check makes sure the types match.
//! let counter_b = Shared::<AtomicU64>::open(&format!("{name}-n"))?;
//! let table_b = SharedSlice::<f64>::open(&format!("{name}-t"))?;
//! counter_b.fetch_add(1, Ordering::SeqCst);
//! assert_eq!(counter.load(Ordering::SeqCst), 1);
//! assert_eq!(table_b.read_volatile(1), Some(2.5));
//! // A dropped in A unlinks both names.
//! # Ok::<(), multiproc_shm::Error>(())
//! ```
//!
//! # Across `fork`
//! ```no_run
//! use multiproc_shm::SharedSlice;
//! let squares = SharedSlice::<u64>::anonymous(4)?;
//! // SAFETY: the child only writes into the mapping and calls _exit.
//! match unsafe { libc::fork() } {
//!     0 => {
//!         for i in 0..4 { squares.write_volatile(i, (i * i) as u64)?; }
//!         unsafe { libc::_exit(0) };
//!     }
//!     pid => unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0); },
//! }
//! assert_eq!(squares.to_vec_volatile(), [0, 1, 4, 9]);
//! # Ok::<(), multiproc_shm::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod cleanup;
mod error;
pub mod header;
pub mod identity;
mod list;
mod name;
mod segment;
mod sys;
mod tracker;
mod typed;
mod volatile;

pub use cleanup::{remove_stale, stale_segments, StaleSegment};
pub use error::{Error, Result, SizeProblem, TrustProblem};
pub use header::{check_header_bytes, TypeInfo};
pub use identity::ProcessIdentity;
pub use list::{Item, ShareableList, MAX_ITEM_BYTES};
pub use name::MAX_NAME_LEN;
pub use segment::{Kind, Location, OpenOptions, Segment, DEFAULT_INIT_TIMEOUT};
pub use tracker::set_tracking;
pub use typed::{Shared, SharedArray, SharedSlice, ShmSafe, ShmSync};
