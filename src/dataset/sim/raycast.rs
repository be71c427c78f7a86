//! Ray-casting primitives: materials, boxes, vertical cylinders, planes,
//! rigid bodies made of them, and the ground height field (terrain plus
//! kerb steps).
//!
//! Shapes are deliberately few: every scene element (cars, people, poles,
//! buildings, bushes) is a [`Body`] — a pose plus parts that are axis-aligned
//! boxes or vertical cylinders *in the body's own frame*. Rotating the ray into
//! the body frame once and then doing slab/quadratic tests is both fast and
//! exact, and a camera renderer can rasterise the same parts.

use serde::{Deserialize, Serialize};

pub type Vec3 = [f64; 3];

#[inline]
pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline]
pub fn normalize(a: Vec3) -> Vec3 {
    let n = dot(a, a).sqrt();
    if n > 0.0 { [a[0] / n, a[1] / n, a[2] / n] } else { [0.0, 0.0, 1.0] }
}

/// A ray `origin + t·dir`, `dir` of unit length so `t` is a range in metres.
#[derive(Debug, Clone, Copy)]
pub struct Ray {
    pub origin: Vec3,
    pub dir: Vec3,
}

impl Ray {
    #[inline]
    pub fn at(&self, t: f64) -> Vec3 {
        [self.origin[0] + t * self.dir[0], self.origin[1] + t * self.dir[1], self.origin[2] + t * self.dir[2]]
    }
}

/// What a surface is made of, for LiDAR intensity and camera appearance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialKind {
    Asphalt,
    LaneMarking,
    Concrete,
    Grass,
    Brick,
    Paint,
    Glass,
    Rubber,
    Metal,
    Foliage,
    Bark,
    Cloth,
    Skin,
    LicencePlate,
}

/// Surface appearance. `albedo` is the diffuse reflectivity at the LiDAR's
/// 905 nm (0..1, what KITTI's reflectance channel roughly measures);
/// `colour` is the visible-light base colour for a camera renderer;
/// `retroreflective` surfaces (licence plates, signs) return strongly at any
/// incidence angle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Material {
    pub kind: MaterialKind,
    pub albedo: f32,
    pub colour: [u8; 3],
    pub retroreflective: bool,
}

impl Material {
    pub const fn new(kind: MaterialKind, albedo: f32, colour: [u8; 3]) -> Self {
        Self { kind, albedo, colour, retroreflective: false }
    }
}

/// A part's shape in its body's frame (x forward, y left, z up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Axis-aligned box in the body frame.
    Box { min: Vec3, max: Vec3 },
    /// Vertical cylinder (axis along z).
    Cylinder { center: [f64; 2], radius: f64, z_min: f64, z_max: f64 },
}

impl Shape {
    /// Axis-aligned bounds in the body frame.
    pub fn bounds(&self) -> (Vec3, Vec3) {
        match *self {
            Shape::Box { min, max } => (min, max),
            Shape::Cylinder { center, radius, z_min, z_max } => {
                ([center[0] - radius, center[1] - radius, z_min], [center[0] + radius, center[1] + radius, z_max])
            }
        }
    }

    /// Nearest entry of `ray` (in the body frame) with `t` in (0, t_max),
    /// with the outward normal. Rays starting inside a shape see nothing of it.
    fn intersect(&self, ray: &Ray, t_max: f64) -> Option<(f64, Vec3)> {
        match *self {
            Shape::Box { min, max } => ray_aabb(ray, min, max, t_max),
            Shape::Cylinder { center, radius, z_min, z_max } => ray_cylinder(ray, center, radius, z_min, z_max, t_max),
        }
    }
}

/// Slab test returning the entry distance and the normal of the entry face.
pub fn ray_aabb(ray: &Ray, min: Vec3, max: Vec3, t_max: f64) -> Option<(f64, Vec3)> {
    let mut t0 = f64::NEG_INFINITY;
    let mut t1 = t_max;
    let mut axis = 0usize;
    for k in 0..3 {
        let (o, d) = (ray.origin[k], ray.dir[k]);
        if d.abs() < 1e-12 {
            // Parallel to this slab: inside it or never.
            if o < min[k] || o > max[k] {
                return None;
            }
            continue;
        }
        let inv = 1.0 / d;
        let (mut a, mut b) = ((min[k] - o) * inv, (max[k] - o) * inv);
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        if a > t0 {
            t0 = a;
            axis = k;
        }
        t1 = t1.min(b);
        if t0 > t1 {
            return None;
        }
    }
    if t0 <= 0.0 {
        return None;
    }
    let mut n = [0.0; 3];
    n[axis] = if ray.dir[axis] > 0.0 { -1.0 } else { 1.0 };
    Some((t0, n))
}

