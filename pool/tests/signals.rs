//! CPython's `test_poll_eintr`, for every crate: a program with a signal
//! handler installed without `SA_RESTART` (so that every system call the
//! signal interrupts fails with `EINTR`, `poll` and `futex` whatever the
//! flag), signalled every 200 µs while it waits, gets what it waited for:
//! each blocking call returns its result, and each timeout runs its full
//! length. A wait that took `EINTR` for its answer fails here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_proc::Process;
use multiproc_shm::Shared;
use multiproc_sync::{Event, Lock};
use multiproc_testkit::Watchdog;

const LIMIT: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(60);

static SIGNALS_HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    SIGNALS_HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Signals the thread that made it with `SIGUSR1` every 200 µs until
/// dropped, then checks that its handler ran.
struct Interrupter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Interrupter {
    fn start() -> Interrupter {
        // SAFETY: a zeroed `sigaction` is valid; the handler only counts
        // (async-signal-safe); no `SA_RESTART`, on purpose.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        // SAFETY: always safe to call.
        let me = unsafe { libc::pthread_self() };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                // SAFETY: `me` is the test's thread, which outlives this one
                // (it joins it in `drop`).
                unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        Interrupter {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Interrupter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        if !std::thread::panicking() {
            assert!(
                SIGNALS_HANDLED.load(Ordering::Relaxed) > 100,
                "the waits were hardly interrupted"
            );
        }
    }
}

/// Runs `f` and checks that it took at least `at_least`.
fn timed<T>(at_least: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    assert!(
        took >= at_least,
        "{what} returned after {took:?}, before its {at_least:?}"
    );
    r
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn a_process_join_and_the_locks_and_events_wait_through_signals() {
    let _dog = Watchdog::arm(LIMIT, "proc and sync through signals");
    let lock = Shared::anonymous(Lock::new()).unwrap();
    let held = Shared::anonymous(Event::new()).unwrap();
    let go = Shared::anonymous(Event::new()).unwrap();
    let _signals = Interrupter::start();
    let mut p = Process::new(|| {
        lock.acquire().unwrap();
        held.set();
        sleep_ms(200);
        lock.release().unwrap();
        sleep_ms(100);
        go.set();
        sleep_ms(100);
        7
    });
    p.start().unwrap();
    held.wait();
    let r = timed(SHORT, "Lock::acquire_timeout", || {
        lock.acquire_timeout(SHORT)
    });
    assert!(matches!(r, Err(multiproc_sync::Error::Timeout)), "{r:?}");
    lock.acquire().unwrap();
    lock.release().unwrap();
    go.wait();
    let r = timed(SHORT, "Process::join_timeout", || p.join_timeout(SHORT));
    assert!(matches!(r, Err(multiproc_proc::Error::Timeout)), "{r:?}");
    assert_eq!(p.join().unwrap(), 7);
    let r = timed(SHORT, "Event::wait_timeout", || {
        Event::new().wait_timeout(SHORT)
    });
    assert!(r.is_err());
}

#[test]
fn a_queue_and_a_pipe_receive_through_signals() {
    let _dog = Watchdog::arm(LIMIT, "queue and pipe through signals");
    let q = multiproc_queue::Queue::<u64>::new(4).unwrap();
    let (a, b) = multiproc_queue::pipe(true).unwrap();
    let _signals = Interrupter::start();
    let r = timed(SHORT, "Queue::get_timeout", || q.get_timeout(SHORT));
    assert!(matches!(r, Err(multiproc_queue::Error::Timeout)), "{r:?}");
    let r = timed(SHORT, "Connection::recv_bytes_timeout", || {
        a.recv_bytes_timeout(SHORT)
    });
    assert!(matches!(r, Err(multiproc_queue::Error::Timeout)), "{r:?}");
    assert!(!timed(SHORT, "Connection::poll_timeout", || a.poll_timeout(SHORT)).unwrap());
    let mut p = Process::new(|| {
        sleep_ms(100);
        q.put(42).unwrap();
        sleep_ms(100);
        b.send_bytes(b"after").unwrap();
        sleep_ms(100);
        b.send_bytes(&vec![9; 1 << 20]).unwrap();
    });
    p.start().unwrap();
    assert_eq!(q.get().unwrap(), 42);
    assert_eq!(a.recv_bytes().unwrap(), b"after");
    assert_eq!(a.recv_bytes().unwrap(), vec![9; 1 << 20]);
    p.join().unwrap();
}

fn slow(ms: u64) -> u64 {
    sleep_ms(ms);
    ms
}

#[test]
fn a_pool_and_pmap_answer_through_signals() {
    let _dog = Watchdog::arm(LIMIT, "pool through signals");
    let pool = multiproc_pool::Pool::new(2).unwrap();
    let _signals = Interrupter::start();
    assert_eq!(pool.apply(slow, 100).unwrap(), 100);
    assert_eq!(pool.map(slow, vec![30; 6]).unwrap(), vec![30; 6]);
    let mut h = pool.apply_async(slow, 300).unwrap();
    let r = timed(SHORT, "AsyncResult::get_timeout", || h.get_timeout(SHORT));
    assert!(matches!(r, Err(multiproc_pool::Error::Timeout)), "{r:?}");
    assert_eq!(h.get().unwrap(), 300);
    let doubled = multiproc_pool::pmap(&[1u64, 2, 3], |x| {
        sleep_ms(50);
        x * 2
    });
    assert_eq!(doubled.unwrap(), [2, 4, 6]);
    pool.close();
    pool.join().unwrap();
}
