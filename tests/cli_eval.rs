//! `eloss eval` end to end on the stored OpenPCDet fixture
//! (tests/data/kitti_eval_openpcdet, docs/kitti_eval.md): its printout is
//! OpenPCDet's own printout for the same folders (`expected.json["text"]`),
//! line for line (AOS with OpenPCDet's 2 decimals included), less its second
//! overlap set (the command evaluates the official one).

use std::process::Command;

fn fixture() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/kitti_eval_openpcdet")
}

/// OpenPCDet's printout: per class four blocks (AP@set 1, AP_R40@set 1, AP@set 2,
/// AP_R40@set 2) of a header and bbox/bev/3d/aos lines; keeps set 1.
fn openpcdet_official_blocks() -> String {
    let text = std::fs::read_to_string(fixture().join("expected.json")).expect("expected.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let lines: Vec<&str> = json["text"].as_str().expect("text").lines().collect();
    assert_eq!(lines.len(), 3 * 4 * 5, "OpenPCDet printout layout");
    assert_eq!(lines.iter().filter(|l| l.starts_with("aos  AP:")).count(), 3 * 4, "OpenPCDet printed AOS");
    lines.chunks(20).flat_map(|class| class[..10].iter()).map(|l| format!("{l}\n")).collect()
}

#[test]
fn eval_command_prints_what_openpcdet_prints() {
    let dir = fixture();
    let out = Command::new(env!("CARGO_BIN_EXE_eloss"))
        .arg("eval")
        .arg("--gt")
        .arg(dir.join("gt"))
        .arg("--dt")
        .arg(dir.join("dt"))
        .output()
        .expect("run eloss eval");
    assert!(out.status.success(), "eloss eval failed: {}", String::from_utf8_lossy(&out.stderr));
    let ours = String::from_utf8(out.stdout).unwrap();
    let want = openpcdet_official_blocks();
    for (i, (a, b)) in ours.lines().zip(want.lines()).enumerate() {
        assert_eq!(a, b, "line {i}: ours vs OpenPCDet's");
    }
    assert_eq!(ours.lines().count(), want.lines().count(), "ours:\n{ours}\nOpenPCDet:\n{want}");
}

#[test]
fn eval_command_markdown_and_errors() {
    let dir = fixture();
    let run = |args: &[&std::ffi::OsStr]| Command::new(env!("CARGO_BIN_EXE_eloss")).arg("eval").args(args).output().expect("run eloss eval");
    let (gt, dt) = (dir.join("gt"), dir.join("dt"));
    let out = run(&["--gt".as_ref(), gt.as_os_str(), "--dt".as_ref(), dt.as_os_str(), "--markdown".as_ref()]);
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("| class @ IoU | metric | R40 Easy |"), "{md}");
    // bbox, bev, 3d and aos rows
    assert_eq!(md.lines().filter(|l| l.starts_with("| Car")).count(), 4, "{md}");
    assert!(md.contains("| Car @ 0.70 | aos | 0.7129 | 33.6037 | 48.4573 | 1.2962 | 35.0185 | 48.9625 |"), "{md}");
    // ground truth given as detections (no score column): a clear error, not a panic
    let out = run(&["--gt".as_ref(), gt.as_os_str(), "--dt".as_ref(), gt.as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("score") && !err.contains("panicked"), "{err}");
}
