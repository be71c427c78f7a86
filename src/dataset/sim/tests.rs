//! End-to-end checks of the simulator: scenes → LiDAR scans → anomalies.
//!
//! Measurements behind the bounds (hdl64e, printed by
//! `cargo test --release --lib sim::tests::report -- --ignored --nocapture`)
//! are quoted next to each test.

use super::objects::build_shape;
use super::raycast::Body;
use super::scene::{CountRange, GroundKind};
use super::*;
use crate::cloud::Points;
use crate::geometry::Box3D;

fn hdl64e() -> Lidar {
    Lidar::new(LidarConfig::hdl64e()).unwrap()
}

/// A flat street with no objects and no clutter.
pub(super) fn empty_config() -> SceneConfig {
    SceneConfig {
        ground: GroundKind::Flat,
        cars: CountRange::new(0, 0),
        vans: CountRange::new(0, 0),
        trucks: CountRange::new(0, 0),
        pedestrians: CountRange::new(0, 0),
        cyclists: CountRange::new(0, 0),
        buildings: false,
        vegetation_density: 0.0,
        pole_spacing_m: 1000.0,
        ..Default::default()
    }
}

/// The empty street with one object of `class` (mean KITTI size) `dist` m
/// ahead of the ego in its lane, heading `yaw`.
fn lone_object(class: SimClass, dist: f64, yaw: f64) -> Scene {
    let mut scene = empty_config().generate(1).unwrap();
    let size = class.size_stats().mean;
    let (x, y) = (scene.ego_start[0] + dist, scene.ego_start[1]);
    let label = Box3D { center: [x, y, scene.ground.height(x, y) + size[2] / 2.0], size, yaw };
    let (parts, material) = build_shape(class, size, true, &mut Rng::new(9));
    scene.objects.push(SceneObject {
        id: 0,
        class,
        label,
        velocity: [0.0, 0.0],
        parked: true,
        material,
        body: Body::new(label.center, yaw, parts),
    });
    scene
}

fn scan_of(scene: &Scene, seed: u64) -> Scan {
    hdl64e().scan(scene, &scene.snapshot(0.0), seed)
}

#[test]
fn same_seed_same_cloud_any_thread_count_different_seed_differs() {
    let scene = SceneConfig::default().generate(7).unwrap();
    let snap = scene.snapshot(0.0);
    let lidar = hdl64e();
    let run = |threads: usize, seed: u64| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| lidar.scan(&scene, &snap, seed))
    };
    let a = run(1, 3);
    let b = run(3, 3);
    assert_eq!(a, b, "scan depends on the thread count");
    assert_eq!(SceneConfig::default().generate(7).unwrap(), scene);
    let c = run(2, 4);
    assert_ne!(a.points, c.points);
    let other = SceneConfig::default().generate(8).unwrap();
    assert_ne!(lidar.scan(&other, &other.snapshot(0.0), 3).points, a.points);
}

#[test]
fn label_boxes_contain_the_points_hit_on_their_objects() {
    // Measured over 20 default scenes (`report`): 99.98 % of all object hits
    // inside their boxes, worst object with >= 10 hits 99.15 % (range noise
    // σ = 2 cm clamped at 2.5 σ against a 5 cm annotation margin).
    for seed in [1, 2, 3] {
        let cfg = SceneConfig { ground: [GroundKind::Flat, GroundKind::Sloped, GroundKind::Bumpy][seed as usize % 3], ..Default::default() };
        let scene = cfg.generate(seed).unwrap();
        let snap = scene.snapshot(0.0);
        let scan = hdl64e().scan(&scene, &snap, seed);
        let labels = snap.labels_in(&scan.sensor);
        let counts = scan.object_point_counts();
        assert!(!counts.is_empty());
        for (id, class, b) in labels {
            let n = counts.get(&id).copied().unwrap_or(0);
            if n < 10 {
                continue;
            }
            let inside = (0..scan.points.len())
                .filter(|&i| scan.sources[i] == PointSource::Object(id))
                .filter(|&i| b.contains([scan.points.x[i] as f64, scan.points.y[i] as f64, scan.points.z[i] as f64]))
                .count();
            let frac = inside as f64 / n as f64;
            assert!(frac >= 0.95, "seed {seed} {class:?} {id}: {inside}/{n} inside its label box");
        }
    }
}

