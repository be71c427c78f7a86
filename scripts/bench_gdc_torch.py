"""PyTorch side of `eloss gdc bench`: CPU time per crop of the same GDC
backbones in PyTorch eager, on the same machine and thread count.

  python scripts/bench_gdc_torch.py --backbone dinov2 --dir DIR [--batch 1] [--iters 20] [--threads 1]
  python scripts/bench_gdc_torch.py --backbone efficientnet --weights F.safetensors [...]

dinov2: transformers `Dinov2Model` from DIR; with --make-vits14 a randomly
initialised ViT-S/14 (hidden 384, 12 layers, 6 heads, mlp ratio 4, patch 14,
image 224) is first saved there (save_pretrained) for both sides to load.
The embedding is the CLS token of last_hidden_state (our `cls` recipe).
efficientnet: the reference `efficientnet_lite_pytorch.EfficientNet`
(efficientnet-lite0) with our converted weights; the embedding is its pooled
1280-d features (extract_features + global average pool, our `pooled`).
Inputs are random 224x224 pixels (preprocessing is not timed here); the
median of --iters runs after one warm-up, under torch.inference_mode.
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402


def dinov2(args):
    from transformers import Dinov2Config, Dinov2Model
    if args.make_vits14:
        torch.manual_seed(0)
        cfg = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
                           patch_size=14, image_size=224)
        Dinov2Model(cfg).eval().save_pretrained(args.dir)
    model = Dinov2Model.from_pretrained(args.dir).eval()
    return lambda x: model(pixel_values=x).last_hidden_state[:, 0]


def efficientnet(args):
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import load_file
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(load_file(args.weights))
    model.eval()
    return lambda x: torch.nn.functional.adaptive_avg_pool2d(model.extract_features(x), 1).flatten(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", choices=["dinov2", "efficientnet"], required=True)
    ap.add_argument("--dir")
    ap.add_argument("--make-vits14", action="store_true")
    ap.add_argument("--weights")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    embed = dinov2(a) if a.backbone == "dinov2" else efficientnet(a)
    x = torch.randn(a.batch, 3, 224, 224)
    times = []
    with torch.inference_mode():
        for i in range(a.iters + 1):
            t = time.perf_counter()
            e = embed(x)
            if i:
                times.append((time.perf_counter() - t) * 1e3 / a.batch)
    times.sort()
    print(json.dumps({"backbone": a.backbone, "batch": a.batch, "threads": torch.get_num_threads(),
                      "dim": e.shape[-1], "embed_ms_per_crop_median": round(times[len(times) // 2], 3)}))


if __name__ == "__main__":
    main()
