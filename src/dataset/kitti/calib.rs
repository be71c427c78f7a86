//! KITTI object-benchmark calibration files (`calib/000000.txt`).
//!
//! One `KEY: numbers` entry a line, all matrices row-major:
//!
//! | key | shape | meaning | required |
//! |---|---|---|---|
//! | `P0`..`P3` | 3x4 | projection of rectified camera-0 coordinates into camera *i*'s image | `P2` only |
//! | `R0_rect` (or `R_rect`) | 3x3 | rectifying rotation of camera 0 | yes |
//! | `Tr_velo_to_cam` (or `Tr_velo_cam`) | 3x4 | LiDAR → unrectified camera 0 | yes |
//! | `Tr_imu_to_velo` (or `Tr_imu_velo`) | 3x4 | IMU → LiDAR | no |
//!
//! "Camera frame" in this module is always KITTI's *rectified* camera-0 frame
//! (x right, y down, z forward), the frame of the `label_2` boxes: a LiDAR
//! point `p` lands there as `R0_rect · Tr_velo_to_cam · p`, and in the left
//! colour image (`image_2`) as `P2 · (that)`. The LiDAR frame is the one of
//! [`crate::geometry`] (x forward, y left, z up).
//!
//! Numbers are written as KITTI writes them (C's `%.12e`, e.g.
//! `7.215377000000e+02`); a number that this would not reproduce exactly gets
//! 17 significant digits instead, so that write → parse is always the identity.

use std::fmt::Write as _;
use std::path::Path;

use super::{parse_numbers, KittiError, ParseError};
use crate::camera::{CameraError, PinholeCamera};
use crate::geometry::{mat3_det, mat3_inverse};

/// Image size of KITTI's colour cameras (after rectification; a few drives
/// differ by a pixel or two).
pub const KITTI_IMAGE_WIDTH: u32 = 1242;
pub const KITTI_IMAGE_HEIGHT: u32 = 375;
/// Height of KITTI's Velodyne HDL-64E above the road, in metres (KITTI's
/// sensor set-up sheet), i.e. the road is at z ≈ -1.73 in the LiDAR frame.
pub const KITTI_LIDAR_HEIGHT_M: f64 = 1.73;
/// Points closer to the camera plane than this (metres of camera-frame z)
/// have no image position: their projection is numerically meaningless.
pub const MIN_PROJECTION_DEPTH_M: f64 = 1e-3;

/// The contents of a KITTI calibration file (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub p0: Option<[f64; 12]>,
    pub p1: Option<[f64; 12]>,
    /// Left colour camera (`image_2`), the camera the labels' 2D boxes refer to.
    pub p2: [f64; 12],
    pub p3: Option<[f64; 12]>,
    /// 3x3 row-major.
    pub r0_rect: [f64; 9],
    /// 3x4 row-major.
    pub tr_velo_to_cam: [f64; 12],
    pub tr_imu_to_velo: Option<[f64; 12]>,
}

/// The keys in the order KITTI writes them. Tools such as OpenPCDet read the
/// lines by position, so the writer keeps this order.
const KEYS: [(&str, &[&str]); 7] = [
    ("P0", &[]),
    ("P1", &[]),
    ("P2", &[]),
    ("P3", &[]),
    ("R0_rect", &["R_rect"]),
    ("Tr_velo_to_cam", &["Tr_velo_cam"]),
    ("Tr_imu_to_velo", &["Tr_imu_velo"]),
];

impl Calibration {
    /// A single camera given by its projection matrix `p` (a rectified
    /// CameraInfo's P, 3x4 row-major) and the LiDAR → camera-optical-frame
    /// extrinsic `lidar_to_cam` (3x4 row-major): R0_rect is the identity.
    pub fn from_camera(p: [f64; 12], lidar_to_cam: [f64; 12]) -> Self {
        Self {
            p0: None,
            p1: None,
            p2: p,
            p3: None,
            r0_rect: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            tr_velo_to_cam: lidar_to_cam,
            tr_imu_to_velo: None,
        }
    }

