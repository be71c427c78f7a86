"""The detector's whole frame in Python, written as a robotics user would write
it, timed stage by stage: the Python side of the "whole frame: ours vs the
Python pipeline" benchmark (our side: `eloss bench-frame`).

From the bytes of a sensor_msgs/PointCloud2 (built once from a KITTI .bin,
outside the timing: on a vehicle they arrive over DDS) to the published
vision_msgs/Detection3DArray, per frame:

  decode      bytes -> N x 4 float32 (x y z intensity), as sensor_msgs_py's
              read_points_numpy does it, non-finite points dropped
  range       the node's 3D range filter (cloud.min_range_m / max_range_m)
  pillarize   numpy: the model's range box, pillars, caps, 10 decorations
  network     the PyTorch twin of our network (bench_detector_torch.Net), eager
  box_decode  sigmoid, the model's score threshold, residual decode, heading
  nms         class-wise rotated BEV NMS (vectorised numpy IoU), top-k, the
              node's detector.score_threshold
  message     vision_msgs Detection3DArray (hypothesis, pose, box, yaw quaternion)

mirroring src/ros/node.rs (decode, range filter) and src/detect/ (pillars.rs,
anchors.rs, box_coder.rs, postprocess.rs, nms.rs, iou.rs) with the node's
defaults (detector.frame "": the cloud's frame is the model's; intensity
scale 1). The model config comes from the checkpoint's metadata.

  source scripts/env.sh
  $ELOSS_PYTHON scripts/bench_frame_python.py --cloud ../shared/data/kitti_000008/000008.bin \\
      --model config/detector/compact_eloss.safetensors --iters 30 --warmup 3 --threads 2 \\
      [--json OUT.json] [--compare OURS.json] [--pillar-dump DUMP.safetensors]

Prints the median ms of every stage and of the whole frame; --json writes
{"stages_ms", "total_ms", "detections": [{"class", "score", "box": [x, y, z, l, w, h, yaw]}]}
(boxes in the LiDAR/model frame: centre, size, yaw about +z in (-pi, pi], as
our Box3D). Exits 1 when a --compare or --pillar-dump parity check fails.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import numpy.lib.recfunctions as rfn
import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_detector_torch import load_model  # noqa: E402  (our network in PyTorch, strict load)

try:
    from geometry_msgs.msg import Pose, PoseWithCovariance, Vector3
    from sensor_msgs.msg import PointCloud2, PointField
    from vision_msgs.msg import BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesis, ObjectHypothesisWithPose
    MSGS_MISSING = None
except ImportError as e:  # no ROS 2 Python messages: the script says so and cannot run
    MSGS_MISSING = str(e)

TOLERANCE = 1e-3  # --compare: box parameters (m, rad) and scores
PILLAR_TOLERANCE = 1e-6  # --pillar-dump: pillar features
STAGES = ["decode", "range", "pillarize", "network", "box_decode", "nms", "message"]


def wrap(a):
    """To (-pi, pi], as geometry::wrap_angle."""
    w = np.mod(a + math.pi, 2 * math.pi) - math.pi
    return np.where(w <= -math.pi, w + 2 * math.pi, w)


# ---- the message, once ---------------------------------------------------------------------------
def cloud_message(path, frame_id):
    xyzi = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    m = PointCloud2()
    m.header.frame_id = frame_id
    m.header.stamp.sec, m.header.stamp.nanosec = 1, 500
    m.height, m.width = 1, len(xyzi)
    m.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate(["x", "y", "z", "intensity"])]
    m.is_bigendian, m.point_step, m.row_step, m.is_dense = False, 16, 16 * len(xyzi), True
    m.data = xyzi.tobytes()
    return m


# ---- the frame -----------------------------------------------------------------------------------
NP_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}  # PointField datatypes


def decode(msg):
    """sensor_msgs_py.point_cloud2.read_points_numpy(msg, ["x", "y", "z", "intensity"]): a structured
    dtype from the PointField table over the message's buffer, then structured_to_unstructured. As our
    decoder, points with a non-finite x, y or z are dropped (read_points' skip_nans would skip that for
    an is_dense cloud) and the values become float32."""
    names = ["x", "y", "z", "intensity"]
    fields = {f.name: f for f in msg.fields}
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": names, "formats": [order + NP_TYPES[fields[n].datatype] for n in names],
                      "offsets": [fields[n].offset for n in names], "itemsize": msg.point_step})
    points = np.frombuffer(msg.data, dtype=dtype, count=msg.width * msg.height)
    xyzi = rfn.structured_to_unstructured(points).astype(np.float32, copy=False)
    return xyzi[np.isfinite(xyzi[:, :3]).all(axis=1)]


def range_filter(xyzi, min_m, max_m):
    """Points::retain_range: 3D range in [min, max] (squares in float32; min <= 0: no lower bound)."""
    r2 = xyzi[:, 0] * xyzi[:, 0] + xyzi[:, 1] * xyzi[:, 1] + xyzi[:, 2] * xyzi[:, 2]
    lo, hi = np.float32(min_m), np.float32(max_m)
    keep = ((lo <= 0) | (r2 >= lo * lo)) & (hi >= 0) & (r2 <= hi * hi)
    return xyzi[keep]


def grid_size(pc):
    r, (sx, sy) = pc["range"], pc["pillar_size"]
    return round((r[3] - r[0]) / sx), round((r[4] - r[1]) / sy)


def pillarize(xyzi, pc):
    """detect::pillars::pillarize: points in the model's range box (in float64, as ours: NumPy 2 would
    compare float32 with the bound rounded to float32), pillars numbered by their first point, the first
    max_points_per_pillar points of each, pillars past max_pillars dropped; features x y z i, offsets to
    the pillar's point mean and to its centre. Returns features [P, M, 10] f32, counts [P], (y, x) [P, 2]."""
    r, (sx, sy) = pc["range"], pc["pillar_size"]
    m, w, h = pc["max_points_per_pillar"], *grid_size(pc)
    x, y, z = (xyzi[:, k].astype(np.float64) for k in range(3))
    inside = (x >= r[0]) & (x < r[3]) & (y >= r[1]) & (y < r[4]) & (z >= r[2]) & (z < r[5])
    x, y, z, inten = x[inside], y[inside], z[inside], xyzi[inside, 3].astype(np.float64)
    cx = np.minimum(((x - r[0]) / sx).astype(np.int64), w - 1)
    cy = np.minimum(((y - r[1]) / sy).astype(np.int64), h - 1)
    keys, first, inverse = np.unique(cy * w + cx, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(keys), np.int64)
    rank[by_first] = np.arange(len(keys))
    pillar = rank[inverse]
    n_pillars = min(len(keys), pc["max_pillars"])
    # rank of each point within its pillar, in input order; keep the first m of the kept pillars
    order = np.argsort(pillar, kind="stable")
    slot = np.empty_like(pillar)
    slot[order] = np.arange(len(pillar)) - np.searchsorted(pillar[order], pillar[order])
    keep = (pillar < n_pillars) & (slot < m)
    x, y, z, inten, pillar, slot = x[keep], y[keep], z[keep], inten[keep], pillar[keep], slot[keep]
    counts = np.bincount(pillar, minlength=n_pillars)
    # the mean as ours sums it: x_i / n added up in input order (bincount adds in array order)
    mean = [np.bincount(pillar, weights=v / counts[pillar], minlength=n_pillars) for v in (x, y, z)]
    coords = np.stack(np.divmod(keys[by_first][:n_pillars], w), axis=1)  # (y, x)
    centre = [r[0] + (coords[:, 1] + 0.5) * sx, r[1] + (coords[:, 0] + 0.5) * sy]
    feats = np.stack([x, y, z, inten, x - mean[0][pillar], y - mean[1][pillar], z - mean[2][pillar],
                      x - centre[0][pillar], y - centre[1][pillar], z - (r[2] + r[5]) / 2], axis=1)
    features = np.zeros((n_pillars, m, 10), np.float32)
    features[pillar, slot] = feats
    return features, counts.astype(np.int64), coords