/// Points on a lone mean-size car (rear view, side view) at a distance.
fn car_points(dist: f64, yaw: f64) -> usize {
    let scene = lone_object(SimClass::Car, dist, yaw);
    scan_of(&scene, 5).object_point_counts().get(&0).copied().unwrap_or(0)
}

#[test]
fn points_per_car_fall_with_range_like_kitti() {
    // Measured (hdl64e, mean-size car, seed 5, `report`): rear view
    // 10/20/40 m = 1482/315/53, side view 2566/607/101. KITTI 000008 has
    // cars at 7.9/14.5/21.7/34.0 m with 1900/659/162/55 points (some occluded).
    // Bounds are loose around the measurements.
    let side = std::f64::consts::FRAC_PI_2;
    let (r10, r20, r40) = (car_points(10.0, 0.0), car_points(20.0, 0.0), car_points(40.0, 0.0));
    let (s10, s20, s40) = (car_points(10.0, side), car_points(20.0, side), car_points(40.0, side));
    assert!(r10 > 500 && s10 > 1000, "10 m: rear {r10}, side {s10}");
    assert!(r20 > 120 && r20 < r10 && s20 < s10, "20 m: rear {r20}, side {s20}");
    assert!((20..300).contains(&r40) && (20..300).contains(&s40), "40 m: rear {r40}, side {s40}");
    assert!(r40 < r20 && s40 < s20);
}

#[test]
fn points_per_frame_are_kitti_like() {
    // Measured over seeds 0..20 (`report`): 118.8k–128.7k per revolution
    // (KITTI's HDL-64E: ~1.3 M points/s, ~120k per frame), 30k–33k with
    // |azimuth| <= 45°, 18.6k–21.2k in KITTI's image window (the real frame
    // 000008, cropped to the image, has 17,238).
    for seed in 0..3 {
        let scene = SceneConfig::default().generate(seed).unwrap();
        let scan = scan_of(&scene, seed);
        let n = scan.points.len();
        assert!((80_000..=130_000).contains(&n), "seed {seed}: {n} points");
        let front = scan.crop_to_camera_fov(lidar::KITTI_CAMERA_HALF_FOV_DEG);
        assert!(front.points.len() < n / 3 && front.points.len() > 8_000);
        let image = scan.crop_to_window(&KITTI_IMAGE_WINDOW_DEG);
        assert!((12_000..30_000).contains(&image.points.len()), "seed {seed}: {} in the image window", image.points.len());
        assert_eq!(front.points.len(), crop_to_camera_fov(&scan.points, 45.0).len());
        assert!(front.points.x.iter().zip(&front.points.y).all(|(x, y)| *x > 0.0 && y.abs() <= *x * 1.0001));
    }
}

#[test]
fn drive_scans_keep_object_ids() {
    let cfg = DriveConfig { frames: 3, hz: 10.0, ..Default::default() };
    let drive = cfg.generate(11).unwrap();
    let lidar = hdl64e();
    let mut seen = Vec::new();
    for i in 0..drive.frames {
        let snap = drive.snapshot(i).unwrap();
        let scan = lidar.scan(&drive.scene, &snap, i as u64);
        for id in scan.object_point_counts().keys() {
            assert!(snap.objects.iter().any(|o| o.id == *id));
        }
        seen.push(scan.sensor.position[0]);
    }
    assert!((seen[2] - seen[0] - 0.2 * drive.scene.config.ego_speed_mps).abs() < 1e-9);
}

// ---------------------------------------------------------------- anomalies

fn base_cloud() -> Points {
    scan_of(&SceneConfig::default().generate(21).unwrap(), 21).points
}

fn applied(a: &Anomaly, base: &Points, s: f64, seed: u64) -> (Points, AnomalyEffect) {
    let mut p = base.clone();
    let e = a.apply(&mut p, Severity::new(s).unwrap(), seed).unwrap();
    (p, e)
}

fn range(p: &Points, i: usize) -> f32 {
    (p.x[i] * p.x[i] + p.y[i] * p.y[i] + p.z[i] * p.z[i]).sqrt()
}

const LEVELS: [f64; 3] = [0.25, 0.5, 1.0];

