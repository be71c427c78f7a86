//! The one-cycle schedule of OpenPCDet's `adam_onecycle`: the learning rate
//! rises from `lr_max / div_factor` to `lr_max` over the first `pct_start`
//! of the steps and anneals to `lr_max / div_factor / 1e4`, both along
//! cosines, while β1 moves the opposite way between 0.95 and 0.85 (high
//! momentum while the step size is small).

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OneCycle {
    pub lr_max: f64,
    pub div_factor: f64,
    pub pct_start: f64,
    pub beta1_high: f64,
    pub beta1_low: f64,
}

impl Default for OneCycle {
    fn default() -> Self {
        Self { lr_max: 3e-3, div_factor: 10.0, pct_start: 0.4, beta1_high: 0.95, beta1_low: 0.85 }
    }
}

fn cos_anneal(from: f64, to: f64, t: f64) -> f64 {
    to + (from - to) / 2.0 * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos())
}

impl OneCycle {
    /// (learning rate, β1) at `step` of `total` steps.
    pub fn at(&self, step: usize, total: usize) -> (f64, f64) {
        let total = total.max(1) as f64;
        let up = (self.pct_start * total).max(1.0);
        let s = step as f64;
        let lr0 = self.lr_max / self.div_factor;
        if s < up {
            let t = s / up;
            (cos_anneal(lr0, self.lr_max, t), cos_anneal(self.beta1_high, self.beta1_low, t))
        } else {
            let t = (s - up) / (total - up).max(1.0);
            (cos_anneal(self.lr_max, lr0 / 1e4, t), cos_anneal(self.beta1_low, self.beta1_high, t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_shape() {
        let s = OneCycle::default();
        let (lr0, b0) = s.at(0, 1000);
        assert!((lr0 - 3e-4).abs() < 1e-12 && (b0 - 0.95).abs() < 1e-12);
        let (lr_peak, b_peak) = s.at(400, 1000);
        assert!((lr_peak - 3e-3).abs() < 1e-12 && (b_peak - 0.85).abs() < 1e-12);
        let (lr_end, b_end) = s.at(1000, 1000);
        assert!((lr_end - 3e-8).abs() < 1e-15 && (b_end - 0.95).abs() < 1e-12);
        let lrs: Vec<f64> = (0..=1000).map(|i| s.at(i, 1000).0).collect();
        assert!(lrs[..=400].windows(2).all(|w| w[1] >= w[0]));
        assert!(lrs[400..].windows(2).all(|w| w[1] <= w[0]));
    }
}