/// Vertical cylinder: side by the 2D quadratic, then the caps.
pub fn ray_cylinder(ray: &Ray, c: [f64; 2], r: f64, z_min: f64, z_max: f64, t_max: f64) -> Option<(f64, Vec3)> {
    let (ox, oy) = (ray.origin[0] - c[0], ray.origin[1] - c[1]);
    let (dx, dy, dz) = (ray.dir[0], ray.dir[1], ray.dir[2]);
    let a = dx * dx + dy * dy;
    let mut best: Option<(f64, Vec3)> = None;
    if a > 1e-12 {
        let b = ox * dx + oy * dy;
        let cc = ox * ox + oy * oy - r * r;
        let disc = b * b - a * cc;
        if disc >= 0.0 {
            let t = (-b - disc.sqrt()) / a;
            if t > 0.0 && t < t_max {
                let z = ray.origin[2] + t * dz;
                if z >= z_min && z <= z_max {
                    best = Some((t, [(ox + t * dx) / r, (oy + t * dy) / r, 0.0]));
                }
            }
        }
    }
    // Caps: the top when looking down, the bottom when looking up.
    if dz.abs() > 1e-12 {
        let (zc, n) = if dz < 0.0 { (z_max, 1.0) } else { (z_min, -1.0) };
        let t = (zc - ray.origin[2]) / dz;
        if t > 0.0 && t < best.map_or(t_max, |b| b.0) {
            let (px, py) = (ox + t * dx, oy + t * dy);
            if px * px + py * py <= r * r {
                best = Some((t, [0.0, 0.0, n]));
            }
        }
    }
    best
}

/// Infinite plane through `point` with normal `normal`: the hit distance in
/// (0, t_max), for flat walls or a flat ground in tests and renderers.
pub fn ray_plane(ray: &Ray, point: Vec3, normal: Vec3, t_max: f64) -> Option<f64> {
    let denom = dot(ray.dir, normal);
    if denom.abs() < 1e-12 {
        return None;
    }
    let t = dot([point[0] - ray.origin[0], point[1] - ray.origin[1], point[2] - ray.origin[2]], normal) / denom;
    (t > 0.0 && t < t_max).then_some(t)
}

/// One shape with its material.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub shape: Shape,
    pub material: Material,
}

/// A rigid body: parts in a local frame placed at `origin` with heading `yaw`
/// about +z. `bounds` is the local hull of the parts, used for culling and
/// for label boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub origin: Vec3,
    pub yaw: f64,
    pub parts: Vec<Part>,
    bounds: (Vec3, Vec3),
    /// Horizontal radius around `origin` enclosing every part.
    radius_xy: f64,
}

/// A surface hit: range, world-frame unit normal, and the material there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurfaceHit {
    pub t: f64,
    pub normal: Vec3,
    pub material: Material,
}

impl Body {
    pub fn new(origin: Vec3, yaw: f64, parts: Vec<Part>) -> Self {
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        let mut radius: f64 = 0.0;
        for p in &parts {
            let (a, b) = p.shape.bounds();
            for k in 0..3 {
                lo[k] = lo[k].min(a[k]);
                hi[k] = hi[k].max(b[k]);
            }
            for x in [a[0], b[0]] {
                for y in [a[1], b[1]] {
                    radius = radius.max((x * x + y * y).sqrt());
                }
            }
        }
        if parts.is_empty() {
            lo = [0.0; 3];
            hi = [0.0; 3];
        }
        Self { origin, yaw, parts, bounds: (lo, hi), radius_xy: radius }
    }

    /// The same body moved to a new pose.
    pub fn moved(&self, origin: Vec3, yaw: f64) -> Self {
        Self { origin, yaw, ..self.clone() }
    }

    /// Local axis-aligned hull of the parts (min, max).
    pub fn local_bounds(&self) -> (Vec3, Vec3) {
        self.bounds
    }

