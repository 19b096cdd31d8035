//! Primitive numbers as their little-endian bytes, through serde.
//!
//! A value whose `Serialize` is one call for a primitive number (`u64`,
//! `f32`, a newtype around one …; a `bool` counts as one, a byte of 0 or 1)
//! travels as that number's bytes instead of postcard's encoding: a
//! fixed-size copy each way, where postcard's varints cost several
//! nanoseconds an item (most of a trivial map's time). The decision is made
//! per value, by trying: [`put`] writes a value that is a primitive (its
//! [`Prim`] tag, then its bytes) and writes nothing for any other. The reader
//! gets the tag, so it needs no agreement beforehand: [`get`] hands the
//! number to the type's `Deserialize` as a self-describing format would
//! (`deserialize_any`), so a type reads back whatever it wrote.
//!
//! A tuple, array, tuple struct or struct of primitive numbers (`(u64, f32)`,
//! `[u16; 3]`, `struct Point { x: f64, y: f64 }`: [`MAX_FIELD_BYTES`] of
//! fields at most) travels raw too, as one *raw tuple* entry: [`TUPLE`], the
//! number of fields (at most [`MAX_FIELDS`]) and their kinds ([`Prim`]'s
//! index) four bits each; or, for more fields all of one kind, [`SAME`],
//! the number of fields and the kind once; then the fields' bytes. Its
//! reader hands the fields to the type's `Deserialize` as a sequence
//! (`visit_seq`), as postcard does; fields all of one kind through a loop
//! made for that kind ([`Shape::get_same`]), since a test of each field's
//! kind cost more than postcard's fixed-size `u8`s and floats. Postcard's
//! varints cost several times these fixed copies, and a chunk of tuples of
//! one type is one stride wide, where varints of different lengths need a
//! list of starts (a `starmap` of `(u64, u64)` pairs took about three times
//! a map of `u64`s, `benches/NOTES.md`).

use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// A primitive number's kind (a `bool` counts as one: a byte, 0 or 1). Its
/// tag in a message is `BASE + kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Prim {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Bool,
}

/// The first tag of a raw value; tags below it are the caller's.
pub(crate) const BASE: u8 = 16;

/// The tag of a raw tuple of up to [`MAX_FIELDS`] fields (see the module's
/// doc): the tag after the last kind's.
pub(crate) const TUPLE: u8 = BASE + ALL.len() as u8;
/// The tag of a raw tuple of more fields, all of one kind: its kind once.
pub(crate) const SAME: u8 = TUPLE + 1;
/// The most fields of a [`TUPLE`], whose kinds may differ; a value with more
/// goes as a [`SAME`] if they are all of one kind, else by postcard.
pub(crate) const MAX_FIELDS: usize = 16;
/// The most bytes a raw tuple's fields take; a value with more goes by postcard.
pub(crate) const MAX_FIELD_BYTES: usize = 64;
/// The room a raw tuple is written in: its longest head and fields.
const MAX_TUPLE: usize = 2 + MAX_FIELDS / 2 + MAX_FIELD_BYTES;
/// The most room a raw entry's write asks for past the length (a tuple's
/// [`MAX_TUPLE`], a number's 9-byte copy): a buffer with this much left past
/// the bytes its entries take is never grown while they are written.
pub(crate) const ROOM_PAST: usize = if MAX_TUPLE > 9 { MAX_TUPLE } else { 9 };
/// The head of a [`SAME`] entry: tag, count, kind.
const SAME_HEAD: usize = 3;

/// Where the fields of a raw tuple of `n` fields start: after its head.
const fn fields_at(n: usize) -> usize {
    if n <= MAX_FIELDS {
        2 + n.div_ceil(2)
    } else {
        SAME_HEAD
    }
}

const ALL: [Prim; 11] = [
    Prim::U8,
    Prim::U16,
    Prim::U32,
    Prim::U64,
    Prim::I8,
    Prim::I16,
    Prim::I32,
    Prim::I64,
    Prim::F32,
    Prim::F64,
    Prim::Bool,
];

impl Prim {
    /// The kind of a raw value's tag; `None` for any other byte.
    pub(crate) fn of_tag(tag: u8) -> Option<Prim> {
        ALL.get(usize::from(tag.checked_sub(BASE)?)).copied()
    }

    const fn width(self) -> usize {
        match self {
            Prim::U8 | Prim::I8 | Prim::Bool => 1,
            Prim::U16 | Prim::I16 => 2,
            Prim::U32 | Prim::I32 | Prim::F32 => 4,
            Prim::U64 | Prim::I64 | Prim::F64 => 8,
        }
    }
}

/// Writes `value` raw (tag and bytes) if it serializes as one primitive
/// number or as a raw tuple of them; whether it did. Writes nothing
/// otherwise.
#[inline(always)]
pub(crate) fn put<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    value.serialize(Out(out)).is_ok()
}

/// Appends the first `len` (at most 9) bytes of a raw entry to `out`: one
/// capacity check and one length update, where a push and an extend make
/// two of each (this runs for every item of a map). All 9 bytes are copied,
/// whatever `len`: a copy of `len` bytes read a short entry back from the
/// stack as one word just stored byte by byte (a load that waits for the
/// stores: 5.6 ns a `bool` against 1.05 a `u32`, and most of a map of
/// `bool`s' workers' time), where a copy of a size the compiler knows keeps
/// the entry in registers.
#[inline(always)]
pub(crate) fn append(out: &mut Vec<u8>, entry: &[u8; 9], len: usize) {
    out.reserve(9);
    let at = out.len();
    // SAFETY: reserve made room for 9 bytes past `at`; the entry's first
    // `len.min(9)` of them are covered by the length.
    unsafe {
        std::ptr::copy_nonoverlapping(entry.as_ptr(), out.as_mut_ptr().add(at), 9);
        out.set_len(at + len.min(9));
    }
}

/// A raw entry made apart from any message: its tag and bytes, and how many
/// of the 9 bytes it takes (see [`entry`]).
pub(crate) struct Entry {
    pub(crate) bytes: [u8; 9],
    pub(crate) len: usize,
}

