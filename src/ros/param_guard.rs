//! Truthful run-time parameters. r2r's derived handler accepts any value of
//! the right type; this wrapper makes a `ros2 param set` tell the truth:
//! - a value that fails [`NodeParams::validate`] is refused with the rule it
//!   breaks (`successful: false`, the reason in `reason`), and the node keeps
//!   the previous values;
//! - a parameter the node reads only at start-up ([`READ_ONLY`]) is refused
//!   once the node runs, instead of being accepted and ignored.
//! Start-up values (params file, `-p`) go through the same validation.
//! `camera.calib_file` is read here, once per change of a `camera.*`
//! parameter (a refused file leaves the previous extrinsic), and the result
//! kept in [`GuardedParams::camera_extrinsic`]: requests never read it.
//! r2r 0.9's parameter descriptors carry only a description: ranges and
//! "Read at start-up" are stated there (the doc comments of params.rs).

use super::params::{NodeParams, ParamsError};
use r2r::{ParameterValue, RosParams};

/// Parameters read once at start-up (loaders, thread pools, the generator):
/// changing them at run time would be silently ignored, so it is refused.
pub const READ_ONLY: &[&str] = &[
    "detector.model_path",
    "detector.device",
    "detector.threads",
    "detector.backend",
    "detector.onnx_path",
    "eloss.calibration_path",
    "eloss.estimator",
    "eloss.grouping",
    "eloss.threshold",
    "eloss.hysteresis_window",
    "eloss.hysteresis_enter",
    "eloss.hysteresis_exit",
    "gdc.bank_path",
    "gdc.backbone_path",
];

/// `gdc.generator.*` is read at start-up as a whole.
fn is_read_only(name: &str) -> bool {
    READ_ONLY.contains(&name) || name.starts_with("gdc.generator.")
}

#[derive(Debug, Clone)]
pub struct GuardedParams {
    pub params: NodeParams,
    /// Set once the start-up values are in: from then on read-only parameters are refused.
    pub running: bool,
    /// `camera.*` resolved (the calib file read and checked); None until
    /// [`Self::validate`] ran.
    extrinsic: Option<[f64; 12]>,
}

impl GuardedParams {
    pub fn new(params: NodeParams) -> Self {
        Self { params, running: false, extrinsic: None }
    }

    /// Validates the start-up values and reads `camera.calib_file` (shadows
    /// [`NodeParams::validate`], which reads no file).
    pub fn validate(&mut self) -> Result<(), ParamsError> {
        self.params.validate()?;
        self.extrinsic = Some(self.params.camera.extrinsic()?);
        Ok(())
    }

    /// The LiDAR → camera-optical extrinsic of the `camera.*` parameters, as
    /// resolved when they were last set (no file is read here).
    pub fn camera_extrinsic(&self) -> Result<[f64; 12], String> {
        self.extrinsic.ok_or_else(|| "the camera parameters have not been validated yet".to_string())
    }

    /// The parameters after setting `name` to `value`, or why not.
    fn with(&self, name: &str, value: &ParameterValue) -> r2r::Result<GuardedParams> {
        let refuse = |msg: String| r2r::Error::ParameterValueConv { name: name.to_string(), msg };
        if self.running && is_read_only(name) {
            return Err(refuse("refused: read-only, read at start-up (restart the node with the new value)".into()));
        }
        let mut next = self.clone();
        next.params.set_parameter(name, value)?;
        next.params.validate().map_err(|e| refuse(format!("refused: {e}")))?;
        if name.starts_with("camera.") || next.extrinsic.is_none() {
            next.extrinsic = Some(next.params.camera.extrinsic().map_err(|e| refuse(format!("refused: {e}")))?);
        }
        Ok(next)
    }
}

impl std::ops::Deref for GuardedParams {
    type Target = NodeParams;
    fn deref(&self) -> &NodeParams {
        &self.params
    }
}

