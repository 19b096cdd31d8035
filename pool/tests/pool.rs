//! The pool's behaviour as a user of Python's `Pool` expects it, and what it
//! does better: every call, every failure, nothing left behind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc_pool::{pmap, pmap_with, Error, Exit, PmapOptions, Pool};
use multiproc_testkit::{pin, set_cpus, zombie_children, Watchdog};
use proptest::prelude::*;

const LIMIT: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn add(a: u32, b: u32) -> u64 {
    u64::from(a) + u64::from(b)
}

fn boom(x: u32) -> u32 {
    if x == 3 {
        panic!("no threes, got {x}");
    }
    x
}

fn die(how: u32) -> u32 {
    match how {
        // SAFETY: raising a signal at ourselves.
        0 => unsafe {
            libc::raise(libc::SIGKILL);
        },
        1 => std::process::abort(),
        // SAFETY: exiting this worker at once, on purpose.
        2 => unsafe { libc::_exit(3) },
        // SAFETY: the default action for SIGSEGV (std handles it to report
        // stack overflows), then raising it at ourselves.
        3 => unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        },
        _ => {}
    }
    how
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn my_pid(_: ()) -> u32 {
    std::process::id()
}

fn bytes_len(v: Vec<u8>) -> (usize, u8) {
    (v.len(), v.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

fn make_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

/// The worker pids are gone once the pool is: no process is left behind.
fn assert_gone(pids: &[u32]) {
    for &pid in pids {
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: kill with signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid as i32, 0) } == 0 {
            assert!(Instant::now() < deadline, "worker {pid} outlived its pool");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // A pool whose last handle went with a thread (a callback's, on the
    // background thread) reaps its fork server as that thread ends, a moment
    // after the drop returned.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut zombies = zombie_children();
    while !zombies.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        zombies = zombie_children();
    }
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
}

#[test]
fn apply_map_starmap_and_async_give_pythons_answers() {
    let _dog = Watchdog::arm(LIMIT, "basics");
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
    assert_eq!(
        pool.map(square, 0..10).unwrap(),
        (0..10).map(square).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(pool.starmap(add, [(1, 2), (30, 40)]).unwrap(), [3, 70]);
    let r = pool.apply_async(square, 5).unwrap();
    r.wait();
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(r.get().unwrap(), 25);
    let m = pool.map_async(square, [2, 3]).unwrap();
    assert_eq!(m.get().unwrap(), [4, 9]);
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    drop(pool);
    assert_gone(&pids);
}

/// A task's function may be a `fn` item, a closure that captures nothing
/// (each with a trampoline of its own, which calls it inline) or a `fn`
/// pointer chosen as the program runs (sent as its address): all answer
/// alike, through every call that takes a function. A closure that
/// captures a pointer's worth of data is refused with `Captures` by each of
/// them (the data is in this process only; larger captures do not compile),
/// and the pool goes on.
#[test]
fn functions_of_every_kind_run_and_a_closure_that_captures_is_refused() {
    let _dog = Watchdog::arm(LIMIT, "kinds of functions");
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..100).map(square).collect();
    let table: [fn(u64) -> u64; 2] = [square, |x| x * x];
    let pointer = table[std::hint::black_box(1)];
    assert_eq!(pool.map(square, 0..100).unwrap(), want);
    assert_eq!(pool.map(|x: u64| x * x, 0..100).unwrap(), want);
    assert_eq!(pool.map(pointer, 0..100).unwrap(), want);
    assert_eq!(pool.map_chunked(pointer, 0..100, 7).unwrap(), want);
    assert_eq!(pool.apply(pointer, 9).unwrap(), 81);
    assert_eq!(pool.apply_async(pointer, 5).unwrap().get().unwrap(), 25);
    let got: Vec<u64> = pool.imap(pointer, 0..100).map(Result::unwrap).collect();
    assert_eq!(got, want);
    let mut got: Vec<(usize, u64)> = (pool.imap_unordered(|x: u64| x * x, 0..100))
        .map(|(i, r)| (i, r.unwrap()))
        .collect();
    got.sort_unstable();
    assert!(got
        .iter()
        .enumerate()
        .all(|(k, &(i, v))| k == i && v == want[i]));
    let pairs = [(1, 2), (30, 40)];
    let add_pointer: fn(u32, u32) -> u64 = [add][std::hint::black_box(0)];
    assert_eq!(pool.starmap(add, pairs).unwrap(), [3, 70]);
    assert_eq!(pool.starmap(add_pointer, pairs).unwrap(), [3, 70]);
    assert_eq!(
        pool.starmap(|a: u32, b: u32| u64::from(a * b), pairs)
            .unwrap(),
        [2, 1200]
    );

    let k = std::hint::black_box(7u64);
    let captures = move |x: u64| x + k;
    let refused = |r: Result<(), Error>, call: &str| match r {
        Err(Error::Captures { function, bytes: 8 }) if function.contains("closure") => {}
        other => panic!("{call}: {other:?}"),
    };
    refused(pool.apply(captures, 1).map(drop), "apply");
    refused(pool.apply_async(captures, 1).map(drop), "apply_async");
    refused(
        pool.apply_async_with(captures, 1, |_| {}, |_| {}).map(drop),
        "apply_async_with",
    );
    refused(pool.map(captures, 0..10).map(drop), "map");
    refused(pool.map_async(captures, 0..10).map(drop), "map_async");
    refused(
        pool.map_each_async(captures, 0..10, None).map(drop),
        "map_each_async",
    );
    let mut imap = pool.imap(captures, 0..10);
    refused(imap.next().unwrap().map(drop), "imap");
    assert!(
        imap.next().is_none(),
        "an imap refused answers nothing more"
    );
    let mut unordered = pool.imap_unordered(captures, 0..10);
    refused(unordered.next().unwrap().1.map(drop), "imap_unordered");
    assert!(unordered.next().is_none());
    let captures2 = move |a: u64, b: u64| a + b + k;
    refused(pool.starmap(captures2, [(1, 2)]).map(drop), "starmap");
    refused(
        pool.starmap_async(captures2, [(1, 2)]).map(drop),
        "starmap_async",
    );
    let message = pool.map(captures, 0..1).unwrap_err().to_string();
    assert!(
        message.contains("8 bytes") && message.contains("with_fn"),
        "{message}"
    );
    // Nothing was sent, and the pool goes on.
    assert_eq!(pool.map(square, 0..100).unwrap(), want);
}

#[test]
fn a_panicking_task_reports_message_and_location_and_the_worker_goes_on() {
    let _dog = Watchdog::arm(LIMIT, "panics");
    let pool = Pool::new(1).unwrap();
    let before = pool.pids();
    match pool.apply(boom, 3) {
        Err(Error::Panicked { message, location }) => {
            assert!(message.contains("no threes, got 3"), "{message}");
            assert!(location.contains("tests/pool.rs"), "{location}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(pool.apply(boom, 4).unwrap(), 4);
    assert_eq!(pool.pids(), before, "the worker survived its task's panic");
    match pool.map(boom, 0..6) {
        Err(Error::Item { index: 3, source }) => assert!(matches!(*source, Error::Panicked { .. })),
        other => panic!("expected item 3 to fail, got {other:?}"),
    }
    // imap reports the failed item and goes on.
    let got: Vec<_> = pool.imap(boom, 0..6).collect();
    assert_eq!(got.len(), 6);
    assert!(
        got[3].is_err()
            && got
                .iter()
                .enumerate()
                .all(|(i, r)| i == 3 || r.as_ref().ok() == Some(&(i as u32)))
    );
}

#[test]
fn exactly_the_task_of_a_worker_that_dies_fails_and_the_rest_complete() {
    let _dog = Watchdog::arm(LIMIT, "deaths");
    let pool = Pool::new(2).unwrap();
    for (how, expect) in [
        (0, Exit::Signal(libc::SIGKILL)),
        (1, Exit::Signal(libc::SIGABRT)),
        (2, Exit::Code(3)),
        (3, Exit::Signal(libc::SIGSEGV)),
    ] {
        let before = pool.pids();
        let others: Vec<_> = (0..20)
            .map(|i| pool.apply_async(square, i).unwrap())
            .collect();
        match pool.apply(die, how) {
            Err(Error::WorkerDied { pid, how: got }) => {
                assert_eq!(got, expect, "death {how}");
                assert!(before.contains(&pid), "{pid} was a worker");
            }
            other => panic!("death {how}: expected WorkerDied, got {other:?}"),
        }
        for (i, r) in others.into_iter().enumerate() {
            assert_eq!(
                r.get().unwrap(),
                square(i as u64),
                "death {how}: task {i} was not lost"
            );
        }
        let after = pool.pids();
        assert_eq!(after.len(), 2, "the dead worker was replaced");
        assert_ne!(after, before);
    }
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

#[test]
fn a_death_in_a_chunk_fails_one_item_and_reruns_the_others() {
    let _dog = Watchdog::arm(LIMIT, "chunk death");
    let pool = Pool::new(2).unwrap();
    // One chunk of ten with the killer in the middle.
    let items: Vec<u32> = (10..20).map(|i| if i == 15 { 0 } else { i }).collect();
    let out: Vec<_> = pool.imap_with(die, items.clone(), 10, 1).collect();
    for (i, r) in out.iter().enumerate() {
        if items[i] == 0 {
            assert!(
                matches!(r, Err(Error::WorkerDied { .. })),
                "item {i}: {r:?}"
            );
        } else {
            assert_eq!(*r.as_ref().unwrap(), items[i], "item {i}");
        }
    }
}

#[test]
fn a_task_past_its_timeout_is_killed_and_its_worker_replaced() {
    let _dog = Watchdog::arm(LIMIT, "timeout");
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let quick = pool.apply_async(nap, 10).unwrap();
    let t = Instant::now();
    match pool.apply(nap, 30_000) {
        Err(Error::TimedOut { limit, .. }) => assert_eq!(limit, Duration::from_millis(200)),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(quick.get().unwrap(), 10);
    assert_eq!(pool.apply(nap, 1).unwrap(), 1);
}

#[test]
fn maxtasksperchild_replaces_workers_and_the_initializer_runs_in_each() {
    let _dog = Watchdog::arm(LIMIT, "maxtasks");
    let dir = std::env::temp_dir().join(multiproc_testkit::unique_name("init"));
    std::fs::create_dir(&dir).unwrap();
    let d = dir.clone();
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .initializer(move || {
            std::fs::write(d.join(std::process::id().to_string()), b"").unwrap();
        })
        .build()
        .unwrap();
    let pids: HashSet<u32> = (0..30).map(|_| pool.apply(my_pid, ()).unwrap()).collect();
    assert!(
        pids.len() >= 10,
        "30 tasks, 3 per worker: {} workers",
        pids.len()
    );
    let inited: HashSet<u32> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    assert!(
        pids.is_subset(&inited),
        "every worker that ran a task ran the initializer first"
    );
    // The pool first: a worker that answered its last task is replaced at
    // once, and the replacement's initializer may write into the directory
    // while it is being removed (`DirectoryNotEmpty`, seen once in CI).
    drop(pool);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn failing_init() {
    panic!("the initializer fails");
}

#[test]
fn an_initializer_that_keeps_failing_fails_what_is_pending_instead_of_respawning_forever() {
    let _dog = Watchdog::arm(LIMIT, "init fails");
    let pool = Pool::builder()
        .processes(2)
        .initializer(failing_init)
        .build()
        .unwrap();
    match pool.apply(square, 2) {
        Err(Error::InitializerFailed { deaths, last }) => {
            assert_eq!(deaths, 3);
            assert_eq!(last, Exit::Code(70));
        }
        other => panic!("expected InitializerFailed, got {other:?}"),
    }
    assert!(matches!(
        pool.apply(square, 2),
        Err(Error::InitializerFailed { .. })
    ));
}

/// A result whose `Deserialize` panics on 30 (a type that checks its values
/// by panicking). Decoded in this process, by whoever drives the pool.
#[derive(Debug, serde::Serialize)]
struct NoThirty(u64);

impl<'de> serde::Deserialize<'de> for NoThirty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NoThirty, D::Error> {
        let v = <u64 as serde::Deserialize>::deserialize(d)?;
        assert!(v != 30, "thirty is not allowed");
        Ok(NoThirty(v))
    }
}

fn times_ten(x: u64) -> NoThirty {
    NoThirty(x * 10)
}

/// A caller that drove a moment ago (a blocking `apply`) and then only
/// submits, with callbacks, and never waits: the background thread, which
/// leaves the driving to callers for a short while after they drive, takes
/// it over, sends the tasks the inboxes had no room for, and runs every
/// callback.
#[test]
fn work_a_caller_stops_driving_is_driven_for_it() {
    let _dog = Watchdog::arm(LIMIT, "driving taken over");
    let pool = Pool::new(2).unwrap();
    for x in 0..50 {
        assert_eq!(pool.apply(square, x).unwrap(), x * x);
    }
    let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
    let handles: Vec<_> = (0..500u64)
        .map(|x| {
            let tx = tx.clone();
            pool.apply_async_with(square, x, move |&v| tx.send((x, v)).unwrap(), |_| {})
                .unwrap()
        })
        .collect();
    let mut got = HashSet::new();
    for _ in 0..500 {
        let (x, v) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a callback ran");
        assert_eq!(v, x * x);
        got.insert(x);
    }
    assert_eq!(got.len(), 500);
    drop(handles);
}

/// A result type whose `Deserialize` panics, decoded by the pool's
/// background thread (a job with callbacks, nobody waiting): the job fails
/// with `DecodePanicked` and its error callback runs; the pool goes on. The
/// background thread died of it, and the job's `get`, and the pool's `join`,
/// waited for ever.
#[test]
fn a_result_whose_deserialize_panics_fails_its_item_and_the_pool_goes_on() {
    let _dog = Watchdog::arm(LIMIT, "result Deserialize panics");
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let (ok, failed) = (tx.clone(), tx.clone());
    let mut h = pool
        .apply_async_with(
            times_ten,
            3,
            move |v| ok.send(format!("{v:?}")).unwrap(),
            move |e| failed.send(e.to_string()).unwrap(),
        )
        .unwrap();
    // Nobody waits: the background thread decodes, for the callbacks.
    let called = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(called.contains("thirty is not allowed"), "{called}");
    assert!(matches!(
        h.get_timeout(Duration::from_secs(30)),
        Err(Error::DecodePanicked { ref message }) if message == "thirty is not allowed"
    ));
    // A map: the item that panics is the error, by its index; each item of
    // `map_each` alone.
    assert!(matches!(
        pool.map_chunked(times_ten, 0..10, 4),
        Err(Error::Item { index: 3, ref source }) if matches!(**source, Error::DecodePanicked { .. })
    ));
    let each = pool
        .map_each_async(times_ten, [1, 3, 4], Some(1))
        .unwrap()
        .get()
        .unwrap();
    assert_eq!(each[0].as_ref().unwrap().0, 10);
    assert!(matches!(each[1], Err(Error::DecodePanicked { .. })));
    assert_eq!(each[2].as_ref().unwrap().0, 40);
    let got: Vec<u64> = pool
        .imap(times_ten, [2u64, 3, 5])
        .map(|r| r.map_or(0, |v| v.0))
        .collect();
    assert_eq!(got, [20, 0, 50]);
    let p = pmap(&[1u64, 2, 3, 4], |&x| times_ten(x));
    assert!(
        matches!(p, Err(Error::Item { index: 2, ref source }) if matches!(**source, Error::DecodePanicked { .. })),
        "{p:?}"
    );
    assert_eq!(pool.apply(times_ten, 1).unwrap().0, 10);
    pool.close();
    pool.join().unwrap();
}

/// The pid of the test's own process: [`DropPanics`] panics there only.
static PARENT: AtomicUsize = AtomicUsize::new(0);

/// A result whose `Drop` panics in the test's process (a user's type with a
/// bug); in a worker it drops quietly.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DropPanics(u64);

impl Drop for DropPanics {
    fn drop(&mut self) {
        let here = std::process::id() as usize == PARENT.load(Ordering::SeqCst);
        if here && !std::thread::panicking() {
            panic!("dropping {} panics", self.0);
        }
    }
}

fn drop_panics(x: u64) -> DropPanics {
    // Long enough that the handle is dropped before the answer comes (else
    // the outcome would be dropped with it, in the test's thread).
    std::thread::sleep(Duration::from_millis(50));
    DropPanics(x)
}

/// A dropped handle's job whose callbacks ran leaves its outcome to the
/// pool, which drops it on the thread that ran them (here the background
/// thread): a `Drop` that panics there does not end that thread, and the
/// next such job's callbacks run too.
#[test]
fn a_dropped_handles_outcome_whose_drop_panics_leaves_the_pool_working() {
    let _dog = Watchdog::arm(LIMIT, "outcome Drop panics");
    PARENT.store(std::process::id() as usize, Ordering::SeqCst);
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    for x in [1, 2] {
        let tx = tx.clone();
        drop(
            pool.apply_async_with(drop_panics, x, move |v| tx.send(v.0).unwrap(), |_| {})
                .unwrap(),
        );
        // Nobody waits: the background thread runs the callback.
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), x);
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// [`drop_panics`], but item 2 of a map panics in the worker.
fn drop_panics_but_two(x: u64) -> DropPanics {
    assert_ne!(x, 2, "two is refused");
    drop_panics(x)
}

/// The pool drops results of the user's type on its own threads in two more
/// places: a result whose callback panicked (the job's outcome is then that
/// panic), and a map's results decoded before a later item that failed (the
/// outcome is that item's error). A `Drop` that panics there ends neither
/// the thread nor the job: each handle answers its error, and the pool goes
/// on (before, the background thread died there and `get` waited for ever).
#[test]
fn results_dropped_by_the_pool_whose_drop_panics_leave_it_working() {
    let _dog = Watchdog::arm(LIMIT, "dropped results' Drop panics");
    PARENT.store(std::process::id() as usize, Ordering::SeqCst);
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let said = tx.clone();
    let mut h = pool
        .apply_async_with(
            drop_panics,
            1,
            move |v| {
                said.send(format!("called with {}", v.0)).unwrap();
                panic!("callback trouble")
            },
            |_| {},
        )
        .unwrap();
    // Nobody waits: the background thread runs the callback, then drops
    // the result it was given.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(30)).unwrap(),
        "called with 1"
    );
    match h.get_timeout(Duration::from_secs(30)) {
        Err(Error::CallbackPanicked { message }) => assert!(message.contains("callback trouble")),
        other => panic!("expected CallbackPanicked, got {other:?}"),
    }
    let said = tx.clone();
    let mut m = pool
        .map_async_with(
            drop_panics_but_two,
            0..4,
            |_| {},
            move |e| said.send(e.to_string()).unwrap(),
        )
        .unwrap();
    let called = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(called.contains("two is refused"), "{called}");
    assert!(matches!(
        m.get_timeout(Duration::from_secs(30)),
        Err(Error::Item { index: 2, ref source }) if matches!(**source, Error::Panicked { .. })
    ));
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn callbacks_run_in_this_process_and_a_panicking_one_is_the_jobs_error() {
    let _dog = Watchdog::arm(LIMIT, "callbacks");
    let pool = Pool::new(2).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..6u32 {
        let (s, e) = (Arc::clone(&seen), Arc::clone(&errors));
        handles.push(
            pool.apply_async_with(
                boom,
                i,
                move |v| s.lock().unwrap().push(*v),
                move |_| {
                    e.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap(),
        );
    }
    // Nobody waits: the background thread files the answers and runs the callbacks.
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() + errors.load(Ordering::SeqCst) < 6 {
        assert!(
            Instant::now() < deadline,
            "callbacks did not run by themselves"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 4, 5]);
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    drop(handles);
    // A callback that panics: the job's result says so; the pool goes on.
    let r = pool
        .apply_async_with(square, 3, |_| panic!("callback trouble"), |_| {})
        .unwrap();
    match r.get() {
        Err(Error::CallbackPanicked { message }) => assert!(message.contains("callback trouble")),
        other => panic!("expected CallbackPanicked, got {other:?}"),
    }
    let m = pool
        .map_async_with(square, [1, 2, 3], |v| assert_eq!(v, &[1, 4, 9]), |_| {})
        .unwrap();
    assert_eq!(m.get().unwrap(), [1, 4, 9]);
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

#[test]
fn close_join_terminate_and_submitting_after_them() {
    let _dog = Watchdog::arm(LIMIT, "close join");
    let pool = Pool::new(2).unwrap();
    assert!(matches!(pool.join(), Err(Error::NotClosed)));
    let rs: Vec<_> = (0..5)
        .map(|i| pool.apply_async(nap, 20 + i).unwrap())
        .collect();
    let pids = pool.pids();
    pool.close();
    assert!(matches!(pool.apply_async(square, 1), Err(Error::Closed)));
    pool.join_timeout(Duration::MAX).unwrap();
    for (i, r) in rs.into_iter().enumerate() {
        assert_eq!(
            r.get().unwrap(),
            20 + i as u64,
            "queued work finished before join returned"
        );
    }
    assert_gone(&pids);
    // terminate: what has not answered fails, nothing waits.
    let pool = Pool::new(2).unwrap();
    let long = pool.apply_async(nap, 30_000).unwrap();
    let queued: Vec<_> = (0..20)
        .map(|_| pool.apply_async(nap, 30_000).unwrap())
        .collect();
    let pids = pool.pids();
    let t = Instant::now();
    pool.terminate();
    assert!(matches!(long.get(), Err(Error::Terminated)));
    for q in queued {
        assert!(matches!(q.get(), Err(Error::Terminated | Error::Cancelled)));
    }
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(matches!(pool.apply(square, 1), Err(Error::Closed)));
    assert_gone(&pids);
}

#[test]
fn get_timeout_ready_successful_and_cancel() {
    let _dog = Watchdog::arm(LIMIT, "async result");
    let pool = Pool::new(1).unwrap();
    let mut slow = pool.apply_async(nap, 300).unwrap();
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    // Queued behind the slow one in a pool of one with an inbox of 8: the
    // ninth is still unsent.
    let queued: Vec<_> = (0..8).map(|_| pool.apply_async(nap, 1).unwrap()).collect();
    let last = pool.apply_async(nap, 1).unwrap();
    assert!(last.cancel());
    assert!(matches!(last.get(), Err(Error::Cancelled)));
    assert_eq!(slow.get_timeout(Duration::from_secs(20)).unwrap(), 300);
    assert!(matches!(
        slow.get_timeout(Duration::from_secs(1)),
        Err(Error::AlreadyTaken)
    ));
    for q in queued {
        assert_eq!(q.get().unwrap(), 1);
    }
    // A timeout too large for the clock ("for ever") waits as `get` does (it
    // panicked on the `Instant` it overflowed).
    let mut long = pool.apply_async(nap, 30).unwrap();
    long.wait_timeout(Duration::MAX).unwrap();
    assert_eq!(long.get_timeout(Duration::MAX).unwrap(), 30);
    let bad = pool.apply_async(boom, 3).unwrap();
    bad.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(bad.successful(), Some(false));
    // A map asked whether it succeeded, then taken; a map taken at once
    // (decoded chunk by chunk as it runs), one with a failing item, and one
    // taken after a timed-out get.
    let want: Vec<u64> = (0..100).map(square).collect();
    let asked = pool.map_async_chunked(square, 0..100u64, Some(7)).unwrap();
    asked.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(asked.successful(), Some(true));
    assert_eq!(asked.get().unwrap(), want);
    let at_once = pool.map_async_chunked(square, 0..100u64, Some(7)).unwrap();
    assert_eq!(at_once.get().unwrap(), want);
    let failing = pool.map_async_chunked(boom, 0..10u32, Some(2)).unwrap();
    assert!(matches!(failing.get(), Err(Error::Item { index: 3, .. })));
    let mut later = pool
        .map_async_chunked(nap, [300u64, 1, 1], Some(1))
        .unwrap();
    assert!(matches!(
        later.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert_eq!(later.get().unwrap(), [300, 1, 1]);
}

#[test]
fn arguments_and_results_of_any_size() {
    let _dog = Watchdog::arm(LIMIT, "sizes");
    let pool = Pool::new(2).unwrap();
    // Up to a slot's size, just past it, past the lane, far past it.
    let slot = multiproc_pool::DEFAULT_MAX_INLINE;
    let sizes = [
        0,
        1,
        1000,
        16 << 10,
        100_000,
        slot,
        slot + 1,
        4 << 20,
        64 << 20,
    ];
    for n in sizes {
        let v = make_bytes(n);
        let sum = v.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        assert_eq!(pool.apply(bytes_len, v).unwrap(), (n, sum), "{n} bytes in");
        let back = pool.apply(make_bytes, n).unwrap();
        assert_eq!(back.len(), n, "{n} bytes out");
        assert!(back.iter().enumerate().all(|(i, &b)| b == i as u8));
    }
    // The sizes above fit a slot, fit the default lane (2 MiB) or pass it;
    // with slots of 16 KiB and a lane of 64 KiB the same messages all stream
    // past the lane.
    let small = Pool::builder()
        .processes(2)
        .max_inline(16 << 10)
        .lane_bytes(64 << 10)
        .build()
        .unwrap();
    for n in [100_000usize, 4 << 20] {
        let v = make_bytes(n);
        let sum = v.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        assert_eq!(small.apply(bytes_len, v).unwrap(), (n, sum), "{n} bytes in");
        assert_eq!(small.apply(make_bytes, n).unwrap(), make_bytes(n));
    }
    assert!(matches!(
        Pool::builder().processes(1).lane_bytes(1000).build(),
        Err(Error::Queue(multiproc_queue::Error::LaneSize {
            bytes: 1000
        }))
    ));
}

fn buf_len(v: serde_bytes::ByteBuf) -> (usize, u8) {
    bytes_len(v.into_vec())
}

fn make_buf(n: usize) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(make_bytes(n))
}

/// Byte buffers that serde encodes as one block (the crate docs' advice for
/// bytes), in and out, from nothing to past the lane.
#[test]
fn byte_buffers_go_in_and_out_whole() {
    let _dog = Watchdog::arm(LIMIT, "byte buffers");
    let pool = Pool::new(2).unwrap();
    for n in [0usize, 1, 1000, 1 << 20, 3 << 20] {
        let v = make_bytes(n);
        let sum = v.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        let arg = serde_bytes::ByteBuf::from(v);
        assert_eq!(pool.apply(buf_len, arg).unwrap(), (n, sum), "{n} bytes in");
        assert_eq!(
            pool.apply(make_buf, n).unwrap().into_vec(),
            make_bytes(n),
            "{n} out"
        );
    }
}

/// The `VmFlags` of the mapping of this process that holds `addr`.
fn vm_flags_at(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split(' ').next().and_then(|r| r.split_once('-'));
        if let Some((lo, hi)) = range.filter(|_| !line.starts_with("VmFlags")) {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside && line.starts_with("VmFlags:") {
            return line.to_owned();
        }
    }
    panic!("no mapping holds {addr:#x}");
}

/// The mapping that holds `addr` is advised huge pages (`hg`), unless the
/// kernel has no transparent huge pages (it refuses the advice then).
fn assert_huge_pages_advised(addr: usize) {
    if std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        let flags = vm_flags_at(addr);
        assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
    }
}

#[test]
fn a_maps_output_of_32_mib_or_more_is_advised_huge_pages() {
    let _dog = Watchdog::arm(LIMIT, "huge output");
    let pool = Pool::new(2).unwrap();
    let n = 5_000_000u64; // 40 MB of results
    let out = pool.map(square, 0..n).unwrap();
    assert_eq!(out.len() as u64, n);
    assert!(out
        .iter()
        .enumerate()
        .all(|(i, &v)| v == i as u64 * i as u64));
    assert_huge_pages_advised(out.as_ptr() as usize + (8 << 20));
}

#[test]
fn a_pmaps_output_of_32_mib_or_more_is_advised_huge_pages() {
    let _dog = Watchdog::arm(LIMIT, "huge pmap output");
    let items: Vec<u64> = (0..5_000_000).collect(); // 40 MB of results
    let out = multiproc_pool::pmap(&items, |&x| square(x)).unwrap();
    assert_eq!(out.len(), items.len());
    assert!(out.iter().zip(&items).all(|(&v, &x)| v == square(x)));
    assert_huge_pages_advised(out.as_ptr() as usize + (8 << 20));
}

/// A pmap's results are made before its workers are forked and kept from
/// their forks (a child forked meanwhile gets zeros there, where the caller's
/// writes took a copy-on-write fault a page): what it returns is plain
/// memory again, which a child forked afterwards reads whole. (That a failed
/// pmap's results are unmarked before they are freed is a unit test in
/// `pmap.rs`, which can see the marks.)
#[test]
fn a_pmaps_results_reach_a_child_forked_after_it() {
    let _dog = Watchdog::arm(LIMIT, "pmap results after a fork");
    let items: Vec<u64> = (0..400_000).collect(); // 3.2 MB of results
    let want: u64 = items.iter().map(|&x| square(x)).fold(0, u64::wrapping_add);
    let check = |out: &[u64]| {
        let (ptr, len) = (out.as_ptr() as usize, out.len());
        multiproc_testkit::fork(move || {
            // SAFETY: the parent's live vector, copied into this child.
            let out = unsafe { std::slice::from_raw_parts(ptr as *const u64, len) };
            i32::from(out.iter().fold(0, |a: u64, &v| a.wrapping_add(v)) != want)
        })
        .wait(LIMIT)
    };
    let out = multiproc_pool::pmap(&items, |&x| square(x)).unwrap();
    assert_eq!(check(&out), multiproc_testkit::ChildExit::Exited(0));
}

/// A large argument whose first byte says whether its worker dies (1) on it.
fn sum_or_die(v: Vec<u8>) -> (usize, u8) {
    if v.first() == Some(&1) {
        std::process::abort();
    }
    bytes_len(v)
}

#[test]
fn large_chunks_stream_to_every_worker_at_once_and_a_death_among_them_fails_one_item() {
    let _dog = Watchdog::arm(LIMIT, "large chunks");
    let pool = Pool::new(2).unwrap();
    // Items past the inline size, one a chunk: every task streams, to both
    // workers at a time; item 5 kills its worker mid-map.
    let items: Vec<Vec<u8>> = (0..12u8)
        .map(|i| {
            let mut v = make_bytes(multiproc_pool::DEFAULT_MAX_INLINE + 1000 + usize::from(i));
            v[0] = if i == 5 { 1 } else { 2 };
            v
        })
        .collect();
    let want: Vec<(usize, u8)> = items.iter().map(|v| bytes_len(v.clone())).collect();
    let out: Vec<_> = pool.imap_with(sum_or_die, items.clone(), 1, 4).collect();
    assert_eq!(out.len(), items.len());
    for (i, r) in out.iter().enumerate() {
        if i == 5 {
            assert!(
                matches!(r, Err(Error::WorkerDied { .. })),
                "item {i}: {r:?}"
            );
        } else {
            assert_eq!(r.as_ref().unwrap(), &want[i], "item {i}");
        }
    }
    // A map of the same items without the killer gives them all, in order.
    let fine: Vec<Vec<u8>> = items
        .into_iter()
        .map(|mut v| {
            v[0] = 2;
            v
        })
        .collect();
    let want: Vec<(usize, u8)> = fine.iter().map(|v| bytes_len(v.clone())).collect();
    assert_eq!(pool.map_chunked(sum_or_die, fine, 1).unwrap(), want);
}

/// Reads items while counting how many were read.
struct Counted<'a> {
    next: u64,
    read: &'a AtomicUsize,
}

impl Iterator for Counted<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.read.fetch_add(1, Ordering::SeqCst);
        self.next += 1;
        Some(self.next - 1)
    }
}

#[test]
fn imap_over_an_endless_input_reads_a_bounded_way_ahead() {
    let _dog = Watchdog::arm(LIMIT, "imap endless");
    let pool = Pool::new(2).unwrap();
    let read = AtomicUsize::new(0);
    let (chunk, buffer) = (3, 2);
    let mut it = pool.imap_with(
        square,
        Counted {
            next: 0,
            read: &read,
        },
        chunk,
        buffer,
    );
    for i in 0..50u64 {
        assert_eq!(it.next().unwrap().unwrap(), square(i));
        let ahead = read.load(Ordering::SeqCst) as u64 - (i + 1);
        assert!(
            ahead <= ((2 + buffer) * chunk) as u64,
            "read {ahead} items ahead at {i}"
        );
    }
    drop(it);
    let got: Vec<u64> = pool
        .imap(
            square,
            Counted {
                next: 0,
                read: &read,
            },
        )
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, [0, 1, 4, 9, 16]);
}

/// An `imap` read on after `terminate` or after `join` (which stop the
/// workers) ends: its results that came are yielded in order, then one error
/// saying why, then the end — never a wait for workers that are gone (it once
/// spun for ever after `terminate`, and slept for ever after `join`).
#[test]
fn an_imap_read_on_after_terminate_or_join_ends_with_an_error() {
    let _dog = Watchdog::arm(LIMIT, "imap after the end");
    let read = AtomicUsize::new(0);
    let endless = || Counted {
        next: 0,
        read: &read,
    };
    for unordered in [false, true] {
        // Terminated: everything not yet taken fails at once.
        let pool = Pool::new(2).unwrap();
        let mut rest: Vec<Result<u64, Error>> = if unordered {
            let mut it = pool.imap_unordered(nap, (0..100).map(|_| 5));
            assert!(it.next().unwrap().1.is_ok());
            pool.terminate();
            it.map(|(_, r)| r).collect()
        } else {
            let mut it = pool.imap(nap, (0..100).map(|_| 5));
            assert!(it.next().unwrap().is_ok());
            pool.terminate();
            it.collect()
        };
        assert!(
            matches!(rest.pop(), Some(Err(Error::Terminated))),
            "unordered {unordered}"
        );
        assert!(
            rest.len() < 99 && rest.iter().all(Result::is_ok),
            "{rest:?}"
        );

        // Joined: what was sent ahead is answered and yielded, then Joined,
        // even over an endless input.
        let pool = Pool::new(2).unwrap();
        let mut it = pool.imap_with(square, endless(), 1, 2);
        assert_eq!(it.next().unwrap().unwrap(), 0);
        pool.close();
        pool.join().unwrap();
        let rest: Vec<_> = it.by_ref().take(1000).collect();
        let (last, before) = rest.split_last().unwrap();
        assert!(matches!(last, Err(Error::Joined)), "{last:?}");
        for (i, r) in before.iter().enumerate() {
            assert_eq!(*r.as_ref().unwrap(), square(i as u64 + 1));
        }
        assert!(before.len() <= 4, "{} sent ahead", before.len());
        assert!(it.next().is_none());
        assert!(matches!(
            pool.imap(square, 0..3).next(),
            Some(Err(Error::Closed))
        ));
    }
}

/// A callback that calls its pool again and waits (a blocking `apply`, an
/// `apply_async` with a callback of its own) completes, whether the caller's
/// own `get` or the background thread runs it: the thread that runs callbacks
/// drives the nested call itself (Python's pool deadlocks here).
#[test]
fn a_callback_that_calls_its_pool_again_completes() {
    let _dog = Watchdog::arm(LIMIT, "callback calls its pool");
    let pool = Arc::new(Pool::new(2).unwrap());
    for wait_first in [false, true] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (p, s) = (Arc::clone(&pool), Arc::clone(&seen));
        let r = pool
            .apply_async_with(
                square,
                3,
                move |v: &u64| {
                    let a = p.apply(square, *v).unwrap();
                    let inner = Arc::clone(&s);
                    let b = p
                        .apply_async_with(
                            square,
                            a,
                            move |w: &u64| inner.lock().unwrap().push(*w),
                            |_| {},
                        )
                        .unwrap()
                        .get()
                        .unwrap();
                    s.lock().unwrap().extend([a, b]);
                },
                |_| {},
            )
            .unwrap();
        if wait_first {
            // Nobody waits: the background thread runs the callback.
            while !r.ready() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(r.get().unwrap(), 9);
        assert_eq!(*seen.lock().unwrap(), [6561, 81, 6561]);
    }
}

/// A callback, run by the background thread, that holds the last handle of
/// its pool and drops it: the pool ends (its workers with it) and the
/// callback returns normally (the thread once tried to join itself and
/// panicked).
#[test]
fn a_callback_that_drops_the_last_handle_of_its_pool_ends_it() {
    let _dog = Watchdog::arm(LIMIT, "callback drops its pool");
    let pool = Arc::new(Pool::new(1).unwrap());
    let pids = pool.pids();
    let (tx, rx) = std::sync::mpsc::channel();
    let mine = Arc::clone(&pool);
    let r = pool
        .apply_async_with(
            square,
            4,
            move |_: &u64| {
                drop(mine);
                tx.send(()).unwrap();
            },
            |_| {},
        )
        .unwrap();
    drop(pool);
    // Sent after the drop: the drop returned.
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the callback did not get past dropping its pool");
    // The pool was terminated while the callback ran: its result, or
    // Terminated if the get came first; never the callback's panic.
    match r.get() {
        Ok(v) => assert_eq!(v, 16),
        Err(e) => assert!(matches!(e, Error::Terminated), "{e}"),
    }
    assert_gone(&pids);
}

fn pid_after(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// A `pmap` in a `pmap`'s closure is refused as Python refuses children to
/// its daemonic pool workers; a pool made in a pmap worker, and a pmap in a
/// pool's task, work.
#[test]
fn a_pmap_inside_a_pmap_is_refused_and_the_other_nestings_work() {
    let _dog = Watchdog::arm(LIMIT, "nested");
    let inner = pmap(&[1u64, 2], |&x| {
        matches!(
            pmap(&[x], |&y| y),
            Err(Error::Proc(multiproc_proc::Error::DaemonChildren))
        )
    })
    .unwrap();
    assert_eq!(inner, [true, true]);
    fn pmap_in_a_task(x: u64) -> u64 {
        pmap(&[1u64, 2, 3], |y| y * x).unwrap().iter().sum()
    }
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(pmap_in_a_task, [1u64, 10]).unwrap(), [6, 60]);
    let sums = pmap(&[3u64, 4], |&n| {
        let pool = Pool::new(2).unwrap();
        pool.map(square, 0..n).unwrap().iter().sum::<u64>()
    })
    .unwrap();
    assert_eq!(sums, [5, 14]);
    assert!(zombie_children().is_empty());
}

/// More workers than one queue takes writers (64, with the pool's own
/// threads): a pool of `cpu_count()` on a machine of 64 CPUs or more. Each
/// group of workers answers through a queue of its own; before, every worker
/// past the queue's table exited at its first answer and every map failed
/// (`WorkerDied`, exit code 0), and so did a `pmap` of 64 processes.
#[test]
fn a_pool_and_a_pmap_of_more_workers_than_one_queue_takes_work() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "many workers");
    let pool = Pool::new(100).unwrap();
    let pids: HashSet<u32> = pool.pids().into_iter().collect();
    assert_eq!(pids.len(), 100);
    for _ in 0..2 {
        let got = pool.map(square, 0..3_000u64).unwrap();
        assert_eq!(got, (0..3_000u64).map(square).collect::<Vec<_>>());
    }
    // Tasks enough for each worker, and who ran them: every group answers.
    // Tasks of 2 ms: trivial ones go to the workers that are awake (a sleeping
    // one costs a wake-up), which need not be 64 of a hundred. Where the
    // caller submits slower than the workers finish (under AddressSanitizer,
    // 62 workers answered 400 tasks once), the workers that are free again
    // take the next ones: bursts until more than 64 have answered.
    let mut ran = HashSet::new();
    for _ in 0..10 {
        let handles: Vec<_> = (0..400)
            .map(|_| pool.apply_async(pid_after, 2).unwrap())
            .collect();
        ran.extend(handles.into_iter().map(|h| h.get().unwrap()));
        if ran.len() > 64 {
            break;
        }
    }
    assert!(ran.is_subset(&pids));
    assert!(ran.len() > 64, "only {} workers answered", ran.len());
    let got: Vec<u64> = pool
        .imap_with(square, 0..1_000u64, 1, 200)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..1_000u64).map(square).collect::<Vec<_>>());
    drop(pool);
    let items: Vec<u64> = (0..3_000).collect();
    let options = PmapOptions {
        processes: 100,
        chunksize: 1,
        timeout: None,
    };
    let got = pmap_with(&items, |&x| square(x), options).unwrap();
    assert_eq!(got, items.iter().map(|&x| square(x)).collect::<Vec<_>>());
    assert!(zombie_children().is_empty());
}

#[test]
fn a_pool_in_a_process_with_busy_threads_starts_replaces_and_recycles_workers() {
    let _dog = Watchdog::arm(LIMIT, "threads");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, busy) = (Arc::clone(&stop), Arc::clone(&busy));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    *busy.lock().unwrap() += 1; // a lock a fork could copy held
                    let _ = Vec::<u8>::with_capacity(64); // and the allocator's
                }
            })
        })
        .collect();
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(2)
        .build()
        .unwrap();
    let pids: HashSet<u32> = (0..12).map(|_| pool.apply(pid_after, 1).unwrap()).collect();
    assert!(pids.len() >= 6, "recycled every two tasks: {pids:?}");
    assert!(matches!(pool.apply(die, 0), Err(Error::WorkerDied { .. })));
    assert_eq!(
        pool.map(square, 0..100).unwrap(),
        (0..100).map(square).collect::<Vec<_>>()
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_pool_around_a_closure_keeps_what_it_captured_in_every_worker() {
    let _dog = Watchdog::arm(LIMIT, "with_fn");
    let table: Vec<u64> = (0..10_000).map(|i| i * 7).collect();
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(2)
        .build_with_fn(move |i: usize| table[i])
        .unwrap();
    assert_eq!(pool.apply(3).unwrap(), 21);
    assert_eq!(pool.map([1, 2, 9999]).unwrap(), [7, 14, 69_993]);
    let got: Vec<u64> = pool.imap(0..10).map(Result::unwrap).collect();
    assert_eq!(got, (0..10).map(|i| i * 7).collect::<Vec<_>>());
    // Replacements (every two tasks) inherit it too.
    for i in 0..10 {
        assert_eq!(pool.apply(i).unwrap(), i as u64 * 7);
    }
    // Its blocking calls have their timeout forms too.
    let mut it = pool.imap(0..3);
    assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap().unwrap(), 0);
    drop(it);
    assert!(matches!(pool.join_timeout(LIMIT), Err(Error::NotClosed)));
    pool.close();
    pool.join_timeout(LIMIT).unwrap();
}

