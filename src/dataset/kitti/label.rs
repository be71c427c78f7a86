//! KITTI `label_2` object lines, their conversion to and from LiDAR-frame
//! [`Box3D`]s, and the benchmark's difficulty levels.
//!
//! A line has 15 space-separated fields, 16 in detection results:
//!
//! ```text
//! type truncated occluded alpha  x1 y1 x2 y2  h w l  x y z  rotation_y [score]
//! Car  0.88      3        -0.69  0.00 192.37 402.31 374.00  1.60 1.57 3.23  -2.70 1.74 3.68  -1.29
//! ```
//!
//! * `truncated`: 0 (inside the image) .. 1 (leaving it);
//! * `occluded`: 0 fully visible, 1 partly, 2 largely occluded, 3 unknown;
//! * `alpha`: observation angle, `rotation_y - atan2(x, z)` wrapped to (-π, π];
//! * `x1 y1 x2 y2`: 2D box in the left colour image, pixels;
//! * `h w l`: height, width, length in metres;
//! * `x y z`: bottom centre of the box in the rectified camera frame (y down);
//! * `rotation_y`: heading about the camera's y axis, 0 = facing camera +x.
//!
//! `DontCare` lines mark image regions with unlabelled objects and carry
//! sentinel 3D values (`-1 -1 -10 x1 y1 x2 y2 -1 -1 -1 -1000 -1000 -1000 -10`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::{parse_number, Calibration, KittiError, ParseError};
use crate::geometry::{wrap_angle, Box3D};

/// The object types of KITTI's label files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectClass {
    Car,
    Van,
    Truck,
    Pedestrian,
    /// `Person_sitting` in the files.
    PersonSitting,
    Cyclist,
    Tram,
    Misc,
    DontCare,
}

impl ObjectClass {
    pub const ALL: [ObjectClass; 9] = [
        Self::Car,
        Self::Van,
        Self::Truck,
        Self::Pedestrian,
        Self::PersonSitting,
        Self::Cyclist,
        Self::Tram,
        Self::Misc,
        Self::DontCare,
    ];

    /// The spelling in KITTI files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Car => "Car",
            Self::Van => "Van",
            Self::Truck => "Truck",
            Self::Pedestrian => "Pedestrian",
            Self::PersonSitting => "Person_sitting",
            Self::Cyclist => "Cyclist",
            Self::Tram => "Tram",
            Self::Misc => "Misc",
            Self::DontCare => "DontCare",
        }
    }
}

impl fmt::Display for ObjectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectClass {
    type Err = String;
    /// Exact KITTI spelling (case matters, as in the devkit).
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown object type `{s}`"))
    }
}

/// KITTI's evaluation difficulty levels; each includes the easier ones'
/// objects (a Moderate evaluation counts Easy objects too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Difficulty {
    Easy,
    Moderate,
    Hard,
}

/// One row of [`DIFFICULTY_RULES`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DifficultyRule {
    pub difficulty: Difficulty,
    /// The 2D box must be taller than this (pixels, `y2 - y1`; strictly, as
    /// the devkit's `height <= MIN_HEIGHT` excludes equality).
    pub min_height_px: f64,
    pub max_occlusion: u8,
    pub max_truncation: f64,
}

/// The official thresholds (KITTI devkit `evaluate_object.cpp`: `MIN_HEIGHT
/// = {40, 25, 25}`, `MAX_OCCLUSION = {0, 1, 2}`, `MAX_TRUNCATION = {0.15,
/// 0.3, 0.5}`), easiest first: an object's difficulty is the first row it
/// satisfies.
pub const DIFFICULTY_RULES: [DifficultyRule; 3] = [
    DifficultyRule { difficulty: Difficulty::Easy, min_height_px: 40.0, max_occlusion: 0, max_truncation: 0.15 },
    DifficultyRule { difficulty: Difficulty::Moderate, min_height_px: 25.0, max_occlusion: 1, max_truncation: 0.30 },
    DifficultyRule { difficulty: Difficulty::Hard, min_height_px: 25.0, max_occlusion: 2, max_truncation: 0.50 },
];

