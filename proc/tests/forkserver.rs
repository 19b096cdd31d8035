//! The fork server starts children safely from a process with several running threads.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_proc::{Error, ForkServer};
use multiproc_testkit::{fork, ChildExit, Watchdog};

fn triple(args: &[u8]) -> i32 {
    i32::from(args.first().copied().unwrap_or(0)) * 3 % 256
}

fn crash(_: &[u8]) -> i32 {
    panic!("entry panicked on purpose")
}

/// Runs in a forked (so single-threaded) child: start the server first, then
/// threads that keep a lock busy, then 100 children through the server.
fn host() -> i32 {
    let server = ForkServer::builder()
        .entry("triple", triple)
        .entry("crash", crash)
        .start()
        .expect("start the fork server while single-threaded");
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, busy) = (stop.clone(), busy.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    *busy.lock().unwrap() += 1; // a lock a plain fork could copy held
                    let _ = Vec::<u8>::with_capacity(64); // and the allocator's
                }
            })
        })
        .collect();
    assert!(matches!(
        ForkServer::builder().start(),
        Err(Error::NotSingleThreaded { .. })
    ));
    let mut children: Vec<_> = (0..100u8)
        .map(|i| (i, server.spawn("triple", &[i]).unwrap()))
        .collect();
    for (i, child) in &mut children {
        assert_eq!(child.join().unwrap(), i32::from(*i) * 3 % 256, "child {i}");
    }
    assert!(
        matches!(server.spawn("nope", b""), Err(Error::UnknownEntry { name }) if name == "nope")
    );
    assert_eq!(server.spawn("crash", b"").unwrap().join().unwrap(), 1);
    let mut long = server.spawn("triple", &[1]).unwrap();
    long.join_timeout(Duration::from_secs(10)).unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    0
}

#[test]
fn a_multi_threaded_process_starts_100_children_through_the_fork_server() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "fork server");
    let h = fork(host);
    assert_eq!(h.wait(Duration::from_secs(100)), ChildExit::Exited(0));
}

/// Sleeps `args[0]` × 10 ms.
fn nap(args: &[u8]) -> i32 {
    std::thread::sleep(Duration::from_millis(u64::from(args[0]) * 10));
    0
}

/// Whether process `pid` has ended: gone, or a zombie (a fork server's
/// orphan waits for init, or a subreaper, to reap it).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
    })
}

/// Runs in a forked child: a server killed under its client is reported gone,
/// with the way it was found; a child it started is still joined, and one
/// still running when it died is waited for, then reported gone (its exit
/// status went with the server).
fn server_killed() -> i32 {
    let server = ForkServer::builder()
        .entry("triple", triple)
        .entry("nap", nap)
        .start()
        .expect("start the fork server");
    let mut child = server.spawn("triple", &[2]).unwrap();
    assert_eq!(child.join().unwrap(), 6);
    let mut napping = server.spawn("nap", &[100]).unwrap();
    assert!(!ended(napping.pid()));
    // SAFETY: kill(2) on the server's pid, which this process has not reaped.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(50));
    let answer = match server.spawn("triple", &[1]) {
        Err(Error::ServerGone { why }) => {
            assert!(!why.to_string().is_empty());
            0
        }
        Err(e) => panic!("expected ServerGone, got {e}"),
        Ok(_) => 1,
    };
    let orphan = napping.pid();
    assert!(!ended(orphan), "the server's death ended its child");
    match napping.join() {
        Err(Error::ServerGone { .. }) => {}
        other => panic!("a child of a dead server joined: {other:?}"),
    }
    assert!(ended(orphan), "join answered before the child ended");
    answer
}

#[test]
fn a_killed_fork_server_is_reported_gone() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "fork server killed");
    let h = fork(server_killed);
    assert_eq!(h.wait(Duration::from_secs(50)), ChildExit::Exited(0));
}

/// Runs in a forked child: `shut_down` ends and reaps the server while the
/// handle is still held (no zombie), a spawn after it is refused, and a
/// second call and the drop do nothing more.
fn shut_down_early() -> i32 {
    let server = ForkServer::builder()
        .entry("triple", triple)
        .start()
        .expect("start the fork server");
    assert_eq!(server.spawn("triple", &[3]).unwrap().join().unwrap(), 9);
    server.shut_down();
    assert!(
        multiproc_testkit::zombie_children().is_empty(),
        "the server is left a zombie"
    );
    // SAFETY: kill with signal 0 only checks that the process exists; the
    // server was reaped, so its pid names nothing (or a stranger, unlikely
    // this soon).
    assert_ne!(unsafe { libc::kill(server.pid() as i32, 0) }, 0);
    assert!(matches!(
        server.spawn("triple", &[1]),
        Err(Error::ServerGone { .. })
    ));
    server.shut_down();
    drop(server);
    0
}

