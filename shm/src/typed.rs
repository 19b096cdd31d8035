//! Typed placement: [`Shared<T>`] (Python's `RawValue`) and [`SharedSlice<T>`]
//! (`RawArray`) in a [`Segment`], for types that meet the rules of shared memory.

use std::marker::PhantomData;
use std::path::Path;

use crate::header::TypeInfo;
use crate::{volatile, Error, Location, Result, Segment};

/// Types that may live in memory several processes map.
///
/// # Safety
/// Implement only for types that:
/// - hold no pointers, references, `Box`, `Vec`, `String`, file descriptors or
///   anything else whose meaning is private to one process;
/// - are valid for **every** bit pattern, all zeroes included (a peer may write any
///   bytes; new segments start zeroed): so no `bool`, `char`, enums, `NonZero*`;
/// - have the same layout in every process (`#[repr(C)]` or `#[repr(transparent)]`
///   for structs, built only from `ShmSafe` fields);
/// - are `Sync`: several processes use them at once.
///
/// The [`shm_struct!`](crate::shm_struct) macro declares a `#[repr(C)]` struct and
/// implements this trait for it, checking every field's type at compile time.
pub unsafe trait ShmSafe: Sized + Sync + 'static {}

/// [`ShmSafe`] types whose shared reference stays sound while other processes
/// write the same memory: [`Shared<T>`] and [`SharedSlice<T>`] hand out `&T`
/// only for these.
///
/// A `&u64` promises the compiler that nobody writes the `u64` while the
/// reference lives, a promise a peer process breaks whenever it likes; a
/// `&AtomicU64` promises nothing of the kind. So atomics are `ShmSync`, arrays
/// of `ShmSync` types are, and so are the process-shared primitives of
/// `multiproc-sync` (a `Mutex<T>` reaches its `T` only under the lock); plain
/// integers and floats are not: copy them in and out with
/// [`Shared::read_volatile`] and [`Shared::write_volatile`], or keep them
/// behind a lock.
///
/// # Safety
/// Implement only for a `ShmSafe` type that safe code holding a `&T` can use
/// while other processes use the same memory through their own `&T`: every
/// access through `&self` is atomic, volatile, or made under a process-shared
/// lock that the others take too.
pub unsafe trait ShmSync: ShmSafe {}

macro_rules! impl_shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: plain integers and floats have no invalid bit patterns, no
        // pointers, and a fixed layout.
        unsafe impl ShmSafe for $t {}
    )* };
}

impl_shm_safe!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);
macro_rules! impl_shm_sync {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: plain integer atomics are ShmSafe (above); every access
        // through `&self` is atomic.
        unsafe impl ShmSafe for $t {}
        // SAFETY: as above.
        unsafe impl ShmSync for $t {}
    )* };
}

impl_shm_sync!(
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
);

// SAFETY: an array of ShmSafe elements has no padding between them and inherits
// every property from its element type.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
// SAFETY: as above: `&[T; N]` gives only `&T`s, each ShmSync.
unsafe impl<T: ShmSync, const N: usize> ShmSync for [T; N] {}