/// One line of a `label_2` file (see the module docs for the fields).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectLabel {
    pub class: ObjectClass,
    pub truncated: f64,
    /// 0..=3. Files that write `-1` ("not given": DontCare lines, detection
    /// results) read as 3, KITTI's "unknown".
    pub occluded: u8,
    pub alpha: f64,
    /// `[x1, y1, x2, y2]` in pixels.
    pub bbox: [f64; 4],
    /// `[h, w, l]` in metres (KITTI's order).
    pub dimensions: [f64; 3],
    /// Bottom centre in the rectified camera frame, metres.
    pub location: [f64; 3],
    pub rotation_y: f64,
    /// Detection confidence, only in result files.
    pub score: Option<f64>,
}

impl ObjectLabel {
    /// A `DontCare` region with KITTI's sentinel values.
    pub fn dont_care(bbox: [f64; 4]) -> Self {
        Self {
            class: ObjectClass::DontCare,
            truncated: -1.0,
            occluded: 3,
            alpha: -10.0,
            bbox,
            dimensions: [-1.0; 3],
            location: [-1000.0; 3],
            rotation_y: -10.0,
            score: None,
        }
    }

    /// A label for a LiDAR-frame box: location, rotation_y and alpha follow
    /// from `b` through `calib`, as the exact inverse of
    /// [`to_lidar_box`](Self::to_lidar_box); the image-side fields come from
    /// the caller (see [`super::project_box_to_image`] for bbox and truncation).
    pub fn from_lidar_box(
        class: ObjectClass,
        b: &Box3D,
        calib: &Calibration,
        bbox: [f64; 4],
        truncated: f64,
        occluded: u8,
    ) -> Self {
        let [l, w, h] = b.size;
        let [x, y, z] = b.center;
        let location = calib.lidar_to_cam([x, y, z - h / 2.0]);
        let rotation_y = yaw_to_rotation_y(b.yaw);
        Self {
            class,
            truncated,
            occluded,
            alpha: observation_angle(rotation_y, location),
            bbox,
            dimensions: [h, w, l],
            location,
            rotation_y,
            score: None,
        }
    }

    /// The 3D box in the LiDAR frame, by mmdetection3d's and OpenPCDet's
    /// convention: the bottom centre is mapped exactly, the box stands upright
    /// on it in the LiDAR frame (centre h/2 above along LiDAR z), and the yaw
    /// is [`rotation_y_to_yaw`].
    ///
    /// This treats the rectified camera's y axis as parallel to LiDAR z; for
    /// KITTI they differ by about 0.01 rad, so a car's top is about 1.5 cm
    /// off the camera-frame box. KITTI's boxes were annotated in the LiDAR
    /// cloud, and keeping the convention of those tools makes our LiDAR boxes
    /// theirs: on KITTI frame 000008 the point counts in the boxes equal
    /// mmdetection3d's `num_lidar_pts` exactly (mapping the camera box's
    /// centre instead moves near cars by 8 mm and a near car's count by 8 %),
    /// and the projected boxes fit the labelled 2D boxes better (0.6 px
    /// worst edge error against 1.5 px for the camera-frame corners).
    pub fn to_lidar_box(&self, calib: &Calibration) -> Box3D {
        let [h, w, l] = self.dimensions;
        let [x, y, z] = calib.cam_to_lidar(self.location);
        Box3D { center: [x, y, z + h / 2.0], size: [l, w, h], yaw: rotation_y_to_yaw(self.rotation_y) }
    }

    /// Height of the 2D box in pixels.
    pub fn bbox_height(&self) -> f64 {
        self.bbox[3] - self.bbox[1]
    }

    /// The benchmark difficulty ([`DIFFICULTY_RULES`]), `None` for objects
    /// the evaluation ignores (too small, occluded or truncated, DontCare).
    pub fn difficulty(&self) -> Option<Difficulty> {
        if self.class == ObjectClass::DontCare {
            return None;
        }
        DIFFICULTY_RULES
            .iter()
            .find(|r| {
                self.bbox_height() > r.min_height_px
                    && self.occluded <= r.max_occlusion
                    && self.truncated <= r.max_truncation
            })
            .map(|r| r.difficulty)
    }

