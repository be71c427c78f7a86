//! KITTI velodyne `.bin` files: a headerless array of little-endian f32
//! `x, y, z, reflectance`, 16 bytes per point.
//!
//! This is the format of the evaluation data and of many public lidar dumps,
//! so the offline tools read and write it directly. Reflectance (0..1) goes to
//! `intensity` unchanged; the files carry no ring or time.

use std::path::Path;

use super::{CloudError, Point, Points};

const POINT_BYTES: usize = 16;

/// Reads a `.bin` file.
pub fn read(path: impl AsRef<Path>) -> Result<Points, CloudError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| CloudError::Io { path: path.to_owned(), source })?;
    from_bytes(&bytes)
}

/// Parses the contents of a `.bin` file. Points are kept as stored, including
/// any non-finite ones, so that a read/write cycle reproduces the file.
pub fn from_bytes(bytes: &[u8]) -> Result<Points, CloudError> {
    if !bytes.len().is_multiple_of(POINT_BYTES) {
        return Err(CloudError::BinLength { len: bytes.len() });
    }
    let mut points = Points::with_capacity(bytes.len() / POINT_BYTES, false, false);
    for p in bytes.chunks_exact(POINT_BYTES) {
        let f = |o: usize| p.get(o..o + 4).and_then(|s| s.try_into().ok()).map_or(0.0, f32::from_le_bytes);
        points.push(Point { x: f(0), y: f(4), z: f(8), intensity: f(12), ..Point::default() });
    }
    Ok(points)
}

/// The `.bin` encoding of `points` (ring and time are not representable and
/// are dropped; arrays of unequal length are cut to the shortest).
pub fn to_bytes(points: &Points) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * POINT_BYTES);
    for p in (0..).map_while(|i| points.get(i)) {
        for v in [p.x, p.y, p.z, p.intensity] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Writes `points` as a `.bin` file (see [`to_bytes`]).
pub fn write(path: impl AsRef<Path>, points: &Points) -> Result<(), CloudError> {
    let path = path.as_ref();
    std::fs::write(path, to_bytes(points)).map_err(|source| CloudError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::test_data::kitti_dir;

    #[test]
    fn real_kitti_frame() {
        let Some(dir) = kitti_dir() else { return };
        let p = read(dir.join("000008.bin")).expect("read KITTI cloud");
        assert_eq!(p.len(), 17_238);
        let (min, max) = p.x.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!((min - 2.889).abs() < 1e-3 && (max - 76.835).abs() < 1e-3, "x range {min}..{max}");
        assert!(p.intensity.iter().all(|i| (0.0..=1.0).contains(i)), "KITTI reflectance is 0..1");
        assert!(p.ring.is_none() && p.time.is_none());
    }

    #[test]
    fn write_then_read_is_identity() {
        let mut p = Points::default();
        p.push(Point { x: 1.5, y: -2.0, z: 0.25, intensity: 0.5, ..Point::default() });
        p.push(Point { x: f32::MAX, y: f32::MIN_POSITIVE, z: -0.0, intensity: 1.0, ..Point::default() });
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cloud.bin");
        write(&path, &p).expect("write");
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(32));
        assert_eq!(read(&path).expect("read back"), p);
    }

    #[test]
    fn layout_is_little_endian_xyzr() {
        let mut bytes = Vec::new();
        for v in [1.0f32, 2.0, 3.0, 0.5] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let p = from_bytes(&bytes).expect("one point");
        assert_eq!(p.get(0), Some(Point { x: 1.0, y: 2.0, z: 3.0, intensity: 0.5, ..Point::default() }));
        assert_eq!(to_bytes(&p), bytes);
        assert!(from_bytes(&[]).expect("empty file is an empty cloud").is_empty());
    }

    #[test]
    fn length_must_be_a_multiple_of_16() {
        for len in [1, 15, 17, 33] {
            assert!(matches!(from_bytes(&vec![0; len]), Err(CloudError::BinLength { len: l }) if l == len));
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read("/nonexistent/cloud.bin").expect_err("no such file");
        assert!(matches!(err, CloudError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/cloud.bin"), "{err}");
    }
}
