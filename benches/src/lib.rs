//! Benches of multiproc's hot paths and the comparison report against its peers.
//!
//! - `cargo bench -p multiproc-bench` runs the criterion benches (`benches/`).
//! - `scripts/report` (`cargo run --release -p multiproc-bench --bin report`,
//!   with the `iceoryx2` feature when libclang is there) runs every primitive
//!   beside its peers in one run and prints ratios: the only numbers worth quoting
//!   on a shared, noisy machine.
//!
//! This library holds what both use: the peers that are not crates
//! ([`PthreadMutex`], process-shared and optionally robust), the floor of the
//! lock rows ([`BareLock`], [`BareByteLock`]) and the two-process harness [`hammer`].

use std::time::{Duration, Instant};

use multiproc_shm::Segment;

#[cfg(feature = "iceoryx2")]
pub mod iceoryx2_peer;
pub mod page;
pub mod pool;
pub mod queue;

/// Forks a child that runs `f` and exits 0.
///
/// # Panics
/// If `fork` fails.
pub fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benches are single-threaded; the child runs `f` and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        f();
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// As [`fork_child`], but returns only once the child is running `f`'s first
/// instruction, so that a measurement started afterwards does not count the
/// child's start (for round trips, where the first one would otherwise wait for
/// it).
pub fn fork_running_child(f: impl FnOnce()) -> libc::pid_t {
    let started =
        multiproc_shm::Shared::anonymous(std::sync::atomic::AtomicU32::new(0)).expect("start flag");
    let pid = fork_child(|| {
        started.store(1, std::sync::atomic::Ordering::SeqCst);
        f();
    });
    while started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    pid
}

