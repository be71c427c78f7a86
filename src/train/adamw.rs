//! AdamW (decoupled weight decay) over a `VarStore`, written out so its
//! state can be saved in checkpoints (tch's optimizers keep theirs inside
//! libtorch, out of reach) and so the one-cycle schedule can move β1 as well
//! as the learning rate.

use std::collections::BTreeMap;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// OpenPCDet's `adam_onecycle` values (β2 0.99, weight decay 0.01).
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.01 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdamWError {
    #[error("optimizer state has no tensor {0}")]
    Missing(String),
    #[error("optimizer state tensor {key} has shape {file:?}, the parameter has {param:?}")]
    Shape { key: String, file: Vec<i64>, param: Vec<i64> },
}

struct Slot {
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

pub struct AdamW {
    pub config: AdamWConfig,
    slots: BTreeMap<String, Slot>,
    /// Number of updates made (bias correction).
    pub step: i64,
}

impl AdamW {
    /// Every trainable variable of `vs`, by name.
    pub fn new(vs: &VarStore, config: AdamWConfig) -> Self {
        let slots = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, param)| {
                let exp_avg = param.zeros_like();
                let exp_avg_sq = param.zeros_like();
                (name, Slot { param, exp_avg, exp_avg_sq })
            })
            .collect();
        Self { config, slots, step: 0 }
    }

    pub fn zero_grad(&mut self) {
        for s in self.slots.values_mut() {
            s.param.zero_grad();
        }
    }

    /// Multiplies every gradient by `factor` (undoes a loss scale).
    pub fn scale_grads(&mut self, factor: f64) {
        tch::no_grad(|| {
            for s in self.slots.values() {
                let mut g = s.param.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(factor);
                }
            }
        });
    }

    /// Scales all gradients so their joint L2 norm is at most `max_norm`;
    /// returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.slots.values().map(|s| s.param.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let total = tch::no_grad(|| Tensor::stack(&grads.iter().map(|g| g.norm()).collect::<Vec<_>>(), 0).norm().double_value(&[]));
        if total.is_finite() && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        total
    }

    /// One update with learning rate `lr` and first-moment decay `beta1`
    /// (which the one-cycle schedule varies). Parameters without a gradient
    /// are left alone.
    pub fn step(&mut self, lr: f64, beta1: f64) {
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2 = 1.0 - c.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for s in self.slots.values_mut() {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let _ = s.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                let _ = s.exp_avg.g_mul_scalar_(beta1).g_add_(&(&g * (1.0 - beta1)));
                let _ = s.exp_avg_sq.g_mul_scalar_(c.beta2).g_add_(&(&g * &g * (1.0 - c.beta2)));
                let denom = (&s.exp_avg_sq / bias2).sqrt() + c.eps;
                let _ = s.param.g_sub_(&(&s.exp_avg / &denom * (lr / bias1)));
            }
        });
    }

    /// The state as named tensors (`exp_avg/<var>`, `exp_avg_sq/<var>`, `step`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from_slice(&[self.step as f32]))]; // cpu: the checkpoint writer reads CPU tensors
        for (name, s) in &self.slots {
            out.push((format!("exp_avg/{name}"), s.exp_avg.shallow_clone()));
            out.push((format!("exp_avg_sq/{name}"), s.exp_avg_sq.shallow_clone()));
        }
        out
    }

    /// Restores [`state`](Self::state) output; every slot must be present.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AdamWError> {
        let map: BTreeMap<&str, &Tensor> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        let get = |k: String| map.get(k.as_str()).copied().ok_or(AdamWError::Missing(k));
        let step = get("step".into())?;
        for (name, s) in self.slots.iter_mut() {
            for (prefix, dst) in [("exp_avg", &mut s.exp_avg), ("exp_avg_sq", &mut s.exp_avg_sq)] {
                let key = format!("{prefix}/{name}");
                let src = get(key.clone())?;
                if src.size() != dst.size() {
                    return Err(AdamWError::Shape { key, file: src.size(), param: dst.size() });
                }
                tch::no_grad(|| dst.copy_(&src.to_kind(Kind::Float).to_device(dst.device())));
            }
        }
        self.step = step.double_value(&[0]).round() as i64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::Device;

    /// Our AdamW and libtorch's (same hyper-parameters) take the same path.
    #[test]
    fn matches_libtorch_adamw() {
        tch::manual_seed(0);
        let make = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let lin = nn::linear(vs.root() / "l", 4, 3, Default::default());
            (vs, lin)
        };
        let (vs_a, lin_a) = make();
        let (mut vs_b, lin_b) = make();
        vs_b.copy(&vs_a).unwrap();
        let x = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([16, 3], (Kind::Float, Device::Cpu));
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.05 };
        let mut ours = AdamW::new(&vs_a, cfg);
        let mut theirs = nn::AdamW { beta1: 0.9, beta2: 0.99, wd: 0.05, eps: 1e-8, amsgrad: false }.build(&vs_b, 1e-2).unwrap();
        for _ in 0..25 {
            ours.zero_grad();
            (lin_a.forward(&x) - &y).square().mean(Kind::Float).backward();
            ours.step(1e-2, 0.9);
            theirs.zero_grad();
            (lin_b.forward(&x) - &y).square().mean(Kind::Float).backward();
            theirs.step();
        }
        let (a, b) = (vs_a.variables(), vs_b.variables());
        for (k, t) in &a {
            let diff = (t - &b[k]).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{k}: {diff}");
        }
    }

    #[test]
    fn state_round_trip_resumes_the_same_path() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "l", 3, 2, Default::default());
        let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        let run = |opt: &mut AdamW, n: usize| {
            for _ in 0..n {
                opt.zero_grad();
                lin.forward(&x).square().sum(Kind::Float).backward();
                opt.step(1e-2, 0.9);
            }
        };
        run(&mut opt, 5);
        let saved_state: Vec<(String, Tensor)> = opt.state().into_iter().map(|(k, t)| (k, t.copy())).collect();
        let mut saved_vs = nn::VarStore::new(Device::Cpu);
        let _ = nn::linear(saved_vs.root() / "l", 3, 2, Default::default());
        saved_vs.copy(&vs).unwrap();
        run(&mut opt, 5);
        let expected: std::collections::HashMap<String, Tensor> = vs.variables().into_iter().map(|(k, t)| (k, t.copy())).collect();
        // resume from the saved point into the original store
        let mut vs2 = vs;
        vs2.copy(&saved_vs).unwrap();
        let mut resumed = AdamW::new(&vs2, AdamWConfig::default());
        resumed.load_state(&saved_state).unwrap();
        assert_eq!(resumed.step, 5);
        run(&mut resumed, 5);
        for (k, t) in vs2.variables() {
            assert!(t.allclose(&expected[&k], 1e-6, 1e-7, false), "{k}");
        }
        assert!(matches!(resumed.load_state(&saved_state[..1]), Err(AdamWError::Missing(_))));
    }

    #[test]
    fn clipping_bounds_the_gradient_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        (&w * 100.0).sum(Kind::Float).backward();
        let before = opt.clip_grad_norm(1.0);
        assert!((before - 100.0 * 3f64.sqrt()).abs() < 1e-3);
        assert!((w.grad().norm().double_value(&[]) - 1.0).abs() < 1e-4);
    }
}
