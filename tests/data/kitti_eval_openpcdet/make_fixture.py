"""Writes the KITTI eval parity fixture (gt/, dt/) and the AP values that
OpenPCDet's own evaluator computes for it (expected.json).

Not run by the test suite: it needs OpenPCDet's
pcdet/datasets/kitti/kitti_object_eval_python/ (eval.py, rotate_iou.py,
kitti_common.py), which is not part of this repository. How it was run is in
docs/kitti_eval.md ("Parity with OpenPCDet").

    NUMBA_ENABLE_CUDASIM=1 python make_fixture.py OPENPCDET_EVAL_DIR OUT_DIR
"""
import json
import math
import os
import sys
import types

import numpy as np

SEED = 18
N_FRAMES = 14
THRESHOLDS = (0.25, 0.5, 0.7)
MARGIN = 2e-3  # no overlap this close to a threshold (f32 vs f64 IoU)

DIMS = {  # h, w, l
    "Car": (1.5, 1.6, 3.9), "Van": (2.2, 1.9, 5.0), "Truck": (3.2, 2.5, 10.0),
    "Pedestrian": (1.75, 0.6, 0.8), "Person_sitting": (1.2, 0.6, 0.9),
    "Cyclist": (1.7, 0.6, 1.8),
}


def load_openpcdet(path):
    """Imports OpenPCDet's kitti_object_eval_python as a package; skimage
    (used only for images by kitti_common) is stubbed."""
    sys.modules.setdefault("skimage", types.ModuleType("skimage"))
    sys.modules["skimage"].io = types.ModuleType("skimage.io")
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    name = os.path.basename(os.path.abspath(path))
    ev = __import__(name + ".eval", fromlist=["eval"])
    kc = __import__(name + ".kitti_common", fromlist=["kitti_common"])
    return ev, kc


def wrap(a):
    return (a + math.pi) % (2 * math.pi) - math.pi


def gt_object(rng, cls):
    h, w, l = (d * rng.uniform(0.9, 1.1) for d in DIMS[cls])
    x, z = rng.uniform(-15, 15), rng.uniform(5, 50)
    y = rng.uniform(1.4, 1.9)
    ry = rng.uniform(-math.pi, math.pi)
    # 2D height spans every difficulty's limit (25/40 px); some exactly at 40
    px_h = float(rng.choice([rng.uniform(15, 120), 40.0, rng.uniform(26, 39)]))
    px_w = px_h * rng.uniform(0.4, 1.6)
    x1, y1 = rng.uniform(0, 1200 - px_w), rng.uniform(120, 370 - px_h)
    return {
        "name": cls, "trunc": float(rng.choice([0.0, 0.0, 0.0, 0.1, 0.2, 0.4, 0.6])),
        "occ": int(rng.choice([0, 0, 0, 1, 2, 3])), "alpha": wrap(ry - math.atan2(x, z)),
        "bbox": [x1, y1, x1 + px_w, y1 + px_h], "hwl": [h, w, l], "xyz": [x, y, z], "ry": ry,
    }


def jitter(rng, g, scale):
    d = dict(g)
    x1, y1, x2, y2 = g["bbox"]
    bw, bh = x2 - x1, y2 - y1
    d["bbox"] = [x1 + rng.normal(0, scale * 0.04) * bw, y1 + rng.normal(0, scale * 0.04) * bh,
                 x2 + rng.normal(0, scale * 0.04) * bw, y2 + rng.normal(0, scale * 0.04) * bh]
    d["hwl"] = [v * (1 + rng.normal(0, scale * 0.04)) for v in g["hwl"]]
    h, w, l = g["hwl"]
    xz = scale * 0.05 * (w + l) / 2  # position error relative to the object's size
    d["xyz"] = [v + rng.normal(0, s) for v, s in zip(g["xyz"], (xz, scale * 0.03 * h, xz))]
    flip = math.pi if rng.uniform() < 0.1 else 0.0  # some boxes facing backwards (AOS)
    d["ry"] = wrap(g["ry"] + rng.normal(0, scale * 0.1) + flip)
    d["alpha"] = wrap(d["ry"] - math.atan2(d["xyz"][0], d["xyz"][2]))
    return d


def frame(rng):
    counts = {"Car": rng.integers(4, 9), "Van": rng.integers(0, 2), "Truck": rng.integers(0, 2),
              "Pedestrian": rng.integers(2, 5), "Person_sitting": rng.integers(0, 2),
              "Cyclist": rng.integers(1, 4)}
    gts = [gt_object(rng, c) for c, n in counts.items() for _ in range(n)]
    rng.shuffle(gts)
    for _ in range(rng.integers(0, 3)):
        x1, y1 = rng.uniform(0, 1000), rng.uniform(120, 300)
        gts.append({"name": "DontCare", "trunc": -1.0, "occ": -1, "alpha": -10.0,
                    "bbox": [x1, y1, x1 + rng.uniform(30, 150), y1 + rng.uniform(20, 60)],
                    "hwl": [-1.0, -1.0, -1.0], "xyz": [-1000.0, -1000.0, -1000.0], "ry": -10.0})
    return gts


