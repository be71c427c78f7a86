//! Camera calibration (`sensor_msgs/CameraInfo`) without ROS types.
//!
//! Perception needs one thing from a camera's calibration: where a 3D point in
//! the camera frame lands in the (rectified) image, e.g. to paint lidar points
//! or draw 3D boxes. [`PinholeCamera`] holds the validated calibration and
//! [`PinholeCamera::project`] does that projection with the 3x4 matrix `P`, as
//! KITTI does with its `P2`.
//!
//! Camera frame: x right, y down, z forward (the ROS optical frame and KITTI's
//! camera frame agree).

/// Why a calibration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("camera is uncalibrated (projection matrix P or intrinsics K is all zeros)")]
    Uncalibrated,
    #[error("focal lengths fx={fx}, fy={fy} must be finite and positive")]
    InvalidFocalLength { fx: f64, fy: f64 },
    #[error("image size {width}x{height} must be non-zero")]
    ZeroSize { width: u32, height: u32 },
    #[error("calibration {0} contains a NaN or infinite value")]
    NonFinite(&'static str),
    #[error("unknown distortion model `{0}` (expected plumb_bob, rational_polynomial or equidistant)")]
    UnknownDistortionModel(String),
    #[error("{0} distortion coefficients; at most {MAX_DISTORTION_COEFFICIENTS}")]
    TooManyCoefficients(usize),
    #[error("distortion model name of {0} bytes; at most {MAX_DISTORTION_MODEL_BYTES}")]
    LongModelName(usize),
}

/// Most coefficients in `CameraInfo.d` (OpenCV's largest model, with thin
/// prism and tilt terms, has 14).
pub const MAX_DISTORTION_COEFFICIENTS: usize = 14;
/// Longest distortion model name accepted (the known ones have at most 19 bytes).
pub const MAX_DISTORTION_MODEL_BYTES: usize = 64;

/// Lens distortion of the raw image, with the coefficients as published.
#[derive(Debug, Clone, PartialEq)]
pub enum Distortion {
    None,
    /// `k1, k2, t1, t2, k3` (OpenCV's 5-parameter model).
    PlumbBob(Vec<f64>),
    /// `k1, k2, t1, t2, k3, k4, k5, k6` (OpenCV's rational model).
    RationalPolynomial(Vec<f64>),
    /// `k1, k2, k3, k4` (OpenCV fisheye).
    Equidistant(Vec<f64>),
}

/// The fields of a `sensor_msgs/CameraInfo` that calibration needs.
#[derive(Debug, Clone, Copy)]
pub struct CameraInfoLayout<'a> {
    pub width: u32,
    pub height: u32,
    pub distortion_model: &'a str,
    pub d: &'a [f64],
    pub k: [f64; 9],
    pub r: [f64; 9],
    pub p: [f64; 12],
}

/// A validated pinhole calibration.
///
/// `fx, fy, cx, cy` come from `K` and describe the raw (distorted) image, the
/// one `distortion` applies to. `p` is the rectified projection used by
/// [`project`](Self::project); for an already rectified source such as KITTI
/// the two agree.
#[derive(Debug, Clone, PartialEq)]
pub struct PinholeCamera {
    pub width: u32,
    pub height: u32,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    /// Projection matrix, 3x4 row-major.
    pub p: [f64; 12],
    pub distortion: Distortion,
}

