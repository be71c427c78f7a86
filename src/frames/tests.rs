//! The transform buffer and the mounting on hand-built frames.

use super::*;
use crate::cloud::{Point, Points};
use crate::geometry::Box3D;
use nalgebra::{Isometry3, Point3, Vector3};
use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};

const S: i64 = 1_000_000_000;

fn iso(x: f64, y: f64, z: f64, yaw: f64) -> Isometry3<f64> {
    Isometry3::new(Vector3::new(x, y, z), Vector3::z() * yaw)
}

fn yaw_of(i: &Isometry3<f64>) -> f64 {
    let a = i.rotation * Vector3::x();
    a.y.atan2(a.x)
}

fn close(a: &Isometry3<f64>, b: &Isometry3<f64>, tol: f64) -> bool {
    (a.translation.vector - b.translation.vector).norm() <= tol && a.rotation.angle_to(&b.rotation) <= tol
}

/// map -> odom (dynamic), odom -> base_link (dynamic), base_link -> lidar and
/// base_link -> camera (static).
fn vehicle() -> TransformBuffer {
    let mut b = TransformBuffer::default();
    b.set_transform("map", "odom", S, iso(100.0, 50.0, 0.0, 0.3), false).unwrap();
    b.set_transform("map", "odom", 3 * S, iso(100.0, 50.0, 0.0, 0.3), false).unwrap();
    b.set_transform("odom", "base_link", S, iso(0.0, 0.0, 0.0, 0.0), false).unwrap();
    b.set_transform("odom", "base_link", 2 * S, iso(10.0, 0.0, 0.0, FRAC_PI_2), false).unwrap();
    b.set_transform("base_link", "lidar", 0, iso(1.0, 0.0, 1.8, -FRAC_PI_2), true).unwrap();
    b.set_transform("/base_link", "camera", 0, iso(1.5, 0.2, 1.4, 0.0), true).unwrap();
    b
}

#[test]
fn chains_compose_and_reverse_lookups_invert() {
    let b = vehicle();
    let t = 2 * S;
    let map_from_lidar = b.lookup("map", "lidar", t).unwrap();
    let expected = iso(100.0, 50.0, 0.0, 0.3) * iso(10.0, 0.0, 0.0, FRAC_PI_2) * iso(1.0, 0.0, 1.8, -FRAC_PI_2);
    assert!(close(&map_from_lidar, &expected, 1e-12), "{map_from_lidar} vs {expected}");
    let lidar_from_map = b.lookup("lidar", "map", t).unwrap();
    assert!(close(&(lidar_from_map * map_from_lidar), &Isometry3::identity(), 1e-12));
    // a point 5 m ahead of a y-forward lidar is 5 m ahead of the base
    let p = b.lookup("base_link", "/lidar", t).unwrap() * Point3::new(0.0, 5.0, 0.0);
    assert!((p - Point3::new(6.0, 0.0, 1.8)).norm() < 1e-12, "{p}");
    // siblings meet at base_link: the dynamic edges above do not matter, at any time
    let cam_from_lidar = b.lookup("camera", "lidar", 1_000 * S).unwrap();
    assert!(close(&cam_from_lidar, &(iso(1.5, 0.2, 1.4, 0.0).inverse() * iso(1.0, 0.0, 1.8, -FRAC_PI_2)), 1e-12));
    assert!(close(&b.lookup("lidar", "lidar", 7).unwrap(), &Isometry3::identity(), 0.0));
    assert_eq!(b.parent_of("/camera"), Some("base_link"));
    assert_eq!(b.len(), 4);
}

