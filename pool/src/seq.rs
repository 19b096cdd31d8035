//! [`SeqTable`]: the pool's jobs and tasks in flight, keyed by their
//! sequence numbers.
//!
//! The pool hands its numbers out in increasing order and retires them in
//! about that order, so the live keys form a window that slides forward. A
//! hash map scatters neighbouring keys across its table: with 100 000 jobs
//! in flight every lookup of a pipelined `apply_async` was a cache miss
//! (about a sixth of the parent's time, `benches/NOTES.md`). Here the window
//! is a ring indexed by `key - base`, so neighbours are neighbours in memory.
//!
//! A key that stays live while many after it are retired (a handle kept and
//! never taken) would stretch the window without bound; once the window is
//! more than half empty and longer than [`WINDOW_MIN`], its oldest entries
//! move to a hash map on the side, so the ring never holds more than twice
//! the live entries (or [`WINDOW_MIN`]) and each entry moves at most once.
//!
//! A burst (a million `apply_async`s out at once) grows the ring to a million
//! slots, 180 MB of jobs; a ring never gives its room back by itself, and the
//! pool held that memory for as long as it lived, which also made every later
//! `fork` of the process (a `pmap`, a `Process`) copy that many more page
//! table entries. [`SeqTable::trim`] cuts the room to twice what the window
//! needs once it needs a quarter of it or less; the pool calls it when it
//! has been idle a while (`core`'s background thread), so that bursts back
//! to back keep their room rather than grow it again each time.

use std::collections::VecDeque;

use crate::core::SeqMap;

/// The window is never shrunk below this many slots by moving live entries
/// out (small in tests, so that they move often).
const WINDOW_MIN: usize = if cfg!(test) { 16 } else { 1024 };

/// Values keyed by increasing `u64` sequence numbers (see the module).
pub struct SeqTable<V> {
    /// The key of `window[0]`.
    base: u64,
    /// Slot `i` holds the value of key `base + i`, if live.
    window: VecDeque<Option<V>>,
    /// Live entries in `window`.
    live: usize,
    /// Live entries older than `base`.
    old: SeqMap<V>,
}

impl<V> Default for SeqTable<V> {
    fn default() -> SeqTable<V> {
        SeqTable {
            base: 0,
            window: VecDeque::new(),
            live: 0,
            old: SeqMap::default(),
        }
    }
}

