//! The database on a hand-made KITTI folder whose objects' points are known:
//! each object's points are all stored, relative to its box, and nothing
//! else; the cache is keyed by the data.

use super::*;
use crate::cloud::{Point, Points};
use crate::dataset::kitti::{Calibration, ImageSet, KittiWriter, ObjectClass, ObjectLabel, Split};
use crate::dataset::sim::Rng;

pub(crate) const CLASSES: [&str; 3] = ["Car", "Pedestrian", "Cyclist"];

pub(crate) fn class_names() -> Vec<String> {
    CLASSES.iter().map(|c| c.to_string()).collect()
}

/// One object written into the synthetic set.
#[derive(Debug, Clone)]
pub(crate) struct SynthObject {
    pub frame: String,
    pub label_index: usize,
    pub class: ObjectClass,
    /// The box as read back from the label file (KITTI rounds to 0.01).
    pub bbox: Box3D,
    /// The points put inside it (x, y, z, intensity).
    pub inside: Vec<[f32; 4]>,
    pub difficulty: i8,
}

pub(crate) struct Synth {
    pub dir: tempfile::TempDir,
    pub objects: Vec<SynthObject>,
    pub ids: Vec<String>,
}

fn at(b: &Box3D, local: [f64; 3]) -> [f64; 3] {
    let (s, c) = b.yaw.sin_cos();
    [b.center[0] + c * local[0] - s * local[1], b.center[1] + s * local[0] + c * local[1], b.center[2] + local[2]]
}

/// `frames` frames of four objects each (Car, Pedestrian, Cyclist and a
/// Van the model does not detect) plus a DontCare line, frame f's object j
/// at x = 8 + 9j, y = −18 + `step`·f (`step` 7: no two objects of the set
/// overlap; 1: those of neighbouring frames do), with 2 + 2j + f points inside (object 1 of frame 0 is
/// labelled occluded 3: no difficulty), points just outside each box and a
/// ground grid below them all.
pub(crate) fn synthetic_set(frames: usize, step: f64) -> Synth {
    let dir = tempfile::tempdir().unwrap();
    let w = KittiWriter::create(dir.path(), Split::Training).unwrap();
    let calib = Calibration::kitti_like_default();
    let mut rng = Rng::new(11);
    let mut objects = Vec::new();
    let mut ids = Vec::new();
    let classes = [(ObjectClass::Car, [3.9, 1.6, 1.56]), (ObjectClass::Pedestrian, [0.8, 0.6, 1.73]), (ObjectClass::Cyclist, [1.76, 0.6, 1.73]), (ObjectClass::Van, [5.0, 2.0, 2.0])];
    for f in 0..frames {
        let id = format!("{f:06}");
        let mut labels = Vec::new();
        let mut pts = Points::with_capacity(0, false, false);
        let mut push = |p: [f64; 3], i: f32| pts.push(Point { x: p[0] as f32, y: p[1] as f32, z: p[2] as f32, intensity: i, ..Default::default() });
        for (j, (class, size)) in classes.iter().enumerate() {
            let b = Box3D { center: [8.0 + 9.0 * j as f64, -18.0 + step * f as f64, -1.7 + size[2] / 2.0], size: *size, yaw: 0.3 * f as f64 + 0.5 * j as f64 - 1.0 };
            let occluded = if f == 0 && j == 1 { 3 } else { 0 };
            let label = ObjectLabel::from_lidar_box(*class, &b, &calib, [100.0, 100.0, 200.0, 200.0], 0.0, occluded);
            let label = ObjectLabel::parse_line(&label.to_kitti_line()).unwrap();
            let b = label.to_lidar_box(&calib);
            let mut inside = Vec::new();
            for _ in 0..2 + 2 * j + f {
                let l = [0, 1, 2].map(|k| rng.range(-0.4, 0.4) * b.size[k]);
                let p = at(&b, l);
                let i = rng.uniform() as f32;
                push(p, i);
                inside.push([p[0] as f32, p[1] as f32, p[2] as f32, i]);
            }
            // just outside each face of the footprint and above the roof
            for l in [[0.6, 0.0, 0.0], [-0.6, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, -0.6, 0.0], [0.0, 0.0, 0.6]] {
                push(at(&b, [l[0] * b.size[0], l[1] * b.size[1], l[2] * b.size[2]]), 0.5);
            }
            let difficulty = if occluded == 3 { -1 } else { 0 };
            objects.push(SynthObject { frame: id.clone(), label_index: labels.len(), class: *class, bbox: b, inside, difficulty });
            labels.push(label);
        }
        labels.push(ObjectLabel::dont_care([300.0, 150.0, 330.0, 170.0]));
        for gx in 0..30 {
            for gy in 0..30 {
                push([2.0 + 1.5 * gx as f64, -22.0 + 1.5 * gy as f64, -1.9], 0.1);
            }
        }
        w.write_frame(&id, &pts, &calib, &labels).unwrap();
        ids.push(id);
    }
    w.write_image_set(ImageSet::Train, &ids).unwrap();
    Synth { dir, objects, ids }
}

