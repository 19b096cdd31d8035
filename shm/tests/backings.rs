//! The same checks over every backing: anonymous, named (`shm_open`, under
//! the caller's name or a new one), memfd and file. A forked child's writes are seen; a reopened segment (by name,
//! path or descriptor) holds the same typed contents and refuses another
//! type; a header a peer scribbled over is refused on reopen.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use multiproc_shm::{Error, Location, Segment, SharedSlice};
use multiproc_testkit::{fork, unique_name, Watchdog};

const LIMIT: Duration = Duration::from_secs(20);

/// A backing under test, and how to reach it again.
enum Backing {
    Anonymous,
    Named(String),
    NewName,
    Memfd,
    File(PathBuf),
}

impl Backing {
    fn all() -> Vec<Backing> {
        vec![
            Backing::Anonymous,
            Backing::Named(unique_name("backing")),
            Backing::NewName,
            Backing::Memfd,
            Backing::File(std::env::temp_dir().join(unique_name("backing-file"))),
        ]
    }

    fn location(&self) -> Location<'_> {
        match self {
            Backing::Anonymous => Location::Anonymous,
            Backing::Named(n) => Location::Named(n),
            Backing::NewName => Location::NewName,
            Backing::Memfd => Location::Memfd,
            Backing::File(p) => Location::File(p),
        }
    }

    /// Opens it again as a slice of `T` (`None` for anonymous memory, which
    /// has no name, path or descriptor).
    fn reopen<T: multiproc_shm::ShmSafe>(
        &self,
        first: &Segment,
    ) -> Option<multiproc_shm::Result<SharedSlice<T>>> {
        Some(match self {
            Backing::Anonymous => return None,
            Backing::Named(n) => SharedSlice::open(n),
            Backing::NewName => SharedSlice::open(first.name()?),
            Backing::Memfd => {
                let fd: OwnedFd = first.fd()?.try_clone_to_owned().unwrap();
                Segment::from_fd(fd).and_then(SharedSlice::from_segment)
            }
            Backing::File(p) => SharedSlice::open_file(p),
        })
    }

    /// Writes `bytes` at the very start of the file under it (the header), as
    /// a peer would; `false` for anonymous memory.
    fn scribble_header(&self, first: &Segment, bytes: &[u8]) -> bool {
        use std::os::unix::fs::FileExt;
        let file = match self {
            Backing::Anonymous => return false,
            Backing::Named(n) => std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{n}"))
                .unwrap(),
            Backing::NewName => std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/shm/{}", first.name().unwrap()))
                .unwrap(),
            Backing::Memfd => {
                std::fs::File::from(first.fd().unwrap().try_clone_to_owned().unwrap())
            }
            Backing::File(p) => std::fs::OpenOptions::new().write(true).open(p).unwrap(),
        };
        file.write_all_at(bytes, 0).unwrap();
        true
    }

    fn clean_up(&self) {
        match self {
            Backing::Named(n) => {
                let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
            }
            Backing::File(p) => {
                let _ = std::fs::remove_file(p);
            }
            _ => {}
        }
    }
}

#[test]
fn every_backing_shares_reopens_and_checks_its_header() {
    let _dog = Watchdog::arm(LIMIT, "every backing");
    for b in Backing::all() {
        let what = format!("{:?}", b.location());
        let squares = SharedSlice::<u64>::new_in(b.location(), 16).unwrap();
        // A forked child's writes are seen here.
        fork(|| {
            for i in 0..16 {
                squares.write_volatile(i, (i * i) as u64).unwrap();
            }
            0
        })
        .wait_ok(LIMIT);
        let want: Vec<u64> = (0..16).map(|i| i * i).collect();
        assert_eq!(squares.to_vec_volatile(), want, "{what}");
        // Reopened: the same contents, and only as the same type.
        if let Some(again) = b.reopen::<u64>(squares.segment()) {
            let again = again.unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            assert_eq!(again.to_vec_volatile(), want, "{what}");
            again.write_volatile(0, 99).unwrap();
            assert_eq!(squares.read_volatile(0), Some(99), "{what}: one memory");
            assert!(
                matches!(
                    b.reopen::<u32>(squares.segment()).unwrap(),
                    Err(Error::LayoutMismatch { .. })
                ),
                "{what}: another type is refused"
            );
        }
        // A peer scribbled over the header: refused on reopen, never mapped.
        if b.scribble_header(squares.segment(), b"not a multiproc header") {
            let r = b.reopen::<u64>(squares.segment()).unwrap();
            assert!(
                matches!(r, Err(Error::NotMultiproc { .. } | Error::Corrupted { .. })),
                "{what}: a scribbled header: {:?}",
                r.map(|_| ())
            );
        }
        drop(squares);
        b.clean_up();
    }
}

