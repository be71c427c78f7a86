#!/usr/bin/env python3
"""Independent peers for the Rust bag module (tests/bag_roundtrip.rs).

    bag_peer.py read  BAG_DIR EXPECT_JSON    check a bag written by Rust
    bag_peer.py write BAG_DIR EXPECT_JSON [--compress] [--version 8|9]
                                             write a bag, describe it in JSON
    bag_peer.py replay_listen POINTS N LATE_AFTER TIMEOUT
                                             receive `eloss replay --clock`:
                                             N messages on POINTS, /clock, and
                                             /tf_static subscribed late

`read` decodes the bag twice, with two unrelated implementations: `rosbags`
(AnyReader on the rosbag2 directory, with *no* default typestore, so the
message definitions stored in the bag must be complete and parseable) and
`mcap-ros2-support` (on the .mcap file, its own schema parser and CDR
decoder). Both must agree with EXPECT_JSON. Exit status 1 and a message on
stderr on the first mismatch.

`write` records PointCloud2 / Image / CameraInfo messages with
`rosbags.rosbag2.Writer` (MCAP storage, ROS 2 Jazzy typestore), deliberately
logging one message out of time order, and writes the expected decoded
values to EXPECT_JSON for the Rust side to compare against. It also
records offered QoS profiles (one topic with two), spelled as rosbag2
metadata version 9 (names) or 8 (numbers).

Both directions compare `offered_qos_profiles` as
[history, depth, reliability, durability] (rmw enum numbers) per profile.

`replay_listen` is an rclpy node (tests/replay_dds.rs): it subscribes to
POINTS (reliable) and /clock (best effort) at once, and only after LATE_AFTER
messages on POINTS to /tf_static twice: transient-local (must still get the
static transforms) and volatile (must not). It prints arrival times
(time.monotonic) of everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])


class Mismatch(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Mismatch(what)


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def qos_tuples(profiles) -> list[list[int]]:
    """rosbags Qos objects as [history, depth, reliability, durability]."""
    return [[q.history.value, q.depth, q.reliability.value, q.durability.value] for q in profiles]


NAMED = {
    "history": ["system_default", "keep_last", "keep_all", "unknown"],
    "reliability": ["system_default", "reliable", "best_effort", "unknown", "best_available"],
    "durability": ["system_default", "transient_local", "volatile", "unknown", "best_available"],
}


def qos_yaml_tuples(text: str) -> list[list[int]]:
    """An offered_qos_profiles string parsed by PyYAML (not rosbags)."""
    import yaml

    items = yaml.safe_load(text) if text.strip() else []
    num = lambda k, v: v if isinstance(v, int) else NAMED[k].index(v)
    return [[num("history", q["history"]), q["depth"], num("reliability", q["reliability"]),
             num("durability", q["durability"])] for q in items]


def check_message(peer: str, topic: str, typ: str, msg, index: int, exp: dict) -> None:
    """Compares one decoded message (either peer's objects) with the expectation."""
    where = f"{peer} {topic}[{index}]"
    if typ == "tf2_msgs/msg/TFMessage":
        got = [[t.header.frame_id, t.child_frame_id, stamp_ns(t.header),
                *[float(v) for v in (t.transform.translation.x, t.transform.translation.y, t.transform.translation.z,
                                     t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                     t.transform.rotation.w)]] for t in msg.transforms]
        check(got == exp["tf"], f"{where}: transforms {got}")
        return
    check(stamp_ns(msg.header) == exp["stamps"][topic][index], f"{where}: header stamp {stamp_ns(msg.header)}")
    check(msg.header.frame_id == exp["frame_ids"][topic], f"{where}: frame_id {msg.header.frame_id!r}")
    data = np.asarray(bytearray(msg.data), dtype=np.uint8) if hasattr(msg, "data") else None
    if typ == "sensor_msgs/msg/PointCloud2":
        c = exp["cloud"]
        fields = [[f.name, int(f.offset), int(f.datatype), int(f.count)] for f in msg.fields]
        check(fields == c["fields"], f"{where}: fields {fields}")
        check((msg.height, msg.width, msg.point_step, msg.row_step) == (1, c["points"], 16, 16 * c["points"]),
              f"{where}: geometry {(msg.height, msg.width, msg.point_step, msg.row_step)}")
        check(bool(msg.is_dense) == c["is_dense"] and not bool(msg.is_bigendian), f"{where}: flags")
        pts = data.view(CLOUD_DTYPE)
        check(len(pts) == c["points"], f"{where}: {len(pts)} points")
        for key in ("x", "intensity"):
            got = float(pts[key].astype(np.float64).sum())
            check(math.isclose(got, c[f"sum_{key}"], rel_tol=1e-9, abs_tol=1e-6), f"{where}: sum {key} {got} != {c[f'sum_{key}']}")
    elif typ == "sensor_msgs/msg/Image":
        i = exp["image"]
        check((msg.width, msg.height, msg.encoding, msg.step, int(msg.is_bigendian)) ==
              (i["width"], i["height"], i["encoding"], i["step"], 0), f"{where}: image header")
        check(data.tobytes().hex() == i["data_hex"][index], f"{where}: pixel bytes differ")
    elif typ == "sensor_msgs/msg/CameraInfo":
        ci = exp["camera_info"]
        check((msg.width, msg.height, msg.distortion_model) == (ci["width"], ci["height"], ci["distortion_model"]),
              f"{where}: size/model")
        for key in ("d", "k", "r", "p"):
            got = [float(v) for v in getattr(msg, key)]
            check(got == ci[key], f"{where}: {key} {got}")
        check((msg.binning_x, msg.binning_y) == (0, 0), f"{where}: binning")
    else:
        raise Mismatch(f"{where}: unexpected type {typ}")


def read_rosbags(bag: Path, exp: dict) -> None:
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        got = {c.topic: {"type": c.msgtype, "count": c.msgcount} for c in reader.connections}
        check(got == exp["topics"], f"rosbags: topics {got}")
        qos = {c.topic: qos_tuples(c.ext.offered_qos_profiles) for c in reader.connections}
        check(qos == exp["qos"], f"rosbags: offered QoS {qos}")
        times: dict[str, list[int]] = {t: [] for t in exp["topics"]}
        last = -1
        for conn, t, raw in reader.messages():
            check(t >= last, "rosbags: messages not in log-time order")
            last = t
            msg = reader.deserialize(raw, conn.msgtype)
            check_message("rosbags", conn.topic, conn.msgtype, msg, len(times[conn.topic]), exp)
            times[conn.topic].append(t)
        check(times == exp["log_times"], f"rosbags: log times {times}")


def read_mcap_ros2(bag: Path, exp: dict) -> None:
    from mcap_ros2.reader import read_ros2_messages

    files = sorted(bag.glob("*.mcap"))
    check(len(files) == 1, f"mcap_ros2: expected one .mcap in {bag}, found {files}")
    times: dict[str, list[int]] = {t: [] for t in exp["topics"]}
    for m in read_ros2_messages(str(files[0])):
        topic, typ = m.channel.topic, m.schema.name
        qos = qos_yaml_tuples(m.channel.metadata.get("offered_qos_profiles", ""))
        check(qos == exp["qos"][topic], f"mcap_ros2: {topic} offered QoS {qos}")
        check(typ == exp["topics"][topic]["type"], f"mcap_ros2: {topic} schema {typ}")
        check(m.channel.message_encoding == "cdr" and m.schema.encoding == "ros2msg", "mcap_ros2: encodings")
        check_message("mcap_ros2", topic, typ, m.ros_msg, len(times[topic]), exp)
        times[topic].append(m.log_time_ns)
    check(times == exp["log_times"], f"mcap_ros2: log times {times}")


def cmd_read(args: argparse.Namespace) -> None:
    exp = json.loads(Path(args.expect).read_text())
    bag = Path(args.bag)
    read_rosbags(bag, exp)
    read_mcap_ros2(bag, exp)
    n = sum(len(v) for v in exp["log_times"].values())
    print(f"bag_peer: rosbags and mcap_ros2 both decoded {n} messages as expected")


def cmd_write(args: argparse.Namespace) -> None:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
    from rosbags.typesys import Stores, get_typestore

    inf = QosTime(9223372036, 854775807)

    def qos(history, depth, reliability, durability):
        return Qos(QosHistory[history], depth, QosReliability[reliability], QosDurability[durability],
                   inf, inf, QosLiveliness.AUTOMATIC, inf, False)

    offered = {
        "/lidar": [qos("KEEP_LAST", 5, "BEST_EFFORT", "VOLATILE")],
        # two recorded publishers, one seen through the graph (history unknown, depth 0)
        "/cam/image": [qos("KEEP_LAST", 7, "RELIABLE", "VOLATILE"), qos("UNKNOWN", 0, "BEST_EFFORT", "VOLATILE")],
        "/cam/info": [qos("KEEP_LAST", 1, "RELIABLE", "TRANSIENT_LOCAL")],
    }

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]

    def header(ns: int, frame: str):
        return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)

    t0 = 1_700_000_000_250_000_000
    expected: list[dict] = []
    writer = Writer(args.bag, version=args.version, storage_plugin=StoragePlugin.MCAP)
    if args.compress:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        conns = {
            topic: writer.add_connection(topic, typ, typestore=ts, offered_qos_profiles=offered[topic])
            for topic, typ in [("/lidar", "sensor_msgs/msg/PointCloud2"), ("/cam/image", "sensor_msgs/msg/Image"),
                               ("/cam/info", "sensor_msgs/msg/CameraInfo")]
        }
        for i in range(3):
            t = t0 + i * 100_000_000
            n = 10 + i
            pts = np.zeros(n, dtype=CLOUD_DTYPE)
            pts["x"] = np.arange(n) * 0.5 + i
            pts["y"] = -np.arange(n, dtype=np.float32)
            pts["z"] = 0.25
            pts["intensity"] = np.arange(n) % 7
            fields = [T["sensor_msgs/msg/PointField"](name=k, offset=4 * j, datatype=7, count=1)
                      for j, k in enumerate(CLOUD_DTYPE.names)]
            cloud = T["sensor_msgs/msg/PointCloud2"](
                header=header(t, "velodyne"), height=1, width=n, fields=fields, is_bigendian=False,
                point_step=16, row_step=16 * n, data=pts.view(np.uint8), is_dense=i != 1)
            w, h = 5, 3  # odd sizes: 15-byte rows, 45 data bytes
            pix = ((np.arange(w * h * 3) * 7 + i) % 256).astype(np.uint8)
            image = T["sensor_msgs/msg/Image"](header=header(t, "cam"), height=h, width=w, encoding="rgb8",
                                               is_bigendian=0, step=w * 3, data=pix)
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=1, y_offset=2, height=3, width=4, do_rectify=bool(i % 2))
            d = np.array([0.1 * (k + 1) for k in range(i * 2)], dtype=np.float64)  # empty on frame 0
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header(t, "cam"), height=375, width=1242, distortion_model="plumb_bob" if i else "",
                d=d, k=np.arange(9, dtype=np.float64) + i, r=np.eye(3).ravel(), p=np.arange(12, dtype=np.float64) * -1.5,
                binning_x=i, binning_y=2 * i, roi=roi)
            # the camera info is logged 1 ms *before* the frame's other messages but written after them
            for topic, msg, log_t in [("/lidar", cloud, t), ("/cam/image", image, t + 1), ("/cam/info", info, t - 1_000_000)]:
                typ = conns[topic].msgtype
                writer.write(conns[topic], log_t, ts.serialize_cdr(msg, typ))
                e = {"topic": topic, "type": typ, "log_time_ns": log_t, "stamp_ns": t, "frame_id": msg.header.frame_id}
                if topic == "/lidar":
                    e.update(width=n, is_dense=bool(cloud.is_dense), data_hex=pts.tobytes().hex(),
                             fields=[[f.name, f.offset, f.datatype, f.count] for f in fields])
                elif topic == "/cam/image":
                    e.update(width=w, height=h, encoding="rgb8", step=w * 3, data_hex=pix.tobytes().hex())
                else:
                    e.update(distortion_model=info.distortion_model, d=d.tolist(), k=info.k.tolist(),
                             r=info.r.tolist(), p=info.p.tolist(), binning=[i, 2 * i],
                             roi=[1, 2, 3, 4, bool(i % 2)])
                expected.append(e)
    qos_expect = {t: qos_tuples(q) for t, q in offered.items()}
    Path(args.expect).write_text(json.dumps({"messages": expected, "qos": qos_expect}, indent=1))
    print(f"bag_peer: wrote {len(expected)} messages to {args.bag}")


