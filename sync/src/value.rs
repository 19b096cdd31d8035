//! [`Value<T>`] and [`Array<T, N>`]: Python's `Value` and `Array`, plain data
//! behind a re-entrant process-shared lock in a shared-memory segment.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::time::Duration;

use multiproc_shm::{Location, Segment, Shared, ShmSafe};

use crate::primitive::{AtomicU32, Ordering};
use crate::{Error, LockError, LockResult, RLock, Result};

/// What a [`Value`]'s segment holds: its lock, the data, and whether the
/// holding thread has a [`ValueGuard`] out.
#[repr(C)]
struct ValueCell<T> {
    lock: RLock,
    /// 1 while the thread that holds `lock` has a [`ValueGuard`] (so a `&mut T`)
    /// out: its `get`/`set`/`lock` then answer `WouldDeadlock` instead of
    /// aliasing it. Written only by the holder; cleared by the outermost acquire,
    /// so a dead holder's flag does not outlive it.
    borrowed: AtomicU32,
    reserved: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only by the thread holding `lock` (one at a time,
// in any process); sharing the cell is sharing a lock-protected T: Send.
unsafe impl<T: Send> Sync for ValueCell<T> {}

// SAFETY: #[repr(C)] of an RLock (ShmSafe), two atomics and an UnsafeCell of a
// ShmSafe T: no pointers, every bit pattern valid (the flag is only a hint that
// the outermost acquire resets).
unsafe impl<T: ShmSafe + Send> ShmSafe for ValueCell<T> {}
#[cfg(not(multiproc_loom))]
// SAFETY: `&self` reaches the lock word through atomics and the data only
// under the process-shared lock.
unsafe impl<T: ShmSafe + Send> multiproc_shm::ShmSync for ValueCell<T> {}

// The layout every process must agree on: the RLock, the flag and
// its pad, then the value, padded to the lock's alignment.
#[cfg(not(multiproc_loom))]
const _: () = assert!(
    std::mem::size_of::<ValueCell<u64>>() == std::mem::size_of::<crate::RLock>() + 8 + 8
        && std::mem::size_of::<ValueCell<[u8; 3]>>() == std::mem::size_of::<crate::RLock>() + 8 + 8
);

/// A `T` in shared memory behind a re-entrant process-shared lock: Python's
/// `multiprocessing.Value`.
///
/// As in Python, [`get`](Value::get) and [`set`](Value::set) each take the lock,
/// and the lock is an [`RLock`]: so Python's idiom for a read-modify-write,
/// `with v.get_lock(): v.value += 1`, works as it reads —
///
/// ```
/// # let v = multiproc_sync::Value::new(0i32)?;
/// let _held = v.get_lock().lock().unwrap(); // with v.get_lock():
/// v.set(v.get()? + 1)?;                     //     v.value += 1
/// # drop(_held);
/// # assert_eq!(v.get()?, 1);
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
///
/// — and so does Rust's, through a guard that holds the lock and derefs to the
/// data: `*v.lock()? += 1`. While this thread has such a guard out, its `get`,
/// `set` and `lock` answer [`WouldDeadlock`](crate::Error::WouldDeadlock) (they
/// would alias the guard's `&mut T`); use the guard.
///
/// A lock recovered from a dead holder is marked consistent by `get` and `set`
/// (one plain value has no invariant to repair); [`lock`](Value::lock) hands the
/// recovery to the caller as [`LockError::OwnerDied`].
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
    cell: Shared<ValueCell<T>>,
}

/// Python's `multiprocessing.Array`: `N` values of `T` behind one lock.
///
/// # Examples
/// ```
/// let a = multiproc_sync::Array::new([0u32; 4])?;
/// a.lock().unwrap()[2] = 7;
/// a.set_at(3, 9)?;
/// assert_eq!(a.get()?, [0, 0, 7, 9]);
/// assert_eq!(a.get_at(2)?, 7);
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
pub type Array<T, const N: usize> = Value<[T; N]>;

impl<T: ShmSafe + Send> Value<T> {
    /// `value` in a new anonymous segment, shared with children forked later.
    /// The value passes through the stack on its way (a few copies of it in
    /// a debug build): make a large array with [`zeroed`](Value::zeroed).
    ///
    /// # Errors
    /// [`Error::Shm`] when the segment cannot be made.
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
    /// [`Error::Shm`] (invalid name, already exists, …).
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
    /// [`Error::Shm`].
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new_in(multiproc_shm::Location::Memfd, 0u8)?;
    /// assert_eq!(v.get()?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, value: T) -> Result<Value<T>> {
        Ok(Value {
            cell: Shared::new_in(
                location,
                ValueCell {
                    lock: RLock::new(),
                    borrowed: AtomicU32::new(0),
                    reserved: AtomicU32::new(0),
                    data: UnsafeCell::new(value),
                },
            )?,
        })
    }

