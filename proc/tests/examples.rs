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

/// The number after `prefix` on the first line that starts with it.
fn number_after(out: &str, prefix: &str) -> u32 {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in:\n{out}"))
}

/// Where the first line containing `text` is.
fn line_of(out: &str, text: &str) -> usize {
    out.lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in:\n{out}"))
}

#[test]
fn a_process_made_from_a_type_runs_its_run_with_its_name() {
    let out = run_example("subclass", &[], LIMIT);
    let chats: Vec<&str> = out.lines().filter(|l| l.ends_with("is chatting")).collect();
    assert_eq!(chats.len(), 3, "{out}");
    for person in ["Jedan", "Taibai", "alex"] {
        assert!(
            chats.iter().any(|l| l.contains(&format!(": {person} is"))),
            "{out}"
        );
    }
    let mut pids: Vec<&str> = chats.iter().map(|l| l.split(':').next().unwrap()).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three processes: {out}");
    // The parent's lines come while the child sleeps; the pid it prints is
    // the one the child reports under its own name.
    assert!(
        line_of(&out, "start") < line_of(&out, "egon is done"),
        "{out}"
    );
    let pid = out
        .lines()
        .skip(line_of(&out, "start") + 1)
        .find_map(|l| l.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no pid after start: {out}"));
    assert_eq!(number_after(&out, "egon is running (pid "), pid, "{out}");
}

#[test]
fn a_child_is_started_asynchronously_and_its_memory_is_its_own() {
    let out = run_example("pids", &[], LIMIT);
    assert!(
        line_of(&out, "**********") < line_of(&out, "12345"),
        "{out}"
    );
    assert_eq!(
        number_after(&out, "child's parent: pid "),
        number_after(&out, "parent: pid "),
        "{out}"
    );
    assert_ne!(
        number_after(&out, "child: pid "),
        number_after(&out, "parent: pid "),
        "{out}"
    );
    assert!(out.contains("in the child: 0\nin the parent: 100"), "{out}");
}

#[test]
fn a_zombie_stays_until_reaped_and_an_orphan_is_adopted() {
    let out = run_example("orphan_zombie", &[], LIMIT);
    assert!(out.contains("not yet waited for: state Z"), "{out}");
    assert_eq!(
        number_after(&out, "zombie: reaped "),
        number_after(&out, "zombie: child "),
        "{out}"
    );
    assert!(out.contains("in the process table now: false"), "{out}");
    let first_parent = number_after(&out, "orphan: my parent is ");
    let adopter = number_after(&out, "orphan: my parent ended; adopted by ");
    assert_ne!(adopter, first_parent, "{out}");
    let line = &out.lines().nth(line_of(&out, "adopted by")).unwrap();
    let program = number_after(line.split_once("(the program, ").unwrap().1, "");
    assert_eq!(adopter, program, "adopted by the subreaper: {out}");
    assert!(out.contains("program: reaped both"), "{out}");
}
