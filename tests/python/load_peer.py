"""A second ROS 2 process (rclpy from the venv) that puts service load on
eloss_perception_node over loopback DDS, for tests/service_load_dds.rs.

  service_load NS IMAGE_PNG BOXES N
                       send N add_classes requests with wait (distinct new class names)
                       and N relabel requests of BOXES whole-image boxes on IMAGE_PNG, all
                       at once; wait until every relabel request is answered (busy, done
                       or failed: none may hang) and the node's workers diagnostics are
                       OK, then print one JSON line (flushed) and keep the add_classes
                       waits open until killed (the test then stops the node)
  relabel_during_detection NS CLOUD_BIN IMAGE_PNG BOXES
                       publish a camera frame and, at 10 Hz, clouds with fresh stamps;
                       once annotated detections flow, call relabel with BOXES whole-image
                       boxes and record when annotated detections arrive while it runs;
                       print one JSON object

Exits 1 with a message when a wait times out.
"""
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from node_peer import KITTI_P2, Peer, camera_info_msg, cloud_msg, count, follow_bank_status


def rgb_image(rgb, stamp=(0, 0)):
    m = Image()
    m.header.frame_id = "camera"
    m.header.stamp.sec, m.header.stamp.nanosec = stamp
    m.height, m.width = rgb.shape[:2]
    m.encoding, m.step = "rgb8", 3 * rgb.shape[1]
    m.data = rgb.tobytes()
    return m


def whole_image_request(rgb, boxes):
    from eloss_perception_msgs.msg import BoundingBox2D
    from eloss_perception_msgs.srv import RelabelObjects
    req = RelabelObjects.Request()
    req.source = RelabelObjects.Request.SOURCE_EXPLICIT_IMAGE
    req.image = rgb_image(rgb)
    h, w = rgb.shape[:2]
    req.boxes_2d = [BoundingBox2D(x_min=float(i % 7), y_min=0.0, x_max=float(w), y_max=float(h)) for i in range(int(boxes))]
    return req


def service_load(ns, image_png, boxes, n):
    from eloss_perception_msgs.srv import AddClasses, RelabelObjects
    from PIL import Image as PILImage

    p = Peer(ns)
    base = f"{ns}/eloss_perception_node"
    # a request queue deeper than the burst (rclpy's default keeps 10)
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    deep = QoSProfile(depth=4 * int(n), reliability=ReliabilityPolicy.RELIABLE)
    add = p.node.create_client(AddClasses, f"{base}/add_classes", qos_profile=deep)
    relabel = p.node.create_client(RelabelObjects, f"{base}/relabel", qos_profile=deep)
    statuses = []
    follow_bank_status(p, base, lambda m: statuses.append(list(m.classes)))
    p.spin_until(lambda: add.service_is_ready() and relabel.service_is_ready(), 30, "the add_classes and relabel services")
    p.spin_until(lambda: statuses and statuses[-1], 60, "the loaded GDC bank on gdc_bank")
    # one answered call on each first: the node's responses reach this client
    warm = [add.call_async(AddClasses.Request(class_names=[])), relabel.call_async(RelabelObjects.Request(source=255))]
    p.spin_until(lambda: all(f.done() for f in warm), 30, "answers to the first calls")
    rgb = np.asarray(PILImage.open(image_png).convert("RGB"))
    req = whole_image_request(rgb, boxes)
    t = time.monotonic()
    adds = [add.call_async(AddClasses.Request(class_names=[f"load_class_{i}"], wait=True)) for i in range(int(n))]
    relabels = [relabel.call_async(req) for _ in range(int(n))]
    p.spin_until(lambda: all(f.done() for f in relabels), 120, "an answer to every relabel request")
    relabel_s = time.monotonic() - t
    p.spin_until(lambda: p.diag and "workers" in p.diag and p.diag["workers"]["level"] == 0, 30, "workers diagnostics OK")
    answers = [f.result() for f in relabels]
    add_answers = [f.result() for f in adds if f.done()]
    out = {
        "relabel_s": relabel_s,
        "relabel_ok": sum(a.success for a in answers),
        "relabel_busy": sum(a.error.startswith("busy") for a in answers),
        "relabel_errors": sorted({a.error for a in answers if not a.success}),
        "labels_per_answer": sorted({len(a.labels) for a in answers if a.success}),
        "add_answered": len(add_answers),
        "add_busy": sum(a.error.startswith("busy") for a in add_answers),
        "add_errors": sorted({a.error for a in add_answers if not a.success}),
        "workers": p.diag["workers"],
        "gdc": p.diag["gdc"],
    }
    print(json.dumps(out), flush=True)
    # the add_classes waits stay open: the node is stopped under this load
    while True:
        rclpy.spin_once(p.node, timeout_sec=0.1)


