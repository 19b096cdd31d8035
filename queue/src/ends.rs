//! Who holds a queue open: the closed flag and the handle counts in one word,
//! and a register per role of the processes that hold handles, for finding the
//! dead ones.
//!
//! # The `ends` word (`Geometry::ends`)
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0 | [`CLOSED`] | `close` was called: puts fail; gets drain, then answer `Closed` |
//! | 1, 2 | overflow | more processes held write (read) handles at once than the register has entries |
//! | 8–31 | writers | write handles held, in every process |
//! | 40–63 | readers | read handles held (pipe directions only) |
//!
//! A put's fast path reads this one word: a closed queue, or a pipe direction
//! nobody reads any more, sends it to the general path, which says which. A get
//! that finds the ring empty reads it too: no write handle left anywhere means
//! no message can come ([`Error::Disconnected`](crate::Error::Disconnected)) —
//! at once, without a liveness check.
//!
//! # Counts and registers
//! Registering a handle adds one to the count, then to the process's entry in the
//! role's register (`Control::writers` or `readers`); unregistering takes one from
//! the entry, then from the count. So a process killed between the two steps
//! leaves the count too high, never too low: a count of 0 always means no live
//! handle. A count that stays up because its holders were killed is found by
//! [`any_live`], which looks at the registered processes (a pidfd check each) and
//! takes a dead one's handles off the count. Past [`HOLDERS`] processes of one
//! role, the extra ones are counted but not registered: the count then never
//! drops below them, and `any_live` answers `true` for them.
//!
//! # At exit
//! A process that leaves through `exit` gives back the handles it still holds
//! (an exit handler walks the list below), as the kernel closes a leaving
//! process's descriptors; one that is killed, or leaves through `_exit`, is
//! found dead by [`any_live`].
//!
//! # Across `fork`
//! A child forked with handles holds them too, as a child holds its parent's file
//! descriptors. Its handles are counted by the parent's `prepare` fork handler,
//! before the fork (so that a parent dropping its copy right after cannot take a
//! count to 0 while the child holds one), and entered in the registers by the
//! child's handler before it runs any code of its own. That handler touches only
//! atomics in the mappings and makes a few plain syscalls (its identity:
//! `getpid`, `pidfd_open`, `fstat`) — no allocation, no lock, as POSIX allows
//! after `fork` in a multi-threaded program. A child that then `exec`s another
//! program stays registered while that program runs (spawn processes with
//! `std::process::Command`, which does not run fork handlers, instead). Registering
//! it on its first use instead would let a reader see no writer (and answer
//! `Disconnected`) while a child that holds the only write handle has not used
//! it yet: Python's pattern of closing the unused end in the parent right after
//! the fork.

use std::sync::atomic::AtomicUsize;

use crate::layout::{Control, Holder, HOLDERS};
use crate::primitive::{current_process, process_alive, Ordering};

/// `close` was called.
pub(crate) const CLOSED: u64 = 1;
/// More processes held write handles at once than the register has entries.
const WRITERS_OVERFLOW: u64 = 1 << 1;
/// The same for read handles.
const READERS_OVERFLOW: u64 = 1 << 2;
const WRITER: u64 = 1 << 8;
const WRITERS_MASK: u64 = 0xff_ffff << 8;
const READER: u64 = 1 << 40;
const READERS_MASK: u64 = 0xff_ffff << 40;

/// A handle's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// It may put (every queue handle but a receiver's).
    Write,
    /// It may get, and is counted as such (a pipe direction's receiving end).
    Read,
}

impl Role {
    fn one(self) -> u64 {
        match self {
            Role::Write => WRITER,
            Role::Read => READER,
        }
    }

    fn mask(self) -> u64 {
        match self {
            Role::Write => WRITERS_MASK,
            Role::Read => READERS_MASK,
        }
    }

    /// Set once a process of this role found no free entry (sticky).
    fn overflow(self) -> u64 {
        match self {
            Role::Write => WRITERS_OVERFLOW,
            Role::Read => READERS_OVERFLOW,
        }
    }

    fn register(self, ctl: &Control) -> &[Holder; HOLDERS] {
        match self {
            Role::Write => &ctl.writers,
            Role::Read => &ctl.readers,
        }
    }

    fn fork_list(self) -> &'static [AtomicUsize; FORK_LIST] {
        match self {
            Role::Write => &FORK_WRITERS,
            Role::Read => &FORK_READERS,
        }
    }
}

