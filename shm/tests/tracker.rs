//! A creator killed before it removes its named segments: its tracker
//! removes them, but never one a live process still maps, one kept on
//! purpose, or one another process made under the same name since.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiproc_shm::{Segment, Shared};
use multiproc_testkit::{fork, unique_name, wait_until, ChildExit, Watchdog};

const BOUND: Duration = Duration::from_secs(10);

/// Names in /dev/shm that start with `prefix`.
fn left(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// 100 creators, each making segments as fast as it can, SIGKILLed at a
/// random moment (often inside a create): every name they made is gone soon
/// after, with nobody calling `remove_stale`.
#[test]
fn a_killed_creators_segments_are_removed_by_its_tracker() {
    let _dog = Watchdog::arm(Duration::from_secs(120), "tracker cleanup");
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut made = 0;
    for trial in 0..100 {
        let prefix = unique_name(&format!("trk{trial}"));
        let p = prefix.clone();
        let first = Shared::anonymous(AtomicU32::new(0)).unwrap();
        let mut creator = fork(|| {
            let mut keep = Vec::new();
            for i in 0.. {
                keep.push(Segment::create(&format!("{p}-{i}"), 4096).unwrap());
                first.store(1, Ordering::SeqCst);
            }
            0
        });
        // Under way (on a slow machine, or under a sanitizer, the first create
        // may take longer than the whole random delay), then a random moment.
        wait_until(BOUND, "the first segment", || {
            first.load(Ordering::SeqCst) == 1
        });
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 3000));
        creator.signal(libc::SIGKILL);
        assert_eq!(
            creator.wait_timeout(BOUND),
            Some(ChildExit::Signaled(libc::SIGKILL))
        );
        made += left(&prefix).len();
        let t = Instant::now();
        while !left(&prefix).is_empty() {
            assert!(
                t.elapsed() < BOUND,
                "trial {trial}: left behind: {:?}",
                left(&prefix)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    eprintln!("100 creators killed with {made} segments between them; all removed");
    assert!(made > 0, "no creator had made a segment when it was killed");
}

/// A segment the dead creator made is left while another process maps it,
/// and removed once that process is gone.
#[test]
fn a_segment_still_mapped_is_left_until_nobody_maps_it() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "tracker in use");
    let name = unique_name("trk-used");
    let ready = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let n = name.clone();
    let creator = fork(|| {
        let _seg = Segment::create(&n, 4096).unwrap();
        ready.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_until(BOUND, "created", || ready.load(Ordering::SeqCst) == 1);
    let n = name.clone();
    let user = fork(|| {
        let seg = Segment::open(&n).unwrap();
        ready.store(2, Ordering::SeqCst);
        while ready.load(Ordering::SeqCst) != 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(seg);
        0
    });
    wait_until(BOUND, "opened", || ready.load(Ordering::SeqCst) == 2);
    creator.kill(BOUND);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        left(&name),
        std::slice::from_ref(&name),
        "still mapped by the user: kept"
    );
    ready.store(3, Ordering::SeqCst);
    user.wait_ok(BOUND);
    wait_until(BOUND, "removed once nobody maps it", || {
        left(&name).is_empty()
    });
}

/// Kept on purpose, or removed and made again by someone else: the dead
/// creator's tracker leaves both.
#[test]
fn a_kept_or_reborn_segment_is_left_alone() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "tracker leaves alone");
    let kept = unique_name("trk-kept");
    let reborn = unique_name("trk-reborn");
    let ready = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let (k, r) = (kept.clone(), reborn.clone());
    let creator = fork(|| {
        let mut a = Segment::create(&k, 64).unwrap();
        a.set_unlink_on_drop(false);
        let mut b = Segment::create(&r, 64).unwrap();
        b.unlink().unwrap();
        ready.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_until(BOUND, "made", || ready.load(Ordering::SeqCst) == 1);
    // This process makes `reborn` again: its own, not the creator's.
    let mine = Segment::create(&reborn, 64).unwrap();
    creator.kill(BOUND);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(left(&kept), std::slice::from_ref(&kept));
    assert_eq!(left(&reborn), std::slice::from_ref(&reborn));
    drop(mine);
    Segment::open(&kept).unwrap().unlink().unwrap();
    assert!(left(&kept).is_empty() && left(&reborn).is_empty());
}

/// With tracking off, a killed creator's segment stays (for `remove_stale`).
#[test]
fn with_tracking_off_a_killed_creators_segment_stays() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "tracking off");
    let name = unique_name("trk-off");
    let n = name.clone();
    let creator = fork(|| {
        multiproc_shm::set_tracking(false);
        let _seg = Segment::create(&n, 64).unwrap();
        // SAFETY: raise with a plain signal number; the child dies here.
        unsafe { libc::raise(libc::SIGKILL) };
        1
    });
    assert_eq!(creator.wait(BOUND), ChildExit::Signaled(libc::SIGKILL));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(left(&name), std::slice::from_ref(&name));
    Segment::open(&name).unwrap().unlink().unwrap();
}

/// The tracker holds none of its creator's shared memory: a segment the
/// creator mapped before the tracker started is not mapped by the tracker
/// (which would keep its memory alive after the creator drops it).
#[test]
fn the_tracker_maps_none_of_its_creators_memory() {
    let _dog = Watchdog::arm(Duration::from_secs(60), "tracker mappings");
    let before = unique_name("trk-before");
    let after = unique_name("trk-after");
    let ready = Shared::anonymous(AtomicU32::new(0)).unwrap();
    let (b, a) = (before.clone(), after.clone());
    let creator = fork(|| {
        multiproc_shm::set_tracking(false);
        let _first = Segment::create(&b, 1 << 20).unwrap();
        multiproc_shm::set_tracking(true);
        let _second = Segment::create(&a, 64).unwrap(); // starts the tracker
        ready.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_until(BOUND, "made", || ready.load(Ordering::SeqCst) == 1);
    let path = format!("/dev/shm/{before}");
    let trackers_mapping_it = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "mp-shm-tracker")
            })
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/maps"))
                    .is_ok_and(|m| m.lines().any(|l| l.ends_with(&path)))
            })
            .count()
    };
    // The tracker exists (it removes `after` below) and maps nothing of it.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(trackers_mapping_it(), 0);
    creator.kill(BOUND);
    wait_until(BOUND, "the tracked one removed", || left(&after).is_empty());
    assert_eq!(
        left(&before),
        std::slice::from_ref(&before),
        "untracked: left"
    );
    Segment::open(&before).unwrap().unlink().unwrap();
}
