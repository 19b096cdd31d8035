//! [`SharedDict`]: Python's `Manager().dict()` as a fixed-capacity hash map in
//! shared memory, under a process-shared lock.

use std::time::Duration;

use multiproc_shm::{Location, Segment, Shared, ShmSafe};

use crate::{Error, LockError, Mutex, MutexGuard, Result};

const EMPTY: u32 = 0;
const FULL: u32 = 1;
const TOMBSTONE: u32 = 2;

/// One slot: key and value bytes with their lengths. `state` is written last on
/// insert, so a writer killed mid-insert leaves an empty slot, never half a key.
#[repr(C)]
struct Entry<const K: usize, const V: usize> {
    state: u32,
    klen: u32,
    vlen: u32,
    /// When its key came in (the table's `next` then): entries are listed by
    /// it, in insertion order, as Python's `dict` lists them.
    order: u32,
    hash: u64,
    key: [u8; K],
    val: [u8; V],
}

/// The table behind the lock.
#[repr(C)]
pub struct Table<const CAP: usize, const K: usize, const V: usize> {
    len: u32,
    tombstones: u32,
    /// The `order` of the next new key.
    next: u32,
    reserved: u32,
    entries: [Entry<K, V>; CAP],
}

// SAFETY: #[repr(C)] of integers and byte arrays; every bit pattern is checked
// before use (state, lengths), so any bytes are a valid table.
unsafe impl<const K: usize, const V: usize> ShmSafe for Entry<K, V> {}
// SAFETY: as above.
unsafe impl<const CAP: usize, const K: usize, const V: usize> ShmSafe for Table<CAP, K, V> {}

// The layout every process must agree on: a 24-byte entry header, then the
// key and value bytes (no padding for 8-aligned sizes); the table's two counts,
// its next order and a reserved word, then its entries.
const _: () = assert!(
    std::mem::size_of::<Entry<16, 16>>() == 24 + 32
        && std::mem::size_of::<Entry<8, 24>>() == 24 + 32
        && std::mem::size_of::<Table<4, 16, 16>>() == 16 + 4 * (24 + 32)
);

/// A hash map of byte strings with room for `CAP` entries, keys of up to `K` bytes
/// and values of up to `V` bytes, in shared memory, under one lock. It lists
/// its entries in insertion order, as Python's `dict` does.
///
/// Every operation takes the lock. Lengths, counts and states read from shared
/// memory are checked before use: a table another process wrote garbage into
/// answers [`Error::Corrupted`] (or a count no larger than the capacity), never
/// reads out of bounds or allocates what a peer wrote. When a process dies holding the
/// lock, the next operation recounts the table and marks it consistent: an insert
/// cut short leaves no entry, an overwrite cut short may leave a torn value.
/// An operation waits for the lock as long as another process holds it, or at
/// most the handle's [`set_timeout`](SharedDict::set_timeout) (then
/// [`Error::Timeout`]).
///
/// # Examples
/// ```
/// use multiproc_sync::SharedDict;
/// let d = SharedDict::<64, 16, 32>::new()?;
/// d.insert("answer", "42")?;
/// assert_eq!(d.get("answer")?.as_deref(), Some(&b"42"[..]));
/// assert_eq!(d.len()?, 1);
/// assert!(d.insert("k".repeat(17), "too long a key").is_err());
/// # Ok::<(), multiproc_sync::Error>(())
/// ```
pub struct SharedDict<const CAP: usize, const K: usize, const V: usize> {
    table: Shared<Mutex<Table<CAP, K, V>>>,
    /// How long this handle's operations wait for the lock (`None`: as long
    /// as it takes).
    timeout: Option<Duration>,
}

