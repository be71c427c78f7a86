//! The detector's ONNX Runtime backend (`detector.backend: onnxruntime`,
//! src/detect/onnx_graph.rs) against the libtorch graph, on the shipped
//! model exported by scripts/export_onnx.py and the real KITTI frame:
//! - head outputs within 1e-4 + 1e-4·|x| element-wise, every backbone layer
//!   output (what the Eloss monitor reads) likewise, the same detections
//!   (boxes to 1e-4 m / rad, scores to 1e-5) and the same Eloss to 1e-4
//!   relative; full coverage (a batch of two BEV maps) too;
//! - a graph made for other weights, a missing file and a file of garbage
//!   are errors that leave the detector on libtorch;
//! - over DDS: the node on the onnxruntime backend publishes the frame's
//!   boxes; a broken graph is an ERROR diagnostic naming it and the node
//!   keeps decoding.
#![cfg(all(feature = "onnxruntime", feature = "ros"))]
mod common;

use eloss_perception::frames::mounting::Mounting;
use eloss_perception::perception::{Coverage, FramePipeline};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Tensor;

fn export(dir: &Path) -> Option<PathBuf> {
    let py = common::python()?;
    let out = dir.join("compact_eloss.onnx");
    let model = common::repo().join("config/detector/compact_eloss.safetensors");
    let o = Command::new(py).current_dir(common::repo().join("scripts")).arg("export_onnx.py").arg("--model").arg(&model).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "export failed: {}", String::from_utf8_lossy(&o.stderr));
    Some(out)
}

fn close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}");
    let excess = (a - b).abs() - (b.abs() * 1e-4 + 1e-4);
    let worst = excess.max().double_value(&[]);
    assert!(worst <= 0.0, "{what}: exceeds 1e-4 + 1e-4|x| by {worst:e}");
}

#[test]
fn onnxruntime_backend_matches_libtorch_and_refuses_other_graphs() {
    let (Some(kitti), dir) = (common::kitti_dir(), tempfile::tempdir().unwrap()) else { return };
    let Some(graph) = export(dir.path()) else { return };
    let points = eloss_perception::cloud::kitti_bin::read(kitti.join("000008.bin")).unwrap();
    let mut torch = FramePipeline::load("", tch::Device::Cpu, &Default::default()).unwrap();
    let mut onnx = FramePipeline::load("", tch::Device::Cpu, &Default::default()).unwrap();
    onnx.use_onnxruntime(&graph, 1).unwrap();
    assert_eq!((torch.detector().backend(), onnx.detector().backend()), ("torch", "onnxruntime"));
    for coverage in [Coverage::Front, Coverage::Full] {
        let (a, b) = (torch.process_in(&points, &Mounting::identity(), coverage, 0.3).unwrap(), onnx.process_in(&points, &Mounting::identity(), coverage, 0.3).unwrap());
        assert!(a.detections.len() >= 5, "{coverage:?}: {}", a.detections.len());
        assert_eq!(a.detections.len(), b.detections.len(), "{coverage:?}");
        for (x, y) in a.detections.iter().zip(&b.detections) {
            assert_eq!(x.class, y.class);
            assert!((x.score - y.score).abs() < 1e-5, "{x:?} vs {y:?}");
            let d = x.bbox.center.iter().chain(&x.bbox.size).zip(y.bbox.center.iter().chain(&y.bbox.size)).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
            assert!(d < 1e-4 && (x.bbox.yaw - y.bbox.yaw).abs() < 1e-4, "{x:?} vs {y:?}");
        }
        for (i, (la, lb)) in a.layers.blocks.iter().flatten().zip(b.layers.blocks.iter().flatten()).enumerate() {
            close(lb, la, &format!("{coverage:?} layer {i}"));
        }
        assert_eq!(a.layers.num_layers(), b.layers.num_layers());
        let (ea, eb) = (a.eloss.unwrap().unwrap().eloss, b.eloss.unwrap().unwrap().eloss);
        assert!((ea - eb).abs() <= 1e-4 * ea.abs(), "{coverage:?}: Eloss {ea} vs {eb}");
    }
    // the head outputs themselves, one frame
    let (ha, hb) = (torch.detector().detect(&points).unwrap().head, onnx.detector().detect(&points).unwrap().head);
    close(&hb.cls, &ha.cls, "cls");
    close(&hb.boxes, &ha.boxes, "boxes");
    close(&hb.dir, &ha.dir, "dir");

    // refusals: nothing changes on an error
    let mut det = FramePipeline::load("", tch::Device::Cpu, &Default::default()).unwrap();
    let other = eloss_perception::detect::detector::Detector::new(det.detector().config.clone(), tch::Device::Cpu);
    let mut other = other.unwrap();
    let e = other.use_onnxruntime(&graph, "0123456789ab", 1).unwrap_err().to_string();
    assert!(e.contains("made for weights") && e.contains("0123456789ab"), "{e}");
    assert_eq!(other.backend(), "torch");
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07 not a protobuf of a graph").unwrap();
    for bad in [garbage.clone(), dir.path().join("missing.onnx")] {
        let e = det.use_onnxruntime(&bad, 1).unwrap_err().to_string();
        assert!(e.contains(bad.file_name().unwrap().to_str().unwrap()), "{e}");
        assert_eq!(det.detector().backend(), "torch");
    }
    assert!(!det.process(&points, 0.3).unwrap().detections.is_empty(), "still detects on libtorch");

    // over DDS
    let ns = format!("/eloss_onnx_{}", std::process::id());
    let node = common::NodeProcess::start(&ns, &["detector.backend:=onnxruntime".into(), format!("detector.onnx_path:={}", graph.display())]);
    let Some(d) = common::peer_status(&ns, 2) else { return };
    // OK, or stale once the peer stops sending; never an error
    assert_ne!(d["detector"]["level"], 2, "{}", d["detector"]);
    assert!(common::counter(&d["detector"], "frames") >= 1 && common::counter(&d["detector"], "last_detections") >= 5, "{}", d["detector"]);
    assert!(node.stop().success());
    let ns = format!("/eloss_onnx_bad_{}", std::process::id());
    let node = common::NodeProcess::start(&ns, &["detector.backend:=onnxruntime".into(), format!("detector.onnx_path:={}", garbage.display())]);
    let Some(d) = common::peer_status(&ns, 1) else { return };
    assert_eq!(d["detector"]["level"], 2, "{}", d["detector"]);
    assert!(d["detector"]["message"].as_str().unwrap().contains("garbage.onnx"), "{}", d["detector"]);
    assert!(common::counter(&d["point cloud input"], "frames_processed") >= 1, "{}", d["point cloud input"]);
    assert!(node.stop().success());
}
