//! The header at the start of every segment, and the checks `open` makes on it.
//!
//! # Layout (128 bytes, little-endian, `#[repr(C)]`)
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `magic` | `b"MPROCSHM"`; written first (Release), so an opener can tell "not yet written" (0) from "foreign" (anything else) |
//! | 8 | `version` | [`FORMAT_VERSION`], written before `magic` |
//! | 12 | `state` | [`STATE_CREATING`] → [`STATE_READY`]; stored last, with Release: the publication |
//! | 16 | `header_len` | 128 |
//! | 20 | `flags` | bit 0 [`FLAG_PERSISTENT`]: the creator will not unlink it (so it is not a leftover) |
//! | 24 | `payload_offset` | where the contents start: 128 rounded up to `elem_align` |
//! | 32 | `payload_len` | bytes of contents, `elem_size * count` |
//! | 40 | `elem_size` | `size_of::<T>()` |
//! | 48 | `elem_align` | `align_of::<T>()`, a power of two no larger than a page |
//! | 56 | `count` | number of `T` |
//! | 64 | `type_hash` | FNV-1a 64 of `type_name::<T>()`, size and align |
//! | 72 | `creator_pid` | the creating process |
//! | 76 | reserved | 0 |
//! | 80 | `creator_token` | its identity token ([`ProcessIdentity::token`](crate::ProcessIdentity)), so a recycled pid is not taken for it |
//! | 88 | `type_name` | the first 40 bytes of `type_name::<T>()`, for error messages |
//!
//! Every field is an atomic: the header lives in memory other processes write, so
//! it is read through atomic loads into a private [`Snapshot`], and only the
//! snapshot is checked.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::{Error, Result};

/// `b"MPROCSHM"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MPROCSHM");
/// The header format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The header's size in bytes.
pub const HEADER_LEN: usize = 128;
/// `state`: the creator is still writing the header or the contents.
pub const STATE_CREATING: u32 = 0;
/// `state`: header and contents are complete; openers may use them.
pub const STATE_READY: u32 = 1;
/// `flags` bit: the creator keeps the segment past its own life; not a leftover.
pub const FLAG_PERSISTENT: u32 = 1;

const TYPE_NAME_LEN: usize = 40;

/// The header as it lies in shared memory.
#[repr(C, align(64))]
pub(crate) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    state: AtomicU32,
    header_len: AtomicU32,
    flags: AtomicU32,
    payload_offset: AtomicU64,
    payload_len: AtomicU64,
    elem_size: AtomicU64,
    elem_align: AtomicU64,
    count: AtomicU64,
    type_hash: AtomicU64,
    creator_pid: AtomicU32,
    reserved: AtomicU32,
    creator_token: AtomicU64,
    type_name: [AtomicU8; TYPE_NAME_LEN],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(std::mem::align_of::<Header>() == 64);

/// What a segment holds: the type's fingerprint and how many of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// `size_of::<T>()`.
    pub elem_size: u64,
    /// `align_of::<T>()`.
    pub elem_align: u64,
    /// Number of elements.
    pub count: u64,
    /// FNV-1a 64 of the type name, size and align.
    pub type_hash: u64,
    /// The type's name (possibly truncated to 40 bytes when read from a header).
    pub type_name: String,
}

impl TypeInfo {
    /// The fingerprint of `count` values of `T`.
    ///
    /// # Examples
    /// ```
    /// let t = multiproc_shm::TypeInfo::of::<u64>(3);
    /// assert_eq!((t.elem_size, t.count), (8, 3));
    /// ```
    pub fn of<T>(count: u64) -> TypeInfo {
        let name = std::any::type_name::<T>();
        let size = std::mem::size_of::<T>() as u64;
        let align = std::mem::align_of::<T>() as u64;
        TypeInfo {
            elem_size: size,
            elem_align: align,
            count,
            type_hash: fingerprint(name, size, align),
            type_name: name.to_owned(),
        }
    }

    /// A fingerprint for a layout described by name: `count` elements of
    /// `elem_size` bytes aligned to `elem_align`, whose type is `type_name`. For
    /// structures that are not `T × n` (a queue: control block and slots), the
    /// name carries what an opener must agree on.
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::TypeInfo;
    /// let a = TypeInfo::custom("my-ring<u64>", 1, 128, 4096);
    /// let b = TypeInfo::custom("my-ring<u32>", 1, 128, 4096);
    /// assert!(!a.same_type(&b));
    /// ```
    pub fn custom(type_name: &str, elem_size: u64, elem_align: u64, count: u64) -> TypeInfo {
        TypeInfo {
            elem_size,
            elem_align,
            count,
            type_hash: fingerprint(type_name, elem_size, elem_align),
            type_name: type_name.to_owned(),
        }
    }

    /// Bytes of contents, or `None` on overflow.
    pub(crate) fn payload_len(&self) -> Option<u64> {
        self.elem_size.checked_mul(self.count)
    }

