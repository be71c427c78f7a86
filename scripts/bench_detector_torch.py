"""The compact detector's network in PyTorch eager, with OpenPCDet's module
names so our safetensors checkpoint loads with strict=True, run on the pillar
input dumped by `eloss bench-detector --dump`: checks that both give the same
head outputs and times the forward pass on the same machine.

  python scripts/bench_detector_torch.py --model CKPT --dump DUMP [--iters 20] [--threads 2] [--peers | --layouts | --cuda]

Prints one JSON line (max abs differences, median forward ms). With
--peers the same weights on the same pillar input also run through PyTorch
eager channels-last, TorchScript (traced, frozen, optimize_for_inference)
and ONNX Runtime's CPU execution provider (exported with torch.onnx), the
engines taking turns within every iteration; each engine's whole network
(pillar net + scatter + backbone + neck + head) is timed, as ours is.
With --layouts the backbone blocks alone (batch-norms fused by
torch.fx's `fuse`) run on the dumped frame's BEV occupancy in three
activation layouts: contiguous, channels-last and oneDNN's blocked
tensors (`torch.utils.mkldnn.to_mkldnn`, weights prepacked). With --cuda
the PyTorch peers on a GPU (eager fp32, fp16 autocast, channels-last fp16),
for the device check (scripts/gpu_check.sh); without the `safetensors`
package the files are read directly.
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

try:
    from safetensors import safe_open
except ImportError:  # the device machine's image need not have it (nothing can be installed there)
    safe_open = None


class PFN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.linear = nn.Linear(10, c, bias=False)
        self.norm = nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)


class Net(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c_enc = cfg["encoder_channels"]
        self.vfe = nn.Module()
        self.vfe.pfn_layers = nn.ModuleList([PFN(c_enc)])
        bb = cfg["backbone"]
        self.backbone_2d = nn.Module()
        blocks, c_in = [], bb["in_channels"]
        for c, s, n in zip(bb["num_filters"], bb["layer_strides"], bb["layer_nums"]):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(c_in, c, 3, stride=s, padding=0, bias=False),
                      nn.BatchNorm2d(c, eps=1e-3, momentum=0.01), nn.ReLU()]
            for _ in range(n):
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c, eps=1e-3, momentum=0.01), nn.ReLU()]
            blocks.append(nn.Sequential(*layers))
            c_in = c
        self.backbone_2d.blocks = nn.ModuleList(blocks)
        nk = cfg["neck"]
        self.backbone_2d.deblocks = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(ci, co, s, stride=s, bias=False), nn.BatchNorm2d(co, eps=1e-3, momentum=0.01), nn.ReLU())
            for ci, s, co in zip(nk["in_channels"], nk["upsample_strides"], nk["upsample_filters"])])
        c_head = sum(nk["upsample_filters"])
        a, k = 2 * len(cfg["classes"]), len(cfg["classes"])
        self.dense_head = nn.Module()
        self.dense_head.conv_cls = nn.Conv2d(c_head, a * k, 1)
        self.dense_head.conv_box = nn.Conv2d(c_head, a * 7, 1)
        self.dense_head.conv_dir_cls = nn.Conv2d(c_head, a * 2, 1)
        self.k, self.c_enc = k, c_enc
        self.channels_last = False

    def forward(self, features, num_points, coords, w, h):
        return self.forward_flat(features, num_points, coords[:, 0] * w + coords[:, 1], w, h)

    def forward_flat(self, features, num_points, flat_idx, w: int, h: int):
        p, m, _ = features.shape
        mask = (torch.arange(m, device=features.device)[None, :] < num_points[:, None]).float()[:, :, None]
        pfn = self.vfe.pfn_layers[0]
        x = pfn.linear(features * mask)
        x = torch.relu(pfn.norm(x.permute(0, 2, 1))).amax(dim=2)
        canvas = torch.zeros(self.c_enc, h * w, dtype=x.dtype, device=features.device)
        canvas[:, flat_idx] = x.t()
        x = canvas.view(1, self.c_enc, h, w)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.dense(x)

    def dense(self, x, layers=None):
        """Backbone, neck and head on the BEV map x [B, C, H, W]: (cls, boxes, dir)
        flattened in (y, x, anchor) order; with a list `layers`, every
        Conv-BN-ReLU output of the backbone is appended to it (what the Eloss
        monitor reads; scripts/export_onnx.py exports them)."""
        ups = []
        for block, de in zip(self.backbone_2d.blocks, self.backbone_2d.deblocks):
            if layers is None:
                x = block(x)
            else:
                for m in block:
                    x = m(x)
                    if isinstance(m, nn.ReLU):
                        layers.append(x)
            ups.append(de(x))
        x = torch.cat(ups, 1)
        flat = lambda t, c: t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, c)
        hd = self.dense_head
        return flat(hd.conv_cls(x), self.k), flat(hd.conv_box(x), 7), flat(hd.conv_dir_cls(x), 2)


class Fixed(nn.Module):
    """The network with the grid size fixed, so it traces and exports."""

    def __init__(self, net, w, h):
        super().__init__()
        self.net, self.w, self.h = net, w, h

    def forward(self, features, num_points, flat_idx):
        return self.net.forward_flat(features, num_points, flat_idx, self.w, self.h)


def fixed_net(cfg, state, w, h, channels_last=False, device="cpu"):
    """A fresh eval-mode `Fixed` network with `state` loaded, on `device`,
    optionally in channels-last layout (every peer engine gets its own)."""
    n = Net(cfg).eval()
    n.load_state_dict(state, strict=False)
    n = n.to(device)
    if channels_last:
        n = n.to(memory_format=torch.channels_last)
        n.channels_last = True
    return Fixed(n, w, h).eval()


def peer_engines(cfg, state, args, w, h, threads, onnx_path):
    """name -> callable(*args) -> (cls, boxes, dir), all on the same weights."""
    import onnxruntime as ort

    eager, eager_cl = fixed_net(cfg, state, w, h), fixed_net(cfg, state, w, h, channels_last=True)
    with torch.no_grad():
        traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(fixed_net(cfg, state, w, h), args)))
        torch.onnx.export(fixed_net(cfg, state, w, h), args, onnx_path, dynamo=False, opset_version=17,
                          input_names=["features", "num_points", "flat_idx"], output_names=["cls", "boxes", "dir"])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    np_args = {"features": args[0].numpy(), "num_points": args[1].numpy(), "flat_idx": args[2].numpy()}
    return {
        "pytorch_eager": lambda: eager(*args),
        "pytorch_eager_channels_last": lambda: eager_cl(*args),
        "torchscript_frozen_optimized": lambda: traced(*args),
        "onnxruntime_cpu": lambda: tuple(torch.from_numpy(o) for o in sess.run(None, np_args)),
    }, ort.__version__


def peers(cfg, state, d, w, h, a):
    import tempfile

    flat_idx = d["coords"][:, 0] * w + d["coords"][:, 1]
    args = (d["features"], d["num_points"], flat_idx)
    with tempfile.TemporaryDirectory() as tmp:
        engines, ort_version = peer_engines(cfg, state, args, w, h, torch.get_num_threads(), f"{tmp}/net.onnx")
        times, diffs = {k: [] for k in engines}, {}
        with torch.inference_mode():
            for name, run in engines.items():  # warm-up (TorchScript's profiling runs) and outputs
                for _ in range(3):
                    out = run()
                diffs[name] = max(float((o - d[k]).abs().max()) for o, k in zip(out, ("cls", "boxes", "dir")))
            for _ in range(a.iters):
                for name, run in engines.items():
                    t = time.perf_counter()
                    run()
                    times[name].append((time.perf_counter() - t) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    rust_ms = float(d["network_ms_median"][0])
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "onnxruntime": ort_version,
                      "network_ms_median": med, "max_abs_diff_vs_ours": diffs, "ours_network_ms_median_from_dump": rust_ms}))


def cuda_peers(cfg, state, d, w, h, a, device="cuda"):
    """The PyTorch peers on a CUDA device (the device check, docs/gpu_check.md):
    eager fp32 (cuDNN's defaults, as libtorch's), eager under fp16 autocast,
    and the same channels-last; each call synchronised, the engines taking
    turns within every iteration. Differences are against the dump's head
    outputs (computed on the CPU by our binary). `device="cpu"` (bf16
    autocast there) only dry-runs the code path on a machine without a GPU."""
    dev = torch.device(device)
    half = torch.float16 if dev.type == "cuda" else torch.bfloat16
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    host = (d["features"], d["num_points"], d["coords"][:, 0] * w + d["coords"][:, 1])
    args = tuple(t.to(dev) for t in host)
    plain, cl = fixed_net(cfg, state, w, h, device=dev), fixed_net(cfg, state, w, h, channels_last=True, device=dev)

    def fp16(m):
        def run():
            with torch.autocast(dev.type, dtype=half):
                return m(*args)
        return run

    engines = {"pytorch_eager_fp32": lambda: plain(*args), "pytorch_eager_fp16_autocast": fp16(plain),
               "pytorch_eager_channels_last_fp16_autocast": fp16(cl),
               # as ours is timed: the pillar tensors start in host memory
               "pytorch_eager_fp32_from_host": lambda: plain(*(t.to(dev) for t in host))}
    times, diffs = {k: [] for k in engines}, {}
    with torch.inference_mode():
        for name, run in engines.items():  # warm-up (cuDNN algorithm search) and outputs
            for _ in range(3):
                out = run()
            diffs[name] = max(float((o.float().cpu() - d[k]).abs().max()) for o, k in zip(out, ("cls", "boxes", "dir")))
        for _ in range(a.iters):
            for name, run in engines.items():
                sync()
                t = time.perf_counter()
                run()
                sync()
                times[name].append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
                      "cudnn": torch.backends.cudnn.version(), "network_ms_median": {k: statistics.median(v) for k, v in times.items()},
                      "max_abs_diff_vs_ours_on_cpu": diffs, "ours_network_ms_median_from_dump": float(d["network_ms_median"][0])}))


def layouts(net, d, w, h, a):
    import torch.fx.experimental.optimization as fx_opt
    import torch.utils.mkldnn as mkldnn

    blocks = []
    for b in net.backbone_2d.blocks:  # oneDNN tensors have no ZeroPad2d: pad in the conv instead (same result)
        mods = list(b)
        mods[1].padding = (1, 1)
        blocks.append(nn.Sequential(*mods[1:]).eval())
    c = net.backbone_2d.blocks[0][1].in_channels
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, c, h, w)
    x.view(c, -1)[:, d["coords"][:, 0] * w + d["coords"][:, 1]] = torch.randn(c, d["coords"].shape[0], generator=g)
    engines = {
        "contiguous": ([fx_opt.fuse(b) for b in blocks], x, lambda o: o),
        "channels_last": ([fx_opt.fuse(b).to(memory_format=torch.channels_last) for b in blocks],
                          x.contiguous(memory_format=torch.channels_last), lambda o: o),
        "onednn_blocked": ([mkldnn.to_mkldnn(fx_opt.fuse(b)) for b in blocks], x.to_mkldnn(), lambda o: o.to_dense()),
    }

    def run(name):
        bs, y, out = engines[name]
        for b in bs:
            y = b(y)
        return out(y)

    times = {k: [] for k in engines}
    with torch.no_grad():
        ref = run("contiguous")
        diff = {k: float((run(k) - ref).abs().max()) for k in engines}
        for _ in range(a.iters):
            for k in engines:
                t = time.perf_counter()
                run(k)
                times[k].append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"threads": torch.get_num_threads(), "backbone_blocks_ms_median": {k: statistics.median(v) for k, v in times.items()},
                      "max_abs_diff_vs_contiguous": diff}))


_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "I8": torch.int8, "BOOL": torch.bool}


def read_safetensors(path):
    """(metadata, {name: tensor}) of a safetensors file: the `safetensors`
    package when installed, else the format read directly (an 8-byte
    little-endian header length, a JSON header, the raw little-endian data)."""
    if safe_open is not None:
        with safe_open(path, "pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        dtype = _DTYPES[v["dtype"]]
        t = torch.frombuffer(data[a:b], dtype=dtype) if b > a else torch.empty(0, dtype=dtype)
        out[k] = t.reshape(v["shape"]).clone()
    return meta, out


def load_model(path):
    """(config from the metadata, weights, eval-mode Net with them loaded) of
    one of our detector checkpoints (also used by bench_frame_python.py)."""
    meta, tensors = read_safetensors(path)
    cfg = json.loads(meta["config"])
    state = {k: t for k, t in tensors.items() if not k.startswith("optimizer/")}
    net = Net(cfg).eval()
    # running stats buffers must all come from the file; num_batches_tracked is PyTorch-only
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    return cfg, state, net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--peers", action="store_true", help="also TorchScript-optimized, channels-last and ONNX Runtime")
    ap.add_argument("--layouts", action="store_true", help="the backbone blocks alone: contiguous, channels-last, oneDNN blocked")
    ap.add_argument("--cuda", action="store_true", help="the PyTorch peers on the GPU: eager fp32, fp16 autocast, channels-last fp16")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg, state, net = load_model(a.model)
    d = read_safetensors(a.dump)[1]
    w, h = [int(v) for v in d["grid_wh"]]
    if a.peers:
        peers(cfg, state, d, w, h, a)
        return
    if a.layouts:
        layouts(net, d, w, h, a)
        return
    if a.cuda:
        cuda_peers(cfg, state, d, w, h, a)
        return
    args = (d["features"], d["num_points"], d["coords"], w, h)
    with torch.inference_mode():
        cls, box, dr = net(*args)
        times = []
        for _ in range(a.iters):
            t = time.perf_counter()
            net(*args)
            times.append((time.perf_counter() - t) * 1e3)
    diff = {k: float((o - d[k]).abs().max()) for k, o in (("cls", cls), ("boxes", box), ("dir", dr))}
    rust_ms = float(d["network_ms_median"][0])
    torch_ms = statistics.median(times)
    print(json.dumps({"max_abs_diff": diff, "threads": torch.get_num_threads(), "torch_network_ms_median": torch_ms,
                      "rust_network_ms_median": rust_ms, "torch_over_rust": torch_ms / rust_ms}))


if __name__ == "__main__":
    main()
