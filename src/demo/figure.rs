//! The demo's picture: for one processed frame of each stretch (real
//! KITTI, simulated normal, simulated fault) the camera image with each
//! detection's image box and GDC label, and the bird's-eye view with the
//! cloud and the detected boxes; under them the anomaly score over the
//! drive with the threshold, the fault's true frames and the
//! alarm intervals shaded. Pixels are composed with `image`
//! (dataset::render's drawing helpers), text and the chart with `plotters`
//! (the crate's font, src/plot.rs).

use super::story::Story;
use super::summary::{alarm_intervals, match_frames, Record, RecordedDetection};
use crate::dataset::kitti::project_box_to_image;
use crate::dataset::render::{draw_bev_box, draw_line, render_bev, BevOptions};
use crate::plot::{register_font, FONT_FAMILY};
use ::image::{imageops, Rgb, RgbImage};
use anyhow::{anyhow, Context as _};
use plotters::prelude::*;
use std::path::Path;

const COLUMN_W: u32 = 640;
const CAMERA_H: u32 = 193; // 1242x375 scaled to 640 wide
const TITLE_H: u32 = 36;
const CAPTION_H: u32 = 26;
const BEV_H: u32 = 400;
const CHART_H: u32 = 380;

/// Box colour of a GDC label (the detector's class when there is none).
pub fn label_colour(label: &str) -> Rgb<u8> {
    match label {
        "Car" => Rgb([60, 230, 60]),
        "Van" | "Truck" => Rgb([40, 210, 230]),
        "Pedestrian" => Rgb([250, 60, 60]),
        "Cyclist" => Rgb([250, 220, 40]),
        _ => Rgb([245, 245, 245]),
    }
}

fn shown_label(d: &RecordedDetection) -> String {
    if d.has_gdc {
        d.gdc_label.clone()
    } else {
        format!("({})", d.class_name)
    }
}

/// Picks one processed frame per stretch among the story's kept frames.
pub fn chosen_frames(story: &Story, record: &Record) -> Vec<usize> {
    let m = match_frames(story, record);
    let stretches = [(0, story.config.kitti_frames), (story.config.kitti_frames, story.anomaly_start), (story.anomaly_start, story.anomaly_end)];
    stretches
        .iter()
        .filter_map(|&(lo, hi)| {
            let kept: Vec<usize> = story.shown.iter().copied().filter(|i| (lo..hi).contains(i)).collect();
            kept.iter().copied().find(|i| m.frames.get(i).is_some_and(|f| f.detections.is_some())).or(kept.first().copied())
        })
        .collect()
}

struct Panel {
    camera: RgbImage,
    bev: RgbImage,
    /// (text, x, y, colour) in panel pixels of the camera image.
    texts: Vec<(String, i32, i32, Rgb<u8>)>,
    caption: String,
}

fn panel(story: &Story, dir: &Path, record: &Record, index: usize) -> anyhow::Result<Panel> {
    let m = match_frames(story, record);
    let image = ::image::open(dir.join(format!("frames/{index:04}.png"))).with_context(|| format!("frame {index} image"))?.to_rgb8();
    let points = crate::cloud::kitti_bin::read(dir.join(format!("frames/{index:04}.bin"))).with_context(|| format!("frame {index} cloud"))?;
    let calib = story.calibration(index);
    let dets: Vec<RecordedDetection> = m.frames.get(&index).and_then(|f| f.detections.clone()).unwrap_or_default();
    let scale = COLUMN_W as f64 / image.width() as f64;
    let mut camera = imageops::resize(&image, COLUMN_W, (image.height() as f64 * scale).round() as u32, imageops::FilterType::Triangle);
    let mut texts = Vec::new();
    for d in &dets {
        let Some(p) = project_box_to_image(&d.to_box(), &calib, image.width(), image.height()) else { continue };
        let [x1, y1, x2, y2] = p.bbox_clipped.map(|v| v * scale);
        let label = shown_label(d);
        let c = label_colour(if d.has_gdc { &d.gdc_label } else { "" });
        for (a, b) in [((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))] {
            draw_line(&mut camera, a, b, c, 2);
        }
        texts.push((label, x1 as i32, (y1 as i32 - 14).max(0), c));
    }
    let opts = BevOptions { metres_per_pixel: 0.15, x_range: [0.0, 60.0], y_range: [-30.0, 30.0], z_range: [-2.0, 1.0] };
    let mut bev = render_bev(&points, &[], &calib, &opts);
    for d in &dets {
        draw_bev_box(&mut bev, &d.to_box(), &opts, label_colour(if d.has_gdc { &d.gdc_label } else { "" }));
    }
    let f = &story.frames[index];
    let what = match (f.source.as_str(), f.anomalous) {
        ("kitti", _) => "real KITTI 000008",
        (_, true) => "simulated, LiDAR fault",
        _ => "simulated, normal",
    };
    let eloss = m.frames.get(&index).and_then(|f| f.eloss.clone());
    let caption = match eloss {
        Some(e) => format!("frame {index}: {what}; score {:.1} (thr {:.1}){}", e.score, e.threshold, if e.anomaly { ", ALARM" } else { "" }),
        None => format!("frame {index}: {what}; not processed (dropped)"),
    };
    Ok(Panel { camera, bev, texts, caption })
}

