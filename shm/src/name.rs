//! Validation of POSIX shared-memory names.

use std::ffi::CString;

use crate::{Error, Result};

/// The longest name accepted, in bytes (NAME_MAX is 255; `/dev/shm/` entries use it).
pub const MAX_NAME_LEN: usize = 250;

/// Checks `name` and returns it without a leading `/`, plus the `"/name"` C string
/// that `shm_open` takes.
///
/// A name is 1 to [`MAX_NAME_LEN`] bytes, with one optional leading `/` (as
/// Python's `SharedMemory` and `shm_open` both allow), no other `/`, no NUL, and
/// not `.` or `..`.
pub(crate) fn validate(name: &str) -> Result<(String, CString)> {
    let invalid = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(invalid(
            "a name needs at least one character after the optional leading '/'",
        ));
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 250 bytes"));
    }
    if bare.contains('/') {
        return Err(invalid(
            "only a single leading '/' is allowed; names are flat, not paths",
        ));
    }
    if bare == "." || bare == ".." {
        return Err(invalid("'.' and '..' are not names"));
    }
    let c = CString::new(format!("/{bare}")).map_err(|_| invalid("contains a NUL byte"))?;
    Ok((bare.to_owned(), c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_slashed_names() {
        assert_eq!(validate("abc").unwrap().0, "abc");
        assert_eq!(validate("/abc").unwrap().1.to_str().unwrap(), "/abc");
        assert!(validate(&"x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        for bad in ["", "/", "a/b", "//a", ".", "..", "a\0b"] {
            match validate(bad) {
                Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert!(matches!(
            validate(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(Error::InvalidName { .. })
        ));
    }
}
