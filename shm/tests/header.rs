//! Every header mismatch, on crafted bytes, yields its own error; random bytes over
//! a header never make `open` panic.
//!
//! Named segments are files in /dev/shm (tmpfs), so a test crafts one by writing the
//! file directly, exactly as a foreign or buggy process could.

use std::time::{Duration, Instant};

use multiproc_shm::header::{FORMAT_VERSION, HEADER_LEN, MAGIC};
use multiproc_shm::{
    check_header_bytes, Error, Location, OpenOptions, Segment, Shared, SharedSlice,
};
use multiproc_testkit::unique_name;
use proptest::prelude::*;

/// A file in /dev/shm removed on drop.
struct Crafted {
    name: String,
}

impl Crafted {
    /// Written as this user's private file (mode 0600), as a segment of ours
    /// would be: the header checks are what the test is about.
    fn new(tag: &str, bytes: &[u8]) -> Crafted {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let name = unique_name(tag);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(format!("/dev/shm/{name}"))
            .unwrap()
            .write_all(bytes)
            .unwrap();
        Crafted { name }
    }

    fn open(&self) -> Result<Segment, Error> {
        Segment::open_timeout(&self.name, Duration::from_millis(50))
    }

    /// Publishes the header (its state to ready) from another thread after
    /// `delay`, as a creator still initialising would.
    fn publish_after(&self, delay: Duration) -> std::thread::JoinHandle<()> {
        let path = format!("/dev/shm/{}", self.name);
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.write_all_at(&1u32.to_le_bytes(), 12).unwrap();
        })
    }
}

impl Drop for Crafted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.name));
    }
}

