//! What runs in each worker process: take a task from the inbox, say which
//! one it is in the worker's slot, run it, answer, and again.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc_queue::ByteQueue;
use multiproc_shm::SharedSlice;
use multiproc_sync::futex::try_yield;

use crate::colocation::{move_off, note, spread, this_cpu, MOVE_AFTER, SHARED_YIELDS};
use crate::wire::{self, Progress, Tramp, TARGET_CLOSURE, TARGET_FN};

multiproc_shm::shm_struct! {
    /// One worker's record in shared memory, two 64-byte lines of its own
    /// (the worker writes the first on every task; a shared line would
    /// bounce).
    pub(crate) sync struct Slot {
        /// The task it runs now (its `seq`), 0 between tasks: written before
        /// the task starts and cleared after its answer is published. When
        /// the worker dies, the task named here is the one that died with it.
        pub(crate) task: AtomicU64,
        /// The item of that task it runs now (0-based).
        pub(crate) item: AtomicU64,
        /// [`READY`] once its initializer has returned; 0 before.
        pub(crate) state: AtomicU64,
        /// Its build identity ([`wire::build_id`]), written at start.
        pub(crate) build: AtomicU64,
        reserved: [AtomicU64; 4],
        // The second line, written only when a value changes, so that each
        // side reads the other's from its own cache (see `colocation`).
        /// The CPU the worker last waited on (a `this_cpu`).
        pub(crate) cpu: AtomicU64,
        /// The CPU of the thread that last sent it a task (a `this_cpu`).
        pub(crate) driver_cpu: AtomicU64,
        /// Its pid, written at start.
        pub(crate) pid: AtomicU64,
        reserved_2: [AtomicU64; 5],
    }
}

const _: () = assert!(std::mem::size_of::<Slot>() == 128);

/// Looks at an empty inbox before a worker whose driver runs elsewhere
/// yields: a task sent within a few microseconds is taken with no syscall
/// (as many looks as the queue's blocking get made, its fast path's and its
/// slow path's, before the pool took its waiting over).
const WAIT_SPINS: u32 = 400;

/// Yields after those looks before the worker sleeps: a task a few tens of
/// microseconds away (a caller's own work between `apply`s) still finds it
/// awake, where a sleeping worker costs a wake-up, tens of microseconds on a
/// VM whose idle vCPUs halt (a blocking `apply` every 10 µs took 1.5-2.3 µs
/// with the yields and 4.6 without, `benches/NOTES.md`). Each is a
/// [`try_yield`], which counts every slow yield against the busy program:
/// the queue's own yields (a [`try_yield_watching`] of the ring) count a
/// slice as the peers' work when the ring moved a few places meanwhile, as a
/// driver refilling its worker's inbox moves it, and beside a busy process
/// the queue's yields, then made whatever they cost, had the pool's
/// pipelined `apply_async` take 80 times as long.
///
/// [`try_yield_watching`]: multiproc_sync::futex::try_yield_watching
const WAIT_YIELDS: u32 = 32;

/// The next task into `msg`. A worker whose driver last sent from the CPU it
/// runs on yields to it, then sleeps, instead of spinning out the queue's
/// budget while the driver waits for that CPU; one that finds it so
/// [`MOVE_AFTER`] times running moves to another CPU (see `colocation`).
/// Any other looks, yields and sleeps ([`wait_then_get`]).
fn next_task(
    inbox: &ByteQueue,
    slot: &Slot,
    msg: &mut Vec<u8>,
    shared_run: &mut u32,
) -> multiproc_queue::Result<usize> {
    let cpu = this_cpu();
    note(&slot.cpu, cpu);
    if cpu == 0 || slot.driver_cpu.load(Ordering::Relaxed) != cpu {
        *shared_run = 0;
        return wait_then_get(inbox, msg);
    }
    *shared_run += 1;
    if *shared_run >= MOVE_AFTER {
        *shared_run = 0;
        if move_off(cpu) {
            return wait_then_get(inbox, msg);
        }
    }
    // (No more yields once one ran a busy task for a slice: the poll's
    // sleep ends at the driver's put.)
    for _ in 0..SHARED_YIELDS {
        if !try_yield() {
            break;
        }
        if inbox.has_message() {
            return inbox.get_bytes_into(msg);
        }
    }
    // A poll sleeps at once on an empty ring; it fails as a get would once
    // the pool is gone.
    while !inbox.poll_timeout(Duration::from_secs(1))? {}
    inbox.get_bytes_into(msg)
}

