//! [`ShareableList`]: Python's `shared_memory.ShareableList`, a list of a
//! fixed length whose items — integers, floats, booleans, `None`, strings and
//! bytes — several processes read and write in place.
//!
//! # Layout (64-bit words, each an atomic)
//!
//! | words | what | written |
//! |---|---|---|
//! | `0` | `n`, the number of items | by the creator, before the segment is published |
//! | `1 ..= n` | each item's room: `offset << 32 \| words`, offsets from the data's start | by the creator |
//! | `n + 1 + 2i` | item `i`'s turn word: `wanted << 63 \| count` | by each turn |
//! | `n + 2 + 2i` | item `i`'s kind word: `kind << 56 \| len` | by each write |
//! | `3n + 1 ..` | the items' bytes, each in its room | by each write |
//!
//! An opener checks the room table (every item has room, the rooms follow
//! one another and end inside the segment) and keeps a private copy of it:
//! a peer that rewrites it later changes nothing here. Nothing else read
//! from the segment is trusted either: a kind, a length past the room or a
//! string that is not UTF-8 is [`Error::CorruptedItem`], never a panic.
//!
//! # An item's turn word: a sequence lock
//!
//! | `count` | meaning |
//! |---|---|
//! | even | the item is whole: its kind word describes its bytes |
//! | odd | a turn is held: a writer may be between its first and last store |
//!
//! A writer moves the count from even to odd by compare-and-swap (so
//! writers of one item take turns), stores the kind word and the bytes,
//! then the count one higher. A reader loads the turn word, copies the
//! kind word and the bytes, and loads the turn word again: the copy stands
//! when both loads are the same even word; otherwise it reads again. The
//! count has 63 bits: no run of writes during one copy brings it back to
//! where the copy began (a count of 23 bits, kept beside the kind in one
//! word, would come back after four million writes — a minute's fraction
//! of a writer in a loop, while a reader is descheduled). A reader that finds a write under
//! way, or is overtaken by writes [`OPTIMISTIC_READS`] times in a row (a
//! small item rewritten in a loop can change within every copy), takes a
//! turn as a writer does, copies, and gives the turn back with the count
//! two higher: the next writer waits for it.
//!
//! Turns are handed over: one who waits for a turn marks the held turn
//! word [`WANTED`], and one who finds a free one so marked without having
//! waited for it leaves it to the waiter (a writer in a loop would
//! otherwise take every turn again before a waiter, on the same CPU, ran).
//!
//! A writer killed between its first and last store leaves the count odd: its
//! item's readers and writers wait for it up to a grace
//! ([`ShareableList::writer_grace`]: one second, and longer for a long
//! item, whose writing takes longer),
//! then a reader answers [`Error::ItemUnfinished`] and a writer takes the
//! item over (its write makes the item whole again). The `_timeout` forms
//! set the wait instead. (A reader killed during its turn leaves the item
//! whole but its count odd: the same, until the next write. A writer
//! stopped longer than the grace, not killed, and then resumed, may mix
//! its bytes with the next writer's.) The grace counts from the last change
//! of the turn word: turns that keep passing are live holders, never taken
//! over; a waiter that sees them pass for four times its wait gives up
//! with [`Error::ItemBusy`].
//!
//! # Memory order
//!
//! | Release | pairs with the Acquire of | carries |
//! |---|---|---|
//! | the writer's fence after it took its turn | the reader's fence after its copy | a copy that saw a new word sees the odd count at its second load |
//! | the end of a writer's turn | the reader's first load of the turn word | the kind word and the bytes of that write |
//! | the end of a turn (a writer's or a reader's) | the compare-and-swap that takes the next turn | that turn's stores or copy come before the next turn's stores |
//!
//! The protocol is written once, over [`Atom`] and [`Pause`], for the list's
//! words and for the loom models at the end of this file, which find a half
//! write read whole when any of the orders above is weakened.
//!
//! What a user sees of it, and what differs from Python, is in
//! [`ShareableList`]'s docs.

use std::fmt;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Location, Result, Segment, SharedSlice};

crate::shm_struct! {
    /// One word of a [`ShareableList`]'s segment (a type of its own, so that
    /// the header's fingerprint tells a list from a slice of `AtomicU64`).
    pub(crate) sync struct Word {
        pub(crate) w: AtomicU64,
    }
}

/// Bytes in a word.
const WORD: usize = 8;

/// `kind` values (0, a zeroed word, is none: corruption).
const KIND_NONE: u64 = 1;
const KIND_BOOL: u64 = 2;
const KIND_INT: u64 = 3;
const KIND_FLOAT: u64 = 4;
const KIND_STR: u64 = 5;
const KIND_BYTES: u64 = 6;

const KIND_SHIFT: u32 = 56;
const LEN_MASK: u64 = 0xffff_ffff;
/// A turn word's mark: one who waits for the next turn is there (see
/// [`take_turn`]); whoever takes the next turn clears it.
const WANTED: u64 = 1 << 63;
/// A turn word's count of turns begun and ended (odd: one is held).
const COUNT: u64 = !WANTED;

/// The longest string or bytes item, in bytes (its length is 32 bits of
/// the item's kind word).
pub const MAX_ITEM_BYTES: usize = u32::MAX as usize;

/// An item's kind word.
fn kind_word(kind: u64, len: u64) -> u64 {
    (kind << KIND_SHIFT) | (len & LEN_MASK)
}

/// Whether a turn holds the item (its turn word's count is odd).
fn held(turn: u64) -> bool {
    turn & 1 == 1
}

/// The count after `turn`'s (the mark cleared).
fn next_count(turn: u64) -> u64 {
    ((turn & COUNT) + 1) & COUNT
}

/// One item of a [`ShareableList`]: the types Python's `ShareableList`
/// holds.
///
/// Comparison follows Python's `==`, which [`ShareableList::count`] and
/// [`ShareableList::index`] use: `Int(1)`, `Float(1.0)` and `Bool(true)`
/// are equal, a `Str` never equals `Bytes`, and `Float(NAN)` equals nothing.
///
/// # Examples
/// ```
/// use multiproc_shm::Item;
/// assert_eq!(Item::from(1), Item::from(true));
/// assert_eq!(Item::from(2.0), Item::from(2i64));
/// assert_ne!(Item::from("ab"), Item::from(&b"ab"[..]));
/// assert_ne!(Item::from(f64::NAN), Item::from(f64::NAN));
/// ```
#[derive(Debug, Clone)]
pub enum Item {
    /// Python's `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` (Python's `ShareableList` holds 64-bit ones too).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
}