/// Writes the figure to `out`.
pub fn write_figure(story: &Story, dir: &Path, record: &Record, out: &Path) -> anyhow::Result<()> {
    register_font()?;
    let chosen = chosen_frames(story, record);
    let panels = chosen.iter().map(|&i| panel(story, dir, record, i)).collect::<anyhow::Result<Vec<_>>>()?;
    let cols = panels.len().max(1) as u32;
    let (w, h) = (COLUMN_W * cols, TITLE_H + CAPTION_H + CAMERA_H + 4 + BEV_H + CHART_H);
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (k, p) in panels.iter().enumerate() {
        let x0 = k as u32 * COLUMN_W;
        imageops::replace(&mut canvas, &p.camera, x0 as i64, (TITLE_H + CAPTION_H) as i64);
        let bx = x0 + (COLUMN_W - p.bev.width()) / 2;
        imageops::replace(&mut canvas, &p.bev, bx as i64, (TITLE_H + CAPTION_H + CAMERA_H + 4) as i64);
    }
    let err = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", out.display());
    {
        let mut buf = canvas.into_raw();
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            let title = "eloss_perception demo: detections with GDC labels (camera), bird's-eye view, Eloss anomaly score over the drive";
            root.draw(&Text::new(title, (10, 8), (FONT_FAMILY, 20).into_font().color(&BLACK))).map_err(|e| err(&e))?;
            for (k, p) in panels.iter().enumerate() {
                let x0 = (k as u32 * COLUMN_W) as i32;
                root.draw(&Text::new(p.caption.as_str(), (x0 + 8, TITLE_H as i32 + 4), (FONT_FAMILY, 15).into_font().color(&BLACK))).map_err(|e| err(&e))?;
                for (t, x, y, c) in &p.texts {
                    let style = (FONT_FAMILY, 13).into_font().color(&RGBColor(c[0], c[1], c[2]));
                    let pos = (x0 + x, (TITLE_H + CAPTION_H) as i32 + y);
                    root.draw(&Rectangle::new([(pos.0, pos.1), (pos.0 + 7 * t.len() as i32 + 4, pos.1 + 14)], BLACK.mix(0.6).filled())).map_err(|e| err(&e))?;
                    root.draw(&Text::new(t.as_str(), (pos.0 + 2, pos.1), style)).map_err(|e| err(&e))?;
                }
            }
            let (_, chart_area) = root.split_vertically(h - CHART_H);
            draw_score_chart(story, record, &chart_area).map_err(|e| err(&e))?;
            root.present().map_err(|e| err(&e))?;
        }
        let img = RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("figure buffer has the wrong size"))?;
        img.save(out).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn draw_score_chart<DB: DrawingBackend>(story: &Story, record: &Record, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let m = match_frames(story, record);
    let scores: Vec<(f64, f64, bool)> =
        m.frames.iter().filter_map(|(&i, f)| f.eloss.as_ref().map(|r| (i as f64, r.score, r.anomaly))).filter(|s| s.1.is_finite()).collect();
    let threshold = m.frames.values().find_map(|f| f.eloss.as_ref().map(|r| r.threshold)).unwrap_or(1.0);
    let n = story.frames.len() as f64;
    let hi = scores.iter().map(|s| s.1).fold(threshold, f64::max);
    let lo = scores.iter().map(|s| s.1).fold(0.0, f64::min);
    let (y_min, y_max) = (lo - 0.05 * (hi - lo), hi + 0.08 * (hi - lo));
    let mut chart = ChartBuilder::on(area)
        .caption("anomaly score of each frame the node processed (alarm: 3 of 5 frames above the threshold; clear: 5 below)", (FONT_FAMILY, 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n, y_min..y_max)
        .map_err(|x| e(&x))?;
    chart.configure_mesh().x_desc("frame (10 Hz)").y_desc("score").label_style((FONT_FAMILY, 13)).draw().map_err(|x| e(&x))?;
    let band = |lo: f64, hi: f64, c: RGBAColor| Rectangle::new([(lo, y_min), (hi, y_max)], c.filled());
    chart
        .draw_series(std::iter::once(band(0.0, story.config.kitti_frames as f64, RGBColor(90, 140, 230).mix(0.15))))
        .map_err(|x| e(&x))?
        .label("real KITTI frame")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], RGBColor(90, 140, 230).mix(0.3).filled()));
    chart
        .draw_series(std::iter::once(band(story.anomaly_start as f64, story.anomaly_end as f64, RGBColor(255, 165, 0).mix(0.25))))
        .map_err(|x| e(&x))?
        .label("LiDAR fault (truth)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], RGBColor(255, 165, 0).mix(0.4).filled()));
    let alarms = alarm_intervals(&m);
    chart
        .draw_series(alarms.iter().map(|a| {
            let lo = a.start as f64;
            let hi = a.end.map_or(n, |v| v as f64);
            Rectangle::new([(lo, y_min), (hi, y_min + 0.06 * (y_max - y_min))], RED.mix(0.7).filled())
        }))
        .map_err(|x| e(&x))?
        .label("alarm raised")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], RED.mix(0.7).filled()));
    chart
        .draw_series(LineSeries::new(vec![(0.0, threshold), (n, threshold)], RED.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label(format!("threshold {threshold:.2}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(scores.iter().map(|s| (s.0, s.1)), BLUE.stroke_width(1)))
        .map_err(|x| e(&x))?
        .label("score")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart.draw_series(scores.iter().map(|s| Circle::new((s.0, s.1), 3, if s.2 { RED.filled() } else { BLUE.filled() }))).map_err(|x| e(&x))?;
    chart
        .configure_series_labels()
        .label_font((FONT_FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|x| e(&x))?;
    Ok(())
}
