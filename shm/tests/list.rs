//! `ShareableList`: Python's `shared_memory.ShareableList` — its items, its
//! rooms, its comparisons, across `fork` and unrelated processes, against a
//! writer killed mid-write and a peer that writes over the segment.

use std::time::{Duration, Instant};

use multiproc_shm::{Error, Item, Location, Segment, ShareableList};
use multiproc_testkit::{fork, reexec, role, unique_name, wait_command, Watchdog};
use proptest::prelude::*;

const LIMIT: Duration = Duration::from_secs(60);

/// The Python docs' example list.
fn pythons_example() -> Vec<Item> {
    vec![
        "howdy".into(),
        Item::from(&b"HoWdY"[..]),
        (-273.154).into(),
        100.into(),
        Item::None,
        true.into(),
        42.into(),
    ]
}

#[test]
fn items_of_every_kind_read_back_as_written() {
    let items = vec![
        Item::None,
        Item::Bool(false),
        Item::Bool(true),
        Item::Int(i64::MIN),
        Item::Int(i64::MAX),
        Item::Float(-0.0),
        Item::Float(f64::INFINITY),
        Item::Str(String::new()),
        // Python strips a string's trailing NULs; this list keeps them.
        Item::Str("a\0".into()),
        Item::Str("é — ünïcode".into()),
        Item::Bytes(Vec::new()),
        Item::Bytes(vec![0, 255, 0]),
        Item::Bytes((0..=255).collect()),
    ];
    let sl = ShareableList::anonymous(items.clone()).unwrap();
    assert_eq!(sl.len(), items.len());
    let back = sl.to_vec().unwrap();
    for (i, (a, b)) in items.iter().zip(&back).enumerate() {
        // Bit for bit (-0.0 == 0.0 by `==`).
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "item {i}");
    }
    let nan = ShareableList::anonymous([f64::NAN]).unwrap();
    assert!(matches!(nan.get(0).unwrap(), Item::Float(f) if f.is_nan()));
    let empty = ShareableList::anonymous(Vec::<Item>::new()).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.to_vec().unwrap(), []);
}

/// `get_into` reads what `get` reads, item after item of every kind into
/// one `Item`, and a string or bytes read into a buffer with room enough
/// lands in that buffer (its allocation kept, not a new one).
#[test]
fn get_into_reads_as_get_does_and_keeps_the_buffer_it_is_given() {
    let mut items = pythons_example();
    items.extend(["", "a longer string than the first", "é"].map(Item::from));
    items.push(Item::from(&[7u8; 40][..]));
    let sl = ShareableList::anonymous(items.clone()).unwrap();
    let mut item = Item::None;
    for (i, want) in items.iter().enumerate() {
        sl.get_into(i, &mut item).unwrap();
        assert_eq!(format!("{item:?}"), format!("{want:?}"), "item {i}");
        sl.get_into_timeout(i, &mut item, Duration::ZERO).unwrap();
        assert_eq!(format!("{item:?}"), format!("{want:?}"), "item {i}, timed");
    }
    let mut text = Item::Str(String::with_capacity(64));
    let Item::Str(buf) = &text else {
        unreachable!()
    };
    let at = buf.as_ptr();
    // Strings and bytes, in turn, all within the 64 bytes.
    for i in [0, 1, 8, 10, 9, 7] {
        sl.get_into(i, &mut text).unwrap();
        let ptr = match &text {
            Item::Str(s) => s.as_ptr(),
            Item::Bytes(b) => b.as_ptr(),
            other => panic!("item {i} read as {other:?}"),
        };
        assert_eq!(ptr, at, "item {i} read into a new buffer");
    }
    assert!(matches!(
        sl.get_into(items.len(), &mut text),
        Err(Error::ListIndex { .. })
    ));
}

