"""A second ROS 2 process (rclpy from the venv) that talks to
eloss_perception_node over loopback DDS, for tests/node_dds.rs.

  drive  NS KITTI_BIN  publish good and malformed clouds/images/camera infos,
                       wait for diagnostics that account for all of them
  status NS KITTI_BIN [N]
                       publish the cloud until the node counts N (default 1) processed, then
                       report the node's whole diagnostics (e.g. with broken weights)
  listen TOPIC N T     receive N clouds on TOPIC within T seconds (e.g. while a
                       bag is replayed) and report what arrived
  relabel NS IMG BOXES call NS/eloss_perception_node/relabel with the PNG IMG and
                       2D boxes "x0,y0,x1,y1;..." (plus error cases), report responses
  relabel_frame NS CLOUD_BIN IMAGE_PNG
                       publish a camera frame (image + CameraInfo with KITTI's P2) and then
                       the cloud, all with one stamp, until NS/annotated_detections for it arrive;
                       then call relabel by detection id (all, a subset, unknown id,
                       unknown stamp, candidates) and report responses with call times
  add_classes NS CACHE extend the GDC bank at run time: bad and known names, one class
                       queued without waiting (followed on NS/eloss_perception_node/gdc_bank
                       until it is in the bank), one with wait; then relabel the node's
                       first generated traffic_cone image (found under CACHE) with the
                       new classes and one old one as candidates
  zero_shot NS CACHE CLASSES
                       follow NS/eloss_perception_node/gdc_bank until the comma-separated
                       CLASSES are in the bank (the node generated them at start-up), then
                       relabel the first generated image of the first class
  alive NS HARDWARE_ID  the node started (e.g. from a colcon install, scripts/colcon_check.sh)
                       in namespace NS with hardware_id HARDWARE_ID: wait for its
                       /diagnostics with that hardware id, then read parameters through
                       NS/eloss_perception_node/get_parameters; report both
  detect NS CLOUD_BIN ANOMALOUS_BIN
                       publish the cloud (KITTI .bin layout) with a known stamp until
                       NS/annotated_detections, NS/markers and NS/eloss for that stamp arrive; then
                       the anomalous cloud 8 times (new stamps), collecting its Eloss reports

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
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
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
        self.node.create_subscription(DiagnosticArray, f"{ns.rstrip('/')}/diagnostics", self._on_diag, 10)

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


def counter(diag, stream, key):
    """As count, 0 when the diagnostics or the key are missing."""
    try:
        return int(diag[stream][key])
    except (TypeError, KeyError, ValueError):
        return 0


def next_due(due, period, now):
    """The next send time of a fixed-rate publisher after one sent at `due`:
    a period on, or a period from now when this process fell behind (skip,
    never burst)."""
    due += period
    return now + period if due < now else due


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

    def send_and_wait(pub, msg, stream, key, what):
        """Publish until the node's `key` counter of `stream` grows (best-effort
        QoS may lose a sample); report the counters before and after."""
        before = dict(p.diag[stream])
        sends = 0
        end = time.monotonic() + 20
        while count(p.diag, stream, key) <= int(before[key]) and time.monotonic() < end:
            pub.publish(msg)
            sends += 1
            t = time.monotonic() + 1.0
            while time.monotonic() < t and count(p.diag, stream, key) <= int(before[key]):
                rclpy.spin_once(p.node, timeout_sec=0.05)
        if count(p.diag, stream, key) <= int(before[key]):
            print(f"node never counted {what}: {p.diag}", file=sys.stderr)
            sys.exit(1)
        # one more report, so counters of a late resend are included
        seen = p.diag
        p.spin_until(lambda: p.diag is not seen, 5, "the next diagnostics")
        result[what] = {"before": before, "after": dict(p.diag[stream]), "sends": sends}

    cloud, image, info = "point cloud input", "image input", "camera info input"
    send_and_wait(pub_pts, cloud_msg(xyzi), cloud, "frames_processed", "kitti_cloud")
    bad = cloud_msg(xyzi)
    bad.data = bad.data[: len(bad.data) // 2]  # row_step promises twice as much
    send_and_wait(pub_pts, bad, cloud, "frames_malformed", "truncated_cloud")
    no_xyz = cloud_msg(xyzi[:10])
    no_xyz.fields = no_xyz.fields[3:]
    send_and_wait(pub_pts, no_xyz, cloud, "frames_malformed", "cloud_without_xyz")

    # run-time parameter changes: a valid range limit applies to the next
    # frame, an invalid one is refused and the previous value kept
    client = p.node.create_client(SetParameters, f"{ns}/eloss_perception_node/set_parameters")
    p.spin_until(lambda: client.service_is_ready(), 30, "the set_parameters service")

    def set_max_range(v):
        req = SetParameters.Request()
        req.parameters = [Parameter(name="cloud.max_range_m",
                                    value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v))]
        fut = client.call_async(req)
        p.spin_until(fut.done, 10, "set_parameters response")
        return fut.result().results[0].successful

    result["set_max_range_10"] = set_max_range(10.0)
    send_and_wait(pub_pts, cloud_msg(xyzi), cloud, "frames_processed", "cloud_within_10m")
    result["set_max_range_negative"] = set_max_range(-1.0)
    send_and_wait(pub_pts, cloud_msg(xyzi), cloud, "frames_processed", "cloud_after_bad_param")
    result["set_max_range_200"] = set_max_range(200.0)
    # a calib file any peer can point at a device: refused at once with the
    # reason (issue 13: /dev/zero was accepted and read until memory ran out)
    req = SetParameters.Request()
    req.parameters = [Parameter(name="camera.calib_file",
                                value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="/dev/zero"))]
    t0 = time.monotonic()
    fut = client.call_async(req)
    p.spin_until(fut.done, 10, "set_parameters response")
    r0 = fut.result().results[0]
    result["set_calib_dev_zero"] = {"successful": r0.successful, "reason": r0.reason, "seconds": time.monotonic() - t0}
    send_and_wait(pub_pts, cloud_msg(xyzi), cloud, "frames_processed", "cloud_after_calib_dev_zero")

    padded, finite = cloud_f64_padded(xyzi)
    send_and_wait(pub_pts, padded, cloud, "frames_processed", "f64_padded_cloud")
    result["f64_padded_cloud"]["expected_points"] = finite

    send_and_wait(pub_img, image_msg(64, 48, "bgr8", 3), image, "frames_processed", "bgr8_image")
    send_and_wait(pub_img, image_msg(64, 48, "yuv422_yuy2", 2), image, "frames_malformed", "unknown_encoding")
    send_and_wait(pub_img, image_msg(32, 16, "mono16", 2), image, "frames_processed", "mono16_image")
    send_and_wait(pub_info, camera_info_msg(), info, "frames_processed", "camera_info")
    bad_info = camera_info_msg()
    bad_info.k = [0.0] * 9
    bad_info.p = [0.0] * 12
    send_and_wait(pub_info, bad_info, info, "frames_malformed", "uncalibrated_camera_info")
    result["gdc"] = p.diag.get("gdc")
    print(json.dumps(result))
    p.close()


def status(ns, kitti_bin, n="1"):
    xyzi = np.fromfile(kitti_bin, dtype="<f4").reshape(-1, 4)
    p = Peer(ns)
    pub = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    p.spin_until(lambda: pub.get_subscription_count() > 0 and p.diag is not None, 30, "the node and its diagnostics")
    end = time.monotonic() + 30
    while count(p.diag, "point cloud input", "frames_processed") < int(n) and time.monotonic() < end:
        pub.publish(cloud_msg(xyzi))
        t = time.monotonic() + 0.5
        while time.monotonic() < t:
            rclpy.spin_once(p.node, timeout_sec=0.05)
    seen = p.diag
    p.spin_until(lambda: p.diag is not seen, 5, "the next diagnostics")
    print(json.dumps(p.diag))
    p.close()


def listen(topic, n, timeout):
    """Receive `n` PointCloud2 on `topic` (reliable QoS)."""
    p = Peer("/")
    got = []

    def on_cloud(m):
        xyzi = np.frombuffer(bytes(m.data), "<f4").reshape(-1, 4)
        got.append({"width": m.width, "point_step": m.point_step, "frame_id": m.header.frame_id,
                    "stamp_ns": m.header.stamp.sec * 10**9 + m.header.stamp.nanosec,
                    "sum_x": float(xyzi[:, 0].astype("f8").sum()), "arrival": time.monotonic()})

    p.node.create_subscription(PointCloud2, topic, on_cloud, 10)
    p.spin_until(lambda: len(got) >= int(n), float(timeout), f"{n} clouds on {topic}")
    print(json.dumps({"clouds": got}))
    p.close()


def relabel(ns, image_png, boxes):
    from eloss_perception_msgs.msg import BoundingBox2D
    from eloss_perception_msgs.srv import RelabelObjects
    from PIL import Image as PILImage

    p = Peer(ns)
    client = p.node.create_client(RelabelObjects, f"{ns}/eloss_perception_node/relabel")
    p.spin_until(client.service_is_ready, 30, "the relabel service")
    rgb = np.asarray(PILImage.open(image_png).convert("RGB"))

    def image(encoding="rgb8"):
        m = Image()
        m.height, m.width = rgb.shape[:2]
        m.encoding, m.step = encoding, 3 * rgb.shape[1]
        m.data = rgb.tobytes()
        return m

    def call(req):
        fut = client.call_async(req)
        p.spin_until(fut.done, 60, "a relabel response")
        r = fut.result()
        return {"success": r.success, "error": r.error,
                "labels": [{"object_id": l.object_id, "valid": l.valid, "error": l.error, "label": l.label,
                            "probabilities": {c.class_name: c.probability for c in l.probabilities},
                            **open_set_fields(l)}
                           for l in r.labels]}

    def explicit(candidates=(), encoding="rgb8"):
        req = RelabelObjects.Request()
        req.source = RelabelObjects.Request.SOURCE_EXPLICIT_IMAGE
        req.image = image(encoding)
        req.boxes_2d = [BoundingBox2D(x_min=float(a), y_min=float(b), x_max=float(c), y_max=float(d))
                        for a, b, c, d in (map(float, bx.split(",")) for bx in boxes.split(";"))]
        req.candidate_classes = list(candidates)
        return req

    def oversized():
        # 5,000 whole-image boxes (issue 13: 7.8 GB and no answer): refused at once
        req = explicit()
        whole = BoundingBox2D(x_min=0.0, y_min=0.0, x_max=float(rgb.shape[1]), y_max=float(rgb.shape[0]))
        req.boxes_2d = [whole] * 5000
        return req

    # evaluated in order: the requests after the oversized one show the node still serves
    out = {"all": call(explicit()), "oversized": call(oversized()), "subset": call(explicit(["sky", "grass"])),
           "unknown_class": call(explicit(["grass", "unicorn"])),
           "bad_encoding": call(explicit(encoding="yuv422_yuy2"))}
    by_id = RelabelObjects.Request()
    by_id.source = RelabelObjects.Request.SOURCE_RECENT_FRAME
    out["by_id"] = call(by_id)
    # the node's GDC diagnostics count the six requests
    p.spin_until(lambda: count(p.diag, "gdc", "relabel_requests") >= 6, 15, "GDC diagnostics counting the requests")
    out["diagnostics"] = p.diag["gdc"]
    print(json.dumps(out))
    p.close()


def finite_or_none(x):
    """NaN ("not known yet") as JSON null."""
    return None if x != x else x


def json_float(x):
    """A float as strict JSON: NaN as null, +-inf as the strings "inf"/"-inf"."""
    if x != x:
        return None
    return x if abs(x) != float("inf") else ("inf" if x > 0 else "-inf")


def open_set_fields(l):
    """The open-set test of an ObjectLabel (unknown, nearest class, distance, threshold)."""
    return {"unknown": l.unknown, "nearest_class": l.nearest_class,
            "nearest_distance": json_float(l.nearest_distance), "nearest_threshold": json_float(l.nearest_threshold)}


def gdc_open_set_fields(d):
    """The same fields of an auto-relabelled Detection3D, under the ObjectLabel names."""
    return {"unknown": d.gdc_unknown, "nearest_class": d.gdc_nearest_class,
            "nearest_distance": json_float(d.gdc_nearest_distance), "nearest_threshold": json_float(d.gdc_nearest_threshold)}


def follow_bank_status(p, base, on_status):
    """Subscribe to NS/eloss_perception_node/gdc_bank as the node publishes it
    (transient local: the latest status arrives even if published before)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from eloss_perception_msgs.msg import GdcBankStatus
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    p.node.create_subscription(GdcBankStatus, f"{base}/gdc_bank", on_status, qos)


