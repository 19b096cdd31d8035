//! A tracker process that removes the named segments of a creator that died
//! without removing them (killed, or ended by `_exit`), as Python's
//! `resource_tracker` does — without asking the user to run anything.
//!
//! # How
//! The first named segment a process creates starts its tracker: a process
//! of its own (forked twice, so that it is nobody's child to wait for), which
//! holds a pidfd of the creator and one end of a `SOCK_SEQPACKET` socket
//! pair. Before each [`create`](crate::Segment::create) the creator sends
//! `R` and the name; when it removes the name (drop, `unlink`) or keeps it on
//! purpose (`set_unlink_on_drop(false)`), `U` and the name. A send never
//! raises `SIGPIPE` and waits at most a second for a lagging tracker; one that
//! fails loses only the tracking of that name
//! ([`remove_stale`](crate::remove_stale) still finds it).
//!
//! When the creator dies (its pidfd becomes readable) the tracker removes
//! each name still registered, if the file under it
//! - is a regular file of this user (opened without following links or
//!   blocking), and
//! - is the creator's: its header names the creator (pid and identity token)
//!   and is not marked persistent, or it has no header yet (the creator died
//!   while making it), and
//! - is mapped by no live process (each `/proc/<pid>/maps` this user can
//!   read is searched for it): one still in use waits, and is looked at again
//!   every 100 ms until nobody maps it. Where no `/proc` is mounted (some
//!   containers and chroots) nothing can be found mapped, and the name is
//!   removed as Python's tracker removes it: processes that map it keep
//!   their mappings, and a later open by name fails.
//!
//! The tracker then exits. A forked child that creates segments starts a
//! tracker of its own (it is another creator).
//!
//! # What the tracker may do
//! It is forked from a process that may run other threads, so it makes only
//! system calls (no allocation, no lock, no `std` I/O) until it exits: its
//! table of names, its buffers and its paths are fixed arrays. It is made
//! with the raw `clone` system call, not `fork`, so that no fork handler runs
//! in it (a queue's handler would count it as a holder of the creator's
//! queues). It unmaps every shared mapping it inherited (the creator's
//! segments: holding them would keep their memory alive after the creator
//! drops them), closes every descriptor it inherited but its two, ignores
//! `SIGINT`, `SIGTERM` and `SIGHUP` (a Ctrl-C to the program must not stop
//! the cleanup), and names itself `mp-shm-tracker`.
//!
//! [`set_tracking`] turns this off for the calling process (a program that
//! wants to leave segments behind, such as a test of `remove_stale`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::header::{FLAG_PERSISTENT, HEADER_LEN, MAGIC};
use crate::ProcessIdentity;

static ENABLED: AtomicBool = AtomicBool::new(true);
static TRACKER: Mutex<Option<Tracker>> = Mutex::new(None);

/// This process's tracker: its socket end, and the process that started it
/// (a forked child's copy is its parent's, not its own).
struct Tracker {
    owner: u32,
    sock: OwnedFd,
}

/// Record kinds.
const REGISTER: u8 = b'R';
const UNREGISTER: u8 = b'U';
/// Names the tracker can hold at once; more are not tracked.
const NAMES: usize = 1024;
/// A name's longest form (`NAME_MAX`), without the leading `/`.
const NAME_MAX: usize = 255;

