//! `eloss import-openpcdet` against a PyTorch twin of OpenPCDet's
//! PointPillars (tests/python/openpcdet_twin.py: PillarVFE,
//! PointPillarScatter, BaseBEVBackbone, AnchorHeadSingle with its anchor
//! generator, ResidualCoder decode, direction bins and class-agnostic
//! nms_gpu post-processing, written from reading OpenPCDet). The twin has
//! random weights and batch-norm statistics, a small config (16/32
//! channels, 64 x 64 pillars) and is saved as OpenPCDet saves checkpoints.
//!
//! Tolerances (float32 on both sides, features computed in f64 here):
//! head maps 1e-4 absolute, anchors 1e-5 m, final boxes 1e-4 (m, rad), scores 1e-5, same
//! boxes with the same labels in the same order.
#![cfg(feature = "torch")]
mod common;

use eloss_perception::detect::checkpoint;
use eloss_perception::detect::detector::{DetectorConfig, INFERENCE_FORMAT};
use eloss_perception::detect::openpcdet;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// The twin's files, written once per test binary; `None` when skipping.
fn twin() -> Option<&'static Path> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    DIR.get_or_init(|| {
        let (py, kitti) = (common::python()?, common::kitti_dir()?);
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(py)
            .arg(common::repo().join("tests/python/openpcdet_twin.py"))
            .arg(dir.path())
            .arg(kitti.join("000008.bin"))
            .output()
            .expect("run the OpenPCDet twin");
        assert!(out.status.success(), "twin failed: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("twin: {}", String::from_utf8_lossy(&out.stdout).trim());
        let path = dir.path().to_path_buf();
        Some((dir, path))
    })
    .as_ref()
    .map(|(_, p)| p.as_path())
}

fn eloss(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eloss")).args(args).output().expect("run eloss")
}

fn import(ckpt: &Path, cfg: &Path, out: &Path) -> Output {
    eloss(&["import-openpcdet", "--ckpt", &ckpt.display().to_string(), "--cfg", &cfg.display().to_string(), "--out", &out.display().to_string()])
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn reference(dir: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("reference.safetensors")).unwrap().into_iter().collect()
}