/// The model-class objects of the set, in database order.
pub(crate) fn model_objects(s: &Synth) -> Vec<&SynthObject> {
    s.objects.iter().filter(|o| o.class != ObjectClass::Van).collect()
}

#[test]
fn the_database_holds_each_objects_points_and_only_them() {
    let s = synthetic_set(3, 7.0);
    let ds = KittiDataset::open_image_set(s.dir.path(), ImageSet::Train).unwrap();
    let db = GtDatabase::build(&ds, &s.ids, &class_names()).unwrap();
    let expected = model_objects(&s);
    assert_eq!(db.objects.len(), expected.len(), "every Car, Pedestrian, Cyclist and no Van or DontCare");
    assert_eq!(db.counts(), [3, 3, 3]);
    for (i, (o, e)) in db.objects.iter().zip(&expected).enumerate() {
        assert_eq!((o.frame.as_str(), o.label_index, CLASSES[o.class]), (e.frame.as_str(), e.label_index, e.class.as_str()));
        assert_eq!(o.num_points, e.inside.len(), "{}/{}", o.frame, o.label_index);
        assert_eq!(o.difficulty, e.difficulty);
        let b = o.bbox();
        assert!(crate::detect::iou::iou_3d(&b, &e.bbox) > 0.999);
        let pts = db.object_points(i);
        assert_eq!(pts.len(), e.inside.len() * POINT_FLOATS);
        for (q, want) in pts.chunks_exact(POINT_FLOATS).zip(&e.inside) {
            let p = [0, 1, 2].map(|k| q[k] as f64 + b.center[k]);
            assert!(b.contains(p), "stored point {p:?} outside its box");
            for k in 0..3 {
                assert!((p[k] - want[k] as f64).abs() < 1e-4, "{p:?} != {want:?}");
            }
            assert_eq!(q[3], want[3], "intensity kept");
        }
    }
}

#[test]
fn the_cache_is_keyed_by_the_data() {
    let s = synthetic_set(2, 7.0);
    let ds = KittiDataset::open_image_set(s.dir.path(), ImageSet::Train).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (db, path, built) = GtDatabase::open_or_build(cache.path(), &ds, &s.ids, &class_names()).unwrap();
    assert!(built && path.is_file());
    let (again, path2, built2) = GtDatabase::open_or_build(cache.path(), &ds, &s.ids, &class_names()).unwrap();
    assert!(!built2 && path2 == path);
    assert_eq!(again, db, "a run that finds the database uses what the run that built it used");
    let fresh = GtDatabase::build(&ds, &s.ids, &class_names()).unwrap();
    assert_eq!((fresh.objects.len(), fresh.points.len()), (db.objects.len(), db.points.len()));
    for (a, b) in fresh.objects.iter().zip(&db.objects) {
        assert!(a.center.iter().chain(&a.size).chain([&a.yaw]).zip(b.center.iter().chain(&b.size).chain([&b.yaw])).all(|(x, y)| (x - y).abs() < 1e-12));
    }
    assert_eq!(fresh.points, db.points, "the points are stored exactly");
    // fewer frames, other classes or a changed file: another key
    let key = cache_key(&ds, &s.ids, &class_names()).unwrap();
    assert_ne!(cache_key(&ds, &s.ids[..1], &class_names()).unwrap(), key);
    assert_ne!(cache_key(&ds, &s.ids, &class_names()[..1]).unwrap(), key);
    let label = s.dir.path().join("training/label_2/000001.txt");
    let text = std::fs::read_to_string(&label).unwrap();
    std::fs::write(&label, text.lines().take(2).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let (smaller, path3, built3) = GtDatabase::open_or_build(cache.path(), &ds, &s.ids, &class_names()).unwrap();
    assert!(built3 && path3 != path, "a changed label file builds a new database");
    assert_eq!(smaller.objects.len(), db.objects.len() - 1);
    // a truncated point file is refused, not read short
    let bin = path.with_extension("bin");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() - 16]).unwrap();
    assert!(matches!(GtDatabase::load(cache.path(), &key), Err(GtDatabaseError::Corrupt { .. })));
}

#[test]
fn cache_dir_prefers_the_config_then_eloss_cache() {
    assert_eq!(cache_dir("/x/db", Path::new("/run")), PathBuf::from("/x/db"));
    let d = cache_dir("", Path::new("/run"));
    match std::env::var_os("ELOSS_CACHE") {
        Some(c) if !c.is_empty() => assert_eq!(d, PathBuf::from(c).join("gt_database")),
        _ => assert_eq!(d, PathBuf::from("/run/gt_database")),
    }
}
