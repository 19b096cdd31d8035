//! This process's children, its own identity (name, parent, daemon), and the
//! clean-up at exit that Python's `multiprocessing` does: terminate daemonic
//! children, join the others.
//!
//! One lock guards it all, and [`Process::start`](crate::Process::start)
//! holds it across `fork`, so that its child never inherits it locked by a
//! thread that does not exist there. A process forked otherwise while
//! another thread held it takes it over at its first look (the lock word
//! names the holder's process: see [`ForkLock`]).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::fork_lock::{ForkLock, FREE};
use crate::{status::WaitStatus, sys};

/// Where a process stands among those this crate started (Python's
/// `_identity`): empty for a main process; a child's is its parent's and
/// then its own number among its parent's processes, so the second process
/// made in `Process-2` is `Process-2:2`. Kept beside the value up to six
/// levels deep: copying it allocates nothing.
pub(crate) type Identity = smallvec::SmallVec<[u32; 6]>;

/// A process's name, kept as what makes it until someone reads it as text.
///
/// Starting a process copies its name into the registry and the child, and
/// its parent's name into the child: as `String`s that was three allocations
/// and three frees a start+join, and after every `fork` each page the parent
/// writes faults once (its pages are shared with the child, copy-on-write),
/// which malloc's bookkeeping did on three pages. A default name is its
/// identity, a given one an `Arc<str>`: cloning either allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    /// `MainProcess`: a process not started by this crate.
    Main,
    /// `Process-N`, `Process-N:M` in a process this crate started, …; a
    /// process made from a [`Run`](crate::Run) value without a name of its
    /// own takes its type's name for `Process` (Python's subclass `Chat`:
    /// `Chat-1`).
    Numbered {
        kind: &'static str,
        identity: Identity,
    },
    /// Given by the program.
    Given(Arc<str>),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Main => f.write_str("MainProcess"),
            Name::Numbered { kind, identity } => {
                f.write_str(kind)?;
                for (i, n) in identity.iter().enumerate() {
                    write!(f, "{}{n}", if i == 0 { '-' } else { ':' })?;
                }
                Ok(())
            }
            Name::Given(name) => f.write_str(name),
        }
    }
}

/// One child of this process.
pub(crate) struct Entry {
    pub(crate) pid: u32,
    pub(crate) name: Name,
    pub(crate) daemon: bool,
    /// Set when its handle was dropped before it was reaped: the registry reaps it.
    pub(crate) orphan: Option<OwnedFd>,
}

/// Who this process is.
#[derive(Debug)]
pub(crate) struct Me {
    pub(crate) name: Option<Name>,
    /// Its [`Identity`], whatever its name.
    pub(crate) identity: Identity,
    pub(crate) parent: Option<(u32, Name)>,
    /// A pidfd of the parent, opened by the first `parent_process()` call
    /// while the parent was still this process's parent (`None` before, after
    /// the parent ended, or when the kernel has no pidfds).
    pub(crate) parent_pidfd: Option<OwnedFd>,
}

pub(crate) struct State {
    /// The first [`CHILDREN_INLINE`] in the static itself. A start records
    /// its child's pid after `fork`, and a page the parent writes then is
    /// copied (the child shares it until it ends): on the heap that was a
    /// page more than the lock's, about 2 µs a start (`benches/NOTES.md`).
    pub(crate) children: Children,
    pub(crate) me: Me,
    at_exit_registered: bool,
    /// The last number given to a process made here (from 0 again in a
    /// child: `Process-2`'s first is `Process-2:1`). Here rather than in a static of
    /// its own: a start writes this page anyway (the lock), and a page more
    /// written between two forks is a copy-on-write fault more a start.
    numbered: u32,
    /// A descriptor kept so that a child's pidfd has a slot under
    /// `RLIMIT_NOFILE`: opened before a start's fork when missing (at the
    /// limit, the start fails there, before a child exists), and given up
    /// for the pidfd when the pidfd finds no other slot (see
    /// `Process::start`). Its children inherit it (close-on-exec) as theirs.
    pub(crate) spare: Option<Spare>,
}