    pub fn radius_xy(&self) -> f64 {
        self.radius_xy
    }

    /// World z range covered by the parts.
    pub fn z_range(&self) -> (f64, f64) {
        (self.origin[2] + self.bounds.0[2], self.origin[2] + self.bounds.1[2])
    }

    /// A world point expressed in the body frame.
    pub fn to_local(&self, p: Vec3) -> Vec3 {
        let (s, c) = self.yaw.sin_cos();
        let (dx, dy) = (p[0] - self.origin[0], p[1] - self.origin[1]);
        [c * dx + s * dy, -s * dx + c * dy, p[2] - self.origin[2]]
    }

    /// A body-frame direction expressed in the world frame.
    pub fn dir_to_world(&self, v: Vec3) -> Vec3 {
        let (s, c) = self.yaw.sin_cos();
        [c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]]
    }

    /// A world-frame direction expressed in the body frame.
    pub fn dir_to_local(&self, v: Vec3) -> Vec3 {
        let (s, c) = self.yaw.sin_cos();
        [c * v[0] + s * v[1], -s * v[0] + c * v[1], v[2]]
    }

    /// Nearest hit of a world ray on any part, within `t_max`.
    pub fn intersect(&self, ray: &Ray, t_max: f64) -> Option<SurfaceHit> {
        let (s, c) = self.yaw.sin_cos();
        let local = Ray {
            origin: self.to_local(ray.origin),
            dir: [c * ray.dir[0] + s * ray.dir[1], -s * ray.dir[0] + c * ray.dir[1], ray.dir[2]],
        };
        // Hull first: most rays that pass the azimuth culling still miss.
        let (lo, hi) = self.bounds;
        let inside = (0..3).all(|k| local.origin[k] >= lo[k] && local.origin[k] <= hi[k]);
        if !inside && ray_aabb(&local, lo, hi, t_max).is_none() {
            return None;
        }
        let mut best: Option<(f64, Vec3, Material)> = None;
        for p in &self.parts {
            let limit = best.map_or(t_max, |b| b.0);
            if let Some((t, n)) = p.shape.intersect(&local, limit) {
                best = Some((t, n, p.material));
            }
        }
        best.map(|(t, n, material)| SurfaceHit { t, normal: self.dir_to_world(n), material })
    }
}

/// One sinusoidal undulation of the terrain: `amplitude · sin(kx·x + ky·y + phase)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bump {
    pub amplitude: f64,
    pub kx: f64,
    pub ky: f64,
    pub phase: f64,
}

/// A kerb: crossing the line `y = y` towards +y changes the ground height by
/// `rise` (a vertical step face).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KerbStep {
    pub y: f64,
    pub rise: f64,
}

/// The ground: `base + slope·(x, y) + Σ bumps + Σ rises of the kerbs below y`.
///
/// Kerbs run along x (the road direction), so a ray crosses each at most once
/// and the field is smooth between crossings; that lets the intersection
/// treat kerb faces exactly (vertical faces with ±y normals) and march only
/// the smooth terrain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeightField {
    pub base: f64,
    /// dz/dx and dz/dy of the planar trend.
    pub slope: [f64; 2],
    pub bumps: Vec<Bump>,
    pub kerbs: Vec<KerbStep>,
}

impl HeightField {
    pub fn flat() -> Self {
        Self { base: 0.0, slope: [0.0, 0.0], bumps: Vec::new(), kerbs: Vec::new() }
    }

    /// Terrain height without kerbs.
    #[inline]
    pub fn terrain(&self, x: f64, y: f64) -> f64 {
        let mut h = self.slope[0] * x + self.slope[1] * y;
        for b in &self.bumps {
            h += b.amplitude * (b.kx * x + b.ky * y + b.phase).sin();
        }
        h
    }

    /// Height added by the kerbs at lateral position `y`.
    #[inline]
    pub fn kerb_offset(&self, y: f64) -> f64 {
        self.base + self.kerbs.iter().filter(|k| y > k.y).map(|k| k.rise).sum::<f64>()
    }

    /// Ground height at (x, y).
    pub fn height(&self, x: f64, y: f64) -> f64 {
        self.terrain(x, y) + self.kerb_offset(y)
    }

