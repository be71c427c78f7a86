//! The shipped detector against the same network in PyTorch eager
//! (scripts/bench_detector_torch.py, OpenPCDet's module names, our checkpoint
//! loaded with `load_state_dict`) on the same pillar input: the head outputs
//! (class logits, box residuals, direction logits) of the trained network
//! (batch-norms unfolded) are bit-identical (docs/benchmarks.md,
//! docs/model_card.md). The node runs the folded graph, equal to this one to
//! float rounding (`detect::inference_graph_tests`). One iteration of the benchmark
//! pair; the timings it prints are not asserted.
#![cfg(feature = "torch")]
mod common;

use std::process::Command;

#[test]
fn shipped_detector_heads_are_bit_identical_to_pytorch_eager() {
    let (Some(py), Some(kitti)) = (common::python(), common::kitti_dir()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.safetensors");
    let model = common::repo().join("config/detector/compact_eloss.safetensors");
    let ours = Command::new(env!("CARGO_BIN_EXE_eloss"))
        .args(["bench-detector", "--iters", "1", "--threads", "2", "--model"])
        .arg(&model)
        .arg("--cloud")
        .arg(kitti.join("000008.bin"))
        .arg("--dump")
        .arg(&dump)
        .output()
        .expect("run eloss bench-detector");
    assert!(ours.status.success(), "bench-detector failed: {}", String::from_utf8_lossy(&ours.stderr));
    let reference = Command::new(py)
        .arg(common::repo().join("scripts/bench_detector_torch.py"))
        .args(["--iters", "1", "--threads", "2", "--model"])
        .arg(&model)
        .arg("--dump")
        .arg(&dump)
        .output()
        .expect("run scripts/bench_detector_torch.py");
    assert!(reference.status.success(), "PyTorch side failed: {}", String::from_utf8_lossy(&reference.stderr));
    let r: serde_json::Value = serde_json::from_slice(&reference.stdout).expect("one JSON line");
    eprintln!("{r}");
    for head in ["cls", "boxes", "dir"] {
        let d = r["max_abs_diff"][head].as_f64().unwrap_or_else(|| panic!("no {head} difference in {r}"));
        assert_eq!(d, 0.0, "{head}: max abs difference {d} (not bit-identical)");
    }
}

/// The device machine's image need not have the `safetensors` package:
/// the script's own reader of the format gives what the package gives, for
/// every tensor and the metadata of the shipped checkpoint.
#[test]
fn the_scripts_own_safetensors_reader_matches_the_package() {
    let Some(py) = common::python() else { return };
    let model = common::repo().join("config/detector/compact_eloss.safetensors");
    let check = r#"
import sys, torch
sys.path.insert(0, sys.argv[1])
import bench_detector_torch as b
meta, ref = b.read_safetensors(sys.argv[2])
b.safe_open = None
meta2, own = b.read_safetensors(sys.argv[2])
assert meta == meta2, "metadata differs"
assert sorted(ref) == sorted(own) and len(ref) > 10, (len(ref), len(own))
for k in ref:
    assert ref[k].dtype == own[k].dtype and ref[k].shape == own[k].shape and torch.equal(ref[k], own[k]), k
print(len(ref))
"#;
    let o = Command::new(py).arg("-c").arg(check).arg(common::repo().join("scripts")).arg(&model).output().expect("run python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
