//! The synchronisation examples (the tutorials' printing race, condition and
//! shared counters) run as a user would run them, their output checked where
//! it is determined: a `Lock` keeps each process's lines together, a
//! `Condition` orders the worker after the notify, a locked counter is exact.

use std::time::Duration;

use multiproc_testkit::run_example;

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_lock_keeps_each_processs_lines_together() {
    let out = run_example("lock_printing", &[], LIMIT);
    let locked: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("-- with a Lock"))
        .skip(1)
        .collect();
    assert_eq!(locked.len(), 10, "{out}");
    let mut seen = Vec::new();
    for pair in locked.chunks(2) {
        let who = |l: &str| l.split(" is ").next().unwrap_or_default().to_owned();
        assert!(
            pair[0].ends_with(" is running") && pair[1].ends_with(" is done"),
            "{out}"
        );
        assert_eq!(who(pair[0]), who(pair[1]), "one process's two lines: {out}");
        seen.push(who(pair[0]));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "five processes: {out}");
}

#[test]
fn the_worker_goes_on_only_after_the_notify() {
    let out = run_example("condition", &[], LIMIT);
    let lines: Vec<&str> = out.lines().collect();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("no {l:?} in {out}"))
    };
    assert_eq!(lines.len(), 4, "{out}");
    // What the condition guarantees: the worker is done only after the notify.
    // (The tutorial's 200 ms sleep usually puts the worker's first two lines
    // before the notify; a loaded machine may start the worker later, and then
    // wait_while finds the condition already true.)
    assert!(
        at("Main is notifying worker") < at("Worker is done waiting"),
        "{out}"
    );
    assert!(at("inside worker") < at("Worker is waiting"), "{out}");
    assert!(
        at("Worker is waiting") < at("Worker is done waiting"),
        "{out}"
    );
}

#[test]
fn a_counter_under_its_lock_is_exact() {
    let out = run_example("shared_counter", &[], LIMIT);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // Without the lock, anything up to 10000 (updates may be lost or not).
    let unlocked: u32 = lines[0]
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((1..=10_000).contains(&unlocked), "{out}");
    assert!(
        lines[1].starts_with("under get_lock():") && lines[1].ends_with("10000 (expected 10000)"),
        "{out}"
    );
    assert_eq!(
        lines[2],
        "Manager().dict() counter, 10 processes under a Lock: 10"
    );
}

#[test]
fn a_semaphore_of_two_lets_at_most_two_in_and_takes_three_rounds() {
    let out = run_example("semaphore", &[], LIMIT);
    let inside: Vec<u32> = out
        .lines()
        .filter_map(|l| l.strip_suffix(" inside"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(inside.len(), 5, "{out}");
    assert!(inside.iter().all(|&n| (1..=2).contains(&n)), "{out}");
    for i in 0..5 {
        assert!(
            out.find(&format!("task {i} in")) < out.find(&format!("task {i} out")),
            "{out}"
        );
    }
    // Five tasks of 300 ms through two permits cannot take less than three
    // rounds, however the machine schedules them.
    let secs: f64 = out
        .lines()
        .last()
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|s| s.trim_end_matches(" s").parse().ok())
        .unwrap_or_else(|| panic!("no time on the last line: {out}"));
    assert!(secs >= 0.9, "{secs} s: more than two at once? {out}");
}

#[test]
fn every_worker_wakes_after_the_event_is_set() {
    let out = run_example("event", &[], LIMIT);
    let set = out.find("setting the event").expect("the set line");
    assert!(out.contains("main: is_set false; setting"), "{out}");
    for i in 0..3 {
        let waiting = out.find(&format!("worker {i}: waiting")).expect("waiting");
        let woke = out
            .find(&format!("worker {i}: the event is set"))
            .unwrap_or_else(|| panic!("worker {i} never woke: {out}"));
        assert!(waiting < woke && set < woke, "{out}");
    }
    assert!(out.contains("main: is_set true"), "{out}");
    assert!(out.contains("a wait of 100 ms timed out: true"), "{out}");
}