def relabel_generated(p, client, cache_dir, class_name, candidates=()):
    """Relabel the node's first generated image of `class_name` (one box over
    the whole image) through `client`; the response as JSON-ready data."""
    import glob
    from eloss_perception_msgs.msg import BoundingBox2D
    from eloss_perception_msgs.srv import RelabelObjects
    from PIL import Image as PILImage
    png = sorted(glob.glob(f"{cache_dir}/*/classes/{class_name}/00000.png"))[0]
    rgb = np.asarray(PILImage.open(png).convert("RGB"))
    req = RelabelObjects.Request()
    req.source = RelabelObjects.Request.SOURCE_EXPLICIT_IMAGE
    req.image = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=3 * rgb.shape[1], data=rgb.tobytes())
    req.boxes_2d = [BoundingBox2D(x_min=0.0, y_min=0.0, x_max=float(rgb.shape[1]), y_max=float(rgb.shape[0]))]
    req.candidate_classes = list(candidates)
    fut = client.call_async(req)
    p.spin_until(fut.done, 60, "a relabel response")
    r = fut.result()
    return {"success": r.success, "error": r.error,
            "probabilities": [{c.class_name: c.probability for c in l.probabilities} for l in r.labels]}


def add_classes(ns, cache_dir):
    from eloss_perception_msgs.srv import AddClasses, RelabelObjects

    p = Peer(ns)
    base = f"{ns}/eloss_perception_node"
    add = p.node.create_client(AddClasses, f"{base}/add_classes")
    relabel_client = p.node.create_client(RelabelObjects, f"{base}/relabel")
    statuses = []

    def on_status(m):
        statuses.append({"classes": list(m.classes), "generator": m.generator, "pending": list(m.pending_classes),
                         "done": list(m.pending_images_done), "total": list(m.pending_images_total),
                         "seconds_per_image": finite_or_none(m.seconds_per_image),
                         "failed": dict(zip(m.failed_classes, m.failed_errors))})

    follow_bank_status(p, base, on_status)
    p.spin_until(lambda: add.service_is_ready() and relabel_client.service_is_ready(), 30, "the add_classes and relabel services")
    # transient local: the bank as loaded arrives although it was published before we joined
    p.spin_until(lambda: statuses, 30, "the first gdc_bank status")

    def call(names, wait=False, timeout=60):
        req = AddClasses.Request(class_names=list(names), wait=wait)
        t = time.monotonic()
        fut = add.call_async(req)
        p.spin_until(fut.done, timeout, f"an add_classes response for {names}")
        r = fut.result()
        return {"success": r.success, "error": r.error, "queued": list(r.queued), "already_present": list(r.already_present),
                "ready": r.ready, "estimated_seconds": finite_or_none(r.estimated_seconds), "classes": list(r.classes),
                "call_s": time.monotonic() - t}

    out = {"first_status": statuses[0], "bad_name": call(["bus", "a/b"]), "known": call(["grass"])}
    out["queued"] = call(["traffic_cone"])
    p.spin_until(lambda: "traffic_cone" in statuses[-1]["classes"], 120, "traffic_cone in the bank")
    out["statuses_while_queued"] = statuses[1:]
    out["waited"] = call(["bus", "traffic_cone"], wait=True, timeout=120)

    out["relabel"] = relabel_generated(p, relabel_client, cache_dir, "traffic_cone", ["grass", "traffic_cone", "bus"])
    out["last_status"] = statuses[-1]
    print(json.dumps(out))
    p.close()


