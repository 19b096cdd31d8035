//! Workers SIGKILLed at random points of long maps, over many trials: every
//! other result is right, the affected items are reported, nothing hangs, and
//! nothing is left behind — the same when the pool's own process is killed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_pool::{Error, PmapOptions, Pool};
use multiproc_shm::Shared;
use multiproc_testkit::{fork, zombie_children, ChildExit, Watchdog};

const TRIALS: u64 = 50;
const ITEMS: u64 = 10_000;

/// A few microseconds of work, so that a map of 10 000 lasts tens of ms.
fn work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..200 {
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7) ^ x;
    }
    std::hint::black_box(h);
    x * 3
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Kills a random worker of `pool` after a random delay, from another thread.
fn kill_later(pool: &Pool, seed: &mut u64) -> std::thread::JoinHandle<()> {
    let pids = pool.pids();
    let victim = pids[(next(seed) % pids.len() as u64) as usize];
    let delay = Duration::from_micros(next(seed) % 20_000);
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        // SAFETY: kill(2); the pid is a worker of ours (alive, or a zombie of
        // the zygote at worst).
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    })
}

/// About 20 µs of work: long against a task's trip to its worker, so that a
/// worker killed at a random moment is most likely running one.
fn busy_work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..20_000 {
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7) ^ x;
    }
    std::hint::black_box(h);
    x * 3
}

/// Kills a random worker of `pool` now.
fn kill_a_worker(pool: &Pool, seed: &mut u64) {
    let pids = pool.pids();
    let victim = pids[(next(seed) % pids.len() as u64) as usize];
    // SAFETY: kill(2); the pid is a worker of ours (alive, or a zombie of the
    // zygote at worst).
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
}

/// Takes `results` (of `busy_work` over 0, 1, …) in order, killing a worker
/// when it comes to result `kill_at`: every result is right but at most one
/// `WorkerDied`; whether there was one.
fn take_killing_at(
    pool: &Pool,
    seed: &mut u64,
    kill_at: u64,
    results: impl Iterator<Item = Result<u64, Error>>,
    trial: u64,
) -> bool {
    let mut died = 0;
    for (i, r) in results.enumerate() {
        if i as u64 == kill_at {
            kill_a_worker(pool, seed);
        }
        match r {
            Ok(v) => assert_eq!(v, i as u64 * 3, "trial {trial}, item {i}"),
            Err(Error::WorkerDied { .. }) => died += 1,
            Err(e) => panic!("trial {trial}, item {i}: {e:?}"),
        }
    }
    assert!(died <= 1, "trial {trial}: one kill failed {died} items");
    died == 1
}

/// Counts outcomes by kind.
fn tally(counts: &mut HashMap<&'static str, u64>, what: &'static str) {
    *counts.entry(what).or_default() += 1;
}

