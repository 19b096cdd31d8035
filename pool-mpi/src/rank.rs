//! A serving rank's loop: tasks from rank 0 into the rank's local pool,
//! their answers back (see the protocol in `world.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use multiproc_pool::{Pool, Result};

use crate::posted;
use crate::serve;
use crate::wire::{self, Hello};
use crate::world::{bound_at_launch, host_name, Napper, DRAIN_LIMIT};

/// A serving rank's life: the process's exit code.
pub(crate) fn serve_rank(
    universe: Universe,
    level: Threading,
    make_pool: impl FnOnce() -> Result<Pool>,
) -> i32 {
    let world = universe.world();
    let pool = if level < Threading::Multiple {
        Err("the MPI library does not offer MPI_THREAD_MULTIPLE".to_owned())
    } else {
        make_pool().map_err(|e| format!("could not make its local pool: {e}"))
    };
    // The thread that sends answers over 64 KiB, started before the hello
    // so that a rank that cannot start it (the system's limit of threads)
    // says so there, as one whose pool failed does.
    let stopped_now = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<Option<serve::Answer>>();
    let answerer = {
        let stopped_now = Arc::clone(&stopped_now);
        std::thread::Builder::new()
            .name("mpi-answerer".into())
            .spawn(move || {
                while let Ok(Some(answer)) = rx.recv() {
                    answer_root(answer, &stopped_now);
                }
            })
    };
    let pool = match (pool, answerer) {
        (Ok(pool), Ok(answerer)) => Ok((pool, answerer)),
        (Err(problem), answerer) => Err((problem, answerer.ok())),
        (Ok(_), Err(e)) => Err((format!("could not start its answering thread: {e}"), None)),
    };
    let hello = Hello {
        build: multiproc_pool::build_id(),
        pid: std::process::id(),
        processes: pool.as_ref().map_or(0, |(p, _)| p.processes() as u32),
        host: host_name(),
        problem: pool.as_ref().err().map(|(problem, _)| problem.clone()),
    };
    let root = world.process_at_rank(0);
    root.send_with_tag(&hello.encode()[..], wire::HELLO);
    let (pool, answerer) = match pool {
        Ok(started) => started,
        Err((_, answerer)) => {
            // Its channel closed, the answering thread ends.
            drop(tx);
            if let Some(answerer) = answerer {
                let _ = answerer.join();
            }
            // Rank 0 answers with a stop, and its `init` returns the problem
            // to the program, which says what it will of it. This rank ends
            // with a success: a rank that exits non-zero has `mpirun` kill
            // the others, rank 0 with them before it could print the error
            // its `init` returned (seen under load: the program's output
            // empty, only `mpirun`'s note about this rank's exit code).
            let _ = receive_stop(&world);
            drop(universe);
            return 0;
        }
    };
    if let Some((ours, launcher)) = bound_at_launch() {
        eprintln!(
            "multiproc-pool-mpi: rank {} (pid {} on {}) may run on {ours} of the {launcher} \
             CPUs its launcher may, and its pool's {} workers share them: mpirun binds each \
             rank to one core by default when it starts one or two; start it with \
             `mpirun --bind-to none`",
            world.rank(),
            std::process::id(),
            hello.host,
            pool.processes()
        );
    }
    let outbox = {
        let stopped_now = Arc::clone(&stopped_now);
        serve::Outbox::new(
            tx,
            Some(Box::new(move |answer: &[u8]| {
                answer_root(answer.to_vec(), &stopped_now)
            })),
        )
    };
    // Local jobs until they end, oldest first.
    let mut held: VecDeque<serve::Held> = VecDeque::new();
    let mut last_settle = Instant::now();
    let mut nap = Napper::default();
    let how = loop {
        posted::complete();
        if let Some(m) = root.immediate_matched_probe_with_tag(wire::TASK) {
            let (msg, _) = m.matched_receive_vec::<u8>();
            nap.reset();
            let mut tasks = wire::frames(&msg);
            // SAFETY: rank 0 runs this build (its greeting was checked
            // before it sent any task), so the offsets name a server and a
            // function of matching types.
            held.extend(unsafe { serve::run_tasks(&pool, tasks.by_ref(), &outbox) });
            if tasks.torn {
                eprintln!("multiproc-pool-mpi: a task message from rank 0 was cut short");
            }
            settle(&mut held);
            continue;
        }
        if let Some(m) = root.immediate_matched_probe_with_tag(wire::STOP) {
            let (msg, _) = m.matched_receive_vec::<u8>();
            break msg.first().copied().unwrap_or(wire::STOP_NOW);
        }
        if last_settle.elapsed() > Duration::from_millis(1) {
            last_settle = Instant::now();
            settle(&mut held);
        }
        nap.nap();
    };
    if how == wire::STOP_NOW {
        stopped_now.store(true, std::sync::atomic::Ordering::Relaxed);
        pool.terminate();
    } else {
        // Every job sent ends, and its callback answers.
        pool.close();
        let _ = pool.join();
    }
    for h in held {
        // Ended: answered by its callback, or now.
        let _ = h.settled();
    }
    outbox.end();
    let _ = answerer.join();
    let leaked = posted::drain(DRAIN_LIMIT);
    if leaked > 0 {
        eprintln!("multiproc-pool-mpi: {leaked} answers to rank 0 were not taken before the end");
    }
    drop(pool);
    drop(universe);
    0
}

/// Drops the oldest local jobs that ended (answering for those that ended
/// without their callback).
fn settle(held: &mut VecDeque<serve::Held>) {
    while let Some(h) = held.pop_front() {
        if let Err(h) = h.settled() {
            held.push_front(h);
            return;
        }
    }
}

/// Posts one answer (message) to rank 0, unless rank 0 stopped listening.
fn answer_root(answer: Vec<u8>, stopped_now: &std::sync::atomic::AtomicBool) {
    if !stopped_now.load(std::sync::atomic::Ordering::Relaxed) {
        posted::post(0, wire::ANSWER, answer);
    }
}

fn receive_stop(world: &SimpleCommunicator) -> u8 {
    let (msg, _) = world
        .process_at_rank(0)
        .matched_probe_with_tag(wire::STOP)
        .matched_receive_vec::<u8>();
    msg.first().copied().unwrap_or(wire::STOP_NOW)
}