/// The bytes of a real segment holding `values`.
fn valid_bytes(values: &[u64]) -> Vec<u8> {
    let name = unique_name("template");
    let seg = SharedSlice::from_slice(Location::Named(&name), values).unwrap();
    let bytes = std::fs::read(format!("/dev/shm/{name}")).unwrap();
    drop(seg);
    bytes
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn a_valid_crafted_segment_opens() {
    let bytes = valid_bytes(&[1, 2, 3]);
    assert_eq!(&bytes[..8], &MAGIC.to_le_bytes());
    let c = Crafted::new("valid", &bytes);
    let s = SharedSlice::<u64>::from_segment(c.open().unwrap()).unwrap();
    assert_eq!(s.to_vec_volatile(), vec![1, 2, 3]);
    assert!(check_header_bytes(&bytes).is_ok());
}

#[test]
fn foreign_bytes_are_not_multiproc() {
    let c = Crafted::new("foreign", &[0x7f; 4096]);
    match c.open() {
        Err(Error::NotMultiproc { found, .. }) => assert_eq!(found, u64::from_le_bytes([0x7f; 8])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_shorter_than_a_header_is_too_small() {
    let bytes = valid_bytes(&[1]);
    let c = Crafted::new("short", &bytes[..10]);
    assert!(
        matches!(c.open(), Err(Error::TooSmall { needed, actual: 10, .. }) if needed == HEADER_LEN as u64)
    );
}

#[test]
fn an_empty_file_is_too_small_after_the_bounded_wait() {
    let c = Crafted::new("empty", &[]);
    let t = Instant::now();
    assert!(matches!(c.open(), Err(Error::TooSmall { actual: 0, .. })));
    assert!(
        t.elapsed() >= Duration::from_millis(50),
        "an empty file may be a creator that has not sized it yet: open waits"
    );
}

#[test]
fn truncated_contents_are_too_small() {
    let bytes = valid_bytes(&[1, 2, 3, 4]);
    let c = Crafted::new("truncated", &bytes[..bytes.len() - 8]);
    assert!(matches!(c.open(), Err(Error::TooSmall { .. })));
}

#[test]
fn another_format_version_is_a_version_mismatch() {
    let mut bytes = valid_bytes(&[1]);
    put_u32(&mut bytes, 8, FORMAT_VERSION + 1);
    let c = Crafted::new("version", &bytes);
    assert!(
        matches!(c.open(), Err(Error::VersionMismatch { found, expected, .. })
        if found == FORMAT_VERSION + 1 && expected == FORMAT_VERSION)
    );
}

#[test]
fn another_type_or_count_is_a_layout_mismatch() {
    let name = unique_name("layout");
    let _u64s = SharedSlice::<u64>::create(&name, 2).unwrap();
    for err in [
        Shared::<u32>::open(&name).unwrap_err(),
        Shared::<u64>::open(&name).unwrap_err(), // two of them, not one
        SharedSlice::<i64>::open(&name).unwrap_err(), // same size, another type
        SharedSlice::<[u8; 8]>::open(&name).unwrap_err(),
    ] {
        match err {
            Error::LayoutMismatch {
                expected, found, ..
            } => {
                assert!(found.contains("u64"), "{found}");
                assert_ne!(expected, found);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(SharedSlice::<u64>::open(&name).is_ok());
}

#[test]
fn contradicting_fields_are_corrupted() {
    let base = valid_bytes(&[1, 2]);
    type Mutation = fn(&mut Vec<u8>);
    let cases: [(&str, Mutation); 4] = [
        ("payload_len", |b| put_u64(b, 32, 17)),
        ("align", |b| put_u64(b, 48, 3)),
        ("offset", |b| put_u64(b, 24, 8)),
        ("header_len", |b| put_u32(b, 16, 64)),
    ];
    for (what, mutate) in cases {
        let mut bytes = base.clone();
        mutate(&mut bytes);
        let c = Crafted::new(what, &bytes);
        assert!(
            matches!(c.open(), Err(Error::Corrupted { .. })),
            "{what}: {:?}",
            c.open()
        );
    }
    // Sizes that overflow never reach a mapping.
    let mut bytes = base.clone();
    put_u64(&mut bytes, 56, u64::MAX); // count
    put_u64(&mut bytes, 32, u64::MAX); // payload_len
    let c = Crafted::new("overflow", &bytes);
    assert!(matches!(c.open(), Err(Error::Corrupted { .. })));
}

/// A timeout too large for the clock (`Duration::MAX`, "for ever") waits as
/// long as it takes: it panicked on the `Instant` it overflowed.
#[test]
fn a_timeout_too_large_for_the_clock_waits_for_ever() {
    let mut bytes = valid_bytes(&[5]);
    put_u32(&mut bytes, 12, 0); // state: CREATING, creator: this (live) process
    let c = Crafted::new("forever", &bytes);
    let publisher = c.publish_after(Duration::from_millis(30));
    let seg = Segment::open_timeout(&c.name, Duration::MAX).unwrap();
    publisher.join().unwrap();
    assert_eq!(
        SharedSlice::<u64>::from_segment(seg)
            .unwrap()
            .read_volatile(0),
        Some(5)
    );
    let seg = OpenOptions::new()
        .init_timeout(Duration::MAX)
        .open(&c.name)
        .unwrap();
    assert_eq!(
        SharedSlice::<u64>::from_segment(seg)
            .unwrap()
            .read_volatile(0),
        Some(5)
    );
}

#[test]
fn open_waits_for_a_creator_still_initialising() {
    let mut bytes = valid_bytes(&[5]);
    put_u32(&mut bytes, 12, 0); // state: CREATING, creator: this (live) process
    let c = Crafted::new("init", &bytes);
    let t = Instant::now();
    assert!(matches!(c.open(), Err(Error::NotReady { .. })));
    assert!(t.elapsed() >= Duration::from_millis(50));

    // Publish from another thread after 30 ms, as the creator would: open waits for it.
    let name = c.name.clone();
    let publisher = c.publish_after(Duration::from_millis(30));
    let seg = Segment::open_timeout(&name, Duration::from_secs(5)).unwrap();
    publisher.join().unwrap();
    assert_eq!(
        SharedSlice::<u64>::from_segment(seg)
            .unwrap()
            .read_volatile(0),
        Some(5)
    );
}

#[test]
fn open_gives_up_at_once_when_the_creator_died_while_initialising() {
    let mut bytes = valid_bytes(&[5]);
    put_u32(&mut bytes, 12, 0);
    put_u32(&mut bytes, 72, i32::MAX as u32); // no such pid
    let c = Crafted::new("orphan", &bytes);
    let t = Instant::now();
    let err = Segment::open_timeout(&c.name, Duration::from_secs(30)).unwrap_err();
    assert!(matches!(err, Error::NotReady { creator_pid, .. } if creator_pid == i32::MAX as u32));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a dead creator is detected, not waited out"
    );
}

#[test]
fn names_are_validated() {
    for bad in ["", "/", "a/b", "..", &"n".repeat(300)] {
        assert!(
            matches!(Segment::create(bad, 1), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(Segment::open(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn errors_say_what_to_do() {
    let name = unique_name("msg");
    let _a = Segment::create(&name, 1).unwrap();
    let msg = Segment::create(&name, 1).unwrap_err().to_string();
    assert!(
        msg.contains("already exists") && msg.contains(&name),
        "{msg}"
    );
    let e = Segment::open("mp-test-surely-missing").unwrap_err();
    assert!(
        std::error::Error::source(&e).is_some(),
        "the io::Error is kept"
    );
    let msg = Shared::<u16>::open(&name).unwrap_err().to_string();
    assert!(
        msg.contains("open it with the type it was created with"),
        "{msg}"
    );
}

#[test]
fn named_segments_are_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique_name("mode");
    let _a = Segment::create(&name, 1).unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/{name}"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random bytes over the whole header: parsing never panics, and opening the
    /// file never panics or maps out of bounds.
    #[test]
    fn random_header_bytes_never_panic(header in proptest::collection::vec(any::<u8>(), HEADER_LEN), keep_magic in any::<bool>(), keep_version in any::<bool>()) {
        let mut bytes = valid_bytes(&[1, 2, 3, 4]);
        bytes[..HEADER_LEN].copy_from_slice(&header);
        if keep_magic { put_u64(&mut bytes, 0, MAGIC); }
        if keep_version { put_u32(&mut bytes, 8, FORMAT_VERSION); }
        let _ = check_header_bytes(&bytes);
        let c = Crafted::new("prop", &bytes);
        if let Ok(seg) = Segment::open_timeout(&c.name, Duration::from_millis(1)) {
            // Whatever it accepted lies inside the file.
            prop_assert!(seg.len() + HEADER_LEN <= bytes.len());
            let mut buf = vec![0u8; seg.len()];
            seg.read_volatile(0, &mut buf).unwrap();
        }
    }

    /// A single flipped bit anywhere in a valid header either still opens as the
    /// same contents or fails with an error — never a panic.
    #[test]
    fn one_flipped_bit_is_caught_or_harmless(bit in 0..HEADER_LEN * 8) {
        let mut bytes = valid_bytes(&[7, 8]);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let c = Crafted::new("flip", &bytes);
        if let Ok(seg) = Segment::open_timeout(&c.name, Duration::from_millis(1)) {
            prop_assert!(seg.len() + HEADER_LEN <= bytes.len());
        }
    }
}
