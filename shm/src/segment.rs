//! [`Segment`]: a mapping of bytes that several processes see, behind a checked header.

use crate::error::SizeProblem;
use crate::tracker;
use crate::volatile;
use std::ffi::CString;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::header::{
    self, Header, Snapshot, TypeInfo, FLAG_PERSISTENT, HEADER_LEN, MAGIC, STATE_READY,
};
use crate::{name, sys, Error, ProcessIdentity, Result, TrustProblem};

/// How long [`Segment::open`] waits, by default, for a creator to finish initialising.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a new segment's memory comes from.
#[derive(Debug, Clone, Copy)]
pub enum Location<'a> {
    /// `MAP_SHARED | MAP_ANONYMOUS`: shared with children forked after creation.
    Anonymous,
    /// A POSIX shared-memory object (`/dev/shm/NAME`), opened by name from any process.
    Named(&'a str),
    /// A POSIX shared-memory object under a new name this crate picks —
    /// Python's `SharedMemory(create=True, size=n)` without a name: `psm_`
    /// and eight random hex digits, as Python's, another drawn when one is
    /// taken. [`Segment::name`] tells it, for the processes that open it.
    NewName,
    /// A `memfd`: shared through its descriptor (inherited, or opened from `/proc/PID/fd/N`).
    Memfd,
    /// A file, mapped `MAP_SHARED` through memmap2: the contents persist on disk.
    File(&'a Path),
}

/// Which kind of memory a segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// See [`Location::Anonymous`].
    Anonymous,
    /// See [`Location::Named`].
    Named,
    /// See [`Location::Memfd`].
    Memfd,
    /// See [`Location::File`].
    File,
}

enum Backing {
    Anonymous,
    Named {
        name: String,
        cname: CString,
        /// Unlink on drop; only ever done by the process that created it (a forked
        /// child that drops its copy must not remove the parent's segment).
        unlink_on_drop: bool,
        creator_pid: u32,
    },
    Memfd {
        fd: OwnedFd,
    },
    File {
        /// Held for its Drop, which unmaps.
        _map: memmap2::MmapMut,
        path: PathBuf,
    },
}

/// A mapping of memory that several processes see, with a header.
///
/// Python's `shared_memory.SharedMemory`, and the ground under [`Shared`](crate::Shared)
/// and [`SharedSlice`](crate::SharedSlice). The first 128 bytes of the mapping are the
/// [header]; the contents after it are what this type gives access to.
///
/// # Sharing and races
/// Other processes may write the contents at any moment, so a `Segment` hands
/// out no `&[u8]` or `&mut [u8]` to them safely: in Rust's model a reference
/// promises that nobody else writes what it points to. Bytes go in and out
/// with [`read_volatile`](Segment::read_volatile) and
/// [`write_volatile`](Segment::write_volatile), which copy between the segment
/// and private memory. Where the processes cooperate (one writes while the
/// others wait on a lock or a message), [`as_slice`](Segment::as_slice) and
/// [`as_mut_slice`](Segment::as_mut_slice) give the bytes as a slice, `unsafe`
/// because the compiler cannot check that promise (memmap2's mutable mappings
/// are `unsafe` for the same reason). Typed values go in
/// [`Shared`](crate::Shared) and [`SharedSlice`](crate::SharedSlice).
///
/// A named segment can be shrunk by any process that opens it (`ftruncate`), and
/// touching memory past the new end raises `SIGBUS`; memfd segments are sealed
/// against that. Share named segments only with processes you trust that far.
///
/// A named or file segment has its pages reserved on its filesystem when it is
/// made (`fallocate`): a filesystem without room for it (a full or small
/// `/dev/shm`, as containers often have) refuses it then, with
/// [`Error::NoRoom`], instead of a `SIGBUS` at the first write past the room
/// (Python's `SharedMemory` gives the `SIGBUS`). The pages are allocated at
/// once, not as they are first touched; anonymous and memfd segments, which
/// `/dev/shm`'s size does not bound, are allocated as touched.
///
/// # Examples
/// Create a named segment and open it again, as a second process would:
/// ```
/// use multiproc_shm::Segment;
/// let name = format!("doc-segment-{}", std::process::id());
/// let a = Segment::create(&name, 64)?;
/// a.write_volatile(0, b"hello")?;
/// let b = Segment::open(&name)?;
/// let mut buf = [0u8; 5];
/// b.read_volatile(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
pub struct Segment {
    base: NonNull<u8>,
    map_len: usize,
    offset: usize,
    len: usize,
    info: TypeInfo,
    creator: ProcessIdentity,
    backing: Backing,
}

// SAFETY: a Segment owns its mapping and its descriptor; neither is tied to the
// thread that made them. Access to the bytes follows the same rules as memmap2's
// `MmapMut`, which is Send and Sync: `&mut` access needs `&mut Segment`.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` gives only volatile access, or `unsafe` slices.
unsafe impl Sync for Segment {}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("kind", &self.kind())
            .field("name", &self.name())
            .field("len", &self.len)
            .field("holds", &self.info.describe())
            .field("creator", &self.creator)
            .finish()
    }
}

