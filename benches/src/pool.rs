//! The pool's measures and its peers': Python's `multiprocessing.Pool`,
//! rayon, a sequential loop, raw `fork`.

use std::hint::black_box;
use std::time::Instant;

use multiproc_pool::{pmap_with, PmapOptions, Pool};
use rayon::prelude::*;

/// A trivial task.
pub fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// About `iters` dependent multiply-adds: the CPU-bound item (≈60 µs at
/// 100 000 on this machine's cores).
pub fn cpu_item(seed: u64) -> u64 {
    let mut h = seed | 1;
    for i in 0..100_000u64 {
        h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i) ^ (h >> 29);
    }
    h
}

/// Nanoseconds per blocking `apply` of a trivial task, one in flight.
pub fn apply_one(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        black_box(pool.apply(trivial, i).expect("apply"));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per task of `n` trivial `apply_async`s sent, then all taken.
pub fn apply_async_pipelined(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| pool.apply_async(trivial, i).expect("apply_async"))
        .collect();
    for h in handles {
        black_box(h.get().expect("get"));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Nanoseconds per task of `n` trivial `apply_async`s taken in windows of
/// `window` in flight: a window submitted, then its results taken, and the
/// next (a caller that works in batches, and the local part of the MPI
/// pool's pipelined row). Between windows the workers run dry and the
/// caller waits for the window's last answers: where either sleeps, a
/// window pays the wake-ups.
///
/// # Panics
/// If a call fails.
pub fn apply_async_windows(pool: &Pool, n: u64, window: u64) -> f64 {
    let t = Instant::now();
    for start in (0..n).step_by(window.max(1) as usize) {
        let handles: Vec<_> = (start..(start + window).min(n))
            .map(|i| pool.apply_async(trivial, i).expect("apply_async"))
            .collect();
        for h in handles {
            black_box(h.get().expect("get"));
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// The floor of a pipelined `apply_async` through the pool's own queues:
/// nanoseconds per task of `n` trivial tasks that one thread of this process
/// sends to `workers` forked processes (an inbox of `depth` slots each, as
/// the pool's: [`multiproc_pool::DEFAULT_INBOX`] deep, slots of
/// [`multiproc_pool::DEFAULT_MAX_INLINE`]) and whose answers it reads from
/// one shared answer queue, refilling each inbox as its answers come. No job
/// or task is recorded, no handle made, nothing encoded by serde, no death
/// looked for: what is left is the queues, the processes and the CPUs.
///
/// # Panics
/// If a queue or a fork fails, or an answer is wrong.
pub fn bare_pipeline(workers: usize, depth: usize, n: u64) -> f64 {
    use multiproc_queue::ByteQueue;
    let inline = multiproc_pool::DEFAULT_MAX_INLINE;
    let inboxes: Vec<ByteQueue> = (0..workers)
        .map(|_| ByteQueue::new(depth, inline).expect("inbox"))
        .collect();
    let answers = ByteQueue::new(workers * depth + workers + 1, inline).expect("answers");
    let children: Vec<libc::pid_t> = (0..workers)
        .map(|w| {
            let (inbox, answers) = (&inboxes[w], &answers);
            crate::fork_running_child(move || {
                // Dies with this process if it panics before the end below.
                crate::die_with_parent();
                let mut task = Vec::with_capacity(64);
                loop {
                    task.clear();
                    // An empty message (or a failure): the run is over.
                    if inbox.get_bytes_into(&mut task).is_err() || task.len() != 16 {
                        return;
                    }
                    let seq = u64::from_le_bytes(task[..8].try_into().expect("8 bytes"));
                    let x = u64::from_le_bytes(task[8..].try_into().expect("8 bytes"));
                    let mut answer = [0u8; 24];
                    answer[..8].copy_from_slice(&seq.to_le_bytes());
                    answer[8..16].copy_from_slice(&(w as u64).to_le_bytes());
                    answer[16..].copy_from_slice(&trivial(x).to_le_bytes());
                    if answers.put_bytes(&answer).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    let mut out = vec![0u64; n as usize];
    let mut held = vec![0usize; workers];
    let (mut next, mut got) = (0u64, 0u64);
    let mut answer = Vec::with_capacity(64);
    let t = Instant::now();
    while got < n {
        // Fill every inbox (the emptiest first), as the pool's driver does.
        while next < n {
            let w = (0..workers).min_by_key(|&w| held[w]).expect("a worker");
            if held[w] >= depth {
                break;
            }
            let mut task = [0u8; 16];
            task[..8].copy_from_slice(&next.to_le_bytes());
            task[8..].copy_from_slice(&next.to_le_bytes());
            inboxes[w].try_put_bytes(&task).expect("inbox has room");
            held[w] += 1;
            next += 1;
        }
        answer.clear();
        answers.get_bytes_into(&mut answer).expect("answer");
        let word = |i: usize| u64::from_le_bytes(answer[i..i + 8].try_into().expect("8 bytes"));
        out[word(0) as usize] = word(16);
        held[word(8) as usize] -= 1;
        got += 1;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    for inbox in &inboxes {
        inbox.put_bytes(&[]).expect("inbox");
    }
    for pid in children {
        crate::wait_child(pid);
    }
    assert!(out.iter().enumerate().all(|(i, &r)| r == trivial(i as u64)));
    ns
}

/// The floor of the pool's `map` of `n` trivial `u64` items: nanoseconds per
/// item of the same job with nothing but shared memory between this process
/// and `workers` processes forked before the clock starts, as the pool's are.
/// The items are written into a shared array in Python's chunks, one chunk
/// at a time, and each worker claims the next chunk written, copies it out
/// into memory of its own (DESIGN.md's rule for bytes a peer can write),
/// and writes its results into a second shared array; this process copies
/// each chunk's results out, in order, as they are marked done. No message,
/// queue, encoding or job is involved, and no death looked for: four passes
/// over the items' bytes (written, copied out, written back, copied out) and
/// the lines that cross between the CPUs. The copies are `memcpy`s, as fast
/// as the pool's copies out of shared memory (`rep movsb`, which a peer's
/// writes cannot make a data race): here a chunk is marked (release, then
/// acquire) only once its writer is done with it, so nobody writes it while
/// it is copied.
///
/// # Panics
/// If a segment or a fork fails, or a result is wrong.
pub fn map_floor(workers: usize, n: u64) -> f64 {
    use multiproc_shm::SharedSlice;
    use multiproc_sync::futex;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    // Control words: chunks written, next chunk to claim, workers ready,
    // then each chunk's done mark.
    const WRITTEN: usize = 0;
    const NEXT: usize = 1;
    const READY: usize = 2;
    const DONE: usize = 3;
    let n = n as usize;
    let chunk = n.div_ceil(4 * workers.max(1)).max(1);
    let chunks = n.div_ceil(chunk);
    let range = |c: usize| c * chunk..n.min((c + 1) * chunk);
    let ctl = SharedSlice::<AtomicU32>::anonymous(DONE + chunks).expect("control words");
    let input = SharedSlice::<AtomicU64>::anonymous(n.max(1)).expect("input");
    let output = SharedSlice::<AtomicU64>::anonymous(n.max(1)).expect("output");
    // Both arrays' pages faulted in, as a pool's lanes are after its first map.
    for i in 0..n {
        input[i].store(0, Ordering::Relaxed);
        output[i].store(0, Ordering::Relaxed);
    }
    // Until `word` reaches `at`: spins, then sleeps on it, as the pool's
    // threads do (three threads share two CPUs here, and one that yields
    // in a loop kept a worker off its CPU for milliseconds).
    let wait = |word: &AtomicU32, at: u32| {
        for _ in 0..400 {
            if word.load(Ordering::Acquire) >= at {
                return;
            }
            std::hint::spin_loop();
        }
        loop {
            let now = word.load(Ordering::Acquire);
            if now >= at {
                return;
            }
            futex::wait(word, now, None);
        }
    };
    let mark = |word: &AtomicU32, value: u32| {
        word.store(value, Ordering::Release);
        futex::wake_all(word);
    };
    let children: Vec<libc::pid_t> = (0..workers)
        .map(|_| {
            let (ctl, input, output) = (&ctl, &input, &output);
            crate::fork_running_child(move || {
                crate::die_with_parent();
                // Written once, so that its pages are there before the clock
                // (`vec![0; n]` maps zeroed pages at the first write).
                let mut own = vec![1u64; chunk];
                // The arrays' pages mapped here too (a child maps a shared
                // page at its first touch), as a pool worker's lanes are
                // after its first map.
                for i in (0..n).step_by(512) {
                    input[i].load(Ordering::Relaxed);
                    output[i].load(Ordering::Relaxed);
                }
                ctl[READY].fetch_add(1, Ordering::AcqRel);
                futex::wake_all(&ctl[READY]);
                loop {
                    let c = ctl[NEXT].fetch_add(1, Ordering::AcqRel) as usize;
                    if c >= chunks {
                        return;
                    }
                    wait(&ctl[WRITTEN], c as u32 + 1);
                    let r = range(c);
                    // SAFETY: the chunk lies inside both arrays and `own`
                    // holds a chunk; the parent wrote it before it marked it
                    // written (acquired above) and writes it no more; nobody
                    // reads these results until the chunk is marked done.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            input.as_ptr().cast::<u64>().add(r.start),
                            own.as_mut_ptr(),
                            r.len(),
                        );
                        let results = output.as_ptr().cast::<u64>().add(r.start);
                        for (k, x) in own[..r.len()].iter().enumerate() {
                            results.add(k).write(trivial(*x));
                        }
                    }
                    mark(&ctl[DONE + c], 1);
                }
            })
        })
        .collect();
    wait(&ctl[READY], workers as u32);
    // The results' buffer written once, so that its pages are there before
    // the clock too: the pool's map writes its output into memory malloc
    // hands back (no page faults after its first map), where a fresh 8 MB
    // here took about 2 000.
    let mut out = vec![1u64; n];
    let t = Instant::now();
    for c in 0..chunks {
        for i in range(c) {
            // SAFETY: i < n, inside the input array; nobody reads chunk c
            // until it is marked written below.
            unsafe { input.as_ptr().cast::<u64>().add(i).write(i as u64) };
        }
        mark(&ctl[WRITTEN], c as u32 + 1);
    }
    for c in 0..chunks {
        wait(&ctl[DONE + c], 1);
        let r = range(c);
        let dst = &mut out[r.clone()];
        // SAFETY: the chunk's results lie inside the output array, and its
        // worker wrote them before it marked the chunk done (acquired above)
        // and writes them no more; `dst` holds as many.
        unsafe {
            std::ptr::copy_nonoverlapping(
                output.as_ptr().cast::<u64>().add(r.start),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
    for pid in children {
        crate::wait_child(pid);
    }
    assert!(out.iter().enumerate().all(|(i, &r)| r == trivial(i as u64)));
    ns
}

/// Nanoseconds per item of `map` over `n` trivial `u64` items (Python's chunking).
pub fn map_trivial(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    let out = pool.map(trivial, 0..n).expect("map");
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(out.len() as u64, n);
    dt
}

/// Microseconds a call of `calls` small calls in a loop, as a user of
/// Python's `Pool.map` writes them: a `map` of `items` trivial `u64`s
/// (Python's chunks), or with `imap` an `imap` of them (single items, as
/// Python's default `chunksize` of 1), collected.
///
/// # Panics
/// If a call fails or answers wrong.
pub fn small_calls(pool: &Pool, items: u64, calls: u32, imap: bool) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        let out: Vec<u64> = if imap {
            pool.imap(trivial, 0..items)
                .map(|r| r.expect("imap"))
                .collect()
        } else {
            pool.map(trivial, 0..items).expect("map")
        };
        let out = black_box(out);
        assert!(out.len() as u64 == items && (0..items).all(|i| out[i as usize] == trivial(i)));
    }
    t.elapsed().as_nanos() as f64 / f64::from(calls.max(1)) / 1e3
}

/// Python's `Pool.map` and `Pool.imap` of `items` trivial items in loops of
/// `calls` (as [`small_calls`]), microseconds a call: `(map, imap)`, or
/// `None` without `python3`.
pub fn python_small_calls(processes: usize, items: u64, calls: u32) -> Option<(f64, f64)> {
    let v = python_pool_timings(
        processes,
        &format!(
            "\x20       t = time.perf_counter()\n\
             \x20       for _ in range({calls}): p.map(f, range({items}))\n\
             \x20       a = (time.perf_counter() - t) / {calls}\n\
             \x20       t = time.perf_counter()\n\
             \x20       for _ in range({calls}): list(p.imap(f, range({items})))\n\
             \x20       b = (time.perf_counter() - t) / {calls}\n\
             \x20   print(a * 1e6, b * 1e6)\n"
        ),
    )?;
    (v.len() == 2).then(|| (v[0], v[1]))
}

/// The trivial item of a `starmap`: two numbers in, one out.
pub fn add_pair(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

/// Nanoseconds per item of `starmap` over `n` pairs of `u64`s (raw tuples
/// each way: see `multiproc-pool`'s `raw` module), Python's chunks.
pub fn starmap_pairs(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    let out = pool
        .starmap(add_pair, (0..n).map(|i| (i, i >> 1)))
        .expect("starmap");
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(out.len() as u64, n);
    dt
}

/// Python's `Pool.starmap` over `n` pairs of ints, default chunks: ns/item;
/// `None` without `python3`.
pub fn python_starmap(processes: usize, n: u64) -> Option<f64> {
    let v = python_pool_timings(
        processes,
        &format!(
            "\x20       pairs = [(i, i >> 1) for i in range({n})]\n\
             \x20       t = time.perf_counter()\n\
             \x20       p.starmap(g, pairs)\n\
             \x20       a = (time.perf_counter() - t) / {n}\n\
             \x20   print(a * 1e9)\n"
        ),
    )?;
    (v.len() == 1).then(|| v[0])
}

/// Runs `body` (lines indented inside `with mp.Pool(processes) as p:`,
/// where `f(x)` is `x + 1`, `g(a, b)` is `a + b`, and a map of 1 000 items
/// has warmed the pool up, ending with a `print` of numbers at the script's
/// level) and parses the numbers it prints; `None` without `python3`.
fn python_pool_timings(processes: usize, body: &str) -> Option<Vec<f64>> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def f(x): return x + 1\n\
         def g(a, b): return a + b\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   with mp.Pool({processes}) as p:\n\
         \x20       p.map(f, range(1000))\n\
         {body}"
    );
    let out = crate::run_python_line(&script)?;
    Some(
        out.split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect(),
    )
}

/// Nanoseconds per item of `map` over `n` trivial `u64` items in chunks of
/// `chunk` items (a size a user picks; 2 000 make messages of 18 KB, which
/// streamed one at a time through a lane while the pool's slots were 16 KiB).
pub fn map_trivial_chunked(pool: &Pool, n: u64, chunk: usize) -> f64 {
    let t = Instant::now();
    let out = pool.map_chunked(trivial, 0..n, chunk).expect("map");
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(out.len() as u64, n);
    dt
}

/// Nanoseconds per item of `pmap` over `n` trivial `u64` items (its forks
/// included: a millisecond or two, about a nanosecond an item here).
pub fn pmap_trivial(n: u64) -> f64 {
    let items: Vec<u64> = (0..n).collect();
    let t = Instant::now();
    let out = multiproc_pool::pmap(&items, |&x| trivial(x)).expect("pmap");
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(out.len() as u64, n);
    dt
}

/// Nanoseconds per item of rayon's `par_iter` over the same job.
pub fn rayon_trivial(n: u64) -> f64 {
    let items: Vec<u64> = (0..n).collect();
    let t = Instant::now();
    let out: Vec<u64> = items.par_iter().map(|&x| trivial(x)).collect();
    let dt = t.elapsed().as_nanos() as f64 / n as f64;
    black_box(out);
    dt
}

/// Milliseconds for `n` CPU-bound items: sequentially.
pub fn cpu_sequential(n: u64) -> f64 {
    let t = Instant::now();
    let out: Vec<u64> = (0..n).map(cpu_item).collect();
    black_box(out);
    t.elapsed().as_secs_f64() * 1e3
}

/// Milliseconds for `n` CPU-bound items through the pool's `map`.
pub fn cpu_pool(pool: &Pool, n: u64) -> f64 {
    let t = Instant::now();
    black_box(pool.map(cpu_item, 0..n).expect("map"));
    t.elapsed().as_secs_f64() * 1e3
}

/// Milliseconds for `n` CPU-bound items with rayon.
pub fn cpu_rayon(n: u64) -> f64 {
    let t = Instant::now();
    let out: Vec<u64> = (0..n).into_par_iter().map(cpu_item).collect();
    black_box(out);
    t.elapsed().as_secs_f64() * 1e3
}

/// Milliseconds for `n` CPU-bound items with `pmap` (workers forked per call).
pub fn cpu_pmap(n: u64, processes: usize) -> f64 {
    let items: Vec<u64> = (0..n).collect();
    let t = Instant::now();
    let out = pmap_with(
        &items,
        |&x| cpu_item(x),
        PmapOptions {
            processes,
            chunksize: 0,
            timeout: None,
        },
    )
    .expect("pmap");
    black_box(out);
    t.elapsed().as_secs_f64() * 1e3
}

/// Microseconds per worker of a `pmap` of one trivial item per worker: the
/// cost of forking, running and joining a worker.
pub fn pmap_fork_per_worker(processes: usize, calls: u32) -> f64 {
    let items: Vec<u64> = (0..processes as u64).collect();
    let t = Instant::now();
    for _ in 0..calls {
        black_box(
            pmap_with(
                &items,
                |&x| x,
                PmapOptions {
                    processes,
                    chunksize: 1,
                    timeout: None,
                },
            )
            .expect("pmap"),
        );
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(calls) / processes as f64
}

/// The length of a byte argument sent as a `Vec<u8>` (a byte at a time).
pub fn bytes_len(v: Vec<u8>) -> usize {
    v.len()
}

/// The length of a byte argument sent as a `serde_bytes::ByteBuf` (one block).
pub fn buf_len(v: serde_bytes::ByteBuf) -> usize {
    v.len()
}

/// Microseconds per blocking `apply` whose argument is `n` bytes, as a
/// `Vec<u8>` (serde encodes it a byte at a time) or, with `as_buf`, a
/// `serde_bytes::ByteBuf` (one block); `reps` calls.
///
/// # Panics
/// If the pool fails or answers a wrong length.
pub fn apply_bytes(pool: &Pool, n: usize, reps: u32, as_buf: bool) -> f64 {
    let data = vec![7u8; n];
    let t = Instant::now();
    for _ in 0..reps {
        let got = if as_buf {
            pool.apply(buf_len, serde_bytes::ByteBuf::from(data.clone()))
        } else {
            pool.apply(bytes_len, data.clone())
        };
        assert_eq!(got.expect("apply"), n);
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(reps)
}

/// Python's `Pool.apply` of a `bytes` argument of `n` bytes, `reps` calls:
/// microseconds per call, or `None` without `python3`.
pub fn python_apply_bytes(processes: usize, n: usize, reps: u32) -> Option<f64> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def f(b): return len(b)\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   with mp.Pool({processes}) as p:\n\
         \x20       d = bytes(7 for _ in range({n}))\n\
         \x20       p.apply(f, (d,))\n\
         \x20       t = time.perf_counter()\n\
         \x20       for i in range({reps}): assert p.apply(f, (d,)) == {n}\n\
         \x20       print((time.perf_counter() - t) / {reps} * 1e6)\n"
    );
    crate::run_python_line(&script)?.trim().parse().ok()
}

/// Microseconds per task of `n` trivial `apply_async`s, sent then taken, in
/// a pool of `processes` workers that each run one task and are replaced
/// (Python's `maxtasksperchild=1`): a worker's start and end a task. The
/// pool is made and its first workers replaced once before the clock starts.
///
/// # Panics
/// If the pool cannot start, or a task fails.
pub fn apply_async_recycled(processes: usize, n: u64) -> f64 {
    let pool = Pool::builder()
        .processes(processes)
        .maxtasksperchild(1)
        .build()
        .expect("pool");
    for i in 0..processes as u64 {
        black_box(pool.apply(trivial, i).expect("apply"));
    }
    apply_async_pipelined(&pool, n) / 1e3
}

/// A task that kills its own worker (`SIGKILL`).
pub fn kill_own_worker(_: u64) -> u64 {
    // SAFETY: a signal to this very process, a pool worker.
    unsafe { libc::raise(libc::SIGKILL) };
    0
}

/// Microseconds from a blocking `apply` of a task that kills its worker to
/// its `WorkerDied` error, the median of `n` (the pool replaces the worker
/// each time and goes on).
///
/// # Panics
/// If a call answers anything but `WorkerDied`.
pub fn apply_worker_death(pool: &Pool, n: usize) -> f64 {
    let mut us: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let r = pool.apply(kill_own_worker, 0);
            assert!(
                matches!(r, Err(multiproc_pool::Error::WorkerDied { .. })),
                "{r:?}"
            );
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    us[us.len() / 2]
}

/// Python's nearest: `concurrent.futures.ProcessPoolExecutor`, whose task
/// kills its worker; microseconds from the submission to its
/// `BrokenProcessPool` (the executor is then broken, so each of the `n`
/// runs makes a new one), the median; `None` without `python3`.
pub fn python_worker_death(processes: usize, n: usize) -> Option<f64> {
    let script = format!(
        "import concurrent.futures as cf, multiprocessing as mp, os, signal, time\n\
         def die(x):\n\
         \x20   if x: os.kill(os.getpid(), signal.SIGKILL)\n\
         \x20   return x\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   ts = []\n\
         \x20   for i in range({n}):\n\
         \x20       with cf.ProcessPoolExecutor({processes}) as ex:\n\
         \x20           ex.submit(die, 0).result()\n\
         \x20           t = time.perf_counter()\n\
         \x20           try: ex.submit(die, 1).result()\n\
         \x20           except cf.process.BrokenProcessPool: ts.append(time.perf_counter() - t)\n\
         \x20   ts.sort()\n\
         \x20   print(ts[len(ts) // 2] * 1e6)\n"
    );
    crate::run_python_line(&script)?.trim().parse().ok()
}

/// Python's [`apply_async_recycled`]: `Pool(processes, maxtasksperchild=1)`,
/// microseconds per task; `None` without `python3`.
pub fn python_recycled(processes: usize, n: u64) -> Option<f64> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def f(x): return x + 1\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   with mp.Pool({processes}, maxtasksperchild=1) as p:\n\
         \x20       for i in range({processes}): p.apply(f, (i,))\n\
         \x20       t = time.perf_counter()\n\
         \x20       rs = [p.apply_async(f, (i,)) for i in range({n})]\n\
         \x20       for r in rs: r.get()\n\
         \x20       print((time.perf_counter() - t) / {n} * 1e6)\n"
    );
    crate::run_python_line(&script)?.trim().parse().ok()
}

/// Python's `Pool(processes)`: nanoseconds per blocking `apply` of a trivial
/// function, per pipelined `apply_async`, and per item of `map` over `n_map`
/// items with its default chunks; `None` without `python3`.
pub fn python_pool(
    processes: usize,
    n_apply: u64,
    n_async: u64,
    n_map: u64,
) -> Option<(f64, f64, f64)> {
    let v = python_pool_timings(
        processes,
        &format!(
            "\x20       t = time.perf_counter()\n\
             \x20       for i in range({n_apply}): p.apply(f, (i,))\n\
             \x20       a = (time.perf_counter() - t) / {n_apply}\n\
             \x20       t = time.perf_counter()\n\
             \x20       rs = [p.apply_async(f, (i,)) for i in range({n_async})]\n\
             \x20       for r in rs: r.get()\n\
             \x20       b = (time.perf_counter() - t) / {n_async}\n\
             \x20       t = time.perf_counter()\n\
             \x20       p.map(f, range({n_map}))\n\
             \x20       c = (time.perf_counter() - t) / {n_map}\n\
             \x20   print(a * 1e9, b * 1e9, c * 1e9)\n"
        ),
    )?;
    (v.len() == 3).then(|| (v[0], v[1], v[2]))
}