#[test]
fn an_item_takes_any_value_that_fits_its_room_as_pythons_does() {
    let sl = ShareableList::anonymous(pythons_example()).unwrap();
    // Python's rooms: 8 bytes a scalar, 8 * (len // 8 + 1) a string or bytes.
    assert_eq!(
        (0..7).map(|i| sl.room(i).unwrap()).collect::<Vec<_>>(),
        [8, 8, 8, 8, 8, 8, 8]
    );
    let long = ShareableList::anonymous(["12345678", "", "123456789abcdefg1"]).unwrap();
    assert_eq!(long.room(0).unwrap(), 16);
    assert_eq!(long.room(1).unwrap(), 8);
    assert_eq!(long.room(2).unwrap(), 24);

    // The docs' example: sl[2] = 'a string', then a kind change a slot.
    sl.set(2, "a string").unwrap();
    assert_eq!(sl.get(2).unwrap(), Item::from("a string"));
    sl.set(0, 7).unwrap();
    sl.set(3, Item::None).unwrap();
    sl.set(4, &b"8 bytes!"[..]).unwrap();
    sl.set(5, 2.5).unwrap();
    assert_eq!(
        sl.to_vec().unwrap(),
        [
            Item::Int(7),
            Item::Bytes(b"HoWdY".to_vec()),
            Item::from("a string"),
            Item::None,
            Item::Bytes(b"8 bytes!".to_vec()),
            Item::Float(2.5),
            Item::Int(42),
        ]
    );
    // Longer than the room: refused, nothing written (Python's
    // "bytes/str item exceeds available storage").
    match sl.set(2, "nine byte") {
        Err(Error::ItemTooLong { index, len, room }) => assert_eq!((index, len, room), (2, 9, 8)),
        other => panic!("{other:?}"),
    }
    assert_eq!(sl.get(2).unwrap(), Item::from("a string"));
    long.set(2, "x".repeat(24)).unwrap();
    assert!(long.set(2, "x".repeat(25)).is_err());
    assert_eq!(long.get(2).unwrap(), Item::Str("x".repeat(24)));
}

#[test]
fn count_and_index_compare_as_pythons_eq() {
    let sl = ShareableList::anonymous([
        Item::Int(1),
        Item::Bool(true),
        Item::Float(1.0),
        Item::from("1"),
        Item::from(&b"1"[..]),
        Item::None,
        Item::Float(f64::NAN),
        Item::Float(9_007_199_254_740_992.0), // 2**53
    ])
    .unwrap();
    assert_eq!(sl.count(1).unwrap(), 3);
    assert_eq!(sl.count(true).unwrap(), 3);
    assert_eq!(sl.count(1.0).unwrap(), 3);
    assert_eq!(sl.count(f64::NAN).unwrap(), 0);
    assert_eq!(sl.count(Item::None).unwrap(), 1);
    assert_eq!(sl.index("1").unwrap(), Some(3));
    assert_eq!(sl.index(&b"1"[..]).unwrap(), Some(4));
    assert_eq!(sl.index(Item::None).unwrap(), Some(5));
    assert_eq!(sl.index(2).unwrap(), None);
    assert_eq!(sl.index(9_007_199_254_740_992i64).unwrap(), Some(7));
    // Python: 2**53 + 1 == float(2**53) is False.
    assert_eq!(sl.index(9_007_199_254_740_993i64).unwrap(), None);
    assert_eq!(sl.index(Some(false)).unwrap(), None);
    assert_eq!(sl.index(None::<i64>).unwrap(), Some(5));
}

#[test]
fn an_index_past_the_end_is_an_error() {
    let sl = ShareableList::anonymous([1, 2]).unwrap();
    let past = |r: Result<(), Error>| match r {
        Err(Error::ListIndex { index: 2, len: 2 }) => {}
        other => panic!("{other:?}"),
    };
    past(sl.get(2).map(drop));
    past(sl.get_timeout(2, Duration::ZERO).map(drop));
    past(sl.set(2, 0));
    past(sl.set_timeout(2, 0, Duration::ZERO));
    past(sl.room(2).map(drop));
    past(sl.writer_grace(2).map(drop));
    assert_eq!(sl.to_vec().unwrap(), [Item::Int(1), Item::Int(2)]);
}

#[test]
fn a_list_is_not_opened_as_something_else_nor_something_else_as_a_list() {
    let name = unique_name("list-type");
    let _sl = ShareableList::create(&name, [1]).unwrap();
    assert!(matches!(
        multiproc_shm::SharedSlice::<std::sync::atomic::AtomicU64>::open(&name),
        Err(Error::LayoutMismatch { .. })
    ));
    let other = unique_name("list-type-slice");
    let _s = multiproc_shm::SharedSlice::<std::sync::atomic::AtomicU64>::create(&other, 4).unwrap();
    assert!(matches!(
        ShareableList::open(&other),
        Err(Error::LayoutMismatch { .. })
    ));
}