/// `value`'s raw entry, as [`put`] would write it, if it serializes as one
/// primitive number (`None` for a raw tuple, too long for an [`Entry`]:
/// [`put`] writes those). For loops that write many entries through one pointer
/// (a `Vec` updated an item at a time keeps its length in memory).
#[inline(always)]
pub(crate) fn entry<T: Serialize + ?Sized>(value: &T) -> Option<Entry> {
    let mut e = Entry {
        bytes: [0; 9],
        len: 0,
    };
    value.serialize(Out(&mut e)).ok()?;
    Some(e)
}

/// Calls `$body` with `$k` (a `u8` const: the kind's index) and `$w` (a
/// `usize` const: its width) for the kind `$prim`, so that `$body` can be a
/// loop made for one kind, where the kind's checks fold away.
macro_rules! by_kind {
    ($prim:expr, |$k:ident, $w:ident| $body:expr) => {
        match $prim {
            $crate::raw::Prim::U8 => $crate::raw::by_kind!(@ 0, 1, $k, $w, $body),
            $crate::raw::Prim::U16 => $crate::raw::by_kind!(@ 1, 2, $k, $w, $body),
            $crate::raw::Prim::U32 => $crate::raw::by_kind!(@ 2, 4, $k, $w, $body),
            $crate::raw::Prim::U64 => $crate::raw::by_kind!(@ 3, 8, $k, $w, $body),
            $crate::raw::Prim::I8 => $crate::raw::by_kind!(@ 4, 1, $k, $w, $body),
            $crate::raw::Prim::I16 => $crate::raw::by_kind!(@ 5, 2, $k, $w, $body),
            $crate::raw::Prim::I32 => $crate::raw::by_kind!(@ 6, 4, $k, $w, $body),
            $crate::raw::Prim::I64 => $crate::raw::by_kind!(@ 7, 8, $k, $w, $body),
            $crate::raw::Prim::F32 => $crate::raw::by_kind!(@ 8, 4, $k, $w, $body),
            $crate::raw::Prim::F64 => $crate::raw::by_kind!(@ 9, 8, $k, $w, $body),
            $crate::raw::Prim::Bool => $crate::raw::by_kind!(@ 10, 1, $k, $w, $body),
        }
    };
    (@ $kv:expr, $wv:expr, $k:ident, $w:ident, $body:expr) => {{
        const $k: u8 = $kv;
        const $w: usize = $wv;
        $body
    }};
}
pub(crate) use by_kind;

/// The entry of kind `K` (its index, `W` bytes wide) at the start of
/// `bytes`, read as a `T`: the value and the rest; `None` for an entry of
/// another tag, a short one, or a number `T` does not accept. For loops made
/// for one kind (see [`by_kind`]): the tag and width are constants there.
#[inline(always)]
pub(crate) fn get_known<T: DeserializeOwned, const K: u8, const W: usize>(
    bytes: &[u8],
) -> Option<(T, &[u8])> {
    let (&tag, body) = bytes.split_first()?;
    if tag != BASE + K {
        return None;
    }
    body_known::<T, K, W>(body)
}

/// Reads a raw value of kind `prim` from the start of `bytes` (past its
/// tag) as a `T`: the value and the rest; `None` when `bytes` is too short
/// or `T` does not accept that number.
#[inline]
pub(crate) fn get<T: DeserializeOwned>(prim: Prim, bytes: &[u8]) -> Option<(T, &[u8])> {
    by_kind!(prim, |K, W| body_known::<T, K, W>(bytes))
}

/// The body of a raw value of kind `K` (`W` bytes) at the start of `bytes`,
/// as a `T`. Fixed-size reads: a copy of a length the compiler cannot see
/// would be a call to memcpy per item.
#[inline(always)]
fn body_known<T: DeserializeOwned, const K: u8, const W: usize>(
    bytes: &[u8],
) -> Option<(T, &[u8])> {
    let (b, rest) = bytes.split_first_chunk::<W>()?;
    let mut le = [0u8; 8];
    le[..W].copy_from_slice(b);
    let value = T::deserialize(In {
        prim: ALL[usize::from(K)],
        bits: u64::from_le_bytes(le),
    })
    .ok()?;
    Some((value, rest))
}

/// Reads the raw tuple at the start of `entry` (at its [`TUPLE`] or [`SAME`]
/// tag) as a `T`: the value and the rest; `None` when the entry is malformed (see
/// [`Shape::of`]) or `T` does not accept those fields.
#[inline]
pub(crate) fn get_tuple<T: DeserializeOwned>(entry: &[u8]) -> Option<(T, &[u8])> {
    let shape = Shape::of(entry)?;
    match shape.same {
        Some(prim) => by_kind!(prim, |K, W| shape.get_same::<T, K, W>(entry)),
        None => shape.get(entry),
    }
}

/// What a raw tuple's entry starts with (its tag, its number of fields and
/// their kinds) and how long it is: tuples of one type share it, so that a
/// run of them is read with one comparison an entry (as a run of numbers of
/// one kind is read by a loop made for that kind).
pub(crate) struct Shape {
    head: [u8; 2 + MAX_FIELDS / 2],
    head_len: usize,
    /// Its fields' kinds, four bits each from the low end (a [`TUPLE`]'s).
    kinds: u64,
    n: usize,
    /// The entry's bytes, tag included: the stride of a run.
    pub(crate) stride: usize,
    /// The head as the low bytes of a word and the mask of those bytes,
    /// for a head of at most 8 bytes (a [`TUPLE`] of up to 12 fields, any
    /// [`SAME`]): one comparison.
    head8: u64,
    mask8: u64,
    /// The fields' kind when they are all of one (a pair of `u64`s, an
    /// array): read through [`Shape::get_same`], a loop made for that kind.
    pub(crate) same: Option<Prim>,
}

