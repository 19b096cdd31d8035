//! [`ForkServer`]: Python's `forkserver` start method. A small single-threaded
//! process, forked early, that forks children on request — so a program that has
//! since started threads can still start processes safely.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::status::WaitStatus;
use crate::{sys, Error, Gone, Result};

/// An entry point the fork server can start: gets the request's argument bytes,
/// returns the exit code.
pub type Entry = fn(&[u8]) -> i32;

/// The most argument bytes one request carries.
pub const MAX_ARGS: usize = 64 * 1024;

// The protocol: the client sends SPAWN, entry name length (u32), name, args;
// the server answers SPAWNED, pid (i32), with the pidfd attached, or FAILED,
// a failure kind, errno (i32), and for UNKNOWN the name; it reports each
// child's end unasked as EXITED, pid (i32), raw wait status (i32). All little
// endian, one message per datagram.
const SPAWN: u8 = b'S';
const SPAWNED: u8 = b'P';
const FAILED: u8 = b'E';
const EXITED: u8 = b'X';
/// FAILED kinds.
const UNKNOWN: u8 = 1;
const FORK_FAILED: u8 = 2;
const PIDFD_FAILED: u8 = 3;
const BAD_REQUEST: u8 = 4;

/// A fork server and the connection to it.
///
/// Start it first thing in `main`, while the process has one thread, with every
/// entry it will be asked for. Later, from any thread, [`spawn`](ForkServer::spawn)
/// asks it to fork a child that runs an entry with argument bytes. The server
/// forks from its own single-threaded state, so the child never inherits a lock
/// held by one of the caller's threads.
///
/// Each child is held by a pidfd the server passes back (opened before the server
/// can reap it, so never a recycled pid); the server reaps its children and reports
/// their exit statuses, even when the process that started it ignores `SIGCHLD`
/// (the server sets its own action back to the default, and gives each child
/// the starting process's action before its entry runs). The server dies with
/// the process that started it (parent-death signal) and ends when its handle
/// is dropped. A child leaves by `_exit` with its entry's code, or by an
/// `exit` in the entry with that status, and in neither case runs the exit
/// handlers of the process that made the server (as a
/// [`Process`](crate::Process)'s child does not; on glibc, whose `on_exit`
/// this needs).
///
/// A server that dies (killed from outside) is not started again: every later
/// spawn answers [`Error::ServerGone`]. Python starts its `forkserver` again
/// at the next start (bpo-31308), since it is a fresh interpreter; this one
/// is a fork of the process as it was when it started, which cannot be made
/// again once threads run ([`ForkServerBuilder::start`] refuses a process
/// with more than one thread). Children it started run on, re-parented;
/// [`ServerChild::join`] waits for such a child to end (through its pidfd)
/// and then answers `ServerGone`, as its exit status went with the server.
/// (Tried as a new user would with Python 3.11's `forkserver`: its `join`
/// returned at once with exit code 255 while the child still ran.)
///
/// # Examples
/// ```
/// use multiproc_proc::ForkServer;
///
/// fn square(args: &[u8]) -> i32 {
///     let n = args[0] as i32;
///     n * n
/// }
///
/// let server = ForkServer::builder().entry("square", square).start()?;
/// // ... start threads; then, from any of them:
/// let mut child = server.spawn("square", &[7])?;
/// assert_eq!(child.join()?, 49);
/// # Ok::<(), multiproc_proc::Error>(())
/// ```
pub struct ForkServer {
    conn: Mutex<Conn>,
    pid: u32,
    pidfd: OwnedFd,
}

struct Conn {
    sock: OwnedFd,
    /// Exit statuses reported for children not joined yet.
    exited: HashMap<u32, WaitStatus>,
    /// [`ForkServer::shut_down`] ran.
    shut: bool,
}

/// An entry as the server holds it: a function, or a closure made before the
/// server was forked (which it inherits, with everything it owns).
type BoxedEntry = Box<dyn Fn(&[u8]) -> i32>;

