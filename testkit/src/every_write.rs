//! Kill a process at every store it makes into shared memory.
//!
//! Random kills land where the scheduler puts them, mostly between operations.
//! This harness instead enumerates the instants that matter: for an operation
//! that makes `W` stores into a shared region, it runs the operation again and
//! again, each time in a fresh forked victim that is killed just before its
//! `n`-th store (n = 1..=W), and once more right after its last store (before
//! whatever system call follows it, such as a futex wake), and lets the test
//! check what the survivors see afterwards.
//!
//! # How it works (x86-64 Linux)
//! The victim sets up what the operation needs, then calls [`armed`] with the
//! operation: the region is write-protected (`mprotect(PROT_READ)`; the
//! mapping stays writable in every other process) and each store into it
//! faults:
//!
//! 1. the `SIGSEGV` handler checks that the address is in the region (any other
//!    fault is a real crash: the default action is restored and the instruction
//!    faults again), counts the store, and makes the region writable again;
//!    when it is the store to die before, it sends itself `SIGKILL` (the kernel's
//!    exit path and the survivors see the memory as it was before that store);
//! 2. otherwise it sets the trap flag in the saved flags register and returns:
//!    the faulting instruction runs again, once, and completes;
//! 3. the single-step trap (`SIGTRAP`) that follows clears the trap flag,
//!    dies if this was the store to die after, and write-protects the region
//!    again.
//!
//! So each store, whether a plain `mov`, a compare-and-swap or any locked
//! read-modify-write, is one step, and the victim dies between two of them
//! exactly as a process killed there would. Loads are not faults. A system call
//! that writes into the region would fail with `EFAULT` instead of faulting;
//! the crates' operations make none (their futex calls only read the word).
//!
//! The count `W` comes from a first, complete run; a run whose path differs
//! (a wait that happens or not) may make fewer stores and complete, which
//! [`Outcome::Completed`] reports.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::{fork, ChildExit};

/// How a victim's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Killed just before its `n`-th store into the region (1-based): stores
    /// `1..n` were made, `n` and later were not.
    KilledBefore(u64),
    /// Killed right after its last store, before anything else it does.
    KilledAfterLast,
    /// The operation completed (it made fewer stores than the kill point).
    Completed,
}

/// What [`every_write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Stores the complete run made into the region.
    pub writes: u64,
    /// Runs killed at a store.
    pub killed: u64,
    /// Runs that completed before their kill point.
    pub completed: u64,
    /// Where the complete run's stores went, as offsets into the region (the
    /// first [`TRACED`]), to tell which store a kill point is.
    pub offsets: Vec<usize>,
}

/// How many stores' offsets a [`Report`] keeps.
pub const TRACED: usize = 500;

// The victim's state, read by its signal handlers. The victim is a forked,
// single-threaded child: plain atomics are enough.
static START: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
static DIE_AT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Die in the trap after this store (u64::MAX: never).
static DIE_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);
/// Offsets of the first stores, for the report (the counting run's).
static OFFSETS: [AtomicUsize; TRACED] = [const { AtomicUsize::new(0) }; TRACED];

/// The x86-64 trap flag in the flags register: one instruction, then `SIGTRAP`.
const TRAP_FLAG: libc::greg_t = 0x100;

fn protect(prot: libc::c_int) {
    let (start, len) = (START.load(Ordering::Relaxed), LEN.load(Ordering::Relaxed));
    // SAFETY: the region is a mapping the victim owns for the whole run;
    // changing its protection is async-signal-safe.
    unsafe { libc::mprotect(start as *mut libc::c_void, len, prot) };
}

extern "C" fn on_segv(_: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let (start, len) = (START.load(Ordering::Relaxed), LEN.load(Ordering::Relaxed));
    if !(start..start + len).contains(&addr) {
        // A real crash: fault again with the default action.
        // SAFETY: resetting a handler is async-signal-safe.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        return;
    }
    let n = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(slot) = OFFSETS.get(n as usize - 1) {
        slot.store(addr - start, Ordering::Relaxed);
    }
    protect(libc::PROT_READ | libc::PROT_WRITE);
    if n == DIE_AT.load(Ordering::Relaxed) {
        // SAFETY: kill and getpid are async-signal-safe; SIGKILL ends the process here.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    // SAFETY: ctx is the ucontext_t the kernel saved; the flags it restores on
    // return are ours to change.
    unsafe {
        let uc = ctx.cast::<libc::ucontext_t>();
        (*uc).uc_mcontext.gregs[libc::REG_EFL as usize] |= TRAP_FLAG;
    }
}

extern "C" fn on_trap(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: as in on_segv.
    unsafe {
        let uc = ctx.cast::<libc::ucontext_t>();
        (*uc).uc_mcontext.gregs[libc::REG_EFL as usize] &= !TRAP_FLAG;
    }
    if COUNT.load(Ordering::Relaxed) == DIE_AFTER.load(Ordering::Relaxed) {
        // SAFETY: as in on_segv.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    protect(libc::PROT_READ);
}

fn install(
    signal: libc::c_int,
    handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
) {
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe
    // (atomics, mprotect, kill, getpid).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(signal, &sa, std::ptr::null_mut()), 0);
    }
}

/// Runs `op` with the region of this victim write-protected, its stores
/// counted (and the victim killed at the one chosen by [`every_write`]).
///
/// Call it from the `victim` closure given to [`every_write`], around the
/// operation under test; what the victim does before and after it is not
/// counted. Outside a victim it just runs `op`.
pub fn armed<R>(op: impl FnOnce() -> R) -> R {
    if LEN.load(Ordering::Relaxed) == 0 {
        return op();
    }
    COUNT.store(0, Ordering::Relaxed);
    protect(libc::PROT_READ);
    let r = op();
    protect(libc::PROT_READ | libc::PROT_WRITE);
    r
}

/// In a victim: prepares the handlers for `region`, dying before store
/// `die_at` or after store `die_after` of its armed part; returns how many
/// stores that made.
fn run_victim(region: (*mut u8, usize), die_at: u64, die_after: u64, victim: impl FnOnce()) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let start = region.0 as usize & !(page - 1);
    let len = (region.0 as usize + region.1 - start).div_ceil(page) * page;
    START.store(start, Ordering::Relaxed);
    LEN.store(len, Ordering::Relaxed);
    COUNT.store(0, Ordering::Relaxed);
    DIE_AT.store(die_at, Ordering::Relaxed);
    DIE_AFTER.store(die_after, Ordering::Relaxed);
    install(libc::SIGSEGV, on_segv);
    install(libc::SIGTRAP, on_trap);
    victim();
    COUNT.load(Ordering::Relaxed)
}

