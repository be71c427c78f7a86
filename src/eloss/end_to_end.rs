//! End to end on a tiny random detector: simulated normal clouds →
//! calibration (saved and reloaded) → monitor, with both estimators; frames
//! with a strong sector dropout score above the threshold and above every
//! clean frame, and a run of them raises the alarm.

use super::calibration::{CalibrationOptions, EntropyCalibration};
use super::entropy::Estimator;
use super::grouping::Grouping;
use super::monitor::{Monitor, MonitorConfig};
use super::profile::EntropyProfile;
use crate::cloud::{Point, Points};
use crate::dataset::sim::{Lidar, LidarConfig, SceneConfig};
use crate::detect::checkpoint;
use crate::detect::detector::{Detector, DetectorConfig};
use crate::detect::model::backbone::BackboneConfig;
use crate::detect::model::neck::NeckConfig;
use crate::detect::pillars::PillarConfig;
use tch::Device;

/// An 8/16-channel detector over a 20 m field (seeded): the monitor's
/// tests run it end to end in well under a second per cloud.
pub(super) fn tiny_detector() -> Detector {
    tch::manual_seed(0);
    let cfg = DetectorConfig {
        pillars: PillarConfig { range: [0.0, -10.24, -3.0, 20.48, 10.24, 1.0], pillar_size: [0.32, 0.32], max_points_per_pillar: 8, max_pillars: 3000 },
        encoder_channels: 8,
        backbone: BackboneConfig { in_channels: 8, layer_nums: vec![2, 2], layer_strides: vec![2, 2], num_filters: vec![8, 16] },
        neck: NeckConfig { in_channels: vec![8, 16], upsample_strides: vec![1, 2], upsample_filters: vec![8, 8] },
        ..DetectorConfig::compact()
    };
    Detector::new(cfg, Device::Cpu).unwrap()
}

fn clouds(n: u64) -> Vec<Points> {
    let lidar = Lidar::new(LidarConfig::vlp32()).unwrap();
    (0..n)
        .map(|s| {
            let scene = SceneConfig::default().generate(1000 + s).unwrap();
            lidar.scan(&scene, &scene.snapshot(0.0), 1000 + s).points
        })
        .collect()
}

/// Sector dropout at its strongest: only a 4 m wide strip straight ahead
/// survives. (The simulator's anomalies at their default strengths are too
/// subtle for an untrained 8/16-channel network; doubling the cloud with
/// noise mostly moves it along the normal frames' own main direction of
/// variation, more occupied pillars, so it is a weaker test.)
fn keep_forward_strip(p: &Points) -> Points {
    let mut q = Points::with_capacity(p.len(), false, false);
    for i in (0..p.len()).filter(|&i| p.y[i].abs() < 2.0) {
        q.push(Point { x: p.x[i], y: p.y[i], z: p.z[i], intensity: p.intensity[i], ring: 0, time: 0.0 });
    }
    q
}

