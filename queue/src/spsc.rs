//! [`SpscQueue`]: a queue of plain-data items with one producer and one
//! consumer at a time, each in any process — a ring that works as a
//! single-producer single-consumer ring does (no compare-and-swap on any
//! path), that either end may sleep on, and whose ends are held by processes
//! that may die.
//!
//! # Positions
//!
//! | word | written by | meaning |
//! |---|---|---|
//! | `tail` | the producer (a plain store) | the next position it fills |
//! | `head` | the consumer (a plain store) | the next position it takes |
//!
//! Positions are 64-bit and never wrap. The slots are `capacity` rounded up
//! to a power of two, so position `p` uses slot `p & (slots − 1)`: no index
//! to keep beside the position, one store fewer a message. The ring still
//! holds at most `capacity`: `head ≤ tail ≤ head + capacity` always; a value
//! read that breaks it was written by a hostile peer and is
//! [`Error::Corrupted`], never an access out of the ring. Each end keeps its own position in its handle and a cached copy
//! of the other's, which it reloads only when the cache says full (empty), as
//! SPSC rings do: a put or get that finds room touches one shared line, the
//! ring's.
//!
//! # The ends
//!
//! | `holder` (per end) | state | next step, by whom |
//! |---|---|---|
//! | `0` ([`NEVER`]) | never taken | [`SpscQueue::producer`] / [`SpscQueue::consumer`] takes it |
//! | a process record | held by that process | its drop releases it; a taker that finds the process dead takes it over |
//! | [`RELEASED`] | given back | taken again; the other end, finding the ring empty (full), answers [`Error::Disconnected`] |
//!
//! A producer that dies between writing a slot and storing `tail` sent
//! nothing (its `put` had not returned); a consumer that dies between copying
//! an item and storing `head` took nothing (its `get` had not returned), and
//! the next consumer takes that item. So nothing is lost and nothing is seen
//! twice by code that got it from `get`: the MPMC queue's `lost` count has no
//! counterpart here.
//!
//! # Sleeping without a barrier on the fast path
//!
//! | end | fast path, after its store of `tail` (`head`) | going to sleep |
//! |---|---|---|
//! | producer | compiler barrier; a look at the consumer's `sleeps` | `sleeps = 1`; [`heavy_barrier`]; a look at `head`; futex wait on `sleeps` |
//! | consumer | compiler barrier; a look at the producer's `sleeps` | `sleeps = 1`; [`heavy_barrier`]; a look at `tail`; futex wait on `sleeps` |
//!
//! A sleeper's store of its flag and its last look at the ring, against the
//! other end's store of its position and its look at the flag, is Dekker's
//! pattern: each side needs a store-load barrier, or both can miss the other's
//! store and the sleeper sleeps on an item. Rings whose waiters sleep put a
//! full barrier after every put and get (about 8-10 ns here, `benches/NOTES.md`).
//! This one makes the sleeping side pay for both: `membarrier(2)`'s
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED` runs a full barrier on every CPU that
//! runs a thread of a process registered for it (each end registers when it
//! takes its end), so the other end's compiler barrier acts as a full one.
//! Where the kernel refuses `membarrier`, an end takes a full fence on its
//! fast path instead ([`Side::light`] says which), and a sleeper that cannot
//! make the heavy barrier sleeps at most [`BLIND_NAP`] at a time. A waker
//! clears the flag before its futex wake, so a sleeper killed asleep costs
//! one wake-up syscall, not one a message.
//!
//! # Across `fork`
//! A `Producer` or `Consumer` copied into a forked child is its parent's:
//! every call there answers [`Error::NotThisProcess`] (one load of a counter
//! that a fork handler bumps in the child), and its drop in the child gives
//! nothing back. Take the end in the child instead (before or after the
//! parent drops its own).

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use multiproc_shm::{Location, Segment, ShmSafe, TypeInfo};
use multiproc_sync::owner_check_interval;

use crate::layout::MAX_CAPACITY;
use crate::primitive::{current_process, process_alive, wait, wake, Deadline};
use crate::waiter::{Waiter, SPINS};
use crate::{Corruption, Error, Result};

/// The layout this build writes and reads (in the geometry line).
const VERSION: u64 = 2;
/// The largest position an end starts from: 2⁶² items, over a century at a
/// nanosecond each, so that an end's own position never overflows while a
/// scribbled one near 2⁶⁴ is refused.
const MAX_POSITION: u64 = 1 << 62;
/// An end never taken.
const NEVER: u64 = 0;
/// `Taken::fast` of an end that fences on its fast path: never a fork
/// generation.
const FENCED: u64 = u64::MAX;
/// An end given back. Process records never set bit 62.
const RELEASED: u64 = 1 << 62;
/// The longest a sleeper that could not make the heavy barrier sleeps before it
/// looks at the ring again (a wake-up may have been missed).
pub(crate) const BLIND_NAP: Duration = Duration::from_millis(1);

/// One cache line pair (adjacent-line prefetch pulls lines in pairs).
#[repr(C, align(128))]
struct Line<T>(T);

/// What the creator writes once; openers check it.
#[repr(C)]
struct Geometry {
    version: AtomicU64,
    capacity: AtomicU64,
    item_size: AtomicU64,
}

/// One end's shared state: who holds it, and whether it sleeps. Written only
/// when the end is taken, given back or goes to sleep; the other end reads
/// `sleeps` after every put (get), so the line stays in both caches.
#[repr(C)]
struct Side {
    holder: AtomicU64,
    /// 1 while this end sleeps (or is about to): the futex word.
    sleeps: AtomicU32,
    /// 1 when the holder's fast path has only a compiler barrier (its process
    /// is registered for `membarrier`), 0 when it takes a full fence.
    light: AtomicU32,
}

/// The control block at the start of the segment; the slots follow.
#[repr(C)]
struct Control {
    geometry: Line<Geometry>,
    producer: Line<Side>,
    consumer: Line<Side>,
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
}

/// Which end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Producer,
    Consumer,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Producer => "producer",
            End::Consumer => "consumer",
        }
    }

    fn other(self) -> End {
        match self {
            End::Producer => End::Consumer,
            End::Consumer => End::Producer,
        }
    }
}

/// Where the control block and the slots are, and what was checked of them:
/// copied into each end, so that a put or get reads them from its own handle.
/// Every holder of one also holds the `Arc<Segment>` it points into.
struct Shared<T> {
    ctl: NonNull<Control>,
    slots: NonNull<T>,
    cap: u64,
    /// The slot count less one: the slots are `cap` rounded up to a power of
    /// two, so that a position's slot is `position & mask` (no wrap to keep).
    mask: u64,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Shared<T> {}

// SAFETY: pointers into a mapping that every holder keeps alive (see above);
// everything touched there is atomic, or a slot copied in and out under the
// protocol above (T: ShmSafe, any bytes are a T).
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn ctl(&self) -> &Control {
        // SAFETY: the mapping holds a Control at its start (checked when made or
        // opened) and lives as long as self.
        unsafe { self.ctl.as_ref() }
    }

    fn side(&self, end: End) -> &Side {
        match end {
            End::Producer => &self.ctl().producer.0,
            End::Consumer => &self.ctl().consumer.0,
        }
    }

    /// The slot of `position` (a `tail` or `head`).
    #[inline(always)]
    fn slot(&self, position: u64) -> *mut T {
        // SAFETY: the index is at most mask, and the mapping holds mask + 1
        // slots after the control block (checked when made or opened).
        unsafe { self.slots.as_ptr().add((position & self.mask) as usize) }
    }

    /// `tail` and `head` as read now, checked: `head ≤ tail ≤ head + capacity`,
    /// and `tail ≤ MAX_POSITION` (an end starts from them, and adds to its
    /// own without further checks).
    fn positions(&self) -> Result<(u64, u64)> {
        let head = self.ctl().head.0.load(Ordering::Acquire);
        let tail = self.ctl().tail.0.load(Ordering::Acquire);
        if tail > MAX_POSITION {
            return Err(Error::Corrupted(Corruption::Field {
                what: "an SPSC queue's tail (more items than any queue carries)",
                value: tail,
            }));
        }
        if tail < head || tail - head > self.cap {
            return Err(Error::Corrupted(Corruption::Field {
                what: "an SPSC queue's count (tail − head)",
                value: tail.wrapping_sub(head),
            }));
        }
        Ok((tail, head))
    }

    /// Whether the other end of `end` is gone for good: given back, or held by
    /// a process that died (looked up only when `check_alive`: a few syscalls).
    fn other_gone(&self, end: End, check_alive: bool) -> bool {
        match self.side(end.other()).holder.load(Ordering::Acquire) {
            NEVER => false,
            RELEASED => true,
            record => check_alive && !process_alive(record),
        }
    }
}

/// A queue of `T`s for one producer and one consumer at a time, in shared
/// memory: the fastest way from one process to another here. Make it, then
/// take its ends: [`producer`](SpscQueue::producer) in the process that puts,
/// [`consumer`](SpscQueue::consumer) in the one that gets (the same process
/// may hold both). Python has no such queue; it is [`Queue`](crate::Queue)
/// with the rule that one process puts and one gets, which it enforces: a
/// second taker of an end held by a live process gets
/// [`Error::EndTaken`].
///
/// What it keeps of the MPMC queue's guarantees: either end may block, with a
/// timeout or not; an end whose process died is taken over by the next
/// taker, and the other end learns of it ([`Error::Disconnected`] when the
/// ring is empty, for a get, or full, for a put); nothing is lost, and an item
/// is never given to two `get`s; positions read from shared memory are
/// checked. See the module source for the protocol.
///
/// # Examples
/// ```
/// use multiproc_queue::SpscQueue;
/// let q = SpscQueue::<u64>::new(1024)?;
/// // SAFETY: single-threaded doctest; the child only puts and _exits.
/// match unsafe { libc::fork() } {
///     0 => {
///         let mut tx = q.producer().unwrap();
///         for i in 0..100 { tx.put(i).unwrap(); }
///         unsafe { libc::_exit(0) };
///     }
///     pid => {
///         let mut rx = q.consumer()?;
///         let sum: u64 = (0..100).map(|_| rx.get().unwrap()).sum();
///         assert_eq!(sum, 4950);
///         unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
///     }
/// }
/// # Ok::<(), multiproc_queue::Error>(())
/// ```
pub struct SpscQueue<T> {
    seg: Arc<Segment>,
    shared: Shared<T>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SpscQueue<T> {
    fn clone(&self) -> Self {
        SpscQueue {
            seg: Arc::clone(&self.seg),
            shared: self.shared,
            _t: PhantomData,
        }
    }
}

/// The type name an `SpscQueue<T>`'s segment header carries.
fn type_name<T>() -> String {
    format!(
        "multiproc_queue::SpscQueue<{}> ({} bytes, align {})",
        std::any::type_name::<T>(),
        std::mem::size_of::<T>(),
        std::mem::align_of::<T>()
    )
}

/// Slots follow a 128-byte control block: an item may be aligned to at most that.
fn check_align<T>() -> Result<()> {
    let align = std::mem::align_of::<T>();
    if align > 128 {
        return Err(Error::OutOfRange {
            what: "an SPSC queue item's alignment",
            value: align as u64,
            min: 1,
            max: 128,
        });
    }
    Ok(())
}

/// Bytes of a queue of `capacity` `T`s.
fn total_len<T>(capacity: usize) -> usize {
    std::mem::size_of::<Control>() + slot_count(capacity) * std::mem::size_of::<T>()
}

/// The slots a queue of `capacity` items has: `capacity` rounded up to a
/// power of two (at most 2³⁰). The ring never holds more than `capacity`.
fn slot_count(capacity: usize) -> usize {
    capacity.next_power_of_two()
}

impl<T: ShmSafe + Copy> SpscQueue<T> {
    /// An anonymous queue of `capacity` items, shared with children forked after
    /// it. It holds `capacity` items; its mapping has room for `capacity`
    /// rounded up to a power of two (see the module source).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a capacity of 0 or over 2³⁰; [`Error::Shm`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(3)?;
    /// assert_eq!(q.capacity(), 3);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new(capacity: usize) -> Result<SpscQueue<T>> {
        SpscQueue::new_in(Location::Anonymous, capacity)
    }

