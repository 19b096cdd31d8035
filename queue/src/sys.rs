//! The one system call of this crate that is not a futex (those go through
//! `multiproc-sync`) or an eventfd (nix's `EventFd`, in `wait.rs`): polling
//! descriptors for readability.

use std::io;
use std::os::fd::BorrowedFd;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::time::Duration;

/// `poll` on `fds` for readability, at most `timeout` (`None`: no limit);
/// which are readable (or at their end: hung up, in error). Retries on `EINTR`
/// with the time left.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    // A timeout too large for the clock waits for ever.
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                // Round up, so that a wait of 0.3 ms does not spin at 0.
                let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match nix::poll::poll(&mut pfds, wait) {
            Ok(_) => {
                let ready = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
                return Ok(pfds
                    .iter()
                    .map(|p| p.revents().is_some_and(|r| r.intersects(ready)))
                    .collect());
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