/// The next task into `msg`, for a worker whose driver runs on another CPU:
/// [`WAIT_SPINS`] looks at the inbox, then up to [`WAIT_YIELDS`] yields
/// while it stays empty (none once a yield has handed a busy program its
/// slice), then the get, which sleeps at once on an empty inbox (its spin
/// limit is 0) until the driver's put wakes it.
fn wait_then_get(inbox: &ByteQueue, msg: &mut Vec<u8>) -> multiproc_queue::Result<usize> {
    for look in 0..WAIT_SPINS + WAIT_YIELDS {
        if inbox.has_message() {
            break;
        }
        if look < WAIT_SPINS {
            std::hint::spin_loop();
        } else if !try_yield() {
            break;
        }
    }
    inbox.get_bytes_into(msg)
}

/// `Slot::state` of a worker past its initializer.
pub(crate) const READY: u64 = 1;

/// Set by `hooks::die_while_answering` inside a task: the worker claims its
/// answer's slot and is killed before it writes it.
#[cfg(feature = "test-hooks")]
pub(crate) static DIE_WHILE_ANSWERING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Exit codes of a worker that stops by itself.
pub(crate) const EXIT_DONE: i32 = 0;
/// Its initializer panicked.
pub(crate) const EXIT_INITIALIZER: i32 = 70;
/// It runs another build than the pool (never for forked workers).
pub(crate) const EXIT_BUILD: i32 = 71;
/// Its parent (the zygote) was gone when it started.
pub(crate) const EXIT_ORPHAN: i32 = 72;
/// Its inbox or the answer queue was written over (a check failed).
pub(crate) const EXIT_CORRUPTED: i32 = 73;

/// A closure-made pool's function, erased: runs `count` items of its input.
pub(crate) type Closure = dyn Fn(&[u8], u32, &mut Vec<u8>, &Progress) + Send;

/// The memory the pool shares with its workers, made before the zygote is
/// forked: every worker (and replacement) inherits it.
pub(crate) struct Channels {
    /// The workers' answers, one queue for each [`ANSWER_GROUP`] workers
    /// (see [`Channels::answers_of`]); the pool reads them all.
    pub(crate) results: Vec<ByteQueue>,
    /// One inbox per worker slot: the pool writes, the worker reads.
    pub(crate) inboxes: Vec<ByteQueue>,
    /// One record per worker slot.
    pub(crate) slots: SharedSlice<Slot>,
}

/// Workers that share one answer queue. A queue keeps an entry for each
/// thread that uses it (its dead-peer detection), 64 at most: 32 workers
/// leave 32 for the pool's threads that read. One queue for every worker
/// refused the 64th (a pool of `cpu_count()` on a machine of 64 CPUs failed
/// every map).
pub(crate) const ANSWER_GROUP: usize = 32;

impl Channels {
    /// The answer queue of worker slot `w`.
    pub(crate) fn answers_of(&self, w: usize) -> &ByteQueue {
        &self.results[(w / ANSWER_GROUP).min(self.results.len() - 1)]
    }
}

/// What a worker is started with (inherited through the zygote).
pub(crate) struct Setup {
    pub(crate) channels: std::sync::Arc<Channels>,
    pub(crate) initializer: Option<Box<dyn Fn() + Send>>,
    pub(crate) closure: Option<Box<Closure>>,
    pub(crate) max_tasks: Option<u64>,
    /// The pool's build identity.
    pub(crate) build: u64,
}