def add_after_failed_load(ns, class_name):
    """Adds `class_name` twice with wait=true while the node's generator
    loader fails once (a fail point): the first answer, the bank status
    after it, the node's diagnostics then, and the second answer."""
    from eloss_perception_msgs.srv import AddClasses

    p = Peer(ns)
    base = f"{ns}/eloss_perception_node"
    add = p.node.create_client(AddClasses, f"{base}/add_classes")
    statuses = []
    follow_bank_status(p, base, lambda m: statuses.append({"classes": list(m.classes), "failed": dict(zip(m.failed_classes, m.failed_errors))}))
    p.spin_until(add.service_is_ready, 30, "the add_classes service")
    p.spin_until(lambda: statuses, 30, "the first gdc_bank status")

    def call():
        fut = add.call_async(AddClasses.Request(class_names=[class_name], wait=True))
        p.spin_until(fut.done, 120, f"an add_classes response for {class_name}")
        r = fut.result()
        return {"success": r.success, "error": r.error, "ready": r.ready, "classes": list(r.classes)}

    out = {"first": call()}
    p.spin_until(lambda: class_name in statuses[-1]["failed"], 30, "the failure in ~/gdc_bank")
    out["status_after_failure"] = statuses[-1]
    p.diag = None
    p.spin_until(lambda: p.diag is not None and "workers" in p.diag, 30, "diagnostics after the failure")
    out["diagnostics_after_failure"] = p.diag
    out["second"] = call()
    print(json.dumps(out))
    p.close()