/// A pool (and a `pmap`) made while another thread is in the middle of a
/// panic, its hook still running: the thread holds the hook's lock until the
/// hook returns, and a zygote forked meanwhile kept it held for ever, so
/// every worker hung in its own `set_hook` at start and no task answered
/// (seen with a backtrace being printed by a test beside it). The pool waits
/// for the hook before it forks.
#[test]
fn a_pool_made_while_another_thread_panics_works() {
    let _dog = Watchdog::arm(LIMIT, "pool made during a panic");
    static SLOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    std::panic::set_hook(Box::new(|_| {
        // A hook that takes its time (a backtrace printed, a log flushed).
        if SLOW.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(500));
        }
    }));
    let panicking = std::thread::spawn(|| panic!("a panic elsewhere"));
    // Inside the hook by now.
    std::thread::sleep(Duration::from_millis(100));
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let panicking2 = std::thread::spawn(|| panic!("another panic elsewhere"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pmap(&[1u64, 2], |&x| square(x)).unwrap(), [1, 4]);
    SLOW.store(false, Ordering::SeqCst);
    assert!(panicking.join().is_err() && panicking2.join().is_err());
    drop(std::panic::take_hook());
}

/// A pool around a closure has `Pool`'s calls, without the function: the
/// callbacks (run whether or not the handle is kept), the chunk sizes, every
/// item's outcome, `imap`'s chunk and read-ahead. (It had only `apply`,
/// `apply_async`, `map`, `map_async` and `imap`s of chunks of one.)
#[test]
fn a_pool_around_a_closure_has_the_pools_calls() {
    let _dog = Watchdog::arm(LIMIT, "with_fn calls");
    let offset = 100u64;
    let pool = Pool::with_fn(2, move |x: u64| {
        assert!(x != 13, "no thirteen");
        x + offset
    })
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for x in [1, 13] {
        let (ok, failed) = (tx.clone(), tx.clone());
        pool.apply_async_with(
            x,
            move |v| ok.send(format!("ok {v}")).unwrap(),
            move |e| failed.send(format!("failed: {e}")).unwrap(),
        )
        .unwrap();
    }
    let mut got: Vec<String> = (0..2).map(|_| rx.recv_timeout(LIMIT).unwrap()).collect();
    got.sort();
    assert_eq!(got[1], "ok 101");
    assert!(got[0].contains("no thirteen"), "{got:?}");
    assert_eq!(
        pool.map_chunked(0..10, 3).unwrap(),
        (100..110).collect::<Vec<u64>>()
    );
    assert_eq!(
        pool.map_async_chunked(0..4, None).unwrap().get().unwrap(),
        [100, 101, 102, 103]
    );
    let all = tx.clone();
    let m = pool
        .map_async_with(0..3, move |v| all.send(format!("{v:?}")).unwrap(), |_| {})
        .unwrap();
    assert_eq!(m.get().unwrap(), [100, 101, 102]);
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), "[100, 101, 102]");
    let each = pool.map_each_async(10..16, Some(2)).unwrap().get().unwrap();
    assert_eq!(each.iter().filter(|r| r.is_ok()).count(), 5);
    assert!(matches!(each[3], Err(Error::Panicked { .. })));
    let oks = tx.clone();
    pool.map_each_async_with(12..15, Some(1), move |each| {
        oks.send(format!(
            "{:?}",
            each.iter().map(Result::is_ok).collect::<Vec<_>>()
        ))
        .unwrap();
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), "[true, false, true]");
    let ordered: Vec<u64> = pool.imap_with(20..40, 4, 2).map(Result::unwrap).collect();
    assert_eq!(ordered, (120..140).collect::<Vec<u64>>());
    let mut unordered: Vec<(usize, u64)> = pool
        .imap_unordered_with(20..40, 4, 2)
        .map(|(i, r)| (i, r.unwrap()))
        .collect();
    unordered.sort_unstable();
    assert_eq!(
        unordered,
        (0..20).map(|i| (i, i as u64 + 120)).collect::<Vec<_>>()
    );
}