impl Item {
    /// Its number, for Python's numeric equality (`True == 1 == 1.0`).
    fn number(&self) -> Option<Number> {
        match *self {
            Item::Bool(b) => Some(Number::Int(i64::from(b))),
            Item::Int(i) => Some(Number::Int(i)),
            Item::Float(f) => Some(Number::Float(f)),
            _ => None,
        }
    }

    /// Its kind and its bytes in the list (a scalar's word inline: a
    /// write of one allocates nothing).
    fn encoded(&self) -> (u64, Encoded<'_>) {
        match self {
            Item::None => (KIND_NONE, Encoded::Word([0; WORD])),
            Item::Bool(b) => (KIND_BOOL, Encoded::Word(u64::from(*b).to_le_bytes())),
            Item::Int(i) => (KIND_INT, Encoded::Word(i.to_le_bytes())),
            Item::Float(f) => (KIND_FLOAT, Encoded::Word(f.to_le_bytes())),
            Item::Str(s) => (KIND_STR, Encoded::Bytes(s.as_bytes())),
            Item::Bytes(b) => (KIND_BYTES, Encoded::Bytes(b)),
        }
    }

    /// The room Python gives it when the list is made, in words: a word for
    /// a scalar, and for a string or bytes of `len` bytes `len / 8 + 1`
    /// words (Python's `8 * (len // 8 + 1)` bytes).
    fn room_words(&self) -> usize {
        match self {
            Item::Str(s) => s.len() / WORD + 1,
            Item::Bytes(b) => b.len() / WORD + 1,
            _ => 1,
        }
    }
}

/// An item's bytes as [`Item::encoded`] gives them.
enum Encoded<'a> {
    Word([u8; WORD]),
    Bytes(&'a [u8]),
}

impl std::ops::Deref for Encoded<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Encoded::Word(w) => w,
            Encoded::Bytes(b) => b,
        }
    }
}

#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        // Exact, as Python compares an int with a float: 2**53 + 1 is not
        // the float 2**53.
        fn int_eq_float(i: i64, f: f64) -> bool {
            // i64::MAX as f64 is 2^63, which no i64 equals.
            f.fract() == 0.0 && (-(2f64.powi(63))..2f64.powi(63)).contains(&f) && f as i64 == i
        }
        match (*self, *other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (Number::Float(a), Number::Float(b)) => a == b,
            (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
                int_eq_float(i, f)
            }
        }
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        match (self, other) {
            (Item::None, Item::None) => true,
            (Item::Str(a), Item::Str(b)) => a == b,
            (Item::Bytes(a), Item::Bytes(b)) => a == b,
            _ => match (self.number(), other.number()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

macro_rules! item_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => { $(
        impl From<$t> for Item {
            fn from($v: $t) -> Item {
                $e
            }
        }
    )* };
}

item_from! {
    () => |_v| Item::None,
    bool => |v| Item::Bool(v),
    i64 => |v| Item::Int(v),
    i32 => |v| Item::Int(i64::from(v)),
    u32 => |v| Item::Int(i64::from(v)),
    f64 => |v| Item::Float(v),
    f32 => |v| Item::Float(f64::from(v)),
    String => |v| Item::Str(v),
    &str => |v| Item::Str(v.to_owned()),
    Vec<u8> => |v| Item::Bytes(v),
    &[u8] => |v| Item::Bytes(v.to_vec()),
}

impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Item {
        v.map_or(Item::None, Into::into)
    }
}

/// An item's room: where its bytes start (in words, from the data's start)
/// and how many words it has.
#[derive(Clone, Copy)]
struct Room {
    offset: usize,
    words: usize,
}

/// Python's `multiprocessing.shared_memory.ShareableList`: a list of a fixed
/// length in shared memory, whose items (see [`Item`]) every process that
/// maps it reads and writes in place.
///
/// Each item has the room Python gives it when the list is made: a word (8
/// bytes) for a number, a boolean or `None`, and for a string or bytes of
/// `len` bytes, `8 * (len / 8 + 1)` bytes. A later item of any kind may
/// replace it if it fits ([`Error::ItemTooLong`] if not, Python's
/// `ValueError: bytes/str item exceeds available storage`). The list cannot
/// grow or shrink, as in Python.
///
/// # Several processes at once
/// Writers of one item take turns, and a reader never sees half a write:
/// each item has a sequence lock of its own (a reader copies, then checks
/// that no write began meanwhile; one overtaken by writes a few times in a
/// row takes a turn as writers do). Several items changed together still
/// need a lock around them, as in Python.
///
/// A writer killed mid-write leaves its item half written: its readers and
/// writers wait for it for the item's
/// [`writer_grace`](ShareableList::writer_grace) (a second, more for a long
/// item), then a read answers [`Error::ItemUnfinished`] and a write takes
/// the item over and makes it whole again. The `_timeout` forms choose the
/// wait. Turns are handed to the one who waits, so a writer in a loop
/// does not starve a reader; a call that saw turns pass to others for four
/// times its wait gives up with [`Error::ItemBusy`], having written
/// nothing (a live holder is never taken over).
///
/// Bytes a peer wrote over the list are checked, never trusted: an item's
/// kind, its length against its room, a string's UTF-8
/// ([`Error::CorruptedItem`]), and the table of rooms at open
/// ([`Error::Corrupted`]).
///
/// # What differs from Python
/// - Python reads a string with its trailing NUL characters stripped (its
///   slots are padded with them); here each item keeps its length, so
///   `"a\0"` reads back as written.
/// - Python's items race when two processes write one at once; here they
///   take turns, and a reader never sees half of one write.
/// - Indices are `usize`: Python's `sl[-1]` is `sl.get(sl.len() - 1)`;
///   `index` answers `None` where Python raises `ValueError`.
/// - No `format` attribute (Python's `struct` format of the items): the
///   kinds are [`Item`]'s variants.
///
/// # Examples
/// ```
/// use multiproc_shm::{Item, ShareableList};
/// let name = format!("doc-list-{}", std::process::id());
/// // Python: sl = ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42], name=name)
/// let sl = ShareableList::create(
///     &name,
///     [Item::from("howdy"), Item::from(&b"HoWdY"[..]), Item::from(-273.154),
///      Item::from(100), Item::None, Item::from(true), Item::from(42)],
/// )?;
/// // Another process: ShareableList(name=name)
/// let other = ShareableList::open(&name)?;
/// other.set(2, "a string")?; // any item that fits its room
/// assert_eq!(sl.get(2)?, Item::from("a string"));
/// assert_eq!(sl.count(100)?, 1);
/// assert_eq!(sl.index(true)?, Some(5));
/// assert!(sl.set(0, "more than 8 bytes").is_err()); // "howdy" has 8
/// # Ok::<(), multiproc_shm::Error>(())
/// ```
pub struct ShareableList {
    words: SharedSlice<Word>,
    /// The private copy of the room table, checked at open.
    rooms: Vec<Room>,
}