#[test]
fn strong_anomaly_scores_above_the_calibrated_threshold() {
    let det = tiny_detector();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.safetensors");
    let model_id = checkpoint::save(&model, &det, &serde_json::json!({}), &[]).unwrap();
    let frames = clouds(64);
    for est in [Estimator::Gaussian { ridge_rel: 1e-3 }, Estimator::Knn] {
        let profile = |p: &Points| EntropyProfile::compute(&det.detect(p).unwrap().layers, est, Grouping::PerBlock).unwrap();
        let normal: Vec<EntropyProfile> = frames[..60].iter().map(profile).collect();
        let opts = CalibrationOptions { false_alarm: 0.2, ..Default::default() };
        let cal = EntropyCalibration::fit(&model_id, &normal, &opts, serde_json::json!({"test": true})).unwrap();
        let path = super::calibration::default_path(&model);
        cal.save(&path).unwrap();
        let cal = EntropyCalibration::load(&path).unwrap();
        let mut monitor = Monitor::new(&model_id, Some(cal), MonitorConfig::default()).unwrap();
        // unseen normal frames alternating with anomalous ones
        let mut reports = Vec::new();
        for f in &frames[60..] {
            reports.push(monitor.observe(&det.detect(f).unwrap().layers).unwrap());
            reports.push(monitor.observe(&det.detect(&keep_forward_strip(f)).unwrap().layers).unwrap());
        }
        let max_clean = reports.iter().step_by(2).map(|r| r.anomaly_score).fold(f64::MIN, f64::max);
        for r in reports.iter().skip(1).step_by(2) {
            assert!(r.anomaly_score > r.threshold, "{}: anomalous frame scored {} (threshold {})", est.name(), r.anomaly_score, r.threshold);
            assert!(r.anomaly_score > max_clean, "{}: {} vs clean max {max_clean}", est.name(), r.anomaly_score);
        }
        assert!(reports.iter().all(|r| r.calibrated && r.model_id == model_id && r.block_layer_counts == [3, 3] && r.estimator == est.name()));
        // anomalous frames 1, 3, 5 of the last five: the alarm is up by the sixth report
        assert!(reports[5].anomaly && reports[7].anomaly);
    }
}

/// Writes a randomly initialised compact checkpoint (for timing the monitor
/// before a trained model exists):
/// `ELOSS_RANDOM_CKPT=/tmp/random.safetensors cargo test --no-default-features --features torch --lib eloss::end_to_end::write_random_compact_checkpoint -- --ignored`
#[test]
#[ignore]
fn write_random_compact_checkpoint() {
    let Some(path) = std::env::var_os("ELOSS_RANDOM_CKPT") else { return };
    tch::manual_seed(0);
    let det = Detector::new(DetectorConfig::compact(), Device::Cpu).unwrap();
    let id = checkpoint::save(std::path::Path::new(&path), &det, &serde_json::json!({"random_init": true}), &[]).unwrap();
    eprintln!("wrote {} (model id {id})", std::path::PathBuf::from(path).display());
}

/// The shipped model's monitor reads the quantity its training minimised:
/// on the real KITTI frame, the Entropy Loss exactly as the training step
/// computes it (the training config stored in the checkpoint: its estimator
/// and batch-norm mode, through `Detector::forward_train`) equals the Eloss
/// the node's monitor reports with the shipped calibration (`detect` →
/// profile with the calibration's estimator). Fails when the model was
/// trained in batch-norm train mode (the frame's own statistics) while the
/// monitor runs on running statistics, or when the calibration uses another
/// estimator than training did.
#[test]
fn shipped_monitor_reads_the_trained_quantity() {
    use crate::detect::detector::BatchNormMode;
    use crate::eloss::loss::entropy_loss;
    use crate::perception::{EMBEDDED_CALIBRATION, EMBEDDED_MODEL};
    use std::str::FromStr;
    let Some(dir) = crate::cloud::test_data::kitti_dir() else { return };
    let points = crate::cloud::kitti_bin::read(&dir.join("000008.bin")).unwrap();
    let (det, info) = checkpoint::load_bytes(EMBEDDED_MODEL, std::path::Path::new("embedded"), Device::Cpu).unwrap();
    let trained = &info.training["config"];
    let estimator = Estimator::from_str(trained["estimator"].as_str().expect("the checkpoint records its training estimator")).unwrap();
    let batchnorm: BatchNormMode = serde_json::from_value(trained.get("batchnorm").cloned().unwrap_or(serde_json::json!("train"))).unwrap();
    // models trained before the option have no `grouping`: per block
    let grouping: Grouping = serde_json::from_value(trained.get("grouping").cloned().unwrap_or(serde_json::json!("per_block"))).unwrap();
    let training_term = tch::no_grad(|| {
        let (_, layers) = det.forward_train(&points, batchnorm).unwrap();
        entropy_loss(&layers.blocks, estimator, grouping, 0.0).loss.double_value(&[])
    });
    let cal = EntropyCalibration::from_json(EMBEDDED_CALIBRATION, std::path::Path::new("embedded")).unwrap();
    let mut monitor = Monitor::new(&info.model_id, Some(cal), MonitorConfig::default()).unwrap();
    let report = monitor.observe(&det.detect(&points).unwrap().layers).unwrap();
    assert_eq!(report.estimator, estimator.name(), "the calibration's estimator is not the one the model was trained with");
    let rel = (report.eloss - training_term).abs() / training_term.abs().max(1e-12);
    assert!(rel < 1e-3, "monitor Eloss {} vs trained term {training_term} (relative difference {rel:.3e}; batch-norm {batchnorm:?})", report.eloss);
}


