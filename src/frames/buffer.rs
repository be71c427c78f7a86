//! A tf2-style transform buffer: a tree of frames whose edges are rigid
//! transforms `parent_from_child`, filled from `/tf` (dynamic) and
//! `/tf_static` (static) and queried with [`TransformBuffer::lookup`].
//!
//! Semantics, as tf2's `BufferCore`:
//! - every frame has at most one parent; a frame without one is a root;
//! - a static edge is valid at every time; a dynamic edge keeps a
//!   time-ordered history of samples and is interpolated between the two
//!   samples around the requested time (translation linearly, rotation by
//!   slerp); a request before the oldest or after the newest sample is an
//!   extrapolation error that names the edge and the times;
//! - `lookup(target, source, t)` walks both frames up to their common
//!   ancestor, so only the edges below it must cover `t`; `t = 0` means "the
//!   latest time every dynamic edge on that path has" (tf2's latest common
//!   time);
//! - a sample for a child with a different parent than before reparents it
//!   (its history is dropped: samples under the old parent cannot be
//!   interpolated with the new ones), and so does a static sample for a
//!   dynamic frame or the reverse;
//! - frame ids lose one leading `/` (tf2 strips it too).
//!
//! Input comes from any process on the ROS graph, so everything is bounded
//! ([`BufferLimits`]): the history of an edge spans at most `cache_ns`
//! (10 s, tf2's default) behind its newest sample and at most
//! `max_samples_per_edge` samples; at most `max_frames` child frames; ids at
//! most `max_id_len` bytes. Non-finite values, quaternions whose norm is
//! further than 1 % from 1 (tf2's tolerance), empty ids, ids with control
//! characters, self-parenting and loops are refused with a [`FrameError`].

use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion, Vector3};
use std::collections::{HashMap, VecDeque};

/// Quaternions with `| |q| - 1 | > this` are refused, closer ones are normalised.
pub const QUATERNION_NORM_TOLERANCE: f64 = 0.01;

/// Bounds on what the buffer keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BufferLimits {
    /// Dynamic samples older than the edge's newest sample minus this are
    /// dropped (and refused on arrival).
    pub cache_ns: i64,
    /// At most this many samples per dynamic edge (the oldest go first).
    pub max_samples_per_edge: usize,
    /// At most this many child frames (edges); new frames beyond are refused.
    pub max_frames: usize,
    /// Longest frame id in bytes, after stripping a leading `/`.
    pub max_id_len: usize,
}

impl Default for BufferLimits {
    /// 10 s of history (tf2), 2000 samples per edge (10 s at 200 Hz), 1000
    /// frames, 256-byte ids.
    fn default() -> Self {
        Self { cache_ns: 10_000_000_000, max_samples_per_edge: 2000, max_frames: 1000, max_id_len: 256 }
    }
}

fn secs(ns: &i64) -> String {
    format!("{:.9}", *ns as f64 * 1e-9)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame id")]
    EmptyId,
    #[error("frame id of {len} bytes is longer than {max}")]
    IdTooLong { len: usize, max: usize },
    #[error("frame id {0:?} contains control characters")]
    BadId(String),
    #[error("frame {0:?} cannot be its own parent")]
    SelfParent(String),
    #[error("transform {parent} -> {child} is not finite")]
    NonFinite { parent: String, child: String },
    #[error("transform {parent} -> {child}: quaternion norm {norm} is more than 1 % from 1")]
    NotUnitQuaternion { parent: String, child: String, norm: f64 },
    #[error("transform {parent} -> {child}: negative stamp {stamp_ns} ns")]
    NegativeStamp { parent: String, child: String, stamp_ns: i64 },
    #[error("transform {parent} -> {child} at {} s is older than the cache allows (newest {} s)", secs(.stamp_ns), secs(.newest_ns))]
    TooOld { parent: String, child: String, stamp_ns: i64, newest_ns: i64 },
    #[error("transform {parent} -> {child} would close a loop")]
    Loop { parent: String, child: String },
    #[error("the buffer already holds {max} frames; {child:?} is refused")]
    TooManyFrames { child: String, max: usize },
    #[error("frame {0:?} does not exist")]
    UnknownFrame(String),
    #[error("frames {target:?} and {from:?} are not connected (no common ancestor)")]
    Disconnected { target: String, from: String },
    #[error(
        "lookup would require extrapolation into the past: {parent} -> {child} requested at {} s, oldest sample {} s",
        secs(.requested_ns),
        secs(.oldest_ns)
    )]
    ExtrapolationPast { parent: String, child: String, requested_ns: i64, oldest_ns: i64 },
    #[error(
        "lookup would require extrapolation into the future: {parent} -> {child} requested at {} s, newest sample {} s",
        secs(.requested_ns),
        secs(.newest_ns)
    )]
    ExtrapolationFuture { parent: String, child: String, requested_ns: i64, newest_ns: i64 },
}

