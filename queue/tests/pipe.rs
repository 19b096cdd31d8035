//! Pipe between processes: both directions, one-way ends, close, serde values.

use std::time::Duration;

use multiproc_queue::{Error, Pipe};
use multiproc_testkit::{fork, Watchdog};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_duplex_pipe_between_parent_and_child() {
    let _dog = Watchdog::arm(LIMIT, "duplex pipe");
    let (parent, child) = Pipe::new(true).unwrap();
    let kid = fork(|| {
        for _ in 0..100 {
            let m = child.recv_bytes().unwrap();
            let mut reply = m.clone();
            reply.reverse();
            child.send_bytes(&reply).unwrap();
        }
        child.close();
        0
    });
    for i in 0..100u32 {
        let m = format!("message {i}");
        parent.send_bytes(m.as_bytes()).unwrap();
        let mut want = m.into_bytes();
        want.reverse();
        assert_eq!(parent.recv_bytes_timeout(LIMIT).unwrap(), want);
    }
    kid.wait_ok(LIMIT);
    assert!(
        matches!(parent.recv_bytes(), Err(Error::Closed)),
        "the child closed its end"
    );
}

#[test]
fn a_one_way_pipe_only_goes_one_way() {
    let (reader, writer) = Pipe::new(false).unwrap();
    writer.send_bytes(b"x").unwrap();
    assert!(reader.poll(Some(Duration::from_secs(1))).unwrap());
    assert_eq!(reader.recv_bytes().unwrap(), b"x");
    assert!(matches!(
        reader.send_bytes(b"y"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        writer.recv_bytes(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!reader.poll(Some(Duration::from_millis(5))).unwrap());
}

#[test]
fn messages_over_the_size_are_refused() {
    let (a, _b) = Pipe::with_capacity(true, 4, 16).unwrap();
    assert!(matches!(
        a.send_bytes(&[0; 17]),
        Err(Error::MessageTooLarge { len: 17, max: 16 })
    ));
}

#[cfg(feature = "serde")]
#[test]
fn serde_values_cross_a_pipe() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Job {
        id: u32,
        name: String,
        weights: Vec<f64>,
    }
    let _dog = Watchdog::arm(LIMIT, "serde pipe");
    let (parent, child) = Pipe::new(true).unwrap();
    let kid = fork(|| {
        let job: Job = child.recv().unwrap();
        child.send(&(job.id * 2, job.name.len())).unwrap();
        0
    });
    parent
        .send(&Job {
            id: 21,
            name: "square".into(),
            weights: vec![0.5, 1.5],
        })
        .unwrap();
    assert_eq!(parent.recv::<(u32, usize)>().unwrap(), (42, 6));
    kid.wait_ok(LIMIT);
}