#[test]
fn a_forked_child_writes_items_the_parent_reads() {
    let _dog = Watchdog::arm(LIMIT, "a_forked_child_writes_items_the_parent_reads");
    let sl = ShareableList::anonymous(pythons_example()).unwrap();
    fork(|| {
        sl.set(0, "hi").unwrap();
        let Item::Int(n) = sl.get(3).unwrap() else {
            return 1;
        };
        sl.set(3, n * 7).unwrap();
        0
    })
    .wait_ok(LIMIT);
    assert_eq!(sl.get(0).unwrap(), Item::from("hi"));
    assert_eq!(sl.get(3).unwrap(), Item::Int(700));
}

#[test]
fn a_list_opened_by_name_in_a_forked_child() {
    let _dog = Watchdog::arm(LIMIT, "a_list_opened_by_name_in_a_forked_child");
    let name = unique_name("list-fork");
    let sl = ShareableList::create(&name, pythons_example()).unwrap();
    let child_name = name.clone();
    fork(move || {
        let other = ShareableList::open(&child_name).unwrap();
        assert_eq!(other.to_vec().unwrap(), pythons_example());
        other.set(6, -1).unwrap();
        0
    })
    .wait_ok(LIMIT);
    assert_eq!(sl.get(6).unwrap(), Item::Int(-1));
}

/// Re-executed role: open the list named in `MP_NAME`, add 1 to every
/// integer and write "seen" over the first item.
fn play_role() -> bool {
    if role().as_deref() != Some("list-writer") {
        return false;
    }
    let sl = ShareableList::open(&std::env::var("MP_NAME").unwrap()).unwrap();
    for i in 0..sl.len() {
        if let Item::Int(n) = sl.get(i).unwrap() {
            sl.set(i, n + 1).unwrap();
        }
    }
    sl.set(0, "seen").unwrap();
    true
}

