//! CPython's own tests of `multiprocessing.Pool` (`_TestPool`,
//! `_TestPoolWorkerErrors`, `_TestPoolWorkerLifetime` in
//! `Lib/test/_test_multiprocessing.py`), ported where they apply: what a
//! Python user relies on, held against this pool. Each test names the one it
//! ports. Left out: the manager and thread-pool variants, keyword arguments,
//! `__enter__` on a pool that is not running (a dropped pool cannot be used
//! in Rust), garbage-collection of arguments (ownership frees them), and the
//! `atexit` finalization of a pool in a global.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc_pool::{Error, Pool};
use multiproc_testkit::{zombie_children, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// Python's `sqr(x, wait)`.
fn sqr(x: u64) -> u64 {
    x * x
}

fn sqr_after(args: (u64, u64)) -> u64 {
    std::thread::sleep(Duration::from_millis(args.1));
    args.0 * args.0
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn parse(s: String) -> u64 {
    s.parse().expect("not a number")
}

/// Python's `raise_large_valuerror`: fails with a message of 1 MiB.
fn fail_large(wait_ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(wait_ms));
    panic!("{}", "x".repeat(1 << 20));
}

fn raising(_: ()) -> u64 {
    panic!("key");
}

/// A value whose `Serialize` always fails (Python's unpicklable object).
#[derive(Debug, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot encode"))
    }
}

/// Python's `unpickleable_result`.
fn unencodable_result(_: ()) -> Unencodable {
    Unencodable
}

fn sqr_of_unencodable(_: Unencodable) -> u64 {
    0
}

fn squares(n: u64) -> Vec<u64> {
    (0..n).map(sqr).collect()
}

/// test_apply, test_map, test_starmap, test_starmap_async, test_map_async,
/// test_make_pool.
#[test]
fn apply_map_starmap_and_their_async_forms() {
    let _dog = Watchdog::arm(LIMIT, "basics");
    let pool = Pool::new(4).unwrap();
    assert_eq!(pool.pids().len(), 4);
    assert_eq!(pool.apply(sqr, 5).unwrap(), 25);
    assert_eq!(pool.map(sqr, 0..10).unwrap(), squares(10));
    assert_eq!(pool.map_chunked(sqr, 0..100, 20).unwrap(), squares(100));
    let tuples: Vec<(u64, u64)> = (0..10).zip((0..10).rev()).collect();
    let want: Vec<u64> = tuples.iter().map(|&(a, b)| mul(a, b)).collect();
    assert_eq!(pool.starmap(mul, tuples.clone()).unwrap(), want);
    let tuples: Vec<(u64, u64)> = (0..100).zip((0..100).rev()).collect();
    let want: Vec<u64> = tuples.iter().map(|&(a, b)| mul(a, b)).collect();
    assert_eq!(pool.starmap_chunked(mul, tuples.clone(), 20).unwrap(), want);
    assert_eq!(
        pool.starmap_async(mul, tuples).unwrap().get().unwrap(),
        want
    );
    assert_eq!(
        pool.map_async(sqr, 0..10).unwrap().get().unwrap(),
        squares(10)
    );
}

/// test_map_async_callbacks: the callback gets the whole list; the error
/// callback gets the error, and only one of them runs.
#[test]
fn map_async_runs_one_of_its_callbacks() {
    let _dog = Watchdog::arm(LIMIT, "map callbacks");
    let pool = Pool::new(2).unwrap();
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let (c, e) = (Arc::clone(&calls), Arc::clone(&calls));
    let r = pool
        .map_async_with(
            parse,
            ["1".to_owned()],
            move |v| c.lock().unwrap().push(format!("{v:?}")),
            move |err| e.lock().unwrap().push(err.to_string()),
        )
        .unwrap();
    r.wait();
    assert_eq!(*calls.lock().unwrap(), ["[1]"]);
    let (c, e) = (Arc::clone(&calls), Arc::clone(&calls));
    let r = pool
        .map_async_with(
            parse,
            ["a".to_owned()],
            move |v| c.lock().unwrap().push(format!("{v:?}")),
            move |err| e.lock().unwrap().push(err.to_string()),
        )
        .unwrap();
    r.wait();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[1].contains("not a number"), "{calls:?}");
    assert!(matches!(
        r.get(),
        Err(Error::Item { index: 0, ref source }) if matches!(**source, Error::Panicked { .. })
    ));
}