/// Declares a `#[repr(C)]` struct and implements [`ShmSafe`] for it — and,
/// written `sync struct`, [`ShmSync`] too.
///
/// Every field's type must itself be `ShmSafe` (for a `sync struct`,
/// `ShmSync`); a field that is not (a `String`, a `bool`, a reference; a plain
/// `u64` in a `sync struct`) is a compile error.
///
/// A plain struct is data to keep behind a lock (a `multiproc_sync::Mutex`) or
/// to copy in and out whole; a `sync struct` of atomics and process-shared
/// primitives is used in place, through `&`, by every process at once.
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use multiproc_shm::Shared;
/// multiproc_shm::shm_struct! {
///     /// Counters every worker bumps in place.
///     pub sync struct Stats {
///         pub done: AtomicU64,
///         pub failed: AtomicU64,
///     }
/// }
/// multiproc_shm::shm_struct! {
///     /// A result, copied out whole.
///     #[derive(Clone, Copy)]
///     pub struct Score {
///         pub value: f64,
///         pub round: u32,
///         pub reserved: u32,
///     }
/// }
/// let stats = Shared::anonymous(Stats { done: AtomicU64::new(0), failed: AtomicU64::new(0) })?;
/// stats.done.fetch_add(1, Ordering::Relaxed);
/// let best = Shared::anonymous(Score { value: 0.0, round: 0, reserved: 0 })?;
/// best.write_volatile(Score { value: 0.9, round: 3, reserved: 0 });
/// assert_eq!(best.read_volatile().round, 3);
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
///
/// ```compile_fail
/// multiproc_shm::shm_struct! {
///     struct Bad { name: String }
/// }
/// ```
///
/// ```compile_fail
/// multiproc_shm::shm_struct! {
///     sync struct Racy { count: u64 }
/// }
/// ```
#[macro_export]
macro_rules! shm_struct {
    (
        $(#[$meta:meta])*
        $vis:vis sync struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $crate::shm_struct! {
            $(#[$meta])*
            $vis struct $name {
                $( $(#[$fmeta])* $fvis $field : $ty ),*
            }
        }
        const _: () = {
            const fn field_is_shm_sync<T: $crate::ShmSync>() {}
            $( field_is_shm_sync::<$ty>(); )*
        };
        // SAFETY: every field tolerates concurrent use through `&` (checked
        // just above), and the struct adds no access of its own.
        unsafe impl $crate::ShmSync for $name {}
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field : $ty ),*
        }
        const _: () = {
            const fn field_is_shm_safe<T: $crate::ShmSafe>() {}
            $( field_is_shm_safe::<$ty>(); )*
        };
        // SAFETY: #[repr(C)] and every field is ShmSafe (checked just above), so the
        // struct has a fixed layout, no pointers, and every bit pattern is valid.
        unsafe impl $crate::ShmSafe for $name {}
    };
}

/// One value of `T` in shared memory: Python's `RawValue`, with no lock.
///
/// Create it anonymous before `fork`, or named (or memfd, or file) and open it from
/// another process; `open` checks that the segment holds exactly one `T`.
///
/// # Access
/// Other processes may write the value at any moment. So `Shared<T>`
/// dereferences to `&T` only for [`ShmSync`] types (atomics, the primitives
/// of `multiproc-sync`, `sync struct`s), and never to `&mut T`. A plain value
/// is copied out with [`read_volatile`](Shared::read_volatile) and in with
/// [`write_volatile`](Shared::write_volatile); where the processes cooperate
/// (the others wait on a lock or a message), [`get_unchecked`](Shared::get_unchecked)
/// and [`get_unchecked_mut`](Shared::get_unchecked_mut) give a reference,
/// `unsafe` because the compiler cannot check that the others keep off.
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use multiproc_shm::Shared;
/// let name = format!("doc-shared-{}", std::process::id());
/// let a = Shared::create(&name, AtomicU32::new(5))?;
/// let b = Shared::<AtomicU32>::open(&name)?;
/// b.fetch_add(1, Ordering::SeqCst);
/// assert_eq!(a.load(Ordering::SeqCst), 6);
/// assert!(matches!(Shared::<u64>::open(&name), Err(multiproc_shm::Error::LayoutMismatch { .. })));
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
pub struct Shared<T: ShmSafe> {
    seg: Segment,
    _t: PhantomData<T>,
}

impl<T: ShmSafe> Shared<T> {
    /// `value` in a new anonymous shared segment (inherited by children after `fork`).
    ///
    /// # Errors
    /// As for [`Segment::anonymous`].
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::anonymous(7i64)?;
    /// assert_eq!(v.read_volatile(), 7);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn anonymous(value: T) -> Result<Shared<T>> {
        Shared::new_in(Location::Anonymous, value)
    }

    /// `value` in a new named segment.
    ///
    /// # Errors
    /// As for [`Segment::create`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-shared-create-{}", std::process::id());
    /// let v = multiproc_shm::Shared::create(&name, 1.5f32)?;
    /// assert_eq!(v.read_volatile(), 1.5);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn create(name: &str, value: T) -> Result<Shared<T>> {
        Shared::new_in(Location::Named(name), value)
    }

    /// `value` in a new segment at `location`.
    ///
    /// # Errors
    /// As for [`Segment::new_in`].
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::new_in(multiproc_shm::Location::Memfd, 3.5f64)?;
    /// assert_eq!(v.read_volatile(), 3.5);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, value: T) -> Result<Shared<T>> {
        let seg = Segment::create_typed(location, TypeInfo::of::<T>(1), |p| {
            // SAFETY: create_typed passes a pointer aligned for T and valid for one T,
            // which nothing else refers to until the header is published.
            unsafe { p.cast::<T>().write(value) }
        })?;
        Ok(Shared {
            seg,
            _t: PhantomData,
        })
    }

    /// A zeroed `T` in a new segment at `location`, built in place: for values too
    /// large for the stack. All-zero bytes are a valid `T` for every [`ShmSafe`] type.
    ///
    /// # Errors
    /// As for [`Segment::new_in`].
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let big = multiproc_shm::Shared::<[AtomicU64; 1 << 20]>::zeroed_in(multiproc_shm::Location::Anonymous)?;
    /// assert_eq!(big[12345].load(Ordering::Relaxed), 0);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn zeroed_in(location: Location<'_>) -> Result<Shared<T>> {
        // New mappings are zero-filled by the kernel (and by ftruncate for files).
        let seg = Segment::create_typed(location, TypeInfo::of::<T>(1), |_| {})?;
        Ok(Shared {
            seg,
            _t: PhantomData,
        })
    }

    /// Opens the named segment `name`, which must hold one `T`.
    ///
    /// # Errors
    /// As for [`Segment::open`], and [`Error::LayoutMismatch`] if it holds something else.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-shared-open-{}", std::process::id());
    /// let _a = multiproc_shm::Shared::create(&name, 3u8)?;
    /// assert_eq!(multiproc_shm::Shared::<u8>::open(&name)?.read_volatile(), 3);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Shared<T>> {
        Shared::from_segment(Segment::open(name)?)
    }

    /// Opens the file-backed segment at `path`, which must hold one `T`.
    ///
    /// # Errors
    /// As for [`Segment::open_file`], and [`Error::LayoutMismatch`].
    ///
    /// # Examples
    /// ```
    /// let path = std::env::temp_dir().join(format!("doc-shared-file-{}", std::process::id()));
    /// drop(multiproc_shm::Shared::new_in(multiproc_shm::Location::File(&path), 5u32)?);
    /// assert_eq!(multiproc_shm::Shared::<u32>::open_file(&path)?.read_volatile(), 5);
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn open_file(path: impl AsRef<Path>) -> Result<Shared<T>> {
        Shared::from_segment(Segment::open_file(path)?)
    }

    /// Views an opened segment as one `T`, after checking that it holds one.
    ///
    /// # Errors
    /// [`Error::LayoutMismatch`] if the header names another type or count.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(1)?; // raw bytes: one u8
    /// assert!(multiproc_shm::Shared::<u8>::from_segment(seg).is_ok());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn from_segment(seg: Segment) -> Result<Shared<T>> {
        check_type::<T>(&seg, Some(1))?;
        Ok(Shared {
            seg,
            _t: PhantomData,
        })
    }

    /// A volatile copy of the value: the way to read a plain (non-atomic) value a
    /// peer may be writing. The copy may be torn if it is larger than a machine word;
    /// every bit pattern of `T` is valid, so a torn value is still a value.
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::anonymous(9u32)?;
    /// assert_eq!(v.read_volatile(), 9);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn read_volatile(&self) -> T
    where
        T: Copy,
    {
        // SAFETY: the pointer is aligned and valid for T while self lives; T is
        // ShmSafe, so whatever bytes are there form a valid T.
        unsafe { self.as_ptr().read_volatile() }
    }

    /// Writes `value` with a volatile store: the way to write a plain value
    /// other processes may be reading (they may see it torn, as for
    /// [`read_volatile`](Shared::read_volatile)).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::anonymous(0u32)?;
    /// v.write_volatile(4);
    /// assert_eq!(v.read_volatile(), 4);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn write_volatile(&self, value: T)
    where
        T: Copy,
    {
        // SAFETY: the pointer is aligned and valid for T while self lives, in a
        // writable mapping; no reference to the value is handed out for a
        // non-ShmSync T except under get_unchecked's contract.
        unsafe { self.as_ptr().write_volatile(value) }
    }

    /// A reference to the value, for processes that cooperate.
    ///
    /// # Safety
    /// While the reference lives, nothing may write the value — no other
    /// process, and nothing in this one through another handle or
    /// [`write_volatile`](Shared::write_volatile) — unless `T` is [`ShmSync`]
    /// (then use `Deref`). A lock, a message or the program's structure must
    /// ensure it (a child that writes and exits before the parent reads, say).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::anonymous([1u32, 2, 3])?;
    /// // SAFETY: nobody else has this segment.
    /// assert_eq!(unsafe { v.get_unchecked() }.iter().sum::<u32>(), 6);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub unsafe fn get_unchecked(&self) -> &T {
        // SAFETY: aligned, valid for T, alive while self lives, any bytes a
        // valid T; nobody writes it meanwhile (the caller's contract).
        unsafe { &*self.as_ptr() }
    }

    /// A mutable reference to the value, for processes that cooperate.
    ///
    /// # Safety
    /// While the reference lives, nothing else may read or write the value: no
    /// other process, and no other handle in this one.
    ///
    /// # Examples
    /// ```
    /// let mut v = multiproc_shm::Shared::anonymous([0u32; 3])?;
    /// // SAFETY: nobody else has this segment.
    /// let values = unsafe { v.get_unchecked_mut() };
    /// values[1] = 7;
    /// assert_eq!(v.read_volatile(), [0, 7, 0]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub unsafe fn get_unchecked_mut(&mut self) -> &mut T {
        // SAFETY: as in get_unchecked; nobody else touches it meanwhile.
        unsafe { &mut *self.as_ptr() }
    }

    /// A pointer to the value.
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::anonymous(1u64)?;
    /// // SAFETY: the pointer is valid and nobody writes concurrently.
    /// assert_eq!(unsafe { v.as_ptr().read_volatile() }, 1);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut T {
        self.seg.as_ptr().cast()
    }

    /// The segment underneath (for its name, fd, unlink settings).
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::anonymous(1u8)?;
    /// assert_eq!(v.segment().len(), 1);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The segment underneath, mutably (to [`unlink`](Segment::unlink) it, say).
    ///
    /// # Examples
    /// ```
    /// let mut v = multiproc_shm::Shared::anonymous(1u8)?;
    /// v.segment_mut().unlink()?; // nothing to unlink for an anonymous one
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }
}

