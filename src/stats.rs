//! Per-input health counters and timings, and the diagnostic status built
//! from them. ROS-free: the ROS adapter turns [`DiagnosticStatus`] into
//! `diagnostic_msgs/DiagnosticStatus`, tests read it directly.

use std::time::Duration;

/// Severity, with the numeric values of `diagnostic_msgs/DiagnosticStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warn = 1,
    Error = 2,
    Stale = 3,
}

/// A ROS-free diagnostic status: one per input stream.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticStatus {
    pub level: Level,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<(String, String)>,
}

/// Running timing statistics in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    pub count: u64,
    pub last_ms: f64,
    pub total_ms: f64,
    pub max_ms: f64,
}

impl Timing {
    pub fn record(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        self.count += 1;
        self.last_ms = ms;
        self.total_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.total_ms / self.count as f64 }
    }
}

/// Counters of one input stream (point clouds, images, camera infos).
/// `dropped` counts frames replaced by a newer one before they were processed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputStats {
    pub received: u64,
    pub processed: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub last_error: Option<String>,
    /// Elements (points or pixels) in the last decoded frame.
    pub last_elements: u64,
    pub decode: Timing,
}

impl InputStats {
    pub fn record_ok(&mut self, elements: u64, decode: Duration) {
        self.processed += 1;
        self.last_elements = elements;
        self.decode.record(decode);
    }

    pub fn record_malformed(&mut self, error: impl ToString) {
        self.malformed += 1;
        // errors quote what the sender chose (encodings, field names): bounded and escaped
        self.last_error = Some(crate::log_limit::bounded_text(&error.to_string(), crate::log_limit::MAX_ERROR_CHARS));
    }

    /// Status of this stream, judged on what changed since `previous`
    /// (the snapshot taken at the last report), so an old fault does not
    /// keep the stream in warning forever.
    pub fn status(&self, name: &str, hardware_id: &str, previous: &InputStats) -> DiagnosticStatus {
        let new_frames = self.received.saturating_sub(previous.received);
        let new_malformed = self.malformed.saturating_sub(previous.malformed);
        let (level, message) = if new_frames == 0 {
            (Level::Stale, "no messages since the last report".to_string())
        } else if new_malformed == new_frames {
            (
                Level::Error,
                format!("all {new_frames} messages malformed: {}", self.last_error.as_deref().unwrap_or("")),
            )
        } else if new_malformed > 0 {
            (
                Level::Warn,
                format!("{new_malformed} of {new_frames} messages malformed: {}", self.last_error.as_deref().unwrap_or("")),
            )
        } else {
            (Level::Ok, "ok".to_string())
        };
        let values = vec![
            ("frames_received".into(), self.received.to_string()),
            ("frames_processed".into(), self.processed.to_string()),
            ("frames_dropped".into(), self.dropped.to_string()),
            ("frames_malformed".into(), self.malformed.to_string()),
            ("last_error".into(), self.last_error.clone().unwrap_or_default()),
            ("last_elements".into(), self.last_elements.to_string()),
            ("decode_time_last_ms".into(), format!("{:.3}", self.decode.last_ms)),
            ("decode_time_mean_ms".into(), format!("{:.3}", self.decode.mean_ms())),
            ("decode_time_max_ms".into(), format!("{:.3}", self.decode.max_ms)),
        ];
        DiagnosticStatus { level, name: name.to_string(), message, hardware_id: hardware_id.to_string(), values }
    }
}

/// The detector stage: which model, how it went, how long each stage takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectorStats {
    pub model_id: String,
    /// Why no model is loaded (then every frame goes undetected).
    pub load_error: Option<String>,
    pub frames: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_detections: u64,
    pub pillarize: Timing,
    pub network: Timing,
    pub postprocess: Timing,
    /// Cloud decoded → messages published (auto relabelling included).
    pub total: Timing,
    /// `gdc.auto_relabel`: crop + embed + score per labelled frame (the latency it adds).
    pub gdc: Timing,
    /// Crops classified in the last labelled frame.
    pub gdc_last_crops: u64,
    /// Frames published without labels although auto relabelling is on, and the last reason.
    pub gdc_skipped: u64,
    pub gdc_last_skip: Option<String>,
}

impl DetectorStats {
    /// A frame labelled by auto relabelling: `crops` classified in `elapsed`.
    pub fn record_gdc(&mut self, crops: u64, elapsed: Duration) {
        self.gdc.record(elapsed);
        self.gdc_last_crops = crops;
    }

