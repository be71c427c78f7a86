//! Training the detector: losses (and, next, the trainer and augmentation).

pub mod losses;