    /// A zeroed `T` in a new anonymous segment, built in place (Python's
    /// `Array(typecode, size)` and `Value(typecode)`, whose contents start
    /// zeroed). No copy of the value passes through the stack, as one does
    /// through [`new`](Value::new)'s argument: an array of megabytes is made
    /// so (and read through [`lock`](Value::lock),
    /// [`get_at`](Value::get_at) or [`to_vec`](Value::to_vec) rather than
    /// [`get`](Value::get), which returns a copy). All-zero bytes are a valid
    /// value of every [`ShmSafe`] type, and an unlocked lock.
    ///
    /// # Errors
    /// [`Error::Shm`] when the segment cannot be made.
    ///
    /// # Examples
    /// ```
    /// // Python: Array('d', 1_000_000) — 8 MB, more than a thread's stack.
    /// let a = multiproc_sync::Array::<f64, 1_000_000>::zeroed()?;
    /// a.set_at(999_999, 2.5)?;
    /// assert_eq!(a.lock().unwrap().iter().sum::<f64>(), 2.5);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn zeroed() -> Result<Value<T>> {
        Value::zeroed_in(Location::Anonymous)
    }

    /// [`zeroed`](Value::zeroed) in a new named segment.
    ///
    /// # Errors
    /// [`Error::Shm`] (invalid name, already exists, …).
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-value-zeroed-{}", std::process::id());
    /// let v = multiproc_sync::Array::<u32, 4>::create_zeroed(&name)?;
    /// assert_eq!(multiproc_sync::Array::<u32, 4>::open(&name)?.get()?, [0; 4]);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn create_zeroed(name: &str) -> Result<Value<T>> {
        Value::zeroed_in(Location::Named(name))
    }

    /// [`zeroed`](Value::zeroed) in a new segment at `location`.
    ///
    /// # Errors
    /// [`Error::Shm`].
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::<u64>::zeroed_in(multiproc_shm::Location::Memfd)?;
    /// assert_eq!(v.get()?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn zeroed_in(location: Location<'_>) -> Result<Value<T>> {
        // The cell is #[repr(C)] of an RLock (all zeros: unlocked, no owner,
        // count 0), two zero atomics and the data: a ShmSafe cell whose
        // zeroed bytes are the state `new` would write with a zeroed `T`.
        Ok(Value {
            cell: Shared::zeroed_in(location)?,
        })
    }

    /// Opens the named segment `name`, which must hold a `Value<T>`.
    ///
    /// # Errors
    /// [`Error::Shm`], among them `LayoutMismatch` for another `T`.
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

    /// The lock (Python's `get_lock()`): re-entrant, so `get` and `set` work
    /// while this thread holds it.
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(0i32)?;
    /// {
    ///     let _held = v.get_lock().lock().unwrap(); // Python: with v.get_lock():
    ///     v.set(v.get()? + 1)?;                     //     v.value += 1
    /// }
    /// assert_eq!(v.get()?, 1);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn get_lock(&self) -> &RLock {
        &self.cell.lock
    }

    /// Takes the lock (re-entering it if this thread holds it) and returns a
    /// guard that derefs to the value.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (with the guard) when the last holder died
    /// holding the lock; [`LockError::NotRecoverable`]; [`LockError::WouldDeadlock`]
    /// when this thread has a guard out already.
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(0i32)?;
    /// *v.lock().unwrap() += 2;
    /// assert_eq!(v.get()?, 2);
    /// let g = v.lock().unwrap();
    /// assert!(v.lock().is_err()); // one guard at a time
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.lock_within(None)
    }

    /// [`lock`](Value::lock), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    /// As for [`lock`](Value::lock), and [`LockError::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let v = multiproc_sync::Value::new(1u8)?;
    /// *v.lock_timeout(Duration::from_millis(10)).unwrap() += 1;
    /// assert_eq!(v.get()?, 2);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ValueGuard<'_, T>> {
        self.lock_within(Some(timeout))
    }

    fn lock_within(&self, timeout: Option<Duration>) -> LockResult<ValueGuard<'_, T>> {
        let recovered = match self.enter(timeout) {
            Ok(()) => false,
            Err(Error::OwnerDied) => true,
            Err(Error::NotRecoverable) => return Err(LockError::NotRecoverable),
            Err(Error::Timeout) => return Err(LockError::Timeout),
            Err(_) => return Err(LockError::WouldDeadlock),
        };
        let cell = &*self.cell;
        if cell.borrowed.load(Ordering::Relaxed) != 0 {
            // This thread has a guard out: leave the lock as it was.
            let _ = cell.lock.release();
            return Err(LockError::WouldDeadlock);
        }
        cell.borrowed.store(1, Ordering::Relaxed);
        let guard = ValueGuard {
            cell,
            _not_send: PhantomData,
        };
        if recovered {
            Err(LockError::OwnerDied(guard))
        } else {
            Ok(guard)
        }
    }

    /// Takes the lock (or re-enters it): `Err(OwnerDied)` when it was taken
    /// over from a dead holder (and is held then). The outermost acquire clears
    /// a guard flag that no guard of this thread can have left.
    fn enter(&self, timeout: Option<Duration>) -> Result<()> {
        let cell = &*self.cell;
        let acquired = match timeout {
            None => cell.lock.acquire(),
            Some(t) => cell.lock.acquire_timeout(t),
        };
        let r = match acquired {
            Ok(()) => Ok(()),
            Err(Error::OwnerDied) => Err(Error::OwnerDied),
            Err(e) => return Err(e),
        };
        if cell.lock.count() == 1 {
            cell.borrowed.store(0, Ordering::Relaxed);
        }
        r
    }

    /// Runs `f` on the value under the lock (re-entering it if held), marking a
    /// lock recovered from a dead holder consistent.
    fn with_value<R>(&self, timeout: Option<Duration>, f: impl FnOnce(*mut T) -> R) -> Result<R> {
        match self.enter(timeout) {
            Ok(()) | Err(Error::OwnerDied) => {}
            Err(e) => return Err(e),
        }
        let cell = &*self.cell;
        // One plain value has no invariant to repair.
        cell.lock.mark_consistent();
        if cell.borrowed.load(Ordering::Relaxed) != 0 {
            let _ = cell.lock.release();
            return Err(Error::WouldDeadlock);
        }
        let r = f(cell.data.get());
        // Cannot fail: this thread holds the lock.
        let _ = cell.lock.release();
        Ok(r)
    }

    /// Reads the value under the lock (Python's `.value`).
    ///
    /// # Errors
    /// [`Error::NotRecoverable`];
    /// [`Error::WouldDeadlock`] when this thread has
    /// a [`ValueGuard`] out.
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
        // SAFETY: the pointer is the cell's data, valid and aligned; this thread
        // holds the lock and has no guard (so no reference) out.
        self.with_value(None, |p| unsafe { p.read() })
    }

    /// [`get`](Value::get), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    /// As for [`get`](Value::get), and [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(multiproc_sync::Value::new(7u16)?.get_timeout(Duration::ZERO)?, 7);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T>
    where
        T: Copy,
    {
        // SAFETY: as in `get`.
        self.with_value(Some(timeout), |p| unsafe { p.read() })
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
        // SAFETY: as in `get`; the old value is dropped in place.
        self.with_value(None, |p| unsafe { *p = value })
    }

    /// [`set`](Value::set), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    /// As for [`get_timeout`](Value::get_timeout).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let v = multiproc_sync::Value::new(0u16)?;
    /// v.set_timeout(3, Duration::from_millis(10))?;
    /// assert_eq!(v.get()?, 3);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn set_timeout(&self, value: T, timeout: Duration) -> Result<()> {
        // SAFETY: as in `set`.
        self.with_value(Some(timeout), |p| unsafe { *p = value })
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

