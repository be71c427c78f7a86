//! How close simulated LiDAR frames are to real ones, in what a detector
//! sees (issue 14, item 4): points per frame, the range, intensity and
//! elevation (ring) distributions, the share of ground returns, and the
//! points on a car against its distance. `eloss sim-realism` compares a
//! simulated KITTI folder with a real frame (docs/simulator.md).
//!
//! Both sides are KITTI object clouds (cut to the camera's view) with their
//! labels; nothing here knows which side is simulated.
//!
//! * Distributions are compared by their total-variation distance
//!   (½ Σ |p − q| over the bins: 0 identical, 1 disjoint).
//! * The ground: a frame's ground level is the 2nd percentile of the heights
//!   of its points 4–25 m away horizontally; points within 0.25 m above it
//!   are ground returns.
//! * Points per car: a power law `points = a · distance^b` is fitted (least
//!   squares in log-log) to the simulated cars; the row reports the
//!   geometric mean over the real cars of real / predicted points.

use crate::cloud::Points;
use crate::geometry::Box3D;

/// Range bins: 10 m each, the last open-ended (70 m and beyond).
pub const RANGE_BIN_M: f64 = 10.0;
pub const RANGE_BINS: usize = 8;
/// Intensity bins over [0, 1].
pub const INTENSITY_BINS: usize = 20;
/// Elevation bins: 0.5° from −26° to +16°, out-of-range points in the ends.
pub const ELEVATION_MIN_DEG: f64 = -26.0;
pub const ELEVATION_BIN_DEG: f64 = 0.5;
pub const ELEVATION_BINS: usize = 84;
const GROUND_BAND_M: f32 = 0.25;

/// One labelled car: its distance from the sensor and the points in its box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarPoints {
    pub distance_m: f64,
    pub points: usize,
}

/// Statistics accumulated over frames.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudStats {
    pub frames: usize,
    pub points: usize,
    pub range_hist: Vec<u64>,
    pub intensity_hist: Vec<u64>,
    pub elevation_hist: Vec<u64>,
    pub ground_points: usize,
    pub intensity_sum: f64,
    pub cars: Vec<CarPoints>,
}

impl Default for CloudStats {
    fn default() -> Self {
        Self {
            frames: 0,
            points: 0,
            range_hist: vec![0; RANGE_BINS],
            intensity_hist: vec![0; INTENSITY_BINS],
            elevation_hist: vec![0; ELEVATION_BINS],
            ground_points: 0,
            intensity_sum: 0.0,
            cars: Vec::new(),
        }
    }
}

fn bin(value: f64, start: f64, width: f64, bins: usize) -> usize {
    if !value.is_finite() || value <= start {
        return 0;
    }
    (((value - start) / width) as usize).min(bins - 1)
}

/// The frame's ground level (see the module docs); `None` with too few points nearby.
pub fn ground_level(points: &Points) -> Option<f32> {
    let mut near: Vec<f32> = (0..points.len())
        .filter(|&i| (4.0..=25.0).contains(&points.x[i].hypot(points.y[i])))
        .map(|i| points.z[i])
        .filter(|z| z.is_finite())
        .collect();
    if near.len() < 50 {
        return None;
    }
    let k = near.len() / 50;
    let (_, v, _) = near.select_nth_unstable_by(k, f32::total_cmp);
    Some(*v)
}

impl CloudStats {
    /// Adds one frame: its points and the boxes of its labelled cars (LiDAR frame).
    pub fn add_frame(&mut self, points: &Points, cars: &[Box3D]) {
        self.frames += 1;
        self.points += points.len();
        let ground = ground_level(points);
        for i in 0..points.len() {
            let (x, y, z) = (points.x[i] as f64, points.y[i] as f64, points.z[i] as f64);
            let r = x.hypot(y);
            self.range_hist[bin(r, 0.0, RANGE_BIN_M, RANGE_BINS)] += 1;
            let intensity = points.intensity[i] as f64;
            self.intensity_hist[bin(intensity, 0.0, 1.0 / INTENSITY_BINS as f64, INTENSITY_BINS)] += 1;
            self.intensity_sum += intensity;
            let elevation = z.atan2(r).to_degrees();
            self.elevation_hist[bin(elevation, ELEVATION_MIN_DEG, ELEVATION_BIN_DEG, ELEVATION_BINS)] += 1;
            if ground.is_some_and(|g| points.z[i] <= g + GROUND_BAND_M) {
                self.ground_points += 1;
            }
        }
        for b in cars {
            let n = (0..points.len()).filter(|&i| b.contains([points.x[i] as f64, points.y[i] as f64, points.z[i] as f64])).count();
            self.cars.push(CarPoints { distance_m: b.center[0].hypot(b.center[1]), points: n });
        }
    }

