"""Reference side of tests/dinov2_parity.rs: small random DINOv2 models from
`transformers`, saved in the Hugging Face layout, with inputs and outputs.

  python tests/python/dinov2_reference.py OUT_DIR

For each variant (plain GELU MLP, SwiGLU MLP, 4 registers) writes
OUT_DIR/<variant>/{config.json, model.safetensors, io.safetensors}; io holds
`pixels_<h>x<w>` inputs and `hidden_<h>x<w>` = last_hidden_state outputs, for
the trained square grid (no interpolation) and a non-square size
(bicubic position-embedding interpolation).
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig,  # noqa: E402
                          Dinov2WithRegistersModel)

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=56, patch_size=14,
             layerscale_value=0.5)
VARIANTS = {
    "plain": (Dinov2Config, Dinov2Model, {}),
    "swiglu": (Dinov2Config, Dinov2Model, {"use_swiglu_ffn": True}),
    "registers": (Dinov2WithRegistersConfig, Dinov2WithRegistersModel, {"num_register_tokens": 4}),
}
SIZES = [(56, 56), (70, 98)]


def main(out):
    torch.manual_seed(0)
    for name, (cfg_cls, model_cls, extra) in VARIANTS.items():
        model = model_cls(cfg_cls(**SMALL, **extra)).eval()
        with torch.no_grad():  # no parameter keeps its tidy init: catches swapped or unused weights
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
        d = os.path.join(out, name)
        model.save_pretrained(d)
        io = {}
        for h, w in SIZES:
            x = torch.randn(2, 3, h, w)
            with torch.no_grad():
                io[f"pixels_{h}x{w}"] = x
                io[f"hidden_{h}x{w}"] = model(pixel_values=x).last_hidden_state.contiguous()
        save_file(io, os.path.join(d, "io.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