    /// A named queue, opened elsewhere with [`open`](SpscQueue::open).
    ///
    /// # Errors
    /// As for [`new`](SpscQueue::new), plus naming errors.
    ///
    /// # Examples
    /// ```
    /// let name = format!("doc-spsc-create-{}", std::process::id());
    /// let q = multiproc_queue::SpscQueue::<u32>::create(&name, 4)?;
    /// q.producer()?.put(7)?;
    /// assert_eq!(multiproc_queue::SpscQueue::<u32>::open(&name)?.consumer()?.get()?, 7);
    /// drop(q); // the creator's handle unlinks the name
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn create(name: &str, capacity: usize) -> Result<SpscQueue<T>> {
        SpscQueue::new_in(Location::Named(name), capacity)
    }

    /// A queue at `location`.
    ///
    /// # Errors
    /// As for [`new`](SpscQueue::new).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u8>::new_in(multiproc_shm::Location::Memfd, 4)?;
    /// assert!(q.segment().fd().is_some());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn new_in(location: Location<'_>, capacity: usize) -> Result<SpscQueue<T>> {
        check_align::<T>()?;
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(Error::OutOfRange {
                what: "an SPSC queue's capacity",
                value: capacity as u64,
                min: 1,
                max: MAX_CAPACITY as u64,
            });
        }
        let len = total_len::<T>(capacity);
        let info = TypeInfo::custom(&type_name::<T>(), 128, 128, len.div_ceil(128) as u64);
        let seg = Segment::create_typed(location, info, |p| {
            // SAFETY: create_typed passes 128-aligned, zeroed memory of at least
            // len bytes that nobody else sees before the header is published.
            let g = unsafe { &(*p.cast::<Control>()).geometry.0 };
            g.capacity.store(capacity as u64, Ordering::Relaxed);
            g.item_size
                .store(std::mem::size_of::<T>() as u64, Ordering::Relaxed);
            g.version.store(VERSION, Ordering::Relaxed);
        })?;
        SpscQueue::attach(seg)
    }

    /// Opens the named queue `name`.
    ///
    /// # Errors
    /// [`Error::Shm`] — `LayoutMismatch` for a queue of another `T`, or not an
    /// SPSC queue — and [`Error::Corrupted`] for an impossible geometry.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::SpscQueue::<u32>::open("no-such-spsc-queue").is_err());
    /// ```
    pub fn open(name: &str) -> Result<SpscQueue<T>> {
        SpscQueue::attach(Segment::open(name)?)
    }

    /// Checks a segment's type and geometry and makes a handle of it.
    fn attach(seg: Segment) -> Result<SpscQueue<T>> {
        check_align::<T>()?;
        let want = TypeInfo::custom(&type_name::<T>(), 128, 128, 0);
        if !seg.type_info().same_type(&want) {
            return Err(Error::Shm(multiproc_shm::Error::LayoutMismatch {
                what: seg
                    .name()
                    .map_or_else(|| "the segment".to_owned(), |n| format!("segment {n:?}")),
                expected: type_name::<T>(),
                found: seg.type_info().type_name.clone(),
            }));
        }
        let too_small = |needed| {
            Error::Corrupted(Corruption::TooSmall {
                needed,
                len: seg.len(),
            })
        };
        if seg.len() < std::mem::size_of::<Control>() {
            return Err(too_small(std::mem::size_of::<Control>()));
        }
        let base = NonNull::new(seg.as_ptr()).expect("a mapping is never at NULL");
        // SAFETY: the segment holds at least a Control, 128-aligned (its header
        // says align 128), and Control is atomics only.
        let g = unsafe { &base.cast::<Control>().as_ref().geometry.0 };
        let version = g.version.load(Ordering::Acquire);
        if version != VERSION {
            return Err(Error::Corrupted(Corruption::LayoutVersion {
                found: version,
                expected: VERSION,
            }));
        }
        let cap = g.capacity.load(Ordering::Relaxed);
        if cap == 0 || cap > MAX_CAPACITY as u64 {
            return Err(Error::Corrupted(Corruption::Field {
                what: "the capacity",
                value: cap,
            }));
        }
        let size = g.item_size.load(Ordering::Relaxed);
        if size != std::mem::size_of::<T>() as u64 {
            return Err(Error::Corrupted(Corruption::NotItems {
                msg_max: size,
                size: std::mem::size_of::<T>(),
            }));
        }
        let needed = total_len::<T>(cap as usize);
        if seg.len() < needed {
            return Err(too_small(needed));
        }
        // SAFETY: the slots follow the control block inside the mapping (checked
        // just above); Control's size is a multiple of 128, so they are aligned
        // for T (align ≤ 128, as the header's type check says).
        let slots = unsafe { base.add(std::mem::size_of::<Control>()) }.cast::<T>();
        Ok(SpscQueue {
            seg: Arc::new(seg),
            shared: Shared {
                ctl: base.cast(),
                slots,
                cap,
                mask: slot_count(cap as usize) as u64 - 1,
            },
            _t: PhantomData,
        })
    }

    /// Takes the producing end, for this process.
    ///
    /// # Errors
    /// [`Error::EndTaken`] while a live process (this one included) holds it.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(2)?;
    /// let tx = q.producer()?;
    /// assert!(matches!(q.producer(), Err(multiproc_queue::Error::EndTaken { .. })));
    /// drop(tx);
    /// assert!(q.producer().is_ok());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn producer(&self) -> Result<Producer<T>> {
        let (taken, tail, head) = self.take(End::Producer)?;
        Ok(Producer {
            _seg: Arc::clone(&self.seg),
            shared: self.shared,
            tail,
            head_seen: head,
            taken,
            spins: SPINS,
        })
    }

    /// Takes the consuming end, for this process.
    ///
    /// # Errors
    /// [`Error::EndTaken`] while a live process (this one included) holds it.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(2)?;
    /// let mut rx = q.consumer()?;
    /// assert!(matches!(rx.try_get(), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn consumer(&self) -> Result<Consumer<T>> {
        let (taken, tail, head) = self.take(End::Consumer)?;
        Ok(Consumer {
            _seg: Arc::clone(&self.seg),
            shared: self.shared,
            head,
            tail_seen: tail,
            taken,
            spins: SPINS,
        })
    }
}

