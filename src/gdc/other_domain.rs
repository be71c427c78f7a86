//! Real images from outside the simulator, for judging a bank built on
//! simulated crops (issue 16): the photos of Debian's darknet package (which
//! set-up unpacks into `$ELOSS_CACHE/darknet`) and the labelled objects of
//! the real KITTI frame 000008 (`../shared/data/kitti_000008`).
//!
//! - **darknet**: each photo whole, and square crops ([`crop_pixels`],
//!   [`CropConfig::default`], as the node crops) of the objects drawn in
//!   [`DARKNET_OBJECTS`] (boxes read off the photos by hand, to ±10 px).
//!   Dogs, horses, a giraffe, a zebra, an eagle, kites and whole scenes are
//!   classes no driving bank holds: their right answer is `unknown`. The
//!   walking people are pedestrians: `Pedestrian` or `unknown`.
//! - **KITTI**: the ground-truth 3D boxes of `info.json` in the LiDAR frame
//!   ([`ObjectLabel::to_lidar_box`]), projected and cropped through the
//!   frame's calibration with [`crop_box`] (what `~/relabel` does with a
//!   detection), DontCare regions skipped: the 6 cars of frame 000008,
//!   whose right answer is `Car` or `unknown`.

use super::bank_builder::read_rgb;
use super::crops::{crop_box, crop_pixels, CropConfig};
use crate::dataset::kitti::info_json::InfoFrame;
use crate::dataset::kitti::ObjectClass;
use crate::image::RgbImage;
use std::path::Path;

/// The darknet package's data folder under set-up's cache folder.
pub const DARKNET_DATA: &str = "darknet/root/usr/share/darknet/data";

/// One real image and the answer it should get.
#[derive(Debug, Clone)]
pub struct OtherImage {
    /// `darknet/dog.jpg:dog` or `kitti/000008:3`.
    pub name: String,
    /// `darknet` or `kitti`.
    pub source: &'static str,
    /// The bank class it shows (answer: it or `unknown`), `None` when it
    /// shows none (answer: `unknown`).
    pub expected: Option<String>,
    pub image: RgbImage,
}

/// A drawn object: photo, what it is, the bank class it is (if any), box
/// `[x1, y1, x2, y2]` in pixels.
pub struct DrawnObject {
    pub photo: &'static str,
    pub what: &'static str,
    pub bank_class: Option<ObjectClass>,
    pub bbox: [f64; 4],
}

const fn object(photo: &'static str, what: &'static str, bank_class: Option<ObjectClass>, bbox: [f64; 4]) -> DrawnObject {
    DrawnObject { photo, what, bank_class, bbox }
}

/// Objects in the darknet photos (a bicycle without rider and a pick-up,
/// which a driving bank may fairly call Cyclist or Car/Van, are left out).
pub const DARKNET_OBJECTS: [DrawnObject; 12] = [
    object("dog.jpg", "dog", None, [130.0, 220.0, 305.0, 540.0]),
    object("person.jpg", "dog", None, [65.0, 260.0, 200.0, 345.0]),
    object("person.jpg", "horse", None, [405.0, 140.0, 600.0, 345.0]),
    object("person.jpg", "person", Some(ObjectClass::Pedestrian), [190.0, 100.0, 272.0, 378.0]),
    object("horses.jpg", "white horse", None, [0.0, 195.0, 315.0, 410.0]),
    object("horses.jpg", "brown horse", None, [230.0, 195.0, 420.0, 360.0]),
    object("horses.jpg", "grey horse", None, [440.0, 210.0, 595.0, 345.0]),
    object("giraffe.jpg", "giraffe", None, [165.0, 30.0, 445.0, 445.0]),
    object("giraffe.jpg", "zebra", None, [250.0, 205.0, 425.0, 425.0]),
    object("kite.jpg", "kite", None, [592.0, 78.0, 672.0, 152.0]),
    object("kite.jpg", "person", Some(ObjectClass::Pedestrian), [112.0, 610.0, 166.0, 762.0]),
    object("kite.jpg", "person", Some(ObjectClass::Pedestrian), [215.0, 697.0, 271.0, 852.0]),
];

/// Whole photos, none of them a picture of one bank-class object.
pub const DARKNET_PHOTOS: [&str; 7] = ["dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg", "scream.jpg"];

/// The whole photos and the drawn objects of darknet's data folder `dir`.
pub fn darknet_images(dir: &Path) -> anyhow::Result<Vec<OtherImage>> {
    let mut out = Vec::new();
    for photo in DARKNET_PHOTOS {
        let image = read_rgb(&dir.join(photo))?;
        out.push(OtherImage { name: format!("darknet/{photo}"), source: "darknet", expected: None, image });
    }
    for o in &DARKNET_OBJECTS {
        let photo = read_rgb(&dir.join(o.photo))?;
        let crop = crop_pixels(&photo, o.bbox, &CropConfig::default()).map_err(|e| anyhow::anyhow!("{}:{}: {e}", o.photo, o.what))?;
        let expected = o.bank_class.map(|c| c.as_str().to_string());
        out.push(OtherImage { name: format!("darknet/{}:{}", o.photo, o.what), source: "darknet", expected, image: crop.image });
    }
    Ok(out)
}

/// Crops of the labelled objects of a KITTI frame folder holding
/// `info.json` and the camera image `image` (e.g. `000008.png`).
pub fn kitti_crops(dir: &Path, image: &str) -> anyhow::Result<Vec<OtherImage>> {
    let frame = InfoFrame::read(dir)?;
    let photo = read_rgb(&dir.join(image))?;
    let stem = image.split('.').next().unwrap_or(image);
    let mut out = Vec::new();
    for (i, label) in frame.labels.iter().enumerate().filter(|(_, l)| l.class != ObjectClass::DontCare) {
        let b = label.to_lidar_box(&frame.calib);
        let crop = crop_box(&photo, &b, &frame.calib, &CropConfig::default()).map_err(|e| anyhow::anyhow!("{stem} object {i}: {e}"))?;
        out.push(OtherImage { name: format!("kitti/{stem}:{i}"), source: "kitti", expected: Some(label.class.as_str().to_string()), image: crop.image });
    }
    Ok(out)
}