    /// Whether `self` (read from a header) is the same element type as `want`
    /// (size, alignment and name fingerprint; the count is not compared).
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::TypeInfo;
    /// assert!(TypeInfo::of::<u8>(1).same_type(&TypeInfo::of::<u8>(9)));
    /// assert!(!TypeInfo::of::<u8>(1).same_type(&TypeInfo::of::<i8>(1)));
    /// ```
    pub fn same_type(&self, want: &TypeInfo) -> bool {
        self.elem_size == want.elem_size
            && self.elem_align == want.elem_align
            && self.type_hash == want.type_hash
    }

    /// `"3 × u64 (size 8, align 8)"`.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_shm::TypeInfo::of::<u16>(2).describe(), "2 × u16 (size 2, align 2)");
    /// ```
    pub fn describe(&self) -> String {
        format!(
            "{} × {} (size {}, align {})",
            self.count, self.type_name, self.elem_size, self.elem_align
        )
    }
}

/// FNV-1a 64 over the type name, then size and align.
fn fingerprint(name: &str, size: u64, align: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name
        .bytes()
        .chain(size.to_le_bytes())
        .chain(align.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Where the contents start for a type of this alignment.
pub(crate) fn payload_offset(align: u64) -> u64 {
    (HEADER_LEN as u64).next_multiple_of(align.max(1))
}

/// A private copy of a header's fields, taken with atomic loads (or from bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// First eight bytes.
    pub magic: u64,
    /// Header format version.
    pub version: u32,
    /// Init state.
    pub state: u32,
    /// Header length field.
    pub header_len: u32,
    /// Flags.
    pub flags: u32,
    /// Offset of the contents.
    pub payload_offset: u64,
    /// Length of the contents.
    pub payload_len: u64,
    /// What the contents are.
    pub info: TypeInfo,
    /// The creator's pid.
    pub creator_pid: u32,
    /// The creator's identity token.
    pub creator_token: u64,
}

impl Header {
    /// Writes every field of a fresh header except `state`, which stays CREATING.
    pub(crate) fn init(&self, info: &TypeInfo, creator: crate::ProcessIdentity, flags: u32) {
        let off = payload_offset(info.elem_align);
        self.version.store(FORMAT_VERSION, Ordering::Relaxed);
        self.header_len.store(HEADER_LEN as u32, Ordering::Relaxed);
        self.flags.store(flags, Ordering::Relaxed);
        self.payload_offset.store(off, Ordering::Relaxed);
        self.payload_len
            .store(info.payload_len().unwrap_or(0), Ordering::Relaxed);
        self.elem_size.store(info.elem_size, Ordering::Relaxed);
        self.elem_align.store(info.elem_align, Ordering::Relaxed);
        self.count.store(info.count, Ordering::Relaxed);
        self.type_hash.store(info.type_hash, Ordering::Relaxed);
        self.creator_pid.store(creator.pid, Ordering::Relaxed);
        self.creator_token.store(creator.token, Ordering::Relaxed);
        for (slot, b) in self
            .type_name
            .iter()
            .zip(info.type_name.bytes().chain(std::iter::repeat(0)))
        {
            slot.store(b, Ordering::Relaxed);
        }
        // SYNC: pairs with the Acquire load of `magic` in `Snapshot::load`: an opener
        // that sees the magic also sees the version written above.
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// Marks the segment ready: the last store of its creator.
    pub(crate) fn publish(&self) {
        // SYNC: pairs with the Acquire load of `state` in `Snapshot::load`: an opener
        // that sees READY sees every header field and the initial contents.
        self.state.store(STATE_READY, Ordering::Release);
    }

    pub(crate) fn set_flag(&self, flag: u32, on: bool) {
        if on {
            self.flags.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!flag, Ordering::Relaxed);
        }
    }
}

impl Snapshot {
    /// Copies the header's fields into private memory.
    pub(crate) fn load(h: &Header) -> Snapshot {
        let magic = h.magic.load(Ordering::Acquire);
        let state = h.state.load(Ordering::Acquire);
        let mut name = [0u8; TYPE_NAME_LEN];
        for (b, slot) in name.iter_mut().zip(&h.type_name) {
            *b = slot.load(Ordering::Relaxed);
        }
        Snapshot::assemble(
            magic,
            h.version.load(Ordering::Relaxed),
            state,
            [
                h.header_len.load(Ordering::Relaxed),
                h.flags.load(Ordering::Relaxed),
                h.creator_pid.load(Ordering::Relaxed),
            ],
            [
                h.payload_offset.load(Ordering::Relaxed),
                h.payload_len.load(Ordering::Relaxed),
                h.elem_size.load(Ordering::Relaxed),
                h.elem_align.load(Ordering::Relaxed),
                h.count.load(Ordering::Relaxed),
                h.type_hash.load(Ordering::Relaxed),
                h.creator_token.load(Ordering::Relaxed),
            ],
            &name,
        )
    }

    /// Parses a header from bytes read from a file (no mapping needed).
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_shm::header::Snapshot::from_bytes(&[0u8; 128]);
    /// assert_eq!(s.magic, 0);
    /// ```
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Snapshot {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let name: &[u8; TYPE_NAME_LEN] = b[88..88 + TYPE_NAME_LEN].try_into().expect("name");
        Snapshot::assemble(
            u64_at(0),
            u32_at(8),
            u32_at(12),
            [u32_at(16), u32_at(20), u32_at(72)],
            [
                u64_at(24),
                u64_at(32),
                u64_at(40),
                u64_at(48),
                u64_at(56),
                u64_at(64),
                u64_at(80),
            ],
            name,
        )
    }

    fn assemble(
        magic: u64,
        version: u32,
        state: u32,
        [header_len, flags, creator_pid]: [u32; 3],
        [payload_offset, payload_len, elem_size, elem_align, count, type_hash, creator_token]: [u64; 7],
        name: &[u8; TYPE_NAME_LEN],
    ) -> Snapshot {
        let end = name.iter().position(|&b| b == 0).unwrap_or(TYPE_NAME_LEN);
        Snapshot {
            magic,
            version,
            state,
            header_len,
            flags,
            payload_offset,
            payload_len,
            info: TypeInfo {
                elem_size,
                elem_align,
                count,
                type_hash,
                type_name: String::from_utf8_lossy(&name[..end]).into_owned(),
            },
            creator_pid,
            creator_token,
        }
    }

    /// The creator as recorded.
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_shm::header::Snapshot::from_bytes(&[0u8; 128]);
    /// assert_eq!(s.creator().pid, 0);
    /// ```
    pub fn creator(&self) -> crate::ProcessIdentity {
        crate::ProcessIdentity {
            pid: self.creator_pid,
            token: self.creator_token,
        }
    }

    /// Checks a READY header's fields against each other and the file size.
    ///
    /// Returns the payload's offset and length, both within `file_len`.
    ///
    /// # Examples
    /// ```
    /// let s = multiproc_shm::header::Snapshot::from_bytes(&[0u8; 128]);
    /// assert!(matches!(s.validate("zeroes", 128), Err(multiproc_shm::Error::NotMultiproc { .. })));
    /// ```
    pub fn validate(&self, what: &str, file_len: u64) -> Result<(usize, usize)> {
        let corrupted = |reason: String| Error::Corrupted {
            what: what.to_owned(),
            reason,
        };
        if self.magic != MAGIC {
            return Err(Error::NotMultiproc {
                what: what.to_owned(),
                found: self.magic,
            });
        }
        if self.version != FORMAT_VERSION {
            return Err(Error::VersionMismatch {
                what: what.to_owned(),
                found: self.version,
                expected: FORMAT_VERSION,
            });
        }
        if self.header_len as usize != HEADER_LEN {
            return Err(corrupted(format!(
                "header length {} is not {HEADER_LEN}",
                self.header_len
            )));
        }
        let align = self.info.elem_align;
        if !align.is_power_of_two() || align > crate::sys::page_size() as u64 {
            return Err(corrupted(format!(
                "element alignment {align} is not a power of two up to a page"
            )));
        }
        if !self.info.elem_size.is_multiple_of(align) {
            return Err(corrupted(format!(
                "element size {} is not a multiple of its alignment {align}",
                self.info.elem_size
            )));
        }
        if self.payload_offset != payload_offset(align) {
            return Err(corrupted(format!(
                "contents offset {} is not {}",
                self.payload_offset,
                payload_offset(align)
            )));
        }
        if self.info.payload_len() != Some(self.payload_len) {
            return Err(corrupted(format!(
                "contents length {} is not {} × {}",
                self.payload_len, self.info.count, self.info.elem_size
            )));
        }
        let needed = self
            .payload_offset
            .checked_add(self.payload_len)
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| corrupted("contents end beyond the address space".into()))?;
        if needed > file_len {
            return Err(Error::TooSmall {
                what: what.to_owned(),
                needed,
                actual: file_len,
            });
        }
        Ok((self.payload_offset as usize, self.payload_len as usize))
    }
}

