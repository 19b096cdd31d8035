//! Python's `Pipe` example: a child sends `[42, None, 'hello']` and closes its
//! end; the parent receives it, then learns that nothing more will come. Then a
//! duplex pipe carries requests and replies, the parent receiving each reply into
//! one reused buffer (`recv_bytes_into`).
//!
//! `cargo run -p multiproc-queue --features serde --example pipe`

use multiproc_proc::Process;
use multiproc_queue::{pipe, Error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // def f(conn): conn.send([42, None, 'hello']); conn.close()
    let (parent_conn, mut child_conn) = pipe(true)?;
    let mut p = Process::new(move || {
        child_conn.send(&(42, None::<i32>, "hello")).expect("send");
        child_conn.close();
    });
    p.start()?;
    // The child's end went into its closure: the parent holds none of it.
    let got: (i32, Option<i32>, String) = parent_conn.recv()?;
    println!("{got:?}"); // (42, None, "hello")
    p.join()?;
    match parent_conn.recv::<u8>() {
        Err(Error::Disconnected) => println!("the child closed its end"),
        other => println!("unexpected: {other:?}"),
    }

    // Requests and replies: the child upper-cases what it gets until "bye".
    let (parent_conn, child_conn) = pipe(true)?;
    let mut p = Process::new(|| {
        let mut buf = Vec::new();
        loop {
            child_conn.recv_bytes_into(&mut buf).expect("recv");
            if buf == b"bye" {
                break;
            }
            buf.make_ascii_uppercase();
            child_conn.send_bytes(&buf).expect("send");
        }
    });
    p.start()?;
    let mut reply = Vec::new();
    for word in ["ping", "queue", "pipe"] {
        parent_conn.send_bytes(word.as_bytes())?;
        parent_conn.recv_bytes_into(&mut reply)?;
        println!("{word} -> {}", String::from_utf8_lossy(&reply));
    }
    parent_conn.send_bytes(b"bye")?;
    p.join()?;
    Ok(())
}