def network(net, features, counts, coords, w, h):
    with torch.inference_mode():
        cls, boxes, dirs = net(torch.from_numpy(features), torch.from_numpy(counts), torch.from_numpy(coords), w, h)
    return cls[0], boxes[0], dirs[0]


def anchor_grid(cfg, fw, fh):
    """detect::anchors::AnchorGrid as [H * W * classes * rotations, 7] float64, (y, x, class, rotation) order."""
    r = cfg["pillars"]["range"]
    rotations = wrap(np.array(cfg.get("anchor_rotations", [0.0, math.pi / 2])))
    if cfg.get("anchor_align_center", True):
        xs, ys = (r[3] - r[0]) / fw, (r[4] - r[1]) / fh
        x0, y0 = r[0] + xs / 2, r[1] + ys / 2
    else:
        xs, ys, x0, y0 = (r[3] - r[0]) / (fw - 1), (r[4] - r[1]) / (fh - 1), r[0], r[1]
    nc, nr = len(cfg["classes"]), len(rotations)
    a = np.zeros((fh, fw, nc, nr, 7))
    a[..., 0] = (x0 + np.arange(fw) * xs)[None, :, None, None]
    a[..., 1] = (y0 + np.arange(fh) * ys)[:, None, None, None]
    for c, k in enumerate(cfg["classes"]):
        a[:, :, c, :, 2] = k["bottom_height"] + k["size"][2] / 2
        a[:, :, c, :, 3:6] = k["size"]
    a[..., 6] = rotations
    return a.reshape(-1, 7)


