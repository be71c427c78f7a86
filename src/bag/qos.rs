//! The QoS a topic's publishers offered when it was recorded, as rosbag2
//! stores it: a YAML list of profiles, one per publisher, in the MCAP
//! channel metadata key `offered_qos_profiles` (and in `metadata.yaml`).
//!
//! rosbag2 spells the policies as the `rmw_qos_*_policy_t` numbers in bag
//! versions up to 8 (`reliability: 1`) and as their names from version 9
//! on (`reliability: reliable`); `rosbags` does the same. [`to_yaml`] writes
//! the numeric form (our bags are version 8), [`parse`] reads both. A
//! profile looks like
//!
//! ```yaml
//! - history: 1
//!   depth: 1
//!   reliability: 1
//!   durability: 1
//!   deadline: {sec: 9223372036, nsec: 854775807}
//!   lifespan: {sec: 9223372036, nsec: 854775807}
//!   liveliness: 1
//!   liveliness_lease_duration: {sec: 9223372036, nsec: 854775807}
//!   avoid_ros_namespace_conventions: false
//! ```
//!
//! [`playback_profile`] turns the recorded profiles into the one profile a
//! replaying publisher offers (see its docs). ROS-free: `ros::replay` maps
//! the result onto r2r.

use super::BagError;
use serde_yaml::Value;

/// Longest `offered_qos_profiles` string we parse: a profile is ~300 bytes,
/// so this is far above any real recording, and it bounds the YAML parser's
/// work on a hostile bag.
pub const MAX_QOS_YAML_BYTES: usize = 64 * 1024;
/// Most profiles (recorded publishers) per topic we accept.
pub const MAX_PROFILES: usize = 256;
/// Depth used when the recording does not know it (rosbag2 records
/// `history: unknown, depth: 0` for publishers seen through the graph):
/// rclcpp's default profile depth, which `ros2 bag play` offers as well.
pub const DEFAULT_DEPTH: u32 = 10;
/// Upper bound on the history kept for late joiners of a transient-local topic.
pub const MAX_LATCHED_DEPTH: u32 = 1000;

macro_rules! policy {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $num:literal : $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The `rmw_qos_*_policy_t` value (bag versions <= 8).
            pub fn number(self) -> u8 {
                match self { $(Self::$variant => $num),+ }
            }
            /// rmw's name for it (bag versions >= 9).
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            fn from_yaml(v: &Value, key: &'static str) -> Result<Self, BagError> {
                let found = match v {
                    Value::Number(n) => match n.as_u64() { $(Some($num) => Some(Self::$variant),)+ _ => None },
                    Value::String(s) => match s.as_str() { $($text => Some(Self::$variant),)+ _ => None },
                    _ => None,
                };
                found.ok_or_else(|| bad(format!("{key}: unknown value {}", short(v))))
            }
        }
    };
}

policy!(
    /// `rmw_qos_history_policy_t`.
    History { SystemDefault = 0: "system_default", KeepLast = 1: "keep_last", KeepAll = 2: "keep_all", Unknown = 3: "unknown" }
);
policy!(
    /// `rmw_qos_reliability_policy_t`.
    Reliability {
        SystemDefault = 0: "system_default", Reliable = 1: "reliable", BestEffort = 2: "best_effort",
        Unknown = 3: "unknown", BestAvailable = 4: "best_available",
    }
);
policy!(
    /// `rmw_qos_durability_policy_t`.
    Durability {
        SystemDefault = 0: "system_default", TransientLocal = 1: "transient_local", Volatile = 2: "volatile",
        Unknown = 3: "unknown", BestAvailable = 4: "best_available",
    }
);
policy!(
    /// `rmw_qos_liveliness_policy_t` (2, manual by node, is deprecated but still parsed).
    Liveliness {
        SystemDefault = 0: "system_default", Automatic = 1: "automatic", ManualByNode = 2: "manual_by_node",
        ManualByTopic = 3: "manual_by_topic", Unknown = 4: "unknown", BestAvailable = 5: "best_available",
    }
);

/// An `rmw_time_t`: seconds and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QosTime {
    pub sec: u64,
    pub nsec: u64,
}

