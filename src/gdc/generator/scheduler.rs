//! Euler samplers of k-diffusion (Karras et al. 2022) as diffusers'
//! `EulerDiscreteScheduler` (SD-Turbo) and `EulerAncestralDiscreteScheduler`
//! (SDXL-Turbo) compute them: the training noise schedule (scaled-linear
//! betas), inference timesteps by `timestep_spacing` ("leading", "trailing" —
//! turbo's 1–4 steps start at t = 999 — or "linspace"), sigmas interpolated
//! at those timesteps, then Euler steps in sigma space. The ancestral step
//! takes its fresh noise as an argument so tests can inject the reference's.

use super::{read_config, GeneratorError};
use serde::Deserialize;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default = "default_class")]
    pub class_name: String,
    #[serde(default = "default_train")]
    pub num_train_timesteps: i64,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_schedule")]
    pub beta_schedule: String,
    #[serde(default = "default_prediction")]
    pub prediction_type: String,
    #[serde(default = "default_spacing")]
    pub timestep_spacing: String,
    #[serde(default)]
    pub steps_offset: i64,
    #[serde(default)]
    pub interpolation_type: Option<String>,
    #[serde(default)]
    pub use_karras_sigmas: Option<bool>,
    #[serde(default)]
    pub rescale_betas_zero_snr: Option<bool>,
    #[serde(default)]
    pub final_sigmas_type: Option<String>,
    #[serde(default)]
    pub timestep_type: Option<String>,
}

fn default_class() -> String {
    "EulerDiscreteScheduler".into()
}
fn default_train() -> i64 {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_schedule() -> String {
    "linear".into()
}
fn default_prediction() -> String {
    "epsilon".into()
}
fn default_spacing() -> String {
    "linspace".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
}

/// Euler (deterministic) or Euler-ancestral (adds fresh noise each step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    Euler,
    EulerAncestral,
}

/// A scheduler with its inference timesteps set.
#[derive(Debug)]
pub struct EulerScheduler {
    pub sampler: Sampler,
    pub prediction: Prediction,
    pub spacing: Spacing,
    /// Model timesteps, one per step (float, as the UNet receives them).
    pub timesteps: Vec<f32>,
    /// Noise levels, one per step plus the final 0.
    pub sigmas: Vec<f32>,
    alphas_cumprod: Tensor,
    steps_offset: i64,
}

impl EulerScheduler {
    /// Reads a diffusers `scheduler_config.json` (other scheduler classes are
    /// replaced by Euler of the same schedule, which the caller can choose to report).
    pub fn load(path: &Path) -> Result<Self, GeneratorError> {
        let (cfg, p): (SchedulerConfig, _) = read_config(path)?;
        Self::from_config(&cfg).map_err(|reason| GeneratorError::Config { path: p, reason })
    }

