//! What `tests/mpi.rs` runs under `mpirun`: one scenario per run, named by
//! the first argument; rank 0 prints `ok <scenario>` when every check passed
//! (a failed check panics, and the job exits non-zero).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc_pool::Error;
use multiproc_pool_mpi::{MpiPool, MpiResult, Pending, Tasks};

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn describe(v: (u32, String)) -> String {
    format!("{}:{}", v.0, v.1.len())
}

fn add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

fn inverse(x: u32) -> u32 {
    1000 / x
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// Kills its own worker process when given 0.
fn die_on_zero(x: u32) -> u32 {
    if x == 0 {
        // SAFETY: a plain kill of this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x
}

/// Notes that it began (a byte appended to the file at `path`), then kills
/// its worker.
fn note_and_die((path, _): (String, u32)) -> u32 {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
    {
        let _ = f.write_all(b".");
    }
    // SAFETY: a plain kill of this process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn echo(v: Vec<u8>) -> Vec<u8> {
    v.iter().map(|b| b.wrapping_add(1)).collect()
}

/// The pid of rank 0's process: [`DropPanics`] panics there only.
static RANK0: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A result whose `Drop` panics on rank 0 (a user's type with a bug); on the
/// serving ranks it drops quietly.
#[derive(serde::Serialize, serde::Deserialize)]
struct DropPanics(u64);

impl Drop for DropPanics {
    fn drop(&mut self) {
        let here = std::process::id() == RANK0.load(std::sync::atomic::Ordering::SeqCst);
        if here && !std::thread::panicking() {
            panic!("dropping {} panics", self.0);
        }
    }
}

/// A [`DropPanics`], but 2 panics in its worker.
fn drop_panics_but_two(x: u64) -> DropPanics {
    assert_ne!(x, 2, "two is refused");
    DropPanics(x)
}

/// A small deterministic generator: the inputs are random but the run can
/// be repeated from its seed (printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_maps(pool: &MpiPool) {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    let mut rng = Rng(seed);
    for case in 0..24 {
        let n = (rng.next() % 600) as usize * usize::from(case % 6 != 0);
        let xs: Vec<u64> = (0..n).map(|_| rng.next()).collect();
        let want: Vec<u64> = xs.iter().map(|&x| square(x)).collect();
        let chunk = 1 + (rng.next() % 64) as usize;
        assert_eq!(
            pool.map(square, xs.clone()).unwrap(),
            want,
            "seed {seed} case {case}"
        );
        assert_eq!(
            pool.map_chunked(square, xs.clone(), chunk).unwrap(),
            want,
            "seed {seed}"
        );
        let imapped: Vec<u64> = pool.imap(square, xs.clone()).map(Result::unwrap).collect();
        assert_eq!(imapped, want, "seed {seed} case {case}");
        // Chunks of one, and chunks of `chunk` with a small read-ahead.
        for chunked in [false, true] {
            let unordered = if chunked {
                pool.imap_unordered_with(square, xs.clone(), chunk, 2)
            } else {
                pool.imap_unordered(square, xs.clone())
            };
            let mut unordered: Vec<(usize, u64)> =
                unordered.map(|(i, r)| (i, r.unwrap())).collect();
            unordered.sort_unstable();
            assert_eq!(
                unordered,
                want.iter().copied().enumerate().collect::<Vec<_>>(),
                "seed {seed} case {case} chunked {chunked}"
            );
        }
        let pairs: Vec<(i64, i64)> = (0..n)
            .map(|_| (rng.next() as i64, rng.next() as i64))
            .collect();
        let sums: Vec<i64> = pairs.iter().map(|&(a, b)| add(a, b)).collect();
        assert_eq!(
            pool.starmap(add, pairs.clone()).unwrap(),
            sums,
            "seed {seed} case {case}"
        );
        assert_eq!(
            pool.starmap_chunked(add, pairs.clone(), chunk).unwrap(),
            sums,
            "seed {seed} case {case}"
        );
        let seen = Arc::new(Mutex::new(None));
        let s = Arc::clone(&seen);
        let r = pool
            .starmap_async_with(
                add,
                pairs.clone(),
                move |v| *s.lock().unwrap() = Some(v.clone()),
                |_| {},
            )
            .unwrap();
        assert_eq!(r.get().unwrap(), sums, "seed {seed} case {case}");
        assert_eq!(seen.lock().unwrap().as_ref(), Some(&sums));
        assert_eq!(pool.starmap_async(add, pairs).unwrap().get().unwrap(), sums);
        let structs: Vec<(u32, String)> = (0..n.min(50))
            .map(|i| (i as u32, "x".repeat((rng.next() % 40) as usize)))
            .collect();
        let want: Vec<String> = structs.iter().cloned().map(describe).collect();
        assert_eq!(pool.map(describe, structs).unwrap(), want, "seed {seed}");
    }
    // A chunk size (and a buffer) far larger than the input: one chunk, as in
    // Python, and no overflow in the reading ahead.
    let xs: Vec<u64> = (0..10).collect();
    let want: Vec<u64> = xs.iter().map(|&x| square(x)).collect();
    for chunk in [1 << 40, usize::MAX] {
        assert_eq!(pool.map_chunked(square, xs.clone(), chunk).unwrap(), want);
        let got: Vec<u64> = pool
            .imap_with(square, xs.clone(), chunk, usize::MAX)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want);
    }
    // An input that panics at item 7, in chunks of 2: the results of the
    // three chunks before it, then the panic (where Python raises).
    let failing = || {
        (0..20u64).map(|i| {
            if i == 7 {
                panic!("input fails at 7")
            } else {
                i
            }
        })
    };
    let mut taken = Vec::new();
    let mut it = pool.imap_with(square, failing(), 2, 2);
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for r in it.by_ref() {
            taken.push(r.unwrap());
        }
    }));
    assert!(read.is_err(), "imap read past a failing input");
    assert_eq!(taken, (0..6).map(square).collect::<Vec<_>>());
    // A map whose item 13 panics as it is encoded, after the chunks before
    // it went to the ranks: the panic reaches the caller and rank 0 keeps no
    // job for it (nothing would ever end one).
    let kept = pool.jobs_kept();
    let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.map_chunked(unlucky, (0..40).map(Unlucky), 2)
    }));
    assert!(encoded.is_err(), "an item whose Serialize panics was sent");
    assert_eq!(pool.jobs_kept(), kept, "the failed map left its job behind");
    assert_eq!(pool.map(square, 0..4u64).unwrap(), [0, 1, 4, 9]);
}

