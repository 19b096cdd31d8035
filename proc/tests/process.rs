//! Process control: exit codes, panics, signals, timeouts, misuse, isolation,
//! the tutorial's blocking examples, and reaping.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_proc::{
    active_children, current_process, fork, parent_process, try_wait_any, wait_any,
    wait_any_timeout, Discarded, Error, Fork, Process, Run,
};
use multiproc_shm::Shared;
use multiproc_testkit::{zombie_children, Watchdog};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn exit_codes_follow_python() {
    let _dog = Watchdog::arm(LIMIT, "exit codes");
    let mut ok = Process::new(|| ());
    let mut three = Process::new(|| 3);
    let mut err = Process::new(|| -> Result<(), String> { Err("boom".into()) });
    let mut panics = Process::new(|| -> i32 { panic!("child panicked on purpose") });
    for p in [&mut ok, &mut three, &mut err, &mut panics] {
        p.start().unwrap();
    }
    assert_eq!(ok.join().unwrap(), 0);
    assert_eq!(three.join().unwrap(), 3);
    assert_eq!(
        err.join().unwrap(),
        1,
        "an Err is Python's uncaught exception"
    );
    assert_eq!(
        panics.join().unwrap(),
        1,
        "a panic is Python's traceback and exitcode 1"
    );
}

#[test]
fn signals_give_negative_exit_codes() {
    let _dog = Watchdog::arm(LIMIT, "signals");
    // Daemonic, so that they die with the test if it fails first.
    let sleeper = || std::thread::sleep(Duration::from_secs(30));
    let mut k = Process::new(sleeper).daemon(true);
    let mut t = Process::new(sleeper).daemon(true);
    k.start().unwrap();
    t.start().unwrap();
    assert!(k.is_alive() && t.is_alive());
    assert_eq!(k.exitcode(), None);
    k.kill().unwrap();
    t.terminate().unwrap();
    assert_eq!(k.join().unwrap(), -9);
    assert_eq!(t.join().unwrap(), -15);
    assert!(!t.is_alive());
    assert_eq!(t.wait_status().unwrap().signal(), Some(libc::SIGTERM));
    t.terminate().unwrap(); // after it ended: nothing happens, no error
}

/// A real-time signal (outside the classic set that some wrappers decode into
/// an enum and reject) still gives its number as Python's negative exit code,
/// through a handle's pidfd and through `wait_any`.
#[test]
fn real_time_signals_give_negative_exit_codes() {
    let _dog = Watchdog::arm(LIMIT, "real-time signals");
    let sig = libc::SIGRTMIN() + 2;
    let mut p = Process::new(|| std::thread::sleep(Duration::from_secs(30))).daemon(true);
    p.start().unwrap();
    p.send(sig).unwrap();
    assert_eq!(p.join().unwrap(), -sig);
    assert_eq!(p.wait_status().unwrap().signal(), Some(sig));

    // SAFETY: the child only sleeps (a system call) until the signal ends it.
    match unsafe { fork() }.unwrap() {
        // SAFETY: prctl, getppid, _exit and pause are async-signal-safe; it
        // dies with the test if the test fails before its signal.
        Fork::Child => unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            loop {
                libc::pause();
            }
        },
        Fork::Parent { child: pid } => {
            // SAFETY: kill takes plain integers; pid is our unreaped child.
            assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
            let (reaped, status) = wait_any().unwrap();
            assert_eq!(reaped, pid);
            assert_eq!(status.exitcode(), -sig);
        }
    }
}

/// CPython's `test_many_processes`: a hundred processes that sleep 10 ms
/// all exit 0; a hundred terminated a millisecond after their start, most
/// of them before their own code runs, all end by `SIGTERM` (-15).
#[test]
fn a_hundred_processes_end_as_they_should_even_terminated_at_their_start() {
    let _dog = Watchdog::arm(LIMIT, "many processes");
    let nap = || std::thread::sleep(Duration::from_millis(10));
    let mut napping: Vec<_> = (0..100).map(|_| Process::new(nap)).collect();
    for p in &mut napping {
        p.start().unwrap();
    }
    for p in &mut napping {
        assert_eq!(p.join().unwrap(), 0, "{p:?}");
    }
    // Daemonic, so that none outlives a failed test.
    let sleep_some = || std::thread::sleep(Duration::from_secs(100));
    let mut sleepers: Vec<_> = (0..100)
        .map(|_| Process::new(sleep_some).daemon(true))
        .collect();
    for p in &mut sleepers {
        p.start().unwrap();
    }
    std::thread::sleep(Duration::from_millis(1));
    for p in &sleepers {
        p.terminate().unwrap();
    }
    for p in &mut sleepers {
        assert_eq!(p.join().unwrap(), -libc::SIGTERM, "{p:?}");
    }
    assert!(active_children().is_empty());
}

/// A child leaves once its closure returns, without waiting for threads it
/// started (as a Rust program's `main`; Python's child joins them: a
/// documented difference).
#[test]
fn a_child_leaves_without_waiting_for_its_threads() {
    let _dog = Watchdog::arm(LIMIT, "threads of a child");
    let mut p = Process::new(|| {
        std::thread::spawn(|| std::thread::sleep(Duration::from_secs(60)));
        4
    })
    .daemon(true);
    p.start().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), 4);
}

