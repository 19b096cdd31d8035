//! Primitive numbers as their little-endian bytes, through serde.
//!
//! A value whose `Serialize` is one call for a primitive number (`u64`,
//! `f32`, a newtype around one …) travels as that number's bytes instead of
//! postcard's encoding: a fixed-size copy each way, where postcard's varints
//! cost several nanoseconds an item (most of a trivial map's time). The
//! decision is made per value, by trying: [`put`] writes a value that is a
//! primitive (its [`Prim`] tag, then its bytes) and writes nothing for any
//! other. The reader gets the tag, so it needs no agreement beforehand:
//! [`get`] hands the number to the type's `Deserialize` as a self-describing
//! format would (`deserialize_any`), so a type reads back whatever it wrote.

use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// A primitive number's kind. Its tag in a message is `BASE + kind`.
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
}

/// The first tag of a raw value; tags below it are the caller's.
pub(crate) const BASE: u8 = 16;

const ALL: [Prim; 10] = [
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
];

impl Prim {
    /// The kind of a raw value's tag; `None` for any other byte.
    pub(crate) fn of_tag(tag: u8) -> Option<Prim> {
        ALL.get(usize::from(tag.checked_sub(BASE)?)).copied()
    }

    #[cfg(test)]
    fn width(self) -> usize {
        match self {
            Prim::U8 | Prim::I8 => 1,
            Prim::U16 | Prim::I16 => 2,
            Prim::U32 | Prim::I32 | Prim::F32 => 4,
            Prim::U64 | Prim::I64 | Prim::F64 => 8,
        }
    }
}

/// Writes `value` raw (tag and bytes) if it serializes as one primitive
/// number; whether it did. Writes nothing otherwise.
#[inline(always)]
pub(crate) fn put<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    value.serialize(Out(out)).is_ok()
}

/// A raw entry made apart from any message: its tag and bytes, and how many
/// of the 9 bytes it takes (see [`entry`]).
pub(crate) struct Entry {
    pub(crate) bytes: [u8; 9],
    pub(crate) len: usize,
}

/// `value`'s raw entry, as [`put`] would write it, if it serializes as one
/// primitive number. For loops that write many entries through one pointer
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
trait Sink {
    fn write<const N: usize>(self, entry: [u8; 9]);
}

impl Sink for &mut Vec<u8> {
    #[inline(always)]
    fn write<const N: usize>(self, entry: [u8; 9]) {
        // One capacity check and one length update, where a push and an
        // extend make two of each (this runs for every item of a map).
        self.reserve(1 + N);
        let len = self.len();
        // SAFETY: reserve made room for 1 + N bytes past len; they are
        // written before the length covers them.
        unsafe {
            std::ptr::copy_nonoverlapping(entry.as_ptr(), self.as_mut_ptr().add(len), 1 + N);
            self.set_len(len + 1 + N);
        }
    }
}

impl Sink for &mut Entry {
    #[inline(always)]
    fn write<const N: usize>(self, entry: [u8; 9]) {
        (self.bytes, self.len) = (entry, 1 + N);
    }
}

impl<S: Sink> Out<S> {
    #[inline(always)]
    fn write<const N: usize>(self, prim: Prim, bytes: [u8; N]) -> Result<(), NotRaw> {
        let mut entry = [0u8; 9];
        entry[0] = BASE + prim as u8;
        entry[1..=N].copy_from_slice(&bytes);
        self.0.write::<N>(entry);
        Ok(())
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
    type SerializeTuple = Impossible<(), NotRaw>;
    type SerializeTupleStruct = Impossible<(), NotRaw>;
    type SerializeTupleVariant = Impossible<(), NotRaw>;
    type SerializeMap = Impossible<(), NotRaw>;
    type SerializeStruct = Impossible<(), NotRaw>;
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

    refuse!(
        serialize_bool(bool),
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
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotRaw> {
        Err(NotRaw)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotRaw> {
        Err(NotRaw)
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
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotRaw> {
        Err(NotRaw)
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
    }

    #[test]
    fn anything_else_is_not_written() {
        let mut out = Vec::new();
        assert!(!put(&(1u64, 2u64), &mut out));
        assert!(!put("text", &mut out));
        assert!(!put(&Some(1u8), &mut out));
        assert!(!put(&true, &mut out));
        assert!(!put(&vec![1u8], &mut out));
        assert!(out.is_empty());
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
        assert!(Prim::of_tag(BASE + 10).is_none() && Prim::of_tag(3).is_none());
    }
}