impl Segment {
    /// An anonymous shared segment of `len` bytes: create it, then `fork`.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] when `len` cannot be mapped, [`Error::Io`] when `mmap` fails.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(4096)?;
    /// assert_eq!(seg.len(), 4096);
    /// let mut bytes = vec![1u8; 4096];
    /// seg.read_volatile(0, &mut bytes)?;
    /// assert!(bytes.iter().all(|&b| b == 0));
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn anonymous(len: usize) -> Result<Segment> {
        Segment::new_in(Location::Anonymous, len)
    }

    /// Creates the named segment `name` of `len` bytes (`O_CREAT | O_EXCL`, mode 0600).
    ///
    /// It is unlinked when this handle is dropped, unless
    /// [`set_unlink_on_drop(false)`](Segment::set_unlink_on_drop) is called.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::AlreadyExists`], [`Error::InvalidSize`],
    /// [`Error::NoRoom`] (no room on `/dev/shm`), [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-create-{}", std::process::id());
    /// let seg = multiproc_shm::Segment::create(&name, 100)?;
    /// assert_eq!(seg.name(), Some(name.as_str()));
    /// assert!(matches!(
    ///     multiproc_shm::Segment::create(&name, 100),
    ///     Err(multiproc_shm::Error::AlreadyExists { .. })
    /// ));
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn create(name: &str, len: usize) -> Result<Segment> {
        Segment::new_in(Location::Named(name), len)
    }