/// Largest differences of the final boxes: (centre and size, yaw modulo 2π, score).
fn compare_detections(dets: &[eloss_perception::detect::postprocess::Detection], r: &std::collections::HashMap<String, Tensor>) -> (f64, f64, f64) {
    let boxes = Vec::<f64>::try_from(r["final_boxes"].to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let scores = Vec::<f64>::try_from(r["final_scores"].to_kind(Kind::Double)).unwrap();
    let labels = Vec::<i64>::try_from(&r["final_labels"]).unwrap();
    assert_eq!(dets.len(), scores.len(), "number of final boxes");
    assert!(!dets.is_empty(), "the twin keeps some boxes");
    let (mut geo, mut yaw, mut score) = (0f64, 0f64, 0f64);
    for (i, d) in dets.iter().enumerate() {
        assert_eq!(d.class as i64, labels[i], "box {i}: label");
        let b = &boxes[i * 7..i * 7 + 7];
        let ours = [d.bbox.center[0], d.bbox.center[1], d.bbox.center[2], d.bbox.size[0], d.bbox.size[1], d.bbox.size[2]];
        for k in 0..6 {
            geo = geo.max((ours[k] - b[k]).abs());
        }
        let dy = (d.bbox.yaw - b[6]).rem_euclid(2.0 * PI);
        yaw = yaw.max(dy.min(2.0 * PI - dy));
        score = score.max((d.score as f64 - scores[i]).abs());
    }
    (geo, yaw, score)
}

#[test]
fn imported_pointpillars_match_the_pytorch_twin_in_head_maps_and_final_boxes() {
    let Some(dir) = twin() else { return };
    let out = tempfile::tempdir().unwrap();
    let (legacy, zip) = (out.path().join("legacy.safetensors"), out.path().join("zip.safetensors"));
    let cfg = dir.join("pointpillar_small.yaml");
    let o = import(&dir.join("ckpt_legacy.pth"), &cfg, &legacy);
    assert!(o.status.success(), "import failed: {}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("skipped [\"") && said.contains("global_step") && said.contains("\"epoch\":80"), "{said}");
    let o = import(&dir.join("ckpt_zip.pth"), &cfg, &zip);
    assert!(o.status.success(), "zip import failed: {}", String::from_utf8_lossy(&o.stderr));
    let (det, info) = checkpoint::load(&legacy, Device::Cpu).unwrap();
    assert_eq!(checkpoint::load(&zip, Device::Cpu).unwrap().1.model_id, info.model_id, "both torch.save formats give the same weights");
    assert_eq!(info.training["imported_from"]["checkpoint"]["it"], 37120);

    let r = reference(dir);
    let kitti = common::kitti_dir().unwrap();
    let points = eloss_perception::cloud::kitti_bin::read(kitti.join("000008.bin")).unwrap();
    // anchors: OpenPCDet's corner-aligned grid at yaws 0 and 1.57
    let ours: Vec<f64> = det.anchors().anchors().iter().flat_map(|a| [a.center[0], a.center[1], a.center[2], a.size[0], a.size[1], a.size[2], a.yaw]).collect();
    let anchor_diff = max_abs_diff(&Tensor::from_slice(&ours).view([-1, 7]), &r["anchors"]);
    assert!(anchor_diff < 1e-5, "anchors differ by {anchor_diff}");

    let mut det = det;
    for graph in ["unfolded", "folded (the node's)"] {
        if graph != "unfolded" {
            det.fold_for_inference(INFERENCE_FORMAT);
        }
        let f = det.detect(&points).unwrap();
        let heads = [("cls", &f.head.cls), ("boxes", &f.head.boxes), ("dir", &f.head.dir)];
        let diffs: Vec<(&str, f64)> = heads.iter().map(|(n, t)| (*n, max_abs_diff(&t.get(0), &r[*n]))).collect();
        let (geo, yaw, score) = compare_detections(&f.detections, &r);
        eprintln!("{graph}: head max |diff| {diffs:?}; {} final boxes: centre/size {geo:.2e} m, yaw {yaw:.2e} rad, score {score:.2e}", f.detections.len());
        for (n, d) in diffs {
            assert!(d < 1e-4, "{graph}: head {n} differs by {d}");
        }
        assert!(geo < 1e-4 && yaw < 1e-4 && score < 1e-5, "{graph}: final boxes differ: {geo} m, {yaw} rad, score {score}");
    }
    // the node's frame pipeline (detector.model_path = the imported file), Eloss monitor included
    let settings = eloss_perception::perception::ElossSettings::default();
    let mut pipe = eloss_perception::perception::FramePipeline::load(&legacy.display().to_string(), Device::Cpu, &settings).unwrap();
    let frame = pipe.process(&points, 0.0).unwrap();
    let (geo, yaw, score) = compare_detections(&frame.detections, &r);
    assert!(geo < 1e-4 && yaw < 1e-4 && score < 1e-5, "node pipeline: {geo} m, {yaw} rad, score {score}");
    assert!(matches!(frame.eloss, Some(Ok(_))), "{:?}", frame.eloss);
    assert_eq!(pipe.class_names(), ["Car", "Pedestrian", "Cyclist"]);
}

#[test]
fn the_key_mapping_is_strict_and_names_the_keys() {
    let Some(dir) = twin() else { return };
    let out = tempfile::tempdir().unwrap();
    let model = out.path().join("m.safetensors");
    let cfg = dir.join("pointpillar_small.yaml");
    for (file, says) in [
        ("bad_extra.pth", "dense_head.conv_extra.weight [2, 2]: no such weight in our model"),
        ("bad_missing.pth", "dense_head.conv_dir_cls.bias: missing from the checkpoint"),
        ("bad_shape.pth", "backbone_2d.blocks.1.1.weight: shape [32, 32, 3, 3] in the checkpoint, [32, 16, 3, 3] in the model of the config"),
    ] {
        let o = import(&dir.join(file), &cfg, &model);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{file} imported");
        assert!(err.contains(says), "{file}: {err}");
        assert!(!model.exists(), "{file}: nothing written");
    }
    // the right weights with the default (full-size KITTI) config: every shape named
    let o = eloss(&["import-openpcdet", "--ckpt", &dir.join("ckpt_legacy.pth").display().to_string(), "--out", &model.display().to_string()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("vfe.pfn_layers.0.linear.weight: shape [16, 10] in the checkpoint, [64, 10]"), "{err}");
    // a truncated checkpoint and a file that is not one
    let bytes = std::fs::read(dir.join("ckpt_legacy.pth")).unwrap();
    let cut = out.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let o = import(&cut, &cfg, &model);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("past the end of the file"), "{}", String::from_utf8_lossy(&o.stderr));
    let junk = out.path().join("junk.pth");
    std::fs::write(&junk, b"hello").unwrap();
    let o = import(&junk, &cfg, &model);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not a torch.save file"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn settings_we_cannot_represent_are_refused_by_name() {
    let Some(dir) = twin() else { return };
    let yaml = std::fs::read_to_string(dir.join("pointpillar_small.yaml")).unwrap();
    let cfg = openpcdet::config::from_yaml(&yaml).unwrap();
    // the twin's YAML gives every class 0.6 / 0.45 (KITTI: 0.5 / 0.35 for Pedestrian and Cyclist)
    let matching: Vec<(f64, f64)> = cfg.match_thresholds.iter().map(|t| (t.matched, t.unmatched)).collect();
    assert_eq!(matching, [(0.6, 0.45); 3]);
    for (from, to, key) in [
        ("NUM_FILTERS: [16]", "NUM_FILTERS: [16, 16]", "MODEL.VFE.NUM_FILTERS"),
        ("WITH_DISTANCE: False", "WITH_DISTANCE: True", "MODEL.VFE.WITH_DISTANCE"),
        ("UPSAMPLE_STRIDES: [1, 2]", "UPSAMPLE_STRIDES: [1, 0.5]", "MODEL.BACKBONE_2D.UPSAMPLE_STRIDES[1]"),
        ("'anchor_sizes': [[0.8, 0.6, 1.73]]", "'anchor_sizes': [[0.8, 0.6, 1.73], [1, 1, 1]]", "MODEL.DENSE_HEAD.ANCHOR_GENERATOR_CONFIG[1].anchor_sizes"),
        ("NUM_DIR_BINS: 2", "NUM_DIR_BINS: 4", "MODEL.DENSE_HEAD.DIR_OFFSET"),
        ("NMS_TYPE: nms_gpu", "NMS_TYPE: nms_normal", "MODEL.POST_PROCESSING.NMS_CONFIG.NMS_TYPE"),
        ("VOXEL_SIZE: [0.32, 0.32, 4.0]", "VOXEL_SIZE: [0.32, 0.32, 0.5]", "DATA_CONFIG.DATA_PROCESSOR[1].VOXEL_SIZE"),
        ("NAME: PointPillar\n", "NAME: SECONDNet\n", "MODEL.NAME"),
        ("'unmatched_threshold': 0.45}", "'unmatched_threshold': 0.7}", "(translated config)"),
    ] {
        assert!(yaml.contains(from), "{from}");
        let err = openpcdet::config::from_yaml(&yaml.replacen(from, to, 1)).expect_err(key).to_string();
        assert!(err.contains(&format!("{key}:")), "{key}: {err}");
    }
    assert_eq!(openpcdet::config::kitti_pointpillars().backbone, DetectorConfig::full().backbone);
}

#[test]
fn an_imported_model_runs_in_eloss_detect_and_fine_tunes_with_init() {
    let Some(dir) = twin() else { return };
    let work = tempfile::tempdir().unwrap();
    let (model, data, run) = (work.path().join("imported.safetensors"), work.path().join("data"), work.path().join("run"));
    assert!(import(&dir.join("ckpt_legacy.pth"), &dir.join("pointpillar_small.yaml"), &model).status.success());
    let s = |p: &Path| p.display().to_string();
    let o = eloss(&["simulate", "--frames", "2", "--out", &s(&data), "--seed", "5"]);
    assert!(o.status.success(), "simulate: {}", String::from_utf8_lossy(&o.stderr));
    let labels = work.path().join("labels");
    let o = eloss(&["detect", "--model", &s(&model), "--data", &s(&data), "--set", "train", "--out", &s(&labels), "--threads", "2"]);
    assert!(o.status.success(), "detect: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_dir(&labels).unwrap().count(), 2, "one label file per frame");
    let cfg = work.path().join("finetune.yaml");
    let yaml = format!("model: full\ninit: {}\nepochs: 1\nbatch_size: 2\nloader_threads: 0\nval_frames: 0\ncheckpoint_every: 100\nbatchnorm: frozen\n", s(&model));
    std::fs::write(&cfg, yaml).unwrap();
    let o = eloss(&["train", "--config", &s(&cfg), "--data", &s(&data), "--run", &s(&run), "--threads", "2"]);
    assert!(o.status.success(), "train: {}", String::from_utf8_lossy(&o.stderr));
    let (tuned, info) = checkpoint::load(&run.join("last.safetensors"), Device::Cpu).unwrap();
    let (imported, before) = checkpoint::load(&model, Device::Cpu).unwrap();
    assert_eq!(tuned.config, imported.config, "the run keeps the imported model's config");
    assert_ne!(info.model_id, before.model_id, "a step changed the weights");
    // and the run resumes (its config checked against the init model's)
    let o = eloss(&["train", "--config", &s(&cfg), "--data", &s(&data), "--run", &s(&run), "--threads", "2", "--epochs", "2"]);
    assert!(o.status.success(), "resume: {}", String::from_utf8_lossy(&o.stderr));
}
