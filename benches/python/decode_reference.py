"""The same decode work as benches/decode.rs in the reference Python stack
(numpy, which is what sensor_msgs_py.point_cloud2.read_points uses inside):
PointCloud2 bytes -> x, y, z, intensity float32 arrays with non-finite points
dropped, and a bgr8 image -> packed RGB. Prints points/s (or pixels/s).

  python benches/python/decode_reference.py ../shared/data/kitti_000008/000008.bin
"""
import sys
import timeit

import numpy as np


def decode_cloud(data, dtype):
    a = np.frombuffer(data, dtype=dtype)
    x, y, z = (a[k].astype(np.float32) for k in "xyz")
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    return x[keep], y[keep], z[keep], a["intensity"].astype(np.float32)[keep]


def bench(name, fn, elements):
    n, total = timeit.Timer(fn).autorange()
    best = min(timeit.repeat(fn, number=n, repeat=5)) / n
    print(f"{name}: {best * 1e6:.1f} us  {elements / best / 1e6:.1f} M elements/s")


def main(path):
    xyzi = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    n = len(xyzi)
    f32 = np.dtype({"names": list("xyz") + ["intensity"], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 12], "itemsize": 16})
    data16 = xyzi.tobytes()
    bench("pointcloud2/kitti_f32_step16", lambda: decode_cloud(data16, f32), n)

    f64 = np.dtype({"names": list("xyz") + ["intensity"], "formats": ["<f8"] * 3 + ["<f4"], "offsets": [0, 8, 16, 24], "itemsize": 32})
    a = np.zeros(n, dtype=f64)
    for i, k in enumerate("xyz"):
        a[k] = xyzi[:, i]
    a["intensity"] = xyzi[:, 3]
    data32 = a.tobytes()
    bench("pointcloud2/kitti_f64_step32", lambda: decode_cloud(data32, f64), n)

    data_x7 = np.tile(xyzi, (7, 1)).tobytes()
    bench("pointcloud2/kitti_x7_f32_step16", lambda: decode_cloud(data_x7, f32), 7 * n)

    w, h = 1242, 375
    bgr = (np.arange(w * h * 3) % 251).astype(np.uint8).tobytes()
    bench("image/bgr8_1242x375", lambda: np.ascontiguousarray(np.frombuffer(bgr, np.uint8).reshape(h, w, 3)[:, :, ::-1]), w * h)


if __name__ == "__main__":
    main(sys.argv[1])
