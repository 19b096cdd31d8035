//! Named segments whose creator was killed are found and removed; live and
//! persistent ones are left alone.

use std::time::Duration;

use multiproc_shm::{remove_stale, stale_segments, Segment};
use multiproc_testkit::{fork, unique_name, ChildExit, Watchdog};

const LIMIT: Duration = Duration::from_secs(20);

/// Forks a child that creates `name` and is SIGKILLed before it can unlink it.
fn leave_behind(name: &str, persistent: bool) -> u32 {
    let child = fork(|| {
        // Left behind on purpose: no tracker to remove it.
        multiproc_shm::set_tracking(false);
        let mut seg = Segment::create(name, 16).unwrap();
        if persistent {
            seg.set_unlink_on_drop(false);
        }
        // SAFETY: raise takes a plain signal number; the child dies here.
        unsafe { libc::raise(libc::SIGKILL) };
        1
    });
    let pid = child.pid() as u32;
    assert_eq!(child.wait(LIMIT), ChildExit::Signaled(libc::SIGKILL));
    pid
}

#[test]
fn segments_of_a_killed_creator_are_found_and_removed() {
    let _dog = Watchdog::arm(LIMIT, "stale");
    stale_found_and_removed();
}

/// The same where `pidfd_open` is refused: every creator is then recorded
/// with its start time, not a pidfs inode number, as on every kernel before
/// 6.9 (Debian 12's 6.1, Ubuntu 24.04's 6.8). The refusal is
/// a real one: a seccomp filter in a forked child, which runs the test (and
/// whose own children inherit it).
#[test]
fn segments_of_a_killed_creator_are_found_where_tokens_are_start_times() {
    let _dog = Watchdog::arm(LIMIT, "stale, start-time tokens");
    let child = fork(|| {
        multiproc_testkit::refuse_pidfd_open();
        let me = multiproc_shm::ProcessIdentity::current();
        assert_ne!(me.token, 0);
        assert_eq!(
            me.token & multiproc_shm::identity::TOKEN_PIDFS,
            0,
            "a start-time token, not a pidfs one"
        );
        stale_found_and_removed();
        0
    });
    assert_eq!(child.wait(LIMIT), ChildExit::Exited(0));
}

fn stale_found_and_removed() {
    let prefix = unique_name("stale");
    let dead = format!("{prefix}-dead");
    let kept = format!("{prefix}-kept");
    let live = format!("{prefix}-live");

    let dead_pid = leave_behind(&dead, false);
    leave_behind(&kept, true);
    let _live = Segment::create(&live, 16).unwrap();
    // A foreign file with the prefix is not ours and is never touched.
    let foreign = format!("/dev/shm/{prefix}-foreign");
    std::fs::write(&foreign, [1u8; 256]).unwrap();

    let stale = stale_segments(&prefix).unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].name, dead);
    assert_eq!(stale[0].creator.pid, dead_pid);

    let removed = remove_stale(&prefix).unwrap();
    assert_eq!(removed, stale);
    assert!(Segment::open(&dead).is_err(), "the leftover is gone");
    assert!(Segment::open(&kept).is_ok(), "a persistent segment stays");
    assert!(
        Segment::open(&live).is_ok(),
        "a live creator's segment stays"
    );
    assert!(std::path::Path::new(&foreign).exists());
    assert!(remove_stale(&prefix).unwrap().is_empty());

    Segment::open(&kept).unwrap().unlink().unwrap();
    std::fs::remove_file(&foreign).unwrap();
}