/// Python's child leaves by `os._exit` whatever ends it, `sys.exit` too:
/// the exit handlers its parent registered never run there (they would
/// remove the parent's files, close its connections, write C's buffers a
/// second time). A child that calls `std::process::exit` or C's `exit`
/// gives its status, runs none of them, and still joins its own children
/// as at its return.
#[test]
fn a_child_that_calls_exit_runs_none_of_its_parents_exit_handlers() {
    let _dog = Watchdog::arm(LIMIT, "exit in a child");
    let runs = multiproc_testkit::count_exit_handler_runs_elsewhere();
    let joined = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let joined = &joined;
    for (how, code) in [("std", 3), ("libc", 5)] {
        joined.store(0, Ordering::SeqCst);
        let mut p = Process::new(move || {
            let mut grandchild = Process::new(move || {
                std::thread::sleep(Duration::from_millis(200));
                joined.store(1, Ordering::SeqCst);
            });
            grandchild.start().unwrap();
            if how == "std" {
                std::process::exit(code)
            }
            // SAFETY: C's exit, as C code in the child would call it.
            unsafe { libc::exit(code) }
        });
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), code, "{how}");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "{how}: a handler ran in the child"
        );
        assert_eq!(
            joined.load(Ordering::SeqCst),
            1,
            "{how}: left before its child"
        );
    }
}

#[test]
fn join_timeout_on_a_sleeping_child() {
    let _dog = Watchdog::arm(LIMIT, "join_timeout");
    let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(300)));
    p.start().unwrap();
    let t = Instant::now();
    assert!(matches!(
        p.join_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(p.is_alive());
    assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap(), 0);
    // A timeout too large for the clock ("for ever") waits as `join` does (it
    // panicked on the `Instant` it overflowed).
    let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(30)));
    p.start().unwrap();
    assert_eq!(p.join_timeout(Duration::MAX).unwrap(), 0);
}

/// The tutorial: joining each child before starting the next serialises them
/// (t1 + t2); starting both, then joining, runs them together (max(t1, t2)).
#[test]
fn joined_one_after_the_other_is_serial_started_together_is_parallel() {
    let _dog = Watchdog::arm(LIMIT, "blocking shapes");
    let nap = || std::thread::sleep(Duration::from_millis(400));
    let t = Instant::now();
    let mut a = Process::new(nap);
    a.start().unwrap();
    a.join().unwrap();
    let mut b = Process::new(nap);
    b.start().unwrap();
    b.join().unwrap();
    let serial = t.elapsed();

    let t = Instant::now();
    let mut a = Process::new(nap);
    let mut b = Process::new(nap);
    a.start().unwrap();
    b.start().unwrap();
    a.join().unwrap();
    b.join().unwrap();
    let parallel = t.elapsed();
    // Naps of 400 ms: serial is at least 800, parallel is 400 and what the
    // machine adds (a loaded one adds tens of ms; the bound leaves 350).
    assert!(
        serial >= Duration::from_millis(800),
        "serial took {serial:?}"
    );
    assert!(
        parallel < Duration::from_millis(750),
        "parallel took {parallel:?}"
    );
}

static GLOBAL: AtomicU32 = AtomicU32::new(1);

#[test]
fn memory_is_isolated() {
    let _dog = Watchdog::arm(LIMIT, "isolation");
    let mut local = vec![1, 2, 3];
    let mut p = Process::new(|| {
        GLOBAL.store(99, Ordering::SeqCst);
        local.push(4);
        i32::from(GLOBAL.load(Ordering::SeqCst) != 99 || local.len() != 4)
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0, "the child saw its own changes");
    drop(p);
    assert_eq!(
        GLOBAL.load(Ordering::SeqCst),
        1,
        "the parent's global is unchanged"
    );
    assert_eq!(local, [1, 2, 3]);
}

#[test]
fn misuse_gives_typed_errors() {
    let _dog = Watchdog::arm(LIMIT, "misuse");
    let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(200)));
    assert!(matches!(p.join(), Err(Error::NotStarted { .. })));
    assert!(matches!(p.terminate(), Err(Error::NotStarted { .. })));
    assert!(matches!(p.sentinel(), Err(Error::NotStarted { .. })));
    // A number no signal has is refused in every state, not only while the
    // kernel would see it (after the end it was taken as a no-op).
    let invalid = |p: &Process| {
        for bad in [-1, libc::SIGRTMAX() + 1, 9999, i32::MIN] {
            assert!(
                matches!(p.send(bad), Err(Error::InvalidSignal { signal, .. }) if signal == bad),
                "{bad}"
            );
        }
    };
    invalid(&p);
    p.start().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted { .. })));
    assert!(matches!(p.close(), Err(Error::StillRunning { .. })));
    // Made daemonic once started (Python: "process has already started"):
    // nothing changes, and the handle says so.
    let p = p.daemon(true);
    assert!(!p.is_daemon());
    // Renamed once started (Python's `p.name = ...`): the parent's lists
    // say so.
    let mut p = p.named("renamed");
    assert!(active_children()
        .iter()
        .any(|c| Some(c.pid) == p.pid() && c.name == "renamed"));
    invalid(&p);
    p.send(0).unwrap(); // only a check
    p.join().unwrap();
    invalid(&p);
    p.send(0).unwrap();
    p.close().unwrap();
    assert!(matches!(p.join(), Err(Error::Closed { .. })));
    assert!(matches!(p.start(), Err(Error::Closed { .. })));
}