#[test]
fn interpolation_is_exact_between_samples_and_at_them() {
    let b = vehicle();
    // odom -> base_link goes from (0,0) yaw 0 at 1 s to (10,0) yaw 90° at 2 s
    let mid = b.lookup("odom", "base_link", S + S / 2).unwrap();
    assert!((mid.translation.vector - Vector3::new(5.0, 0.0, 0.0)).norm() < 1e-12);
    assert!((yaw_of(&mid) - FRAC_PI_4).abs() < 1e-12, "{}", yaw_of(&mid));
    let quarter = b.lookup("odom", "base_link", S + S / 4).unwrap();
    assert!((quarter.translation.x - 2.5).abs() < 1e-12 && (yaw_of(&quarter) - PI / 8.0).abs() < 1e-12);
    let at = b.lookup("odom", "base_link", 2 * S).unwrap();
    assert!(close(&at, &iso(10.0, 0.0, 0.0, FRAC_PI_2), 1e-15));
    // the short way round: 170° to -170° passes through 180°, not 0°
    let mut c = TransformBuffer::default();
    c.set_transform("a", "b", S, iso(0.0, 0.0, 0.0, 170f64.to_radians()), false).unwrap();
    c.set_transform("a", "b", 2 * S, iso(0.0, 0.0, 0.0, -170f64.to_radians()), false).unwrap();
    let y = yaw_of(&c.lookup("a", "b", S + S / 2).unwrap());
    assert!((y.abs() - PI).abs() < 1e-9, "{}", y.to_degrees());
    // out-of-order arrivals are sorted in; a repeated stamp replaces
    c.set_transform("a", "b", S + S / 2, iso(1.0, 0.0, 0.0, 0.0), false).unwrap();
    c.set_transform("a", "b", S + S / 2, iso(2.0, 0.0, 0.0, 0.0), false).unwrap();
    assert!((c.lookup("a", "b", S + S / 2).unwrap().translation.x - 2.0).abs() < 1e-15);
    assert!((c.lookup("a", "b", S + S / 4).unwrap().translation.x - 1.0).abs() < 1e-12);
}

#[test]
fn stamp_zero_is_the_latest_common_time() {
    let b = vehicle();
    // map->odom ends at 3 s, odom->base_link at 2 s: the path's latest common time is 2 s
    assert_eq!(b.latest_common_time("map", "lidar").unwrap(), Some(2 * S));
    let latest = b.lookup("map", "lidar", 0).unwrap();
    assert!(close(&latest, &b.lookup("map", "lidar", 2 * S).unwrap(), 0.0));
    assert_eq!(b.latest_common_time("odom", "map").unwrap(), Some(3 * S));
    // a static path has none, and any time works
    assert_eq!(b.latest_common_time("camera", "lidar").unwrap(), None);
    assert!(b.lookup("camera", "lidar", 0).is_ok());
}

#[test]
fn extrapolation_is_an_error_with_the_times() {
    let b = vehicle();
    let past = b.lookup("map", "lidar", S / 2).unwrap_err();
    assert!(matches!(&past, FrameError::ExtrapolationPast { requested_ns, oldest_ns, .. } if *requested_ns == S / 2 && *oldest_ns == S), "{past:?}");
    let msg = past.to_string();
    assert!(msg.contains("past") && msg.contains("0.500000000 s") && msg.contains("1.000000000 s"), "{msg}");
    // 2.5 s: map->odom has it, odom->base_link ends at 2 s
    let future = b.lookup("map", "lidar", 5 * S / 2).unwrap_err();
    assert!(matches!(&future, FrameError::ExtrapolationFuture { child, newest_ns, .. } if child == "base_link" && *newest_ns == 2 * S), "{future:?}");
    assert!(future.to_string().contains("2.500000000 s"));
    // a single sample answers only its own stamp
    let mut c = TransformBuffer::default();
    c.set_transform("a", "b", 4 * S, iso(1.0, 0.0, 0.0, 0.0), false).unwrap();
    assert!(c.lookup("a", "b", 4 * S).is_ok() && c.lookup("a", "b", 0).is_ok());
    assert!(matches!(c.lookup("a", "b", 4 * S + 1), Err(FrameError::ExtrapolationFuture { .. })));
}

#[test]
fn unknown_and_disconnected_frames() {
    let mut b = vehicle();
    assert_eq!(b.lookup("map", "radar", 0).unwrap_err(), FrameError::UnknownFrame("radar".into()));
    b.set_transform("world2", "gps", 0, Isometry3::identity(), true).unwrap();
    let e = b.lookup("gps", "lidar", 0).unwrap_err();
    assert!(matches!(e, FrameError::Disconnected { .. }), "{e:?}");
    assert!(b.has_frame("world2") && b.has_frame("/gps") && !b.has_frame("radar"));
}

