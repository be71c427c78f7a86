//! `tracing` → ROS logging. Every event of the node goes through rcutils under
//! the node's logger name, so it shows on the console in ROS's format and
//! obeys `--ros-args --log-level [name:=]level` and the launch files'
//! `log_level`; and what rcutils lets through is published on `/rosout`
//! (`rcl_interfaces/Log`, rcl's rosout QoS). Since ROS 2 Iron `rcl_node_init`
//! no longer creates a node's rosout publisher (the client library does, and
//! r2r 0.9 does not), so the node creates it itself ([`attach_rosout`]).
//! `RUST_LOG`, when set, still selects which events leave the process (by
//! target and level, as `tracing_subscriber::EnvFilter` reads it); rcutils'
//! level then applies on top.
//!
//! Text from outside (frame ids, encodings, class names) may end up in a log
//! line: NUL bytes (which rcutils' C strings cannot carry) are escaped and
//! lines are capped at [`MAX_LINE_BYTES`].

use std::ffi::CString;
use std::fmt::Write as _;
use r2r::rcl_interfaces::msg::Log;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Longest log line handed to rcutils; longer ones are cut with "…".
pub const MAX_LINE_BYTES: usize = 2048;

/// The logger events go to before the node exists (rcutils console only).
const DEFAULT_LOGGER: &str = super::NODE_NAME;

static LOGGER: OnceLock<CString> = OnceLock::new();

/// The node's `/rosout` publisher and the clock that stamps its records.
struct Rosout {
    publisher: r2r::Publisher<Log>,
    clock: Arc<Mutex<r2r::Clock>>,
}

/// r2r's publisher is Send but not Sync: behind a mutex.
static ROSOUT: OnceLock<Mutex<Rosout>> = OnceLock::new();

thread_local! {
    /// Set while this thread publishes a record: anything logged meanwhile
    /// (by r2r or libraries) must not re-enter the publisher's lock.
    static PUBLISHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Creates the node's `/rosout` publisher with rcl's rosout QoS (reliable,
/// transient local, depth 1000, 10 s lifespan), so late subscribers such as
/// `ros2 topic echo /rosout` or rqt_console get the recent records.
pub fn attach_rosout(node: &mut r2r::Node) -> r2r::Result<()> {
    let qos = r2r::QosProfile::default().reliable().transient_local().keep_last(1000).lifespan(std::time::Duration::from_secs(10));
    let publisher = node.create_publisher::<Log>("/rosout", qos)?;
    let _ = ROSOUT.set(Mutex::new(Rosout { publisher, clock: node.get_ros_clock() }));
    Ok(())
}

fn publish_rosout(level: &Level, name: &str, msg: &str, file: &str, line: u32) {
    let Some(rosout) = ROSOUT.get() else { return };
    if PUBLISHING.with(|p| p.replace(true)) {
        return;
    }
    let r = rosout.lock().unwrap_or_else(|e| e.into_inner());
    let stamp = r
        .clock
        .lock()
        .ok()
        .and_then(|mut c| c.get_now().ok())
        .map(|d| r2r::builtin_interfaces::msg::Time { sec: d.as_secs() as i32, nanosec: d.subsec_nanos() })
        .unwrap_or_default();
    // r2r exposes the message constants as untyped bindgen integers
    let level = match *level {
        Level::ERROR => Log::ERROR as u8,
        Level::WARN => Log::WARN as u8,
        Level::INFO => Log::INFO as u8,
        _ => Log::DEBUG as u8,
    };
    // a failed publish is dropped: logging it would recurse
    let _ = r.publisher.publish(&Log { stamp, level, name: name.into(), msg: msg.into(), file: file.into(), function: String::new(), line });
    drop(r);
    PUBLISHING.with(|p| p.set(false));
}

/// Called once the node exists: events go to its logger (`ns.node_name`),
/// which is the one rcl forwards to `/rosout`.
pub fn set_logger_name(name: &str) {
    let _ = LOGGER.set(c_string(name));
}

/// Installs the ROS logging layer as the global `tracing` subscriber.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
    tracing_subscriber::registry().with(RosLogLayer.with_filter(filter)).init();
}

struct RosLogLayer;

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).expect("NUL bytes were escaped")
}

fn severity(level: &Level) -> (r2r::LogSeverity, i32) {
    use r2r_rcl::RCUTILS_LOG_SEVERITY::*;
    match *level {
        Level::ERROR => (r2r::LogSeverity::Error, RCUTILS_LOG_SEVERITY_ERROR as i32),
        Level::WARN => (r2r::LogSeverity::Warn, RCUTILS_LOG_SEVERITY_WARN as i32),
        Level::INFO => (r2r::LogSeverity::Info, RCUTILS_LOG_SEVERITY_INFO as i32),
        _ => (r2r::LogSeverity::Debug, RCUTILS_LOG_SEVERITY_DEBUG as i32),
    }
}

/// The event's message followed by its other fields as ` key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// `line` cut to at most `max` bytes on a character boundary.
pub fn truncate_line(mut line: String, max: usize) -> String {
    if line.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

impl<S: Subscriber> Layer<S> for RosLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let (severity, native) = severity(meta.level());
        let logger = LOGGER.get();
        match logger {
            // rcutils decides by the logger's effective level (--log-level); asked
            // only once the context configured logging (no lazy init race)
            Some(name) => {
                if !unsafe { r2r_rcl::rcutils_logging_logger_is_enabled_for(name.as_ptr(), native) } {
                    return;
                }
            }
            None if *meta.level() > Level::INFO => return,
            None => {}
        }
        let mut line = Line::default();
        event.record(&mut line);
        let text = truncate_line(line.message + &line.fields, MAX_LINE_BYTES).replace('\0', "\\0");
        let name = logger.map(|c| c.to_str().unwrap_or(DEFAULT_LOGGER)).unwrap_or(DEFAULT_LOGGER);
        let (file, line) = (meta.file().unwrap_or(""), meta.line().unwrap_or(0));
        r2r::log(&text, name, file, line, severity);
        publish_rosout(meta.level(), name, &text, file, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let s = "é".repeat(3000);
        let cut = truncate_line(s, 101);
        assert!(cut.len() <= 101 && cut.ends_with('…'));
        assert_eq!(truncate_line("short".into(), 10), "short");
    }

    #[test]
    fn nul_bytes_never_reach_rcutils() {
        assert_eq!(c_string("a\0b").to_str().unwrap(), "a\\0b");
    }
}
