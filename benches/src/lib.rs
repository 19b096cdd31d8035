//! Benches of multiproc's hot paths and the comparison report against its peers.
//!
//! The criterion benches live in `benches/`; `cargo run -p multiproc-bench --release
//! --bin report` prints the comparison report (ratios measured in one run).