#[test]
fn static_and_dynamic_mix_and_a_reparented_child() {
    let mut b = vehicle();
    // the lidar moves from base_link onto a roof rack frame
    b.set_transform("base_link", "roof", 0, iso(0.0, 0.0, 1.5, 0.0), true).unwrap();
    b.set_transform("roof", "lidar", 0, iso(0.5, 0.0, 0.4, 0.0), true).unwrap();
    assert_eq!(b.parent_of("lidar"), Some("roof"));
    let p = b.lookup("base_link", "lidar", 0).unwrap() * Point3::origin();
    assert!((p - Point3::new(0.5, 0.0, 1.9)).norm() < 1e-12);
    // a static frame turned dynamic keeps only the new history
    b.set_transform("roof", "lidar", 5 * S, iso(0.0, 0.0, 0.0, 0.0), false).unwrap();
    assert!(matches!(b.lookup("roof", "lidar", 4 * S), Err(FrameError::ExtrapolationPast { .. })));
    assert!(b.lookup("roof", "lidar", 5 * S).is_ok());
    // and the map lookup now needs the lidar's 5 s as well as odom's <= 2 s: no common time
    assert!(b.lookup("map", "lidar", 0).is_err());
    // reparenting to a descendant of the child would close a loop
    let e = b.set_transform("lidar", "base_link", 0, Isometry3::identity(), true).unwrap_err();
    assert!(matches!(e, FrameError::Loop { .. }), "{e:?}");
}

#[test]
fn bad_input_is_refused_and_ids_are_normalised() {
    let mut b = TransformBuffer::new(BufferLimits { max_frames: 3, max_id_len: 8, ..Default::default() });
    let id = Isometry3::identity();
    assert_eq!(b.set_transform("", "a", 0, id, true), Err(FrameError::EmptyId));
    assert_eq!(b.set_transform("/", "a", 0, id, true), Err(FrameError::EmptyId));
    assert!(matches!(b.set_transform("a", "abcdefghi", 0, id, true), Err(FrameError::IdTooLong { len: 9, max: 8 })));
    assert!(matches!(b.set_transform("a", "b\nc", 0, id, true), Err(FrameError::BadId(_))));
    assert_eq!(b.set_transform("/a", "a", 0, id, true), Err(FrameError::SelfParent("a".into())));
    assert!(matches!(b.set_transform("a", "b", -1, id, false), Err(FrameError::NegativeStamp { .. })));
    let nan = isometry_from_parts([f64::NAN, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]);
    assert!(matches!(nan, Err(FrameError::NonFinite { .. })));
    assert!(matches!(isometry_from_parts([0.0; 3], [0.0, 0.0, 0.0, 1.5]), Err(FrameError::NotUnitQuaternion { .. })));
    assert!(matches!(isometry_from_parts([0.0; 3], [0.0; 4]), Err(FrameError::NotUnitQuaternion { .. })));
    // within 1 %: normalised
    let nearly = isometry_from_parts([1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.005]).unwrap();
    assert!((nearly.rotation.quaternion().norm() - 1.0).abs() < 1e-15);
    // an Isometry3 built unchecked is checked too
    let raw = Isometry3::from_parts(
        nalgebra::Translation3::new(0.0, 0.0, 0.0),
        nalgebra::UnitQuaternion::new_unchecked(nalgebra::Quaternion::new(2.0, 0.0, 0.0, 0.0)),
    );
    assert!(matches!(b.set_transform("a", "b", 0, raw, true), Err(FrameError::NotUnitQuaternion { .. })));
    // frame cap: three children, the fourth is refused, updating one still works
    for c in ["b", "c", "d"] {
        b.set_transform("/a", c, 0, id, true).unwrap();
    }
    assert!(matches!(b.set_transform("a", "e", 0, id, true), Err(FrameError::TooManyFrames { max: 3, .. })));
    b.set_transform("a", "d", 0, iso(1.0, 0.0, 0.0, 0.0), true).unwrap();
    assert_eq!(b.len(), 3);
    b.clear();
    assert!(b.is_empty());
}

#[test]
fn history_is_bounded_by_time_and_by_count() {
    let mut b = TransformBuffer::default(); // 10 s
    for i in 0..=20 {
        b.set_transform("odom", "base", i * S, iso(i as f64, 0.0, 0.0, 0.0), false).unwrap();
    }
    // samples before 20 s - 10 s are gone
    assert!(matches!(b.lookup("odom", "base", 9 * S), Err(FrameError::ExtrapolationPast { oldest_ns, .. }) if oldest_ns == 10 * S));
    assert!((b.lookup("odom", "base", 10 * S).unwrap().translation.x - 10.0).abs() < 1e-12);
    // a sample older than the cache window is refused
    assert!(matches!(b.set_transform("odom", "base", 9 * S, Isometry3::identity(), false), Err(FrameError::TooOld { .. })));
    // a count cap drops the oldest samples first
    let mut c = TransformBuffer::new(BufferLimits { max_samples_per_edge: 5, ..Default::default() });
    for i in 1..=50 {
        c.set_transform("odom", "base", i * S / 100, iso(i as f64, 0.0, 0.0, 0.0), false).unwrap();
    }
    assert!(matches!(c.lookup("odom", "base", 45 * S / 100), Err(FrameError::ExtrapolationPast { oldest_ns, .. }) if oldest_ns == 46 * S / 100));
    assert!(c.lookup("odom", "base", 46 * S / 100).is_ok());
}

