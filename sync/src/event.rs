//! [`Event`]: Python's `Event` (`set`, `clear`, `is_set`, `wait`).

use std::time::Duration;

use crate::primitive::{wait, wake, AtomicU32, Deadline, Ordering};
use crate::raw_mutex::deadline_after;
use crate::sleepers::Sleepers;
use crate::slots::{Seat, Slots};
use crate::{Error, Result};

/// A flag that processes can wait on, process-shared.
///
/// # When the setter dies
/// Processes that will `set` the event may [`register_setter`](Event::register_setter);
/// [`wait_checked`](Event::wait_checked) then answers [`Error::NoLiveSetter`] —
/// within an owner check interval — once the event is clear and every registered
/// setter has died without leaving, instead of waiting forever. Plain
/// [`wait`](Event::wait) waits for the flag alone;
/// [`wait_timeout`](Event::wait_timeout) bounds it. A waiter killed asleep is
/// forgotten within about a second: `set` does not pay a syscall for it.
///
/// `#[repr(C)]`, 152 bytes; all-zero bytes are a clear event.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use multiproc_sync::Event;
/// let e = Event::new();
/// assert!(e.wait_timeout(Duration::from_millis(1)).is_err());
/// e.set();
/// e.wait();
/// assert!(e.is_set());
/// e.clear();
/// assert!(!e.is_set());
/// ```
#[repr(C)]
pub struct Event {
    /// 0 clear, anything else set.
    state: AtomicU32,
    reserved: AtomicU32,
    /// Threads asleep in `wait`; forgets those killed asleep.
    sleepers: Sleepers,
    /// Processes registered as setters.
    setters: Slots,
}

#[cfg(not(multiproc_loom))]
// SAFETY: #[repr(C)] of atomics; any state value means clear (0) or set.
unsafe impl multiproc_shm::ShmSafe for Event {}
#[cfg(not(multiproc_loom))]
// SAFETY: every access through `&self` is atomic (or under its own robust
// lock), made to work with other processes doing the same.
unsafe impl multiproc_shm::ShmSync for Event {}

#[cfg(not(multiproc_loom))]
const _: () = assert!(std::mem::size_of::<Event>() == 152);

impl Default for Event {
    fn default() -> Event {
        Event::new()
    }
}

impl Event {
    /// A new, clear event.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_sync::Event::new().is_set());
    /// ```
    pub fn new() -> Event {
        Event {
            state: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            sleepers: Sleepers::new(),
            setters: Slots::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// # Examples
    /// ```
    /// let e = multiproc_sync::Event::new();
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    #[inline]
    pub fn set(&self) {
        // SYNC: SeqCst (a Release) pairs with the Acquire in `is_set`, and orders the
        // store before the read of `sleepers` (see `wait`).
        if self.state.swap(1, Ordering::SeqCst) == 0
            && self.sleepers.any()
            && wake(&self.state, u32::MAX) == 0
        {
            self.sleepers.woke_nobody();
        }
    }

    /// Clears the flag.
    ///
    /// # Examples
    /// ```
    /// let e = multiproc_sync::Event::new();
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// ```
    pub fn clear(&self) {
        self.state.store(0, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_sync::Event::default().is_set());
    /// ```
    #[inline]
    pub fn is_set(&self) -> bool {
        // SYNC: Acquire pairs with the swap in `set`.
        self.state.load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set (Python's `wait()`).
    ///
    /// # Examples
    /// ```
    /// let e = multiproc_sync::Event::new();
    /// e.set();
    /// e.wait();
    /// ```
    pub fn wait(&self) {
        // Without a deadline or the setter check, it returns only once set.
        let _ = self.wait_checking(None, false);
    }

    /// Waits until the flag is set, at most `timeout` (Python's
    /// `wait(timeout)`, whose `False` is this `Err(Timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`] when `timeout` passed with the flag still clear.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Error, Event};
    /// let e = Event::new();
    /// assert!(matches!(e.wait_timeout(Duration::from_millis(5)), Err(Error::Timeout)));
    /// e.set();
    /// e.wait_timeout(Duration::from_millis(5))?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_checking(deadline_after(Some(timeout)), false)
    }

    /// Waits until the flag is set or `deadline` passes; with `check`, answers
    /// [`Error::NoLiveSetter`] once every registered setter died.
    fn wait_checking(&self, deadline: Option<Deadline>, check: bool) -> Result<()> {
        if self.is_set() {
            return Ok(());
        }
        loop {
            // SYNC: SeqCst (counting in) orders this before the futex's read of
            // `state`, against `set`'s store then read of `sleepers`. Each sleep
            // is bounded, which lets the count forget a waiter killed asleep.
            let woke = self.sleepers.sleep(deadline, |d| wait(&self.state, 0, d));
            if self.is_set() {
                return Ok(());
            }
            if !woke {
                // Before the timeout: a caller that only ever waits a little
                // must still hear that every setter died.
                if check && self.setters.any_dead() && !self.setters.any_alive() {
                    return Err(Error::NoLiveSetter);
                }
                if deadline.as_ref().is_some_and(Deadline::passed) {
                    return Err(Error::Timeout);
                }
            }
        }
    }
}

impl Event {
    /// Test hook: threads counted asleep (live or not).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn hook_sleepers(&self) -> u32 {
        self.sleepers.count()
    }

    /// Registers this process as one that will set the event (see "When the
    /// setter dies"). Leaves on drop. A newcomer may take the place of a
    /// registered setter that died, so dead setters never fill the table.
    ///
    /// # Errors
    /// [`Error::Full`] when [`SLOTS`](crate::SLOTS) live setters are registered
    /// already.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let e = multiproc_sync::Event::new();
    /// let setter = e.register_setter()?;
    /// setter.set();
    /// e.wait_checked_timeout(Duration::from_secs(1))?;
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn register_setter(&self) -> Result<EventSetter<'_>> {
        Ok(EventSetter {
            event: self,
            _seat: self.setters.take_seat_reclaiming()?,
        })
    }

    /// [`wait`](Event::wait), but answers [`Error::NoLiveSetter`] once setters
    /// registered and all of them died without setting the event or leaving.
    ///
    /// # Errors
    /// [`Error::NoLiveSetter`].
    ///
    /// # Examples
    /// ```
    /// let e = multiproc_sync::Event::new();
    /// let setter = e.register_setter()?;
    /// setter.set();
    /// e.wait_checked()?;
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn wait_checked(&self) -> Result<()> {
        self.wait_checking(None, true)
    }

    /// [`wait_checked`](Event::wait_checked), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::NoLiveSetter`], [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_sync::{Error, Event};
    /// let e = Event::new();
    /// // No setters registered: a plain timeout.
    /// assert!(matches!(e.wait_checked_timeout(Duration::from_millis(1)), Err(Error::Timeout)));
    /// ```
    pub fn wait_checked_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_checking(deadline_after(Some(timeout)), true)
    }
}

/// A registered setter of an [`Event`] (see [`Event::register_setter`]); leaves on drop.
pub struct EventSetter<'a> {
    event: &'a Event,
    /// Leaves the setter list on drop.
    _seat: Seat<'a>,
}

impl EventSetter<'_> {
    /// Sets the event.
    ///
    /// # Examples
    /// ```
    /// let e = multiproc_sync::Event::new();
    /// e.register_setter()?.set();
    /// assert!(e.is_set());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn set(&self) {
        self.event.set();
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
