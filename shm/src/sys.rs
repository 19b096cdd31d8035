//! Every libc call of this crate. The modules above this one never call libc.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// Converts a libc `-1`-on-error return into an `io::Result`.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Retries `f` while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// `mmap(NULL, len, READ|WRITE, MAP_SHARED | extra, fd, 0)`.
///
/// `fd` is `None` for an anonymous shared mapping.
pub(crate) fn map_shared(len: usize, fd: Option<BorrowedFd<'_>>) -> io::Result<NonNull<u8>> {
    debug_assert!(len > 0);
    let (flags, raw) = match fd {
        Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
        None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a NULL hint lets the kernel choose an unused address, so no existing
    // mapping is replaced; the result is checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            raw,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// Unmaps a mapping made by [`map_shared`].
///
/// # Safety
/// - `ptr`/`len` are exactly a mapping returned by [`map_shared`], not yet unmapped;
/// - nothing refers into it afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees ptr/len name a live mapping of ours that nothing
    // refers to any more. An error (only EINVAL for bad arguments) cannot happen for
    // such a mapping and cannot be acted on in a drop, so it is ignored.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)`.
pub(crate) fn shm_create(name: &CString) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
    // SAFETY: name is a valid NUL-terminated string; the mode is passed as the
    // variadic argument shm_open expects with O_CREAT.
    let fd = retry(|| cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0o600 as libc::mode_t) }))?;
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_open(name, O_RDWR | O_NONBLOCK | O_CLOEXEC)`, or read-only when `write`
/// is false. `O_NONBLOCK` so that a FIFO someone placed under that name does not
/// block the open (glibc's `shm_open` passes the flag on, and adds `O_NOFOLLOW`);
/// the caller then refuses anything but a regular file.
pub(crate) fn shm_open(name: &CString, write: bool) -> io::Result<OwnedFd> {
    let flags =
        if write { libc::O_RDWR } else { libc::O_RDONLY } | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: name is a valid NUL-terminated string; without O_CREAT the mode is ignored.
    let fd = retry(|| cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0) }))?;
    // SAFETY: shm_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &CString) -> io::Result<()> {
    // SAFETY: name is a valid NUL-terminated string.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub(crate) fn memfd_create(name: &CString) -> io::Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: name is a valid NUL-terminated string.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ftruncate(fd, len)`.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: ftruncate takes a valid borrowed descriptor and a length.
    retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })).map(drop)
}

/// The size of the file behind `fd` (`fstat`).
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(fstat(fd)?.st_size as u64)
}

/// Clears `FD_CLOEXEC` on `fd`, so that a program started by `exec` inherits it.
pub(crate) fn set_inheritable(fd: BorrowedFd<'_>, inheritable: bool) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFD) on a valid borrowed descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    let flags = if inheritable {
        flags & !libc::FD_CLOEXEC
    } else {
        flags | libc::FD_CLOEXEC
    };
    // SAFETY: fcntl(F_SETFD) on a valid borrowed descriptor with integer flags.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) }).map(drop)
}

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// The page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if r > 0 {
        r as usize
    } else {
        4096
    }
}

/// Reads up to `buf.len()` bytes at `offset` (`pread`), retrying on `EINTR`.
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    retry(|| {
        // SAFETY: buf is valid writable memory of buf.len() bytes.
        let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Seals a memfd's size (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), so no process
/// that maps it can be made to fault by a peer truncating it.
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on a valid borrowed descriptor with integer flags.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// `pidfd_open(id, 0)` for a process, or with `PIDFD_THREAD` (Linux 6.9) for a thread.
pub(crate) fn pidfd_open(id: u32, thread: bool) -> io::Result<OwnedFd> {
    // PIDFD_THREAD has the value of O_EXCL (include/uapi/linux/pidfd.h).
    let flags = if thread { libc::O_EXCL } else { 0 };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, id as libc::pid_t, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Whether `fd` is readable right now (`poll` with a zero timeout).
pub(crate) fn poll_readable_now(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout never blocks.
    let n = retry(|| cvt(unsafe { libc::poll(&mut pfd, 1, 0) }))?;
    Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
}

/// The inode number of the file behind `fd` (`fstat`).
pub(crate) fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(fstat(fd)?.st_ino)
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: st points to writable memory of the size of `struct stat`.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled the struct (and it was zeroed before).
    Ok(unsafe { st.assume_init() })
}

/// The effective user id of this process.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod takes a valid borrowed descriptor and a mode.
    retry(|| cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })).map(drop)
}

/// Reads `/proc/ID/stat` into `buf` with plain syscalls (no allocation); the
/// bytes read, or `None` when there is no such task.
pub(crate) fn read_proc_stat(id: u32, buf: &mut [u8]) -> Option<usize> {
    // "/proc/" + up to 10 digits + "/stat" + NUL
    let mut path = [0u8; 32];
    let mut len = 0;
    for &b in b"/proc/" {
        path[len] = b;
        len += 1;
    }
    let mut digits = [0u8; 10];
    let mut n = id;
    let mut d = 0;
    loop {
        digits[d] = b'0' + (n % 10) as u8;
        d += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        path[len] = digits[d];
        len += 1;
    }
    for &b in b"/stat" {
        path[len] = b;
        len += 1;
    }
    let fd = retry(|| {
        // SAFETY: path is NUL-terminated (zeroed past len) and lives across the call.
        cvt(unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) })
    })
    .ok()?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the range is inside buf, which is valid for writes.
        let r = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[filled..].as_mut_ptr().cast(),
                buf.len() - filled,
            )
        };
        match r {
            0 => break,
            r if r > 0 => filled += r as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
    Some(filled)
}
