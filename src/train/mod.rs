//! Training the detector: losses and the optimisation step with the
//! Entropy Loss term (next: the trainer command and augmentation).

pub mod losses;
pub mod step;
