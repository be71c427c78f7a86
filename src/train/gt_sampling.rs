//! Ground-truth sampling (OpenPCDet's `gt_sampling` / `DataBaseSampler`,
//! the first augmentation of its KITTI PointPillars recipe, before the
//! global flip, rotation and scaling): objects of the [`GtDatabase`] are
//! pasted into a training frame at the pose they had in their own frame.
//!
//! Per frame, for each class in the model's order with a target count n > 0:
//! 1. n objects are drawn from the class's pool (the database less objects
//!    with fewer than the class's `min_points` points and, with
//!    `drop_unknown_difficulty`, those of no KITTI difficulty). As
//!    OpenPCDet's pointer into a reshuffled index list, the draws walk
//!    through seeded permutations of the pool: sample s takes places
//!    s·n … s·n + n − 1 of that endless sequence, so every object is used
//!    once per pass and a sample's draw depends only on the seed and s
//!    (whatever thread prepares it, in whatever order). An object drawn
//!    twice across the end of a pass counts once (OpenPCDet instead draws
//!    fewer at the end of a pass); a pool smaller than n gives all of it.
//! 2. A drawn box is pasted only if its BEV footprint (rotated) overlaps
//!    none of the boxes already in the frame — every labelled box but
//!    DontCare, and the objects pasted for earlier classes — nor any other
//!    box drawn for this class (both of an overlapping pair are dropped, as
//!    OpenPCDet's `iou1.max + iou2.max == 0`). So fewer than n may be pasted.
//! 3. The frame's points inside a pasted box (3D) are removed, the pasted
//!    objects' points are put in front of the cloud, their boxes added to
//!    the ground truth.
//!
//! Not done: OpenPCDet's `USE_ROAD_PLANE` (moving a pasted box onto the
//! target frame's road plane), which needs KITTI's `planes/` files.

use super::data::TrainFrame;
use super::gt_database::{GtDatabase, POINT_FLOATS};
use crate::cloud::{Point, Points};
use crate::dataset::sim::Rng;
use crate::detect::iou::bev_intersection_area;
use crate::geometry::Box3D;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `augment.gt_sampling` of a training config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GtSamplingConfig {
    pub enabled: bool,
    /// Objects to draw per frame and class (OpenPCDet's `SAMPLE_GROUPS`;
    /// KITTI PointPillars: Car 15, Pedestrian 15, Cyclist 15). A model class
    /// not listed gets none.
    pub sample_groups: BTreeMap<String, usize>,
    /// Fewest points for an object to be drawn (`filter_by_min_points`; 5 each).
    pub min_points: BTreeMap<String, usize>,
    /// Drop objects of no KITTI difficulty (`filter_by_difficulty: [-1]`).
    pub drop_unknown_difficulty: bool,
    /// Folder of the cached databases; empty: `$ELOSS_CACHE/gt_database`, else `<run>/gt_database`.
    pub database_dir: String,
}

