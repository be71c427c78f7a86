//! The node's short memory for relabelling by detection id: the newest N
//! LiDAR frames (cloud stamp, frame id, the boxes it published; a box's id
//! is its index, as `Detection3D.id`) and the newest N decoded camera images
//! with their stamps. ROS-free, so lookups and their errors are unit-tested.
//!
//! A lookup ([`FrameHistory::select`]) picks a frame (stamp 0 = the newest,
//! else the exact cloud stamp), the requested boxes (none = all of them, in
//! id order; otherwise in request order) and the image nearest in time to
//! the cloud within a tolerance ([`nearest_stamp`]). It returns owned data
//! (boxes cloned, the image shared by `Arc`), so the caller holds the
//! history's lock only for the lookup, never while classifying.

use super::crops::nearest_stamp;
use crate::geometry::Box3D;
use crate::image::RgbImage;
use std::collections::VecDeque;
use std::sync::Arc;

/// One processed LiDAR frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRecord {
    /// Cloud header stamp [ns since the epoch].
    pub stamp_ns: i64,
    /// Cloud header frame id (the boxes' frame).
    pub frame_id: String,
    /// The published boxes; index = detection id.
    pub boxes: Vec<Box3D>,
}

/// One decoded camera image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub stamp_ns: i64,
    pub frame_id: String,
    pub image: Arc<RgbImage>,
}

/// What a lookup selected, owned (no borrow of the history).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub stamp_ns: i64,
    pub frame_id: String,
    /// (detection id, box), in request order (id order when all were asked for).
    pub boxes: Vec<(u32, Box3D)>,
    pub image: ImageRecord,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("no LiDAR frame has been processed yet (the detector publishes none, or no cloud arrived)")]
    NoFrames,
    #[error("no frame with stamp {} is held; held frames (oldest first): {}", fmt_stamp(*.stamp_ns), fmt_stamps(.held))]
    UnknownStamp { stamp_ns: i64, held: Vec<i64> },
    #[error("frame {} has {count} detections (ids 0..{count}); {unknown_count} unknown ids: {ids:?}{}", fmt_stamp(*.stamp_ns), if *.unknown_count > .ids.len() { " ..." } else { "" })]
    UnknownIds { stamp_ns: i64, ids: Vec<u32>, unknown_count: usize, count: usize },
    #[error("no camera image within {tolerance_s} s of frame {}; held image stamps: {}", fmt_stamp(*.stamp_ns), fmt_stamps(.held))]
    NoImage { stamp_ns: i64, tolerance_s: f64, held: Vec<i64> },
}

