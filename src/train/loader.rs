//! The training data loader: background threads decode, augment, pillarize
//! and assign targets to frames while the network trains on the previous
//! batch, through a bounded queue.
//!
//! Order: the caller fixes the samples (frame index + sample number, from
//! the epoch's seeded shuffle); each is a pure function of them and the
//! run's seed (see [`FramePreparer`]), workers take them in order and the
//! results are put back in order before batching, so the batches are the
//! same for any number of threads — and for none (`threads = 0` prepares
//! each batch on the calling thread).
//!
//! Bound: at most `2·B + threads` samples are dispatched ahead of the batch
//! being consumed (two batches queued, every worker busy), so memory stays
//! bounded whatever the speed difference between loading and training.

use super::batch::{BatchError, FramePreparer, PreparedFrame, TrainBatch};
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One sample to prepare: training frame `frame`, sample number `sample`
/// (seeds its augmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    pub frame: usize,
    pub sample: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("a loader thread panicked preparing sample {sample}: {message}")]
    Panicked { sample: u64, message: String },
    #[error("the loader threads stopped before delivering sample {0}")]
    Gone(u64),
    #[error("batch size must be >= 1")]
    BatchSize,
    #[error("starting a loader thread: {0}")]
    Spawn(std::io::Error),
}

type Prepared = (usize, Result<PreparedFrame, LoaderError>);

struct Workers {
    jobs: Option<Sender<(usize, SampleRef)>>,
    results: Receiver<Prepared>,
    handles: Vec<JoinHandle<()>>,
}

pub struct BatchLoader {
    preparer: Arc<FramePreparer>,
    samples: Vec<SampleRef>,
    batch_size: usize,
    /// Next sample to hand out in a batch / next one to dispatch to a worker.
    next: usize,
    dispatched: usize,
    pending: BTreeMap<usize, Result<PreparedFrame, LoaderError>>,
    workers: Option<Workers>,
}

impl BatchLoader {
    /// Batches of `batch_size` consecutive `samples` (the last one may be
    /// shorter), prepared by `threads` background threads (0: on the caller's).
    pub fn new(preparer: Arc<FramePreparer>, samples: Vec<SampleRef>, batch_size: usize, threads: usize) -> Result<Self, LoaderError> {
        if batch_size == 0 {
            return Err(LoaderError::BatchSize);
        }
        let workers = if threads > 0 && !samples.is_empty() { Some(spawn(&preparer, threads)?) } else { None };
        let mut loader = Self { preparer, samples, batch_size, next: 0, dispatched: 0, pending: BTreeMap::new(), workers };
        loader.dispatch();
        Ok(loader)
    }

    /// Samples not yet handed out.
    pub fn remaining(&self) -> usize {
        self.samples.len() - self.next
    }

    /// The next batch, `None` after the last.
    pub fn next_batch(&mut self) -> Result<Option<TrainBatch>, LoaderError> {
        if self.next >= self.samples.len() {
            return Ok(None);
        }
        let end = (self.next + self.batch_size).min(self.samples.len());
        let mut frames = Vec::with_capacity(end - self.next);
        while self.next < end {
            let frame = self.take(self.next)?;
            self.next += 1;
            self.dispatch();
            frames.push(frame);
        }
        Ok(Some(TrainBatch::collate(frames)?))
    }

    /// Sample `seq`, prepared here or waited for.
    fn take(&mut self, seq: usize) -> Result<PreparedFrame, LoaderError> {
        let s = self.samples[seq];
        let Some(w) = &self.workers else { return Ok(self.preparer.prepare(s.frame, s.sample)?) };
        while !self.pending.contains_key(&seq) {
            let (k, r) = w.results.recv().map_err(|_| LoaderError::Gone(s.sample))?;
            self.pending.insert(k, r);
        }
        self.pending.remove(&seq).unwrap_or(Err(LoaderError::Gone(s.sample)))
    }

    /// Keeps the workers' queue filled up to the bound.
    fn dispatch(&mut self) {
        let Some(w) = &self.workers else { return };
        let Some(jobs) = &w.jobs else { return };
        let bound = 2 * self.batch_size + w.handles.len();
        while self.dispatched < self.samples.len() && self.dispatched < self.next + bound {
            if jobs.send((self.dispatched, self.samples[self.dispatched])).is_err() {
                return; // every worker is gone: take() reports it
            }
            self.dispatched += 1;
        }
    }
}

fn spawn(preparer: &Arc<FramePreparer>, threads: usize) -> Result<Workers, LoaderError> {
    let (job_tx, job_rx) = channel::<(usize, SampleRef)>();
    let (result_tx, results) = channel::<Prepared>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let mut workers = Workers { jobs: Some(job_tx), results, handles: Vec::with_capacity(threads) };
    for i in 0..threads {
        let (jobs, out, preparer) = (Arc::clone(&job_rx), result_tx.clone(), Arc::clone(preparer));
        let handle = std::thread::Builder::new()
            .name(format!("train-loader-{i}"))
            .spawn(move || loop {
                // the lock is held only while taking a job
                let job = match jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((seq, s)) = job else { return };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| preparer.prepare(s.frame, s.sample)))
                    .map_err(|p| LoaderError::Panicked { sample: s.sample, message: crate::panic_message::panic_message(&*p) })
                    .and_then(|r| r.map_err(LoaderError::from));
                if out.send((seq, result)).is_err() {
                    return;
                }
            })
            .map_err(LoaderError::Spawn)?;
        workers.handles.push(handle);
    }
    Ok(workers)
}

impl Drop for BatchLoader {
    /// Closes the queue and waits for the threads (each finishes the sample in hand).
    fn drop(&mut self) {
        if let Some(mut w) = self.workers.take() {
            w.jobs.take();
            // results still queued are dropped with the receiver after the join
            for h in w.handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}
