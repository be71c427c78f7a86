//! Road scenes: layout, static clutter, object placement and motion.
//!
//! World frame: x along the road, y to the left, z up. The road is straight
//! along x; vehicles drive on the right (KITTI was recorded in Germany):
//! "forward" lanes (heading +x) lie at y < 0, "backward" lanes (heading -x)
//! at y > 0. The ego vehicle starts at x = 0 in a forward lane and drives +x.
//!
//! Cross-section, right side (y < 0) outwards; the left side mirrors it:
//! ```text
//!  y=0 | forward lanes | parking strip? | kerb | sidewalk | verge | buildings/walls
//! ```
//! Everything a camera renderer needs is in [`Scene`]: the ground surface
//! ([`Scene::ground`], [`Scene::ground_material`]), static bodies with
//! materials and colours, and objects with class, label box, main material
//! and detailed parts.

use serde::{Deserialize, Serialize};

use super::objects::{build_shape, SimClass};
use super::raycast::{Body, Bump, HeightField, KerbStep, Material, MaterialKind, Part, Shape};
use super::{ensure, Rng, SimError};
use crate::geometry::{wrap_angle, Box3D};

/// Terrain shape under the road.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundKind {
    Flat,
    /// A planar grade along the road (1–6 %) with a little cross-fall.
    Sloped,
    /// A gentle grade plus a few long-wavelength undulations (3–10 cm).
    Bumpy,
    /// One of the three, chosen by the seed.
    Random,
}

/// Inclusive range of an object count per scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountRange {
    pub min: usize,
    pub max: usize,
}

impl CountRange {
    pub const fn new(min: usize, max: usize) -> Self {
        Self { min, max }
    }
}

/// What to generate. Defaults give KITTI-like urban/residential scenes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SceneConfig {
    pub ground: GroundKind,
    /// Road and clutter are built over x in [-extent_behind_m, extent_ahead_m
    /// + ego travel]; beyond that is open ground.
    pub extent_behind_m: f64,
    pub extent_ahead_m: f64,
    /// x range (relative to the ego start) where objects are placed; KITTI
    /// labels objects up to ~70–80 m ahead.
    pub object_region_m: [f64; 2],
    pub cars: CountRange,
    pub vans: CountRange,
    pub trucks: CountRange,
    pub pedestrians: CountRange,
    pub cyclists: CountRange,
    /// Fraction of vehicles parked at the kerb (where a side has a parking strip).
    pub parked_fraction: f64,
    pub buildings: bool,
    /// Vegetation clumps per 10 m of verge, each side.
    pub vegetation_density: f64,
    /// Mean distance between street poles, each side.
    pub pole_spacing_m: f64,
    /// Retroreflective licence plates on vehicles (very bright LiDAR returns).
    pub licence_plates: bool,
    /// Ego speed along the road (used by drives; also reserves the ego path).
    pub ego_speed_mps: f64,
    /// Objects are placed so that none collide during [0, duration_s]
    /// (0 for single frames; [`DriveConfig`] sets it).
    pub duration_s: f64,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            ground: GroundKind::Random,
            extent_behind_m: 70.0,
            extent_ahead_m: 130.0,
            object_region_m: [-40.0, 75.0],
            cars: CountRange::new(3, 15),
            vans: CountRange::new(0, 2),
            trucks: CountRange::new(0, 1),
            pedestrians: CountRange::new(0, 8),
            cyclists: CountRange::new(0, 3),
            parked_fraction: 0.5,
            buildings: true,
            vegetation_density: 0.6,
            pole_spacing_m: 25.0,
            licence_plates: true,
            ego_speed_mps: 8.0,
            duration_s: 0.0,
        }
    }
}

impl SceneConfig {
    pub fn validate(&self) -> Result<(), SimError> {
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        ensure(finite_pos(self.extent_behind_m), "extent_behind_m", || format!("{} must be > 0", self.extent_behind_m))?;
        ensure(finite_pos(self.extent_ahead_m), "extent_ahead_m", || format!("{} must be > 0", self.extent_ahead_m))?;
        let [lo, hi] = self.object_region_m;
        ensure(lo.is_finite() && hi.is_finite() && lo < hi, "object_region_m", || format!("[{lo}, {hi}] is empty"))?;
        for (name, c) in [
            ("cars", self.cars),
            ("vans", self.vans),
            ("trucks", self.trucks),
            ("pedestrians", self.pedestrians),
            ("cyclists", self.cyclists),
        ] {
            ensure(c.min <= c.max && c.max <= 200, "object count", || format!("{name}: {}..={} (need min <= max <= 200)", c.min, c.max))?;
        }
        ensure((0.0..=1.0).contains(&self.parked_fraction), "parked_fraction", || format!("{} not in [0, 1]", self.parked_fraction))?;
        ensure(
            self.vegetation_density.is_finite() && (0.0..=10.0).contains(&self.vegetation_density),
            "vegetation_density",
            || format!("{} not in [0, 10]", self.vegetation_density),
        )?;
        ensure(
            self.pole_spacing_m.is_finite() && self.pole_spacing_m >= 5.0,
            "pole_spacing_m",
            || format!("{} must be >= 5", self.pole_spacing_m),
        )?;
        ensure(
            self.ego_speed_mps.is_finite() && (0.0..=50.0).contains(&self.ego_speed_mps),
            "ego_speed_mps",
            || format!("{} not in [0, 50]", self.ego_speed_mps),
        )?;
        ensure(
            self.duration_s.is_finite() && (0.0..=600.0).contains(&self.duration_s),
            "duration_s",
            || format!("{} not in [0, 600]", self.duration_s),
        )?;
        Ok(())
    }