impl<const CAP: usize, const K: usize, const V: usize> SharedDict<CAP, K, V> {
    /// An empty dictionary in a new anonymous segment (shared with children forked later).
    ///
    /// # Errors
    /// [`Error::Shm`] when the segment cannot be made; [`Error::OutOfRange`]
    /// for a capacity of 0 or above `u32::MAX`.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<16, 8, 8>::new()?;
    /// assert!(d.is_empty()?);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Self::new_in(Location::Anonymous)
    }

    /// An empty dictionary in a new named segment.
    ///
    /// # Errors
    /// As for [`new`](SharedDict::new), plus the naming errors of [`Error::Shm`].
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-dict-{}", std::process::id());
    /// let d = multiproc_sync::SharedDict::<16, 8, 8>::create(&name)?;
    /// d.insert("k", "v")?;
    /// let other = multiproc_sync::SharedDict::<16, 8, 8>::open(&name)?;
    /// assert_eq!(other.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn create(name: &str) -> Result<Self> {
        Self::new_in(Location::Named(name))
    }

    /// An empty dictionary in a new segment at `location`.
    ///
    /// # Errors
    /// As for [`new`](SharedDict::new).
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<4, 4, 4>::new_in(multiproc_shm::Location::Memfd)?;
    /// assert_eq!(d.capacity(), 4);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>) -> Result<Self> {
        if CAP == 0 || CAP > u32::MAX as usize {
            return Err(Error::OutOfRange {
                what: "a dictionary's capacity",
                value: CAP as u64,
                min: 1,
                max: u64::from(u32::MAX),
            });
        }
        // All zeroes: an unlocked mutex around an empty table.
        Ok(SharedDict {
            table: Shared::zeroed_in(location)?,
            timeout: None,
        })
    }

    /// Opens the named dictionary `name` (same `CAP`, `K`, `V`, or `LayoutMismatch`).
    ///
    /// # Errors
    /// [`Error::Shm`].
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_sync::SharedDict::<4, 4, 4>::open("no-such-dict-here").is_err());
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Self> {
        Ok(SharedDict {
            table: Shared::open(name)?,
            timeout: None,
        })
    }

    /// The segment underneath.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<4, 4, 4>::new()?;
    /// assert!(d.segment().len() > 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        self.table.segment()
    }

    /// The number of entries it can hold.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::SharedDict::<32, 4, 4>::new()?.capacity(), 32);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        CAP
    }

    /// Makes every operation of this handle wait at most `timeout` for the
    /// dictionary's lock and answer [`Error::Timeout`] past it (`None`, the
    /// default: wait as long as another process holds it).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let mut d = multiproc_sync::SharedDict::<4, 4, 4>::new()?;
    /// d.set_timeout(Some(Duration::from_millis(100)));
    /// assert_eq!(d.timeout(), Some(Duration::from_millis(100)));
    /// d.insert("k", "v")?;
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// How long this handle's operations wait for the lock (see
    /// [`set_timeout`](SharedDict::set_timeout)).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_sync::SharedDict::<4, 4, 4>::new()?.timeout(), None);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn lock(&self) -> Result<MutexGuard<'_, Table<CAP, K, V>>> {
        let locked = match self.timeout {
            None => self.table.lock(),
            Some(t) => self.table.lock_timeout(t),
        };
        match locked {
            Ok(g) => Ok(g),
            Err(LockError::OwnerDied(mut g)) => {
                g.repair();
                g.mark_consistent();
                Ok(g)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Inserts or replaces; returns the previous value.
    ///
    /// # Errors
    /// [`Error::TooLong`] for a key over `K` or a value over `V` bytes;
    /// [`Error::Full`] when a new key finds no free slot; [`Error::Corrupted`].
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// assert_eq!(d.insert("a", "1")?, None);
    /// assert_eq!(d.insert("a", "2")?, Some(b"1".to_vec()));
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        let (key, value) = (key.as_ref(), value.as_ref());
        check_len("key", key, K)?;
        check_len("value", value, V)?;
        self.lock()?.insert(key, value)
    }

    /// The value for `key`, copied out.
    ///
    /// # Errors
    /// [`Error::Corrupted`], and the lock's errors.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "1")?;
    /// assert_eq!(d.get("a")?, Some(b"1".to_vec()));
    /// assert_eq!(d.get("b")?, None);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let table = self.lock()?;
        Ok(match table.find(key.as_ref())? {
            Some(i) => Some(table.entries[i].value()?.to_vec()),
            None => None,
        })
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// As for [`get`](SharedDict::get).
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "")?;
    /// assert!(d.contains_key("a")?);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.lock()?.find(key.as_ref())?.is_some())
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// As for [`get`](SharedDict::get).
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "1")?;
    /// assert_eq!(d.remove("a")?, Some(b"1".to_vec()));
    /// assert_eq!(d.len()?, 0);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let mut table = self.lock()?;
        let Some(i) = table.find(key.as_ref())? else {
            return Ok(None);
        };
        let old = table.entries[i].value()?.to_vec();
        table.entries[i].state = TOMBSTONE;
        table.len = table.len.saturating_sub(1);
        table.tombstones = table.tombstones.saturating_add(1);
        Ok(Some(old))
    }

    /// The number of entries.
    ///
    /// # Errors
    /// The lock's errors.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "1")?;
    /// assert_eq!(d.len()?, 1);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn len(&self) -> Result<usize> {
        Ok(self.lock()?.count())
    }

    /// Whether it is empty.
    ///
    /// # Errors
    /// The lock's errors.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_sync::SharedDict::<8, 8, 8>::new()?.is_empty()?);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Every entry, copied out under one lock (Python's `items()`), in
    /// insertion order as Python's `dict`: a key written again keeps its
    /// place, one removed and inserted again goes last.
    ///
    /// # Errors
    /// [`Error::Corrupted`], and the lock's errors.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "1")?;
    /// d.insert("b", "2")?;
    /// d.insert("a", "3")?;
    /// assert_eq!(d.items()?, [(b"a".to_vec(), b"3".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn items(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let table = self.lock()?;
        // The count is a peer's word: no more than the table can hold.
        let mut out = Vec::with_capacity(table.count());
        for e in &table.entries {
            match e.state {
                FULL => out.push((e.order, (e.key()?.to_vec(), e.value()?.to_vec()))),
                EMPTY | TOMBSTONE => {}
                s => return Err(corrupted_state(s)),
            }
        }
        drop(table);
        // Stable: entries whose orders a peer made equal stay in slot order.
        out.sort_by_key(|&(order, _)| order);
        Ok(out.into_iter().map(|(_, item)| item).collect())
    }

    /// The keys, copied out (Python's `keys()`), in insertion order, as
    /// [`items`](SharedDict::items).
    ///
    /// # Errors
    /// As for [`items`](SharedDict::items).
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "1")?;
    /// assert_eq!(d.keys()?, [b"a".to_vec()]);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.items()?.into_iter().map(|(k, _)| k).collect())
    }

    /// The values, copied out (Python's `values()`), in insertion order, as
    /// [`items`](SharedDict::items).
    ///
    /// # Errors
    /// As for [`items`](SharedDict::items).
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "1")?;
    /// assert_eq!(d.values()?, [b"1".to_vec()]);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn values(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.items()?.into_iter().map(|(_, v)| v).collect())
    }

    /// The value for `key`, inserting `default` first if the key is absent
    /// (Python's `setdefault`), under one lock: of processes that race to
    /// set a key this way, one sets it and every one reads its value (a
    /// [`get`](SharedDict::get) then an [`insert`](SharedDict::insert) would
    /// let each overwrite the others'). `default` is not looked at when the
    /// key is there.
    ///
    /// # Errors
    /// [`Error::TooLong`] for a key over `K` bytes, or a `default` over `V`
    /// that must be inserted; [`Error::Full`] when it finds no free slot;
    /// [`Error::Corrupted`], and the lock's errors.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// assert_eq!(d.setdefault("a", "first")?, b"first");
    /// assert_eq!(d.setdefault("a", "second")?, b"first");
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn setdefault(&self, key: impl AsRef<[u8]>, default: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        let (key, default) = (key.as_ref(), default.as_ref());
        check_len("key", key, K)?;
        let mut table = self.lock()?;
        if let Some(i) = table.find(key)? {
            return Ok(table.entries[i].value()?.to_vec());
        }
        check_len("value", default, V)?;
        table.insert(key, default)?;
        Ok(default.to_vec())
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// The lock's errors.
    ///
    /// # Examples
    /// ```
    /// let d = multiproc_sync::SharedDict::<8, 8, 8>::new()?;
    /// d.insert("a", "1")?;
    /// d.clear()?;
    /// assert!(d.is_empty()?);
    /// # Ok::<(), multiproc_sync::Error>(())
    /// ```
    pub fn clear(&self) -> Result<()> {
        let mut table = self.lock()?;
        for e in table.entries.iter_mut() {
            e.state = EMPTY;
        }
        table.len = 0;
        table.tombstones = 0;
        table.next = 0;
        Ok(())
    }
}

