//! The queue against a `VecDeque` model, and its Python-shaped behaviour.

use std::collections::VecDeque;
use std::time::Duration;

use multiproc_queue::{ByteQueue, Error, JoinableQueue, Queue};
use multiproc_shm::Location;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u32),
    Get,
    PutMany(Vec<u32>),
    GetMany(usize),
}

proptest! {
    /// Random operations on a queue of random (not only power-of-two) capacity
    /// behave as a bounded VecDeque.
    #[test]
    fn queue_matches_a_vecdeque(cap in 1usize..12, ops in proptest::collection::vec(prop_oneof![
        any::<u32>().prop_map(Op::Put),
        Just(Op::Get),
        proptest::collection::vec(any::<u32>(), 0..6).prop_map(Op::PutMany),
        (0usize..6).prop_map(Op::GetMany),
    ], 0..100)) {
        let q = Queue::<u32>::new(cap).unwrap();
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Put(v) => {
                    let r = q.try_put(v);
                    if model.len() == cap {
                        prop_assert!(matches!(r, Err(Error::Full)));
                    } else {
                        r.unwrap();
                        model.push_back(v);
                    }
                }
                Op::Get => match model.pop_front() {
                    Some(v) => prop_assert_eq!(q.try_get().unwrap(), v),
                    None => prop_assert!(matches!(q.try_get(), Err(Error::Empty))),
                },
                Op::PutMany(vs) => {
                    if model.len() + vs.len() <= cap {
                        q.put_many(&vs).unwrap();
                        model.extend(vs);
                    }
                }
                Op::GetMany(0) => {
                    // Up to none: nothing taken, nothing waited for.
                    let mut out = Vec::new();
                    prop_assert_eq!(q.get_many(&mut out, 0).unwrap(), 0);
                    prop_assert_eq!(q.try_get_many(&mut out, 0).unwrap(), 0);
                    prop_assert!(out.is_empty());
                }
                Op::GetMany(n) => {
                    if model.is_empty() {
                        prop_assert!(matches!(q.get_many_timeout(&mut Vec::new(), n, Duration::ZERO), Err(Error::Timeout)));
                    } else {
                        let mut out = Vec::new();
                        let k = q.get_many(&mut out, n).unwrap();
                        prop_assert!(k >= 1 && k <= n);
                        let want: Vec<u32> = model.drain(..k).collect();
                        prop_assert_eq!(out, want);
                    }
                }
            }
            prop_assert_eq!(q.qsize(), model.len());
            prop_assert_eq!(q.empty(), model.is_empty());
            prop_assert_eq!(q.full(), model.len() == cap);
        }
    }

    /// Byte messages of any length up to the maximum come out as they went in,
    /// through a ring that wraps, put one at a time or in batches, taken one
    /// at a time (into a new `Vec` or one reused buffer) or in batches.
    #[test]
    fn byte_messages_round_trip(
        msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..60),
        ways in proptest::collection::vec(0u8..3, 60),
    ) {
        let q = ByteQueue::new(8, 40).unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for (k, chunk) in msgs.chunks(8).enumerate() {
            match ways[k] {
                0 => chunk.iter().try_for_each(|m| q.put_bytes(m)).unwrap(),
                _ => q.put_bytes_many(chunk).unwrap(),
            }
            let held = k * 8 + chunk.len() - got.len();
            prop_assert_eq!(q.qsize(), held);
            prop_assert_eq!(q.empty(), held == 0);
            prop_assert_eq!(q.full(), held == q.capacity());
            while got.len() < (k * 8 + chunk.len()) {
                match ways[(k + got.len()) % ways.len()] {
                    0 => got.push(q.get_bytes().unwrap()),
                    1 => {
                        q.get_bytes_into(&mut buf).unwrap();
                        got.push(buf.clone());
                    }
                    _ => {
                        q.get_bytes_many(&mut got, 3).unwrap();
                    }
                }
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert!(matches!(q.try_get_bytes(), Err(multiproc_queue::Error::Empty)));
    }
}

proptest! {
    /// Messages of any size — most in a slot, some many times a slot, some
    /// larger than the lane — come out as they went in, one after the other,
    /// through every kind of get.
    #[test]
    fn byte_messages_of_any_size_round_trip(
        sizes in proptest::collection::vec(prop_oneof![0usize..40, 40usize..2_000, 200_000usize..600_000], 1..12),
        ways in proptest::collection::vec(0u8..4, 12),
    ) {
        let q = ByteQueue::new(4, 40).unwrap();
        let mut buf = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            let msg: Vec<u8> = (0..n).map(|i| (i as u8) ^ (k as u8)).collect();
            let got = if n > multiproc_queue::LANE_BYTES {
                // Larger than the lane: the put waits for its receiver.
                std::thread::scope(|s| {
                    let h = s.spawn(|| q.get_bytes().unwrap());
                    q.put_bytes(&msg).unwrap();
                    h.join().unwrap()
                })
            } else {
                q.put_bytes(&msg).unwrap();
                match ways[k] {
                    0 => q.get_bytes().unwrap(),
                    1 => {
                        q.get_bytes_into(&mut buf).unwrap();
                        buf.clone()
                    }
                    2 => q.get_bytes_timeout(std::time::Duration::from_secs(10)).unwrap(),
                    _ => {
                        let mut out = Vec::new();
                        q.get_bytes_many(&mut out, 3).unwrap();
                        prop_assert_eq!(out.len(), 1);
                        out.pop().unwrap()
                    }
                }
            };
            prop_assert_eq!(got, msg);
        }
        prop_assert_eq!(q.lost(), 0);
        prop_assert!(matches!(q.try_get_bytes(), Err(Error::Empty)));
    }
}

