"""A second ROS 2 process (rclpy from the venv) that talks to
eloss_perception_node while its GDC classifier is still loading (the test
slows the loader down with the `gdc_load` fail point), for
tests/fault_points_dds.rs.

  gdc_loading NS KITTI_BIN IMAGE_PNG BOXES
                       once the relabel service is up and the diagnostics say GDC is
                       loading: call relabel with the 2D BOXES "x0,y0,x1,y1;..." on
                       IMAGE_PNG without waiting for the answer; publish the cloud until
                       the detector diagnostics count a frame that auto relabelling
                       skipped; then wait for the relabel answer (with its call time and
                       the GDC diagnostics seen when it came), publish the cloud until
                       the next skipped frame has another reason than loading, and call
                       relabel once more

Prints one JSON object on stdout; exits 1 with a message when a wait times out.
Waits are on matched peers and message content, never fixed sleeps.
"""
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2

from node_peer import Peer, cloud_msg, count


def gdc_loading(ns, kitti_bin, image_png, boxes):
    from eloss_perception_msgs.msg import BoundingBox2D
    from eloss_perception_msgs.srv import RelabelObjects
    from PIL import Image as PILImage

    xyzi = np.fromfile(kitti_bin, dtype="<f4").reshape(-1, 4)
    rgb = np.asarray(PILImage.open(image_png).convert("RGB"))
    p = Peer(ns)
    client = p.node.create_client(RelabelObjects, f"{ns}/eloss_perception_node/relabel")
    pub = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    p.spin_until(lambda: client.service_is_ready() and pub.get_subscription_count() > 0
                 and p.diag is not None and "gdc" in p.diag, 60, "the relabel service, the cloud subscription and diagnostics")

    def request():
        req = RelabelObjects.Request()
        req.source = RelabelObjects.Request.SOURCE_EXPLICIT_IMAGE
        img = Image()
        img.height, img.width = rgb.shape[:2]
        img.encoding, img.step = "rgb8", 3 * rgb.shape[1]
        img.data = rgb.tobytes()
        req.image = img
        req.boxes_2d = [BoundingBox2D(x_min=a, y_min=b, x_max=c, y_max=d)
                        for a, b, c, d in (map(float, bx.split(",")) for bx in boxes.split(";"))]
        return req

    def answer(fut, t0):
        r = fut.result()
        return {"success": r.success, "error": r.error, "call_s": time.monotonic() - t0,
                "labels": [{"valid": l.valid, "label": l.label, "error": l.error} for l in r.labels]}

    def publish_until(done, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            pub.publish(cloud_msg(xyzi))
            t = time.monotonic() + 0.5
            while time.monotonic() < t and not done():
                rclpy.spin_once(p.node, timeout_sec=0.05)
        if not done():
            print(f"timed out waiting for {what}: {p.diag}", file=sys.stderr)
            sys.exit(1)

    out = {"gdc_when_sent": p.diag["gdc"]}
    t0 = time.monotonic()
    held = client.call_async(request())
    # auto relabelling while loading: the frame goes out without labels, and why is counted
    publish_until(lambda: count(p.diag, "detector", "gdc_skipped") >= 1, 60, "a frame skipped by auto relabelling")
    out["detector_while_loading"] = p.diag["detector"]
    out["gdc_while_loading"] = p.diag["gdc"]
    out["held_done_while_loading"] = held.done()
    p.spin_until(held.done, 90, "the answer to the relabel sent while loading")
    out["held"] = answer(held, t0)
    seen = p.diag
    p.spin_until(lambda: p.diag is not seen, 5, "the next diagnostics")
    out["gdc_after"] = p.diag["gdc"]
    # once loaded, auto relabelling gets past the classifier (no camera image is the reason now)
    skipped = count(p.diag, "detector", "gdc_skipped")
    publish_until(lambda: count(p.diag, "detector", "gdc_skipped") > skipped, 60, "a frame skipped after loading")
    out["detector_after"] = p.diag["detector"]
    t1 = time.monotonic()
    again = client.call_async(request())
    p.spin_until(again.done, 60, "the answer to the second relabel")
    out["again"] = answer(again, t1)
    print(json.dumps(out))
    p.close()


if __name__ == "__main__":
    {"gdc_loading": gdc_loading}[sys.argv[1]](*sys.argv[2:])
