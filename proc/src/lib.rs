//! Fork-based process control for Linux: Python's `multiprocessing.Process`,
//! `os.fork`/`os.wait`, daemons, orphans and zombies, done with pidfds.
//!
//! | Python | here |
//! |---|---|
//! | `Process(target=f, name=n, daemon=d)` | [`Process::new(f)`](Process::new)`.named(n).daemon(d)` |
//! | `class P(Process): def run(self): ...`, `P(...)` | a type implementing [`Run`], [`Process::from_run`] |
//! | `p.start()`, `p.join(timeout)` | [`Process::start`], [`Process::join`], [`Process::join_timeout`] |
//! | `p.is_alive()`, `p.exitcode`, `p.pid`, `p.name` | [`Process::is_alive`], [`Process::exitcode`], [`Process::pid`], [`Process::name`] |
//! | `p.terminate()`, `p.kill()`, `p.sentinel`, `p.close()` | [`Process::terminate`], [`Process::kill`], [`Process::sentinel`] (a pidfd), [`Process::close`] |
//! | `os.fork()`, `os.wait()`, `os.waitpid(-1, os.WNOHANG)` | [`fork`], [`wait_any`] (and [`wait_any_timeout`]), [`try_wait_any`], with [`WaitStatus`] |
//! | `os.getpid()`, `os.getppid()` | [`getpid`], [`getppid`] |
//! | default names `Process-1`, `Process-1:2` (made in `Process-1`), `P-3` (a subclass) | the same: [`Process::name`], [`Run::name`] |
//! | `current_process()`, `parent_process()`, `active_children()`, `cpu_count()` | [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`] |
//! | `current_process().name = n` | [`set_current_process_name`] |
//! | start method `forkserver` | [`ForkServer`] |
//!
//! # What it needs
//! Linux 5.3 or later: every child (and a fork server's) is watched and
//! signalled through its pidfd, so that a reused pid is never mistaken for
//! it. Where `pidfd_open` is refused — an older kernel, a tool that does
//! not pass it on (valgrind 3.19), a seccomp profile — starting one answers
//! [`Error::Unsupported`], which names the call.
//!
//! # Standard input in a child
//! Python's child reads end of file from `sys.stdin` (its bootstrap opens
//! `os.devnull` for it; file descriptor 0 stays open). Here a child keeps
//! its parent's descriptor 0 and std's `stdin()` reads it, as after any
//! `fork`: Rust's `stdin()` cannot be pointed elsewhere without replacing
//! descriptor 0 for everything the child runs. So a child and its parent
//! that both read standard input share one stream (tried as a new user
//! would, with lines piped in: a child's `read_line` took lines the parent
//! then never saw), and the bytes std's `stdin()` had buffered in the
//! parent at the fork are read again by the child; and a child forked
//! while another thread of its parent waited in a read of `stdin()` finds
//! std's lock of it held for good (its first read never returns; stdout's
//! and stderr's locks are taken across the fork by [`Process::start`], but
//! a thread may hold stdin's as long as nothing is typed). Read standard
//! input in one process only; a child that must not read it can replace
//! descriptor 0 with `/dev/null` first thing (`dup2`), as Python's
//! effectively does.
//!
//! # Blocking, timeouts, not waiting
//! As in the other crates of the workspace, a blocking call `op()` waits as
//! long as it takes and `op_timeout(d)` waits at most `d`, answering
//! [`Error::Timeout`] when the process still runs: [`Process::join`] /
//! [`Process::join_timeout`], the same on [`ParentProcess`] and
//! [`ServerChild`]. Looking without waiting is [`Process::is_alive`] (or
//! [`Process::exitcode`]), as in Python.
//!
//! # Example: blocking and not
//! Two children joined one after the other run in parallel all the same; what
//! serialises them is joining each before starting the next.
//! ```
//! use std::time::{Duration, Instant};
//! use multiproc_proc::Process;
//!
//! let t = Instant::now();
//! let mut a = Process::new(|| std::thread::sleep(Duration::from_secs(1)));
//! let mut b = Process::new(|| std::thread::sleep(Duration::from_secs(1)));
//! a.start()?;
//! b.start()?;
//! a.join()?;
//! b.join()?;
//! // max(t1, t2), not t1 + t2 (with 0.9 s of room for a loaded machine)
//! assert!(t.elapsed() < Duration::from_millis(1900));
//! # Ok::<(), multiproc_proc::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod current;
mod error;
mod fork_lock;
mod forkserver;
mod process;
mod registry;
mod status;
mod sys;

pub use current::{
    active_children, cpu_count, current_process, fork, getpid, getppid, parent_process,
    reap_orphans, set_child_subreaper, set_current_process_name, try_wait_any, wait_any,
    wait_any_timeout, Fork, ParentProcess, ProcessInfo,
};
pub use error::{Discarded, Error, Gone, Result};
pub use forkserver::{Entry, ForkServer, ForkServerBuilder, ServerChild, MAX_ARGS};
pub use process::{Process, Run};
pub use status::{ChildResult, WaitStatus};
