//! The pool examples (the tutorials' pool programs and the pmap homework) run
//! as a user would run them; the order of their lines is the behaviour the
//! tutorials teach.

use std::time::Duration;

use multiproc_testkit::run_example;

const LIMIT: Duration = Duration::from_secs(60);

/// The lines of `pool_blocking MODE` without their times: "start task 3", ...
fn events(mode: &str) -> Vec<String> {
    run_example("pool_blocking", &[mode], LIMIT)
        .lines()
        .map(|l| {
            let e = l.split_once("ms: ").map_or(l, |(_, e)| e);
            e.split(" (pid").next().unwrap_or_default().to_owned()
        })
        .collect()
}

#[test]
fn apply_runs_each_task_after_the_previous_one_ended() {
    let e = events("apply");
    let mut want: Vec<String> = (0..10)
        .flat_map(|i| [format!("start task {i}"), format!("end task {i}")])
        .collect();
    want.push("all tasks added".into());
    want.push("pool joined".into());
    assert_eq!(e, want);
}

#[test]
fn apply_async_returns_at_once_and_runs_four_at_a_time() {
    let e = events("apply_async");
    // Every apply_async returned before the tasks were done: the parent's line
    // comes before the last task started (with the blocking apply it comes
    // after every task's end). Workers may print their first start before it.
    let added = e.iter().position(|l| l == "all tasks added").unwrap();
    let last_start = e.iter().rposition(|l| l.starts_with("start task")).unwrap();
    assert!(added < last_start, "{e:?}");
    assert_eq!(e.last().map(String::as_str), Some("pool joined"), "{e:?}");
    let (mut running, mut most) = (0i32, 0i32);
    for line in &e {
        if line.starts_with("start task") {
            running += 1;
            most = most.max(running);
        } else if line.starts_with("end task") {
            running -= 1;
        }
    }
    assert_eq!(running, 0, "every task ended: {e:?}");
    // Up to the pool's four at once, and more than one (on a loaded machine a
    // worker may start its first task after another's first ended).
    assert!((2..=4).contains(&most), "{most} at once: {e:?}");
    for i in 0..10 {
        let start = e
            .iter()
            .position(|l| *l == format!("start task {i}"))
            .unwrap();
        let end = e
            .iter()
            .position(|l| *l == format!("end task {i}"))
            .unwrap();
        assert!(start < end, "{e:?}");
    }
}

#[test]
fn the_callback_fires_while_the_main_program_goes_on() {
    let e = events("callback");
    let callback = e
        .iter()
        .position(|l| l == "callback: the water boils")
        .expect("the callback ran");
    let last_boil = e.iter().rposition(|l| l == "boiling water...").unwrap();
    let last_game = e.iter().rposition(|l| l == "playing a game").unwrap();
    assert_eq!(e.iter().filter(|l| *l == "boiling water...").count(), 3);
    assert_eq!(e.iter().filter(|l| *l == "playing a game").count(), 8);
    assert!(last_boil < callback && callback < last_game, "{e:?}");
}

#[test]
fn a_pool_of_four_runs_the_fifth_task_on_a_freed_worker() {
    let out = run_example("pool_tasks", &[], LIMIT);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Parent process "), "{out}");
    // The workers may print before the parent's next line: apply_async does
    // not wait, and they start at once.
    assert!(
        lines.contains(&"Waiting for all subprocesses done..."),
        "{out}"
    );
    assert_eq!(*lines.last().unwrap(), "All subprocesses done.", "{out}");
    let pid_of = |task: u32| {
        let prefix = format!("Run task {task} (");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{out}"));
        line[prefix.len()..].trim_end_matches(")...").to_owned()
    };
    let first_four: Vec<String> = (0..4).map(pid_of).collect();
    assert!(
        first_four.contains(&pid_of(4)),
        "task 4 reuses a worker: {out}"
    );
    for t in 0..5 {
        assert!(out.contains(&format!("Task {t} runs ")), "{out}");
    }
    let run4 = lines
        .iter()
        .position(|l| l.starts_with("Run task 4"))
        .unwrap();
    let first_end = lines.iter().position(|l| l.starts_with("Task ")).unwrap();
    assert!(
        first_end < run4,
        "the fifth starts once one of the first four ended: {out}"
    );
}

#[test]
fn the_pmap_homework_gives_the_sequential_results() {
    let out = run_example("pmap", &[], LIMIT);
    assert!(out.contains("same results: yes"), "{out}");
    assert!(out.contains("pmap:") && out.contains("Pool::map:"), "{out}");
}