    /// A `memfd` segment of `len` bytes; share it through [`Segment::fd`].
    ///
    /// # Errors
    /// [`Error::InvalidSize`], [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::memfd(10)?;
    /// assert!(seg.fd().is_some());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn memfd(len: usize) -> Result<Segment> {
        Segment::new_in(Location::Memfd, len)
    }

    /// Creates the file `path` (which must not exist) holding a segment of `len` bytes.
    ///
    /// The file stays when the handle is dropped: that is what file-backed is for.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the file exists, [`Error::InvalidSize`],
    /// [`Error::NoRoom`] (no room on its filesystem), [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// let path = std::env::temp_dir().join(format!("doc-file-{}", std::process::id()));
    /// let seg = multiproc_shm::Segment::create_file(&path, 8)?;
    /// seg.write_volatile(0, &[42])?;
    /// drop(seg);
    /// let mut first = [0u8];
    /// multiproc_shm::Segment::open_file(&path)?.read_volatile(0, &mut first)?;
    /// assert_eq!(first, [42]);
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn create_file(path: impl AsRef<Path>, len: usize) -> Result<Segment> {
        Segment::new_in(Location::File(path.as_ref()), len)
    }

    /// A segment of `len` bytes at `location`.
    ///
    /// # Errors
    /// As for [`create`](Segment::create), [`anonymous`](Segment::anonymous),
    /// [`memfd`](Segment::memfd) and [`create_file`](Segment::create_file).
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Kind, Location, Segment};
    /// assert_eq!(Segment::new_in(Location::Memfd, 1)?.kind(), Kind::Memfd);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, len: usize) -> Result<Segment> {
        Segment::create_typed(location, TypeInfo::of::<u8>(len as u64), |_| {})
    }

    /// Creates a segment described by `info`, runs `init` on the (zeroed) contents,
    /// then publishes the header: openers wait until `init` has returned.
    ///
    /// `init` gets a pointer to the contents, aligned to `info.elem_align` and valid
    /// for `elem_size × count` bytes. This is the door for structures with their own
    /// layout (see [`TypeInfo::custom`]); [`Shared`](crate::Shared) and
    /// [`SharedSlice`](crate::SharedSlice) use it too.
    ///
    /// # Errors
    /// As for [`Segment::new_in`], and [`Error::InvalidSize`] for an alignment above
    /// a page or a size that overflows.
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Location, Segment, TypeInfo};
    /// let info = TypeInfo::custom("doc-layout", 1, 64, 256);
    /// let seg = Segment::create_typed(Location::Anonymous, info, |p| {
    ///     // SAFETY: p is valid for 256 bytes, and nothing else sees them yet.
    ///     unsafe { p.write(42) };
    /// })?;
    /// let mut first = [0u8];
    /// seg.read_volatile(0, &mut first)?;
    /// assert_eq!(first, [42]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn create_typed(
        location: Location<'_>,
        info: TypeInfo,
        init: impl FnOnce(*mut u8),
    ) -> Result<Segment> {
        let invalid = |problem| Error::InvalidSize {
            what: info.describe(),
            problem,
        };
        let payload_len = info
            .payload_len()
            .ok_or_else(|| invalid(SizeProblem::Overflow))?;
        if payload_len == 0 {
            return Err(invalid(SizeProblem::Zero));
        }
        if info.elem_align > sys::page_size() as u64 {
            return Err(invalid(SizeProblem::AlignmentAbovePage {
                align: info.elem_align,
            }));
        }
        let offset = header::payload_offset(info.elem_align);
        let map_len = offset
            .checked_add(payload_len)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(|| {
                invalid(SizeProblem::AboveAddressSpace {
                    bytes: offset.saturating_add(payload_len),
                })
            })?;
        let creator = ProcessIdentity::current();
        let (base, backing) = match location {
            Location::Anonymous => {
                let base = sys::map_shared(map_len, None).map_err(|e| {
                    Error::io(
                        "mmap",
                        format!("an anonymous segment of {map_len} bytes"),
                        e,
                    )
                })?;
                (base, Backing::Anonymous)
            }
            Location::Named(name) => create_named(name, map_len, creator.pid)?,
            Location::NewName => create_new_name(map_len, creator.pid)?,
            Location::Memfd => {
                let cname = CString::new("multiproc").expect("no NUL");
                let fd = sys::memfd_create(&cname)
                    .map_err(|e| Error::io("memfd_create", "a memfd segment", e))?;
                sys::set_len(fd.as_fd(), map_len as u64)
                    .map_err(|e| Error::io("ftruncate", "a memfd segment", e))?;
                sys::seal_size(fd.as_fd())
                    .map_err(|e| Error::io("fcntl(F_ADD_SEALS)", "a memfd segment", e))?;
                let base = sys::map_shared(map_len, Some(fd.as_fd()))
                    .map_err(|e| Error::io("mmap", "a memfd segment", e))?;
                (base, Backing::Memfd { fd })
            }
            Location::File(path) => create_file(path, map_len)?,
        };
        let seg = Segment {
            base,
            map_len,
            offset: offset as usize,
            len: payload_len as usize,
            info,
            creator,
            backing,
        };
        let flags = if matches!(seg.backing, Backing::File { .. }) {
            FLAG_PERSISTENT
        } else {
            0
        };
        seg.header().init(&seg.info, creator, flags);
        init(seg.as_ptr());
        seg.header().publish();
        Ok(seg)
    }

    /// Opens the named segment `name`, waiting up to [`DEFAULT_INIT_TIMEOUT`] for
    /// its creator to finish initialising it.
    ///
    /// The segment must be a regular file owned by this process's effective user
    /// with no permission for group or others — one that this user could have
    /// made with [`create`](Segment::create) — or it is refused with
    /// [`Error::NotTrusted`]: a name another user took first (squatting) would
    /// otherwise connect this process to a stranger. To share segments between
    /// users on purpose, see [`OpenOptions::any_user`].
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::NotTrusted`],
    /// [`Error::TooSmall`], [`Error::NotMultiproc`], [`Error::VersionMismatch`],
    /// [`Error::Corrupted`], [`Error::NotReady`], [`Error::Io`].
    ///
    /// # Examples
    /// ```
    /// assert!(matches!(
    ///     multiproc_shm::Segment::open("no-such-segment-here"),
    ///     Err(multiproc_shm::Error::NotFound { .. })
    /// ));
    /// ```
    pub fn open(name: &str) -> Result<Segment> {
        OpenOptions::new().open(name)
    }

    /// [`open`](Segment::open), waiting at most `timeout` for the creator (a
    /// timeout too large for the clock, such as `Duration::MAX`, for ever).
    ///
    /// # Errors
    /// As for [`open`](Segment::open).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let name = format!("doc-open-timeout-{}", std::process::id());
    /// let _creator = multiproc_shm::Segment::create(&name, 1)?;
    /// let seg = multiproc_shm::Segment::open_timeout(&name, Duration::from_millis(10))?;
    /// assert_eq!(seg.len(), 1);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Segment> {
        OpenOptions::new().init_timeout(timeout).open(name)
    }

    /// Maps the segment behind `fd`: a memfd received from another process (passed
    /// over a socket, inherited, or opened as `/proc/PID/fd/N`), or a shm descriptor.
    ///
    /// # Errors
    /// As for [`open`](Segment::open), except the name errors.
    ///
    /// # Examples
    /// ```
    /// use std::os::fd::AsFd;
    /// let a = multiproc_shm::Segment::memfd(4)?;
    /// a.write_volatile(0, &[7])?;
    /// let fd = a.fd().unwrap().try_clone_to_owned().unwrap();
    /// let b = multiproc_shm::Segment::from_fd(fd)?;
    /// let mut first = [0u8];
    /// b.read_volatile(0, &mut first)?;
    /// assert_eq!(first, [7]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Result<Segment> {
        let checked = map_checked(
            fd.as_fd(),
            "the segment behind a descriptor",
            DEFAULT_INIT_TIMEOUT,
        )?;
        Ok(checked.into_segment(Backing::Memfd { fd }))
    }

    /// Opens a segment file made by [`create_file`](Segment::create_file), with
    /// the checks of [`open`](Segment::open) (a regular file of this user's, no
    /// permission for group or others).
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is no such file, then as for [`open`](Segment::open).
    ///
    /// # Examples
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::fs::OpenOptionsExt;
    /// let path = std::env::temp_dir().join(format!("doc-foreign-{}", std::process::id()));
    /// std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?
    ///     .write_all(&[b'x'; 4096])?;
    /// assert!(matches!(
    ///     multiproc_shm::Segment::open_file(&path),
    ///     Err(multiproc_shm::Error::NotMultiproc { .. })
    /// ));
    /// std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_file(path: impl AsRef<Path>) -> Result<Segment> {
        OpenOptions::new().open_file(path)
    }

    /// Lets group or others open the segment: sets the permission bits of a
    /// named or file-backed segment (`fchmod`; 0600 at creation). Openers on the
    /// other side use [`OpenOptions::any_user`]. No effect on other kinds.
    ///
    /// # Errors
    /// [`Error::Io`] when the name or file cannot be opened or changed.
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{OpenOptions, Segment};
    /// let name = format!("doc-mode-{}", std::process::id());
    /// let seg = Segment::create(&name, 8)?;
    /// seg.set_mode(0o660)?; // the group may open it too
    /// assert!(Segment::open(&name).is_err()); // no longer a private segment
    /// assert!(OpenOptions::new().any_user(true).open(&name).is_ok());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        let chmod = |fd: BorrowedFd<'_>, what: String| {
            sys::fchmod(fd, mode & 0o7777).map_err(|e| Error::io("fchmod", what, e))
        };
        match &self.backing {
            Backing::Named { name, cname, .. } => {
                let fd = sys::shm_open(cname, false)
                    .map_err(|e| Error::io("shm_open", format!("segment {name:?}"), e))?;
                chmod(fd.as_fd(), format!("segment {name:?}"))
            }
            Backing::File { path, .. } => {
                let file = std::fs::File::open(path)
                    .map_err(|e| Error::io("open", path.display().to_string(), e))?;
                chmod(file.as_fd(), path.display().to_string())
            }
            Backing::Anonymous | Backing::Memfd { .. } => Ok(()),
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts page-aligned with HEADER_LEN bytes of header that
        // stay mapped while self lives; Header is made of atomics only, so shared
        // access from several processes is not a data race.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// The number of bytes of contents (the header not counted).
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(10)?;
    /// assert_eq!(seg.len(), 10);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the contents are empty.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_shm::Segment::anonymous(1)?.is_empty());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A pointer to the first byte of the contents, aligned to what the segment holds.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(8)?;
    /// assert_eq!(seg.as_ptr() as usize % 8, 0);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: offset <= map_len (checked at creation and open), so the result
        // stays inside the mapping.
        unsafe { self.base.as_ptr().add(self.offset) }
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` with volatile reads: the way to
    /// read bytes a peer may be writing at the same time.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] when the range is outside the contents.
    ///
    /// # Examples
    /// ```
    /// let mut seg = multiproc_shm::Segment::anonymous(8)?;
    /// seg.write_volatile(2, b"hi")?;
    /// let mut buf = [0u8; 2];
    /// seg.read_volatile(2, &mut buf)?;
    /// assert_eq!(&buf, b"hi");
    /// assert!(seg.read_volatile(7, &mut buf).is_err());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn read_volatile(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: offset + buf.len() <= len (checked above): inside the mapping,
        // which lives as long as self; buf is private memory.
        unsafe { volatile::copy_out(self.as_ptr().add(offset), buf) };
        Ok(())
    }

    /// Copies `data` to `offset` with volatile writes.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] when the range is outside the contents.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(4)?;
    /// seg.write_volatile(1, &[9, 9])?;
    /// let mut all = [1u8; 4];
    /// seg.read_volatile(0, &mut all)?;
    /// assert_eq!(all, [0, 9, 9, 0]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn write_volatile(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len())?;
        // SAFETY: offset + data.len() <= len (checked above): inside the
        // writable mapping, which lives as long as self; data is private.
        unsafe { volatile::copy_in(data, self.as_ptr().add(offset)) };
        Ok(())
    }

    /// The contents as a slice.
    ///
    /// # Safety
    /// While the slice lives, no process (this one included, through another
    /// handle or a pointer) may write the contents: a lock, a message or the
    /// program's structure must ensure it. Reading bytes a peer writes at the
    /// same time through a slice is a data race, which is undefined behaviour;
    /// use [`read_volatile`](Segment::read_volatile) for those.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(4)?;
    /// seg.write_volatile(0, b"abcd")?;
    /// // SAFETY: nobody else has this anonymous segment.
    /// assert_eq!(unsafe { seg.as_slice() }, b"abcd");
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: len bytes inside the live mapping; u8 has no invalid values;
        // nobody writes them meanwhile (the caller's contract).
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The contents as a mutable slice.
    ///
    /// # Safety
    /// While the slice lives, no other process may read or write the contents
    /// (and none of this process's other handles on the segment).
    ///
    /// # Examples
    /// ```
    /// let mut seg = multiproc_shm::Segment::anonymous(4)?;
    /// // SAFETY: nobody else has this anonymous segment.
    /// unsafe { seg.as_mut_slice() }.copy_from_slice(b"wxyz");
    /// let mut buf = [0u8; 4];
    /// seg.read_volatile(0, &mut buf)?;
    /// assert_eq!(&buf, b"wxyz");
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; nobody else touches the bytes meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }

    fn check_range(&self, offset: usize, n: usize) -> Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::PastEnd {
                offset,
                bytes: n,
                len: self.len,
            }),
        }
    }

    /// What kind of memory this is.
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Kind, Segment};
    /// assert_eq!(Segment::anonymous(1)?.kind(), Kind::Anonymous);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn kind(&self) -> Kind {
        match self.backing {
            Backing::Anonymous => Kind::Anonymous,
            Backing::Named { .. } => Kind::Named,
            Backing::Memfd { .. } => Kind::Memfd,
            Backing::File { .. } => Kind::File,
        }
    }

    /// The name of a named segment (without the leading `/`).
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-name-{}", std::process::id());
    /// let seg = multiproc_shm::Segment::create(&format!("/{name}"), 1)?;
    /// assert_eq!(seg.name(), Some(name.as_str()));
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        match &self.backing {
            Backing::Named { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The path of a file-backed segment.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_shm::Segment::anonymous(1)?.path().is_none());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The descriptor of a memfd segment (or of one opened with [`from_fd`](Segment::from_fd)).
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_shm::Segment::anonymous(1)?.fd().is_none());
    /// assert!(multiproc_shm::Segment::memfd(1)?.fd().is_some());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::Memfd { fd } => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// Lets a program started with `exec` inherit the memfd descriptor (clears
    /// `FD_CLOEXEC`), or stops it. Children made by `fork` always inherit it.
    ///
    /// # Errors
    /// [`Error::Io`] if `fcntl` fails. Does nothing for segments without a descriptor.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::memfd(1)?;
    /// seg.set_fd_inheritable(true)?; // a program started with exec now inherits it
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn set_fd_inheritable(&self, inheritable: bool) -> Result<()> {
        match self.fd() {
            Some(fd) => sys::set_inheritable(fd, inheritable)
                .map_err(|e| Error::io("fcntl(F_SETFD)", "a memfd segment", e)),
            None => Ok(()),
        }
    }

    /// What the segment holds, as its header says.
    ///
    /// # Examples
    /// ```
    /// let v = multiproc_shm::Shared::anonymous(1u32)?;
    /// assert_eq!(v.segment().type_info().elem_size, 4);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn type_info(&self) -> &TypeInfo {
        &self.info
    }

    /// The process that created the segment.
    ///
    /// # Examples
    /// ```
    /// let seg = multiproc_shm::Segment::anonymous(1)?;
    /// assert_eq!(seg.creator().pid, std::process::id());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn creator(&self) -> ProcessIdentity {
        self.creator
    }

    /// Whether this handle will unlink its named segment when dropped.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-uod-{}", std::process::id());
    /// let seg = multiproc_shm::Segment::create(&name, 1)?;
    /// assert!(seg.unlink_on_drop());
    /// assert!(!multiproc_shm::Segment::open(&name)?.unlink_on_drop());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn unlink_on_drop(&self) -> bool {
        matches!(
            self.backing,
            Backing::Named {
                unlink_on_drop: true,
                ..
            }
        )
    }

    /// Chooses whether dropping this handle unlinks the named segment (the creator's
    /// handle does by default; opened ones do not). Keeping it also marks it
    /// persistent in the header, so [`remove_stale`](crate::remove_stale) leaves it.
    /// No effect on other kinds.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-keep-{}", std::process::id());
    /// let mut seg = multiproc_shm::Segment::create(&name, 1)?;
    /// seg.set_unlink_on_drop(false);
    /// drop(seg);
    /// let mut again = multiproc_shm::Segment::open(&name)?; // still there
    /// again.unlink()?;
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn set_unlink_on_drop(&mut self, unlink: bool) {
        let pid = sys::getpid();
        if let Backing::Named {
            name,
            unlink_on_drop,
            creator_pid,
            ..
        } = &mut self.backing
        {
            *unlink_on_drop = unlink;
            *creator_pid = pid;
            // The tracker removes what this process would have removed.
            if unlink {
                tracker::track(name);
            } else {
                tracker::untrack(name);
            }
            self.header().set_flag(FLAG_PERSISTENT, !unlink);
        }
    }

    /// Removes the segment's name now (a named segment) or its file (file-backed).
    /// Processes that have it mapped keep it until they drop it.
    ///
    /// # Errors
    /// [`Error::NotFound`] if someone else removed it first, [`Error::Io`] otherwise.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-unlink-{}", std::process::id());
    /// let mut seg = multiproc_shm::Segment::create(&name, 1)?;
    /// seg.unlink()?;
    /// assert!(multiproc_shm::Segment::open(&name).is_err());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn unlink(&mut self) -> Result<()> {
        let not_found = |name: String, e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { name, source: e },
            _ => Error::io("unlink", name, e),
        };
        match &mut self.backing {
            Backing::Named {
                name,
                cname,
                unlink_on_drop,
                ..
            } => {
                *unlink_on_drop = false;
                tracker::untrack(name);
                sys::shm_unlink(cname).map_err(|e| not_found(name.clone(), e))
            }
            Backing::File { path, .. } => {
                std::fs::remove_file(&*path).map_err(|e| not_found(path.display().to_string(), e))
            }
            Backing::Anonymous | Backing::Memfd { .. } => Ok(()),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        match &self.backing {
            Backing::File { .. } => {} // memmap2 unmaps.
            _ => {
                // SAFETY: base/map_len is the mapping made by sys::map_shared for this
                // segment, and &mut self means nothing borrows into it any more.
                unsafe { sys::unmap(self.base, self.map_len) };
            }
        }
        if let Backing::Named {
            name,
            cname,
            unlink_on_drop: true,
            creator_pid,
        } = &self.backing
        {
            if *creator_pid == sys::getpid() {
                // Someone may have unlinked it already; nothing to do about that here.
                let _ = sys::shm_unlink(cname);
                tracker::untrack(name);
            }
        }
    }
}