    /// Reads a calibration file; errors name the file and line.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, KittiError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| KittiError::Io { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|source| KittiError::Parse { path: path.to_owned(), source })
    }

    /// Writes [`to_kitti_string`](Self::to_kitti_string) to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), KittiError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_kitti_string()).map_err(|source| KittiError::Io { path: path.to_owned(), source })
    }

    /// Parses the text of a calibration file. Blank lines and unknown keys
    /// (some files carry extra matrices) are skipped; a repeated key, a line
    /// without `:`, a wrong count or a non-finite number is an error.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut found: [Option<(usize, Vec<f64>)>; 7] = Default::default();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, values)) = line.split_once(':') else {
                return Err(ParseError::at(line_no, format!("expected `KEY: numbers`, found `{line}`")));
            };
            let key = key.trim();
            let Some(slot) = KEYS.iter().position(|(name, aliases)| *name == key || aliases.contains(&key)) else {
                continue;
            };
            if let Some((first, _)) = &found[slot] {
                return Err(ParseError::at(line_no, format!("`{key}` repeats the entry of line {first}")));
            }
            let numbers = parse_numbers(values, key).map_err(|m| ParseError::at(line_no, m))?;
            let expected = if KEYS[slot].0 == "R0_rect" { 9 } else { 12 };
            if numbers.len() != expected {
                return Err(ParseError::at(
                    line_no,
                    format!("`{key}` needs {expected} numbers, found {}", numbers.len()),
                ));
            }
            found[slot] = Some((line_no, numbers));
        }
        let [p0, p1, p2, p3, r0, tr, imu] = found.map(|f| f.map(|(_, v)| v));
        let required = |v: Option<Vec<f64>>, key: &str| {
            v.ok_or_else(|| ParseError::whole_file(format!("missing required entry `{key}:`")))
        };
        let calib = Self {
            p0: p0.map(to12),
            p1: p1.map(to12),
            p2: to12(required(p2, "P2")?),
            p3: p3.map(to12),
            r0_rect: to9(required(r0, "R0_rect")?),
            tr_velo_to_cam: to12(required(tr, "Tr_velo_to_cam")?),
            tr_imu_to_velo: imu.map(to12),
        };
        // A singular LiDAR→camera map cannot be inverted (cam_to_lidar would
        // return NaN); that is a broken file, so say so here.
        if mat3_det(&calib.lidar_to_cam_affine().0).abs() < 1e-9 {
            return Err(ParseError::whole_file("R0_rect · Tr_velo_to_cam is singular".to_owned()));
        }
        Ok(calib)
    }

    /// The file text: present entries in KITTI's order, one line each.
    pub fn to_kitti_string(&self) -> String {
        let mut out = String::new();
        let entries: [(&str, Option<&[f64]>); 7] = [
            ("P0", self.p0.as_ref().map(|m| &m[..])),
            ("P1", self.p1.as_ref().map(|m| &m[..])),
            ("P2", Some(&self.p2[..])),
            ("P3", self.p3.as_ref().map(|m| &m[..])),
            ("R0_rect", Some(&self.r0_rect[..])),
            ("Tr_velo_to_cam", Some(&self.tr_velo_to_cam[..])),
            ("Tr_imu_to_velo", self.tr_imu_to_velo.as_ref().map(|m| &m[..])),
        ];
        for (key, values) in entries {
            if let Some(values) = values {
                out.push_str(key);
                out.push(':');
                for v in values {
                    out.push(' ');
                    out.push_str(&format_kitti_number(*v));
                }
                out.push('\n');
            }
        }
        out
    }

    /// The calibration of KITTI object frame 000008 (drive 2011_09_26, as in
    /// `../shared/data/kitti_000008/info.json`, rounded to the 7 significant
    /// digits of KITTI's files): a realistic set-up for simulated data,
    /// misalignments of a few milliradians included.
    ///
    /// Geometry it encodes: the HDL-64E sits [`KITTI_LIDAR_HEIGHT_M`] above the
    /// road; the rectified camera-0 origin is 0.27 m in front of the LiDAR
    /// origin and 0.08 m below it (`cam_to_lidar([0,0,0])` ≈ (0.27, 0.00,
    /// -0.08)); camera 2 is a further 0.06 m to the left; images are
    /// [`KITTI_IMAGE_WIDTH`] x [`KITTI_IMAGE_HEIGHT`] with a 721.5 px focal
    /// length (about 82° horizontal field of view).
    pub fn kitti_like_default() -> Self {
        Self {
            p0: Some([7.215377e+02, 0.0, 6.095593e+02, 0.0, 0.0, 7.215377e+02, 1.728540e+02, 0.0, 0.0, 0.0, 1.0, 0.0]),
            p1: Some([
                7.215377e+02,
                0.0,
                6.095593e+02,
                -3.875744e+02,
                0.0,
                7.215377e+02,
                1.728540e+02,
                0.0,
                0.0,
                0.0,
                1.0,
                0.0,
            ]),
            p2: [
                7.215377e+02,
                0.0,
                6.095593e+02,
                4.485728e+01,
                0.0,
                7.215377e+02,
                1.728540e+02,
                2.163791e-01,
                0.0,
                0.0,
                1.0,
                2.745884e-03,
            ],
            p3: Some([
                7.215377e+02,
                0.0,
                6.095593e+02,
                -3.395242e+02,
                0.0,
                7.215377e+02,
                1.728540e+02,
                2.199936e+00,
                0.0,
                0.0,
                1.0,
                2.729905e-03,
            ]),
            r0_rect: [
                9.999239e-01,
                9.837760e-03,
                -7.445048e-03,
                -9.869795e-03,
                9.999421e-01,
                -4.278459e-03,
                7.402527e-03,
                4.351614e-03,
                9.999631e-01,
            ],
            tr_velo_to_cam: [
                7.533745e-03,
                -9.999714e-01,
                -6.166020e-04,
                -4.069766e-03,
                1.480249e-02,
                7.280733e-04,
                -9.998902e-01,
                -7.631618e-02,
                9.998621e-01,
                7.523790e-03,
                1.480755e-02,
                -2.717806e-01,
            ],
            tr_imu_to_velo: Some([
                9.999976e-01,
                7.553071e-04,
                -2.035826e-03,
                -8.086759e-01,
                -7.854027e-04,
                9.998898e-01,
                -1.482298e-02,
                3.195559e-01,
                2.024406e-03,
                1.482454e-02,
                9.998881e-01,
                -7.997231e-01,
            ]),
        }
    }

    /// The LiDAR → rectified camera map `R0_rect · Tr_velo_to_cam` as a 3x3
    /// matrix and a translation.
    fn lidar_to_cam_affine(&self) -> ([f64; 9], [f64; 3]) {
        let r = &self.r0_rect;
        let t = &self.tr_velo_to_cam;
        let mut m = [0.0; 9];
        let mut v = [0.0; 3];
        for i in 0..3 {
            for j in 0..3 {
                m[3 * i + j] = (0..3).map(|k| r[3 * i + k] * t[4 * k + j]).sum();
            }
            v[i] = (0..3).map(|k| r[3 * i + k] * t[4 * k + 3]).sum();
        }
        (m, v)
    }

    /// `R0_rect · Tr_velo_to_cam` as a 3x4 row-major matrix (mmdetection3d's
    /// `lidar2cam` without its last row), for code that transforms whole clouds.
    pub fn lidar_to_cam_matrix(&self) -> [f64; 12] {
        let (m, v) = self.lidar_to_cam_affine();
        let mut out = [0.0; 12];
        for i in 0..3 {
            out[4 * i..4 * i + 3].copy_from_slice(&m[3 * i..3 * i + 3]);
            out[4 * i + 3] = v[i];
        }
        out
    }

    /// A LiDAR point in the rectified camera frame.
    pub fn lidar_to_cam(&self, p: [f64; 3]) -> [f64; 3] {
        let (m, v) = self.lidar_to_cam_affine();
        let q = mat3_mul(&m, p);
        [q[0] + v[0], q[1] + v[1], q[2] + v[2]]
    }

    /// A rectified-camera point in the LiDAR frame: the exact inverse of
    /// [`lidar_to_cam`](Self::lidar_to_cam). The general 3x3 inverse is used
    /// rather than a transpose because the published rotations, rounded to 7
    /// digits, are not exactly orthonormal.
    pub fn cam_to_lidar(&self, p: [f64; 3]) -> [f64; 3] {
        let (m, v) = self.lidar_to_cam_affine();
        // parse rejects singular rotations; one built by hand maps to NaN, which every range check drops
        let inv = mat3_inverse(&m).unwrap_or([f64::NAN; 9]);
        mat3_mul(&inv, [p[0] - v[0], p[1] - v[1], p[2] - v[2]])
    }

    /// Pixel `(u, v)` of a rectified-camera point in the left colour image
    /// (through `P2`), or `None` when the point is not in front of the camera
    /// (depth at most [`MIN_PROJECTION_DEPTH_M`]). The result may lie outside
    /// the image.
    pub fn cam_to_image(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        let row = |r: usize| (0..3).map(|k| self.p2[4 * r + k] * p[k]).sum::<f64>() + self.p2[4 * r + 3];
        let w = row(2);
        if !(p[2] > MIN_PROJECTION_DEPTH_M && w > MIN_PROJECTION_DEPTH_M) {
            return None;
        }
        let uv = [row(0) / w, row(1) / w];
        uv.iter().all(|c| c.is_finite()).then_some(uv)
    }

    /// Pixel of a LiDAR point in the left colour image (see [`cam_to_image`](Self::cam_to_image)).
    pub fn lidar_to_image(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        self.cam_to_image(self.lidar_to_cam(p))
    }

    /// The left colour camera as a [`PinholeCamera`] (`P2`, no distortion).
    pub fn camera2(&self, width: u32, height: u32) -> Result<PinholeCamera, CameraError> {
        PinholeCamera::from_kitti_p2(self.p2, width, height)
    }
}