/// Handles of `role` counted in `ends`.
pub(crate) fn count(ends: u64, role: Role) -> u64 {
    (ends & role.mask()) / role.one()
}

/// Whether a put may take its fast path: the queue is open and, in a pipe
/// direction, someone holds a read handle.
#[inline(always)]
pub(crate) fn put_allowed(ends: u64, pipe: bool) -> bool {
    ends & CLOSED == 0 && (!pipe || ends & READERS_MASK != 0)
}

/// Adds one handle of `role` held by `me` to the count and to `me`'s entry.
pub(crate) fn register(ctl: &Control, role: Role, me: u64) {
    add_to_count(ctl, role, true);
    add_to_register(ctl, role, me);
}

/// Adds one handle of `role` held by `me` to `me`'s entry (the count has it).
fn add_to_register(ctl: &Control, role: Role, me: u64) {
    let holders = role.register(ctl);
    if let Some(h) = holders
        .iter()
        .find(|h| h.owner.load(Ordering::Acquire) == me)
    {
        h.handles.fetch_add(1, Ordering::AcqRel);
        return;
    }
    for h in holders {
        let o = h.owner.load(Ordering::Acquire);
        // A free entry, or one whose process died: its handles come off the
        // count before it is taken over.
        let free = o == 0 || (!process_alive(o) && forget(ctl, role, h, o));
        if free
            && h.owner
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            h.handles.store(1, Ordering::Release);
            return;
        }
    }
    // More than HOLDERS live processes of this role: counted, not registered
    // (see the module docs); `any_live` must then assume they live.
    ctl.geometry
        .0
        .ends
        .fetch_or(role.overflow(), Ordering::AcqRel);
}