impl<const CAP: usize, const K: usize, const V: usize> std::fmt::Debug for SharedDict<CAP, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDict")
            .field("capacity", &CAP)
            .field("segment", self.segment())
            .finish()
    }
}

fn check_len(what: &'static str, bytes: &[u8], max: usize) -> Result<()> {
    if bytes.len() > max {
        return Err(Error::TooLong {
            what,
            len: bytes.len(),
            max,
        });
    }
    Ok(())
}

fn corrupted_state(s: u32) -> Error {
    Error::Corrupted {
        what: "a dictionary slot's state",
        value: u64::from(s),
    }
}

fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl<const K: usize, const V: usize> Entry<K, V> {
    fn key(&self) -> Result<&[u8]> {
        self.key.get(..self.klen as usize).ok_or(Error::Corrupted {
            what: "a dictionary key's length",
            value: u64::from(self.klen),
        })
    }

    fn value(&self) -> Result<&[u8]> {
        self.val.get(..self.vlen as usize).ok_or(Error::Corrupted {
            what: "a dictionary value's length",
            value: u64::from(self.vlen),
        })
    }

    fn set_value(&mut self, value: &[u8]) {
        self.val[..value.len()].copy_from_slice(value);
        self.vlen = value.len() as u32;
    }
}

impl<const CAP: usize, const K: usize, const V: usize> Table<CAP, K, V> {
    /// The entry count as recorded, bounded by the capacity (a peer may have
    /// written any value there).
    fn count(&self) -> usize {
        (self.len as usize).min(CAP)
    }

