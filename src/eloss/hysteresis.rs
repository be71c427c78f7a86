//! The alarm state machine: per-frame anomaly flags in, a debounced alarm
//! out, so one noisy frame neither raises nor clears it.
//!
//! - **enter**: the alarm rises when at least `enter` of the last `window`
//!   frames were anomalous (k-of-n: tolerant of a missed frame inside a
//!   sustained anomaly, deaf to isolated spikes);
//! - **exit**: it clears after `exit` consecutive normal frames, and the
//!   window is emptied so the old frames cannot re-raise it at once.
//!
//! With per-frame false-alarm rate α and independent frames, a false alarm
//! needs `enter` of `window` false flags: ≈ C(window, enter)·α^enter per
//! frame (C(5,3)·0.01³ = 1e-5 for the defaults). The cost is latency: an
//! anomaly is reported `enter` frames after it starts at the earliest.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HysteresisConfig {
    pub window: usize,
    pub enter: usize,
    pub exit: usize,
}

impl Default for HysteresisConfig {
    /// 3 of the last 5 frames to enter, 5 clear frames to exit (0.5 s at 10 Hz).
    fn default() -> Self {
        Self { window: 5, enter: 3, exit: 5 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hysteresis needs 1 <= enter <= window <= 1000 and 1 <= exit <= 1000, got window {window}, enter {enter}, exit {exit}")]
pub struct HysteresisError {
    pub window: usize,
    pub enter: usize,
    pub exit: usize,
}

impl HysteresisConfig {
    pub fn new(window: usize, enter: usize, exit: usize) -> Result<Self, HysteresisError> {
        Self { window, enter, exit }.validated()
    }

    pub fn validated(self) -> Result<Self, HysteresisError> {
        let Self { window, enter, exit } = self;
        if enter >= 1 && enter <= window && window <= 1000 && (1..=1000).contains(&exit) {
            Ok(self)
        } else {
            Err(HysteresisError { window, enter, exit })
        }
    }
}

/// Where the alarm stands after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    /// No alarm, no anomalous frame in the window.
    Normal,
    /// No alarm yet, but anomalous frames in the window (fewer than `enter`).
    Rising,
    /// Alarm raised (this frame or earlier) and not cleared.
    Alarm,
    /// Alarm still raised, with normal frames counting towards `exit`.
    Clearing,
}

impl AlarmState {
    pub fn is_alarm(self) -> bool {
        matches!(self, AlarmState::Alarm | AlarmState::Clearing)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Normal => "normal",
            AlarmState::Rising => "rising",
            AlarmState::Alarm => "alarm",
            AlarmState::Clearing => "clearing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hysteresis {
    config: HysteresisConfig,
    recent: VecDeque<bool>,
    clear_run: usize,
    alarm: bool,
}

impl Hysteresis {
    pub fn new(config: HysteresisConfig) -> Self {
        Self { config, recent: VecDeque::with_capacity(config.window), clear_run: 0, alarm: false }
    }

    pub fn config(&self) -> HysteresisConfig {
        self.config
    }

    /// Feeds one frame's flag; returns the state after it.
    pub fn update(&mut self, anomalous: bool) -> AlarmState {
        if self.recent.len() == self.config.window {
            self.recent.pop_front();
        }
        self.recent.push_back(anomalous);
        let flagged = self.recent.iter().filter(|f| **f).count();
        if self.alarm {
            self.clear_run = if anomalous { 0 } else { self.clear_run + 1 };
            if self.clear_run >= self.config.exit {
                self.alarm = false;
                self.clear_run = 0;
                self.recent.clear();
                return AlarmState::Normal;
            }
            return if self.clear_run > 0 { AlarmState::Clearing } else { AlarmState::Alarm };
        }
        if flagged >= self.config.enter {
            self.alarm = true;
            self.clear_run = 0;
            AlarmState::Alarm
        } else if flagged > 0 {
            AlarmState::Rising
        } else {
            AlarmState::Normal
        }
    }

    /// Forgets the history (e.g. after a gap in the input).
    pub fn reset(&mut self) {
        self.recent.clear();
        self.clear_run = 0;
        self.alarm = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: HysteresisConfig, flags: &str) -> String {
        let mut h = Hysteresis::new(cfg);
        flags.chars().map(|c| if h.update(c == '1').is_alarm() { 'A' } else { '.' }).collect()
    }

    #[test]
    fn single_spikes_do_not_alarm() {
        let cfg = HysteresisConfig::default();
        assert_eq!(run(cfg, "0001000001000100"), "................");
        // two of five is still below three
        assert_eq!(run(cfg, "0110000000"), "..........");
    }

    #[test]
    fn sustained_anomaly_alarms_and_recovers() {
        let cfg = HysteresisConfig::default();
        // enters on the third anomalous frame, survives one missed frame,
        // clears after five clean frames
        assert_eq!(run(cfg, "0011101110000000"), "....AAAAAAAAA...");
        // k-of-n: 1,0,1,0,1 within five frames enters too
        assert_eq!(run(cfg, "10101000000"), "....AAAAA..");
        // after clearing, old anomalous frames do not re-raise it
        assert_eq!(run(HysteresisConfig::new(3, 2, 1).unwrap(), "1101"), ".A..");
    }

    #[test]
    fn states_and_config_checks() {
        let mut h = Hysteresis::new(HysteresisConfig::new(3, 2, 2).unwrap());
        let states: Vec<AlarmState> = [false, true, true, false, true, false, false].iter().map(|f| h.update(*f)).collect();
        use AlarmState::*;
        assert_eq!(states, [Normal, Rising, Alarm, Clearing, Alarm, Clearing, Normal]);
        h.update(true);
        h.reset();
        assert_eq!(h.update(false), Normal);
        assert!(HysteresisConfig::new(3, 4, 1).is_err());
        assert!(HysteresisConfig::new(3, 0, 1).is_err());
        assert!(HysteresisConfig::new(3, 1, 0).is_err());
        assert_eq!(HysteresisConfig::new(1, 1, 1).unwrap(), HysteresisConfig { window: 1, enter: 1, exit: 1 });
    }
}
