//! What the node does with a frame's detections while the Eloss alarm is up
//! (`eloss.on_alarm`): a detector fed input unlike its training data places
//! boxes that are not there (on a real scan from another vehicle, 96 of 100
//! published boxes were phantom pedestrians while the monitor rightly
//! flagged the frame), so the boxes of an alarmed frame carry that context
//! and, on request, lose weight or are withheld.

use crate::detect::postprocess::Detection;

/// The policy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum OnAlarm {
    /// Publish the boxes unchanged (the alarm is still carried alongside).
    #[default]
    Publish,
    /// Multiply every score by the factor (in (0, 1]) and drop the boxes
    /// that fall below the detector's score threshold.
    Temper { factor: f64 },
    /// Publish no boxes for the frame.
    Suppress,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnAlarmError {
    #[error("unknown on_alarm policy (publish, temper or suppress)")]
    Unknown,
    #[error("temper factor must be in (0, 1]")]
    Factor,
}

impl OnAlarm {
    /// `publish`, `suppress`, or `temper` with its factor.
    pub fn new(name: &str, temper_factor: f64) -> Result<Self, OnAlarmError> {
        match name {
            "publish" => Ok(Self::Publish),
            "suppress" => Ok(Self::Suppress),
            "temper" if temper_factor > 0.0 && temper_factor <= 1.0 => Ok(Self::Temper { factor: temper_factor }),
            "temper" => Err(OnAlarmError::Factor),
            _ => Err(OnAlarmError::Unknown),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Temper { .. } => "temper",
            Self::Suppress => "suppress",
        }
    }
}

/// What was done to one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmAction {
    /// `""` when the alarm was down, else the policy's name.
    pub action: &'static str,
    /// The factor the published scores carry (1 unless tempered).
    pub score_factor: f64,
    /// Boxes withheld (suppressed, or tempered below the threshold).
    pub dropped: usize,
}

/// Applies `policy` to the frame's `detections` when `alarm` is up.
/// `score_threshold` is the detector's own (tempered boxes below it go).
pub fn apply(policy: OnAlarm, alarm: bool, score_threshold: f32, detections: &mut Vec<Detection>) -> AlarmAction {
    if !alarm {
        return AlarmAction { action: "", score_factor: 1.0, dropped: 0 };
    }
    let before = detections.len();
    let score_factor = match policy {
        OnAlarm::Publish => 1.0,
        OnAlarm::Suppress => {
            detections.clear();
            1.0
        }
        OnAlarm::Temper { factor } => {
            for d in detections.iter_mut() {
                d.score = (d.score as f64 * factor) as f32;
            }
            detections.retain(|d| d.score >= score_threshold);
            factor
        }
    };
    AlarmAction { action: policy.name(), score_factor, dropped: before - detections.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Box3D;

    fn dets(scores: &[f32]) -> Vec<Detection> {
        scores.iter().map(|&score| Detection { bbox: Box3D { center: [10.0, 0.0, -1.0], size: [3.9, 1.6, 1.56], yaw: 0.0 }, class: 0, score }).collect()
    }

    #[test]
    fn policies_act_only_during_an_alarm() {
        for policy in [OnAlarm::Publish, OnAlarm::Suppress, OnAlarm::Temper { factor: 0.5 }] {
            let mut d = dets(&[0.9, 0.5]);
            let a = apply(policy, false, 0.3, &mut d);
            assert_eq!((a.action, a.score_factor, a.dropped, d.len()), ("", 1.0, 0, 2), "{policy:?}");
            assert_eq!(d[0].score, 0.9);
        }
        let mut d = dets(&[0.9, 0.5]);
        assert_eq!(apply(OnAlarm::Publish, true, 0.3, &mut d), AlarmAction { action: "publish", score_factor: 1.0, dropped: 0 });
        assert_eq!(d.len(), 2);
        let mut d = dets(&[0.9, 0.5]);
        assert_eq!(apply(OnAlarm::Suppress, true, 0.3, &mut d), AlarmAction { action: "suppress", score_factor: 1.0, dropped: 2 });
        assert!(d.is_empty());
        // 0.9 → 0.45 stays, 0.5 → 0.25 falls under the 0.3 threshold
        let mut d = dets(&[0.9, 0.5]);
        assert_eq!(apply(OnAlarm::Temper { factor: 0.5 }, true, 0.3, &mut d), AlarmAction { action: "temper", score_factor: 0.5, dropped: 1 });
        assert_eq!(d.len(), 1);
        assert!((d[0].score - 0.45).abs() < 1e-6);
    }

    #[test]
    fn parsing_and_bounds() {
        assert_eq!(OnAlarm::new("publish", 0.5), Ok(OnAlarm::Publish));
        assert_eq!(OnAlarm::new("suppress", 0.5), Ok(OnAlarm::Suppress));
        assert_eq!(OnAlarm::new("temper", 0.5), Ok(OnAlarm::Temper { factor: 0.5 }));
        assert_eq!(OnAlarm::new("temper", 0.25), Ok(OnAlarm::Temper { factor: 0.25 }));
        assert_eq!(OnAlarm::new("drop", 0.5), Err(OnAlarmError::Unknown));
        for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
            assert_eq!(OnAlarm::new("temper", bad), Err(OnAlarmError::Factor), "{bad}");
        }
        assert_eq!(OnAlarm::new("temper", 1.0), Ok(OnAlarm::Temper { factor: 1.0 }));
    }
}