impl<T: ShmSync> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: aligned, valid for T, alive while self lives; any bytes are a
        // valid T; T: ShmSync tolerates other processes' writes through `&T`.
        unsafe { &*self.as_ptr() }
    }
}

impl<T: ShmSafe> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("segment", &self.seg)
            .finish()
    }
}

/// `n` values of `T` in shared memory: Python's `RawArray`, with no lock.
///
/// # Access
/// As for [`Shared`]: a slice (`&[T]`, through `Deref`) only for [`ShmSync`]
/// element types; plain elements are copied in and out with
/// [`read_volatile`](SharedSlice::read_volatile),
/// [`write_volatile`](SharedSlice::write_volatile) and their slice forms, and
/// [`as_slice`](SharedSlice::as_slice) / [`as_mut_slice`](SharedSlice::as_mut_slice)
/// are the `unsafe` way for processes that cooperate.
///
/// # Examples
/// Children write their slots after `fork`; the parent reads them:
/// ```
/// use multiproc_shm::SharedSlice;
/// let squares = SharedSlice::<u64>::anonymous(4)?;
/// for i in 0..4 {
///     squares.write_volatile(i, (i * i) as u64)?;
/// }
/// assert_eq!(squares.read_volatile(3), Some(9));
/// assert_eq!(squares.read_volatile(4), None);
/// assert_eq!(squares.to_vec_volatile(), [0, 1, 4, 9]);
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
pub struct SharedSlice<T: ShmSafe> {
    seg: Segment,
    _t: PhantomData<T>,
}

