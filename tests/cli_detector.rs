//! The detector's commands end to end on tiny simulated data: `simulate`,
//! `train` (a run stopped after one epoch resumes where it stopped instead
//! of starting over), `export-model` (the optimizer state goes, the
//! weights stay) and `detect --out --eval` with the exported model.
#![cfg(feature = "torch")]

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn eloss(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_eloss")).args(args).output().expect("run eloss");
    assert!(
        out.status.success(),
        "eloss {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tensor_names(path: &Path) -> Vec<String> {
    tch::Tensor::read_safetensors(path).expect("read safetensors").into_iter().map(|(n, _)| n).collect()
}

#[test]
fn simulate_train_resume_export_detect() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_str().unwrap().to_owned();
    let (data, run) = (p("data"), p("run"));
    eloss(&["simulate", "--frames", "2", "--split", "train", "--out", &data, "--seed", "1"]);
    eloss(&["simulate", "--frames", "1", "--split", "val", "--out", &data, "--seed", "2"]);
    let train = |epochs: &str| {
        let o = eloss(&[
            "train", "--config", "config/train_compact.yaml", "--data", &data, "--run", &run, "--epochs", epochs,
            "--batch-size", "1", "--loader-threads", "0", "--threads", "2",
        ]);
        stdout(&o)
    };
    let first = train("1");
    assert!(first.contains("at epoch 1 step 2"), "{first}");
    // the same run asked for two epochs continues from step 2, not from 0
    let second = train("2");
    assert!(second.contains("at epoch 2 step 4"), "{second}");

    let ckpt = dir.path().join("run/last.safetensors");
    let model = p("model.safetensors");
    let out = stdout(&eloss(&["export-model", "--model", ckpt.to_str().unwrap(), "--out", &model]));
    assert!(out.contains("model id"), "{out}");
    let (full, exported) = (tensor_names(&ckpt), tensor_names(Path::new(&model)));
    assert!(full.iter().any(|n| n.starts_with("optimizer/")), "the checkpoint carries the optimizer state");
    assert!(!exported.iter().any(|n| n.starts_with("optimizer/")), "exported model keeps optimizer state");
    let weights: Vec<&String> = full.iter().filter(|n| !n.starts_with("optimizer/")).collect();
    assert_eq!(weights.len(), exported.len(), "every weight survives the export");

    let labels = p("labels");
    let out = stdout(&eloss(&["detect", "--model", &model, "--data", &data, "--set", "val", "--out", &labels, "--eval"]));
    let table = &out[out.find("| class @ IoU").unwrap_or_else(|| panic!("detect --eval prints the AP table: {out}"))..];
    assert!(table.contains("| Car @ 0.70 | bev |"), "{table}");
    let written: Vec<_> = std::fs::read_dir(&labels).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(written.len(), 1, "one label file for the one val frame");
    // the files written are what was evaluated: `eloss eval` on them prints the same table
    let gt_val = dir.path().join("gt_val");
    std::fs::create_dir(&gt_val).unwrap();
    let name = written[0].file_name().unwrap();
    std::fs::copy(Path::new(&data).join("training/label_2").join(name), gt_val.join(name)).unwrap();
    let again = stdout(&eloss(&["eval", "--gt", gt_val.to_str().unwrap(), "--dt", &labels, "--markdown"]));
    assert_eq!(table.trim_end(), again.trim_end(), "detect --eval vs eval on its files");
}