/// The occupied-cell profile (issue 19 item 3) on a real detector pass:
/// computed from the forward pass's own input, it keeps only part of each
/// layer's cells, differs from the all-cell profile, and a calibration made
/// with it makes the monitor compute it (the scorer refuses the other kind).
#[test]
fn occupied_cell_profiles_come_from_the_frames_pillars() {
    use super::cells::{occupied_indices, Cells};
    use super::profile::ProfileSpec;
    let occupied_knn = ProfileSpec { estimator: Estimator::Knn, grouping: Grouping::PerBlock, cells: Cells::Occupied };
    let det = tiny_detector();
    let cl = clouds(10);
    let out = det.detect(&cl[0]).unwrap();
    let idx = occupied_indices(&out.layers).unwrap();
    let first = out.layers.blocks[0][0].size();
    let kept = idx[0].size()[0] as f64 / (first[2] * first[3]) as f64;
    assert!(kept > 0.02 && kept < 0.9, "layer 1 keeps {kept} of its cells");
    // deeper layers see wider: a growing share
    let share = |j: usize, x: &tch::Tensor| idx[j].size()[0] as f64 / (x.size()[2] * x.size()[3]) as f64;
    let layers: Vec<&tch::Tensor> = out.layers.blocks.iter().flatten().collect();
    assert!(share(layers.len() - 1, layers[layers.len() - 1]) >= share(0, layers[0]));
    // the Gaussian estimator's samples are the cells: dropping the empty ones changes the estimate
    // where some are dropped (the deepest layers of this 20 m map see occupied pillars everywhere)
    let gauss = Estimator::Gaussian { ridge_rel: 1e-3 };
    let all = EntropyProfile::compute(&out.layers, gauss, Grouping::PerBlock).unwrap();
    let occ_gauss = EntropyProfile::compute_on(&out.layers, ProfileSpec { estimator: gauss, grouping: Grouping::PerBlock, cells: Cells::Occupied }).unwrap();
    assert!((occ_gauss.entropies[0] - all.entropies[0]).abs() > 1e-3, "{:?} vs {:?}", occ_gauss.entropies, all.entropies);
    // (the kNN estimator's samples are the channels: empty cells only add the distance between the
    // channels' constant background values, zero for this untrained network, so its estimate is unchanged here)
    let occ = EntropyProfile::compute_on(&out.layers, occupied_knn).unwrap();
    assert_eq!(occ.cells, Cells::Occupied);
    // a calibration over occupied cells: the monitor scores with it
    let profiles: Vec<EntropyProfile> = cl
        .iter()
        .map(|c| EntropyProfile::compute_on(&det.detect(c).unwrap().layers, occupied_knn).unwrap())
        .collect();
    let cal = EntropyCalibration::fit("tiny", &profiles, &CalibrationOptions::default(), serde_json::Value::Null).unwrap();
    assert_eq!(cal.cells(), Cells::Occupied);
    let mut monitor = Monitor::new("tiny", Some(cal), MonitorConfig::default()).unwrap();
    let report = monitor.observe(&out.layers).unwrap();
    assert!(report.calibrated && report.anomaly_score.is_finite());
    assert_eq!(report.layer_entropies, occ.entropies, "the monitor computed the occupied-cell profile");
}