    /// Builds the scene for `seed` (deterministic: same config and seed, same scene).
    pub fn generate(&self, seed: u64) -> Result<Scene, SimError> {
        self.validate()?;
        Ok(Scene::build(self, seed))
    }
}

/// Road cross-section (all y in the world frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Road {
    pub lane_width: f64,
    /// Lanes heading +x (at y < 0) and -x (at y > 0).
    pub lanes_forward: usize,
    pub lanes_backward: usize,
    pub parking_right: bool,
    pub parking_left: bool,
    pub parking_width: f64,
    /// Kerb lines: the road surface is kerb_right_y < y < kerb_left_y.
    pub kerb_right_y: f64,
    pub kerb_left_y: f64,
    pub kerb_height: f64,
    pub sidewalk_right: f64,
    pub sidewalk_left: f64,
    pub verge_right: f64,
    pub verge_left: f64,
    /// x extent of the built road and clutter.
    pub x_range: [f64; 2],
}

/// What the ground is at a point (for materials and renderers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurfaceKind {
    Road,
    LaneMarking,
    Sidewalk,
    Verge,
}

impl Road {
    /// Centre y of forward lane `i` (0 = next to the centre line) or backward lane `i`.
    pub fn lane_center_y(&self, forward: bool, i: usize) -> f64 {
        let off = (i as f64 + 0.5) * self.lane_width;
        if forward { -off } else { off }
    }

    /// The outer edge of the driving lanes on a side (right = forward).
    pub fn lanes_edge_y(&self, forward: bool) -> f64 {
        if forward {
            -(self.lanes_forward as f64) * self.lane_width
        } else {
            self.lanes_backward as f64 * self.lane_width
        }
    }

    pub fn surface_at(&self, x: f64, y: f64) -> SurfaceKind {
        if y <= self.kerb_right_y - self.sidewalk_right || y >= self.kerb_left_y + self.sidewalk_left {
            return SurfaceKind::Verge;
        }
        if y <= self.kerb_right_y || y >= self.kerb_left_y {
            return SurfaceKind::Sidewalk;
        }
        // Markings: 0.12 m lines; the centre line and lane separators dashed
        // (6 m dash, 6 m gap), the edges of the lanes solid.
        let line = |yl: f64| (y - yl).abs() < 0.06;
        let dashed = x.rem_euclid(12.0) < 6.0;
        if line(0.0) && dashed {
            return SurfaceKind::LaneMarking;
        }
        for i in 1..self.lanes_forward {
            if line(-(i as f64) * self.lane_width) && dashed {
                return SurfaceKind::LaneMarking;
            }
        }
        for i in 1..self.lanes_backward {
            if line(i as f64 * self.lane_width) && dashed {
                return SurfaceKind::LaneMarking;
            }
        }
        if line(self.lanes_edge_y(true) + 0.1) || line(self.lanes_edge_y(false) - 0.1) {
            return SurfaceKind::LaneMarking;
        }
        SurfaceKind::Road
    }
}

/// Kinds of static scene elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaticKind {
    Building,
    Wall,
    Pole,
    Tree,
    Vegetation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaticObject {
    pub kind: StaticKind,
    pub body: Body,
}

/// A labelled object. `label` is its box in the world frame at t = 0;
/// `body` holds its detailed parts (origin = label centre, same yaw).
#[derive(Debug, Clone, PartialEq)]
pub struct SceneObject {
    /// Stable across the frames of a drive.
    pub id: u32,
    pub class: SimClass,
    pub label: Box3D,
    /// World-frame velocity in m/s (constant).
    pub velocity: [f64; 2],
    pub parked: bool,
    /// Main material (body paint or clothing): the object's colour.
    pub material: Material,
    pub body: Body,
}

/// A rigid pose: position and heading about +z (roll and pitch are zero: the
/// ego stays level on gentle grades).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub position: [f64; 3],
    pub yaw: f64,
}

impl Pose {
    /// World point → this pose's frame.
    pub fn to_local(&self, p: [f64; 3]) -> [f64; 3] {
        let (s, c) = self.yaw.sin_cos();
        let (dx, dy) = (p[0] - self.position[0], p[1] - self.position[1]);
        [c * dx + s * dy, -s * dx + c * dy, p[2] - self.position[2]]
    }

    /// This pose's frame → world.
    pub fn to_world(&self, p: [f64; 3]) -> [f64; 3] {
        let (s, c) = self.yaw.sin_cos();
        [self.position[0] + c * p[0] - s * p[1], self.position[1] + s * p[0] + c * p[1], self.position[2] + p[2]]
    }

