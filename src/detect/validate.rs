//! Structural checks of a [`DetectorConfig`] before any tensor is built. The
//! builders in `detect::model` zip and index the backbone and neck lists and
//! hand the numbers to libtorch, which panics on a bad shape; a config comes
//! from a checkpoint's metadata (hand-edited or foreign files), and the ROS
//! node builds the model on a worker thread, so a bad config must be an
//! error naming the field, never a panic.

use super::detector::{DetectorConfig, DetectorError};

/// Channel counts above this are typos; libtorch would panic allocating them.
pub const MAX_CHANNELS: i64 = 4096;
/// Extra layers per backbone block (OpenPCDet uses at most 5); a larger
/// number would build for ever.
pub const MAX_LAYERS_PER_BLOCK: usize = 64;

/// Points kept per pillar (OpenPCDet: 20 or 32).
pub const MAX_POINTS_PER_PILLAR: usize = 1024;
/// Pillars per cloud (OpenPCDet: 16,000 to 40,000).
pub const MAX_PILLARS: usize = 1 << 20;
/// BEV grid cells (the full model: 432 x 496 = 214,272).
pub const MAX_GRID_CELLS: usize = 1 << 22;
/// Anchor classes (one anchor set each).
pub const MAX_CLASSES: usize = 64;
/// Anchors on the head's map (the full model: 321,408).
pub const MAX_ANCHORS: usize = 1 << 23;
/// Anchor yaws per class and cell (OpenPCDet uses 2).
pub const MAX_ANCHOR_ROTATIONS: usize = 16;
/// Candidates kept before the greedy NMS step (OpenPCDet: 4096).
pub const MAX_NMS_PRE: usize = 1 << 20;
/// Detections kept per frame after NMS.
pub const MAX_DETECTIONS: usize = 10_000;
/// Estimated memory of one forward pass ([`DetectorConfig::forward_bytes_estimate`];
/// the full model: about 0.6 GB).
pub const MAX_FORWARD_BYTES: u64 = 8 << 30;

fn bad(field: impl Into<String>, problem: impl Into<String>) -> DetectorError {
    DetectorError::Config { field: field.into(), problem: problem.into() }
}

fn channels(field: &str, c: i64) -> Result<(), DetectorError> {
    if (1..=MAX_CHANNELS).contains(&c) {
        Ok(())
    } else {
        Err(bad(field, format!("{c} channels, expected 1..={MAX_CHANNELS}")))
    }
}

fn stride(field: &str, s: i64) -> Result<usize, DetectorError> {
    usize::try_from(s).ok().filter(|&s| s >= 1).ok_or_else(|| bad(field, format!("stride {s}, expected >= 1")))
}

fn at_most(field: &str, value: usize, max: usize) -> Result<(), DetectorError> {
    if value > max {
        return Err(bad(field, format!("{value}, expected <= {max}")));
    }
    Ok(())
}

impl DetectorConfig {
    /// Bytes (f32) of the tensors of one forward pass, from the config alone:
    /// the pillar features, the BEV canvas, every backbone layer's map (twice,
    /// for a layer's input and output alive together), the neck's maps and
    /// the head's outputs with the anchors. An upper estimate, in u128 so
    /// that no crafted number overflows it.
    pub fn forward_bytes_estimate(&self) -> u128 {
        let Ok((w, h)) = self.pillars.grid() else { return u128::MAX };
        let p = &self.pillars;
        let cells = w as u128 * h as u128;
        let mut floats = p.max_pillars as u128 * p.max_points_per_pillar as u128 * (10 + self.encoder_channels.max(0) as u128);
        floats += cells * self.encoder_channels.max(0) as u128;
        let mut size = (w as u128, h as u128);
        let b = &self.backbone;
        for i in 0..b.num_filters.len().min(b.layer_strides.len()).min(b.layer_nums.len()) {
            let s = b.layer_strides[i].max(1) as u128;
            size = (size.0.div_ceil(s), size.1.div_ceil(s));
            floats += 2 * (b.layer_nums[i] as u128 + 1) * size.0 * size.1 * b.num_filters[i].max(0) as u128;
        }
        let s0 = b.layer_strides.first().copied().unwrap_or(1).max(1) as u128;
        let head_cells = cells / (s0 * s0);
        floats += head_cells * self.neck.upsample_filters.iter().map(|&f| f.max(0) as u128).sum::<u128>() * 2;
        let anchors = head_cells * self.anchor_rotations.len() as u128 * self.classes.len() as u128;
        floats += anchors * (self.classes.len() as u128 + 7 + 2 + 2 * 7); // cls, boxes, dir; anchors and decoded boxes in f64
        floats.saturating_mul(4)
    }