def relabel_during_detection(ns, cloud_bin, image_png, boxes):
    from eloss_perception_msgs.msg import Detection3DArray
    from eloss_perception_msgs.srv import RelabelObjects
    from PIL import Image as PILImage

    xyzi = np.fromfile(cloud_bin, dtype="<f4").reshape(-1, 4)
    rgb = np.asarray(PILImage.open(image_png).convert("RGB"))
    p = Peer(ns)
    arrivals = []
    p.node.create_subscription(Detection3DArray, f"{ns}/annotated_detections",
                               lambda m: arrivals.append((time.monotonic(), sum(d.has_gdc for d in m.detections))), 10)
    pub_pts = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    pub_img = p.node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    pub_info = p.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
    client = p.node.create_client(RelabelObjects, f"{ns}/eloss_perception_node/relabel")
    for pub, what in ((pub_pts, "points"), (pub_img, "image"), (pub_info, "camera_info")):
        p.spin_until(lambda: pub.get_subscription_count() > 0, 30, f"the node to subscribe {what}")
    p.spin_until(client.service_is_ready, 30, "the relabel service")
    p.spin_until(lambda: p.diag is not None and "gdc" in p.diag and p.diag["gdc"]["message"].endswith("classes"), 60,
                 "GDC loaded")
    info = camera_info_msg()
    info.width, info.height = rgb.shape[1], rgb.shape[0]
    info.p = KITTI_P2
    cloud = cloud_msg(xyzi, frame="lidar_top")
    period, next_cloud, sec = 0.1, time.monotonic(), 2000

    def publish_frame():
        # image and camera info with the cloud's stamp: auto relabelling finds the image at once
        nonlocal next_cloud, sec
        if time.monotonic() < next_cloud:
            return
        next_cloud += period
        sec += 1
        stamp = (sec, 0)
        info.header.stamp.sec, info.header.stamp.nanosec = stamp
        pub_info.publish(info)
        pub_img.publish(rgb_image(rgb, stamp))
        cloud.header.stamp.sec, cloud.header.stamp.nanosec = stamp
        pub_pts.publish(cloud)

    def spin_publishing(cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            publish_frame()
            rclpy.spin_once(p.node, timeout_sec=0.01)
        if not cond():
            print(f"timeout after {timeout}s waiting for {what}; diagnostics {p.diag}", file=sys.stderr)
            sys.exit(1)

    spin_publishing(lambda: sum(1 for _, g in arrivals if g > 0) >= 3, 90, "labelled annotated detections")
    t0 = time.monotonic()
    fut = client.call_async(whole_image_request(rgb, boxes))
    spin_publishing(fut.done, 120, "the relabel response")
    t1 = time.monotonic()
    r = fut.result()
    during = [a for a, _ in arrivals if t0 <= a <= t1]
    stamps = [t0] + during + [t1]
    print(json.dumps({
        "relabel_s": t1 - t0, "success": r.success, "error": r.error, "labels": len(r.labels),
        "during": len(during), "labelled_during": sum(1 for a, g in arrivals if t0 <= a <= t1 and g > 0),
        "max_gap_s": max(b - a for a, b in zip(stamps, stamps[1:])),
        "detector": p.diag.get("detector"),
    }))
    p.close()


if __name__ == "__main__":
    {"service_load": service_load, "relabel_during_detection": relabel_during_detection}[sys.argv[1]](*sys.argv[2:])
