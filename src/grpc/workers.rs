//! A fixed set of threads for the core's CPU work: decoding, hashing, large searches, writes.
//!
//! Not tokio's blocking pool: it starts a thread whenever none is idle at the moment a task
//! arrives, and a hand-off races the last task's thread going back to idle, so under a steady
//! `CheckImage` load it ran 8 threads for 4 tasks in flight. Each hashing thread keeps its
//! last image's buffers for the next (`hash::KeptBuffer`), so resident memory grew
//! with the churn (a few MiB per thread for a 1024×768 JPEG). A fixed set bounds those
//! buffers by the worker count and keeps them warm. Hand-written because it is a queue, a
//! mutex and a loop, while a general pool (rayon's) is built for fork-join work instead.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

/// A job that gave no result: its work panicked (the worker carries on), or the workers are
/// gone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JobLost;

/// Threads that take jobs from one queue, first come first served.
pub(crate) struct Workers {
    queue: Sender<Job>,
}

impl Workers {
    /// Starts `count` (at least one) threads, which end once the `Workers` is dropped and the
    /// queue is empty.
    pub(crate) fn start(count: usize) -> std::io::Result<Workers> {
        let (queue, jobs) = channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for number in 0..count.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("hashsieve-cpu-{number}"))
                .spawn(move || work_through(&jobs))?;
        }
        Ok(Workers { queue })
    }

    /// Runs `work` on a worker once one is free. If the caller stops waiting first (its
    /// deadline passed, or its call was cancelled), the work is skipped, never computed.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobLost> {
        let (result, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if result.is_closed() {
                return;
            }
            // A panic drops `result` unsent, which the caller sees as `JobLost`.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                let _ = result.send(value);
            }
        });
        self.queue.send(job).map_err(|_| JobLost)?;
        answer.await.map_err(|_| JobLost)
    }
}

/// A worker's loop: one job at a time until the queue is closed.
fn work_through(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_named_workers_and_no_more_of_them_at_once() {
        let workers = Arc::new(Workers::start(2).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls = (0..16).map(|_| {
            let (workers, running, most) = (workers.clone(), running.clone(), most.clone());
            tokio::spawn(async move {
                workers
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        std::thread::current().name().map(str::to_owned)
                    })
                    .await
            })
        });
        let mut names = std::collections::BTreeSet::new();
        for call in calls.collect::<Vec<_>>() {
            names.insert(call.await.unwrap().unwrap().unwrap());
        }
        assert!((1..=2).contains(&most.load(Ordering::SeqCst)));
        assert!(
            names.iter().all(|name| name.starts_with("hashsieve-cpu-")),
            "{names:?}"
        );
        assert!(names.len() <= 2, "{names:?}");
    }

    #[tokio::test]
    async fn a_panic_loses_that_job_only() {
        let workers = Workers::start(1).unwrap();
        assert_eq!(workers.run(|| -> u32 { panic!("boom") }).await, Err(JobLost));
        assert_eq!(workers.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn work_whose_caller_gave_up_is_skipped() {
        let workers = Workers::start(1).unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let busy = workers.run(move || blocked.recv().is_ok());
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let abandoned = workers.run(move || counted.fetch_add(1, Ordering::SeqCst));
        // The second job is queued behind the first, and its caller gives up before it starts.
        let timed_out = tokio::time::timeout(Duration::from_millis(20), abandoned);
        let (busy, timed_out) = tokio::join!(busy, async {
            let outcome = timed_out.await;
            release.send(()).unwrap();
            outcome
        });
        assert!(timed_out.is_err());
        assert_eq!(busy, Ok(true));
        assert_eq!(workers.run(|| 1).await, Ok(1));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
