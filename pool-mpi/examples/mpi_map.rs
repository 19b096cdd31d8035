//! The same `map` on one machine and over MPI ranks, printing the same
//! results:
//!
//! ```text
//! cargo run --release -p multiproc-pool-mpi --features mpi --example mpi_map -- --local
//! mpirun -np 3 target/release/examples/mpi_map
//! ```
//!
//! The program is written once against [`Tasks`]; only the line that makes
//! the pool differs.

use multiproc_pool_mpi::Tasks;

/// The number of steps of the Collatz sequence from `n` to 1.
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

fn report(pool: &impl Tasks) -> multiproc_pool::Result<()> {
    let steps = pool.map(collatz_steps, 1..=30)?;
    println!("steps for 1..=30: {steps:?}");
    let longest = pool
        .map(collatz_steps, 1..=100_000)?
        .into_iter()
        .zip(1u64..)
        .max()
        .map(|(s, n)| (n, s));
    println!("longest below 100000: {longest:?}");
    Ok(())
}

fn main() -> multiproc_pool::Result<()> {
    if std::env::args().any(|a| a == "--local") {
        let pool = multiproc_pool::Pool::new(0)?;
        println!("one machine: {} worker processes", pool.processes());
        report(&pool)
    } else {
        let pool = multiproc_pool_mpi::init()?;
        println!(
            "MPI: {} ranks serving, {} worker processes",
            pool.ranks().len(),
            pool.processes()
        );
        report(&pool)
    }
}