DIR_OFFSET, DIR_LIMIT_OFFSET, DIR_BINS = 0.78539, 0.0, 2  # box_coder::DirectionBins::kitti


def box_decode(cls, boxes, dirs, anchors, threshold):
    """postprocess::detections up to the NMS: best class per anchor, score >= the model's threshold,
    ResidualCoder decode against the anchors (float64), heading restored from the direction bin."""
    scores, classes = torch.sigmoid(cls).max(dim=1)
    scores = scores.numpy()
    idx = np.nonzero(scores >= np.float32(threshold))[0]
    t, a = boxes.numpy()[idx].astype(np.float64), anchors[idx]
    diag = np.hypot(a[:, 3], a[:, 4])
    out = np.stack([t[:, 0] * diag + a[:, 0], t[:, 1] * diag + a[:, 1], t[:, 2] * a[:, 5] + a[:, 2],
                    np.exp(t[:, 3]) * a[:, 3], np.exp(t[:, 4]) * a[:, 4], np.exp(t[:, 5]) * a[:, 5],
                    wrap(t[:, 6] + a[:, 6])], axis=1)
    period = 2 * math.pi / DIR_BINS
    v = out[:, 6] - DIR_OFFSET
    out[:, 6] = wrap(v - np.floor(v / period + DIR_LIMIT_OFFSET) * period + DIR_OFFSET + period * dirs.argmax(dim=1).numpy()[idx])
    return out, scores[idx], classes.numpy()[idx]


def bev_corners(b):
    """[N, 4, 2] footprints, counter-clockwise from front-left, as Box3D::corners."""
    dx = np.array([0.5, -0.5, -0.5, 0.5]) * b[:, 3:4]
    dy = np.array([0.5, 0.5, -0.5, -0.5]) * b[:, 4:5]
    c, s = np.cos(b[:, 6:7]), np.sin(b[:, 6:7])
    return np.stack([b[:, 0:1] + c * dx - s * dy, b[:, 1:2] + s * dx + c * dy], axis=-1)