#[test]
fn an_unrelated_process_opens_a_list_by_name() {
    if play_role() {
        return;
    }
    let _dog = Watchdog::arm(LIMIT, "an_unrelated_process_opens_a_list_by_name");
    let name = unique_name("list-exec");
    let sl = ShareableList::create(&name, pythons_example()).unwrap();
    let child = reexec("an_unrelated_process_opens_a_list_by_name", "list-writer")
        .env("MP_NAME", &name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_command(child, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = pythons_example();
    want[0] = "seen".into();
    want[3] = 101.into();
    want[6] = 43.into();
    assert_eq!(sl.to_vec().unwrap(), want);
}

/// One of two whole strings of `len` bytes, of `a` or of `b`, and which.
fn whole(item: &Item, len: usize) -> Option<u8> {
    let Item::Str(s) = item else { return None };
    let first = *s.as_bytes().first()?;
    (s.len() == len && s.bytes().all(|c| c == first)).then_some(first)
}

#[test]
fn a_reader_never_sees_half_a_write_nor_writers_each_others() {
    let _dog = Watchdog::arm(LIMIT, "a_reader_never_sees_half_a_write");
    const LEN: usize = 4096;
    // Item 0 is written by both children at once; item 1 tells them to stop.
    let sl = ShareableList::anonymous([Item::Str("a".repeat(LEN)), Item::Bool(false)]).unwrap();
    let writers: Vec<_> = [b'b', b'c']
        .into_iter()
        .map(|c| {
            let sl = &sl;
            fork(move || {
                let mine = String::from_utf8(vec![c; LEN]).unwrap();
                let other = "a".repeat(LEN);
                let mut n = 0u64;
                while sl.get(1).unwrap() == Item::Bool(false) {
                    sl.set(0, if n.is_multiple_of(2) { &mine } else { &other }.as_str())
                        .unwrap();
                    n += 1;
                    // Now and then a pause, in which a copy can finish
                    // without a write overtaking it.
                    if n.is_multiple_of(4) {
                        std::thread::sleep(Duration::from_micros(20));
                    }
                }
                0
            })
        })
        .collect();
    let mut seen = [0u32; 256];
    let start = Instant::now();
    let mut reads = 0u32;
    while reads < 20_000 || (seen[usize::from(b'b')] == 0 || seen[usize::from(b'c')] == 0) {
        let item = sl.get(0).unwrap();
        let c = whole(&item, LEN)
            .unwrap_or_else(|| panic!("read {reads}: half a write: {}", summary(&item)));
        seen[usize::from(c)] += 1;
        reads += 1;
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "writers never seen: {seen:?}"
        );
    }
    sl.set(1, true).unwrap();
    for w in writers {
        w.wait_ok(LIMIT);
    }
    eprintln!(
        "{reads} reads: a {} b {} c {}",
        seen[usize::from(b'a')],
        seen[usize::from(b'b')],
        seen[usize::from(b'c')]
    );
}

/// Runs of the same byte in a string item, for a message.
fn summary(item: &Item) -> String {
    let Item::Str(s) = item else {
        return format!("{item:?}");
    };
    let mut runs: Vec<(char, usize)> = Vec::new();
    for c in s.chars() {
        match runs.last_mut() {
            Some((last, n)) if *last == c => *n += 1,
            _ => runs.push((c, 1)),
        }
    }
    format!("{runs:?}")
}

#[test]
fn a_reader_is_not_starved_by_a_writer_that_never_pauses() {
    let _dog = Watchdog::arm(
        LIMIT,
        "a_reader_is_not_starved_by_a_writer_that_never_pauses",
    );
    const LEN: usize = 16 << 10;
    // Item 0 is rewritten without pause; item 1 stops the writer; item 2
    // counts its writes.
    let sl =
        ShareableList::anonymous([Item::Str("a".repeat(LEN)), Item::Bool(false), Item::Int(0)])
            .unwrap();
    // The writer and this reader on one CPU: the reader runs when the
    // writer yields or its slice ends, nearly always mid-write. Were turns
    // not handed to the one who waits, the writer would take the item
    // again at once, every time, and the reader would get it only when the
    // writer's slice ended between two writes (or, past four times its
    // wait, would give up with `ItemBusy`).
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0);
    let had = multiproc_testkit::pin(0, cpu);
    let writer = fork(|| {
        let (a, b) = ("a".repeat(LEN), "b".repeat(LEN));
        for n in 1i64.. {
            if sl.get(1).unwrap() != Item::Bool(false) {
                break;
            }
            sl.set(0, if n % 2 == 0 { &b } else { &a }.as_str())
                .unwrap();
            sl.set(2, n).unwrap();
        }
        0
    });
    let writes = || match sl.get(2).unwrap() {
        Item::Int(n) => n,
        other => panic!("{other:?}"),
    };
    let mut during = Vec::new();
    for read in 0..100 {
        let before = writes();
        let item = sl.get(0).unwrap();
        during.push(writes() - before);
        assert!(
            whole(&item, LEN).is_some(),
            "read {read}: {}",
            summary(&item)
        );
    }
    sl.set(1, true).unwrap();
    writer.wait_ok(LIMIT);
    multiproc_testkit::set_cpus(0, &had);
    during.sort_unstable();
    // How many writes a read waits through is the hand-over's effect, a
    // matter of speed measured in `benches/NOTES.md` (here, as a rule, up
    // to a slice's worth with it, thousands without), not asserted.
    eprintln!(
        "writes during a read: median {}, most {}",
        during[50], during[99]
    );
}

#[test]
fn a_writer_killed_mid_write_leaves_its_item_unfinished_until_written_again() {
    let _dog = Watchdog::arm(
        LIMIT,
        "a_writer_killed_mid_write_leaves_its_item_unfinished_until_written_again",
    );
    const LEN: usize = 1 << 20;
    const TRIALS: u32 = 30;
    let (mut whole_reads, mut unfinished) = (0, 0);
    for trial in 0..TRIALS {
        // Item 1 counts the writes done, so that the kill comes after the first.
        let sl = ShareableList::anonymous([Item::Bytes(vec![b'a'; LEN]), Item::Int(0)]).unwrap();
        let writer = fork(|| {
            let (a, b) = (vec![b'a'; LEN], vec![b'b'; LEN]);
            for n in 1i64.. {
                sl.set(0, if n % 2 == 0 { &a } else { &b }.as_slice())
                    .unwrap();
                sl.set(1, n).unwrap();
            }
            0
        });
        while sl.get(1).unwrap() == Item::Int(0) {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_micros(u64::from(trial) * 97 % 1000));
        writer.kill(LIMIT);
        match sl.get_timeout(0, Duration::from_millis(20)) {
            Ok(Item::Bytes(b)) if b.len() == LEN && (b.iter().all(|&c| c == b[0])) => {
                whole_reads += 1;
            }
            Err(Error::ItemUnfinished { index: 0, .. }) => unfinished += 1,
            other => panic!("trial {trial}: {:?}", other.map(|i| format!("{i:?}").len())),
        }
        // A new write takes the item over and makes it whole.
        sl.set_timeout(0, &b"whole"[..], Duration::from_millis(20))
            .unwrap();
        assert_eq!(
            sl.get_timeout(0, Duration::ZERO).unwrap(),
            Item::Bytes(b"whole".to_vec())
        );
    }
    eprintln!("{TRIALS} kills: {whole_reads} left the item whole, {unfinished} half written");
    // The writer spends nearly all its time inside a write of 1 MiB.
    assert!(unfinished > 0, "no kill landed inside a write");
}