/// Items a worker began in [`count_and_die`]: made before the pool (whose
/// workers are forked from a process forked at its start) so that every
/// worker shares it.
static BEGUN: std::sync::OnceLock<multiproc_shm::Shared<AtomicUsize>> = std::sync::OnceLock::new();

fn count_and_die(_: u64) -> u64 {
    if let Some(begun) = BEGUN.get() {
        begun.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: raising a signal at ourselves (a worker).
    unsafe { libc::raise(libc::SIGKILL) };
    0
}

/// A `map` whose every item kills its worker: it fails with item 0 after a
/// few deaths — its chunks wholly above a failed item are not run, the answer
/// being that failure already — where it used to replace a worker for every
/// item (4 000 deaths and forks, 13 s here). `map_each_async`, which answers
/// every item's own outcome, still runs them all; so does `imap`.
#[test]
fn a_map_whose_every_item_kills_its_worker_fails_after_a_few_deaths() {
    let _dog = Watchdog::arm(LIMIT, "map of deaths");
    let begun =
        BEGUN.get_or_init(|| multiproc_shm::Shared::anonymous(AtomicUsize::new(0)).unwrap());
    let pool = Pool::new(2).unwrap();
    for chunksize in [1, 500] {
        begun.store(0, Ordering::SeqCst);
        match pool.map_chunked(count_and_die, 0..4000u64, chunksize) {
            Err(Error::Item { index: 0, source }) => assert!(
                matches!(
                    *source,
                    Error::WorkerDied {
                        how: Exit::Signal(libc::SIGKILL),
                        ..
                    }
                ),
                "{source:?}"
            ),
            other => panic!("expected item 0 to fail, got {other:?}"),
        }
        // Each worker dies at the first item it begins; what was sent ahead
        // to the two workers before item 0's death was seen runs, no more.
        let n = begun.load(Ordering::SeqCst);
        eprintln!("chunks of {chunksize}: {n} items begun");
        assert!(
            (1..=64).contains(&n),
            "chunks of {chunksize}: {n} items begun"
        );
    }
    begun.store(0, Ordering::SeqCst);
    let each = pool
        .map_each_async(count_and_die, 0..20u64, Some(1))
        .unwrap()
        .get()
        .unwrap();
    assert!(each
        .iter()
        .all(|r| matches!(r, Err(Error::WorkerDied { .. }))));
    assert_eq!(begun.load(Ordering::SeqCst), 20, "every item ran");
    // Every item's outcome up to the first death, the rest not run (how the
    // MPI pool's ranks run a map's chunk): a few deaths, not 4 000.
    begun.store(0, Ordering::SeqCst);
    let each = pool
        .map_each_below_death_async_with(count_and_die, 0..4000u64, Some(1), |_| {})
        .unwrap()
        .get()
        .unwrap();
    assert_eq!(each.len(), 4000);
    assert!(
        matches!(each[0], Err(Error::WorkerDied { .. })),
        "{:?}",
        each[0]
    );
    assert!(each
        .iter()
        .all(|r| matches!(r, Err(Error::WorkerDied { .. } | Error::Terminated))));
    let n = begun.load(Ordering::SeqCst);
    assert!((1..=64).contains(&n), "{n} items begun");
    // The pool goes on, and closes and joins (CPython's test_map_no_failfast:
    // a map that failed fast once left join waiting).
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
    assert!(matches!(
        pool.map_chunked(count_and_die, 0..1000u64, 1),
        Err(Error::Item { index: 0, .. })
    ));
    pool.close();
    pool.join().unwrap();
    assert!(zombie_children().is_empty());
}

/// In a process that ignores `SIGCHLD` (the kernel reaps its children and
/// discards their statuses): a pool worker's death is still reported with its
/// signal (the pool's fork server reaps its workers itself; it reported exit
/// code 0), and a `pmap` worker's, whose status is gone, as `Exit::Unknown`
/// (it read as a SIGKILL nobody sent).
#[test]
fn deaths_are_reported_truly_in_a_process_that_ignores_sigchld() {
    let _dog = Watchdog::arm(LIMIT, "SIGCHLD ignored");
    let child = multiproc_testkit::fork(|| {
        // SAFETY: setting a signal's action to SIG_IGN, in this child only.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        let pool = Pool::new(2).unwrap();
        match pool.apply(die, 0) {
            Err(Error::WorkerDied {
                how: Exit::Signal(libc::SIGKILL),
                ..
            }) => {}
            other => panic!("expected WorkerDied by SIGKILL, got {other:?}"),
        }
        assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
        drop(pool);
        let items: Vec<u64> = (0..100).collect();
        let r = pmap(&items, |&x| {
            if x == 42 {
                // SAFETY: raising a signal at ourselves (a worker).
                unsafe { libc::raise(libc::SIGKILL) };
            }
            x
        });
        match r {
            Err(Error::Item { index: 42, source }) => assert!(
                matches!(
                    *source,
                    Error::WorkerDied {
                        how: Exit::Unknown,
                        ..
                    }
                ),
                "{source:?}"
            ),
            other => panic!("expected item 42 to fail, got {other:?}"),
        }
        assert_eq!(pmap(&items, |&x| x + 1).unwrap()[99], 100);
        0
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
    assert!(zombie_children().is_empty());
}

/// `pmap` whose workers all die before they claim an item (here: aborted by
/// a fork handler, as a worker killed at its start would be): every item
/// fails with the real death — a worker's pid and its signal — and the call
/// returns instead of forking round after round (the error used to name pid
/// 0 and a SIGKILL nobody sent).
#[test]
fn a_pmap_whose_workers_die_at_their_start_names_a_real_death() {
    let _dog = Watchdog::arm(LIMIT, "pmap workers dying at start");
    extern "C" fn abort_in_child() {
        // SAFETY: abort is async-signal-safe; this forked child dies here.
        unsafe { libc::abort() };
    }
    let child = multiproc_testkit::fork(|| {
        // SAFETY: registers a plain function, in this child only.
        unsafe { libc::pthread_atfork(None, None, Some(abort_in_child)) };
        let items: Vec<u64> = (0..100).collect();
        match pmap(&items, |x| x + 1) {
            Err(Error::Item { index: 0, source }) => match *source {
                Error::WorkerDied {
                    pid,
                    how: Exit::Signal(libc::SIGABRT),
                } if pid != 0 && pid != std::process::id() => 0,
                other => {
                    eprintln!("{other:?}");
                    2
                }
            },
            other => {
                eprintln!("{other:?}");
                3
            }
        }
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
    assert!(zombie_children().is_empty());
}

/// `pmap` whose closure kills its worker on every item: the call fails with
/// item 0 after one round, having called the closure once a worker, instead
/// of a round of forks for every item or two to learn the fate of items
/// whose results it would drop (it called the closure 4 000 times).
#[test]
fn a_pmap_whose_every_item_kills_its_worker_stops_at_the_lowest_failure() {
    let _dog = Watchdog::arm(LIMIT, "pmap of deaths");
    let calls = multiproc_shm::Shared::anonymous(AtomicUsize::new(0)).unwrap();
    let items: Vec<u64> = (0..4000).collect();
    let opts = PmapOptions {
        processes: 2,
        chunksize: 0,
        timeout: None,
    };
    let r = pmap_with(
        &items,
        |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            // SAFETY: raising a signal at ourselves (a worker).
            unsafe { libc::raise(libc::SIGKILL) };
            0u64
        },
        opts,
    );
    match r {
        Err(Error::Item { index: 0, source }) => assert!(
            matches!(
                *source,
                Error::WorkerDied {
                    how: Exit::Signal(libc::SIGKILL),
                    ..
                }
            ),
            "{source:?}"
        ),
        other => panic!("expected item 0 to fail, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one call a worker");
    assert!(zombie_children().is_empty());
}

/// `pmap` with a per-item `timeout`: an item that hangs has its worker
/// killed and fails with `TimedOut` (the call returned only when the item
/// did), an item under the limit is left to finish, and without a timeout
/// nothing is killed.
#[test]
fn a_pmap_item_past_its_timeout_fails_with_timed_out() {
    let _dog = Watchdog::arm(LIMIT, "pmap timeout");
    let items: Vec<u64> = (0..20).collect();
    let opts = PmapOptions {
        processes: 2,
        chunksize: 1,
        timeout: Some(Duration::from_millis(300)),
    };
    let t = Instant::now();
    let r = pmap_with(
        &items,
        |&x| {
            match x {
                3 => std::thread::sleep(Duration::from_millis(50)),
                7 => std::thread::sleep(Duration::from_secs(40)),
                _ => {}
            }
            x * 2
        },
        opts,
    );
    match r {
        Err(Error::Item { index: 7, source }) => match *source {
            Error::TimedOut { pid, limit } => {
                assert!(pid > 0);
                assert_eq!(limit, Duration::from_millis(300));
            }
            other => panic!("expected TimedOut, got {other:?}"),
        },
        other => panic!("expected item 7 to time out, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the call waited for the hung item"
    );
    let slow = PmapOptions {
        timeout: Some(Duration::from_secs(20)),
        ..opts
    };
    let r = pmap_with(
        &items,
        |&x| {
            std::thread::sleep(Duration::from_millis(if x == 5 { 400 } else { 1 }));
            x * 2
        },
        slow,
    );
    assert_eq!(r.unwrap(), items.iter().map(|x| x * 2).collect::<Vec<_>>());
    assert!(zombie_children().is_empty());
}

#[test]
fn pmap_borrows_and_fails_only_the_item_whose_worker_died() {
    let _dog = Watchdog::arm(LIMIT, "pmap");
    let offset = 5u64;
    let items: Vec<u64> = (0..1000).collect();
    let out = pmap(&items, |x| x * 2 + offset).unwrap();
    assert_eq!(
        out,
        items.iter().map(|x| x * 2 + offset).collect::<Vec<_>>()
    );
    assert_eq!(pmap(&Vec::<u64>::new(), |x| *x).unwrap(), Vec::<u64>::new());
    let opts = PmapOptions {
        processes: 2,
        chunksize: 50,
        timeout: None,
    };
    let r = pmap_with(
        &items,
        |&x| {
            if x == 321 {
                // SAFETY: raising a signal at ourselves.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            x
        },
        opts,
    );
    match r {
        Err(Error::Item { index: 321, source }) => {
            assert!(matches!(*source, Error::WorkerDied { .. }))
        }
        other => panic!("expected item 321 to fail, got {other:?}"),
    }
    let r = pmap_with(&items, |&x| if x == 7 { panic!("seven") } else { x }, opts);
    assert!(matches!(r, Err(Error::Item { index: 7, .. })));
    // Results that own memory, through the same deaths: those filed before
    // the error are dropped with the call, the rest are all there when
    // nothing fails (AddressSanitizer runs this too).
    let strings = pmap_with(&items, |&x| format!("item {x}"), opts).unwrap();
    assert!(strings
        .iter()
        .zip(&items)
        .all(|(s, x)| *s == format!("item {x}")));
    let r = pmap_with(
        &items,
        |&x| {
            if x == 654 {
                // SAFETY: raising a signal at ourselves.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            format!("item {x}")
        },
        opts,
    );
    assert!(matches!(r, Err(Error::Item { index: 654, .. })));
    assert!(zombie_children().is_empty());
}

/// A chunk size far larger than the input makes one chunk (as in Python),
/// whatever kind of input: room is made for the items there are, not for
/// the chunk size (a chunk of 2^40 numbers asked for 9.9 TB and aborted).
/// `imap`'s and `imap_unordered`'s `next_timeout` (Python's
/// `next(timeout)`): a result not in within the timeout is `Err(Timeout)`,
/// nothing is taken, and the iteration goes on; the end is `Ok(None)`.
#[test]
fn imap_next_timeout_times_out_and_the_iteration_goes_on() {
    let _dog = Watchdog::arm(LIMIT, "imap next_timeout");
    let pool = Pool::new(2).unwrap();
    let mut it = pool.imap(nap, [400, 0, 1]);
    assert!(matches!(
        it.next_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        it.next_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap().unwrap(), 400);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert_eq!(it.next_timeout(Duration::MAX).unwrap().unwrap().unwrap(), 1);
    assert!(it.next_timeout(LIMIT).unwrap().is_none());
    assert!(it.next().is_none());

    let mut it = pool.imap_unordered(nap, [400, 400]);
    assert!(matches!(
        it.next_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    let mut got: Vec<usize> = (0..2)
        .map(|_| it.next_timeout(LIMIT).unwrap().unwrap().0)
        .collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1]);
    assert!(it.next_timeout(LIMIT).unwrap().is_none());
}

/// A chunk size (or an imap's buffer size) of 0 counts as 1: every call
/// answers as with 1 (Python's `imap` raises for it, and its `map` answers
/// a list of `None`s).
#[test]
fn a_chunk_size_of_0_counts_as_1() {
    let _dog = Watchdog::arm(LIMIT, "chunks of 0");
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..10).map(square).collect();
    assert_eq!(pool.map_chunked(square, 0..10u64, 0).unwrap(), want);
    let got: Vec<u64> = pool
        .imap_with(square, 0..10u64, 0, 0)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, want);
    let mut got: Vec<(usize, u64)> = pool
        .imap_unordered_with(square, 0..10u64, 0, 0)
        .map(|(i, r)| (i, r.unwrap()))
        .collect();
    got.sort_unstable();
    assert_eq!(got, want.iter().copied().enumerate().collect::<Vec<_>>());
    let opts = PmapOptions {
        processes: 0,
        chunksize: 0,
        timeout: None,
    };
    assert_eq!(
        pmap_with(&[3u64, 4], |&x| square(x), opts).unwrap(),
        [9, 16]
    );
}

#[test]
fn a_chunk_size_far_larger_than_the_input_makes_one_chunk() {
    let _dog = Watchdog::arm(LIMIT, "huge chunks");
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..10).map(square).collect();
    for chunksize in [1 << 40, (1 << 63) + 1, usize::MAX] {
        assert_eq!(pool.map_chunked(square, 0..10u64, chunksize).unwrap(), want);
        // An input that does not know its length, and items that are not numbers.
        let odd = (0..20u64).filter(|x| x % 2 == 1);
        let got = pool.map_chunked(square, odd, chunksize).unwrap();
        assert_eq!(
            got,
            (0..20u64)
                .filter(|x| x % 2 == 1)
                .map(square)
                .collect::<Vec<_>>()
        );
        let words: Vec<String> = (0..10).map(|i| "x".repeat(i)).collect();
        assert_eq!(
            pool.map_chunked(str_len, words.clone(), chunksize).unwrap(),
            (0..10).collect::<Vec<usize>>()
        );
        let got: Vec<u64> = pool
            .imap_with(square, (0..10u64).filter(|_| true), chunksize, usize::MAX)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want);
        // pmap's workers run each item once (a claim past the end wrapped
        // around the shared cursor and ran items again).
        let items: Vec<u64> = (0..10).collect();
        let runs = multiproc_shm::Shared::anonymous(AtomicUsize::new(0)).unwrap();
        let counted = |&x: &u64| {
            runs.fetch_add(1, Ordering::SeqCst);
            // Long enough that every worker claims before the first is done.
            std::thread::sleep(Duration::from_millis(5));
            square(x)
        };
        let p = pmap_with(
            &items,
            counted,
            PmapOptions {
                processes: 3,
                chunksize,
                timeout: None,
            },
        )
        .unwrap();
        assert_eq!(p, want);
        assert_eq!(runs.load(Ordering::SeqCst), 10, "chunk size {chunksize}");
    }
    assert!(zombie_children().is_empty());
}

fn str_len(s: String) -> usize {
    s.len()
}

/// A struct of numbers: one raw tuple entry each way.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone, Copy)]
struct Point {
    x: f64,
    y: i16,
    id: u64,
}

fn split(x: u64) -> (u32, i16, f64) {
    (x as u32, (x >> 48) as i16, x as f64 / 3.0)
}

fn point(x: u64) -> Point {
    Point {
        x: x as f64 / 7.0,
        y: x as i16,
        id: x,
    }
}

fn norm(p: Point, scale: f32) -> (f64, u64) {
    (p.x * f64::from(scale), p.id ^ p.y as u64)
}

fn odd(x: u64) -> bool {
    x % 2 == 1
}

fn halves(x: u64) -> (bool, u32, bool) {
    (x > u64::MAX / 2, x as u32, x.is_multiple_of(3))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Every way of mapping gives the sequential map's results.
    #[test]
    fn every_map_equals_the_sequential_map(
        items in proptest::collection::vec(any::<u64>(), 0..300),
        processes in 1usize..4,
        chunksize in 1usize..40,
    ) {
        let _dog = Watchdog::arm(LIMIT, "proptest maps");
        let want: Vec<u64> = items.iter().copied().map(square).collect();
        let pool = Pool::new(processes).unwrap();
        prop_assert_eq!(&pool.map(square, items.clone()).unwrap(), &want);
        prop_assert_eq!(&pool.map_chunked(square, items.clone(), chunksize).unwrap(), &want);
        let got: Vec<u64> = pool.imap_with(square, items.clone(), chunksize, 2).map(Result::unwrap).collect();
        prop_assert_eq!(&got, &want);
        let mut un: Vec<(usize, u64)> = pool.imap_unordered(square, items.clone()).map(|(i, r)| (i, r.unwrap())).collect();
        un.sort_unstable();
        prop_assert_eq!(un, want.iter().copied().enumerate().collect::<Vec<_>>());
        let pairs: Vec<(u32, u32)> = items.iter().map(|&x| (x as u32, (x >> 32) as u32)).collect();
        let sums: Vec<u64> = pairs.iter().map(|&(a, b)| add(a, b)).collect();
        prop_assert_eq!(pool.starmap(add, pairs).unwrap(), sums);
        let p = pmap_with(&items, |&x| square(x), PmapOptions { processes, chunksize, timeout: None }).unwrap();
        prop_assert_eq!(p, want);
        // Tuples and structs of numbers (raw tuples) as results, and as
        // arguments (the pairs above); a struct inside a tuple, by postcard.
        let want: Vec<(u32, i16, f64)> = items.iter().map(|&x| split(x)).collect();
        prop_assert_eq!(&pool.map_chunked(split, items.clone(), chunksize).unwrap(), &want);
        let p = pmap_with(&items, |&x| split(x), PmapOptions { processes, chunksize, timeout: None }).unwrap();
        prop_assert_eq!(p, want);
        let points: Vec<Point> = items.iter().map(|&x| point(x)).collect();
        let got: Vec<Point> = pool.imap_with(point, items.clone(), chunksize, 2).map(Result::unwrap).collect();
        prop_assert_eq!(&got, &points);
        let args: Vec<(Point, f32)> = points.iter().map(|&p| (p, p.y as f32)).collect();
        let want: Vec<(f64, u64)> = args.iter().map(|&(p, s)| norm(p, s)).collect();
        prop_assert_eq!(pool.starmap_chunked(norm, args, chunksize).unwrap(), want);
        // bools, alone and in tuples.
        let want: Vec<bool> = items.iter().map(|&x| odd(x)).collect();
        prop_assert_eq!(&pool.map_chunked(odd, items.clone(), chunksize).unwrap(), &want);
        let want: Vec<(bool, u32, bool)> = items.iter().map(|&x| halves(x)).collect();
        prop_assert_eq!(&pool.map_chunked(halves, items.clone(), chunksize).unwrap(), &want);
    }
}

#[test]
fn a_forked_child_that_drops_its_copy_of_the_pool_leaves_the_parents_workers_alone() {
    let _dog = Watchdog::arm(LIMIT, "child drop");
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    // What a child does with a pool its closure owned: it drops it on exit.
    let child = multiproc_testkit::fork(|| {
        // SAFETY: a bitwise copy that the child alone drops; the parent's
        // `pool` is untouched in the parent.
        let copy = unsafe { std::ptr::read(&pool) };
        let refused = matches!(copy.apply(square, 1), Err(Error::OtherProcess { .. }));
        drop(copy);
        i32::from(!refused)
    });
    child.wait_ok(Duration::from_secs(20));
    assert_eq!(pool.pids(), pids, "the parent's workers still run");
    assert_eq!(pool.apply(square, 6).unwrap(), 36);
}

fn add_u32(a: u32, b: u32) -> u32 {
    a + b
}

#[test]
fn map_each_keeps_every_other_items_result_when_one_item_kills_its_worker() {
    let _dog = Watchdog::arm(LIMIT, "map_each");
    let pool = Pool::new(2).unwrap();
    // 0 kills its worker; 9 is harmless: the rest answer for themselves.
    let xs: Vec<u32> = (0..40).map(|i| if i == 17 { 0 } else { 9 }).collect();
    let each = pool
        .map_each_async(die, xs, Some(4))
        .unwrap()
        .get()
        .unwrap();
    assert_eq!(each.len(), 40);
    for (i, r) in each.iter().enumerate() {
        if i == 17 {
            assert!(
                matches!(
                    r,
                    Err(Error::WorkerDied {
                        how: Exit::Signal(9),
                        ..
                    })
                ),
                "{r:?}"
            );
        } else {
            assert_eq!(r.as_ref().ok(), Some(&9), "item {i}: {r:?}");
        }
    }
    let pairs = pool
        .starmap_each_async(add_u32, [(1, 2), (3, 4)], None)
        .unwrap()
        .get()
        .unwrap();
    assert_eq!(
        pairs.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [3, 7]
    );
    assert!(pool
        .map_each_async(square, Vec::<u64>::new(), None)
        .unwrap()
        .get()
        .unwrap()
        .is_empty());
}

#[test]
fn map_each_callbacks_run_without_get() {
    let _dog = Watchdog::arm(LIMIT, "map_each_with");
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<bool>>();
    let xs: Vec<u32> = (0..12).map(|i| if i == 5 { 0 } else { 9 }).collect();
    // Nobody asks the handles: the callbacks still get every item's outcome.
    let ok = tx.clone();
    let _each = pool
        .map_each_async_with(die, xs, Some(3), move |each| {
            ok.send(each.iter().map(std::result::Result::is_ok).collect())
                .unwrap();
        })
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(got, (0..12).map(|i| i != 5).collect::<Vec<_>>());
    let _pairs = pool
        .starmap_each_async_with(add_u32, [(1, 2), (3, 4)], None, move |each| {
            tx.send(each.iter().map(|r| r.as_ref().ok() == Some(&3)).collect())
                .unwrap();
        })
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(got, [true, false]);
}

/// Python's `Pool` gives each task to whichever worker is free. Ours sends
/// tasks ahead into each worker's inbox, but only as many as cover a short
/// while of the task's measured time: behind a long task, at most the next
/// one waits, and the other worker takes the rest (sent evenly at once, the
/// long task's worker would run every other one).
#[test]
fn short_tasks_are_not_kept_waiting_behind_a_long_one_while_a_worker_is_free() {
    let _dog = Watchdog::arm(LIMIT, "long task");
    let pool = Pool::new(2).unwrap();
    // Twice: untimed, then timed by the first round.
    for round in 0..2 {
        let long = pool.apply_async(pid_after, 600).unwrap();
        let short: Vec<_> = (0..9)
            .map(|_| pool.apply_async(pid_after, 40).unwrap())
            .collect();
        let long_pid = long.get().unwrap();
        let short_pids: Vec<u32> = short.into_iter().map(|r| r.get().unwrap()).collect();
        let behind = short_pids.iter().filter(|&&p| p == long_pid).count();
        assert!(
            behind <= 1,
            "round {round}: {behind} of 9 short tasks ran on the long task's worker"
        );
    }
}

/// The CPUs `pid` may run on, as a count and whether `cpu` is one.
fn allowed(pid: u32, cpu: usize) -> (i32, bool) {
    // SAFETY: a zeroed set, filled for `pid`; the macros only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of_val(&set);
        assert_eq!(libc::sched_getaffinity(pid as i32, size, &mut set), 0);
        (libc::CPU_COUNT(&set), libc::CPU_ISSET(cpu, &set))
    }
}

/// Two workers held on one CPU and their caller on another (where a VM's
/// scheduler was seen to leave them): a short `imap`'s items go to one of
/// the two, not to both, which could only take turns on that CPU (an
/// `imap` of ten trivial items took 16-20 µs spread over both, 5.5-7 on
/// one; `benches/NOTES.md`). Such `imap`s run on one worker (most of them
/// alone, at least one in a hundred beside other work; without the
/// preference, 1 in 20 000 did), and every result is right.
#[test]
fn a_short_imaps_items_go_to_one_of_two_workers_sharing_a_cpu() {
    let _dog = Watchdog::arm(LIMIT, "imap on a shared cpu");
    // SAFETY: no arguments.
    let here = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap();
    let Some(other) = (0..libc::CPU_SETSIZE as usize).find(|&c| c != here && allowed(0, c).1)
    else {
        eprintln!("skipped: needs two CPUs");
        return;
    };
    let pool = Pool::new(2).unwrap();
    let had = pin(0, here);
    let pids = pool.pids();
    for &pid in &pids {
        pin(pid, other);
    }
    let (mut one, rounds) = (0, 400);
    for round in 0..rounds + 100 {
        let ran: Vec<u32> = pool.imap(pid_after, [0; 10]).map(|r| r.unwrap()).collect();
        assert_eq!(ran.len(), 10);
        assert!(ran.iter().all(|p| pids.contains(p)), "{ran:?}");
        // (The first rounds time the function.)
        if round >= 100 && ran.iter().all(|&p| p == ran[0]) {
            one += 1;
        }
    }
    set_cpus(0, &had);
    drop(pool);
    assert_gone(&pids);
    // Under AddressSanitizer (`scripts/asan` sets ASAN_OPTIONS) the count
    // is not judged: in CI runs it read 67-89 of 400 there, where ordinary
    // builds read about 300 (alone under AddressSanitizer, five of five
    // passed), and the ordinary build's run judges the placement; the
    // answers above are checked either way.
    if std::env::var_os("ASAN_OPTIONS").is_some() {
        eprintln!("{one} of {rounds} imaps of ten items ran on one worker (not judged here)");
        return;
    }
    // At least one in a hundred: alone it reads about three in four, beside
    // other tests on two CPUs a CI run read 60 of 400, and beside two busy
    // loops (a machine another job keeps busy) three tries read 6, 9 and 18.
    // Without the preference, about one in 20 000: 0.02 of 400.
    assert!(
        one * 100 >= rounds,
        "{one} of {rounds} imaps of ten items ran on one worker"
    );
}

/// A caller and its workers held on one CPU (as a scheduler that packs
/// woken tasks together leaves them for a while): each side finds the other
/// on its own CPU, yields to it and sleeps rather than spin, and a worker
/// that would move off cannot. Every call still gives its answer, waits keep
/// their timeouts, and the workers' CPUs are left as they were.
#[test]
fn every_call_works_when_the_caller_and_its_workers_share_one_cpu() {
    let _dog = Watchdog::arm(LIMIT, "one cpu");
    let pool = Pool::new(2).unwrap();
    // SAFETY: no arguments.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap();
    let had = pin(0, cpu);
    let pids = pool.pids();
    for &pid in &pids {
        pin(pid, cpu);
    }
    // Enough blocking applies for a worker to try to move several times.
    for i in 0..3_000 {
        assert_eq!(pool.apply(square, i).unwrap(), i * i);
    }
    assert_eq!(
        pool.map(square, 0..10_000).unwrap(),
        (0..10_000).map(square).collect::<Vec<_>>()
    );
    let handles: Vec<_> = (0..1_000)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.get().unwrap(), square(i as u64));
    }
    let mut late = pool.apply_async(nap, 300).unwrap();
    let t = Instant::now();
    assert!(matches!(
        late.get_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(late.get_timeout(Duration::from_secs(10)).unwrap(), 300);
    drop(late);
    for &pid in &pids {
        assert_eq!(allowed(pid, cpu), (1, true), "worker {pid}'s CPUs changed");
    }
    set_cpus(0, &had);
    drop(pool);
    assert_gone(&pids);
}

/// A result handle kept after its pool is dropped: the pool is terminated and
/// every process of it reaped at the drop (the handle keeps the pool's
/// bookkeeping, not its fork server); the handle's `get` returns at once, with
/// the answer if it came, `Terminated` if not (Python's would wait for good).
#[test]
fn a_result_handle_kept_past_its_pool_leaves_no_process_behind() {
    let _dog = Watchdog::arm(LIMIT, "handle past pool");
    let pool = Pool::new(2).unwrap();
    let quick = pool.apply_async(square, 3).unwrap();
    quick.wait();
    let slow = pool.apply_async(nap, 10_000).unwrap();
    let pids = pool.pids();
    drop(pool);
    assert_gone(&pids);
    assert_eq!(quick.get().unwrap(), 9);
    assert!(matches!(slow.get(), Err(Error::Terminated)));
}

/// An input iterator that panics (Python's `map` over a generator that
/// raises): the panic reaches the caller of `map` or of the `imap` it reads,
/// and the pool goes on serving every call.
#[test]
fn an_input_that_panics_reaches_the_caller_and_the_pool_goes_on() {
    let _dog = Watchdog::arm(LIMIT, "panicking input");
    let pool = Pool::new(2).unwrap();
    let bad = || (0..100u64).map(|x| if x == 50 { panic!("bad item") } else { x });
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.map(square, bad())));
    assert!(
        mapped.is_err(),
        "map's input panic did not reach its caller"
    );
    assert_eq!(pool.map(square, 0..5).unwrap(), [0, 1, 4, 9, 16]);
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.imap(square, bad()).map(|r| r.unwrap()).sum::<u64>()
    }));
    assert!(read.is_err(), "imap's input panic did not reach its reader");
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
    assert_eq!(pool.apply_async(square, 3).unwrap().get().unwrap(), 9);
    let pids = pool.pids();
    drop(pool);
    assert_gone(&pids);
}

