//! A value written by another process is seen here: children after `fork` for every
//! kind of segment, and unrelated processes (this test binary re-executed).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc_shm::{Kind, Location, Segment, Shared, SharedSlice};
use multiproc_testkit::{fork, reexec, role, unique_name, wait_command, Watchdog};

const LIMIT: Duration = Duration::from_secs(20);

// The closures given to `fork` borrow the handles: a closure that took them by move
// would drop them in the parent (which never calls it), unmapping the memory there.

#[test]
fn anonymous_segment_is_shared_with_a_forked_child() {
    let _dog = Watchdog::arm(LIMIT, "anonymous_segment_is_shared_with_a_forked_child");
    let seg = Segment::anonymous(4096).unwrap();
    let squares = SharedSlice::<u64>::anonymous(16).unwrap();
    let counter = Shared::anonymous(AtomicU64::new(0)).unwrap();
    let value = Shared::anonymous(0.0f64).unwrap();
    fork(|| {
        seg.write_volatile(100, b"child").unwrap();
        for i in 0..16 {
            squares.write_volatile(i, (i * i) as u64).unwrap();
        }
        counter.fetch_add(7, Ordering::SeqCst);
        value.write_volatile(2.5);
        0
    })
    .wait_ok(LIMIT);
    let mut buf = [0u8; 5];
    seg.read_volatile(100, &mut buf).unwrap();
    assert_eq!(&buf, b"child");
    assert_eq!(
        squares.to_vec_volatile(),
        (0..16u64).map(|i| i * i).collect::<Vec<_>>()
    );
    assert_eq!(counter.load(Ordering::SeqCst), 7);
    assert_eq!(value.read_volatile(), 2.5);
}

#[test]
fn anonymous_slice_written_by_several_children() {
    let _dog = Watchdog::arm(LIMIT, "anonymous_slice_written_by_several_children");
    let table = SharedSlice::<u64>::anonymous(64).unwrap();
    let ptr = table.as_ptr() as usize;
    let kids: Vec<_> = (0..4usize)
        .map(|c| {
            fork(move || {
                for i in c * 16..(c + 1) * 16 {
                    // SAFETY: the mapping is inherited and i < 64; each child writes
                    // only its own quarter, and the parent reads after joining.
                    unsafe { (ptr as *mut u64).add(i).write_volatile((i * 3) as u64) };
                }
                0
            })
        })
        .collect();
    for k in kids {
        k.wait_ok(LIMIT);
    }
    assert_eq!(
        table.to_vec_volatile(),
        (0..64u64).map(|i| i * 3).collect::<Vec<_>>()
    );
}

#[test]
fn named_segment_opened_by_a_forked_child() {
    let _dog = Watchdog::arm(LIMIT, "named_segment_opened_by_a_forked_child");
    let name = unique_name("fork-named");
    let creator = SharedSlice::<u32>::create(&name, 8).unwrap();
    let child_name = name.clone();
    fork(move || {
        let s = SharedSlice::<u32>::open(&child_name).unwrap();
        s.write_volatile(5, 0xfeed).unwrap();
        assert_eq!(s.segment().kind(), Kind::Named);
        0
    })
    .wait_ok(LIMIT);
    assert_eq!(creator.read_volatile(5), Some(0xfeed));
}

#[test]
fn a_child_dropping_its_copy_of_the_creators_handle_does_not_unlink() {
    let _dog = Watchdog::arm(LIMIT, "child drop");
    let name = unique_name("fork-drop");
    let creator = Segment::create(&name, 8).unwrap();
    fork(|| {
        // What a child that owns a copy of the handle (a moved closure) does on exit.
        // SAFETY: the child never touches `creator` again after this bitwise copy.
        let copy = unsafe { std::ptr::read(&creator) };
        drop(copy);
        0
    })
    .wait_ok(LIMIT);
    let again =
        Segment::open(&name).expect("the child's drop must not unlink the parent's segment");
    assert_eq!(again.len(), 8);
    drop(creator);
    assert!(
        Segment::open(&name).is_err(),
        "the creator's drop unlinks it"
    );
}

#[test]
fn memfd_segment_seen_by_a_forked_child_through_proc_fd() {
    let _dog = Watchdog::arm(LIMIT, "memfd fork");
    let creator = SharedSlice::<u64>::new_in(Location::Memfd, 4).unwrap();
    let fd = creator.segment().fd().unwrap().as_raw_fd();
    let parent = std::process::id();
    fork(move || {
        // The way an unrelated process of the same user reaches a memfd: /proc/PID/fd/N.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{parent}/fd/{fd}"))
            .unwrap();
        let s = SharedSlice::<u64>::from_segment(Segment::from_fd(OwnedFd::from(file)).unwrap())
            .unwrap();
        s.write_volatile(3, 99).unwrap();
        0
    })
    .wait_ok(LIMIT);
    assert_eq!(creator.read_volatile(3), Some(99));
}

/// Re-executed role: open the named segment from `MP_NAME`, add 1 to every element.
fn play_role() -> bool {
    match role().as_deref() {
        Some("named-writer") => {
            let name = std::env::var("MP_NAME").unwrap();
            let s = SharedSlice::<u64>::open(&name).unwrap();
            for i in 0..s.len() {
                let v = s.read_volatile(i).unwrap();
                s.write_volatile(i, v + 1).unwrap();
            }
            true
        }
        Some("memfd-writer") => {
            let n: i32 = std::env::var("MP_FD").unwrap().parse().unwrap();
            // SAFETY: the parent cleared FD_CLOEXEC on this descriptor and passed its
            // number; nothing else in this process owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(n) };
            let s = SharedSlice::<u64>::from_segment(Segment::from_fd(fd).unwrap()).unwrap();
            s.write_volatile(0, 4242).unwrap();
            true
        }
        _ => false,
    }
}

#[test]
fn unrelated_process_shares_a_named_segment() {
    if play_role() {
        return;
    }
    let _dog = Watchdog::arm(LIMIT, "unrelated named");
    let name = unique_name("exec-named");
    let s = SharedSlice::<u64>::from_slice(Location::Named(&name), &[10, 20, 30]).unwrap();
    let child = reexec("unrelated_process_shares_a_named_segment", "named-writer")
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
    assert_eq!(s.to_vec_volatile(), vec![11, 21, 31]);
}

#[test]
fn unrelated_process_maps_an_inherited_memfd() {
    if play_role() {
        return;
    }
    let _dog = Watchdog::arm(LIMIT, "unrelated memfd");
    let s = SharedSlice::<u64>::new_in(Location::Memfd, 2).unwrap();
    s.segment().set_fd_inheritable(true).unwrap();
    let fd = s.segment().fd().unwrap().as_raw_fd();
    let child = reexec("unrelated_process_maps_an_inherited_memfd", "memfd-writer")
        .env("MP_FD", fd.to_string())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_command(child, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.read_volatile(0), Some(4242));
}