fn cloud(pts: &[[f32; 4]]) -> Points {
    let mut p = Points::with_capacity(pts.len(), true, false);
    for (i, q) in pts.iter().enumerate() {
        p.push(Point { x: q[0], y: q[1], z: q[2], intensity: q[3], ring: i as u16, time: 0.0 });
    }
    p
}

#[test]
fn kitti_mounting_is_the_identity() {
    let m = Mounting::kitti();
    assert!(close(m.model_from_sensor(), &Isometry3::identity(), 1e-15));
    let pts = cloud(&[[10.0, -3.5, -1.7, 0.25], [-4.0, 2.0, 0.3, 0.9], [f32::NAN, 0.0, 0.0, 0.0]]);
    let out = m.to_model(&pts);
    assert_eq!((&out.x[..2], &out.y[..2], &out.z[..2]), (&pts.x[..2], &pts.y[..2], &pts.z[..2]));
    assert_eq!((&out.intensity, &out.ring), (&pts.intensity, &pts.ring));
    assert!(out.x[2].is_nan(), "a NaN point stays invalid (pillarization drops it)");
    // boxes come back 1.73 m up (base on the ground)
    let b = Box3D { center: [12.0, 1.0, -0.9], size: [4.0, 1.7, 1.5], yaw: 0.4 };
    let back = m.box_to_base(&b);
    assert!((back.center[2] - (-0.9 + 1.73)).abs() < 1e-12 && (back.yaw - 0.4).abs() < 1e-15 && back.center[0] == 12.0, "{back:?}");
    // the identity mounting keeps boxes in the sensor frame
    assert_eq!(Mounting::identity().box_to_base(&b).center, b.center);
}

#[test]
fn any_mounting_lands_in_the_model_frame() {
    // nuScenes-style LIDAR_TOP: x right, y forward, 1.84 m up, 0.9 m ahead of base_link; 0..255 intensities
    let base_from_sensor = iso(0.9, 0.0, 1.84, -FRAC_PI_2);
    let m = Mounting::new(base_from_sensor, 0.0, TRAINED_SENSOR_HEIGHT_M).unwrap().with_intensity_scale(1.0 / 255.0).unwrap();
    // 20 m ahead and 2 m left of the sensor, on the ground, in the sensor frame: (-2, 20, -1.84)
    let out = m.to_model(&cloud(&[[-2.0, 20.0, -1.84, 255.0]]));
    let got = [out.x[0], out.y[0], out.z[0], out.intensity[0]];
    let want = [20.0, 2.0, -1.73, 1.0];
    assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-5), "{got:?}");
    // the model origin sits above the ground at the sensor's x, y
    assert!((m.base_from_model() * Point3::origin() - Point3::new(0.9, 0.0, 1.73)).norm() < 1e-12);
    // a box 20 m ahead in the model frame is 20.9 m ahead of base_link, same heading
    let b = m.box_to_base(&Box3D { center: [20.0, 2.0, -0.95], size: [3.9, 1.6, 1.56], yaw: 0.2 });
    assert!((b.center[0] - 20.9).abs() < 1e-12 && (b.center[2] - 0.78).abs() < 1e-12 && (b.yaw - 0.2).abs() < 1e-12);
    // a ground frame other than base_link: base = the sensor frame of a KITTI car (ground at -1.73)
    let k = Mounting::new(Isometry3::identity(), -1.73, TRAINED_SENSOR_HEIGHT_M).unwrap();
    assert_eq!(k, Mounting::identity());
    assert!(close(k.model_from_sensor(), &Isometry3::identity(), 1e-12));
    // upside-down (rolled 180°) sensor: z flips
    let flipped = Mounting::new(Isometry3::new(Vector3::new(0.0, 0.0, 1.73), Vector3::x() * PI), 0.0, TRAINED_SENSOR_HEIGHT_M).unwrap();
    let o = flipped.to_model(&cloud(&[[5.0, 1.0, 1.73, 0.5]]));
    assert!((o.x[0] - 5.0).abs() < 1e-5 && (o.y[0] + 1.0).abs() < 1e-5 && (o.z[0] + 1.73).abs() < 1e-5);
    // bad parameters
    assert_eq!(Mounting::kitti().with_intensity_scale(0.0), Err(MountingError::IntensityScale(0.0)));
    assert!(matches!(Mounting::kitti().with_intensity_scale(f32::NAN), Err(MountingError::IntensityScale(_))));
    assert!(matches!(Mounting::new(Isometry3::identity(), f64::NAN, 1.73), Err(MountingError::GroundZ(_))));
    assert!(matches!(Mounting::new(Isometry3::identity(), 0.0, -1.0), Err(MountingError::ModelHeight(_))));
    assert!(matches!(Mounting::new(iso(f64::INFINITY, 0.0, 0.0, 0.0), 0.0, 1.73), Err(MountingError::NonFinite)));
}