    /// A frame auto relabelling could not label, and why.
    pub fn record_gdc_skip(&mut self, reason: impl ToString) {
        self.gdc_skipped += 1;
        self.gdc_last_skip = Some(reason.to_string());
    }

    pub fn status(&self, name: &str, hardware_id: &str, previous: &DetectorStats) -> DiagnosticStatus {
        let (level, message) = if let Some(e) = &self.load_error {
            (Level::Error, format!("no detector: {e}"))
        } else if self.failures > previous.failures {
            (Level::Warn, format!("{} frames failed: {}", self.failures - previous.failures, self.last_error.as_deref().unwrap_or("")))
        } else if self.frames == previous.frames {
            (Level::Stale, "no frames since the last report".to_string())
        } else {
            (Level::Ok, "ok".to_string())
        };
        let mut values = vec![
            ("model_id".into(), self.model_id.clone()),
            ("frames".into(), self.frames.to_string()),
            ("failures".into(), self.failures.to_string()),
            ("last_detections".into(), self.last_detections.to_string()),
        ];
        for (stage, t) in [("pillarize", &self.pillarize), ("network", &self.network), ("postprocess", &self.postprocess), ("total", &self.total), ("gdc", &self.gdc)] {
            values.push((format!("{stage}_last_ms"), format!("{:.2}", t.last_ms)));
            values.push((format!("{stage}_mean_ms"), format!("{:.2}", t.mean_ms())));
            values.push((format!("{stage}_max_ms"), format!("{:.2}", t.max_ms)));
        }
        values.push(("gdc_frames".into(), self.gdc.count.to_string()));
        values.push(("gdc_last_crops".into(), self.gdc_last_crops.to_string()));
        values.push(("gdc_skipped".into(), self.gdc_skipped.to_string()));
        values.push(("gdc_last_skip".into(), self.gdc_last_skip.clone().unwrap_or_default()));
        DiagnosticStatus { level, name: name.to_string(), message, hardware_id: hardware_id.to_string(), values }
    }
}

/// The Eloss monitor: calibrated or not, the last frame's numbers, alarms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ElossStats {
    /// Switched off (`eloss.enabled` false) when the last frame came.
    pub disabled: bool,
    /// Why anomalies are not scored (no calibration); `None` when calibrated.
    pub uncalibrated: Option<String>,
    pub frames: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_eloss: f64,
    pub last_score: f64,
    pub threshold: f64,
    pub alarm: bool,
    pub alarm_type: String,
    /// Frames that raised the alarm (rising edges).
    pub alarms_raised: u64,
    /// Profile + scoring per frame.
    pub compute: Timing,
    /// `eloss.on_alarm` of the last frame (publish, temper, suppress).
    pub on_alarm: &'static str,
    /// Alarmed frames whose boxes were tempered or suppressed, and the boxes withheld.
    pub frames_acted_on: u64,
    pub boxes_withheld: u64,
}

impl ElossStats {
    pub fn status(&self, name: &str, hardware_id: &str) -> DiagnosticStatus {
        let (level, message) = if self.disabled {
            (Level::Ok, "off (eloss.enabled is false): no Eloss profile, report or anomaly score".to_string())
        } else if self.alarm {
            let kind = if self.alarm_type.is_empty() { String::new() } else { format!(" (looks like {})", self.alarm_type) };
            let action = match self.on_alarm {
                "temper" => "; detections tempered",
                "suppress" => "; detections suppressed",
                _ => "; detections published as they are",
            };
            (Level::Warn, format!("input anomaly: Eloss score {:.2} above threshold {:.2}{kind}{action}", self.last_score, self.threshold))
        } else if let Some(reason) = &self.uncalibrated {
            (Level::Warn, reason.clone())
        } else if let Some(e) = self.last_error.as_ref().filter(|_| self.failures > 0) {
            (Level::Warn, format!("Eloss failed: {e}"))
        } else {
            (Level::Ok, "ok".to_string())
        };
        let values = vec![
            ("enabled".into(), (!self.disabled).to_string()),
            ("calibrated".into(), self.uncalibrated.is_none().to_string()),
            ("frames".into(), self.frames.to_string()),
            ("alarm".into(), self.alarm.to_string()),
            ("alarms_raised".into(), self.alarms_raised.to_string()),
            ("last_eloss".into(), format!("{:.6e}", self.last_eloss)),
            ("last_score".into(), format!("{:.4}", self.last_score)),
            ("threshold".into(), format!("{:.4}", self.threshold)),
            ("compute_mean_ms".into(), format!("{:.2}", self.compute.mean_ms())),
            ("on_alarm".into(), self.on_alarm.to_string()),
            ("frames_acted_on".into(), self.frames_acted_on.to_string()),
            ("boxes_withheld".into(), self.boxes_withheld.to_string()),
        ];
        DiagnosticStatus { level, name: name.to_string(), message, hardware_id: hardware_id.to_string(), values }
    }
}

