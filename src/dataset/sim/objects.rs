//! Object classes, their KITTI size statistics, and their shapes.
//!
//! Sizes are *label* sizes (what an annotator's box measures), drawn from the
//! KITTI training-set statistics below. The shape built inside a label box is
//! inset by [`ANNOTATION_MARGIN_M`] on the sides and top, because real label
//! boxes are drawn slightly loose and because the LiDAR's range noise
//! (σ ≈ 2 cm) would otherwise push about half of the points on the outermost
//! faces outside a box that touches the surface exactly.
//!
//! ## KITTI class size statistics (metres, label boxes)
//!
//! | class      | length        | width         | height        |
//! |------------|---------------|---------------|---------------|
//! | Car        | 3.88 ± 0.43   | 1.63 ± 0.10   | 1.53 ± 0.14   |
//! | Van        | 5.07 ± 0.50*  | 1.90 ± 0.12*  | 2.21 ± 0.20*  |
//! | Truck      | 10.14 ± 2.50* | 2.59 ± 0.15*  | 3.25 ± 0.35*  |
//! | Pedestrian | 0.84 ± 0.22   | 0.66 ± 0.15   | 1.76 ± 0.11   |
//! | Cyclist    | 1.76 ± 0.18*  | 0.60 ± 0.12*  | 1.74 ± 0.09*  |
//!
//! Means: the per-class mean label sizes over the KITTI object training set
//! used by Frustum PointNets (Qi et al., CVPR 2018, `models/model_util.py`,
//! `g_type_mean_size`: Car 3.883/1.629/1.526, Van 5.068/1.901/2.205, Truck
//! 10.136/2.585/3.252, Pedestrian 0.844/0.661/1.763, Cyclist 1.763/0.597/1.737),
//! and KITTI label statistics quoted in many 3D detection code bases.
//! Standard deviations: Car from the commonly quoted KITTI car statistics
//! (l 0.43, w 0.10, h 0.14); Pedestrian l/w from the `CLASS_STD_SIZE` table
//! circulated with F-PointNet derivatives, with h widened to 0.11 m (human
//! height spread); entries marked * are our estimates (no published table
//! was found for them here) and are clamped at ±2.5 σ when sampling.

use serde::{Deserialize, Serialize};

use super::raycast::{Material, MaterialKind, Part, Shape};
use super::Rng;

/// Annotation margin between the shape and its label box (sides and top).
pub const ANNOTATION_MARGIN_M: f64 = 0.05;

/// The KITTI object classes the simulator places. Van and Truck are
/// distractors (KITTI evaluates Car, Pedestrian, Cyclist; Van is ignored for
/// Car and Truck counts as a different class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SimClass {
    Car,
    Van,
    Truck,
    Pedestrian,
    Cyclist,
}

/// Mean and standard deviation of [length, width, height] in metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeStats {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl SimClass {
    pub const ALL: [SimClass; 5] =
        [SimClass::Car, SimClass::Van, SimClass::Truck, SimClass::Pedestrian, SimClass::Cyclist];

    /// The KITTI label class of this simulated class.
    pub fn kitti(self) -> crate::dataset::kitti::ObjectClass {
        use crate::dataset::kitti::ObjectClass as K;
        match self {
            SimClass::Car => K::Car,
            SimClass::Van => K::Van,
            SimClass::Truck => K::Truck,
            SimClass::Pedestrian => K::Pedestrian,
            SimClass::Cyclist => K::Cyclist,
        }
    }

    /// Size statistics (see the module table for sources).
    pub fn size_stats(self) -> SizeStats {
        let (mean, std) = match self {
            SimClass::Car => ([3.88, 1.63, 1.53], [0.43, 0.10, 0.14]),
            SimClass::Van => ([5.07, 1.90, 2.21], [0.50, 0.12, 0.20]),
            SimClass::Truck => ([10.14, 2.59, 3.25], [2.50, 0.15, 0.35]),
            SimClass::Pedestrian => ([0.84, 0.66, 1.76], [0.22, 0.15, 0.11]),
            SimClass::Cyclist => ([1.76, 0.60, 1.74], [0.18, 0.12, 0.09]),
        };
        SizeStats { mean, std }
    }

    /// Draws a label size [l, w, h]: Gaussian per dimension clamped at
    /// ±2.5 σ, and never below a floor that keeps the shape buildable.
    pub fn sample_size(self, rng: &mut Rng) -> [f64; 3] {
        let s = self.size_stats();
        let floor = match self {
            SimClass::Pedestrian => [0.45, 0.40, 1.2],
            SimClass::Cyclist => [1.3, 0.50, 1.4],
            SimClass::Car => [2.5, 1.3, 1.2],
            SimClass::Van => [3.5, 1.5, 1.6],
            SimClass::Truck => [4.0, 2.0, 2.3],
        };
        let mut out = [0.0; 3];
        for k in 0..3 {
            out[k] = rng.normal_clamped(s.mean[k], s.std[k], 2.5).max(floor[k]);
        }
        out
    }

    /// True for the classes that drive in lanes.
    pub fn is_vehicle(self) -> bool {
        matches!(self, SimClass::Car | SimClass::Van | SimClass::Truck)
    }
}

