"""A second ROS 2 process (rclpy from the venv) that measures the node's
sustained rate (issue 15 item 3): a full simulated 64-beam sweep published as
PointCloud2 at a fixed rate for a fixed time, best-effort sensor QoS, no
camera, no service calls. Prints one JSON line: clouds sent, frames received /
processed / dropped by the node (its diagnostics), detections received, and
the latency from each cloud's stamp to the arrival of its detections.

  python rate_peer.py rate NS CLOUD_BIN RATE_HZ SECONDS
"""
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from node_peer import Peer, cloud_msg, counter, next_due


def rate(ns, cloud_bin, rate_hz, seconds):
    from eloss_perception_msgs.msg import Detection3DArray

    rate_hz, seconds = float(rate_hz), float(seconds)
    xyzi = np.fromfile(cloud_bin, dtype="<f4").reshape(-1, 4)
    p = Peer(ns)
    latencies = []

    def on_detections(m):
        stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        latencies.append(time.time() - stamp)

    p.node.create_subscription(Detection3DArray, f"{ns}/annotated_detections", on_detections, 100)
    pub = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    p.spin_until(lambda: pub.get_subscription_count() > 0, 60, "the node to subscribe points")
    stream = "point cloud input"
    p.spin_until(lambda: p.diag is not None and stream in p.diag, 60, "the node's diagnostics")
    # the detector loads in the background: wait until a first cloud is processed
    cloud = cloud_msg(xyzi, frame="lidar_top")
    deadline = time.monotonic() + 120
    while counter(p.diag, stream, "frames_processed") == 0:
        if time.monotonic() > deadline:
            raise SystemExit("the node processed no cloud within 120 s")
        pub.publish(cloud)
        rclpy.spin_once(p.node, timeout_sec=0.5)
    end_warm = time.monotonic() + 2.0
    while time.monotonic() < end_warm:
        rclpy.spin_once(p.node, timeout_sec=0.1)
    base = {k: counter(p.diag, stream, k) for k in ("frames_received", "frames_processed", "frames_dropped")}
    latencies.clear()

    period = 1.0 / rate_hz
    t_start = time.monotonic()
    next_cloud, sent = t_start, 0
    while time.monotonic() - t_start < seconds:
        now = time.monotonic()
        if now >= next_cloud:
            next_cloud = next_due(next_cloud, period, now)
            wall = time.time()
            cloud.header.stamp.sec, cloud.header.stamp.nanosec = int(wall), int((wall % 1) * 1e9)
            pub.publish(cloud)
            sent += 1
        rclpy.spin_once(p.node, timeout_sec=max(0.0, next_cloud - time.monotonic()))
    duration = time.monotonic() - t_start

    def delta(k):
        return counter(p.diag, stream, k) - base[k]

    # settle: every received cloud processed or dropped
    end = time.monotonic() + 30
    while time.monotonic() < end and not (delta("frames_received") > 0 and
                                         delta("frames_processed") + delta("frames_dropped") >= delta("frames_received")):
        rclpy.spin_once(p.node, timeout_sec=0.1)
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    print(json.dumps({
        "rate_hz": rate_hz,
        "points": int(len(xyzi)),
        "clouds_sent": sent,
        "duration_s": duration,
        "frames_received": delta("frames_received"),
        "frames_processed": delta("frames_processed"),
        "frames_dropped": delta("frames_dropped"),
        "detections_received": int(len(latencies)),
        "latency_p50_s": float(np.percentile(lat, 50)),
        "latency_p99_s": float(np.percentile(lat, 99)),
        "latency_max_s": float(lat.max()),
        "detector": p.diag.get("detector"),
    }), flush=True)
    p.close()


if __name__ == "__main__":
    {"rate": rate}[sys.argv[1]](*sys.argv[2:])