/// Turns the tracker on or off for this process (on by default). Segments
/// created while it is off are not removed when their creator dies;
/// [`remove_stale`](crate::remove_stale) still finds them.
///
/// The tracker: the first named segment a process creates starts a process
/// (`mp-shm-tracker`, nobody's child to wait for) that holds a pidfd of the
/// creator. When the creator dies, the tracker removes every name the
/// creator registered and did not remove or keep itself, provided the file
/// under the name is still the creator's (its header says so, or it has none
/// yet) and no live process maps it; one still mapped is looked at every
/// 100 ms until nobody does. Then the tracker exits. It makes only system
/// calls (it is forked from a process that may run threads), closes every
/// descriptor it inherited but its own, and ignores `SIGINT`, `SIGTERM` and
/// `SIGHUP`. It tracks up to 1 024 names at once; a name it could not be told
/// of is left for [`remove_stale`](crate::remove_stale).
///
/// # Examples
/// ```
/// multiproc_shm::set_tracking(false); // this process leaves its segments behind if killed
/// multiproc_shm::set_tracking(true);
/// ```
pub fn set_tracking(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Registers `name` (without its leading `/`) before it is created.
pub(crate) fn track(name: &str) {
    if ENABLED.load(Ordering::Relaxed) {
        send(REGISTER, name, true);
    }
}

/// Unregisters `name`: removed, kept on purpose, or never made.
pub(crate) fn untrack(name: &str) {
    send(UNREGISTER, name, false);
}

fn send(op: u8, name: &str, start: bool) {
    let name = name.strip_prefix('/').unwrap_or(name).as_bytes();
    if name.is_empty() || name.len() > NAME_MAX {
        return;
    }
    let pid = std::process::id();
    let mut t = TRACKER.lock().unwrap_or_else(|e| e.into_inner());
    if t.as_ref().is_none_or(|t| t.owner != pid) {
        // None yet, or the parent's (inherited across fork): this process
        // needs its own, if it is registering.
        *t = None;
        if !start {
            return;
        }
        *t = spawn();
    }
    let Some(t) = t.as_ref() else { return };
    let mut rec = [0u8; 1 + NAME_MAX];
    rec[0] = op;
    rec[1..=name.len()].copy_from_slice(name);
    // SAFETY: sending a valid buffer on our socket; MSG_NOSIGNAL spares the
    // process a SIGPIPE if the tracker is gone. A tracker that lags (a burst
    // of creates on a busy machine) makes this wait, at most the socket's
    // send timeout (see `spawn`): a record dropped at once would leave that
    // name untracked.
    unsafe {
        libc::send(
            t.sock.as_raw_fd(),
            rec.as_ptr().cast(),
            1 + name.len(),
            libc::MSG_NOSIGNAL,
        )
    };
}

/// `clone(SIGCHLD)`: a fork that runs no fork handlers.
fn raw_fork() -> libc::pid_t {
    // SAFETY: clone with only an exit signal and no stack is fork(2): the
    // child gets a copy of the address space and returns 0 here.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as libc::pid_t
    }
}