    pub fn points_per_frame(&self) -> f64 {
        self.points as f64 / self.frames.max(1) as f64
    }

    pub fn ground_fraction(&self) -> f64 {
        self.ground_points as f64 / self.points.max(1) as f64
    }

    pub fn mean_intensity(&self) -> f64 {
        self.intensity_sum / self.points.max(1) as f64
    }

    /// `a, b` of `points = a · distance^b` over the cars with points, when
    /// there are at least 3 at two or more distances.
    pub fn car_power_law(&self) -> Option<(f64, f64)> {
        let xy: Vec<(f64, f64)> =
            self.cars.iter().filter(|c| c.points > 0 && c.distance_m > 0.5).map(|c| (c.distance_m.ln(), (c.points as f64).ln())).collect();
        if xy.len() < 3 {
            return None;
        }
        let n = xy.len() as f64;
        let (mx, my) = (xy.iter().map(|p| p.0).sum::<f64>() / n, xy.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
        if sxx < 1e-9 {
            return None;
        }
        let b = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
        Some(((my - b * mx).exp(), b))
    }
}

/// Fractions of a histogram's total.
pub fn fractions(hist: &[u64]) -> Vec<f64> {
    let total = hist.iter().sum::<u64>().max(1) as f64;
    hist.iter().map(|&c| c as f64 / total).collect()
}

/// Total-variation distance of two histograms over the same bins.
pub fn total_variation(a: &[u64], b: &[u64]) -> f64 {
    fractions(a).iter().zip(fractions(b)).map(|(p, q)| (p - q).abs()).sum::<f64>() / 2.0
}

/// One line of the comparison: the real value, the simulated one, and how
/// far apart they are (a distance for distributions, a ratio otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct RealismRow {
    pub quantity: &'static str,
    pub real: String,
    pub sim: String,
    pub gap: f64,
    /// What `gap` is.
    pub gap_kind: &'static str,
}

/// The comparison table of a real and a simulated set.
pub fn compare(real: &CloudStats, sim: &CloudStats) -> Vec<RealismRow> {
    let ratio = |r: f64, s: f64| if s > 0.0 { r / s } else { f64::NAN };
    let mut rows = vec![
        RealismRow {
            quantity: "points per frame",
            real: format!("{:.0}", real.points_per_frame()),
            sim: format!("{:.0}", sim.points_per_frame()),
            gap: ratio(real.points_per_frame(), sim.points_per_frame()),
            gap_kind: "real / sim",
        },
        RealismRow {
            quantity: "range distribution (10 m bins)",
            real: percent_list(&real.range_hist),
            sim: percent_list(&sim.range_hist),
            gap: total_variation(&real.range_hist, &sim.range_hist),
            gap_kind: "TV distance",
        },
        RealismRow {
            quantity: "intensity distribution (0.05 bins)",
            real: format!("mean {:.3}", real.mean_intensity()),
            sim: format!("mean {:.3}", sim.mean_intensity()),
            gap: total_variation(&real.intensity_hist, &sim.intensity_hist),
            gap_kind: "TV distance",
        },
        RealismRow {
            quantity: "elevation (ring) distribution (0.5° bins)",
            real: format!("{} bins used", real.elevation_hist.iter().filter(|&&c| c > 0).count()),
            sim: format!("{} bins used", sim.elevation_hist.iter().filter(|&&c| c > 0).count()),
            gap: total_variation(&real.elevation_hist, &sim.elevation_hist),
            gap_kind: "TV distance",
        },
        RealismRow {
            quantity: "ground returns",
            real: format!("{:.1} %", 100.0 * real.ground_fraction()),
            sim: format!("{:.1} %", 100.0 * sim.ground_fraction()),
            gap: ratio(real.ground_fraction(), sim.ground_fraction()),
            gap_kind: "real / sim",
        },
    ];
    let law = sim.car_power_law();
    let logs: Vec<f64> = match law {
        Some((a, b)) => real.cars.iter().filter(|c| c.points > 0).map(|c| (c.points as f64 / (a * c.distance_m.powf(b))).ln()).collect(),
        None => Vec::new(),
    };
    let cars = |s: &CloudStats| {
        s.cars.iter().map(|c| format!("{:.0} m: {}", c.distance_m, c.points)).collect::<Vec<_>>().join(", ")
    };
    rows.push(RealismRow {
        quantity: "points on a car vs distance",
        real: cars(real),
        sim: match law {
            Some((a, b)) => format!("{a:.0} · d^{b:.2} ({} cars)", sim.cars.len()),
            None => "too few cars".into(),
        },
        gap: if logs.is_empty() { f64::NAN } else { (logs.iter().sum::<f64>() / logs.len() as f64).exp() },
        gap_kind: "real / sim (geometric mean)",
    });
    rows
}