def zero_shot(ns, cache_dir, classes):
    from eloss_perception_msgs.srv import RelabelObjects

    p = Peer(ns)
    base = f"{ns}/eloss_perception_node"
    wanted = classes.split(",")
    statuses = []
    follow_bank_status(p, base, lambda m: statuses.append({"classes": list(m.classes), "pending": list(m.pending_classes),
                                                           "failed": dict(zip(m.failed_classes, m.failed_errors))}))
    p.spin_until(lambda: statuses and all(c in statuses[-1]["classes"] for c in wanted), 120, f"{wanted} in the bank")
    client = p.node.create_client(RelabelObjects, f"{base}/relabel")
    p.spin_until(client.service_is_ready, 30, "the relabel service")
    print(json.dumps({"statuses": statuses, "relabel": relabel_generated(p, client, cache_dir, wanted[0])}))
    p.close()


KITTI_P2 = [7.215377e+02, 0.0, 6.095593e+02, 4.485728e+01, 0.0, 7.215377e+02, 1.728540e+02, 2.163791e-01,
            0.0, 0.0, 1.0, 2.745884e-03]


def relabel_frame(ns, cloud_bin, image_png):
    from eloss_perception_msgs.msg import Detection3DArray
    from eloss_perception_msgs.srv import RelabelObjects
    from PIL import Image as PILImage

    xyzi = np.fromfile(cloud_bin, dtype="<f4").reshape(-1, 4)
    rgb = np.asarray(PILImage.open(image_png).convert("RGB"))
    stamp = (1500, 250_000_000)
    early = (1490, 250_000_000)  # a frame sent before any CameraInfo
    p = Peer(ns)
    got = {}

    def on_dets(m):
        key = {stamp: "detections", early: "early"}.get((m.header.stamp.sec, m.header.stamp.nanosec))
        if key:
            got[key] = [{"id": d.id, "class_name": d.class_name, "has_gdc": d.has_gdc, "gdc_label": d.gdc_label,
                         "gdc_probabilities": {c.class_name: c.probability for c in d.gdc_probabilities},
                         "gdc_open_set": gdc_open_set_fields(d)}
                        for d in m.detections]

    p.node.create_subscription(Detection3DArray, f"{ns}/annotated_detections", on_dets, 10)
    pub_pts = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    pub_img = p.node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    pub_info = p.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
    client = p.node.create_client(RelabelObjects, f"{ns}/eloss_perception_node/relabel")
    for pub, what in ((pub_pts, "points"), (pub_img, "image"), (pub_info, "camera_info")):
        p.spin_until(lambda: pub.get_subscription_count() > 0, 30, f"the node to subscribe {what}")
    p.spin_until(client.service_is_ready, 30, "the relabel service")
    p.spin_until(lambda: p.diag is not None, 30, "first diagnostics")

    def call(frame_stamp=(0, 0), ids=(), candidates=()):
        req = RelabelObjects.Request()
        req.source = RelabelObjects.Request.SOURCE_RECENT_FRAME
        req.frame_stamp.sec, req.frame_stamp.nanosec = frame_stamp
        req.detection_ids = [int(i) for i in ids]
        req.candidate_classes = list(candidates)
        t = time.monotonic()
        fut = client.call_async(req)
        p.spin_until(fut.done, 60, "a relabel response")
        ms = (time.monotonic() - t) * 1e3
        r = fut.result()
        return {"success": r.success, "error": r.error, "call_ms": ms,
                "labels": [{"object_id": l.object_id, "valid": l.valid, "error": l.error, "label": l.label,
                            "probabilities": {c.class_name: c.probability for c in l.probabilities},
                            **open_set_fields(l)}
                           for l in r.labels]}

    def image_msg(at):
        img = Image()
        img.header.frame_id = "camera"
        img.header.stamp.sec, img.header.stamp.nanosec = at
        img.height, img.width = rgb.shape[:2]
        img.encoding, img.step = "rgb8", 3 * rgb.shape[1]
        img.data = rgb.tobytes()
        return img

    def until(done, publish, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            publish()
            wait = time.monotonic() + 1.5
            while time.monotonic() < wait and not done():
                rclpy.spin_once(p.node, timeout_sec=0.05)
        if not done():
            print(f"timed out waiting for {what}: {p.diag}", file=sys.stderr)
            sys.exit(1)

    # before any CameraInfo: an image and a cloud, then relabel by id fails with the reason
    early_img = image_msg(early)
    until(lambda: count(p.diag, "image input", "frames_processed") > 0, lambda: pub_img.publish(early_img), 60,
          "the node to decode the early image")
    early_cloud = cloud_msg(xyzi, frame="lidar_top")
    early_cloud.header.stamp.sec, early_cloud.header.stamp.nanosec = early
    until(lambda: "early" in got, lambda: pub_pts.publish(early_cloud), 90, "detections of the early cloud")
    before_camera_info = call()
    end = time.monotonic() + 60
    while before_camera_info["error"] == "GDC is still loading" and time.monotonic() < end:
        time.sleep(0.5)
        before_camera_info = call()

    img = image_msg(stamp)
    info = camera_info_msg()
    info.header.stamp.sec, info.header.stamp.nanosec = stamp
    info.width, info.height = rgb.shape[1], rgb.shape[0]
    info.p = KITTI_P2
    # the camera frame (best effort: resend until the node decoded both), then the cloud
    images_before = count(p.diag, "image input", "frames_processed")

    def send_camera():
        pub_info.publish(info)
        pub_img.publish(img)

    until(lambda: count(p.diag, "image input", "frames_processed") > images_before
          and count(p.diag, "camera info input", "frames_processed") > 0, send_camera, 60,
          "the node to decode the image and camera info")
    cloud = cloud_msg(xyzi, frame="lidar_top")
    cloud.header.stamp.sec, cloud.header.stamp.nanosec = stamp
    until(lambda: "detections" in got, lambda: pub_pts.publish(cloud), 90, "detections for the published cloud")
    n = len(got["detections"])

    out = {"detections": got["detections"], "stamp": list(stamp), "before_camera_info": before_camera_info,
           "early": got["early"]}
    out["all"] = call()
    out["all_again"] = call(stamp)
    out["subset"] = call(stamp, [n - 1, 0] if n else [])
    out["unknown_id"] = call((0, 0), [0, 999])
    out["unknown_stamp"] = call((stamp[0] + 1, stamp[1]))
    out["candidates"] = call((0, 0), [], ["sky", "grass"])
    p.spin_until(lambda: p.diag is not None and "detector" in p.diag and int(p.diag["detector"]["frames"]) > 0, 30,
                 "detector diagnostics")
    out["diagnostics"] = p.diag["detector"]
    print(json.dumps(out))
    p.close()


def detect(ns, cloud_bin, anomalous_bin):
    from eloss_perception_msgs.msg import Detection3DArray, ElossReport
    from visualization_msgs.msg import MarkerArray
    xyzi = np.fromfile(cloud_bin, dtype="<f4").reshape(-1, 4)
    p = Peer(ns)
    got = {}
    stamp = (1234, 500_000_000)

    def on_dets(m):
        if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp:
            got["detections"] = {
                "frame_id": m.header.frame_id, "model_id": m.model_id,
                "boxes": [{"id": d.id, "class_name": d.class_name, "class_id": d.class_id, "score": d.score,
                           "center": [d.pose.position.x, d.pose.position.y, d.pose.position.z],
                           "size": [d.size.x, d.size.y, d.size.z], "yaw": d.yaw,
                           "qz": d.pose.orientation.z, "qw": d.pose.orientation.w} for d in m.detections]}

    def on_markers(m):
        if m.markers and (m.markers[0].header.stamp.sec, m.markers[0].header.stamp.nanosec) == stamp:
            got["markers"] = [{"ns": k.ns, "type": k.type, "action": k.action, "text": k.text,
                               "frame_id": k.header.frame_id} for k in m.markers]

    reports = {}

    def on_eloss(m):
        reports[(m.header.stamp.sec, m.header.stamp.nanosec)] = {
            "model_id": m.model_id, "calibration_id": m.calibration_id, "estimator": m.estimator, "eloss": m.eloss,
            "layers": len(m.layer_entropies), "blocks": list(m.block_layer_counts), "calibrated": m.calibrated,
            "score": m.anomaly_score, "threshold": m.threshold, "deviation": m.deviation_factor,
            "anomaly": m.anomaly, "type": m.anomaly_type, "anomalous_frame": m.anomalous_frame,
            "compute_time_ms": m.compute_time_ms}

    context = {}  # stamp -> the anomaly context our detections carry

    def on_context(m):
        context[(m.header.stamp.sec, m.header.stamp.nanosec)] = {
            "anomaly_score": json_float(m.anomaly_score), "anomaly": m.anomaly, "on_alarm": m.on_alarm,
            "score_factor": m.score_factor, "boxes": len(m.detections)}

    standard = {}  # stamp -> boxes on the standard vision_msgs topic

    def on_standard(m):
        standard[(m.header.stamp.sec, m.header.stamp.nanosec)] = len(m.detections)

    from vision_msgs.msg import Detection3DArray as VisionDetections
    p.node.create_subscription(ElossReport, f"{ns}/eloss", on_eloss, 50)
    p.node.create_subscription(Detection3DArray, f"{ns}/annotated_detections", on_dets, 10)
    p.node.create_subscription(Detection3DArray, f"{ns}/annotated_detections", on_context, 50)
    p.node.create_subscription(VisionDetections, f"{ns}/detections", on_standard, 50)
    p.node.create_subscription(MarkerArray, f"{ns}/markers", on_markers, 10)
    pub = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    p.spin_until(lambda: pub.get_subscription_count() > 0, 30, "the node to subscribe points")
    msg = cloud_msg(xyzi, frame="lidar_top")
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    end = time.monotonic() + 90
    while time.monotonic() < end and not ("detections" in got and "markers" in got and stamp in reports):
        pub.publish(msg)  # best effort: repeat until the results for this stamp arrive
        wait = time.monotonic() + 3
        while time.monotonic() < wait and not ("detections" in got and "markers" in got and stamp in reports):
            rclpy.spin_once(p.node, timeout_sec=0.05)
    if not ("detections" in got and "markers" in got and stamp in reports):
        print("no detections/markers/eloss report for the published cloud", file=sys.stderr)
        sys.exit(1)
    got["eloss_normal"] = reports[stamp]
    # the anomalous cloud, frame after frame: each one waits for its own report
    bad = cloud_msg(np.fromfile(anomalous_bin, dtype="<f4").reshape(-1, 4), frame="lidar_top")
    def send_bad(st, what):
        bad.header.stamp.sec, bad.header.stamp.nanosec = st
        done = lambda: st in reports and st in context and st in standard
        deadline = time.monotonic() + 60
        while not done() and time.monotonic() < deadline:
            pub.publish(bad)
            wait = time.monotonic() + 3
            while time.monotonic() < wait and not done():
                rclpy.spin_once(p.node, timeout_sec=0.05)
        if not done():
            print(f"no Eloss report and detections for {what}", file=sys.stderr)
            sys.exit(1)
        return {**reports[st], "context": context[st], "standard_boxes": standard[st]}

    got["eloss_anomalous"] = [send_bad((2000 + i, 0), f"anomalous frame {i}") for i in range(8)]
    # eloss.on_alarm at run time: the alarmed frames' boxes are withheld
    client = p.node.create_client(SetParameters, f"{ns}/eloss_perception_node/set_parameters")
    p.spin_until(lambda: client.service_is_ready(), 30, "the set_parameters service")

    def set_string(name, v):
        req = SetParameters.Request()
        req.parameters = [Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v))]
        fut = client.call_async(req)
        p.spin_until(fut.done, 10, "set_parameters response")
        return fut.result().results[0].successful

    got["set_on_alarm_drop"] = set_string("eloss.on_alarm", "drop")
    got["set_on_alarm_suppress"] = set_string("eloss.on_alarm", "suppress")
    got["suppressed"] = [send_bad((3000 + i, 0), f"suppressed frame {i}") for i in range(2)]
    p.spin_until(lambda: p.diag is not None and int(p.diag.get("eloss monitor", {}).get("frames_acted_on", "0")) >= 2, 30,
                 "eloss monitor diagnostics counting the suppressed frames")
    got["eloss_diagnostics"] = p.diag["eloss monitor"]
    # eloss.enabled = false at run time: detections go on, no Eloss reports
    p.spin_until(lambda: p.diag is not None and "detector" in p.diag, 30, "detector diagnostics")
    frames_before = int(p.diag["detector"]["frames"])
    req = SetParameters.Request()
    req.parameters = [Parameter(name="eloss.enabled", value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False))]
    fut = client.call_async(req)
    p.spin_until(fut.done, 10, "set_parameters response")
    got["set_enabled_false"] = fut.result().results[0].successful
    off = [(4000 + i, 0) for i in range(2)]
    for st in off:
        msg.header.stamp.sec, msg.header.stamp.nanosec = st
        deadline = time.monotonic() + 60
        while st not in context and time.monotonic() < deadline:
            pub.publish(msg)
            wait = time.monotonic() + 3
            while time.monotonic() < wait and st not in context:
                rclpy.spin_once(p.node, timeout_sec=0.05)
    p.spin_until(lambda: p.diag is not None and p.diag.get("eloss monitor", {}).get("enabled") == "false", 30,
                 "eloss monitor diagnostics saying it is off")
    p.spin_until(lambda: int(p.diag["detector"]["frames"]) >= frames_before + len(off), 30,
                 "detector diagnostics counting the frames while the monitor is off")
    got["monitor_off"] = {"context": [context.get(st) for st in off], "reports": [reports.get(st) for st in off],
                          "diagnostics": p.diag["eloss monitor"], "detector_frames": [frames_before, int(p.diag["detector"]["frames"])]}
    p.spin_until(lambda: p.diag is not None and "detector" in p.diag and int(p.diag["detector"]["frames"]) > 0, 30,
                 "detector diagnostics")
    got["diagnostics"] = p.diag["detector"]
    print(json.dumps(got))
    p.close()