/// A rigid transform from a ROS `Transform` (translation, quaternion x y z
/// w), checked: finite, quaternion within 1 % of unit norm (then normalised).
pub fn isometry_from_parts(translation: [f64; 3], rotation_xyzw: [f64; 4]) -> Result<Isometry3<f64>, FrameError> {
    let [x, y, z, w] = rotation_xyzw;
    let unchecked = Isometry3::from_parts(
        Translation3::from(Vector3::from(translation)),
        UnitQuaternion::new_unchecked(Quaternion::new(w, x, y, z)),
    );
    checked(unchecked, "", "")
}

/// `iso` with its quaternion normalised, or why it is refused.
fn checked(iso: Isometry3<f64>, parent: &str, child: &str) -> Result<Isometry3<f64>, FrameError> {
    let q = iso.rotation.quaternion();
    if !(iso.translation.vector.iter().all(|v| v.is_finite()) && q.coords.iter().all(|v| v.is_finite())) {
        return Err(FrameError::NonFinite { parent: parent.into(), child: child.into() });
    }
    let norm = q.norm();
    if (norm - 1.0).abs() > QUATERNION_NORM_TOLERANCE {
        return Err(FrameError::NotUnitQuaternion { parent: parent.into(), child: child.into(), norm });
    }
    Ok(Isometry3::from_parts(iso.translation, UnitQuaternion::from_quaternion(*q)))
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    stamp_ns: i64,
    iso: Isometry3<f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum History {
    Static(Isometry3<f64>),
    /// Ascending stamps, never empty.
    Dynamic(VecDeque<Sample>),
}

#[derive(Debug, Clone, PartialEq)]
struct Edge {
    parent: String,
    history: History,
}

/// Interpolation between two samples: lerp of the translation, slerp of the
/// rotation (normalised lerp where the two are too close for slerp's sine).
fn interpolate(a: &Isometry3<f64>, b: &Isometry3<f64>, alpha: f64) -> Isometry3<f64> {
    let t = a.translation.vector + (b.translation.vector - a.translation.vector) * alpha;
    let r = a.rotation.try_slerp(&b.rotation, alpha, 1e-9).unwrap_or_else(|| a.rotation.nlerp(&b.rotation, alpha));
    Isometry3::from_parts(Translation3::from(t), r)
}

impl Edge {
    /// `parent_from_child` at `t` (ignored for static edges).
    fn at(&self, child: &str, t: i64) -> Result<Isometry3<f64>, FrameError> {
        let samples = match &self.history {
            History::Static(iso) => return Ok(*iso),
            History::Dynamic(s) => s,
        };
        let (oldest, newest) = (samples[0].stamp_ns, samples[samples.len() - 1].stamp_ns);
        if t < oldest {
            return Err(FrameError::ExtrapolationPast { parent: self.parent.clone(), child: child.into(), requested_ns: t, oldest_ns: oldest });
        }
        if t > newest {
            return Err(FrameError::ExtrapolationFuture { parent: self.parent.clone(), child: child.into(), requested_ns: t, newest_ns: newest });
        }
        let i = samples.partition_point(|s| s.stamp_ns < t);
        let after = &samples[i]; // exists: t <= newest
        if after.stamp_ns == t {
            return Ok(after.iso);
        }
        let before = &samples[i - 1]; // exists: t > oldest
        let alpha = (t - before.stamp_ns) as f64 / (after.stamp_ns - before.stamp_ns) as f64;
        Ok(interpolate(&before.iso, &after.iso, alpha))
    }

    fn newest(&self) -> Option<i64> {
        match &self.history {
            History::Static(_) => None,
            History::Dynamic(s) => s.back().map(|s| s.stamp_ns),
        }
    }
}

/// The frame tree; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct TransformBuffer {
    limits: BufferLimits,
    /// child id → its edge to the parent.
    edges: HashMap<String, Edge>,
}