impl PinholeCamera {
    /// Validates a CameraInfo. `R` (the stereo rectification rotation) is
    /// accepted but not needed: `P` already maps rectified camera coordinates.
    pub fn from_camera_info(info: &CameraInfoLayout) -> Result<Self, CameraError> {
        // Drivers without a calibration publish zero matrices; say so plainly
        // instead of reporting a zero focal length.
        if info.p.iter().all(|&v| v == 0.0) || info.k.iter().all(|&v| v == 0.0) {
            return Err(CameraError::Uncalibrated);
        }
        // bounded before anything is copied: the node keeps the newest calibration
        if info.d.len() > MAX_DISTORTION_COEFFICIENTS {
            return Err(CameraError::TooManyCoefficients(info.d.len()));
        }
        if info.distortion_model.len() > MAX_DISTORTION_MODEL_BYTES {
            return Err(CameraError::LongModelName(info.distortion_model.len()));
        }
        for (name, values) in [("K", &info.k[..]), ("R", &info.r[..]), ("P", &info.p[..]), ("D", info.d)] {
            if values.iter().any(|v| !v.is_finite()) {
                return Err(CameraError::NonFinite(name));
            }
        }
        let [fx, _, cx, _, fy, cy, ..] = info.k;
        if !(fx > 0.0 && fy > 0.0) {
            return Err(CameraError::InvalidFocalLength { fx, fy });
        }
        if info.width == 0 || info.height == 0 {
            return Err(CameraError::ZeroSize { width: info.width, height: info.height });
        }
        let d = info.d.to_vec();
        let distortion = match info.distortion_model {
            // An unknown model name is an error even with zero coefficients, so
            // that a typo in a calibration file is noticed.
            "" | "plumb_bob" | "rational_polynomial" | "equidistant" if d.iter().all(|&v| v == 0.0) => Distortion::None,
            "plumb_bob" => Distortion::PlumbBob(d),
            "rational_polynomial" => Distortion::RationalPolynomial(d),
            "equidistant" => Distortion::Equidistant(d),
            // Empty model with non-zero coefficients: OpenCV's default model.
            "" => Distortion::PlumbBob(d),
            other => return Err(CameraError::UnknownDistortionModel(other.to_owned())),
        };
        Ok(Self { width: info.width, height: info.height, fx, fy, cx, cy, p: info.p, distortion })
    }