/// A pool (and a `pmap`) of 0 processes in a cgroup whose CPU quota is one
/// CPU: one worker, where it made one per CPU of the machine (Python's
/// `Pool()` does so too, and oversubscribes every container limited to fewer
/// CPUs than its host). Needs a writable cgroup v1 `cpu` hierarchy (root
/// here; elsewhere it says it was skipped).
#[test]
fn a_pool_of_0_processes_counts_the_cgroup_cpu_quota() {
    let _dog = Watchdog::arm(LIMIT, "cgroup quota");
    let group =
        std::path::Path::new("/sys/fs/cgroup/cpu").join(multiproc_testkit::unique_name("quota"));
    let made = std::fs::create_dir(&group).is_ok()
        && std::fs::write(group.join("cpu.cfs_period_us"), "100000").is_ok()
        && std::fs::write(group.join("cpu.cfs_quota_us"), "100000").is_ok();
    let child = multiproc_testkit::fork(|| {
        if !made || std::fs::write(group.join("tasks"), std::process::id().to_string()).is_err() {
            eprintln!("skipped: needs a writable cgroup v1 cpu hierarchy");
            return 2;
        }
        assert_eq!(multiproc_pool::default_processes(), 1);
        let pool = Pool::new(0).unwrap();
        assert_eq!(pool.processes(), 1);
        assert_eq!(pool.map(square, 0..10u64).unwrap()[3], 9);
        drop(pool);
        let items: Vec<u64> = (0..64).collect();
        let pids = pmap(&items, |_| {
            std::thread::sleep(Duration::from_millis(1));
            std::process::id()
        })
        .unwrap();
        assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 1);
        0
    });
    let exit = child.wait(LIMIT);
    if made {
        // Empty once its one process has exited.
        std::fs::remove_dir(&group).unwrap();
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let cgroup_v1 = std::path::Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists();
    let want: &[i32] = if root && cgroup_v1 { &[0] } else { &[0, 2] };
    assert!(
        want.iter()
            .any(|&c| exit == multiproc_testkit::ChildExit::Exited(c)),
        "{exit:?}"
    );
    assert!(zombie_children().is_empty());
}