    pub fn from_config(c: &SchedulerConfig) -> Result<Self, String> {
        let sampler = match c.class_name.as_str() {
            "EulerAncestralDiscreteScheduler" => Sampler::EulerAncestral,
            _ => Sampler::Euler,
        };
        let spacing = match c.timestep_spacing.as_str() {
            "leading" => Spacing::Leading,
            "trailing" => Spacing::Trailing,
            "linspace" => Spacing::Linspace,
            s => return Err(format!("timestep_spacing {s:?} unsupported (leading, trailing, linspace)")),
        };
        let prediction = match c.prediction_type.as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::VPrediction,
            s => return Err(format!("prediction_type {s:?} unsupported (epsilon, v_prediction)")),
        };
        let unsupported = [
            (c.interpolation_type.as_deref().is_some_and(|t| t != "linear"), "interpolation_type"),
            (c.use_karras_sigmas == Some(true), "use_karras_sigmas"),
            (c.rescale_betas_zero_snr == Some(true), "rescale_betas_zero_snr"),
            (c.final_sigmas_type.as_deref().is_some_and(|t| t != "zero"), "final_sigmas_type"),
            (c.timestep_type.as_deref().is_some_and(|t| t != "discrete"), "timestep_type"),
        ];
        if let Some((_, key)) = unsupported.iter().find(|(bad, _)| *bad) {
            return Err(format!("{key}: only the diffusers default is supported"));
        }
        if c.num_train_timesteps < 2 || !(c.beta_start > 0.0 && c.beta_end >= c.beta_start && c.beta_end < 1.0) {
            return Err("need num_train_timesteps >= 2 and 0 < beta_start <= beta_end < 1".into());
        }
        let opts = (Kind::Float, Device::Cpu);
        let n = c.num_train_timesteps;
        // float32 torch ops exactly as diffusers: same libtorch, same rounding
        let betas = match c.beta_schedule.as_str() {
            "scaled_linear" => Tensor::linspace(c.beta_start.sqrt(), c.beta_end.sqrt(), n, opts).pow_tensor_scalar(2),
            "linear" => Tensor::linspace(c.beta_start, c.beta_end, n, opts),
            s => return Err(format!("beta_schedule {s:?} unsupported (scaled_linear, linear)")),
        };
        let alphas_cumprod = (betas.ones_like() - betas).cumprod(0, Kind::Float);
        Ok(Self { sampler, prediction, spacing, timesteps: Vec::new(), sigmas: Vec::new(), alphas_cumprod, steps_offset: c.steps_offset })
    }

    /// Sets `steps` inference timesteps and their sigmas (diffusers `set_timesteps`).
    pub fn set_timesteps(&mut self, steps: usize) -> Result<(), GeneratorError> {
        let n = self.alphas_cumprod.size()[0] as usize;
        if steps == 0 || steps > n {
            return Err(GeneratorError::Input(format!("steps must be 1..={n}, got {steps}")));
        }
        let timesteps: Vec<f64> = match self.spacing {
            Spacing::Linspace => {
                // np.linspace(0, n - 1, steps, dtype=float32)[::-1]
                let t = Tensor::from_slice(&linspace(0.0, (n - 1) as f64, steps)).to_kind(Kind::Float);
                Vec::<f32>::try_from(t).unwrap_or_default().into_iter().rev().map(f64::from).collect()
            }
            Spacing::Leading => {
                let ratio = n / steps;
                (0..steps).rev().map(|i| (i * ratio) as f64 as f32 as f64 + self.steps_offset as f64).collect()
            }
            Spacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                // np.arange(n, 0, -ratio).round() - 1; numpy rounds half to even
                let count = (n as f64 / ratio).ceil() as usize;
                (0..count).map(|i| (n as f64 - i as f64 * ratio).round_ties_even() as f32 as f64 - 1.0).collect()
            }
        };
        let ac = &self.alphas_cumprod;
        let sig = ((ac.ones_like() - ac) / ac).pow_tensor_scalar(0.5);
        let table: Vec<f32> = Vec::try_from(sig).map_err(GeneratorError::Torch)?;
        let mut sigmas: Vec<f32> = timesteps.iter().map(|&t| interp(t, &table) as f32).collect();
        sigmas.push(0.0);
        self.timesteps = timesteps.iter().map(|&t| t as f32).collect();
        self.sigmas = sigmas;
        Ok(())
    }

    /// Standard deviation of the initial latents (supplied latents are multiplied by it).
    pub fn init_noise_sigma(&self) -> f64 {
        let max = self.sigmas.iter().copied().fold(0f32, f32::max);
        match self.spacing {
            Spacing::Linspace | Spacing::Trailing => max as f64,
            Spacing::Leading => (max * max + 1.0).sqrt() as f64,
        }
    }

    /// The UNet input at step `i`: sample / sqrt(sigma² + 1).
    pub fn scale_model_input(&self, sample: &Tensor, i: usize) -> Tensor {
        let s = self.sigmas[i];
        sample / (s * s + 1.0).sqrt() as f64
    }

    /// One step from `sample` at step `i` to step `i + 1`, in float32.
    /// `noise` (same shape) is required by the ancestral sampler only.
    pub fn step(&self, model_output: &Tensor, i: usize, sample: &Tensor, noise: Option<&Tensor>) -> Result<Tensor, GeneratorError> {
        if i + 1 >= self.sigmas.len() {
            return Err(GeneratorError::Input(format!("step {i} of {} steps", self.sigmas.len() - 1)));
        }
        let kind = model_output.kind();
        let x = sample.to_kind(Kind::Float);
        let eps = model_output.to_kind(Kind::Float);
        // scalar arithmetic in f32, as diffusers does it on 0-dim float32 tensors
        let (sigma, next) = (self.sigmas[i], self.sigmas[i + 1]);
        let denoised = match self.prediction {
            Prediction::Epsilon => &x - &eps * sigma as f64,
            Prediction::VPrediction => {
                let s2 = sigma * sigma + 1.0;
                &eps * (-sigma / s2.sqrt()) as f64 + &x / s2 as f64
            }
        };
        let derivative = (&x - denoised) / sigma as f64;
        let prev = match self.sampler {
            Sampler::Euler => &x + derivative * (next - sigma) as f64,
            Sampler::EulerAncestral => {
                let noise = noise.ok_or_else(|| GeneratorError::Input("the ancestral sampler needs noise".into()))?;
                if noise.size() != x.size() {
                    return Err(GeneratorError::Input(format!("noise {:?} for a sample {:?}", noise.size(), x.size())));
                }
                let (f, t) = (sigma, next);
                let up = ((t * t * (f * f - t * t)) / (f * f)).sqrt();
                let down = (t * t - up * up).sqrt();
                &x + derivative * (down - f) as f64 + noise.to_device(x.device()).to_kind(Kind::Float) * up as f64
            }
        };
        Ok(prev.to_kind(kind))
    }
}

/// numpy.linspace in f64.
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { b } else { a + i as f64 * step }).collect()
}

/// numpy.interp(t, arange(len), table) for t inside the table.
fn interp(t: f64, table: &[f32]) -> f64 {
    let last = table.len() - 1;
    let t = t.clamp(0.0, last as f64);
    let i = (t.floor() as usize).min(last.saturating_sub(1));
    let (y0, y1) = (table[i] as f64, table[(i + 1).min(last)] as f64);
    y0 + (t - i as f64) * (y1 - y0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(spacing: &str) -> EulerScheduler {
        let c: SchedulerConfig = serde_json::from_value(serde_json::json!({
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
            "timestep_spacing": spacing, "steps_offset": 1
        }))
        .unwrap();
        EulerScheduler::from_config(&c).unwrap()
    }

    #[test]
    fn turbo_trailing_timesteps() {
        let mut s = sched("trailing");
        for (n, want) in [(1, vec![999.0]), (2, vec![999.0, 499.0]), (4, vec![999.0, 749.0, 499.0, 249.0])] {
            s.set_timesteps(n).unwrap();
            assert_eq!(s.timesteps, want);
            assert_eq!(s.sigmas.len(), n + 1);
            assert_eq!(s.sigmas[n], 0.0);
        }
        let mut l = sched("leading");
        l.set_timesteps(4).unwrap();
        assert_eq!(l.timesteps, vec![751.0, 501.0, 251.0, 1.0]);
        assert!(l.set_timesteps(0).is_err());
    }
}