#[test]
fn names_and_identities() {
    let _dog = Watchdog::arm(LIMIT, "names");
    let me = std::process::id();
    assert_eq!(current_process().name, "MainProcess");
    assert!(parent_process().is_none());
    let mut p = Process::new(move || {
        let cur = current_process();
        let parent = parent_process().expect("a started child knows its parent");
        i32::from(!(cur.name == "worker" && parent.pid() == me && parent.name() == "MainProcess"))
    })
    .named("worker");
    assert_eq!(p.name(), "worker");
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    let q = Process::new(|| ());
    assert!(q.name().starts_with("Process-"));
}

/// Default names count up, as Python's `Process-N` do, and read the same in
/// the parent, in the child (`current_process`), in `active_children` and in
/// a grandchild (`parent_process`), as does a given name: the registry keeps
/// a default name as its number until it is read.
#[test]
fn names_read_the_same_in_the_parent_the_child_the_registry_and_a_grandchild() {
    let _dog = Watchdog::arm(LIMIT, "names everywhere");
    let first = Process::new(|| ());
    let n: u32 = first
        .name()
        .strip_prefix("Process-")
        .and_then(|n| n.parse().ok())
        .expect("a default name is Process-N");
    let expected = format!("Process-{}", n + 1);
    for given in [None, Some("loader")] {
        let want = given.map_or(expected.clone(), str::to_owned);
        let (mine, theirs) = (want.clone(), want.clone());
        let go = Shared::anonymous(AtomicU32::new(0)).unwrap();
        let go = &go;
        let mut p = Process::new(move || {
            // (Not daemonic: it makes a process. It gives up if the test
            // failed before its word.)
            let start = Instant::now();
            while go.load(Ordering::Acquire) == 0 {
                if start.elapsed() > LIMIT {
                    return 12;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut grandchild = Process::new(move || {
                i32::from(parent_process().map(|p| p.name().to_owned()) != Some(theirs))
            });
            grandchild.start().unwrap();
            match (current_process().name == mine, grandchild.join().unwrap()) {
                (true, 0) => 0,
                (false, _) => 10,
                (true, _) => 11,
            }
        });
        if let Some(name) = given {
            p = p.named(name);
        }
        assert_eq!(p.name(), want);
        p.start().unwrap();
        let listed: Vec<_> = active_children()
            .into_iter()
            .filter(|c| Some(c.pid) == p.pid())
            .map(|c| c.name)
            .collect();
        go.store(1, Ordering::Release);
        assert_eq!(p.join().unwrap(), 0, "{want}");
        assert_eq!(listed, std::slice::from_ref(&want));
        assert!(format!("{p:?}").contains(&format!("{want:?}")), "{p:?}");
    }
}

/// Python numbers the processes a child makes after the child's own number
/// (its `_identity`), from 1 in each process: the first made in `Process-N`
/// is `Process-N:1`, the first made there `Process-N:1:1`, and a named
/// process's children take its number, not its name.
#[test]
fn processes_made_in_a_child_are_numbered_under_it_as_python_does() {
    let _dog = Watchdog::arm(LIMIT, "nested names");
    fn made_here(want: &[&str]) -> i32 {
        let names: Vec<String> = want
            .iter()
            .map(|_| Process::new(|| ()).name().to_owned())
            .collect();
        i32::from(names != want)
    }
    let n: u32 = Process::new(|| ())
        .name()
        .strip_prefix("Process-")
        .and_then(|n| n.parse().ok())
        .expect("a default name is Process-N");
    let (a, b) = (format!("Process-{}", n + 1), format!("Process-{}", n + 2));
    let (a1, a2, a11) = (format!("{a}:1"), format!("{a}:2"), format!("{a}:1:1"));
    let (a1c, a11c) = (a1.clone(), a11.clone());
    let mut first = Process::new(move || {
        let mut grandchild = Process::new(move || {
            if current_process().name != a1c {
                return 3;
            }
            made_here(&[&a11c])
        });
        if grandchild.name() != a1 || grandchild.start().is_err() {
            return 2;
        }
        match grandchild.join() {
            Ok(0) => 10 * made_here(&[&a2]),
            Ok(code) => 20 + code,
            Err(_) => 30,
        }
    });
    assert_eq!(first.name(), a);
    let b1 = format!("{b}:1");
    let mut named = Process::new(move || made_here(&[&b1])).named("loader");
    first.start().unwrap();
    named.start().unwrap();
    assert_eq!(
        first.join().unwrap(),
        0,
        "2: the grandchild misnamed, 3: as it reads itself, 21: its own children, 10: the second"
    );
    assert_eq!(named.join().unwrap(), 0, "a named process's children");
    // The parent's own count went on from where it was.
    assert_eq!(Process::new(|| ()).name(), format!("Process-{}", n + 3));
}

/// Python names a subclass's process after the class (`Chat-1`): a process
/// made from a `Run` value without a name of its own takes its type's name,
/// without path or parameters, and reads it so in the child.
#[test]
fn a_process_made_from_a_type_is_named_after_it() {
    let _dog = Watchdog::arm(LIMIT, "type names");
    struct Chat(String);
    impl Run for Chat {
        type Output = i32;
        fn run(self) -> i32 {
            i32::from(current_process().name != self.0)
        }
    }
    struct Wrapper<T>(T);
    impl<T> Run for Wrapper<T> {
        type Output = ();
        fn run(self) {}
    }
    let n: u32 = Process::new(|| ())
        .name()
        .strip_prefix("Process-")
        .and_then(|n| n.parse().ok())
        .expect("a default name is Process-N");
    let want = format!("Chat-{}", n + 1);
    let mut chat = Process::from_run(Chat(want.clone()));
    assert_eq!(chat.name(), want);
    chat.start().unwrap();
    assert_eq!(chat.join().unwrap(), 0, "the child reads another name");
    assert_eq!(
        Process::from_run(Wrapper(vec![1u8])).name(),
        format!("Wrapper-{}", n + 2)
    );
}

/// The registry's lock under contention: threads listing eight children
/// (a look at each, under the lock) and threads making processes, as fast
/// as they can; a sleeper whose wake-up was lost would hang here (the
/// watchdog's limit).
#[test]
fn the_registry_lock_hands_over_between_threads_that_wait_on_it() {
    let _dog = Watchdog::arm(LIMIT, "registry lock contention");
    let go = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let go = &go;
    let mut children: Vec<Process> = (0..8)
        .map(|_| {
            // Daemonic: they die with this process if it hangs and the
            // watchdog ends it.
            let mut p = Process::new(move || {
                while go.load(Ordering::Acquire) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .daemon(true);
            p.start().unwrap();
            p
        })
        .collect();
    let first = Process::new(|| ()).name().to_owned();
    let n: u32 = first["Process-".len()..].parse().unwrap();
    std::thread::scope(|s| {
        for t in 0..6 {
            s.spawn(move || {
                for _ in 0..2_000 {
                    if t % 2 == 0 {
                        assert_eq!(active_children().len(), 8);
                    } else {
                        drop(Process::new(|| ()));
                    }
                }
            });
        }
    });
    go.store(1, Ordering::Release);
    for p in &mut children {
        assert_eq!(p.join().unwrap(), 0);
    }
    // Every number given once.
    assert_eq!(
        Process::new(|| ()).name(),
        format!("Process-{}", n + 3 * 2_000 + 1)
    );
}

/// A thread that takes `take()`'s guard, holds it 100 ms (long enough for
/// a start meanwhile to be waiting for it), runs `then` and lets go;
/// returned once the guard is taken.
fn holding<G, T: Send + 'static>(
    take: impl FnOnce() -> G + Send + 'static,
    then: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let guard = take();
        held_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let done = then();
        drop(guard);
        done
    });
    held_rx.recv().unwrap();
    holder
}

/// A fork copies a lock, not the thread that holds it: a child started
/// while another thread held stderr's lock (mid-`eprintln!`) found it held
/// for ever, and hung at its first `eprintln!`. `start` now waits for the
/// standard streams and holds them across its fork.
#[test]
fn a_child_started_while_another_thread_prints_can_print() {
    let _dog = Watchdog::arm(LIMIT, "print after fork");
    let holder = holding(|| std::io::stderr().lock(), || ());
    // Daemonic: it dies with this process if it hangs and the watchdog
    // ends the test.
    let mut p = Process::new(|| {
        eprintln!("a child's line");
        println!("and another");
    })
    .daemon(true);
    p.start().unwrap();
    holder.join().unwrap();
    let code = p.join_timeout(Duration::from_secs(10));
    if matches!(code, Err(Error::Timeout)) {
        p.kill().unwrap();
        let _ = p.join();
    }
    assert_eq!(
        code.ok(),
        Some(0),
        "the child hung on a stream held at its fork"
    );
}

/// `start` takes the streams' locks before the registry's: a thread that
/// holds stdout's lock and makes a `Process` meanwhile (which takes the
/// registry's) must not wait on a start that waits on it.
#[test]
fn a_start_beside_a_thread_that_holds_stdout_and_makes_a_process_ends() {
    let _dog = Watchdog::arm(LIMIT, "streams then registry");
    let holder = holding(
        || std::io::stdout().lock(),
        || Process::new(|| ()).name().to_owned(),
    );
    let mut p = Process::new(|| ()).daemon(true);
    p.start().unwrap();
    assert!(holder.join().unwrap().starts_with("Process-"));
    assert_eq!(p.join().unwrap(), 0);
}

/// The registry keeps its first children beside its lock and the rest on the
/// heap: with more than that running, every one is listed under its name,
/// a child started then inherits none of them (nor terminates them, all
/// daemonic, as it exits), dropped handles are reaped, and joins in any
/// order leave nothing listed.
#[test]
fn more_children_than_the_registry_keeps_inline_are_listed_and_forgotten() {
    let _dog = Watchdog::arm(LIMIT, "many children");
    let go = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let go = &go;
    // Released however the test ends, so that a failed assertion does not
    // leave twenty children waiting.
    struct Release<'a>(&'a AtomicU32);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(1, Ordering::Release);
        }
    }
    let release = Release(go);
    let mut running: Vec<Process> = (0..20)
        .map(|i| {
            let mut p = Process::new(move || {
                while go.load(Ordering::Acquire) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                i
            })
            .named(format!("sibling-{i}"))
            // Daemonic, so that they die with this process if the watchdog
            // ends it; a child that took its parent's children for its own
            // would terminate them when it exits.
            .daemon(true);
            p.start().unwrap();
            p
        })
        .collect();
    let mut last = Process::new(|| {
        let me = current_process();
        i32::from(!active_children().is_empty()) + 2 * i32::from(me.name != "last")
    })
    .named("last");
    last.start().unwrap();
    // (The last may have ended already, and an ended child is not active.)
    let listed = active_children();
    for p in &running {
        let named: Vec<_> = listed.iter().filter(|c| Some(c.pid) == p.pid()).collect();
        assert_eq!(named.len(), 1, "{p:?} in {listed:?}");
        assert_eq!(named[0].name, p.name());
    }
    assert_eq!(
        last.join().unwrap(),
        0,
        "1: the child listed its parent's children, 2: a wrong name"
    );
    // Three handles dropped while their children run (the registry reaps
    // them), the others joined from the last.
    let dropped: Vec<u32> = running.drain(3..6).map(|p| p.pid().unwrap()).collect();
    drop(release);
    while let Some(mut p) = running.pop() {
        let code = p.join().unwrap();
        assert_eq!(p.name(), format!("sibling-{code}"));
    }
    while !active_children().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(zombie_children().is_empty(), "dropped {dropped:?}");
}

