//! The registry's lock: a futex word that names the *process* whose thread
//! holds it, so that a process forked while another thread held it takes
//! it over instead of waiting for ever.
//!
//! A `fork` copies the lock word, not the thread that held it: a process
//! forked while another thread held the registry's lock (a
//! [`Process::start`](crate::Process::start) holds it across its own fork)
//! would wait for that thread for ever at its first look. So the word names
//! the process whose thread holds it, and a locker that finds it held by
//! another process's thread takes it over: in this process no thread of
//! that one exists.
//!
//! | word | meaning |
//! |---|---|
//! | [`FREE`] | free |
//! | `pid << 1` | held by a thread of process `pid` |
//! | `pid << 1 \| WAITERS` | held, and a thread of `pid` may sleep on the word |
//!
//! | who | does |
//! |---|---|
//! | locker, fast path | CAS `FREE` → `me << 1` |
//! | locker, held here | sets [`WAITERS`], sleeps on the word (futex), tries again |
//! | locker, after a sleep | CAS `FREE` → `me << 1 \| WAITERS`: others may still sleep, and its unlock must wake the next |
//! | locker, held by another pid | CAS that word → `me << 1`: the copy of a hold from before a fork |
//! | unlocker | swaps in `FREE`; wakes one sleeper if `WAITERS` was set |
//!
//! The algorithm takes its word through [`Word`] (the atomic and its futex
//! wait and wake): the registry's is std's `AtomicU32`, in a `static` (a
//! loom atomic cannot be made in a `const`), and the loom models below run
//! the same code on loom's atomic and a model futex that loom can catch a
//! lost wake-up with (a sleeper nobody wakes is a deadlock to it).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// The lock is free.
pub(crate) const FREE: u32 = 0;
/// A thread may sleep on the word: the unlock wakes one.
const WAITERS: u32 = 1;

/// What the lock needs of its word: an atomic `u32` and a futex on it.
pub(crate) trait Word {
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    fn swap(&self, new: u32, order: Ordering) -> u32;
    /// Sleeps while the word holds `expected`; may return at any time.
    fn wait(&self, expected: u32);
    /// Wakes one thread asleep in [`wait`](Word::wait), if any.
    fn wake_one(&self);
}

impl Word for AtomicU32 {
    #[inline]
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }
    #[inline]
    fn swap(&self, new: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, new, order)
    }
    fn wait(&self, expected: u32) {
        sys::futex_wait(self, expected);
    }
    fn wake_one(&self) {
        sys::futex_wake_one(self);
    }
}

/// A lock whose word names the process of its holder (see the module's docs).
pub(crate) struct ForkLock<W = AtomicU32> {
    word: W,
}

impl<W: Word> ForkLock<W> {
    /// A lock around `word`, which must read [`FREE`] (or, in the models, a
    /// hold copied from another process).
    pub(crate) const fn new(word: W) -> ForkLock<W> {
        ForkLock { word }
    }

    /// Takes the lock for a thread of process `me` (its pid, not 0).
    #[inline]
    pub(crate) fn lock(&self, me: u32) {
        // SYNC: Acquire pairs with the Release swap of the last `unlock` (or
        // of the unlock before a fork, for a hold taken over).
        if self
            .word
            .compare_exchange(FREE, me << 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended(me);
        }
    }

    #[cold]
    fn lock_contended(&self, me: u32) {
        let mut take = me << 1;
        let mut word = FREE;
        loop {
            // SYNC: Acquire, as in `lock`.
            match self
                .word
                .compare_exchange(word, take, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return,
                // Free, or held by another process (a copy of its hold): try
                // to take that word.
                Err(now) if now == FREE || now >> 1 != me => word = now,
                Err(now) => {
                    // Held by a thread of this process: sleep until its unlock.
                    let waiting = now | WAITERS;
                    if now == waiting
                        || self
                            .word
                            .compare_exchange(now, waiting, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        self.word.wait(waiting);
                    }
                    // From now on it takes the lock with `WAITERS` set.
                    take = (me << 1) | WAITERS;
                    word = FREE;
                }
            }
        }
    }

    /// Lets the lock go (held by this thread, or by the thread of the
    /// parent that forked this one, which is this thread here).
    #[inline]
    pub(crate) fn unlock(&self) {
        // SYNC: Release pairs with the Acquire CAS of the next `lock`: what
        // this holder wrote is seen by it.
        if self.word.swap(FREE, Ordering::Release) & WAITERS != 0 {
            self.word.wake_one();
        }
    }
}