/// Items of every size class of slot (16, 32 and 64 bytes, several to a cache
/// line; 128 bytes, two lines) come out whole and in order through a ring that
/// wraps many times, one at a time and in batches.
#[test]
fn items_of_every_slot_size_round_trip() {
    fn check<T: multiproc_shm::ShmSafe + Copy + PartialEq + std::fmt::Debug>(
        make: impl Fn(u64) -> T,
    ) {
        for cap in [1, 3, 4, 7] {
            let q = Queue::<T>::new(cap).unwrap();
            let mut next = 0;
            for round in 0..40u64 {
                let n = 1 + (round as usize % cap);
                let items: Vec<T> = (next..next + n as u64).map(&make).collect();
                if round % 2 == 0 {
                    q.put_many(&items).unwrap();
                } else {
                    for &it in &items {
                        q.put(it).unwrap();
                    }
                }
                let mut out = Vec::new();
                while out.len() < n {
                    if round % 3 == 0 {
                        q.get_many(&mut out, n).unwrap();
                    } else {
                        out.push(q.get().unwrap());
                    }
                }
                assert_eq!(out, items, "capacity {cap}, round {round}");
                next += n as u64;
            }
            assert!(q.empty());
        }
    }
    check(|i| i as u8);
    check(|i| [i as u32, !(i as u32), 7]);
    check(|i| [i, !i, i.rotate_left(7)]);
    check(|i| [i; 7]);
    check(|i| [i; 8]);
    check(|i| [i as u16; 33]);
}

/// The tutorial's Queue(3): full after three puts, put with a timeout fails,
/// empty after three gets, get_nowait fails.
#[test]
fn the_tutorials_queue_of_three() {
    let q = Queue::<u32>::new(3).unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert!(q.full());
    assert!(matches!(
        q.put_timeout(9, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(q.try_put(9), Err(Error::Full)));
    for i in 0..3 {
        assert_eq!(q.get().unwrap(), i);
    }
    assert!(q.empty());
    assert!(matches!(
        q.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(q.try_get(), Err(Error::Empty)));
}

/// Taking up to no messages takes none and waits for none, in every queue
/// (the MPMC ones took one).
#[test]
fn taking_up_to_none_takes_nothing() {
    let q = Queue::<u32>::new(4).unwrap();
    q.put(1).unwrap();
    let mut out = Vec::new();
    assert_eq!(q.get_many(&mut out, 0).unwrap(), 0);
    assert_eq!(q.try_get_many(&mut out, 0).unwrap(), 0);
    assert_eq!(
        q.get_many_timeout(&mut out, 0, Duration::from_secs(5))
            .unwrap(),
        0
    );
    assert!(out.is_empty() && q.qsize() == 1);
    let b = ByteQueue::new(4, 16).unwrap();
    b.put_bytes(b"kept").unwrap();
    let mut out = Vec::new();
    assert_eq!(b.get_bytes_many(&mut out, 0).unwrap(), 0);
    assert_eq!(b.try_get_bytes_many(&mut out, 0).unwrap(), 0);
    assert!(out.is_empty());
    assert_eq!(b.get_bytes().unwrap(), b"kept");
    let s = multiproc_queue::SpscQueue::<u32>::new(4).unwrap();
    let (mut p, mut c) = (s.producer().unwrap(), s.consumer().unwrap());
    p.put(2).unwrap();
    let mut out = Vec::new();
    assert_eq!(c.get_many(&mut out, 0).unwrap(), 0);
    assert_eq!(c.get().unwrap(), 2);
}

#[test]
fn close_drains_then_reports_closed() {
    let q = Queue::<u8>::new(4).unwrap();
    q.put(1).unwrap();
    q.close();
    assert!(matches!(q.put(2), Err(Error::Closed)));
    assert_eq!(q.get().unwrap(), 1);
    assert!(
        matches!(q.get(), Err(Error::Closed)),
        "no blocking once closed and drained"
    );
}

#[test]
fn close_wakes_a_blocked_getter() {
    let q = Queue::<u8>::new(4).unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| q.get_timeout(Duration::from_secs(20)));
        std::thread::sleep(Duration::from_millis(30));
        q.close();
        assert!(matches!(h.join().unwrap(), Err(Error::Closed)));
    });
}

