"""A vehicle stack's view of eloss_perception_node (tests/vehicle_dds.rs): an
rclpy process that uses only the standard message types (tf2_msgs,
sensor_msgs, vision_msgs, autoware_perception_msgs, rosgraph_msgs,
rcl_interfaces) to talk to the node over loopback DDS.

  mounted NS CLOUD_BIN SENSOR_FRAME TF_JSON STAMP_SEC
      publish the static transform TF_JSON ({"parent", "translation": [x,y,z],
      "rotation": [x,y,z,w]}) on NS/tf_static (transient local, published
      once, before the node's first cloud), then the cloud in SENSOR_FRAME with
      stamp STAMP_SEC until NS/detections (vision_msgs) and
      NS/detected_objects (Autoware) for that stamp arrive; report boxes,
      frames and the frames diagnostics
  sim_time NS CLOUD_BIN SIM_SEC
      publish /clock (NS/clock) at SIM_SEC and advancing, and a cloud stamped
      SIM_SEC; report the stamps of detections and diagnostics
  rosout NS
      collect /rosout records of the node's logger until its "started" line
      (or 20 s); report their levels and texts
  listen NS MIN_DETECTIONS TIMEOUT_S
      record the stamps and frame ids of NS/detections (vision_msgs) and the
      stamps of NS/diagnostics until MIN_DETECTIONS arrays came (while a bag
      is replayed by another process); prints "ready" on stderr once subscribed
  params NS
      set parameters over rcl_interfaces/SetParameters: invalid values, a
      read-only one, a valid one; report the results and values read back

Prints one JSON object on stdout; exits 1 with a message when a wait times out.
"""
import json
import math
import os
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_peer import Peer, cloud_msg  # noqa: E402


def yaw_of(q):
    return 2.0 * math.atan2(q.z, q.w) if abs(q.x) < 1e-9 and abs(q.y) < 1e-9 else float("nan")