    /// The sizes a crafted checkpoint could make ruinous: the per-cloud
    /// tensors and the anchors are allocated on the first cloud, so they
    /// are bounded (and the whole pass estimated) before anything is built.
    fn check_sizes(&self) -> Result<(), DetectorError> {
        let p = &self.pillars;
        at_most("pillars.max_points_per_pillar", p.max_points_per_pillar, MAX_POINTS_PER_PILLAR)?;
        at_most("pillars.max_pillars", p.max_pillars, MAX_PILLARS)?;
        let (w, h) = p.grid()?;
        if w.checked_mul(h).is_none_or(|c| c > MAX_GRID_CELLS) {
            return Err(bad("pillars.pillar_size", format!("a {w} x {h} grid, expected <= {MAX_GRID_CELLS} cells")));
        }
        at_most("classes", self.classes.len(), MAX_CLASSES)?;
        at_most("max_detections", self.max_detections, MAX_DETECTIONS)?;
        at_most("anchor_rotations", self.anchor_rotations.len(), MAX_ANCHOR_ROTATIONS)?;
        at_most("nms_pre_max_size", self.nms_pre_max_size, MAX_NMS_PRE)?;
        let s0 = self.backbone.layer_strides.first().copied().unwrap_or(1).max(1) as usize;
        let anchors = (w / s0) * (h / s0) * self.anchor_rotations.len() * self.classes.len();
        if anchors > MAX_ANCHORS {
            return Err(bad("classes", format!("{anchors} anchors on a {} x {} map, expected <= {MAX_ANCHORS}", w / s0, h / s0)));
        }
        let bytes = self.forward_bytes_estimate();
        if bytes > MAX_FORWARD_BYTES as u128 {
            let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
            return Err(bad("pillars", format!("one forward pass needs about {:.1} GiB, more than the {:.0} GiB accepted", gib(bytes), gib(MAX_FORWARD_BYTES as u128))));
        }
        Ok(())
    }