#[test]
fn a_daemon_may_not_have_children() {
    let _dog = Watchdog::arm(LIMIT, "daemon children");
    let mut d = Process::new(|| {
        let mut grandchild = Process::new(|| ());
        match grandchild.start() {
            Err(Error::DaemonChildren) => 0,
            _ => 1,
        }
    })
    .daemon(true);
    d.start().unwrap();
    assert_eq!(d.join().unwrap(), 0);
}

#[test]
fn os_wait_reports_the_raw_status_of_an_exception() {
    let _dog = Watchdog::arm(LIMIT, "wait_any");
    // SAFETY: the child only calls _exit.
    match unsafe { fork() }.unwrap() {
        // SAFETY: _exit ends the child at once.
        Fork::Child => unsafe { libc::_exit(1) },
        Fork::Parent { child } => {
            let (pid, status) = wait_any().unwrap();
            assert_eq!(pid, child);
            assert_eq!(
                status.raw(),
                256,
                "Python's os.wait shows 256 for a child that raised"
            );
        }
    }
}

#[test]
fn the_sentinel_becomes_readable_when_the_child_ends() {
    let _dog = Watchdog::arm(LIMIT, "sentinel");
    let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(50)));
    p.start().unwrap();
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&p.sentinel().unwrap()),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0, "still running");
    assert_eq!(
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 10_000) },
        1,
        "readable once it ends"
    );
    assert_eq!(p.join().unwrap(), 0);
}