/// Items a worker began in [`count_and_nap`] (shared as [`BEGUN`] is).
static NAPPED: std::sync::OnceLock<multiproc_shm::Shared<AtomicUsize>> = std::sync::OnceLock::new();

fn count_and_nap(ms: u64) -> u64 {
    if let Some(napped) = NAPPED.get() {
        napped.fetch_add(1, Ordering::SeqCst);
    }
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// An `imap` reads [`IMAP_BUFFER`](multiproc_pool::IMAP_BUFFER) items ahead
/// of its results (a round trip to the workers every 4 items took an ordered
/// imap of trivial items 4.9 µs an item, every 66 items 0.7), and an `imap`
/// dropped before its end drops what it read ahead that no worker holds: of
/// 100 naps of 50 ms on two workers, one taken and the iterator dropped,
/// only those the workers held ran (Python's `imap` would have sent all).
#[test]
fn an_imap_dropped_early_runs_only_what_its_workers_hold() {
    let _dog = Watchdog::arm(LIMIT, "imap dropped");
    let napped =
        NAPPED.get_or_init(|| multiproc_shm::Shared::anonymous(AtomicUsize::new(0)).unwrap());
    let pool = Pool::new(2).unwrap();
    let read = AtomicUsize::new(0);
    let input = (0..100u64).inspect(|_| {
        read.fetch_add(1, Ordering::SeqCst);
    });
    let mut it = pool.imap(count_and_nap, input.map(|_| 50));
    assert_eq!(it.next().unwrap().unwrap(), 50);
    let ahead = read.load(Ordering::SeqCst);
    assert!(
        ahead > 2 + 2 && ahead <= 1 + 2 + multiproc_pool::IMAP_BUFFER,
        "read {ahead} items for the first result"
    );
    drop(it);
    // What the workers held runs out; nothing else starts.
    std::thread::sleep(Duration::from_millis(600));
    let ran = napped.load(Ordering::SeqCst);
    assert!(
        ran < 12,
        "{ran} of {ahead} items read ahead ran after the drop"
    );
    // The pool goes on.
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

/// Runs `call(i)` on a thread of its own for each `i` below
/// `PARTICIPANTS + 8`, one thread after the other, each living on until all
/// have run (so that the entries it took in the pool's queues stay taken);
/// `check(i, answer)` runs on this thread before the next thread starts.
fn in_turn_from_many_threads<T: Send>(call: impl Fn(u64) -> T + Sync, check: impl FnMut(u64, T)) {
    in_turn_from_many_threads_then(call, check, || {});
}

/// [`in_turn_from_many_threads`], running `meanwhile` on this thread once
/// every thread has run, before they end.
fn in_turn_from_many_threads_then<T: Send>(
    call: impl Fn(u64) -> T + Sync,
    mut check: impl FnMut(u64, T),
    meanwhile: impl FnOnce(),
) {
    let threads = multiproc_queue::PARTICIPANTS + 8;
    let (answered, answers) = std::sync::mpsc::channel();
    let stay = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for i in 0..threads as u64 {
            let (call, answered, stay) = (&call, answered.clone(), &stay);
            s.spawn(move || {
                answered.send(call(i)).unwrap();
                stay.wait();
            });
            check(i, answers.recv_timeout(LIMIT).expect("answered in time"));
        }
        meanwhile();
        stay.wait();
    });
}