#[test]
fn noise_adds_points_monotonically() {
    let base = base_cloud();
    let a = Anomaly::default_for(AnomalyKind::Noise);
    let added: Vec<usize> = LEVELS.iter().map(|&s| applied(&a, &base, s, 1).0.len() - base.len()).collect();
    assert_eq!(added[2], (0.05 * base.len() as f64).round() as usize);
    assert!(added[0] > 0 && added[0] < added[1] && added[1] < added[2], "{added:?}");
    assert_eq!(applied(&a, &base, 0.0, 1).0, base);
}

#[test]
fn sector_and_beam_dropout_remove_what_they_say() {
    let base = base_cloud();
    let a = Anomaly::default_for(AnomalyKind::SectorDropout);
    let mut removed = Vec::new();
    for s in LEVELS {
        let (p, e) = applied(&a, &base, s, 2);
        let w = e.window.unwrap();
        assert!((w.half_azimuth_deg - s * 60.0).abs() < 1e-9);
        let inside = |q: &Points| (0..q.len()).filter(|&i| w.contains(q.x[i] as f64, q.y[i] as f64, q.z[i] as f64)).count();
        assert!(inside(&base) > 100 && inside(&p) == 0);
        removed.push(base.len() - p.len());
    }
    assert!(removed[0] < removed[1] && removed[1] < removed[2], "{removed:?}");

    let a = Anomaly::default_for(AnomalyKind::BeamDropout);
    let mut beams = Vec::new();
    for s in LEVELS {
        let (p, e) = applied(&a, &base, s, 2);
        let rings = p.ring.as_ref().unwrap();
        assert!(e.beams.iter().all(|b| !rings.contains(b)));
        assert!(e.beams.iter().all(|b| base.ring.as_ref().unwrap().contains(b)));
        beams.push(e.beams.len());
    }
    assert_eq!(beams, vec![8, 16, 32]);
}

#[test]
fn weather_adds_near_low_intensity_returns() {
    let base = base_cloud();
    // Within 3.5 m nothing but the odd close object returns in a clean scan
    // (the lowest beam meets flat ground at 3.75 m), so backscatter stands out.
    for (kind, near_m, max_int) in [(AnomalyKind::Fog, 3.5, 0.05), (AnomalyKind::Rain, 3.5, 0.09), (AnomalyKind::Snow, 3.5, 0.36)] {
        let a = Anomaly::default_for(kind);
        let count = |p: &Points| (0..p.len()).filter(|&i| range(p, i) < near_m && p.intensity[i] < max_int).count();
        let c0 = count(&base);
        let cs: Vec<usize> = LEVELS.iter().map(|&s| count(&applied(&a, &base, s, 3).0)).collect();
        assert!(c0 < cs[0] && cs[0] < cs[1] && cs[1] < cs[2], "{kind:?}: {c0} then {cs:?}");
        // Far returns are lost to extinction.
        let far = |p: &Points| (0..p.len()).filter(|&i| range(p, i) > 30.0).count();
        assert!(far(&applied(&a, &base, 1.0, 3).0) < far(&base));
    }
}

#[test]
fn phantom_adds_a_cluster_where_there_was_none() {
    let empty = empty_config().generate(1).unwrap();
    let base = scan_of(&empty, 1).points;
    let a = Anomaly::default_for(AnomalyKind::Phantom);
    let mut counts = Vec::new();
    for s in LEVELS {
        let (p, e) = applied(&a, &base, s, 4);
        let b = e.region.unwrap();
        let grown = Box3D { size: [b.size[0] + 0.02, b.size[1] + 0.02, b.size[2] + 0.02], ..b };
        // Above the box's bottom 20 cm, so that ground returns do not count.
        let above = |q: &Points| {
            (0..q.len())
                .filter(|&i| grown.contains([q.x[i] as f64, q.y[i] as f64, q.z[i] as f64]))
                .filter(|&i| q.z[i] as f64 > b.center[2] - b.size[2] / 2.0 + 0.2)
                .count()
        };
        assert_eq!(above(&base), 0);
        assert!((b.center[2] - b.size[2] / 2.0 + 1.73).abs() < 0.1, "phantom stands on the ground: {b:?}");
        counts.push(above(&p));
    }
    assert!(counts[0] > 50 && counts[0] < counts[1] && counts[1] < counts[2], "{counts:?}");
}

