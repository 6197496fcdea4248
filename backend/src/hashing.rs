//! Password hashing off the async threads, a few at a time. Each Argon2
//! hash takes ~20–40 ms of CPU and 19 MiB of memory, so a burst of login
//! attempts must neither stall the runtime nor multiply that memory: at
//! most [`WORKERS`] hashes run at once and at most [`WAITING`] more wait;
//! past that the caller gets a 503 at once. (Rate limits apply before a
//! request gets here.)

use squall_proto::error::ApiError;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Hashes that run at once.
pub const WORKERS: usize = 2;
/// Hashes that may wait for a worker.
pub const WAITING: usize = 32;

/// The bounded hashing pool of one backend.
pub struct HashPool {
    running: Semaphore,
    admitted: AtomicUsize,
    max_admitted: usize,
}

/// Counts an admitted hash until it is done or abandoned.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    /// A pool running `workers` hashes at once with `waiting` more queued.
    pub fn new(workers: usize, waiting: usize) -> Self {
        let workers = workers.max(1);
        HashPool { running: Semaphore::new(workers), admitted: AtomicUsize::new(0), max_admitted: workers + waiting }
    }

    /// Runs `work` (a hash or a verification) on a blocking thread when a
    /// worker is free; a 503 if too many are already waiting.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max_admitted {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::busy("Too many sign-in attempts at once; try again shortly"));
        }
        let _admitted = Admitted(&self.admitted);
        let _worker = self.running.acquire().await.map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(work).await.map_err(ApiError::internal)
    }
}

impl Default for HashPool {
    fn default() -> Self {
        HashPool::new(WORKERS, WAITING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_workers_run_and_past_the_queue_callers_are_turned_away() {
        let pool = Arc::new(HashPool::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (pool, running, most, gate) = (pool.clone(), running.clone(), most.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let _ = gate.lock().map(|g| g.recv());
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // 2 running + 3 waiting = 5 admitted: the sixth is refused at once.
        while pool.admitted.load(Ordering::SeqCst) < 5 || running.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| ()).await.expect_err("past the queue");
        assert_eq!(refused.status, 503);
        for _ in 0..5 {
            release.send(()).expect("a waiting hash");
        }
        for t in tasks {
            t.await.expect("task").expect("admitted hashes run");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more than 2 at once");
        assert_eq!(pool.admitted.load(Ordering::SeqCst), 0);
        pool.run(|| ()).await.expect("room again");
    }
}