/// More threads than an answer queue has entries for (a queue keeps one for
/// each thread that reads it: 64, 32 of them for the pool's own side), each
/// calling the pool in turn and living on after its answer: every call is
/// answered, whichever thread reads the answers.
#[test]
fn a_pool_called_by_more_threads_than_a_queue_has_entries_for_answers_each() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "many calling threads");
    let pool = Pool::builder().processes(2).build().unwrap();
    in_turn_from_many_threads(
        |i| (pool.map(square, 0..50u64), pool.apply(square, i)),
        |i, (mapped, got)| {
            assert_eq!(got.unwrap(), i * i);
            assert_eq!(
                mapped.unwrap(),
                (0..50u64).map(|x| x * x).collect::<Vec<_>>()
            );
        },
    );
}

/// More threads than an inbox has entries for, each sending a task to a
/// pool of one worker in turn and living on, while this thread waits for
/// each answer: every task runs, though this thread and the later senders
/// find no entry free in the inbox.
#[test]
fn a_pool_sent_tasks_by_more_threads_than_an_inbox_has_entries_for_runs_each() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "many sending threads");
    let pool = Pool::builder().processes(1).build().unwrap();
    in_turn_from_many_threads(
        |i| pool.apply_async(square, i),
        |i, handle| {
            let got = handle.unwrap().get_timeout(LIMIT);
            assert_eq!(got.unwrap(), i * i, "task {i}");
        },
    );
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
}

