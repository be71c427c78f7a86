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

impl DetectorConfig {
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
        if self.score_threshold.is_nan() {
            return Err(bad("score_threshold", "NaN"));
        }
        if !(0.0..=1.0).contains(&self.nms_iou) {
            return Err(bad("nms_iou", format!("{}, expected 0..=1", self.nms_iou)));
        }
        Ok(())
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

    /// One broken config per rule, with the field its error must name.
    fn broken() -> Vec<(&'static str, DetectorConfig)> {
        type Edit = fn(&mut DetectorConfig);
        let edits: [(&str, Edit); 21] = [
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