def cmd_replay_listen(args: argparse.Namespace) -> None:
    import time

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    node = rclpy.create_node(f"bag_peer_replay_{__import__('os').getpid()}")
    out = {"points": [], "clock": [], "tf_late": [], "tf_volatile": 0, "late_joined_at": None}

    def on_points(m):
        out["points"].append({"stamp_ns": stamp_ns(m.header), "arrival": time.monotonic(), "width": m.width})

    def on_clock(m):
        out["clock"].append({"ns": m.clock.sec * 1_000_000_000 + m.clock.nanosec, "arrival": time.monotonic()})

    def on_tf_late(m):
        for t in m.transforms:
            tr, r = t.transform.translation, t.transform.rotation
            out["tf_late"].append({"parent": t.header.frame_id, "child": t.child_frame_id, "stamp_ns": stamp_ns(t.header),
                                   "xyz": [tr.x, tr.y, tr.z], "xyzw": [r.x, r.y, r.z, r.w], "arrival": time.monotonic()})

    def on_tf_volatile(_m):
        out["tf_volatile"] += 1

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(PointCloud2, args.points, on_points, reliable)
    node.create_subscription(Clock, "/clock", on_clock, QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
    deadline = time.monotonic() + args.timeout
    late = []
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.005)
        if not late and len(out["points"]) >= args.late_after:
            out["late_joined_at"] = time.monotonic()
            latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            late.append(node.create_subscription(TFMessage, "/tf_static", on_tf_late, latched))
            late.append(node.create_subscription(TFMessage, "/tf_static", on_tf_volatile, reliable))
        if len(out["points"]) >= args.n and out["tf_late"]:
            break
    # a little longer, so that stray late messages would be counted
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)
    node.destroy_node()
    rclpy.shutdown()
    print(json.dumps(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read", help="check a bag written by Rust against EXPECT_JSON")
    r.add_argument("bag")
    r.add_argument("expect")
    r.set_defaults(func=cmd_read)
    w = sub.add_parser("write", help="write a bag with rosbags and describe it in EXPECT_JSON")
    w.add_argument("bag")
    w.add_argument("expect")
    w.add_argument("--compress", action="store_true", help="zstd-compress the MCAP chunks")
    w.add_argument("--version", type=int, default=9, choices=[8, 9], help="rosbag2 metadata version")
    w.set_defaults(func=cmd_write)
    rl = sub.add_parser("replay_listen", help="receive eloss replay --clock over DDS, print JSON")
    rl.add_argument("points")
    rl.add_argument("n", type=int)
    rl.add_argument("late_after", type=int)
    rl.add_argument("timeout", type=float)
    rl.set_defaults(func=cmd_replay_listen)
    args = p.parse_args()
    try:
        args.func(args)
    except Mismatch as e:
        print(f"bag_peer: MISMATCH: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