// 905 nm albedos are rough values in KITTI's reflectance scale; colours are
// what a camera renderer should paint.
const RUBBER: Material = Material::new(MaterialKind::Rubber, 0.05, [25, 25, 25]);
const GLASS: Material = Material::new(MaterialKind::Glass, 0.08, [40, 50, 60]);
const METAL: Material = Material::new(MaterialKind::Metal, 0.35, [140, 140, 145]);
const SKIN: Material = Material::new(MaterialKind::Skin, 0.45, [224, 172, 140]);

/// Common car colours with a plausible NIR albedo (paint pigments reflect
/// 905 nm much more evenly than visible light, so black is not near zero).
const PAINTS: [([u8; 3], f32); 8] = [
    ([235, 235, 235], 0.55),
    ([20, 20, 25], 0.25),
    ([170, 170, 175], 0.45),
    ([90, 90, 95], 0.35),
    ([160, 20, 25], 0.45),
    ([25, 50, 130], 0.35),
    ([30, 90, 50], 0.35),
    ([200, 180, 140], 0.5),
];

const CLOTHES: [[u8; 3]; 6] = [[30, 30, 35], [60, 70, 110], [120, 30, 30], [200, 200, 190], [90, 80, 60], [40, 90, 60]];

fn paint(rng: &mut Rng) -> Material {
    let (colour, albedo) = PAINTS[rng.below(PAINTS.len())];
    Material::new(MaterialKind::Paint, albedo + rng.range(-0.05, 0.05) as f32, colour)
}

fn cloth(rng: &mut Rng) -> Material {
    Material::new(MaterialKind::Cloth, rng.range(0.25, 0.6) as f32, CLOTHES[rng.below(CLOTHES.len())])
}

fn cuboid(min: [f64; 3], max: [f64; 3], material: Material) -> Part {
    Part { shape: Shape::Box { min, max }, material }
}