/// Builds a [`ForkServer`] with its entries.
#[derive(Default)]
pub struct ForkServerBuilder {
    entries: Vec<(String, BoxedEntry)>,
    allow_threads: bool,
}

impl ForkServerBuilder {
    /// Registers `entry` under `name`.
    ///
    /// # Examples
    /// ```
    /// fn echo(args: &[u8]) -> i32 { i32::from(args.first().copied().unwrap_or(0)) }
    /// let server = multiproc_proc::ForkServer::builder().entry("echo", echo).start()?;
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn entry(mut self, name: &str, entry: Entry) -> ForkServerBuilder {
        self.entries.push((name.to_owned(), Box::new(entry)));
        self
    }

    /// Registers a closure under `name`. The server is forked with it, so it
    /// may own anything made before [`start`](ForkServerBuilder::start) (a
    /// model loaded once, say); every child the entry starts inherits it.
    ///
    /// # Examples
    /// ```
    /// let table = vec![10, 20, 30];
    /// let server = multiproc_proc::ForkServer::builder()
    ///     .entry_fn("lookup", move |args| table[usize::from(args[0])])
    ///     .start()?;
    /// assert_eq!(server.spawn("lookup", &[2])?.join()?, 30);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn entry_fn(
        mut self,
        name: &str,
        entry: impl Fn(&[u8]) -> i32 + 'static,
    ) -> ForkServerBuilder {
        self.entries.push((name.to_owned(), Box::new(entry)));
        self
    }

    /// Lets [`start`](ForkServerBuilder::start) fork the server from a process
    /// that already runs other threads. The server then holds a copy of the
    /// memory those threads were using, and a lock one of them held at the
    /// fork stays held in it for good: the server itself takes none (glibc's
    /// allocator is made safe across `fork`), and an entry must not take one
    /// either (stdout's, or the program's own). Threads started after `start`
    /// are no concern: the server never sees them.
    ///
    /// # Examples
    /// ```
    /// fn one(_: &[u8]) -> i32 { 1 }
    /// std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(100)));
    /// let server = multiproc_proc::ForkServer::builder()
    ///     .entry("one", one)
    ///     .allow_threads()
    ///     .start()?;
    /// assert_eq!(server.spawn("one", b"")?.join()?, 1);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn allow_threads(mut self) -> ForkServerBuilder {
        self.allow_threads = true;
        self
    }

    /// Forks the server. As [`Process::start`](crate::Process::start), it
    /// flushes stdout and holds stdout's and stderr's locks across the fork,
    /// so that the server and its children can print whatever other threads
    /// were doing.
    ///
    /// # Errors
    /// [`Error::NotSingleThreaded`] if this process already has other threads
    /// (unless [`allow_threads`](ForkServerBuilder::allow_threads); counted in
    /// `/proc/self/task`, so where no `/proc` is mounted the check cannot
    /// see them);
    /// [`Error::Io`] if the socket or `fork` fails; [`Error::Unsupported`]
    /// where `pidfd_open` is refused.
    ///
    /// # Examples
    /// ```
    /// fn echo(args: &[u8]) -> i32 { i32::from(args.first().copied().unwrap_or(0)) }
    /// let server = multiproc_proc::ForkServer::builder().entry("echo", echo).start()?;
    /// assert!(server.pid() > 0);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn start(self) -> Result<ForkServer> {
        let threads = sys::thread_count();
        if threads > 1 && !self.allow_threads {
            return Err(Error::NotSingleThreaded { threads });
        }
        let (client, server) = sys::seqpacket_pair().map_err(Error::io("socketpair"))?;
        let parent = sys::getpid();
        let parent_name = crate::registry::lock().my_name();
        // Stdout flushed, and both streams held across the fork: with other
        // threads (allow_threads), one printing at the fork would leave them
        // taken for ever in the server and every process it forks (see
        // `StdStreams`).
        let streams = sys::hold_std_streams();
        // SAFETY: this process has one thread (checked above), or the caller
        // took on allow_threads' terms: the child runs only the server's code
        // and the entries; it never returns from serve().
        let pid = unsafe { sys::fork() }.map_err(Error::io("fork"))?;
        drop(streams);
        if pid == 0 {
            drop(client);
            if sys::set_parent_death_signal(libc::SIGKILL).is_err() || sys::getppid() != parent {
                sys::exit_now(1);
            }
            // Its children's `parent_process()` is the process that made
            // the server, as for Python's forkserver processes (and a pool's
            // workers, as for Python's): held by a pidfd opened while that
            // process is still this one's parent, which they inherit.
            let pidfd = sys::pidfd_open(parent as libc::pid_t)
                .ok()
                .filter(|_| sys::getppid() == parent);
            crate::registry::adopt_parent((parent, parent_name), pidfd);
            // Its children inherit it: an `exit` in an entry (a pool's
            // task) runs none of the maker's exit handlers.
            crate::registry::register_at_exit_in_server();
            serve(server, &self.entries);
        }
        drop(server);
        let pid = pid as u32;
        let pidfd = match sys::pidfd_open(pid as libc::pid_t) {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd the server cannot be watched: ended and
                // reaped now, not left to exit on its own as a zombie.
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::waitpid(pid, false);
                return Err(Error::io("pidfd_open")(e));
            }
        };
        Ok(ForkServer {
            conn: Mutex::new(Conn {
                sock: client,
                exited: HashMap::new(),
                shut: false,
            }),
            pid,
            pidfd,
        })
    }
}