/// How [`Segment::open`] and [`Segment::open_file`] open: how long to wait for a
/// creator still initialising, and whom to trust.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use multiproc_shm::{OpenOptions, Segment};
/// let name = format!("doc-options-{}", std::process::id());
/// let _a = Segment::create(&name, 4)?;
/// let b = OpenOptions::new().init_timeout(Duration::from_millis(50)).open(&name)?;
/// assert_eq!(b.len(), 4);
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    init_timeout: Duration,
    any_user: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Wait [`DEFAULT_INIT_TIMEOUT`]; trust only this user's private segments.
    ///
    /// # Examples
    /// ```
    /// let o = multiproc_shm::OpenOptions::new();
    /// # let _ = o;
    /// ```
    pub fn new() -> OpenOptions {
        OpenOptions {
            init_timeout: DEFAULT_INIT_TIMEOUT,
            any_user: false,
        }
    }

    /// How long to wait for a creator that has not finished initialising.
    ///
    /// # Examples
    /// ```
    /// let o = multiproc_shm::OpenOptions::new().init_timeout(std::time::Duration::ZERO);
    /// # let _ = o;
    /// ```
    pub fn init_timeout(mut self, timeout: Duration) -> OpenOptions {
        self.init_timeout = timeout;
        self
    }

    /// Opens segments owned by other users, or open to group or others, too —
    /// for segments shared between users on purpose (made with
    /// [`Segment::set_mode`]). The segment must still be a regular file, and its
    /// header is still checked; what it holds is as trustworthy as those users.
    ///
    /// # Examples
    /// ```
    /// let o = multiproc_shm::OpenOptions::new().any_user(true);
    /// # let _ = o;
    /// ```
    pub fn any_user(mut self, yes: bool) -> OpenOptions {
        self.any_user = yes;
        self
    }

    /// Opens the named segment `name` (see [`Segment::open`]).
    ///
    /// # Errors
    /// As for [`Segment::open`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_shm::OpenOptions::new().open("no-such-segment-here").is_err());
    /// ```
    pub fn open(&self, name: &str) -> Result<Segment> {
        let (bare, cname) = name::validate(name)?;
        let what = format!("segment {bare:?}");
        let fd = sys::shm_open(&cname, true).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                name: bare.clone(),
                source: e,
            },
            _ => Error::io("shm_open", what.clone(), e),
        })?;
        check_trusted(fd.as_fd(), &what, self.any_user)?;
        let checked = map_checked(fd.as_fd(), &what, self.init_timeout)?;
        Ok(checked.into_segment(Backing::Named {
            name: bare,
            cname,
            unlink_on_drop: false,
            creator_pid: 0,
        }))
    }

    /// Opens the segment file at `path` (see [`Segment::open_file`]).
    ///
    /// # Errors
    /// As for [`Segment::open_file`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_shm::OpenOptions::new().open_file("/no/such/file").is_err());
    /// ```
    pub fn open_file(&self, path: impl AsRef<Path>) -> Result<Segment> {
        let path = path.as_ref();
        let what = format!("file {}", path.display());
        let file = OpenOptions::open_regular(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                name: path.display().to_string(),
                source: e,
            },
            _ => Error::io("open", what.clone(), e),
        })?;
        check_trusted(file.as_fd(), &what, self.any_user)?;
        // A timeout too large for the clock waits for ever.
        let deadline = Instant::now().checked_add(self.init_timeout);
        let file_len = wait_for_len(file.as_fd(), &what, deadline)?;
        // SAFETY: memmap2 requires that the file is not truncated while mapped; a
        // segment file is only ever grown by its creator before publishing. A
        // process that truncates it anyway breaks that promise, as for any mapping.
        let mut map = unsafe {
            memmap2::MmapOptions::new()
                .len(file_len as usize)
                .map_mut(&file)
        }
        .map_err(|e| Error::io("mmap", what.clone(), e))?;
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns NULL");
        let checked = check_mapping(base, map.len(), &what, deadline)?;
        Ok(checked.into_segment(Backing::File {
            _map: map,
            path: path.to_owned(),
        }))
    }

    /// Opens `path` for reading and writing without following a final symlink
    /// or blocking on a FIFO.
    fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    }
}