    /// A camera from a KITTI projection matrix (`P2` of the object benchmark's
    /// calib files, row-major 3x4), whose images are already rectified.
    pub fn from_kitti_p2(p: [f64; 12], width: u32, height: u32) -> Result<Self, CameraError> {
        let k = [p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]];
        let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        Self::from_camera_info(&CameraInfoLayout { width, height, distortion_model: "", d: &[], k, r: identity, p })
    }

    /// Pixel `[u, v]` of a camera-frame point (metres): `P·[x y z 1]`
    /// dehomogenised. `None` for points at or behind the camera (`z <= 0`),
    /// whose projection would be meaningless. The result may lie outside the
    /// image; clip against `width`/`height` if needed.
    pub fn project(&self, [x, y, z]: [f64; 3]) -> Option<[f64; 2]> {
        if z.is_nan() || z <= 0.0 {
            return None;
        }
        let p = &self.p;
        let row = |r: usize| p[4 * r] * x + p[4 * r + 1] * y + p[4 * r + 2] * z + p[4 * r + 3];
        let w = row(2);
        let uv = [row(0) / w, row(1) / w];
        (w > 0.0 && uv.iter().all(|c| c.is_finite())).then_some(uv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::test_data::kitti_dir;

    const KITTI_W: u32 = 1242;
    const KITTI_H: u32 = 375;

    fn kitti_p2(dir: &std::path::Path) -> [f64; 12] {
        let text = std::fs::read_to_string(dir.join("000008.txt")).expect("read 000008.txt");
        let values: Vec<f64> = text.split_whitespace().map(|s| s.parse().expect("number in 000008.txt")).collect();
        // The file holds the 4x4 homogeneous form; P2 is its first three rows.
        assert!(values.len() >= 12, "000008.txt has {} numbers", values.len());
        values[..12].try_into().expect("12 values")
    }

    fn info() -> CameraInfoLayout<'static> {
        CameraInfoLayout {
            width: 640,
            height: 480,
            distortion_model: "plumb_bob",
            d: &[0.1, -0.2, 0.0, 0.0, 0.05],
            k: [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0],
            r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: [480.0, 0.0, 318.0, 0.0, 0.0, 490.0, 242.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        }
    }

    #[test]
    fn camera_info_is_validated_and_read() {
        let cam = PinholeCamera::from_camera_info(&info()).expect("valid");
        assert_eq!((cam.fx, cam.fy, cam.cx, cam.cy), (500.0, 510.0, 320.0, 240.0));
        assert_eq!(cam.distortion, Distortion::PlumbBob(vec![0.1, -0.2, 0.0, 0.0, 0.05]));
        // project uses P, not K
        assert_eq!(cam.project([1.0, -1.0, 2.0]), Some([318.0 + 240.0, 242.0 - 245.0]));
        assert_eq!(cam.project([1.0, 1.0, 0.0]), None);
        assert_eq!(cam.project([1.0, 1.0, -3.0]), None);
        assert_eq!(cam.project([1.0, 1.0, f64::NAN]), None);
    }

    #[test]
    fn distortion_models() {
        let d8 = [0.1; 8];
        for (model, d, want) in [
            ("plumb_bob", &[0.0; 5][..], Distortion::None),
            ("", &[][..], Distortion::None),
            ("", &[0.1, 0.0, 0.0, 0.0, 0.0][..], Distortion::PlumbBob(vec![0.1, 0.0, 0.0, 0.0, 0.0])),
            ("rational_polynomial", &d8[..], Distortion::RationalPolynomial(d8.to_vec())),
            ("equidistant", &d8[..4], Distortion::Equidistant(d8[..4].to_vec())),
            ("equidistant", &[0.0; 4][..], Distortion::None),
        ] {
            let cam = PinholeCamera::from_camera_info(&CameraInfoLayout { distortion_model: model, d, ..info() });
            assert_eq!(cam.expect(model).distortion, want, "{model:?}");
        }
        for model in ["fisheye", "Plumb_Bob"] {
            let err =
                PinholeCamera::from_camera_info(&CameraInfoLayout { distortion_model: model, d: &[0.0; 5], ..info() });
            assert!(matches!(err, Err(CameraError::UnknownDistortionModel(ref m)) if m == model));
        }
    }

    #[test]
    fn invalid_calibrations() {
        let check = |i: CameraInfoLayout| PinholeCamera::from_camera_info(&i).expect_err("invalid");
        assert!(matches!(check(CameraInfoLayout { p: [0.0; 12], ..info() }), CameraError::Uncalibrated));
        assert!(matches!(check(CameraInfoLayout { k: [0.0; 9], ..info() }), CameraError::Uncalibrated));
        let mut k = info().k;
        k[0] = -500.0;
        assert!(matches!(check(CameraInfoLayout { k, ..info() }), CameraError::InvalidFocalLength { .. }));
        k[0] = 0.0;
        assert!(matches!(check(CameraInfoLayout { k, ..info() }), CameraError::InvalidFocalLength { .. }));
        k[0] = 500.0;
        k[4] = f64::INFINITY;
        assert!(matches!(check(CameraInfoLayout { k, ..info() }), CameraError::NonFinite("K")));
        let mut p = info().p;
        p[3] = f64::NAN;
        assert!(matches!(check(CameraInfoLayout { p, ..info() }), CameraError::NonFinite("P")));
        assert!(matches!(check(CameraInfoLayout { d: &[f64::NAN], ..info() }), CameraError::NonFinite("D")));
        assert!(matches!(
            check(CameraInfoLayout { width: 0, ..info() }),
            CameraError::ZeroSize { width: 0, height: 480 }
        ));
        assert!(matches!(check(CameraInfoLayout { height: 0, ..info() }), CameraError::ZeroSize { .. }));
        assert!(matches!(PinholeCamera::from_kitti_p2([0.0; 12], 10, 10), Err(CameraError::Uncalibrated)));
    }

    /// Issue 13: CameraInfo.d had no length limit (and the model name is
    /// echoed in the error of an unknown model).
    #[test]
    fn distortion_is_bounded() {
        let d = vec![0.0; MAX_DISTORTION_COEFFICIENTS];
        assert!(PinholeCamera::from_camera_info(&CameraInfoLayout { distortion_model: "", d: &d, ..info() }).is_ok());
        let d = vec![0.0; 1_000_000];
        let e = PinholeCamera::from_camera_info(&CameraInfoLayout { d: &d, ..info() }).unwrap_err();
        assert!(matches!(e, CameraError::TooManyCoefficients(1_000_000)), "{e}");
        let long = "x".repeat(100_000);
        let e = PinholeCamera::from_camera_info(&CameraInfoLayout { distortion_model: &long, ..info() }).unwrap_err();
        assert!(matches!(e, CameraError::LongModelName(100_000)) && e.to_string().len() < 100, "{e}");
    }

    /// The 8 corners of a KITTI camera-frame box: `(x, y, z)` is the bottom
    /// centre, the box spans `y - h ..= y` (y points down), `l` runs along the
    /// box's x axis and `w` along its z axis, rotated by `ry` about y.
    fn box_corners([x, y, z, l, h, w, ry]: [f64; 7]) -> [[f64; 3]; 8] {
        let (s, c) = ry.sin_cos();
        let mut out = [[0.0; 3]; 8];
        for (i, corner) in out.iter_mut().enumerate() {
            let dx = if i & 1 == 0 { l / 2.0 } else { -l / 2.0 };
            let dy = if i & 2 == 0 { 0.0 } else { -h };
            let dz = if i & 4 == 0 { w / 2.0 } else { -w / 2.0 };
            *corner = [x + c * dx + s * dz, y + dy, z - s * dx + c * dz];
        }
        out
    }

    #[test]
    fn kitti_p2_matches_the_dataset_projection() {
        let Some(dir) = kitti_dir() else { return };
        let cam = PinholeCamera::from_kitti_p2(kitti_p2(&dir), KITTI_W, KITTI_H).expect("KITTI P2 is valid");
        assert_eq!((cam.fx, cam.cx, cam.cy), (721.5377, 609.5593, 172.854));
        assert_eq!(cam.distortion, Distortion::None);

        let text = std::fs::read_to_string(dir.join("info.json")).expect("read info.json");
        let info: serde_json::Value = serde_json::from_str(&text).expect("info.json is JSON");
        let frame = &info["data_list"][0];

        // info.json's cam2img is the same P2; its lidar2img is P2 · lidar2cam,
        // so projecting a camera point both ways must agree.
        let num = |v: &serde_json::Value| v.as_f64().expect("number");
        let cam2img: Vec<f64> = (0..3)
            .flat_map(|r| (0..4).map(move |c| (r, c)))
            .map(|(r, c)| num(&frame["images"]["CAM2"]["cam2img"][r][c]))
            .collect();
        assert_eq!(cam2img, cam.p);

        // The dataset's 2D boxes were drawn around the image of each 3D box;
        // projecting our corners must reproduce them. Only objects marked
        // non-truncated count, and only edges whose projection lies inside the
        // image (the labelled box is clipped to the image, ours is not).
        // Measured worst deviation: 1.50 px (instance 3, bottom edge), from
        // label rounding; 2 px leaves margin without hiding a wrong projection
        // (a wrong principal point or a mix-up of axes costs tens of pixels).
        const TOLERANCE_PX: f64 = 2.0;
        let (mut objects, mut edges) = (0, 0);
        for inst in frame["instances"].as_array().expect("instances") {
            let b3: Vec<f64> = inst["bbox_3d"].as_array().expect("bbox_3d").iter().map(num).collect();
            let b2: Vec<f64> = inst["bbox"].as_array().expect("bbox").iter().map(num).collect();
            if num(&inst["truncated"]) != 0.0 || b3[3] <= 0.0 {
                continue; // truncated, or a "DontCare" region without a 3D box
            }
            let uv: Vec<[f64; 2]> = box_corners(b3[..7].try_into().expect("7 values"))
                .iter()
                .map(|&c| cam.project(c).expect("in front"))
                .collect();
            let lo = |k: usize| uv.iter().map(|p| p[k]).fold(f64::INFINITY, f64::min);
            let hi = |k: usize| uv.iter().map(|p| p[k]).fold(f64::NEG_INFINITY, f64::max);
            let ours = [lo(0), lo(1), hi(0), hi(1)];
            let limits = [f64::from(KITTI_W - 1), f64::from(KITTI_H - 1)];
            objects += 1;
            for (k, (&a, &b)) in ours.iter().zip(&b2).enumerate() {
                if (0.0..=limits[k % 2]).contains(&a) {
                    edges += 1;
                    assert!(
                        (a - b).abs() <= TOLERANCE_PX,
                        "instance {}: edge {k} projected {a:.2}, labelled {b:.2}",
                        inst["index"]
                    );
                }
            }
        }
        // Four non-truncated cars; one's bottom edge falls below the image.
        assert_eq!((objects, edges), (4, 15));
    }
}
