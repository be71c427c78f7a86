//! Shared helpers of the integration tests: locating the venv Python and the
//! real data, with the CI rule that missing prerequisites fail loudly.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The venv Python from scripts/env.sh; `None` (test skipped with a note)
/// only outside CI.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("ELOSS_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if in_ci() => panic!("ELOSS_PYTHON is not set: run tests through scripts/test.sh"),
        None => {
            eprintln!("note: ELOSS_PYTHON unset (source scripts/env.sh); skipping");
            None
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// ../shared/data/kitti_000008, or `None` (skip) outside CI when missing.
pub fn kitti_dir() -> Option<PathBuf> {
    let d = repo().join("../shared/data/kitti_000008");
    if d.join("000008.bin").is_file() {
        Some(d)
    } else if in_ci() {
        panic!("{} is missing: CI needs ../shared/data", d.display())
    } else {
        eprintln!("note: {} missing; skipping", d.display());
        None
    }
}