/// GDC: the class bank as loaded, ~/relabel requests, run-time classes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GdcStats {
    /// None while loading; the number of classes, or why GDC is unavailable.
    pub bank: Option<Result<usize, String>>,
    /// gdc.bank_path is set: an unavailable bank is then an error, not "off".
    pub configured: bool,
    pub backbone: String,
    pub requests: u64,
    pub failed_requests: u64,
    /// Service requests answered "busy" (too many in flight).
    pub busy_requests: u64,
    pub last_error: Option<String>,
    pub request: Timing,
    /// gdc.generator.path is set (~/add_classes works).
    pub generator: bool,
    pub pending_classes: usize,
    pub failed_classes: usize,
    /// Why the last save of the bank with run-time classes failed (None
    /// after a successful one): the classes are usable but a restart loses them.
    pub bank_save_error: Option<String>,
    /// Memory held: the bank's means and factors, the history's frames and images.
    pub bank_bytes: u64,
    pub history_frame_bytes: u64,
    pub history_image_bytes: u64,
}

impl GdcStats {
    pub fn status(&self, name: &str, hardware_id: &str) -> DiagnosticStatus {
        let (level, message) = match &self.bank {
            None => (Level::Ok, "loading the class bank and backbone".to_string()),
            Some(Err(e)) if self.configured => (Level::Error, e.clone()),
            Some(Err(_)) => (Level::Ok, "off (no gdc.bank_path)".to_string()),
            Some(Ok(_)) if self.bank_save_error.is_some() => {
                (Level::Error, format!("saving the bank failed: {}", self.bank_save_error.as_deref().unwrap_or_default()))
            }
            Some(Ok(_)) if self.failed_classes > 0 => {
                (Level::Warn, format!("{} run-time classes failed (see ~/gdc_bank)", self.failed_classes))
            }
            Some(Ok(n)) if self.pending_classes > 0 => (Level::Ok, format!("{n} classes, generating {} more", self.pending_classes)),
            Some(Ok(n)) => (Level::Ok, format!("{n} classes")),
        };
        let classes = match &self.bank {
            Some(Ok(n)) => n.to_string(),
            _ => "0".into(),
        };
        let values = vec![
            ("classes".into(), classes),
            ("backbone".into(), self.backbone.clone()),
            ("relabel_requests".into(), self.requests.to_string()),
            ("relabel_failed".into(), self.failed_requests.to_string()),
            ("relabel_mean_ms".into(), format!("{:.1}", self.request.mean_ms())),
            ("busy_requests".into(), self.busy_requests.to_string()),
            ("last_error".into(), self.last_error.clone().unwrap_or_default()),
            ("generator".into(), self.generator.to_string()),
            ("pending_classes".into(), self.pending_classes.to_string()),
            ("failed_classes".into(), self.failed_classes.to_string()),
            ("bank_bytes".into(), self.bank_bytes.to_string()),
            ("history_frame_bytes".into(), self.history_frame_bytes.to_string()),
            ("history_image_bytes".into(), self.history_image_bytes.to_string()),
        ];
        DiagnosticStatus { level, name: name.to_string(), message, hardware_id: hardware_id.to_string(), values }
    }
}

/// Where a transform the node uses came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TransformSource {
    /// Not needed (detector.frame empty: the cloud's own frame is used) or not used yet.
    #[default]
    Unused,
    Tf,
    /// The explicit fallback parameter, with the reason tf could not give it.
    Parameter { name: &'static str, why: String },
}

impl std::fmt::Display for TransformSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransformSource::Unused => write!(f, "unused"),
            TransformSource::Tf => write!(f, "tf"),
            TransformSource::Parameter { name, why } => write!(f, "parameter {name} (fallback: {why})"),
        }
    }
}