    /// A world box in this pose's frame (e.g. a label in the LiDAR frame).
    pub fn box_to_local(&self, b: &Box3D) -> Box3D {
        Box3D { center: self.to_local(b.center), size: b.size, yaw: wrap_angle(b.yaw - self.yaw) }
    }
}

/// The dynamic state at one instant: the ego pose and the moved objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub time: f64,
    /// The ego vehicle's reference point on the ground (below the LiDAR).
    pub ego: Pose,
    pub objects: Vec<SceneObject>,
}

impl Snapshot {
    /// The pose of a sensor mounted `height` metres above the ego reference
    /// point (the LiDAR frame: use it with [`Pose::box_to_local`] for labels).
    pub fn sensor_pose(&self, height: f64) -> Pose {
        let p = self.ego.position;
        Pose { position: [p[0], p[1], p[2] + height], yaw: self.ego.yaw }
    }

    /// (id, class, label box in the frame of `sensor`) for every object.
    pub fn labels_in(&self, sensor: &Pose) -> Vec<(u32, SimClass, Box3D)> {
        self.objects.iter().map(|o| (o.id, o.class, sensor.box_to_local(&o.label))).collect()
    }
}

/// A generated world.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub seed: u64,
    pub config: SceneConfig,
    pub road: Road,
    pub ground: HeightField,
    pub statics: Vec<StaticObject>,
    /// Objects at t = 0, ids 0, 1, 2 … in placement order.
    pub objects: Vec<SceneObject>,
    /// Ego start (x, y) on the ground; it drives +x at `config.ego_speed_mps`.
    pub ego_start: [f64; 2],
}

// Albedos in KITTI's reflectance scale (the road reads ~0.2–0.3 near the car
// in real KITTI frames; markings and vegetation brighter).
const ASPHALT: Material = Material::new(MaterialKind::Asphalt, 0.30, [70, 70, 72]);
const MARKING: Material = Material::new(MaterialKind::LaneMarking, 0.70, [235, 235, 230]);
const PAVEMENT: Material = Material::new(MaterialKind::Concrete, 0.38, [150, 150, 145]);
const GRASS: Material = Material::new(MaterialKind::Grass, 0.50, [70, 120, 50]);

/// Footprint of one obstacle for placement checks: a box with its z range.
type Obstacle = Box3D;

/// Ego vehicle size used to keep its path clear (a KITTI-like station wagon).
const EGO_SIZE: [f64; 3] = [4.8, 1.9, 1.6];

impl Scene {
    /// Ground material at (x, y): asphalt, markings, pavement or grass.
    pub fn ground_material(&self, x: f64, y: f64) -> Material {
        match self.road.surface_at(x, y) {
            SurfaceKind::Road => ASPHALT,
            SurfaceKind::LaneMarking => MARKING,
            SurfaceKind::Sidewalk => PAVEMENT,
            SurfaceKind::Verge => GRASS,
        }
    }

    /// Ego pose at time t.
    pub fn ego_at(&self, t: f64) -> Pose {
        let x = self.ego_start[0] + self.config.ego_speed_mps * t;
        let y = self.ego_start[1];
        Pose { position: [x, y, self.ground.height(x, y)], yaw: 0.0 }
    }

    /// The world at time t: ego pose and objects moved at constant velocity,
    /// kept on the ground.
    pub fn snapshot(&self, t: f64) -> Snapshot {
        let objects = self
            .objects
            .iter()
            .map(|o| {
                let (x, y) = (o.label.center[0] + o.velocity[0] * t, o.label.center[1] + o.velocity[1] * t);
                let z = self.ground.height(x, y) + o.label.size[2] / 2.0;
                let label = Box3D { center: [x, y, z], ..o.label };
                SceneObject { label, body: o.body.moved(label.center, label.yaw), ..o.clone() }
            })
            .collect();
        Snapshot { time: t, ego: self.ego_at(t), objects }
    }

    fn build(config: &SceneConfig, seed: u64) -> Scene {
        let mut rng = Rng::stream(seed, 1);
        let road = layout_road(config, &mut rng);
        let ground = make_ground(config.ground, &road, &mut Rng::stream(seed, 2));
        let ego_lane = rng.below(road.lanes_forward);
        let ego_start = [0.0, road.lane_center_y(true, ego_lane)];
        let mut scene =
            Scene { seed, config: config.clone(), road, ground, statics: Vec::new(), objects: Vec::new(), ego_start };
        scene.add_statics(&mut Rng::stream(seed, 3));
        scene.add_objects(&mut Rng::stream(seed, 4));
        scene
    }

    /// Times at which placements are checked for collisions (every 0.25 s).
    fn check_times(&self) -> Vec<f64> {
        let d = self.config.duration_s;
        let n = (d / 0.25).ceil() as usize;
        (0..=n).map(|i| (i as f64 * 0.25).min(d)).collect()
    }