/// loom models of the protocol: `RUSTFLAGS="--cfg multiproc_loom" cargo
/// test -p multiproc-proc --lib --release loom` (scripts/test-all runs them,
/// with `LOOM_MAX_PREEMPTIONS=2`).
#[cfg(all(test, multiproc_loom))]
mod loom_models {
    use super::{ForkLock, Word, FREE, WAITERS};
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicU32;
    use loom::sync::{Arc, Condvar, Mutex};
    use std::sync::atomic::Ordering;

    /// loom's atomic, and a futex made of a mutex and a condition variable:
    /// the check of the word and the sleep are one step to a waker, as the
    /// kernel's are. A sleeper that no unlock wakes blocks for good, and
    /// loom reports the model as deadlocked.
    struct ModelWord {
        word: AtomicU32,
        /// Sleepers, and wake-ups given and not yet taken.
        queue: Mutex<(u32, u32)>,
        woken: Condvar,
    }

    impl ModelWord {
        fn new(word: u32) -> ModelWord {
            ModelWord {
                word: AtomicU32::new(word),
                queue: Mutex::new((0, 0)),
                woken: Condvar::new(),
            }
        }
    }

    impl Word for ModelWord {
        fn compare_exchange(
            &self,
            current: u32,
            new: u32,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u32, u32> {
            self.word.compare_exchange(current, new, success, failure)
        }
        fn swap(&self, new: u32, order: Ordering) -> u32 {
            self.word.swap(new, order)
        }
        fn wait(&self, expected: u32) {
            let mut q = self.queue.lock().unwrap();
            if self.word.load(Ordering::SeqCst) != expected {
                return;
            }
            q.0 += 1;
            while q.1 == 0 {
                q = self.woken.wait(q).unwrap();
            }
            q.1 -= 1;
            q.0 -= 1;
        }
        fn wake_one(&self) {
            let mut q = self.queue.lock().unwrap();
            if q.0 > q.1 {
                q.1 += 1;
                self.woken.notify_one();
            }
        }
    }

    /// The lock, and a count that only its holder touches (plain loads and
    /// stores of a loom cell: two holders at once, or a holder that does not
    /// see its predecessor's write, fail the model).
    struct Model {
        lock: ForkLock<ModelWord>,
        count: UnsafeCell<u32>,
    }

    // SAFETY: `count` is reached only under `lock` (what the models check).
    unsafe impl Sync for Model {}

    impl Model {
        fn add_one(&self, me: u32) {
            self.lock.lock(me);
            // SAFETY: under the lock (the model checks that no other thread
            // is in `count` meanwhile).
            self.count.with_mut(|c| unsafe { *c += 1 });
            self.lock.unlock();
        }
    }

    /// `threads` threads of process `ME` each add one under the lock, whose
    /// word starts as `word`; the count is theirs and the lock is free at
    /// the end, and no thread sleeps for ever.
    fn run(word: u32, threads: u32) {
        const ME: u32 = 7;
        loom::model(move || {
            let m = Arc::new(Model {
                lock: ForkLock::new(ModelWord::new(word)),
                count: UnsafeCell::new(0),
            });
            let others: Vec<_> = (1..threads)
                .map(|_| {
                    let m = m.clone();
                    loom::thread::spawn(move || m.add_one(ME))
                })
                .collect();
            m.add_one(ME);
            for t in others {
                t.join().unwrap();
            }
            // SAFETY: every other thread has ended.
            assert_eq!(m.count.with(|c| unsafe { *c }), threads);
            assert_eq!(m.lock.word.word.load(Ordering::SeqCst), FREE);
        });
    }

    #[test]
    fn two_threads_exclude_each_other_and_publish() {
        run(FREE, 2);
    }

    /// Two sleepers: one woken while a third thread takes the lock first
    /// must leave `WAITERS` set for the other.
    #[test]
    fn three_threads_lose_no_wake_up() {
        run(FREE, 3);
    }

    /// A copy of a hold from before a fork (another process's pid, with or
    /// without sleepers there): taken over once, never waited for.
    #[test]
    fn a_hold_copied_from_another_process_is_taken_over() {
        run(3 << 1, 2);
        run((3 << 1) | WAITERS, 2);
    }
}