impl ShareableList {
    /// A new list of `items` in a named segment (`/dev/shm/<name>`), which
    /// other processes open with [`ShareableList::open`]: Python's
    /// `ShareableList(items, name=name)`.
    ///
    /// # Errors
    /// As for [`Segment::create`]; [`Error::ItemTooLong`] for a string or
    /// bytes item longer than [`MAX_ITEM_BYTES`]. An empty list is a list,
    /// as in Python.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-list-create-{}", std::process::id());
    /// let sl = multiproc_shm::ShareableList::create(&name, [1, 2, 3])?;
    /// assert_eq!(sl.len(), 3);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn create<I>(name: &str, items: impl IntoIterator<Item = I>) -> Result<ShareableList>
    where
        I: Into<Item>,
    {
        ShareableList::new_in(Location::Named(name), items)
    }

    /// A new list of `items` in anonymous shared memory, seen by the
    /// children this process forks after it.
    ///
    /// # Errors
    /// As for [`ShareableList::create`].
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous(["a", "b"])?;
    /// assert_eq!(sl.to_vec()?, ["a".into(), "b".into()]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn anonymous<I>(items: impl IntoIterator<Item = I>) -> Result<ShareableList>
    where
        I: Into<Item>,
    {
        ShareableList::new_in(Location::Anonymous, items)
    }