    fn add_statics(&mut self, rng: &mut Rng) {
        let [x0, x1] = self.road.x_range;
        for side in [-1.0, 1.0] {
            let (kerb, walk, verge) = if side < 0.0 {
                (self.road.kerb_right_y, self.road.sidewalk_right, self.road.verge_right)
            } else {
                (self.road.kerb_left_y, self.road.sidewalk_left, self.road.verge_left)
            };
            let walk_out = kerb + side * walk;
            let front = walk_out + side * verge;
            // Buildings and walls line the road with gaps between them.
            if self.config.buildings {
                let mut x = x0 + rng.range(-10.0, 0.0);
                while x < x1 {
                    x += rng.range(0.0, 9.0);
                    if rng.chance(0.75) {
                        let len = rng.range(8.0, 26.0);
                        self.push_building(x, len, front, side, rng);
                        x += len;
                    } else {
                        let len = rng.range(5.0, 25.0);
                        let mat = Material::new(MaterialKind::Concrete, rng.range(0.25, 0.5) as f32, [160, 155, 150]);
                        let h = rng.range(0.8, 2.2);
                        self.push_static(StaticKind::Wall, [x + len / 2.0, front + side * 0.15], 0.0, vec![cuboid_part(
                            [-len / 2.0, -0.15, -1.0],
                            [len / 2.0, 0.15, h],
                            mat,
                        )]);
                        x += len;
                    }
                }
            }
            // Street poles near the kerb, some with a lamp arm over the road.
            let mut x = x0 + rng.range(0.0, self.config.pole_spacing_m);
            while x < x1 {
                let r = rng.range(0.07, 0.15);
                let h = rng.range(4.5, 9.0);
                let metal = Material::new(MaterialKind::Metal, rng.range(0.3, 0.5) as f32, [120, 125, 130]);
                let mut parts = vec![Part { shape: Shape::Cylinder { center: [0.0, 0.0], radius: r, z_min: -0.5, z_max: h }, material: metal }];
                if h > 6.0 && rng.chance(0.6) {
                    // Lamp arm pointing over the road (-side direction).
                    let (a, b) = (0.0_f64, -side * 1.8);
                    parts.push(cuboid_part([-0.06, a.min(b), h - 0.15], [0.06, a.max(b), h], metal));
                }
                self.push_static(StaticKind::Pole, [x, kerb + side * 0.5], 0.0, parts);
                x += self.config.pole_spacing_m * rng.range(0.6, 1.4);
            }
            // Trees at the outer edge of the sidewalk.
            let mut x = x0 + rng.range(0.0, 15.0);
            while x < x1 {
                if rng.chance(0.5) {
                    let trunk_h = rng.range(2.5, 3.5);
                    let crown_r = rng.range(1.2, 2.5);
                    let bark = Material::new(MaterialKind::Bark, 0.3, [90, 70, 50]);
                    let leaves = Material::new(MaterialKind::Foliage, rng.range(0.4, 0.65) as f32, [50, 100, 40]);
                    let parts = vec![
                        Part { shape: Shape::Cylinder { center: [0.0, 0.0], radius: rng.range(0.1, 0.25), z_min: -0.5, z_max: trunk_h + 0.3 }, material: bark },
                        Part { shape: Shape::Cylinder { center: [0.0, 0.0], radius: crown_r, z_min: trunk_h, z_max: trunk_h + rng.range(2.0, 5.0) }, material: leaves },
                    ];
                    self.push_static(StaticKind::Tree, [x, walk_out - side * 0.5], 0.0, parts);
                }
                x += rng.range(8.0, 20.0);
            }
            // Vegetation clutter on the verge: clumps of small boxes and cylinders.
            if verge > 0.8 {
                let clumps = (self.config.vegetation_density * (x1 - x0) / 10.0).round() as usize;
                for _ in 0..clumps {
                    let cx = rng.range(x0, x1);
                    let cy = walk_out + side * rng.range(0.4, verge - 0.4);
                    let leaves = Material::new(MaterialKind::Foliage, rng.range(0.35, 0.65) as f32, [40, 110, 45]);
                    let mut parts = Vec::new();
                    for _ in 0..rng.int_in(2, 5) {
                        let (dx, dy) = (rng.range(-0.6, 0.6), rng.range(-0.3, 0.3));
                        let r = rng.range(0.2, 0.5);
                        let h = rng.range(0.4, 1.4);
                        if rng.chance(0.5) {
                            parts.push(Part { shape: Shape::Cylinder { center: [dx, dy], radius: r, z_min: -0.3, z_max: h }, material: leaves });
                        } else {
                            parts.push(cuboid_part([dx - r, dy - r, -0.3], [dx + r, dy + r, h], leaves));
                        }
                    }
                    self.push_static(StaticKind::Vegetation, [cx, cy], rng.range(0.0, 3.0), parts);
                }
            }
        }
    }

