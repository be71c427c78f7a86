//! Ground-truth sampling on databases of the hand-made sets of
//! `gt_database_tests`: no pasted box overlaps another box, the frame's
//! points inside pasted boxes give way to the objects' own, the per-class
//! counts and filters hold, and the draws follow the seed and the sample.

use super::*;
use crate::dataset::kitti::{ImageSet, KittiDataset};
use crate::train::gt_database::tests::{class_names, synthetic_set, Synth};

fn database(s: &Synth) -> Arc<GtDatabase> {
    let ds = KittiDataset::open_image_set(s.dir.path(), ImageSet::Train).unwrap();
    Arc::new(GtDatabase::build(&ds, &s.ids, &class_names()).unwrap())
}

fn config(groups: [usize; 3], min_points: usize, drop_unknown_difficulty: bool) -> GtSamplingConfig {
    let names = class_names();
    GtSamplingConfig {
        enabled: true,
        sample_groups: names.iter().cloned().zip(groups).collect(),
        min_points: names.iter().map(|n| (n.clone(), min_points)).collect(),
        drop_unknown_difficulty,
        database_dir: String::new(),
    }
}

/// A frame of 4000 points spread over the objects' area (so that pasted
/// boxes have points of their own to remove), with a Car box over the set's
/// Cars and a Van box over its Cyclists.
fn target_frame() -> TrainFrame {
    let mut rng = Rng::new(3);
    let mut points = Points::with_capacity(4000, false, false);
    for _ in 0..4000 {
        let p = [rng.range(4.0, 40.0), rng.range(-20.0, 0.0), rng.range(-1.8, 0.2)];
        points.push(Point { x: p[0] as f32, y: p[1] as f32, z: p[2] as f32, intensity: 0.25, ..Default::default() });
    }
    let car = Box3D { center: [8.0, -15.5, -0.9], size: [3.9, 1.6, 1.56], yaw: 0.1 };
    let van = Box3D { center: [26.0, -14.0, -0.7], size: [5.0, 2.0, 2.0], yaw: 1.2 };
    TrainFrame { id: "target".into(), points, gts: vec![(car, 0)], others: vec![van] }
}

fn inside_any(boxes: &[Box3D], p: &Points, i: usize) -> bool {
    boxes.iter().any(|b| b.contains([p.x[i] as f64, p.y[i] as f64, p.z[i] as f64]))
}

#[test]
fn pasted_boxes_overlap_nothing_and_bring_their_own_points() {
    // objects of neighbouring frames overlap: draws collide with each other and with the frame's boxes
    let s = synthetic_set(8, 1.0);
    let db = database(&s);
    let sampler = GtSampler::new(Arc::clone(&db), &config([6, 6, 6], 0, false)).unwrap();
    let (mut drawn_total, mut pasted_total) = (0, 0);
    for sample in 0..6 {
        let before = target_frame();
        let mut frame = before.clone();
        let pasted = sampler.paste(&mut frame, 9, sample);
        drawn_total += (0..3).map(|c| sampler.draw_class(c, 9, sample).len()).sum::<usize>();
        pasted_total += pasted.objects.len();
        let boxes: Vec<Box3D> = pasted.objects.iter().map(|&i| db.objects[i].bbox()).collect();
        // ground truth: the frame's own, then the pasted ones with their classes
        assert_eq!(frame.gts[..before.gts.len()], before.gts[..]);
        let added: Vec<(Box3D, usize)> = pasted.objects.iter().map(|&i| (db.objects[i].bbox(), db.objects[i].class)).collect();
        assert_eq!(frame.gts[before.gts.len()..], added[..]);
        assert_eq!(frame.others, before.others);
        for (k, b) in boxes.iter().enumerate() {
            for e in before.gts.iter().map(|(b, _)| b).chain(&before.others) {
                assert_eq!(bev_intersection_area(b, e), 0.0, "sample {sample}: pasted {b:?} overlaps the frame's {e:?}");
            }
            for (m, o) in boxes.iter().enumerate() {
                assert!(k == m || bev_intersection_area(b, o) == 0.0, "sample {sample}: pasted boxes {k} and {m} overlap");
            }
        }
        // the cloud: the pasted objects' points, then the frame's points outside every pasted box, in order
        let added_points: usize = pasted.objects.iter().map(|&i| db.objects[i].num_points).sum();
        let kept: Vec<usize> = (0..before.points.len()).filter(|&i| !inside_any(&boxes, &before.points, i)).collect();
        assert_eq!(pasted.removed_points, before.points.len() - kept.len());
        assert_eq!(frame.points.len(), added_points + kept.len());
        let mut at = 0;
        for (&i, b) in pasted.objects.iter().zip(&boxes) {
            for q in db.object_points(i).chunks_exact(POINT_FLOATS) {
                assert!((frame.points.x[at] - (q[0] as f64 + b.center[0]) as f32).abs() < 1e-5 && frame.points.intensity[at] == q[3]);
                at += 1;
            }
        }
        for (k, &i) in kept.iter().enumerate() {
            assert_eq!(frame.points.get(added_points + k), before.points.get(i));
        }
        for i in added_points..frame.points.len() {
            assert!(!inside_any(&boxes, &frame.points, i), "a frame point left inside a pasted box");
        }
    }
    assert!(pasted_total > 0, "nothing pasted: the test proves nothing");
    assert!(drawn_total > pasted_total, "no draw collided ({drawn_total} drawn): the test proves nothing");
    // the frame's points inside pasted boxes were there to remove
    let mut frame = target_frame();
    assert!(sampler.paste(&mut frame, 9, 0).removed_points > 0);
}