    /// A new list of `items` at `location`. Python's `ShareableList(items)`,
    /// which picks a name, is [`Location::NewName`].
    ///
    /// # Errors
    /// As for [`ShareableList::create`], and [`Segment::new_in`].
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Item, Location, ShareableList};
    /// let sl = ShareableList::new_in(Location::Memfd, [Item::None, Item::from(1.5)])?;
    /// assert_eq!(sl.get(1)?, Item::from(1.5));
    /// let named = ShareableList::new_in(Location::NewName, ["a"])?;
    /// let name = named.segment().name().unwrap(); // psm_ and eight hex digits
    /// assert_eq!(ShareableList::open(name)?.get(0)?, Item::from("a"));
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn new_in<I>(
        location: Location<'_>,
        items: impl IntoIterator<Item = I>,
    ) -> Result<ShareableList>
    where
        I: Into<Item>,
    {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        let n = items.len();
        let mut rooms = Vec::with_capacity(n);
        let mut data_words = 0usize;
        for (index, item) in items.iter().enumerate() {
            let (_, bytes) = item.encoded();
            if bytes.len() > MAX_ITEM_BYTES {
                return Err(Error::ItemTooLong {
                    index,
                    len: bytes.len(),
                    room: MAX_ITEM_BYTES,
                });
            }
            let words = item.room_words();
            rooms.push(Room {
                offset: data_words,
                words,
            });
            data_words += words;
        }
        let too_large = || Error::InvalidSize {
            what: format!("a ShareableList of {n} items"),
            problem: crate::SizeProblem::Overflow,
        };
        if data_words > u32::MAX as usize {
            return Err(too_large());
        }
        let total = 1 + 3 * n + data_words;
        let words = SharedSlice::<Word>::new_in_with(location, total, |p| {
            let w = p.cast::<u64>();
            let put = |i: usize, v: u64| {
                debug_assert!(i < total);
                // SAFETY: create_typed passes memory valid and aligned for
                // `total` words that nothing else sees yet, and i < total.
                unsafe { w.add(i).write(v) }
            };
            put(0, n as u64);
            let data = 1 + 3 * n;
            for (i, (item, room)) in items.iter().zip(&rooms).enumerate() {
                put(1 + i, ((room.offset as u64) << 32) | room.words as u64);
                let (kind, bytes) = item.encoded();
                // The turn word starts at 0 (the memory is zeroed).
                put(2 + n + 2 * i, kind_word(kind, bytes.len() as u64));
                for (k, chunk) in bytes.chunks(WORD).enumerate() {
                    put(data + room.offset + k, word_of(chunk));
                }
            }
        })?;
        Ok(ShareableList { words, rooms })
    }

    /// Opens the list in the named segment `name`: Python's
    /// `ShareableList(name=name)`.
    ///
    /// # Errors
    /// As for [`Segment::open`]; [`Error::LayoutMismatch`] when the segment
    /// holds something else; [`Error::Corrupted`] when its room table is not
    /// one this crate makes.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-list-open-{}", std::process::id());
    /// let _sl = multiproc_shm::ShareableList::create(&name, ["x"])?;
    /// assert_eq!(multiproc_shm::ShareableList::open(&name)?.get(0)?, "x".into());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<ShareableList> {
        ShareableList::from_segment(Segment::open(name)?)
    }

    /// The list in `seg` (opened by name or path, or received as a memfd).
    ///
    /// # Errors
    /// As for [`ShareableList::open`].
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::{Segment, ShareableList};
    /// let name = format!("doc-list-seg-{}", std::process::id());
    /// let _sl = ShareableList::create(&name, [7])?;
    /// let seg = Segment::open(&name)?;
    /// assert_eq!(ShareableList::from_segment(seg)?.get(0)?, 7.into());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn from_segment(seg: Segment) -> Result<ShareableList> {
        let words = SharedSlice::<Word>::from_segment(seg)?;
        let rooms = check_rooms(&words)?;
        Ok(ShareableList { words, rooms })
    }

    /// The number of items (Python's `len(sl)`).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_shm::ShareableList::anonymous([1, 2])?.len(), 2);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether it has no items.
    ///
    /// # Examples
    /// ```
    /// assert!(!multiproc_shm::ShareableList::anonymous([1])?.is_empty());
    /// assert!(multiproc_shm::ShareableList::anonymous(Vec::<i64>::new())?.is_empty());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// The bytes item `index` has room for: the longest string or bytes
    /// that [`set`](ShareableList::set) puts there.
    ///
    /// # Errors
    /// [`Error::ListIndex`] past the end.
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous([multiproc_shm::Item::from("12345678"), 0.into()])?;
    /// assert_eq!(sl.room(0)?, 16); // Python's 8 * (8 // 8 + 1)
    /// assert_eq!(sl.room(1)?, 8);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn room(&self, index: usize) -> Result<usize> {
        Ok(self.room_of(index)?.words * WORD)
    }

    /// A copy of item `index` (Python's `sl[index]`), waiting for a writer
    /// of it that is between its first and last store for up to
    /// [`writer_grace`](ShareableList::writer_grace).
    ///
    /// # Errors
    /// [`Error::ListIndex`] past the end; [`Error::ItemUnfinished`] when a
    /// writer of it did not finish in time (killed mid-write);
    /// [`Error::ItemBusy`] when others kept taking turns at it for four
    /// times the wait; and [`Error::CorruptedItem`] when its kind word or bytes
    /// are none this crate writes (a peer wrote over them).
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous([3])?;
    /// assert_eq!(sl.get(0)?, 3.into());
    /// assert!(sl.get(1).is_err());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Item> {
        let room = self.room_of(index)?;
        self.read(index, room, grace_for(room), Vec::with_capacity)
    }

    /// [`get`](ShareableList::get), waiting at most `timeout` for a writer.
    ///
    /// # Errors
    /// As for [`get`](ShareableList::get).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let sl = multiproc_shm::ShareableList::anonymous([3])?;
    /// assert_eq!(sl.get_timeout(0, Duration::ZERO)?, 3.into());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn get_timeout(&self, index: usize, timeout: Duration) -> Result<Item> {
        let room = self.room_of(index)?;
        self.read(index, room, timeout, Vec::with_capacity)
    }

    /// [`get`](ShareableList::get) into `out`, reusing the buffer it holds:
    /// a string or bytes read into an [`Item::Str`] or [`Item::Bytes`] with
    /// room enough allocates nothing (as `BufRead::read_line` reads into a
    /// `String`). A loop of reads of a 32-byte string took about half the
    /// time of `get`'s, which allocates and frees a buffer each call
    /// (`benches/NOTES.md`). Python has no such read; its
    /// `sl[i]` makes a new `str` each time, as `get` does.
    ///
    /// # Errors
    /// As for [`get`](ShareableList::get); `out` then holds
    /// [`Item::None`] or what it held before.
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::Item;
    /// let sl = multiproc_shm::ShareableList::anonymous(["one", "two"])?;
    /// let (mut item, mut letters) = (Item::None, 0);
    /// for i in 0..sl.len() {
    ///     sl.get_into(i, &mut item)?;
    ///     if let Item::Str(text) = &item {
    ///         letters += text.len();
    ///     }
    /// }
    /// assert_eq!(letters, 6);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn get_into(&self, index: usize, out: &mut Item) -> Result<()> {
        let room = self.room_of(index)?;
        *out = self.read(index, room, grace_for(room), |_| buffer_of(out))?;
        Ok(())
    }

    /// [`get_into`](ShareableList::get_into), waiting at most `timeout` for
    /// a writer.
    ///
    /// # Errors
    /// As for [`get_into`](ShareableList::get_into).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use multiproc_shm::Item;
    /// let sl = multiproc_shm::ShareableList::anonymous([b"bytes".as_slice()])?;
    /// let mut item = Item::Bytes(Vec::with_capacity(64));
    /// sl.get_into_timeout(0, &mut item, Duration::ZERO)?;
    /// assert_eq!(item, b"bytes".as_slice().into());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn get_into_timeout(&self, index: usize, out: &mut Item, timeout: Duration) -> Result<()> {
        let room = self.room_of(index)?;
        *out = self.read(index, room, timeout, |_| buffer_of(out))?;
        Ok(())
    }

    /// Replaces item `index` by `value` (Python's `sl[index] = value`),
    /// waiting for another writer of it to finish for up to
    /// [`writer_grace`](ShareableList::writer_grace), then taking the item
    /// over.
    ///
    /// # Errors
    /// [`Error::ListIndex`] past the end; [`Error::ItemTooLong`] when
    /// `value` does not fit the item's [`room`](ShareableList::room);
    /// [`Error::ItemBusy`] when others kept taking turns at it for four
    /// times the wait (nothing is written either way).
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous([0])?;
    /// sl.set(0, "8 bytes!")?;
    /// assert_eq!(sl.get(0)?, "8 bytes!".into());
    /// assert!(sl.set(0, "nine byte").is_err());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn set(&self, index: usize, value: impl Into<Item>) -> Result<()> {
        let room = self.room_of(index)?;
        self.write(index, room, &value.into(), grace_for(room))
    }

    /// [`set`](ShareableList::set), waiting at most `timeout` for another
    /// writer of the item before taking it over.
    ///
    /// # Errors
    /// As for [`set`](ShareableList::set).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let sl = multiproc_shm::ShareableList::anonymous([0])?;
    /// sl.set_timeout(0, 1.5, Duration::from_millis(10))?;
    /// assert_eq!(sl.get(0)?, 1.5.into());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn set_timeout(
        &self,
        index: usize,
        value: impl Into<Item>,
        timeout: Duration,
    ) -> Result<()> {
        let room = self.room_of(index)?;
        self.write(index, room, &value.into(), timeout)
    }

    /// Every item, in order (Python's `list(sl)`).
    ///
    /// # Errors
    /// As for [`get`](ShareableList::get), for the first item that fails
    /// (so at most one item's [`writer_grace`](ShareableList::writer_grace)
    /// is waited out).
    ///
    /// # Examples
    /// ```
    /// use multiproc_shm::Item;
    /// let sl = multiproc_shm::ShareableList::anonymous([Item::None, Item::from(false)])?;
    /// assert_eq!(sl.to_vec()?, [Item::None, Item::Bool(false)]);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<Item>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// Whether item `i` equals `value`, read into `scratch` (whose buffer
    /// the next look reuses).
    fn equals(&self, i: usize, value: &Item, scratch: &mut Item) -> Result<bool> {
        self.get_into(i, scratch)?;
        Ok(scratch == value)
    }

    /// How many items equal `value`, by Python's `==` (see [`Item`]):
    /// Python's `sl.count(value)`.
    ///
    /// # Errors
    /// As for [`to_vec`](ShareableList::to_vec).
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous([1.0, 2.0, 1.0])?;
    /// assert_eq!(sl.count(1)?, 2);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn count(&self, value: impl Into<Item>) -> Result<usize> {
        let (value, mut scratch) = (value.into(), Item::None);
        let mut n = 0;
        for i in 0..self.len() {
            n += usize::from(self.equals(i, &value, &mut scratch)?);
        }
        Ok(n)
    }

    /// The first index whose item equals `value` (Python's `sl.index(value)`,
    /// which raises `ValueError` where this answers `None`).
    ///
    /// # Errors
    /// As for [`to_vec`](ShareableList::to_vec).
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous(["a", "b"])?;
    /// assert_eq!(sl.index("b")?, Some(1));
    /// assert_eq!(sl.index("c")?, None);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn index(&self, value: impl Into<Item>) -> Result<Option<usize>> {
        let (value, mut scratch) = (value.into(), Item::None);
        for i in 0..self.len() {
            if self.equals(i, &value, &mut scratch)? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The segment it lives in (Python's `sl.shm`): its name, its memfd;
    /// the creator of a named list unlinks it on drop.
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous([1])?;
    /// assert_eq!(sl.segment().kind(), multiproc_shm::Kind::Anonymous);
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.words.segment()
    }

    /// The segment, to change what happens to it on drop
    /// ([`Segment::set_unlink_on_drop`]) or to unlink it now.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-list-unlink-{}", std::process::id());
    /// let mut sl = multiproc_shm::ShareableList::create(&name, [1])?;
    /// sl.segment_mut().unlink()?;
    /// assert!(multiproc_shm::ShareableList::open(&name).is_err());
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn segment_mut(&mut self) -> &mut Segment {
        self.words.segment_mut()
    }

    /// How long item `index`'s readers and writers wait for a writer of it
    /// that is between its first and last store before they take it for
    /// dead: one second, and a second more for every 100 MB of the item's
    /// room (a write of a long item takes that long on a slow machine).
    ///
    /// # Errors
    /// [`Error::ListIndex`] past the end.
    ///
    /// # Examples
    /// ```
    /// let sl = multiproc_shm::ShareableList::anonymous([0])?;
    /// assert_eq!(sl.writer_grace(0)?, std::time::Duration::from_secs(1));
    /// # Ok::<(), multiproc_shm::Error>(())
    /// ```
    pub fn writer_grace(&self, index: usize) -> Result<Duration> {
        Ok(grace_for(self.room_of(index)?))
    }

    #[inline]
    fn room_of(&self, index: usize) -> Result<Room> {
        self.rooms.get(index).copied().ok_or(Error::ListIndex {
            index,
            len: self.rooms.len(),
        })
    }

    /// Item `index`'s turn word and kind word.
    #[inline]
    fn words_of(&self, index: usize) -> (&Word, &Word) {
        let at = 1 + self.rooms.len() + 2 * index;
        (&self.words[at], &self.words[at + 1])
    }

    #[inline]
    fn data(&self, room: Room) -> &[Word] {
        let start = 1 + 3 * self.rooms.len() + room.offset;
        // In bounds: `check_rooms` (or the creation) made every room end
        // inside the segment.
        &self.words[start..start + room.words]
    }

    fn what(&self) -> String {
        list_name(self.segment())
    }

    fn wait_error(&self, index: usize, waited: Duration, why: Gave) -> Error {
        let what = self.what();
        match why {
            Gave::Stuck => Error::ItemUnfinished {
                what,
                index,
                waited,
            },
            Gave::Busy => Error::ItemBusy {
                what,
                index,
                waited,
            },
        }
    }

    /// Reads item `index` (of `room`), a string or bytes into a buffer from
    /// `buf`.
    #[inline]
    fn read(
        &self,
        index: usize,
        room: Room,
        timeout: Duration,
        buf: impl FnMut(usize) -> Vec<u8>,
    ) -> Result<Item> {
        let (turn, kind) = self.words_of(index);
        match read_item(turn, kind, self.data(room), &mut Waiter::new(timeout), buf) {
            Ok(copy) => copy.map_err(|reason| Error::CorruptedItem {
                what: self.what(),
                index,
                reason,
            }),
            Err(why) => Err(self.wait_error(index, timeout, why)),
        }
    }

    #[inline]
    fn write(&self, index: usize, room: Room, value: &Item, timeout: Duration) -> Result<()> {
        let (kind, bytes) = value.encoded();
        if bytes.len() > room.words * WORD {
            return Err(Error::ItemTooLong {
                index,
                len: bytes.len(),
                room: room.words * WORD,
            });
        }
        let (turn, kind_at) = self.words_of(index);
        write_item(
            turn,
            kind_at,
            self.data(room),
            kind,
            &bytes,
            &mut Waiter::new(timeout),
        )
        .map_err(|why| self.wait_error(index, timeout, why))
    }
}

