//! An OpenPCDet model config (the YAML of `tools/cfgs/...`) translated into
//! our [`DetectorConfig`], or a clear error naming the setting we cannot
//! represent. Only the PointPillars pipeline is accepted: `PillarVFE` (one
//! PFN layer, absolute xyz, no distance, batch-norm) → `PointPillarScatter`
//! → `BaseBEVBackbone` (integer upsample strides) → `AnchorHeadSingle`
//! (one size and one bottom height per class, the same rotations and grid
//! alignment for every class, the KITTI direction bins, `ResidualCoder`),
//! with `nms_gpu` post-processing.
//!
//! Each class's `matched_threshold` / `unmatched_threshold` become the
//! training's anchor matching thresholds (for fine-tuning).
//!
//! `_BASE_CONFIG_` files are not followed: the settings read here must be
//! in the given file (OpenPCDet's `pointpillar.yaml` has them all). The
//! points must carry x, y, z, intensity (KITTI's four features), which is
//! what our pillars hold.

use crate::detect::anchors::AnchorClass;
use crate::detect::box_coder::DirectionBins;
use crate::detect::detector::DetectorConfig;
use crate::detect::model::backbone::BackboneConfig;
use crate::detect::model::neck::NeckConfig;
use crate::detect::pillars::PillarConfig;
use crate::detect::targets::MatchThresholds;
use serde_yaml::Value;

/// Largest config file read.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("OpenPCDet config: {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), problem: problem.into() }
}

/// OpenPCDet's KITTI PointPillars (`tools/cfgs/kitti_models/pointpillar.yaml`),
/// the setting used when no config is given: 0.16 m pillars over
/// [0, -39.68, -3, 69.12, 39.68, 1], 32 points per pillar, 40,000 pillars
/// at test time, 64/128/256 channels, anchors on the corner-aligned grid at
/// yaws 0 and 1.57, score threshold 0.1, one NMS over all classes at IoU
/// 0.01 (4096 candidates before, 500 boxes after).
pub fn kitti_pointpillars() -> DetectorConfig {
    let full = DetectorConfig::full();
    DetectorConfig {
        pillars: PillarConfig { max_pillars: 40_000, ..full.pillars.clone() },
        classes: AnchorClass::kitti(),
        score_threshold: 0.1,
        nms_iou: 0.01,
        max_detections: 500,
        anchor_rotations: vec![0.0, 1.57],
        anchor_align_center: false,
        nms_class_agnostic: true,
        nms_pre_max_size: 4096,
        match_thresholds: MatchThresholds::kitti().to_vec(),
        ..full
    }
}

struct Node<'a> {
    path: String,
    value: &'a Value,
}

impl<'a> Node<'a> {
    fn get(&self, key: &str) -> Result<Node<'a>, ConfigError> {
        let path = if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) };
        let value = self.value.get(key).ok_or_else(|| err(&path, "missing (settings in _BASE_CONFIG_ files are not read)"))?;
        Ok(Node { path, value })
    }

    fn opt(&self, key: &str) -> Option<Node<'a>> {
        self.get(key).ok()
    }

    fn f64(&self) -> Result<f64, ConfigError> {
        self.value.as_f64().filter(|v| v.is_finite()).ok_or_else(|| err(&self.path, format!("{:?} is not a finite number", self.value)))
    }

    fn usize(&self) -> Result<usize, ConfigError> {
        self.value.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| err(&self.path, format!("{:?} is not a whole number >= 0", self.value)))
    }

    fn bool(&self) -> Result<bool, ConfigError> {
        self.value.as_bool().ok_or_else(|| err(&self.path, format!("{:?} is not true/false", self.value)))
    }

    fn str(&self) -> Result<&'a str, ConfigError> {
        self.value.as_str().ok_or_else(|| err(&self.path, format!("{:?} is not a string", self.value)))
    }

    fn list(&self) -> Result<Vec<Node<'a>>, ConfigError> {
        let seq = self.value.as_sequence().ok_or_else(|| err(&self.path, format!("{:?} is not a list", self.value)))?;
        Ok(seq.iter().enumerate().map(|(i, value)| Node { path: format!("{}[{i}]", self.path), value }).collect())
    }

    fn f64s(&self) -> Result<Vec<f64>, ConfigError> {
        self.list()?.iter().map(Node::f64).collect()
    }

    fn usizes(&self) -> Result<Vec<usize>, ConfigError> {
        self.list()?.iter().map(Node::usize).collect()
    }

    /// `name` must be `expected`.
    fn expect_str(&self, expected: &str) -> Result<(), ConfigError> {
        let v = self.str()?;
        if v != expected {
            return Err(err(&self.path, format!("{v:?}: only {expected:?} is supported")));
        }
        Ok(())
    }

    fn expect_bool(&self, expected: bool) -> Result<(), ConfigError> {
        if self.bool()? != expected {
            return Err(err(&self.path, format!("{}: only {expected} is supported", !expected)));
        }
        Ok(())
    }
}