/// `calibrate` on simulated normal frames, then `eloss-eval` on a set with
/// injected noise: the calibration file holds the split and a finite
/// threshold; the evaluation writes its table with a row for the injected
/// type and one frames.csv line per frame.
#[test]
fn calibrate_then_eloss_eval() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_str().unwrap().to_owned();
    let (normal, anomalous, cal, report) = (p("normal"), p("anomalous"), p("cal.json"), p("report"));
    let model = "config/detector/compact_eloss.safetensors";
    eloss(&["simulate", "--frames", "10", "--split", "val", "--out", &normal, "--seed", "3"]);
    let out = stdout(&eloss(&["calibrate", "--model", model, "--data", &normal, "--false-alarm", "0.2", "--out", &cal]));
    let c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cal).expect("calibration written")).unwrap();
    assert_eq!((c["fit_frames"].as_u64(), c["held_out_frames"].as_u64()), (Some(7), Some(3)), "{out}");
    assert!(c["threshold"].as_f64().is_some_and(f64::is_finite), "{}", c["threshold"]);

    eloss(&[
        "simulate", "--frames", "6", "--split", "val", "--out", &anomalous, "--seed", "4", "--anomalies", "noise:high",
        "--anomaly-fraction", "0.5",
    ]);
    let tags: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(Path::new(&anomalous).join("anomalies.json")).unwrap()).unwrap();
    let noisy = tags.as_object().unwrap().values().filter(|t| t["lidar"]["kind"] == "noise").count();
    assert!((1..6).contains(&noisy), "{tags}");
    eloss(&["eloss-eval", "--model", model, "--calibration", &cal, "--data", &anomalous, "--out", &report]);
    let md = std::fs::read_to_string(Path::new(&report).join("eloss_eval.md")).expect("eloss_eval.md");
    assert!(md.lines().any(|l| l.starts_with("| noise |")), "{md}");
    let csv = std::fs::read_to_string(Path::new(&report).join("frames.csv")).expect("frames.csv");
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
}

/// The prepared device check runs end to end wherever it is started: here on
/// the CPU (no CUDA), with tiny counts; on a GPU machine scripts/gpu_check.sh
/// runs the same command with the real ones (docs/gpu_check.md).
#[test]
fn gpu_check_runs_and_reports_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("check");
    let o = eloss(&["gpu-check", "--out", out.to_str().unwrap(), "--iters", "1", "--train-steps", "3", "--batch-size", "1", "--frames", "2"]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("gpu_check.json")).unwrap()).unwrap();
    assert_eq!(report, serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap(), "printed = written");
    for row in ["compact_shipped_fp32", "full_random_fp32", "compact_shipped_fp32_folded", "full_random_fp32_folded"] {
        let parity = &report["inference"][row]["parity_with_cpu"];
        // on the CPU both sides are the same computation: exact (the folded
        // graph equals the modules to float rounding: same boxes)
        if report["device"] == "Cpu" && !row.ends_with("folded") {
            assert_eq!(parity["cls_max_abs_diff"], 0.0, "{row}");
            assert_eq!(parity["same_labels_in_order"], true, "{row}");
        }
        assert!(parity["detections"][0].as_u64().unwrap() > 0, "candidates kept for the box comparison: {report}");
        let (matched, found) = (parity["boxes_matched"].as_u64().unwrap(), parity["detections"][0].as_u64().unwrap());
        if report["device"] == "Cpu" && !row.ends_with("folded") {
            assert_eq!(matched, found, "{row}");
        } else {
            // float rounding may swap near-tied random-weight scores at the top-k cut
            assert!(matched * 10 >= found * 9, "{row}: {matched} of {found} boxes matched");
        }
        assert!(report["inference"][row]["median_ms"]["network"].as_f64().unwrap() > 0.0);
    }
    // fp16 autocast only where there is CUDA
    assert_eq!(report["inference"].get("full_random_fp16").is_some(), report["cuda_available"] == true, "{report}");
    assert_eq!(report["training_fp32"].is_null(), report["cuda_available"] == false, "{report}");
    // the PyTorch peers' input: the full model's weights and its pillar input
    assert!(out.join("full_random.safetensors").is_file() && out.join("pillars_dump.safetensors").is_file());
    // the one table scripts/gpu_check.sh prints from the report
    if let Some(py) = common::python() {
        let t = Command::new(py).arg(common::repo().join("scripts/gpu_check_table.py")).arg(&out).output().unwrap();
        let table = String::from_utf8_lossy(&t.stdout);
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
        assert!(table.contains("| compact_shipped_fp32 |") && table.contains("| full_random_fp32 |") && table.contains("| full, B = 1 |"), "{table}");
    }
    let t = &report["training"];
    assert_eq!((t["steps"].as_u64(), t["losses_finite"].as_bool(), t["model"].as_str()), (Some(3), Some(true), Some("full")));
    assert!(t["steps_per_s"].as_f64().unwrap() > 0.0, "{report}");
    // which libtorch ran, and how its CUDA half was (or was not) found
    let torch = report["torch_version"].as_str().unwrap();
    assert!(torch.starts_with("2."), "the torch package beside torch/lib: {report}");
    let libtorch_cuda = report["libtorch_cuda"].as_str().unwrap();
    assert!(["linked", "loaded at run time"].contains(&libtorch_cuda) || libtorch_cuda.starts_with("not loadable: "), "{report}");
}