#[test]
fn per_class_counts_and_filters() {
    // objects 2 + 2j + f points (Car 2..7, Pedestrian 4..9, Cyclist 6..11), the frame-0 Pedestrian of no difficulty
    let s = synthetic_set(6, 7.0);
    let db = database(&s);
    assert_eq!(GtSampler::new(Arc::clone(&db), &config([1, 1, 1], 0, false)).unwrap().pool_sizes(), [6, 6, 6]);
    assert_eq!(GtSampler::new(Arc::clone(&db), &config([1, 1, 1], 0, true)).unwrap().pool_sizes(), [6, 5, 6]);
    assert_eq!(GtSampler::new(Arc::clone(&db), &config([1, 1, 1], 5, true)).unwrap().pool_sizes(), [3, 5, 6]);
    // no two objects of this set overlap: an empty frame gets the counts, or the whole pool when smaller
    let sampler = GtSampler::new(Arc::clone(&db), &config([2, 0, 10], 5, true)).unwrap();
    for sample in 0..5 {
        let mut frame = TrainFrame { id: "empty".into(), points: Points::default(), gts: vec![], others: vec![] };
        let pasted = sampler.paste(&mut frame, 1, sample);
        let per_class = |c: usize| pasted.objects.iter().filter(|&&i| db.objects[i].class == c).count();
        assert_eq!([per_class(0), per_class(1), per_class(2)], [2, 0, 6], "sample {sample}");
        assert!(pasted.objects.iter().all(|&i| db.objects[i].num_points >= 5));
        assert_eq!(frame.points.len(), pasted.objects.iter().map(|&i| db.objects[i].num_points).sum::<usize>());
    }
    // a class the model does not detect is refused, not ignored
    let mut bad = config([1, 1, 1], 5, true);
    bad.sample_groups.insert("Van".into(), 3);
    assert!(matches!(GtSampler::new(db, &bad), Err(GtSamplingError::Class(c, _)) if c == "Van"));
}

#[test]
fn draws_walk_through_the_pool_and_follow_the_seed() {
    let s = synthetic_set(6, 7.0);
    let db = database(&s);
    let sampler = GtSampler::new(Arc::clone(&db), &config([4, 2, 3], 0, false)).unwrap();
    // Pedestrian: pool 6, 2 a frame: samples 0-2 use every object once, so do 3-5
    for pass in 0..2u64 {
        let mut seen: Vec<usize> = (3 * pass..3 * pass + 3).flat_map(|s| sampler.draw_class(1, 7, s)).collect();
        seen.sort();
        let mut pool: Vec<usize> = (0..db.objects.len()).filter(|&i| db.objects[i].class == 1).collect();
        pool.sort();
        assert_eq!(seen, pool, "pass {pass}");
    }
    // Car: 4 of 6 a frame: across a pass's end a frame still gets 4 distinct objects
    for sample in 0..6 {
        let d = sampler.draw_class(0, 7, sample);
        let mut u = d.clone();
        u.sort();
        u.dedup();
        assert!(d.len() <= 4 && u.len() == d.len() && d.len() >= 2, "{d:?}");
    }
    // same seed and sample: the same frame; another sample or seed: other draws
    let run = |seed, sample| {
        let mut f = target_frame();
        sampler.paste(&mut f, seed, sample);
        f
    };
    let a = run(7, 3);
    let b = run(7, 3);
    assert_eq!((a.points.clone(), a.gts.clone()), (b.points, b.gts));
    let draws = |seed| (0..6).map(|s| (0..3).map(|c| sampler.draw_class(c, seed, s)).collect::<Vec<_>>()).collect::<Vec<_>>();
    assert_ne!(draws(7), draws(8), "the seed changes the draws");
    assert_ne!(sampler.draw_class(2, 7, 0), sampler.draw_class(2, 7, 1), "consecutive samples draw other objects");
}