/// Python's name for [`SharedSlice`].
pub type SharedArray<T> = SharedSlice<T>;

impl<T: ShmSafe> SharedSlice<T> {
    /// `len` zeroed values in a new anonymous shared segment.
    ///
    /// # Errors
    /// As for [`Segment::anonymous`].
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::<u16>::anonymous(3)?;
    /// assert_eq!(a.to_vec_volatile(), [0, 0, 0]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn anonymous(len: usize) -> Result<SharedSlice<T>> {
        SharedSlice::new_in(Location::Anonymous, len)
    }

    /// `len` zeroed values in a new named segment.
    ///
    /// # Errors
    /// As for [`Segment::create`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-slice-create-{}", std::process::id());
    /// let a = multiproc_shm::SharedSlice::<u8>::create(&name, 2)?;
    /// assert_eq!(a.len(), 2);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn create(name: &str, len: usize) -> Result<SharedSlice<T>> {
        SharedSlice::new_in(Location::Named(name), len)
    }

    /// `len` zeroed values in a new segment at `location` (zero is a valid `T`).
    ///
    /// # Errors
    /// As for [`Segment::new_in`].
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Location, SharedSlice};
    /// let a = SharedSlice::<i32>::new_in(Location::Memfd, 4)?;
    /// assert_eq!(a.len(), 4);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, len: usize) -> Result<SharedSlice<T>> {
        SharedSlice::new_in_with(location, len, |_| {})
    }

    /// A copy of `values` in a new segment at `location`.
    ///
    /// # Errors
    /// As for [`Segment::new_in`].
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Location, SharedSlice};
    /// let a = SharedSlice::from_slice(Location::Anonymous, &[1.5f32, 2.5])?;
    /// assert_eq!(a.to_vec_volatile(), [1.5, 2.5]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn from_slice(location: Location<'_>, values: &[T]) -> Result<SharedSlice<T>>
    where
        T: Copy,
    {
        SharedSlice::new_in_with(location, values.len(), |p| {
            // SAFETY: create_typed passes a pointer aligned for T and valid for
            // values.len() of them, not overlapping the caller's slice.
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), p.cast::<T>(), values.len()) }
        })
    }

    pub(crate) fn new_in_with(
        location: Location<'_>,
        len: usize,
        init: impl FnOnce(*mut u8),
    ) -> Result<SharedSlice<T>> {
        let seg = Segment::create_typed(location, TypeInfo::of::<T>(len as u64), init)?;
        Ok(SharedSlice {
            seg,
            _t: PhantomData,
        })
    }

    /// Opens the named segment `name`, which must hold values of `T` (any number).
    ///
    /// # Errors
    /// As for [`Segment::open`], and [`Error::LayoutMismatch`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-slice-open-{}", std::process::id());
    /// let _a = multiproc_shm::SharedSlice::<u8>::create(&name, 5)?;
    /// assert_eq!(multiproc_shm::SharedSlice::<u8>::open(&name)?.len(), 5);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<SharedSlice<T>> {
        SharedSlice::from_segment(Segment::open(name)?)
    }

    /// Opens the file-backed segment at `path`, which must hold values of `T`.
    ///
    /// # Errors
    /// As for [`Segment::open_file`], and [`Error::LayoutMismatch`].
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Location, SharedSlice};
    /// let path = std::env::temp_dir().join(format!("doc-slice-file-{}", std::process::id()));
    /// drop(SharedSlice::from_slice(Location::File(&path), &[1u8, 2])?);
    /// assert_eq!(SharedSlice::<u8>::open_file(&path)?.to_vec_volatile(), [1, 2]);
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn open_file(path: impl AsRef<Path>) -> Result<SharedSlice<T>> {
        SharedSlice::from_segment(Segment::open_file(path)?)
    }

    /// Views an opened segment as values of `T`, after checking that it holds them.
    ///
    /// # Errors
    /// [`Error::LayoutMismatch`] if the header names another element type.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(3)?;
    /// assert_eq!(multiproc_shm::SharedSlice::<u8>::from_segment(seg)?.len(), 3);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn from_segment(seg: Segment) -> Result<SharedSlice<T>> {
        check_type::<T>(&seg, None)?;
        Ok(SharedSlice {
            seg,
            _t: PhantomData,
        })
    }

    /// The number of values.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_shm::SharedSlice::<u64>::anonymous(6)?.len(), 6);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.seg.len() / std::mem::size_of::<T>().max(1)
    }

    /// Whether there are none (only in a segment made by another program: this
    /// crate makes none of 0 bytes).
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_shm::SharedSlice::<u64>::anonymous(1)?.is_empty());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A volatile copy of element `i`, or `None` past the end.
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::<u8>::anonymous(2)?;
    /// assert_eq!(a.read_volatile(1), Some(0));
    /// assert_eq!(a.read_volatile(2), None);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn read_volatile(&self, i: usize) -> Option<T>
    where
        T: Copy,
    {
        // SAFETY: i < len, so the element is inside the mapping, aligned; any bytes
        // are a valid T.
        (i < self.len()).then(|| unsafe { self.as_ptr().add(i).read_volatile() })
    }

    /// Writes element `i` with a volatile store.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the end (nothing is written).
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::<u8>::anonymous(2)?;
    /// a.write_volatile(0, 5)?;
    /// assert!(a.write_volatile(2, 5).is_err());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn write_volatile(&self, i: usize, value: T) -> Result<()>
    where
        T: Copy,
    {
        self.check_range(i, 1)?;
        // SAFETY: i < len: inside the writable mapping, aligned for T.
        unsafe { self.as_ptr().add(i).write_volatile(value) };
        Ok(())
    }

    /// Copies `out.len()` elements from `start` into `out` with volatile reads
    /// (8 bytes at a time where aligned).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when the range reaches past the end.
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::from_slice(multiproc_shm::Location::Anonymous, &[1u16, 2, 3])?;
    /// let mut out = [0u16; 2];
    /// a.read_slice_volatile(1, &mut out)?;
    /// assert_eq!(out, [2, 3]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn read_slice_volatile(&self, start: usize, out: &mut [T]) -> Result<()>
    where
        T: Copy,
    {
        self.check_range(start, out.len())?;
        let bytes = std::mem::size_of_val(out);
        // SAFETY: `out` is private memory of `bytes` bytes; T is ShmSafe, so
        // any bytes written into it form valid Ts.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), bytes) };
        // SAFETY: start + out.len() <= len (checked): inside the live mapping.
        unsafe { volatile::copy_out(self.as_ptr().add(start).cast::<u8>(), dst) };
        Ok(())
    }

    /// Copies `values` to the elements from `start` with volatile writes.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] when the range reaches past the end (nothing is
    /// written).
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::<u32>::anonymous(4)?;
    /// a.write_slice_volatile(1, &[7, 8])?;
    /// assert_eq!(a.to_vec_volatile(), [0, 7, 8, 0]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn write_slice_volatile(&self, start: usize, values: &[T]) -> Result<()>
    where
        T: Copy,
    {
        self.check_range(start, values.len())?;
        // SAFETY: T is ShmSafe: plain bytes with no padding that matters to a
        // copy (any bytes are a valid T on the other side).
        let src = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        // SAFETY: start + values.len() <= len (checked): inside the writable mapping.
        unsafe { volatile::copy_in(src, self.as_ptr().add(start).cast::<u8>()) };
        Ok(())
    }

    /// Volatile copies of all elements, into private memory.
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::from_slice(multiproc_shm::Location::Anonymous, &[3u8, 4])?;
    /// assert_eq!(a.to_vec_volatile(), vec![3, 4]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn to_vec_volatile(&self) -> Vec<T>
    where
        T: Copy,
    {
        // SAFETY: all-zero bytes are a valid T for every ShmSafe type.
        let zero: T = unsafe { std::mem::zeroed() };
        let mut out = vec![zero; self.len()];
        // The range is the whole slice: it cannot be out of bounds.
        let _ = self.read_slice_volatile(0, &mut out);
        out
    }

    /// The elements as a slice, for processes that cooperate.
    ///
    /// # Safety
    /// While the slice lives, nothing may write the elements — no other
    /// process, and nothing in this one through another handle or
    /// `write_volatile` — unless `T` is [`ShmSync`] (then use `Deref`).
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::from_slice(multiproc_shm::Location::Anonymous, &[1u8, 2])?;
    /// // SAFETY: nobody else has this segment.
    /// assert_eq!(unsafe { a.as_slice() }, &[1, 2]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: len elements, aligned, inside the live mapping, any bytes
        // valid Ts; nobody writes them meanwhile (the caller's contract).
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The elements as a mutable slice, for processes that cooperate.
    ///
    /// # Safety
    /// While the slice lives, nothing else may read or write the elements: no
    /// other process, and no other handle in this one.
    ///
    /// # Examples
    /// ```
    /// let mut a = multiproc_shm::SharedSlice::<u8>::anonymous(2)?;
    /// // SAFETY: nobody else has this segment.
    /// unsafe { a.as_mut_slice() }.copy_from_slice(&[4, 5]);
    /// assert_eq!(a.to_vec_volatile(), [4, 5]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub unsafe fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in as_slice; nobody else touches them meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }

    fn check_range(&self, start: usize, n: usize) -> Result<()> {
        match start.checked_add(n) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                start,
                count: n,
                len: self.len(),
            }),
        }
    }

    /// A pointer to the first element.
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::<u32>::anonymous(2)?;
    /// assert_eq!(a.as_ptr() as usize % 4, 0);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut T {
        self.seg.as_ptr().cast()
    }

    /// The segment underneath.
    ///
    /// # Examples
    /// ```
    /// let a = multiproc_shm::SharedSlice::<u32>::anonymous(2)?;
    /// assert_eq!(a.segment().len(), 8);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The segment underneath, mutably.
    ///
    /// # Examples
    /// ```
    /// let mut a = multiproc_shm::SharedSlice::<u32>::anonymous(2)?;
    /// assert_eq!(a.segment_mut().len(), 8);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }
}

impl<T: ShmSync> std::ops::Deref for SharedSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: len elements, aligned, inside the live mapping; any bytes are
        // valid Ts; T: ShmSync tolerates other processes' writes through `&T`.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }
}

impl<T: ShmSafe> std::fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlice")
            .field("segment", &self.seg)
            .finish()
    }
}

/// Checks that `seg` holds values of `T` (and exactly `count` of them if given).
fn check_type<T: ShmSafe>(seg: &Segment, count: Option<u64>) -> Result<()> {
    let found = seg.type_info();
    let want = TypeInfo::of::<T>(count.unwrap_or(found.count));
    if found.same_type(&want) && count.is_none_or(|c| c == found.count) {
        return Ok(());
    }
    let what = match (seg.name(), seg.path()) {
        (Some(n), _) => format!("segment {n:?}"),
        (_, Some(p)) => format!("file {}", p.display()),
        _ => "the segment".to_owned(),
    };
    Err(Error::LayoutMismatch {
        what,
        expected: want.describe(),
        found: found.describe(),
    })
}
