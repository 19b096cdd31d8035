//! What `/dev/shm` may hold besides our segments — a FIFO, a link, a file of
//! another user's, a segment open to everyone — and how opening and scanning
//! treat it: refused or skipped, never blocked on, followed or trusted.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use multiproc_shm::{
    remove_stale, stale_segments, Error, Location, OpenOptions, Segment, SharedSlice, TrustProblem,
};
use multiproc_testkit::{fork, unique_name, ChildExit, Watchdog};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn an_empty_segment_is_refused_with_a_reason() {
    for r in [
        Segment::anonymous(0),
        Segment::memfd(0),
        Segment::create(&unique_name("empty"), 0),
    ] {
        match r {
            Err(
                e @ Error::InvalidSize {
                    problem: multiproc_shm::SizeProblem::Zero,
                    ..
                },
            ) => assert!(e.to_string().contains("0 bytes"), "{e}"),
            other => panic!("a segment of 0 bytes: {other:?}"),
        }
    }
    assert!(matches!(
        SharedSlice::<u64>::new_in(Location::Anonymous, 0),
        Err(Error::InvalidSize { .. })
    ));
    assert!(Segment::anonymous(1).is_ok());
}

/// A FIFO under the prefix used to hang `remove_stale` for good (it opened it
/// read-only and blocking, waiting for a writer); a symlink to one of our
/// segments is not followed; a leftover open to everyone is not ours to judge.
#[test]
fn scanning_skips_fifos_links_and_files_not_made_private() {
    let _dog = Watchdog::arm(LIMIT, "scan of odd files");
    let prefix = unique_name("odd");
    let fifo = format!("/dev/shm/{prefix}-fifo");
    let cfifo = CString::new(fifo.clone()).unwrap();
    // SAFETY: a valid path and mode.
    assert_eq!(unsafe { libc::mkfifo(cfifo.as_ptr(), 0o600) }, 0);
    // A leftover whose creator is dead, but open to everyone: skipped.
    let open_to_all = format!("{prefix}-open");
    let child = fork(|| {
        // Leftovers on purpose: no tracker removes them.
        multiproc_shm::set_tracking(false);
        let seg = Segment::create(&open_to_all, 16).unwrap();
        seg.set_mode(0o666).unwrap();
        // SAFETY: raise takes a plain signal number; the child dies here.
        unsafe { libc::raise(libc::SIGKILL) };
        1
    });
    assert_eq!(child.wait(LIMIT), ChildExit::Signaled(libc::SIGKILL));
    // A dead creator's private leftover, and a link to it.
    let dead = format!("{prefix}-dead");
    let child = fork(|| {
        multiproc_shm::set_tracking(false);
        let _seg = Segment::create(&dead, 16).unwrap();
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGKILL) };
        1
    });
    assert_eq!(child.wait(LIMIT), ChildExit::Signaled(libc::SIGKILL));
    let link = format!("/dev/shm/{prefix}-link");
    std::os::unix::fs::symlink(format!("/dev/shm/{dead}"), &link).unwrap();

    let start = Instant::now();
    let stale = stale_segments(&prefix).unwrap();
    assert_eq!(
        stale.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        [dead.as_str()],
        "only the private leftover, not the FIFO, the link or the open one"
    );
    let removed = remove_stale(&prefix).unwrap();
    assert_eq!(removed, stale);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        std::path::Path::new(&fifo).exists(),
        "the FIFO is left alone"
    );
    // Opening the FIFO by name is refused at once, not blocked on.
    let name = fifo.trim_start_matches("/dev/shm/");
    assert!(matches!(
        Segment::open(name),
        Err(Error::NotTrusted {
            problem: TrustProblem::NotRegularFile { .. },
            ..
        })
    ));
    assert!(
        Segment::open(&format!("{prefix}-link")).is_err(),
        "no link followed"
    );

    std::fs::remove_file(&fifo).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(format!("/dev/shm/{open_to_all}")).unwrap();
}

/// A segment open to group or others is refused unless the opener asks for
/// one shared between users.
#[test]
fn a_segment_open_to_others_is_refused_unless_asked_for() {
    let name = unique_name("mode");
    let seg = Segment::create(&name, 8).unwrap();
    assert!(Segment::open(&name).is_ok());
    seg.set_mode(0o606).unwrap();
    match Segment::open(&name) {
        Err(Error::NotTrusted {
            problem: TrustProblem::Permissions { mode },
            ..
        }) => assert_eq!(mode, 0o606),
        other => panic!("a segment open to others: {other:?}"),
    }
    let err = Segment::open(&name).unwrap_err().to_string();
    assert!(
        err.contains("any_user(true)"),
        "the message says what to do: {err}"
    );
    assert_eq!(
        OpenOptions::new().any_user(true).open(&name).unwrap().len(),
        8
    );
}

/// Squatting: another user made the name first (and left it writable to us).
/// Opening it would exchange data with a stranger; it is refused. Needs root to
/// act as the other user; without it, only the file-mode half runs.
#[test]
fn a_segment_another_user_made_first_is_refused() {
    let _dog = Watchdog::arm(LIMIT, "squatting");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot act as another user; see the file-mode test");
        return;
    }
    let name = unique_name("squat");
    let squatter = fork(|| {
        // SAFETY: setuid takes a plain uid; 65534 is "nobody".
        if unsafe { libc::setuid(65534) } != 0 {
            return 2;
        }
        let mut seg = Segment::create(&name, 64).unwrap();
        seg.set_mode(0o600).unwrap();
        seg.set_unlink_on_drop(false);
        0
    });
    squatter.wait_ok(LIMIT);
    let path = format!("/dev/shm/{name}");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    match Segment::open(&name) {
        Err(Error::NotTrusted {
            problem:
                TrustProblem::Owner {
                    uid: 65534,
                    euid: 0,
                },
            ..
        }) => {}
        other => panic!("another user's segment: {other:?}"),
    }
    assert!(OpenOptions::new().any_user(true).open(&name).is_ok());
    // Not ours to judge in a scan either.
    assert!(stale_segments(&name).unwrap().is_empty());
    std::fs::remove_file(&path).unwrap();
}