/// A message over the slot size streams through the lane; `try_put` refuses
/// it whole (streaming may wait), leaving nothing half-written.
#[test]
fn large_messages_stream_and_try_put_refuses_them_whole() {
    let q = ByteQueue::new(2, 8).unwrap();
    assert!(matches!(
        q.try_put_bytes(&[0; 9]),
        Err(Error::MessageTooLarge { len: 9, max: 8 })
    ));
    assert_eq!(q.qsize(), 0, "nothing half-written");
    q.put_bytes(&[5; 9]).unwrap();
    q.put_bytes(&[7; 8]).unwrap();
    assert_eq!(q.qsize(), 2, "an announcement and a message");
    assert_eq!(q.get_bytes().unwrap(), [5; 9]);
    assert_eq!(q.get_bytes().unwrap(), [7; 8]);
}

/// A message up to the lane's size goes in whole before anyone reads it; one
/// larger (here, over the default lane) waits for a receiver; a lane size that
/// is no lane is refused; a named queue's lane comes with it to `open`.
#[test]
fn a_message_up_to_the_lane_goes_in_before_anyone_reads_it() {
    let msg = vec![3u8; 600 << 10];
    let default = ByteQueue::new(4, 64).unwrap();
    assert!(matches!(
        default.put_bytes_timeout(&msg, Duration::ZERO),
        Err(Error::Timeout)
    ));
    let q = ByteQueue::with_lane(Location::Anonymous, 4, 64, 1 << 20).unwrap();
    q.put_bytes_timeout(&msg, Duration::ZERO).unwrap();
    assert_eq!(q.get_bytes().unwrap(), msg);
    // Two lanes' worth streams while a thread reads it.
    let big: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    std::thread::scope(|s| {
        let reader = s.spawn(|| q.get_bytes_timeout(Duration::from_secs(20)));
        q.put_bytes_timeout(&big, Duration::from_secs(20)).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), big);
    });
    for bad in [0, 63, 1000, (1 << 30) + 64] {
        assert!(matches!(
            ByteQueue::with_lane(Location::Anonymous, 4, 64, bad),
            Err(Error::LaneSize { bytes }) if bytes == bad
        ));
    }
    let name = format!("mq-lane-{}", std::process::id());
    let made = ByteQueue::with_lane(Location::Named(&name), 4, 64, 1 << 20).unwrap();
    let opened = ByteQueue::open(&name).unwrap();
    opened.put_bytes_timeout(&msg, Duration::ZERO).unwrap();
    assert_eq!(made.get_bytes().unwrap(), msg);
    drop(opened);
    drop(made); // the creator's handle unlinks the name
    assert!(ByteQueue::open(&name).is_err());
}

#[test]
fn joinable_queue_counts_tasks() {
    let q = JoinableQueue::<u32>::new(8).unwrap();
    q.put_many(&[1, 2, 3]).unwrap();
    assert_eq!(q.unfinished(), 3);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                q.get().unwrap();
                std::thread::sleep(Duration::from_millis(5));
                q.task_done().unwrap();
            }
        });
        q.join_timeout(Duration::from_secs(20)).unwrap();
    });
    assert_eq!(q.unfinished(), 0);
    assert!(matches!(q.task_done(), Err(Error::TaskDoneTooMany)));
    q.put(4).unwrap();
    assert!(matches!(
        q.join_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
}

#[test]
fn threads_hand_off_through_a_tiny_queue() {
    let q = Queue::<u64>::new(2).unwrap();
    const N: u64 = 100_000;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                q.put(i).unwrap();
            }
        });
        for i in 0..N {
            assert_eq!(q.get().unwrap(), i);
        }
    });
}

#[test]
fn invalid_sizes_are_refused() {
    assert!(matches!(
        Queue::<u8>::new(0),
        Err(Error::OutOfRange {
            value: 0,
            min: 1,
            ..
        })
    ));
    assert!(matches!(
        ByteQueue::new(1, 1 << 30),
        Err(Error::OutOfRange {
            value: 0x4000_0000,
            ..
        })
    ));
}