/// A descriptor of no use but its number (see [`State::spare`]), and the
/// file it was opened on (device and inode): a program that closes every
/// descriptor it does not know (against Rust's I/O safety) may close it and
/// open something else under its number, which giving the spare up must
/// then leave open.
pub(crate) struct Spare {
    fd: OwnedFd,
    inode: (u64, u64),
}

impl Spare {
    /// Opens one.
    ///
    /// # Errors
    /// [`Error::TooManyOpenFiles`](crate::Error::TooManyOpenFiles) at the
    /// limit of open files (the point of it).
    pub(crate) fn open() -> Result<Spare, crate::Error> {
        let fd = sys::spare_descriptor().map_err(crate::Error::io(
            "socket (a descriptor kept for a child's pidfd)",
        ))?;
        // (A socket's inode is its own; `fstat` of one just opened fails only
        // with the descriptor closed under it: then the number is left be.)
        let inode = sys::inode_of(fd.as_fd()).unwrap_or((0, 0));
        Ok(Spare { fd, inode })
    }

    /// Closes it, freeing its number for the next descriptor opened, if it
    /// is still what it was opened on; else leaves the number to its new
    /// owner.
    pub(crate) fn give_up(self) {
        if sys::inode_of(self.fd.as_fd()) != Some(self.inode) {
            std::mem::forget(self.fd);
        }
    }
}

/// How many children the registry keeps beside its lock before it moves
/// them to the heap.
const CHILDREN_INLINE: usize = 4;

pub(crate) type Children = smallvec::SmallVec<[Entry; CHILDREN_INLINE]>;

/// The registry, aligned to its size so that it lies on one page: every
/// write a start makes after `fork` (the child's pid, the unlock) faults
/// once, on that page.
///
/// Its lock is a [`ForkLock`]: a process forked while another thread held
/// it takes it over at its first look (the word names the holder's
/// process). A hold taken over may have been in the middle of an update:
/// the list of children (the only field other threads change) is
/// forgotten, never read or dropped, by the first look of a new process
/// ([`lock`]); they are the parent's children anyway.
#[repr(align(512))]
struct OnePage {
    lock: ForkLock,
    /// The process whose children the state lists (0 before the first
    /// look), written under the lock. A process forked by anything but
    /// [`Process::start`] (`multiproc_proc::fork`, a fork server, a pool's
    /// workers, `pmap`'s) inherits the list; [`lock`] forgets it there at
    /// the first look, the at-exit clean-up's included. Such a process never
    /// signals or waits for its parent's children: at its `exit`, the
    /// clean-up would have terminated its parent's daemons.
    ///
    /// [`Process::start`]: crate::Process::start
    owner: AtomicU32,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is reached only through a `Guard`, which holds `lock`.
unsafe impl Sync for OnePage {}

const _: () = assert!(std::mem::size_of::<OnePage>() == 512);

static STATE: OnePage = OnePage {
    lock: ForkLock::new(AtomicU32::new(FREE)),
    owner: AtomicU32::new(0),
    state: UnsafeCell::new(State {
        children: Children::new_const(),
        me: Me {
            name: None,
            identity: Identity::new_const(),
            parent: None,
            parent_pidfd: None,
        },
        at_exit_registered: false,
        numbered: 0,
        spare: None,
    }),
};

/// The registry, locked (see [`OnePage`]); unlocked when dropped.
pub(crate) struct Guard {
    /// Not `Send`: unlocked by the thread that locked (or by its copy in a
    /// forked child, which is that thread there).
    _not_send: PhantomData<*mut ()>,
}

impl Deref for Guard {
    type Target = State;
    fn deref(&self) -> &State {
        // SAFETY: this guard holds the lock.
        unsafe { &*STATE.state.get() }
    }
}

impl DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut State {
        // SAFETY: this guard holds the lock.
        unsafe { &mut *STATE.state.get() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        STATE.lock.unlock();
    }
}

/// Whether this process is a daemonic child (which may not have children).
pub(crate) static IS_DAEMON: AtomicBool = AtomicBool::new(false);

/// How long exit clean-up waits for a terminated daemon before killing it.
const DAEMON_GRACE: Duration = Duration::from_secs(1);

/// The registry, locked by this thread. A panic while it is held leaves
/// the data consistent (every update is one push or retain).
pub(crate) fn lock() -> Guard {
    let me = sys::getpid();
    STATE.lock.lock(me);
    let mut st = Guard {
        _not_send: PhantomData,
    };
    if STATE.owner.load(Ordering::Relaxed) != me {
        // A copy made by a fork: the children listed are the parent's, and
        // a hold taken over may have left the list half updated: forgotten,
        // not dropped.
        std::mem::forget(std::mem::take(&mut st.children));
        STATE.owner.store(me, Ordering::Relaxed);
    }
    st
}

impl State {
    /// Registers the at-exit clean-up ([`at_exit`]), once: at this process's
    /// first start, so that its children have it from the fork on.
    pub(crate) fn ensure_at_exit(&mut self) {
        if !self.at_exit_registered {
            if !sys::on_exit(at_exit) {
                sys::at_exit(at_exit_without_status);
            }
            self.at_exit_registered = true;
        }
    }

