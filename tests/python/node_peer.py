"""A second ROS 2 process (rclpy from the venv) that talks to
eloss_perception_node over loopback DDS, for tests/node_dds.rs.

  drive  NS KITTI_BIN  publish good and malformed clouds/images/camera infos,
                       wait for diagnostics that account for all of them
  listen NS SECONDS    subscribe to NS/points and NS/diagnostics (e.g. while a
                       bag is replayed) and report what arrived

Prints one JSON object on stdout; exits 1 with a message when a wait times out.
Waits are on matched peers and message content, never fixed sleeps.
"""
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField


def cloud_msg(xyzi, frame="velodyne"):
    m = PointCloud2()
    m.header.frame_id = frame
    m.height, m.width = 1, len(xyzi)
    m.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                for i, n in enumerate("x y z intensity".split())]
    m.is_bigendian, m.point_step, m.row_step = False, 16, 16 * len(xyzi)
    m.data = xyzi.astype("<f4").tobytes()
    m.is_dense = True
    return m


def cloud_f64_padded(xyzi):
    """x,y,z float64 + intensity uint8 in a 32-byte point, NaN rows included."""
    n = len(xyzi)
    dt = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f8", "<f8", "<f8", "u1"],
                   "offsets": [0, 8, 16, 24], "itemsize": 32})
    a = np.zeros(n, dtype=dt)
    for i, k in enumerate("xyz"):
        a[k] = xyzi[:, i]
    a["intensity"] = np.clip(xyzi[:, 3] * 255, 0, 255).astype("u1")
    a["x"][::10] = np.nan
    m = PointCloud2()
    m.header.frame_id = "velodyne"
    m.height, m.width = 1, n
    m.fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT64, count=1),
                PointField(name="y", offset=8, datatype=PointField.FLOAT64, count=1),
                PointField(name="z", offset=16, datatype=PointField.FLOAT64, count=1),
                PointField(name="intensity", offset=24, datatype=PointField.UINT8, count=1)]
    m.is_bigendian, m.point_step, m.row_step, m.is_dense = False, 32, 32 * n, False
    m.data = a.tobytes()
    return m, n - len(a["x"][::10])


def image_msg(w, h, encoding, bpp):
    m = Image()
    m.header.frame_id = "camera"
    m.height, m.width, m.encoding, m.step = h, w, encoding, w * bpp
    m.data = (np.arange(w * h * bpp) % 251).astype("u1").tobytes()
    return m


def camera_info_msg():
    m = CameraInfo()
    m.header.frame_id = "camera"
    m.width, m.height = 1242, 375
    m.distortion_model = "plumb_bob"
    m.d = [0.0] * 5
    m.k = [721.5, 0.0, 609.6, 0.0, 721.5, 172.9, 0.0, 0.0, 1.0]
    m.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    m.p = [721.5, 0.0, 609.6, 44.9, 0.0, 721.5, 172.9, 0.2, 0.0, 0.0, 1.0, 0.003]
    return m


class Peer:
    def __init__(self, ns):
        rclpy.init()
        self.node = rclpy.create_node("eloss_test_peer", namespace=ns)
        self.ns = ns
        self.diag = None
        self.node.create_subscription(DiagnosticArray, f"{ns}/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg):
        self.diag = {s.name.split(": ", 1)[-1]: {"level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                                                 "message": s.message,
                                                 **{kv.key: kv.value for kv in s.values}} for s in msg.status}

    def spin_until(self, cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if cond():
                return
        print(f"timeout after {timeout}s waiting for {what}; last diagnostics: {self.diag}", file=sys.stderr)
        sys.exit(1)

    def close(self):
        self.node.destroy_node()
        rclpy.shutdown()


def count(diag, stream, key):
    return int(diag[stream][key]) if diag and stream in diag else -1


def drive(ns, kitti_bin):
    xyzi = np.fromfile(kitti_bin, dtype="<f4").reshape(-1, 4)
    p = Peer(ns)
    pub_pts = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    pub_img = p.node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    pub_info = p.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
    for pub, what in ((pub_pts, "points"), (pub_img, "image"), (pub_info, "camera_info")):
        p.spin_until(lambda: pub.get_subscription_count() > 0, 30, f"the node to subscribe {what}")
    p.spin_until(lambda: p.diag is not None, 30, "first diagnostics")
    result = {}

    def send_and_wait(pub, msg, stream, key, expect, what):
        pub.publish(msg)
        # best-effort QoS: resend until the node has counted it (sensor-data semantics)
        end = time.monotonic() + 20
        while count(p.diag, stream, key) < expect and time.monotonic() < end:
            pub.publish(msg)
            p.spin_until(lambda: True, 1, "")
            t = time.monotonic() + 0.3
            while time.monotonic() < t and count(p.diag, stream, key) < expect:
                rclpy.spin_once(p.node, timeout_sec=0.05)
        if count(p.diag, stream, key) < expect:
            print(f"node never counted {what}: {p.diag}", file=sys.stderr)
            sys.exit(1)
        result[what] = dict(p.diag[stream])

    send_and_wait(pub_pts, cloud_msg(xyzi), "point cloud input", "frames_processed", 1, "kitti_cloud")
    bad = cloud_msg(xyzi)
    bad.data = bad.data[: len(bad.data) // 2]  # row_step promises twice as much
    send_and_wait(pub_pts, bad, "point cloud input", "frames_malformed", 1, "truncated_cloud")
    no_xyz = cloud_msg(xyzi[:10])
    no_xyz.fields = no_xyz.fields[3:]
    send_and_wait(pub_pts, no_xyz, "point cloud input", "frames_malformed", 2, "cloud_without_xyz")
    padded, finite = cloud_f64_padded(xyzi)
    processed = count(p.diag, "point cloud input", "frames_processed")
    send_and_wait(pub_pts, padded, "point cloud input", "frames_processed", processed + 1, "f64_padded_cloud")
    result["f64_padded_cloud"]["expected_points"] = finite

    send_and_wait(pub_img, image_msg(64, 48, "bgr8", 3), "image input", "frames_processed", 1, "bgr8_image")
    send_and_wait(pub_img, image_msg(64, 48, "yuv422_yuy2", 2), "image input", "frames_malformed", 1, "unknown_encoding")
    processed = count(p.diag, "image input", "frames_processed")
    send_and_wait(pub_img, image_msg(32, 16, "mono16", 2), "image input", "frames_processed", processed + 1, "mono16_image")
    send_and_wait(pub_info, camera_info_msg(), "camera info input", "frames_processed", 1, "camera_info")
    bad_info = camera_info_msg()
    bad_info.k = [0.0] * 9
    bad_info.p = [0.0] * 12
    send_and_wait(pub_info, bad_info, "camera info input", "frames_malformed", 1, "uncalibrated_camera_info")
    print(json.dumps(result))
    p.close()


def listen(ns, seconds):
    p = Peer(ns)
    got = []
    p.node.create_subscription(
        PointCloud2, f"{ns}/points",
        lambda m: got.append({"width": m.width, "point_step": m.point_step, "bytes": len(m.data),
                              "stamp": m.header.stamp.sec * 10**9 + m.header.stamp.nanosec,
                              "sum_x": float(np.frombuffer(bytes(m.data), "<f4").reshape(-1, 4)[:, 0].sum())}),
        10)
    print("ready", file=sys.stderr, flush=True)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        rclpy.spin_once(p.node, timeout_sec=0.05)
    print(json.dumps({"clouds": got, "diagnostics": p.diag}))
    p.close()


if __name__ == "__main__":
    {"drive": drive, "listen": listen}[sys.argv[1]](*sys.argv[2:])