def publish_cloud_until(p, pub, msg, done, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done():
        pub.publish(msg)  # best effort: repeat until the results for this stamp arrive
        wait = time.monotonic() + 3
        while time.monotonic() < wait and not done():
            rclpy.spin_once(p.node, timeout_sec=0.05)
    if not done():
        print(f"timeout waiting for {what}; diagnostics: {p.diag}", file=sys.stderr)
        sys.exit(1)


def mounted(ns, cloud_bin, sensor_frame, tf_json, stamp_sec):
    from autoware_perception_msgs.msg import DetectedObjects
    from geometry_msgs.msg import TransformStamped
    from sensor_msgs.msg import PointCloud2
    from tf2_msgs.msg import TFMessage
    from vision_msgs.msg import Detection3DArray
    tf = json.loads(tf_json)
    stamp = (int(stamp_sec), 0)
    p = Peer(ns)
    static_qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                            durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    tf_pub = p.node.create_publisher(TFMessage, f"{ns}/tf_static", static_qos)
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = tf["parent"], sensor_frame
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = tf["translation"]
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = tf["rotation"]
    tf_pub.publish(TFMessage(transforms=[t]))  # once: transient local delivers it to the node

    got = {}

    def on_dets(m):
        if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp:
            got["detections"] = {
                "frame_id": m.header.frame_id,
                "boxes": [{"id": d.id, "class_id": d.results[0].hypothesis.class_id, "score": d.results[0].hypothesis.score,
                           "center": [d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z],
                           "size": [d.bbox.size.x, d.bbox.size.y, d.bbox.size.z], "yaw": yaw_of(d.bbox.center.orientation),
                           "frame_id": d.header.frame_id, "hypotheses": len(d.results)} for d in m.detections]}

    def on_objects(m):
        if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp:
            got["objects"] = {"frame_id": m.header.frame_id,
                              "objects": [{"label": o.classification[0].label, "existence": o.existence_probability,
                                           "shape_type": o.shape.type,
                                           "x": o.kinematics.pose_with_covariance.pose.position.x}
                                          for o in m.objects]}

    p.node.create_subscription(Detection3DArray, f"{ns}/detections", on_dets, 10)
    p.node.create_subscription(DetectedObjects, f"{ns}/detected_objects", on_objects, 10)
    pub = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    p.spin_until(lambda: pub.get_subscription_count() > 0, 30, "the node to subscribe points")
    xyzi = np.fromfile(cloud_bin, dtype="<f4").reshape(-1, 4)
    msg = cloud_msg(xyzi, frame=sensor_frame)
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    publish_cloud_until(p, pub, msg, lambda: "detections" in got and "objects" in got, 90, "detections for the cloud")
    p.spin_until(lambda: p.diag is not None and "frames" in p.diag and p.diag["frames"]["lidar_mounting"] != "unused",
                 30, "frames diagnostics")
    got["frames_diagnostics"] = p.diag["frames"]
    print(json.dumps(got))
    p.close()


def sim_time(ns, cloud_bin, sim_sec):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2
    from vision_msgs.msg import Detection3DArray
    sim = int(sim_sec)
    p = Peer(ns)
    clock_pub = p.node.create_publisher(Clock, f"{ns}/clock", 10)
    got = {"detection_stamps": [], "diagnostic_stamps": []}
    p.node.create_subscription(Detection3DArray, f"{ns}/detections",
                               lambda m: got["detection_stamps"].append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 10)
    from diagnostic_msgs.msg import DiagnosticArray
    p.node.create_subscription(DiagnosticArray, f"{ns}/diagnostics",
                               lambda m: got["diagnostic_stamps"].append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 10)
    pub = p.node.create_publisher(PointCloud2, f"{ns}/points", qos_profile_sensor_data)
    p.spin_until(lambda: pub.get_subscription_count() > 0 and clock_pub.get_subscription_count() > 0, 30,
                 "the node to subscribe points and clock")
    msg = cloud_msg(np.fromfile(cloud_bin, dtype="<f4").reshape(-1, 4), frame="velodyne")
    msg.header.stamp.sec = sim
    t0 = time.monotonic()
    end = t0 + 60
    # wait for reports stamped after the node's first /clock message: the ones before it carry time 0
    def on_sim_time():
        return sum(1 for t in got["diagnostic_stamps"] if t > 0) >= 3
    while time.monotonic() < end and not (got["detection_stamps"] and on_sim_time()):
        now = sim + (time.monotonic() - t0)  # sim time runs at wall rate from SIM_SEC
        c = Clock()
        c.clock.sec, c.clock.nanosec = int(now), int((now % 1) * 1e9)
        clock_pub.publish(c)
        if not got["detection_stamps"]:
            pub.publish(msg)
        wait = time.monotonic() + 0.05
        while time.monotonic() < wait:
            rclpy.spin_once(p.node, timeout_sec=0.01)
    got["sim_sec"] = sim
    got["elapsed_s"] = time.monotonic() - t0
    print(json.dumps(got))
    p.close()


def rosout(ns):
    from rcl_interfaces.msg import Log
    p = Peer(ns)
    records = []
    qos = QoSProfile(depth=1000, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    p.node.create_subscription(Log, "/rosout", lambda m: records.append(
        {"name": m.name, "level": int(m.level), "msg": m.msg[:300]}), qos)
    node_logger = ns.strip("/").replace("/", ".") + ".eloss_perception_node"
    end = time.monotonic() + 20
    while time.monotonic() < end and not any(r["name"] == node_logger and r["msg"].startswith("started") for r in records):
        rclpy.spin_once(p.node, timeout_sec=0.05)
    # a moment for the lines that follow it
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        rclpy.spin_once(p.node, timeout_sec=0.05)
    print(json.dumps({"logger": node_logger, "records": [r for r in records if r["name"] == node_logger]}))
    p.close()


def listen(ns, min_detections, timeout_s):
    from diagnostic_msgs.msg import DiagnosticArray
    from vision_msgs.msg import Detection3DArray
    p = Peer(ns)
    got = {"detections": [], "diagnostic_stamps": []}
    p.node.create_subscription(Detection3DArray, f"{ns}/detections", lambda m: got["detections"].append(
        {"stamp_ns": m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec, "frame_id": m.header.frame_id,
         "boxes": len(m.detections)}), 100)
    p.node.create_subscription(DiagnosticArray, f"{ns}/diagnostics", lambda m: got["diagnostic_stamps"].append(
        m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 100)
    p.spin_until(lambda: p.diag is not None, 30, "the node's diagnostics")
    print("ready", file=sys.stderr, flush=True)
    p.spin_until(lambda: len(got["detections"]) >= int(min_detections), float(timeout_s), "detections from the replayed bag")
    end = time.monotonic() + 1.0  # the diagnostics that follow
    while time.monotonic() < end:
        rclpy.spin_once(p.node, timeout_sec=0.05)
    got["frames_diagnostics"] = p.diag.get("frames")
    print(json.dumps(got))
    p.close()


def params(ns):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import GetParameters, SetParameters
    p = Peer(ns)
    node = f"{ns}/eloss_perception_node"
    set_cli = p.node.create_client(SetParameters, f"{node}/set_parameters")
    get_cli = p.node.create_client(GetParameters, f"{node}/get_parameters")
    p.spin_until(lambda: set_cli.service_is_ready() and get_cli.service_is_ready(), 30, "parameter services")

    def call(cli, req):
        fut = cli.call_async(req)
        p.spin_until(fut.done, 20, "a parameter service reply")
        return fut.result()

    def double(name, v):
        return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v))

    def string(name, v):
        return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v))

    cases = [double("detector.score_threshold", 1.5), double("diagnostics.period_s", 1.8e19),
             string("detector.coverage", "sideways"), string("detector.model_path", "/tmp/other.safetensors"),
             double("cloud.intensity_scale", 0.00392157)]
    out = {"results": []}
    for c in cases:
        r = call(set_cli, SetParameters.Request(parameters=[c])).results[0]
        out["results"].append({"name": c.name, "successful": r.successful, "reason": r.reason})
    names = ["detector.score_threshold", "diagnostics.period_s", "detector.coverage", "detector.model_path", "cloud.intensity_scale"]
    values = call(get_cli, GetParameters.Request(names=names)).values
    out["values"] = {n: (v.double_value if v.type == ParameterType.PARAMETER_DOUBLE else v.string_value) for n, v in zip(names, values)}
    print(json.dumps(out))
    p.close()


if __name__ == "__main__":
    {"mounted": mounted, "sim_time": sim_time, "rosout": rosout, "listen": listen, "params": params}[sys.argv[1]](*sys.argv[2:])