impl Shape {
    /// The shape of the raw tuple at the start of `entry`, whole there;
    /// `None` for another tag, no fields, more than [`MAX_FIELDS`] of
    /// different kinds or more than [`MAX_FIELD_BYTES`] of one, a kind that
    /// is none, or fewer bytes than the kinds say.
    pub(crate) fn of(entry: &[u8]) -> Option<Shape> {
        let (&tag, body) = entry.split_first()?;
        let n = usize::from(*body.first()?);
        let (head_len, width, same, kinds) = match tag {
            TUPLE if (1..=MAX_FIELDS).contains(&n) => {
                let packed = body.get(1..1 + n.div_ceil(2))?;
                let kinds = (packed.iter().rev()).fold(0u64, |k, &b| (k << 8) | u64::from(b));
                // The four bits past an odd count's last kind are 0: one
                // shape, one head.
                if kinds.checked_shr(4 * n as u32).unwrap_or(0) != 0 {
                    return None;
                }
                let kind = |i: usize| ALL.get(((kinds >> (4 * i)) & 15) as usize).copied();
                let mut width = 0;
                for i in 0..n {
                    width += kind(i)?.width();
                }
                let first = kind(0)?;
                let same = (1..n).all(|i| kind(i) == Some(first)).then_some(first);
                (fields_at(n), width, same, kinds)
            }
            SAME if (1..=MAX_FIELD_BYTES).contains(&n) => {
                let prim = *ALL.get(usize::from(*body.get(1)?))?;
                if n * prim.width() > MAX_FIELD_BYTES {
                    return None;
                }
                (SAME_HEAD, n * prim.width(), Some(prim), 0)
            }
            _ => return None,
        };
        let stride = head_len + width;
        if entry.len() < stride {
            return None;
        }
        let mut head = [0; 2 + MAX_FIELDS / 2];
        head[..head_len].copy_from_slice(&entry[..head_len]);
        let mut low = [0; 8];
        let short = head_len.min(8);
        low[..short].copy_from_slice(&head[..short]);
        Some(Shape {
            head,
            head_len,
            stride,
            head8: u64::from_le_bytes(low),
            mask8: u64::MAX >> (64 - 8 * short),
            same,
            kinds,
            n,
        })
    }

    /// `entry`'s tuple (its `stride` bytes) and the rest, if it has this
    /// shape; `None` for an entry of another shape or a short one.
    #[inline(always)]
    fn fits<'a>(&self, entry: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let (this, rest) = entry.split_at_checked(self.stride)?;
        let fits = match this.first_chunk::<8>() {
            Some(low) if self.head_len <= 8 => u64::from_le_bytes(*low) & self.mask8 == self.head8,
            _ => this[..self.head_len] == self.head[..self.head_len],
        };
        fits.then_some((this, rest))
    }

    /// [`Shape::get`] for a shape whose fields are all of kind `K` (`W`
    /// bytes: see [`by_kind`]), each read by a fixed-size copy and offered
    /// as that kind with no test of its own kind.
    #[inline(always)]
    pub(crate) fn get_same<'a, T: DeserializeOwned, const K: u8, const W: usize>(
        &self,
        entry: &'a [u8],
    ) -> Option<(T, &'a [u8])> {
        let (this, rest) = self.fits(entry)?;
        let fields = &this[self.head_len..];
        let value = T::deserialize(FieldsDe(SameIn::<K, W> { fields })).ok()?;
        Some((value, rest))
    }

    /// Reads the raw tuple at the start of `entry` if it has this shape: the
    /// value as a `T` and the rest; `None` for an entry of another shape, a
    /// short one, or fields `T` does not accept. For a [`TUPLE`]'s shape
    /// (fields of one kind are read faster by [`Shape::get_same`]); a
    /// [`SAME`] keeps no kind a field here: `None`.
    #[inline(always)]
    pub(crate) fn get<'a, T: DeserializeOwned>(&self, entry: &'a [u8]) -> Option<(T, &'a [u8])> {
        if self.head[0] != TUPLE {
            return None;
        }
        let (_, rest) = self.fits(entry)?;
        // The fields are read from the rest of `entry`, not only this one's
        // bytes: a field is read as 8 bytes where 8 are there (see
        // `TupleIn`), and the last field of a tuple is otherwise short of
        // them; the kinds say how many bytes each field takes. (They are
        // this shape's: the entry's head is.)
        let value = T::deserialize(FieldsDe(TupleIn {
            kinds: self.kinds,
            left: self.n,
            fields: &entry[self.head_len..],
        }))
        .ok()?;
        Some((value, rest))
    }
}

/// Not a primitive number: [`put`] wrote nothing.
#[derive(Debug)]
pub(crate) struct NotRaw;

impl std::fmt::Display for NotRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a primitive number")
    }
}

impl std::error::Error for NotRaw {}

impl ser::Error for NotRaw {
    fn custom<M: std::fmt::Display>(_: M) -> NotRaw {
        NotRaw
    }
}

/// The serializer of [`put`]: accepts one primitive number, refuses the rest
/// before writing anything.
struct Out<S>(S);

/// Where [`Out`] writes the one entry it accepts.
trait Sink: Sized {
    /// What writes a raw tuple here, field by field ([`Impossible`] where
    /// none may be written).
    type Tuple: ser::SerializeTuple<Ok = (), Error = NotRaw>
        + ser::SerializeTupleStruct<Ok = (), Error = NotRaw>
        + ser::SerializeStruct<Ok = (), Error = NotRaw>;
    /// Writes a number's entry: its tag and `N` bytes (of the 9). Refuses
    /// only when the sink is a raw tuple's field that is one too many.
    fn write<const N: usize>(self, entry: [u8; 9]) -> Result<(), NotRaw>;
    /// Starts a raw tuple of `declared` fields, or refuses.
    fn tuple(self, declared: usize) -> Result<Self::Tuple, NotRaw>;
}

impl<'a> Sink for &'a mut Vec<u8> {
    type Tuple = Tuple<'a>;
    #[inline(always)]
    fn write<const N: usize>(self, entry: [u8; 9]) -> Result<(), NotRaw> {
        append(self, &entry, 1 + N);
        Ok(())
    }
    #[inline(always)]
    fn tuple(self, declared: usize) -> Result<Tuple<'a>, NotRaw> {
        if declared == 0 || declared > MAX_FIELD_BYTES {
            return Err(NotRaw);
        }
        // The entry is written past the length, which covers it only once
        // every field is there: a value that turns out not to be raw leaves
        // nothing behind.
        self.reserve(MAX_TUPLE);
        let start = self.len();
        let head = fields_at(declared);
        Ok(Tuple {
            out: self,
            start,
            declared,
            written: 0,
            head,
            end: head,
            kinds: 0,
            first: 0,
        })
    }
}

impl Sink for &mut Entry {
    type Tuple = Impossible<(), NotRaw>;
    #[inline(always)]
    fn write<const N: usize>(self, entry: [u8; 9]) -> Result<(), NotRaw> {
        (self.bytes, self.len) = (entry, 1 + N);
        Ok(())
    }
    #[inline(always)]
    fn tuple(self, _: usize) -> Result<Self::Tuple, NotRaw> {
        // Too long for an Entry: `put` writes raw tuples.
        Err(NotRaw)
    }
}