#[test]
fn occlusion_removes_a_solid_angle_patch() {
    let base = base_cloud();
    let a = Anomaly::default_for(AnomalyKind::Occlusion);
    let mut removed = Vec::new();
    for s in LEVELS {
        let (p, e) = applied(&a, &base, s, 5);
        let w = e.window.unwrap();
        assert!(w.half_elevation_deg < 90.0 && (w.half_azimuth_deg - 30.0 * s).abs() < 1e-9);
        assert_eq!((0..p.len()).filter(|&i| w.contains(p.x[i] as f64, p.y[i] as f64, p.z[i] as f64)).count(), 0);
        removed.push(base.len() - p.len());
    }
    assert!(removed[0] > 0 && removed[0] < removed[1] && removed[1] < removed[2], "{removed:?}");
}

#[test]
fn miscalibration_rotates_by_the_stated_angle() {
    // A known point: (10, 0, 0) turned by the yaw alone.
    let mut one = Points::with_capacity(1, true, true);
    one.push(crate::cloud::Point { x: 10.0, ..Default::default() });
    let a = Anomaly::Miscalibration { max_roll_deg: 0.0, max_pitch_deg: 0.0, max_yaw_deg: 4.0 };
    let (p, e) = applied(&a, &one, 0.5, 6);
    let yaw = e.rotation_rpy_deg.unwrap()[2];
    assert!((yaw.abs() - 2.0).abs() < 1e-12);
    let got = (p.y[0] as f64).atan2(p.x[0] as f64).to_degrees();
    assert!((got - yaw).abs() < 1e-4 && (p.z[0]).abs() < 1e-6, "rotated to {got}°, stated {yaw}°");
    // A pitch alone lifts or lowers the same point by 10·sin(pitch).
    let a = Anomaly::Miscalibration { max_roll_deg: 0.0, max_pitch_deg: 2.0, max_yaw_deg: 0.0 };
    let (p, e) = applied(&a, &one, 1.0, 6);
    let pitch = e.rotation_rpy_deg.unwrap()[1].to_radians();
    assert!((p.z[0] as f64 + 10.0 * pitch.sin()).abs() < 1e-5);
    // Ranges are preserved, and the change grows with severity.
    let base = base_cloud();
    let a = Anomaly::default_for(AnomalyKind::Miscalibration);
    let shift = |s: f64| {
        let (p, _) = applied(&a, &base, s, 6);
        assert!((0..p.len()).step_by(97).all(|i| (range(&p, i) - range(&base, i)).abs() < 1e-3));
        (0..p.len()).map(|i| ((p.x[i] - base.x[i]).abs() + (p.y[i] - base.y[i]).abs()) as f64).sum::<f64>()
    };
    assert!(shift(0.25) < shift(0.5) && shift(0.5) < shift(1.0));
}

#[test]
fn intensity_corruption_changes_the_distribution() {
    let base = base_cloud();
    let a = Anomaly::IntensityCorruption;
    let mean = |p: &Points| p.intensity.iter().map(|v| *v as f64).sum::<f64>() / p.len() as f64;
    let change: Vec<f64> = LEVELS
        .iter()
        .map(|&s| {
            let (p, _) = applied(&a, &base, s, 7);
            assert_eq!(p.len(), base.len());
            p.intensity.iter().zip(&base.intensity).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / base.len() as f64
        })
        .collect();
    assert!(change[0] > 0.02 && change[0] < change[1] && change[1] < change[2], "{change:?}");
    // Real reflectance is mostly dark; corruption pulls the mean towards 0.5.
    assert!(mean(&base) < 0.3 && mean(&applied(&a, &base, 1.0, 7).0) > 0.4);
}

#[test]
fn stale_frames_repeat_the_previous_frame() {
    let frames: Vec<Points> = (0..40)
        .map(|i| {
            let mut p = Points::with_capacity(1, true, true);
            p.push(crate::cloud::Point { x: i as f32, ..Default::default() });
            p
        })
        .collect();
    let a = Anomaly::default_for(AnomalyKind::StaleFrame);
    assert!(matches!(a.apply(&mut frames[0].clone(), Severity::HIGH, 0), Err(SimError::NeedsSequence(_))));
    let mut stale_counts = Vec::new();
    for s in LEVELS {
        let mut seq = frames.clone();
        let tags = a.apply_sequence(&mut seq, Severity::new(s).unwrap(), 8).unwrap();
        assert!(tags[0].is_none());
        for i in 1..seq.len() {
            match tags[i] {
                Some(t) => {
                    assert_eq!(seq[i], seq[i - 1]);
                    assert_eq!(t, AnomalyTag { kind: AnomalyKind::StaleFrame, severity: s });
                }
                None => assert_eq!(seq[i], frames[i]),
            }
        }
        stale_counts.push(tags.iter().flatten().count());
    }
    assert!(stale_counts[0] < stale_counts[1] && stale_counts[1] < stale_counts[2], "{stale_counts:?}");
}

