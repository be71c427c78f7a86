//! The standard interfaces the node publishes and reads must be the real
//! packages' types on the wire: their RIHS01 type hashes (what DDS matching
//! compares since Iron) must equal those of upstream's own builds. Where set-up
//! built them from msg/upstream/ (the PyPI wheels lack them), this checks the
//! copies; on a vehicle with the real packages it checks those.
//! Golden hashes: as published by independent users of the upstream packages
//! (e.g. `ros2 topic info -v` output and hard-coded type tables in other
//! client libraries), found by searching public code, 2026-12-02.
mod common;

use std::path::PathBuf;

const GOLDEN: [(&str, &str, &str); 2] = [
    ("vision_msgs", "Detection3DArray", "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018"),
    ("tf2_msgs", "TFMessage", "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"),
];

/// `share/<pkg>/msg/<Type>.json` (rosidl's type description) in the first
/// prefix of AMENT_PREFIX_PATH that has it.
fn type_description(pkg: &str, ty: &str) -> Option<PathBuf> {
    let path = std::env::var("AMENT_PREFIX_PATH").ok()?;
    path.split(':').map(|p| PathBuf::from(p).join("share").join(pkg).join("msg").join(format!("{ty}.json"))).find(|p| p.is_file())
}

#[test]
fn standard_types_hash_like_upstream() {
    if common::python().is_none() {
        return; // no scripts/env.sh environment (outside CI only)
    }
    for (pkg, ty, want) in GOLDEN {
        let file = type_description(pkg, ty).unwrap_or_else(|| panic!("{pkg}/msg/{ty} not in AMENT_PREFIX_PATH: run scripts/setup.sh"));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let hash = json["type_hashes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["type_name"] == format!("{pkg}/msg/{ty}"))
            .unwrap_or_else(|| panic!("{}: no hash for {pkg}/msg/{ty}", file.display()))["hash_string"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(hash, want, "{pkg}/msg/{ty} ({})", file.display());
    }
}