impl RosParams for GuardedParams {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<r2r::Parameter>,
        params: &mut r2r::indexmap::IndexMap<String, r2r::Parameter>,
    ) -> r2r::Result<()> {
        self.params.register_parameters(prefix, param, params)
    }

    fn get_parameter(&mut self, param_name: &str) -> r2r::Result<ParameterValue> {
        self.params.get_parameter(param_name)
    }

    fn set_parameter(&mut self, param_name: &str, param_val: &ParameterValue) -> r2r::Result<()> {
        *self = self.with(param_name, param_val)?;
        Ok(())
    }

    fn check_parameter(&self, param_name: &str, param_val: &ParameterValue) -> r2r::Result<()> {
        self.with(param_name, param_val).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_are_refused_with_the_rule_and_nothing_changes() {
        let mut g = GuardedParams::new(NodeParams::defaults().unwrap());
        g.running = true;
        let before = g.params.clone();
        let e = g.set_parameter("detector.score_threshold", &ParameterValue::Double(1.5)).unwrap_err();
        assert!(e.to_string().contains("must be in [0, 1]"), "{e}");
        let e = g.set_parameter("diagnostics.period_s", &ParameterValue::Double(-1.0)).unwrap_err();
        assert!(e.to_string().contains("must be in (0, 3600]"), "{e}");
        // the value that made Duration::from_secs_f64 panic (issue 13)
        assert!(g.set_parameter("diagnostics.period_s", &ParameterValue::Double(1.8e19)).is_err());
        assert!(g.set_parameter("detector.score_threshold", &ParameterValue::String("x".into())).is_err());
        assert_eq!(g.params, before);
        g.set_parameter("detector.score_threshold", &ParameterValue::Double(0.25)).unwrap();
        assert_eq!(g.params.detector.score_threshold, 0.25);
        assert!(g.check_parameter("cloud.max_range_m", &ParameterValue::Double(0.0)).is_err());
    }

    /// Issue 13: `camera.calib_file` = /dev/zero was accepted and read until
    /// memory ran out, a FIFO blocked, a file's first line was echoed into
    /// the error, and every parameter change (and every relabel request)
    /// re-read the file.
    #[test]
    fn calib_file_is_read_once_as_untrusted_input() {
        use crate::dataset::kitti::Calibration;
        let mut g = GuardedParams::new(NodeParams::defaults().unwrap());
        g.validate().unwrap();
        g.running = true;
        let default = g.camera_extrinsic().unwrap();
        let set = |g: &mut GuardedParams, path: &std::path::Path| g.set_parameter("camera.calib_file", &ParameterValue::String(path.display().to_string()));

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, "SECRET_TOKEN hunter2\nP2: 1 2 3\n").unwrap();
        let huge = dir.path().join("huge.txt");
        std::fs::write(&huge, vec![b' '; 1 << 20]).unwrap();
        let t = std::time::Instant::now();
        for (path, why) in [
            (std::path::Path::new("/dev/zero"), "is a character device, not a regular file"),
            (&fifo, "is a FIFO, not a regular file"),
            (dir.path(), "is a directory, not a regular file"),
            (&huge, "has 1048576 bytes, more than the 65536 accepted"),
            (&secret, "line 1 is not a valid KITTI calib entry"),
        ] {
            let e = set(&mut g, path).unwrap_err().to_string();
            assert!(e.contains("refused") && e.contains(why), "{}: {e}", path.display());
            assert!(!e.contains("SECRET") && !e.contains("hunter2"), "file contents echoed: {e}");
            assert!(g.params.camera.calib_file.is_empty() && g.camera_extrinsic().unwrap() == default);
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());

        // a valid file is read when set, and only then
        let file = dir.path().join("000000.txt");
        let mut calib = Calibration::kitti_like_default();
        calib.tr_velo_to_cam[3] += 0.5;
        calib.write(&file).unwrap();
        set(&mut g, &file).unwrap();
        let resolved = g.camera_extrinsic().unwrap();
        assert_eq!(resolved, calib.lidar_to_cam_matrix());
        std::fs::remove_file(&file).unwrap();
        g.set_parameter("detector.score_threshold", &ParameterValue::Double(0.3)).unwrap();
        assert_eq!(g.camera_extrinsic().unwrap(), resolved);
        assert!(set(&mut g, &file).unwrap_err().to_string().contains("cannot open"));
        assert_eq!(g.camera_extrinsic().unwrap(), resolved);
    }

    #[test]
    fn read_only_parameters_are_refused_only_once_running() {
        let mut g = GuardedParams::new(NodeParams::defaults().unwrap());
        g.set_parameter("detector.device", &ParameterValue::String("cpu".into())).unwrap();
        g.running = true;
        for name in READ_ONLY.iter().copied().chain(["gdc.generator.steps"]) {
            let value = g.get_parameter(name).unwrap();
            let e = g.set_parameter(name, &value).unwrap_err();
            assert!(e.to_string().contains("read-only"), "{name}: {e}");
        }
    }

    /// The list and the descriptions users read agree: every read-only
    /// parameter says "Read at start-up", and every parameter that says so
    /// (without "and on change") is read-only.
    #[test]
    fn read_only_list_matches_the_descriptions() {
        for (name, description) in NodeParams::defaults().unwrap().declared() {
            let says = description.contains("Read at start-up") && !description.contains("on change");
            if name.starts_with("gdc.generator.") {
                continue; // the struct's doc says it for the whole group
            }
            assert_eq!(says, is_read_only(&name), "{name}: {description}");
        }
    }
}