impl TransformBuffer {
    pub fn new(limits: BufferLimits) -> Self {
        Self { limits, edges: HashMap::new() }
    }

    pub fn limits(&self) -> &BufferLimits {
        &self.limits
    }

    /// Number of child frames (edges).
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// Number of distinct frames: children and roots.
    pub fn frame_count(&self) -> usize {
        let roots: std::collections::HashSet<&str> = self.edges.values().map(|e| e.parent.as_str()).filter(|p| !self.edges.contains_key(*p)).collect();
        self.edges.len() + roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Forgets everything (e.g. when sim time jumps backwards, as tf2 does).
    pub fn clear(&mut self) {
        self.edges.clear();
    }

    /// The id without a leading `/`, checked against the limits.
    pub fn normalize_id<'a>(&self, id: &'a str) -> Result<&'a str, FrameError> {
        let id = id.strip_prefix('/').unwrap_or(id);
        if id.is_empty() {
            return Err(FrameError::EmptyId);
        }
        if id.len() > self.limits.max_id_len {
            return Err(FrameError::IdTooLong { len: id.len(), max: self.limits.max_id_len });
        }
        if id.chars().any(char::is_control) {
            return Err(FrameError::BadId(id.into()));
        }
        Ok(id)
    }

    /// True when `id` is a child or a parent of some edge.
    pub fn has_frame(&self, id: &str) -> bool {
        let id = id.strip_prefix('/').unwrap_or(id);
        self.edges.contains_key(id) || self.edges.values().any(|e| e.parent == id)
    }

    /// The parent of `child`, if it has one.
    pub fn parent_of(&self, child: &str) -> Option<&str> {
        self.edges.get(child.strip_prefix('/').unwrap_or(child)).map(|e| e.parent.as_str())
    }

    /// Records `parent_from_child` = `iso` (maps points in `child` to
    /// `parent`) at `stamp_ns`; a static transform holds at every time and
    /// its stamp is ignored. See the module docs for what is refused.
    pub fn set_transform(&mut self, parent: &str, child: &str, stamp_ns: i64, iso: Isometry3<f64>, is_static: bool) -> Result<(), FrameError> {
        let parent = self.normalize_id(parent)?.to_string();
        let child = self.normalize_id(child)?.to_string();
        if parent == child {
            return Err(FrameError::SelfParent(child));
        }
        let iso = checked(iso, &parent, &child)?;
        if !is_static && stamp_ns < 0 {
            return Err(FrameError::NegativeStamp { parent, child, stamp_ns });
        }
        // the new edge must not make `child` an ancestor of itself
        let mut up = parent.as_str();
        for _ in 0..=self.edges.len() {
            if up == child {
                return Err(FrameError::Loop { parent, child });
            }
            match self.edges.get(up) {
                Some(e) => up = &e.parent,
                None => break,
            }
        }
        if !self.edges.contains_key(&child) && self.edges.len() >= self.limits.max_frames {
            return Err(FrameError::TooManyFrames { child, max: self.limits.max_frames });
        }
        let limits = self.limits;
        let sample = Sample { stamp_ns, iso };
        let edge = self.edges.entry(child.clone()).or_insert_with(|| Edge {
            parent: parent.clone(),
            history: if is_static { History::Static(iso) } else { History::Dynamic(VecDeque::from([sample])) },
        });
        let same_kind = matches!((&edge.history, is_static), (History::Static(_), true) | (History::Dynamic(_), false));
        if edge.parent != parent || !same_kind {
            tracing::debug!(%child, old_parent = %edge.parent, new_parent = %parent, is_static, "frame reparented or changed kind; history dropped");
            edge.parent = parent;
            edge.history = if is_static { History::Static(iso) } else { History::Dynamic(VecDeque::from([sample])) };
            return Ok(());
        }
        match &mut edge.history {
            History::Static(old) => *old = iso,
            History::Dynamic(samples) => {
                let newest = samples.back().map_or(stamp_ns, |s| s.stamp_ns);
                if stamp_ns < newest.saturating_sub(limits.cache_ns) {
                    return Err(FrameError::TooOld { parent: edge.parent.clone(), child, stamp_ns, newest_ns: newest });
                }
                let i = samples.partition_point(|s| s.stamp_ns < stamp_ns);
                match samples.get_mut(i) {
                    Some(s) if s.stamp_ns == stamp_ns => s.iso = iso,
                    _ => samples.insert(i, sample),
                }
                let newest = samples.back().map_or(stamp_ns, |s| s.stamp_ns);
                let horizon = newest.saturating_sub(limits.cache_ns);
                while samples.len() > 1 && (samples.len() > limits.max_samples_per_edge || samples[0].stamp_ns < horizon) {
                    samples.pop_front();
                }
            }
        }
        Ok(())
    }

    /// `frame` and its ancestors, each with its edge to the parent (the
    /// root has none).
    fn chain<'a>(&'a self, frame: &'a str) -> Vec<(&'a str, Option<&'a Edge>)> {
        let mut out = Vec::new();
        let mut f = frame;
        // set_transform refuses loops; the bound is a second guard
        for _ in 0..=self.edges.len() {
            let e = self.edges.get(f);
            out.push((f, e));
            match e {
                Some(e) => f = &e.parent,
                None => break,
            }
        }
        out
    }

    /// The edges from `target` and from `source` up to their common ancestor.
    #[allow(clippy::type_complexity)]
    fn paths<'a>(&'a self, target: &'a str, source: &'a str) -> Result<(Vec<(&'a str, &'a Edge)>, Vec<(&'a str, &'a Edge)>), FrameError> {
        for f in [target, source] {
            if !self.has_frame(f) {
                return Err(FrameError::UnknownFrame(f.into()));
            }
        }
        let (up_t, up_s) = (self.chain(target), self.chain(source));
        let Some(common) = up_s.iter().map(|(f, _)| *f).find(|f| up_t.iter().any(|(g, _)| g == f)) else {
            return Err(FrameError::Disconnected { target: target.into(), from: source.into() });
        };
        let below = |chain: Vec<(&'a str, Option<&'a Edge>)>| -> Vec<(&'a str, &'a Edge)> {
            chain.into_iter().take_while(|(f, _)| *f != common).filter_map(|(f, e)| e.map(|e| (f, e))).collect()
        };
        Ok((below(up_t), below(up_s)))
    }

    /// tf2's latest common time of the path between the two frames: the
    /// oldest of the newest samples of its dynamic edges; `None` when the
    /// path is static (or empty).
    pub fn latest_common_time(&self, target: &str, source: &str) -> Result<Option<i64>, FrameError> {
        let (target, source) = (self.normalize_id(target)?, self.normalize_id(source)?);
        let (pt, ps) = self.paths(target, source)?;
        Ok(pt.iter().chain(&ps).filter_map(|(_, e)| e.newest()).min())
    }

    /// `target_from_source` at `stamp_ns` (0 = the latest common time):
    /// maps point coordinates in `source` to `target`.
    pub fn lookup(&self, target: &str, source: &str, stamp_ns: i64) -> Result<Isometry3<f64>, FrameError> {
        let (target, source) = (self.normalize_id(target)?, self.normalize_id(source)?);
        let (pt, ps) = self.paths(target, source)?;
        let t = if stamp_ns == 0 { pt.iter().chain(&ps).filter_map(|(_, e)| e.newest()).min().unwrap_or(0) } else { stamp_ns };
        // common_from_x for both sides: compose parent_from_child upwards
        let up = |path: &[(&str, &Edge)]| -> Result<Isometry3<f64>, FrameError> {
            path.iter().try_fold(Isometry3::identity(), |acc, (child, edge)| Ok(edge.at(child, t)? * acc))
        };
        let common_from_target = up(&pt)?;
        let common_from_source = up(&ps)?;
        Ok(common_from_target.inverse() * common_from_source)
    }
}
