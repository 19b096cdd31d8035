//! Exit statuses: the raw `wait` status and Python's `exitcode`.

/// A raw status as `wait`/`waitpid` return it (Python's `os.wait()[1]`), with decoders.
///
/// # Examples
/// ```
/// use multiproc_proc::WaitStatus;
/// let s = WaitStatus::from_raw(256); // what Python's os.wait shows for exit(1)
/// assert_eq!(s.exit_code(), Some(1));
/// assert_eq!(s.exitcode(), 1);
/// assert_eq!(WaitStatus::from_raw(9).exitcode(), -9); // killed by SIGKILL
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus(i32);

impl WaitStatus {
    /// Wraps a raw status.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_proc::WaitStatus::from_raw(0).exit_code(), Some(0));
    /// ```
    pub fn from_raw(raw: i32) -> WaitStatus {
        WaitStatus(raw)
    }

    /// The raw status (`exit << 8`, or the signal number, `| 0x80` with a core dump).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_proc::WaitStatus::from_raw(256).raw(), 256);
    /// ```
    pub fn raw(self) -> i32 {
        self.0
    }

    /// The exit code, if the process exited.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_proc::WaitStatus::from_raw(3 << 8).exit_code(), Some(3));
    /// ```
    pub fn exit_code(self) -> Option<i32> {
        libc::WIFEXITED(self.0).then(|| libc::WEXITSTATUS(self.0))
    }

    /// The signal that killed it, if one did.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_proc::WaitStatus::from_raw(15).signal(), Some(15));
    /// ```
    pub fn signal(self) -> Option<i32> {
        libc::WIFSIGNALED(self.0).then(|| libc::WTERMSIG(self.0))
    }

    /// Whether it left a core dump.
    ///
    /// # Examples
    /// ```
    /// assert!(multiproc_proc::WaitStatus::from_raw(11 | 0x80).core_dumped());
    /// ```
    pub fn core_dumped(self) -> bool {
        libc::WIFSIGNALED(self.0) && libc::WCOREDUMP(self.0)
    }

    /// Python's `exitcode`: the exit code, or `-N` when killed by signal `N`.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(multiproc_proc::WaitStatus::from_raw(9).exitcode(), -9);
    /// ```
    pub fn exitcode(self) -> i32 {
        match (self.exit_code(), self.signal()) {
            (Some(c), _) => c,
            (_, Some(s)) => -s,
            _ => self.0,
        }
    }
}

impl std::fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.exit_code(), self.signal()) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (_, Some(s)) => write!(
                f,
                "killed by signal {s}{}",
                if self.core_dumped() {
                    " (core dumped)"
                } else {
                    ""
                }
            ),
            _ => write!(f, "raw status {:#x}", self.0),
        }
    }
}

/// What a child's closure may return; it becomes the child's exit code.
///
/// `()` is 0; an integer is itself (masked to 0–255 by the kernel); `Ok(x)` is
/// `x`'s code; `Err(e)` prints `e` to stderr and is 1 — as an uncaught exception
/// is in Python. A closure that never returns (`|| loop { .. }`, Python's
/// `while True:` worker) needs no annotation: its type, `!`, is a `ChildResult`
/// too.
pub trait ChildResult {
    /// The exit code.
    fn exit_code(self) -> i32;
}

impl ChildResult for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl ChildResult for i32 {
    fn exit_code(self) -> i32 {
        self
    }
}

impl ChildResult for u8 {
    fn exit_code(self) -> i32 {
        i32::from(self)
    }
}

/// Names the never type (`!`, the type of `loop {}`) on stable Rust: the output
/// of a function pointer that never returns.
mod never {
    pub trait Returns {
        type Output;
    }

    impl<R> Returns for fn() -> R {
        type Output = R;
    }

    /// `!`: what a closure that loops for ever (`|| loop { .. }`, Python's
    /// `while True` worker) returns.
    pub type Never = <fn() -> ! as Returns>::Output;
}

/// A closure that never returns has no exit code of its own: the process ends
/// by a signal or by `exit` inside it.
impl ChildResult for never::Never {
    fn exit_code(self) -> i32 {
        self
    }
}

impl<T: ChildResult, E: std::fmt::Display> ChildResult for Result<T, E> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(v) => v.exit_code(),
            Err(e) => {
                eprintln!("Error: {e}");
                1
            }
        }
    }
}
