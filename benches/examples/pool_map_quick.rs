//! Times the pool's map of 1 M trivial u64 items a few times (for perf).
//!
//! Run: `cargo run --release -p multiproc-bench --example pool_map_quick`
//! (`PMAP=1`: a `pmap` of the same items before each map, `PMAP=pause`:
//! `pmap`s alone after pauses, as the report times them; `FORK=1`: a
//! trivial fork before each map, and the map's page faults; `SPLIT=1`: the
//! submitting and the taking halves apart; `CHUNKS=a,b,...`: maps with each
//! chunk size in turn, 0 for Python's, medians of 30 each; `AS_REPORT=`:
//! the report's rounds of the pool, leaving out the parts named; `FLOOR=1`:
//! the map alternated with its floor, the same job through shared memory
//! alone).
use multiproc_bench::minor_faults;
use multiproc_bench::pool::{map_trivial, rayon_trivial};
use multiproc_pool::Pool;

fn main() {
    let pool = Pool::new(0).expect("pool");
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let pause = std::env::var("PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // NO_RAYON=1: the map alone (rayon's own allocations change what malloc
    // keeps between maps).
    let rayon = std::env::var_os("NO_RAYON").is_none();
    if std::env::var("PMAP").is_ok_and(|v| v == "pause") {
        // PMAP=pause: pmap alone, each after a 100 ms pause (the report's
        // rounds of it), nine times; the median.
        let mut t: Vec<f64> = (0..9)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                multiproc_bench::pool::pmap_trivial(n)
            })
            .collect();
        t.sort_by(f64::total_cmp);
        println!("pmap after a pause: median {:.2} ns/item", t[t.len() / 2]);
        return;
    }
    if std::env::var_os("PMAP").is_some() {
        // pmap over the same items (its forks included), beside the pool's map.
        let items: Vec<u64> = (0..n).collect();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let out =
                multiproc_pool::pmap(&items, |&x| multiproc_bench::pool::trivial(x)).expect("pmap");
            let p = t.elapsed().as_nanos() as f64 / n as f64;
            assert_eq!(out.len() as u64, n);
            println!(
                "pmap {p:.1} ns/item, map {:.1} ns/item",
                map_trivial(&pool, n)
            );
        }
        return;
    }
    if std::env::var_os("FORK").is_some() {
        // A trivial fork and wait before each map (the first-touch cost of a
        // fork in the caller's process), with the map's page faults counted.
        for _ in 0..10 {
            // SAFETY: the child only calls `_exit`, which is safe after fork.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    libc::_exit(0);
                }
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            let before = minor_faults(libc::RUSAGE_SELF);
            let m = map_trivial(&pool, n);
            println!(
                "after a fork: map {m:.1} ns/item, {} page faults",
                minor_faults(libc::RUSAGE_SELF) - before
            );
        }
        return;
    }
    if std::env::var_os("FLOOR").is_some() {
        // FLOOR=1: the map (after a map of 1 000 items, as in the report's
        // rounds) and its floor alternated, each after PAUSE_MS, medians of
        // 15; FAULTS=1 prints the page faults of each (the floor's setup
        // included). The floor forks its workers from this process, after
        // which the first write to each page faults: an untimed map of the
        // same size takes those faults before the timed one.
        let procs = multiproc_proc::cpu_count();
        let (mut m, mut f) = (Vec::new(), Vec::new());
        let pause = std::time::Duration::from_millis(pause);
        let faults = std::env::var_os("FAULTS").is_some();
        for _ in 0..15 {
            std::thread::sleep(pause);
            map_trivial(&pool, n);
            map_trivial(&pool, 1_000);
            let before = minor_faults(libc::RUSAGE_SELF);
            m.push(map_trivial(&pool, n));
            let map_faults = minor_faults(libc::RUSAGE_SELF) - before;
            std::thread::sleep(pause);
            let before = minor_faults(libc::RUSAGE_SELF);
            f.push(multiproc_bench::pool::map_floor(procs, n));
            if faults {
                println!(
                    "map: {map_faults} page faults, floor: {}",
                    minor_faults(libc::RUSAGE_SELF) - before
                );
            }
        }
        println!(
            "map {:.2} ns/item, its floor (shared memory alone) {:.2}",
            multiproc_bench::median(&m),
            multiproc_bench::median(&f)
        );
        return;
    }
    if let Ok(skip) = std::env::var("AS_REPORT") {
        // AS_REPORT=...: the report's rounds of the pool (apply, pipelined
        // apply_async, then the maps and rayon, each after a 100 ms pause;
        // the report runs pmap in rounds of its own, as AS_REPORT=pmap does),
        // leaving out those named (apply, async, rayon, pmap); the map's
        // median and quartiles over 15 rounds.
        use multiproc_bench::pool::{apply_async_pipelined, apply_one, pmap_trivial};
        let settle = || std::thread::sleep(std::time::Duration::from_millis(100));
        let (mut t, mut faults) = (Vec::new(), Vec::new());
        apply_one(&pool, 2_000);
        for _ in 0..15 {
            if !skip.contains("apply") {
                apply_one(&pool, 20_000);
            }
            if !skip.contains("async") {
                apply_async_pipelined(&pool, 100_000);
            }
            // As the report: a map straight after a pause (its own row
            // there), then another pause and a map of 1 000 items that
            // wakes the workers before the counted one.
            settle();
            map_trivial(&pool, n);
            settle();
            map_trivial(&pool, 1_000);
            let before = minor_faults(libc::RUSAGE_SELF);
            t.push(map_trivial(&pool, n));
            faults.push(minor_faults(libc::RUSAGE_SELF) - before);
            if !skip.contains("rayon") {
                settle();
                rayon_trivial(n);
            }
            if !skip.contains("pmap") {
                settle();
                pmap_trivial(n);
            }
        }
        t.sort_by(f64::total_cmp);
        faults.sort_unstable();
        println!(
            "map, skipping {skip:?}: median {:.2} ns/item (quartiles {:.2}-{:.2}), \
             median {} page faults in this process",
            t[t.len() / 2],
            t[t.len() / 4],
            t[3 * t.len() / 4],
            faults[faults.len() / 2]
        );
        return;
    }
    if let Ok(sizes) = std::env::var("CHUNKS") {
        // CHUNKS=a,b,...: maps with each chunk size in turn (0: Python's),
        // 30 rounds, the median and quartiles of each (PAUSE_MS before each).
        let sizes: Vec<usize> = sizes.split(',').filter_map(|c| c.parse().ok()).collect();
        let mut times = vec![Vec::new(); sizes.len()];
        for _ in 0..30 {
            for (i, &c) in sizes.iter().enumerate() {
                std::thread::sleep(std::time::Duration::from_millis(pause));
                let chunk = (c > 0).then_some(c);
                let t = std::time::Instant::now();
                let out = pool
                    .map_async_chunked(multiproc_bench::pool::trivial, 0..n, chunk)
                    .and_then(|r| r.get())
                    .expect("map");
                times[i].push(t.elapsed().as_nanos() as f64 / n as f64);
                assert_eq!(out.len() as u64, n);
            }
        }
        for (c, mut t) in sizes.into_iter().zip(times) {
            t.sort_by(f64::total_cmp);
            println!(
                "chunk {c}: median {:.2} ns/item (quartiles {:.2}-{:.2})",
                t[t.len() / 2],
                t[t.len() / 4],
                t[3 * t.len() / 4]
            );
        }
        return;
    }
    if std::env::var_os("SPLIT").is_some() {
        // How long map_async takes to encode and send every chunk, then how
        // long the get waits and decodes.
        for _ in 0..10 {
            let t0 = std::time::Instant::now();
            let chunk: Option<usize> = std::env::var("CHUNK").ok().and_then(|c| c.parse().ok());
            let r = pool
                .map_async_chunked(multiproc_bench::pool::trivial, 0..n, chunk)
                .expect("map_async");
            let t1 = std::time::Instant::now();
            let out = r.get().expect("get");
            let t2 = std::time::Instant::now();
            assert_eq!(out.len() as u64, n);
            println!(
                "submit {:.1} ns/item, get {:.1} ns/item",
                (t1 - t0).as_nanos() as f64 / n as f64,
                (t2 - t1).as_nanos() as f64 / n as f64
            );
        }
        return;
    }
    for _ in 0..10 {
        let before = minor_faults(libc::RUSAGE_SELF);
        let m = map_trivial(&pool, n);
        let faults = minor_faults(libc::RUSAGE_SELF) - before;
        std::thread::sleep(std::time::Duration::from_millis(pause));
        if rayon {
            println!(
                "map {:.1} ns/item ({faults} page faults in this process), rayon {:.2} ns/item",
                m,
                rayon_trivial(n)
            );
        } else {
            println!("map {m:.1} ns/item, {faults} page faults in this process");
        }
    }
}
