//! [`Value<T>`] and [`Array<T, N>`]: Python's `Value` and `Array`, a [`Mutex`]
//! around plain data in a shared-memory segment.

use multiproc_shm::{Location, Segment, Shared, ShmSafe};

use crate::{LockError, LockResult, Mutex, MutexGuard, Result};

/// A `T` in shared memory behind a process-shared [`Mutex`]: Python's
/// `multiprocessing.Value`.
///
/// As in Python, `get` and `set` each take the lock, so a read-modify-write needs
/// the lock held across it: `*v.lock()? += 1`, Python's `with v.get_lock(): v.value += 1`.
///
/// # Examples
/// The tutorial's counter: ten processes add one each, under the lock.
/// ```
/// use multiproc_sync::Value;
/// let counter = Value::new(0i32)?;
/// let mut pids = Vec::new();
/// for _ in 0..10 {
///     // SAFETY: the doctest is single-threaded; the child only locks, adds, and _exits.
///     match unsafe { libc::fork() } {
///         0 => {
///             *counter.lock().unwrap() += 1;
///             unsafe { libc::_exit(0) };
///         }
///         pid => pids.push(pid),
///     }
/// }
/// for pid in pids {
///     unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
/// }
/// assert_eq!(counter.get()?, 10);
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
pub struct Value<T: ShmSafe + Send> {
    cell: Shared<Mutex<T>>,
}

/// Python's `multiprocessing.Array`: `N` values of `T` behind one lock.
///
/// # Examples
/// ```
/// let a = multiproc_sync::Array::new([0u32; 4])?;
/// a.lock().unwrap()[2] = 7;
/// assert_eq!(a.get()?, [0, 0, 7, 0]);
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
pub type Array<T, const N: usize> = Value<[T; N]>;

impl<T: ShmSafe + Send> Value<T> {
    /// `value` in a new anonymous segment, shared with children forked later.
    ///
    /// # Errors
    /// [`Error::Shm`](crate::Error::Shm) when the segment cannot be made.
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(1.5f64)?;
    /// assert_eq!(v.get()?, 1.5);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Value<T>> {
        Value::new_in(Location::Anonymous, value)
    }

    /// `value` in a new named segment.
    ///
    /// # Errors
    /// [`Error::Shm`](crate::Error::Shm) (invalid name, already exists, …).
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-value-{}", std::process::id());
    /// let v = multiproc_sync::Value::create(&name, 3u32)?;
    /// assert_eq!(multiproc_sync::Value::<u32>::open(&name)?.get()?, 3);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn create(name: &str, value: T) -> Result<Value<T>> {
        Value::new_in(Location::Named(name), value)
    }

    /// `value` in a new segment at `location`.
    ///
    /// # Errors
    /// [`Error::Shm`](crate::Error::Shm).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new_in(multiproc_shm::Location::Memfd, 0u8)?;
    /// assert_eq!(v.get()?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, value: T) -> Result<Value<T>> {
        Ok(Value {
            cell: Shared::new_in(location, Mutex::new(value))?,
        })
    }

    /// Opens the named segment `name`, which must hold a `Value<T>`.
    ///
    /// # Errors
    /// [`Error::Shm`](crate::Error::Shm), among them `LayoutMismatch` for another `T`.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_sync::Value::<u8>::open("no-such-value-here").is_err());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Value<T>> {
        Ok(Value {
            cell: Shared::open(name)?,
        })
    }

    /// The lock (Python's `get_lock()`).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(0i32)?;
    /// *v.get_lock().lock().unwrap() += 1; // Python: with v.get_lock(): v.value += 1
    /// assert_eq!(v.get()?, 1);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn get_lock(&self) -> &Mutex<T> {
        &self.cell
    }

    /// Locks and returns the guard.
    ///
    /// # Errors
    /// As for [`Mutex::lock`].
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(0i32)?;
    /// *v.lock().unwrap() += 2;
    /// assert_eq!(v.get()?, 2);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.cell.lock()
    }

    /// Reads the value under the lock (Python's `.value`).
    ///
    /// A lock recovered from a dead holder is marked consistent: one plain value has
    /// no invariant to repair (lock it yourself when yours spans several fields).
    ///
    /// # Errors
    /// [`Error::NotRecoverable`](crate::Error::NotRecoverable), [`Error::WouldDeadlock`](crate::Error::WouldDeadlock).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Value::new(7u16)?.get()?, 7);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn get(&self) -> Result<T>
    where
        T: Copy,
    {
        Ok(*self.lock_consistent()?)
    }

    /// Writes the value under the lock (Python's `.value = x`).
    ///
    /// # Errors
    /// As for [`get`](Value::get).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(0u16)?;
    /// v.set(9)?;
    /// assert_eq!(v.get()?, 9);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock_consistent()? = value;
        Ok(())
    }

    fn lock_consistent(&self) -> Result<MutexGuard<'_, T>> {
        match self.cell.lock() {
            Ok(g) => Ok(g),
            Err(LockError::OwnerDied(mut g)) => {
                g.mark_consistent();
                Ok(g)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The segment underneath (name, unlink).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(0u64)?;
    /// assert!(v.segment().len() >= 8);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.cell.segment()
    }
}

impl<T: ShmSafe + Send> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("segment", self.segment())
            .finish()
    }
}
