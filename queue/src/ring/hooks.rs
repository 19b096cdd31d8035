//! Test hooks: a producer or consumer stopped (or killed) between the steps of
//! an operation. Compiled for the crate's own tests, loom and fuzz only (the
//! `test-hooks` feature, or `cfg(multiproc_loom)`).

use super::{free_for, holding, Claims, Msg, PopFail, PushFail, Ring};
use crate::layout::Participant;
use crate::primitive::Ordering;

impl Ring {
    /// Test hook: announce and claim the next position for putting, then stop (as
    /// a producer killed right after its claim would).
    pub(crate) fn claim_put_and_stop(&self, part: Option<&Participant>) {
        let pos = self.ctl().tail.0.load(Ordering::Acquire);
        self.claim_at(part, pos, 1, false);
    }
    /// Test hook: announce and claim the next message, then stop (as a consumer
    /// killed right after its claim would).
    pub(crate) fn claim_get_and_stop(&self, part: Option<&Participant>) {
        let pos = self.ctl().head.0.load(Ordering::Acquire);
        self.claim_at(part, pos, 1, true);
    }
    /// Test hook: claims the next slot for putting (if it is free) as `push_one`
    /// does, calls `pause` (a producer stopped between claim and publish), then
    /// publishes `msg`; whether it claimed. A fixed-length ring only.
    pub(crate) fn put_with_pause(
        &self,
        part: Option<&Participant>,
        msg: Msg,
        pause: impl FnOnce(),
    ) -> bool {
        let Some((pos, _)) = self.claim_one(&self.ctl().tail.0, free_for, part.map(Claims::puts))
        else {
            return false;
        };
        pause();
        self.publish_claimed(pos, &[msg]);
        self.wake_consumers(1);
        true
    }
    /// Test hook: claims the next message (if there is one) as `pop_one` does,
    /// calls `pause` (a consumer stopped between claim and free), then takes it
    /// into `scratch` and frees its slot; whether it claimed. A fixed-length ring
    /// only.
    pub(crate) fn get_with_pause(
        &self,
        part: Option<&Participant>,
        scratch: &mut [u8],
        pause: impl FnOnce(),
    ) -> bool {
        let Some((pos, _)) = self.claim_one(&self.ctl().head.0, holding, part.map(Claims::gets))
        else {
            return false;
        };
        pause();
        self.take_claimed(pos, 1, scratch, &mut |_, _| {}, usize::MAX)
            .is_ok()
    }
    /// Test hook: `try_push` that claims slots for all of `msgs` (if that many
    /// are free) and publishes only the first `publish`, as a producer killed
    /// halfway through a batch; returns how many it claimed.
    pub(crate) fn push_some_and_stop(
        &self,
        part: Option<&Participant>,
        msgs: &[Msg],
        publish: usize,
    ) -> Result<usize, PushFail> {
        self.try_push_stopping(part, msgs, publish).map(|(n, _)| n)
    }
    /// Test hook: `try_pop` that claims up to `max` messages and takes only the
    /// first `take`, as a consumer killed halfway through a batch.
    pub(crate) fn pop_some_and_stop(
        &self,
        part: Option<&Participant>,
        max: usize,
        take: usize,
        scratch: &mut [u8],
    ) -> Result<usize, PopFail> {
        self.try_pop_stopping(part, max, scratch, |_, _| {}, take)
    }
    /// Test hook: tries to claim positions `pos..pos + n` for putting (`get`: for
    /// getting) as a claimer that read the cursor as `pos` would; whether it won.
    /// A claim that loses leaves no announcement behind.
    pub(crate) fn claim_at(&self, part: Option<&Participant>, pos: u64, n: u64, get: bool) -> bool {
        let c = self.ctl();
        if get {
            self.claim(&c.head.0, pos, n, part.map(Claims::gets))
                .is_ok()
        } else {
            self.claim(&c.tail.0, pos, n, part.map(Claims::puts))
                .is_ok()
        }
    }
}