/// Frames and tf: what the node received on /tf and /tf_static, where the
/// LiDAR mounting and the camera extrinsic came from, and frame errors.
/// A frame error (no transform, an image whose frame is not the
/// CameraInfo's) since the previous report is an ERROR: a crop or a box in
/// the wrong frame is never made silently; a fallback parameter in use is a
/// WARN.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameStats {
    pub tf_received: u64,
    pub tf_static_received: u64,
    pub tf_rejected: u64,
    pub frames_known: usize,
    pub mounting: TransformSource,
    pub camera_extrinsic: TransformSource,
    pub errors: u64,
    pub last_error: Option<String>,
    /// The frame detections are published in.
    pub output_frame: String,
}

impl FrameStats {
    pub fn record_error(&mut self, e: impl ToString) {
        self.errors += 1;
        self.last_error = Some(crate::log_limit::bounded_text(&e.to_string(), crate::log_limit::MAX_ERROR_CHARS));
    }

    pub fn status(&self, name: &str, hardware_id: &str, previous: &FrameStats) -> DiagnosticStatus {
        let fallback = [&self.mounting, &self.camera_extrinsic].into_iter().find(|s| matches!(s, TransformSource::Parameter { .. }));
        let (level, message) = if self.errors > previous.errors {
            (Level::Error, format!("{} frame errors: {}", self.errors - previous.errors, self.last_error.clone().unwrap_or_default()))
        } else if let Some(f) = fallback {
            (Level::Warn, format!("using {f}"))
        } else {
            (Level::Ok, format!("{} frames known", self.frames_known))
        };
        let values = vec![
            ("output_frame".into(), self.output_frame.clone()),
            ("tf_received".into(), self.tf_received.to_string()),
            ("tf_static_received".into(), self.tf_static_received.to_string()),
            ("tf_rejected".into(), self.tf_rejected.to_string()),
            ("frames_known".into(), self.frames_known.to_string()),
            ("lidar_mounting".into(), self.mounting.to_string()),
            ("camera_extrinsic".into(), self.camera_extrinsic.to_string()),
            ("frame_errors".into(), self.errors.to_string()),
            ("last_error".into(), self.last_error.clone().unwrap_or_default()),
        ];
        DiagnosticStatus { level, name: name.to_string(), message, hardware_id: hardware_id.to_string(), values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 item 9: a sender-chosen string (a 1 MB encoding name with a
    /// newline) reached /diagnostics whole; now it is bounded and escaped.
    #[test]
    fn a_malformed_message_error_is_bounded_and_escaped() {
        let mut s = InputStats::default();
        let encoding = format!("evil\n{}", "e".repeat(1 << 20));
        s.record_malformed(format!("unsupported image encoding `{encoding}`"));
        let e = s.last_error.unwrap();
        assert!(e.chars().count() <= crate::log_limit::MAX_ERROR_CHARS + 1, "{} chars", e.len());
        assert!(!e.contains('\n') && e.starts_with("unsupported image encoding `evil\\n"), "{}", &e[..60]);
    }

    #[test]
    fn eloss_status_says_off_before_a_stale_alarm() {
        let mut e = ElossStats { alarm: true, threshold: 1.0, last_score: 3.0, ..Default::default() };
        assert_eq!(e.status("m", "h").level, Level::Warn);
        e.disabled = true;
        let s = e.status("m", "h");
        assert_eq!(s.level, Level::Ok);
        assert!(s.message.starts_with("off (eloss.enabled is false)"), "{}", s.message);
        assert!(s.values.contains(&("enabled".to_string(), "false".to_string())));
    }

    #[test]
    fn gdc_status_tells_off_from_broken() {
        let mut g = GdcStats { configured: true, ..Default::default() };
        assert_eq!(g.status("gdc", "hw").level, Level::Ok);
        g.bank = Some(Err("GDC bank: /x.safetensors: not a safetensors file".into()));
        let s = g.status("gdc", "hw");
        assert_eq!(s.level, Level::Error);
        assert!(s.message.contains("not a safetensors"));
        g.configured = false;
        assert_eq!((g.status("gdc", "hw").level, g.status("gdc", "hw").message.as_str()), (Level::Ok, "off (no gdc.bank_path)"));
        g.bank = Some(Ok(5));
        g.pending_classes = 2;
        assert_eq!(g.status("gdc", "hw").message, "5 classes, generating 2 more");
        g.failed_classes = 1;
        assert_eq!(g.status("gdc", "hw").level, Level::Warn);
        g.request.record(Duration::from_millis(30));
        assert_eq!(value(&g.status("gdc", "hw"), "relabel_mean_ms"), "30.0");
        assert_eq!(value(&g.status("gdc", "hw"), "classes"), "5");
        // issue 13: a failed save was only logged while the class was reported added
        g.bank_save_error = Some("/banks/x.safetensors: No space left on device".into());
        let s = g.status("gdc", "hw");
        assert_eq!(s.level, Level::Error);
        assert!(s.message.contains("saving the bank failed") && s.message.contains("No space left"), "{}", s.message);
        (g.bank_bytes, g.history_image_bytes) = (4096, 1 << 20);
        let s = g.status("gdc", "hw");
        assert_eq!((value(&s, "bank_bytes"), value(&s, "history_image_bytes")), ("4096", "1048576"));
    }

    #[test]
    fn frame_status_errors_then_fallbacks_then_ok() {
        let mut f = FrameStats { frames_known: 3, ..Default::default() };
        let before = f.clone();
        assert_eq!(f.status("frames", "hw", &before).level, Level::Ok);
        f.camera_extrinsic = TransformSource::Parameter { name: "camera.lidar_to_camera", why: "no tf from velodyne to cam".into() };
        let s = f.status("frames", "hw", &before);
        assert_eq!(s.level, Level::Warn);
        assert!(s.message.contains("camera.lidar_to_camera") && s.message.contains("no tf"));
        f.record_error("image frame 'cam1' is not the CameraInfo's 'cam0'");
        let s = f.status("frames", "hw", &before);
        assert_eq!(s.level, Level::Error);
        assert!(s.message.contains("cam1"));
        // no new error since the previous report: back to the fallback warning
        assert_eq!(f.status("frames", "hw", &f.clone()).level, Level::Warn);
        assert_eq!(value(&s, "frame_errors"), "1");
    }

    fn value<'a>(s: &'a DiagnosticStatus, k: &str) -> &'a str {
        s.values.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap()
    }

    #[test]
    fn detector_status_reports_load_errors_failures_and_latency() {
        let mut d = DetectorStats { model_id: "m@1".into(), ..Default::default() };
        let before = d.clone();
        assert_eq!(d.status("det", "hw", &before).level, Level::Stale);
        d.frames = 2;
        d.total.record(Duration::from_millis(80));
        d.total.record(Duration::from_millis(120));
        let st = d.status("det", "hw", &before);
        assert_eq!(st.level, Level::Ok);
        assert_eq!(value(&st, "total_mean_ms"), "100.00");
        assert_eq!(value(&st, "total_max_ms"), "120.00");
        assert_eq!(value(&st, "gdc_frames"), "0");
        d.record_gdc(3, Duration::from_millis(30));
        d.record_gdc_skip("no camera image");
        let st = d.status("det", "hw", &before);
        assert_eq!((value(&st, "gdc_mean_ms"), value(&st, "gdc_last_crops")), ("30.00", "3"));
        assert_eq!((value(&st, "gdc_skipped"), value(&st, "gdc_last_skip")), ("1", "no camera image"));
        d.failures = 1;
        d.last_error = Some("bad".into());
        assert_eq!(d.status("det", "hw", &before).level, Level::Warn);
        d.load_error = Some("corrupt file".into());
        let st = d.status("det", "hw", &before);
        assert_eq!(st.level, Level::Error);
        assert!(st.message.contains("corrupt file"));
    }

    #[test]
    fn levels_follow_recent_frames() {
        let mut s = InputStats::default();
        let none = s.clone();
        assert_eq!(s.status("cloud", "hw", &none).level, Level::Stale);

        s.received = 3;
        s.record_ok(100, Duration::from_millis(2));
        s.record_ok(100, Duration::from_millis(4));
        s.record_malformed("data too short");
        let st = s.status("cloud", "hw", &none);
        assert_eq!(st.level, Level::Warn);
        assert!(st.message.contains("1 of 3") && st.message.contains("data too short"));
        assert_eq!(value(&st, "frames_malformed"), "1");
        assert_eq!(value(&st, "decode_time_mean_ms"), "3.000");
        assert_eq!(value(&st, "decode_time_max_ms"), "4.000");

        // a later period with only good frames is healthy again
        let snap = s.clone();
        s.received += 1;
        s.record_ok(100, Duration::from_millis(1));
        assert_eq!(s.status("cloud", "hw", &snap).level, Level::Ok);

        let snap = s.clone();
        s.received += 2;
        s.record_malformed("x");
        s.record_malformed("y");
        let st = s.status("cloud", "hw", &snap);
        assert_eq!(st.level, Level::Error);
        assert!(st.message.ends_with('y'));
    }
}