/// Formats like C's `%.12e` (`7.215377000000e+02`, KITTI's calib style), or
/// with 17 significant digits when 13 would not read back as the same f64.
pub(crate) fn format_kitti_number(v: f64) -> String {
    let kitti = c_style_exp(v, 12);
    if kitti.parse::<f64>().ok() == Some(v) {
        kitti
    } else {
        c_style_exp(v, 16)
    }
}

/// Rust's `{:.N e}` (`7.2e2`) with C's exponent (`7.2e+02`: sign, ≥ 2 digits).
fn c_style_exp(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$e}");
    let Some((mantissa, exp)) = s.split_once('e') else {
        return s; // NaN or inf: no exponent to fix (a parsed file never has them)
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut out = String::with_capacity(s.len() + 2);
    let _ = write!(out, "{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    out
}

fn to12(v: Vec<f64>) -> [f64; 12] {
    let mut a = [0.0; 12];
    a.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    a
}

fn to9(v: Vec<f64>) -> [f64; 9] {
    let mut a = [0.0; 9];
    a.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    a
}

fn mat3_mul(m: &[f64; 9], p: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[3 * i] * p[0] + m[3 * i + 1] * p[1] + m[3 * i + 2] * p[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_like_kitti_and_read_back_exactly() {
        assert_eq!(format_kitti_number(721.5377), "7.215377000000e+02");
        assert_eq!(format_kitti_number(-0.002745884), "-2.745884000000e-03");
        assert_eq!(format_kitti_number(0.0), "0.000000000000e+00");
        assert_eq!(format_kitti_number(1e-120), "1.000000000000e-120");
        // f32-derived values need all 17 digits
        let v = f64::from(0.999_923_9_f32);
        assert_eq!(format_kitti_number(v).parse::<f64>().ok(), Some(v));
        assert_eq!(format_kitti_number(v).len(), "9.9999237060546875e-01".len());
    }

    #[test]
    fn default_round_trips_and_looks_like_a_kitti_file() {
        let c = Calibration::kitti_like_default();
        let text = c.to_kitti_string();
        assert!(text.starts_with("P0: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 "), "{text}");
        assert!(text.contains("\nR0_rect: 9.999239000000e-01 9.837760000000e-03 "), "{text}");
        assert_eq!(text.lines().count(), 7);
        assert_eq!(Calibration::parse(&text).as_ref(), Ok(&c));
        // Mounting documented on kitti_like_default.
        let cam = c.cam_to_lidar([0.0, 0.0, 0.0]);
        assert!((cam[0] - 0.27).abs() < 0.01 && cam[1].abs() < 0.01 && (cam[2] + 0.08).abs() < 0.01, "{cam:?}");
    }

    #[test]
    fn aliases_optional_entries_and_extra_keys() {
        let text = "P2: 1 0 0 0 0 1 0 0 0 0 1 0\n\nR_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n\
                    Tr_cam_to_road: 1 2 3\n";
        let c = Calibration::parse(text).expect("valid");
        assert_eq!((c.p0, c.p1, c.p3, c.tr_imu_to_velo), (None, None, None, None));
        // Ideal mounting: camera z is LiDAR x, camera x is -LiDAR y.
        assert_eq!(c.lidar_to_cam([10.0, 2.0, 1.0]), [-2.0, -1.0, 10.0]);
        assert_eq!(c.cam_to_lidar([-2.0, -1.0, 10.0]), [10.0, 2.0, 1.0]);
        assert_eq!(c.lidar_to_image([10.0, 2.0, 1.0]), Some([-0.2, -0.1]));
        assert_eq!(c.cam_to_image([1.0, 1.0, 0.0]), None);
        assert_eq!(c.cam_to_image([1.0, 1.0, -5.0]), None);
        assert_eq!(Calibration::parse(&c.to_kitti_string()).as_ref(), Ok(&c));
    }

    #[test]
    fn lidar_and_camera_frames_are_exact_inverses() {
        let c = Calibration::kitti_like_default();
        let p = [12.0, -3.5, -1.2];
        let q = c.cam_to_lidar(c.lidar_to_cam(p));
        assert!(p.iter().zip(q).all(|(a, b)| (a - b).abs() < 1e-12), "{q:?}");
    }

    #[test]
    fn malformed_files_name_the_line() {
        let ok = Calibration::kitti_like_default().to_kitti_string();
        let cases = [
            (ok.replace("P2: 7.215377000000e+02 ", "P2: "), 3, "needs 12 numbers, found 11"),
            (ok.replace("R0_rect: 9.999239000000e-01", "R0_rect: 9.99x"), 5, "`9.99x`"),
            (ok.replace("Tr_velo_to_cam:", "Tr_velo_to_cam"), 6, "expected `KEY: numbers`"),
            (format!("{ok}P2: 1 2 3 4 5 6 7 8 9 10 11 12\n"), 8, "repeats the entry of line 3"),
            (ok.replace("P1: 7.215377000000e+02", "P1: nan"), 2, "not a finite number"),
        ];
        for (text, line, what) in cases {
            let err = Calibration::parse(&text).expect_err(what);
            assert_eq!(err.line, Some(line), "{err}");
            assert!(err.to_string().contains(what), "{err}");
        }
        let no_p2: String = ok.lines().filter(|l| !l.starts_with("P2")).map(|l| format!("{l}\n")).collect();
        let err = Calibration::parse(&no_p2).expect_err("P2 is required");
        assert!(err.line.is_none() && err.to_string().contains("`P2:`"), "{err}");
        let singular: String = ok
            .lines()
            .map(
                |l| if l.starts_with("R0_rect") { "R0_rect: 0 0 0 0 0 0 0 0 0\n".to_owned() } else { format!("{l}\n") },
            )
            .collect();
        assert!(Calibration::parse(&singular).expect_err("singular").to_string().contains("singular"));
    }
}