def cross2(u, v):
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def iou_bev(a, others):
    """Rotated BEV IoU of box a [7] with others [M, 7], vectorised: the intersection polygon's vertices
    (corners inside the other box, edge crossings) sorted by angle, shoelace area."""
    iou = np.zeros(len(others))
    d = np.hypot(others[:, 0] - a[0], others[:, 1] - a[1])
    near = d <= 0.5 * (np.hypot(a[3], a[4]) + np.hypot(others[:, 3], others[:, 4]))  # circumscribed circles meet
    if not near.any():
        return iou
    b = others[near]
    pa, pb = np.broadcast_to(bev_corners(a[None]), (len(b), 4, 2)), bev_corners(b)

    def inside(p, poly):  # [M, K] points p inside the counter-clockwise polygons (edges included)
        e0, e1 = poly[:, None], np.roll(poly, -1, axis=1)[:, None]
        return (cross2(e1 - e0, p[:, :, None] - e0) >= -1e-12).all(axis=-1)

    p0, r = pa[:, :, None], (np.roll(pa, -1, axis=1) - pa)[:, :, None]  # edges of a: [M, 4, 1, 2]
    q0, s = pb[:, None], (np.roll(pb, -1, axis=1) - pb)[:, None]  # edges of b: [M, 1, 4, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        den = cross2(r, s)
        t, u = cross2(q0 - p0, s) / den, cross2(q0 - p0, r) / den
        hit = (den != 0) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)  # parallel edges: none
    crossings = (p0 + np.where(hit, t, 0.0)[..., None] * r).reshape(len(b), 16, 2)
    pts = np.concatenate([pa, pb, crossings], axis=1)
    valid = np.concatenate([inside(pa, pb), inside(pb, pa), hit.reshape(len(b), 16)], axis=1)
    n = valid.sum(axis=1)
    centre = (pts * valid[..., None]).sum(axis=1) / np.maximum(n, 1)[:, None]
    angle = np.where(valid, np.arctan2(pts[..., 1] - centre[:, 1:2], pts[..., 0] - centre[:, 0:1]), np.inf)
    order = np.argsort(angle, axis=1)
    pts, valid = np.take_along_axis(pts, order[..., None], axis=1), np.take_along_axis(valid, order, axis=1)
    pts = np.where(valid[..., None], pts, pts[:, :1])  # padding repeats the first vertex: no area
    area = 0.5 * np.abs(cross2(pts, np.roll(pts, -1, axis=1)).sum(axis=1))
    area_a, area_b = a[3] * a[4], b[:, 3] * b[:, 4]
    inter = np.where(n >= 3, np.minimum(np.minimum(area, area_a), area_b), 0.0)
    iou[near] = np.clip(inter / (area_a + area_b - inter), 0.0, 1.0)
    return iou


def nms(boxes, scores, classes, cfg, score_threshold):
    """nms::nms_bev_classwise (per class: best first, ties by index; top nms_pre_max_size; greedy,
    suppress IoU > nms_iou; at most max_detections), merged best first, capped at max_detections,
    then the node's score threshold. Returns indices."""
    pre, cap, thr = cfg.get("nms_pre_max_size", 4096), cfg["max_detections"], cfg["nms_iou"]
    groups = [np.arange(len(scores))] if cfg.get("nms_class_agnostic", False) else [np.nonzero(classes == c)[0] for c in np.unique(classes)]
    kept = []
    for idx in groups:
        idx = idx[np.argsort(-scores[idx], kind="stable")][:pre]
        suppressed = np.zeros(len(idx), bool)
        keep = []
        for i in range(len(idx)):
            if len(keep) >= cap:
                break
            if suppressed[i]:
                continue
            keep.append(idx[i])
            rest = np.nonzero(~suppressed[i + 1:])[0] + i + 1
            if len(rest):
                suppressed[rest[iou_bev(boxes[idx[i]], boxes[idx[rest]]) > thr]] = True
        kept.extend(keep)
    kept = np.array(kept, np.int64)
    kept = kept[np.lexsort((kept, -scores[kept]))][:cap]
    return kept[scores[kept] >= np.float32(score_threshold)]