/// A raw tuple being written past the end of `out` (which has room for
/// [`MAX_TUPLE`] bytes from `start`): the bytes of the `written` fields so
/// far from `start + head` up to `start + end`; for a [`TUPLE`], their kinds
/// after the tag's and count's places, a byte for two, as they come (`kinds`
/// holds them); the tag and count written at the end. Each store is of a
/// value in hand: nothing written is read back (a read of bytes just stored
/// in smaller pieces waits for them, and cost a copy of the fields 6 ns).
struct Tuple<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    declared: usize,
    written: usize,
    head: usize,
    end: usize,
    kinds: u64,
    /// The first field's kind: a [`SAME`]'s every field's.
    first: u8,
}

impl Tuple<'_> {
    #[inline(always)]
    fn field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotRaw> {
        value.serialize(Out(self))
    }

    #[inline(always)]
    fn finish(self) -> Result<(), NotRaw> {
        let n = self.written;
        // A `Serialize` that declared more fields than it wrote.
        if n != self.declared {
            return Err(NotRaw);
        }
        // SAFETY: `Sink::tuple` reserved MAX_TUPLE bytes from `start`; the
        // head's bytes are before `head` (at most 2 + MAX_FIELDS / 2), its
        // kinds (a TUPLE's) and the fields up to `end` are written: the
        // length covers just those.
        unsafe {
            let at = self.out.as_mut_ptr().add(self.start);
            at.write(if n <= MAX_FIELDS { TUPLE } else { SAME });
            at.add(1).write(n as u8);
            if n > MAX_FIELDS {
                at.add(2).write(self.first);
            }
            self.out.set_len(self.start + self.end);
        }
        Ok(())
    }
}

impl Sink for &mut Tuple<'_> {
    // A field that is itself a tuple goes by postcard (with its tuple).
    type Tuple = Impossible<(), NotRaw>;
    #[inline(always)]
    fn write<const N: usize>(self, entry: [u8; 9]) -> Result<(), NotRaw> {
        let (i, end, kind) = (self.written, self.end, entry[0] - BASE);
        if i >= self.declared || end + N > self.head + MAX_FIELD_BYTES {
            return Err(NotRaw);
        }
        if i == 0 {
            self.first = kind;
        }
        let tuple = self.declared <= MAX_FIELDS;
        // More fields than a TUPLE has: all of one kind (a SAME), or postcard.
        if !tuple && kind != self.first {
            return Err(NotRaw);
        }
        // SAFETY: `Sink::tuple` reserved MAX_TUPLE bytes from `start`; a
        // TUPLE's kinds take bytes 2 .. 2 + declared / 2 (rounded up), below
        // `head`, and `head + MAX_FIELD_BYTES <= MAX_TUPLE`: the field's N
        // bytes are within the room (spare capacity, not yet covered by the
        // length).
        unsafe {
            let at = self.out.as_mut_ptr().add(self.start);
            if tuple {
                self.kinds |= u64::from(kind) << (4 * i);
                at.add(2 + i / 2).write((self.kinds >> (8 * (i / 2))) as u8);
            }
            std::ptr::copy_nonoverlapping(entry.as_ptr().add(1), at.add(end), N);
        }
        (self.written, self.end) = (i + 1, end + N);
        Ok(())
    }
    #[inline(always)]
    fn tuple(self, _: usize) -> Result<Self::Tuple, NotRaw> {
        Err(NotRaw)
    }
}

/// The tuple and tuple struct serializers of a raw tuple (their one method
/// of a field has two names).
macro_rules! fields_of {
    ($($tr:ident::$f:ident),*) => {$(
        impl ser::$tr for Tuple<'_> {
            type Ok = ();
            type Error = NotRaw;
            #[inline(always)]
            fn $f<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotRaw> {
                self.field(value)
            }
            #[inline(always)]
            fn end(self) -> Result<(), NotRaw> {
                self.finish()
            }
        }
    )*};
}
fields_of!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeStruct for Tuple<'_> {
    type Ok = ();
    type Error = NotRaw;
    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotRaw> {
        self.field(value)
    }
    #[inline(always)]
    fn end(self) -> Result<(), NotRaw> {
        self.finish()
    }
}

impl<S: Sink> Out<S> {
    #[inline(always)]
    fn write<const N: usize>(self, prim: Prim, bytes: [u8; N]) -> Result<(), NotRaw> {
        // The entry made of two values in hand, the tag and the number's
        // first seven bytes as one word, then its eighth byte: stored as a
        // word and a byte, it is read back as a word and a byte. Stored as
        // a tag byte and the number's word after it, the read of its first
        // word waited for both stores (a store-forwarding stall, a third of
        // a pipelined `apply_async`'s submission in a profile).
        let mut le = [0u8; 8];
        le[..N].copy_from_slice(&bytes);
        let number = u64::from_le_bytes(le);
        let mut entry = [0u8; 9];
        entry[..8].copy_from_slice(&(u64::from(BASE + prim as u8) | number << 8).to_le_bytes());
        entry[8] = (number >> 56) as u8;
        self.0.write::<N>(entry)
    }
}

macro_rules! refuse {
    ($($f:ident($($t:ty),*)),* $(,)?) => {$(
        #[inline(always)]
        fn $f(self, $(_: $t),*) -> Result<(), NotRaw> {
            Err(NotRaw)
        }
    )*};
}

impl<S: Sink> ser::Serializer for Out<S> {
    type Ok = ();
    type Error = NotRaw;
    type SerializeSeq = Impossible<(), NotRaw>;
    type SerializeTuple = S::Tuple;
    type SerializeTupleStruct = S::Tuple;
    type SerializeTupleVariant = Impossible<(), NotRaw>;
    type SerializeMap = Impossible<(), NotRaw>;
    type SerializeStruct = S::Tuple;
    type SerializeStructVariant = Impossible<(), NotRaw>;

