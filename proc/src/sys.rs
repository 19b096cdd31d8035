//! Every system call of this crate: through `nix` where it has a safe wrapper;
//! raw `libc` for what it lacks (`pidfd_open`, `pidfd_send_signal`, `atexit`,
//! `_exit`) and for `wait`/`waitpid`/`waitid`, whose nix forms decode the
//! status into nix's `Signal` and fail with `EINVAL` (after reaping the child)
//! when a real-time signal killed it: its exit status would be lost.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::socket::{self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::unistd::Pid;

/// A libc call's `-1`-on-error return as a `Result` (for the raw calls).
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    Errno::result(r).map_err(io::Error::from)
}

/// Runs `f` again while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// `fork()`: the child's pid in the parent, 0 in the child.
///
/// # Safety
/// - in the child, only async-signal-safe work may follow if the parent had other
///   threads (see [`crate::fork`]).
pub(crate) unsafe fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller upholds what the child may do afterwards.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw()),
        nix::unistd::ForkResult::Child => Ok(0),
    }
}

/// `pidfd_open(pid, 0)`.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor, a signal number, NULL info and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `waitid(P_PIDFD, pidfd, WEXITED [| WNOHANG])`: `Some(raw status)` once reaped,
/// `None` if `nohang` and it still runs. The raw status is encoded as `waitpid`
/// would (`exit << 8`, or the signal number).
pub(crate) fn wait_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<i32>> {
    let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    retry(|| {
        // SAFETY: info is valid writable memory for a siginfo_t; P_PIDFD (3) takes
        // the descriptor as the id.
        cvt(unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                info.as_mut_ptr(),
                flags,
            )
        })
    })?;
    // SAFETY: waitid succeeded and the struct was zeroed before, so every field is
    // initialised; si_pid is 0 when WNOHANG found nothing to reap.
    let info = unsafe { info.assume_init() };
    // SAFETY: reading the union fields of a siginfo filled by waitid.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => status | 0x80,
        _ => status, // CLD_KILLED: the signal number
    }))
}

/// Whether our child `pid` has ended, without reaping it: `waitid(P_PID,
/// WEXITED | WNOHANG | WNOWAIT)`, which leaves its status to be taken.
/// `ECHILD` (no such child of ours: reaped already elsewhere) counts as
/// ended.
pub(crate) fn child_ended(pid: u32) -> bool {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    let r = retry(|| {
        // SAFETY: info is valid writable memory for a siginfo_t.
        cvt(unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, info.as_mut_ptr(), flags) })
    });
    match r {
        // SAFETY: waitid succeeded on a zeroed struct; si_pid is 0 when no
        // child of that pid has ended.
        Ok(_) => unsafe { info.assume_init().si_pid() != 0 },
        Err(_) => true,
    }
}

/// What becomes of this process's children when they end, by `SIGCHLD`'s
/// action.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reaping {
    /// They stay zombies until waited for (`SIG_DFL`).
    Waited,
    /// The kernel reaps them as they end and discards their statuses
    /// (`SIG_IGN`, or `SA_NOCLDWAIT`).
    ByKernel,
    /// A handler runs, which may reap any child (`waitpid(-1)`) at once.
    MaybeByHandler,
}