impl ForkServer {
    /// A builder to register entries with.
    ///
    /// # Examples
    /// ```
    /// let server = multiproc_proc::ForkServer::builder().start()?; // no entries: every spawn is refused
    /// assert!(server.spawn("x", b"").is_err());
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn builder() -> ForkServerBuilder {
        ForkServerBuilder::default()
    }

    /// The server's pid.
    ///
    /// # Examples
    /// ```
    /// let server = multiproc_proc::ForkServer::builder().start()?;
    /// assert_ne!(server.pid(), std::process::id());
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Ends the server now rather than when it is dropped, and reaps it (as a
    /// drop does): for a holder that cannot drop it yet, or whose server may
    /// have died already (its parent-death signal fires when the thread that
    /// started it ends). Children it started keep running; they are
    /// re-parented, and reaped by init (or a subreaper). A spawn after it
    /// fails with [`Error::ServerGone`]. A second call does nothing.
    ///
    /// # Examples
    /// ```
    /// let server = multiproc_proc::ForkServer::builder().start()?;
    /// server.shut_down();
    /// assert!(server.spawn("x", b"").is_err());
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn shut_down(&self) {
        let mut conn = self.conn();
        if conn.shut {
            return;
        }
        conn.shut = true;
        // Closing our end tells the server to exit; then reap it.
        sys::shutdown(conn.sock.as_fd());
        drop(conn);
        if !sys::poll_readable(self.pidfd.as_fd(), Some(Duration::from_secs(1))).unwrap_or(false) {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        }
        let waited = sys::wait_pidfd(self.pidfd.as_fd(), false);
        // Its pidfd closed (EBADF) or its number reused by a file (EINVAL)
        // by other code in this process, against Rust's I/O safety: the
        // server, left unreaped, stayed a zombie (or ran on). By its pid
        // then, only while it is still this process's child to reap (a
        // `waitpid` that finds none names no other process).
        if waited.is_err_and(|e| matches!(e.raw_os_error(), Some(libc::EBADF | libc::EINVAL))) {
            if let Ok(None) = sys::waitpid(self.pid, true) {
                let _ = sys::kill(self.pid, libc::SIGKILL);
                let _ = sys::waitpid(self.pid, false);
            }
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Conn> {
        // The connection stays consistent across a panic (each message is whole).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the server to fork a child running `entry(args)`.
    ///
    /// # Errors
    /// [`Error::UnknownEntry`], [`Error::TooLarge`] past [`MAX_ARGS`] bytes,
    /// [`Error::TooManyOpenFiles`] when this process holds as many open
    /// files as `RLIMIT_NOFILE` allows (before the server is asked: a slot
    /// is kept free for the new child's pidfd, as [`Process::start`] keeps
    /// one), [`Error::ServerGone`] if the server died, or
    /// ([`Gone::DescriptorDropped`]) if another thread took that slot
    /// meanwhile and the pidfd could not be taken in: that child runs on
    /// unwatched.
    ///
    /// [`Process::start`]: crate::Process::start
    ///
    /// # Examples
    /// ```
    /// fn echo(args: &[u8]) -> i32 { i32::from(args.first().copied().unwrap_or(0)) }
    /// let server = multiproc_proc::ForkServer::builder().entry("echo", echo).start()?;
    /// assert_eq!(server.spawn("echo", &[5])?.join()?, 5);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn spawn(&self, entry: &str, args: &[u8]) -> Result<ServerChild<'_>> {
        let (pid, pidfd) = self.spawn_raw(entry, args)?;
        Ok(ServerChild {
            server: ServerRef::Borrowed(self),
            pid,
            pidfd,
            status: None,
        })
    }

    /// [`spawn`](ForkServer::spawn) for a server behind an `Arc`: the child's
    /// handle holds the server alive itself, so it may be kept anywhere.
    ///
    /// # Errors
    /// As for [`spawn`](ForkServer::spawn).
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// fn echo(args: &[u8]) -> i32 { i32::from(args[0]) }
    /// let server = Arc::new(multiproc_proc::ForkServer::builder().entry("echo", echo).start()?);
    /// let mut child = server.spawn_shared("echo", &[4])?;
    /// drop(server); // the child's handle keeps it
    /// assert_eq!(child.join()?, 4);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn spawn_shared(
        self: &Arc<Self>,
        entry: &str,
        args: &[u8],
    ) -> Result<ServerChild<'static>> {
        let (pid, pidfd) = self.spawn_raw(entry, args)?;
        Ok(ServerChild {
            server: ServerRef::Shared(Arc::clone(self)),
            pid,
            pidfd,
            status: None,
        })
    }

    /// Asks the server for a child; its pid and pidfd.
    fn spawn_raw(&self, entry: &str, args: &[u8]) -> Result<(u32, OwnedFd)> {
        if args.len() > MAX_ARGS {
            return Err(Error::TooLarge {
                len: args.len(),
                max: MAX_ARGS,
            });
        }
        let mut req = Vec::with_capacity(5 + entry.len() + args.len());
        req.push(SPAWN);
        req.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        req.extend_from_slice(entry.as_bytes());
        req.extend_from_slice(args);
        // A slot for the pidfd the server will send, under the limit of open
        // files: at the limit the spawn fails here, before the server forks
        // (a pidfd that finds no slot is dropped by the kernel on its way
        // in, and its child runs on, unwatched).
        let slot = crate::registry::Spare::open()?;
        let mut conn = self.conn();
        sys::send_msg(conn.sock.as_fd(), &req, None).map_err(gone)?;
        // Its number free for the pidfd (another thread may open a file
        // meanwhile: then `Gone::DescriptorDropped`).
        slot.give_up();
        loop {
            match conn.recv()? {
                Msg::Spawned(pid, pidfd) => return Ok((pid, pidfd)),
                Msg::Failed(e) => return Err(e),
                Msg::Exited => {} // recorded by recv
            }
        }
    }
}

/// The server a [`ServerChild`] reports through.
enum ServerRef<'a> {
    Borrowed(&'a ForkServer),
    Shared(Arc<ForkServer>),
}

impl std::ops::Deref for ServerRef<'_> {
    type Target = ForkServer;
    fn deref(&self) -> &ForkServer {
        match self {
            ServerRef::Borrowed(s) => s,
            ServerRef::Shared(s) => s,
        }
    }
}