#[test]
fn dropped_handles_leave_no_zombies() {
    let _dog = Watchdog::arm(LIMIT, "zombies");
    // Dropped after it ended: reaped by the drop.
    let mut quick = Process::new(|| ());
    quick.start().unwrap();
    let quick_fd = quick.sentinel().unwrap().try_clone_to_owned().unwrap();
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&quick_fd),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 10_000) };
    drop(quick);
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());

    // Dropped while running: reaped once it ends, at the next active_children().
    let mut slow = Process::new(|| std::thread::sleep(Duration::from_millis(100)));
    slow.start().unwrap();
    let pid = slow.pid().unwrap();
    drop(slow);
    assert!(active_children().iter().any(|c| c.pid == pid));
    let t = Instant::now();
    while !active_children().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
}

#[test]
fn a_child_joins_its_own_children_before_it_exits() {
    let _dog = Watchdog::arm(LIMIT, "child cleanup");
    let done = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut p = Process::new(|| {
        let mut g = Process::new(|| {
            std::thread::sleep(Duration::from_millis(100));
            done.store(1, Ordering::SeqCst);
        });
        g.start().unwrap();
        drop(g); // not joined: the child's exit waits for it, as Python's does
    });
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

/// Python's `parent_process()`: a child sees whether its parent still runs and
/// can wait for it to end — here a grandchild whose parent leaves first.
#[test]
fn a_child_sees_its_parent_end_and_can_wait_for_it() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let _dog = multiproc_testkit::Watchdog::arm(Duration::from_secs(30), "parent_process");
    let seen = multiproc_shm::Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut middle = Process::new(|| {
        let mut grandchild = Process::new(|| {
            let parent = parent_process().expect("started by Process");
            if !parent.is_alive()
                || !matches!(
                    parent.join_timeout(Duration::from_millis(20)),
                    Err(multiproc_proc::Error::Timeout)
                )
            {
                return 1; // its parent waits for the signal below
            }
            seen.store(1, Ordering::SeqCst);
            // The parent leaves now; wait for it, then see it gone.
            if parent.join_timeout(Duration::from_secs(10)).is_err() {
                return 2;
            }
            seen.store(if parent.is_alive() { 3 } else { 4 }, Ordering::SeqCst);
            0
        });
        grandchild.start().unwrap();
        // (It gives up, and so does its child, if the child never looks.)
        let start = std::time::Instant::now();
        while seen.load(Ordering::SeqCst) == 0 {
            if start.elapsed() > Duration::from_secs(10) {
                grandchild.kill().unwrap();
                return 2;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Leave without joining it (exit handlers would wait for it).
        // SAFETY: _exit ends this process at once.
        unsafe { libc::_exit(0) }
    });
    middle.start().unwrap();
    assert_eq!(middle.join().unwrap(), 0);
    multiproc_testkit::wait_until(
        Duration::from_secs(10),
        "the grandchild never saw its parent end",
        || seen.load(Ordering::SeqCst) >= 3,
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        4,
        "is_alive after the parent ended"
    );
}

/// A child that first asks for its parent after the parent has ended (its
/// pidfd is opened at that first call, not at the fork) sees it gone, under
/// the pid it had, and does not wait for it.
#[test]
fn a_child_that_first_asks_after_its_parent_ended_sees_it_gone() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let _dog = multiproc_testkit::Watchdog::arm(Duration::from_secs(30), "parent gone");
    let seen = multiproc_shm::Shared::anonymous(AtomicU32::new(0)).unwrap();
    let mut middle = Process::new(|| {
        let middle_pid = std::process::id();
        let mut grandchild = Process::new(|| {
            // Wait until the parent has ended (this process is given another).
            let start = std::time::Instant::now();
            while multiproc_proc::getppid() == middle_pid {
                if start.elapsed() > Duration::from_secs(10) {
                    return 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let parent = parent_process().expect("started by Process");
            let quick = std::time::Instant::now();
            let code = if parent.pid() != middle_pid {
                2
            } else if parent.is_alive() {
                3
            } else if parent.join().is_err() || quick.elapsed() > Duration::from_secs(5) {
                4
            } else {
                5
            };
            seen.store(code, Ordering::SeqCst);
            0
        });
        grandchild.start().unwrap();
        // Leave at once, without joining it (exit handlers would wait for it).
        // SAFETY: _exit ends this process at once.
        unsafe { libc::_exit(0) }
    });
    middle.start().unwrap();
    assert_eq!(middle.join().unwrap(), 0);
    multiproc_testkit::wait_until(
        Duration::from_secs(20),
        "the grandchild never answered",
        || seen.load(Ordering::SeqCst) != 0,
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        5,
        "1: parent never ended, 2: wrong pid, 3: seen alive, 4: join waited"
    );
}

/// Python's common worker, `while True: ...`, without a type annotation: the
/// closure's type is `!`.
#[test]
fn a_worker_that_loops_for_ever_needs_no_annotation() {
    let _dog = Watchdog::arm(LIMIT, "a loop for ever");
    // Daemonic, so that it dies with the test if the test fails first.
    let mut p = Process::new(|| loop {
        std::thread::sleep(Duration::from_millis(10));
    })
    .daemon(true);
    p.start().unwrap();
    assert!(p.is_alive());
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), -libc::SIGTERM);
}

/// A process that ignores `SIGCHLD` (many daemons do): the kernel reaps its
/// children and discards their statuses. `join` answers
/// `Error::StatusDiscarded`, naming the cause and the fix, every time it is
/// asked, and `is_alive` answers `false` (it answered `Io { op: "waitid" }`,
/// "No child processes"; Python's `Process` answers `exitcode` `None` and
/// `is_alive` `True` for ever). A fork server started from such a process
/// still reaps its own children with their statuses (it read every one as
/// exit code 0), and its children get `SIGCHLD`'s action back. Every start
/// succeeds, however soon the child ends.
#[test]
fn a_process_that_ignores_sigchld_is_told_why_no_status_is_left() {
    let _dog = Watchdog::arm(LIMIT, "SIGCHLD ignored");
    let child = multiproc_testkit::fork(|| {
        // SAFETY: setting a signal's action to SIG_IGN, in this child only.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        let mut p = Process::new(|| 7);
        p.start().unwrap();
        let pid = p.pid().unwrap();
        for _ in 0..2 {
            match p.join() {
                Err(
                    e @ Error::StatusDiscarded {
                        pid: named,
                        why: Discarded::SigchldIgnored,
                    },
                ) => {
                    assert_eq!(named, pid);
                    assert!(e.to_string().contains("SIGCHLD"), "{e}");
                }
                other => panic!("expected StatusDiscarded, got {other:?}"),
            }
        }
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), None);
        // A child that ends at once is reaped by the kernel as it ends: its
        // pid could not be opened after (start failed with pidfd_open's
        // ESRCH, 4 times in 2 000 here); it now waits for its parent to hold
        // its pidfd.
        for _ in 0..2000 {
            let mut p = Process::new(|| 0);
            p.start().unwrap();
            assert!(matches!(p.join(), Err(Error::StatusDiscarded { .. })));
        }
        fn die(_: &[u8]) -> i32 {
            // SAFETY: raising a signal at ourselves.
            unsafe { libc::raise(libc::SIGKILL) };
            0
        }
        fn sigchld_ignored(_: &[u8]) -> i32 {
            // SAFETY: a sigaction is plain data; all zeros is a valid one.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: a null new action only reads the current one into `old`.
            unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) };
            i32::from(old.sa_sigaction == libc::SIG_IGN)
        }
        let server = multiproc_proc::ForkServer::builder()
            .entry("die", die)
            .entry("ignored", sigchld_ignored)
            .start()
            .unwrap();
        assert_eq!(server.spawn("die", b"").unwrap().join().unwrap(), -9);
        assert_eq!(server.spawn("ignored", b"").unwrap().join().unwrap(), 1);
        0
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
    assert!(zombie_children().is_empty());
}

