//! [`Job`]: what the parent keeps of one call (`apply_async`, a map) while
//! its tasks run, and the answers ([`Part`]) filed under it.

use std::any::Any;

use crate::buffers::spare;
use crate::error::Error;
use crate::task::Task;
use crate::wire;

/// One answer message, filed under its job.
pub(crate) struct Part {
    /// Index of its first item in the job.
    pub(crate) first: usize,
    pub(crate) count: u32,
    /// The whole answer message; the entries start at `wire::ANSWER_HEADER`.
    pub(crate) msg: Answer,
}

impl Part {
    pub(crate) fn entries(&self) -> &[u8] {
        self.msg.bytes().get(wire::ANSWER_HEADER..).unwrap_or(&[])
    }
}

/// The longest answer kept inline in an [`Answer`]: the header and a few
/// raw results.
pub(crate) const ANSWER_INLINE: usize = 48;

/// An answer message as received: a small one (a trivial `apply`'s) inline,
/// so that taking and filing it costs no allocation; a large one in a spare
/// buffer given back when it is dropped.
pub(crate) enum Answer {
    Inline { len: u8, buf: [u8; ANSWER_INLINE] },
    Heap(Vec<u8>),
}

impl Answer {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Answer::Inline { len, buf } => &buf[..usize::from(*len)],
            Answer::Heap(v) => v,
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Answer::Heap(v) = self {
            spare::give(std::mem::take(v));
        }
    }
}

/// What a job has gathered: answers, and items that failed without one.
#[derive(Default)]
pub(crate) struct Gathered {
    pub(crate) parts: smallvec::SmallVec<[Part; 1]>,
    pub(crate) failed: Failed,
}

/// The items of a job that failed without an answer (a worker's death, a
/// timeout, a stopped pool), in no order: none in almost every job, so the
/// list is boxed, which keeps the job record 16 bytes shorter (a burst of
/// `apply_async`s writes and reads one record a task, mostly out of the
/// caches: `benches/NOTES.md`).
#[derive(Default)]
// The box is the point: one word in the record, where a `Vec` takes three.
#[allow(clippy::box_collection)]
pub(crate) struct Failed(Option<Box<Vec<(usize, Error)>>>);

impl Failed {
    pub(crate) fn push(&mut self, failure: (usize, Error)) {
        self.0.get_or_insert_default().push(failure);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|v| v.is_empty())
    }

    pub(crate) fn as_slice(&self) -> &[(usize, Error)] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    pub(crate) fn into_vec(self) -> Vec<(usize, Error)> {
        self.0.map_or_else(Vec::new, |v| *v)
    }
}

/// Turns a finished job's answers into its typed outcome (a `Result<T>` in a
/// box), running its callbacks: made where the types are known.
pub(crate) type Finisher = Box<dyn FnOnce(Gathered, usize) -> Box<dyn Any + Send> + Send>;

// A burst of `apply_async`s keeps one job record and one task record a
// task, mostly out of the caches: each byte of them shows in its time
// (`benches/NOTES.md`). These say when a change makes them longer.
const _: () = assert!(std::mem::size_of::<Job>() <= 152);
const _: () = assert!(std::mem::size_of::<Task>() <= 128);

/// What becomes of a job's answers once it is complete (one field, where a
/// finisher and its output took two words each and a flag).
pub(crate) enum Finish {
    /// Its caller decodes them (`get`).
    ByCaller,
    /// The driver runs this first: callbacks, or decoding ahead of `get`.
    Pending(Finisher),
    /// The finisher runs now, outside the lock: not done yet.
    Running,
    /// What the finisher made, or what `successful` decoded.
    Done(Box<dyn Any + Send>),
}

/// A job: one `apply`, one `map`, one `imap`.
pub(crate) struct Job {
    /// Items submitted so far.
    pub(crate) total: usize,
    /// More items may come (an `imap` still reading its input).
    pub(crate) feeding: bool,
    /// Items answered or failed so far.
    pub(crate) answered: usize,
    pub(crate) gathered: Gathered,
    /// What becomes of its answers once it is complete.
    pub(crate) finish: Finish,
    /// Cancelled, or failed as a whole (terminate, broken pool).
    /// (Boxed: an `Error` inline would make every job 72 bytes longer.)
    pub(crate) aborted: Option<Box<Error>>,
    /// Its answer is its lowest failing item's error once one fails (a
    /// `map`, a `starmap`): see [`Job::fail_fast`].
    pub(crate) fail_fast: bool,
    /// Items from here on are not run (`usize::MAX`: all are): the lowest
    /// item of a fail-fast job that a worker's death or timeout failed.
    pub(crate) run_below: usize,
    /// Its handle was dropped while its callbacks were still to run: it is
    /// kept until they have run (Python runs a callback whether or not its
    /// `AsyncResult` is kept), then forgotten (see [`Job::detach`]).
    pub(crate) detached: bool,
}

impl Job {
    pub(crate) fn new(feeding: bool, finisher: Option<Finisher>) -> Job {
        Job {
            total: 0,
            feeding,
            answered: 0,
            gathered: Gathered::default(),
            finish: finisher.map_or(Finish::ByCaller, Finish::Pending),
            aborted: None,
            fail_fast: false,
            run_below: usize::MAX,
            detached: false,
        }
    }

    /// Makes room in its list of answers for `parts` of them, at most as
    /// many as a map's `get` lets gather before it takes them
    /// ([`EARLY_SCAN`](crate::handle::EARLY_SCAN)): a list grown an answer at
    /// a time made a small map reallocate three times.
    pub(crate) fn expect_parts(&mut self, parts: usize) {
        self.gathered
            .parts
            .reserve(parts.min(crate::handle::EARLY_SCAN));
    }

    /// Its handle is dropped: whether the job stays in the table, detached,
    /// because it has callbacks still to run (they run as they would have,
    /// and the job is forgotten once they have); if not, the caller forgets
    /// it now (its answers, if they still come, are dropped on arrival).
    pub(crate) fn detach(&mut self) -> bool {
        self.detached =
            self.aborted.is_none() && matches!(self.finish, Finish::Pending(_) | Finish::Running);
        self.detached
    }

    /// This job answers its lowest failing item's error, nothing else, once
    /// one fails: its queued tasks wholly above an item that a worker's death
    /// or a timeout failed are not run (counted as answered; their results
    /// would only be dropped). A map whose every item kills its worker fails
    /// after a few deaths, not one death and one replacement an item.
    /// (Failures the workers answer, panics, are read only when the job is
    /// decoded, and stop nothing: they cost no replacement.)
    pub(crate) fn fail_fast(mut self) -> Job {
        self.fail_fast = true;
        self
    }

    /// Whether `task` (of this job) need not run: wholly above a failure.
    pub(crate) fn skips(&self, task: &Task) -> bool {
        task.first > self.run_below
    }

    /// Every item has an outcome (and no more will be added).
    pub(crate) fn complete(&self) -> bool {
        self.aborted.is_some() || (!self.feeding && self.answered >= self.total)
    }

    /// Whether the job is complete and its outcome (if it has a finisher) is there.
    pub(crate) fn done(&self) -> bool {
        self.aborted.is_some()
            || (self.complete() && matches!(self.finish, Finish::ByCaller | Finish::Done(_)))
    }
}