def message(header, boxes, scores, classes, names):
    """vision_msgs/Detection3DArray as our node publishes it (ros::detections::vision_detections)."""
    out = Detection3DArray(header=header)
    for i, (b, s, c) in enumerate(zip(boxes, scores, classes)):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = float(b[0]), float(b[1]), float(b[2])
        pose.orientation.z, pose.orientation.w = math.sin(b[6] / 2), math.cos(b[6] / 2)
        hyp = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=names[c], score=float(s)), pose=PoseWithCovariance(pose=pose))
        box = BoundingBox3D(center=pose, size=Vector3(x=float(b[3]), y=float(b[4]), z=float(b[5])))
        out.detections.append(Detection3D(header=header, results=[hyp], bbox=box, id=str(i)))
    return out


# ---- parity ----------------------------------------------------------------------------------------
def pillar_parity(path, features, counts, coords):
    with safe_open(path, "pt") as f:
        d = {k: f.get_tensor(k).numpy() for k in f.keys()}
    ours = {tuple(c): i for i, c in enumerate(d["coords"].tolist())}
    mine = {tuple(c): i for i, c in enumerate(coords.tolist())}
    same_set, same_order = ours.keys() == mine.keys(), np.array_equal(d["coords"], coords)
    diff, counts_equal = float("inf"), False
    if same_set:
        j = np.array([mine[k] for k in ours])
        counts_equal = bool(np.array_equal(d["num_points"], counts[j]))
        diff = float(np.abs(d["features"] - features[j]).max()) if len(j) else 0.0
    ok = same_set and counts_equal and diff <= PILLAR_TOLERANCE
    print(f"pillar parity vs {path}: ours {len(ours)} pillars, python {len(mine)}; same coordinates {same_set} "
          f"(same order {same_order}), same point counts {counts_equal}, max |feature diff| {diff:.3g} "
          f"(tolerance {PILLAR_TOLERANCE:g}): {'OK' if ok else 'FAIL'}")
    return ok, d


