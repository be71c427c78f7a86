//! Training the detector with the Entropy Loss: losses, the optimisation
//! step on a batch of frames (mixed precision on CUDA), AdamW with its
//! one-cycle schedule, augmentation (ground-truth sampling included), the data source and its background
//! loader, validation and the resumable trainer behind `eloss train`.

pub mod adamw;
pub mod augment;
pub mod batch;
pub mod csv_log;
pub mod curves;
pub mod seed_study;
pub mod data;
pub mod gt_database;
pub mod gt_sampling;
#[cfg(test)]
mod device_audit;
pub mod loader;
pub mod losses;
pub mod mixed_precision;
pub mod schedule;
pub mod step;
pub mod trainer;
#[cfg(test)]
mod trainer_tests;
pub mod validate;