impl<V> SeqTable<V> {
    /// Whether nothing is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0 && self.old.is_empty()
    }

    /// How many entries are live.
    pub fn len(&self) -> usize {
        self.live + self.old.len()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        // On the side already (never for the pool, whose keys are new).
        if !self.old.is_empty() {
            if let Some(v) = self.old.get_mut(&key) {
                return Some(std::mem::replace(v, value));
            }
        }
        if self.window.is_empty() && key >= self.base {
            self.base = key;
        }
        if key < self.base {
            return self.old.insert(key, value);
        }
        let at = usize::try_from(key - self.base).unwrap_or(usize::MAX);
        if at == self.window.len() {
            // The pool's case: the next number.
            self.window.push_back(Some(value));
            self.live += 1;
            self.compact();
            return None;
        }
        if at > self.window.len() {
            // A key far past the window (never from the pool, whose keys
            // come one by one): kept on the side rather than a huge ring.
            if at - self.window.len() > WINDOW_MIN.max(self.window.len()) {
                return self.old.insert(key, value);
            }
            self.window.resize_with(at + 1, || None);
        }
        let before = self.window[at].replace(value);
        if before.is_none() {
            self.live += 1;
            self.compact();
        }
        before
    }

    /// The value of `key`, if live.
    pub fn get(&self, key: &u64) -> Option<&V> {
        match self.slot(*key) {
            Some(at) => self.window[at].as_ref(),
            None => self.old.get(key),
        }
    }

    /// The value of `key`, if live, to change.
    pub fn get_mut(&mut self, key: &u64) -> Option<&mut V> {
        match self.slot(*key) {
            Some(at) => self.window[at].as_mut(),
            None => self.old.get_mut(key),
        }
    }

    /// Takes `key`'s value out, if live.
    pub fn remove(&mut self, key: &u64) -> Option<V> {
        let Some(at) = self.slot(*key) else {
            return self.old.remove(key);
        };
        let value = self.window[at].take()?;
        self.live -= 1;
        // Retired from the front: the window slides on past every dead slot.
        self.slide();
        self.compact();
        Some(value)
    }

    /// Drops `key`'s value where it lies, if live (no move out of the
    /// table, for a caller that read what it needs by reference): whether
    /// it was.
    pub fn forget(&mut self, key: &u64) -> bool {
        let Some(at) = self.slot(*key) else {
            return self.old.remove(key).is_some();
        };
        if self.window[at].is_none() {
            return false;
        }
        self.window[at] = None;
        self.live -= 1;
        self.slide();
        self.compact();
        true
    }

    /// Gives back the room a burst left (see the module).
    pub fn trim(&mut self) {
        trim(&mut self.window, WINDOW_MIN);
        if self.old.is_empty() && self.old.capacity() > WINDOW_MIN {
            self.old = SeqMap::default();
        }
    }

    /// The entries it has room for, in the ring and on the side.
    pub fn capacity(&self) -> usize {
        self.window.capacity() + self.old.capacity()
    }

    /// Every live entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let base = self.base;
        self.window
            .iter()
            .enumerate()
            .filter_map(move |(i, v)| Some((base + i as u64, v.as_ref()?)))
            .chain(self.old.iter().map(|(&k, v)| (k, v)))
    }

    /// Every live value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Every live value, to change, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.window
            .iter_mut()
            .filter_map(Option::as_mut)
            .chain(self.old.values_mut())
    }

    /// Takes every entry out, in no particular order.
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, V)> {
        let base = self.base;
        let window = std::mem::take(&mut self.window);
        self.live = 0;
        window
            .into_iter()
            .enumerate()
            .filter_map(move |(i, v)| Some((base + i as u64, v?)))
            .chain(std::mem::take(&mut self.old))
    }

    /// Forgets every entry and gives back the room.
    pub fn clear(&mut self) {
        self.window = VecDeque::new();
        self.live = 0;
        self.old = SeqMap::default();
    }

    /// Whether `key` is live.
    pub fn contains_key(&self, key: &u64) -> bool {
        self.get(key).is_some()
    }

    /// Keeps only the entries for which `keep` (given each key and value, in
    /// no particular order) says so.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &mut V) -> bool) {
        let base = self.base;
        for (i, slot) in self.window.iter_mut().enumerate() {
            if slot.as_mut().is_some_and(|v| !keep(base + i as u64, v)) {
                *slot = None;
                self.live -= 1;
            }
        }
        while let Some(None) = self.window.front() {
            self.window.pop_front();
            self.base += 1;
        }
        self.old.retain(|&k, v| keep(k, v));
        self.compact();
    }

    /// Where `key` is in the window, if it is in the window's range.
    fn slot(&self, key: u64) -> Option<usize> {
        let at = usize::try_from(key.checked_sub(self.base)?).ok()?;
        (at < self.window.len()).then_some(at)
    }

    /// Moves the oldest entries to the side while the window is more than
    /// half empty and longer than [`WINDOW_MIN`].
    fn compact(&mut self) {
        while self.window.len() > WINDOW_MIN && self.live * 2 < self.window.len() {
            if let Some(Some(value)) = self.window.pop_front() {
                self.live -= 1;
                self.old.insert(self.base, value);
            }
            self.base += 1;
            self.slide();
        }
    }

    /// Drops the dead slots at the front of the window. In place: a
    /// `pop_front` an empty slot copied the whole slot out (a job's is 152
    /// bytes) only to drop it.
    fn slide(&mut self) {
        let dead = self.window.iter().take_while(|v| v.is_none()).count();
        if dead > 0 {
            self.window.drain(..dead);
            self.base += dead as u64;
        }
    }
}