/// `sec.nanosec` with nine decimals (how ROS shows a `builtin_interfaces/Time`).
pub fn fmt_stamp(ns: i64) -> String {
    format!("{}.{:09}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

fn fmt_stamps(stamps: &[i64]) -> String {
    if stamps.is_empty() {
        "none".into()
    } else {
        stamps.iter().map(|&s| fmt_stamp(s)).collect::<Vec<_>>().join(", ")
    }
}

/// Most unknown ids an error names (the rest are counted).
pub const MAX_IDS_NAMED: usize = 16;

/// Bytes of decoded images the history keeps at most (the newest image is
/// always kept): 1000 4K images would be 24 GB, this is ~20 of them, or
/// ~360 KITTI-size (1242x375) ones.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;
/// Bytes of frames (boxes and frame ids) kept at most (the newest frame is
/// always kept).
pub const MAX_FRAME_BYTES: u64 = 64 << 20;

impl FrameRecord {
    /// Bytes held by the record.
    pub fn bytes(&self) -> u64 {
        (std::mem::size_of::<Self>() + self.frame_id.len() + self.boxes.len() * std::mem::size_of::<Box3D>()) as u64
    }
}

impl ImageRecord {
    /// Bytes held by the record (the pixels counted in full, though a request may share them).
    pub fn bytes(&self) -> u64 {
        (std::mem::size_of::<Self>() + self.frame_id.len() + self.image.data.len()) as u64
    }
}

/// The newest `capacity` frames and images within the byte budgets (see
/// the module docs).
#[derive(Debug, Clone)]
pub struct FrameHistory {
    capacity: usize,
    /// [`MAX_FRAME_BYTES`], [`MAX_IMAGE_BYTES`] (smaller in tests).
    budget: (u64, u64),
    frames: VecDeque<FrameRecord>,
    images: VecDeque<ImageRecord>,
}

impl FrameHistory {
    /// Keeps the newest `capacity` frames and as many images (at least one
    /// each), within [`MAX_FRAME_BYTES`] and [`MAX_IMAGE_BYTES`].
    pub fn new(capacity: usize) -> Self {
        Self::with_budget(capacity, MAX_FRAME_BYTES, MAX_IMAGE_BYTES)
    }

    /// [`Self::new`] with other byte budgets.
    pub fn with_budget(capacity: usize, frame_bytes: u64, image_bytes: u64) -> Self {
        Self { capacity: capacity.max(1), budget: (frame_bytes, image_bytes), frames: VecDeque::new(), images: VecDeque::new() }
    }

    /// Bytes held: (frames, images).
    pub fn bytes(&self) -> (u64, u64) {
        (self.frames.iter().map(FrameRecord::bytes).sum(), self.images.iter().map(ImageRecord::bytes).sum())
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity (run-time parameter change); drops the oldest entries that no longer fit.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        Self::trim(&mut self.frames, self.capacity, self.budget.0, FrameRecord::bytes);
        Self::trim(&mut self.images, self.capacity, self.budget.1, ImageRecord::bytes);
    }

    /// Drops the oldest entries until at most `n` remain within `max_bytes`
    /// (the newest always stays).
    fn trim<T>(q: &mut VecDeque<T>, n: usize, max_bytes: u64, bytes: fn(&T) -> u64) {
        while q.len() > n {
            q.pop_front();
        }
        let mut total: u64 = q.iter().map(bytes).sum();
        while total > max_bytes && q.len() > 1 {
            total -= q.pop_front().as_ref().map_or(0, bytes);
        }
    }

    /// Adds a frame; a frame with a stamp already held replaces that one
    /// (a resent cloud), so stamps stay unique.
    pub fn push_frame(&mut self, f: FrameRecord) {
        self.frames.retain(|g| g.stamp_ns != f.stamp_ns);
        self.frames.push_back(f);
        Self::trim(&mut self.frames, self.capacity, self.budget.0, FrameRecord::bytes);
    }

    /// Adds an image (replacing one with the same stamp).
    pub fn push_image(&mut self, i: ImageRecord) {
        self.images.retain(|g| g.stamp_ns != i.stamp_ns);
        self.images.push_back(i);
        Self::trim(&mut self.images, self.capacity, self.budget.1, ImageRecord::bytes);
    }

    /// Drops every image (GDC is unavailable: nothing will crop them).
    pub fn clear_images(&mut self) {
        self.images.clear();
    }

    /// Frame stamps held, oldest first (arrival order).
    pub fn frame_stamps(&self) -> Vec<i64> {
        self.frames.iter().map(|f| f.stamp_ns).collect()
    }

    /// Image stamps held, oldest first (arrival order).
    pub fn image_stamps(&self) -> Vec<i64> {
        self.images.iter().map(|i| i.stamp_ns).collect()
    }

    /// The frame with `stamp_ns`, or the newest for 0.
    pub fn frame(&self, stamp_ns: i64) -> Result<&FrameRecord, HistoryError> {
        if stamp_ns == 0 {
            return self.frames.back().ok_or(HistoryError::NoFrames);
        }
        if self.frames.is_empty() {
            return Err(HistoryError::NoFrames);
        }
        self.frames
            .iter()
            .find(|f| f.stamp_ns == stamp_ns)
            .ok_or_else(|| HistoryError::UnknownStamp { stamp_ns, held: self.frame_stamps() })
    }

    /// The image nearest in time to `stamp_ns` within `tolerance_s`.
    pub fn image_near(&self, stamp_ns: i64, tolerance_s: f64) -> Result<&ImageRecord, HistoryError> {
        let stamps = self.image_stamps();
        let tolerance_ns = (tolerance_s.max(0.0) * 1e9).round() as i64;
        nearest_stamp(&stamps, stamp_ns, tolerance_ns)
            .and_then(|i| self.images.get(i))
            .ok_or(HistoryError::NoImage { stamp_ns, tolerance_s, held: stamps })
    }

    /// Frame, boxes and image for a relabel request (see the module docs).
    /// A repeated id is selected once, at its first place (one label per
    /// object, however often a request names it). Unknown ids are named (the
    /// first [`MAX_IDS_NAMED`] of them).
    pub fn select(&self, stamp_ns: i64, ids: &[u32], image_tolerance_s: f64) -> Result<Selection, HistoryError> {
        let frame = self.frame(stamp_ns)?;
        let boxes: Vec<(u32, Box3D)> = if ids.is_empty() {
            frame.boxes.iter().enumerate().map(|(i, b)| (i as u32, *b)).collect()
        } else {
            let count = frame.boxes.len();
            let unknown = ids.iter().filter(|&&i| i as usize >= count);
            let named: Vec<u32> = unknown.clone().take(MAX_IDS_NAMED).copied().collect();
            if !named.is_empty() {
                let unknown_count = unknown.count();
                return Err(HistoryError::UnknownIds { stamp_ns: frame.stamp_ns, ids: named, unknown_count, count });
            }
            let mut seen = vec![false; count];
            ids.iter()
                .filter(|&&i| !std::mem::replace(&mut seen[i as usize], true))
                .map(|&i| (i, frame.boxes[i as usize]))
                .collect()
        };
        let image = self.image_near(frame.stamp_ns, image_tolerance_s)?.clone();
        Ok(Selection { stamp_ns: frame.stamp_ns, frame_id: frame.frame_id.clone(), boxes, image })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn boxes(n: usize) -> Vec<Box3D> {
        (0..n).map(|i| Box3D { center: [10.0 + i as f64, 0.0, -0.9], size: [3.9, 1.6, 1.5], yaw: 0.0 }).collect()
    }

    fn image(stamp_ns: i64) -> ImageRecord {
        ImageRecord { stamp_ns, frame_id: "cam".into(), image: Arc::new(RgbImage { width: 1, height: 1, data: vec![0; 3] }) }
    }

    fn history() -> FrameHistory {
        let mut h = FrameHistory::new(3);
        for k in 1..=4 {
            h.push_frame(FrameRecord { stamp_ns: k * S, frame_id: "lidar".into(), boxes: boxes(k as usize) });
            h.push_image(image(k * S + 10_000_000)); // 10 ms after its cloud
        }
        h
    }

    #[test]
    fn keeps_the_newest_frames_and_images() {
        let h = history();
        assert_eq!(h.frame_stamps(), [2 * S, 3 * S, 4 * S]);
        assert_eq!(h.image_stamps().len(), 3);
        let mut h = h;
        h.set_capacity(1);
        assert_eq!(h.frame_stamps(), [4 * S]);
        assert_eq!(h.image_stamps(), [4 * S + 10_000_000]);
        // a resent stamp replaces its frame
        h.set_capacity(5);
        h.push_frame(FrameRecord { stamp_ns: 4 * S, frame_id: "lidar".into(), boxes: boxes(1) });
        assert_eq!(h.frame_stamps(), [4 * S]);
        assert_eq!(h.frame(0).unwrap().boxes.len(), 1);
    }

    /// Issue 13: 1000 frames of 4K images were ~24 GB; the byte budgets
    /// drop the oldest first, whatever the frame count allows.
    #[test]
    fn byte_budgets_bound_the_history() {
        let big = |stamp_ns: i64| ImageRecord { stamp_ns, frame_id: "cam".into(), image: Arc::new(RgbImage { width: 100, height: 100, data: vec![0; 30_000] }) };
        let mut h = FrameHistory::with_budget(1000, 2_000, 100_000);
        for k in 1..=10 {
            h.push_image(big(k * S));
            h.push_frame(FrameRecord { stamp_ns: k * S, frame_id: "lidar".into(), boxes: boxes(10) });
        }
        let (frame_bytes, image_bytes) = h.bytes();
        assert_eq!(h.image_stamps(), [8 * S, 9 * S, 10 * S]);
        assert!(image_bytes <= 100_000 && frame_bytes <= 2_000, "{image_bytes} {frame_bytes}");
        assert_eq!(h.frame_stamps().len() as u64, 2_000 / FrameRecord { stamp_ns: 0, frame_id: "lidar".into(), boxes: boxes(10) }.bytes());
        // one image beyond the budget is still kept: the newest always is
        let mut h = FrameHistory::with_budget(5, 1, 1);
        h.push_image(big(S));
        h.push_image(big(2 * S));
        assert_eq!(h.image_stamps(), [2 * S]);
        assert!(FrameHistory::new(1000).budget == (MAX_FRAME_BYTES, MAX_IMAGE_BYTES));
    }

    #[test]
    fn zero_stamp_is_the_newest_and_empty_ids_are_all() {
        let s = history().select(0, &[], 0.05).unwrap();
        assert_eq!(s.stamp_ns, 4 * S);
        assert_eq!(s.frame_id, "lidar");
        assert_eq!(s.boxes.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(s.image.stamp_ns, 4 * S + 10_000_000);
    }

    #[test]
    fn exact_stamp_and_ids_in_request_order() {
        let s = history().select(3 * S, &[2, 0, 1], 0.05).unwrap();
        assert_eq!(s.stamp_ns, 3 * S);
        assert_eq!(s.boxes.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(s.boxes[0].1.center[0], 12.0);
        assert_eq!(s.image.stamp_ns, 3 * S + 10_000_000);
    }

    /// A repeated id is one object (issue 13: a million copies of one id
    /// asked for a million crops).
    #[test]
    fn repeated_ids_select_one_box_each() {
        let ids: Vec<u32> = std::iter::repeat_n([3u32, 1], 500_000).flatten().chain([0]).collect();
        let s = history().select(0, &ids, 0.05).unwrap();
        assert_eq!(s.boxes.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [3, 1, 0]);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let h = history();
        let e = h.select(S, &[], 0.05).unwrap_err();
        assert!(matches!(&e, HistoryError::UnknownStamp { held, .. } if held.len() == 3));
        let msg = e.to_string();
        assert!(msg.contains("1.000000000") && msg.contains("2.000000000, 3.000000000, 4.000000000"), "{msg}");

        let e = h.select(2 * S, &[1, 2, 7], 0.05).unwrap_err();
        assert_eq!(e, HistoryError::UnknownIds { stamp_ns: 2 * S, ids: vec![2, 7], unknown_count: 2, count: 2 });
        assert!(e.to_string().contains("2 unknown ids: [2, 7]"), "{e}");
        // a million unknown ids: the error names a few and counts the rest
        let many: Vec<u32> = (0..1_000_000).collect();
        let e = h.select(2 * S, &many, 0.05).unwrap_err().to_string();
        assert!(e.len() < 300 && e.contains("999998 unknown ids: [2, 3,") && e.ends_with(" ..."), "{e}");

        // images are 10 ms off: a 5 ms tolerance finds none
        let e = h.select(0, &[], 0.005).unwrap_err();
        assert!(matches!(&e, HistoryError::NoImage { held, .. } if held.len() == 3));
        assert!(e.to_string().contains("4.010000000"), "{e}");

        let empty = FrameHistory::new(10);
        assert_eq!(empty.select(0, &[], 1.0).unwrap_err(), HistoryError::NoFrames);
        assert_eq!(empty.select(5 * S, &[0], 1.0).unwrap_err(), HistoryError::NoFrames);
    }

    #[test]
    fn an_empty_frame_selects_nothing_but_still_needs_an_image() {
        let mut h = FrameHistory::new(2);
        h.push_frame(FrameRecord { stamp_ns: S, frame_id: "l".into(), boxes: vec![] });
        assert!(matches!(h.select(0, &[], 0.1), Err(HistoryError::NoImage { .. })));
        h.push_image(image(S - 50_000_000));
        let s = h.select(0, &[], 0.1).unwrap();
        assert!(s.boxes.is_empty());
        assert!(matches!(h.select(0, &[0], 0.1), Err(HistoryError::UnknownIds { count: 0, .. })));
    }

    #[test]
    fn stamps_print_like_ros_times() {
        assert_eq!(fmt_stamp(1234 * S + 5), "1234.000000005");
        assert_eq!(fmt_stamp(0), "0.000000000");
    }
}