/// What the protocol does to a word: the list's words in shared memory
/// ([`Word`]), or loom's atomics in the models.
pub(crate) trait Atom {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, value: u64, order: Ordering);
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> std::result::Result<u64, u64>;
    /// A fence of the atomics' kind.
    fn fence(order: Ordering);
}

impl Atom for Word {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        self.w.load(order)
    }
    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        self.w.store(value, order);
    }
    #[inline]
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> std::result::Result<u64, u64> {
        self.w.compare_exchange(current, new, success, failure)
    }
    #[inline]
    fn fence(order: Ordering) {
        fence(order);
    }
}

/// How a turn is waited for: [`Waiter`], or a yield in the loom models.
pub(crate) trait Pause {
    /// Waits a little while the item's turn word is `seen`; `Err` to give up.
    fn wait(&mut self, seen: u64) -> std::result::Result<(), Gave>;
}

/// Copies the item that `turn`, `kind` and `data` hold, a string or bytes
/// into a buffer from `buf` (a copy overtaken by a write is dropped, its
/// buffer with it): the copy (or why its kind word or bytes are none a
/// writer leaves), or why the wait for a turn gave up.
#[inline]
fn read_item<A: Atom, P: Pause>(
    turn: &A,
    kind: &A,
    data: &[A],
    pause: &mut P,
    mut buf: impl FnMut(usize) -> Vec<u8>,
) -> std::result::Result<std::result::Result<Item, String>, Gave> {
    for _ in 0..OPTIMISTIC_READS {
        // SYNC: pairs with the Release that ended the last turn (in
        // `end_turn`): its kind word and bytes are visible below.
        let first = turn.load(Ordering::Acquire);
        if held(first) {
            // A write under way: wait for a turn (so that a writer in a
            // loop hands the item over rather than taking it again).
            break;
        }
        let copy = copy_item(kind.load(Ordering::Relaxed), data, &mut buf);
        // SYNC: pairs with the writer's Release fence after it took its
        // turn: a copy that saw any word of a newer write sees at least
        // that turn here.
        A::fence(Ordering::Acquire);
        if turn.load(Ordering::Relaxed) == first {
            return Ok(copy);
        }
    }
    // A write under way, or writes that keep overtaking the copy: take a
    // turn as a writer does, so that the next one waits for this copy.
    let odd = take_turn(turn, pause).map_err(|(why, _)| why)?;
    let copy = copy_item(kind.load(Ordering::Relaxed), data, &mut buf);
    // SYNC: the Release in `end_turn` pairs with the next turn's Acquire
    // compare-and-swap: this copy is done before its stores.
    end_turn(turn, odd, next_count(odd));
    Ok(copy)
}