/// Refuses a file this user could not have made as a segment: not a regular
/// file, or (unless `any_user`) another user's, or open to group or others.
pub(crate) fn check_trusted(fd: BorrowedFd<'_>, what: &str, any_user: bool) -> Result<()> {
    let st = sys::fstat(fd).map_err(|e| Error::io("fstat", what.to_owned(), e))?;
    let problem = if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        Some(TrustProblem::NotRegularFile {
            file_type: st.st_mode & libc::S_IFMT,
        })
    } else if any_user {
        None
    } else if st.st_uid != sys::geteuid() {
        Some(TrustProblem::Owner {
            uid: st.st_uid,
            euid: sys::geteuid(),
        })
    } else if st.st_mode & 0o077 != 0 {
        Some(TrustProblem::Permissions {
            mode: st.st_mode & 0o7777,
        })
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::NotTrusted {
            what: what.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Reserves a new segment's `len` bytes on its filesystem (see
/// [`Error::NoRoom`]).
fn reserve(fd: BorrowedFd<'_>, len: usize, what: impl FnOnce() -> String) -> Result<()> {
    sys::reserve(fd, len as u64).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EFBIG) => Error::NoRoom {
            what: what(),
            len: len as u64,
            source: e,
        },
        _ => Error::io("fallocate", what(), e),
    })
}