impl QosTime {
    /// `RMW_DURATION_INFINITE` as rosbag2 writes it (i64::MAX ns).
    pub const INFINITE: Self = Self { sec: 9_223_372_036, nsec: 854_775_807 };
}

/// One recorded publisher's QoS profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferedQos {
    pub history: History,
    pub depth: u32,
    pub reliability: Reliability,
    pub durability: Durability,
    pub deadline: QosTime,
    pub lifespan: QosTime,
    pub liveliness: Liveliness,
    pub liveliness_lease_duration: QosTime,
    pub avoid_ros_namespace_conventions: bool,
}

impl OfferedQos {
    /// Keep-last `depth`, reliable, volatile: rclcpp's `QoS(depth)`, what most drivers offer.
    pub fn reliable(depth: u32) -> Self {
        Self {
            history: History::KeepLast,
            depth,
            reliability: Reliability::Reliable,
            durability: Durability::Volatile,
            deadline: QosTime::INFINITE,
            lifespan: QosTime::INFINITE,
            liveliness: Liveliness::Automatic,
            liveliness_lease_duration: QosTime::INFINITE,
            avoid_ros_namespace_conventions: false,
        }
    }

    /// rclcpp's `SensorDataQoS`: keep-last 5, best effort, volatile.
    pub fn sensor_data() -> Self {
        Self { reliability: Reliability::BestEffort, ..Self::reliable(5) }
    }

    /// tf2's `StaticBroadcasterQoS` (`/tf_static`): keep-last 1, reliable, transient-local.
    pub fn static_broadcaster() -> Self {
        Self { durability: Durability::TransientLocal, ..Self::reliable(1) }
    }
}

fn bad(why: String) -> BagError {
    BagError::BadQos(why)
}