    /// Upward unit normal of the terrain at (x, y) (kerb faces excluded).
    pub fn normal(&self, x: f64, y: f64) -> Vec3 {
        let (mut gx, mut gy) = (self.slope[0], self.slope[1]);
        for b in &self.bumps {
            let c = b.amplitude * (b.kx * x + b.ky * y + b.phase).cos();
            gx += c * b.kx;
            gy += c * b.ky;
        }
        normalize([-gx, -gy, 1.0])
    }

    /// Bound on |∇terrain|, for conservative ray marching.
    fn lipschitz(&self) -> f64 {
        let plane = (self.slope[0].powi(2) + self.slope[1].powi(2)).sqrt();
        plane + self.bumps.iter().map(|b| b.amplitude.abs() * (b.kx * b.kx + b.ky * b.ky).sqrt()).sum::<f64>()
    }

    /// First hit of `ray` on the ground within (0, t_max): distance and normal.
    pub fn intersect(&self, ray: &Ray, t_max: f64) -> Option<(f64, Vec3)> {
        // Cut the ray where it crosses kerb lines; between cuts the ground is smooth.
        let mut cuts: Vec<f64> = Vec::with_capacity(self.kerbs.len() + 1);
        if ray.dir[1].abs() > 1e-12 {
            for k in &self.kerbs {
                let t = (k.y - ray.origin[1]) / ray.dir[1];
                if t > 0.0 && t < t_max {
                    cuts.push(t);
                }
            }
        }
        cuts.sort_by(f64::total_cmp);
        cuts.push(t_max);
        let mut ta = 0.0;
        for (i, &tb) in cuts.iter().enumerate() {
            let off = self.kerb_offset(ray.at(0.5 * (ta + tb))[1]);
            if let Some(t) = self.smooth_intersect(ray, ta, tb, off) {
                let p = ray.at(t);
                return Some((t, self.normal(p[0], p[1])));
            }
            if i + 1 < cuts.len() {
                // At a kerb line: the ray hits the step face if it is below
                // the ground on the far side.
                let next = cuts[i + 1];
                let p = ray.at(tb);
                let far = self.terrain(p[0], p[1]) + self.kerb_offset(ray.at(0.5 * (tb + next))[1]);
                if p[2] < far {
                    return Some((tb, [0.0, -ray.dir[1].signum(), 0.0]));
                }
            }
            ta = tb;
        }
        None
    }