/// Writes `bytes` (at most `data`'s room) as an item of kind `of`; gives
/// up only with [`Gave::Busy`] (a holder [`Gave::Stuck`] is taken over).
#[inline]
fn write_item<A: Atom, P: Pause>(
    turn: &A,
    kind: &A,
    data: &[A],
    of: u64,
    bytes: &[u8],
    pause: &mut P,
) -> std::result::Result<(), Gave> {
    let (held, odd) = match take_turn(turn, pause) {
        Ok(odd) => (odd, odd),
        // A holder that never finished: taken over (the count stays odd
        // until this write's end).
        Err((Gave::Stuck, held)) => (held, held & COUNT),
        Err((Gave::Busy, _)) => return Err(Gave::Busy),
    };
    // SYNC: pairs with the reader's Acquire fence after its copy (see
    // `read_item`): the turn taken is ordered before every word stored
    // below.
    A::fence(Ordering::Release);
    kind.store(kind_word(of, bytes.len() as u64), Ordering::Relaxed);
    for (word, chunk) in data.iter().zip(bytes.chunks(WORD)) {
        word.store(word_of(chunk), Ordering::Relaxed);
    }
    // SYNC: the Release in `end_turn` pairs with the reader's first Acquire
    // load of the turn word (and the next turn's Acquire compare-and-swap):
    // the kind word and the bytes above come with the turn's end.
    end_turn(turn, held, next_count(odd));
    Ok(())
}

/// Reads of an item overtaken by a write in a row after which a reader
/// takes a turn as writers do (a write of a small item in a loop can
/// otherwise start again within every copy). A reader that finds a write
/// under way takes a turn at once.
const OPTIMISTIC_READS: u32 = 4;