/// Gives back most of `ring`'s room when it uses a quarter of it or less,
/// keeping room for twice its length (at least `floor` slots), so that a
/// ring about to grow again is not cut to the bone.
pub(crate) fn trim<T>(ring: &mut VecDeque<T>, floor: usize) {
    let need = ring.len().max(floor);
    if ring.capacity() / 4 > need {
        ring.shrink_to(2 * need);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert the next key (as the pool does), or one `skip` further on.
        Next {
            skip: u16,
        },
        /// Remove the live key at this rank (modulo the live count).
        Remove(usize),
        /// Insert again at a live key of this rank.
        Replace(usize),
        /// Forget (drop in place) the live key at this rank.
        Forget(usize),
        Clear,
        Drain,
        /// Keep the entries whose value modulo this is not 1 (and bump
        /// what is kept), as the MPI pool forgets a job's chunks.
        Retain(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u16..3).prop_map(|skip| Op::Next { skip }),
            1 => Just(Op::Next { skip: 40 }),
            6 => any::<usize>().prop_map(Op::Remove),
            1 => any::<usize>().prop_map(Op::Replace),
            3 => any::<usize>().prop_map(Op::Forget),
            1 => Just(Op::Clear),
            1 => Just(Op::Drain),
            1 => (2u64..5).prop_map(Op::Retain),
        ]
    }

    fn same(t: &SeqTable<u64>, m: &BTreeMap<u64, u64>) -> Result<(), TestCaseError> {
        prop_assert_eq!(t.len(), m.len());
        prop_assert_eq!(t.is_empty(), m.is_empty());
        let mut all: Vec<(u64, u64)> = t.iter().map(|(k, &v)| (k, v)).collect();
        all.sort_unstable();
        let want: Vec<(u64, u64)> = m.iter().map(|(&k, &v)| (k, v)).collect();
        prop_assert_eq!(all, want);
        // The window holds at most twice the live entries, or WINDOW_MIN;
        // trimmed, it keeps room for at most four times what it holds.
        prop_assert!(t.window.len() <= (2 * t.live).max(WINDOW_MIN) + 1);
        let mut trimmed = SeqTable {
            base: t.base,
            window: t.window.clone(),
            live: t.live,
            old: t.old.clone(),
        };
        trimmed.window.reserve(4 * t.window.len() + 4 * WINDOW_MIN);
        trimmed.trim();
        prop_assert!(trimmed.window.capacity() <= 4 * t.window.len().max(WINDOW_MIN));
        prop_assert_eq!(trimmed.iter().count(), m.len());
        Ok(())
    }

    proptest! {
        /// Any sequence of the pool's operations leaves the table holding
        /// what a map would, with its window bounded.
        #[test]
        fn acts_as_a_map(ops in proptest::collection::vec(op(), 1..800)) {
            let mut t = SeqTable::default();
            let mut m = BTreeMap::new();
            let mut next = 7u64;
            for op in ops {
                match op {
                    Op::Next { skip } => {
                        next += u64::from(skip);
                        prop_assert_eq!(t.insert(next, next * 3), None);
                        m.insert(next, next * 3);
                        next += 1;
                    }
                    Op::Remove(r) if !m.is_empty() => {
                        let k = *m.keys().nth(r % m.len()).unwrap();
                        prop_assert_eq!(t.remove(&k), m.remove(&k));
                        prop_assert_eq!(t.remove(&k), None);
                    }
                    Op::Replace(r) if !m.is_empty() => {
                        let k = *m.keys().nth(r % m.len()).unwrap();
                        prop_assert_eq!(t.insert(k, 1), m.insert(k, 1));
                        *t.get_mut(&k).unwrap() += 1;
                        *m.get_mut(&k).unwrap() += 1;
                    }
                    Op::Forget(r) if !m.is_empty() => {
                        let k = *m.keys().nth(r % m.len()).unwrap();
                        prop_assert!(t.forget(&k));
                        m.remove(&k);
                        prop_assert!(!t.forget(&k));
                    }
                    Op::Remove(_) | Op::Replace(_) | Op::Forget(_) => {}
                    Op::Clear => {
                        t.clear();
                        m.clear();
                    }
                    Op::Retain(by) => {
                        let mut seen = Vec::new();
                        t.retain(|k, v| {
                            seen.push(k);
                            *v += 3;
                            *v % by != 1
                        });
                        seen.sort_unstable();
                        prop_assert_eq!(seen, m.keys().copied().collect::<Vec<_>>());
                        m.retain(|_, v| {
                            *v += 3;
                            *v % by != 1
                        });
                    }
                    Op::Drain => {
                        let mut got: Vec<(u64, u64)> = t.drain().collect();
                        got.sort_unstable();
                        let want: Vec<(u64, u64)> = std::mem::take(&mut m).into_iter().collect();
                        prop_assert_eq!(got, want);
                    }
                }
                same(&t, &m)?;
                for k in next.saturating_sub(5)..next + 2 {
                    prop_assert_eq!(t.get(&k), m.get(&k));
                    prop_assert_eq!(t.contains_key(&k), m.contains_key(&k));
                }
            }
            for v in t.values_mut() {
                *v += 1;
            }
            prop_assert_eq!(t.values().count(), m.len());
            prop_assert!(t.iter().all(|(k, &v)| m.get(&k).map(|w| w + 1) == Some(v)));
        }
    }

    /// A forgotten value is dropped, in the window and on the side.
    #[test]
    fn forgetting_drops_the_value() {
        let one = std::rc::Rc::new(());
        let mut t = SeqTable::default();
        for k in 0..3 * WINDOW_MIN as u64 {
            t.insert(k, std::rc::Rc::clone(&one));
        }
        // Keys 1.. only: key 0 keeps the window from sliding, so that the
        // oldest move to the side as the rest are forgotten.
        for k in 1..3 * WINDOW_MIN as u64 {
            assert!(t.forget(&k), "key {k}");
        }
        assert!(!t.forget(&1));
        assert_eq!((t.len(), std::rc::Rc::strong_count(&one)), (1, 2));
        assert_eq!((t.live, t.old.len()), (0, 1), "key 0 moved aside");
        assert!(t.forget(&0));
        assert_eq!((t.len(), std::rc::Rc::strong_count(&one)), (0, 1));
    }

    /// A burst's room goes back once it is taken and the table trimmed (the
    /// pool kept 180 MB for good after a million `apply_async`s), and the
    /// table works on after.
    #[test]
    fn a_burst_taken_gives_its_room_back() {
        let mut t = SeqTable::default();
        for k in 0..100_000u64 {
            t.insert(k, [k; 8]);
        }
        assert!(t.capacity() >= 100_000);
        for k in 0..100_000u64 {
            assert_eq!(t.remove(&k), Some([k; 8]));
        }
        assert!(t.is_empty());
        assert!(t.capacity() >= 100_000, "kept until trimmed");
        t.trim();
        assert!(
            t.capacity() <= 4 * WINDOW_MIN,
            "room for {} kept",
            t.capacity()
        );
        t.insert(100_000, [1; 8]);
        assert_eq!(t.get(&100_000), Some(&[1; 8]));
        // Half taken keeps room for the rest.
        for k in 100_001..200_000u64 {
            t.insert(k, [k; 8]);
        }
        for k in 100_000..150_000u64 {
            t.remove(&k);
        }
        t.trim();
        assert!(t.capacity() >= 50_000);
        assert_eq!(t.get(&199_999), Some(&[199_999; 8]));
    }

    #[test]
    fn a_trimmed_ring_keeps_twice_its_length_and_its_floor() {
        let mut ring: VecDeque<u32> = (0..10_000).collect();
        ring.truncate(100);
        trim(&mut ring, 16);
        assert!((200..400).contains(&ring.capacity()), "{}", ring.capacity());
        assert_eq!(ring.iter().copied().sum::<u32>(), (0..100).sum());
        let before = ring.capacity();
        ring.truncate(60);
        trim(&mut ring, 16);
        assert_eq!(ring.capacity(), before, "more than a quarter used: kept");
        ring.clear();
        trim(&mut ring, 1024);
        assert_eq!(ring.capacity(), before, "within four times the floor: kept");
    }

    #[test]
    fn one_key_kept_while_many_pass_moves_aside() {
        let mut t = SeqTable::default();
        t.insert(0, 0u64);
        for k in 1..100_000 {
            t.insert(k, k);
            t.remove(&k);
        }
        assert_eq!(t.len(), 1);
        assert!(t.window.len() <= WINDOW_MIN + 1, "{}", t.window.len());
        assert_eq!(t.get(&0), Some(&0));
        assert_eq!(t.remove(&0), Some(0));
        assert!(t.is_empty());
    }
}
