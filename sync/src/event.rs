//! [`Event`]: Python's `Event` (`set`, `clear`, `is_set`, `wait`).

use std::time::Duration;

use crate::primitive::{wait, wake, AtomicU32, Ordering};
use crate::raw_mutex::deadline_after;

/// A flag that processes can wait on, process-shared.
///
/// `#[repr(C)]`, 8 bytes; all-zero bytes are a clear event.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use multiproc_sync::Event;
/// let e = Event::new();
/// assert!(!e.wait(Some(Duration::from_millis(1))));
/// e.set();
/// assert!(e.is_set() && e.wait(None));
/// e.clear();
/// assert!(!e.is_set());
/// ```
#[repr(C)]
pub struct Event {
    /// 0 clear, anything else set.
    state: AtomicU32,
    sleepers: AtomicU32,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics; any state value means clear (0) or set.
unsafe impl multiproc_shm::ShmSafe for Event {}

impl Default for Event {
    fn default() -> Event {
        Event::new()
    }
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Event {
        Event {
            state: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Sets the flag and wakes every waiter.
    #[inline]
    pub fn set(&self) {
        // SYNC: SeqCst (a Release) pairs with the Acquire in `is_set`, and orders the
        // store before the read of `sleepers` (see `wait`).
        if self.state.swap(1, Ordering::SeqCst) == 0 && self.sleepers.load(Ordering::SeqCst) > 0 {
            wake(&self.state, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.store(0, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        // SYNC: Acquire pairs with the swap in `set`.
        self.state.load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set or `timeout` passes; returns the flag, as Python does.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        if self.is_set() {
            return true;
        }
        let deadline = deadline_after(timeout);
        loop {
            // SYNC: SeqCst orders this before the futex's read of `state`, against
            // `set`'s store then read of `sleepers`.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let woke = wait(&self.state, 0, deadline.as_ref());
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if self.is_set() {
                return true;
            }
            if !woke {
                return false;
            }
        }
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
