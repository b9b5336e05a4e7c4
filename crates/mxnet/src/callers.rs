//! The threads that make the thread-safe predictor's MXNet calls.
//!
//! libmxnet gives every OS thread that runs a cached op its own resource manager (random
//! number generators, about 5 MiB, written when created) and frees them only when the process
//! exits, not when the thread does. A thread-safe predictor called from N threads would hold
//! N × 5 MiB, and a server whose threads come and go would grow without bound. So thrum runs
//! those calls on one pool of threads per process, one per usable core, started at the first
//! call and kept for the life of the process (new threads for each predictor would leak their
//! own 5 MiB); each caller waits for its result. At most that many resource managers exist,
//! however many threads call and however many thread-safe predictors come and go. With MXNet's
//! threaded engine the operators run on MXNet's own workers anyway (a call pushes them and
//! waits); on NaiveEngine MXNet serialises thread-safe calls, so the pool costs no parallelism.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{Sender, bounded, unbounded};

type Job = Box<dyn FnOnce() + Send>;

static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

/// The pool's queue, starting the pool on first use.
fn queue() -> Result<&'static Sender<Job>, String> {
    if let Some(queue) = QUEUE.get() {
        return Ok(queue);
    }
    let _starting = START.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(queue) = QUEUE.get() {
        return Ok(queue);
    }
    let (queue, jobs) = unbounded::<Job>();
    let count = std::thread::available_parallelism().map_or(1, |n| n.get());
    for k in 0..count {
        let jobs = jobs.clone();
        std::thread::Builder::new()
            .name(format!("thrum-mxnet-{k}"))
            .spawn(move || {
                for job in jobs {
                    job();
                }
            })
            .map_err(|e| format!("could not start an MXNet caller thread: {e}"))?;
    }
    Ok(QUEUE.get_or_init(|| queue))
}

/// Runs `work` on one of the pool's threads and waits for its result.
pub(crate) fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (reply, result) = bounded(1);
    let job: Job = Box::new(move || {
        let outcome = catch_unwind(AssertUnwindSafe(work));
        // The caller is blocked on `result` until this is sent.
        let _ = reply.send(outcome);
    });
    queue()?.send(job).map_err(|_| "the MXNet caller threads have stopped".to_string())?;
    match result.recv() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err("the forward pass panicked on an MXNet caller thread".into()),
        Err(_) => Err("the MXNet caller threads have stopped".into()),
    }
}