impl<T: ShmSafe + Send + Copy, const N: usize> Value<[T; N]> {
    /// Element `i`, read under the lock (Python's `arr[i]`).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] past the end, and
    /// as for [`get`](Value::get).
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_sync::Array::new([5u8, 6])?;
    /// assert_eq!(a.get_at(1)?, 6);
    /// assert!(a.get_at(2).is_err());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn get_at(&self, i: usize) -> Result<T> {
        check_index(i, N)?;
        // SAFETY: i < N, so the element lies in the array; as in `get`.
        self.with_value(None, |p| unsafe { p.cast::<T>().add(i).read() })
    }

    /// Writes element `i` under the lock (Python's `arr[i] = x`).
    ///
    /// # Errors
    /// As for [`get_at`](Value::get_at).
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_sync::Array::new([0i64; 3])?;
    /// a.set_at(0, -1)?;
    /// assert_eq!(a.get()?, [-1, 0, 0]);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn set_at(&self, i: usize, value: T) -> Result<()> {
        check_index(i, N)?;
        // SAFETY: i < N, so the element lies in the array; as in `get`.
        self.with_value(None, |p| unsafe { p.cast::<T>().add(i).write(value) })
    }

    /// [`get_at`](Value::get_at), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    /// As for [`get_at`](Value::get_at), and [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let a = multiproc_sync::Array::new([5u8, 6])?;
    /// assert_eq!(a.get_at_timeout(0, Duration::ZERO)?, 5);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn get_at_timeout(&self, i: usize, timeout: Duration) -> Result<T> {
        check_index(i, N)?;
        // SAFETY: as in `get_at`.
        self.with_value(Some(timeout), |p| unsafe { p.cast::<T>().add(i).read() })
    }

    /// [`set_at`](Value::set_at), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    /// As for [`get_at_timeout`](Value::get_at_timeout).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let a = multiproc_sync::Array::new([0i8; 2])?;
    /// a.set_at_timeout(1, -1, Duration::ZERO)?;
    /// assert_eq!(a.get()?, [0, -1]);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn set_at_timeout(&self, i: usize, value: T, timeout: Duration) -> Result<()> {
        check_index(i, N)?;
        // SAFETY: as in `set_at`.
        self.with_value(Some(timeout), |p| unsafe {
            p.cast::<T>().add(i).write(value)
        })
    }

    /// Every element, copied out under the lock into a `Vec` (Python's
    /// `arr[:]`): for an array too large to copy onto the stack, as
    /// [`get`](Value::get) does.
    ///
    /// # Errors
    /// As for [`get`](Value::get).
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_sync::Array::new([1u16, 2, 3])?;
    /// assert_eq!(a.to_vec()?, vec![1, 2, 3]);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>> {
        // SAFETY: the pointer is the array's, valid for N elements; this
        // thread holds the lock and has no guard out, as in `get`.
        self.with_value(None, |p| unsafe {
            std::slice::from_raw_parts(p.cast::<T>(), N).to_vec()
        })
    }

    /// Writes every element from `values` under the lock (Python's
    /// `arr[:] = values`, which also needs as many).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] when `values` has
    /// another length than the array (nothing is written then), and as for
    /// [`set`](Value::set).
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_sync::Array::<i32, 3>::zeroed()?;
    /// a.copy_from_slice(&[4, 5, 6])?;
    /// assert_eq!(a.get()?, [4, 5, 6]);
    /// assert!(a.copy_from_slice(&[1, 2]).is_err());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn copy_from_slice(&self, values: &[T]) -> Result<()> {
        if values.len() != N {
            return Err(Error::OutOfRange {
                what: "the length of the values for a whole array",
                value: values.len() as u64,
                min: N as u64,
                max: N as u64,
            });
        }
        // SAFETY: the pointer is the array's, valid for N elements; this
        // thread holds the lock and has no guard out (`with_value` refuses
        // then), as in `set`; `copy` allows the ranges to overlap.
        self.with_value(None, |p| unsafe {
            std::ptr::copy(values.as_ptr(), p.cast::<T>(), N)
        })
    }

    /// The number of elements (Python's `len(arr)`).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::Array::new([0u8; 5])?.len(), 5);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        N
    }

    /// Whether it has no elements.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_sync::Array::new([0u8; 5])?.is_empty());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        N == 0
    }
}

