//! The run folder's CSV logs, and the throughput the trainer reports:
//! steps/s, frames/s and the fraction of the wall time spent waiting for
//! data, over windows of steps.

use super::trainer::TrainError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends rows to a CSV file, writing the header when the file is new. A
/// log written by an earlier version whose columns are a prefix of
/// `header` (a run resumed after columns were added) is rewritten once with
/// the new header, its old rows padded with empty cells; any other header
/// is an error, not a silently mixed file.
pub struct CsvLog {
    path: PathBuf,
    file: std::fs::File,
}

impl CsvLog {
    pub fn open(path: &Path, header: &str) -> Result<Self, TrainError> {
        let io = |source| TrainError::Io { path: path.to_path_buf(), source };
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(io)?;
            let old = text.lines().next().unwrap_or("");
            if old != header {
                let added = header.strip_prefix(old).and_then(|rest| rest.strip_prefix(',')).filter(|_| !old.is_empty());
                let Some(added) = added else {
                    return Err(TrainError::Config(format!("{} has the columns `{old}`, this version writes `{header}`: move the file away", path.display())));
                };
                let pad = ",".repeat(added.split(',').count());
                let mut upgraded = format!("{header}\n");
                for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
                    upgraded.push_str(line);
                    upgraded.push_str(&pad);
                    upgraded.push('\n');
                }
                let tmp = path.with_extension("csv.partial");
                std::fs::write(&tmp, upgraded).map_err(io)?;
                std::fs::rename(&tmp, path).map_err(io)?;
            }
        }
        let new = !path.exists();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        if new {
            writeln!(file, "{header}").map_err(io)?;
        }
        Ok(Self { path: path.to_path_buf(), file })
    }

    pub fn row(&mut self, line: &str) -> Result<(), TrainError> {
        writeln!(self.file, "{line}").map_err(|source| TrainError::Io { path: self.path.clone(), source })
    }
}

/// Throughput over a window of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub steps_per_s: f64,
    pub frames_per_s: f64,
    /// Share of the wall time the training thread waited for batches.
    pub data_wait_fraction: f64,
}

/// Accumulates steps and reports [`Rates`] every `WINDOW_STEPS` steps or
/// `WINDOW_SECONDS`, whichever comes first.
#[derive(Debug, Default)]
pub struct RateWindow {
    steps: usize,
    frames: usize,
    seconds: f64,
    waiting: f64,
}

const WINDOW_STEPS: usize = 50;
const WINDOW_SECONDS: f64 = 60.0;

impl RateWindow {
    pub fn add(&mut self, frames: usize, seconds: f64, waiting: f64) -> Option<Rates> {
        self.steps += 1;
        self.frames += frames;
        self.seconds += seconds;
        self.waiting += waiting;
        if self.steps < WINDOW_STEPS && self.seconds < WINDOW_SECONDS {
            return None;
        }
        let t = self.seconds.max(1e-9);
        let rates = Rates { steps_per_s: self.steps as f64 / t, frames_per_s: self.frames as f64 / t, data_wait_fraction: self.waiting / t };
        *self = Self::default();
        Some(rates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_log_gains_the_new_columns_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steps.csv");
        std::fs::write(&path, "step,loss\n0,1.5\n1,1.2\n").unwrap();
        let mut log = CsvLog::open(&path, "step,loss,frames,data_wait_s").unwrap();
        log.row("2,1.0,4,0.01").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "step,loss,frames,data_wait_s\n0,1.5,,\n1,1.2,,\n2,1.0,4,0.01\n");
        // the same header again: appended as is
        CsvLog::open(&path, "step,loss,frames,data_wait_s").unwrap().row("3,0.9,4,0.02").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("2,1.0,4,0.01\n3,0.9,4,0.02\n"));
        assert!(matches!(CsvLog::open(&path, "epoch,ap"), Err(TrainError::Config(_))));
    }

    #[test]
    fn rates_over_a_window() {
        let mut w = RateWindow::default();
        for _ in 0..WINDOW_STEPS - 1 {
            assert_eq!(w.add(4, 0.5, 0.1), None);
        }
        let r = w.add(4, 0.5, 0.1).unwrap();
        assert!((r.steps_per_s - 2.0).abs() < 1e-9 && (r.frames_per_s - 8.0).abs() < 1e-9 && (r.data_wait_fraction - 0.2).abs() < 1e-9, "{r:?}");
        // a slow step closes the window on time
        assert!(w.add(1, WINDOW_SECONDS, 0.0).is_some());
    }
}
