//! The process examples (the tutorials' blocking, non-blocking, daemon and
//! fork programs) run as a user would run them: the order of their lines is
//! the behaviour the tutorials teach (a join waits, a start does not, a daemon
//! ends with its parent, a failed child's status is 256).

use std::time::Duration;

use multiproc_testkit::run_example;

const LIMIT: Duration = Duration::from_secs(60);

/// The events of `blocking MODE`'s output in order, without their times or
/// the mode: "张三 start", "李四 done", "Finished", ...
fn events(mode: &str) -> Vec<String> {
    let out = run_example("blocking", &[mode], LIMIT);
    out.lines()
        .map(|l| {
            let event = l.split_once("s: ").map_or(l, |(_, e)| e);
            let event = event.split(" (").next().unwrap_or_default();
            event.trim_end_matches("...").to_owned()
        })
        .collect()
}

/// Where `event` is in `events`; fails the test if it is missing.
fn at(events: &[String], event: &str) -> usize {
    events
        .iter()
        .position(|e| e == event)
        .unwrap_or_else(|| panic!("no {event:?} in {events:?}"))
}

#[test]
fn a_joined_worker_finishes_before_the_main_program() {
    assert_eq!(
        events("one-blocking"),
        ["张三 start", "张三 done", "Finished"]
    );
}

#[test]
fn an_unjoined_worker_finishes_after_the_main_program_and_is_waited_for() {
    let e = events("one-nonblocking");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(at(&e, "Finished") < at(&e, "张三 done"), "{e:?}");
    assert!(at(&e, "张三 start") < at(&e, "张三 done"), "{e:?}");
}

#[test]
fn serial_joins_run_one_worker_after_the_other() {
    assert_eq!(
        events("serial"),
        [
            "张三 start",
            "张三 done",
            "李四 start",
            "李四 done",
            "Finished"
        ]
    );
}

#[test]
fn parallel_workers_both_start_before_either_is_done() {
    let e = events("parallel");
    assert_eq!(e.len(), 5, "{e:?}");
    let last_start = at(&e, "张三 start").max(at(&e, "李四 start"));
    let first_done = at(&e, "张三 done").min(at(&e, "李四 done"));
    assert!(last_start < first_done, "{e:?}");
    assert_eq!(e[4], "Finished", "{e:?}");
}

#[test]
fn a_daemon_ends_with_the_main_program() {
    assert_eq!(events("daemon"), ["守护 start", "Finished"]);
}

#[test]
fn fork_wait_sees_status_256_for_a_failed_child() {
    let out = run_example("fork_wait", &[], LIMIT);
    let parent_pid = out
        .lines()
        .find_map(|l| l.strip_prefix("parent: pid "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no parent line in {out}"))
        .to_owned();
    let child_line = out
        .lines()
        .find(|l| l.starts_with("child: pid "))
        .unwrap_or_else(|| panic!("no child line in {out}"));
    assert!(
        child_line.ends_with(&format!("parent {parent_pid}")),
        "the child's parent is the parent: {out}"
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.ends_with("raw status 256 (exit code 1)")),
        "{out}"
    );
}