/// Moves an item's turn word from even to odd (its turn taken), waiting
/// while another holds it: `Ok(the odd count)`.
///
/// One who waits marks the held turn [`WANTED`], and one who finds a free
/// turn so marked and has not waited for it leaves it to the one who has
/// (a writer in a loop would otherwise take every turn again before a
/// waiter saw it free): for the wait's limit, should that one be gone.
///
/// `Err` once the wait is over: [`Gave::Stuck`] with the turn word a holder
/// left for the whole limit (a writer takes the item over from there, a
/// reader gives up), [`Gave::Busy`] when turns kept passing to others.
#[inline]
fn take_turn<A: Atom, P: Pause>(turn: &A, waiter: &mut P) -> std::result::Result<u64, (Gave, u64)> {
    let mut waited = false;
    loop {
        let now = turn.load(Ordering::Relaxed);
        let free = !held(now);
        if free && (waited || now & WANTED == 0) {
            // SYNC: Acquire pairs with the Release in `end_turn`: the last
            // turn's stores (or a reader's copy) come before this turn's.
            let odd = next_count(now);
            if turn
                .compare_exchange(now, odd, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(odd);
            }
        } else if !free && now & WANTED == 0 {
            // Say that someone waits (a failure: the turn word changed).
            let _ = turn.compare_exchange(now, now | WANTED, Ordering::Relaxed, Ordering::Relaxed);
            waited = true;
        }
        match waiter.wait(now) {
            Ok(()) => waited |= !free,
            // Free and marked for the whole limit: its waiter is gone.
            Err(Gave::Stuck) if free => waited = true,
            Err(why) => {
                if waited {
                    // Giving up: take back the mark (another waiter's too,
                    // which only costs it its precedence), so that nobody
                    // waits for this one.
                    let marked = turn.load(Ordering::Relaxed);
                    let _ = turn.compare_exchange(
                        marked,
                        marked & !WANTED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return Err((why, now));
            }
        }
    }
}

/// Ends a turn: stores the count `next` (Release), keeping [`WANTED`] if a
/// waiter marked the turn word meanwhile. `held` is the word as this turn
/// holds it, what the word still is unless marked: the first
/// compare-and-swap needs no load before it. The only change another makes
/// to a held turn word is that mark, so this loops at most twice; a peer
/// that writes over the word without end gets a plain store after a few
/// tries.
#[inline]
fn end_turn<A: Atom>(turn: &A, held: u64, next: u64) {
    let mut now = held;
    for _ in 0..8 {
        match turn.compare_exchange(
            now,
            next | (now & WANTED),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(seen) => now = seen,
        }
    }
    turn.store(next, Ordering::Release);
}

impl fmt::Debug for ShareableList {
    /// Python's repr: `ShareableList([...], name='...')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<_> = (0..self.len())
            .map(|i| self.get_timeout(i, Duration::ZERO))
            .collect();
        f.debug_struct("ShareableList")
            .field("items", &items)
            .field("name", &self.segment().name())
            .finish()
    }
}

/// See [`ShareableList::writer_grace`].
fn grace_for(room: Room) -> Duration {
    let bytes = (room.words * WORD) as u64;
    Duration::from_secs(1 + bytes / 100_000_000)
}

/// A word made of up to 8 bytes, little-endian, zero-padded.
fn word_of(chunk: &[u8]) -> u64 {
    let mut b = [0u8; WORD];
    b[..chunk.len()].copy_from_slice(chunk);
    u64::from_le_bytes(b)
}

/// The item that the kind word `of` describes, copied out of `data`, a
/// string or bytes into a buffer from `buf`, which is told the bytes of the
/// whole words to be copied (atomic loads: a writer may be storing
/// meanwhile; the caller checks the turn word again).
///
/// Always inlined: out of line, its answer went back through a nested
/// `Result` copied in pieces (a load across two stores just made, which
/// stalls), and `get_into` took twice the time (`benches/NOTES.md`).
#[inline(always)]
fn copy_item<A: Atom>(
    of: u64,
    data: &[A],
    buf: &mut impl FnMut(usize) -> Vec<u8>,
) -> std::result::Result<Item, String> {
    let kind = of >> KIND_SHIFT;
    let len = (of & LEN_MASK) as usize;
    let first = || data[0].load(Ordering::Relaxed);
    match kind {
        KIND_NONE => Ok(Item::None),
        KIND_BOOL => Ok(Item::Bool(first() != 0)),
        KIND_INT => Ok(Item::Int(first() as i64)),
        KIND_FLOAT => Ok(Item::Float(f64::from_bits(first()))),
        KIND_STR | KIND_BYTES => {
            if len > data.len() * WORD {
                return Err(format!(
                    "its length, {len} bytes, is more than its room of {} bytes",
                    data.len() * WORD
                ));
            }
            let words = &data[..len.div_ceil(WORD)];
            let whole = words.len() * WORD;
            let mut buf = buf(whole);
            buf.clear();
            buf.reserve(whole);
            // Whole words, one 8-byte store each into the spare room (no
            // capacity checked, nothing zeroed first); the last word's
            // bytes past `len` are left out by the length set below.
            let mut bits = 0;
            for (out, word) in buf.spare_capacity_mut().chunks_exact_mut(WORD).zip(words) {
                let word = word.load(Ordering::Relaxed);
                bits |= word;
                for (byte, value) in out.iter_mut().zip(word.to_le_bytes()) {
                    byte.write(value);
                }
            }
            debug_assert!(len <= whole && whole <= buf.capacity());
            // SAFETY: `reserve` made room for `whole` bytes, the loop wrote
            // all of them (`words` has `whole / WORD` words), and `len` is at
            // most `whole`.
            unsafe { buf.set_len(len) };
            if kind == KIND_BYTES {
                return Ok(Item::Bytes(buf));
            }
            if bits & HIGH_BITS == 0 {
                // SAFETY: no byte copied (nor any padding after them) has its
                // high bit set: they are ASCII, which is UTF-8.
                return Ok(Item::Str(unsafe { String::from_utf8_unchecked(buf) }));
            }
            String::from_utf8(buf)
                .map(Item::Str)
                .map_err(|e| format!("its string is not UTF-8 ({e})"))
        }
        other => Err(format!("its kind, {other}, is none a ShareableList writes")),
    }
}

/// The high bit of every byte of a word: none set, the bytes are ASCII.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The buffer of a string or bytes item, taken out of it (`item` is left
/// [`Item::None`]); an empty one for any other item.
fn buffer_of(item: &mut Item) -> Vec<u8> {
    match std::mem::replace(item, Item::None) {
        Item::Str(text) => text.into_bytes(),
        Item::Bytes(bytes) => bytes,
        _ => Vec::new(),
    }
}

/// A list, as its errors name it.
fn list_name(seg: &Segment) -> String {
    seg.name().map_or_else(
        || "a ShareableList".to_owned(),
        |n| format!("ShareableList {n:?}"),
    )
}

/// Checks a list's room table and copies it out.
fn check_rooms(words: &SharedSlice<Word>) -> Result<Vec<Room>> {
    let total = words.len();
    let corrupted = |reason: String| Error::Corrupted {
        what: list_name(words.segment()),
        reason,
    };
    let n = words.first().map_or(0, |w| w.w.load(Ordering::Relaxed));
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| {
            n.checked_mul(3)
                .and_then(|m| m.checked_add(1))
                .is_some_and(|m| m <= total)
        })
        .ok_or_else(|| {
            corrupted(format!(
                "it says it has {n} items; its {total} words hold fewer"
            ))
        })?;
    let data_words = total - (1 + 3 * n);
    let mut rooms = Vec::with_capacity(n);
    let mut next = 0usize;
    for i in 0..n {
        let word = words[1 + i].w.load(Ordering::Relaxed);
        let offset = (word >> 32) as usize;
        let len = (word & LEN_MASK) as usize;
        if offset != next || len == 0 || len > data_words - offset {
            return Err(corrupted(format!(
                "item {i}'s room ({len} words at word {offset}) does not start where the room \
                 before it ends (word {next}), is empty, or runs past the {data_words} words of data"
            )));
        }
        rooms.push(Room { offset, words: len });
        next = offset + len;
    }
    Ok(rooms)
}