/// Runs `meanwhile` on this thread once it has found no entry free in
/// `pool`'s queues (a pool of one worker that more threads than a queue has
/// entries for have called, and that live on until `meanwhile` returns).
#[cfg(feature = "test-hooks")]
fn as_a_bystander_of(pool: &Pool, meanwhile: impl FnOnce()) {
    in_turn_from_many_threads_then(
        |i| pool.apply(square, i),
        |i, got| assert_eq!(got.unwrap(), i * i),
        || {
            assert_eq!(pool.apply(square, 3).unwrap(), 9);
            assert!(pool.bystander_here(), "every entry is taken");
            meanwhile();
        },
    );
}

/// A thread that found no entry free in a pool's queues (more threads than
/// a queue has entries for called the pool and live on) leaves them to the
/// background thread for a while, then tries again: while the others live it
/// finds them full again; once they have ended it takes an entry and uses
/// the queues itself.
#[cfg(feature = "test-hooks")]
#[test]
fn a_thread_that_found_the_queues_full_uses_them_again_once_others_end() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "a bystander's retry");
    let pool = Pool::builder().processes(1).build().unwrap();
    as_a_bystander_of(&pool, || {
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(pool.apply(square, 4).unwrap(), 16);
        assert!(pool.bystander_here(), "tried again, still full");
    });
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    assert!(!pool.bystander_here(), "tried again, and took an entry");
    let many = pool.map(square, 0..1000u64).unwrap();
    assert_eq!(many, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    assert!(!pool.bystander_here());
}