    fn push_building(&mut self, x: f64, len: f64, front: f64, side: f64, rng: &mut Rng) {
        let depth = rng.range(6.0, 14.0);
        let height = rng.range(4.0, 16.0);
        let walls: [([u8; 3], MaterialKind); 4] = [
            ([180, 90, 70], MaterialKind::Brick),
            ([200, 195, 180], MaterialKind::Concrete),
            ([150, 150, 150], MaterialKind::Concrete),
            ([220, 210, 170], MaterialKind::Concrete),
        ];
        let (colour, kind) = walls[rng.below(walls.len())];
        let wall = Material::new(kind, rng.range(0.25, 0.55) as f32, colour);
        let glass = Material::new(MaterialKind::Glass, 0.1, [60, 80, 100]);
        // Local frame: x along the road, y = depth (facade towards the road at -side·depth/2).
        let mut parts = vec![cuboid_part([-len / 2.0, -depth / 2.0, -2.0], [len / 2.0, depth / 2.0, height], wall)];
        // One window band per floor, 2 cm proud of the facade: dark glass
        // for intensity contrast and for the camera.
        let facade = -side * depth / 2.0;
        let (a, b) = (facade, facade - side * 0.02);
        let mut z = 1.0;
        while z + 1.4 < height {
            parts.push(cuboid_part([-len / 2.0 + 0.8, a.min(b), z], [len / 2.0 - 0.8, a.max(b), z + 1.3], glass));
            z += 3.0;
        }
        self.push_static(StaticKind::Building, [x + len / 2.0, front + side * depth / 2.0], 0.0, parts);
    }

    /// Adds a static body at (x, y); its origin z is the lowest ground
    /// height under its footprint so that nothing floats on slopes.
    fn push_static(&mut self, kind: StaticKind, xy: [f64; 2], yaw: f64, parts: Vec<Part>) {
        let probe = Body::new([xy[0], xy[1], 0.0], yaw, parts);
        let (lo, hi) = probe.local_bounds();
        let mut z = f64::INFINITY;
        for lx in [lo[0], hi[0], 0.0] {
            for ly in [lo[1], hi[1], 0.0] {
                let (s, c) = yaw.sin_cos();
                let (wx, wy) = (xy[0] + c * lx - s * ly, xy[1] + s * lx + c * ly);
                z = z.min(self.ground.height(wx, wy));
            }
        }
        let body = probe.moved([xy[0], xy[1], z], yaw);
        self.statics.push(StaticObject { kind, body });
    }