#[test]
fn severities_tags_and_bad_parameters() {
    assert_eq!("high".parse::<Severity>().unwrap(), Severity::HIGH);
    assert_eq!(" Medium ".parse::<Severity>().unwrap().value(), 0.5);
    assert_eq!("0.3".parse::<Severity>().unwrap().value(), 0.3);
    assert!(matches!("1.5".parse::<Severity>(), Err(SimError::SeverityOutOfRange(_))));
    assert!(matches!("extreme".parse::<Severity>(), Err(SimError::UnknownSeverity(_))));
    assert!(Severity::new(-0.1).is_err() && Severity::new(f64::NAN).is_err());
    let tag = AnomalyTag { kind: AnomalyKind::Fog, severity: 0.5 };
    let json = serde_json::to_string(&tag).unwrap();
    assert_eq!(json, r#"{"kind":"fog","severity":0.5}"#);
    assert_eq!(serde_json::from_str::<AnomalyTag>(&json).unwrap(), tag);
    assert!(serde_json::from_str::<Severity>("2.0").is_err());
    let bad = Anomaly::Noise { max_fraction: 2.0 };
    assert!(matches!(bad.apply(&mut Points::default(), Severity::LOW, 0), Err(SimError::InvalidConfig { .. })));
    // Every default anomaly copes with an empty cloud.
    for a in Anomaly::defaults() {
        let mut empty = Points::default();
        if a.kind() != AnomalyKind::StaleFrame {
            a.apply(&mut empty, Severity::HIGH, 0).unwrap();
        }
    }
}

/// Numbers for the report: frames/s, points per frame, points per car.
/// `cargo test --release --lib sim::tests::report -- --ignored --nocapture`
#[test]
#[ignore]
fn report() {
    let lidar = hdl64e();
    let side = std::f64::consts::FRAC_PI_2;
    for d in [10.0, 20.0, 40.0] {
        println!(
            "car at {d} m: rear {} side {} diagonal {}",
            car_points(d, 0.0),
            car_points(d, side),
            car_points(d, side / 2.0)
        );
    }
    for class in [SimClass::Pedestrian, SimClass::Cyclist] {
        let s = lone_object(class, 15.0, side);
        println!("{class:?} at 15 m side view: {}", scan_of(&s, 5).object_point_counts().get(&0).copied().unwrap_or(0));
    }
    let n = 20;
    let scenes: Vec<Scene> = (0..n).map(|s| SceneConfig::default().generate(s).unwrap()).collect();
    let t0 = std::time::Instant::now();
    let mut totals = Vec::new();
    for (i, sc) in scenes.iter().enumerate() {
        let scan = lidar.scan(sc, &sc.snapshot(0.0), i as u64);
        let front = scan.crop_to_camera_fov(45.0);
        let image = scan.crop_to_window(&lidar::KITTI_IMAGE_WINDOW_DEG);
        let mean_i = scan.points.intensity.iter().sum::<f32>() / scan.points.len() as f32;
        totals.push((scan.points.len(), front.points.len(), image.points.len(), scan.object_point_counts().len(), mean_i));
    }
    let dt = t0.elapsed().as_secs_f64();
    println!("threads {}: {n} hdl64e scans in {dt:.2} s = {:.1} frames/s", rayon::current_num_threads(), n as f64 / dt);
    let tg = std::time::Instant::now();
    for s in 0..n {
        let _ = SceneConfig::default().generate(s + 100).unwrap();
    }
    println!("scene generation: {:.1} ms each", tg.elapsed().as_secs_f64() * 1000.0 / n as f64);
    for (i, t) in totals.iter().enumerate() {
        println!("seed {i}: {} points, {} in |az|<=45°, {} in the KITTI image window, {} objects hit, mean intensity {:.3}", t.0, t.1, t.2, t.3, t.4);
    }
    // Points per car by distance over random scenes, against KITTI's trend.
    let mut by_range: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, sc) in scenes.iter().enumerate() {
        let snap = sc.snapshot(0.0);
        let scan = lidar.scan(sc, &snap, i as u64);
        let counts = scan.object_point_counts();
        for (id, class, b) in snap.labels_in(&scan.sensor) {
            if class == SimClass::Car && b.center[0] > 0.0 {
                let d = b.center[0].hypot(b.center[1]);
                by_range.entry((d / 10.0) as u32 * 10).or_default().push(counts.get(&id).copied().unwrap_or(0));
            }
        }
    }
    // Fraction of each object's hits inside its label box (objects >= 10 hits).
    let mut worst = 1.0_f64;
    let mut total = (0usize, 0usize);
    for (i, sc) in scenes.iter().enumerate() {
        let snap = sc.snapshot(0.0);
        let scan = lidar.scan(sc, &snap, i as u64);
        for (id, _, b) in snap.labels_in(&scan.sensor) {
            let idx: Vec<usize> = (0..scan.points.len()).filter(|&k| scan.sources[k] == PointSource::Object(id)).collect();
            let inside = idx.iter().filter(|&&k| b.contains([scan.points.x[k] as f64, scan.points.y[k] as f64, scan.points.z[k] as f64])).count();
            total.0 += inside;
            total.1 += idx.len();
            if idx.len() >= 10 {
                worst = worst.min(inside as f64 / idx.len() as f64);
                if (inside as f64) < 0.97 * idx.len() as f64 {
                    let cls = snap.objects.iter().find(|o| o.id == id).map(|o| o.class);
                    let outs: Vec<[f64; 3]> = idx
                        .iter()
                        .map(|&k| [scan.points.x[k] as f64, scan.points.y[k] as f64, scan.points.z[k] as f64])
                        .filter(|p| !b.contains(*p))
                        .take(5)
                        .map(|p| {
                            let (s, c) = b.yaw.sin_cos();
                            let d = [p[0] - b.center[0], p[1] - b.center[1], p[2] - b.center[2]];
                            [c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]]
                        })
                        .collect();
                    println!("scene {i} {cls:?} {id}: {inside}/{} inside; size {:?}; outside (box frame) {outs:?}", idx.len(), b.size);
                }
            }
        }
    }
    println!("object hits inside their label box: {}/{} overall, worst object {:.4}", total.0, total.1, worst);
    for (r, mut v) in by_range {
        v.sort_unstable();
        println!("cars {r}-{} m ahead: n {} median {} points", r + 10, v.len(), v[v.len() / 2]);
    }
    if let Some(dir) = crate::cloud::test_data::kitti_dir() {
        if let Ok(real) = crate::cloud::kitti_bin::read(dir.join("000008.bin")) {
            let hist = |p: &Points| {
                let mut h = [0usize; 8];
                for i in 0..p.len() {
                    let r = (p.x[i].hypot(p.y[i]) / 10.0) as usize;
                    h[r.min(7)] += 1;
                }
                h
            };
            let sim = scan_of(&scenes[0], 0).crop_to_window(&lidar::KITTI_IMAGE_WINDOW_DEG).points;
            let mean_i = real.intensity.iter().sum::<f32>() / real.len() as f32;
            println!("KITTI 000008 mean intensity {mean_i:.3}");
            println!("range histogram (10 m bins, KITTI image window): KITTI 000008 {:?} ({} pts), sim seed 0 {:?} ({} pts)", hist(&real), real.len(), hist(&sim), sim.len());
        }
    }
}

/// Generation speed, hdl64e, scene generation included:
/// `cargo test --release --lib sim::tests::speed -- --ignored --nocapture`
#[test]
#[ignore]
fn speed() {
    let lidar = hdl64e();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let n = 100;
        let t0 = std::time::Instant::now();
        let points: usize = pool.install(|| {
            (0..n)
                .map(|s| {
                    let sc = SceneConfig::default().generate(s).unwrap();
                    lidar.scan(&sc, &sc.snapshot(0.0), s).points.len()
                })
                .sum()
        });
        let dt = t0.elapsed().as_secs_f64();
        println!("{threads} thread(s): {n} frames in {dt:.2} s = {:.1} frames/s ({} points/frame)", n as f64 / dt, points / n as usize);
    }
}