/// Checks `bytes` as the start of a segment file of `bytes.len()` bytes, as `open`
/// would after the creator finished: the entry point for fuzzing the header parser.
///
/// # Errors
/// Every error `open` gives for a bad header: [`Error::TooSmall`],
/// [`Error::NotMultiproc`], [`Error::VersionMismatch`], [`Error::Corrupted`], and
/// [`Error::NotReady`] when the state is not READY.
///
/// # Examples
/// ```
/// let err = multiproc_shm::check_header_bytes(b"certainly not a segment").unwrap_err();
/// assert!(matches!(err, multiproc_shm::Error::TooSmall { .. }));
/// ```
pub fn check_header_bytes(bytes: &[u8]) -> Result<Snapshot> {
    let Some(head) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(Error::TooSmall {
            what: "the bytes".into(),
            needed: HEADER_LEN as u64,
            actual: bytes.len() as u64,
        });
    };
    let snap = Snapshot::from_bytes(head);
    if snap.magic == MAGIC && snap.version == FORMAT_VERSION && snap.state != STATE_READY {
        return Err(Error::NotReady {
            what: "the bytes".into(),
            creator_pid: snap.creator_pid,
            waited: std::time::Duration::ZERO,
        });
    }
    snap.validate("the bytes", bytes.len() as u64)?;
    Ok(snap)
}
