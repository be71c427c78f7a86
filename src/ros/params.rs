//! Node parameters: one struct tree, documented once. Doc comments become
//! the ROS parameter descriptions (r2r's `RosParams` derive) and the table
//! in docs/parameters.md; defaults come from config/eloss_perception.yaml,
//! compiled in, so the file and the node cannot disagree.

use r2r::RosParams;
use serde::Deserialize;

/// The params file shipped in config/, embedded as the node's defaults.
pub const DEFAULT_PARAMS_YAML: &str = include_str!("../../config/eloss_perception.yaml");

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeParams {
    /// Hardware id reported in diagnostics (the sensor rig this node serves)
    pub hardware_id: String,
    pub diagnostics: DiagnosticsParams,
    pub cloud: CloudParams,
    pub gdc: GdcParams,
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsParams {
    /// Period of diagnostic_msgs/DiagnosticArray reports [s], > 0
    pub period_s: f64,
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CloudParams {
    /// Points nearer than this 3D range are dropped, e.g. returns from the ego vehicle [m], >= 0
    pub min_range_m: f64,
    /// Points farther than this 3D range are dropped [m], > min_range_m
    pub max_range_m: f64,
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct GdcParams {
    /// Gaussian class bank file (safetensors, from `eloss gdc bank`); empty = GDC off, ~/relabel answers with an error
    pub bank_path: String,
    /// Backbone the bank was built with: a Hugging Face DINOv2 folder (config.json + model.safetensors) or an EfficientNet-Lite0 .safetensors file
    pub backbone_path: String,
    /// Divides the class log-likelihoods before Bayes' rule (1 = plain Bayes), > 0
    pub temperature: f64,
    /// Crops embedded per forward pass, >= 1
    pub batch_size: i64,
    /// Boxes smaller than this on their shorter image side get no label [px], >= 1
    pub min_crop_px: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("params YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("params YAML has no '/**: ros__parameters' (or '<node>: ros__parameters') section")]
    NoSection,
    #[error("parameter {name} = {value}: {rule}")]
    Invalid { name: &'static str, value: String, rule: &'static str },
}

impl NodeParams {
    /// Parses a ROS 2 params file (first node section, usually `/**`).
    pub fn from_params_yaml(text: &str) -> Result<Self, ParamsError> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
        let section = doc
            .as_mapping()
            .and_then(|m| m.values().next())
            .and_then(|node| node.get("ros__parameters"))
            .ok_or(ParamsError::NoSection)?;
        Ok(serde_yaml::from_value(section.clone())?)
    }

    /// The compiled-in defaults (config/eloss_perception.yaml).
    pub fn defaults() -> Result<Self, ParamsError> {
        Self::from_params_yaml(DEFAULT_PARAMS_YAML)
    }

    /// Rejects out-of-range values instead of clamping them.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let bad = |name, value: f64, rule| Err(ParamsError::Invalid { name, value: value.to_string(), rule });
        if !(self.diagnostics.period_s.is_finite() && self.diagnostics.period_s > 0.0) {
            return bad("diagnostics.period_s", self.diagnostics.period_s, "must be > 0");
        }
        if !(self.cloud.min_range_m.is_finite() && self.cloud.min_range_m >= 0.0) {
            return bad("cloud.min_range_m", self.cloud.min_range_m, "must be >= 0");
        }
        if self.cloud.max_range_m.partial_cmp(&self.cloud.min_range_m) != Some(std::cmp::Ordering::Greater) {
            return bad("cloud.max_range_m", self.cloud.max_range_m, "must be > cloud.min_range_m");
        }
        if !(self.gdc.temperature.is_finite() && self.gdc.temperature > 0.0) {
            return bad("gdc.temperature", self.gdc.temperature, "must be > 0");
        }
        if self.gdc.batch_size < 1 {
            return bad("gdc.batch_size", self.gdc.batch_size as f64, "must be >= 1");
        }
        if !(self.gdc.min_crop_px >= 1.0) {
            return bad("gdc.min_crop_px", self.gdc.min_crop_px, "must be >= 1");
        }
        Ok(())
    }

    /// Every parameter as (dotted name, description), in declaration order,
    /// as the node declares them to ROS.
    pub fn declared(&self) -> Vec<(String, String)> {
        let mut map = r2r::indexmap::IndexMap::new();
        let mut me = self.clone();
        // register_parameters fills names and descriptions exactly as the node does
        let _ = RosParams::register_parameters(&mut me, "", None, &mut map);
        map.into_iter().map(|(k, p)| (k, p.description.to_string())).collect()
    }
}

/// The parameter table of docs/parameters.md, generated from the structs
/// (names, doc comments) and the shipped defaults.
pub fn parameters_markdown() -> Result<String, ParamsError> {
    let defaults = NodeParams::defaults()?;
    let mut values = r2r::indexmap::IndexMap::new();
    let mut me = defaults.clone();
    let _ = RosParams::register_parameters(&mut me, "", None, &mut values);
    let mut out = String::from(
        "# Parameters of eloss_perception_node\n\n\
         Generated from `src/ros/params.rs` and `config/eloss_perception.yaml` by\n\
         `ELOSS_BLESS=1 cargo test parameters_doc`; a test fails when this file is stale.\n\n\
         | name | default | description |\n|---|---|---|\n",
    );
    for (name, p) in &values {
        let default = match &p.value {
            r2r::ParameterValue::String(s) => format!("\"{s}\""),
            r2r::ParameterValue::Double(d) => format!("{d:?}"),
            r2r::ParameterValue::Integer(i) => i.to_string(),
            r2r::ParameterValue::Bool(b) => b.to_string(),
            other => format!("{other:?}"),
        };
        out.push_str(&format!("| `{name}` | {default} | {} |\n", p.description));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/parameters.md");
        let want = parameters_markdown().unwrap();
        if std::env::var_os("ELOSS_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(have, want, "docs/parameters.md is stale: run ELOSS_BLESS=1 cargo test parameters_doc");
    }

    #[test]
    fn shipped_params_file_is_valid_and_complete() {
        let p = NodeParams::defaults().expect("config/eloss_perception.yaml parses");
        p.validate().expect("shipped defaults are valid");
        let names: Vec<String> = p.declared().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "hardware_id",
                "diagnostics.period_s",
                "cloud.min_range_m",
                "cloud.max_range_m",
                "gdc.bank_path",
                "gdc.backbone_path",
                "gdc.temperature",
                "gdc.batch_size",
                "gdc.min_crop_px"
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let unknown = DEFAULT_PARAMS_YAML.replace("period_s: 1.0", "period_s: 1.0\n      typo: 2");
        assert!(NodeParams::from_params_yaml(DEFAULT_PARAMS_YAML).is_ok());
        assert!(NodeParams::from_params_yaml(&unknown).is_err());
        let mut p = NodeParams::defaults().unwrap();
        p.cloud.max_range_m = p.cloud.min_range_m;
        assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "cloud.max_range_m", .. })));
        p = NodeParams::defaults().unwrap();
        p.diagnostics.period_s = 0.0;
        assert!(p.validate().is_err());
        p = NodeParams::defaults().unwrap();
        p.gdc.temperature = 0.0;
        assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "gdc.temperature", .. })));
        assert!(matches!(NodeParams::from_params_yaml("a: 1"), Err(ParamsError::NoSection)));
    }
}