/// A number whose `Serialize` panics at 13 (a user's type with a bug).
struct Unlucky(u64);

impl serde::Serialize for Unlucky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, 13, "13 cannot be encoded");
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Unlucky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Unlucky, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Unlucky)
    }
}

/// Set on rank 0 only (in the scenario): see [`Picky`].
static PICKY_HERE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A result whose `Deserialize` panics (a user's type that checks its
/// values by panicking): on 40 everywhere (so on the serving rank, which
/// decodes its local pool's answer first), and on 30 where [`PICKY_HERE`]
/// is set (rank 0, which decodes the answer last).
#[derive(Debug, serde::Serialize)]
struct Picky(u64);

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Picky, D::Error> {
        let v = <u64 as serde::Deserialize>::deserialize(d)?;
        assert!(v != 40, "forty is not allowed");
        let here = PICKY_HERE.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!(here && v == 30), "thirty is not allowed here");
        Ok(Picky(v))
    }
}

fn times_ten(x: u64) -> Picky {
    Picky(x * 10)
}

fn unlucky(x: Unlucky) -> u64 {
    x.0
}

fn apply_and_callbacks(pool: &MpiPool) {
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    // A burst of tasks out at once, taken: rank 0's tables give its room back.
    let burst: Vec<_> = (0..20_000u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let during = pool.room_kept();
    assert!(during >= 20_000, "the burst was not out at once: {during}");
    for (i, h) in burst.into_iter().enumerate() {
        assert_eq!(h.get().unwrap(), square(i as u64));
    }
    let after = pool.room_kept();
    assert!(
        after <= 16 * 1024,
        "room kept after the burst: {after} (during {during})"
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..40u32)
        .map(|i| {
            let (s, e) = (Arc::clone(&seen), Arc::clone(&errors));
            pool.apply_async_with(
                inverse,
                i % 10,
                move |v| s.lock().unwrap().push(*v),
                move |err| e.lock().unwrap().push(err.to_string()),
            )
            .unwrap()
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.get();
        if i % 10 == 0 {
            assert!(
                matches!(r, Err(Error::Panicked { ref message, .. }) if message.contains("divide by zero")),
                "{r:?}"
            );
        } else {
            assert_eq!(r.unwrap(), 1000 / (i as u32 % 10));
        }
    }
    assert_eq!(seen.lock().unwrap().len(), 36);
    assert_eq!(errors.lock().unwrap().len(), 4);
    // A callback that panics is that job's error; the pool goes on.
    let r = pool
        .apply_async_with(square, 3, |_| panic!("callback boom"), |_| {})
        .unwrap();
    assert!(
        matches!(r.get(), Err(Error::CallbackPanicked { ref message }) if message.contains("boom"))
    );
    // The result that callback was given, and a map's results decoded before
    // an item that failed, are dropped by the receiver thread: a `Drop` that
    // panics there ends neither that thread nor the job.
    RANK0.store(std::process::id(), std::sync::atomic::Ordering::SeqCst);
    let r = pool
        .apply_async_with(drop_panics_but_two, 1, |_| panic!("callback boom"), |_| {})
        .unwrap();
    assert!(
        matches!(r.get(), Err(Error::CallbackPanicked { ref message }) if message.contains("boom"))
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let m = pool
        .map_async_with(
            drop_panics_but_two,
            0..4u64,
            |_| {},
            move |e| tx.send(e.to_string()).unwrap(),
        )
        .unwrap();
    let called = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(called.contains("two is refused"), "{called}");
    assert!(matches!(
        m.get(),
        Err(Error::Item { index: 2, ref source }) if matches!(**source, Error::Panicked { .. })
    ));
    // Timeouts, readiness, success.
    let mut slow = pool.apply_async(sleep_ms, 300).unwrap();
    assert!(!slow.ready() && slow.successful().is_none());
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    slow.wait();
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(slow.get_timeout(Duration::from_secs(1)).unwrap(), 300);
    // A timeout too large for the clock ("for ever") waits as `get` does.
    let mut long = pool.apply_async(sleep_ms, 30).unwrap();
    long.wait_timeout(Duration::MAX).unwrap();
    assert_eq!(long.get_timeout(Duration::MAX).unwrap(), 30);
    // Large arguments and results (past MPI's eager limit): 8 MiB each way.
    let big = vec![7u8; 8 << 20];
    let back = pool.apply(echo, big).unwrap();
    assert!(back.len() == 8 << 20 && back.iter().all(|&b| b == 8));
    // Many small tasks of three functions in flight at once, and answers
    // either side of the size that a rank sends from the local pool's thread
    // (64 KiB): tasks share messages, answers take both ways; each result is
    // its own task's.
    enum Sent {
        Square(u64, MpiResult<u64>),
        Inverse(u32, MpiResult<u32>),
        Echo(usize, MpiResult<Vec<u8>>),
    }
    // The first 600 are all `square`: tasks in a row for one function, which
    // a rank runs as one local job.
    let sent: Vec<Sent> = (0..1500u64)
        .map(|i| match if i < 600 { 0 } else { i % 3 } {
            0 => Sent::Square(i, pool.apply_async(square, i).unwrap()),
            1 => Sent::Inverse(
                i as u32 % 7 + 1,
                pool.apply_async(inverse, i as u32 % 7 + 1).unwrap(),
            ),
            _ => {
                let len = [0, 100, 60 << 10, 70 << 10][(i / 3 % 4) as usize];
                Sent::Echo(len, pool.apply_async(echo, vec![1u8; len]).unwrap())
            }
        })
        .collect();
    for s in sent {
        match s {
            Sent::Square(x, h) => assert_eq!(h.get().unwrap(), x * x),
            Sent::Inverse(x, h) => assert_eq!(h.get().unwrap(), 1000 / x),
            Sent::Echo(len, h) => {
                let v = h.get().unwrap();
                assert!(v.len() == len && v.iter().all(|&b| b == 2), "{len}");
            }
        }
    }
    // Every rank's workers took part.
    let pids: std::collections::BTreeSet<u32> = pool
        .map_chunked(pid_of, 0..400, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(pids.len() >= 2, "{pids:?}");
    // map_async with callback.
    let got = Arc::new(Mutex::new(0usize));
    let g = Arc::clone(&got);
    let r = pool
        .map_async_with(
            square,
            0..100,
            move |v| *g.lock().unwrap() = v.len(),
            |_| {},
        )
        .unwrap();
    assert_eq!(r.get().unwrap().len(), 100);
    assert_eq!(*got.lock().unwrap(), 100);
    // Handles not kept (Python's `pool.apply_async(f, callback=cb)`): the
    // callbacks run all the same, each once, and their jobs are forgotten
    // once they have; a dropped handle without callbacks at once.
    assert_eq!(pool.jobs_kept(), 0);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let (ok, failed, all) = (tx.clone(), tx.clone(), tx);
    drop(
        pool.apply_async_with(
            sleep_ms,
            30,
            move |v| ok.send(format!("ok {v}")).unwrap(),
            |_| {},
        )
        .unwrap(),
    );
    drop(
        pool.apply_async_with(
            inverse,
            0,
            |_| {},
            move |_| failed.send("failed".to_owned()).unwrap(),
        )
        .unwrap(),
    );
    drop(
        pool.map_async_with(
            square,
            1..4,
            move |v| all.send(format!("{v:?}")).unwrap(),
            |_| {},
        )
        .unwrap(),
    );
    drop(pool.apply_async(sleep_ms, 40).unwrap());
    let mut got: Vec<String> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["[1, 4, 9]", "failed", "ok 30"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.jobs_kept() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pool.jobs_kept(), 0, "a dropped handle's job was kept");
    // A result whose `Deserialize` panics, on the serving rank or on rank 0
    // (in its receiver thread, for a callback): that task's error, and the
    // pool goes on.
    PICKY_HERE.store(true, std::sync::atomic::Ordering::Relaxed);
    for x in [3, 4] {
        let r = pool.apply(times_ten, x);
        assert!(
            matches!(r, Err(Error::DecodePanicked { ref message }) if message.contains("is not allowed")),
            "{r:?}"
        );
    }
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    drop(
        pool.apply_async_with(
            times_ten,
            3,
            |_| {},
            move |e| tx.send(e.to_string()).unwrap(),
        )
        .unwrap(),
    );
    let e = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(e.contains("thirty is not allowed here"), "{e}");
    let m = pool.map_chunked(times_ten, 0..6, 2);
    assert!(
        matches!(m, Err(Error::Item { index: 3, ref source }) if matches!(**source, Error::DecodePanicked { .. })),
        "{m:?}"
    );
    assert_eq!(pool.apply(times_ten, 1).unwrap().0, 10);
}

/// Python's `imap` over an endless input: results come while reading only a
/// bounded window ahead.
fn imap_endless(pool: &MpiPool) {
    let read = Arc::new(Mutex::new(0u64));
    let r = Arc::clone(&read);
    let endless = (0u64..).inspect(move |_| *r.lock().unwrap() += 1);
    let first: Vec<u64> = pool
        .imap(square, endless)
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..10).map(square).collect::<Vec<_>>());
    let read = *read.lock().unwrap();
    let ahead = pool.processes() + pool.processes().max(multiproc_pool::IMAP_BUFFER);
    let bound = (10 + ahead) as u64;
    assert!(
        read <= bound,
        "read {read} items ahead of 10 taken (bound {bound})"
    );
    // And it reads that far ahead (each chunk crosses ranks): more than the
    // `processes` chunks it read ahead by default before.
    let before = (10 + 2 * pool.processes()) as u64;
    assert!(
        read > before || pool.processes() >= multiproc_pool::IMAP_BUFFER,
        "read only {read} items for 10 taken (the old default read {before})"
    );
}

/// A worker process killed inside a rank: that item fails with
/// `WorkerDied`, the rest complete, and the pool goes on.
fn kill_worker(pool: &MpiPool) {
    let xs: Vec<u32> = (0..2000)
        .map(|i| if i % 500 == 250 { 0 } else { i + 1 })
        .collect();
    let each: Vec<multiproc_pool::Result<u32>> = pool.imap(die_on_zero, xs.clone()).collect();
    for (x, r) in xs.iter().zip(&each) {
        if *x == 0 {
            assert!(matches!(r, Err(Error::WorkerDied { .. })), "{r:?}");
        } else {
            assert_eq!(r.as_ref().unwrap(), x);
        }
    }
    // The same as a stream of apply_async (tasks that share local jobs on
    // the ranks): only the killed worker's task fails.
    let handles: Vec<_> = xs[..800]
        .iter()
        .map(|&x| (x, pool.apply_async(die_on_zero, x).unwrap()))
        .collect();
    for (x, h) in handles {
        let r = h.get();
        if x == 0 {
            assert!(matches!(r, Err(Error::WorkerDied { .. })), "{r:?}");
        } else {
            assert_eq!(r.unwrap(), x);
        }
    }
    // A map whose every item kills its worker fails with item 0 after a few
    // deaths on each rank: every one of its 2 000 items ran (each costing a
    // new worker) before.
    let path = std::env::temp_dir().join(format!("mpi_deaths_{}", std::process::id()));
    let items: Vec<(String, u32)> = (0..2000).map(|i| (path.display().to_string(), i)).collect();
    let r = pool.map(note_and_die, items);
    let begun = std::fs::metadata(&path).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&path);
    assert!(
        matches!(r, Err(Error::Item { index: 0, ref source }) if matches!(**source, Error::WorkerDied { .. })),
        "{r:?}"
    );
    println!("a map of 2000 deaths: {begun} items begun");
    assert!((1..=200).contains(&begun), "{begun} items begun");
    let r = pool.map(die_on_zero, [1, 2, 0, 4]);
    assert!(
        matches!(r, Err(Error::Item { index: 2, ref source }) if matches!(**source, Error::WorkerDied { .. })),
        "{r:?}"
    );
    assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
}

/// Closing and joining lets what was sent finish; terminate fails the rest;
/// a closed pool refuses new tasks.
fn lifecycle(pool: &MpiPool) {
    // An imap's next_timeout: a result not in yet times out, nothing taken,
    // and the iteration goes on.
    let mut it = pool.imap(sleep_ms, [300u64, 0]);
    assert!(matches!(
        it.next_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert_eq!(
        it.next_timeout(Duration::from_secs(60))
            .unwrap()
            .unwrap()
            .unwrap(),
        300
    );
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert!(it.next_timeout(Duration::from_secs(60)).unwrap().is_none());
    drop(it);
    let mut it = pool.imap_unordered(sleep_ms, [300u64]);
    assert!(matches!(
        it.next_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert_eq!(
        it.next_timeout(Duration::from_secs(60)).unwrap().unwrap().0,
        0
    );
    drop(it);
    let pending: Vec<_> = (0..6)
        .map(|_| pool.apply_async(sleep_ms, 50).unwrap())
        .collect();
    pool.close();
    assert!(matches!(pool.apply_async(square, 1), Err(Error::Closed)));
    // join_timeout: too short for the tasks, the ranks are left running;
    // then long enough.
    assert!(matches!(
        pool.join_timeout(Duration::from_millis(1)),
        Err(Error::Timeout)
    ));
    let t = Instant::now();
    pool.join_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        pending.iter().all(|p| p.ready()),
        "join returned with tasks pending"
    );
    for p in pending {
        assert_eq!(p.get().unwrap(), 50);
    }
    println!("joined in {:?}", t.elapsed());
}

/// An imap read on after `join`, its input endless and its iterator in this
/// very thread: `join` returns once what was sent is in, and the iterator
/// then yields those results, `Joined`, and ends.
fn imap_after_join(pool: &MpiPool) {
    let mut it = pool.imap(square, 0u64..);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    pool.close();
    pool.join().unwrap();
    let rest: Vec<_> = it.by_ref().take(1000).collect();
    let (last, before) = rest.split_last().unwrap();
    assert!(matches!(last, Err(Error::Joined)), "{last:?}");
    for (i, r) in before.iter().enumerate() {
        assert_eq!(*r.as_ref().unwrap(), square(i as u64 + 1));
    }
    assert!(it.next().is_none());
}

/// An imap read on after `terminate`, its input endless: what was out
/// fails with `Terminated`, and the iteration ends.
fn imap_after_terminate(pool: &MpiPool) {
    let mut it = pool.imap(sleep_ms, std::iter::repeat(20u64));
    assert!(it.next().unwrap().is_ok());
    pool.terminate();
    let rest: Vec<_> = it.by_ref().take(1000).collect();
    assert!(rest.len() < 1000, "the iteration did not end");
    assert!(
        matches!(rest.last(), Some(Err(Error::Terminated))),
        "{rest:?}"
    );
}

/// A callback that calls its pool again and waits (a blocking `apply`, an
/// `apply_async` with a callback of its own) completes, as with the local
/// pool.
fn callback_calls_its_pool(pool: MpiPool) {
    let pool = Arc::new(pool);
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
    assert_eq!(r.get().unwrap(), 9);
    assert_eq!(*seen.lock().unwrap(), [6561, 81, 6561]);
}

/// A callback that holds the last handle of its pool and drops it: the pool
/// ends there, on the thread that runs callbacks (which cannot join itself),
/// and the program goes on and ends cleanly, every rank stopped.
fn callback_drops_its_pool(pool: MpiPool) {
    let slot = Arc::new(Mutex::new(Some(pool)));
    let done = Arc::new((Mutex::new(None), std::sync::Condvar::new()));
    let (s, d) = (Arc::clone(&slot), Arc::clone(&done));
    let r = slot
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .apply_async_with(
            square,
            4,
            move |v: &u64| {
                let last = s.lock().unwrap().take();
                drop(last);
                *d.0.lock().unwrap() = Some(*v);
                d.1.notify_all();
            },
            |_| {},
        )
        .unwrap();
    let (got, cv) = &*done;
    let (got, timeout) = cv
        .wait_timeout_while(got.lock().unwrap(), Duration::from_secs(30), |g| {
            g.is_none()
        })
        .unwrap();
    assert!(!timeout.timed_out(), "the callback never finished");
    assert_eq!(*got, Some(16));
    drop(got);
    assert!(slot.lock().unwrap().is_none());
    drop(r);
}

/// A caller that waits for a result receives the ranks' answers itself (the
/// receiver thread stands back meanwhile), so the callbacks of the answers it
/// files run on its thread: counted over blocking calls in a row, each of
/// which waits about one round trip (until 20 such, or 2 000 calls: on a
/// machine so busy that every answer takes longer than the caller's watch,
/// the receiver thread files them all).
fn callbacks_run_on_a_waiting_caller(pool: &MpiPool) {
    let caller = std::thread::current().id();
    let on_caller = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut n = 0u64;
    while n < 2_000 && on_caller.load(std::sync::atomic::Ordering::Relaxed) < 20 {
        let i = n;
        n += 1;
        let c = Arc::clone(&on_caller);
        let h = pool
            .apply_async_with(
                square,
                i,
                move |_: &u64| {
                    if std::thread::current().id() == caller {
                        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                },
                |_| {},
            )
            .unwrap();
        assert_eq!(h.get().unwrap(), i * i);
    }
    let hits = on_caller.load(std::sync::atomic::Ordering::Relaxed);
    println!("callbacks run on the waiting caller's thread: {hits} of {n}");
    assert!(hits > 0, "the waiting caller received no answer itself");
}

/// Four threads call the pool at once and each waits for its results, so
/// several threads look for the ranks' answers at the same time (each files
/// what it receives, whoever's it is): every result comes back right, and
/// every callback runs once.
fn callers_receive_side_by_side(pool: &MpiPool) {
    let called = Arc::new(std::sync::atomic::AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let called = Arc::clone(&called);
            s.spawn(move || {
                for i in 0..300u64 {
                    let x = t * 1_000 + i;
                    if i % 3 == 0 {
                        assert_eq!(pool.apply(square, x).unwrap(), x * x);
                    } else {
                        let c = Arc::clone(&called);
                        let h = pool
                            .apply_async_with(
                                square,
                                x,
                                move |v: &u64| {
                                    assert_eq!(*v, x * x);
                                    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                },
                                |e| panic!("{e:?}"),
                            )
                            .unwrap();
                        assert_eq!(h.get().unwrap(), x * x);
                    }
                }
                let sums: u64 = pool.map(square, 0..50u64).unwrap().into_iter().sum();
                assert_eq!(sums, (0..50u64).map(|v| v * v).sum());
            });
        }
    });
    assert_eq!(called.load(std::sync::atomic::Ordering::Relaxed), 4 * 200);
}

/// A callback that drops the last handle of its pool while the caller waits
/// for that very result: the callback runs on the thread that receives the
/// answer (most often the caller's, inside its `get`, after the blocking
/// calls before it; else the receiver thread); the pool ends there and the
/// `get` answers the result or `Terminated`, never hangs, and the program
/// ends cleanly.
fn callback_drops_its_pool_while_waited_for(pool: MpiPool) {
    let slot = Arc::new(Mutex::new(Some(pool)));
    let caller = std::thread::current().id();
    let on_caller = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, c) = (Arc::clone(&slot), Arc::clone(&on_caller));
    let mut r = {
        let held = slot.lock().unwrap();
        let pool = held.as_ref().unwrap();
        // Calls waited for first, until this thread received one's answer
        // (its callback ran here): the receiver thread stands back now, as
        // in a program that waits in a row.
        for i in 0..2_000 {
            let here = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let h = Arc::clone(&here);
            let r = pool.apply_async_with(
                square,
                i,
                move |_: &u64| {
                    let on = std::thread::current().id() == caller;
                    h.store(on, std::sync::atomic::Ordering::Relaxed);
                },
                |_| {},
            );
            assert_eq!(r.unwrap().get().unwrap(), i * i);
            if here.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
        pool.apply_async_with(
            square,
            5,
            move |_: &u64| {
                let here = std::thread::current().id() == caller;
                c.store(here, std::sync::atomic::Ordering::Relaxed);
                drop(s.lock().unwrap().take());
            },
            |_| {},
        )
        .unwrap()
    };
    let got = r.get_timeout(Duration::from_secs(30));
    assert!(matches!(got, Ok(25) | Err(Error::Terminated)), "{got:?}");
    assert!(slot.lock().unwrap().is_none(), "the callback did not run");
    let here = on_caller.load(std::sync::atomic::Ordering::Relaxed);
    println!("the callback ran on the waiting caller's thread: {here}");
}

/// Prints this rank-0 process's pid and every rank's, then runs a map long
/// enough for a test to kill a rank in the middle.
fn long_map(pool: &MpiPool) {
    let ranks: BTreeMap<usize, u32> = pool.ranks().iter().map(|r| (r.rank, r.pid)).collect();
    println!("pids {} {ranks:?}", std::process::id());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let r = pool.map_chunked(sleep_ms, std::iter::repeat_n(20, 3000), 1);
    println!("map ended: {:?}", r.map(|v| v.len()));
}

/// A task's function of each kind crosses ranks: a `fn` item, a closure
/// that captures nothing, a `fn` pointer chosen at run time; a closure that
/// holds a pointer's worth of data is refused by each call
/// (`Error::Captures`), and the pool goes on.
fn functions(pool: &MpiPool) {
    let want: Vec<u64> = (0..100).map(square).collect();
    let table: [fn(u64) -> u64; 2] = [square, |x| x * x];
    let pointer = table[std::hint::black_box(1)];
    assert_eq!(pool.map(square, 0..100).unwrap(), want);
    assert_eq!(pool.map(|x: u64| x * x, 0..100).unwrap(), want);
    assert_eq!(pool.map(pointer, 0..100).unwrap(), want);
    assert_eq!(pool.apply(pointer, 9).unwrap(), 81);
    assert_eq!(pool.apply(|x: u64| x + 1, 9).unwrap(), 10);
    let got: Vec<u64> = pool.imap(pointer, 0..100).map(Result::unwrap).collect();
    assert_eq!(got, want);
    let add_pointer: fn(i64, i64) -> i64 = [add][std::hint::black_box(0)];
    let pairs = [(1, 2), (30, 40)];
    assert_eq!(pool.starmap(add_pointer, pairs).unwrap(), [3, 70]);
    assert_eq!(
        pool.starmap(|a: i64, b: i64| a * b, pairs).unwrap(),
        [2, 1200]
    );

    let k = std::hint::black_box(7u64);
    let captures = move |x: u64| x + k;
    let refused = |r: Result<(), Error>, call: &str| match r {
        Err(Error::Captures { bytes: 8, .. }) => {}
        other => panic!("{call}: {other:?}"),
    };
    refused(pool.apply(captures, 1).map(drop), "apply");
    refused(pool.apply_async(captures, 1).map(drop), "apply_async");
    refused(pool.map(captures, 0..10).map(drop), "map");
    refused(pool.map_async(captures, 0..10).map(drop), "map_async");
    let mut imap = pool.imap(captures, 0..10);
    refused(imap.next().unwrap().map(drop), "imap");
    assert!(
        imap.next().is_none(),
        "an imap refused answers nothing more"
    );
    let mut unordered = pool.imap_unordered(captures, 0..10);
    refused(unordered.next().unwrap().1.map(drop), "imap_unordered");
    assert!(unordered.next().is_none());
    let captures2 = move |a: i64, b: i64| a + b + k as i64;
    refused(pool.starmap(captures2, pairs).map(drop), "starmap");
    assert_eq!(pool.map(square, 0..100).unwrap(), want);
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    if scenario == "pool-fails" {
        // The serving ranks' local pool cannot be made (a setting out of
        // range): rank 0's init says which rank and why, and no task runs.
        let made = multiproc_pool_mpi::init_with(|| {
            multiproc_pool::Pool::builder().maxtasksperchild(0).build()
        });
        match made {
            Ok(_) => println!("a pool was made"),
            Err(e) => println!("refused: {e}"),
        }
        return;
    }
    let pool = multiproc_pool_mpi::init_with(|| multiproc_pool::Pool::new(2)).unwrap();
    match scenario.as_str() {
        "random" => random_maps(&pool),
        "apply" => apply_and_callbacks(&pool),
        "imap-endless" => imap_endless(&pool),
        "kill-worker" => kill_worker(&pool),
        "lifecycle" => lifecycle(&pool),
        "functions" => functions(&pool),
        "imap-join" => imap_after_join(&pool),
        "imap-terminate" => imap_after_terminate(&pool),
        "kill-rank" => long_map(&pool),
        "callback-nested" => callback_calls_its_pool(pool),
        "callback-drop" => callback_drops_its_pool(pool),
        "callback-on-caller" => callbacks_run_on_a_waiting_caller(&pool),
        "callers-side-by-side" => callers_receive_side_by_side(&pool),
        "callback-drop-waited" => callback_drops_its_pool_while_waited_for(pool),
        "trait" => {
            fn total(p: &impl Tasks) -> u64 {
                let squares: u64 = p.map(square, 0..10u64).unwrap().into_iter().sum();
                let pairs = (0..10i64).map(|i| (i, -2 * i));
                let sums = p.starmap_async(add, pairs).unwrap().get().unwrap();
                squares + sums.into_iter().map(i64::unsigned_abs).sum::<u64>()
            }
            let local = multiproc_pool::Pool::new(1).unwrap();
            assert_eq!(total(&pool), total(&local));
        }
        other => panic!("unknown scenario {other:?}"),
    }
    println!("ok {scenario}");
}