/// Starts this process's tracker; `None` if it cannot (no tracking then).
fn spawn() -> Option<Tracker> {
    let me = ProcessIdentity::current();
    let mut pair = [0 as RawFd; 2];
    // SAFETY: socketpair fills the two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return None;
    }
    // SAFETY: new descriptors that nothing else owns.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    // A send waits for a lagging tracker, but never more than a second (a
    // tracker that is stopped must not stop the creator).
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a valid timeval of the right size.
    unsafe {
        libc::setsockopt(
            ours.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    // SAFETY: pidfd_open of this very process.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, me.pid, 0) } as RawFd;
    if pidfd < 0 {
        return None;
    }
    // SAFETY: a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let middle = raw_fork();
    if middle == 0 {
        // The middle process: fork the tracker and leave, so that the tracker
        // is reparented (to init or a subreaper) and nobody waits for it.
        if raw_fork() == 0 {
            tracker_main(theirs.as_raw_fd(), pidfd.as_raw_fd(), me)
        }
        // SAFETY: _exit ends this process without running anything of the parent's.
        unsafe { libc::_exit(0) }
    }
    if middle < 0 {
        return None;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child; EINTR is retried. Another waiter
    // (a SIGCHLD handler) may have reaped it: ECHILD is fine too.
    while unsafe { libc::waitpid(middle, &mut status, 0) } < 0
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
    drop((theirs, pidfd));
    Some(Tracker {
        owner: me.pid,
        sock: ours,
    })
}

/// The tracker's table of names: fixed arrays, no allocation.
struct Table {
    names: [[u8; NAME_MAX]; NAMES],
    lens: [u8; NAMES],
    used: [bool; NAMES],
}

impl Table {
    fn find(&self, name: &[u8]) -> Option<usize> {
        (0..NAMES).find(|&i| {
            self.used[i]
                && usize::from(self.lens[i]) == name.len()
                && &self.names[i][..name.len()] == name
        })
    }

    fn apply(&mut self, rec: &[u8]) {
        let Some((&op, name)) = rec.split_first() else {
            return;
        };
        if name.is_empty() || name.len() > NAME_MAX {
            return;
        }
        match op {
            REGISTER if self.find(name).is_none() => {
                if let Some(i) = (0..NAMES).find(|&i| !self.used[i]) {
                    self.names[i][..name.len()].copy_from_slice(name);
                    self.lens[i] = name.len() as u8;
                    self.used[i] = true;
                }
            }
            UNREGISTER => {
                if let Some(i) = self.find(name) {
                    self.used[i] = false;
                }
            }
            _ => {}
        }
    }
}

/// The tracker's table lives in its own copy of this static (the creator
/// never touches it): a fixed place, no allocation after the fork.
static mut TABLE: Table = Table {
    names: [[0; NAME_MAX]; NAMES],
    lens: [0; NAMES],
    used: [false; NAMES],
};

/// The tracker: registers and unregisters names until the creator dies,
/// then removes what is left. Only system calls from here on.
fn tracker_main(sock: RawFd, pidfd: RawFd, creator: ProcessIdentity) -> ! {
    // SAFETY: the tracker is single-threaded and the only user of its TABLE.
    let table = unsafe { &mut *std::ptr::addr_of_mut!(TABLE) };
    // SAFETY: plain system calls on descriptors and buffers of this process.
    unsafe {
        // Its two descriptors become 3 and 4; everything else is closed.
        let s = libc::fcntl(sock, libc::F_DUPFD, 10);
        let p = libc::fcntl(pidfd, libc::F_DUPFD, 10);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        libc::dup2(s, 3);
        libc::dup2(p, 4);
        libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::prctl(libc::PR_SET_NAME, c"mp-shm-tracker".as_ptr());
        libc::setsid();
    }
    unmap_shared();
    let (sock, pidfd) = (3, 4);
    let mut buf = [0u8; 1 + NAME_MAX];
    let mut creator_gone = false;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sock,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let wait_ms = if creator_gone { 100 } else { -1 };
        // SAFETY: two valid pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, wait_ms) };
        if fds[1].revents != 0 {
            creator_gone = true;
        }
        // Take every record there is (the creator's last ones come before its
        // death is seen).
        loop {
            // SAFETY: receiving into our buffer.
            let n =
                unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n <= 0 {
                break;
            }
            table.apply(&buf[..n as usize]);
        }
        if creator_gone && remove_abandoned(table, creator) == 0 {
            // SAFETY: the tracker's work is done.
            unsafe { libc::_exit(0) }
        }
    }
}

/// One round of removal: forgets the names that are not the creator's to
/// remove, marks those some live process maps (one pass over `/proc`), and
/// removes the rest; how many are left for a later round.
fn remove_abandoned(table: &mut Table, creator: ProcessIdentity) -> usize {
    for i in 0..NAMES {
        if table.used[i]
            && !still_the_creators(&table.names[i][..usize::from(table.lens[i])], creator)
        {
            table.used[i] = false;
        }
    }
    if !table.used.contains(&true) {
        return 0;
    }
    let mut in_use = [false; NAMES];
    mark_mapped(table, &mut in_use);
    let mut left = 0;
    for (i, &used) in in_use.iter().enumerate() {
        if !table.used[i] {
            continue;
        }
        if used {
            left += 1;
            continue;
        }
        let mut path = [0u8; 16 + NAME_MAX + 1];
        shm_path(&table.names[i][..usize::from(table.lens[i])], &mut path);
        // SAFETY: unlink of a NUL-terminated path in our buffer.
        unsafe { libc::unlink(path.as_ptr().cast()) };
        table.used[i] = false;
    }
    left
}

/// Unmaps every shared mapping the tracker inherited from its creator (its
/// segments, queues, locks): the tracker needs none of them, and holding
/// them would keep their memory alive after the creator drops them. Its
/// code, stack and data are private mappings, left alone.
fn unmap_shared() {
    // SAFETY: system calls on our own buffers; only shared mappings, which
    // nothing in the tracker refers to, are unmapped.
    unsafe {
        let fd = libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return;
        }
        // Read it whole first: unmapping while reading changes the file.
        static mut MAPS: [u8; 1 << 20] = [0; 1 << 20];
        let maps = &mut *std::ptr::addr_of_mut!(MAPS);
        let mut len = 0;
        while len < maps.len() {
            let n = libc::read(fd, maps[len..].as_mut_ptr().cast(), maps.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        // "start-end perms ...": unmap where perms' fourth letter is 's'.
        for line in maps[..len].split(|&b| b == b'\n') {
            let Some(dash) = line.iter().position(|&b| b == b'-') else {
                continue;
            };
            let Some(space) = line.iter().position(|&b| b == b' ') else {
                continue;
            };
            if line.get(space + 4) != Some(&b's') {
                continue;
            }
            let (Some(start), Some(end)) = (hex(&line[..dash]), hex(&line[dash + 1..space])) else {
                continue;
            };
            libc::munmap(start as *mut libc::c_void, end.saturating_sub(start));
        }
    }
}

fn hex(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |n, &d| {
        let v = (d as char).to_digit(16)? as usize;
        n.checked_mul(16)?.checked_add(v)
    })
}

/// `/dev/shm/` then `name`, NUL-terminated, in `out`; its length without the NUL.
fn shm_path(name: &[u8], out: &mut [u8; 16 + NAME_MAX + 1]) -> usize {
    const DIR: &[u8] = b"/dev/shm/";
    out[..DIR.len()].copy_from_slice(DIR);
    out[DIR.len()..DIR.len() + name.len()].copy_from_slice(name);
    out[DIR.len() + name.len()] = 0;
    DIR.len() + name.len()
}

/// Whether the file under `name` is still the creator's to remove: a regular
/// file of this user whose header names the creator and is not marked
/// persistent, or has no header yet (the creator died making it).
fn still_the_creators(name: &[u8], creator: ProcessIdentity) -> bool {
    let mut path = [0u8; 16 + NAME_MAX + 1];
    shm_path(name, &mut path);
    // SAFETY: system calls on our own buffers and descriptors.
    unsafe {
        let fd = libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let mut st: libc::stat = std::mem::zeroed();
        let ours = libc::fstat(fd, &mut st) == 0
            && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
            && st.st_uid == libc::geteuid()
            && {
                let mut h = [0u8; HEADER_LEN];
                let n = libc::pread(fd, h.as_mut_ptr().cast(), HEADER_LEN, 0);
                let word =
                    |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or([0; 8]));
                let half =
                    |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap_or([0; 4]));
                if n < HEADER_LEN as isize || word(0) == 0 {
                    true // no header yet: the creator died making it
                } else {
                    word(0) == MAGIC
                        && half(72) == creator.pid
                        && word(80) == creator.token
                        && half(20) & FLAG_PERSISTENT == 0
                }
            };
        libc::close(fd);
        ours
    }
}