    /// Every static part as a world box, for placement checks.
    fn static_obstacles(&self) -> Vec<Obstacle> {
        let mut out = Vec::new();
        for s in &self.statics {
            for p in &s.body.parts {
                let (lo, hi) = p.shape.bounds();
                let c = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, (lo[2] + hi[2]) / 2.0];
                let size = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
                let centre = s.body.dir_to_world(c);
                let o = s.body.origin;
                out.push(Box3D { center: [o[0] + centre[0], o[1] + centre[1], o[2] + centre[2]], size, yaw: s.body.yaw });
            }
        }
        out
    }

    fn add_objects(&mut self, rng: &mut Rng) {
        let statics = self.static_obstacles();
        let times = self.check_times();
        let cfg = self.config.clone();
        // Each lane has one traffic speed (m/s); cyclists ride at their own.
        let lane_speed: Vec<f64> = (0..self.road.lanes_forward + self.road.lanes_backward).map(|_| rng.range(4.0, 14.0)).collect();
        let mut placed: Vec<(Box3D, [f64; 2])> = Vec::new();
        // The ego path is reserved like a placed object (with 2 m extra length).
        let ego_z = self.ground.height(self.ego_start[0], self.ego_start[1]) + EGO_SIZE[2] / 2.0;
        placed.push((
            Box3D { center: [self.ego_start[0], self.ego_start[1], ego_z], size: [EGO_SIZE[0] + 4.0, EGO_SIZE[1], EGO_SIZE[2]], yaw: 0.0 },
            [cfg.ego_speed_mps, 0.0],
        ));
        // Large objects first: they are the hardest to fit.
        let plan = [
            (SimClass::Truck, cfg.trucks),
            (SimClass::Van, cfg.vans),
            (SimClass::Car, cfg.cars),
            (SimClass::Cyclist, cfg.cyclists),
            (SimClass::Pedestrian, cfg.pedestrians),
        ];
        let travel = cfg.ego_speed_mps * cfg.duration_s;
        let [rx0, rx1] = [cfg.object_region_m[0], cfg.object_region_m[1] + travel];
        for (class, count) in plan {
            let n = rng.int_in(count.min, count.max);
            for _ in 0..n {
                for _attempt in 0..40 {
                    let size = class.sample_size(rng);
                    let x = rng.range(rx0, rx1);
                    let Some((y, yaw, velocity, parked)) = self.propose(class, size, &lane_speed, rng) else { break };
                    let z = self.ground.height(x, y) + size[2] / 2.0;
                    let label = Box3D { center: [x, y, z], size, yaw: wrap_angle(yaw) };
                    if collides(&label, velocity, &placed, &statics, &times) {
                        continue;
                    }
                    let (parts, material) = build_shape(class, size, cfg.licence_plates, rng);
                    let body = Body::new(label.center, label.yaw, parts);
                    let id = self.objects.len() as u32;
                    self.objects.push(SceneObject { id, class, label, velocity, parked, material, body });
                    placed.push((label, velocity));
                    break;
                }
            }
        }
    }

    /// A lateral position, heading, velocity and parked flag for a new object
    /// of `class`, or None when the road offers no place for it.
    fn propose(&self, class: SimClass, size: [f64; 3], lane_speed: &[f64], rng: &mut Rng) -> Option<(f64, f64, [f64; 2], bool)> {
        let road = &self.road;
        let deg = std::f64::consts::PI / 180.0;
        match class {
            SimClass::Car | SimClass::Van | SimClass::Truck => {
                let sides: Vec<bool> = [(true, road.parking_right), (false, road.parking_left)]
                    .iter()
                    .filter(|s| s.1)
                    .map(|s| s.0)
                    .collect();
                if !sides.is_empty() && rng.chance(self.config.parked_fraction) {
                    // Parallel-parked at the kerb, facing the traffic of its side.
                    let right = sides[rng.below(sides.len())];
                    let gap = size[1] / 2.0 + rng.range(0.15, 0.35);
                    let (y, yaw) = if right { (road.kerb_right_y + gap, 0.0) } else { (road.kerb_left_y - gap, std::f64::consts::PI) };
                    let yaw = yaw + rng.normal_clamped(0.0, 1.5, 2.5) * deg;
                    return Some((y, yaw, [0.0, 0.0], true));
                }
                let lanes = road.lanes_forward + road.lanes_backward;
                let lane = rng.below(lanes);
                let forward = lane < road.lanes_forward;
                let i = if forward { lane } else { lane - road.lanes_forward };
                let y = road.lane_center_y(forward, i) + rng.normal_clamped(0.0, 0.1, 2.0);
                let dir = if forward { 1.0 } else { -1.0 };
                let speed = lane_speed.get(lane).copied().unwrap_or(8.0);
                let yaw = if forward { 0.0 } else { std::f64::consts::PI } + rng.normal_clamped(0.0, 0.5, 2.0) * deg;
                Some((y, yaw, [dir * speed, 0.0], false))
            }
            SimClass::Cyclist => {
                // Near the outer edge of the outermost lane, with the traffic.
                let forward = rng.chance(0.5);
                let edge = road.lanes_edge_y(forward);
                let dir = if forward { 1.0 } else { -1.0 };
                let y = edge + dir * rng.range(0.5, 0.8);
                let speed = rng.range(3.0, 6.0);
                let yaw = if forward { 0.0 } else { std::f64::consts::PI } + rng.normal_clamped(0.0, 2.0, 2.0) * deg;
                Some((y, yaw, [dir * speed, 0.0], false))
            }
            SimClass::Pedestrian => {
                let right = rng.chance(0.5);
                let (kerb, walk, side) =
                    if right { (road.kerb_right_y, road.sidewalk_right, -1.0) } else { (road.kerb_left_y, road.sidewalk_left, 1.0) };
                let margin = 0.6;
                if walk < 2.0 * margin {
                    return None;
                }
                let y = kerb + side * rng.range(margin, walk - margin);
                if rng.chance(0.7) {
                    let dir = if rng.chance(0.5) { 1.0 } else { -1.0 };
                    let speed = rng.range(0.8, 1.6);
                    let yaw = if dir > 0.0 { 0.0 } else { std::f64::consts::PI } + rng.normal_clamped(0.0, 5.0, 2.0) * deg;
                    Some((y, yaw, [dir * speed, 0.0], false))
                } else {
                    Some((y, rng.range(-std::f64::consts::PI, std::f64::consts::PI), [0.0, 0.0], false))
                }
            }
        }
    }
}

fn cuboid_part(min: [f64; 3], max: [f64; 3], material: Material) -> Part {
    Part { shape: Shape::Box { min, max }, material }
}

fn layout_road(config: &SceneConfig, rng: &mut Rng) -> Road {
    let lane_width = rng.range(3.0, 3.75);
    let lanes_forward = if rng.chance(0.3) { 2 } else { 1 };
    let lanes_backward = if rng.chance(0.3) { 2 } else { 1 };
    let parking_right = rng.chance(0.65);
    let parking_left = rng.chance(0.65);
    let parking_width = 2.3;
    let kerb_right_y = -(lanes_forward as f64 * lane_width) - if parking_right { parking_width } else { 0.3 };
    let kerb_left_y = lanes_backward as f64 * lane_width + if parking_left { parking_width } else { 0.3 };
    let travel = config.ego_speed_mps * config.duration_s;
    Road {
        lane_width,
        lanes_forward,
        lanes_backward,
        parking_right,
        parking_left,
        parking_width,
        kerb_right_y,
        kerb_left_y,
        kerb_height: rng.range(0.10, 0.18),
        sidewalk_right: rng.range(1.8, 4.0),
        sidewalk_left: rng.range(1.8, 4.0),
        verge_right: if rng.chance(0.6) { rng.range(0.5, 5.0) } else { 0.0 },
        verge_left: if rng.chance(0.6) { rng.range(0.5, 5.0) } else { 0.0 },
        x_range: [-config.extent_behind_m, config.extent_ahead_m + travel],
    }
}