/// The same retry in the middle of a long wait: a bystander waiting for a
/// task of 2.5 s, the other threads gone early in the wait, drops its mark
/// once it has run out and takes an entry before the wait ends.
#[cfg(feature = "test-hooks")]
#[test]
fn a_bystanders_long_wait_tries_the_queues_again_once_others_end() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "a bystander's long wait");
    let pool = Pool::builder().processes(1).build().unwrap();
    let mut long = None;
    as_a_bystander_of(&pool, || {
        long = Some(pool.apply_async(nap, 2_500).unwrap());
    });
    assert_eq!(long.unwrap().get().unwrap(), 2_500);
    assert!(
        !pool.bystander_here(),
        "the mark ran out during the wait and was tried again"
    );
}

/// 200 threads calling pools of one, two and three workers at once, with
/// every kind of call: each call is answered rightly (the threads that find
/// no entry free in a queue, and the background thread driving for them,
/// race the others).
#[test]
fn a_pool_called_by_200_threads_at_once_answers_every_call() {
    let _dog = Watchdog::arm(Duration::from_secs(300), "200 threads at once");
    for round in 0..6 {
        let pool = Pool::builder().processes(1 + round % 3).build().unwrap();
        std::thread::scope(|s| {
            for i in 0..200u64 {
                let pool = &pool;
                s.spawn(move || {
                    for k in 0..20u64 {
                        match (i + k) % 4 {
                            0 => assert_eq!(pool.apply(square, k).unwrap(), k * k),
                            1 => assert_eq!(
                                pool.map(square, 0..30u64).unwrap(),
                                (0..30u64).map(|x| x * x).collect::<Vec<_>>()
                            ),
                            2 => {
                                let h = pool.apply_async(square, k).unwrap();
                                assert_eq!(h.get().unwrap(), k * k);
                            }
                            _ => assert_eq!(
                                pool.imap(square, 0..10u64).map(|r| r.unwrap()).sum::<u64>(),
                                285
                            ),
                        }
                    }
                });
            }
        });
    }
}

/// In a test's child: 0 when `r` failed with an error `says_so` accepts;
/// else `code` for another error (printed, after `what`), `code + 1` for a
/// success.
fn refused_as<T>(
    r: Result<T, Error>,
    says_so: impl Fn(&Error) -> bool,
    what: &str,
    code: i32,
) -> i32 {
    match r {
        Err(e) if says_so(&e) => 0,
        Err(e) => {
            eprintln!("{what}: {e:?}");
            code
        }
        Ok(_) => code + 1,
    }
}

/// Where `pidfd_open` is refused (a kernel before 5.3, valgrind 3.19, a
/// seccomp profile), `Pool::new` answers the process crate's `Unsupported`,
/// whose message names the call and what it needs, and leaves no process
/// behind; `pmap`, which forks its own workers, answers the same. The
/// refusal is a real one: a seccomp filter in a forked child.
#[test]
fn a_pool_where_pidfd_open_is_refused_says_why_and_leaves_no_process() {
    let _dog = Watchdog::arm(LIMIT, "pool with pidfd_open refused");
    let child = multiproc_testkit::fork(|| {
        multiproc_testkit::refuse_pidfd_open();
        let says_so = |e: &Error| {
            matches!(
                e,
                Error::Proc(multiproc_proc::Error::Unsupported {
                    op: "pidfd_open",
                    ..
                })
            ) && e.to_string().contains("Linux 5.3")
        };
        let code = refused_as(Pool::new(2), says_so, "Pool::new", 10);
        if code != 0 {
            return code;
        }
        let code = refused_as(pmap(&[1u64, 2, 3], |x| x + 1), says_so, "pmap", 12);
        if code != 0 {
            return code;
        }
        // Every process it forked is gone and reaped.
        if !multiproc_testkit::no_child_left() {
            return 14;
        }
        0
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
}

/// At the limit of open files, `Pool::new` and a `pmap` that can start
/// only some of its workers answer the process crate's `TooManyOpenFiles`,
/// which says how to raise the limit, and leave no process behind: the
/// workers `pmap` had started are ended and reaped at once (they were left
/// to run on, their results unread).
#[test]
fn a_pool_and_a_pmap_at_the_limit_of_open_files_say_so_and_leave_no_process() {
    let _dog = Watchdog::arm(LIMIT, "pool at the limit of open files");
    let child = multiproc_testkit::fork(|| {
        let says_so = |e: &Error| {
            matches!(
                e,
                Error::Proc(multiproc_proc::Error::TooManyOpenFiles { .. })
            ) && e.to_string().contains("ulimit -n")
        };
        let items: Vec<u64> = (0..2_000).collect();
        let slow = |&x: &u64| {
            std::thread::sleep(Duration::from_millis(1));
            x
        };
        let options = PmapOptions {
            processes: 8,
            ..PmapOptions::default()
        };
        // Room for a few workers, not for eight: each holds a descriptor (its
        // pidfd), and the spare the process crate keeps for the limit adds
        // one, so eight free would be just enough where nothing else is open.
        multiproc_testkit::limit_open_files_to_those_open_and(4);
        let code = refused_as(pmap_with(&items, slow, options), says_so, "pmap", 10);
        if code != 0 {
            return code;
        }
        // Every process it forked is gone and reaped, at once.
        if !multiproc_testkit::no_child_left() {
            return 12;
        }
        let code = refused_as(Pool::new(8), says_so, "Pool::new", 13);
        if code != 0 {
            return code;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if multiproc_testkit::no_child_left() {
                return 0;
            }
            if Instant::now() > deadline {
                return 15;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    assert_eq!(child.wait(LIMIT), multiproc_testkit::ChildExit::Exited(0));
}

/// The descriptors this process holds open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A pool holds one descriptor a worker (its pidfd) and a few of its own,
/// however long it runs and whoever dies: its watcher waits on the pidfds
/// themselves (an epoll set), where it held a copy of each, made again at
/// every wait (a pool of N held 2N, and met the limit of open files at
/// half the workers).
#[test]
fn a_pool_holds_a_descriptor_a_worker_and_a_few_more() {
    const WORKERS: usize = 16;
    let before = open_descriptors();
    let pool = Pool::new(WORKERS).unwrap();
    let mut most = 0;
    for round in 0..100 {
        most = most.max(open_descriptors() - before);
        if round % 25 == 0 {
            let pid = pool.pids()[round / 25];
            // SAFETY: a signal to the pool's own worker.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        std::thread::sleep(Duration::from_millis(3));
    }
    assert!(
        most <= WORKERS + 6,
        "a pool of {WORKERS} held {most} descriptors at once"
    );
}

fn exit_with(code: u32) -> u32 {
    std::process::exit(code as i32)
}

/// A `pmap` whose one item calls `exit(code)`: its worker died so.
fn exit_in_a_pmap(code: u32) {
    let r = pmap(&[code], |&code| exit_with(code));
    assert!(
        matches!(
            &r,
            Err(Error::Item { source, .. }) if matches!(**source, Error::WorkerDied { how: Exit::Code(c), .. } if c == code as i32)
        ),
        "{r:?}"
    );
}

/// A task that leaves its worker by `exit` runs its worker's exit clean-up,
/// and a worker inherited its caller's list of children: the clean-up
/// terminated the caller's daemonic children (a `Process` started before
/// the pool, and before a `pmap`). They are not the worker's, and live on.
#[test]
fn a_worker_that_calls_exit_leaves_its_callers_daemons_alone() {
    let _dog = Watchdog::arm(LIMIT, "exit in a worker");
    let mut daemon = multiproc_proc::Process::new(|| loop {
        std::thread::sleep(Duration::from_secs(1));
    })
    .daemon(true);
    daemon.start().unwrap();
    let pool = Pool::new(1).unwrap();
    assert!(matches!(
        pool.apply(exit_with, 3u32),
        Err(Error::WorkerDied {
            how: Exit::Code(3),
            ..
        })
    ));
    exit_in_a_pmap(4);
    // A SIGTERM sent meanwhile would have fixed the daemon's end already (a
    // fatal signal's status is set when it is sent): a kill reads -9 only
    // if there was none.
    assert!(daemon.is_alive());
    daemon.kill().unwrap();
    assert_eq!(
        daemon.join().unwrap(),
        -libc::SIGKILL,
        "-15: a worker terminated its caller's daemon"
    );
}

/// Python's pool worker leaves by `os._exit`, a task's `sys.exit` too: the
/// exit handlers of the program that made the pool never run in it. A task
/// that calls `std::process::exit`, in a pool's worker or a `pmap`'s, ends
/// its worker (`WorkerDied` with its code) and runs none of them.
#[test]
fn a_worker_that_calls_exit_runs_none_of_its_callers_exit_handlers() {
    let _dog = Watchdog::arm(LIMIT, "exit handlers in a worker");
    let runs = multiproc_testkit::count_exit_handler_runs_elsewhere();
    let pool = Pool::new(1).unwrap();
    assert!(matches!(
        pool.apply(exit_with, 3u32),
        Err(Error::WorkerDied {
            how: Exit::Code(3),
            ..
        })
    ));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a handler ran in a pool's worker"
    );
    exit_in_a_pmap(4);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a handler ran in a pmap's worker"
    );
}

fn worker_name(_: u32) -> String {
    multiproc_proc::current_process().name
}

/// A task's `current_process()` is its worker, named as Python names a
/// pool's: `ForkPoolWorker-N`, N counting the pool's workers from 1, their
/// replacements too.
#[test]
fn workers_are_named_as_pythons() {
    let _dog = Watchdog::arm(LIMIT, "worker names");
    let pool = Pool::new(2).unwrap();
    let names: HashSet<String> = pool
        .map(worker_name, 0..20u32)
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        !names.is_empty()
            && names
                .iter()
                .all(|n| n == "ForkPoolWorker-1" || n == "ForkPoolWorker-2"),
        "{names:?}"
    );
    assert_eq!(multiproc_proc::current_process().name, "MainProcess");
    // Replaced after every task: each task meets the next worker.
    let pool = Pool::builder()
        .processes(1)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let names: Vec<String> = (0..3)
        .map(|i| pool.apply(worker_name, i).unwrap())
        .collect();
    assert_eq!(
        names,
        ["ForkPoolWorker-1", "ForkPoolWorker-2", "ForkPoolWorker-3"]
    );
}

fn say(x: u32) -> u32 {
    println!("task {x} says hello");
    eprintln!("task {x} says hello");
    x
}

/// A pool made while another thread prints: its zygote is forked then, and
/// a stream's lock taken by that thread at the fork stayed taken for ever
/// in the zygote and every worker it forks (2 pools in 20 had a worker that
/// could not print). Twenty pools, each asked for one task that prints.
#[test]
fn workers_of_a_pool_made_while_another_thread_prints_can_print() {
    let _dog = Watchdog::arm(LIMIT, "print in workers");
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Set however the test ends, or the scope would wait for the printer.
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let stopping = Stop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let out = std::io::stdout().lock();
                let err = std::io::stderr().lock();
                std::thread::sleep(Duration::from_micros(200));
                drop((out, err));
                std::thread::yield_now();
            }
        });
        let hung = (0..20u32)
            .filter(|&i| {
                let pool = Pool::builder()
                    .processes(1)
                    .task_timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                pool.apply(say, i).is_err()
            })
            .count();
        drop(stopping);
        assert_eq!(hung, 0, "pools whose worker could not print");
    });
}

fn parent_of_worker(_: u32) -> Option<(u32, String, bool)> {
    multiproc_proc::parent_process().map(|p| (p.pid(), p.name().to_owned(), p.is_alive()))
}

/// A task's `parent_process()` is the process that made the pool, as in
/// Python, though a worker is the zygote's child in the system's sense.
#[test]
fn a_workers_parent_is_the_process_that_made_the_pool() {
    let _dog = Watchdog::arm(LIMIT, "worker's parent");
    let pool = Pool::new(1).unwrap();
    assert_eq!(
        pool.apply(parent_of_worker, 0).unwrap(),
        Some((std::process::id(), "MainProcess".to_owned(), true))
    );
}
