//! libtorch's thread settings, each with its own scope:
//! - inter-op threads are process-wide and can be set once, before any parallel work: the first
//!   model that asks sets them, a later different value is an error (libtorch would throw);
//! - intra-op threads (`at::set_num_threads`, which sets OpenMP's count for the calling thread)
//!   and the graph executor's optimiser flag are per thread: thrum applies a model's settings on
//!   whichever thread runs it, before each call, remembering per thread what is applied;
//! - `OMP_NUM_THREADS` is read by libgomp when the process starts: it is the default for threads
//!   thrum does not configure, and is reported as is.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};

use thrum_core::{Error, Result};

use crate::ENGINE;

/// The inter-op thread count this process set, if any.
static INTEROP: Mutex<Option<usize>> = Mutex::new(None);

/// Sets libtorch's inter-op pool size, once per process.
pub(crate) fn set_inter_op(threads: usize) -> Result<()> {
    let mut set = INTEROP.lock().unwrap_or_else(|p| p.into_inner());
    match *set {
        Some(n) if n == threads => Ok(()),
        Some(n) => Err(Error::Unsupported {
            engine: ENGINE,
            feature: format!("inter_op_threads={threads}"),
            reason: format!(
                "libtorch lets a process set its inter-op thread count once, and this process already set \
                 it to {n}; load every torch model with the same inter_op_threads"
            ),
        }),
        None => {
            let n = i32::try_from(threads).unwrap_or(i32::MAX);
            // tch panics when libtorch refuses (parallel work already started): turn it into an error.
            catch_unwind(|| tch::set_num_interop_threads(n)).map_err(|_| Error::Unsupported {
                engine: ENGINE,
                feature: format!("inter_op_threads={threads}"),
                reason:
                    "libtorch refuses to change the inter-op thread count once parallel work has \
                         started in the process; set it for the first model loaded"
                        .into(),
            })?;
            *set = Some(threads);
            Ok(())
        }
    }
}

/// The inter-op thread count in effect.
pub(crate) fn inter_op() -> usize {
    usize::try_from(tch::get_num_interop_threads()).unwrap_or(0)
}

/// libtorch's intra-op count before thrum set any thread's (OMP_NUM_THREADS, else the cores):
/// what a model without `intra_op_threads` gets, even on a thread another model changed.
static DEFAULT_INTRA_OP: OnceLock<i32> = OnceLock::new();

/// Per-thread settings a model wants applied before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PerThread {
    pub(crate) intra_op: Option<usize>,
    pub(crate) graph_optimizer: bool,
}

thread_local! {
    static APPLIED: Cell<Option<PerThread>> = const { Cell::new(None) };
}

impl PerThread {
    /// Applies these settings on the current thread unless they already are.
    pub(crate) fn apply(self) -> Result<()> {
        if APPLIED.get() == Some(self) {
            return Ok(());
        }
        let default = *DEFAULT_INTRA_OP.get_or_init(tch::get_num_threads);
        let n = self.intra_op.map_or(default, |n| i32::try_from(n).unwrap_or(i32::MAX));
        catch_unwind(|| tch::set_num_threads(n)).map_err(|_| Error::Unsupported {
            engine: ENGINE,
            feature: format!("intra_op_threads={n}"),
            reason: "libtorch refused the thread count".into(),
        })?;
        tch::jit::f_set_graph_executor_optimize(self.graph_optimizer).map_err(|e| {
            Error::Unsupported {
                engine: ENGINE,
                feature: "torch.graph_optimizer".into(),
                reason: e.to_string(),
            }
        })?;
        APPLIED.set(Some(self));
        Ok(())
    }
}

/// `OMP_NUM_THREADS` as libgomp read it at start-up.
pub(crate) fn omp_env() -> Option<usize> {
    std::env::var("OMP_NUM_THREADS").ok()?.trim().parse().ok()
}

/// A panic inside a libtorch call, as an error (tch panics on some libtorch exceptions).
pub(crate) fn guard<T>(model: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libtorch raised an error".into());
        Err(Error::inference(ENGINE, model, message))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail by panicking

    use super::*;

    #[test]
    fn a_model_without_intra_op_threads_gets_the_default_on_a_thread_another_model_changed() {
        std::thread::spawn(|| {
            let default = tch::get_num_threads();
            let other = if default == 1 { 2 } else { 1 };
            PerThread { intra_op: Some(other as usize), graph_optimizer: true }.apply().unwrap();
            assert_eq!(tch::get_num_threads(), other);
            PerThread { intra_op: None, graph_optimizer: true }.apply().unwrap();
            assert_eq!(tch::get_num_threads(), default);
        })
        .join()
        .unwrap();
    }
}