fn make_ground(kind: GroundKind, road: &Road, rng: &mut Rng) -> HeightField {
    let kind = match kind {
        GroundKind::Random => [GroundKind::Flat, GroundKind::Sloped, GroundKind::Bumpy][rng.below(3)],
        k => k,
    };
    let sign = |rng: &mut Rng| if rng.chance(0.5) { 1.0 } else { -1.0 };
    let (slope, bumps) = match kind {
        GroundKind::Sloped => ([sign(rng) * rng.range(0.01, 0.06), rng.range(-0.01, 0.01)], Vec::new()),
        GroundKind::Bumpy => {
            let slope = [rng.range(-0.02, 0.02), rng.range(-0.005, 0.005)];
            let bumps = (0..3)
                .map(|_| {
                    let lambda = rng.range(10.0, 40.0);
                    let dir = rng.range(0.0, std::f64::consts::TAU);
                    let k = std::f64::consts::TAU / lambda;
                    Bump { amplitude: rng.range(0.03, 0.10), kx: k * dir.cos(), ky: k * dir.sin(), phase: rng.range(0.0, std::f64::consts::TAU) }
                })
                .collect();
            (slope, bumps)
        }
        _ => ([0.0, 0.0], Vec::new()),
    };
    HeightField {
        base: road.kerb_height,
        slope,
        bumps,
        kerbs: vec![KerbStep { y: road.kerb_right_y, rise: -road.kerb_height }, KerbStep { y: road.kerb_left_y, rise: road.kerb_height }],
    }
}

/// True when `b` moving at `v` would come within 0.3 m of an earlier
/// placement (at any checked time) or overlap a static part.
fn collides(b: &Box3D, v: [f64; 2], placed: &[(Box3D, [f64; 2])], statics: &[Obstacle], times: &[f64]) -> bool {
    const MARGIN: f64 = 0.3;
    for &t in times {
        let bt = shifted(b, v, t);
        for (p, pv) in placed {
            if rects_overlap(&bt, &shifted(p, *pv, t), MARGIN) {
                return true;
            }
        }
        for s in statics {
            let (bz0, bz1) = (bt.center[2] - bt.size[2] / 2.0, bt.center[2] + bt.size[2] / 2.0);
            let (sz0, sz1) = (s.center[2] - s.size[2] / 2.0, s.center[2] + s.size[2] / 2.0);
            // z with slack for terrain differences along the way.
            if bz0 < sz1 + 0.5 && sz0 < bz1 + 0.5 && rects_overlap(&bt, s, 0.1) {
                return true;
            }
        }
    }
    false
}

fn shifted(b: &Box3D, v: [f64; 2], t: f64) -> Box3D {
    Box3D { center: [b.center[0] + v[0] * t, b.center[1] + v[1] * t, b.center[2]], ..*b }
}

/// Separating-axis test of the two boxes' footprints, each grown by `margin`/2.
pub fn rects_overlap(a: &Box3D, b: &Box3D, margin: f64) -> bool {
    // Bounding circles first: (l + w) / 2 bounds the half-diagonal.
    let ra = (a.size[0] + a.size[1]) / 2.0 + margin;
    let rb = (b.size[0] + b.size[1]) / 2.0 + margin;
    let (dx, dy) = (b.center[0] - a.center[0], b.center[1] - a.center[1]);
    if dx * dx + dy * dy > (ra + rb) * (ra + rb) {
        return false;
    }
    let axes = |bx: &Box3D| {
        let (s, c) = bx.yaw.sin_cos();
        [[c, s], [-s, c]]
    };
    let half = |bx: &Box3D| [bx.size[0] / 2.0 + margin / 2.0, bx.size[1] / 2.0 + margin / 2.0];
    let (aa, ab, ha, hb) = (axes(a), axes(b), half(a), half(b));
    for axis in aa.iter().chain(ab.iter()) {
        let proj = |ax: &[[f64; 2]; 2], h: [f64; 2]| {
            h[0] * (ax[0][0] * axis[0] + ax[0][1] * axis[1]).abs() + h[1] * (ax[1][0] * axis[0] + ax[1][1] * axis[1]).abs()
        };
        let dist = (dx * axis[0] + dy * axis[1]).abs();
        if dist > proj(&aa, ha) + proj(&ab, hb) {
            return false;
        }
    }
    true
}

/// A multi-frame drive: frame i is the scene at t = i / hz.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriveConfig {
    pub scene: SceneConfig,
    pub frames: usize,
    /// Frame rate (KITTI: 10 Hz, one LiDAR revolution per frame).
    pub hz: f64,
}

