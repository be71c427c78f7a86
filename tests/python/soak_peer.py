"""A second ROS 2 process (rclpy from the venv) that soaks eloss_perception_node
over loopback DDS, for tests/soak_dds.rs and scripts/soak.sh.

  soak NS CLOUD_BIN IMAGE_PNG RATE_HZ CLOUDS NODE_PID CSV_OUT
        publish CLOUDS clouds (KITTI .bin layout) at RATE_HZ, each with a camera
        image and CameraInfo of the same stamp (wall-clock time, so latency is
        arrival - stamp); meanwhile call ~/relabel (2 whole-image boxes on the
        image) every 0.5 s and ~/add_classes (one of 3 names, no wait) every 5 s,
        each call only when the previous one of its kind was answered.
        Every second a row goes to CSV_OUT: time, node RSS (VmRSS of NODE_PID),
        clouds sent, detection messages received, the node's own counters.
        At the end wait until the node has accounted for every cloud it
        received (processed + dropped), then print one JSON object: counts,
        latency percentiles, RSS after warm-up and at the end, answers.

Exits 1 with a message when a wait times out.
"""
import csv
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from load_peer import rgb_image, whole_image_request
from node_peer import KITTI_P2, Peer, camera_info_msg, cloud_msg, counter, next_due


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def soak(ns, cloud_bin, image_png, rate_hz, clouds, node_pid, csv_out):
    from eloss_perception_msgs.msg import Detection3DArray
    from eloss_perception_msgs.srv import AddClasses, RelabelObjects
    from PIL import Image as PILImage

    rate_hz, clouds, node_pid = float(rate_hz), int(clouds), int(node_pid)
    xyzi = np.fromfile(cloud_bin, dtype="<f4").reshape(-1, 4)
    rgb = np.asarray(PILImage.open(image_png).convert("RGB"))
    p = Peer(ns)
    latencies, received = [], [0]

    def on_detections(m):
        now = time.time()
        stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        received[0] += 1
        latencies.append(now - stamp)

    p.node.create_subscription(Detection3DArray, f"{ns}/annotated_detections", on_detections, 100)
    pub_pts = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    pub_img = p.node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    pub_info = p.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
    base = f"{ns}/eloss_perception_node"
    relabel = p.node.create_client(RelabelObjects, f"{base}/relabel")
    add = p.node.create_client(AddClasses, f"{base}/add_classes")
    for pub, what in ((pub_pts, "points"), (pub_img, "image"), (pub_info, "camera_info")):
        p.spin_until(lambda: pub.get_subscription_count() > 0, 60, f"the node to subscribe {what}")
    p.spin_until(lambda: relabel.service_is_ready() and add.service_is_ready(), 60, "the relabel and add_classes services")
    p.spin_until(lambda: p.diag is not None and "gdc" in p.diag and p.diag["gdc"]["message"].endswith("classes"), 120,
                 "GDC loaded")

    info = camera_info_msg()
    info.width, info.height = rgb.shape[1], rgb.shape[0]
    info.p = KITTI_P2
    cloud = cloud_msg(xyzi, frame="lidar_top")
    image = rgb_image(rgb)
    relabel_req = whole_image_request(rgb, 2)
    names = ["soak_class_a", "soak_class_b", "soak_class_c"]
    answers = {"relabel_ok": 0, "relabel_busy": 0, "relabel_failed": 0, "add_ok": 0, "add_failed": 0}
    errors = set()
    pending = {"relabel": None, "add": None}

    def collect(kind, fut):
        r = fut.result()
        if kind == "relabel":
            key = "relabel_ok" if r.success else ("relabel_busy" if r.error.startswith("busy") else "relabel_failed")
        else:
            key = "add_ok" if r.success else "add_failed"
        answers[key] += 1
        if not r.success:
            errors.add(r.error[:200])

    period = 1.0 / rate_hz
    t_start = time.monotonic()
    next_cloud, next_relabel, next_add, next_row = t_start, t_start + 1.0, t_start + 2.0, t_start
    sent, add_i = 0, 0
    rows = []
    with open(csv_out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["t_s", "rss_mb", "clouds_sent", "detections_received", "frames_received", "frames_processed",
                      "frames_dropped"])

        def row(now):
            stream = "point cloud input"
            r = [round(now - t_start, 3), round(rss_mb(node_pid), 2), sent, received[0],
                 counter(p.diag, stream, "frames_received"), counter(p.diag, stream, "frames_processed"),
                 counter(p.diag, stream, "frames_dropped")]
            out.writerow(r)
            f.flush()
            rows.append(r)

        while sent < clouds:
            now = time.monotonic()
            if now >= next_cloud:
                next_cloud = next_due(next_cloud, period, now)
                wall = time.time()
                sec, nsec = int(wall), int((wall % 1) * 1e9)
                for m in (info, image, cloud):
                    m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
                pub_info.publish(info)
                pub_img.publish(image)
                pub_pts.publish(cloud)
                sent += 1
            for kind in ("relabel", "add"):
                fut = pending[kind]
                if fut is not None and fut.done():
                    collect(kind, fut)
                    pending[kind] = None
            if now >= next_relabel and pending["relabel"] is None:
                next_relabel = now + 0.5
                pending["relabel"] = relabel.call_async(relabel_req)
            if now >= next_add and pending["add"] is None:
                next_add = now + 5.0
                pending["add"] = add.call_async(AddClasses.Request(class_names=[names[add_i % len(names)]], wait=False))
                add_i += 1
            if now >= next_row:
                next_row += 1.0
                row(now)
            rclpy.spin_once(p.node, timeout_sec=max(0.0, min(next_cloud, next_row) - time.monotonic()))
        duration = time.monotonic() - t_start

        # the node accounts for every cloud it received: processed or dropped, none queued
        stream = "point cloud input"

        def settled():
            d = p.diag
            got = counter(d, stream, "frames_received")
            return got > 0 and counter(d, stream, "frames_processed") + counter(d, stream, "frames_dropped") >= got

        end = time.monotonic() + 30
        while time.monotonic() < end and not (settled() and all(v is None or v.done() for v in pending.values())):
            rclpy.spin_once(p.node, timeout_sec=0.1)
        for kind, fut in pending.items():
            if fut is not None and fut.done():
                collect(kind, fut)
        row(time.monotonic())

    d = p.diag
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    warm = [r for r in rows if r[0] >= min(30.0, duration / 3)]
    print(json.dumps({
        "clouds_sent": sent,
        "duration_s": duration,
        "send_rate_hz": sent / duration,
        "detections_received": received[0],
        "frames_received": counter(d, stream, "frames_received"),
        "frames_processed": counter(d, stream, "frames_processed"),
        "frames_dropped": counter(d, stream, "frames_dropped"),
        "settled": settled(),
        "latency_p50_s": float(np.percentile(lat, 50)),
        "latency_p99_s": float(np.percentile(lat, 99)),
        "latency_max_s": float(lat.max()),
        "rss_after_warmup_mb": warm[0][1] if warm else None,
        "rss_end_mb": rows[-1][1],
        "rss_max_mb": max(r[1] for r in rows),
        "answers": answers,
        "errors": sorted(errors),
        "workers": d.get("workers"),
        "detector": d.get("detector"),
    }), flush=True)
    p.close()


if __name__ == "__main__":
    {"soak": soak}[sys.argv[1]](*sys.argv[2:])