fn check_index(i: usize, n: usize) -> Result<()> {
    if i >= n {
        return Err(Error::OutOfRange {
            what: "an array index",
            value: i as u64,
            min: 0,
            max: n.saturating_sub(1) as u64,
        });
    }
    Ok(())
}

impl<T: ShmSafe + Send> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("segment", self.segment())
            .finish()
    }
}

/// The lock of a [`Value`], held, with access to the value; releases one level
/// of the lock on drop.
pub struct ValueGuard<'a, T> {
    cell: &'a ValueCell<T>,
    /// The lock is owned by this thread's id: the guard must not move to another thread.
    _not_send: PhantomData<*const ()>,
}

impl<T> ValueGuard<'_, T> {
    /// Declares the value repaired after an [`OwnerDied`](LockError::OwnerDied).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_sync::Value::new(1u8)?;
    /// let mut g = v.lock().unwrap();
    /// g.mark_consistent(); // only matters after OwnerDied
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn mark_consistent(&mut self) {
        self.cell.lock.mark_consistent();
    }
}

impl<T> std::ops::Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this thread holds the lock and this guard is its only way to
        // the data (the borrowed flag turns away get/set/lock meanwhile).
        unsafe { &*self.cell.data.get() }
    }
}

impl<T> std::ops::DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; &mut self excludes other uses of this guard.
        unsafe { &mut *self.cell.data.get() }
    }
}

impl<T> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.cell.borrowed.store(0, Ordering::Relaxed);
        // Cannot fail: this thread holds the lock. An unrepaired recovery makes
        // the lock not recoverable, as a Mutex's guard does.
        let _ = self.cell.lock.release();
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