impl<T> SpscQueue<T> {
    /// Takes `end` for this process, with the positions it starts from
    /// (checked; the end is given back if they cannot be).
    fn take(&self, end: End) -> Result<(Taken, u64, u64)> {
        let taken = Taken::take(&self.shared, end)?;
        match self.shared.positions() {
            Ok((tail, head)) => Ok((taken, tail, head)),
            Err(e) => {
                taken.release(&self.shared);
                Err(e)
            }
        }
    }

    /// How many items it holds now (0 if a peer wrote nonsense over the count).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(2)?;
    /// q.producer()?.put(1)?;
    /// assert_eq!(q.qsize(), 1);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn qsize(&self) -> usize {
        self.shared
            .positions()
            .map_or(0, |(tail, head)| (tail - head) as usize)
    }

    /// Whether it holds no item now.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_queue::SpscQueue::<u32>::new(2)?.empty());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether every slot holds an item now.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(1)?;
    /// q.producer()?.put(1)?;
    /// assert!(q.full());
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn full(&self) -> bool {
        self.qsize() == self.capacity()
    }

    /// Its number of slots.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_queue::SpscQueue::<u32>::new(5)?.capacity(), 5);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.cap as usize
    }

    /// The segment it lives in.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(5)?;
    /// assert!(q.segment().len() > 0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T> std::fmt::Debug for SpscQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpscQueue")
            .field("capacity", &self.capacity())
            .field("qsize", &self.qsize())
            .finish()
    }
}

