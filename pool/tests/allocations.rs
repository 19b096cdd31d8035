//! What a task costs the heap: submitting an `apply_async` of a small
//! argument and taking its result allocate nothing on the calling thread
//! once the pool's tables have grown to the burst (a heap block a task,
//! allocated by the caller and freed by the thread that files the answer,
//! cost a pipelined task a few percent of its time: `benches/NOTES.md`).
//! Counted by a global allocator, for the thread under test only (the
//! pool's background thread allocates now and then as it looks at its
//! workers). Its own binary: the allocator is the whole process's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use multiproc_pool::Pool;
use multiproc_testkit::{zombie_children, Watchdog};

struct Counting;

thread_local! {
    /// Whether this thread's allocations are counted, and how many so far.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: a thread being torn down has no thread-locals left.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call goes to `System`, unchanged; the count touches only
// const-initialised thread-locals, which allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations this thread makes in `f`.
fn allocations_in(f: impl FnOnce()) -> u64 {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[test]
fn submitting_a_small_task_and_taking_its_result_allocate_nothing() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "allocations");
    const N: u64 = 10_000;
    let pool = Pool::new(2).unwrap();
    let mut handles = Vec::with_capacity(N as usize);
    let submit = |handles: &mut Vec<_>| {
        for i in 0..N {
            handles.push(pool.apply_async(square, i).unwrap());
        }
    };
    // The tables grow to the burst once.
    for _ in 0..3 {
        submit(&mut handles);
        for (i, h) in handles.drain(..).enumerate() {
            assert_eq!(h.get().unwrap(), square(i as u64));
        }
    }
    // Counted: the submissions (the background thread drives meanwhile),
    // then the takes of results already in. Not counted: the wait between,
    // which drives, and a driving round's scratch lists grow with its
    // length in time (a look at the workers every 5 ms), not with tasks.
    let submitted = allocations_in(|| submit(&mut handles));
    while !handles.iter().all(|h| h.ready()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let taken = allocations_in(|| {
        for (i, h) in handles.drain(..).enumerate() {
            assert_eq!(h.get().unwrap(), square(i as u64));
        }
    });
    // One a task before the message went inline; none now (a few allowed
    // for a table that still finds room to grow).
    assert!(
        submitted <= N / 1000,
        "{submitted} allocations submitting {N} apply_async"
    );
    assert!(taken <= N / 1000, "{taken} allocations taking {N} results");
    drop(pool);
    assert!(zombie_children().is_empty());
}

/// Runs `call` 200 times on a pool of two (200 times first, not counted)
/// and checks that this thread allocated at most `blocks` a call (its waits
/// file answers too; the background thread's allocations are not counted).
fn at_most_a_call(what: &str, blocks: u64, call: impl Fn(&Pool)) {
    let _dog = Watchdog::arm(Duration::from_secs(120), what);
    let pool = Pool::new(2).unwrap();
    const CALLS: u64 = 200;
    let calls = || (0..CALLS).for_each(|_| call(&pool));
    calls();
    let made = allocations_in(calls);
    assert!(
        made <= blocks * CALLS,
        "{made} allocations for {CALLS} {what}"
    );
    drop(pool);
    assert!(zombie_children().is_empty());
}

/// A small map, as a loop of Python's `Pool.map` calls makes them (ten
/// items: five chunks of two, whose tasks and answers are kept inline): its
/// job box, its result, its list of answers and the list its `get` decodes
/// from are allocated once each (a table of answers out of order sometimes
/// too). The lists grew an answer at a time, and the map's last look at its
/// input took the thread's kept encoding buffer and dropped it: about ten
/// allocations a map, four now (`benches/NOTES.md`).
#[test]
fn a_small_map_allocates_a_few_blocks() {
    let want: [u64; 10] = std::array::from_fn(|i| square(i as u64));
    at_most_a_call("maps", 6, |pool| {
        assert_eq!(pool.map(square, 0..10).unwrap(), want);
    });
}

/// An `imap` of ten items, in a loop: its list of answers and of tasks are
/// made once with room for its chunks, its chunks of one item are read
/// with no allocation, and its table of results ready makes one node
/// (3.5-4.4 blocks a call in all); before, about twenty-seven (a list an
/// item read, lists grown a chunk at a time, a buffer an item encoded:
/// `benches/NOTES.md`).
#[test]
fn a_small_imap_allocates_a_few_blocks() {
    let want: [u64; 10] = std::array::from_fn(|i| square(i as u64));
    at_most_a_call("imaps", 6, |pool| {
        let mut got = [0; 10];
        for (slot, r) in got.iter_mut().zip(pool.imap(square, 0..10u64)) {
            *slot = r.unwrap();
        }
        assert_eq!(got, want);
    });
}