    /// The slot holding `key`, probing at most CAP slots.
    fn find(&self, key: &[u8]) -> Result<Option<usize>> {
        let h = hash(key);
        for i in 0..CAP {
            let idx = (h as usize).wrapping_add(i) % CAP;
            let e = &self.entries[idx];
            match e.state {
                EMPTY => return Ok(None),
                FULL if e.hash == h && e.key()? == key => return Ok(Some(idx)),
                FULL | TOMBSTONE => {}
                s => return Err(corrupted_state(s)),
            }
        }
        Ok(None)
    }

    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let h = hash(key);
        let mut free = None;
        for i in 0..CAP {
            let idx = (h as usize).wrapping_add(i) % CAP;
            let e = &mut self.entries[idx];
            match e.state {
                EMPTY => {
                    free.get_or_insert(idx);
                    break;
                }
                FULL if e.hash == h && e.key()? == key => {
                    let old = e.value()?.to_vec();
                    e.set_value(value);
                    return Ok(Some(old));
                }
                FULL => {}
                TOMBSTONE => {
                    free.get_or_insert(idx);
                }
                s => return Err(corrupted_state(s)),
            }
        }
        let Some(idx) = free else {
            return Err(Error::Full { capacity: CAP });
        };
        let order = self.take_order();
        let e = &mut self.entries[idx];
        let was_tombstone = e.state == TOMBSTONE;
        e.key[..key.len()].copy_from_slice(key);
        e.klen = key.len() as u32;
        e.set_value(value);
        e.hash = h;
        e.order = order;
        // Last: an insert cut short leaves no entry. A process killed here sees
        // its stores in program order (the processor keeps them so); the fence
        // keeps the compiler from moving the key and value after the state.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        e.state = FULL;
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        self.len = self.len.saturating_add(1);
        if was_tombstone {
            self.tombstones = self.tombstones.saturating_sub(1);
        }
        Ok(None)
    }

    /// The `order` for a new key: the next one, the live entries numbered
    /// again from 0 first in the (rare) case that the count reached its end
    /// (after 2³² - 1 new keys).
    fn take_order(&mut self) -> u32 {
        if self.next == u32::MAX {
            let mut live: Vec<(u32, usize)> = (self.entries.iter().enumerate())
                .filter(|(_, e)| e.state == FULL)
                .map(|(i, e)| (e.order, i))
                .collect();
            live.sort_unstable();
            for (n, &(_, i)) in (0..).zip(&live) {
                self.entries[i].order = n;
            }
            self.next = live.len() as u32;
        }
        let order = self.next;
        // (Saturating: a table of 2³² - 1 entries numbers them again each time.)
        self.next = self.next.saturating_add(1);
        order
    }

    /// After a holder died: turn slots that do not check out into tombstones,
    /// recount, and keep the next order after every live entry's.
    fn repair(&mut self) {
        let (mut len, mut tombstones, mut after) = (0, 0, 0u32);
        for e in self.entries.iter_mut() {
            let sane = e.klen as usize <= K && e.vlen as usize <= V;
            match e.state {
                EMPTY => {}
                FULL if sane => {
                    len += 1;
                    after = after.max(e.order.saturating_add(1));
                }
                _ => {
                    e.state = TOMBSTONE;
                    tombstones += 1;
                }
            }
        }
        self.len = len;
        self.tombstones = tombstones;
        self.next = self.next.max(after);
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    fn keys<const CAP: usize>(d: &SharedDict<CAP, 4, 4>) -> Vec<String> {
        let keys = d.keys().unwrap().into_iter();
        keys.map(|k| String::from_utf8(k).unwrap()).collect()
    }

    /// At the end of the count, the live entries are numbered again from 0
    /// in their order, and new keys still go last.
    #[test]
    fn the_order_is_numbered_again_at_the_end_of_its_count() {
        let d = SharedDict::<8, 4, 4>::new().unwrap();
        for k in ["a", "b", "gone"] {
            d.insert(k, "v").unwrap();
        }
        d.remove("gone").unwrap();
        d.lock().unwrap().next = u32::MAX - 1;
        d.insert("c", "v").unwrap();
        assert_eq!(d.lock().unwrap().next, u32::MAX);
        d.insert("d", "v").unwrap();
        assert_eq!(d.lock().unwrap().next, 4, "a, b, c numbered 0-2, d 3");
        d.insert("a", "w").unwrap();
        d.remove("b").unwrap();
        d.insert("b", "v").unwrap();
        assert_eq!(keys(&d), ["a", "c", "d", "b"]);
    }

    /// The repair after a dead holder puts the next order past every live
    /// entry's, even where a peer wrote it back (a dead holder itself leaves
    /// at most a gap: it takes its order before its entry is whole).
    #[test]
    fn a_repair_keeps_the_next_order_after_every_live_entry() {
        let d = SharedDict::<8, 4, 4>::new().unwrap();
        for k in ["a", "b", "c"] {
            d.insert(k, "v").unwrap();
        }
        {
            let mut t = d.lock().unwrap();
            t.next = 1;
            t.repair();
            assert_eq!(t.next, 3);
        }
        d.insert("d", "v").unwrap();
        assert_eq!(keys(&d), ["a", "b", "c", "d"]);
    }
}