def alive(ns, hardware_id):
    rclpy.init()
    node = rclpy.create_node("eloss_alive_peer", namespace=ns)
    seen = {}

    def on_diag(msg):  # other nodes may publish on /diagnostics too: ours by hardware id
        for s in msg.status:
            if s.hardware_id == hardware_id:
                level = int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level)
                seen[s.name] = {"level": level, "message": s.message}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    def spin_until(cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
            if cond():
                return
        print(f"timeout after {timeout}s waiting for {what}", file=sys.stderr)
        sys.exit(1)

    t0 = time.monotonic()
    spin_until(lambda: seen, 60, f"/diagnostics from hardware_id {hardware_id}")
    t_diag = time.monotonic() - t0
    client = node.create_client(GetParameters, f"{ns.rstrip('/')}/eloss_perception_node/get_parameters")
    spin_until(client.service_is_ready, 30, "the get_parameters service")
    req = GetParameters.Request()
    req.names = ["hardware_id", "diagnostics.period_s", "cloud.max_range_m"]
    fut = client.call_async(req)
    spin_until(fut.done, 10, "get_parameters response")
    v = fut.result().values
    print(json.dumps({"diagnostics": seen, "seconds_to_diagnostics": round(t_diag, 2),
                      "parameters": {"hardware_id": v[0].string_value, "diagnostics.period_s": v[1].double_value,
                                     "cloud.max_range_m": v[2].double_value}}))
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    {"alive": alive, "drive": drive, "status": status, "listen": listen, "relabel": relabel, "relabel_frame": relabel_frame, "add_classes": add_classes, "add_after_failed_load": add_after_failed_load, "zero_shot": zero_shot,
     "detect": detect}[sys.argv[1]](*sys.argv[2:])