/// Marks in `in_use` each registered name that some live process (other
/// than this one) maps: a line of its `/proc/<pid>/maps` ends with
/// ` /dev/shm/<name>`. One pass over `/proc` for all the names.
fn mark_mapped(table: &Table, in_use: &mut [bool; NAMES]) {
    // SAFETY: system calls on our own buffers and descriptors.
    unsafe {
        let me = libc::getpid();
        let dir = libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return;
        }
        let mut ents = [0u8; 4096];
        loop {
            let n =
                libc::syscall(libc::SYS_getdents64, dir, ents.as_mut_ptr(), ents.len()) as isize;
            if n <= 0 {
                break;
            }
            let mut at = 0usize;
            while at + 19 < n as usize {
                let reclen = u16::from_ne_bytes([ents[at + 16], ents[at + 17]]) as usize;
                let name = &ents[at + 19..(at + reclen).min(n as usize)];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                at += reclen.max(1);
                match parse_pid(name) {
                    Some(pid) if pid != me => scan_maps(name, table, in_use),
                    _ => {}
                }
            }
        }
        libc::close(dir);
    }
}

fn parse_pid(name: &[u8]) -> Option<libc::pid_t> {
    if name.is_empty() || name.len() > 9 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        name.iter()
            .fold(0, |n, &d| n * 10 + libc::pid_t::from(d - b'0')),
    )
}

/// Marks the registered names that `/proc/<pid>/maps` (pid given as its
/// digits) maps.
fn scan_maps(pid: &[u8], table: &Table, in_use: &mut [bool; NAMES]) {
    const SHM: &[u8] = b" /dev/shm/";
    let mut file = [0u8; 32];
    let (prefix, suffix) = (b"/proc/", b"/maps\0");
    file[..prefix.len()].copy_from_slice(prefix);
    file[prefix.len()..prefix.len() + pid.len()].copy_from_slice(pid);
    file[prefix.len() + pid.len()..prefix.len() + pid.len() + suffix.len()].copy_from_slice(suffix);
    // SAFETY: system calls on our own buffers and descriptors.
    unsafe {
        let fd = libc::open(file.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return; // gone, or not ours to read (then it cannot map our 0600 file)
        }
        // Whole lines: what is left of a line at the end of a read moves to
        // the front before the next.
        let mut buf = [0u8; 16384];
        let mut have = 0usize;
        loop {
            let n = libc::read(fd, buf[have..].as_mut_ptr().cast(), buf.len() - have);
            if n <= 0 {
                break;
            }
            let end = have + n as usize;
            let mut start = 0;
            while let Some(nl) = buf[start..end].iter().position(|&b| b == b'\n') {
                let line = &buf[start..start + nl];
                if let Some(at) = line.windows(SHM.len()).position(|w| w == SHM) {
                    let mapped = &line[at + SHM.len()..];
                    if let Some(i) = table.find(mapped) {
                        in_use[i] = true;
                    }
                }
                start += nl + 1;
            }
            // A line longer than the buffer is dropped (no path is that long).
            let rest = if end - start == buf.len() {
                0
            } else {
                end - start
            };
            buf.copy_within(end - rest..end, 0);
            have = rest;
        }
        libc::close(fd);
    }
}