/// Why a wait for a turn gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gave {
    /// One turn word stayed for the whole limit: its holder is gone.
    Stuck,
    /// Turns kept passing to others for [`busy_limit`] (four times the limit).
    Busy,
}

/// How long turns may keep passing to others before a waiter gives up:
/// four times its limit, and 10 ms more (a limit of zero still waits out a
/// few turns).
fn busy_limit(limit: Duration) -> Duration {
    limit
        .saturating_mul(4)
        .saturating_add(Duration::from_millis(10))
}

/// A bounded wait for an item's holder: spins, then yields, then naps
/// (a holder that stays is likely gone). A turn word that changed (turns pass
/// from holder to holder) starts the spins, the yields and the limit
/// again, so that a waiter among busy writers keeps asking for its turn
/// rather than sleeping through it, and takes no live holder for a dead
/// one; [`busy_limit`] bounds the whole wait.
struct Waiter {
    start: Option<Instant>,
    limit: Duration,
    /// The turn word last waited on, the looks at it and since when (the
    /// clock is read once the spins are over: a wait that ends in them,
    /// as nearly all do, reads none).
    last: u64,
    looks: u32,
    since: Option<Instant>,
}

impl Waiter {
    fn new(limit: Duration) -> Waiter {
        Waiter {
            start: None,
            limit,
            last: 0,
            looks: 0,
            since: None,
        }
    }
}

impl Pause for Waiter {
    fn wait(&mut self, seen: u64) -> std::result::Result<(), Gave> {
        if seen != self.last || self.looks == 0 {
            self.last = seen;
            self.looks = 0;
            self.since = None;
        }
        self.looks += 1;
        if self.looks < 64 {
            std::hint::spin_loop();
            return Ok(());
        }
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        let stayed = now - *self.since.get_or_insert(now);
        if stayed >= self.limit {
            return Err(Gave::Stuck);
        }
        if now - start >= busy_limit(self.limit) {
            return Err(Gave::Busy);
        }
        if stayed < Duration::from_millis(1) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(100).min(self.limit - stayed));
        }
        Ok(())
    }
}

/// loom models of an item's protocol (sequence lock, turns, hand-over):
/// `RUSTFLAGS="--cfg multiproc_loom" cargo test -p multiproc-shm --lib
/// --release loom_models` (scripts/test-all runs them, with
/// `LOOM_MAX_PREEMPTIONS=2`).
#[cfg(all(test, multiproc_loom))]
mod loom_models {
    use super::{
        held, kind_word, read_item, write_item, Atom, Gave, Item, Pause, KIND_STR, WANTED, WORD,
    };
    use loom::sync::atomic::AtomicU64;
    use loom::sync::Arc;
    use std::sync::atomic::Ordering;

    /// loom's atomic as one of the list's words: loom checks every load
    /// against the orders the protocol gives (a relaxed load may see an
    /// older store, as on a weaker machine than x86).
    struct Model(AtomicU64);

    impl Atom for Model {
        fn load(&self, order: Ordering) -> u64 {
            self.0.load(order)
        }
        fn store(&self, value: u64, order: Ordering) {
            self.0.store(value, order);
        }
        fn compare_exchange(
            &self,
            current: u64,
            new: u64,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u64, u64> {
            self.0.compare_exchange(current, new, success, failure)
        }
        fn fence(order: Ordering) {
            loom::sync::atomic::fence(order);
        }
    }

    /// A wait that lets the model's other threads run, and never gives up:
    /// every holder in a model finishes.
    struct Yield;

    impl Pause for Yield {
        fn wait(&mut self, _seen: u64) -> Result<(), Gave> {
            loom::thread::yield_now();
            Ok(())
        }
    }

    /// One string item of two words: its turn word, kind word and bytes.
    struct Slot {
        turn: Model,
        kind: Model,
        data: [Model; 2],
    }

    const LEN: usize = 2 * WORD;

    fn slot(fill: u8) -> Slot {
        let word = u64::from_le_bytes([fill; WORD]);
        Slot {
            turn: Model(AtomicU64::new(0)),
            kind: Model(AtomicU64::new(kind_word(KIND_STR, LEN as u64))),
            data: [Model(AtomicU64::new(word)), Model(AtomicU64::new(word))],
        }
    }

    fn write(s: &Slot, fill: u8) {
        write_item(
            &s.turn,
            &s.kind,
            &s.data,
            KIND_STR,
            &[fill; LEN],
            &mut Yield,
        )
        .unwrap();
    }

    /// The byte a read found the item made of, failing on half of a write.
    fn read(s: &Slot) -> u8 {
        let item = read_item(&s.turn, &s.kind, &s.data, &mut Yield, Vec::with_capacity)
            .unwrap()
            .unwrap();
        let Item::Str(text) = item else {
            panic!("not a string: {item:?}")
        };
        let b = text.as_bytes();
        assert!(
            b.len() == LEN && b.iter().all(|&c| c == b[0]),
            "half a write: {text:?}"
        );
        b[0]
    }

    #[test]
    fn loom_models_a_read_beside_a_write_sees_one_of_them_whole() {
        loom::model(|| {
            let s = Arc::new(slot(b'a'));
            let w = {
                let s = s.clone();
                loom::thread::spawn(move || write(&s, b'b'))
            };
            assert!(matches!(read(&s), b'a' | b'b'));
            w.join().unwrap();
            assert_eq!(read(&s), b'b');
        });
    }

    #[test]
    fn loom_models_two_writers_take_turns_and_a_reader_sees_whole_items() {
        loom::model(|| {
            let s = Arc::new(slot(b'a'));
            let writers: Vec<_> = [b'b', b'c']
                .into_iter()
                .map(|fill| {
                    let s = s.clone();
                    loom::thread::spawn(move || write(&s, fill))
                })
                .collect();
            assert!(matches!(read(&s), b'a' | b'b' | b'c'));
            for w in writers {
                w.join().unwrap();
            }
            assert!(matches!(read(&s), b'b' | b'c'));
            let end = s.turn.load(Ordering::Relaxed);
            assert!(!held(end), "a turn left held");
            assert_eq!(end & WANTED, 0, "a mark left behind");
        });
    }
}
