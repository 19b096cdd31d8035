//! The shared-memory example (children fill a shared table after `fork`) run as
//! a user would run it: every square is there, the shared counter saw every
//! write, and the parent's private counter stayed private.

use std::time::Duration;

use multiproc_testkit::run_example;

#[test]
fn children_fill_the_shared_table() {
    let out = run_example("fork_squares", &[], Duration::from_secs(60));
    let squares: Vec<String> = (0..32u64).map(|i| (i * i).to_string()).collect();
    assert!(
        out.contains(&format!(
            "squares written by the children: [{}]",
            squares.join(", ")
        )),
        "{out}"
    );
    assert!(
        out.contains("shared counter: 32 (expected 32); the parent's private counter: 0"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("started child "))
            .count(),
        4,
        "{out}"
    );
}
