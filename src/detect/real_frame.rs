//! How a detector does on one labelled real frame, counted as a vehicle team
//! reads it (issue 14's targets on KITTI 000008): how many labelled cars a
//! car box overlaps at BEV IoU 0.5 and 0.7, and how many car boxes sit on no
//! labelled object at all. Used by `eloss real-frame` and the shipped
//! model's test (`dataset::kitti::tests::default_detector_on_the_real_frame`).

use super::iou::iou_bev;
use crate::geometry::Box3D;

/// A car box on no labelled object overlaps none by more than this (BEV IoU).
pub const FALSE_BOX_MAX_IOU: f64 = 0.1;

/// The counts of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealFrameCars {
    /// Labelled cars.
    pub cars: usize,
    /// Car boxes the detector gave.
    pub car_boxes: usize,
    /// Labelled cars some car box overlaps at BEV IoU ≥ 0.5 / ≥ 0.7.
    pub found_05: usize,
    pub found_07: usize,
    /// Car boxes overlapping no labelled object (any class, DontCare
    /// included) by more than [`FALSE_BOX_MAX_IOU`].
    pub false_boxes: usize,
}

/// Counts `car_boxes` (the detector's, LiDAR frame) against the labelled
/// `cars` and every labelled object's box (`labelled`, cars included).
pub fn count_cars(car_boxes: &[Box3D], cars: &[Box3D], labelled: &[Box3D]) -> RealFrameCars {
    let found = |iou: f64| cars.iter().filter(|g| car_boxes.iter().any(|d| iou_bev(d, g) >= iou)).count();
    RealFrameCars {
        cars: cars.len(),
        car_boxes: car_boxes.len(),
        found_05: found(0.5),
        found_07: found(0.7),
        false_boxes: car_boxes.iter().filter(|d| !labelled.iter().any(|g| iou_bev(d, g) > FALSE_BOX_MAX_IOU)).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn car(x: f64, y: f64) -> Box3D {
        Box3D { center: [x, y, -1.0], size: [4.0, 1.6, 1.5], yaw: 0.0 }
    }

    #[test]
    fn cars_are_found_at_each_overlap_and_stray_boxes_counted() {
        let cars = [car(10.0, 0.0), car(20.0, 5.0), car(30.0, -5.0)];
        let van = Box3D { center: [15.5, -8.0, -1.0], size: [5.0, 1.9, 2.2], yaw: 0.0 };
        let labelled = [cars[0], cars[1], cars[2], van];
        let boxes = [
            car(10.0, 0.0),      // exact: found at 0.7
            car(20.8, 5.0),      // IoU 3.2/4.8 = 0.67: found at 0.5 only
            car(15.0, -8.0),     // on the labelled van: not false, finds no car
            car(50.0, 0.0),      // on nothing: false
        ];
        let c = count_cars(&boxes, &cars, &labelled);
        assert_eq!(c, RealFrameCars { cars: 3, car_boxes: 4, found_05: 2, found_07: 1, false_boxes: 1 });
        assert_eq!(count_cars(&[], &cars, &labelled).found_05, 0);
    }
}