/// [`Reaping`] now (one `sigaction` that changes nothing).
pub(crate) fn reaping() -> Reaping {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`, valid
    // writable memory for a sigaction.
    if unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), old.as_mut_ptr()) } != 0 {
        return Reaping::Waited;
    }
    // SAFETY: sigaction succeeded and filled it (zeroed before besides).
    let old = unsafe { old.assume_init() };
    if old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0 {
        Reaping::ByKernel
    } else if old.sa_sigaction == libc::SIG_DFL {
        Reaping::Waited
    } else {
        Reaping::MaybeByHandler
    }
}

/// A pipe (both ends close-on-exec): a child started while something other
/// than its handle may reap it waits on it for its parent to open its pidfd (see
/// `Process::start`).
pub(crate) fn handshake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is valid for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded: both are open descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A descriptor of no use but its number (an unbound Unix datagram socket,
/// close-on-exec): the registry's spare (see `registry::Spare`).
pub(crate) fn spare_descriptor() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket succeeded: an open descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The device and inode numbers of what `fd` is open on (each socket has
/// an inode of its own), or `None` when it is not open.
pub(crate) fn inode_of(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    // SAFETY: a zeroed stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is valid for writing; fd is a descriptor number (a closed
    // one answers EBADF).
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Blocks until a byte can be read from `fd`, or its writers are gone.
/// Async-signal-safe (a child after `fork`).
pub(crate) fn await_byte(fd: BorrowedFd<'_>) {
    let mut b = [0u8; 1];
    let _ = retry(|| {
        // SAFETY: b is valid for one byte; fd is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        cvt(n as libc::c_int)
    });
}

/// Writes one byte to `fd` (the other side of [`await_byte`]).
pub(crate) fn send_byte(fd: BorrowedFd<'_>) {
    let _ = retry(|| {
        // SAFETY: a one-byte buffer; fd is open.
        let n = unsafe { libc::write(fd.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        cvt(n as libc::c_int)
    });
}

/// Sets `SIGCHLD` to its default action (children are kept as zombies until
/// waited for, their statuses with them); returns the action it had, to
/// [`restore_sigchld`] in a child.
pub(crate) fn default_sigchld() -> Option<libc::sigaction> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    let mut new = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a zeroed sigaction is SIG_DFL (0) with no flags and an empty
    // mask; both pointers are valid for a sigaction.
    let r = unsafe {
        (*new.as_mut_ptr()).sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGCHLD, new.as_ptr(), old.as_mut_ptr())
    };
    // SAFETY: sigaction succeeded and filled `old`.
    (r == 0).then(|| unsafe { old.assume_init() })
}

/// Puts back a `SIGCHLD` action [`default_sigchld`] returned.
pub(crate) fn restore_sigchld(action: &libc::sigaction) {
    // SAFETY: `action` is a sigaction the kernel gave; a null old action.
    unsafe { libc::sigaction(libc::SIGCHLD, action, std::ptr::null_mut()) };
}

/// Waits until `fd` is readable (a pidfd: its process exited) or `timeout` passes.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    // A timeout too large for the clock waits for ever.
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                // Round up so a sub-millisecond remainder still waits.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], wait) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => return Ok(false),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `wait(&status)`: any child. Returns its pid and raw status.
pub(crate) fn wait_any() -> io::Result<(libc::pid_t, i32)> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    let pid = retry(|| cvt(unsafe { libc::wait(&mut status) }))?;
    Ok((pid, status))
}

/// `waitpid(-1, &status, WNOHANG)`: any child that has ended, if one has.
pub(crate) fn try_wait_any() -> io::Result<Option<(libc::pid_t, i32)>> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    let pid = retry(|| cvt(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }))?;
    Ok((pid > 0).then_some((pid, status)))
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub(crate) fn set_parent_death_signal(sig: libc::c_int) -> io::Result<()> {
    Ok(nix::sys::prctl::set_pdeathsig(Signal::try_from(sig)?)?)
}

/// `prctl(PR_SET_CHILD_SUBREAPER, on)`.
pub(crate) fn set_child_subreaper(on: bool) -> io::Result<()> {
    Ok(nix::sys::prctl::set_child_subreaper(on)?)
}

/// `getpid()`.
pub(crate) fn getpid() -> u32 {
    nix::unistd::getpid().as_raw() as u32
}

/// `getppid()`.
pub(crate) fn getppid() -> u32 {
    nix::unistd::getppid().as_raw() as u32
}

/// `_exit(code)`: leaves at once, running no destructors or exit handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns (nix has no wrapper).
    unsafe { libc::_exit(code) }
}

/// The number of CPUs in this thread's affinity mask (`sched_getaffinity`).
pub(crate) fn affinity_cpus() -> io::Result<usize> {
    use nix::sched::CpuSet;
    let set = nix::sched::sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .count())
}

/// `atexit(f)` (nix has none).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: f is a plain function with static lifetime.
    unsafe { libc::atexit(f) };
}

/// `on_exit(f, NULL)` (glibc's): `f` runs at `exit(status)` with the status,
/// before every handler registered earlier. `false` where it is missing
/// (a C library without it) or refused (no room for another handler).
pub(crate) fn on_exit(f: extern "C" fn(libc::c_int, *mut libc::c_void)) -> bool {
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            // glibc's since 2.2.5; the libc crate does not declare it.
            fn on_exit(
                f: extern "C" fn(libc::c_int, *mut libc::c_void),
                arg: *mut libc::c_void,
            ) -> libc::c_int;
        }
        // SAFETY: f is a plain function with static lifetime that ignores
        // its argument, which may be null.
        unsafe { on_exit(f, std::ptr::null_mut()) == 0 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = f;
        false
    }
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (ty, flags) = (socket::SockType::SeqPacket, socket::SockFlag::SOCK_CLOEXEC);
    Ok(socket::socketpair(AddressFamily::Unix, ty, None, flags)?)
}

/// Sends one message, with `fd` attached (SCM_RIGHTS) if given.
pub(crate) fn send_msg(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let fds = fd.map(|fd| [fd.as_raw_fd()]);
    let rights: Vec<ControlMessage<'_>> =
        fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    retry(|| {
        let iov = [IoSlice::new(data)];
        let flags = MsgFlags::MSG_NOSIGNAL;
        Ok(socket::sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            &rights,
            flags,
            None,
        )?)
    })
    .map(drop)
}

/// Receives one message into `buf`; returns its length (0 at end of stream) and an
/// attached descriptor if there was one.
pub(crate) fn recv_msg(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (n, raws) = retry(|| {
        let mut iov = [IoSliceMut::new(buf)];
        // MSG_CMSG_CLOEXEC: a received descriptor is close-on-exec.
        let flags = MsgFlags::MSG_CMSG_CLOEXEC;
        let msg = socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            // The descriptor sent with it was dropped: this process could not
            // take one more (the kernel truncates the control data then), as
            // an `open` would have answered.
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        let mut raws = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raws.extend(fds);
            }
        }
        Ok((msg.bytes, raws))
    })?;
    let mut fd = None;
    for raw in raws {
        // SAFETY: SCM_RIGHTS gave this process a new descriptor that nothing else
        // owns; all but the last of several (none expected) are closed by the drop.
        fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok((n, fd))
}

/// This process's limit of open files (`RLIMIT_NOFILE`, the soft limit), if
/// it can be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the rlimit it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// Poll several descriptors for readability; returns which are readable.
pub(crate) fn poll_many(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    let wait = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
    retry(|| Ok(nix::poll::poll(&mut p, wait)?))?;
    Ok(p.iter().map(|x| x.any().unwrap_or(false)).collect())
}

/// How many threads this process has (entries in `/proc/self/task`).
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}

/// `kill(pid, sig)`. Only for our own unreaped children, whose pid cannot be recycled.
pub(crate) fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    Ok(nix::sys::signal::kill(
        Pid::from_raw(pid as libc::pid_t),
        Signal::try_from(sig)?,
    )?)
}

/// `waitpid(pid, WNOHANG?)`: `Some(raw status)` once reaped.
pub(crate) fn waitpid(pid: u32, nohang: bool) -> io::Result<Option<i32>> {
    let mut status = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: status is a valid out-pointer.
    let r = retry(|| cvt(unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) }))?;
    Ok((r != 0).then_some(status))
}

/// `shutdown(sock, SHUT_RDWR)`: the peer sees end of stream. An error (not
/// connected) means the peer is gone already, which is what we want.
pub(crate) fn shutdown(sock: BorrowedFd<'_>) {
    let _ = socket::shutdown(sock.as_raw_fd(), socket::Shutdown::Both);
}

/// Sleeps while `word` holds `expected` (a private futex: the word is this
/// process's own memory). Returns on a wake, a signal, or a changed word.
pub(crate) fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: the address is a live, aligned u32; no timeout; the result is
    // ignored (EAGAIN: the word changed; EINTR: a signal), the caller looks
    // again either way.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one thread asleep in [`futex_wait`] on `word`.
pub(crate) fn futex_wake_one(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: the address is a live, aligned u32; waking has no other effect.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Stdout's and stderr's locks, taken (stdout flushed) to be held across a
/// `fork`; dropped on both sides after it.
///
/// A fork copies a lock, not the thread that holds it: a process forked
/// while another thread was printing would find the stream taken for ever
/// by a thread it does not have, and its first `println!` would hang (seen:
/// 2 pools in 20 made while a thread printed had a worker that could not
/// print, `benches/NOTES.md`). Held by the forking thread, they wait for
/// that print to end, and the child gets them from this thread, which it
/// has, and lets them go. Flushed first, the buffer is not written twice
/// (by the parent and by the child).
pub(crate) struct StdStreams {
    _out: std::io::StdoutLock<'static>,
    _err: std::io::StderrLock<'static>,
}

/// See [`StdStreams`].
pub(crate) fn hold_std_streams() -> StdStreams {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.flush();
    StdStreams {
        _out: out,
        _err: std::io::stderr().lock(),
    }
}
