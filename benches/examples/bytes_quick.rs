//! The pool's blocking `apply` of a 1 MiB argument of bytes (the report's
//! rows), as a `serde_bytes::ByteBuf` and as a `Vec<u8>`: the median of nine
//! rounds of 20 calls each, for A/B runs with `scripts/ab` and for probes.
//!
//! Run: `cargo run --release -p multiproc-bench --example bytes_quick`
//! (`VEC=1`: the `Vec<u8>` too; `N=`: the argument's bytes).
use multiproc_bench::median;
use multiproc_bench::pool::apply_bytes;

fn main() {
    let n = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20);
    let vec = std::env::var_os("VEC").is_some();
    let pool = multiproc_pool::Pool::new(0).expect("pool");
    apply_bytes(&pool, n, 5, true);
    let (mut buf, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        buf.push(apply_bytes(&pool, n, 20, true));
        if vec {
            plain.push(apply_bytes(&pool, n, 20, false));
        }
    }
    print!("ByteBuf of {n} bytes: {:.1} µs a call", median(&buf));
    if vec {
        print!(", Vec<u8>: {:.1} µs", median(&plain));
    }
    println!();
}