fn gone(e: std::io::Error) -> Error {
    Error::ServerGone { why: Gone::Io(e) }
}

/// [`gone`], for a message received: one whose descriptor this process
/// could not take in (`EMFILE`, see `sys::recv_msg`) says so.
fn gone_receiving(e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EMFILE) {
        let limit = sys::open_files_limit();
        return Error::ServerGone {
            why: Gone::DescriptorDropped { limit },
        };
    }
    gone(e)
}

enum Msg {
    Spawned(u32, OwnedFd),
    /// The server's answer to a spawn that failed.
    Failed(Error),
    /// An exit report (recorded in `Conn::exited`).
    Exited,
}

impl Conn {
    /// Reads one message from the server; records exit reports.
    fn recv(&mut self) -> Result<Msg> {
        let mut buf = [0u8; 512];
        let (n, fd) = sys::recv_msg(self.sock.as_fd(), &mut buf).map_err(gone_receiving)?;
        let msg = &buf[..n];
        let int = |at: usize| {
            msg.get(at..at + 4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let failed = |op| {
            let errno = int(2).unwrap_or(0);
            let source = std::io::Error::from_raw_os_error(errno);
            Ok(Msg::Failed(match Error::io(op)(source) {
                // The server's call is refused as missing: said as such.
                e @ Error::Unsupported { .. } => e,
                // Any other failure (its own limit of open files included,
                // not this process's): the server's call failed.
                _ => Error::SpawnFailed {
                    op,
                    source: std::io::Error::from_raw_os_error(errno),
                },
            }))
        };
        match (msg.first(), int(1), int(5), fd) {
            (None, ..) => Err(Error::ServerGone { why: Gone::Closed }),
            (Some(&SPAWNED), Some(pid), _, Some(fd)) => Ok(Msg::Spawned(pid as u32, fd)),
            (Some(&FAILED), ..) => match (msg.get(1), msg.get(6..)) {
                (Some(&UNKNOWN), Some(name)) => Ok(Msg::Failed(Error::UnknownEntry {
                    name: String::from_utf8_lossy(name).into_owned(),
                })),
                (Some(&FORK_FAILED), _) => failed("fork"),
                (Some(&PIDFD_FAILED), _) => failed("pidfd_open"),
                // A request this side built cannot be malformed unless the
                // two sides differ: treat it as a server that cannot be used.
                _ => Err(Error::ServerGone {
                    why: Gone::Malformed { len: n },
                }),
            },
            (Some(&EXITED), Some(pid), Some(raw), _) => {
                let status = WaitStatus::from_raw(raw);
                self.exited.insert(pid as u32, status);
                Ok(Msg::Exited)
            }
            _ => Err(Error::ServerGone {
                why: Gone::Malformed { len: n },
            }),
        }
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("pid", &self.pid)
            .finish()
    }
}

/// A child started by a [`ForkServer`].
pub struct ServerChild<'a> {
    server: ServerRef<'a>,
    pid: u32,
    pidfd: OwnedFd,
    status: Option<WaitStatus>,
}

impl ServerChild<'_> {
    /// Its pid.
    ///
    /// # Examples
    /// ```
    /// fn echo(args: &[u8]) -> i32 { i32::from(args.first().copied().unwrap_or(0)) }
    /// let server = multiproc_proc::ForkServer::builder().entry("echo", echo).start()?;
    /// let mut child = server.spawn("echo", &[1])?;
    /// assert!(child.pid() > 0);
    /// child.join()?;
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pidfd: readable once it has ended.
    ///
    /// # Examples
    /// ```
    /// use std::os::fd::AsRawFd;
    /// fn echo(args: &[u8]) -> i32 { i32::from(args.first().copied().unwrap_or(0)) }
    /// let server = multiproc_proc::ForkServer::builder().entry("echo", echo).start()?;
    /// let mut child = server.spawn("echo", &[1])?;
    /// assert!(child.sentinel().as_raw_fd() >= 0);
    /// child.join()?;
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Waits for it to end; returns its exitcode (`-N` when killed by signal `N`).
    ///
    /// # Errors
    /// [`Error::ServerGone`] if the server died before reporting it.
    ///
    /// # Examples
    /// ```
    /// fn echo(args: &[u8]) -> i32 { i32::from(args.first().copied().unwrap_or(0)) }
    /// let server = multiproc_proc::ForkServer::builder().entry("echo", echo).start()?;
    /// assert_eq!(server.spawn("echo", &[2])?.join()?, 2);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn join(&mut self) -> Result<i32> {
        Ok(self.join_inner(None)?.expect("no timeout"))
    }

    /// [`join`](ServerChild::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it still runs, and as for [`join`](ServerChild::join).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// fn echo(args: &[u8]) -> i32 { i32::from(args.first().copied().unwrap_or(0)) }
    /// let server = multiproc_proc::ForkServer::builder().entry("echo", echo).start()?;
    /// assert_eq!(server.spawn("echo", &[2])?.join_timeout(Duration::from_secs(10))?, 2);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<i32> {
        self.join_inner(Some(timeout))?.ok_or(Error::Timeout)
    }

    fn join_inner(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        if let Some(s) = self.status {
            return Ok(Some(s.exitcode()));
        }
        if !sys::poll_readable(self.pidfd.as_fd(), timeout).map_err(Error::io("poll"))? {
            return Ok(None);
        }
        // It has ended: the server's report is on its way.
        let mut conn = self.server.conn();
        loop {
            if let Some(s) = conn.exited.remove(&self.pid) {
                self.status = Some(s);
                return Ok(Some(s.exitcode()));
            }
            conn.recv()?;
        }
    }

    /// Sends SIGTERM through the pidfd (nothing happens if it has ended).
    ///
    /// # Errors
    /// [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// fn nap(_: &[u8]) -> i32 { std::thread::sleep(std::time::Duration::from_secs(10)); 0 }
    /// let server = multiproc_proc::ForkServer::builder().entry("nap", nap).start()?;
    /// let mut child = server.spawn("nap", b"")?;
    /// child.terminate()?;
    /// assert_eq!(child.join()?, -15);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn terminate(&self) -> Result<()> {
        self.send(libc::SIGTERM)
    }

    /// Sends SIGKILL through the pidfd (nothing happens if it has ended).
    ///
    /// # Errors
    /// [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// fn nap(_: &[u8]) -> i32 { std::thread::sleep(std::time::Duration::from_secs(10)); 0 }
    /// let server = multiproc_proc::ForkServer::builder().entry("nap", nap).start()?;
    /// let mut child = server.spawn("nap", b"")?;
    /// child.kill()?;
    /// assert_eq!(child.join()?, -9);
    /// # Ok::<(), multiproc_proc::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.send(libc::SIGKILL)
    }

    fn send(&self, sig: i32) -> Result<()> {
        match sys::pidfd_send_signal(self.pidfd.as_fd(), sig) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r.map_err(Error::io("pidfd_send_signal")),
        }
    }
}