/// `wait_any`'s forms that do not wait for ever: `try_wait_any` (Python's
/// `os.waitpid(-1, os.WNOHANG)`) answers `None` while every child runs,
/// `wait_any_timeout` answers `Timeout`, then the child once it ends; with
/// no child at all, both answer `ECHILD` at once.
#[test]
fn wait_any_has_a_form_that_does_not_wait_and_one_with_a_timeout() {
    let _dog = Watchdog::arm(LIMIT, "wait_any_timeout");
    let no_child = |r: Result<(), Error>| matches!(r, Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ECHILD));
    assert!(no_child(try_wait_any().map(|_| ())));
    assert!(no_child(wait_any_timeout(LIMIT).map(|_| ())));
    // SAFETY: the child only sleeps and exits (system calls).
    match unsafe { fork() }.unwrap() {
        Fork::Child => {
            // SAFETY: usleep and _exit are async-signal-safe.
            unsafe {
                libc::usleep(300_000);
                libc::_exit(4)
            }
        }
        Fork::Parent { child: pid } => {
            assert!(try_wait_any().unwrap().is_none());
            assert!(matches!(
                wait_any_timeout(Duration::from_millis(20)),
                Err(Error::Timeout)
            ));
            let (reaped, status) = wait_any_timeout(LIMIT).unwrap();
            assert_eq!((reaped, status.exit_code()), (pid, Some(4)));
        }
    }
    // A wait for any child takes a `Process`'s child too: its `join` then
    // says who took the status (it answered `Io { op: "waitid" }`).
    let mut p = Process::new(|| 5);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    assert_eq!(wait_any().unwrap().0, pid);
    match p.join() {
        Err(
            e @ Error::StatusDiscarded {
                why: Discarded::ReapedElsewhere,
                ..
            },
        ) => assert!(e.to_string().contains("wait_any"), "{e}"),
        other => panic!("expected StatusDiscarded, got {other:?}"),
    }
    assert!(!p.is_alive());
    assert!(zombie_children().is_empty());
}

