//! Mixed precision on CUDA: the forward pass runs under libtorch's autocast
//! (`tch::autocast`: convolutions and matrix products in fp16, reductions and
//! batch-norm statistics in fp32) while the variables stay fp32 — the master
//! copy that AdamW updates. The losses are computed in fp32 from the head's
//! outputs cast back, and a dynamic loss scale (the rule of PyTorch's
//! `GradScaler`: start at 2^16, halve and skip the update when a gradient is
//! not finite, double after 2,000 good steps in a row) keeps fp16 gradients
//! from underflowing. tch's autocast only reaches CUDA (fp16; it has no
//! setter for bf16), so on the CPU training stays fp32 with a scale of 1 and
//! every step taken: the same arithmetic as without this module.

/// Where the loss scale stands (saved with the run, so a resumed run keeps it).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScale {
    pub scale: f64,
    /// Finite-gradient steps since the scale last changed.
    pub good_steps: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    enabled: bool,
    state: LossScale,
}

const INITIAL_SCALE: f64 = 65_536.0;
const GROWTH_INTERVAL: usize = 2_000;
const MIN_SCALE: f64 = 1.0 / 65_536.0;

impl LossScaler {
    /// Mixed precision when `requested` and the detector lives on a CUDA
    /// device; otherwise fp32 with a scale of 1.
    pub fn new(requested: bool, device: tch::Device) -> Self {
        let enabled = requested && device.is_cuda();
        Self { enabled, state: LossScale { scale: if enabled { INITIAL_SCALE } else { 1.0 }, good_steps: 0 } }
    }

    /// Whether the forward pass runs under autocast with a scaled loss.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn scale(&self) -> f64 {
        self.state.scale
    }

    pub fn state(&self) -> LossScale {
        self.state
    }

    /// Continues from a saved state (ignored when mixed precision is off:
    /// the scale stays 1).
    pub fn restore(&mut self, saved: LossScale) {
        if self.enabled && saved.scale.is_finite() && saved.scale > 0.0 {
            self.state = saved;
        }
    }

    /// After a backward pass: `finite` says whether every gradient was
    /// finite. Returns whether the optimizer should step.
    pub fn update(&mut self, finite: bool) -> bool {
        if !self.enabled {
            return true;
        }
        if finite {
            self.state.good_steps += 1;
            if self.state.good_steps >= GROWTH_INTERVAL {
                self.state = LossScale { scale: self.state.scale * 2.0, good_steps: 0 };
            }
        } else {
            self.state = LossScale { scale: (self.state.scale * 0.5).max(MIN_SCALE), good_steps: 0 };
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stays_fp32_and_always_steps() {
        let mut s = LossScaler::new(true, tch::Device::Cpu);
        assert!(!s.enabled());
        assert_eq!(s.scale(), 1.0);
        assert!(s.update(false), "without mixed precision every step is taken, as before");
        s.restore(LossScale { scale: 1024.0, good_steps: 3 });
        assert_eq!(s.scale(), 1.0);
    }

    #[test]
    fn scale_halves_on_overflow_and_grows_after_good_steps() {
        // the rule itself, independent of a CUDA device
        let mut s = LossScaler { enabled: true, state: LossScale { scale: INITIAL_SCALE, good_steps: 0 } };
        assert!(!s.update(false));
        assert_eq!(s.state(), LossScale { scale: INITIAL_SCALE / 2.0, good_steps: 0 });
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale(), INITIAL_SCALE / 2.0);
        assert!(s.update(true));
        assert_eq!(s.state(), LossScale { scale: INITIAL_SCALE, good_steps: 0 });
        s.restore(LossScale { scale: 8.0, good_steps: 5 });
        assert_eq!(s.state(), LossScale { scale: 8.0, good_steps: 5 });
        s.restore(LossScale { scale: f64::NAN, good_steps: 0 });
        assert_eq!(s.scale(), 8.0, "a broken saved scale is not taken");
    }
}
