//! [`Condvar`]: Python's `Condition`, bound at wait time to a [`Mutex`](crate::Mutex) guard,
//! where `notify(n)` wakes at most `n` waiters and a wait reports a notify only
//! when it got one.
//!
//! # The state word
//!
//! | bits | name | meaning |
//! |---|---|---|
//! | 0–31 | `seq` | the futex word: bumped by every notify that grants a wake-up |
//! | 32–47 | `tokens` | wake-ups granted and not yet taken |
//! | 48–63 | `waiters` | threads registered in `wait` and not yet gone |
//!
//! A waiter registers (`waiters + 1`) while it holds the mutex, remembering `seq`;
//! it is *eligible* for a token once `seq` has moved on, that is, once a notify
//! came after its registration. `notify(n)` grants `min(n, waiters − tokens)` new
//! tokens and bumps `seq`: at that moment every registered waiter is eligible, and
//! the tokens never outnumber the eligible waiters (a claim takes one of each, a
//! waiter that gives up only leaves while no token is there for it), so every
//! token goes to a waiter that was waiting when it was granted. A waiter takes a
//! token (`tokens − 1, waiters − 1`) and returns notified; one whose timeout
//! passes takes a token if one is there for it, and otherwise leaves
//! (`waiters − 1`) and returns timed out. So a notify wakes at most `n` waiters,
//! a waiter that registers after it cannot take its token, and a wait returns
//! "notified" only for a token: no spurious wake-ups, as in Python.
//!
//! Which waiters get the tokens is not fixed: any eligible waiter may take one
//! (Python's `multiprocessing.Condition` does not promise an order either). A
//! notifier that holds the mutex, as Python requires, wakes sleeping waiters at
//! once: every thread asleep on `seq` then is eligible. Without the mutex, a
//! waiter that registers between the notify's bump and its wake-up syscall may
//! take a wake-up meant for an eligible one, which then takes its token at its
//! next bounded check (one owner check interval).
//!
//! # Rejected designs
//! - Waking on any change of a sequence counter (this type's first design, and
//!   std's futex condvar): a waiter whose bounded sleep ended saw the counter
//!   changed by a notify meant for others and returned "notified" too, so
//!   `notify(2)` among six waiters ended with all six awake.
//! - Python's three semaphores (sleeping, woken, wait): `notify` waits for each
//!   woken waiter to acknowledge, so a waiter killed at the wrong moment hangs the
//!   notifier for good.

use std::time::Duration;

use crate::mutex::MutexGuard;
use crate::primitive::{wait_low, wake_low, AtomicU64, Deadline, Ordering};
use crate::raw_mutex::deadline_after;
use crate::sleepers::Sleepers;
use crate::LockResult;

/// `seq`'s bits.
const SEQ_MASK: u64 = 0xffff_ffff;
/// One token.
const TOKEN: u64 = 1 << 32;
/// One waiter.
const WAITER: u64 = 1 << 48;
/// The most tokens or waiters the word counts.
const MAX_COUNT: u64 = 0xffff;

fn seq(s: u64) -> u32 {
    (s & SEQ_MASK) as u32
}

fn tokens(s: u64) -> u64 {
    (s >> 32) & MAX_COUNT
}

fn waiters(s: u64) -> u64 {
    s >> 48
}

/// `s` after a waiter took a token: one token and one waiter fewer (a waiter
/// count a peer zeroed stays zero).
fn claimed(s: u64) -> u64 {
    (s - TOKEN).saturating_sub(if waiters(s) > 0 { WAITER } else { 0 })
}

/// A condition variable for [`Mutex`](crate::Mutex), process-shared, with
/// Python's meaning: [`notify(n)`](Condvar::notify) wakes at most `n` of the
/// threads waiting at that moment, and a wait returns "notified" only when a
/// notify woke it (never spuriously). See the state word above for how.
///
/// Use [`wait_while`](Condvar::wait_while) (Python's `wait_for`) where the
/// condition may already hold, or may be taken by another thread first. A waiter
/// whose notifier died is woken by its timeout — use the timed waits where that
/// matters. Notify while holding the mutex (Python requires it) for a prompt
/// wake-up; without it a wake-up may take up to one
/// [owner check interval](crate::set_owner_check_interval) to arrive.
///
/// At most 65 535 threads wait at once in the way described; past that, the
/// extra ones wake at every notify (as std's condition variable may). A waiter
/// killed while waiting stays counted: a notify may grant it a wake-up that a
/// later waiter takes at a following notify — one extra wake-up per dead
/// waiter at most, never a lost one.
///
/// `#[repr(C)]`, 24 bytes; all-zero bytes are a new condition variable.
///
/// # Examples
/// ```
/// use multiproc_sync::{Condvar, Mutex};
/// let pair = (Mutex::new(false), Condvar::new());
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *pair.0.lock().unwrap() = true;
///         pair.1.notify_all();
///     });
///     let ready = pair.1.wait_while(pair.0.lock().unwrap(), |r| !*r).unwrap();
///     assert!(*ready);
/// });
/// ```
#[repr(C)]
pub struct Condvar {
    /// `seq | tokens << 32 | waiters << 48` (see the module docs).
    state: AtomicU64,
    /// Threads asleep on `seq`, so that a notify skips the syscall when none is.
    sleepers: Sleepers,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics; every value of the word is a state (garbage
// counts cost spurious wake-ups at most, never a hang or a bad access).
unsafe impl multiproc_shm::ShmSafe for Condvar {}
#[cfg(not(multiproc_loom))]
// SAFETY: every access through `&self` is atomic (or under its own robust
// lock), made to work with other processes doing the same.
unsafe impl multiproc_shm::ShmSync for Condvar {}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Condvar>() == 24);

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

/// Python's name for [`Condvar`].
pub type Condition = Condvar;

/// How a waiter is counted.
#[derive(Clone, Copy)]
enum Registration {
    /// Registered when `seq` read this.
    At(u32),
    /// Not counted (65 535 waiters already): woken by any change of `seq`.
    Uncounted(u32),
}

impl Condvar {
    /// A new condition variable.
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify_all(); // nobody waits: nothing happens
    /// ```
    pub fn new() -> Condvar {
        Condvar {
            state: AtomicU64::new(0),
            sleepers: Sleepers::new(),
        }
    }