#[test]
fn shut_down_reaps_the_server_while_its_handle_is_held() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "fork server shut down");
    let h = fork(shut_down_early);
    assert_eq!(h.wait(Duration::from_secs(50)), ChildExit::Exited(0));
}

/// How many children [`counted_triple`] ran in, across processes.
static SPAWNED: std::sync::OnceLock<&'static AtomicU32> = std::sync::OnceLock::new();

/// [`triple`], counted in [`SPAWNED`].
fn counted_triple(args: &[u8]) -> i32 {
    if let Some(n) = SPAWNED.get() {
        n.fetch_add(1, Ordering::SeqCst);
    }
    triple(args)
}

/// Runs in a forked child: at its limit of open files, a spawn fails saying
/// so (the limit, and how to raise it) before the server forks (the pidfd
/// it would send back could not be taken in: dropped by the kernel, its
/// child ran on unwatched); with one descriptor free a spawn needs no more;
/// and the server still shuts down and is reaped: no child of this process
/// is left.
fn out_of_descriptors() -> i32 {
    let shared = Box::leak(Box::new(
        multiproc_shm::Shared::anonymous(AtomicU32::new(0)).unwrap(),
    ));
    let spawned: &'static AtomicU32 = shared;
    SPAWNED.set(spawned).unwrap();
    let server = ForkServer::builder()
        .entry("triple", counted_triple)
        .start()
        .expect("start the fork server");
    assert_eq!(server.spawn("triple", &[1]).unwrap().join().unwrap(), 3);
    // Every descriptor the limit allows open, but one.
    multiproc_testkit::limit_open_files_to_those_open_and(1);
    let mut held = match server.spawn("triple", &[2]) {
        Ok(child) => child,
        Err(e) => {
            eprintln!("spawn with one descriptor free: {e}");
            return 13;
        }
    };
    if held.join().ok() != Some(6) {
        return 14;
    }
    // `held` keeps the last descriptor (its pidfd) until dropped.
    let answer = match server.spawn("triple", &[3]) {
        Err(e @ Error::TooManyOpenFiles { limit: Some(_), .. })
            if e.to_string().contains("ulimit -n") =>
        {
            0
        }
        Err(e) => {
            eprintln!("spawn at the limit of open files: {e}");
            10
        }
        Ok(_) => 11,
    };
    if spawned.load(Ordering::SeqCst) != 2 {
        eprintln!("children run: {}", spawned.load(Ordering::SeqCst));
        return 15;
    }
    drop(held);
    server.shut_down();
    drop(server);
    // The server was this process's one child: reaped by its shut-down.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if multiproc_testkit::no_child_left() {
            break;
        }
        if std::time::Instant::now() > deadline {
            return 12;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    answer
}

#[test]
fn a_spawn_at_the_limit_of_open_files_says_so() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "fork server out of descriptors");
    let h = fork(out_of_descriptors);
    assert_eq!(h.wait(Duration::from_secs(50)), ChildExit::Exited(0));
}

/// Exit code 0 when this process's `parent_process()` is the process whose
/// pid `args` holds, under the name "maker", and is alive.
fn parent_is(args: &[u8]) -> i32 {
    let want = u32::from_le_bytes(args.try_into().unwrap_or([0; 4]));
    match multiproc_proc::parent_process() {
        None => 1,
        Some(p) if p.pid() != want => 2,
        Some(p) if p.name() != "maker" => 3,
        Some(p) if !p.is_alive() => 4,
        Some(_) => 0,
    }
}

/// A fork server's child reads the process that made the server as its
/// parent, as Python's forkserver processes (and a pool's workers) do,
/// though the server is its parent in the system's sense.
#[test]
fn a_fork_servers_child_reads_the_servers_maker_as_its_parent() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "fork server's parent");
    multiproc_proc::set_current_process_name("maker");
    let server = ForkServer::builder()
        .entry("parent_is", parent_is)
        .allow_threads()
        .start()
        .unwrap();
    let me = std::process::id().to_le_bytes();
    let code = server.spawn("parent_is", &me).unwrap().join().unwrap();
    assert_eq!(
        code, 0,
        "1: none, 2: another pid, 3: another name, 4: not alive"
    );
}