fn channels(n: usize, path: &str) -> Result<i64, ConfigError> {
    i64::try_from(n).map_err(|_| err(path, format!("{n} is too large")))
}

/// Translates an OpenPCDet model config (YAML text).
pub fn from_yaml(text: &str) -> Result<DetectorConfig, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(err("(file)", format!("{} bytes, more than the {MAX_CONFIG_BYTES} accepted", text.len())));
    }
    let doc: Value = serde_yaml::from_str(text).map_err(|e| err("(file)", format!("not YAML: {e}")))?;
    let root = Node { path: String::new(), value: &doc };
    let model = root.get("MODEL")?;
    model.get("NAME")?.expect_str("PointPillar")?;

    // points and pillars
    let data = root.get("DATA_CONFIG")?;
    let range: [f64; 6] = data.get("POINT_CLOUD_RANGE")?.f64s()?.try_into().map_err(|v: Vec<f64>| err("DATA_CONFIG.POINT_CLOUD_RANGE", format!("{} values, expected 6", v.len())))?;
    let processors = data.get("DATA_PROCESSOR")?.list()?;
    let voxels = processors
        .iter()
        .find(|p| p.opt("NAME").and_then(|n| n.str().ok()) == Some("transform_points_to_voxels"))
        .ok_or_else(|| err("DATA_CONFIG.DATA_PROCESSOR", "no transform_points_to_voxels step"))?;
    let voxel = voxels.get("VOXEL_SIZE")?;
    let [vx, vy, vz]: [f64; 3] = voxel.f64s()?.try_into().map_err(|v: Vec<f64>| err(&voxel.path, format!("{} values, expected 3", v.len())))?;
    if (vz - (range[5] - range[2])).abs() > 1e-6 {
        return Err(err(&voxel.path, format!("z size {vz} is not the whole z range {}: pillars need one voxel in z", range[5] - range[2])));
    }
    let max_voxels = voxels.get("MAX_NUMBER_OF_VOXELS")?;
    let max_pillars = match max_voxels.opt("test") {
        Some(test) => test.usize()?,
        None => max_voxels.usize()?,
    };
    let pillars = PillarConfig { range, pillar_size: [vx, vy], max_points_per_pillar: voxels.get("MAX_POINTS_PER_VOXEL")?.usize()?, max_pillars };

    // pillar feature net and scatter
    let vfe = model.get("VFE")?;
    vfe.get("NAME")?.expect_str("PillarVFE")?;
    vfe.get("WITH_DISTANCE")?.expect_bool(false)?;
    vfe.get("USE_ABSLOTE_XYZ")?.expect_bool(true)?;
    vfe.get("USE_NORM")?.expect_bool(true)?;
    let filters = vfe.get("NUM_FILTERS")?;
    let encoder_channels = match filters.usizes()?.as_slice() {
        [c] => channels(*c, &filters.path)?,
        other => return Err(err(&filters.path, format!("{other:?}: only one PFN layer is supported"))),
    };
    let scatter = model.get("MAP_TO_BEV")?;
    scatter.get("NAME")?.expect_str("PointPillarScatter")?;
    let bev = scatter.get("NUM_BEV_FEATURES")?;
    if channels(bev.usize()?, &bev.path)? != encoder_channels {
        return Err(err(&bev.path, format!("{:?}, expected the VFE's {encoder_channels} channels", bev.value)));
    }

    // backbone and neck
    let b = model.get("BACKBONE_2D")?;
    b.get("NAME")?.expect_str("BaseBEVBackbone")?;
    let num_filters: Vec<i64> = b.get("NUM_FILTERS")?.usizes()?.into_iter().map(|c| channels(c, "MODEL.BACKBONE_2D.NUM_FILTERS")).collect::<Result<_, _>>()?;
    let strides: Vec<i64> = b.get("LAYER_STRIDES")?.usizes()?.into_iter().map(|s| channels(s, "MODEL.BACKBONE_2D.LAYER_STRIDES")).collect::<Result<_, _>>()?;
    let up = b.get("UPSAMPLE_STRIDES")?;
    let upsample_strides = up
        .list()?
        .iter()
        .map(|s| match s.value.as_u64() {
            Some(v) if v >= 1 => channels(v as usize, &s.path),
            _ => Err(err(&s.path, format!("{:?}: only whole upsample strides >= 1 are supported (no strided-conv downsampling)", s.value))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let upsample_filters: Vec<i64> = b.get("NUM_UPSAMPLE_FILTERS")?.usizes()?.into_iter().map(|c| channels(c, "MODEL.BACKBONE_2D.NUM_UPSAMPLE_FILTERS")).collect::<Result<_, _>>()?;
    let backbone = BackboneConfig { in_channels: encoder_channels, layer_nums: b.get("LAYER_NUMS")?.usizes()?, layer_strides: strides.clone(), num_filters: num_filters.clone() };
    let neck = NeckConfig { in_channels: num_filters, upsample_strides, upsample_filters };

    // head and anchors
    let head = model.get("DENSE_HEAD")?;
    head.get("NAME")?.expect_str("AnchorHeadSingle")?;
    head.get("CLASS_AGNOSTIC")?.expect_bool(false)?;
    head.get("USE_DIRECTION_CLASSIFIER")?.expect_bool(true)?;
    let bins = DirectionBins::new(head.get("NUM_DIR_BINS")?.usize()?, head.get("DIR_OFFSET")?.f64()?, head.get("DIR_LIMIT_OFFSET")?.f64()?)
        .map_err(|e| err("MODEL.DENSE_HEAD.NUM_DIR_BINS", e.to_string()))?;
    if bins != DirectionBins::kitti() {
        return Err(err("MODEL.DENSE_HEAD.DIR_OFFSET", format!("{bins:?}: only the KITTI direction bins (2 bins, offset 0.78539, limit offset 0) are supported")));
    }
    let assigner = head.get("TARGET_ASSIGNER_CONFIG")?;
    assigner.get("BOX_CODER")?.expect_str("ResidualCoder")?;
    if let Some(coder_cfg) = assigner.opt("BOX_CODER_CONFIG") {
        if let Some(sincos) = coder_cfg.opt("encode_angle_by_sincos") {
            sincos.expect_bool(false)?;
        }
    }
    let names: Vec<String> = root.get("CLASS_NAMES")?.list()?.iter().map(|n| n.str().map(str::to_string)).collect::<Result<_, _>>()?;
    let anchor_cfgs = head.get("ANCHOR_GENERATOR_CONFIG")?.list()?;
    if anchor_cfgs.len() != names.len() {
        return Err(err("MODEL.DENSE_HEAD.ANCHOR_GENERATOR_CONFIG", format!("{} entries for {} CLASS_NAMES", anchor_cfgs.len(), names.len())));
    }
    let mut classes = Vec::new();
    let mut match_thresholds = Vec::new();
    let (mut rotations, mut align_center): (Option<Vec<f64>>, Option<bool>) = (None, None);
    for (a, name) in anchor_cfgs.iter().zip(&names) {
        let class_name = a.get("class_name")?;
        if class_name.str()? != name {
            return Err(err(&class_name.path, format!("{:?}, CLASS_NAMES has {name:?} here", class_name.value)));
        }
        let sizes = a.get("anchor_sizes")?;
        let size: [f64; 3] = match sizes.list()?.as_slice() {
            [one] => one.f64s()?.try_into().map_err(|v: Vec<f64>| err(&one.path, format!("{} values, expected [l, w, h]", v.len())))?,
            other => return Err(err(&sizes.path, format!("{} sizes: only one anchor size per class is supported", other.len()))),
        };
        let bottoms = a.get("anchor_bottom_heights")?;
        let bottom_height = match bottoms.f64s()?.as_slice() {
            [z] => *z,
            other => return Err(err(&bottoms.path, format!("{other:?}: only one bottom height per class is supported"))),
        };
        let rot = a.get("anchor_rotations")?;
        let r = rot.f64s()?;
        if rotations.get_or_insert_with(|| r.clone()) != &r {
            return Err(err(&rot.path, format!("{r:?} differs from the first class's: every class must use the same rotations")));
        }
        let align = a.get("align_center")?;
        let al = align.bool()?;
        if *align_center.get_or_insert(al) != al {
            return Err(err(&align.path, "differs from the first class's: every class must use the same grid alignment"));
        }
        let stride = a.get("feature_map_stride")?;
        if stride.usize()? as i64 != strides.first().copied().unwrap_or(0) {
            return Err(err(&stride.path, format!("{:?}: our head map has the first backbone block's stride {:?}", stride.value, strides.first())));
        }
        classes.push(AnchorClass { name: name.clone(), size, bottom_height });
        match_thresholds.push(MatchThresholds { matched: a.get("matched_threshold")?.f64()?, unmatched: a.get("unmatched_threshold")?.f64()? });
    }

    // post-processing
    let post = model.get("POST_PROCESSING")?;
    if let Some(raw) = post.opt("OUTPUT_RAW_SCORE") {
        raw.expect_bool(false)?;
    }
    let nms = post.get("NMS_CONFIG")?;
    nms.get("NMS_TYPE")?.expect_str("nms_gpu")?;
    let config = DetectorConfig {
        pillars,
        encoder_channels,
        backbone,
        neck,
        classes,
        score_threshold: post.get("SCORE_THRESH")?.f64()? as f32,
        nms_iou: nms.get("NMS_THRESH")?.f64()?,
        max_detections: nms.get("NMS_POST_MAXSIZE")?.usize()?,
        anchor_rotations: rotations.unwrap_or_default(),
        anchor_align_center: align_center.unwrap_or(true),
        nms_class_agnostic: !nms.get("MULTI_CLASSES_NMS")?.bool()?,
        nms_pre_max_size: nms.get("NMS_PRE_MAXSIZE")?.usize()?,
        match_thresholds,
    };
    config.validate().map_err(|e| err("(translated config)", e.to_string()))?;
    Ok(config)
}