impl Drop for ServerChild<'_> {
    fn drop(&mut self) {
        // Forget a report that arrived for it; a later one is dropped by recv's map
        // only when someone joins it, which nobody will: keep the map small.
        self.server.conn().exited.remove(&self.pid);
    }
}

/// The server's loop: never returns.
fn serve(sock: OwnedFd, entries: &[(String, BoxedEntry)]) -> ! {
    // The server reaps its children itself, with their statuses: a process
    // that ignores SIGCHLD would have the kernel reap them and discard those
    // (every child then read as exit code 0). Each child gets the action
    // back before its entry runs.
    let sigchld = sys::default_sigchld();
    let mut children: Vec<(u32, OwnedFd)> = Vec::new();
    let mut buf = vec![0u8; 5 + 4096 + MAX_ARGS];
    loop {
        let ready = {
            let mut fds: Vec<BorrowedFd<'_>> = vec![sock.as_fd()];
            fds.extend(children.iter().map(|(_, fd)| fd.as_fd()));
            match sys::poll_many(&fds, -1) {
                Ok(r) => r,
                Err(_) => sys::exit_now(2),
            }
        };
        // Report children that ended. In reverse, so that swap_remove only moves
        // an element that was already looked at.
        for i in (0..children.len()).rev() {
            if ready[i + 1] {
                let (pid, fd) = children.swap_remove(i);
                let raw = sys::wait_pidfd(fd.as_fd(), false)
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                let mut msg = vec![EXITED];
                msg.extend_from_slice(&(pid as i32).to_le_bytes());
                msg.extend_from_slice(&raw.to_le_bytes());
                if sys::send_msg(sock.as_fd(), &msg, None).is_err() {
                    sys::exit_now(0); // the client is gone
                }
            }
        }
        if !ready[0] {
            continue;
        }
        let n = match sys::recv_msg(sock.as_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => sys::exit_now(0), // the client is gone
            Ok((n, _)) => n,
        };
        let req = &buf[..n];
        let parsed = (req.first() == Some(&SPAWN))
            .then(|| req.get(1..5))
            .flatten()
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .and_then(|len| Some((req.get(5..5 + len)?, req.get(5 + len..)?)));
        let Some((name, args)) = parsed else {
            let _ = sys::send_msg(sock.as_fd(), &failure(BAD_REQUEST, 0, b""), None);
            continue;
        };
        let Some(entry) = entries
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|(_, e)| e)
        else {
            let _ = sys::send_msg(sock.as_fd(), &failure(UNKNOWN, 0, name), None);
            continue;
        };
        // SAFETY: the server is single-threaded; the child runs the entry and _exits.
        match unsafe { sys::fork() } {
            Ok(0) => {
                drop(sock);
                if let Some(action) = &sigchld {
                    sys::restore_sigchld(action);
                }
                // The child exits right after: nothing a panic left half-done is
                // used again.
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(args)))
                    .unwrap_or(1);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().flush();
                sys::exit_now(code);
            }
            Ok(pid) => {
                let fd = match sys::pidfd_open(pid) {
                    Ok(fd) => fd,
                    Err(e) => {
                        let _ = sys::kill(pid as u32, libc::SIGKILL);
                        let _ = sys::waitpid(pid as u32, false);
                        let msg = failure(PIDFD_FAILED, e.raw_os_error().unwrap_or(0), b"");
                        let _ = sys::send_msg(sock.as_fd(), &msg, None);
                        continue;
                    }
                };
                let mut msg = vec![SPAWNED];
                msg.extend_from_slice(&pid.to_le_bytes());
                if sys::send_msg(sock.as_fd(), &msg, Some(fd.as_fd())).is_err() {
                    sys::exit_now(0);
                }
                children.push((pid as u32, fd));
            }
            Err(e) => {
                let msg = failure(FORK_FAILED, e.raw_os_error().unwrap_or(0), b"");
                let _ = sys::send_msg(sock.as_fd(), &msg, None);
            }
        }
    }
}

/// A FAILED message: its kind, the errno, and the entry name for UNKNOWN.
fn failure(kind: u8, errno: i32, name: &[u8]) -> Vec<u8> {
    let mut msg = vec![FAILED, kind];
    msg.extend_from_slice(&errno.to_le_bytes());
    msg.extend_from_slice(name);
    msg
}
