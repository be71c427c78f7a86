//! The `ros2msg` schema text rosbag2 stores for each message type, built
//! from the installed `.msg` files rather than from a ROS library.
//!
//! Readers without the type installed (Foxglove, `rosbags`,
//! `mcap-ros2-support`) build their decoders from this text, so it must
//! describe every nested type. We follow what rosbag2's
//! `LocalMessageDefinitionSource` writes, as read from its source (no bag
//! written by rosbag2 itself is available to test against: docs/bags.md):
//!
//! * the root type's `.msg` file verbatim (comments, blank lines and all);
//! * then, depth first, for each dependency not yet emitted: `"\n"`, a line
//!   of 80 `=`, a line `MSG: pkg/Type`, and that type's `.msg` verbatim;
//! * a message's dependencies are visited in *sorted* name order (rosbag2
//!   collects them in a `std::set`), not in order of first use. Readers do
//!   not care about the order; following it aims at the text `ros2 bag
//!   record` would write on the same installation.
//!
//! `.msg` files are found as `<prefix>/share/<pkg>/msg/<Type>.msg` for each
//! prefix of `AMENT_PREFIX_PATH`, first match wins, like ament's index.

use super::BagError;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

const SEPARATOR: &str = "================================================================================";

/// Built-in types that need no definition of their own.
const PRIMITIVES: &[&str] = &[
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
    "uint64", "string", "wstring",
];

/// Builds the rosbag2 schema text of the type named like
/// `sensor_msgs/msg/PointCloud2`, resolving `.msg` files through `AMENT_PREFIX_PATH`.
pub fn schema_text(type_name: &str) -> Result<String, BagError> {
    SchemaResolver::from_env().schema_text(type_name)
}

/// Splits `pkg/msg/Type` or `pkg/Type` into `(pkg, Type)`.
pub fn split_type_name(type_name: &str) -> Result<(&str, &str), BagError> {
    let parts: Vec<&str> = type_name.split('/').collect();
    let (pkg, ty) = match parts[..] {
        [pkg, ty] | [pkg, "msg", ty] => (pkg, ty),
        _ => return Err(BagError::InvalidTypeName(type_name.to_owned())),
    };
    let valid = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if valid(pkg) && valid(ty) {
        Ok((pkg, ty))
    } else {
        Err(BagError::InvalidTypeName(type_name.to_owned()))
    }
}

/// The form rosbag2 records in topic metadata and MCAP schema names: `pkg/msg/Type`.
pub fn normalize_type_name(type_name: &str) -> Result<String, BagError> {
    let (pkg, ty) = split_type_name(type_name)?;
    Ok(format!("{pkg}/msg/{ty}"))
}

/// Finds `.msg` files under a list of install prefixes.
#[derive(Debug, Clone)]
pub struct SchemaResolver {
    prefixes: Vec<PathBuf>,
}

impl SchemaResolver {
    pub fn new<P: Into<PathBuf>>(prefixes: impl IntoIterator<Item = P>) -> Self {
        Self { prefixes: prefixes.into_iter().map(Into::into).collect() }
    }

    /// Uses the prefixes of `AMENT_PREFIX_PATH` (none if unset, so every
    /// lookup then fails with a message naming the variable).
    pub fn from_env() -> Self {
        let var = std::env::var_os("AMENT_PREFIX_PATH").unwrap_or_default();
        Self::new(std::env::split_paths(&var).filter(|p| !p.as_os_str().is_empty()))
    }

    pub fn prefixes(&self) -> &[PathBuf] {
        &self.prefixes
    }

    /// The verbatim `.msg` text of `pkg/Type`.
    pub fn msg_text(&self, pkg: &str, ty: &str) -> Result<String, BagError> {
        let rel = Path::new("share").join(pkg).join("msg").join(format!("{ty}.msg"));
        for prefix in &self.prefixes {
            let path = prefix.join(&rel);
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(BagError::Io { path, source }),
            }
        }
        Err(BagError::SchemaNotFound { type_name: format!("{pkg}/msg/{ty}"), prefixes: self.prefixes.clone() })
    }

    /// Builds the full `ros2msg` schema text for `type_name` (see the module docs).
    pub fn schema_text(&self, type_name: &str) -> Result<String, BagError> {
        let (pkg, ty) = split_type_name(type_name)?;
        let mut seen = HashSet::from([format!("{pkg}/{ty}")]);
        let mut out = String::new();
        self.append(pkg, ty, &mut seen, &mut out)?;
        Ok(out)
    }

    fn append(&self, pkg: &str, ty: &str, seen: &mut HashSet<String>, out: &mut String) -> Result<(), BagError> {
        let text = self.msg_text(pkg, ty)?;
        out.push_str(&text);
        for dep in dependencies(&text, pkg) {
            if seen.insert(dep.clone()) {
                out.push('\n');
                out.push_str(SEPARATOR);
                out.push_str("\nMSG: ");
                out.push_str(&dep);
                out.push('\n');
                let (dep_pkg, dep_ty) = split_type_name(&dep)?;
                self.append(dep_pkg, dep_ty, seen, out)?;
            }
        }
        Ok(())
    }
}