    /// Every invariant the model builders and the anchor head rely on.
    pub fn validate(&self) -> Result<(), DetectorError> {
        let (w, h) = self.pillars.grid()?;
        channels("encoder_channels", self.encoder_channels)?;
        let (b, n) = (&self.backbone, &self.neck);
        // the backbone reads the encoder's BEV map
        if b.in_channels != self.encoder_channels {
            return Err(bad("backbone.in_channels", format!("{}, expected encoder_channels = {}", b.in_channels, self.encoder_channels)));
        }
        let blocks = b.num_filters.len();
        if blocks == 0 {
            return Err(bad("backbone.num_filters", "empty: the neck needs at least one block"));
        }
        // the builders zip these lists: a shorter one would silently drop blocks
        for (field, len) in [
            ("backbone.layer_nums", b.layer_nums.len()),
            ("backbone.layer_strides", b.layer_strides.len()),
            ("neck.in_channels", n.in_channels.len()),
            ("neck.upsample_strides", n.upsample_strides.len()),
            ("neck.upsample_filters", n.upsample_filters.len()),
        ] {
            if len != blocks {
                return Err(bad(field, format!("{len} entries, expected one per backbone block ({blocks}, as backbone.num_filters)")));
            }
        }
        for i in 0..blocks {
            channels(&format!("backbone.num_filters[{i}]"), b.num_filters[i])?;
            stride(&format!("backbone.layer_strides[{i}]"), b.layer_strides[i])?;
            if b.layer_nums[i] > MAX_LAYERS_PER_BLOCK {
                return Err(bad(format!("backbone.layer_nums[{i}]"), format!("{}, expected <= {MAX_LAYERS_PER_BLOCK}", b.layer_nums[i])));
            }
            if n.in_channels[i] != b.num_filters[i] {
                let problem = format!("{}, expected backbone.num_filters[{i}] = {}", n.in_channels[i], b.num_filters[i]);
                return Err(bad(format!("neck.in_channels[{i}]"), problem));
            }
            channels(&format!("neck.upsample_filters[{i}]"), n.upsample_filters[i])?;
            stride(&format!("neck.upsample_strides[{i}]"), n.upsample_strides[i])?;
        }
        // the anchors sit on the first block's map, so it must be a whole
        // number of cells, and the neck concatenates every upsampled block
        // output with it, so each must come back to exactly that size
        let s0 = b.layer_strides[0] as usize;
        if w % s0 != 0 || h % s0 != 0 {
            return Err(DetectorError::Grid);
        }
        let target = (w / s0, h / s0);
        let mut size = (w, h);
        for i in 0..blocks {
            let s = b.layer_strides[i] as usize;
            size = ((size.0 - 1) / s + 1, (size.1 - 1) / s + 1); // 3x3 conv, padding 1
            let u = n.upsample_strides[i] as usize;
            if (size.0.checked_mul(u), size.1.checked_mul(u)) != (Some(target.0), Some(target.1)) {
                let problem = format!("block {i}'s {}x{} map upsampled by {u} is not the first block's {}x{} map", size.0, size.1, target.0, target.1);
                return Err(bad(format!("neck.upsample_strides[{i}]"), problem));
            }
        }
        if self.classes.is_empty() {
            return Err(bad("classes", "empty: the head needs at least one class (one anchor set per class)"));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if !c.size.iter().all(|s| s.is_finite() && *s > 0.0) {
                return Err(bad(format!("classes[{i}].size"), format!("{:?} ({}), expected finite and > 0", c.size, c.name)));
            }
            if !c.bottom_height.is_finite() {
                return Err(bad(format!("classes[{i}].bottom_height"), format!("{} ({}), expected finite", c.bottom_height, c.name)));
            }
        }
        if self.anchor_rotations.is_empty() || self.anchor_rotations.iter().any(|r| !r.is_finite()) {
            return Err(bad("anchor_rotations", format!("{:?}, expected at least one finite yaw", self.anchor_rotations)));
        }
        if !self.match_thresholds.is_empty() && self.match_thresholds.len() != self.classes.len() {
            return Err(bad("match_thresholds", format!("{} entries for {} classes (empty: KITTI's)", self.match_thresholds.len(), self.classes.len())));
        }
        if let Some((i, t)) = self.match_thresholds.iter().enumerate().find(|(_, t)| !(0.0 <= t.unmatched && t.unmatched <= t.matched && t.matched <= 1.0)) {
            return Err(bad(format!("match_thresholds[{i}]"), format!("{t:?}, expected 0 <= unmatched <= matched <= 1")));
        }
        if self.nms_pre_max_size == 0 {
            return Err(bad("nms_pre_max_size", "0, expected >= 1"));
        }
        if self.score_threshold.is_nan() {
            return Err(bad("score_threshold", "NaN"));
        }
        if !(0.0..=1.0).contains(&self.nms_iou) {
            return Err(bad("nms_iou", format!("{}, expected 0..=1", self.nms_iou)));
        }
        self.check_sizes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::detector::Detector;
    use tch::Device;

    #[test]
    fn presets_validate() {
        DetectorConfig::compact().validate().unwrap();
        DetectorConfig::full().validate().unwrap();
    }

    /// docs/model_card.md: the compact model has 1.2 M parameters (the shipped
    /// file 4.9 MB), the full-size one 4.8 M (trainable variables; batch-norm
    /// running statistics are not parameters).
    #[test]
    fn preset_parameter_counts_are_the_model_cards() {
        let count = |cfg: DetectorConfig| -> usize {
            let d = Detector::new(cfg, Device::Cpu).unwrap();
            d.vs.trainable_variables().iter().map(|t| t.numel()).sum()
        };
        let (compact, full) = (count(DetectorConfig::compact()), count(DetectorConfig::full()));
        assert!((1_150_000..1_250_000).contains(&compact), "compact: {compact} parameters");
        assert!((4_750_000..4_850_000).contains(&full), "full: {full} parameters");
        let shipped = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/config/detector/compact_eloss.safetensors")).unwrap().len();
        assert!((4_850_000..4_950_000).contains(&shipped), "shipped file: {shipped} bytes");
    }

    /// One broken config per rule, with the field its error must name.
    fn broken() -> Vec<(&'static str, DetectorConfig)> {
        type Edit = fn(&mut DetectorConfig);
        let edits: [(&str, Edit); 26] = [
            ("encoder_channels", |c| c.encoder_channels = 0),
            ("encoder_channels", |c| c.encoder_channels = MAX_CHANNELS + 1),
            ("backbone.in_channels", |c| c.backbone.in_channels = 64),
            ("backbone.num_filters", |c| c.backbone.num_filters.clear()),
            ("backbone.layer_nums", |c| c.backbone.layer_nums.truncate(2)),
            ("backbone.layer_strides", |c| c.backbone.layer_strides.push(2)),
            ("neck.in_channels", |c| c.neck.in_channels.push(128)),
            ("neck.upsample_strides", |c| c.neck.upsample_strides.truncate(2)),
            ("neck.upsample_filters", |c| c.neck.upsample_filters.push(64)),
            ("backbone.num_filters[1]", |c| c.backbone.num_filters[1] = -64),
            ("backbone.layer_strides[2]", |c| c.backbone.layer_strides[2] = 0),
            ("backbone.layer_nums[0]", |c| c.backbone.layer_nums[0] = MAX_LAYERS_PER_BLOCK + 1),
            ("neck.in_channels[2]", |c| c.neck.in_channels[2] = 256),
            ("neck.upsample_filters[0]", |c| c.neck.upsample_filters[0] = 0),
            ("neck.upsample_strides[1]", |c| c.neck.upsample_strides[1] = -2),
            ("neck.upsample_strides[2]", |c| c.neck.upsample_strides[2] = 2),
            ("classes", |c| c.classes.clear()),
            ("classes[1].size", |c| c.classes[1].size[0] = 0.0),
            ("classes[2].bottom_height", |c| c.classes[2].bottom_height = f64::INFINITY),
            ("score_threshold", |c| c.score_threshold = f32::NAN),
            ("nms_iou", |c| c.nms_iou = 1.5),
            ("anchor_rotations", |c| c.anchor_rotations.clear()),
            ("anchor_rotations", |c| c.anchor_rotations[1] = f64::NAN),
            ("nms_pre_max_size", |c| c.nms_pre_max_size = 0),
            ("match_thresholds", |c| c.match_thresholds = vec![crate::detect::targets::MatchThresholds { matched: 0.6, unmatched: 0.45 }]),
            ("match_thresholds[0]", |c| c.match_thresholds = vec![crate::detect::targets::MatchThresholds { matched: 0.4, unmatched: 0.45 }; 3]),
        ];
        edits
            .into_iter()
            .map(|(field, edit)| {
                let mut c = DetectorConfig::compact();
                edit(&mut c);
                (field, c)
            })
            .collect()
    }

    #[test]
    fn each_broken_rule_is_an_error_naming_its_field() {
        for (field, cfg) in broken() {
            let err = cfg.validate().expect_err(field);
            assert!(matches!(&err, DetectorError::Config { field: f, .. } if f == field), "{field}: {err:?}");
            assert!(err.to_string().contains(field), "{field}: {err}");
            // the model is never built from it: an error, not a libtorch panic
            let err = Detector::new(cfg, Device::Cpu).err().expect(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    /// Issue 13: a checkpoint config with huge sizes passed validation and
    /// aborted the process on the first cloud. Each is now an error naming
    /// the field, before any tensor is built.
    #[test]
    fn ruinous_sizes_are_refused_before_building() {
        type Edit = fn(&mut DetectorConfig);
        let edits: [(&str, Edit); 10] = [
            ("pillars.max_points_per_pillar", |c| c.pillars.max_points_per_pillar = 1 << 40),
            ("pillars.max_pillars", |c| c.pillars.max_pillars = 1 << 40),
            ("pillars.pillar_size", |c| c.pillars.pillar_size = [0.01, 0.01]),
            ("classes", |c| c.classes = vec![c.classes[0].clone(); MAX_CLASSES + 1]),
            ("classes", |c| {
                c.pillars.pillar_size = [0.04, 0.04]; // 1728 x 1984 cells: within the grid cap
                c.classes = vec![c.classes[0].clone(); 20];
            }),
            ("max_detections", |c| c.max_detections = usize::MAX),
            ("anchor_rotations", |c| c.anchor_rotations = vec![0.0; MAX_ANCHOR_ROTATIONS + 1]),
            ("nms_pre_max_size", |c| c.nms_pre_max_size = usize::MAX),
            // each size within its own cap, the whole pass beyond the budget
            ("pillars", |c| (c.pillars.max_pillars, c.pillars.max_points_per_pillar) = (MAX_PILLARS, MAX_POINTS_PER_PILLAR)),
            ("pillars", |c| (c.encoder_channels, c.backbone.in_channels, c.pillars.pillar_size) = (MAX_CHANNELS, MAX_CHANNELS, [0.08, 0.08])),
        ];
        for (field, edit) in edits {
            let mut cfg = DetectorConfig::compact();
            edit(&mut cfg);
            let err = cfg.validate().expect_err(field);
            assert!(matches!(&err, DetectorError::Config { field: f, .. } if f == field), "{field}: {err:?}");
            let err = Detector::new(cfg, Device::Cpu).err().expect(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let full = DetectorConfig::full().forward_bytes_estimate();
        assert!(full > 100 << 20 && full < 1 << 30, "{full}");
    }

    #[test]
    fn grid_problems_keep_their_errors() {
        let mut c = DetectorConfig::compact();
        c.pillars.max_pillars = 0;
        assert!(matches!(c.validate(), Err(DetectorError::Pillars(_))));
        // 216 x 248 cells: a first stride of 5 leaves partial cells
        let mut c = DetectorConfig::compact();
        c.backbone.layer_strides[0] = 5;
        assert!(matches!(c.validate(), Err(DetectorError::Grid)));
    }
}