    /// The state word's waiters and tokens (registered waiters, wake-ups granted
    /// and not yet taken).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn hook_counts(&self) -> (u64, u64) {
        let s = self.state.load(Ordering::Acquire);
        (s >> 48, (s >> 32) & MAX_COUNT)
    }

    /// Unlocks `guard`'s mutex, sleeps until notified, relocks.
    ///
    /// A recovered guard that was not marked consistent is released as abandoned
    /// (the mutex becomes not recoverable), as if it had been dropped.
    ///
    /// # Errors
    /// What relocking the mutex answers (see [`Mutex::lock`](crate::Mutex::lock)).
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(false), Condvar::new());
    /// std::thread::scope(|s| {
    ///     s.spawn(|| { *m.lock().unwrap() = true; c.notify_one(); });
    ///     let mut g = m.lock().unwrap();
    ///     while !*g {
    ///         g = c.wait(g).unwrap();
    ///     }
    /// });
    /// ```
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| e.map(|(g, _)| g))
    }

    /// [`wait`](Condvar::wait) for at most `timeout`; the `bool` is `true` when it
    /// timed out, `false` when a notify woke it (Python's `wait` returning `False`
    /// and `True`).
    ///
    /// # Errors
    /// As for [`wait`](Condvar::wait).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(()), Condvar::new());
    /// let (_g, timed_out) = c.wait_timeout(m.lock().unwrap(), Duration::from_millis(1)).unwrap();
    /// assert!(timed_out);
    /// ```
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        self.wait_until(guard, deadline_after(Some(timeout)).as_ref())
    }

    /// Waits while `condition` holds (Python's `wait_for(predicate)`, negated as in std).
    ///
    /// # Errors
    /// As for [`wait`](Condvar::wait).
    ///
    /// # Examples
    /// ```
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(3), Condvar::new());
    /// let g = c.wait_while(m.lock().unwrap(), |n| *n == 0).unwrap(); // already true: no wait
    /// assert_eq!(*g, 3);
    /// ```
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition` holds, at most `timeout` in all; the `bool` is `true`
    /// when it gave up with the condition still holding (Python's
    /// `wait_for(predicate, timeout)` returning `False`).
    ///
    /// # Errors
    /// As for [`wait`](Condvar::wait).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Condvar, Mutex};
    /// let (m, c) = (Mutex::new(0), Condvar::new());
    /// let (g, timed_out) = c.wait_timeout_while(m.lock().unwrap(), Duration::from_millis(5), |n| *n == 0).unwrap();
    /// assert!(timed_out && *g == 0);
    /// ```
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        let deadline = deadline_after(Some(timeout));
        while condition(&mut *guard) {
            let (g, timed_out) = self.wait_until(guard, deadline.as_ref())?;
            guard = g;
            if timed_out {
                let still = condition(&mut *guard);
                return Ok((guard, still));
            }
        }
        Ok((guard, false))
    }

    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<&Deadline>,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        // Registered while the mutex is held: a notify that follows our unlock
        // counts us (see the module docs).
        let me = self.register();
        let mutex = guard.mutex();
        drop(guard);
        let notified = loop {
            let seen = match self.try_claim(me) {
                Ok(()) => break true,
                Err(seen) => seen,
            };
            if deadline.is_some_and(Deadline::passed) {
                break self.leave(me);
            }
            // SYNC: SeqCst (counting in) orders our count before the futex's read
            // of `seq`, against `notify`'s SeqCst bump then read of the count:
            // either it sees us asleep, or we see its bump. Each sleep is bounded
            // (one check interval), so that a waiter killed asleep is forgotten.
            self.sleepers
                .sleep(deadline.copied(), |d| wait_low(&self.state, seen, d));
        };
        match mutex.lock() {
            Ok(g) => Ok((g, !notified)),
            Err(e) => Err(e.map(|g| (g, !notified))),
        }
    }

    /// Counts the caller in as a waiter (under the mutex).
    fn register(&self) -> Registration {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if waiters(s) == MAX_COUNT {
                return Registration::Uncounted(seq(s));
            }
            match self.state.compare_exchange_weak(
                s,
                s + WAITER,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Registration::At(seq(s)),
                Err(now) => s = now,
            }
        }
    }

    /// Takes a token if one was granted since `me` registered; else the `seq` to
    /// sleep on.
    fn try_claim(&self, me: Registration) -> Result<(), u32> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match me {
                Registration::Uncounted(at) if seq(s) != at => return Ok(()),
                Registration::At(at) if seq(s) != at && tokens(s) > 0 => claimed(s),
                _ => return Err(seq(s)),
            };
            // SYNC: Acquire pairs with the notifier's SeqCst bump: what it wrote
            // before notifying is seen (as the mutex shows it anyway).
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::SeqCst, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
    }

    /// At the deadline: takes a token if one is there for `me` (then the wait was
    /// notified after all: `true`), else leaves the count (`false`).
    fn leave(&self, me: Registration) -> bool {
        let Registration::At(at) = me else {
            return self.try_claim(me).is_ok();
        };
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, notified) = if seq(s) != at && tokens(s) > 0 {
                (claimed(s), true)
            } else {
                (
                    s.saturating_sub(if waiters(s) > 0 { WAITER } else { 0 }),
                    false,
                )
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::SeqCst, Ordering::Acquire)
            {
                Ok(_) => return notified,
                Err(now) => s = now,
            }
        }
    }

    /// Wakes one waiter (Python's `notify()`).
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify_one();
    /// ```
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes up to `n` of the threads waiting now (Python's `notify(n)`): each
    /// of them returns notified; threads that start waiting later are not woken
    /// by this call.
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify(2); // Python's notify(n)
    /// ```
    pub fn notify(&self, n: u32) {
        let mut s = self.state.load(Ordering::Relaxed);
        let granted = loop {
            let grant = u64::from(n).min(waiters(s).saturating_sub(tokens(s)));
            if grant == 0 {
                return;
            }
            let next_seq = u64::from(seq(s).wrapping_add(1));
            let next = ((s & !SEQ_MASK) + grant * TOKEN) | next_seq;
            // SYNC: SeqCst (a Release) pairs with the waiters' Acquire in
            // `try_claim`; SeqCst, then the SeqCst read of the sleepers: see
            // `wait_until`.
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break grant as u32,
                Err(now) => s = now,
            }
        };
        if self.sleepers.any() && wake_low(&self.state, granted) == 0 {
            self.sleepers.woke_nobody();
        }
    }

    /// Wakes every waiter (Python's `notify_all()`).
    ///
    /// # Examples
    /// ```
    /// let c = multiproc_sync::Condvar::new();
    /// c.notify_all();
    /// ```
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        f.debug_struct("Condvar")
            .field("waiters", &waiters(s))
            .field("pending_wake_ups", &tokens(s))
            .finish()
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_notify_grants_no_more_than_there_are_waiters_without_a_token() {
        let c = Condvar::new();
        c.notify(5);
        assert_eq!(c.state.load(Ordering::Relaxed), 0, "nobody waits: nothing");
        let a = c.register();
        let b = c.register();
        assert!(c.try_claim(a).is_err(), "no notify yet");
        c.notify(1);
        c.notify(1);
        c.notify(1); // both are owed one already
        assert_eq!(tokens(c.state.load(Ordering::Relaxed)), 2);
        let late = c.register();
        assert!(c.try_claim(late).is_err(), "registered after the notifies");
        assert!(c.try_claim(a).is_ok());
        assert!(c.try_claim(b).is_ok());
        assert!(!c.leave(late));
        assert_eq!(c.state.load(Ordering::Relaxed) >> 32, 0);
    }

    #[test]
    fn a_waiter_that_gives_up_takes_a_token_that_is_there_for_it() {
        let c = Condvar::new();
        let a = c.register();
        c.notify(1);
        assert!(c.leave(a), "notified before it left");
        assert_eq!(c.state.load(Ordering::Relaxed) >> 32, 0);
    }

    #[test]
    fn garbage_never_underflows() {
        let c = Condvar::new();
        c.state.store((TOKEN * 3) | 7, Ordering::Relaxed); // tokens, no waiters
        let me = Registration::At(6);
        assert!(c.try_claim(me).is_ok());
        assert!(c.leave(me));
        let s = c.state.load(Ordering::Relaxed);
        assert_eq!((tokens(s), waiters(s)), (1, 0));
    }
}
