//! The compute pool: where tables, trips and long routes run.
//!
//! They used to go through `spawn_blocking`, whose pool grows to 512 threads. Each thread
//! that runs a query keeps its own query workspace (two distance arrays the size of the
//! graph: about 2 MB on Porto, gigabytes on a country), so a burst of 64 trips took the
//! agent from 11 to 78 threads and from 15 to 264 MB, and more threads than cores only
//! share the same cores. Here the work runs on one pool with a thread per core, so there
//! are as many workspaces as pool threads (the engine keeps one per thread), and at most
//! `--compute-queue` jobs wait for a thread; beyond that a job is refused at once, and the
//! handler answers 503 with `Retry-After` rather than queue work it cannot do in time.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::oneshot;

use crate::{
    api::{AppState, admission::Shed},
    error::ApiError,
};

/// Why a job did not run to completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// Every thread is busy and the queue is full.
    #[error("the compute queue is full ({0} jobs queued or running)")]
    Busy(usize),
    /// The job panicked; the pool keeps serving.
    #[error("a compute job panicked")]
    Panicked,
    /// The pool's threads could not be started.
    #[error("the compute pool cannot start: {0}")]
    Unavailable(String),
}

/// A fixed pool of compute threads with a bounded queue in front.
#[derive(Debug)]
pub struct Compute {
    threads: usize,
    max_queue: usize,
    /// Jobs queued or running.
    pending: Arc<AtomicUsize>,
    /// Started on first use, so an agent (or a test) that never computes starts no thread.
    pool: OnceLock<Result<rayon::ThreadPool, String>>,
}

/// Gives a job's place back when the job ends, runs or not.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Compute {
    /// `threads` threads (0: one per core), at most `max_queue` jobs waiting for one.
    pub fn new(threads: usize, max_queue: usize) -> Self {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Self {
            threads,
            max_queue,
            pending: Arc::default(),
            pool: OnceLock::new(),
        }
    }

    /// Threads of the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs queued or running now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    fn pool(&self) -> Result<&rayon::ThreadPool, ComputeError> {
        self.pool
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(self.threads)
                    .thread_name(|i| format!("compute-{i}"))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ComputeError::Unavailable(e.clone()))
    }

    /// Runs `work` on the pool and waits for its result; [`ComputeError::Busy`] at once when
    /// every thread is busy and the queue is full. A job whose caller has gone away (the
    /// client disconnected, the request timed out) before a thread picks it up is skipped.
    pub async fn run<R, F>(&self, work: F) -> Result<R, ComputeError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let pool = self.pool()?;
        let bound = self.threads + self.max_queue;
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let place = Pending(self.pending.clone());
        if before >= bound {
            return Err(ComputeError::Busy(before));
        }
        let (tx, rx) = oneshot::channel();
        pool.spawn(move || {
            if tx.is_closed() {
                return;
            }
            let result = catch_unwind(AssertUnwindSafe(work));
            // Give the place back before answering, so that a caller who got its answer
            // never sees its own job still counted.
            drop(place);
            let _ = tx.send(result);
        });
        match rx.await {
            Ok(Ok(result)) => Ok(result),
            // The sender is dropped without sending only if the job panicked outside
            // `catch_unwind`, which cannot happen; count it as a panic all the same.
            Ok(Err(_)) | Err(_) => Err(ComputeError::Panicked),
        }
    }
}

/// Runs `work` on the agent's compute pool for a handler: a full queue is a 503 with
/// `Retry-After` (counted as shed, reason `compute_queue_full`), a panic a 500.
pub async fn offload<R, F>(state: &AppState, work: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let compute = &state.admission.compute;
    compute.run(work).await.map_err(|err| match err {
        ComputeError::Busy(_) => {
            state
                .metrics
                .overload()
                .shed_for(Shed::ComputeQueueFull.label());
            ApiError::overloaded(format!(
                "All {} compute threads are busy and {} requests wait for them; retry shortly",
                compute.threads(),
                compute.max_queue
            ))
        }
        err => ApiError::internal(err),
    })
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Barrier, Mutex},
        time::Duration,
    };

    use super::*;

    #[tokio::test]
    async fn work_runs_on_at_most_the_pool_threads_and_the_overflow_is_refused_at_once() {
        let compute = Arc::new(Compute::new(2, 3));
        let gate = Arc::new(Barrier::new(3));
        let names = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let mut jobs = Vec::new();
        for _ in 0..5 {
            let (compute, gate, names) = (compute.clone(), gate.clone(), names.clone());
            jobs.push(tokio::spawn(async move {
                compute
                    .run(move || {
                        let name = std::thread::current().name().map(str::to_owned);
                        names.lock().unwrap().insert(name);
                        // The first two hold both threads until the test lets them go.
                        if first_job_on_this_thread() {
                            gate.wait();
                        }
                        7
                    })
                    .await
            }));
        }
        // 2 running + 3 queued: the pool is full.
        while compute.pending() < 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let refused = compute.run(|| 0).await;
        assert_eq!(refused, Err(ComputeError::Busy(5)));
        assert_eq!(compute.pending(), 5, "a refused job leaves no trace");
        gate.wait();
        for job in jobs {
            assert_eq!(job.await.unwrap(), Ok(7));
        }
        assert_eq!(compute.pending(), 0);
        let names = names.lock().unwrap();
        assert!(names.len() <= 2, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.as_deref().is_some_and(|n| n.starts_with("compute-")))
        );
    }

    thread_local! {
        static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// The first job on each pool thread waits at the barrier (two threads, plus the test).
    fn first_job_on_this_thread() -> bool {
        HELD.with(|held| !held.replace(true))
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_pool_keeps_serving() {
        let compute = Compute::new(1, 1);
        let panicked = compute.run(|| -> u32 { panic!("boom") }).await;
        assert_eq!(panicked, Err(ComputeError::Panicked));
        assert_eq!(compute.run(|| 3).await, Ok(3));
        assert_eq!(compute.pending(), 0);
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_is_skipped() {
        let compute = Compute::new(1, 4);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let blocker = compute.run(move || {
            let _ = wait.recv();
        });
        tokio::pin!(blocker);
        // Start the blocker, then queue a job and abandon it.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), blocker.as_mut())
                .await
                .is_err()
        );
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let abandoned = tokio::time::timeout(
            Duration::from_millis(20),
            compute.run(move || counter.fetch_add(1, Ordering::SeqCst)),
        )
        .await;
        assert!(abandoned.is_err());
        release.send(()).unwrap();
        blocker.await.unwrap();
        while compute.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