/// A value for an error message: never more than 40 characters of the input.
fn short(v: &Value) -> String {
    let s = serde_yaml::to_string(v).unwrap_or_default();
    let s = s.trim();
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// The numeric (bag version 8) YAML of `profiles`; the empty string for
/// none, which rosbag2 reads as "not recorded".
pub fn to_yaml(profiles: &[OfferedQos]) -> String {
    let time = |t: QosTime| format!("\n    sec: {}\n    nsec: {}", t.sec, t.nsec);
    profiles
        .iter()
        .map(|p| {
            format!(
                "- history: {}\n  depth: {}\n  reliability: {}\n  durability: {}\n  deadline:{}\n  lifespan:{}\n  liveliness: {}\n  liveliness_lease_duration:{}\n  avoid_ros_namespace_conventions: {}",
                p.history.number(),
                p.depth,
                p.reliability.number(),
                p.durability.number(),
                time(p.deadline),
                time(p.lifespan),
                p.liveliness.number(),
                time(p.liveliness_lease_duration),
                p.avoid_ros_namespace_conventions
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses an `offered_qos_profiles` string in either spelling. Empty (or
/// blank) means "not recorded" and gives no profiles.
pub fn parse(yaml: &str) -> Result<Vec<OfferedQos>, BagError> {
    if yaml.len() > MAX_QOS_YAML_BYTES {
        return Err(bad(format!("{} bytes, more than the {MAX_QOS_YAML_BYTES} accepted", yaml.len())));
    }
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_yaml::from_str(yaml).map_err(|e| bad(format!("not YAML: {e}")))?;
    let items = match doc {
        Value::Sequence(items) => items,
        Value::Null => return Ok(Vec::new()),
        other => return Err(bad(format!("expected a list of profiles, found {}", short(&other)))),
    };
    if items.len() > MAX_PROFILES {
        return Err(bad(format!("{} profiles, more than the {MAX_PROFILES} accepted", items.len())));
    }
    items.iter().map(profile).collect()
}

fn profile(v: &Value) -> Result<OfferedQos, BagError> {
    if !v.is_mapping() {
        return Err(bad(format!("a profile must be a mapping, found {}", short(v))));
    }
    let required = |key: &'static str| v.get(key).ok_or_else(|| bad(format!("profile without `{key}`")));
    let time = |key: &'static str| -> Result<QosTime, BagError> {
        let Some(t) = v.get(key) else { return Ok(QosTime::INFINITE) };
        let part = |k: &str| t.get(k).and_then(Value::as_u64).ok_or_else(|| bad(format!("{key}.{k}: not an integer")));
        Ok(QosTime { sec: part("sec")?, nsec: part("nsec")? })
    };
    let depth = required("depth")?;
    let depth = depth
        .as_u64()
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(|| bad(format!("depth: not a 32-bit count: {}", short(depth))))?;
    Ok(OfferedQos {
        history: History::from_yaml(required("history")?, "history")?,
        depth,
        reliability: Reliability::from_yaml(required("reliability")?, "reliability")?,
        durability: Durability::from_yaml(required("durability")?, "durability")?,
        deadline: time("deadline")?,
        lifespan: time("lifespan")?,
        liveliness: match v.get("liveliness") {
            Some(l) => Liveliness::from_yaml(l, "liveliness")?,
            None => Liveliness::SystemDefault,
        },
        liveliness_lease_duration: time("liveliness_lease_duration")?,
        avoid_ros_namespace_conventions: v.get("avoid_ros_namespace_conventions").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// What a replaying publisher offers for a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaybackQos {
    pub reliable: bool,
    pub transient_local: bool,
    /// `None` = keep all.
    pub depth: Option<u32>,
}

impl Default for PlaybackQos {
    /// rosbag2's offer for a topic recorded without QoS: reliable, volatile, keep-last 10.
    fn default() -> Self {
        Self { reliable: true, transient_local: false, depth: Some(DEFAULT_DEPTH) }
    }
}

/// The profile to replay a topic with, from its recorded profiles and its
/// message count in the bag.
///
/// * No profiles: [`PlaybackQos::default`], as `ros2 bag play`.
/// * Reliability: best effort when every recorded publisher offered best
///   effort, else reliable (a reliable offer matches best-effort and
///   reliable subscribers alike).
/// * Durability: transient-local when every recorded publisher offered it,
///   else volatile
///   (latching messages of publishers that did not latch would hand late
///   joiners data the original graph never gave them).
/// * History: keep-all if any publisher kept all, else keep-last with the
///   largest recorded depth ([`DEFAULT_DEPTH`] when unknown or 0).
///   Unlike rosbag2, which always offers depth 10, we keep the recorded
///   depth, and for a transient-local topic at least the number of its
///   messages in the bag (up to [`MAX_LATCHED_DEPTH`]): each recorded
///   publisher (e.g. several static tf broadcasters) latched its own last
///   message, and one replaying publisher must latch them all.
/// * Deadline, lifespan and liveliness are not reproduced: they are wall
///   time durations that stop meaning the same thing at another `--rate`.
pub fn playback_profile(profiles: &[OfferedQos], message_count: u64) -> PlaybackQos {
    if profiles.is_empty() {
        return PlaybackQos::default();
    }
    let transient_local = profiles.iter().all(|p| p.durability == Durability::TransientLocal);
    let depth = if profiles.iter().any(|p| p.history == History::KeepAll) {
        None
    } else {
        let recorded = profiles
            .iter()
            .filter(|p| p.history == History::KeepLast)
            .map(|p| p.depth)
            .max()
            .filter(|&d| d > 0)
            .unwrap_or(DEFAULT_DEPTH);
        let latched = if transient_local {
            u32::try_from(message_count).unwrap_or(u32::MAX).min(MAX_LATCHED_DEPTH)
        } else {
            0
        };
        Some(recorded.max(latched))
    };
    // all best effort: keep it, so a replay loads the network as the recording did
    let reliable = !profiles.iter().all(|p| p.reliability == Reliability::BestEffort);
    PlaybackQos { reliable, transient_local, depth }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_yaml_round_trips() {
        let profiles = [OfferedQos::static_broadcaster(), OfferedQos::sensor_data(), OfferedQos::reliable(7)];
        let yaml = to_yaml(&profiles);
        assert!(yaml.starts_with("- history: 1\n  depth: 1\n  reliability: 1\n  durability: 1\n"), "{yaml}");
        assert_eq!(parse(&yaml).unwrap(), profiles);
        assert_eq!(to_yaml(&[]), "");
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("  \n").unwrap(), []);
    }

    /// The version-9 spelling, as rosbag2 (Jazzy) and rosbags write it, and
    /// a recorder's typical "history unknown, depth 0".
    #[test]
    fn named_policies_parse() {
        let yaml = "- history: unknown\n  depth: 0\n  reliability: best_effort\n  durability: transient_local\n  \
                    deadline:\n    sec: 2147483647\n    nsec: 4294967295\n  lifespan:\n    sec: 9223372036\n    \
                    nsec: 854775807\n  liveliness: automatic\n  liveliness_lease_duration:\n    sec: 0\n    nsec: 5\n  \
                    avoid_ros_namespace_conventions: true";
        let p = parse(yaml).unwrap();
        assert_eq!(p.len(), 1);
        let p = p[0];
        assert_eq!((p.history, p.depth), (History::Unknown, 0));
        assert_eq!((p.reliability, p.durability), (Reliability::BestEffort, Durability::TransientLocal));
        assert_eq!(p.deadline, QosTime { sec: 2_147_483_647, nsec: 4_294_967_295 });
        assert_eq!(p.liveliness_lease_duration, QosTime { sec: 0, nsec: 5 });
        assert!(p.avoid_ros_namespace_conventions);
    }

    #[test]
    fn malformed_yaml_is_an_error_not_a_panic() {
        for bad_yaml in [
            "{",
            "history: 1",
            "- 3",
            "- history: 1\n  reliability: 1\n  durability: 1",          // no depth
            "- history: 9\n  depth: 1\n  reliability: 1\n  durability: 1", // unknown number
            "- history: keep_last\n  depth: -1\n  reliability: reliable\n  durability: volatile",
            "- history: keep_last\n  depth: 99999999999\n  reliability: reliable\n  durability: volatile",
            "- history: keep_last\n  depth: 1\n  reliability: sometimes\n  durability: volatile",
            "- history: keep_last\n  depth: 1\n  reliability: 1\n  durability: 1\n  deadline: {sec: x, nsec: 0}",
        ] {
            let e = parse(bad_yaml).expect_err(bad_yaml);
            assert!(matches!(e, BagError::BadQos(_)), "{e}");
        }
        let huge = "- ".repeat(MAX_QOS_YAML_BYTES);
        assert!(parse(&huge).unwrap_err().to_string().contains("bytes"));
        let many = to_yaml(&vec![OfferedQos::reliable(1); MAX_PROFILES + 1]);
        assert!(parse(&many).unwrap_err().to_string().contains("profiles"));
        // the error quotes at most 40 characters of the input
        let long = format!("- history: {}\n  depth: 1\n  reliability: 1\n  durability: 1", "x".repeat(500));
        assert!(parse(&long).unwrap_err().to_string().len() < 120);
    }

    #[test]
    fn playback_follows_the_recorded_offers() {
        assert_eq!(playback_profile(&[], 5), PlaybackQos::default());
        let tf = playback_profile(&[OfferedQos::static_broadcaster()], 1);
        assert_eq!(tf, PlaybackQos { reliable: true, transient_local: true, depth: Some(1) });
        // two static broadcasters recorded: both of their messages stay latched
        let two = [OfferedQos::static_broadcaster(); 2];
        assert_eq!(playback_profile(&two, 2).depth, Some(2));
        assert_eq!(playback_profile(&two, 1 << 40).depth, Some(MAX_LATCHED_DEPTH));
        let sensor = playback_profile(&[OfferedQos::sensor_data()], 100);
        assert_eq!(sensor, PlaybackQos { reliable: false, transient_local: false, depth: Some(5) });
        // mixed offers: reliable (matches everyone), volatile unless all latched
        let mixed = playback_profile(&[OfferedQos::sensor_data(), OfferedQos::static_broadcaster()], 3);
        assert_eq!(mixed, PlaybackQos { reliable: true, transient_local: false, depth: Some(5) });
        let unknown = OfferedQos { history: History::Unknown, depth: 0, ..OfferedQos::reliable(0) };
        assert_eq!(playback_profile(&[unknown], 3).depth, Some(DEFAULT_DEPTH));
        let all = OfferedQos { history: History::KeepAll, ..OfferedQos::reliable(0) };
        assert_eq!(playback_profile(&[all, OfferedQos::reliable(3)], 3).depth, None);
    }
}