/// Builds the shape of an object with label size `size` = [l, w, h], in the
/// object frame whose origin is the label box's geometric centre (x forward).
/// Returns the parts and the object's main material (body paint or clothing),
/// which a camera renderer and labels can use as "the object's colour".
pub fn build_shape(class: SimClass, size: [f64; 3], plates: bool, rng: &mut Rng) -> (Vec<Part>, Material) {
    let m = ANNOTATION_MARGIN_M;
    let [l, w, h] = size;
    let (hl, hw, bot, top) = (l / 2.0 - m, w / 2.0 - m, -h / 2.0, h / 2.0 - m);
    let hh = top - bot; // shape height
    let mut parts = Vec::with_capacity(12);
    let main;
    match class {
        SimClass::Car | SimClass::Van => {
            main = paint(rng);
            let belt = bot + if class == SimClass::Car { 0.55 } else { 0.45 } * hh;
            // Wheels sit just inside the body sides; the body starts at the
            // ground clearance so the wheels show under it.
            let r = 0.32_f64.min(hh * 0.25);
            for sx in [-1.0, 1.0] {
                for sy in [-1.0, 1.0] {
                    let cx = sx * (hl - 0.85_f64.min(hl * 0.4));
                    let cy = sy * (hw - 0.12);
                    parts.push(cuboid([cx - r, cy - 0.11, bot], [cx + r, cy + 0.11, bot + 2.0 * r], RUBBER));
                }
            }
            parts.push(cuboid([-hl, -hw, bot + 0.18], [hl, hw, belt], main));
            let (front, back) = if class == SimClass::Car {
                (hl - 0.30 * l, -hl + 0.12 * l)
            } else {
                (hl - 0.18 * l, -hl)
            };
            // Glasshouse: windows all round, a painted roof slab on top.
            parts.push(cuboid([back, -hw + 0.06, belt], [front, hw - 0.06, top - 0.04], GLASS));
            parts.push(cuboid([back, -hw + 0.04, top - 0.04], [front, hw - 0.04, top], main));
            if class == SimClass::Van {
                parts.push(cuboid([back, -hw, belt], [front - 0.6, hw, top - 0.04], main));
            }
            if plates {
                push_plates(&mut parts, hl, bot + 0.30);
            }
        }
        SimClass::Truck => {
            main = paint(rng);
            let cargo = Material::new(MaterialKind::Paint, rng.range(0.4, 0.7) as f32, [210, 210, 205]);
            let r = 0.45;
            for cx in [hl - 1.2, -hl + 1.2, -hl + 2.3] {
                for sy in [-1.0, 1.0] {
                    let cy = sy * (hw - 0.15);
                    parts.push(cuboid([cx - r, cy - 0.15, bot], [cx + r, cy + 0.15, bot + 2.0 * r], RUBBER));
                }
            }
            parts.push(cuboid([-hl, -hw + 0.2, bot + 0.55], [hl, hw - 0.2, bot + 1.1], METAL));
            let cab = 2.2_f64.min(l * 0.35);
            parts.push(cuboid([hl - cab, -hw, bot + 0.6], [hl, hw, bot + 0.7 * hh], main));
            parts.push(cuboid([hl - cab, -hw + 0.05, bot + 0.7 * hh], [hl - 0.3, hw - 0.05, bot + 0.85 * hh], GLASS));
            parts.push(cuboid([-hl, -hw, bot + 1.1], [hl - cab - 0.15, hw, top], cargo));
            if plates {
                push_plates(&mut parts, hl, bot + 0.5);
            }
        }
        SimClass::Pedestrian => {
            main = cloth(rng);
            let trousers = cloth(rng);
            let hip = bot + 0.48 * hh;
            let shoulder = bot + 0.82 * hh;
            let leg_w = 0.13;
            // Mid-stride: one leg at the front of the box, one at the back.
            parts.push(cuboid([hl - 0.16, 0.02, bot], [hl, 0.02 + leg_w, hip], trousers));
            parts.push(cuboid([-hl, -0.02 - leg_w, bot], [-hl + 0.16, -0.02, hip], trousers));
            parts.push(cuboid([-0.2_f64.max(-hl), -0.12, hip - 0.12], [0.2_f64.min(hl), 0.12, hip + 0.02], trousers));
            let torso_hw = 0.2_f64.min(hw - 0.07);
            parts.push(cuboid([-0.12, -torso_hw, hip], [0.12, torso_hw, shoulder], main));
            for sy in [-1.0, 1.0] {
                let (a, b) = (sy * torso_hw, sy * hw);
                parts.push(cuboid([-0.08, a.min(b), hip + 0.05], [0.08, a.max(b), shoulder], main));
            }
            let head_r = 0.1;
            parts.push(Part {
                shape: Shape::Cylinder { center: [0.0, 0.0], radius: head_r, z_min: shoulder, z_max: top },
                material: SKIN,
            });
        }
        SimClass::Cyclist => {
            main = cloth(rng);
            let frame = paint(rng);
            let wheel = 0.66_f64.min(l * 0.4);
            // Bicycle: two thin wheel slabs, a frame, a handlebar.
            parts.push(cuboid([hl - wheel, -0.03, bot], [hl, 0.03, bot + wheel], RUBBER));
            parts.push(cuboid([-hl, -0.03, bot], [-hl + wheel, 0.03, bot + wheel], RUBBER));
            parts.push(cuboid([-hl + wheel * 0.5, -0.03, bot + 0.35], [hl - wheel * 0.5, 0.03, bot + 0.75], frame));
            parts.push(cuboid([hl - wheel * 0.7, -hw, bot + 0.95], [hl - wheel * 0.55, hw, bot + 1.02], METAL));
            // Rider: legs down to the pedals, torso leaning forward, head.
            let seat = bot + 0.52 * hh;
            let shoulder = bot + 0.85 * hh;
            parts.push(cuboid([-0.25, 0.06, bot + 0.3], [0.05, 0.18, seat], cloth(rng)));
            parts.push(cuboid([-0.25, -0.18, bot + 0.3], [0.05, -0.06, seat], cloth(rng)));
            parts.push(cuboid([-0.35, -0.19, seat], [0.05, 0.19, shoulder], main));
            for sy in [-1.0, 1.0] {
                let (a, b) = (sy * 0.19, sy * 0.26_f64.min(hw));
                parts.push(cuboid([0.0, a.min(b), shoulder - 0.35], [hl - wheel * 0.6, a.max(b), shoulder - 0.2], main));
            }
            parts.push(Part {
                shape: Shape::Cylinder { center: [-0.1, 0.0], radius: 0.1, z_min: shoulder, z_max: top },
                material: SKIN,
            });
        }
    }
    (parts, main)
}