impl Default for GtSamplingConfig {
    /// Off, with OpenPCDet's KITTI PointPillars values (`enabled: true` alone turns them on).
    fn default() -> Self {
        let per_class = |n: usize| ["Car", "Pedestrian", "Cyclist"].iter().map(|c| (c.to_string(), n)).collect();
        Self { enabled: false, sample_groups: per_class(15), min_points: per_class(5), drop_unknown_difficulty: true, database_dir: String::new() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GtSamplingError {
    #[error("gt_sampling names class `{0}`, which the model ({1}) does not detect")]
    Class(String, String),
}

/// One class's draws.
#[derive(Debug, Clone)]
struct Group {
    class: usize,
    count: usize,
    /// Database indices of the objects that pass the filters.
    pool: Vec<usize>,
}

/// What was pasted into a frame (database indices, in paste order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pasted {
    pub objects: Vec<usize>,
    /// Frame points removed for lying inside a pasted box.
    pub removed_points: usize,
}

pub struct GtSampler {
    db: Arc<GtDatabase>,
    groups: Vec<Group>,
}

impl GtSampler {
    /// The sampler of `cfg` over `db` (built for the model's classes).
    pub fn new(db: Arc<GtDatabase>, cfg: &GtSamplingConfig) -> Result<Self, GtSamplingError> {
        for name in cfg.sample_groups.keys().chain(cfg.min_points.keys()) {
            if !db.classes.contains(name) {
                return Err(GtSamplingError::Class(name.clone(), db.classes.join(", ")));
            }
        }
        let groups = db
            .classes
            .iter()
            .enumerate()
            .map(|(class, name)| {
                let min = cfg.min_points.get(name).copied().unwrap_or(0);
                let pool = (0..db.objects.len())
                    .filter(|&i| {
                        let o = &db.objects[i];
                        o.class == class && o.num_points >= min && !(cfg.drop_unknown_difficulty && o.difficulty < 0)
                    })
                    .collect();
                Group { class, count: cfg.sample_groups.get(name).copied().unwrap_or(0), pool }
            })
            .collect();
        Ok(Self { db, groups })
    }

    /// Objects each class can draw from after the filters, in the model's class order.
    pub fn pool_sizes(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.pool.len()).collect()
    }

    pub fn database(&self) -> &GtDatabase {
        &self.db
    }

    /// The (at most `count`, distinct) database indices sample `sample`
    /// draws for class `class` (see the module docs); none for a class
    /// without a count or objects.
    pub fn draw_class(&self, class: usize, seed: u64, sample: u64) -> Vec<usize> {
        self.groups.iter().find(|g| g.class == class && g.count > 0 && !g.pool.is_empty()).map_or_else(Vec::new, |g| self.draw(g, seed, sample))
    }

    fn draw(&self, group: &Group, seed: u64, sample: u64) -> Vec<usize> {
        let len = group.pool.len() as u64;
        let first = sample.wrapping_mul(group.count as u64);
        let mut perms: Vec<(u64, Vec<usize>)> = Vec::new();
        (0..group.count as u64)
            .map(|k| {
                let g = first.wrapping_add(k);
                let (pass, place) = (g / len, (g % len) as usize);
                if !perms.iter().any(|(p, _)| *p == pass) {
                    let mut perm = group.pool.clone();
                    let mut rng = Rng::stream(seed ^ 0x6774_5f73_616d_706c, pass.wrapping_mul(64).wrapping_add(group.class as u64));
                    for i in (1..perm.len()).rev() {
                        perm.swap(i, rng.below(i + 1));
                    }
                    perms.push((pass, perm));
                }
                perms.iter().find(|(p, _)| *p == pass).map_or(0, |(_, perm)| perm[place])
            })
            .fold(Vec::with_capacity(group.count), |mut out, i| {
                // across the end of a pass an object could come twice
                if !out.contains(&i) {
                    out.push(i);
                }
                out
            })
    }

    /// Pastes objects into `frame` as sample `sample` of a run seeded `seed`.
    pub fn paste(&self, frame: &mut TrainFrame, seed: u64, sample: u64) -> Pasted {
        let mut existing: Vec<Box3D> = frame.gts.iter().map(|(b, _)| *b).chain(frame.others.iter().copied()).collect();
        let mut pasted = Pasted::default();
        for group in self.groups.iter().filter(|g| g.count > 0 && !g.pool.is_empty()) {
            let drawn = self.draw(group, seed, sample);
            let boxes: Vec<Box3D> = drawn.iter().map(|&i| self.db.objects[i].bbox()).collect();
            let overlaps = |a: &Box3D, b: &Box3D| bev_intersection_area(a, b) > 0.0;
            let valid: Vec<usize> = (0..drawn.len())
                .filter(|&i| {
                    !existing.iter().any(|e| overlaps(&boxes[i], e)) && !(0..drawn.len()).any(|j| j != i && overlaps(&boxes[i], &boxes[j]))
                })
                .collect();
            for i in valid {
                existing.push(boxes[i]);
                frame.gts.push((boxes[i], group.class));
                pasted.objects.push(drawn[i]);
            }
        }
        if pasted.objects.is_empty() {
            return pasted;
        }
        let boxes: Vec<Box3D> = pasted.objects.iter().map(|&i| self.db.objects[i].bbox()).collect();
        let p = &frame.points;
        let keep: Vec<bool> = (0..p.len()).map(|i| !boxes.iter().any(|b| b.contains([p.x[i] as f64, p.y[i] as f64, p.z[i] as f64]))).collect();
        pasted.removed_points = keep.iter().filter(|k| !**k).count();
        let added: usize = pasted.objects.iter().map(|&i| self.db.objects[i].num_points).sum();
        let mut out = Points::with_capacity(added + p.len() - pasted.removed_points, p.ring.is_some(), p.time.is_some());
        for (&i, b) in pasted.objects.iter().zip(&boxes) {
            for q in self.db.object_points(i).chunks_exact(POINT_FLOATS) {
                let at = |k: usize| (q[k] as f64 + b.center[k]) as f32;
                out.push(Point { x: at(0), y: at(1), z: at(2), intensity: q[3], ring: 0, time: 0.0 });
            }
        }
        for (i, k) in keep.iter().enumerate() {
            if *k {
                out.push(p.get(i).unwrap_or_default());
            }
        }
        frame.points = out;
        pasted
    }
}

#[cfg(test)]
#[path = "gt_sampling_tests.rs"]
mod tests;
