"""The compact detector's network in PyTorch eager, with OpenPCDet's module
names so our safetensors checkpoint loads with strict=True, run on the pillar
input dumped by `eloss bench-detector --dump`: checks that both give the same
head outputs and times the forward pass on the same machine.

  python scripts/bench_detector_torch.py --model CKPT --dump DUMP [--iters 20] [--threads 2]

Prints one JSON line (max abs differences, median forward ms).
"""
import argparse
import json
import statistics
import time

import torch
from safetensors import safe_open
from torch import nn


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

    def forward(self, features, num_points, coords, w, h):
        p, m, _ = features.shape
        mask = (torch.arange(m)[None, :] < num_points[:, None]).float()[:, :, None]
        pfn = self.vfe.pfn_layers[0]
        x = pfn.linear(features * mask)
        x = torch.relu(pfn.norm(x.permute(0, 2, 1))).amax(dim=2)
        canvas = torch.zeros(self.c_enc, h * w)
        canvas[:, coords[:, 0] * w + coords[:, 1]] = x.t()
        x = canvas.view(1, self.c_enc, h, w)
        ups = []
        for block, de in zip(self.backbone_2d.blocks, self.backbone_2d.deblocks):
            x = block(x)
            ups.append(de(x))
        x = torch.cat(ups, 1)
        flat = lambda t, c: t.permute(0, 2, 3, 1).reshape(1, -1, c)
        hd = self.dense_head
        return flat(hd.conv_cls(x), self.k), flat(hd.conv_box(x), 7), flat(hd.conv_dir_cls(x), 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    with safe_open(a.model, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
        state = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("optimizer/")}
    net = Net(cfg).eval()
    # running stats buffers must all come from the file; num_batches_tracked is PyTorch-only
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    with safe_open(a.dump, "pt") as f:
        d = {k: f.get_tensor(k) for k in f.keys()}
    w, h = [int(v) for v in d["grid_wh"]]
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
