//! Helpers for multiproc's tests that fork or re-execute processes.
//!
//! Every multi-process test in the workspace uses these so that the rules in the
//! project's test guide hold everywhere:
//!
//! - a [`Watchdog`] bounds the whole test: when it fires it prints what hung and
//!   aborts the test process, and every child forked through [`fork`] dies with it
//!   (each child asks for `SIGKILL` on its parent's death);
//! - every [`Child`] is reaped: by [`Child::wait`], or on drop by `SIGKILL` + `waitpid`;
//! - [`unique_name`] gives segment names no other test (or run) can collide with.
//!
//! The child side of [`fork`] runs the closure, catches a panic, and leaves with
//! `_exit`, so the parent's destructors and exit handlers never run twice.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod every_write;

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A name unique to this process, call and moment, starting with `mp-test-`.
///
/// Safe to use as a POSIX shared-memory name (no slash, short).
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    format!("mp-test-{tag}-{pid}-{n}-{nanos:x}")
}

/// Aborts the test process if it is still alive after `limit`.
///
/// Dropping the watchdog disarms it. Children forked with [`fork`] die with the
/// aborted process (parent-death signal), so a hung test leaves nothing behind.
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Arms a watchdog that aborts the process after `limit`, naming `what` hung.
    pub fn arm(limit: Duration, what: &str) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let what = what.to_owned();
        let thread = thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    let _ = writeln!(
                        std::io::stderr(),
                        "watchdog: `{what}` still running after {limit:?}; aborting the test process \
                         (its forked children die with it)"
                    );
                    std::process::abort();
                }
            })
            .expect("spawn watchdog thread");
        Watchdog {
            disarm: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            // A join error means the watchdog thread panicked; nothing to do in a drop.
            let _ = t.join();
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    /// It called `_exit(code)`.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ChildExit {
    /// Decodes a raw `waitpid` status.
    pub fn from_raw(status: i32) -> ChildExit {
        if libc::WIFSIGNALED(status) {
            ChildExit::Signaled(libc::WTERMSIG(status))
        } else {
            ChildExit::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// A forked child that is always reaped.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// Forks; the child runs `f` and exits with its return value (101 on panic).
///
/// The child asks for `SIGKILL` when its parent dies, so a test aborted by its
/// [`Watchdog`] leaves no stray process. Keep `f` to what is safe after `fork`.
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork has no memory-safety preconditions; the child below runs only the
    // given closure and leaves with _exit, never returning into the caller.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a plain integer argument.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // The parent died before the death signal was armed.
            // SAFETY: _exit is async-signal-safe and ends the process.
            unsafe { libc::_exit(102) };
        }
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Sends `signal` to the child (if it has not been reaped yet).
    pub fn signal(&self, signal: i32) {
        if !self.reaped {
            // SAFETY: kill takes plain integers; the pid is our unreaped child, so it
            // cannot have been recycled.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Waits until the child ends or `timeout` passes; `None` on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ChildExit> {
        assert!(!self.reaped, "child {} already reaped", self.pid);
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out-pointer; the pid is our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                return Some(ChildExit::from_raw(status));
            }
            assert!(
                r == 0 || std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted,
                "waitpid({}) failed: {}",
                self.pid,
                std::io::Error::last_os_error()
            );
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Waits for the child; past `timeout` kills it, reaps it and panics.
    pub fn wait(mut self, timeout: Duration) -> ChildExit {
        match self.wait_timeout(timeout) {
            Some(exit) => exit,
            None => {
                self.kill_and_reap();
                panic!("child {} still running after {timeout:?}; killed", self.pid);
            }
        }
    }

    /// Waits and asserts the child exited with code 0.
    pub fn wait_ok(self, timeout: Duration) {
        let pid = self.pid;
        let exit = self.wait(timeout);
        assert_eq!(exit, ChildExit::Exited(0), "child {pid} did not succeed");
    }

    /// SIGKILLs the child and reaps it within `timeout`, asserting that the
    /// signal is what ended it.
    pub fn kill(mut self, timeout: Duration) {
        let pid = self.pid;
        self.signal(libc::SIGKILL);
        assert_eq!(
            self.wait_timeout(timeout),
            Some(ChildExit::Signaled(libc::SIGKILL)),
            "child {pid} did not die of SIGKILL"
        );
    }

    fn kill_and_reap(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let mut status = 0;
            // SAFETY: status is a valid out-pointer; the pid is our own child.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
            self.reaped = true;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Polls `done` every millisecond until it holds; panics naming `what` once
/// `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Returns a command that re-runs the current test binary for exactly `test`,
/// with `role` in the environment variable `MULTIPROC_TEST_ROLE`.
///
/// The test checks [`role`] first and, when it is set, plays that part and
/// returns: this is how tests get an *unrelated* process (not a fork).
pub fn reexec(test: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("MULTIPROC_TEST_ROLE", role);
    cmd
}

/// The program of the example `name` of the crate under test:
/// `target/<profile>/examples/NAME`, beside the test binary's `deps`. Fails
/// the test, saying `how_to_build`, when it is not built.
pub fn example_path(name: &str, how_to_build: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary> → target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .expect("the test binary lies in target/<profile>/deps");
    assert!(
        path.exists(),
        "example {name} not built at {}: {how_to_build}",
        path.display()
    );
    path
}

/// Runs the example `name` of the crate under test with `args` within
/// `timeout`, and returns its standard output; fails the test if the example
/// is missing, fails, or runs past the timeout (it is killed).
///
/// The example is the program `cargo build --examples` leaves in
/// `target/<profile>/examples/NAME`, beside the test binary's `deps`
/// (`scripts/test-all` builds them before the tests; `cargo test` builds
/// examples only as test harnesses, which are not the program).
pub fn run_example(name: &str, args: &[&str], timeout: Duration) -> String {
    let path = example_path(
        name,
        "run `cargo build --workspace --examples $(scripts/features)` (with \
         `--release` for release tests) first, as scripts/test-all does",
    );
    let child = Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the example");
    let out = wait_command(child, timeout);
    assert!(
        out.status.success(),
        "example {name} ({}) failed ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the example prints UTF-8")
}

/// The role this process was re-executed for by [`reexec`], if any.
pub fn role() -> Option<String> {
    std::env::var("MULTIPROC_TEST_ROLE").ok()
}

/// Runs a [`std::process::Child`] to completion within `timeout`, killing it past that.
pub fn wait_command(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("wait_with_output"),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait_with_output");
                panic!(
                    "re-executed process still running after {timeout:?}; killed. stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Process ids of this process's children that are zombies (dead, unreaped), from `/proc`.
pub fn zombie_children() -> Vec<libc::pid_t> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces) start after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<libc::pid_t>().ok());
        if state == Some("Z") && ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// Pins `pid` (0: the calling thread) to `cpu` alone; returns the CPUs it
/// had, for [`set_cpus`].
///
/// # Panics
/// If either call fails (`pid` gone, `cpu` not one it may use).
pub fn pin(pid: u32, cpu: usize) -> libc::cpu_set_t {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: zeroed sets are empty; the calls read and write sets of the
    // size given, for `pid`.
    unsafe {
        let mut had: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(pid as i32, size, &mut had), 0);
        let mut only: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut only);
        assert_eq!(libc::sched_setaffinity(pid as i32, size, &only), 0);
        had
    }
}

/// Lets `pid` (0: the calling thread) run on `cpus` (a set [`pin`] returned).
pub fn set_cpus(pid: u32, cpus: &libc::cpu_set_t) {
    // SAFETY: a set of its own size, read by the call.
    unsafe { libc::sched_setaffinity(pid as i32, std::mem::size_of_val(cpus), cpus) };
}

/// Makes every later call of system call `nr` by this process, and by the
/// processes it forks, fail with `errno`, through a seccomp filter: a real
/// kernel refusal, as an older kernel or a sandbox gives. Call it in a
/// forked test child only: a filter cannot be removed.
///
/// # Panics
/// If the filter cannot be installed, or on an architecture it does not
/// know (x86-64 and aarch64 only).
pub fn refuse_syscall(nr: libc::c_long, errno: i32) {
    // The `AUDIT_ARCH_*` of this build: a call of another architecture's
    // numbering (a 32-bit call on x86-64) goes through untouched.
    let arch: u32 = if cfg!(target_arch = "x86_64") {
        0xC000_003E
    } else if cfg!(target_arch = "aarch64") {
        0xC000_00B7
    } else {
        panic!("refuse_syscall knows x86-64 and aarch64 only")
    };
    // `struct seccomp_data`: the call's number at offset 0, its
    // architecture at 4.
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump_eq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let ret = |k: u32| stmt(libc::BPF_RET | libc::BPF_K, k);
    let mut filter = [
        load(4),
        jump_eq(arch, 1, 0),
        ret(libc::SECCOMP_RET_ALLOW),
        load(0),
        jump_eq(nr as u32, 0, 1),
        ret(libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)),
        ret(libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments; then a filter program that
    // outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            0,
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ),
            0,
            "installing a seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Makes `/proc` empty for this process and the processes it forks from now
/// on (a private mount namespace, in a user namespace of its own, with a
/// tmpfs over `/proc`), as in a container or chroot that mounts none. Call
/// it in a forked, single-threaded test child (`unshare` refuses a process
/// with threads). `false`, saying why on stderr, where namespaces are not
/// allowed.
pub fn hide_proc() -> bool {
    // SAFETY: unshare and mount with constant arguments and strings that
    // live through the calls.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            eprintln!("unshare: {}", std::io::Error::last_os_error());
            return false;
        }
        // Nothing mounted here reaches the namespace this one came from.
        let private = libc::MS_REC | libc::MS_PRIVATE;
        let none = std::ptr::null();
        if libc::mount(none, c"/".as_ptr(), none, private, std::ptr::null()) != 0
            || libc::mount(
                c"none".as_ptr(),
                c"/proc".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
        {
            eprintln!("mount: {}", std::io::Error::last_os_error());
            return false;
        }
    }
    true
}

/// [`hide_proc`] for a test child, with the exit code it returns where it
/// cannot hide `/proc`: `Err(0)` (a skip, said on stderr) where namespaces
/// are not allowed to a non-root user, `Err(20)` where they were refused to
/// root (who must be able to run the test), `Err(21)` where `/proc` still
/// reads afterwards.
pub fn hide_proc_or_exit_code() -> Result<(), i32> {
    if !hide_proc() {
        // SAFETY: geteuid has no preconditions.
        return Err(if unsafe { libc::geteuid() } == 0 {
            20
        } else {
            0
        });
    }
    if std::fs::read("/proc/self/stat").is_ok() {
        return Err(21);
    }
    Ok(())
}

/// Refuses `pidfd_open` to this process and the processes it forks from now
/// on ([`refuse_syscall`], `ENOSYS`), as a kernel before 5.3 or a sandbox
/// does: identity tokens are then start times (`/proc/ID/stat`), as on
/// every kernel before 6.9. Checks that the call is refused.
///
/// # Panics
/// If the filter cannot be installed, or the call still goes through.
pub fn refuse_pidfd_open() {
    refuse_syscall(libc::SYS_pidfd_open, libc::ENOSYS);
    // SAFETY: pidfd_open of this process; a descriptor it returned would be
    // closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    assert!(
        fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS),
        "pidfd_open still answers"
    );
}

