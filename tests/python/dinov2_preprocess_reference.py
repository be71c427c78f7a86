"""Reference side of tests/dinov2_preprocess.rs: the Hugging Face
BitImageProcessor with facebook/dinov2-*'s preprocessor_config.json, applied
to crops of a real image.

  python tests/python/dinov2_preprocess_reference.py IMAGE.png OUT.safetensors X0,Y0,X1,Y1 ...
"""
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import BitImageProcessor

PROCESSOR = BitImageProcessor(
    do_resize=True, size={"shortest_edge": 256}, resample=3, do_center_crop=True,
    crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
    do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    do_convert_rgb=True)


def main(image, out, boxes):
    img = Image.open(image).convert("RGB")
    tensors = {}
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = (int(v) for v in b.split(","))
        crop = img.crop((x0, y0, x1, y1))
        pv = PROCESSOR(images=crop, return_tensors="np")["pixel_values"][0]
        tensors[f"pixels_{i}"] = torch.from_numpy(np.ascontiguousarray(pv, dtype=np.float32))
    save_file(tensors, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