fn percent_list(hist: &[u64]) -> String {
    fractions(hist).iter().map(|f| format!("{:.0}", 100.0 * f)).collect::<Vec<_>>().join("/") + " %"
}

/// The table as markdown.
pub fn markdown(rows: &[RealismRow]) -> String {
    let mut out = String::from("| quantity | real | simulated | gap | gap is |\n|---|---|---|---:|---|\n");
    for r in rows {
        out += &format!("| {} | {} | {} | {:.3} | {} |\n", r.quantity, r.real, r.sim, r.gap, r.gap_kind);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Point;

    fn cloud(points: &[[f32; 4]]) -> Points {
        let mut p = Points::with_capacity(points.len(), false, false);
        for &[x, y, z, intensity] in points {
            p.push(Point { x, y, z, intensity, ..Default::default() });
        }
        p
    }

    /// A flat ground at -1.7 m from 4 to 24 m and a wall of points 2 m up.
    fn street(wall_intensity: f32) -> Points {
        let mut pts = Vec::new();
        for i in 0..100 {
            pts.push([4.0 + 0.2 * i as f32, 0.0, -1.7, 0.2]);
            pts.push([4.0 + 0.2 * i as f32, 1.0, 0.3, wall_intensity]);
        }
        cloud(&pts)
    }

    #[test]
    fn histograms_ground_and_cars_are_counted() {
        let mut s = CloudStats::default();
        let car = Box3D { center: [10.0, 0.0, -1.0], size: [4.0, 2.0, 1.6], yaw: 0.0 };
        s.add_frame(&street(0.8), &[car]);
        assert_eq!((s.frames, s.points), (1, 200));
        // ground points: 100 at z = -1.7 (the band's bottom)
        assert_eq!(s.ground_points, 100);
        assert!((s.ground_fraction() - 0.5).abs() < 1e-12);
        // ranges 4..24 m: bins 0, 1 and 2
        assert_eq!(s.range_hist[0] + s.range_hist[1] + s.range_hist[2], 200);
        assert_eq!(s.range_hist[3..].iter().sum::<u64>(), 0);
        assert_eq!(s.intensity_hist[4], 100); // 0.2 → bin 4 of 0.05
        assert_eq!(s.intensity_hist[16], 100); // 0.8 → bin 16
        assert!((s.mean_intensity() - 0.5).abs() < 1e-6);
        // the car box spans x 8..12 at ground level: 21 ground points (8.0, 8.2 … 12.0)
        assert_eq!(s.cars, vec![CarPoints { distance_m: 10.0, points: 21 }]);
        assert_eq!(s.elevation_hist.iter().sum::<u64>(), 200);
    }

    #[test]
    fn identical_sets_have_no_gap_and_different_ones_do() {
        let (mut a, mut b) = (CloudStats::default(), CloudStats::default());
        a.add_frame(&street(0.8), &[]);
        b.add_frame(&street(0.8), &[]);
        for r in compare(&a, &b).iter().filter(|r| r.gap_kind == "TV distance") {
            assert_eq!(r.gap, 0.0, "{}", r.quantity);
        }
        let mut c = CloudStats::default();
        c.add_frame(&street(0.3), &[]);
        let rows = compare(&a, &c);
        let intensity = rows.iter().find(|r| r.quantity.starts_with("intensity")).unwrap();
        // half the points moved from bin 16 to bin 6
        assert!((intensity.gap - 0.5).abs() < 1e-12, "{}", intensity.gap);
        assert!(markdown(&rows).lines().count() == 2 + rows.len());
    }

    #[test]
    fn the_car_power_law_is_recovered() {
        let mut s = CloudStats::default();
        s.cars = [5.0, 10.0, 20.0, 40.0].iter().map(|&d: &f64| CarPoints { distance_m: d, points: (40_000.0 * d.powf(-1.5)).round() as usize }).collect();
        let (a, b) = s.car_power_law().unwrap();
        assert!((b + 1.5).abs() < 0.01 && (a / 40_000.0 - 1.0).abs() < 0.05, "{a} {b}");
        let mut real = CloudStats::default();
        real.cars = vec![CarPoints { distance_m: 10.0, points: (2.0 * 40_000.0 * 10f64.powf(-1.5)) as usize }];
        let row = compare(&real, &s).pop().unwrap();
        assert!((row.gap - 2.0).abs() < 0.05, "{}", row.gap);
    }
}