/// Bumped in every forked child (see [`fork_generation`]).
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn bump_forks() {
    // One atomic add: safe after fork in a multi-threaded parent.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// How many forks this process's line of ancestry has made since the first end
/// was taken in it: a handle that recorded another value was copied into a
/// forked child.
fn fork_generation() -> u64 {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: registers a child handler that only does an atomic add.
        unsafe { libc::pthread_atfork(None, None, Some(bump_forks)) };
    });
    FORKS.load(Ordering::Relaxed)
}

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

/// Set by [`refuse_membarrier_here`]: this process acts as one whose kernel
/// refuses `membarrier`.
static NO_MEMBARRIER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this process act as one whose kernel refuses `membarrier(2)` (as a
/// seccomp filter can): its ends fence on their fast paths, and its sleepers
/// cannot make the heavy barrier. For the tests of the fallbacks.
#[cfg(feature = "test-hooks")]
pub fn refuse_membarrier_here() {
    NO_MEMBARRIER.store(true, Ordering::Relaxed);
}

/// Registers this process for `MEMBARRIER_CMD_GLOBAL_EXPEDITED`: from then on
/// another process's heavy barrier reaches its threads. Whether it worked.
fn register_light() -> bool {
    if NO_MEMBARRIER.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: membarrier takes two integers and a CPU id; nothing of ours is
    // read or written.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
            0,
            0,
        ) == 0
    }
}

/// The sleeping side's barrier: a full barrier here and on every CPU that
/// runs a thread of a registered process. Whether it was made (`false`: only
/// this thread's fence, which is enough only against an end whose fast path
/// fences).
fn heavy_barrier() -> bool {
    fence(Ordering::SeqCst);
    if NO_MEMBARRIER.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: as in register_light.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0 }
}

/// An end this handle holds: its record and the fork generation it was taken in.
struct Taken {
    end: End,
    record: u64,
    generation: u64,
    /// `generation` for a light end (its fast path needs only a compiler
    /// barrier), [`FENCED`] for another: one comparison with `FORKS` says
    /// both that the handle is its process's and that its fast path needs no
    /// fence.
    fast: u64,
}