def detections(rng, gts):
    dts = []
    for g in gts:
        if g["name"] == "DontCare":
            if rng.uniform() < 0.7:  # a false detection inside the DontCare region
                d = gt_object(rng, str(rng.choice(["Car", "Pedestrian", "Cyclist"])))
                x1, y1, x2, y2 = g["bbox"]
                d["bbox"] = [x1 + 2, y1 + 2, x2 - rng.uniform(2, 20), y2 - 2]
                dts.append(d)
            continue
        for _ in range(int(rng.choice([0, 1, 1, 1, 1, 2]))):
            d = jitter(rng, g, rng.uniform(0.2, 2.0))
            if rng.uniform() < 0.1:  # a class mistake (Van called Car, Cyclist called Pedestrian, ...)
                d["name"] = str(rng.choice(["Car", "Pedestrian", "Cyclist"]))
            elif d["name"] in ("Van", "Truck", "Person_sitting"):
                d["name"] = {"Van": "Car", "Truck": "Car", "Person_sitting": "Pedestrian"}[d["name"]]
                if rng.uniform() < 0.5:
                    continue
            dts.append(d)
    for _ in range(rng.integers(1, 4)):  # false positives anywhere
        dts.append(gt_object(rng, str(rng.choice(["Car", "Pedestrian", "Cyclist"]))))
    return dts


def line(o, score=None):
    vals = [o["name"], f"{o['trunc']:.2f}", str(o["occ"]), f"{o['alpha']:.2f}"]
    vals += [f"{v:.2f}" for v in o["bbox"] + o["hwl"] + o["xyz"]] + [f"{o['ry']:.2f}"]
    if score is not None:
        vals.append(f"{score:.4f}")
    return " ".join(vals)


def near_threshold(ev, gt_anno, dt_anno):
    """Indices of detections with an overlap (any metric, or DontCare
    coverage) within MARGIN of an evaluation threshold."""
    bad = set()
    if len(dt_anno["name"]) == 0 or len(gt_anno["name"]) == 0:
        return bad
    for metric in range(3):
        ov = ev.calculate_iou_partly([dt_anno], [gt_anno], metric, 1)[0][0]
        for t in THRESHOLDS:
            bad |= set(np.nonzero(np.abs(ov - t) < MARGIN)[0].tolist())
    dc = gt_anno["bbox"][gt_anno["name"] == "DontCare"]
    if len(dc):
        ov = ev.image_box_overlap(dt_anno["bbox"], dc, 0)
        for t in THRESHOLDS:
            bad |= set(np.nonzero(np.abs(ov - t) < MARGIN)[0].tolist())
    return bad


def main(eval_dir, out):
    ev, kc = load_openpcdet(eval_dir)
    rng = np.random.default_rng(SEED)
    os.makedirs(f"{out}/gt", exist_ok=True)
    os.makedirs(f"{out}/dt", exist_ok=True)
    used_scores = set()
    for i in range(N_FRAMES):
        gts = frame(rng)
        gt_path = f"{out}/gt/{i:06d}.txt"
        with open(gt_path, "w") as f:
            f.write("".join(line(g) + "\n" for g in gts))
        gt_anno = kc.get_label_anno(gt_path)
        dts = [] if i == N_FRAMES - 1 else detections(rng, gts)  # last frame: no detections
        for attempt in range(100):
            dt_path = f"{out}/dt/{i:06d}.txt"
            scores = []
            for _ in dts:
                s = round(float(rng.uniform(0.05, 0.99)), 4)
                while s in used_scores or s in scores:  # distinct scores: no ties
                    s = round(float(rng.uniform(0.05, 0.99)), 4)
                scores.append(s)
            with open(dt_path, "w") as f:
                f.write("".join(line(d, s) + "\n" for d, s in zip(dts, scores)))
            dt_anno = kc.get_label_anno(dt_path)
            bad = near_threshold(ev, gt_anno, dt_anno)
            if not bad:
                break
            for j in bad:
                dts[j] = jitter(rng, dts[j], 0.2)
        else:
            raise SystemExit(f"frame {i}: overlaps stay near a threshold")
        used_scores |= set(scores)
    ids = list(range(N_FRAMES))
    gt_annos = kc.get_label_annos(f"{out}/gt", ids)
    dt_annos = kc.get_label_annos(f"{out}/dt", ids)
    text, _ = ev.get_official_eval_result(gt_annos, dt_annos, [0, 1, 2])
    print(text)
    # the same call's arrays: get_official_eval_result's min_overlaps and do_eval
    overlap_0_7 = np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.7]] * 3)
    overlap_0_5 = np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.5],
                            [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
                            [0.5, 0.25, 0.25, 0.5, 0.25, 0.5]])
    min_overlaps = np.stack([overlap_0_7, overlap_0_5], axis=0)[:, :, [0, 1, 2]]
    res = ev.do_eval(gt_annos, dt_annos, [0, 1, 2], min_overlaps, True)
    names = ["bbox", "bev", "3d", "aos", "bbox_R40", "bev_R40", "3d_R40", "aos_R40"]
    expected = {"source": "OpenPCDet pcdet/datasets/kitti/kitti_object_eval_python/eval.py do_eval",
                "classes": ["Car", "Pedestrian", "Cyclist"],
                "overlap_sets": ["official", "loose"],
                "layout": "[class][difficulty Easy/Moderate/Hard][overlap set]",
                "text": text}
    for n, a in zip(names, res):
        expected[n] = np.asarray(a).tolist()
    with open(f"{out}/expected.json", "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
