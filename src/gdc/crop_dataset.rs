//! Square-padded crops of labelled objects from a KITTI-format dataset,
//! written as `OUT/<Class>/<frame>_<i>.png` (the folder layout of
//! [`bank_builder`](super::bank_builder) and `eloss gdc eval`). Crops use the
//! label's 2D box and [`crop_pixels`]; `DontCare` regions are skipped. Frames
//! are visited in a fixed pseudo-random order (hash of the id), so the first
//! N crops of a class come from frames spread over the whole set, and the
//! crops of `--per-class 5` are a subset of those of `--per-class 20`.

use super::crops::{crop_pixels, CropConfig};
use crate::dataset::kitti::{KittiDataset, KittiError, ObjectClass, ObjectLabel};
use crate::image::RgbImage;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CropDatasetError {
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Which labelled objects become crops.
#[derive(Debug, Clone, PartialEq)]
pub struct CropFilter {
    /// At most this many crops per class (`None`: all).
    pub per_class: Option<usize>,
    /// Minimum 2D box height [px].
    pub min_height_px: f64,
    /// Maximum KITTI truncation (0..1).
    pub max_truncation: f64,
    /// Maximum KITTI occlusion level (0..=3).
    pub max_occlusion: u8,
}

impl Default for CropFilter {
    fn default() -> Self {
        Self { per_class: None, min_height_px: 25.0, max_truncation: 0.5, max_occlusion: 1 }
    }
}

impl CropFilter {
    pub fn accepts(&self, l: &ObjectLabel) -> bool {
        l.class != ObjectClass::DontCare
            && l.bbox[3] - l.bbox[1] >= self.min_height_px
            && l.truncated <= self.max_truncation
            && l.occluded <= self.max_occlusion
    }
}

/// splitmix64 of the id's bytes: a fixed, well-spread frame order.
fn order_key(id: &str) -> u64 {
    let mut z = id.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Frame ids in visiting order.
pub fn visit_order(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort_by_key(|id| (order_key(id), id.clone()));
    v
}

/// Crops of one frame's accepted labels: `(class, label index, crop)`;
/// `counts` caps each class at `filter.per_class` and is updated.
pub fn frame_crops(
    image: &RgbImage,
    labels: &[ObjectLabel],
    filter: &CropFilter,
    cfg: &CropConfig,
    counts: &mut BTreeMap<String, usize>,
) -> Vec<(String, usize, RgbImage)> {
    let mut out = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        if !filter.accepts(l) {
            continue;
        }
        let class = l.class.as_str().to_string();
        let n = counts.entry(class.clone()).or_default();
        if filter.per_class.is_some_and(|cap| *n >= cap) {
            continue;
        }
        if let Ok(c) = crop_pixels(image, l.bbox, cfg) {
            *n += 1;
            out.push((class, i, c.image));
        }
    }
    out
}

fn read_png(path: &Path) -> Result<RgbImage, CropDatasetError> {
    let img = ::image::open(path).map_err(|e| CropDatasetError::Image { path: path.to_owned(), reason: e.to_string() })?.to_rgb8();
    Ok(RgbImage { width: img.width(), height: img.height(), data: img.into_raw() })
}

fn write_png(path: &Path, img: &RgbImage) -> Result<(), CropDatasetError> {
    let err = |reason: String| CropDatasetError::Image { path: path.to_owned(), reason };
    let buf = ::image::RgbImage::from_raw(img.width, img.height, img.data.clone()).ok_or_else(|| err("bad crop buffer".into()))?;
    buf.save(path).map_err(|e| err(e.to_string()))
}

/// Writes the crops of `ds` under `out`; returns the count per class.
pub fn write_crops(ds: &KittiDataset, out: &Path, filter: &CropFilter, cfg: &CropConfig) -> Result<BTreeMap<String, usize>, CropDatasetError> {
    let mut counts = BTreeMap::new();
    for id in visit_order(ds.ids()) {
        let labels = ds.labels(&id)?;
        let wanted = labels.iter().any(|l| {
            filter.accepts(l) && filter.per_class.is_none_or(|cap| counts.get(l.class.as_str()).copied().unwrap_or(0) < cap)
        });
        if !wanted {
            continue;
        }
        let image = read_png(&ds.root().join(ds.split().dir_name()).join("image_2").join(format!("{id}.png")))?;
        for (class, i, crop) in frame_crops(&image, &labels, filter, cfg, &mut counts) {
            let dir = out.join(&class);
            std::fs::create_dir_all(&dir).map_err(|source| CropDatasetError::Io { path: dir.clone(), source })?;
            write_png(&dir.join(format!("{id}_{i}.png")), &crop)?;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(class: ObjectClass, bbox: [f64; 4], truncated: f64, occluded: u8) -> ObjectLabel {
        ObjectLabel { class, truncated, occluded, bbox, ..ObjectLabel::dont_care(bbox) }
    }

    #[test]
    fn filters_caps_and_skips_dont_care() {
        let img = RgbImage { width: 100, height: 80, data: vec![50; 100 * 80 * 3] };
        let labels = vec![
            label(ObjectClass::Car, [10.0, 10.0, 40.0, 50.0], 0.0, 0),
            label(ObjectClass::DontCare, [10.0, 10.0, 40.0, 50.0], 0.0, 0),
            label(ObjectClass::Car, [50.0, 10.0, 90.0, 50.0], 0.0, 0), // over the cap
            label(ObjectClass::Pedestrian, [0.0, 0.0, 10.0, 20.0], 0.0, 0), // too short
            label(ObjectClass::Cyclist, [0.0, 0.0, 30.0, 60.0], 0.8, 0), // truncated
            label(ObjectClass::Van, [0.0, 0.0, 30.0, 60.0], 0.0, 2), // occluded
            label(ObjectClass::Truck, [0.0, 0.0, 30.0, 60.0], 0.2, 1),
        ];
        let filter = CropFilter { per_class: Some(1), ..Default::default() };
        let mut counts = BTreeMap::new();
        let crops = frame_crops(&img, &labels, &filter, &CropConfig::default(), &mut counts);
        let got: Vec<(&str, usize)> = crops.iter().map(|(c, i, _)| (c.as_str(), *i)).collect();
        assert_eq!(got, vec![("Car", 0), ("Truck", 6)]);
        let (_, _, car) = &crops[0];
        assert_eq!(car.width, car.height);
        assert_eq!(counts.get("Car"), Some(&1));
        assert!(frame_crops(&img, &labels, &filter, &CropConfig::default(), &mut counts).is_empty());
        let ids: Vec<String> = (0..50).map(|i| format!("{i:06}")).collect();
        let order = visit_order(&ids);
        assert_eq!(order.len(), 50);
        assert_ne!(order, ids);
        assert_eq!(order, visit_order(&ids));
    }
}