/// Kills `victim` at every store it makes into `region` and checks each
/// aftermath.
///
/// For each trial: `setup` makes a fresh state in the parent (and may fork the
/// peers that must be there while the victim runs); `region` names the shared
/// memory of that state; a forked victim runs `victim`, which wraps the
/// operation under test in [`armed`], and is killed before its `n`-th store
/// there (or after its last); then `check` runs in the parent with the state
/// and the outcome, and does what the survivors must be able to do. The first
/// trial runs to completion and counts the stores; then `n` goes from 1 to
/// that count, and one more trial dies after the last store. Every victim is
/// reaped; one that neither dies nor completes within `limit` fails the test.
///
/// Call it from a test that runs in a process of its own (it forks).
pub fn every_write<S>(
    setup: impl Fn() -> S,
    region: impl Fn(&S) -> (*mut u8, usize),
    victim: impl Fn(&S),
    check: impl Fn(&S, Outcome),
    limit: Duration,
) -> Report {
    let (writes, offsets) = {
        let state = setup();
        let counts = SharedWord::new();
        let r = region(&state);
        let mut child = fork(|| {
            let n = run_victim(r, u64::MAX, u64::MAX, || victim(&state));
            counts.set(0, n as usize);
            for (i, o) in OFFSETS.iter().enumerate().take(n as usize) {
                counts.set(i + 1, o.load(Ordering::Relaxed));
            }
            0
        });
        assert_eq!(
            child.wait_timeout(limit),
            Some(ChildExit::Exited(0)),
            "the counting run of the victim did not complete"
        );
        check(&state, Outcome::Completed);
        let n = counts.get(0);
        (
            n as u64,
            (1..=n.min(TRACED))
                .map(|i| counts.get(i))
                .collect::<Vec<_>>(),
        )
    };
    assert!(writes > 0, "the operation made no store into the region");
    let mut report = Report {
        writes,
        killed: 0,
        completed: 0,
        offsets,
    };
    // Kill points: before each store, then after the last.
    for n in 1..=writes + 1 {
        let (die_at, die_after, killed) = if n <= writes {
            (n, u64::MAX, Outcome::KilledBefore(n))
        } else {
            (u64::MAX, writes, Outcome::KilledAfterLast)
        };
        let state = setup();
        let r = region(&state);
        let mut child = fork(|| {
            run_victim(r, die_at, die_after, || victim(&state));
            0
        });
        let outcome = match child.wait_timeout(limit) {
            Some(ChildExit::Signaled(libc::SIGKILL)) => {
                report.killed += 1;
                killed
            }
            Some(ChildExit::Exited(0)) => {
                report.completed += 1;
                Outcome::Completed
            }
            other => panic!("victim to be killed at {killed:?} of {writes} stores: {other:?}"),
        };
        check(&state, outcome);
    }
    report
}

/// Words in a shared anonymous page: the victim's store count and offsets,
/// for the parent.
struct SharedWord(*mut AtomicUsize);

impl SharedWord {
    fn new() -> SharedWord {
        SharedWord(crate::shared_page().cast())
    }

    fn set(&self, i: usize, v: usize) {
        assert!(i <= TRACED);
        // SAFETY: the page (4096 bytes, more than TRACED + 1 words) is mapped
        // until drop and zero-initialised: valid AtomicUsizes.
        unsafe { (*self.0.add(i)).store(v, Ordering::SeqCst) }
    }

    fn get(&self, i: usize) -> usize {
        assert!(i <= TRACED);
        // SAFETY: as in set.
        unsafe { (*self.0.add(i)).load(Ordering::SeqCst) }
    }
}

impl Drop for SharedWord {
    fn drop(&mut self) {
        // SAFETY: the page mapped in new, not used after this.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}
