#!/usr/bin/env python3
"""Independent peers for the Rust bag module (tests/bag_roundtrip.rs).

    bag_peer.py read  BAG_DIR EXPECT_JSON    check a bag written by Rust
    bag_peer.py write BAG_DIR EXPECT_JSON [--compress]
                                             write a bag, describe it in JSON

`read` decodes the bag twice, with two unrelated implementations: `rosbags`
(AnyReader on the rosbag2 directory, with *no* default typestore, so the
message definitions stored in the bag must be complete and parseable) and
`mcap-ros2-support` (on the .mcap file, its own schema parser and CDR
decoder). Both must agree with EXPECT_JSON. Exit status 1 and a message on
stderr on the first mismatch.

`write` records PointCloud2 / Image / CameraInfo messages with
`rosbags.rosbag2.Writer` (MCAP storage, ROS 2 Jazzy typestore), deliberately
logging one message out of time order, and writes the expected decoded
values to EXPECT_JSON for the Rust side to compare against.
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


def check_message(peer: str, topic: str, typ: str, msg, index: int, exp: dict) -> None:
    """Compares one decoded message (either peer's objects) with the expectation."""
    where = f"{peer} {topic}[{index}]"
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
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]

    def header(ns: int, frame: str):
        return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)

    t0 = 1_700_000_000_250_000_000
    expected: list[dict] = []
    writer = Writer(args.bag, version=9, storage_plugin=StoragePlugin.MCAP)
    if args.compress:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        conns = {
            topic: writer.add_connection(topic, typ, typestore=ts)
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
    Path(args.expect).write_text(json.dumps({"messages": expected}, indent=1))
    print(f"bag_peer: wrote {len(expected)} messages to {args.bag}")


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
    w.set_defaults(func=cmd_write)
    args = p.parse_args()
    try:
        args.func(args)
    except Mismatch as e:
        print(f"bag_peer: MISMATCH: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
