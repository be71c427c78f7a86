//! The folded inference graph (`Detector::fold_for_inference`) against the
//! unfolded network in eval mode: same head outputs, same Eloss layer
//! outputs, same detections, in both memory formats; training still runs
//! the unfolded modules.

use super::checkpoint;
use super::detector::{BatchNormMode, Detector, FrameOutput};
use super::model::folded::MemoryFormat;
use crate::cloud::{Point, Points};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Folding reassociates each layer's arithmetic (conv·s + t instead of
/// (conv − μ)·γ/√(σ²+ε) + β), so outputs differ by float rounding that
/// grows through the 16 layers: |folded − unfolded| ≤ ATOL + RTOL·|unfolded|
/// element-wise (measured on the shipped model: a few 1e-6).
const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-4;

fn embedded() -> Detector {
    checkpoint::load_bytes(crate::perception::EMBEDDED_MODEL, Path::new("<embedded>"), Device::Cpu).unwrap().0
}

/// A deterministic street-like cloud inside the compact model's range:
/// ground, two walls and three car-sized point clusters.
fn synthetic_cloud() -> Points {
    let mut pts = Points::with_capacity(20_000, false, false);
    let mut push = |x: f32, y: f32, z: f32| pts.push(Point { x, y, z, intensity: 0.3, ring: 0, time: 0.0 });
    for i in 0..12_000u32 {
        let h = i.wrapping_mul(2_654_435_761);
        let (u, v) = ((h >> 8) as f32 / 16_777_216.0, (h.wrapping_mul(40_503) >> 8) as f32 / 16_777_216.0);
        push(2.0 + 60.0 * u, -30.0 + 60.0 * v, -1.7 + 0.05 * u);
    }
    for i in 0..2_000u32 {
        let t = i as f32 / 2_000.0;
        push(5.0 + 50.0 * t, 8.0, -1.5 + (i % 13) as f32 * 0.2);
        push(5.0 + 50.0 * t, -9.0, -1.5 + (i % 11) as f32 * 0.2);
    }
    for (cx, cy) in [(12.0f32, 2.0f32), (20.0, -4.0), (30.0, 3.5)] {
        for i in 0..600u32 {
            let (a, b) = ((i % 30) as f32 / 30.0, (i / 30) as f32 / 20.0);
            push(cx - 2.0 + 4.0 * a, cy - 0.8 + 1.6 * b, -1.6 + 1.4 * ((i % 7) as f32 / 7.0));
        }
    }
    pts
}

fn clouds() -> Vec<Points> {
    let mut clouds = vec![synthetic_cloud()];
    if let Some(dir) = crate::cloud::test_data::kitti_dir() {
        clouds.push(crate::cloud::kitti_bin::read(dir.join("000008.bin")).unwrap());
    }
    clouds
}

/// Largest `|a − b| − RTOL·|b|` over the elements (≤ ATOL passes).
fn excess(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    ((&a - &b).abs() - b.abs() * RTOL).max().double_value(&[])
}

fn assert_same(folded: &FrameOutput, plain: &FrameOutput, what: &str) {
    for (name, a, b) in [("cls", &folded.head.cls, &plain.head.cls), ("boxes", &folded.head.boxes, &plain.head.boxes), ("dir", &folded.head.dir, &plain.head.dir)] {
        let e = excess(a, b);
        assert!(e <= ATOL, "{what}: head {name} differs by {e} beyond rtol {RTOL}");
    }
    assert_eq!(folded.layers.blocks.iter().map(Vec::len).collect::<Vec<_>>(), plain.layers.blocks.iter().map(Vec::len).collect::<Vec<_>>());
    for (b, (fb, pb)) in folded.layers.blocks.iter().zip(&plain.layers.blocks).enumerate() {
        for (l, (f, p)) in fb.iter().zip(pb).enumerate() {
            let e = excess(f, p);
            assert!(e <= ATOL, "{what}: Eloss layer {b}.{l} differs by {e} beyond rtol {RTOL}");
        }
    }
    assert_eq!(folded.detections.len(), plain.detections.len(), "{what}: detection count");
    for (f, p) in folded.detections.iter().zip(&plain.detections) {
        assert_eq!(f.class, p.class, "{what}");
        assert!((f.score - p.score).abs() < 1e-4, "{what}: score {} vs {}", f.score, p.score);
    }
}

#[test]
fn folded_graph_equals_the_unfolded_eval_network() {
    let plain = embedded();
    let mut folded = embedded();
    for format in [MemoryFormat::Contiguous, MemoryFormat::ChannelsLast] {
        folded.fold_for_inference(format);
        assert_eq!(folded.folded().map(|n| n.format()), Some(format));
        for (i, cloud) in clouds().iter().enumerate() {
            let (f, p) = (folded.detect(cloud).unwrap(), plain.detect(cloud).unwrap());
            assert_eq!(p.layers.num_layers(), 16);
            assert!(i == 0 || !p.detections.is_empty(), "the real frame has detections to compare");
            assert_same(&f, &p, &format!("{format:?} cloud {i}"));
        }
        // the batched path runs the same graph
        let cs = clouds();
        let refs: Vec<&Points> = cs.iter().collect();
        for (i, (f, c)) in folded.detect_batch(&refs).unwrap().iter().zip(&cs).enumerate() {
            assert_same(f, &plain.detect(c).unwrap(), &format!("{format:?} batch element {i}"));
        }
    }
    folded.unfold();
    assert!(folded.folded().is_none());
}

#[test]
fn folding_changes_the_layers_it_replaces() {
    // guards the test above against comparing a graph with itself: the
    // shipped model's batch-norms are far from identity, so folded weights
    // differ from the raw convolution weights
    let det = embedded();
    let bn_mean = det.vs.variables()["backbone_2d.blocks.0.2.running_mean"].abs().max().double_value(&[]);
    assert!(bn_mean > 1e-2, "trained running means: {bn_mean}");
}

#[test]
fn training_after_folding_still_runs_the_batch_norms() {
    let mut det = embedded();
    det.fold_for_inference(MemoryFormat::Contiguous);
    let key = "backbone_2d.blocks.0.2.running_mean";
    let before = det.vs.variables()[key].copy();
    let _ = det.forward_train(&synthetic_cloud(), BatchNormMode::Train).unwrap();
    let after = &det.vs.variables()[key];
    assert!(!before.allclose(after, 0.0, 0.0, false), "a training pass updates the batch-norm running statistics");
}
