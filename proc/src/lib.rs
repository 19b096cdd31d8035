//! Fork-based process control (issue: `multiproc-proc`).
//!
//! **Not yet written.** This crate is a placeholder in the workspace so that its
//! name, place and dependencies are fixed; it has no public items yet.