impl Taken {
    fn take<T>(shared: &Shared<T>, end: End) -> Result<Taken> {
        let generation = fork_generation();
        let me = current_process();
        let side = shared.side(end);
        let mut seen = side.holder.load(Ordering::Acquire);
        loop {
            let free = seen == NEVER || seen == RELEASED || !process_alive(seen);
            if !free {
                return Err(Error::EndTaken {
                    end: end.name(),
                    pid: multiproc_sync::owner::id_of(seen),
                });
            }
            match side
                .holder
                .compare_exchange(seen, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        let light = register_light();
        side.light.store(u32::from(light), Ordering::SeqCst);
        // A previous holder killed asleep left its flag up.
        side.sleeps.store(0, Ordering::SeqCst);
        Ok(Taken {
            end,
            record: me,
            generation,
            fast: if light { generation } else { FENCED },
        })
    }

    /// Whether this handle is its process's (not a copy a fork made).
    #[inline(always)]
    fn here(&self) -> Result<()> {
        if FORKS.load(Ordering::Relaxed) == self.generation {
            Ok(())
        } else {
            Err(Error::NotThisProcess {
                end: self.end.name(),
            })
        }
    }

    fn release<T>(&self, shared: &Shared<T>) {
        if self.here().is_ok() {
            // Only if still ours: a peer may have judged us dead (never, while we
            // run; but a scribbled word is not ours to overwrite).
            let _ = shared.side(self.end).holder.compare_exchange(
                self.record,
                RELEASED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            // Wake the other end, which may now answer Disconnected.
            let flag = &shared.side(self.end.other()).sleeps;
            if flag.swap(0, Ordering::SeqCst) != 0 {
                wake(flag, 1);
            }
        }
    }

    /// Whether a put or get may take the light path: the handle is its
    /// process's, and its process is registered for `membarrier`.
    #[inline(always)]
    fn light_here(&self) -> bool {
        FORKS.load(Ordering::Relaxed) == self.fast
    }

    /// After this end's store of its position: the barrier of its fast path,
    /// then a look at the other end's flag, and a wake-up if it sleeps.
    #[inline(always)]
    fn after_store(&self, other: &Side) {
        if self.fast != FENCED {
            after_store_as::<true>(other);
        } else {
            after_store_as::<false>(other);
        }
    }
}

/// [`Taken::after_store`] for an end known to be light (`LIGHT`) or not.
#[inline(always)]
fn after_store_as<const LIGHT: bool>(other: &Side) {
    if !LIGHT {
        fence(Ordering::SeqCst);
    }
    compiler_fence(Ordering::SeqCst);
    if other.sleeps.load(Ordering::Relaxed) != 0 {
        wake_other(other);
    }
}

#[cold]
#[inline(never)]
fn wake_other(other: &Side) {
    // Cleared first: a sleeper that died asleep costs this one syscall only.
    other.sleeps.store(0, Ordering::Relaxed);
    wake(&other.sleeps, 1);
}

/// Sleeps as `end` until the ring may have changed (`changed` looks, after the
/// heavy barrier), `deadline`, or an owner check interval: the caller then
/// looks at the ring, and at the other end's liveness.
fn sleep_on<T>(
    shared: &Shared<T>,
    end: End,
    deadline: Option<&Deadline>,
    changed: impl Fn() -> bool,
) {
    let side = shared.side(end);
    side.sleeps.store(1, Ordering::SeqCst);
    let heavy = heavy_barrier();
    if changed() || shared.other_gone(end, false) {
        side.sleeps.store(0, Ordering::Relaxed);
        return;
    }
    // Without the heavy barrier, a light other end can miss the flag: nap.
    let blind = !heavy && shared.side(end.other()).light.load(Ordering::Relaxed) != 0;
    let nap = if blind {
        BLIND_NAP
    } else {
        owner_check_interval()
    };
    let until = Deadline::after(nap).expect("a nap is short");
    let until = match deadline {
        Some(d) if d.remaining() < nap => d,
        _ => &until,
    };
    wait(&side.sleeps, 1, Some(until));
    side.sleeps.store(0, Ordering::Relaxed);
}

/// When a blocked end last looked whether the other end's process lives. The
/// clock is read only once the end sleeps: a blocked call that ends while it
/// spins (nearly every one, when both ends stream) never reads it, which
/// matters where a clock read is tens of nanoseconds (VMs).
#[derive(Default)]
struct Naps {
    since: Option<std::time::Instant>,
}

impl Naps {
    /// Called before each sleep.
    fn begin(&mut self) {
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    /// Whether an owner check interval has passed since the first sleep or the
    /// last check (and so a liveness check is due); restarts the interval.
    fn check_due(&mut self) -> bool {
        match self.since {
            Some(t) if t.elapsed() >= owner_check_interval() => {
                self.since = Some(std::time::Instant::now());
                true
            }
            _ => false,
        }
    }
}

/// The producing end of an [`SpscQueue`], held by one process (see
/// [`SpscQueue::producer`]); dropping it gives the end back.
pub struct Producer<T> {
    /// Keeps the mapping that `shared` points into.
    _seg: Arc<Segment>,
    shared: Shared<T>,
    /// The next position to fill (the shared `tail` is a copy of it).
    tail: u64,
    /// `head` when last read: a put needs no look at it while `tail − head_seen
    /// < capacity`.
    head_seen: u64,
    taken: Taken,
    spins: u32,
}

impl<T: ShmSafe + Copy> Producer<T> {
    /// The fast path: puts `item` if this handle is its process's and there is
    /// room (`head` reloaded only when the cached one says full). `false`: not
    /// put, and [`push_or_why`](Producer::push_or_why) says why. Small on purpose: no
    /// `Error` is made or moved on the way.
    #[inline(always)]
    fn push(&mut self, item: T) -> bool {
        if self.taken.light_here() {
            self.push_as::<true>(item)
        } else {
            self.push_fenced(item)
        }
    }

    /// [`push`](Producer::push) for an end that is not light, or a copy
    /// made by `fork` (which puts nothing). Out of line: its fence costs
    /// more than the call.
    #[inline(never)]
    fn push_fenced(&mut self, item: T) -> bool {
        self.taken.here().is_ok() && self.push_as::<false>(item)
    }

    /// The put itself, for a handle that is its process's; `LIGHT`: its fast
    /// path needs only a compiler barrier.
    #[inline(always)]
    fn push_as<const LIGHT: bool>(&mut self, item: T) -> bool {
        // Read once into locals: after the slot's volatile write the compiler
        // would read every field again.
        let (shared, tail) = (self.shared, self.tail);
        if tail - self.head_seen >= shared.cap && !self.reload_head() {
            return false;
        }
        // SAFETY: the slot is free (tail − head < cap) and only this end
        // writes it until tail moves past it.
        unsafe { std::ptr::write_volatile(shared.slot(tail), item) };
        self.tail = tail + 1;
        let ctl = shared.ctl();
        ctl.tail.0.store(tail + 1, Ordering::Release);
        after_store_as::<LIGHT>(&ctl.consumer.0);
        true
    }

    /// Whether `head` can be, against this end's `tail`.
    #[inline(always)]
    fn head_can_be(&self, head: u64) -> bool {
        head <= self.tail && self.tail - head <= self.shared.cap
    }

    /// `head` as read now, checked against this end's `tail`.
    fn head_now(&self) -> Result<u64> {
        let head = self.shared.ctl().head.0.load(Ordering::Acquire);
        if !self.head_can_be(head) {
            return Err(Error::Corrupted(Corruption::Field {
                what: "an SPSC queue's head, against its producer's tail",
                value: head,
            }));
        }
        Ok(head)
    }

    /// Reloads `head`: whether there is room. A `head` that cannot be is not
    /// taken (no room; `push_or_why` reports it). Inline: a producer that
    /// keeps the ring nearly full reloads on most puts.
    #[inline(always)]
    fn reload_head(&mut self) -> bool {
        let head = self.shared.ctl().head.0.load(Ordering::Acquire);
        if !self.head_can_be(head) {
            return false;
        }
        self.head_seen = head;
        self.tail - head < self.shared.cap
    }

    /// After a `push` that failed: puts `item` if room came, else why not.
    #[cold]
    #[inline(never)]
    fn push_or_why(&mut self, item: T) -> Result<()> {
        self.taken.here()?;
        // Looked at before the last try: a consumer that gave its end back
        // freed what it freed before.
        let gone = self.shared.other_gone(End::Producer, false);
        if self.push(item) {
            return Ok(());
        }
        self.head_now()?;
        Err(if gone {
            Error::Disconnected
        } else {
            Error::Full
        })
    }

    /// Puts `item` if there is room now, as rtrb's `push` does.
    ///
    /// # Errors
    /// [`Error::Full`]; [`Error::Disconnected`] when full and the consumer
    /// gave its end back; [`Error::NotThisProcess`]; [`Error::Corrupted`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(1)?;
    /// let mut tx = q.producer()?;
    /// tx.try_put(1)?;
    /// assert!(matches!(tx.try_put(2), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_put(&mut self, item: T) -> Result<()> {
        if self.push(item) {
            Ok(())
        } else {
            self.push_or_why(item)
        }
    }

    /// Puts `item`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// [`Error::Disconnected`] when full and the consumer is gone (given back,
    /// or its process died); [`Error::NotThisProcess`]; [`Error::Corrupted`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(4)?;
    /// q.producer()?.put(1)?;
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn put(&mut self, item: T) -> Result<()> {
        if self.push(item) {
            Ok(())
        } else {
            self.put_slow(item, None)
        }
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`put`](Producer::put), and [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::SpscQueue::<u32>::new(1)?;
    /// let _rx = q.consumer()?;
    /// let mut tx = q.producer()?;
    /// tx.put(1)?;
    /// let e = tx.put_timeout(2, Duration::from_millis(1));
    /// assert!(matches!(e, Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_timeout(&mut self, item: T, timeout: Duration) -> Result<()> {
        if self.push(item) {
            Ok(())
        } else {
            self.put_slow(item, Deadline::after(timeout).as_ref())
        }
    }

    #[cold]
    #[inline(never)]
    fn put_slow(&mut self, item: T, deadline: Option<&Deadline>) -> Result<()> {
        let mut waiter = Waiter::new(self.spins);
        let mut naps = Naps::default();
        self.taken.here()?;
        // As in `Consumer::get_slow`: wait for `head` to move, then try.
        loop {
            if self.shared.other_gone(End::Producer, false) {
                return self.push_or_why(item);
            }
            if naps.check_due() && self.shared.other_gone(End::Producer, true) {
                return Err(Error::Disconnected);
            }
            let shared = &self.shared;
            let (tail, cap) = (self.tail, shared.cap);
            let room = || tail - shared.ctl().head.0.load(Ordering::Relaxed) < cap;
            let moved = || shared.ctl().head.0.load(Ordering::Relaxed);
            waiter.wait(deadline, room, moved, || {
                naps.begin();
                sleep_on(shared, End::Producer, deadline, room);
                Ok(())
            })?;
            match self.push_or_why(item) {
                Err(Error::Full) => {}
                r => return r,
            }
        }
    }

    /// Puts as many of `items` as there is room for now, in order, with one
    /// store of `tail`; how many. 0 also when this handle is not its
    /// process's (the callers' slow paths say why).
    #[inline]
    fn push_many(&mut self, items: &[T]) -> usize {
        if FORKS.load(Ordering::Relaxed) != self.taken.generation {
            return 0;
        }
        let cap = self.shared.cap;
        if cap - (self.tail - self.head_seen) < items.len() as u64 {
            self.reload_head();
        }
        let room = cap - (self.tail - self.head_seen);
        let n = (items.len() as u64).min(room) as usize;
        if n == 0 {
            return 0;
        }
        let (shared, tail) = (self.shared, self.tail);
        for (k, item) in items[..n].iter().enumerate() {
            // SAFETY: the n slots from tail are free (n ≤ room) and only this
            // end writes them until tail moves past them.
            unsafe { std::ptr::write_volatile(shared.slot(tail + k as u64), *item) };
        }
        self.tail = tail + n as u64;
        let ctl = self.shared.ctl();
        ctl.tail.0.store(self.tail, Ordering::Release);
        self.taken.after_store(&ctl.consumer.0);
        n
    }

    /// Puts `items` in order, waiting for room while `deadline` allows: how
    /// many went in, and why it stopped short.
    fn put_many_until(&mut self, items: &[T], deadline: Option<&Deadline>) -> (usize, Result<()>) {
        let mut done = self.push_many(items);
        while done < items.len() {
            // One item through the waiting path, then what room there is.
            if let Err(e) = self.put_slow(items[done], deadline) {
                return (done, Err(e));
            }
            done += 1;
            done += self.push_many(&items[done..]);
        }
        (done, Ok(()))
    }

    /// Puts every item, in order, as many at once as there is room for (one
    /// store of the shared position for each run), waiting for room.
    ///
    /// # Errors
    /// As for [`put`](Producer::put); the items before the failure went in.
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(8)?;
    /// q.producer()?.put_many(&[1, 2, 3])?;
    /// assert_eq!(q.qsize(), 3);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_many(&mut self, items: &[T]) -> Result<()> {
        self.put_many_until(items, None).1
    }

    /// Puts items in order, as [`put_many`](Producer::put_many) does, until
    /// all went in or `timeout` passes; how many went in.
    ///
    /// # Errors
    /// [`Error::Timeout`] when none went in in time, and as for
    /// [`put`](Producer::put) when the first failed.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::SpscQueue::<u32>::new(2)?;
    /// let _rx = q.consumer()?;
    /// let mut tx = q.producer()?;
    /// assert_eq!(tx.put_many_timeout(&[1, 2, 3], Duration::from_millis(1))?, 2);
    /// assert!(matches!(
    ///     tx.put_many_timeout(&[4], Duration::from_millis(1)),
    ///     Err(multiproc_queue::Error::Timeout)
    /// ));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn put_many_timeout(&mut self, items: &[T], timeout: Duration) -> Result<usize> {
        match self.put_many_until(items, Deadline::after(timeout).as_ref()) {
            (0, Err(e)) => Err(e),
            (n, _) => Ok(n),
        }
    }

    /// Puts items in order while there is room now; how many went in.
    ///
    /// # Errors
    /// [`Error::Full`] when none fit (and there were some to put), and as for
    /// [`try_put`](Producer::try_put).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(2)?;
    /// let mut tx = q.producer()?;
    /// assert_eq!(tx.try_put_many(&[1, 2, 3])?, 2);
    /// assert!(matches!(tx.try_put_many(&[4]), Err(multiproc_queue::Error::Full)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_put_many(&mut self, items: &[T]) -> Result<usize> {
        let n = self.push_many(items);
        match items.get(n) {
            Some(&first) if n == 0 => {
                self.push_or_why(first)?;
                Ok(1 + self.push_many(&items[1..]))
            }
            _ => Ok(n),
        }
    }