    #[inline(always)]
    fn serialize_u8(self, v: u8) -> Result<(), NotRaw> {
        self.write(Prim::U8, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_u16(self, v: u16) -> Result<(), NotRaw> {
        self.write(Prim::U16, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_u32(self, v: u32) -> Result<(), NotRaw> {
        self.write(Prim::U32, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_u64(self, v: u64) -> Result<(), NotRaw> {
        self.write(Prim::U64, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_i8(self, v: i8) -> Result<(), NotRaw> {
        self.write(Prim::I8, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_i16(self, v: i16) -> Result<(), NotRaw> {
        self.write(Prim::I16, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_i32(self, v: i32) -> Result<(), NotRaw> {
        self.write(Prim::I32, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_i64(self, v: i64) -> Result<(), NotRaw> {
        self.write(Prim::I64, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_f32(self, v: f32) -> Result<(), NotRaw> {
        self.write(Prim::F32, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_f64(self, v: f64) -> Result<(), NotRaw> {
        self.write(Prim::F64, v.to_le_bytes())
    }
    #[inline(always)]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotRaw> {
        value.serialize(self)
    }

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> Result<(), NotRaw> {
        self.write(Prim::Bool, [u8::from(v)])
    }

    refuse!(
        serialize_u128(u128),
        serialize_i128(i128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), NotRaw> {
        Err(NotRaw)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotRaw> {
        Err(NotRaw)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotRaw> {
        Err(NotRaw)
    }
    #[inline(always)]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, NotRaw> {
        self.0.tuple(len)
    }
    #[inline(always)]
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, NotRaw> {
        self.0.tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotRaw> {
        Err(NotRaw)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotRaw> {
        Err(NotRaw)
    }
    #[inline(always)]
    fn serialize_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, NotRaw> {
        self.0.tuple(len)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotRaw> {
        Err(NotRaw)
    }
}

/// The deserializer of [`get`]: one number of a known kind, offered as that
/// kind whatever the type asks for.
struct In {
    prim: Prim,
    /// The number's little-endian bytes, zero-extended.
    bits: u64,
}

impl<'de> de::Deserializer<'de> for In {
    type Error = de::value::Error;

    #[inline(always)]
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        let b = self.bits;
        match self.prim {
            Prim::U8 => v.visit_u8(b as u8),
            Prim::U16 => v.visit_u16(b as u16),
            Prim::U32 => v.visit_u32(b as u32),
            Prim::U64 => v.visit_u64(b),
            Prim::I8 => v.visit_i8(b as u8 as i8),
            Prim::I16 => v.visit_i16(b as u16 as i16),
            Prim::I32 => v.visit_i32(b as u32 as i32),
            Prim::I64 => v.visit_i64(b as i64),
            Prim::F32 => v.visit_f32(f32::from_bits(b as u32)),
            Prim::F64 => v.visit_f64(f64::from_bits(b)),
            // A byte that is neither is no `bool` (postcard refuses it too).
            Prim::Bool => match b {
                0 | 1 => v.visit_bool(b == 1),
                _ => Err(de::Error::invalid_value(
                    de::Unexpected::Unsigned(b),
                    &"a bool's 0 or 1",
                )),
            },
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }

    // The kind the type asks for, a test and a visit; any other through
    // `deserialize_any`, kept out of line, so that a field of a raw tuple
    // (whose kind is known only when it is read) costs no call.
    ask_for! {
        deserialize_u8 U8 visit_u8 u8,
        deserialize_u16 U16 visit_u16 u16,
        deserialize_u32 U32 visit_u32 u32,
        deserialize_u64 U64 visit_u64 u64,
        deserialize_i8 I8 visit_i8 (u8 as i8),
        deserialize_i16 I16 visit_i16 (u16 as i16),
        deserialize_i32 I32 visit_i32 (u32 as i32),
        deserialize_i64 I64 visit_i64 (i64),
    }

    #[inline(always)]
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        if self.prim == Prim::F32 {
            return v.visit_f32(f32::from_bits(self.bits as u32));
        }
        self.other(v)
    }

    #[inline(always)]
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        if self.prim == Prim::F64 {
            return v.visit_f64(f64::from_bits(self.bits));
        }
        self.other(v)
    }

    #[inline(always)]
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        if self.prim == Prim::Bool && self.bits <= 1 {
            return v.visit_bool(self.bits == 1);
        }
        self.other(v)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl In {
    /// [`de::Deserializer::deserialize_any`], out of line: a number of
    /// another kind than the type asked for.
    #[cold]
    #[inline(never)]
    fn other<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, de::value::Error> {
        de::Deserializer::deserialize_any(self, v)
    }
}

/// `deserialize_$f` of [`In`]: `$visit` of the bits as `$conv` when the
/// number is of kind `$prim`, else [`In::other`].
macro_rules! ask_for {
    ($($f:ident $prim:ident $visit:ident $conv:tt),* $(,)?) => {$(
        #[inline(always)]
        fn $f<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
            if self.prim == Prim::$prim {
                return v.$visit(ask_for!(@conv self.bits, $conv));
            }
            self.other(v)
        }
    )*};
    (@conv $b:expr, ($t:ty as $u:ty)) => { $b as $t as $u };
    (@conv $b:expr, ($t:ty)) => { $b as $t };
    (@conv $b:expr, $t:ty) => { $b as $t };
}
use ask_for;

/// The fields of a raw tuple, one by one: each as the number [`In`]
/// offers, `None` after the last.
trait FieldSource {
    fn next(&mut self) -> Result<Option<In>, de::value::Error>;
    /// How many are left.
    fn left(&self) -> usize;
}

/// The deserializer of a raw tuple's fields (from [`SameIn`] or
/// [`TupleIn`]): a sequence whatever the type asks for (a tuple, an array,
/// a struct read as postcard reads one, or any sequence).
struct FieldsDe<F>(F);

impl<'de, F: FieldSource> de::Deserializer<'de> for FieldsDe<F> {
    type Error = de::value::Error;

    #[inline(always)]
    fn deserialize_any<V: Visitor<'de>>(mut self, v: V) -> Result<V::Value, Self::Error> {
        // (A `SeqAccess` of its own passed by value: serde's one for `&mut`
        // of one was a call a field.)
        let value = v.visit_seq(FieldsSeq(&mut self.0))?;
        // A type that read fewer fields than the entry has is not the type
        // that wrote it.
        if self.0.left() == 0 {
            Ok(value)
        } else {
            Err(de::Error::custom("a raw tuple with fields left over"))
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The fields of a [`FieldsDe`] as serde's sequence.
struct FieldsSeq<'a, F>(&'a mut F);

impl<'de, F: FieldSource> de::SeqAccess<'de> for FieldsSeq<'_, F> {
    type Error = de::value::Error;

    #[inline(always)]
    fn next_element_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        match self.0.next()? {
            Some(number) => seed.deserialize(number).map(Some),
            None => Ok(None),
        }
    }

    // (serde's own is left out of line: a call a field.)
    #[inline(always)]
    fn next_element<T: de::Deserialize<'de>>(&mut self) -> Result<Option<T>, Self::Error> {
        self.next_element_seed(std::marker::PhantomData)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.left())
    }
}

/// The fields of a raw tuple all of kind `K` (`W` bytes each), read by
/// [`Shape::get_same`]: each a fixed-size copy, offered as that kind with no
/// test of its own.
struct SameIn<'a, const K: u8, const W: usize> {
    /// The bytes of the fields not yet read: exactly theirs.
    fields: &'a [u8],
}

impl<const K: u8, const W: usize> FieldSource for SameIn<'_, K, W> {
    #[inline(always)]
    fn next(&mut self) -> Result<Option<In>, de::value::Error> {
        let Some((bytes, fields)) = self.fields.split_first_chunk::<W>() else {
            return Ok(None);
        };
        self.fields = fields;
        let mut le = [0u8; 8];
        le[..W].copy_from_slice(bytes);
        let (prim, bits) = (ALL[usize::from(K)], u64::from_le_bytes(le));
        Ok(Some(In { prim, bits }))
    }

    fn left(&self) -> usize {
        self.fields.len() / W
    }
}

/// The fields of a raw tuple whose kinds may differ, read by [`Shape::get`]:
/// each through its kind's width and mask.
struct TupleIn<'a> {
    /// The kinds of the fields not yet read, four bits each from the low end.
    kinds: u64,
    /// How many fields are not yet read.
    left: usize,
    /// Their bytes, and maybe more after them (the next entries).
    fields: &'a [u8],
}

impl FieldSource for TupleIn<'_> {
    #[inline(always)]
    fn next(&mut self) -> Result<Option<In>, de::value::Error> {
        if self.left == 0 {
            return Ok(None);
        }
        let (k, kinds) = ((self.kinds & 15) as u8, self.kinds >> 4);
        // `Shape::of` checked every kind and that the fields' bytes are
        // there; checked again (two predictable branches), not trusted.
        let Some(&(prim, width, mask)) = FIELD.get(usize::from(k)) else {
            return Err(de::Error::custom("a raw tuple's field of no kind"));
        };
        let Some(after) = self.fields.get(width..) else {
            return Err(de::Error::custom("a raw tuple's field cut short"));
        };
        let bits = match self.fields.first_chunk::<8>() {
            // Eight bytes, masked to the field's: a copy of a size the
            // compiler knows (`width` bytes would be a call to memcpy).
            Some(eight) => u64::from_le_bytes(*eight) & mask,
            None => {
                let mut le = [0u8; 8];
                le[..width].copy_from_slice(&self.fields[..width]);
                u64::from_le_bytes(le)
            }
        };
        (self.kinds, self.left, self.fields) = (kinds, self.left - 1, after);
        Ok(Some(In { prim, bits }))
    }

    fn left(&self) -> usize {
        self.left
    }
}

/// Each kind (by its index), its width and the mask of its bytes in a word:
/// one load a field of a raw tuple whose kinds differ.
const FIELD: [(Prim, usize, u64); ALL.len()] = {
    let mut t = [(Prim::U8, 0, 0); ALL.len()];
    let mut k = 0;
    while k < ALL.len() {
        let (prim, width) = (ALL[k], ALL[k].width());
        t[k] = (prim, width, u64::MAX >> (64 - 8 * width));
        k += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let mut out = Vec::new();
        assert!(put(&v, &mut out), "{v:?} is raw");
        let prim = Prim::of_tag(out[0]).unwrap();
        assert_eq!(out.len(), 1 + prim.width());
        let (back, rest) = get::<T>(prim, &out[1..]).unwrap();
        assert_eq!(back, v);
        assert!(rest.is_empty());
        // The entry made for one value (a single task's argument, a map's
        // loop) holds the same bytes, and nothing past them.
        let e = entry(&v).unwrap();
        assert_eq!(&e.bytes[..e.len], &out[..]);
        assert!(e.bytes[e.len..].iter().all(|&b| b == 0), "{:?}", e.bytes);
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Meters(f64);

    #[test]
    fn primitives_and_newtypes_round_trip_raw() {
        round_trip(0u8);
        round_trip(u16::MAX);
        round_trip(0xdead_beef_u32);
        round_trip(u64::MAX);
        round_trip(-1i8);
        round_trip(i16::MIN);
        round_trip(-7i32);
        round_trip(i64::MIN);
        round_trip(1.5f32);
        round_trip(-0.25f64);
        round_trip(Meters(3.0));
        round_trip(true);
        round_trip(false);
    }

    #[test]
    fn a_bool_is_a_byte_of_0_or_1_and_nothing_else() {
        let mut out = Vec::new();
        assert!(put(&true, &mut out));
        assert_eq!(out, [BASE + Prim::Bool as u8, 1]);
        // Any other byte is no bool; a number is no bool, nor a bool a number.
        assert!(get::<bool>(Prim::Bool, &[2]).is_none());
        assert!(get::<bool>(Prim::U8, &[1]).is_none());
        assert!(get::<u8>(Prim::Bool, &[1]).is_none());
        // The same in a tuple, whose fields of one kind are read another way.
        let e = tuple_round_trip((7u64, true, false));
        let mut bad = e.clone();
        *bad.last_mut().unwrap() = 2;
        assert!(get_tuple::<(u64, bool, bool)>(&bad).is_none());
        let e = tuple_round_trip([true, false, true]);
        let mut bad = e.clone();
        *bad.last_mut().unwrap() = 2;
        assert!(get_tuple::<[bool; 3]>(&bad).is_none());
    }

    #[test]
    fn anything_else_is_not_written() {
        let mut out = Vec::new();
        assert!(!put(&(1u64, "two"), &mut out));
        assert!(!put(&((1u8, 2u8), 3u8), &mut out));
        assert!(!put(&Mixed(MAX_FIELDS + 1), &mut out));
        assert!(!put(&Bytes(MAX_FIELD_BYTES + 1), &mut out));
        assert!(!put(&[7u64; MAX_FIELD_BYTES / 8 + 1], &mut out));
        assert!(!put(&[0u32; 0], &mut out));
        assert!(!put(&Short, &mut out));
        assert!(!put(&(1u8, Some(2u8)), &mut out));
        assert!(!put("text", &mut out));
        assert!(!put(&Some(1u8), &mut out));
        assert!(!put(&vec![1u8], &mut out));
        assert!(out.is_empty());
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Point {
        x: f64,
        y: f32,
        id: Meters,
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Pair(i8, u64);

    /// A struct whose `Serialize` leaves a field out when it is 0 (and
    /// declares one field fewer), and whose `Deserialize` defaults it.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Sparse {
        a: u32,
        #[serde(skip_serializing_if = "is_zero", default)]
        b: u32,
    }

    fn is_zero(v: &u32) -> bool {
        *v == 0
    }

    /// A tuple of this many fields of two kinds in turn (`u8`, `u16`, ...).
    struct Mixed(usize);

    impl Serialize for Mixed {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeTuple;
            let mut t = s.serialize_tuple(self.0)?;
            for k in 0..self.0 {
                if k % 2 == 0 {
                    t.serialize_element(&(k as u8))?;
                } else {
                    t.serialize_element(&(k as u16))?;
                }
            }
            t.end()
        }
    }

    /// A tuple of this many `7u8`s (serde's arrays stop at 32).
    struct Bytes(usize);

    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeTuple;
            let mut t = s.serialize_tuple(self.0)?;
            for _ in 0..self.0 {
                t.serialize_element(&7u8)?;
            }
            t.end()
        }
    }

    /// A tuple whose `Serialize` declares more fields than it writes.
    struct Short;

    impl Serialize for Short {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeTuple;
            let mut t = s.serialize_tuple(3)?;
            t.serialize_element(&1u8)?;
            t.serialize_element(&2u8)?;
            t.end()
        }
    }

    /// `v` as a raw tuple: its entry, which reads back as `v`, whole, both
    /// alone and through its shape.
    fn tuple_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        v: T,
    ) -> Vec<u8> {
        let mut out = vec![0xaa];
        assert!(put(&v, &mut out), "{v:?} is raw");
        let entry = out.split_off(1);
        let (back, rest) = get_tuple::<T>(&entry).unwrap();
        assert_eq!(back, v);
        assert!(rest.is_empty());
        let shape = Shape::of(&entry).unwrap();
        assert_eq!(shape.stride, entry.len());
        // Up to MAX_FIELDS a TUPLE, more a SAME; fields of one kind read by
        // the loop made for the kind, any other through their kinds.
        assert_eq!(
            entry[0],
            if usize::from(entry[1]) <= MAX_FIELDS {
                TUPLE
            } else {
                SAME
            }
        );
        match shape.same {
            Some(prim) => {
                let (back, _) = by_kind!(prim, |K, W| shape.get_same::<T, K, W>(&entry)).unwrap();
                assert_eq!(back, v);
            }
            None => assert_eq!(shape.get::<T>(&entry).unwrap().0, v),
        }
        assert!(entry_of(&v).is_none(), "an Entry takes no tuple");
        entry
    }

    fn entry_of<T: Serialize>(v: &T) -> Option<Entry> {
        entry(v)
    }

    #[test]
    fn tuples_of_numbers_round_trip_raw() {
        // Tag, count, kinds (four bits each, from the low end), then the
        // fields' bytes, little-endian.
        let e = tuple_round_trip([3u16, 4, 5]);
        assert_eq!(e, [TUPLE, 3, 0x11, 0x01, 3, 0, 4, 0, 5, 0]);
        // (A TUPLE of one kind reads through its kinds too.)
        assert_eq!(
            Shape::of(&e).unwrap().get::<[u16; 3]>(&e).unwrap().0,
            [3, 4, 5]
        );
        let e = tuple_round_trip((1u64, -2i16));
        assert_eq!(e, [TUPLE, 2, 0x53, 1, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff]);
        // More than MAX_FIELDS, all of one kind: tag, count, the kind once.
        let e = tuple_round_trip([9u8; 32]);
        assert_eq!(e[..3], [SAME, 32, Prim::U8 as u8]);
        assert_eq!(e[3..], [9; 32]);
        // (Which keeps no kind a field for the reader of mixed kinds.)
        assert!(Shape::of(&e).unwrap().get::<Vec<u8>>(&e).is_none());
        tuple_round_trip((7u8,));
        tuple_round_trip((1.5f32, u64::MAX, i32::MIN, 3u16, -1i64, 0.25f64));
        tuple_round_trip([-1i16; MAX_FIELD_BYTES / 2]);
        let mut out = Vec::new();
        assert!(put(&Bytes(MAX_FIELD_BYTES), &mut out));
        assert_eq!(out.len(), 3 + MAX_FIELD_BYTES);
        assert_eq!(get_tuple::<Vec<u8>>(&out).unwrap().0, [7; MAX_FIELD_BYTES]);
        tuple_round_trip([u64::MAX; MAX_FIELD_BYTES / 8]);
        tuple_round_trip((0.5f64, 1.5f64));
        tuple_round_trip(Pair(-3, 1 << 40));
        tuple_round_trip(Point {
            x: -0.5,
            y: 2.0,
            id: Meters(8.0),
        });
        // Seven fields and more: a head longer than one word; as many of
        // different kinds as there may be.
        tuple_round_trip((1u8, 2u16, 3u32, 4u64, 5i8, 6i16, 7i32, 8i64, 9.0f32));
        let mut out = Vec::new();
        assert!(put(&Mixed(MAX_FIELDS), &mut out));
        assert_eq!((out[0], out.len()), (TUPLE, 2 + 8 + 8 + 16));
        let back = get_tuple::<Vec<u16>>(&out).unwrap().0;
        assert_eq!(back, (0..16).collect::<Vec<u16>>());
        // A struct that leaves out a field (and says so) is a tuple of the
        // others, which its `Deserialize` reads as it would postcard's.
        assert_eq!(tuple_round_trip(Sparse { a: 1, b: 2 })[1], 2);
        assert_eq!(tuple_round_trip(Sparse { a: 1, b: 0 })[1], 1);
        // A tuple whose kinds differ only in its last field past the
        // sixteenth has too many: postcard.
        assert!(!put(&(Mixed(1), [0u8; 16]), &mut Vec::new()));
    }

    #[test]
    fn a_raw_tuple_reads_as_any_type_of_those_fields_only() {
        let e = tuple_round_trip((5u64, 6u64));
        // Any sequence of such numbers takes it; a number, fewer or more
        // fields, or fields of a kind the type refuses do not.
        assert_eq!(get_tuple::<Vec<u64>>(&e).unwrap().0, [5, 6]);
        assert_eq!(get_tuple::<[u32; 2]>(&e).unwrap().0, [5, 6]);
        assert!(get_tuple::<u64>(&e).is_none());
        assert!(get_tuple::<(u64,)>(&e).is_none());
        assert!(get_tuple::<(u64, u64, u64)>(&e).is_none());
        assert!(get_tuple::<(u64, String)>(&e).is_none());
        let big = tuple_round_trip((1u8, 300u16));
        assert!(get_tuple::<(u8, u8)>(&big).is_none());
        // Another shape is not this one's, even when the type would take it.
        let shape = Shape::of(&e).unwrap();
        let same = |e: &[u8]| {
            by_kind!(Prim::U64, |K, W| shape.get_same::<(u64, u64), K, W>(e)).map(|(v, _)| v)
        };
        for other in [
            tuple_round_trip((5u32, 6u64)),
            tuple_round_trip((5i64, 6u64)),
            tuple_round_trip((5i64, 6i64)),
        ] {
            assert!(same(&other).is_none());
            assert_eq!(get_tuple::<(u64, u64)>(&other).unwrap().0, (5, 6));
        }
        assert_eq!(same(&e), Some((5, 6)));
    }

    #[test]
    fn a_malformed_raw_tuple_is_refused() {
        let good = tuple_round_trip((1u32, 2u8));
        let refused =
            |bytes: &[u8]| Shape::of(bytes).is_none() && get_tuple::<(u32, u8)>(bytes).is_none();
        // Cut short anywhere.
        for len in 0..good.len() {
            assert!(refused(&good[..len]), "{len} bytes");
        }
        // No fields, more than a TUPLE has, a kind that is none (in either
        // half of the kinds' byte), another tag.
        for (at, byte) in [(1, 0), (1, MAX_FIELDS as u8 + 1), (2, 0x0b), (2, 0xb2)] {
            let mut bad = [good.clone(), vec![0; 200]].concat();
            bad[at] = byte;
            assert!(refused(&bad), "byte {at} = {byte:#x}");
        }
        let mut bad = good.clone();
        bad[0] = SAME + 1;
        assert!(refused(&bad));
        // A kind that says more bytes than there are.
        let mut bad = good.clone();
        bad[2] = Prim::U64 as u8;
        assert!(refused(&bad));
        // Bits past an odd count's last kind.
        let odd = tuple_round_trip((1u32, 2u8, 3u8));
        assert_eq!(odd[3], 0x00);
        let mut bad = odd.clone();
        bad[3] = 0x10;
        assert!(Shape::of(&bad).is_none());
        // Fields the type does not read to the end.
        assert!(get_tuple::<(u32,)>(&good).is_none());
        // The same for a SAME: cut short, no fields, more bytes than a raw
        // tuple has, a kind that is none.
        let mut good = Vec::new();
        assert!(put(&Bytes(20), &mut good));
        assert_eq!(good[0], SAME);
        let refused =
            |bytes: &[u8]| Shape::of(bytes).is_none() && get_tuple::<Vec<u8>>(bytes).is_none();
        for len in 0..good.len() {
            assert!(refused(&good[..len]), "{len} bytes");
        }
        for (at, byte) in [(1, 0), (1, 65), (2, ALL.len() as u8), (2, Prim::U64 as u8)] {
            let mut bad = [good.clone(), vec![0; 200]].concat();
            bad[at] = byte;
            assert!(refused(&bad), "byte {at} = {byte}");
        }
        let mut bad = good.clone();
        bad[2] = Prim::U16 as u8;
        assert!(refused(&bad));
        assert!(get_tuple::<[u8; 19]>(&good).is_none());
    }

    #[test]
    fn a_run_of_tuples_reads_past_each_entry_only_its_own_fields() {
        // Entries of a short last field back to back: each field is read as
        // eight bytes where eight are there, masked to its width.
        let mut out = Vec::new();
        for k in 0..5u32 {
            assert!(put(&(k, k as u8), &mut out));
        }
        let shape = Shape::of(&out).unwrap();
        let mut rest = &out[..];
        for k in 0..5u32 {
            let (v, after) = shape.get::<(u32, u8)>(rest).unwrap();
            assert_eq!(v, (k, k as u8));
            rest = after;
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn a_loop_made_for_one_kind_reads_that_kind_only() {
        let mut out = Vec::new();
        put(&-5i16, &mut out);
        put(&7u64, &mut out);
        let prim = Prim::of_tag(out[0]).unwrap();
        let (v, rest) = by_kind!(prim, |K, W| get_known::<i16, K, W>(&out)).unwrap();
        assert_eq!(v, -5);
        // The next entry is another kind: refused, for the general path.
        assert!(by_kind!(prim, |K, W| get_known::<i16, K, W>(rest)).is_none());
        let prim = Prim::of_tag(rest[0]).unwrap();
        assert_eq!(
            by_kind!(prim, |K, W| get_known::<u64, K, W>(rest))
                .unwrap()
                .0,
            7
        );
        // Short, or too large for the type.
        assert!(by_kind!(prim, |K, W| get_known::<u64, K, W>(&rest[..5])).is_none());
        let mut big = Vec::new();
        put(&300u64, &mut big);
        assert!(by_kind!(prim, |K, W| get_known::<u8, K, W>(&big)).is_none());
    }

    #[test]
    fn a_short_or_foreign_value_is_refused() {
        assert!(get::<u64>(Prim::U64, &[1, 2, 3]).is_none());
        // A u64 too large for a u8: the type's own range check refuses it.
        assert!(get::<u8>(Prim::U64, &300u64.to_le_bytes()).is_none());
        assert_eq!(get::<u64>(Prim::U8, &[7]).unwrap().0, 7);
        assert!(Prim::of_tag(TUPLE).is_none() && Prim::of_tag(3).is_none());
    }
}
