//! The fuzz entry point (see `fuzz/`), and a task that has its worker die
//! halfway through putting its answer. Not part of the API: compiled with
//! the `test-hooks` feature and hidden from the documentation.

use crate::wire::{self, Progress};

/// Reads `data` as the pool reads an answer (its entries decoded as a few
/// result types) and as a worker reads a task (its arguments run through
/// functions of a few types, and the answer that makes decoded again).
/// Whatever the bytes, this returns; it never panics.
#[doc(hidden)]
pub fn fuzz_messages(data: &[u8]) {
    // The pool bounds a decode by its own task's count, never the answer's.
    const COUNT: u32 = 4096;
    if let Some((_, count, entries)) = wire::read_answer(data) {
        let count = count.min(COUNT);
        read_all::<u64>(entries, count);
        read_all::<String>(entries, count);
        read_all::<(u64, String)>(entries, count);
        read_all::<f32>(entries, count);
        // Raw tuples, and a sequence, which takes any raw tuple.
        read_all::<(u32, f64)>(entries, count);
        read_all::<[i16; 3]>(entries, count);
        read_all::<[u8; 20]>(entries, count);
        read_all::<(bool, u16)>(entries, count);
        read_all::<Vec<u64>>(entries, count);
        // Bytes, read as one block.
        read_all::<Vec<u8>>(entries, count);
    }
    read_all::<Vec<u8>>(data, COUNT);
    if let Some((task, args)) = wire::read_task(data) {
        let count = task.count.min(COUNT);
        let at = Progress::new(0);
        let mut out = Vec::new();
        wire::run_items(&|x: u64| x.wrapping_mul(3), args, count, &mut out, &at);
        read_all::<u64>(&out, count);
        out.clear();
        wire::run_items(&|s: String| s.len() as u64, args, count, &mut out, &at);
        read_all::<u64>(&out, count);
        out.clear();
        wire::run_items(&|v: Vec<u8>| v, args, count, &mut out, &at);
        read_all::<Vec<u8>>(&out, count);
        out.clear();
        wire::run_items(
            &|(a, b): (i32, f64)| f64::from(a) + b,
            args,
            count,
            &mut out,
            &at,
        );
        read_all::<f64>(&out, count);
        out.clear();
        wire::run_items(
            &|(a, b, c): (u8, i64, f32)| (f64::from(c), a, b),
            args,
            count,
            &mut out,
            &at,
        );
        read_all::<(f64, u8, i64)>(&out, count);
    }
}

fn read_all<R: serde::de::DeserializeOwned>(mut entries: &[u8], count: u32) {
    let (mut left, mut values) = (count as usize, Vec::new());
    while left > 0 {
        // What the pool does past the end (an error per item) says nothing new.
        if entries.is_empty() {
            return;
        }
        // As the pool reads them: runs of raw results, the rest one by one.
        let (n, rest, failed) = wire::read_raw_run::<R>(entries, left, &mut values);
        if failed.is_some() {
            return; // (no Deserialize here panics)
        }
        (left, entries) = (left - n, rest);
        values.clear();
        if n == 0 {
            let (_, rest) = wire::read_item::<R>(entries);
            (left, entries) = (left - 1, rest);
        }
    }
}

/// Called inside a task: its worker, once the task returns, claims the slot
/// of its answer in the answer queue and is killed (`SIGKILL`) before it
/// writes it, as a worker killed at that instruction would be: the claim
/// stays at the queue's head, published by nobody, and the answers put
/// behind it can be got only once the pool skips it.
#[doc(hidden)]
pub fn die_while_answering() {
    crate::worker::DIE_WHILE_ANSWERING.store(true, std::sync::atomic::Ordering::Relaxed);
}
