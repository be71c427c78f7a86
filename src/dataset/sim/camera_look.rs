//! What makes the simulated camera's vehicles look like photographed ones
//! (issue 16 item 4), camera only: the LiDAR sees the same geometry and
//! reflectance as before.
//! * contact shadows: the ground under and just around a labelled object is
//!   darker (the sky is occluded there), the strongest cue in real street
//!   photos that a car stands on the road;
//! * Fresnel reflections on paint and glass: grazing views mirror the sky
//!   (windows go pale, roofs and bonnets catch the light) instead of flat
//!   colour;
//! * lamps: tail lights (red) and headlights (pale) in the upper corners of a
//!   vehicle body's back and front faces.
use super::raycast::{dot, Body, Material, MaterialKind, Shape, Vec3};

/// How much darker the ground is at the centre of an object's footprint.
const SHADOW_CORE: f64 = 0.75;
/// How much darker at the footprint's edge; fades to nothing this far out.
const SHADOW_EDGE: f64 = 0.45;
const SHADOW_REACH_M: f64 = 0.45;

/// Brightness factor (0..=1] for a ground point under labelled objects.
pub fn contact_shadow(p: Vec3, casters: &[&Body]) -> f64 {
    let mut factor = 1.0_f64;
    for b in casters {
        let reach = b.radius_xy() + SHADOW_REACH_M;
        if (p[0] - b.origin[0]).abs() > reach || (p[1] - b.origin[1]).abs() > reach {
            continue;
        }
        let l = b.to_local(p);
        let (lo, hi) = b.local_bounds();
        if (l[2] - lo[2]).abs() > 0.5 {
            continue; // not the ground this object stands on
        }
        // signed distances outside the footprint along x and y (negative inside)
        let dx = (lo[0] - l[0]).max(l[0] - hi[0]);
        let dy = (lo[1] - l[1]).max(l[1] - hi[1]);
        let occlusion = if dx > 0.0 || dy > 0.0 {
            let out = dx.max(0.0).hypot(dy.max(0.0));
            SHADOW_EDGE * (1.0 - out / SHADOW_REACH_M).max(0.0)
        } else {
            let depth = (-dx).min(-dy);
            SHADOW_EDGE + (SHADOW_CORE - SHADOW_EDGE) * (depth / 0.5).min(1.0)
        };
        factor = factor.min(1.0 - occlusion);
    }
    factor
}

/// Share of the environment mirrored by a surface seen at `cos_view`
/// (cosine between the view ray and the normal), Schlick's approximation.
pub fn fresnel(kind: MaterialKind, cos_view: f64) -> f64 {
    let f0 = match kind {
        MaterialKind::Glass => 0.12,
        MaterialKind::Paint => 0.04,
        MaterialKind::Metal => 0.25,
        _ => return 0.0,
    };
    let k = (1.0 - cos_view.clamp(0.0, 1.0)).powi(5);
    // glass mirrors more than Schlick's dielectric (tinted, coated, curved)
    let gain = if kind == MaterialKind::Glass { 2.5 } else { 1.0 };
    ((f0 + (1.0 - f0) * k) * gain).min(0.9)
}

/// Lamp colour at a vehicle body's hit point, if the point is on a lamp:
/// `local` and `normal` in the body frame, `material` the hit's.
pub fn lamp(body: &Body, local: Vec3, normal: Vec3, material: &Material) -> Option<[f64; 3]> {
    if material.kind != MaterialKind::Paint || normal[0].abs() < 0.9 {
        return None;
    }
    // the painted box the point lies on: its front or back face, full width
    let part = body.parts.iter().find_map(|p| match p.shape {
        Shape::Box { min, max } if p.material == *material && (0..3).all(|k| local[k] >= min[k] - 1e-6 && local[k] <= max[k] + 1e-6) => {
            Some((min, max))
        }
        _ => None,
    })?;
    let (min, max) = part;
    let (half_w, height) = ((max[1] - min[1]) / 2.0, max[2] - min[2]);
    if half_w < 0.5 || height < 0.35 {
        return None; // a frame tube or a roof slab, not a vehicle body
    }
    let y = (local[1] - (min[1] + max[1]) / 2.0).abs() / half_w;
    let below_top = max[2] - local[2];
    if !(0.58..=0.93).contains(&y) || !(0.05..=0.05 + 0.22_f64.min(height * 0.35)).contains(&below_top) {
        return None;
    }
    Some(if normal[0] < 0.0 { [190.0, 25.0, 20.0] } else { [235.0, 232.0, 215.0] })
}

