//! Finding and removing named segments whose creator died without unlinking them
//! (the job of Python's resource tracker).

use std::os::fd::AsFd;

use crate::header::{Snapshot, FLAG_PERSISTENT, HEADER_LEN, MAGIC};
use crate::segment::check_trusted;
use crate::{name, sys, Error, ProcessIdentity, Result};

/// Where POSIX shared-memory objects live on Linux.
const SHM_DIR: &str = "/dev/shm";

/// A named segment left behind by a process that died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleSegment {
    /// Its name, without the leading `/`.
    pub name: String,
    /// The dead process that created it.
    pub creator: ProcessIdentity,
}

/// Lists this crate's named segments whose creator is dead, among those whose
/// name starts with `prefix` (`""` for all).
///
/// A segment counts when its header carries this crate's magic, it is not marked
/// persistent (see [`Segment::set_unlink_on_drop`](crate::Segment::set_unlink_on_drop)),
/// and the process recorded as its creator no longer exists — a recycled pid with
/// another identity token counts as dead.
///
/// Only files this user could have made are looked at: regular files (read from
/// the directory entry, no link followed), owned by this user, with no
/// permission for group or others; they are opened without blocking (a FIFO
/// placed under the prefix cannot stall the scan) and read, never mapped.
/// Anything else, and files that cannot be read, are skipped.
///
/// # Errors
/// [`Error::Io`] if `/dev/shm` cannot be listed.
///
/// # Examples
/// ```
/// for s in multiproc_shm::stale_segments("my-app-")? {
///     println!("{} was left by pid {}", s.name, s.creator.pid);
/// }
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
pub fn stale_segments(prefix: &str) -> Result<Vec<StaleSegment>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::io("read_dir", SHM_DIR, e))?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // The entry's own type (readdir's d_type): a symlink is not followed.
        if !name.starts_with(prefix) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Some(snap) = read_header(&name) else {
            continue;
        };
        let creator = snap.creator();
        if snap.magic == MAGIC && snap.flags & FLAG_PERSISTENT == 0 && !creator.is_alive() {
            out.push(StaleSegment { name, creator });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Unlinks every segment [`stale_segments`] finds for `prefix`, and returns them.
///
/// Processes that still have one mapped keep it; only the name goes.
///
/// # Errors
/// [`Error::Io`] if `/dev/shm` cannot be listed. A segment that vanished meanwhile
/// is left out of the result; one that cannot be unlinked is an error.
///
/// # Examples
/// ```
/// let removed = multiproc_shm::remove_stale("my-app-")?;
/// assert!(removed.iter().all(|s| s.name.starts_with("my-app-")));
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
pub fn remove_stale(prefix: &str) -> Result<Vec<StaleSegment>> {
    let mut removed = Vec::new();
    for stale in stale_segments(prefix)? {
        let (_, cname) = name::validate(&stale.name)?;
        match sys::shm_unlink(&cname) {
            Ok(()) => removed.push(stale),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    "shm_unlink",
                    format!("segment {:?}", stale.name),
                    e,
                ))
            }
        }
    }
    Ok(removed)
}

/// The header of `/dev/shm/NAME`, read with `pread` (no mapping), if it is a
/// segment file this user could have made.
fn read_header(name: &str) -> Option<Snapshot> {
    let (_, cname) = name::validate(name).ok()?;
    // Non-blocking and without following a symlink (see sys::shm_open); then
    // refused unless it is this user's private regular file.
    let fd = sys::shm_open(&cname, false).ok()?;
    check_trusted(fd.as_fd(), name, false).ok()?;
    let mut buf = [0u8; HEADER_LEN];
    let n = sys::read_at(fd.as_fd(), &mut buf, 0).ok()?;
    (n == HEADER_LEN).then(|| Snapshot::from_bytes(&buf))
}
