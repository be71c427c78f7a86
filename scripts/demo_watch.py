"""The demo's watcher: an rclpy peer that follows eloss_perception_node while
`eloss replay` plays the demo's bag (src/demo/story.rs), shows a progress line,
calls ~/relabel once by detection id at the end, and writes what the node
published as JSON for `eloss demo report` (src/demo/summary.rs).

  demo_watch.py --ns NS --story DIR --out RECORD.json [--diagnostics TOPIC] [--clock TOPIC] [--quiet]
                -- REPLAY COMMAND...

NS is the node's namespace ("/" for the demo). The replay command is started
once the node's topics and relabel service are matched; after it ends the
watcher waits until the node has been quiet for 3 s (at most 20 s), then calls
~/relabel for one labelled detection of the newest frame that has one, and
waits for one more /diagnostics message. Exits 1 with a message when the node
never appears or the replay fails.
"""
import argparse
import json
import subprocess
import sys
import time

import rclpy
from rclpy.qos import qos_profile_sensor_data
from diagnostic_msgs.msg import DiagnosticArray
from rosgraph_msgs.msg import Clock
from eloss_perception_msgs.msg import Detection3DArray, ElossReport
from eloss_perception_msgs.srv import RelabelObjects


def stamp_ns(stamp):
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", default="/")
    ap.add_argument("--story", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--diagnostics", default="/diagnostics", help="the node's diagnostics topic")
    ap.add_argument("--clock", default="/clock", help="the replay's clock topic (for the progress line)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("replay", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    replay_cmd = a.replay[1:] if a.replay[:1] == ["--"] else a.replay
    if not replay_cmd:
        sys.exit("give the replay command after --")
    with open(f"{a.story}/story.json") as f:
        story = json.load(f)
    stamps = [fr["stamp_ns"] for fr in story["frames"]]
    index_of = {s: i for i, s in enumerate(stamps)}
    period = 1e9 / story["config"]["hz"]
    a_start, a_end = story["anomaly_start"], story["anomaly_end"]
    n_kitti = story["config"]["kitti_frames"]
    ns = a.ns.rstrip("/")
    node_base = f"{ns}/eloss_perception_node"

    rclpy.init()
    node = rclpy.create_node("eloss_demo_watch")
    frames = {}
    state = {"diag": None, "diag_count": 0, "clock": None, "last_msg": time.monotonic()}

    def frame(s):
        return frames.setdefault(s, {"stamp_ns": s, "eloss": None, "detections": None})

    def on_eloss(m):
        frame(stamp_ns(m.header.stamp))["eloss"] = {
            "score": m.anomaly_score, "threshold": m.threshold, "eloss": m.eloss,
            "deviation_factor": m.deviation_factor, "anomaly": m.anomaly,
            "anomalous_frame": m.anomalous_frame, "anomaly_type": m.anomaly_type}
        state["last_msg"] = time.monotonic()

    def on_dets(m):
        dets = []
        for d in m.detections:
            p = d.pose.position
            prob = max((c.probability for c in d.gdc_probabilities if c.class_name == d.gdc_label), default=0.0)
            dets.append({"id": d.id, "class_name": d.class_name, "score": float(d.score),
                         "center": [p.x, p.y, p.z], "size": [d.size.x, d.size.y, d.size.z], "yaw": d.yaw,
                         "has_gdc": d.has_gdc, "gdc_label": d.gdc_label, "gdc_probability": float(prob),
                         # the open-set test (JSON has no NaN/inf: distance null when
                         # absent, and the comparison with the threshold made here)
                         "gdc_unknown": d.gdc_unknown, "gdc_nearest_class": d.gdc_nearest_class,
                         "gdc_nearest_distance": None if d.gdc_nearest_distance != d.gdc_nearest_distance
                         else float(d.gdc_nearest_distance),
                         "gdc_beyond_threshold": bool(d.gdc_nearest_distance > d.gdc_nearest_threshold)})
        frame(stamp_ns(m.header.stamp))["detections"] = dets
        state["last_msg"] = time.monotonic()

    def on_diag(m):
        state["diag"] = {s.name: {kv.key: kv.value for kv in s.values} for s in m.status}
        state["diag_count"] += 1

    def on_clock(m):
        state["clock"] = stamp_ns(m.clock)

    node.create_subscription(ElossReport, f"{ns}/eloss", on_eloss, 50)
    dets_sub_topic = f"{ns}/annotated_detections"
    node.create_subscription(Detection3DArray, dets_sub_topic, on_dets, 50)
    node.create_subscription(DiagnosticArray, a.diagnostics, on_diag, 10)
    node.create_subscription(Clock, a.clock, on_clock, qos_profile_sensor_data)
    client = node.create_client(RelabelObjects, f"{node_base}/relabel")

    def spin_for(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)

    end = time.monotonic() + 90
    while time.monotonic() < end and not (client.service_is_ready()
                                          and node.count_publishers(dets_sub_topic) > 0
                                          and node.count_publishers(f"{ns}/eloss") > 0):
        rclpy.spin_once(node, timeout_sec=0.1)
    if not client.service_is_ready():
        sys.exit("the node's relabel service never appeared")

    def progress():
        done = sorted(index_of[s] for s, f in frames.items() if s in index_of and (f["eloss"] or f["detections"] is not None))
        if state["clock"] is not None:
            bag_frame = min(max(int(round((state["clock"] - stamps[0]) / period)), 0), len(stamps) - 1)
        else:
            bag_frame = 0
        last = frames.get(stamps[done[-1]]) if done else None
        where = "real KITTI" if bag_frame < n_kitti else ("sim, FAULT" if a_start <= bag_frame < a_end else "sim")
        line = f"\rbag frame {bag_frame + 1:3d}/{len(stamps)} ({where:10s}) | node published {len(done):3d}"
        if last and last["eloss"]:
            e = last["eloss"]
            line += f" | score {e['score']:7.2f} / {e['threshold']:.2f} | {'ALARM' if e['anomaly'] else 'ok   '}"
        if last and last["detections"]:
            labels = [d["gdc_label"] if d["has_gdc"] else "-" for d in last["detections"]][:5]
            line += " | GDC " + ",".join(labels)
        sys.stderr.write(line[:200].ljust(120))
        sys.stderr.flush()

    t0 = time.monotonic()
    proc = subprocess.Popen(replay_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last_print = 0.0
    while proc.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.05)
        if not a.quiet and time.monotonic() - last_print > 0.25:
            progress()
            last_print = time.monotonic()
    replay_s = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"\nreplay failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    quiet_end = time.monotonic() + 20
    while time.monotonic() < quiet_end and time.monotonic() - state["last_msg"] < 3.0:
        rclpy.spin_once(node, timeout_sec=0.05)
    if not a.quiet:
        progress()
        sys.stderr.write("\n")

    relabel = None
    candidates = [(s, f) for s, f in sorted(frames.items()) if f["detections"]]
    labelled = [(s, f) for s, f in candidates if any(d["has_gdc"] for d in f["detections"])]
    pick = (labelled or candidates)[-1:] if candidates else []
    if pick:
        s, f = pick[0]
        d = next((d for d in f["detections"] if d["has_gdc"]), f["detections"][0])
        req = RelabelObjects.Request()
        req.source = RelabelObjects.Request.SOURCE_RECENT_FRAME
        req.frame_stamp.sec, req.frame_stamp.nanosec = s // 1_000_000_000, s % 1_000_000_000
        req.detection_ids = [d["id"]]
        t = time.monotonic()
        fut = client.call_async(req)
        end = time.monotonic() + 60
        while time.monotonic() < end and not fut.done():
            rclpy.spin_once(node, timeout_sec=0.05)
        if fut.done() and fut.result() is not None:
            r = fut.result()
            relabel = {"stamp_ns": s, "detection_ids": [d["id"]], "success": r.success, "error": r.error,
                       "call_ms": 1000 * (time.monotonic() - t),
                       "labels": [{"object_id": l.object_id, "valid": l.valid, "error": l.error, "label": l.label,
                                   "probabilities": sorted(([c.class_name, float(c.probability)] for c in l.probabilities),
                                                           key=lambda x: -x[1])} for l in r.labels]}
        else:
            relabel = {"stamp_ns": s, "detection_ids": [d["id"]], "success": False, "error": "no answer within 60 s",
                       "call_ms": 60000.0, "labels": []}
    seen = state["diag_count"]
    end = time.monotonic() + 10
    while time.monotonic() < end and state["diag_count"] == seen:
        rclpy.spin_once(node, timeout_sec=0.05)
    record = {"frames": sorted(frames.values(), key=lambda f: f["stamp_ns"]), "diagnostics": state["diag"] or {},
              "relabel": relabel, "replay_s": replay_s}
    with open(a.out, "w") as f:
        json.dump(record, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
