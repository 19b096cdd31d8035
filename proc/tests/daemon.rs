//! Daemonic children never outlive their parent: not when it exits normally, not
//! when it is SIGKILLed; a dropped handle does not end them. And a subreaper adopts
//! orphans.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_proc::{set_child_subreaper, wait_any, Process};
use multiproc_shm::Shared;
use multiproc_testkit::{fork, ChildExit, Watchdog};

const LIMIT: Duration = Duration::from_secs(30);

fn pidfd(pid: u32) -> OwnedFd {
    // SAFETY: pidfd_open takes plain integers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor nothing else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }
}

/// Whether the process behind `fd` ends within `timeout`.
fn ends_within(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) == 1 }
}

fn sleeper() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Dropping a daemon's handle leaves it running, at once (it used to terminate
/// it and block up to a second): it ends when its parent exits.
#[test]
fn a_daemon_outlives_its_dropped_handle_until_its_parent_exits() {
    let _dog = Watchdog::arm(LIMIT, "daemon drop");
    let daemon_pid = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let watched = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let dropped = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let parent = fork(|| {
        let mut d = Process::new(sleeper).daemon(true);
        d.start().unwrap();
        daemon_pid.store(d.pid().unwrap(), Ordering::SeqCst);
        while watched.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = std::time::Instant::now();
        drop(d);
        let took = t.elapsed();
        dropped.store(1, Ordering::SeqCst);
        while watched.load(Ordering::SeqCst) == 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Leaving runs the exit handlers, which terminate the daemon.
        std::process::exit(i32::from(took > Duration::from_millis(100)))
    });
    let t = std::time::Instant::now();
    while daemon_pid.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < LIMIT);
        std::thread::yield_now();
    }
    let daemon = pidfd(daemon_pid.load(Ordering::SeqCst));
    watched.store(1, Ordering::SeqCst);
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < LIMIT);
        std::thread::yield_now();
    }
    assert!(
        !ends_within(&daemon, Duration::from_millis(200)),
        "the daemon runs on after its handle dropped"
    );
    watched.store(2, Ordering::SeqCst);
    assert_eq!(
        parent.wait(LIMIT),
        ChildExit::Exited(0),
        "the drop did not block"
    );
    assert!(
        ends_within(&daemon, Duration::ZERO),
        "terminated when its parent exited"
    );
}

/// Forks a parent that starts a daemon, publishes its pid, waits until the test
/// holds a pidfd on the daemon (so it cannot be gone before), and then `end`s.
fn daemon_of_a_parent_that(end: fn()) -> (multiproc_testkit::Child, OwnedFd) {
    let daemon_pid = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let watched = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let parent = fork(|| {
        let mut d = Process::new(sleeper).daemon(true);
        d.start().unwrap();
        daemon_pid.store(d.pid().unwrap(), Ordering::SeqCst);
        std::mem::forget(d); // the handle must not be what ends it
        while watched.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        end();
        0
    });
    let t = std::time::Instant::now();
    while daemon_pid.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < LIMIT);
        std::thread::yield_now();
    }
    let fd = pidfd(daemon_pid.load(Ordering::SeqCst));
    watched.store(1, Ordering::SeqCst);
    (parent, fd)
}

#[test]
fn a_daemon_dies_with_a_parent_that_is_sigkilled() {
    let _dog = Watchdog::arm(LIMIT, "daemon parent killed");
    let (mut parent, daemon) = daemon_of_a_parent_that(sleeper);
    assert!(
        !ends_within(&daemon, Duration::from_millis(50)),
        "the daemon runs"
    );
    parent.signal(libc::SIGKILL);
    assert_eq!(
        parent.wait_timeout(LIMIT),
        Some(ChildExit::Signaled(libc::SIGKILL))
    );
    assert!(
        ends_within(&daemon, Duration::from_secs(10)),
        "the kernel killed the daemon"
    );
}

#[test]
fn a_daemon_is_terminated_when_its_parent_exits_normally() {
    let _dog = Watchdog::arm(LIMIT, "daemon parent exits");
    // std::process::exit runs the exit handlers, as returning from main does.
    let (parent, daemon) = daemon_of_a_parent_that(|| std::process::exit(0));
    assert_eq!(parent.wait(LIMIT), ChildExit::Exited(0));
    assert!(
        ends_within(&daemon, Duration::ZERO),
        "terminated before the parent left"
    );
}

