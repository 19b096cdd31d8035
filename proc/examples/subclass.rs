//! The tutorials' second way to make a process: a subclass of `Process` with
//! its own state and `run` (here a type implementing [`Run`]).
//!
//! - Three chats: each process prints its pid and who it is chatting with.
//! - `Piao('egon')`: the parent prints "start" and the child's pid at once;
//!   the child, named by its type, prints that it runs, sleeps 1-2 s, and
//!   prints that it is done — after the parent's lines.
//!
//! `cargo run -p multiproc-proc --example subclass`

use std::time::Duration;

use multiproc_proc::{current_process, Process, Run};

/// Python's `MyProcess(Process)` with a `person`.
struct Chat {
    person: &'static str,
}

impl Run for Chat {
    type Output = ();

    fn run(self) {
        println!("{}: {} is chatting", current_process().pid, self.person);
    }
}

/// Python's `Piao(Process)`, which sets its own name.
struct Piao {
    name: &'static str,
    /// The tutorial sleeps `random.randrange(1, 3)` seconds.
    secs: u64,
}

impl Run for Piao {
    type Output = ();

    fn run(self) {
        let me = current_process();
        println!("{} is running (pid {})", me.name, me.pid);
        std::thread::sleep(Duration::from_secs(self.secs));
        println!("{} is done", me.name);
    }

    fn name(&self) -> Option<String> {
        Some(self.name.to_owned())
    }
}

fn main() -> Result<(), multiproc_proc::Error> {
    let mut chats: Vec<Process> = ["Jedan", "Taibai", "alex"]
        .into_iter()
        .map(|person| Process::from_run(Chat { person }))
        .collect();
    for p in &mut chats {
        p.start()?;
    }
    for p in &mut chats {
        p.join()?;
    }

    let secs = 1 + std::process::id() as u64 % 2; // 1 or 2, as randrange(1, 3)
    let mut p = Process::from_run(Piao { name: "egon", secs });
    p.start()?;
    println!("start");
    println!("{}", p.pid().expect("started"));
    p.join()?;
    Ok(())
}
