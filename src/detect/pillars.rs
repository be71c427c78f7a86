//! Deterministic pillarization (PointPillars, Lang et al. 2019): points are
//! binned into vertical pillars on a BEV grid; each non-empty pillar keeps up
//! to `max_points_per_pillar` points, each decorated with 10 features —
//! x, y, z, intensity, the offsets to the pillar's point mean (xc, yc, zc)
//! and the offsets to the pillar's geometric centre (xp, yp, zp) — as
//! OpenPCDet's `PillarVFE` with `use_absolute_xyz` and `with_distance=False`.
//!
//! Determinism: points are visited in input order, pillars are numbered in
//! order of their first point, the first `max_points_per_pillar` points of a
//! pillar are kept and pillars past `max_pillars` are dropped (both counted in
//! the report), so the same cloud always gives the same tensor.

use crate::cloud::Points;
use std::collections::HashMap;

/// Number of features per point in [`Pillars::features`].
pub const POINT_FEATURES: usize = 10;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PillarConfig {
    /// [x_min, y_min, z_min, x_max, y_max, z_max] in the LiDAR frame [m].
    pub range: [f64; 6],
    /// Pillar footprint [x, y] in metres; the range must hold a whole number of them.
    pub pillar_size: [f64; 2],
    pub max_points_per_pillar: usize,
    pub max_pillars: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PillarError {
    #[error("range {0:?} must have min < max on every axis")]
    Range([f64; 6]),
    #[error("pillar size {size:?} must be > 0 and divide the range extent ({extent:?}) into whole cells")]
    Size { size: [f64; 2], extent: [f64; 2] },
    #[error("max_points_per_pillar and max_pillars must be >= 1")]
    Limits,
}

impl PillarConfig {
    /// The BEV grid (width along x, height along y), checked.
    pub fn grid(&self) -> Result<(usize, usize), PillarError> {
        let r = self.range;
        if !(r[0] < r[3] && r[1] < r[4] && r[2] < r[5]) || r.iter().any(|v| !v.is_finite()) {
            return Err(PillarError::Range(r));
        }
        let extent = [r[3] - r[0], r[4] - r[1]];
        let cells = [extent[0] / self.pillar_size[0], extent[1] / self.pillar_size[1]];
        let whole = |c: f64| c.is_finite() && c >= 1.0 && (c - c.round()).abs() < 1e-6;
        if !(self.pillar_size[0] > 0.0 && self.pillar_size[1] > 0.0 && whole(cells[0]) && whole(cells[1])) {
            return Err(PillarError::Size { size: self.pillar_size, extent });
        }
        if self.max_points_per_pillar == 0 || self.max_pillars == 0 {
            return Err(PillarError::Limits);
        }
        Ok((cells[0].round() as usize, cells[1].round() as usize))
    }
}

/// Pillarized cloud: `features` is [pillars, max_points_per_pillar, POINT_FEATURES]
/// row-major with zero padding; `coords` are (row = y index, col = x index).
#[derive(Debug, Clone, PartialEq)]
pub struct Pillars {
    pub features: Vec<f32>,
    pub coords: Vec<(u32, u32)>,
    pub num_points: Vec<u32>,
    pub grid: (usize, usize),
    pub max_points_per_pillar: usize,
    /// Points outside the range or non-finite.
    pub points_outside: usize,
    /// Points beyond `max_points_per_pillar` in their pillar.
    pub points_dropped: usize,
    /// Points in pillars beyond `max_pillars`.
    pub points_in_dropped_pillars: usize,
}

impl Pillars {
    pub fn len(&self) -> usize {
        self.coords.len()
    }
    pub fn is_empty(&self) -> bool {
        self.coords.is_empty()
    }
}

pub fn pillarize(points: &Points, cfg: &PillarConfig) -> Result<Pillars, PillarError> {
    let (width, height) = cfg.grid()?;
    let r = cfg.range;
    let [sx, sy] = cfg.pillar_size;
    let m = cfg.max_points_per_pillar;
    let mut index: HashMap<(u32, u32), usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut coords = Vec::new();
    let (mut outside, mut dropped, mut in_dropped_pillars) = (0, 0, 0);
    for i in 0..points.len() {
        let (x, y, z) = (points.x[i] as f64, points.y[i] as f64, points.z[i] as f64);
        if !(x >= r[0] && x < r[3] && y >= r[1] && y < r[4] && z >= r[2] && z < r[5]) {
            outside += 1; // NaN fails every comparison and lands here too
            continue;
        }
        let cx = (((x - r[0]) / sx) as usize).min(width - 1) as u32;
        let cy = (((y - r[1]) / sy) as usize).min(height - 1) as u32;
        let slot = match index.get(&(cy, cx)) {
            Some(&s) => s,
            None if members.len() < cfg.max_pillars => {
                index.insert((cy, cx), members.len());
                members.push(Vec::new());
                coords.push((cy, cx));
                members.len() - 1
            }
            None => {
                in_dropped_pillars += 1;
                continue;
            }
        };
        if members[slot].len() < m {
            members[slot].push(i);
        } else {
            dropped += 1;
        }
    }

    let mut features = vec![0f32; members.len() * m * POINT_FEATURES];
    for (p, idx) in members.iter().enumerate() {
        let n = idx.len() as f64;
        let mean = idx.iter().fold([0.0; 3], |acc, &i| {
            [acc[0] + points.x[i] as f64 / n, acc[1] + points.y[i] as f64 / n, acc[2] + points.z[i] as f64 / n]
        });
        let (cy, cx) = coords[p];
        let centre = [r[0] + (cx as f64 + 0.5) * sx, r[1] + (cy as f64 + 0.5) * sy, (r[2] + r[5]) / 2.0];
        for (k, &i) in idx.iter().enumerate() {
            let xyz = [points.x[i] as f64, points.y[i] as f64, points.z[i] as f64];
            let f = [
                xyz[0],
                xyz[1],
                xyz[2],
                points.intensity[i] as f64,
                xyz[0] - mean[0],
                xyz[1] - mean[1],
                xyz[2] - mean[2],
                xyz[0] - centre[0],
                xyz[1] - centre[1],
                xyz[2] - centre[2],
            ];
            let at = (p * m + k) * POINT_FEATURES;
            for (d, v) in f.iter().enumerate() {
                features[at + d] = *v as f32;
            }
        }
    }
    Ok(Pillars {
        features,
        num_points: members.iter().map(|v| v.len() as u32).collect(),
        coords,
        grid: (width, height),
        max_points_per_pillar: m,
        points_outside: outside,
        points_dropped: dropped,
        points_in_dropped_pillars: in_dropped_pillars,
    })
}

/// The pillars of B frames in one set of arrays, as OpenPCDet batches
/// voxels: features and point counts of every frame's pillars one after
/// another, each pillar's coordinates led by its frame's batch index. One
/// pillar-encoder pass over `features` then sees every frame's pillars (its
/// batch-norm statistics over the whole batch), and the scatter places
/// each pillar in its frame's BEV map.
#[derive(Debug, Clone, PartialEq)]
pub struct PillarBatch {
    /// [pillars, max_points_per_pillar, POINT_FEATURES] row-major, zero padded.
    pub features: Vec<f32>,
    pub num_points: Vec<u32>,
    /// (batch index, row = y index, col = x index).
    pub coords: Vec<(u32, u32, u32)>,
    pub batch_size: usize,
    pub grid: (usize, usize),
    pub max_points_per_pillar: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PillarBatchError {
    #[error("a batch needs at least one frame")]
    Empty,
    #[error("frame {index} has grid {grid:?} and {max_points} points per pillar, frame 0 has {first_grid:?} and {first_max_points}")]
    Mismatch { index: usize, grid: (usize, usize), max_points: usize, first_grid: (usize, usize), first_max_points: usize },
}

impl PillarBatch {
    /// Concatenates frames pillarized with the same config, in order.
    pub fn collate(frames: Vec<Pillars>) -> Result<Self, PillarBatchError> {
        let first = frames.first().ok_or(PillarBatchError::Empty)?;
        let (grid, m) = (first.grid, first.max_points_per_pillar);
        let total: usize = frames.iter().map(Pillars::len).sum();
        let mut out = Self {
            features: Vec::with_capacity(total * m * POINT_FEATURES),
            num_points: Vec::with_capacity(total),
            coords: Vec::with_capacity(total),
            batch_size: frames.len(),
            grid,
            max_points_per_pillar: m,
        };
        for (b, p) in frames.into_iter().enumerate() {
            if p.grid != grid || p.max_points_per_pillar != m {
                return Err(PillarBatchError::Mismatch { index: b, grid: p.grid, max_points: p.max_points_per_pillar, first_grid: grid, first_max_points: m });
            }
            out.features.extend_from_slice(&p.features);
            out.num_points.extend_from_slice(&p.num_points);
            out.coords.extend(p.coords.iter().map(|&(y, x)| (b as u32, y, x)));
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.coords.len()
    }

    pub fn is_empty(&self) -> bool {
        self.coords.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PillarConfig {
        PillarConfig { range: [0.0, -4.0, -3.0, 8.0, 4.0, 1.0], pillar_size: [1.0, 1.0], max_points_per_pillar: 3, max_pillars: 4 }
    }

    fn cloud(pts: &[[f32; 4]]) -> Points {
        let mut p = Points::default();
        for q in pts {
            p.x.push(q[0]);
            p.y.push(q[1]);
            p.z.push(q[2]);
            p.intensity.push(q[3]);
        }
        p
    }

    #[test]
    fn features_offsets_and_order_are_as_documented() {
        let p = cloud(&[[0.5, 0.5, -1.0, 0.2], [0.7, 0.1, -2.0, 0.4], [3.2, -3.9, 0.0, 1.0], [f32::NAN, 0.0, 0.0, 0.0], [9.0, 0.0, 0.0, 0.0]]);
        let out = pillarize(&p, &cfg()).unwrap();
        assert_eq!(out.grid, (8, 8));
        assert_eq!(out.coords, [(4, 0), (0, 3)]);
        assert_eq!(out.num_points, [2, 1]);
        assert_eq!(out.points_outside, 2);
        let f = |p: usize, k: usize| &out.features[(p * 3 + k) * POINT_FEATURES..(p * 3 + k + 1) * POINT_FEATURES];
        // first point of pillar 0: mean (0.6, 0.3, -1.5), centre (0.5, 0.5, -1.0)
        let want = [0.5, 0.5, -1.0, 0.2, -0.1, 0.2, 0.5, 0.0, 0.0, 0.0];
        for (a, b) in f(0, 0).iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{:?}", f(0, 0));
        }
        assert!(f(0, 2).iter().all(|&v| v == 0.0), "padding is zero");
    }

    #[test]
    fn limits_drop_deterministically_and_bad_configs_fail() {
        let pts: Vec<[f32; 4]> = (0..40).map(|i| [(i % 8) as f32 + 0.5, (i / 8) as f32 - 3.5, 0.0, 0.0]).collect();
        let mut many = pts.clone();
        many.extend(std::iter::repeat([0.5, -3.5, 0.0, 0.0]).take(5));
        let out = pillarize(&cloud(&many), &cfg()).unwrap();
        assert_eq!(out.len(), 4, "max_pillars");
        assert_eq!(out.coords, [(0, 0), (0, 1), (0, 2), (0, 3)], "pillars in order of first point");
        assert_eq!(out.num_points[0], 3);
        assert_eq!(out.points_dropped, 3);
        assert_eq!(out.points_in_dropped_pillars, 36);
        assert_eq!(pillarize(&cloud(&many), &cfg()).unwrap(), out, "deterministic");

        let mut bad = cfg();
        bad.pillar_size = [0.3, 1.0];
        assert!(matches!(bad.grid(), Err(PillarError::Size { .. })));
        bad = cfg();
        bad.range[3] = -1.0;
        assert!(matches!(bad.grid(), Err(PillarError::Range(_))));
        bad = cfg();
        bad.max_pillars = 0;
        assert_eq!(bad.grid(), Err(PillarError::Limits));
    }

    #[test]
    fn batches_keep_frame_order_and_tag_coordinates_with_the_frame() {
        let a = pillarize(&cloud(&[[0.5, 0.5, -1.0, 0.2], [3.2, -3.9, 0.0, 1.0]]), &cfg()).unwrap();
        let b = pillarize(&cloud(&[[7.5, 3.5, 0.0, 0.0]]), &cfg()).unwrap();
        let batch = PillarBatch::collate(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(batch.batch_size, 2);
        assert_eq!(batch.coords, [(0, 4, 0), (0, 0, 3), (1, 7, 7)]);
        assert_eq!(batch.num_points, [1, 1, 1]);
        assert_eq!(batch.features, [a.features.clone(), b.features.clone()].concat());
        let one = PillarBatch::collate(vec![a.clone()]).unwrap();
        assert_eq!((one.features, one.num_points), (a.features.clone(), a.num_points.clone()));
        let mut other = cfg();
        other.max_points_per_pillar = 5;
        let c = pillarize(&cloud(&[[0.5, 0.5, -1.0, 0.2]]), &other).unwrap();
        assert!(matches!(PillarBatch::collate(vec![a, c]), Err(PillarBatchError::Mismatch { index: 1, .. })));
        assert_eq!(PillarBatch::collate(Vec::new()), Err(PillarBatchError::Empty));
    }

    #[test]
    fn kitti_pointpillars_grid_on_the_real_frame() {
        let Some(dir) = crate::cloud::test_data::kitti_dir() else { return };
        let pts = crate::cloud::kitti_bin::read(dir.join("000008.bin")).unwrap();
        let c = PillarConfig {
            range: [0.0, -39.68, -3.0, 69.12, 39.68, 1.0],
            pillar_size: [0.16, 0.16],
            max_points_per_pillar: 32,
            max_pillars: 16_000,
        };
        let out = pillarize(&pts, &c).unwrap();
        assert_eq!(out.grid, (432, 496));
        let kept: u32 = out.num_points.iter().sum();
        assert_eq!(kept as usize + out.points_outside + out.points_dropped + out.points_in_dropped_pillars, pts.len());
        assert!(out.len() > 3_000 && out.len() < 16_000, "{} pillars", out.len());
    }
}