/// Has the kernel SIGKILL this process when its parent dies: for a child
/// forked by a bench, so that it ends with the run even mid-row.
pub fn die_with_parent() {
    // SAFETY: prctl with these arguments only sets a signal (one system
    // call, safe in a fork of a process that runs threads).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// A process that keeps one CPU busy (a spin loop) for as long as it is
/// held: the busy program in the report's rows "a busy process beside" (a
/// build, a browser, another job on a shared machine).
/// Killed and reaped when dropped; it dies with this process too.
pub struct BusyProcess(libc::pid_t);

impl BusyProcess {
    /// Forks it, running once this returns.
    ///
    /// # Panics
    /// If `fork` fails.
    #[must_use]
    pub fn start() -> BusyProcess {
        BusyProcess(fork_running_child(|| {
            // Then it only spins: nothing else is safe in a fork of a
            // process that runs threads, and nothing else is needed.
            die_with_parent();
            loop {
                std::hint::spin_loop();
            }
        }))
    }
}

impl Drop for BusyProcess {
    fn drop(&mut self) {
        // SAFETY: our child, killed then reaped; a null status pointer is
        // allowed. (Errors ignored: nothing to do about them in a drop.)
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// Reaps a child made by [`fork_child`].
///
/// # Panics
/// If it did not exit with 0.
pub fn wait_child(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer; pid is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "bench child failed"
    );
}

/// A `pthread_mutex_t` in an anonymous shared segment, `PTHREAD_PROCESS_SHARED`,
/// optionally `PTHREAD_MUTEX_ROBUST`: the peer that multiproc's locks are measured
/// against.
pub struct PthreadMutex {
    seg: Segment,
}

impl PthreadMutex {
    /// A process-shared mutex; `robust` adds owner-death recovery (`EOWNERDEAD`).
    ///
    /// # Panics
    /// If the segment cannot be mapped or pthread refuses the attributes.
    pub fn new(robust: bool) -> PthreadMutex {
        // The mutex, then the u64 it protects (`data`), in one cache line, as a
        // `Mutex<u64>` keeps its value beside its lock word.
        let seg = Segment::anonymous(DATA_OFFSET + 8).expect("segment");
        assert!(
            (seg.as_ptr() as usize).is_multiple_of(64),
            "the mutex starts a cache line"
        );
        let m = seg.as_ptr().cast::<libc::pthread_mutex_t>();
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: attr is initialised by pthread_mutexattr_init before any other use;
        // m points to zeroed, aligned, shared memory large enough for a mutex, which
        // pthread_mutex_init initialises.
        unsafe {
            assert_eq!(libc::pthread_mutexattr_init(attr.as_mut_ptr()), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED),
                0
            );
            if robust {
                assert_eq!(
                    libc::pthread_mutexattr_setrobust(
                        attr.as_mut_ptr(),
                        libc::PTHREAD_MUTEX_ROBUST
                    ),
                    0
                );
            }
            assert_eq!(libc::pthread_mutex_init(m, attr.as_ptr()), 0);
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        }
        PthreadMutex { seg }
    }

    /// `pthread_mutex_lock`.
    #[inline]
    pub fn lock(&self) {
        // SAFETY: the mutex was initialised in new() and lives as long as self.
        let r = unsafe { libc::pthread_mutex_lock(self.seg.as_ptr().cast()) };
        debug_assert_eq!(r, 0);
    }

    /// `pthread_mutex_unlock`.
    #[inline]
    pub fn unlock(&self) {
        // SAFETY: as in lock; the caller holds the mutex.
        let r = unsafe { libc::pthread_mutex_unlock(self.seg.as_ptr().cast()) };
        debug_assert_eq!(r, 0);
    }

    /// Locks, adds one to [`data`](PthreadMutex::data), unlocks: the same work
    /// as `*mutex.lock().unwrap() += 1` on ours and on std's, so that every lock
    /// row compares like with like.
    #[inline]
    pub fn increment(&self) {
        self.lock();
        let d = self.data();
        d.store(
            d.load(std::sync::atomic::Ordering::Relaxed) + 1,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.unlock();
    }

    /// A u64 beside the mutex, in its cache line: the data it protects.
    pub fn data(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the segment holds DATA_OFFSET + 8 bytes, zeroed, 8-aligned at
        // DATA_OFFSET; it lives as long as self.
        unsafe { &*self.seg.as_ptr().add(DATA_OFFSET).cast() }
    }
}

/// The floor of an uncontended lock+unlock: a compare-and-swap that takes a
/// 32-bit word and a swap that frees it (each a locked instruction on x86),
/// with the same increment between them as the lock rows make. No waiting, no
/// owner, no sleeper's wake-up: not a lock anyone should use, only what every
/// lock that can put a waiter to sleep pays at least (a plain store to free
/// the word could overwrite the bit a waiter sets just before it sleeps, and
/// that waiter would never be woken). `std`'s mutex and ours take and free
/// their word with exactly these two instructions; ours needs the 32 bits to
/// hold the holder's tid, which is how a waiter finds a dead holder.
#[derive(Default)]
pub struct BareLock {
    word: std::sync::atomic::AtomicU32,
    data: std::sync::atomic::AtomicU64,
}

impl BareLock {
    /// Takes the word, adds one to the value beside it, frees the word (the
    /// work of `*mutex.lock().unwrap() += 1`).
    ///
    /// # Panics
    /// If the word is taken already (another thread uses this one).
    #[inline]
    pub fn increment(&self) {
        use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        let taken = self.word.compare_exchange(0, 1, Acquire, Relaxed).is_ok();
        assert!(taken, "BareLock is for one thread");
        self.data.store(self.data.load(Relaxed) + 1, Relaxed);
        // A lock looks at what the swap returned for sleepers to wake; this
        // one checks it was still the holder.
        assert_eq!(self.word.swap(0, Release), 1, "BareLock is for one thread");
    }

    /// The value incremented so far.
    pub fn value(&self) -> u64 {
        self.data.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// [`BareLock`] with `parking_lot`'s pair of instructions: a compare-and-swap
/// of a one-byte word to take it, another to free it. A byte holds no tid.
#[derive(Default)]
pub struct BareByteLock {
    word: std::sync::atomic::AtomicU8,
    data: std::sync::atomic::AtomicU64,
}

impl BareByteLock {
    /// As [`BareLock::increment`].
    ///
    /// # Panics
    /// If the word is taken already (another thread uses this one).
    #[inline]
    pub fn increment(&self) {
        use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        let taken = self.word.compare_exchange(0, 1, Acquire, Relaxed).is_ok();
        assert!(taken, "BareByteLock is for one thread");
        self.data.store(self.data.load(Relaxed) + 1, Relaxed);
        let freed = self.word.compare_exchange(1, 0, Release, Relaxed).is_ok();
        assert!(freed, "BareByteLock is for one thread");
    }

    /// The value incremented so far.
    pub fn value(&self) -> u64 {
        self.data.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where `PthreadMutex::data` lies: right after the `pthread_mutex_t`.
const DATA_OFFSET: usize = std::mem::size_of::<libc::pthread_mutex_t>().next_multiple_of(8);
const _: () = assert!(DATA_OFFSET + 8 <= 64);

/// Runs `work(iters)` in this process and in one forked child at the same time;
/// returns the wall time until both finished.
///
/// # Panics
/// If `fork` fails or the child does not exit cleanly.
pub fn hammer(iters: u64, work: impl Fn(u64)) -> Duration {
    let go = Segment::anonymous(8).expect("segment");
    let flag = go.as_ptr().cast::<std::sync::atomic::AtomicU64>();
    // SAFETY: the segment is 8 zeroed, aligned bytes that outlive both uses below.
    let flag = unsafe { &*flag };
    // SAFETY: the benches are single-threaded; the child runs `work` and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        flag.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        while flag.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            std::hint::spin_loop();
        }
        work(iters);
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    while flag.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        std::hint::spin_loop();
    }
    let start = Instant::now();
    flag.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    work(iters);
    let mut status = 0;
    // SAFETY: status is a valid out-pointer; pid is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let elapsed = start.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "bench child failed"
    );
    elapsed
}

/// What a lock hand-off costs between two processes when the lock is held
/// briefly: `n` times, this process takes the lock through `critical` (which
/// locks, runs its argument, unlocks), tells a forked child to come and holds
/// the lock for `hold`; the child, told, takes the lock (waiting for the
/// release) and says so. Nanoseconds per hand-off beyond the hold: how soon a
/// waiter gets a lock released under it, which a spinning waiter makes short
/// and a sleeping one long.
///
/// # Panics
/// If `fork` fails or the child does not exit cleanly.
pub fn lock_handoff(n: u64, hold: Duration, critical: impl Fn(&dyn Fn())) -> f64 {
    let turn =
        multiproc_shm::Shared::anonymous(std::sync::atomic::AtomicU64::new(0)).expect("turn");
    let wait_for = |v: u64| {
        while turn.load(std::sync::atomic::Ordering::Acquire) != v {
            std::hint::spin_loop();
        }
    };
    let child = fork_running_child(|| {
        for i in 0..n {
            wait_for(2 * i + 1);
            critical(&|| turn.store(2 * i + 2, std::sync::atomic::Ordering::Release));
        }
    });
    let t = Instant::now();
    for i in 0..n {
        critical(&|| {
            turn.store(2 * i + 1, std::sync::atomic::Ordering::Release);
            let held = Instant::now();
            while held.elapsed() < hold {
                std::hint::spin_loop();
            }
        });
        wait_for(2 * i + 2);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64 - hold.as_nanos() as f64;
    wait_child(child);
    ns
}

/// Nanoseconds per iteration of `f`, the best of `rounds` runs of `iters`.
pub fn ns_per_iter(rounds: u32, iters: u64, mut f: impl FnMut(u64)) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f(iters);
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Every sample of each of `fs`: `rounds` rounds, each running every measure once,
/// in turn (f0, f1, ..., f0, f1, ...), so that all meet the same drift of a
/// shared machine. Take [`best`] or [`median`] of each.
pub fn interleaved(rounds: u32, fs: &mut [&mut dyn FnMut() -> f64]) -> Vec<Vec<f64>> {
    let mut samples = vec![Vec::new(); fs.len()];
    for _ in 0..rounds {
        for (s, f) in samples.iter_mut().zip(fs.iter_mut()) {
            s.push(f());
        }
    }
    samples
}

/// The smallest sample: for costs that noise only ever makes larger.
pub fn best(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

/// `CLOCK_MONOTONIC` in nanoseconds: a time other processes (and `perf
/// record -k CLOCK_MONOTONIC`) can compare.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Minor page faults so far of `who` (`RUSAGE_SELF`, `RUSAGE_CHILDREN`), from
/// `getrusage`.
pub fn minor_faults(who: i32) -> i64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: u is a valid out-pointer.
    unsafe { libc::getrusage(who, u.as_mut_ptr()) };
    // SAFETY: zeroed and filled by getrusage.
    unsafe { u.assume_init() }.ru_minflt
}

/// The median sample: for costs that swing from round to round (process start,
/// sleeping hand-offs), where the best round of either side is luck more than speed.
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A measure for [`interleaved`]: nanoseconds per iteration of one round of
/// `iters` iterations of `f`.
pub fn timed(iters: u64, mut f: impl FnMut(u64)) -> impl FnMut() -> f64 {
    move || ns_per_iter(1, iters, &mut f)
}

/// Raw `fork` + `_exit(0)` + `waitpid`: the floor for starting and joining a child.
///
/// # Panics
/// If `fork` fails.
pub fn raw_fork_exit_wait() {
    wait_child(fork_child(|| {}));
}

/// Microseconds per `Process(target=f).start(); join()` in Python's
/// `multiprocessing`, measured by `python3` itself (the best of `rounds` rounds of
/// `n`, as ours is measured); `None` without `python3`.
pub fn python_process_start_join_us(rounds: u32, n: u32) -> Option<f64> {
    let script = format!(
        "import multiprocessing as mp, time\n\
         def f(): pass\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('fork')\n\
         \x20   best = float('inf')\n\
         \x20   for _ in range({rounds}):\n\
         \x20       t = time.perf_counter()\n\
         \x20       for _ in range({n}):\n\
         \x20           p = mp.Process(target=f); p.start(); p.join()\n\
         \x20       best = min(best, (time.perf_counter() - t) / {n})\n\
         \x20   print(best * 1e6)\n"
    );
    run_python(&script)
}

/// Runs `script` with `python3 -c` and parses the number it prints; `None`
/// without `python3` or without a number.
pub fn run_python(script: &str) -> Option<f64> {
    run_python_line(script)?.parse().ok()
}

/// What `script`, run by `python3`, printed (trimmed); `None` without `python3`
/// or when it failed.
pub fn run_python_line(script: &str) -> Option<String> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::{BareByteLock, BareLock};

    #[test]
    fn the_bare_locks_count_their_increments_and_free_their_words() {
        let (floor, byte) = (BareLock::default(), BareByteLock::default());
        for _ in 0..3 {
            floor.increment();
            byte.increment();
        }
        assert_eq!((floor.value(), byte.value()), (3, 3));
    }
}