    /// Ray against `offset + terrain` on [ta, tb], assuming the ray is above
    /// the surface at ta.
    fn smooth_intersect(&self, ray: &Ray, ta: f64, tb: f64, offset: f64) -> Option<f64> {
        let f = |t: f64| {
            let p = ray.at(t);
            p[2] - offset - self.terrain(p[0], p[1])
        };
        let fa = f(ta);
        if fa <= 0.0 {
            return (ta > 0.0).then_some(ta);
        }
        let horiz = (ray.dir[0] * ray.dir[0] + ray.dir[1] * ray.dir[1]).sqrt();
        if self.bumps.is_empty() {
            // Planar: f is linear in t.
            let rate = ray.dir[2] - (self.slope[0] * ray.dir[0] + self.slope[1] * ray.dir[1]);
            if rate >= 0.0 {
                return None;
            }
            let t = ta + fa / -rate;
            return (t < tb).then_some(t);
        }
        // Conservative marching: f cannot fall faster than `rate_bound` per
        // metre, so stepping f/rate_bound never skips the first crossing; a
        // minimum step plus bisection bounds the work for grazing rays.
        let rate_bound = ray.dir[2].abs() + self.lipschitz() * horiz + 1e-9;
        const MIN_STEP: f64 = 0.05;
        const EPS: f64 = 2e-3;
        let (mut t, mut ft) = (ta, fa);
        for _ in 0..256 {
            if ft < EPS {
                return Some(t);
            }
            let tn = (t + (ft / rate_bound).max(MIN_STEP)).min(tb);
            let fnext = f(tn);
            if fnext <= 0.0 {
                // Bisect the bracket [t, tn].
                let (mut lo, mut hi) = (t, tn);
                for _ in 0..12 {
                    let mid = 0.5 * (lo + hi);
                    if f(mid) > 0.0 { lo = mid } else { hi = mid }
                }
                return Some(0.5 * (lo + hi));
            }
            if tn >= tb {
                return None;
            }
            t = tn;
            ft = fnext;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ray(o: Vec3, d: Vec3) -> Ray {
        Ray { origin: o, dir: normalize(d) }
    }

    #[test]
    fn box_cylinder_plane_hits() {
        let r = ray([0.0, 0.0, 0.0], [1.0, 0.0, 0.0]);
        let (t, n) = ray_aabb(&r, [5.0, -1.0, -1.0], [6.0, 1.0, 1.0], 100.0).unwrap();
        assert!((t - 5.0).abs() < 1e-12 && n == [-1.0, 0.0, 0.0]);
        assert!(ray_aabb(&r, [5.0, 1.5, -1.0], [6.0, 2.0, 1.0], 100.0).is_none());
        let (t, n) = ray_cylinder(&r, [10.0, 0.0], 0.5, -1.0, 1.0, 100.0).unwrap();
        assert!((t - 9.5).abs() < 1e-9 && (n[0] + 1.0).abs() < 1e-9);
        let down = ray([0.0, 0.0, 5.0], [0.0, 0.0, -1.0]);
        let (t, n) = ray_cylinder(&down, [0.0, 0.0], 0.5, 0.0, 2.0, 100.0).unwrap();
        assert!((t - 3.0).abs() < 1e-9 && n == [0.0, 0.0, 1.0]);
        assert!((ray_plane(&down, [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], 100.0).unwrap() - 5.0).abs() < 1e-12);
    }

    #[test]
    fn rotated_body_hit_uses_its_pose() {
        let part = Part {
            shape: Shape::Box { min: [-2.0, -0.5, -0.5], max: [2.0, 0.5, 0.5] },
            material: Material::new(MaterialKind::Paint, 0.5, [255, 0, 0]),
        };
        // A 4 m long box turned 90°: seen along +x it is 1 m deep.
        let b = Body::new([10.0, 0.0, 0.0], std::f64::consts::FRAC_PI_2, vec![part]);
        let h = b.intersect(&ray([0.0, 0.0, 0.0], [1.0, 0.0, 0.0]), 100.0).unwrap();
        assert!((h.t - 9.5).abs() < 1e-9 && (h.normal[0] + 1.0).abs() < 1e-9);
        assert!(b.intersect(&ray([0.0, 1.5, 0.0], [1.0, 0.0, 0.0]), 100.0).is_some());
        assert!(b.intersect(&ray([0.0, 2.5, 0.0], [1.0, 0.0, 0.0]), 100.0).is_none());
    }

    #[test]
    fn ground_with_bumps_and_kerb() {
        let hf = HeightField {
            base: 0.15,
            slope: [0.02, 0.0],
            bumps: vec![Bump { amplitude: 0.1, kx: 0.3, ky: 0.2, phase: 0.4 }],
            kerbs: vec![KerbStep { y: -4.0, rise: -0.15 }, KerbStep { y: 4.0, rise: 0.15 }],
        };
        assert!((hf.kerb_offset(0.0)).abs() < 1e-12 && (hf.kerb_offset(5.0) - 0.15).abs() < 1e-12);
        // Steep and grazing rays land on the surface.
        for d in [[1.0, 0.1, -0.5], [1.0, 0.0, -0.05], [0.3, -1.0, -0.3]] {
            let r = ray([0.0, 0.0, 1.73], d);
            let (t, _) = hf.intersect(&r, 200.0).unwrap();
            let p = r.at(t);
            let dz = p[2] - hf.height(p[0], p[1]);
            assert!(dz.abs() < 0.01 || (p[1].abs() - 4.0).abs() < 1e-6, "{d:?}: off the surface by {dz}");
        }
        // A low ray sideways hits the kerb face at y = 4 with normal -y.
        let kerbs_only = HeightField { bumps: Vec::new(), slope: [0.0, 0.0], ..hf.clone() };
        let r = ray([0.0, 0.0, 0.1], [0.0, 1.0, 0.0]);
        let (t, n) = kerbs_only.intersect(&r, 50.0).unwrap();
        assert!((t - 4.0).abs() < 1e-9 && n == [0.0, -1.0, 0.0]);
        // Upward rays miss.
        assert!(hf.intersect(&ray([0.0, 0.0, 1.73], [1.0, 0.0, 0.2]), 200.0).is_none());
    }
}
