//! Point clouds as plain data.
//!
//! Every lidar source (a ROS `sensor_msgs/PointCloud2`, a KITTI `.bin` file, a
//! bag) is decoded into one [`Points`] struct so that perception code never
//! sees wire formats. The layout is structure-of-arrays because the consumers
//! (voxelisation, range filters, statistics) sweep one coordinate at a time.
//!
//! # Conventions
//!
//! * Coordinates are metres in the sensor frame, as stored in the source.
//! * `intensity` keeps the source's scale rather than inventing a common one,
//!   because lidars disagree about what intensity means: float fields are
//!   copied as-is (KITTI reflectance is 0..1, Velodyne/Ouster floats are
//!   0..255 or larger), `uint8` fields become their value (0..255), `uint16`
//!   fields their value (0..65535). A source without intensity gives zeros.
//! * `ring` is the laser channel index when the source has one.
//! * `time` is the per-point time offset in seconds; see
//!   [`pointcloud2::decode`] for how the source's time field is converted.
//! * All arrays present have the same length; [`Points::len`] is `x.len()`.
//!   Code that builds `Points` through [`Points::push`] keeps this invariant.

pub mod kitti_bin;
pub mod pointcloud2;

use std::path::PathBuf;

/// Why a cloud could not be decoded, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("point cloud has no `{0}` field")]
    MissingField(&'static str),
    #[error("field `{field}` has count {count}; only count 1 is supported")]
    BadFieldCount { field: String, count: u32 },
    #[error("field `{field}` has unsupported datatype {datatype} for this field")]
    UnsupportedDatatype { field: String, datatype: u8 },
    #[error("field `{field}` (offset {offset}, {size} bytes) extends beyond point_step {point_step}")]
    FieldOutOfBounds { field: String, offset: u32, size: u32, point_step: u32 },
    #[error("point_step is 0 but the cloud has width {width}")]
    ZeroPointStep { width: u32 },
    #[error("row_step {row_step} is smaller than width {width} x point_step {point_step}")]
    RowStepTooSmall { row_step: u32, width: u32, point_step: u32 },
    #[error("cloud data has {len} bytes but its layout needs {needed}")]
    DataTooShort { len: usize, needed: u64 },
    #[error("cloud size does not fit in memory addresses on this platform")]
    SizeOverflow,
    #[error("KITTI .bin length {len} is not a multiple of 16 bytes (x, y, z, reflectance as f32)")]
    BinLength { len: usize },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// One point, used to push into or read from [`Points`] without juggling six
/// arrays. `ring` and `time` are ignored by `Points` that do not carry them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub intensity: f32,
    pub ring: u16,
    pub time: f32,
}

/// A point cloud in structure-of-arrays form (see the module docs for units).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Points {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub z: Vec<f32>,
    pub intensity: Vec<f32>,
    pub ring: Option<Vec<u16>>,
    pub time: Option<Vec<f32>>,
}

impl Points {
    /// Empty cloud with room for `n` points; `ring`/`time` choose whether
    /// those optional channels exist.
    pub fn with_capacity(n: usize, ring: bool, time: bool) -> Self {
        Self {
            x: Vec::with_capacity(n),
            y: Vec::with_capacity(n),
            z: Vec::with_capacity(n),
            intensity: Vec::with_capacity(n),
            ring: ring.then(|| Vec::with_capacity(n)),
            time: time.then(|| Vec::with_capacity(n)),
        }
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Appends one point to every array this cloud carries.
    #[inline]
    pub fn push(&mut self, p: Point) {
        self.x.push(p.x);
        self.y.push(p.y);
        self.z.push(p.z);
        self.intensity.push(p.intensity);
        if let Some(r) = &mut self.ring {
            r.push(p.ring);
        }
        if let Some(t) = &mut self.time {
            t.push(p.time);
        }
    }

    /// Point `i`, or `None` past the end (absent channels read as 0).
    pub fn get(&self, i: usize) -> Option<Point> {
        Some(Point {
            x: *self.x.get(i)?,
            y: *self.y.get(i)?,
            z: *self.z.get(i)?,
            intensity: *self.intensity.get(i)?,
            ring: self.ring.as_ref().map_or(Some(0), |r| r.get(i).copied())?,
            time: self.time.as_ref().map_or(Some(0.0), |t| t.get(i).copied())?,
        })
    }

    /// Keeps the points whose 3D Euclidean range `sqrt(x² + y² + z²)` lies in
    /// `[min_m, max_m]` (both inclusive).
    ///
    /// 3D rather than horizontal range, so that the bounds mean distance from
    /// the sensor whatever its mounting height or tilt.
    pub fn retain_range(&mut self, min_m: f32, max_m: f32) {
        // Compare squared ranges to skip a sqrt per point; the sign tests keep
        // the meaning of negative bounds (r >= -1 always holds, r <= -1 never).
        let (min2, max2) = (min_m * min_m, max_m * max_m);
        let keep: Vec<bool> = self
            .x
            .iter()
            .zip(&self.y)
            .zip(&self.z)
            .map(|((x, y), z)| {
                let r2 = x * x + y * y + z * z;
                (min_m <= 0.0 || r2 >= min2) && max_m >= 0.0 && r2 <= max2
            })
            .collect();
        self.retain_mask(&keep);
    }

    /// Keeps point `i` iff `keep[i]`, in every channel.
    pub(crate) fn retain_mask(&mut self, keep: &[bool]) {
        retain_by(&mut self.x, keep);
        retain_by(&mut self.y, keep);
        retain_by(&mut self.z, keep);
        retain_by(&mut self.intensity, keep);
        if let Some(r) = &mut self.ring {
            retain_by(r, keep);
        }
        if let Some(t) = &mut self.time {
            retain_by(t, keep);
        }
    }
}

/// `Vec::retain` driven by a mask; elements beyond the mask (only possible if
/// someone broke the equal-length invariant) are dropped rather than panicking.
fn retain_by<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut mask = keep.iter();
    v.retain(|_| mask.next().copied().unwrap_or(false));
}