    /// Tries before a blocked put sleeps (default 200; 0 sleeps at once).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(1)?;
    /// q.producer()?.set_spin_limit(0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn set_spin_limit(&mut self, spins: u32) {
        self.spins = spins;
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.taken.release(&self.shared);
    }
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .finish()
    }
}

/// The consuming end of an [`SpscQueue`], held by one process (see
/// [`SpscQueue::consumer`]); dropping it gives the end back.
pub struct Consumer<T> {
    /// Keeps the mapping that `shared` points into.
    _seg: Arc<Segment>,
    shared: Shared<T>,
    /// The next position to take (the shared `head` is a copy of it).
    head: u64,
    /// `tail` when last read: a get needs no look at it while `head <
    /// tail_seen`.
    tail_seen: u64,
    taken: Taken,
    spins: u32,
}

impl<T: ShmSafe + Copy> Consumer<T> {
    /// The fast path: takes an item if this handle is its process's and one is
    /// there (`tail` reloaded only when the cached one says empty). `None`:
    /// nothing taken, and [`pop_or_why`](Consumer::pop_or_why) says why.
    #[inline(always)]
    fn pop(&mut self) -> Option<T> {
        if self.taken.light_here() {
            self.pop_as::<true>()
        } else {
            self.pop_fenced()
        }
    }