impl Default for DriveConfig {
    fn default() -> Self {
        Self { scene: SceneConfig::default(), frames: 30, hz: 10.0 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    pub scene: Scene,
    pub frames: usize,
    pub hz: f64,
}

impl DriveConfig {
    pub fn generate(&self, seed: u64) -> Result<Drive, SimError> {
        ensure(self.frames >= 1 && self.frames <= 100_000, "frames", || format!("{} not in 1..=100000", self.frames))?;
        ensure(self.hz.is_finite() && self.hz > 0.0 && self.hz <= 1000.0, "hz", || format!("{} not in (0, 1000]", self.hz))?;
        let mut scene = self.scene.clone();
        scene.duration_s = (self.frames - 1) as f64 / self.hz;
        Ok(Drive { scene: scene.generate(seed)?, frames: self.frames, hz: self.hz })
    }
}

impl Drive {
    pub fn time(&self, frame: usize) -> f64 {
        frame as f64 / self.hz
    }

    pub fn snapshot(&self, frame: usize) -> Result<Snapshot, SimError> {
        if frame >= self.frames {
            return Err(SimError::FrameOutOfRange { index: frame, frames: self.frames });
        }
        Ok(self.scene.snapshot(self.time(frame)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_scene_different_seed_different() {
        let cfg = SceneConfig::default();
        let a = cfg.generate(42).unwrap();
        let b = cfg.generate(42).unwrap();
        let c = cfg.generate(43).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.objects.iter().map(|o| o.label).collect::<Vec<_>>(), c.objects.iter().map(|o| o.label).collect::<Vec<_>>());
    }

    #[test]
    fn objects_never_overlap_and_sit_on_the_ground() {
        for seed in 0..20 {
            let cfg = SceneConfig { ground: [GroundKind::Flat, GroundKind::Sloped, GroundKind::Bumpy][seed as usize % 3], ..Default::default() };
            let s = cfg.generate(seed).unwrap();
            let cars = s.objects.iter().filter(|o| o.class == SimClass::Car).count();
            assert!((3..=15).contains(&cars), "seed {seed}: {cars} cars");
            let statics = s.static_obstacles();
            for (i, a) in s.objects.iter().enumerate() {
                // Pedestrians on the sidewalk, everything else on the road.
                let [x, y, _] = a.label.center;
                if a.class == SimClass::Pedestrian {
                    assert_eq!(s.road.surface_at(x, y), SurfaceKind::Sidewalk, "seed {seed} object {i}");
                } else {
                    assert!(y > s.road.kerb_right_y && y < s.road.kerb_left_y, "seed {seed} object {i} off the road");
                }
                let (z0, z1) = (a.label.center[2] - a.label.size[2] / 2.0, a.label.center[2] + a.label.size[2] / 2.0);
                for st in &statics {
                    let (s0, s1) = (st.center[2] - st.size[2] / 2.0, st.center[2] + st.size[2] / 2.0);
                    assert!(!(z0 < s1 && s0 < z1 && rects_overlap(&a.label, st, 0.0)), "seed {seed} object {i} inside a static part");
                }
                let bottom = a.label.center[2] - a.label.size[2] / 2.0;
                let ground = s.ground.height(a.label.center[0], a.label.center[1]);
                assert!((bottom - ground).abs() < 0.03, "seed {seed} object {i}: bottom {bottom} ground {ground}");
                for b in &s.objects[i + 1..] {
                    assert!(!rects_overlap(&a.label, &b.label, 0.0), "seed {seed}: {:?} overlaps {:?}", a.label, b.label);
                }
            }
        }
    }

    #[test]
    fn drive_keeps_ids_moves_objects_and_never_collides() {
        let cfg = DriveConfig { frames: 31, hz: 10.0, ..Default::default() };
        let d = cfg.generate(5).unwrap();
        let first = d.snapshot(0).unwrap();
        let last = d.snapshot(30).unwrap();
        assert!(d.snapshot(31).is_err());
        assert_eq!(first.objects.iter().map(|o| o.id).collect::<Vec<_>>(), last.objects.iter().map(|o| o.id).collect::<Vec<_>>());
        assert!((last.ego.position[0] - first.ego.position[0] - 3.0 * d.scene.config.ego_speed_mps).abs() < 1e-9);
        let moving = first.objects.iter().zip(&last.objects).filter(|(a, b)| a.label.center != b.label.center).count();
        assert!(moving > 0);
        for snap in [&first, &last] {
            for (i, a) in snap.objects.iter().enumerate() {
                for b in &snap.objects[i + 1..] {
                    assert!(!rects_overlap(&a.label, &b.label, 0.0));
                }
            }
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = SceneConfig { cars: CountRange::new(5, 2), ..Default::default() };
        assert!(matches!(bad.generate(0), Err(SimError::InvalidConfig { .. })));
        let bad = SceneConfig { extent_ahead_m: -1.0, ..Default::default() };
        assert!(bad.generate(0).is_err());
        let bad = DriveConfig { hz: 0.0, ..Default::default() };
        assert!(bad.generate(0).is_err());
    }

    #[test]
    fn pose_round_trip_and_box_to_local() {
        let p = Pose { position: [10.0, -2.0, 1.73], yaw: 0.3 };
        let q = p.to_world(p.to_local([3.0, 4.0, 5.0]));
        assert!((q[0] - 3.0).abs() < 1e-12 && (q[1] - 4.0).abs() < 1e-12 && (q[2] - 5.0).abs() < 1e-12);
        let b = p.box_to_local(&Box3D { center: [10.0, -2.0, 1.73], size: [1.0, 1.0, 1.0], yaw: 0.3 });
        assert!(b.center.iter().all(|c| c.abs() < 1e-12) && b.yaw.abs() < 1e-12);
    }
}