#[test]
fn workers_killed_during_maps_fail_only_their_items() {
    let _dog = Watchdog::arm(Duration::from_secs(600), "killed during map");
    let pool = Pool::new(2).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d;
    let mut counts = HashMap::new();
    for trial in 0..TRIALS {
        let killer = kill_later(&pool, &mut seed);
        let t = Instant::now();
        match pool.map_chunked(work, 0..ITEMS, 1 + (next(&mut seed) % 64) as usize) {
            Ok(v) => {
                assert!(
                    v.iter().enumerate().all(|(i, &r)| r == i as u64 * 3),
                    "trial {trial}"
                );
                tally(&mut counts, "map whole");
            }
            Err(Error::Item { index, source }) => {
                assert!(
                    matches!(*source, Error::WorkerDied { .. }),
                    "trial {trial}: {source:?}"
                );
                assert!(index < ITEMS as usize);
                tally(&mut counts, "map item died");
            }
            Err(e) => panic!("trial {trial}: {e:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "trial {trial} took {:?}",
            t.elapsed()
        );
        killer.join().unwrap();
    }
    eprintln!("map, {TRIALS} trials: {counts:?}");
    // A run where no kill landed on a busy worker proves nothing (about 30 of
    // 50 do here).
    assert!(
        counts.get("map item died").is_some_and(|&n| n >= 3),
        "{counts:?}"
    );
    assert_eq!(pool.processes(), pool.pids().len());
}

#[test]
fn workers_killed_during_imap_and_apply_async_fail_only_their_items() {
    let _dog = Watchdog::arm(Duration::from_secs(600), "killed during imap");
    let pool = Pool::new(2).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let mut counts = HashMap::new();
    for trial in 0..TRIALS {
        // The kill comes from the loop that takes the results, at a random
        // one of the first half: the job is under way then, on any machine
        // (a delay in time missed every imap under AddressSanitizer).
        const N: u64 = 1_000;
        let kill_at = next(&mut seed) % (N / 2);
        let imap = pool.imap_with(busy_work, 0..N, 5, 4);
        let died = take_killing_at(&pool, &mut seed, kill_at, imap, trial);
        tally(
            &mut counts,
            if died { "imap item died" } else { "imap whole" },
        );

        let kill_at = next(&mut seed) % (N / 2);
        let handles: Vec<_> = (0..N)
            .map(|i| pool.apply_async(busy_work, i).unwrap())
            .collect();
        let results = handles.into_iter().map(|h| h.get());
        let died = take_killing_at(&pool, &mut seed, kill_at, results, trial);
        tally(
            &mut counts,
            if died {
                "apply_async task died"
            } else {
                "apply_async whole"
            },
        );
    }
    eprintln!("imap and apply_async, {TRIALS} trials each: {counts:?}");
    // Kills that landed on a task: at least one of each, or the trials proved
    // nothing.
    for hit in ["imap item died", "apply_async task died"] {
        assert!(
            counts.get(hit).is_some_and(|&n| n >= 1),
            "no {hit}: {counts:?}"
        );
    }
}

/// The parent pid of `pid`, from /proc.
fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` has ended: no such process, or a zombie (dead; whether its
/// new parent reaps it is that parent's business).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
    }
}

#[test]
fn a_pool_whose_process_is_killed_mid_map_leaves_no_process_behind() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "owner killed");
    let pids = Shared::anonymous([
        AtomicU32::new(0),
        AtomicU32::new(0),
        AtomicU32::new(0),
        AtomicU32::new(0),
    ])
    .unwrap();
    let owner = fork(|| {
        let pool = Pool::new(3).unwrap();
        for (slot, pid) in pids.iter().zip(pool.pids()) {
            slot.store(pid, Ordering::SeqCst);
        }
        // The zygote: the workers' parent.
        pids[3].store(ppid_of(pool.pids()[0]).unwrap_or(0), Ordering::SeqCst);
        loop {
            let _ = pool.map(work, 0..ITEMS * 10);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids[3].load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the pool did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100)); // mid-map
    owner.signal(libc::SIGKILL);
    assert!(matches!(
        owner.wait(Duration::from_secs(20)),
        ChildExit::Signaled(libc::SIGKILL)
    ));
    for slot in pids.iter() {
        let pid = slot.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(pid) {
            assert!(
                Instant::now() < deadline,
                "process {pid} outlived the pool's process"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(zombie_children().is_empty());
}

/// How a trial run in `child` ended: the name `outcomes` gives its exit
/// code, or that it was still waiting after 5 s (it is killed then, and the
/// processes it made die with it). Any other end fails the test, naming
/// `trial`.
fn trial_outcome(
    mut child: multiproc_testkit::Child,
    outcomes: &[(i32, &'static str)],
    trial: &str,
) -> &'static str {
    let Some(exit) = child.wait_timeout(Duration::from_secs(5)) else {
        return "waited for ever (killed)"; // the drop kills it
    };
    outcomes
        .iter()
        .find(|&&(code, _)| exit == ChildExit::Exited(code))
        .map(|&(_, name)| name)
        .unwrap_or_else(|| panic!("{trial}: {exit:?}"))
}

/// A task whose unsafe code runs wild: writes garbage over the first 64 KiB
/// of every shared writable mapping of its worker (the pool's inboxes, its
/// answer queue, the workers' slots), then answers `seed`.
fn scribble(seed: u64) -> u64 {
    scribble_over(seed, 64 << 10)
}

/// [`scribble`] over the first `span` bytes of every such mapping.
fn scribble_over(seed: u64, span: usize) -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut x = seed | 1;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some("rw-s")) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        for at in (a..b.min(a.saturating_add(span))).step_by(8) {
            // SAFETY: inside a mapping this process has writable; what it
            // holds is the pool's shared memory, which the test means to ruin.
            unsafe { (at as *mut u64).write_volatile(next(&mut x)) };
        }
    }
    seed
}

/// A worker that writes over the memory it shares with the pool: the pool
/// finds it (a queue's check fails, or an inbox reads as closed while the
/// pool runs), stops its workers and fails every task not answered with
/// `Corrupted` — and every task after — instead of waiting for answers that
/// will never come (it did, for ever) or replacing workers that die at once
/// on the same ruined inbox (thousands of forks a second). No answer is
/// wrong; `get` has no timeout here. Each trial runs in a child of its own
/// with a deadline, and every one must stop with `Corrupted`: 1-2 of 20 used
/// to wait for ever, a worker's blocking get or put taking garbage cursors
/// for a peer's claim in flight, until the queue checked them
/// (`benches/NOTES.md`).
#[test]
fn a_worker_that_writes_over_the_pools_memory_stops_it_with_an_error_not_a_hang() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "scribbling worker");
    let mut counts = HashMap::new();
    let trials = 20u64;
    for trial in 0..trials {
        let seed = 0x9e37_79b9 ^ (trial << 32) ^ trial;
        let child = fork(move || {
            let pool = Pool::new(2).unwrap();
            let pids = pool.pids();
            assert_eq!(pool.apply(work, 3).unwrap(), 9);
            let before: Vec<_> = (0..50)
                .map(|i| pool.apply_async(work, i).unwrap())
                .collect();
            let wild = pool.apply_async(scribble, seed).unwrap();
            let after: Vec<_> = (0..50)
                .map(|i| pool.apply_async(work, i).unwrap())
                .collect();
            let mut stopped = false;
            let mut check = |r: Result<u64, Error>, want: u64| match r {
                Ok(v) => assert_eq!(v, want, "a wrong answer"),
                Err(Error::Corrupted { .. }) => stopped = true,
                Err(Error::WorkerDied { .. }) => {}
                Err(e) => panic!("{e:?}"),
            };
            for (i, h) in before.into_iter().enumerate() {
                check(h.get(), i as u64 * 3);
            }
            check(wild.get(), seed);
            for (i, h) in after.into_iter().enumerate() {
                check(h.get(), i as u64 * 3);
            }
            if stopped {
                // Stopped for good: a new task fails at once, with the same error.
                assert!(matches!(pool.apply(work, 1), Err(Error::Corrupted { .. })));
            }
            // Ended either way: closed and joined (every other trial), or dropped.
            if trial % 2 == 0 {
                pool.close();
                pool.join().unwrap();
            }
            drop(pool);
            for pid in pids {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !gone(pid) {
                    assert!(Instant::now() < deadline, "worker {pid} outlived its pool");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            if stopped {
                2
            } else {
                1
            }
        });
        let what = trial_outcome(
            child,
            &[(1, "every answer right"), (2, "stopped: Corrupted")],
            &format!("trial {trial} (seed {seed:#x})"),
        );
        tally(&mut counts, what);
    }
    eprintln!("outcomes: {counts:?}");
    assert_eq!(
        counts.get("stopped: Corrupted").copied(),
        Some(trials),
        "{counts:?}"
    );
    assert!(zombie_children().is_empty());
}

/// This process's CPU time, every thread's (not its children's).
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeros is a value.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given, for this process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// Closes every pidfd, eventfd and socket of this process: the pool's
/// descriptors, as a program that closes every descriptor it does not know
/// (a daemon's start, done late) closes them behind the pool's back. The
/// numbers it closed.
fn close_the_pools_descriptors() -> Vec<i32> {
    let mut closed = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if target.contains("[pidfd]")
            || target.contains("[eventfd]")
            || target.starts_with("socket:")
        {
            let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap();
            // SAFETY: against I/O safety on purpose: the test's point.
            unsafe { libc::close(fd) };
            closed.push(fd);
        }
    }
    closed
}

/// A program that closes the pool's descriptors behind its back (against
/// Rust's I/O safety, as a late daemon start that closes every descriptor
/// does): the pool stops with `Corrupted`, saying so, rather than take every
/// worker for dead, replace none and fail every task with
/// `InitializerFailed`; no thread spins on the closed descriptors (the
/// watcher's `poll` answered at once for ever: a CPU's worth while idle);
/// and the pool's drop leaves no zombie (its fork server, reaped through
/// its closed pidfd, stayed one) and no worker. In a child, so that the
/// closing touches nothing of the test's. Release only: a debug build of
/// std aborts the process that drops an `OwnedFd` already closed (its own
/// I/O safety check, for any `File` as for the pool's descriptors);
/// `scripts/test-all` runs it in release.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "std aborts a debug build that drops a closed OwnedFd"
)]
fn descriptors_closed_behind_the_pools_back_stop_it_with_an_error_and_no_spinning() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "closed descriptors");
    let mut child = fork(|| {
        let pool = Pool::new(2).unwrap();
        let pids = pool.pids();
        assert_eq!(pool.apply(work, 3).unwrap(), 9);
        let closed = close_the_pools_descriptors();
        assert!(closed.len() >= 3, "{closed:?}");
        // Idle half a second: a thread spinning on a closed descriptor takes
        // about that much CPU (less on a busy machine), an idle pool none.
        let before = cpu_time();
        std::thread::sleep(Duration::from_millis(500));
        let spent = cpu_time() - before;
        assert!(
            spent < Duration::from_millis(150),
            "{spent:?} of CPU while idle"
        );
        match pool.apply(work, 1) {
            Err(Error::Corrupted { what }) => {
                assert!(what.contains("closed by other code"), "{what}")
            }
            other => panic!("{other:?}"),
        }
        drop(pool);
        assert_eq!(zombie_children(), Vec::<libc::pid_t>::new());
        for pid in pids {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !gone(pid) {
                assert!(Instant::now() < deadline, "worker {pid} outlived its pool");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        7
    });
    assert_eq!(
        child.wait_timeout(Duration::from_secs(30)),
        Some(ChildExit::Exited(7))
    );
}

/// `pmap` with a closure whose unsafe code, at item 500, writes over the
/// call's shared memory (its result queue, the workers' slots, the cursor):
/// the call answers an error — `Corrupted` when the queue's checks fail or it
/// reads as closed (these were ignored, and the call waited for results that
/// could not come), or the items its ruined workers could not finish — or
/// right results; never a wrong result. Each trial runs in a child of its own
/// with a deadline; every one answers `Corrupted` (3 of 16 used to wait for
/// ever, on garbage cursors taken for claims in flight, until the queue
/// checked them; and a call whose workers had all ended took the scribbler's
/// exit for a death in item 500, and the queue's failure went unread, until
/// the queue was read for a worker's last results with the same checks).
#[test]
fn a_pmap_whose_closure_writes_over_its_memory_answers_an_error_or_right_results() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "pmap scribbler");
    let mut counts = HashMap::new();
    let trials = 48u64;
    for trial in 0..trials {
        let seed = 0x5eed_0000 ^ (trial << 24) ^ trial;
        let child = fork(move || {
            let items: Vec<u64> = (0..1000).collect();
            // One worker in every other trial: the call then learns of the
            // queue's ruin when its last worker ends (the scribbler, whose
            // answer cannot be sent) rather than while others still run.
            let options = PmapOptions {
                processes: if trial % 2 == 0 { 1 } else { 0 },
                ..PmapOptions::default()
            };
            let r = multiproc_pool::pmap_with(
                &items,
                |&x| if x == 500 { scribble(seed) } else { x * 3 },
                options,
            );
            match r {
                Ok(v) => {
                    let right = v.len() == 1000
                        && v.iter()
                            .enumerate()
                            .all(|(i, &y)| y == if i == 500 { seed } else { i as u64 * 3 });
                    if right {
                        1
                    } else {
                        9
                    }
                }
                Err(Error::Corrupted { .. }) => 2,
                Err(Error::Item { source, .. }) => match *source {
                    Error::WorkerDied { .. } => 3,
                    Error::Corrupted { .. } => 2,
                    _ => 8,
                },
                Err(_) => 8,
            }
        });
        let what = trial_outcome(
            child,
            &[
                (1, "right results"),
                (2, "Corrupted"),
                (3, "an item's WorkerDied"),
            ],
            &format!("trial {trial} (seed {seed:#x})"),
        );
        tally(&mut counts, what);
    }
    eprintln!("outcomes: {counts:?}");
    assert_eq!(counts.get("Corrupted").copied(), Some(trials), "{counts:?}");
    assert!(zombie_children().is_empty());
}

/// SIGKILLs a random worker of `pool` every few milliseconds until `stop`,
/// counting in `kills`. Only workers seen for a while: one killed as it
/// starts counts toward the pool's giving up on an initializer that keeps
/// failing (three in a row did, under AddressSanitizer, where a start takes
/// milliseconds; a loaded machine can take longer).
fn kill_workers_until(pool: &Pool, stop: &AtomicBool, kills: &AtomicU32) {
    let mut seed = 12345;
    let mut seen = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_micros(500 + next(&mut seed) % 5_000));
        let now = Instant::now();
        let old: Vec<u32> = pool
            .pids()
            .into_iter()
            .filter(|&pid| {
                now.duration_since(*seen.entry(pid).or_insert(now)) >= Duration::from_millis(100)
            })
            .collect();
        let pick = (next(&mut seed) % old.len().max(1) as u64) as usize;
        if let Some(&victim) = old.get(pick) {
            // SAFETY: kill(2); the pid is a worker of ours (alive, or a
            // zombie of the zygote at worst).
            unsafe { libc::kill(victim as i32, libc::SIGKILL) };
            kills.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits until every one of `pids` is gone (up to 10 s each).
fn all_gone(pids: Vec<u32>) {
    for pid in pids {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(pid) {
            assert!(Instant::now() < deadline, "worker {pid} outlived its pool");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether `r` is `want`, or the failure of a worker's death (counted in
/// `died`); any other answer fails the test.
fn right_or_died(r: Result<u64, Error>, want: u64, died: &AtomicU32, what: &str) {
    match r {
        Ok(v) => assert_eq!(v, want, "{what}: a wrong answer"),
        Err(Error::WorkerDied { .. }) => {
            died.fetch_add(1, Ordering::Relaxed);
        }
        Err(Error::Item { source, .. }) if matches!(*source, Error::WorkerDied { .. }) => {
            died.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// One pool of four, six threads, each a random mix of `apply`, a burst of
/// `apply_async`, `map`, `imap`, `imap_unordered` and `get_timeout` of
/// 20-µs tasks, while another thread SIGKILLs a random worker at least
/// 100 ms old every few milliseconds (about 290 kills, 110 of them in a
/// task, in 5 s): every answer is right or its item's `WorkerDied`, no call
/// waits for ever (the watchdog), and the dropped pool leaves no process.
/// Whichever thread waits drives the pool, so deaths are met by each of
/// them in turn.
#[test]
fn a_pool_shared_by_threads_answers_rightly_while_its_workers_are_killed() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "threads and kills");
    let pool = Pool::new(4).unwrap();
    let (died, kills) = (AtomicU32::new(0), AtomicU32::new(0));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let callers: Vec<_> = (0..6u64)
            .map(|th| {
                let (pool, died) = (&pool, &died);
                s.spawn(move || {
                    let mut seed = th * 7919 + 1;
                    for i in 0..200u64 {
                        let x = next(&mut seed);
                        let what = format!("thread {th}, call {i}, kind {}", x % 6);
                        let n = x % 200;
                        match x % 6 {
                            0 => right_or_died(pool.apply(busy_work, i), i * 3, died, &what),
                            1 => {
                                let handles: Vec<_> = (0..20)
                                    .map(|j| pool.apply_async(busy_work, i + j).unwrap())
                                    .collect();
                                for (j, h) in (0..).zip(handles) {
                                    right_or_died(h.get(), (i + j) * 3, died, &what);
                                }
                            }
                            2 => match pool.map(busy_work, 0..n) {
                                Ok(v) => assert_eq!(
                                    v,
                                    (0..n).map(|k| k * 3).collect::<Vec<_>>(),
                                    "{what}"
                                ),
                                Err(e) => right_or_died(Err(e), 0, died, &what),
                            },
                            3 => {
                                let mut k = 0;
                                for r in pool.imap(busy_work, 0..n) {
                                    right_or_died(r, k * 3, died, &what);
                                    k += 1;
                                }
                                assert_eq!(k, n, "{what}: imap's items");
                            }
                            4 => {
                                let mut h = pool.apply_async(busy_work, i).unwrap();
                                match h.get_timeout(Duration::from_micros(n)) {
                                    Ok(v) => assert_eq!(v, i * 3, "{what}"),
                                    Err(Error::Timeout) => {
                                        right_or_died(h.get(), i * 3, died, &what)
                                    }
                                    Err(e) => right_or_died(Err(e), 0, died, &what),
                                }
                            }
                            _ => {
                                let mut seen = vec![false; n as usize];
                                for (k, r) in pool.imap_unordered(busy_work, 0..n) {
                                    assert!(
                                        !std::mem::replace(&mut seen[k], true),
                                        "{what}: {k} twice"
                                    );
                                    right_or_died(r, k as u64 * 3, died, &what);
                                }
                                assert!(seen.iter().all(|&s| s), "{what}: an item missing");
                            }
                        }
                    }
                })
            })
            .collect();
        let (pool, stop, kills) = (&pool, &stop, &kills);
        s.spawn(move || kill_workers_until(pool, stop, kills));
        // The killer stops whatever the callers did (a panic in one would
        // otherwise leave the scope waiting for it for ever).
        let outcomes: Vec<_> = callers.into_iter().map(|c| c.join()).collect();
        stop.store(true, Ordering::Relaxed);
        for outcome in outcomes {
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    });
    eprintln!(
        "{} kills, {} answers of a death",
        kills.load(Ordering::Relaxed),
        died.load(Ordering::Relaxed)
    );
    assert!(died.load(Ordering::Relaxed) > 0, "no kill met a task");
    let last_pids = pool.pids();
    drop(pool);
    all_gone(last_pids);
    assert!(zombie_children().is_empty());
}

/// The sum and count of a byte argument's bytes.
fn sum_of(v: Vec<u8>) -> (u64, u64) {
    (v.len() as u64, v.iter().map(|&b| u64::from(b)).sum())
}

/// A byte answer `n` long, every byte `n % 251`.
fn bytes_of(n: u64) -> Vec<u8> {
    vec![(n % 251) as u8; n as usize]
}

/// Arguments and answers past the inline size, which stream through the
/// queues' lanes (one of 3 MB in pieces through a lane of 2 MiB), while a
/// worker is killed every few milliseconds: each answer is right or its
/// task's `WorkerDied`, no stream is left waiting for a dead end (the
/// watchdog), and the dropped pool leaves no process. (Tried as a new user
/// would with a mix of every call at random sizes, kill rates and pool
/// settings for a few minutes before it was a test: nothing found.)
#[test]
fn streamed_arguments_and_answers_are_right_or_died_while_workers_are_killed() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "streams and kills");
    let pool = Pool::new(2).unwrap();
    let (died, kills) = (AtomicU32::new(0), AtomicU32::new(0));
    let stop = AtomicBool::new(false);
    const SIZES: [usize; 4] = [100, 200_000, 1_000_000, 3_000_000];
    std::thread::scope(|s| {
        let (p, st, k) = (&pool, &stop, &kills);
        s.spawn(move || kill_workers_until(p, st, k));
        let mut round = 0;
        // At least 20 rounds, and on until a kill met a streamed task.
        while round < 20 || (died.load(Ordering::Relaxed) == 0 && round < 200) {
            // Four of each in flight: both workers busy most of the time.
            let calls: Vec<_> = (0..4)
                .map(|k| {
                    let size = SIZES[(round + k) % SIZES.len()];
                    let arg: Vec<u8> = (0..size).map(|k| (k % 251) as u8).collect();
                    let want = (size as u64, arg.iter().map(|&b| u64::from(b)).sum());
                    let sum = pool.apply_async(sum_of, arg).unwrap();
                    let answer = pool.apply_async(bytes_of, size as u64).unwrap();
                    (size, want, sum, answer)
                })
                .collect();
            for (size, want, sum, answer) in calls {
                let what = format!("round {round}, {size} bytes");
                match sum.get() {
                    Ok(got) => assert_eq!(got, want, "{what}: a wrong sum"),
                    Err(e) => right_or_died(Err(e), 0, &died, &what),
                }
                match answer.get() {
                    Ok(got) => assert!(
                        got.len() == size && got.iter().all(|&b| usize::from(b) == size % 251),
                        "{what}: a wrong answer of {} bytes",
                        got.len()
                    ),
                    Err(e) => right_or_died(Err(e), 0, &died, &what),
                }
            }
            round += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!(
        "{} kills, {} answers of a death",
        kills.load(Ordering::Relaxed),
        died.load(Ordering::Relaxed)
    );
    assert!(
        died.load(Ordering::Relaxed) > 0,
        "no kill met a streamed task"
    );
    let last_pids = pool.pids();
    drop(pool);
    all_gone(last_pids);
    assert!(zombie_children().is_empty());
}

/// The seed of [`scribble_at_50_000`], set before each trial's pool is made
/// (its workers inherit it).
static MAP_SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `x * 3`, but item 50 000 writes garbage over the whole of every shared
/// writable mapping of its worker (the queues' rings and the lanes that
/// large chunks stream through).
fn scribble_at_50_000(x: u64) -> u64 {
    if x == 50_000 {
        scribble_over(MAP_SEED.load(Ordering::Relaxed), usize::MAX);
        x * 3
    } else {
        x * 3
    }
}

/// A `map` of 100 000 items on two workers, whose chunks (12 500 items, more
/// than a ring's slot of 16 KiB holds) stream through the inboxes' lanes,
/// with a task that writes over all of its worker's shared memory mid-map:
/// the map answers `Corrupted` (or, if the garbage missed everything in use,
/// right results), never a wrong one, within its trial's deadline.
#[test]
fn a_map_of_streamed_chunks_whose_task_writes_over_all_its_memory_answers_corrupted() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "scribbled map");
    let mut counts = HashMap::new();
    // 16 seeds, then 12 trials of one whose garbage leaves the answer queue's
    // table of threads looking full: 29 % of its trials waited for ever (the
    // parent read `TooManyParticipants` on every look, a worker spent
    // seconds taking a garbage count of handles off one by one) before the
    // queue said `Corrupted` there.
    let seeds = (0..16u64).map(|trial| 0x6d61_7000 ^ (trial << 20) ^ trial);
    for (trial, seed) in seeds.chain([0xadf4_20c8_6e48_63b1; 12]).enumerate() {
        let child = fork(move || {
            MAP_SEED.store(seed, Ordering::Relaxed);
            let pool = Pool::builder()
                .processes(2)
                .max_inline(16 << 10)
                .build()
                .unwrap();
            match pool.map(scribble_at_50_000, 0..100_000u64) {
                Ok(v) if v.iter().enumerate().all(|(i, &y)| y == i as u64 * 3) => 1,
                Ok(_) => 9,
                Err(Error::Item { source, .. }) if matches!(*source, Error::Corrupted { .. }) => 2,
                Err(Error::Corrupted { .. }) => 2,
                Err(e) => {
                    eprintln!("trial {trial}: {e:?}");
                    8
                }
            }
        });
        let what = trial_outcome(
            child,
            &[(1, "right results"), (2, "Corrupted")],
            &format!("trial {trial} (seed {seed:#x})"),
        );
        tally(&mut counts, what);
    }
    eprintln!("outcomes: {counts:?}");
    assert_eq!(counts.get("Corrupted").copied(), Some(28), "{counts:?}");
    assert!(zombie_children().is_empty());
}

/// Task 100 has its worker die halfway through putting its answer (the
/// slot claimed, never written); every task 2 µs of work.
#[cfg(feature = "test-hooks")]
fn dies_while_answering_at_100(x: u64) -> u64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(2) {}
    if x == 100 {
        multiproc_pool::die_while_answering();
    }
    x * 3
}

/// A worker killed between claiming its answer's slot and writing it: its
/// task fails with `WorkerDied`, and every other answer, those put behind
/// the dead claim too, arrives; in a pool of one answer queue (2 workers)
/// and of two (34 workers, more than `ANSWER_GROUP`, which the driver waits
/// on together). (That wait over several queues never skipped a dead claim:
/// the answers behind it stayed unread, and their tasks waited for good.)
#[cfg(feature = "test-hooks")]
#[test]
fn a_worker_killed_while_answering_loses_no_other_answer_with_one_answer_queue_or_two() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "a worker killed while answering");
    for workers in [2, 34] {
        let pool = Pool::new(workers).unwrap();
        let handles: Vec<_> = (0..400u64)
            .map(|x| pool.apply_async(dies_while_answering_at_100, x).unwrap())
            .collect();
        let mut died = Vec::new();
        for (x, mut h) in (0u64..).zip(handles) {
            match h.get_timeout(Duration::from_secs(30)) {
                Ok(y) => assert_eq!(y, x * 3),
                Err(Error::WorkerDied { .. }) => died.push(x),
                Err(e) => panic!("{workers} workers, task {x}: {e:?}"),
            }
        }
        assert_eq!(
            died,
            [100],
            "{workers} workers: only the task whose worker died fails"
        );
        drop(pool);
        assert!(zombie_children().is_empty());
    }
}

/// The zygote (the process that forks the workers) killed from outside: its
/// workers die with it, none can be replaced, and the pool stops saying
/// why, `ReplacementFailed` naming the gone fork server (it said the
/// initializer failed), for the tasks in flight and every later one; no
/// call waits for good, and no process is left once the pool is dropped.
#[test]
fn a_pool_whose_zygote_is_killed_says_its_workers_cannot_be_replaced() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "zygote killed");
    let child = fork(|| {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(work, 1).map(|_| ()).ok(), Some(()));
        let workers = pool.pids();
        let zygote = ppid_of(workers[0]).expect("the zygote");
        // SAFETY: kill(2) of a process this test made (the zygote).
        assert_eq!(unsafe { libc::kill(zygote as i32, libc::SIGKILL) }, 0);
        let says_why = |r: &Result<u64, Error>| matches!(r, Err(Error::ReplacementFailed { why }) if why.contains("fork server is gone"));
        // Until the deaths are seen, a task may still run; then every one
        // fails, and says why.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = pool
                .apply_async(work, 2)
                .and_then(|mut h| h.get_timeout(Duration::from_secs(20)));
            if says_why(&r) {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("after the zygote was killed: {r:?}");
                return 10;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let map = pool.map(work, 0..100);
        let failed = match &map {
            Err(Error::Item { source, .. }) => matches!(**source, Error::ReplacementFailed { .. }),
            other => matches!(other, Err(Error::ReplacementFailed { .. })),
        };
        if !failed {
            eprintln!("a map after it: {map:?}");
            return 11;
        }
        drop(pool);
        for pid in workers.into_iter().chain([zygote]) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !gone(pid) {
                if Instant::now() > deadline {
                    return 12;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        0
    });
    assert_eq!(child.wait(Duration::from_secs(50)), ChildExit::Exited(0));
}