    /// [`pop`](Consumer::pop) for an end that is not light, or a copy made
    /// by `fork` (which takes nothing). Out of line, as `Producer::push_fenced`.
    #[inline(never)]
    fn pop_fenced(&mut self) -> Option<T> {
        self.taken.here().ok()?;
        self.pop_as::<false>()
    }

    /// The get itself, for a handle that is its process's; `LIGHT` as in
    /// `Producer::push_as`.
    #[inline(always)]
    fn pop_as<const LIGHT: bool>(&mut self) -> Option<T> {
        if self.head == self.tail_seen && !self.reload_tail() {
            return None;
        }
        // Read once into locals (see `Producer::push`).
        let (shared, head) = (self.shared, self.head);
        // SAFETY: the slot holds an item (head < tail) that only this end
        // reads until head moves past it. T is ShmSafe: any bytes are a T.
        let item = unsafe { std::ptr::read_volatile(shared.slot(head)) };
        self.head = head + 1;
        let ctl = shared.ctl();
        ctl.head.0.store(head + 1, Ordering::Release);
        after_store_as::<LIGHT>(&ctl.producer.0);
        Some(item)
    }

    /// Whether `tail` can be, against this end's `head`.
    #[inline(always)]
    fn tail_can_be(&self, tail: u64) -> bool {
        tail >= self.head && tail - self.head <= self.shared.cap
    }

    /// `tail` as read now, checked against this end's `head`.
    fn tail_now(&self) -> Result<u64> {
        let tail = self.shared.ctl().tail.0.load(Ordering::Acquire);
        if !self.tail_can_be(tail) {
            return Err(Error::Corrupted(Corruption::Field {
                what: "an SPSC queue's tail, against its consumer's head",
                value: tail,
            }));
        }
        Ok(tail)
    }

    /// Reloads `tail`: whether an item is there. A `tail` that cannot be is not
    /// taken (nothing there; `pop_or_why` reports it). Inline: a consumer that
    /// keeps up with its producer reloads on most gets.
    #[inline(always)]
    fn reload_tail(&mut self) -> bool {
        let tail = self.shared.ctl().tail.0.load(Ordering::Acquire);
        if !self.tail_can_be(tail) {
            return false;
        }
        self.tail_seen = tail;
        tail > self.head
    }

    /// After a `pop` that found nothing: takes an item if one came, else why not.
    #[cold]
    #[inline(never)]
    fn pop_or_why(&mut self) -> Result<T> {
        self.taken.here()?;
        // Looked at before the last try: a producer that gave its end back
        // published what it published before.
        let gone = self.shared.other_gone(End::Consumer, false);
        if let Some(item) = self.pop() {
            return Ok(item);
        }
        self.tail_now()?;
        Err(if gone {
            Error::Disconnected
        } else {
            Error::Empty
        })
    }