#[test]
fn halves_split_the_circle_and_turn_the_rear() {
    let m = Mounting::kitti();
    let pts = cloud(&[[10.0, 1.0, -1.0, 0.1], [-8.0, -2.0, -1.2, 0.2], [0.0, 3.0, 0.0, 0.3], [f32::NAN, 0.0, 0.0, 0.4]]);
    let (front, rear) = m.to_model_halves(&pts, 0.0);
    assert_eq!((front.x.clone(), front.y.clone(), front.ring.clone()), (vec![10.0, 0.0], vec![1.0, 3.0], Some(vec![0, 2])));
    assert_eq!((rear.x.clone(), rear.y.clone(), rear.z.clone(), rear.ring.clone()), (vec![8.0, -0.0], vec![2.0, -3.0], vec![-1.2, 0.0], Some(vec![1, 2])));
    assert_eq!(rear.intensity, vec![0.2, 0.3]);
    // the front half equals the full transform restricted to x >= 0
    let all = m.to_model(&pts);
    assert_eq!(front.x, all.x.iter().copied().filter(|x| *x >= 0.0).collect::<Vec<_>>());
    // a box found in the rear half comes back behind the sensor, heading turned
    let b = transform_box(&mounting::half_turn(), &Box3D { center: [8.0, 2.0, -0.8], size: [4.0, 1.7, 1.5], yaw: 0.3 });
    assert!((b.center[0] + 8.0).abs() < 1e-12 && (b.center[1] + 2.0).abs() < 1e-12 && (b.yaw - (0.3 - PI)).abs() < 1e-12, "{b:?}");
}

/// Cost of moving a 120k-point cloud into the model frame:
/// `cargo test --release --no-default-features --lib frames::tests::transform_cost -- --ignored --nocapture`.
#[test]
#[ignore = "timing, run by hand in release"]
fn transform_cost() {
    let mut rng = crate::dataset::sim::Rng::new(1);
    let mut pts = Points::with_capacity(120_000, false, false);
    for _ in 0..120_000 {
        let (x, y, z) = (rng.range(-70.0, 70.0) as f32, rng.range(-40.0, 40.0) as f32, rng.range(-3.0, 1.0) as f32);
        pts.push(Point { x, y, z, intensity: rng.range(0.0, 255.0) as f32, ring: 0, time: 0.0 });
    }
    let m = Mounting::new(iso(0.9, 0.0, 1.84, -FRAC_PI_2), 0.0, TRAINED_SENSOR_HEIGHT_M).unwrap().with_intensity_scale(1.0 / 255.0).unwrap();
    let time = |f: &dyn Fn() -> usize| {
        let n = 50;
        let mut sink = f();
        let t = std::time::Instant::now();
        for _ in 0..n {
            sink += f();
        }
        (t.elapsed().as_secs_f64() * 1e3 / n as f64, sink)
    };
    let (whole, _) = time(&|| m.to_model(&pts).len());
    let (halves, _) = time(&|| {
        let (f, r) = m.to_model_halves(&pts, 0.0);
        f.len() + r.len()
    });
    println!("to_model: {whole:.3} ms, to_model_halves: {halves:.3} ms per 120k-point cloud");
}
