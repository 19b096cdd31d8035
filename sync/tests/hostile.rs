//! A hostile or buggy peer may write anything into the shared memory of a
//! primitive. Every operation then answers an error or a sane value: never a
//! panic, an abort, an allocation of what the peer wrote, or a hang.
//!
//! Each trial scribbles in a forked child (the peer), then runs the operations
//! in another child, so that an abort shows as that child's signal, not as the
//! end of the test.

use std::time::Duration;

use multiproc_sync::{set_owner_check_interval, Error, SharedDict};
use multiproc_testkit::{fork, ChildExit, Watchdog};

const BOUND: Duration = Duration::from_secs(20);

/// Every u32 of `len` bytes at `at`, in turn, set to each of `values`.
fn scribble_each_word(at: *mut u8, len: usize, values: &[u32], mut check: impl FnMut(usize, u32)) {
    for offset in (0..len).step_by(4) {
        for &v in values {
            // SAFETY: at..at + len lies in the segment (the caller's), 4-aligned.
            let word = unsafe { at.add(offset).cast::<u32>() };
            // SAFETY: as above.
            let old = unsafe { word.read_volatile() };
            let peer = fork(|| {
                // SAFETY: as above: the peer writes one word of the segment.
                unsafe { word.write_volatile(v) };
                0
            });
            peer.wait_ok(BOUND);
            check(offset, v);
            // SAFETY: as above.
            unsafe { word.write_volatile(old) };
        }
    }
}

/// A dictionary whose every word — its length, tombstone count, each entry's
/// state, lengths and hash — was overwritten by a peer: every operation in
/// another process answers without aborting (`items()` allocated the length a
/// peer wrote before).
#[test]
fn a_dictionary_a_peer_scribbled_over_never_aborts_a_reader() {
    let _dog = Watchdog::arm(Duration::from_secs(240), "scribbled dictionary");
    set_owner_check_interval(Duration::from_millis(2));
    let d = SharedDict::<8, 8, 8>::new().unwrap();
    for k in ["a", "bb", "ccc"] {
        d.insert(k, k.repeat(2)).unwrap();
    }
    // The table starts after the mutex's 16-byte lock word and owner record:
    // len, tombstones, next, reserved, then the entries' state, klen, vlen,
    // order, hash.
    let table = d.segment().as_ptr().wrapping_add(16);
    let header = 16 + 2 * (24 + 16); // the table's header, then two entries' fixed fields
    let mut trials = 0;
    scribble_each_word(table, header, &[u32::MAX, 0x8000_0001, 7], |offset, v| {
        let reader = fork(|| {
            let _ = d.len();
            let _ = d.items();
            let _ = d.keys();
            let _ = d.get("a");
            let _ = d.contains_key("bb");
            let _ = d.insert("dddd", "x");
            let _ = d.remove("dddd");
            match d.len() {
                Ok(n) if n > d.capacity() => 3,
                Ok(_) | Err(Error::Corrupted { .. }) => 0,
                Err(e) => {
                    eprintln!("word {offset} = {v:#x}: {e}");
                    0
                }
            }
        });
        let exit = reader.wait(BOUND);
        assert_eq!(
            exit,
            ChildExit::Exited(0),
            "word at offset {offset} set to {v:#x}"
        );
        trials += 1;
    });
    assert_eq!(trials, header / 4 * 3);
}

/// A dictionary whose lock word names a live process that never lets go (a
/// scribbler wrote init's pid there): with a timeout on the handle, every
/// operation answers `Timeout` instead of waiting for good.
#[test]
fn a_dict_held_for_good_answers_timeout_with_a_timeout() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "dict timeout");
    let mut d = multiproc_sync::SharedDict::<4, 4, 4>::new().unwrap();
    d.insert("k", "v").unwrap();
    // The lock word (the table's mutex comes first): held by pid 1, alive.
    d.segment().write_volatile(0, &1u32.to_ne_bytes()).unwrap();
    d.set_timeout(Some(Duration::from_millis(20)));
    assert!(matches!(d.get("k"), Err(multiproc_sync::Error::Timeout)));
    assert!(matches!(
        d.insert("j", "w"),
        Err(multiproc_sync::Error::Timeout)
    ));
    assert!(matches!(d.len(), Err(multiproc_sync::Error::Timeout)));
    // Released (as the holder would): the handle works again.
    d.segment().write_volatile(0, &0u32.to_ne_bytes()).unwrap();
    assert_eq!(d.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A peer stalled in the middle of its own owned step (holding the semaphore's
/// ledger, here a thread paused by the step hook) does not make a call that is
/// out of time sleep behind it: `try_acquire_owned`, a zero-timeout owned
/// acquire and a zero-timeout plain acquire on an empty semaphore answer at
/// once. They used to wait for the ledger one or two check intervals (here
/// 20 s each, so the bound below tells the two apart).
#[test]
fn calls_out_of_time_do_not_wait_behind_a_stalled_owned_step() {
    use multiproc_sync::{OwnedStep, Semaphore};
    use std::sync::mpsc;
    let _dog = Watchdog::arm(Duration::from_secs(120), "stalled owned step");
    set_owner_check_interval(Duration::from_secs(20));
    let s = Semaphore::new(1);
    let (stalled_tx, stalled_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|sc| {
        let s = &s;
        sc.spawn(move || {
            let hook = move |step: OwnedStep| {
                if step == OwnedStep::SeatTaken {
                    stalled_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                }
            };
            drop(s.hook_acquire_owned_with_hook(None, &hook));
        });
        stalled_rx.recv().unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(s.try_acquire_owned(), Err(Error::WouldBlock)));
        assert!(matches!(
            s.acquire_owned_timeout(Duration::ZERO),
            Err(Error::Timeout)
        ));
        // The permit is free, but the stalled step holds the ledger.
        s.try_acquire().unwrap();
        assert!(matches!(
            s.acquire_timeout(Duration::ZERO),
            Err(Error::Timeout)
        ));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "waited {:?} behind the ledger",
            t.elapsed()
        );
        s.release(1).unwrap();
        go_tx.send(()).unwrap();
    });
    assert_eq!(s.value(), 1);
}