/// Non-primitive field types of a `.msg`, as sorted `pkg/Type` names.
fn dependencies(msg_text: &str, pkg: &str) -> BTreeSet<String> {
    msg_text
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default();
            let mut tokens = line.split_whitespace();
            // A field or constant has a type and a name; anything else is not a declaration.
            let (ty, _name) = (tokens.next()?, tokens.next()?);
            // `T[]`, `T[N]`, `T[<=N]` and `string<=N` all name the element type before the bracket or bound.
            let base = ty.split(['[', '<']).next().unwrap_or_default();
            if PRIMITIVES.contains(&base) {
                return None;
            }
            Some(match base.split('/').collect::<Vec<_>>()[..] {
                // ROS 1 heritage: a bare `Header` means std_msgs/Header in every package.
                ["Header"] => "std_msgs/Header".to_owned(),
                [ty] => format!("{pkg}/{ty}"),
                [dep_pkg, ty] | [dep_pkg, "msg", ty] => format!("{dep_pkg}/{ty}"),
                _ => base.to_owned(), // let split_type_name report it
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_msg(prefix: &Path, pkg: &str, ty: &str, text: &str) {
        let dir = prefix.join("share").join(pkg).join("msg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{ty}.msg")), text).unwrap();
    }

    #[test]
    fn synthetic_packages() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        const OUTER: &str = concat!(
            "# comment mentioning demo/Ghost ghost\n",
            "Header header\n",
            "Inner[] items  # Inner\n",
            "Inner[<=3] few\n",
            "string<=8 tag\n",
            "uint8 K = 3\n",
            "other_pkg/Leaf[4] leaves\n",
        );
        write_msg(&a, "demo", "Outer", OUTER);
        write_msg(&a, "demo", "Inner", "other_pkg/msg/Leaf leaf\nfloat64 v\n");
        write_msg(&b, "other_pkg", "Leaf", "int32 x");
        write_msg(&b, "std_msgs", "Header", "builtin_interfaces/Time stamp\nstring frame_id\n");
        write_msg(&b, "builtin_interfaces", "Time", "int32 sec\nuint32 nanosec\n");
        let r = SchemaResolver::new([&a, &b]);
        let sep = format!("\n{SEPARATOR}\nMSG: ");
        let expected = [
            OUTER,
            "demo/Inner\nother_pkg/msg/Leaf leaf\nfloat64 v\n",
            "other_pkg/Leaf\nint32 x",
            "std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n",
            "builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n",
        ]
        .join(&sep);
        assert_eq!(r.schema_text("demo/msg/Outer").unwrap(), expected);
        assert_eq!(r.schema_text("demo/Outer").unwrap(), expected);
        assert!(matches!(r.schema_text("demo/msg/Missing"), Err(BagError::SchemaNotFound { .. })));
        assert!(matches!(r.schema_text("demo/srv/Outer"), Err(BagError::InvalidTypeName(_))));
        assert!(matches!(r.schema_text("Outer"), Err(BagError::InvalidTypeName(_))));
    }

    /// Against the real Jazzy definitions; needs `source scripts/env.sh`.
    #[test]
    fn pointcloud2_from_ament_prefix_path() {
        let r = SchemaResolver::from_env();
        if r.prefixes().is_empty() {
            assert!(
                crate::cloud::test_data::skips_allowed(),
                "AMENT_PREFIX_PATH unset: source scripts/env.sh, or set ELOSS_ALLOW_SKIPS=1 to skip"
            );
            crate::cloud::test_data::skip_note("AMENT_PREFIX_PATH unset (source scripts/env.sh)");
            return;
        }
        let text = r.schema_text("sensor_msgs/msg/PointCloud2").unwrap();
        for section in ["MSG: std_msgs/Header\n", "MSG: builtin_interfaces/Time\n", "MSG: sensor_msgs/PointField\n"] {
            assert_eq!(text.matches(section).count(), 1, "{section:?} in\n{text}");
            assert!(text.contains(&format!("\n{SEPARATOR}\n{section}")));
        }
        assert_eq!(text.matches(SEPARATOR).count(), 3);
        // rosbag2 order: root, then its dependencies sorted, each followed by its own
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("MSG: sensor_msgs/PointField") < pos("MSG: std_msgs/Header"));
        assert!(pos("MSG: std_msgs/Header") < pos("MSG: builtin_interfaces/Time"));
        assert!(text.starts_with(&r.msg_text("sensor_msgs", "PointCloud2").unwrap()));

        let info = r.schema_text("sensor_msgs/CameraInfo").unwrap();
        assert!(info.contains("MSG: sensor_msgs/RegionOfInterest\n"));
        assert_eq!(info.matches(SEPARATOR).count(), 3);
    }
}
