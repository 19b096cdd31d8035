//! The system calls of this crate, through `nix` where it has a safe wrapper and
//! raw `libc` for what it lacks (`pidfd_open`). The one other module that makes
//! system calls is the tracker, which keeps to raw `libc` on purpose: its process
//! is made by a raw `clone` and works on raw descriptors and fixed buffers, each
//! call with its own safety argument (see `tracker.rs`).

use std::ffi::{CStr, CString};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag, SealFlag};
use nix::sys::memfd::MFdFlags;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::stat::Mode;

/// Runs `f` again while it fails with `EINTR`; the error as an `io::Error`.
fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// `mmap(NULL, len, READ|WRITE, MAP_SHARED, fd, 0)`, or an anonymous shared
/// mapping when `fd` is `None`.
pub(crate) fn map_shared(len: usize, fd: Option<BorrowedFd<'_>>) -> io::Result<NonNull<u8>> {
    let len = NonZeroUsize::new(len).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: no address hint, so the kernel chooses an unused range and no
    // existing mapping (nor any Rust object) is replaced.
    let p = unsafe {
        match fd {
            Some(fd) => nix::sys::mman::mmap(None, len, prot, MapFlags::MAP_SHARED, fd, 0),
            None => nix::sys::mman::mmap_anonymous(None, len, prot, MapFlags::MAP_SHARED),
        }
    }?;
    Ok(p.cast::<u8>())
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
    let _ = unsafe { nix::sys::mman::munmap(ptr.cast(), len) };
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)`.
pub(crate) fn shm_create(name: &CStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
    retry(|| nix::sys::mman::shm_open(name, flags, Mode::S_IRUSR | Mode::S_IWUSR))
}

/// `shm_open(name, O_RDWR | O_NONBLOCK | O_CLOEXEC)`, or read-only when `write`
/// is false. `O_NONBLOCK` so that a FIFO someone placed under that name does not
/// block the open (glibc's `shm_open` passes the flag on, and adds `O_NOFOLLOW`);
/// the caller then refuses anything but a regular file.
pub(crate) fn shm_open(name: &CStr, write: bool) -> io::Result<OwnedFd> {
    let access = if write {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    let flags = access | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    retry(|| nix::sys::mman::shm_open(name, flags, Mode::empty()))
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    Ok(nix::sys::mman::shm_unlink(name)?)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`.
pub(crate) fn memfd_create(name: &CString) -> io::Result<OwnedFd> {
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    Ok(nix::sys::memfd::memfd_create(name.as_c_str(), flags)?)
}

/// `ftruncate(fd, len)`.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    retry(|| nix::unistd::ftruncate(fd, len))
}

/// Allocates the file's blocks (pages, on tmpfs) for its first `len` bytes
/// (`fallocate`), so that a filesystem without room says so now, with
/// `ENOSPC`, instead of a `SIGBUS` at a later first write. A filesystem that
/// cannot (`EOPNOTSUPP`) is left as it was.
pub(crate) fn reserve(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    match retry(|| nix::fcntl::fallocate(fd, nix::fcntl::FallocateFlags::empty(), 0, len)) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
        other => other,
    }
}

/// The size of the file behind `fd` (`fstat`).
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(fstat(fd)?.st_size as u64)
}

/// Clears `FD_CLOEXEC` on `fd`, so that a program started by `exec` inherits it.
pub(crate) fn set_inheritable(fd: BorrowedFd<'_>, inheritable: bool) -> io::Result<()> {
    let mut flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    flags.set(FdFlag::FD_CLOEXEC, !inheritable);
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// 32 random bits from the kernel (`getrandom`); should it fail (a kernel
/// before 3.17, a seccomp filter), the clock's nanoseconds mixed with the
/// pid and a count, which serve a name's draw as well.
pub(crate) fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: buf is valid for writes of its 4 bytes; flags 0 asks for the
    // urandom source, which blocks only before the pool is first seeded.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got == buf.len() as isize {
        return u32::from_ne_bytes(buf);
    }
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = u64::from(nanos)
        ^ (u64::from(getpid()) << 32)
        ^ u64::from(COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    (mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    nix::unistd::getpid().as_raw() as u32
}

/// The page size.
pub(crate) fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Reads up to `buf.len()` bytes at `offset` (`pread`), retrying on `EINTR`.
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    retry(|| nix::sys::uio::pread(fd, buf, off))
}

/// Seals a memfd's size (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), so no process
/// that maps it can be made to fault by a peer truncating it.
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    fcntl(fd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(())
}

/// `pidfd_open(id, 0)` for a process, or with `PIDFD_THREAD` (Linux 6.9) for a
/// thread. Raw libc: nix has no `pidfd_open`.
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
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = retry(|| nix::poll::poll(&mut pfd, PollTimeout::ZERO))?;
    Ok(n > 0
        && pfd[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN)))
}

/// The inode number of the file behind `fd` (`fstat`).
pub(crate) fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(fstat(fd)?.st_ino)
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    Ok(nix::sys::stat::fstat(fd)?)
}

/// The effective user id of this process.
pub(crate) fn geteuid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `fchmod(fd, mode)`.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let mode = Mode::from_bits_truncate(mode as libc::mode_t);
    retry(|| nix::sys::stat::fchmod(fd, mode))
}

/// Whether a task (process or thread) with id `id` exists, a zombie
/// included: `kill(id, 0)`, which sends nothing (`EPERM`: it exists, and
/// belongs to another user). A plain syscall, no allocation.
pub(crate) fn task_exists(id: u32) -> bool {
    // SAFETY: signal 0 only checks that the task exists and may be signalled.
    let r = unsafe { libc::kill(id as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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
    let path = CStr::from_bytes_until_nul(&path).ok()?;
    // nix's open and read of a `CStr` path allocate nothing.
    let fd =
        retry(|| nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())).ok()?;
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(&fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    Some(filled)
}