fn create_named(name: &str, map_len: usize, pid: u32) -> Result<(NonNull<u8>, Backing)> {
    let (bare, cname) = name::validate(name)?;
    // Registered before it exists: a creator killed right after the create
    // leaves nothing the tracker does not know of.
    tracker::track(&bare);
    let fd = sys::shm_create(&cname).inspect_err(|_| tracker::untrack(&bare));
    let fd = fd.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
            name: bare.clone(),
            source: e,
        },
        _ => Error::io("shm_open", format!("segment {bare:?}"), e),
    })?;
    let mapped = sys::set_len(fd.as_fd(), map_len as u64)
        .map_err(|e| Error::io("ftruncate", format!("segment {bare:?}"), e))
        .and_then(|()| reserve(fd.as_fd(), map_len, || format!("segment {bare:?}")))
        .and_then(|()| {
            sys::map_shared(map_len, Some(fd.as_fd()))
                .map_err(|e| Error::io("mmap", format!("segment {bare:?}"), e))
        });
    match mapped {
        Ok(base) => Ok((
            base,
            Backing::Named {
                name: bare,
                cname,
                unlink_on_drop: true,
                creator_pid: pid,
            },
        )),
        Err(e) => {
            // Do not leave a half-made segment behind; the original error matters more.
            let _ = sys::shm_unlink(&cname);
            tracker::untrack(&bare);
            Err(e)
        }
    }
}

