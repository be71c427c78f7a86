//! Training the detector with the Entropy Loss: losses, the optimisation
//! step, AdamW with its one-cycle schedule, augmentation, the data source,
//! validation and the resumable trainer behind `eloss train`.

pub mod adamw;
pub mod augment;
pub mod curves;
pub mod data;
pub mod losses;
pub mod schedule;
pub mod step;
pub mod trainer;
pub mod validate;