/// Mirror direction of `d` about the unit normal `n`.
pub fn reflect(d: Vec3, n: Vec3) -> Vec3 {
    let k = 2.0 * dot(d, n);
    [d[0] - k * n[0], d[1] - k * n[1], d[2] - k * n[2]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::sim::objects::{build_shape, SimClass};
    use crate::dataset::sim::Rng;

    fn car() -> Body {
        let (parts, _) = build_shape(SimClass::Car, [4.0, 1.7, 1.5], true, &mut Rng::new(3));
        Body::new([10.0, 2.0, 0.75], 0.3, parts)
    }

    #[test]
    fn the_ground_is_darkest_under_an_object_and_untouched_away_from_it() {
        let b = car();
        let under = contact_shadow([10.0, 2.0, 0.0], &[&b]);
        let far = contact_shadow([14.0, 6.0, 0.0], &[&b]);
        assert!((under - (1.0 - SHADOW_CORE)).abs() < 1e-9, "{under}");
        assert_eq!(far, 1.0);
        // fades out beside the body: darker at 0.1 m than at 0.3 m
        let (s, c) = b.yaw.sin_cos();
        let side = |d: f64| {
            let (_, hi) = b.local_bounds();
            let ly = hi[1] + d;
            contact_shadow([10.0 - s * ly, 2.0 + c * ly, 0.0], &[&b])
        };
        assert!(side(0.1) < side(0.3) && side(0.3) < 1.0 && side(0.6) == 1.0, "{} {} {}", side(0.1), side(0.3), side(0.6));
        // a point at roof height is not "ground under it"
        assert_eq!(contact_shadow([10.0, 2.0, 1.5], &[&b]), 1.0);
    }

    #[test]
    fn grazing_views_mirror_more_and_matte_surfaces_never() {
        assert!(fresnel(MaterialKind::Glass, 0.1) > fresnel(MaterialKind::Glass, 0.9));
        assert!(fresnel(MaterialKind::Paint, 0.1) > fresnel(MaterialKind::Paint, 1.0));
        assert!(fresnel(MaterialKind::Glass, 1.0) > fresnel(MaterialKind::Paint, 1.0));
        assert_eq!(fresnel(MaterialKind::Asphalt, 0.0), 0.0);
        assert!(fresnel(MaterialKind::Glass, 0.0) <= 0.9);
    }

    #[test]
    fn tail_lights_are_red_headlights_pale_and_only_in_the_upper_corners() {
        let b = car();
        let body = b.parts.iter().find(|p| p.material.kind == MaterialKind::Paint).expect("painted body");
        let Shape::Box { min, max } = body.shape else { panic!("box") };
        let y = max[1] * 0.75;
        let z = max[2] - 0.1;
        let back = lamp(&b, [min[0], y, z], [-1.0, 0.0, 0.0], &body.material).expect("a tail light");
        let front = lamp(&b, [max[0], -y, z], [1.0, 0.0, 0.0], &body.material).expect("a headlight");
        assert!(back[0] > 2.0 * back[1] && front[1] > 200.0);
        assert_eq!(lamp(&b, [max[0], 0.0, z], [1.0, 0.0, 0.0], &body.material), None, "the middle of the face");
        assert_eq!(lamp(&b, [max[0], y, min[2] + 0.05], [1.0, 0.0, 0.0], &body.material), None, "low on the face");
        assert_eq!(lamp(&b, [0.0, max[1], z], [0.0, 1.0, 0.0], &body.material), None, "a side face");
    }
}