/// Python's `SharedMemory(create=True, size=n)`: a name of Python's shape,
/// a new one each time, gone with its creator's handle.
#[test]
fn a_new_name_has_pythons_shape_and_is_new_each_time() {
    let made: Vec<Segment> = (0..8)
        .map(|_| Segment::new_in(Location::NewName, 64).unwrap())
        .collect();
    let names: Vec<String> = made.iter().map(|s| s.name().unwrap().to_owned()).collect();
    for n in &names {
        let digits = n.strip_prefix("psm_").unwrap_or_else(|| panic!("{n}"));
        assert!(
            digits.len() == 8 && digits.bytes().all(|c| c.is_ascii_hexdigit()),
            "{n}"
        );
        assert!(std::path::Path::new(&format!("/dev/shm/{n}")).exists());
    }
    let distinct: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    drop(made);
    for n in &names {
        assert!(
            matches!(Segment::open(n), Err(Error::NotFound { .. })),
            "{n} outlived its creator's handle"
        );
    }
}

#[test]
fn every_backing_refuses_size_zero_and_takes_any_other() {
    for b in Backing::all() {
        let what = format!("{:?}", b.location());
        assert!(
            matches!(
                Segment::new_in(b.location(), 0),
                Err(Error::InvalidSize { .. })
            ),
            "{what}"
        );
        for len in [1, 4095, 4096, 4097, 1 << 20] {
            let seg = Segment::new_in(b.location(), len).unwrap();
            assert_eq!(seg.len(), len, "{what}");
            let last = [0xa5u8];
            seg.write_volatile(len - 1, &last).unwrap();
            assert!(
                seg.write_volatile(len, &last).is_err(),
                "{what}: past the end"
            );
            let mut back = [0u8];
            seg.read_volatile(len - 1, &mut back).unwrap();
            assert_eq!(back, last, "{what}");
            drop(seg);
            b.clean_up();
        }
    }
}

/// A named or file segment on a filesystem without room for it (a small
/// `/dev/shm`, as containers have by default): made, it used to crash its
/// process with `SIGBUS` at the first write past the room; now it is refused
/// when made, with `Error::NoRoom` (naming the fix), and nothing is left
/// behind. Needs a mount namespace of its own with a 1 MiB tmpfs (root here;
/// elsewhere it says it was skipped).
#[test]
fn a_segment_with_no_room_on_its_filesystem_is_refused_when_made() {
    let _dog = Watchdog::arm(LIMIT, "no room");
    let dir = std::env::temp_dir().join(unique_name("small-tmpfs"));
    std::fs::create_dir_all(&dir).unwrap();
    let child = fork(|| {
        let small = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let shm = c"/dev/shm";
        // SAFETY: unshare and mount with valid C strings, in this child only
        // (its own mount namespace, made private first so that nothing
        // propagates out).
        let mounted = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && [small.as_c_str(), shm].iter().all(|at| {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        at.as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        c"size=1m".as_ptr().cast(),
                    ) == 0
                })
        };
        if !mounted {
            eprintln!("skipped: needs CAP_SYS_ADMIN to mount a small tmpfs");
            return 2;
        }
        let file = dir.join("segment");
        let name = unique_name("no-room");
        for r in [
            Segment::create_file(&file, 4 << 20).map(drop),
            Segment::create(&name, 4 << 20).map(drop),
        ] {
            match r {
                Err(e @ Error::NoRoom { .. }) => assert!(e.to_string().contains("--shm-size")),
                other => panic!("expected NoRoom, got {other:?}"),
            }
        }
        assert!(!file.exists(), "a refused file is not left behind");
        assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
        // One that fits is made, and every page of it can be written.
        let seg = Segment::create_file(&file, 512 << 10).unwrap();
        for at in (0..seg.len()).step_by(4096) {
            seg.write_volatile(at, &[1]).unwrap();
        }
        drop(seg);
        let _ = std::fs::remove_file(&file);
        0
    });
    let exit = child.wait(LIMIT);
    let _ = std::fs::remove_dir(&dir);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let want: &[i32] = if root { &[0] } else { &[0, 2] };
    assert!(
        want.iter()
            .any(|&c| exit == multiproc_testkit::ChildExit::Exited(c)),
        "{exit:?}"
    );
}