/// Names tried before [`Location::NewName`] gives up: each is one of 2^32,
/// so a clash with every one means something else is wrong (the tries'
/// last error says what).
const NEW_NAME_TRIES: u32 = 64;

fn create_new_name(map_len: usize, pid: u32) -> Result<(NonNull<u8>, Backing)> {
    create_new_name_from(map_len, pid, || format!("psm_{:08x}", sys::random_u32()))
}

/// [`create_new_name`] with the names drawn by `draw` (tests draw taken ones).
fn create_new_name_from(
    map_len: usize,
    pid: u32,
    mut draw: impl FnMut() -> String,
) -> Result<(NonNull<u8>, Backing)> {
    let mut tries = 0;
    loop {
        let name = draw();
        match create_named(&name, map_len, pid) {
            Err(Error::AlreadyExists { .. }) if tries + 1 < NEW_NAME_TRIES => tries += 1,
            made => return made,
        }
    }
}

fn create_file(path: &Path, map_len: usize) -> Result<(NonNull<u8>, Backing)> {
    let what = || format!("file {}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                name: path.display().to_string(),
                source: e,
            },
            _ => Error::io("open", what(), e),
        })?;
    let mapped = file
        .set_len(map_len as u64)
        .map_err(|e| Error::io("ftruncate", what(), e))
        .and_then(|()| reserve(file.as_fd(), map_len, what))
        .and_then(|()| {
            // SAFETY: the file was just created by us with O_EXCL and sized; see
            // open_file for the truncation caveat that memmap2 documents.
            unsafe { memmap2::MmapOptions::new().len(map_len).map_mut(&file) }
                .map_err(|e| Error::io("mmap", what(), e))
        });
    match mapped {
        Ok(mut map) => {
            let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns NULL");
            Ok((
                base,
                Backing::File {
                    _map: map,
                    path: path.to_owned(),
                },
            ))
        }
        Err(e) => {
            // Do not leave a half-made file behind; the original error matters more.
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// Waits (bounded) until the file behind `fd` has a size: its creator sizes it
/// right after creating it. A non-zero size below a header's is never a segment
/// being made, so it fails at once.
fn wait_for_len(fd: BorrowedFd<'_>, what: &str, deadline: Option<Instant>) -> Result<u64> {
    let mut pause = Duration::from_micros(50);
    loop {
        let len = sys::file_len(fd).map_err(|e| Error::io("fstat", what.to_owned(), e))?;
        if len >= HEADER_LEN as u64 {
            return Ok(len);
        }
        if len > 0 || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::TooSmall {
                what: what.to_owned(),
                needed: HEADER_LEN as u64,
                actual: len,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// A mapping whose header was found ready and consistent.
struct Checked {
    base: NonNull<u8>,
    map_len: usize,
    offset: usize,
    len: usize,
    snap: Snapshot,
}

impl Checked {
    fn into_segment(self, backing: Backing) -> Segment {
        Segment {
            base: self.base,
            map_len: self.map_len,
            offset: self.offset,
            len: self.len,
            creator: self.snap.creator(),
            info: self.snap.info,
            backing,
        }
    }
}

/// Maps the whole file behind `fd` and checks its header; unmaps again on error.
fn map_checked(fd: BorrowedFd<'_>, what: &str, timeout: Duration) -> Result<Checked> {
    // A timeout too large for the clock waits for ever.
    let deadline = Instant::now().checked_add(timeout);
    let file_len = wait_for_len(fd, what, deadline)?;
    let map_len = usize::try_from(file_len).map_err(|_| Error::InvalidSize {
        what: what.to_owned(),
        problem: SizeProblem::AboveAddressSpace { bytes: file_len },
    })?;
    let base =
        sys::map_shared(map_len, Some(fd)).map_err(|e| Error::io("mmap", what.to_owned(), e))?;
    check_mapping(base, map_len, what, deadline).inspect_err(|_| {
        // SAFETY: base/map_len was mapped just above and nothing refers into it.
        unsafe { sys::unmap(base, map_len) };
    })
}

/// Waits for the header of the `map_len`-byte mapping at `base` and checks it.
fn check_mapping(
    base: NonNull<u8>,
    map_len: usize,
    what: &str,
    deadline: Option<Instant>,
) -> Result<Checked> {
    let snap = wait_ready(base, what, deadline)?;
    let (offset, len) = snap.validate(what, map_len as u64)?;
    Ok(Checked {
        base,
        map_len,
        offset,
        len,
        snap,
    })
}

/// Polls the header at `base` until its creator publishes it, `deadline` passes,
/// or it turns out foreign, of another version, or orphaned by a dead creator.
fn wait_ready(base: NonNull<u8>, what: &str, deadline: Option<Instant>) -> Result<Snapshot> {
    // SAFETY: the caller mapped at least HEADER_LEN bytes at base (page-aligned), and
    // Header is atomics only.
    let header = unsafe { base.cast::<Header>().as_ref() };
    let start = Instant::now();
    let mut pause = Duration::from_micros(20);
    loop {
        let snap = Snapshot::load(header);
        if snap.magic != 0 && snap.magic != MAGIC {
            return Err(Error::NotMultiproc {
                what: what.to_owned(),
                found: snap.magic,
            });
        }
        if snap.magic == MAGIC && snap.version != header::FORMAT_VERSION {
            return Err(Error::VersionMismatch {
                what: what.to_owned(),
                found: snap.version,
                expected: header::FORMAT_VERSION,
            });
        }
        if snap.magic == MAGIC && snap.state == STATE_READY {
            return Ok(snap);
        }
        let creator_dead =
            snap.magic == MAGIC && snap.creator_pid != 0 && !snap.creator().is_alive();
        if creator_dead || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::NotReady {
                what: what.to_owned(),
                creator_pid: snap.creator_pid,
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_name_that_is_taken_is_drawn_again_and_not_for_ever() {
        // The segment stays (shadowed, not dropped) until the test's end:
        // its name stays taken.
        let taken = Segment::new_in(Location::NewName, 8).unwrap();
        let taken = taken.name().unwrap().to_owned();
        let free = format!("psm-test-free-{}", sys::getpid());
        let mut draws = vec![free.clone(), taken.clone(), taken.clone()];
        let (base, backing) =
            create_new_name_from(4096, sys::getpid(), || draws.pop().unwrap()).unwrap();
        let Backing::Named { name, cname, .. } = backing else {
            panic!("not a named segment");
        };
        assert_eq!(name, free);
        assert!(draws.is_empty(), "three names drawn");
        sys::shm_unlink(&cname).unwrap();
        tracker::untrack(&name);
        // SAFETY: the mapping of 4096 bytes made above, used by nothing else.
        unsafe { libc::munmap(base.as_ptr().cast(), 4096) };

        let mut drawn = 0;
        let r = create_new_name_from(4096, sys::getpid(), || {
            drawn += 1;
            taken.clone()
        });
        assert!(matches!(r, Err(Error::AlreadyExists { .. })));
        assert_eq!(drawn, NEW_NAME_TRIES);
    }
}