def compare(path, mine):
    ours = json.load(open(path))["detections"]
    ok = True
    print(f"detection parity vs {path}:\n  class        ours  python")
    for c in sorted({d["class"] for d in ours + mine}):
        a, b = (sum(d["class"] == c for d in ds) for ds in (ours, mine))
        ok &= a == b
        print(f"  {c:<10} {a:>6} {b:>7}{'' if a == b else '  <- differ'}")
    box_diff, score_diff, used = 0.0, 0.0, set()
    for d in ours:
        same = [j for j, p in enumerate(mine) if p["class"] == d["class"]]
        if not same:
            continue
        j = min(same, key=lambda j: math.dist(d["box"][:3], mine[j]["box"][:3]))
        ok &= j not in used
        used.add(j)
        p = mine[j]
        box_diff = max([box_diff, abs(float(wrap(d["box"][6] - p["box"][6])))] + [abs(u - v) for u, v in zip(d["box"][:6], p["box"][:6])])
        score_diff = max(score_diff, abs(d["score"] - p["score"]))
    ok &= box_diff <= TOLERANCE and score_diff <= TOLERANCE
    print(f"  each of ours matched to the nearest python box of its class (one to one: {len(used) == len(ours)}): "
          f"max |box param diff| {box_diff:.3g} (yaw wrapped), max |score diff| {score_diff:.3g} "
          f"(tolerance {TOLERANCE:g}): {'OK' if ok else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cloud", required=True, help="KITTI .bin (float32 x y z intensity)")
    ap.add_argument("--model", required=True, help="our detector checkpoint (safetensors, config in its metadata)")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--score-threshold", type=float, default=0.3, help="the node's detector.score_threshold (default 0.3)")
    ap.add_argument("--min-range", type=float, default=0.0, help="the node's cloud.min_range_m (default 0)")
    ap.add_argument("--max-range", type=float, default=200.0, help="the node's cloud.max_range_m (default 200)")
    ap.add_argument("--json", help="write stage medians and detections here")
    ap.add_argument("--compare", metavar="OURS.json", help=f"detections of `eloss bench-frame --json` (same format): "
                    f"counts per class must be equal and, each of ours matched to the nearest python box of its class, "
                    f"box parameters (m, rad; yaw difference wrapped) and scores within {TOLERANCE:g}; else exit 1")
    ap.add_argument("--pillar-dump", help=f"`eloss bench-detector --dump` of the same cloud: same pillar coordinates "
                    f"and point counts, features within {PILLAR_TOLERANCE:g}, else exit 1; also the network's head "
                    f"outputs against ours (printed)")
    a = ap.parse_args()
    if MSGS_MISSING:
        sys.exit(f"ROS 2 Python messages (sensor_msgs, vision_msgs) not importable ({MSGS_MISSING}): source scripts/env.sh")
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg, _, net = load_model(a.model)
    names = [c["name"] for c in cfg["classes"]]
    pc = cfg["pillars"]
    w, h = grid_size(pc)
    stride = cfg["backbone"]["layer_strides"][0]
    anchors = anchor_grid(cfg, w // stride, h // stride)
    msg = cloud_message(a.cloud, "velodyne")

    times = {s: [] for s in STAGES}
    for it in range(a.warmup + a.iters):
        t = [time.perf_counter()]
        pts = decode(msg)
        t.append(time.perf_counter())
        pts = range_filter(pts, a.min_range, a.max_range)
        t.append(time.perf_counter())
        features, counts, coords = pillarize(pts, pc)
        t.append(time.perf_counter())
        cls, box, dirs = network(net, features, counts, coords, w, h)
        t.append(time.perf_counter())
        boxes, scores, classes = box_decode(cls, box, dirs, anchors, cfg["score_threshold"])
        t.append(time.perf_counter())
        kept = nms(boxes, scores, classes, cfg, a.score_threshold)
        t.append(time.perf_counter())
        out = message(msg.header, boxes[kept], scores[kept], classes[kept], names)
        t.append(time.perf_counter())
        if it >= a.warmup:
            for s, t0, t1 in zip(STAGES, t, t[1:]):
                times[s].append((t1 - t0) * 1e3)
    stages = {s: statistics.median(v) for s, v in times.items()}
    total = statistics.median([sum(v) for v in zip(*times.values())])
    print(f"{len(pts)} points, {len(counts)} pillars, {len(scores)} candidates, {len(out.detections)} detections "
          f"(vision_msgs/Detection3DArray); torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {a.iters}:")
    for s in STAGES:
        print(f"  {s:<11} {stages[s]:8.2f} ms")
    print(f"  {'total':<11} {total:8.2f} ms")

    detections = [{"class": names[c], "score": float(s), "box": [float(v) for v in b]}
                  for b, s, c in zip(boxes[kept], scores[kept], classes[kept])]
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"stages_ms": stages, "total_ms": total, "threads": torch.get_num_threads(), "iters": a.iters,
                       "points": len(pts), "pillars": len(counts), "detections": detections}, f, indent=1)
    ok = True
    if a.pillar_dump:
        pillars_ok, d = pillar_parity(a.pillar_dump, features, counts, coords)
        ok &= pillars_ok
        if pillars_ok and np.array_equal(d["coords"], coords):
            diff = {k: float(np.abs(o.numpy() - d[k][0]).max()) for k, o in (("cls", cls), ("boxes", box), ("dir", dirs))}
            print(f"network parity on the same pillars (ours: unfolded graph): max |head output diff| {diff}")
    if a.compare:
        ok &= compare(a.compare, detections)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