/// `--require-cuda` (what scripts/gpu_check.sh passes on the device machine)
/// refuses before any work where libtorch sees no GPU, saying why, instead
/// of measuring the CPU as if it were the GPU.
#[test]
fn gpu_check_requires_cuda_refuses_cleanly_without_it() {
    if tch::Cuda::is_available() || eloss_perception::torch_cuda::cuda_if_available().is_cuda() {
        return; // a GPU machine: scripts/gpu_check.sh is the check there
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("check");
    let o = Command::new(env!("CARGO_BIN_EXE_eloss"))
        .args(["gpu-check", "--require-cuda", "--out", out.to_str().unwrap()])
        .output()
        .expect("run eloss");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "a clean error exit, not a crash: {err}");
    assert!(err.contains("--require-cuda: libtorch sees no CUDA device (libtorch_cuda "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "nothing was written before the refusal");
}

/// The node's whole frame (`eloss bench-frame`) and the same frame written
/// in Python as a user would (scripts/bench_frame_python.py) agree on the
/// real KITTI frame: the Python pillars equal ours to 1e-6, every box and
/// score to 1e-3 (the script's --compare exits non-zero otherwise).
#[cfg(feature = "ros")]
#[test]
fn bench_frame_and_the_python_pipeline_agree() {
    let (Some(py), Some(kitti)) = (common::python(), common::kitti_dir()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cloud = kitti.join("000008.bin");
    let (ours, theirs, dump) = (dir.path().join("ours.json"), dir.path().join("python.json"), dir.path().join("dump.safetensors"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = eloss(&["bench-frame", "--cloud", &s(&cloud), "--iters", "1", "--warmup", "0", "--threads", "1", "--json", &s(&ours)]);
    assert!(stdout(&o).contains("| network |"), "{}", stdout(&o));
    eloss(&["bench-detector", "--cloud", &s(&cloud), "--iters", "1", "--threads", "1", "--dump", &s(&dump)]);
    let model = common::repo().join("config/detector/compact_eloss.safetensors");
    let script = common::repo().join("scripts/bench_frame_python.py");
    let out = Command::new(py)
        .args([&s(&script), "--cloud", &s(&cloud), "--model", &s(&model), "--iters", "1", "--warmup", "0", "--threads", "1"])
        .args(["--json", &s(&theirs), "--compare", &s(&ours), "--pillar-dump", &s(&dump)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let read = |p: &Path| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap()).unwrap();
    let (a, b) = (read(&ours), read(&theirs));
    let cars = |v: &serde_json::Value| v["detections"].as_array().unwrap().iter().filter(|d| d["class"] == "Car").count();
    assert!(cars(&a) >= 5 && cars(&a) == cars(&b), "{a}\n{b}");
    assert!(a["stages_ms"]["network"].as_f64().unwrap() > 0.0 && a["stages_ms"]["eloss"].as_f64().unwrap() > 0.0, "{a}");
    assert!(a["stages_ms_monitor_off"]["eloss"].as_f64().unwrap() < a["stages_ms"]["eloss"].as_f64().unwrap(), "{a}");
}