    /// Parses one line (15 fields, or 16 with a score). The error has no line
    /// number; [`parse_labels`] adds it.
    pub fn parse_line(line: &str) -> Result<Self, ParseError> {
        let err = |m: String| ParseError { line: None, message: m };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(fields.len() == 15 || fields.len() == 16) {
            return Err(err(format!("expected 15 fields (16 with a score), found {}", fields.len())));
        }
        let class: ObjectClass = fields[0].parse().map_err(err)?;
        let num = |i: usize, what: &str| parse_number(fields[i], what).map_err(err);
        let occluded = num(2, "occluded")?;
        // -1 is how DontCare lines and result files say "not given".
        let occluded = match occluded {
            v if v == -1.0 => 3,
            v if v.fract() == 0.0 && (0.0..=3.0).contains(&v) => v as u8,
            v => return Err(err(format!("occluded must be 0, 1, 2, 3 (or -1), found {v}"))),
        };
        Ok(Self {
            class,
            truncated: num(1, "truncated")?,
            occluded,
            alpha: num(3, "alpha")?,
            bbox: [num(4, "x1")?, num(5, "y1")?, num(6, "x2")?, num(7, "y2")?],
            dimensions: [num(8, "height")?, num(9, "width")?, num(10, "length")?],
            location: [num(11, "x")?, num(12, "y")?, num(13, "z")?],
            rotation_y: num(14, "rotation_y")?,
            score: if fields.len() == 16 { Some(num(15, "score")?) } else { None },
        })
    }

    /// The line as KITTI writes it, without a newline: 2 decimals for every
    /// real field and the integer occlusion, as in the ground truth; the
    /// score, when present, with 4. `DontCare` lines use KITTI's sentinel
    /// form whatever the 3D fields hold, so they read back as [`dont_care`](Self::dont_care).
    pub fn to_kitti_line(&self) -> String {
        let f = |v: f64| fixed2(v);
        let [x1, y1, x2, y2] = self.bbox.map(f);
        let mut line = if self.class == ObjectClass::DontCare {
            format!("DontCare -1 -1 -10 {x1} {y1} {x2} {y2} -1 -1 -1 -1000 -1000 -1000 -10")
        } else {
            let [h, w, l] = self.dimensions.map(f);
            let [x, y, z] = self.location.map(f);
            format!(
                "{} {} {} {} {x1} {y1} {x2} {y2} {h} {w} {l} {x} {y} {z} {}",
                self.class,
                f(self.truncated),
                self.occluded,
                f(self.alpha),
                f(self.rotation_y)
            )
        };
        if let Some(s) = self.score {
            line.push_str(&format!(" {s:.4}"));
        }
        line
    }
}

impl fmt::Display for ObjectLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_kitti_line())
    }
}

/// The LiDAR-frame yaw ([`Box3D::yaw`]) of KITTI heading `rotation_y`:
/// `-rotation_y - π/2`, wrapped.
///
/// KITTI's heading at `rotation_y = ry` is the camera direction
/// `(cos ry, 0, -sin ry)` (the box's length axis in the devkit's corner code);
/// with camera z = LiDAR x and camera x = -LiDAR y that is LiDAR yaw
/// `-ry - π/2`. The formula ignores the calibration's rotation between the
/// frames about the vertical, 0.1 mrad for KITTI after rectification.
pub fn rotation_y_to_yaw(rotation_y: f64) -> f64 {
    wrap_angle(-rotation_y - std::f64::consts::FRAC_PI_2)
}

/// The inverse of [`rotation_y_to_yaw`] (the same formula: it is an involution).
pub fn yaw_to_rotation_y(yaw: f64) -> f64 {
    wrap_angle(-yaw - std::f64::consts::FRAC_PI_2)
}

/// KITTI's observation angle: the heading relative to the ray from the
/// camera to the object, `rotation_y - atan2(x, z)`, wrapped to (-π, π].
pub fn observation_angle(rotation_y: f64, location: [f64; 3]) -> f64 {
    wrap_angle(rotation_y - location[0].atan2(location[2]))
}

/// `{:.2}` without a negative zero (`-0.001` → `0.00`), which KITTI's files
/// do not contain.
fn fixed2(v: f64) -> String {
    let s = format!("{v:.2}");
    if s == "-0.00" {
        "0.00".to_owned()
    } else {
        s
    }
}