/// The worker's loop; returns its exit code.
pub(crate) fn run(setup: &Setup, index: usize, zygote: u32) -> i32 {
    // Die with the zygote, and so with the pool's process (the zygote dies
    // with it the same way).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() as u32 != zygote {
        return EXIT_ORPHAN;
    }
    quiet_panics();
    let ch = &setup.channels;
    let (Some(slot), Some(inbox)) = (ch.slots.get(index), ch.inboxes.get(index)) else {
        return EXIT_ORPHAN;
    };
    let answers = ch.answers_of(index);
    let build = wire::build_id();
    slot.build.store(build, Ordering::Relaxed);
    if build != setup.build {
        return EXIT_BUILD;
    }
    if let Some(init) = &setup.initializer {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(init)).is_err() {
            return EXIT_INITIALIZER;
        }
    }
    // Its entries in its two queues, taken now: a queue keeps an entry for
    // each thread that uses it, 64 at most, and the threads of a program
    // that calls the pool from many could take them all before this
    // worker's first answer (it then found none and left).
    let _ = inbox.enter();
    let _ = answers.enter();
    slot.pid
        .store(u64::from(std::process::id()), Ordering::Relaxed);
    slot.state.store(READY, Ordering::Release);
    let mut msg = Vec::new();
    let mut out = Vec::new();
    let mut done = 0u64;
    let mut shared_run = 0;
    let mut next_look = None;
    loop {
        // Closed (the pool joins) or gone: this worker's work is over; its
        // inbox written over: the pool must know (it cannot be replaced).
        // (Its entry, taken at the start, gone: written over too.)
        match next_task(inbox, slot, &mut msg, &mut shared_run) {
            Ok(_) => {}
            Err(
                multiproc_queue::Error::Corrupted(_)
                | multiproc_queue::Error::TooManyParticipants(_),
            ) => return EXIT_CORRUPTED,
            Err(_) => return EXIT_DONE,
        }
        let Some((task, items)) = wire::read_task(&msg) else {
            continue; // not a task: nothing to answer
        };
        if task.count > 1 {
            spread(ch, index, &mut next_look);
        }
        slot.item.store(0, Ordering::Relaxed);
        // SYNC: Release orders the item reset before; the pool reads the slot
        // only after this process ended (its pidfd), which orders everything.
        slot.task.store(task.seq, Ordering::Release);
        out.clear();
        wire::answer_header(&mut out, task.seq, task.count);
        match task.target {
            TARGET_FN => {
                // SAFETY: the pool wrote a trampoline's offset and a function of
                // its types, in the same build (checked above): both addresses
                // are of those functions.
                unsafe {
                    let tramp =
                        std::mem::transmute::<usize, Tramp>(wire::address_at(task.tramp_off));
                    tramp(
                        wire::address_at(task.fn_off),
                        items,
                        task.count,
                        &mut out,
                        &slot.item,
                    );
                }
            }
            TARGET_CLOSURE => match &setup.closure {
                Some(f) => f(items, task.count, &mut out, &slot.item),
                None => continue,
            },
            _ => continue,
        }
        #[cfg(feature = "test-hooks")]
        if DIE_WHILE_ANSWERING.load(Ordering::Relaxed) {
            answers.hook_claim_put_and_stop();
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        match answers.put_bytes(&out) {
            Ok(()) => {}
            Err(
                multiproc_queue::Error::Corrupted(_)
                | multiproc_queue::Error::TooManyParticipants(_),
            ) => return EXIT_CORRUPTED,
            Err(_) => return EXIT_DONE, // the pool is gone
        }
        slot.task.store(0, Ordering::Release);
        done += 1;
        if setup.max_tasks.is_some_and(|max| done >= max) {
            return EXIT_DONE;
        }
    }
}

thread_local! {
    /// The last panic's message and location, recorded by the worker's hook.
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Waits, before a fork, for any thread of this process that is running the
/// panic hook. That thread holds the hook's lock (and, in the default hook,
/// stderr's and the backtrace's) until the hook returns; a process forked
/// meanwhile keeps them held for ever, and each worker forked from it then
/// hung in [`quiet_panics`]'s `set_hook` (seen: a pool made while another
/// thread printed a panic's backtrace never answered). Taking the hook waits
/// for that thread; the hook is put back at once. (A panic that begins in
/// the moment between the two uses the default hook.)
pub(crate) fn no_panic_in_flight() {
    std::panic::set_hook(std::panic::take_hook());
}

/// Replaces the panic hook: a task's panic is recorded for its answer, not
/// printed (the caller gets it, as Python's pool re-raises in the parent).
pub(crate) fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_text(info.payload());
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
    }));
}

/// The message and location of the panic whose payload is `payload`.
pub(crate) fn last_panic(payload: &(dyn std::any::Any + Send)) -> (String, String) {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| (panic_text(payload), String::new()))
}

/// A panic payload's text.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}
