//! A bounded multi-process queue and `Pipe` (issue: `multiproc-queue`).
//!
//! **Not yet written.** This crate is a placeholder in the workspace so that its
//! name, place and dependencies are fixed; it has no public items yet. See
//! DESIGN.md in the project's shared folder for what it will hold.