/// Takes one handle of `role` held by `me` off its entry, then off the count.
pub(crate) fn unregister(ctl: &Control, role: Role, me: u64) {
    if let Some(h) = role
        .register(ctl)
        .iter()
        .find(|h| h.owner.load(Ordering::Acquire) == me)
    {
        if h.handles.fetch_sub(1, Ordering::AcqRel) <= 1 {
            h.handles.store(0, Ordering::Release);
            let _ = h
                .owner
                .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
    add_to_count(ctl, role, false);
}

/// Adds one to (or takes one from) the count of `role`, saturating.
fn add_to_count(ctl: &Control, role: Role, up: bool) {
    let ends = &ctl.geometry.0.ends;
    let mut e = ends.load(Ordering::Relaxed);
    loop {
        let n = count(e, role);
        let next = match (up, n) {
            (true, n) if n >= role.mask() / role.one() => return,
            (false, 0) => return,
            (true, _) => e + role.one(),
            (false, _) => e - role.one(),
        };
        // SYNC: AcqRel: a put or get that reads the count (Acquire) also sees
        // what the handle wrote before it went (its last message, published).
        match ends.compare_exchange_weak(e, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => e = now,
        }
    }
}

/// Takes a dead process's handles off the count and frees its entry, if the
/// entry still names `owner`; whether it did (or someone did just before).
fn forget(ctl: &Control, role: Role, h: &Holder, owner: u64) -> bool {
    let handles = h.handles.load(Ordering::Acquire);
    if h.owner
        .compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    h.handles.store(0, Ordering::Release);
    take_from_count(ctl, role, handles);
    true
}

/// Takes `n` from the count of `role`, or what it holds if less, in one step:
/// a peer's garbage may claim any number of handles (taking them one at a
/// time took up to 2²⁴ steps an entry, seconds in a debug build, while a
/// worker of the pool's scribbling tests looked for a writer).
fn take_from_count(ctl: &Control, role: Role, n: u64) {
    let ends = &ctl.geometry.0.ends;
    let mut e = ends.load(Ordering::Relaxed);
    loop {
        let take = n.min(count(e, role));
        if take == 0 {
            return;
        }
        // SYNC: AcqRel, as in `add_to_count`.
        match ends.compare_exchange_weak(
            e,
            e - take * role.one(),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => e = now,
        }
    }
}

/// Whether a live process may hold a handle of `role`: the count is not 0, and
/// a registered process lives, or some were counted past the register's size.
/// Registered processes that died are forgotten on the way.
pub(crate) fn any_live(ctl: &Control, role: Role) -> bool {
    if count(load(ctl), role) == 0 {
        return false;
    }
    for h in role.register(ctl) {
        let o = h.owner.load(Ordering::Acquire);
        if o == 0 {
            continue;
        }
        if process_alive(o) {
            return true;
        }
        forget(ctl, role, h, o);
    }
    // Every registered holder is dead. What the count still holds is either a
    // holder killed between its two steps (dead too) or holders past the
    // register's size, which cannot be checked: assume those live.
    load(ctl) & role.overflow() != 0
}

/// Entries in the lists of control blocks that a fork registers its child with.
const FORK_LIST: usize = 64;

/// Control blocks of the queues this process holds write (read) handles on, one
/// entry per handle, so that a child forked with those handles is registered
/// too. Atomics only: the fork handler may not lock or allocate.
static FORK_WRITERS: [AtomicUsize; FORK_LIST] = [const { AtomicUsize::new(0) }; FORK_LIST];
static FORK_READERS: [AtomicUsize; FORK_LIST] = [const { AtomicUsize::new(0) }; FORK_LIST];

/// Registers a handle of `role` of this process on `ctl` and lists it for
/// forks (past [`FORK_LIST`] handles, children forked with the extra ones are
/// not registered; documented on the queue types).
pub(crate) fn open_handle(ctl: &Control, role: Role) {
    ensure_fork_handler();
    register(ctl, role, current_process());
    let addr = ctl as *const Control as usize;
    let _ = role.fork_list().iter().any(|s| {
        s.compare_exchange(0, addr, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
}

/// Unregisters a handle of `role` of this process and unlists it.
pub(crate) fn close_handle(ctl: &Control, role: Role) {
    let addr = ctl as *const Control as usize;
    let _ = role.fork_list().iter().any(|s| {
        s.compare_exchange(addr, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
    unregister(ctl, role, current_process());
}

fn ensure_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn at_exit() {
            // A process that leaves through `exit` (returning from `main`, or
            // `std::process::exit`) gives back every handle it still lists, as
            // the kernel closes a process's descriptors: its peers learn at
            // once that it is gone. `_exit` and SIGKILL give nothing back; the
            // registers find those dead (module docs).
            let me = current_process();
            for role in [Role::Write, Role::Read] {
                for slot in role.fork_list() {
                    let addr = slot.swap(0, Ordering::AcqRel);
                    if addr != 0 {
                        // SAFETY: addr is the control block of a queue that a
                        // live handle of this process keeps mapped; exit runs
                        // no destructor that would unmap it first.
                        unregister(unsafe { &*(addr as *const Control) }, role, me);
                    }
                }
            }
        }
        // SAFETY: atexit takes a plain function with static lifetime.
        unsafe { libc::atexit(at_exit) };
        extern "C" fn prepare() {
            // The child to be holds this process's handles too: counted before
            // the fork, so that no count drops to 0 in between (the parent may
            // drop its copy at once). A fork that fails leaves the counts one
            // too high, which only delays an answer to the registers' check.
            for role in [Role::Write, Role::Read] {
                for slot in role.fork_list() {
                    let addr = slot.load(Ordering::Acquire);
                    if addr != 0 {
                        // SAFETY: addr is the control block of a queue that a
                        // live handle of this process keeps mapped.
                        add_to_count(unsafe { &*(addr as *const Control) }, role, true);
                    }
                }
            }
        }
        extern "C" fn child() {
            // A forked child holds its parent's handles: its entries in the
            // registers. Atomics in the mappings and plain syscalls only
            // (module docs).
            let me = current_process();
            for role in [Role::Write, Role::Read] {
                for slot in role.fork_list() {
                    let addr = slot.load(Ordering::Acquire);
                    if addr != 0 {
                        // SAFETY: addr is the control block of a queue that a
                        // live handle of this process (inherited from the
                        // parent) keeps mapped.
                        add_to_register(unsafe { &*(addr as *const Control) }, role, me);
                    }
                }
            }
        }
        // SAFETY: the handlers are plain functions with static lifetime.
        unsafe { libc::pthread_atfork(Some(prepare), None, Some(child)) };
    });
}

/// The `ends` word's loads, for the handle: one place that names the ordering.
/// Inline: every put's fast path reads it (`RawQueue::fast_put_allowed`), and
/// a `Pipe`'s send, inlined into the program's crate, called it out of line.
#[inline]
pub(crate) fn load(ctl: &Control) -> u64 {
    // SYNC: Acquire pairs with `add_to_count`'s AcqRel and `close`'s Release.
    ctl.geometry.0.ends.load(Ordering::Acquire)
}

/// Sets the closed flag.
pub(crate) fn close(ctl: &Control) {
    ctl.geometry.0.ends.fetch_or(CLOSED, Ordering::AcqRel);
}
