//! Log lines caused by input: a peer that floods the node with malformed
//! messages must not flood the log (and `/rosout`) as well. At most one line
//! per kind per period; the next allowed line says how many were suppressed
//! in between. Sender-chosen strings quoted in logs, diagnostics and errors
//! go through [`printable`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogLimiter {
    period: Duration,
    /// kind → (time of the last line let through, lines suppressed since)
    state: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    pub fn new(period: Duration) -> Self {
        Self { period, state: Mutex::new(HashMap::new()) }
    }

    /// `Some(suppressed)` when a line of this kind may be logged now (with the
    /// number of lines held back since the last one), `None` when it must be
    /// dropped. Kinds are static names, so the map stays small.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        self.allow_at(kind, Instant::now())
    }

    fn allow_at(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.get_mut(kind) {
            Some((last, suppressed)) if now.duration_since(*last) < self.period => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                state.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// A sender-chosen string (frame id, encoding, format) fit for a log line,
/// a diagnostic or an error: control characters escaped, at most 64
/// characters (then "…").
pub fn printable(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = s.chars().take(MAX_CHARS).flat_map(|c| c.escape_debug()).collect();
    if s.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Longest error text kept for diagnostics ([`bounded_text`]).
pub const MAX_ERROR_CHARS: usize = 512;

/// An error message that may quote what a sender chose, made safe to
/// republish on `/diagnostics`: control characters (newlines, escapes that
/// would rewrite a terminal) are escaped and the text is cut after
/// `max_chars` characters (escapes included), with an ellipsis.
pub fn bounded_text(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(4 * max_chars));
    let mut count = 0;
    for c in s.chars() {
        let escaped: Vec<char> = if c.is_control() { c.escape_default().collect() } else { vec![c] };
        if count + escaped.len() > max_chars {
            out.push('…');
            return out;
        }
        count += escaped.len();
        out.extend(escaped);
    }
    out
}

/// " (N similar suppressed)" or nothing, for the end of a rate-limited line.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar messages suppressed in the last period)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_escapes_control_characters_and_cuts_long_text() {
        assert_eq!(bounded_text("frame 'x': ok", 64), "frame 'x': ok");
        assert_eq!(bounded_text("a\nb\u{1b}[2J", 64), "a\\nb\\u{1b}[2J");
        let long = "y".repeat(1_000_000);
        let cut = bounded_text(&long, MAX_ERROR_CHARS);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn one_line_per_kind_per_period_with_the_count_held_back() {
        let l = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(l.allow_at("cloud", t0), Some(0));
        for i in 1..=50 {
            assert_eq!(l.allow_at("cloud", t0 + Duration::from_millis(10 * i)), None);
        }
        // another kind is independent
        assert_eq!(l.allow_at("image", t0 + Duration::from_millis(20)), Some(0));
        assert_eq!(l.allow_at("cloud", t0 + Duration::from_millis(1000)), Some(50));
        assert_eq!(l.allow_at("cloud", t0 + Duration::from_millis(1500)), None);
        assert_eq!(l.allow_at("cloud", t0 + Duration::from_millis(2001)), Some(1));
        assert_eq!(suppressed_note(0), "");
        assert!(suppressed_note(3).contains("3 similar"));
    }

    #[test]
    fn sender_strings_are_escaped_and_capped() {
        assert_eq!(printable("velodyne"), "velodyne");
        assert_eq!(printable("a\nb\0"), "a\\nb\\0");
        let long = "x".repeat(1000);
        assert_eq!(printable(&long), format!("{}…", "x".repeat(64)));
    }
}