/// Writes `word` as word `k` of the segment's contents, as a hostile peer would.
fn scribble(seg: &Segment, k: usize, word: u64) {
    seg.write_volatile(k * 8, &word.to_le_bytes()).unwrap();
}

/// A kind word as the list writes it: kind, length.
fn kind_word(kind: u64, len: u64) -> u64 {
    (kind << 56) | len
}

fn read_word(seg: &Segment, k: usize) -> u64 {
    let mut b = [0u8; 8];
    seg.read_volatile(k * 8, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Where item 0 of a list of two items keeps its words: the count, two
/// rooms, then each item's turn word and kind word, then the bytes.
const TURN0: usize = 3;
const KIND0: usize = 4;
const DATA0: usize = 7;
/// A turn word's mark that someone waits.
const WANTED: u64 = 1 << 63;

#[test]
fn a_scribbled_item_is_an_error_until_written_again() {
    let name = unique_name("list-scribble");
    let sl = ShareableList::create(&name, ["a string", "x"]).unwrap();
    let seg = Segment::open(&name).unwrap();
    let kind0 = read_word(&seg, KIND0);
    assert_eq!(
        kind0,
        kind_word(5, 8),
        "item 0's kind word where it should be"
    );
    let corrupted = |what: &str| match sl.get_timeout(0, Duration::from_millis(5)) {
        Err(Error::CorruptedItem {
            index: 0, reason, ..
        }) => eprintln!("{what}: {reason}"),
        other => panic!("{what}: {other:?}"),
    };
    // A kind no writer leaves.
    scribble(&seg, KIND0, kind_word(0, 8));
    corrupted("kind 0");
    scribble(&seg, KIND0, kind_word(200, 8));
    corrupted("kind 200");
    // A length past the room (16 bytes).
    scribble(&seg, KIND0, kind_word(5, 17));
    corrupted("length past the room");
    // Bytes that are not UTF-8 in a string.
    scribble(&seg, KIND0, kind0);
    scribble(&seg, DATA0, 0xffff_ffff_ffff_ffff);
    corrupted("not UTF-8");
    // One byte that is not UTF-8 in a string of two words, in the first
    // word, then in the last; then the last word's bytes past the length
    // with their high bits set, which are no part of the string.
    scribble(&seg, KIND0, kind_word(5, 12));
    scribble(&seg, DATA0, u64::from_le_bytes(*b"a str\xffng"));
    scribble(&seg, DATA0 + 1, u64::from_le_bytes(*b"abcd\0\0\0\0"));
    corrupted("not UTF-8 in the first word");
    scribble(&seg, DATA0, u64::from_le_bytes(*b"a string"));
    scribble(&seg, DATA0 + 1, u64::from_le_bytes(*b"ab\xffd\0\0\0\0"));
    corrupted("not UTF-8 in the second word");
    scribble(
        &seg,
        DATA0 + 1,
        u64::from_le_bytes(*b"abcd\xff\xff\xff\xff"),
    );
    assert_eq!(sl.get(0).unwrap(), Item::from("a stringabcd"));
    // UTF-8 that is not ASCII.
    sl.set(0, "naïve ½").unwrap();
    assert_eq!(sl.get(0).unwrap(), Item::from("naïve ½"));
    // Item 0's kind word as it was (8 bytes): the steps below write the
    // bytes of "a string" under it.
    scribble(&seg, KIND0, kind0);
    // A writer's odd count left behind.
    scribble(&seg, TURN0, 1);
    match sl.get_timeout(0, Duration::from_millis(5)) {
        Err(Error::ItemUnfinished { index: 0, .. }) => {}
        other => panic!("odd count: {other:?}"),
    }
    // A waiter's mark left on a free turn (its waiter killed): a reader
    // reads, a writer waits out its limit for the waiter, then writes.
    scribble(&seg, TURN0, 2 | WANTED);
    scribble(&seg, DATA0, u64::from_le_bytes(*b"a string"));
    assert_eq!(sl.get(0).unwrap(), Item::from("a string"));
    sl.set_timeout(0, "marked", Duration::from_millis(5))
        .unwrap();
    assert_eq!(sl.get(0).unwrap(), Item::from("marked"));
    assert_eq!(read_word(&seg, TURN0) & WANTED, 0, "the mark is cleared");
    // The other item is untouched; a write repairs the scribbled one.
    assert_eq!(sl.get(1).unwrap(), Item::from("x"));
    sl.set_timeout(0, "again", Duration::from_millis(5))
        .unwrap();
    assert_eq!(sl.get(0).unwrap(), Item::from("again"));
}

/// A peer that keeps changing an item's held turn word (as turns passing
/// without end would): readers and writers give up with `ItemBusy` after
/// four times their wait, and a writer takes over only a turn word that
/// stayed (a live holder's bytes are never mixed with its own).
#[test]
fn an_item_whose_held_state_keeps_changing_is_busy_not_taken_over() {
    let _dog = Watchdog::arm(
        LIMIT,
        "an_item_whose_held_state_keeps_changing_is_busy_not_taken_over",
    );
    let sl = ShareableList::anonymous(["a string", "x"]).unwrap();
    let seg = sl.segment();
    let flipper = fork(|| {
        for n in 0u64.. {
            // Odd counts, 1 and 3 in turn: held, and changing.
            scribble(seg, TURN0, 1 + 2 * (n % 2));
        }
        0
    });
    while read_word(seg, TURN0) & 1 == 0 {
        std::thread::yield_now();
    }
    let wait = Duration::from_millis(20);
    for _ in 0..3 {
        match sl.get_timeout(0, wait) {
            Err(Error::ItemBusy { index: 0, .. }) => {}
            other => panic!("a read: {other:?}"),
        }
        match sl.set_timeout(0, "mine", wait) {
            Err(Error::ItemBusy { index: 0, .. }) => {}
            other => panic!("a write: {other:?}"),
        }
    }
    flipper.kill(LIMIT);
    assert_eq!(
        read_word(seg, DATA0),
        u64::from_le_bytes(*b"a string"),
        "nothing written"
    );
    assert_eq!(sl.get(1).unwrap(), Item::from("x"));
}

#[test]
fn a_scribbled_room_table_is_refused_at_open() {
    let name = unique_name("list-rooms");
    let _sl = ShareableList::create(&name, ["a string", "x"]).unwrap();
    let seg = Segment::open(&name).unwrap();
    let (n, room0, room1) = (read_word(&seg, 0), read_word(&seg, 1), read_word(&seg, 2));
    for (what, k, word) in [
        ("more items than words", 0, 1 << 40),
        ("count past the words", 0, 100),
        ("an empty room", 1, 0),
        ("a gap between rooms", 2, room1 + (1 << 32)),
        ("a room past the end", 2, room1 + 1),
        ("overlapping rooms", 2, room0),
    ] {
        scribble(&seg, k, word);
        match ShareableList::open(&name) {
            Err(Error::Corrupted { reason, .. }) => eprintln!("{what}: {reason}"),
            other => panic!("{what}: {:?}", other.map(|l| l.len())),
        }
        scribble(&seg, 0, n);
        scribble(&seg, 1, room0);
        scribble(&seg, 2, room1);
    }
    assert_eq!(ShareableList::open(&name).unwrap().len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever a peer writes over a list, opening it and reading every
    /// item answers a value or an error: never a panic.
    #[test]
    fn any_bytes_over_a_list_are_read_as_values_or_errors(
        scribbles in proptest::collection::vec((0usize..64, any::<u64>()), 1..6),
    ) {
        let sl = ShareableList::new_in(Location::Memfd, pythons_example()).unwrap();
        let seg = sl.segment();
        let words = seg.len() / 8;
        for (k, word) in scribbles {
            scribble(seg, k % words, word);
        }
        let fd = seg.fd().unwrap().try_clone_to_owned().unwrap();
        if let Ok(other) = ShareableList::from_segment(Segment::from_fd(fd).unwrap()) {
            for i in 0..other.len() {
                let _ = other.get_timeout(i, Duration::ZERO);
            }
            let _ = format!("{other:?}");
        }
        for i in 0..sl.len() {
            let _ = sl.get_timeout(i, Duration::ZERO);
        }
    }
}