/// Retroreflective licence plates on the front and rear faces, 3 mm proud of
/// the body (so they win the hit test; still well inside the label margin).
fn push_plates(parts: &mut Vec<Part>, hl: f64, z0: f64) {
    let plate = Material {
        kind: MaterialKind::LicencePlate,
        albedo: 0.9,
        colour: [240, 240, 235],
        retroreflective: true,
    };
    parts.push(cuboid([hl - 0.01, -0.26, z0], [hl + 0.003, 0.26, z0 + 0.11], plate));
    parts.push(cuboid([-hl - 0.003, -0.26, z0], [-hl + 0.01, 0.26, z0 + 0.11], plate));
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_simulated_class_is_a_kitti_class_of_the_same_name() {
        let names: Vec<&str> = SimClass::ALL.iter().map(|c| c.kitti().as_str()).collect();
        assert_eq!(names, ["Car", "Van", "Truck", "Pedestrian", "Cyclist"]);
    }

    use super::*;

    #[test]
    fn shapes_fit_inside_their_label_boxes() {
        let mut rng = Rng::new(3);
        for class in SimClass::ALL {
            for _ in 0..50 {
                let size = class.sample_size(&mut rng);
                let (parts, _) = build_shape(class, size, true, &mut rng);
                for p in &parts {
                    let (lo, hi) = p.shape.bounds();
                    for k in 0..3 {
                        assert!(lo[k] >= -size[k] / 2.0 - 1e-9 && hi[k] <= size[k] / 2.0 + 1e-9, "{class:?} {size:?} {p:?}");
                    }
                }
                // The shape reaches the ground (the label box bottom).
                let bottom = parts.iter().map(|p| p.shape.bounds().0[2]).fold(f64::INFINITY, f64::min);
                assert!((bottom + size[2] / 2.0).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn sampled_car_sizes_follow_the_table() {
        let mut rng = Rng::new(11);
        let n = 4000;
        let mean_l = (0..n).map(|_| SimClass::Car.sample_size(&mut rng)[0]).sum::<f64>() / n as f64;
        assert!((mean_l - 3.88).abs() < 0.03, "mean car length {mean_l}");
    }
}
