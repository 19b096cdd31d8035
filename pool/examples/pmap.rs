//! The tutorial's homework: `pmap`, a parallel map. A CPU-bound function over
//! a list, sequentially and with `pmap` (workers forked for the call, so the
//! closure borrows what it needs), and the same with the pool's `map`.
//!
//! Run: `cargo run --release -p multiproc-pool --example pmap`

use std::time::Instant;

/// About a millisecond of arithmetic (release build).
fn work(seed: u64) -> u64 {
    let mut h = seed;
    for i in 0..400_000u64 {
        h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i) ^ (h >> 29);
    }
    h
}

fn main() -> Result<(), multiproc_pool::Error> {
    let items: Vec<u64> = (0..64).collect();
    let cpus = multiproc_proc::cpu_count();

    let t = Instant::now();
    let sequential: Vec<u64> = items.iter().map(|&x| work(x)).collect();
    let t_seq = t.elapsed();

    let t = Instant::now();
    let parallel = multiproc_pool::pmap(&items, |&x| work(x))?;
    let t_pmap = t.elapsed();

    let pool = multiproc_pool::Pool::new(0)?;
    let t = Instant::now();
    let mapped = pool.map(work, items.iter().copied())?;
    let t_map = t.elapsed();

    assert_eq!(parallel, sequential);
    assert_eq!(mapped, sequential);
    println!("{} items on {cpus} CPUs", items.len());
    println!("sequential: {:.1} ms", t_seq.as_secs_f64() * 1e3);
    println!(
        "pmap:       {:.1} ms ({:.2}x)",
        t_pmap.as_secs_f64() * 1e3,
        t_seq.as_secs_f64() / t_pmap.as_secs_f64()
    );
    println!(
        "Pool::map:  {:.1} ms ({:.2}x)",
        t_map.as_secs_f64() * 1e3,
        t_seq.as_secs_f64() / t_map.as_secs_f64()
    );
    println!("same results: yes");
    Ok(())
}