/// Parses a whole label file; blank lines are skipped, errors carry the line.
pub fn parse_labels(text: &str) -> Result<Vec<ObjectLabel>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| ObjectLabel::parse_line(l).map_err(|e| ParseError::at(i + 1, e.message)))
        .collect()
}

/// A label file's text: one line each, newline-terminated (empty for no objects).
pub fn format_labels(labels: &[ObjectLabel]) -> String {
    labels.iter().map(|l| l.to_kitti_line() + "\n").collect()
}

/// Reads a `label_2` file; errors name the file and line.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<ObjectLabel>, KittiError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| KittiError::Io { path: path.to_owned(), source })?;
    parse_labels(&text).map_err(|source| KittiError::Parse { path: path.to_owned(), source })
}

/// Writes a `label_2` file (see [`format_labels`]).
pub fn write_labels(path: impl AsRef<Path>, labels: &[ObjectLabel]) -> Result<(), KittiError> {
    let path = path.as_ref();
    std::fs::write(path, format_labels(labels)).map_err(|source| KittiError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// The first and a DontCare line of KITTI's label_2/000008.txt.
    const CAR: &str = "Car 0.88 3 -0.69 0.00 192.37 402.31 374.00 1.60 1.57 3.23 -2.70 1.74 3.68 -1.29";
    const DONT_CARE: &str = "DontCare -1 -1 -10 800.38 163.67 825.45 184.07 -1 -1 -1 -1000 -1000 -1000 -10";

    #[test]
    fn kitti_lines_round_trip_exactly() {
        let car = ObjectLabel::parse_line(CAR).expect("car");
        assert_eq!(car.class, ObjectClass::Car);
        assert_eq!((car.truncated, car.occluded, car.alpha), (0.88, 3, -0.69));
        assert_eq!(car.dimensions, [1.60, 1.57, 3.23]);
        assert_eq!(car.location, [-2.70, 1.74, 3.68]);
        assert_eq!(car.to_kitti_line(), CAR);
        let dc = ObjectLabel::parse_line(DONT_CARE).expect("dont care");
        assert_eq!(dc, ObjectLabel::dont_care([800.38, 163.67, 825.45, 184.07]));
        assert_eq!(dc.to_kitti_line(), DONT_CARE);
        assert_eq!(dc.difficulty(), None);

        let text = format!("{CAR}\n{DONT_CARE}\n");
        assert_eq!(format_labels(&parse_labels(&text).expect("file")), text);
        assert_eq!(format_labels(&[]), "");
    }

    #[test]
    fn results_carry_a_score_and_unknown_occlusion() {
        let r = ObjectLabel::parse_line("Pedestrian -1 -1 0.25 10 20 30 80.5 1.7 0.6 0.8 1 1.6 12 -0.002 0.87654")
            .expect("result line");
        assert_eq!((r.class, r.occluded, r.score), (ObjectClass::Pedestrian, 3, Some(0.87654)));
        assert_eq!(
            r.to_kitti_line(),
            "Pedestrian -1.00 3 0.25 10.00 20.00 30.00 80.50 1.70 0.60 0.80 1.00 1.60 12.00 0.00 0.8765"
        );
    }

    #[test]
    fn class_names() {
        for c in ObjectClass::ALL {
            assert_eq!(c.as_str().parse::<ObjectClass>(), Ok(c));
        }
        assert_eq!(ObjectClass::PersonSitting.to_string(), "Person_sitting");
        assert!("car".parse::<ObjectClass>().is_err());
    }

    #[test]
    fn difficulty_thresholds() {
        let mut l = ObjectLabel::parse_line(CAR).expect("car");
        let mut with = |h: f64, occ: u8, tr: f64| {
            l.bbox = [0.0, 100.0, 50.0, 100.0 + h];
            l.occluded = occ;
            l.truncated = tr;
            l.difficulty()
        };
        assert_eq!(with(40.5, 0, 0.15), Some(Difficulty::Easy));
        assert_eq!(with(40.0, 0, 0.0), Some(Difficulty::Moderate), "height must exceed 40");
        assert_eq!(with(100.0, 1, 0.0), Some(Difficulty::Moderate));
        assert_eq!(with(100.0, 0, 0.2), Some(Difficulty::Moderate));
        assert_eq!(with(100.0, 2, 0.0), Some(Difficulty::Hard));
        assert_eq!(with(100.0, 0, 0.5), Some(Difficulty::Hard));
        assert_eq!(with(25.0, 0, 0.0), None);
        assert_eq!(with(100.0, 3, 0.0), None);
        assert_eq!(with(100.0, 0, 0.51), None);
    }

    #[test]
    fn lidar_box_conversion_round_trips() {
        let calib = Calibration::kitti_like_default();
        let b = Box3D { center: [15.0, -4.0, -0.9], size: [4.2, 1.8, 1.6], yaw: 2.5 };
        let l = ObjectLabel::from_lidar_box(ObjectClass::Van, &b, &calib, [1.0, 2.0, 3.0, 4.0], 0.1, 1);
        assert_eq!(
            (l.class, l.bbox, l.truncated, l.occluded, l.score),
            (ObjectClass::Van, [1.0, 2.0, 3.0, 4.0], 0.1, 1, None)
        );
        assert_eq!(l.dimensions, [1.6, 1.8, 4.2]);
        // 15 m ahead, 4 m right: camera x ≈ +4, z ≈ 15; the bottom is lower (larger y).
        assert!((l.location[0] - 4.0).abs() < 0.1 && (l.location[2] - 14.7).abs() < 0.1, "{:?}", l.location);
        assert!((l.location[1] - (0.9 + 0.08 + 0.8)).abs() < 0.1, "{:?}", l.location);
        // yaw 2.5 (facing back-left) is rotation_y -2.5 - π/2 + 2π
        assert!((l.rotation_y - (1.5 * PI - 2.5)).abs() < 1e-12, "{}", l.rotation_y);
        assert!((l.alpha - wrap_angle(l.rotation_y - l.location[0].atan2(l.location[2]))).abs() < 1e-12);
        let back = l.to_lidar_box(&calib);
        for (a, b) in back.center.iter().chain(&back.size).zip(b.center.iter().chain(&b.size)) {
            assert!((a - b).abs() < 1e-9, "{back:?}");
        }
        assert!(wrap_angle(back.yaw - b.yaw).abs() < 1e-9);
    }

    #[test]
    fn yaw_and_rotation_y() {
        for i in -40..=40 {
            let ry = f64::from(i) * PI / 40.0;
            assert!(wrap_angle(yaw_to_rotation_y(rotation_y_to_yaw(ry)) - ry).abs() < 1e-12, "{ry}");
        }
        // rotation_y 0 faces camera +x = LiDAR -y; -π/2 faces forward (+z = +x).
        assert!((rotation_y_to_yaw(0.0) + PI / 2.0).abs() < 1e-12);
        assert!(rotation_y_to_yaw(-PI / 2.0).abs() < 1e-12);
        assert!((rotation_y_to_yaw(PI / 2.0) - PI).abs() < 1e-12);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let cases = [
            ("Bus 0 0 0 0 0 1 1 1 1 1 0 0 5 0", "unknown object type `Bus`"),
            ("Car 0 0 0 0 0 1 1 1 1 1 0 0 5", "expected 15 fields (16 with a score), found 14"),
            ("Car 0 0 0 0 0 1 1 1 1 1 0 0 5 0 0.5 9", "found 17"),
            ("Car 0 4 0 0 0 1 1 1 1 1 0 0 5 0", "occluded must be"),
            ("Car 0 0.5 0 0 0 1 1 1 1 1 0 0 5 0", "occluded must be"),
            ("Car 0 0 0 0 0 1 1 1 one 1 0 0 5 0", "width: `one` is not a number"),
            ("Car 0 0 0 0 0 1 1 1 1 1 0 0 inf 0", "z: `inf` is not a finite number"),
        ];
        for (bad, what) in cases {
            let err = parse_labels(&format!("{CAR}\n\n{bad}\n{CAR}\n")).expect_err(what);
            assert_eq!(err.line, Some(3), "{err}");
            assert!(err.to_string().starts_with("line 3: ") && err.to_string().contains(what), "{err}");
        }
    }
}