/// Where the repository's shared test data lives, for tests across modules.
#[cfg(test)]
pub(crate) mod test_data {
    use std::path::PathBuf;

    /// Whether a test may skip for missing data: never under CI, elsewhere
    /// only with `ELOSS_ALLOW_SKIPS=1` (tests/common's rule), so that the
    /// real-data tests cannot silently stop running.
    pub(crate) fn skips_allowed() -> bool {
        std::env::var_os("CI").is_none() && std::env::var("ELOSS_ALLOW_SKIPS").as_deref() == Ok("1")
    }

    /// `$CARGO_MANIFEST_DIR/../shared/data/kitti_000008`, or `None` (with a
    /// note) when it is absent and [`skips_allowed`]; otherwise a missing
    /// folder fails the test.
    pub(crate) fn kitti_dir() -> Option<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kitti_000008");
        if dir.is_dir() {
            return Some(dir);
        }
        if !skips_allowed() {
            panic!("KITTI test data missing at {}; or set ELOSS_ALLOW_SKIPS=1 to skip the tests that need it", dir.display());
        }
        skip_note(&format!("KITTI test data not found at {}", dir.display()));
        None
    }

    /// Prints `SKIPPED: <why>` straight to stderr (the harness captures
    /// `eprintln!` of passing tests, which would hide the skip).
    pub(crate) fn skip_note(why: &str) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: {why}; ELOSS_ALLOW_SKIPS=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(x: f32, y: f32, z: f32) -> Point {
        Point { x, y, z, intensity: x, ring: x as u16, time: -x }
    }

    #[test]
    fn push_keeps_optional_channels_in_step() {
        let mut p = Points::with_capacity(2, true, false);
        p.push(pt(1.0, 2.0, 3.0));
        p.push(pt(4.0, 5.0, 6.0));
        assert_eq!(p.len(), 2);
        assert!(!p.is_empty());
        assert_eq!(p.ring.as_deref(), Some(&[1u16, 4][..]));
        assert!(p.time.is_none());
        assert_eq!(p.get(1).map(|q| q.z), Some(6.0));
        assert_eq!(p.get(1).map(|q| q.time), Some(0.0), "absent time reads as 0");
        assert_eq!(p.get(2), None);
        assert!(Points::default().is_empty());
    }

    #[test]
    fn retain_range_uses_inclusive_3d_range() {
        let mut p = Points::with_capacity(5, true, true);
        // ranges: 1, 3 (2,2,1), 5 (0,3,4), 10, 0
        for q in [pt(1.0, 0.0, 0.0), pt(2.0, 2.0, 1.0), pt(0.0, 3.0, 4.0), pt(0.0, 0.0, 10.0), pt(0.0, 0.0, 0.0)] {
            p.push(q);
        }
        p.retain_range(3.0, 5.0);
        assert_eq!(p.x, vec![2.0, 0.0]);
        assert_eq!(p.z, vec![1.0, 4.0]);
        assert_eq!(p.intensity, vec![2.0, 0.0]);
        assert_eq!(p.ring.as_deref(), Some(&[2u16, 0][..]));
        assert_eq!(p.time.as_deref(), Some(&[-2.0f32, -0.0][..]));
    }

    #[test]
    fn retain_range_with_empty_interval_drops_everything() {
        let mut p = Points::default();
        p.push(pt(1.0, 0.0, 0.0));
        p.retain_range(5.0, 1.0);
        assert!(p.is_empty());
        assert!(p.intensity.is_empty());
    }
}