    /// Takes an item if there is one now, as rtrb's `pop` does.
    ///
    /// # Errors
    /// [`Error::Empty`]; [`Error::Disconnected`] when empty and the producer
    /// gave its end back; [`Error::NotThisProcess`]; [`Error::Corrupted`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(1)?;
    /// q.producer()?.put(5)?;
    /// let mut rx = q.consumer()?;
    /// assert_eq!(rx.try_get()?, 5);
    /// // The producer was dropped: nothing more can come.
    /// assert!(matches!(rx.try_get(), Err(multiproc_queue::Error::Disconnected)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_get(&mut self) -> Result<T> {
        match self.pop() {
            Some(item) => Ok(item),
            None => self.pop_or_why(),
        }
    }

    /// Takes an item, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::Disconnected`] when empty and the producer is gone (given back,
    /// or its process died); [`Error::NotThisProcess`]; [`Error::Corrupted`].
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(4)?;
    /// let mut tx = q.producer()?;
    /// tx.put(3)?;
    /// assert_eq!(q.consumer()?.get()?, 3);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    #[inline]
    pub fn get(&mut self) -> Result<T> {
        match self.pop() {
            Some(item) => Ok(item),
            None => self.get_slow(None),
        }
    }

    /// Takes an item, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get`](Consumer::get), and [`Error::Timeout`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::SpscQueue::<u32>::new(1)?;
    /// let _tx = q.producer()?;
    /// let e = q.consumer()?.get_timeout(Duration::from_millis(1));
    /// assert!(matches!(e, Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        match self.pop() {
            Some(item) => Ok(item),
            None => self.get_slow(Deadline::after(timeout).as_ref()),
        }
    }

    #[cold]
    #[inline(never)]
    fn get_slow(&mut self, deadline: Option<&Deadline>) -> Result<T> {
        let mut waiter = Waiter::new(self.spins);
        let mut naps = Naps::default();
        self.taken.here()?;
        // The fast path found the ring empty a moment ago: wait for `tail` to
        // move before the next try, rather than try again at once (each look
        // at `tail` pulls the line the producer is about to write).
        loop {
            if self.shared.other_gone(End::Consumer, false) {
                return self.pop_or_why();
            }
            if naps.check_due() && self.shared.other_gone(End::Consumer, true) {
                // Dead: whatever it published is there; nothing more comes.
                return self.pop().ok_or(Error::Disconnected);
            }
            let shared = &self.shared;
            let head = self.head;
            let any = || shared.ctl().tail.0.load(Ordering::Relaxed) != head;
            let moved = || shared.ctl().tail.0.load(Ordering::Relaxed);
            waiter.wait(deadline, any, moved, || {
                naps.begin();
                sleep_on(shared, End::Consumer, deadline, any);
                Ok(())
            })?;
            match self.pop_or_why() {
                Err(Error::Empty) => {}
                r => return r,
            }
        }
    }

    /// Takes up to `max` items that are there now into `out`, with one store
    /// of `head`; how many. 0 also when this handle is not its process's.
    #[inline]
    fn pop_many(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        if FORKS.load(Ordering::Relaxed) != self.taken.generation {
            return 0;
        }
        if self.tail_seen - self.head < max as u64 {
            self.reload_tail();
        }
        let n = (self.tail_seen - self.head).min(max as u64) as usize;
        if n == 0 {
            return 0;
        }
        out.reserve(n);
        let (shared, head) = (self.shared, self.head);
        for k in 0..n as u64 {
            // SAFETY: the n slots from head hold items (n ≤ tail − head) that
            // only this end reads until head moves past them. T is ShmSafe:
            // any bytes are a T.
            out.push(unsafe { std::ptr::read_volatile(shared.slot(head + k)) });
        }
        self.head = head + n as u64;
        let ctl = self.shared.ctl();
        ctl.head.0.store(self.head, Ordering::Release);
        self.taken.after_store(&ctl.producer.0);
        n
    }

    /// Takes up to `max` items at once into `out`, waiting for the first;
    /// returns how many (0 only for a `max` of 0).
    ///
    /// # Errors
    /// As for [`get`](Consumer::get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(8)?;
    /// q.producer()?.put_many(&[1, 2, 3])?;
    /// let mut out = Vec::new();
    /// assert_eq!(q.consumer()?.get_many(&mut out, 10)?, 3);
    /// assert_eq!(out, [1, 2, 3]);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_many(&mut self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        self.get_many_until(out, max, None)
    }

    /// [`get_many`](Consumer::get_many), waiting at most `timeout` for the
    /// first.
    ///
    /// # Errors
    /// As for [`get_timeout`](Consumer::get_timeout).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc_queue::SpscQueue::<u32>::new(8)?;
    /// let _tx = q.producer()?;
    /// let mut out = Vec::new();
    /// let e = q.consumer()?.get_many_timeout(&mut out, 4, Duration::from_millis(1));
    /// assert!(matches!(e, Err(multiproc_queue::Error::Timeout)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn get_many_timeout(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        self.get_many_until(out, max, Deadline::after(timeout).as_ref())
    }

    fn get_many_until(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
        deadline: Option<&Deadline>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let n = self.pop_many(out, max);
        if n > 0 {
            return Ok(n);
        }
        out.push(self.get_slow(deadline)?);
        Ok(1 + self.pop_many(out, max - 1))
    }

    /// [`get_many`](Consumer::get_many) of what is there now.
    ///
    /// # Errors
    /// As for [`try_get`](Consumer::try_get).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(8)?;
    /// let mut tx = q.producer()?;
    /// tx.put(9)?;
    /// let mut rx = q.consumer()?;
    /// let mut out = Vec::new();
    /// assert_eq!(rx.try_get_many(&mut out, 4)?, 1);
    /// assert!(matches!(rx.try_get_many(&mut out, 4), Err(multiproc_queue::Error::Empty)));
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn try_get_many(&mut self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let n = self.pop_many(out, max);
        if n > 0 {
            return Ok(n);
        }
        out.push(self.pop_or_why()?);
        Ok(1 + self.pop_many(out, max - 1))
    }

    /// Tries before a blocked get sleeps (default 200; 0 sleeps at once).
    ///
    /// # Examples
    /// ```
    /// let q = multiproc_queue::SpscQueue::<u32>::new(1)?;
    /// q.consumer()?.set_spin_limit(0);
    /// # Ok::<(), multiproc_queue::Error>(())
    /// ```
    pub fn set_spin_limit(&mut self, spins: u32) {
        self.spins = spins;
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.taken.release(&self.shared);
    }
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .finish()
    }
}

/// The fuzz entry point (`fuzz/fuzz_targets/spsc_memory.rs`): `bytes` as the
/// memory of an `SpscQueue<u64>` — control block and slots — as a buggy or
/// hostile process may have left it. Opening checks it; then both ends are
/// taken and puts and gets of every kind that do not wait run over it. None
/// may panic, wait, or touch memory outside the segment. How many items the
/// gets took, or why the queue was refused.
#[cfg(feature = "test-hooks")]
pub fn fuzz_spsc_bytes(bytes: &[u8]) -> std::result::Result<usize, String> {
    let lines = bytes.len().div_ceil(128).max(1);
    let info = TypeInfo::custom(&type_name::<u64>(), 128, 128, lines as u64);
    let seg = Segment::create_typed(Location::Anonymous, info, |p| {
        // SAFETY: create_typed passes at least lines × 128 writable bytes,
        // which hold `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    })
    .map_err(|e| e.to_string())?;
    let q = SpscQueue::<u64>::attach(seg).map_err(|e| e.to_string())?;
    let _ = q.qsize();
    let mut tx = q.producer().map_err(|e| e.to_string())?;
    let mut rx = q.consumer().map_err(|e| e.to_string())?;
    let mut taken = 0;
    let mut out = Vec::new();
    for i in 0..4 {
        let _ = tx.try_put(i);
        taken += usize::from(rx.try_get().is_ok());
        let _ = tx.try_put_many(&[i, i + 1, i + 2]);
        out.clear();
        taken += rx.try_get_many(&mut out, 3).unwrap_or(0);
        let _ = q.qsize();
    }
    Ok(taken)
}