/// test_map_unplicklable (bpo-19425): an argument that cannot be encoded
/// fails the call, and nothing hangs.
#[test]
fn an_argument_that_cannot_be_encoded_fails_the_map_without_a_hang() {
    let _dog = Watchdog::arm(LIMIT, "unencodable argument");
    let pool = Pool::new(2).unwrap();
    let items = (0..10).map(|_| Unencodable);
    assert!(matches!(
        pool.map(sqr_of_unencodable, items),
        Err(Error::Item { index: 0, ref source }) if matches!(**source, Error::EncodeArgs(_))
    ));
    assert_eq!(pool.apply(sqr, 3).unwrap(), 9);
}

/// test_map_chunksize and test_empty_iterable (bpo-12157): an empty input,
/// with or without a chunk size, answers at once.
#[test]
fn an_empty_input_answers_an_empty_list() {
    let _dog = Watchdog::arm(LIMIT, "empty");
    let pool = Pool::new(1).unwrap();
    let mut r = pool.map_async_chunked(sqr, Vec::new(), Some(1)).unwrap();
    assert_eq!(
        r.get_timeout(Duration::from_secs(10)).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(pool.map(sqr, []).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.imap(sqr, []).count(), 0);
    assert_eq!(pool.imap_unordered(sqr, []).count(), 0);
    assert_eq!(
        pool.map_async(sqr, []).unwrap().get().unwrap(),
        Vec::<u64>::new()
    );
    pool.close();
    pool.join().unwrap();
}

/// test_map_handle_iterable_exception, test_imap_handle_iterable_exception,
/// test_imap_unordered_handle_iterable_exception: an input that fails
/// (here: panics) reaches the caller, again on a second try, after the
/// results that came before it for `imap`.
#[test]
fn an_input_that_fails_reaches_the_caller_every_time() {
    let _dog = Watchdog::arm(LIMIT, "failing input");
    let pool = Pool::new(4).unwrap();
    // Python's exception_throwing_generator(total, when).
    let failing = |total: u64, when: u64| {
        (0..total).inspect(move |&i| {
            if i == when {
                panic!("somebody said when");
            }
        })
    };
    let quiet = |f: &mut dyn FnMut()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    for _ in 0..2 {
        assert!(quiet(&mut || drop(pool.map_chunked(sqr, failing(1, 0), 1))).is_err());
    }
    assert!(quiet(&mut || drop(pool.map_chunked(sqr, failing(10, 3), 1))).is_err());
    // imap yields the results of the chunks before the failing one, then
    // fails; imap_unordered the same results in some order. Twice each.
    for (total, when, chunk) in [(1, 0, 1), (10, 3, 1), (20, 7, 2), (20, 7, 4)] {
        let before = when / chunk * chunk;
        for _ in 0..2 {
            let mut taken = Vec::new();
            let mut it = pool.imap_with(sqr, failing(total, when), chunk as usize, 4);
            let read = quiet(&mut || {
                for r in it.by_ref() {
                    taken.push(r.unwrap());
                }
            });
            assert!(read.is_err(), "imap read past a failing input");
            assert_eq!(taken, squares(before), "{total} items failing at {when}");
            let mut got = Vec::new();
            let mut it = pool.imap_unordered_with(sqr, failing(total, when), chunk as usize, 4);
            let read = quiet(&mut || {
                for (i, r) in it.by_ref() {
                    got.push((i as u64, r.unwrap()));
                }
            });
            assert!(read.is_err(), "imap_unordered read past a failing input");
            got.sort_unstable();
            assert_eq!(got, (0..before).map(|i| (i, sqr(i))).collect::<Vec<_>>());
        }
    }
    assert_eq!(pool.apply(sqr, 6).unwrap(), 36);
}

/// test_async and test_async_timeout: `get` waits for the task; `get` with
/// a timeout shorter than the task answers a timeout after that long.
#[test]
fn get_waits_for_the_task_and_a_timeout_ends_the_wait() {
    let _dog = Watchdog::arm(LIMIT, "async timing");
    let pool = Pool::new(3).unwrap();
    let t = Instant::now();
    let r = pool.apply_async(sqr_after, (7, 300)).unwrap();
    assert_eq!(r.get().unwrap(), 49);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let mut r = pool.apply_async(sqr_after, (6, 30_000)).unwrap();
    let t = Instant::now();
    assert!(matches!(
        r.get_timeout(Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(200));
    pool.terminate();
    pool.join().unwrap();
    assert!(matches!(r.get(), Err(Error::Terminated)));
}

/// test_imap and test_imap_unordered.
#[test]
fn imap_yields_in_order_then_ends_and_imap_unordered_yields_each_once() {
    let _dog = Watchdog::arm(LIMIT, "imap");
    let pool = Pool::new(4).unwrap();
    let got: Vec<u64> = pool.imap(sqr, 0..10).map(Result::unwrap).collect();
    assert_eq!(got, squares(10));
    let mut it = pool.imap(sqr, 0..10);
    for i in 0..10 {
        assert_eq!(it.next().unwrap().unwrap(), sqr(i));
    }
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    let mut it = pool.imap_with(sqr, 0..1000, 100, 4);
    for i in 0..1000 {
        assert_eq!(it.next().unwrap().unwrap(), sqr(i));
    }
    assert!(it.next().is_none());
    let mut got: Vec<u64> = pool
        .imap_unordered(sqr, 0..10)
        .map(|(_, r)| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, squares(10));
    let mut got: Vec<u64> = pool
        .imap_unordered_with(sqr, 0..1000, 100, 4)
        .map(|(_, r)| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, squares(1000));
}

/// test_terminate: a pool with 10 000 tasks that would take "forever",
/// terminated, joins at once; the map fails, and no worker is left.
#[test]
fn terminate_ends_a_pool_full_of_endless_tasks() {
    let _dog = Watchdog::arm(LIMIT, "terminate");
    let pool = Pool::new(3).unwrap();
    let pids = pool.pids();
    let args = (0..10_000).map(|i| (i, 600_000));
    let result = pool.map_async_chunked(sqr_after, args, Some(1)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    pool.terminate();
    pool.join().unwrap();
    assert!(matches!(result.get(), Err(Error::Terminated)));
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived terminate and join"
        );
    }
    assert!(zombie_children().is_empty());
}

/// test_traceback and test_wrapped_exception: the task's own failure, with
/// where it happened, reaches the caller as that failure (not wrapped in
/// another).
#[test]
fn a_tasks_failure_reaches_the_caller_with_its_place() {
    let _dog = Watchdog::arm(LIMIT, "traceback");
    let pool = Pool::new(1).unwrap();
    match pool.apply(raising, ()) {
        Err(Error::Panicked { message, location }) => {
            assert_eq!(message, "key");
            assert!(location.contains("cpython_pool.rs"), "{location}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// test_map_no_failfast (bpo-23992): a map whose items fail with large
/// errors reports the first, and `close` then `join` do not deadlock on the
/// answers still coming.
#[test]
fn a_map_of_large_failures_reports_the_first_and_join_does_not_deadlock() {
    let _dog = Watchdog::arm(LIMIT, "no failfast");
    let pool = Pool::new(2).unwrap();
    match pool.map_chunked(fail_large, [0, 1], 1) {
        Err(Error::Item { index: 0, source }) => match *source {
            Error::Panicked { message, .. } => assert_eq!(message.len(), 1 << 20),
            other => panic!("expected a panic, got {other:?}"),
        },
        other => panic!("expected item 0's failure, got {other:?}"),
    }
    let late = pool
        .map_async_chunked(fail_large, [300, 300], Some(1))
        .unwrap();
    pool.close();
    pool.join().unwrap();
    assert!(matches!(late.get(), Err(Error::Item { index: 0, .. })));
}

/// test_async_error_callback: the error callback gets the task's failure,
/// and `get` answers it too.
#[test]
fn the_error_callback_gets_the_failure() {
    let _dog = Watchdog::arm(LIMIT, "error callback");
    let pool = Pool::new(2).unwrap();
    let seen = Arc::new(Mutex::new(None));
    let s = Arc::clone(&seen);
    let r = pool
        .apply_async_with(
            raising,
            (),
            |_| {},
            move |e| *s.lock().unwrap() = Some(e.to_string()),
        )
        .unwrap();
    assert!(matches!(r.get(), Err(Error::Panicked { .. })));
    assert!(seen
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|m| m.contains("key")));
    pool.close();
    pool.join().unwrap();
}

/// test_unpickleable_result: a result that cannot be encoded fails its task
/// (and reaches the error callback), twenty times over, and the pool keeps
/// its workers.
#[test]
fn a_result_that_cannot_be_encoded_fails_its_task_and_keeps_the_workers() {
    let _dog = Watchdog::arm(LIMIT, "unencodable result");
    let pool = Pool::new(2).unwrap();
    let pids = pool.pids();
    for _ in 0..20 {
        let seen = Arc::new(Mutex::new(None));
        let s = Arc::clone(&seen);
        let r = pool
            .apply_async_with(
                unencodable_result,
                (),
                |_| {},
                move |e| *s.lock().unwrap() = Some(e.to_string()),
            )
            .unwrap();
        match r.get() {
            Err(Error::WorkerCodec { what, message }) => {
                // (postcard's message: it keeps no custom text.)
                assert_eq!(what, "encode the result");
                assert!(!message.is_empty());
            }
            other => panic!("expected an encoding failure, got {other:?}"),
        }
        assert!(seen.lock().unwrap().is_some());
    }
    assert_eq!(pool.pids(), pids);
    pool.close();
    pool.join().unwrap();
}

/// test_pool_worker_lifetime: workers with `maxtasksperchild` are replaced
/// (new pids), and every result is right.
#[test]
fn workers_with_a_lifetime_are_replaced() {
    let _dog = Watchdog::arm(LIMIT, "lifetime");
    let pool = Pool::builder()
        .processes(3)
        .maxtasksperchild(10)
        .build()
        .unwrap();
    let before = pool.pids();
    assert_eq!(before.len(), 3);
    let results: Vec<_> = (0..100)
        .map(|i| pool.apply_async(sqr, i).unwrap())
        .collect();
    for (j, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), sqr(j as u64));
    }
    let after = pool.pids();
    assert_eq!(after.len(), 3);
    assert_ne!(before, after);
    pool.close();
    pool.join().unwrap();
    assert!(zombie_children().is_empty());
}

/// test_pool_worker_lifetime_early_close (bpo-10332): closing a pool whose
/// workers have a lifetime before its tasks are done does not make `join`
/// hang, and every result is there.
#[test]
fn closing_early_a_pool_whose_workers_have_a_lifetime_joins() {
    let _dog = Watchdog::arm(LIMIT, "lifetime close");
    let pool = Pool::builder()
        .processes(3)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let results: Vec<_> = (0..6)
        .map(|i| pool.apply_async(sqr_after, (i, 100)).unwrap())
        .collect();
    pool.close();
    pool.join().unwrap();
    for (j, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), sqr(j as u64));
    }
}

/// test_pool_maxtasksperchild_invalid: a lifetime of 0 tasks is refused (a
/// negative or fractional one cannot be written in Rust).
#[test]
fn a_lifetime_of_no_tasks_is_refused() {
    assert!(matches!(
        Pool::builder().processes(1).maxtasksperchild(0).build(),
        Err(Error::OutOfRange {
            what: "a pool's maxtasksperchild",
            value: 0,
            ..
        })
    ));
    assert!(matches!(
        Pool::builder().processes(1).inbox_depth(0).build(),
        Err(Error::OutOfRange {
            what: "a pool's inbox depth",
            value: 0,
            ..
        })
    ));
    assert!(matches!(
        Pool::builder().processes(2).inbox_depth(usize::MAX).build(),
        Err(Error::OutOfRange {
            what: "a pool's inbox depth",
            ..
        })
    ));
}