/// A process with a `SIGCHLD` handler that reaps any child (as daemons
/// often have): every start succeeds however soon the child ends (46 of
/// 2 000 failed, the handler having reaped the child before its pidfd was
/// opened), and `join` answers the exit code or, when the handler took it,
/// `StatusDiscarded` naming it (23 answered `Io { op: "waitid" }`).
#[test]
fn a_sigchld_handler_that_reaps_any_child_loses_no_start() {
    let _dog = Watchdog::arm(LIMIT, "SIGCHLD handler");
    extern "C" fn reap_all(_: libc::c_int) {
        // SAFETY: waitpid is async-signal-safe; a null status pointer.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    }
    let child = multiproc_testkit::fork(|| {
        // SAFETY: installs a handler that only calls waitpid, in this child.
        unsafe { libc::signal(libc::SIGCHLD, reap_all as *const () as libc::sighandler_t) };
        let (mut coded, mut taken) = (0, 0);
        for _ in 0..2000 {
            let mut p = Process::new(|| 3);
            p.start().unwrap();
            match p.join() {
                Ok(3) => coded += 1,
                Err(Error::StatusDiscarded {
                    why: Discarded::ReapedElsewhere,
                    ..
                }) => taken += 1,
                other => panic!("{other:?}"),
            }
        }
        eprintln!("{coded} exit codes, {taken} taken by the handler");
        0
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
    assert!(zombie_children().is_empty());
}

/// Where `pidfd_open` is refused (a kernel before 5.3, valgrind 3.19, a
/// seccomp profile), starting a `Process` or a fork server answers
/// `Unsupported`, naming the call and what it needs, and leaves no process
/// behind: each child it forked is killed and reaped (a fork server's used
/// to be left a zombie). The refusal is a real one: a seccomp filter in a
/// forked child, answering `ENOSYS` (a missing call) or `EPERM` (a filter's).
#[test]
fn a_refused_pidfd_open_is_unsupported_and_leaves_no_process() {
    let _dog = Watchdog::arm(LIMIT, "refused pidfd_open");
    for errno in [libc::ENOSYS, libc::EPERM] {
        let child = multiproc_testkit::fork(move || {
            multiproc_testkit::refuse_syscall(libc::SYS_pidfd_open, errno);
            let says_so = |e: &Error| {
                let text = e.to_string();
                matches!(e, Error::Unsupported { op: "pidfd_open", source }
                    if source.raw_os_error() == Some(errno))
                    && text.contains("pidfd_open is not available here")
                    && text.contains("Linux 5.3")
            };
            match Process::new(|| ()).start() {
                Err(e) if says_so(&e) => {}
                Err(e) => {
                    eprintln!("Process::start: {e:?}");
                    return 10;
                }
                Ok(()) => return 11,
            }
            if !multiproc_testkit::no_child_left() {
                return 12;
            }
            match multiproc_proc::ForkServer::builder().start() {
                Err(e) if says_so(&e) => {}
                Err(e) => {
                    eprintln!("ForkServer::start: {e:?}");
                    return 13;
                }
                Ok(_) => return 14,
            }
            if !multiproc_testkit::no_child_left() {
                return 15;
            }
            0
        });
        assert_eq!(
            child.wait(LIMIT),
            multiproc_testkit::ChildExit::Exited(0),
            "pidfd_open refused with errno {errno}"
        );
    }
}

/// At the limit of open files (`RLIMIT_NOFILE`) a start fails before its
/// fork, saying what to do, and the closure never runs (the child's pidfd
/// was opened after the fork: the child, already running, was killed); with
/// one descriptor free a start needs no more; and once a descriptor is freed
/// the same `Process` starts.
#[test]
fn a_start_at_the_limit_of_open_files_fails_before_its_fork() {
    let _dog = Watchdog::arm(LIMIT, "start at the limit of open files");
    let child = multiproc_testkit::fork(|| {
        let ran = Shared::anonymous(AtomicU32::new(0)).unwrap();
        let run = || {
            ran.fetch_add(1, Ordering::SeqCst);
        };
        let mut first = Process::new(run);
        let mut second = Process::new(run);
        // Every descriptor the limit allows open, but one.
        multiproc_testkit::limit_open_files_to_those_open_and(1);
        if let Err(e) = first.start() {
            eprintln!("a start with one descriptor free: {e}");
            return 10;
        }
        if first.join().ok() != Some(0) {
            return 11;
        }
        // `first` holds the last descriptor (its pidfd) until dropped.
        match second.start() {
            Err(e @ Error::TooManyOpenFiles { op, limit: Some(_) })
                if op.contains("kept for a child's pidfd")
                    && e.to_string().contains("ulimit -n") => {}
            Err(e) => {
                eprintln!("a start at the limit: {e:?}");
                return 12;
            }
            Ok(()) => return 13,
        }
        if ran.load(Ordering::SeqCst) != 1 || !multiproc_testkit::no_child_left() {
            return 14;
        }
        drop(first);
        if second.start().is_err() || second.join().ok() != Some(0) {
            return 15;
        }
        if ran.load(Ordering::SeqCst) != 2 {
            return 16;
        }
        0
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
}

/// `active_children` lists a running child and forgets it once joined, where
/// no `/proc` is mounted (a container's; here a tmpfs over it in a private
/// namespace): it asks the kernel whether each child ended (it read `/proc`,
/// and every child read as ended). Skipped, saying so, where namespaces are
/// not allowed to a non-root user; as root it must run.
#[test]
fn active_children_without_proc_lists_the_running_ones() {
    let _dog = Watchdog::arm(LIMIT, "active_children without /proc");
    let child = multiproc_testkit::fork(|| {
        if let Err(code) = multiproc_testkit::hide_proc_or_exit_code() {
            return code;
        }
        let mut p = Process::new(|| std::thread::sleep(Duration::from_millis(300)));
        p.start().unwrap();
        let listed = active_children().iter().any(|c| Some(c.pid) == p.pid());
        p.join().unwrap();
        match (listed, active_children().is_empty()) {
            (true, true) => 0,
            (false, _) => 10,
            (true, false) => 11,
        }
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
}

/// CPython's `test_error_on_stdio_flush_1` and `_2`: a child whose standard
/// output or error is broken (closed, or a full device) still ends with its
/// own exit code: the flush at its start and at its end may fail, and is
/// not its answer. One that prints into its buffer without a newline
/// (flushed only at its end) too. Run in a forked test child, whose
/// descriptors 1 and 2 it may break.
#[test]
fn a_child_whose_stdout_or_stderr_is_broken_ends_with_its_code() {
    let _dog = Watchdog::arm(LIMIT, "broken stdio");
    multiproc_testkit::fork(|| {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let full = std::os::fd::AsRawFd::as_raw_fd(&full);
        for fd in [1, 2] {
            // SAFETY: dup of a descriptor this process holds open.
            let saved = unsafe { libc::dup(fd) };
            assert!(saved >= 0);
            for how in ["closed", "full"] {
                // SAFETY: close or dup2 of the standard descriptor `fd`,
                // which this test child alone uses, and puts back below.
                let broke = unsafe {
                    match how {
                        "closed" => libc::close(fd),
                        _ => libc::dup2(full, fd),
                    }
                };
                assert!(broke >= 0);
                for (code, unflushed) in [(0, false), (3, true)] {
                    let mut p = Process::new(move || {
                        if unflushed {
                            print!("held in stdout's buffer until the end");
                        }
                        code
                    });
                    p.start().unwrap();
                    let got = p.join_timeout(Duration::from_secs(20)).unwrap();
                    if got != code {
                        // SAFETY: stderr put back to report.
                        unsafe { libc::dup2(saved, fd) };
                        eprintln!("fd {fd} {how}, unflushed {unflushed}: exit {got}, not {code}");
                        return 1;
                    }
                }
                // SAFETY: the saved descriptor put back as `fd`.
                assert!(unsafe { libc::dup2(saved, fd) } >= 0);
            }
        }
        0
    })
    .wait_ok(LIMIT);
    assert!(zombie_children().is_empty());
}

/// CPython's `test_lose_target_ref`: once started, a process keeps nothing
/// of its target in the parent (what the closure captured is dropped there
/// at `start`, not at the handle's drop), while the child ran it whole.
#[test]
fn a_started_process_keeps_nothing_of_its_target_in_the_parent() {
    let _dog = Watchdog::arm(LIMIT, "target dropped at start");
    let captured = std::sync::Arc::new(5);
    let held = std::sync::Arc::clone(&captured);
    let mut p = Process::new(move || *held);
    assert_eq!(std::sync::Arc::strong_count(&captured), 2);
    p.start().unwrap();
    assert_eq!(
        std::sync::Arc::strong_count(&captured),
        1,
        "the parent still holds the target"
    );
    assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), 5);
}