/// A process forked otherwise than by `Process::start` (`fork`, a fork
/// server, a pool's workers, `pmap`'s) inherits the registry's list of
/// children. When it leaves by `exit`, the exit handlers run there too, and
/// must not terminate its parent's daemonic children: they are not its own.
#[test]
fn a_forked_copy_that_exits_leaves_its_parents_daemons_alone() {
    let _dog = Watchdog::arm(LIMIT, "forked copy exits");
    let mut d = Process::new(sleeper).daemon(true);
    d.start().unwrap();
    // One that leaves at once, and one that first starts a process of its
    // own (its list then holds its own child, and only that).
    let copy = fork(|| std::process::exit(0));
    assert_eq!(copy.wait(LIMIT), ChildExit::Exited(0));
    let copy = fork(|| {
        let mut own = Process::new(|| 5);
        own.start().unwrap();
        std::process::exit(own.join().unwrap())
    });
    assert_eq!(copy.wait(LIMIT), ChildExit::Exited(5));
    // A SIGTERM the copy sent would have fixed the daemon's end already (a
    // fatal signal's status is set when it is sent): a kill reads -9 only
    // if there was none.
    d.kill().unwrap();
    assert_eq!(
        d.join().unwrap(),
        -libc::SIGKILL,
        "-15: the copy terminated its parent's daemon"
    );
}

/// A copy forked while another thread held the registry's lock (a start
/// holds it across its fork) has that lock held by a thread it does not
/// have: its `exit` must not wait for it, nor its first look (it takes the
/// lock over). Fifty copies of each kind forked while a thread starts and
/// joins processes without a pause.
#[test]
fn a_copy_forked_while_another_thread_starts_processes_can_exit() {
    let _dog = Watchdog::arm(LIMIT, "copies exit");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let mut p = Process::new(|| ());
                p.start().unwrap();
                p.join().unwrap();
            }
        });
        for i in 0..100 {
            let mut copy = fork(move || {
                let looked = if i % 2 == 0 {
                    0
                } else {
                    let me = multiproc_proc::current_process();
                    i32::from(me.pid != multiproc_proc::getpid())
                        + 2 * i32::from(!multiproc_proc::active_children().is_empty())
                };
                // SAFETY: `exit` runs the at-exit handlers; the crate's
                // returns at once in a copy that never looked, and finds
                // no child of its own in one that did.
                unsafe { libc::exit(looked) }
            });
            let exit = copy.wait_timeout(Duration::from_secs(5));
            if exit != Some(ChildExit::Exited(0)) {
                // The thread stopped first, or the scope would wait for it.
                stop.store(true, Ordering::Relaxed);
                if exit.is_none() {
                    copy.kill(LIMIT);
                }
                panic!("copy {i}: {exit:?} (None: it hung at its look or in exit)");
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn a_subreaper_adopts_and_reaps_orphaned_grandchildren() {
    let _dog = Watchdog::arm(LIMIT, "subreaper");
    let supervisor = fork(|| {
        set_child_subreaper(true).unwrap();
        // A child that starts a grandchild and leaves at once, orphaning it.
        let grandchild = Shared::anonymous(AtomicU32::new(0)).unwrap();
        let mut middle = Process::new(|| {
            // SAFETY: single-threaded child; the grandchild sleeps briefly and _exits.
            match unsafe { multiproc_proc::fork() }.unwrap() {
                multiproc_proc::Fork::Child => {
                    std::thread::sleep(Duration::from_millis(100));
                    // SAFETY: _exit ends the grandchild at once.
                    unsafe { libc::_exit(7) }
                }
                multiproc_proc::Fork::Parent { child } => grandchild.store(child, Ordering::SeqCst),
            }
        });
        middle.start().unwrap();
        middle.join().unwrap();
        // The orphan is ours now: wait_any reaps it.
        let (pid, status) = wait_any().unwrap();
        i32::from(!(pid == grandchild.load(Ordering::SeqCst) && status.exit_code() == Some(7)))
    });
    assert_eq!(supervisor.wait(LIMIT), ChildExit::Exited(0));
}
