//! The queue examples (the tutorials' queue programs and Python's Pipe example)
//! run as a user would run them, their output checked.

use std::time::Duration;

use multiproc_testkit::run_example;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn queue_methods_prints_what_the_tutorial_shows() {
    let out = run_example("queue_methods", &[], LIMIT);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..7],
        [
            "full after three puts: true",
            "put with a timeout on a full queue: timed out",
            "put_nowait on a full queue: Full",
            "got 1",
            "got 2",
            "got 3",
            "get_nowait on an empty queue: Empty",
        ],
        "{out}"
    );
    // The child's and the parent's lines may interleave either way.
    for v in [10, 20, 30] {
        assert!(lines.contains(&format!("child put {v}").as_str()), "{out}");
        assert!(lines.contains(&format!("parent got {v}").as_str()), "{out}");
    }
    assert_eq!(lines.len(), 13, "{out}");
}

#[test]
fn producer_consumer_eats_every_bun_in_order() {
    let out = run_example("producer_consumer", &[], LIMIT);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"main"), "{out}");
    let made: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(" made "))
        .map(|(_, b)| b)
        .collect();
    let ate: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(" ate "))
        .map(|(_, b)| b)
        .collect();
    let buns: Vec<String> = (0..10).map(|i| format!("bun {i}")).collect();
    assert_eq!(made, buns, "{out}");
    assert_eq!(ate, buns, "{out}");
    // Two processes: one pid makes, another eats.
    let pid = |l: &&str| l.split_whitespace().next().map(str::to_owned);
    let makers: std::collections::BTreeSet<_> = lines
        .iter()
        .filter(|l| l.contains(" made "))
        .filter_map(pid)
        .collect();
    let eaters: std::collections::BTreeSet<_> = lines
        .iter()
        .filter(|l| l.contains(" ate "))
        .filter_map(pid)
        .collect();
    assert_eq!((makers.len(), eaters.len()), (1, 1), "{out}");
    assert_ne!(makers, eaters, "{out}");
}

#[cfg(feature = "serde")]
#[test]
fn pipe_prints_what_pythons_example_prints() {
    let out = run_example("pipe", &[], LIMIT);
    assert_eq!(
        out,
        "(42, None, \"hello\")\n\
         the child closed its end\n\
         ping -> PING\n\
         queue -> QUEUE\n\
         pipe -> PIPE\n"
    );
}

#[test]
fn joinable_queue_join_returns_after_every_item_is_done() {
    let out = run_example("joinable", &[], LIMIT);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"main: all 10 items done (0 unfinished)"),
        "{out}"
    );
    let mut items: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.split_once(": item "))
        .map(|(_, rest)| rest.trim_end_matches(" done").parse().unwrap())
        .collect();
    items.sort_unstable();
    assert_eq!(items, (0..10).collect::<Vec<_>>(), "{out}");
}