    /// Reaps orphans that have finished (never blocks).
    pub(crate) fn reap_orphans(&mut self) {
        self.children.retain(|e| match &e.orphan {
            Some(fd) => !matches!(sys::wait_pidfd(fd.as_fd(), true), Ok(Some(_)) | Err(_)),
            None => true,
        });
    }

    pub(crate) fn remove(&mut self, pid: u32) {
        self.children.retain(|e| e.pid != pid);
    }

    /// The name this process goes by ("MainProcess" unless it was started by us).
    pub(crate) fn my_name(&self) -> Name {
        self.me.name.clone().unwrap_or(Name::Main)
    }

    /// The next process's identity: this process's, then the next number
    /// (from 1 in each process, as Python's).
    pub(crate) fn next_identity(&mut self) -> Identity {
        self.numbered = self.numbered.wrapping_add(1);
        let mut identity = self.me.identity.clone();
        identity.push(self.numbered);
        identity
    }

    /// What a child started from here takes over as its own: its identity,
    /// and a count of processes made there that starts again from 0.
    pub(crate) fn become_child(&mut self, identity: Identity) {
        self.me.identity = identity;
        self.numbered = 0;
    }
}

/// Terminates daemonic children, then waits for every other child: what Python
/// does when a process ends. Runs at `exit` (see [`at_exit`]) and at the
/// end of every child this crate started. Answers whether this process is
/// such a child (it has a parent of this crate's: started by
/// [`Process::start`](crate::Process::start), or by a fork server).
pub(crate) fn exit_cleanup() -> bool {
    // In a copy made by a fork, `lock` takes the lock over if it was held
    // at the fork, and forgets the parent's children.
    let mut st = lock();
    for e in st.children.iter().filter(|e| e.daemon) {
        signal(e, libc::SIGTERM);
    }
    for e in &st.children {
        let done = if e.daemon {
            wait_for(e, Some(DAEMON_GRACE)).is_some()
        } else {
            wait_for(e, None).is_some()
        };
        if !done {
            signal(e, libc::SIGKILL);
            wait_for(e, None);
        }
    }
    st.children.clear();
    st.me.parent.is_some()
}

/// At `exit(status)`, registered with glibc's `on_exit` (which passes the
/// status) by a process's first start, and so copied into every child it
/// starts: the clean-up; then, in such a child, stdout flushed and `_exit`
/// with the status. Python's child leaves by `os._exit` whatever ends it,
/// `sys.exit` included, so none of the exit handlers its parent registered
/// runs there; here an `exit` in a child (`std::process::exit`, C's
/// `exit`) runs only those the parent registered after its first start
/// (they come first), not the rest, nor C's flush of buffers copied from
/// the parent. Registered in each child instead, it would run before all
/// of them, for two page faults more a start (`benches/NOTES.md`).
extern "C" fn at_exit(status: libc::c_int, _: *mut libc::c_void) {
    if exit_cleanup() {
        // (`std::process::exit` flushed it already; C's `exit` called from
        // elsewhere did not.)
        let _ = std::io::Write::flush(&mut std::io::stdout());
        sys::exit_now(status);
    }
}

/// [`at_exit`] where the C library has no `on_exit`: the clean-up alone.
extern "C" fn at_exit_without_status() {
    exit_cleanup();
}

/// Registers [`at_exit`] in a fork server (whatever its maker registered,
/// and after it): its children, a pool's workers, leave by it.
pub(crate) fn register_at_exit_in_server() {
    sys::on_exit(at_exit);
}

fn signal(e: &Entry, sig: libc::c_int) {
    // The child may have exited already: nothing to do then.
    let _ = match &e.orphan {
        Some(fd) => sys::pidfd_send_signal(fd.as_fd(), sig),
        None => sys::kill(e.pid, sig),
    };
}

/// Waits for (and reaps) a registered child; `None` if `timeout` passed.
fn wait_for(e: &Entry, timeout: Option<Duration>) -> Option<WaitStatus> {
    match &e.orphan {
        Some(fd) => {
            if !sys::poll_readable(fd.as_fd(), timeout).unwrap_or(true) {
                return None;
            }
            sys::wait_pidfd(fd.as_fd(), false)
                .ok()
                .flatten()
                .map(WaitStatus::from_raw)
        }
        None => {
            // A timeout too large for the clock waits for ever.
            let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
            loop {
                match sys::waitpid(e.pid, deadline.is_some()) {
                    Ok(Some(s)) => return Some(WaitStatus::from_raw(s)),
                    Ok(None) if deadline.is_some_and(|d| std::time::Instant::now() < d) => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(None) => return None,
                    // ECHILD: someone else reaped it (wait_any); it is gone either way.
                    Err(_) => return Some(WaitStatus::from_raw(0)),
                }
            }
        }
    }
}

/// Whether our child `pid` has ended: finished and not reaped (a zombie), or
/// reaped already by someone else. Asked of the kernel, not of `/proc`,
/// which a container may not mount (every child then read as ended).
pub(crate) fn is_zombie(pid: u32) -> bool {
    sys::child_ended(pid)
}

/// Makes this process report `parent` as its parent (`parent_process()`),
/// held by `pidfd`: a fork server's, which its children inherit.
pub(crate) fn adopt_parent(parent: (u32, Name), pidfd: Option<OwnedFd>) {
    let mut st = lock();
    st.me.parent = Some(parent);
    st.me.parent_pidfd = pidfd;
}

/// Marks this process as a daemonic child, if it is one.
pub(crate) fn set_daemon(daemon: bool) {
    IS_DAEMON.store(daemon, Ordering::Relaxed);
}

pub(crate) fn is_daemon() -> bool {
    IS_DAEMON.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

    use super::Spare;
    use crate::sys;

    /// A spare given up is closed: its number no longer names its socket.
    #[test]
    fn a_spare_given_up_is_closed() {
        let spare = Spare::open().unwrap();
        let (n, inode) = (spare.fd.as_raw_fd(), spare.inode);
        assert_eq!(sys::inode_of(spare.fd.as_fd()), Some(inode));
        spare.give_up();
        // SAFETY: only a look at whatever the number names now (another
        // test's thread may have opened something under it).
        let now = sys::inode_of(unsafe { BorrowedFd::borrow_raw(n) });
        assert_ne!(now, Some(inode));
    }

    /// A spare closed behind its back, its number then another file's: giving
    /// it up leaves that file open (a program that closes every descriptor
    /// it does not know, then opens its own).
    #[test]
    fn a_spare_closed_behind_its_back_leaves_its_number_to_the_new_owner() {
        let spare = Spare::open().unwrap();
        let n = spare.fd.as_raw_fd();
        let other = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: against I/O safety on purpose (the test's point): the
        // spare's number made to name /dev/null, as a close and an open
        // would.
        assert_eq!(unsafe { libc::dup2(other.as_raw_fd(), n) }, n);
        spare.give_up();
        // SAFETY: the number is the test's own /dev/null now.
        let still = sys::inode_of(unsafe { BorrowedFd::borrow_raw(n) });
        assert_eq!(
            still,
            sys::inode_of(other.as_fd()),
            "the new owner's file was closed"
        );
        // SAFETY: closing the test's own duplicate.
        unsafe { libc::close(n) };
    }
}