/// Lowers this process's limit of open files (`RLIMIT_NOFILE`, the soft
/// limit) to the descriptors it has: the limit is on numbers, and a new
/// descriptor takes the lowest free one, so the limit goes just there and
/// no descriptor more can be opened. For a forked test child.
///
/// # Panics
/// If the limit cannot be read or set.
pub fn limit_open_files_to_those_open() {
    limit_open_files_to_those_open_and(0);
}

/// [`limit_open_files_to_those_open`], then `free` descriptors more: room
/// for `free` more open files, and no more.
///
/// # Panics
/// If the limit cannot be read or set.
pub fn limit_open_files_to_those_open_and(free: u64) {
    // SAFETY: dup returns a new descriptor (the lowest free), closed at
    // once; getrlimit fills the rlimit, setrlimit reads it.
    unsafe {
        let fd = libc::dup(0);
        assert!(fd >= 0, "dup: {}", std::io::Error::last_os_error());
        libc::close(fd);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = fd as libc::rlim_t + free; // the hard limit stays
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// Whether this process has no child, running or unreaped (`waitpid(-1,
/// WNOHANG)` answers `ECHILD`).
pub fn no_child_left() -> bool {
    // SAFETY: waitpid with a null status pointer and WNOHANG.
    let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// The process that registered [`count_exit_handler_runs_elsewhere`]'s
/// handler, and the count it keeps in memory shared with its forks.
static EXIT_HANDLER_RUNS: std::sync::OnceLock<(u32, &'static AtomicU32)> =
    std::sync::OnceLock::new();

extern "C" fn count_in_another_process() {
    if let Some((registered_by, runs)) = EXIT_HANDLER_RUNS.get() {
        if std::process::id() != *registered_by {
            runs.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Registers an exit handler (`atexit`) that counts its runs in any other
/// process than this one (the processes forked from it afterwards, which
/// copy it), and answers that count, kept in memory shared with them. For
/// tests of what a child's `exit` runs: a program's handler must not run
/// in the processes it starts. Once per process.
///
/// # Panics
/// On a second call, or if the memory or the handler cannot be had.
pub fn count_exit_handler_runs_elsewhere() -> &'static AtomicU32 {
    // SAFETY: a page of zeros (a valid `AtomicU32`), aligned, never
    // unmapped: the reference is good for the process's life.
    let runs = unsafe { &*shared_page().cast::<AtomicU32>() };
    assert!(
        EXIT_HANDLER_RUNS.set((std::process::id(), runs)).is_ok(),
        "count_exit_handler_runs_elsewhere called twice"
    );
    // SAFETY: a plain function, for the rest of this process.
    assert_eq!(unsafe { libc::atexit(count_in_another_process) }, 0);
    runs
}

/// A fresh page of zeros, shared with the processes forked after it, never
/// unmapped.
///
/// # Panics
/// If it cannot be mapped.
pub(crate) fn shared_page() -> *mut u8 {
    // SAFETY: a fresh anonymous shared mapping of one page; no other memory
    // is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    p.cast()
}
