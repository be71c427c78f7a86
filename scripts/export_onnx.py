"""Exports the dense part of one of our detector checkpoints (backbone, neck
and anchor head, everything after the BEV scatter) to ONNX for the node's
ONNX Runtime backend (`detector.backend: onnxruntime`, docs/benchmarks.md).

  source scripts/env.sh
  $ELOSS_PYTHON scripts/export_onnx.py --model config/detector/compact_eloss.safetensors --out compact_eloss.onnx

The graph (opset 17, batch dimension dynamic):
  input  `bev`     [B, C, H, W] float32, the BEV pseudo-image our pillar net scatters
  output `cls`     [B, H'·W'·A, classes] logits   (rows in (y, x, anchor) order, as ours)
  output `boxes`   [B, H'·W'·A, 7] residuals
  output `dir`     [B, H'·W'·A, 2] direction-bin logits
  output `layer_{b}_{l}`  every Conv-BN-ReLU output of backbone block b, layer l
                   (what the Eloss monitor reads), in order
The weights come from the checkpoint through the PyTorch twin of our network
(scripts/bench_detector_torch.py, strict key mapping), batch-norms in eval
mode; ONNX Runtime folds them itself. The file's metadata records the
checkpoint's model id (the digest of its weights) and config, so the node
refuses a graph made for other weights.
"""
import argparse
import json

import onnx
import torch
from safetensors import safe_open
from torch import nn

from bench_detector_torch import load_model


class Dense(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, bev):
        layers = []
        return (*self.net.dense(bev, layers), *layers)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="our detector checkpoint (.safetensors)")
    ap.add_argument("--out", required=True, help="the ONNX file to write")
    a = ap.parse_args()
    cfg, _, net = load_model(a.model)
    pc = cfg["pillars"]
    (x0, y0, _, x1, y1, _), (vx, vy) = pc["range"], pc["pillar_size"]
    w, h = round((x1 - x0) / vx), round((y1 - y0) / vy)
    dense = Dense(net).eval()
    bev = torch.zeros(1, cfg["backbone"]["in_channels"], h, w)
    with torch.no_grad():
        names = [f"layer_{b}_{l}" for b, n in enumerate(cfg["backbone"]["layer_nums"]) for l in range(n + 1)]
        outputs = ["cls", "boxes", "dir", *names]
        torch.onnx.export(dense, (bev,), a.out, dynamo=False, opset_version=17, input_names=["bev"], output_names=outputs,
                          dynamic_axes={k: {0: "batch"} for k in ["bev", *outputs]})
    model = onnx.load(a.out)
    with safe_open(a.model, "pt") as f:
        model_id = f.metadata()["model_id"]
    for k, v in {"eloss_model_id": model_id, "eloss_config": json.dumps(cfg, sort_keys=True)}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, a.out)
    print(json.dumps({"out": a.out, "bev": list(bev.shape), "outputs": outputs}))


if __name__ == "__main__":
    main()
