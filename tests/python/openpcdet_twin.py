"""A PyTorch twin of OpenPCDet's PointPillars (our own code, written from
reading OpenPCDet's PillarVFE, PointPillarScatter, BaseBEVBackbone,
AnchorHeadSingle / AnchorHeadTemplate, AnchorGenerator, ResidualCoder and
class-agnostic nms_gpu post-processing), used by tests/openpcdet_import.rs.

Builds a small PointPillars with random weights and random batch-norm
statistics, saves it the way OpenPCDet's train_utils.save_checkpoint does
(torch.save of {'epoch', 'it', 'model_state', 'optimizer_state', 'version'},
legacy non-zip serialisation) and also as a zip file, writes the OpenPCDet
YAML of the model, runs the twin on a cloud and writes its head maps and
final boxes.

usage: openpcdet_twin.py OUT_DIR CLOUD.bin
writes OUT_DIR/{ckpt_legacy.pth, ckpt_zip.pth, pointpillar_small.yaml,
bad_extra.pth, bad_missing.pth, bad_shape.pth, reference.safetensors}
"""
import math
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

RANGE = [0.0, -10.24, -3.0, 20.48, 10.24, 1.0]
VOXEL = [0.32, 0.32, 4.0]
MAX_POINTS, MAX_VOXELS = 16, 4000
VFE_FILTERS = 16
LAYER_NUMS, LAYER_STRIDES, NUM_FILTERS = [1, 2], [2, 2], [16, 32]
UP_STRIDES, UP_FILTERS = [1, 2], [16, 16]
CLASSES = [("Car", [3.9, 1.6, 1.56], -1.78), ("Pedestrian", [0.8, 0.6, 1.73], -0.6), ("Cyclist", [1.76, 0.6, 1.73], -0.6)]
ROTATIONS = [0.0, 1.57]
DIR_OFFSET, DIR_LIMIT_OFFSET, NUM_DIR_BINS = 0.78539, 0.0, 2
SCORE_THRESH, NMS_THRESH, NMS_PRE, NMS_POST = 0.1, 0.01, 4096, 500

YAML = f"""CLASS_NAMES: ['Car', 'Pedestrian', 'Cyclist']
DATA_CONFIG:
    _BASE_CONFIG_: cfgs/dataset_configs/kitti_dataset.yaml
    POINT_CLOUD_RANGE: {RANGE}
    DATA_PROCESSOR:
        - NAME: mask_points_and_boxes_outside_range
          REMOVE_OUTSIDE_BOXES: True
        - NAME: transform_points_to_voxels
          VOXEL_SIZE: {VOXEL}
          MAX_POINTS_PER_VOXEL: {MAX_POINTS}
          MAX_NUMBER_OF_VOXELS: {{'train': 2000, 'test': {MAX_VOXELS}}}
MODEL:
    NAME: PointPillar
    VFE:
        NAME: PillarVFE
        WITH_DISTANCE: False
        USE_ABSLOTE_XYZ: True
        USE_NORM: True
        NUM_FILTERS: [{VFE_FILTERS}]
    MAP_TO_BEV:
        NAME: PointPillarScatter
        NUM_BEV_FEATURES: {VFE_FILTERS}
    BACKBONE_2D:
        NAME: BaseBEVBackbone
        LAYER_NUMS: {LAYER_NUMS}
        LAYER_STRIDES: {LAYER_STRIDES}
        NUM_FILTERS: {NUM_FILTERS}
        UPSAMPLE_STRIDES: {UP_STRIDES}
        NUM_UPSAMPLE_FILTERS: {UP_FILTERS}
    DENSE_HEAD:
        NAME: AnchorHeadSingle
        CLASS_AGNOSTIC: False
        USE_DIRECTION_CLASSIFIER: True
        DIR_OFFSET: {DIR_OFFSET}
        DIR_LIMIT_OFFSET: {DIR_LIMIT_OFFSET}
        NUM_DIR_BINS: {NUM_DIR_BINS}
        ANCHOR_GENERATOR_CONFIG: [
""" + ",\n".join(
    f"""            {{'class_name': '{n}', 'anchor_sizes': [{s}], 'anchor_rotations': {ROTATIONS},
              'anchor_bottom_heights': [{z}], 'align_center': False, 'feature_map_stride': 2,
              'matched_threshold': 0.6, 'unmatched_threshold': 0.45}}"""
    for n, s, z in CLASSES
) + f"""
        ]
        TARGET_ASSIGNER_CONFIG:
            NAME: AxisAlignedTargetAssigner
            BOX_CODER: ResidualCoder
    POST_PROCESSING:
        SCORE_THRESH: {SCORE_THRESH}
        OUTPUT_RAW_SCORE: False
        NMS_CONFIG:
            MULTI_CLASSES_NMS: False
            NMS_TYPE: nms_gpu
            NMS_THRESH: {NMS_THRESH}
            NMS_PRE_MAXSIZE: {NMS_PRE}
            NMS_POST_MAXSIZE: {NMS_POST}
"""


def voxelize(points):
    """Pillars in order of their first point; the first MAX_POINTS points of each kept."""
    nx = round((RANGE[3] - RANGE[0]) / VOXEL[0])
    ny = round((RANGE[4] - RANGE[1]) / VOXEL[1])
    slots, voxels, counts, coords = {}, [], [], []
    for p in points:
        x, y, z = float(p[0]), float(p[1]), float(p[2])
        if not (RANGE[0] <= x < RANGE[3] and RANGE[1] <= y < RANGE[4] and RANGE[2] <= z < RANGE[5]):
            continue
        cx, cy = int((x - RANGE[0]) / VOXEL[0]), int((y - RANGE[1]) / VOXEL[1])
        key = (cy, cx)
        if key not in slots:
            if len(voxels) >= MAX_VOXELS:
                continue
            slots[key] = len(voxels)
            voxels.append(np.zeros((MAX_POINTS, 4), np.float32))
            counts.append(0)
            coords.append((0, 0, cy, cx))  # (batch, z, y, x) as OpenPCDet
        v = slots[key]
        if counts[v] < MAX_POINTS:
            voxels[v][counts[v]] = p[:4]
            counts[v] += 1
    return torch.from_numpy(np.stack(voxels)), torch.tensor(counts), torch.tensor(coords), nx, ny


class PFN(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.linear = nn.Linear(c_in, c_out, bias=False)
        self.norm = nn.BatchNorm1d(c_out, eps=1e-3, momentum=0.01)

    def forward(self, x):
        x = self.linear(x)
        x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)
        return torch.relu(x).max(dim=1)[0]


class PillarVFE(nn.Module):
    def __init__(self):
        super().__init__()
        self.pfn_layers = nn.ModuleList([PFN(10, VFE_FILTERS)])

    def forward(self, voxels, counts, coords):
        xyz = voxels[:, :, :3]
        mean = xyz.sum(dim=1, keepdim=True) / counts.float().view(-1, 1, 1)
        centre = torch.stack([
            coords[:, 3].float() * VOXEL[0] + VOXEL[0] / 2 + RANGE[0],
            coords[:, 2].float() * VOXEL[1] + VOXEL[1] / 2 + RANGE[1],
            coords[:, 1].float() * VOXEL[2] + VOXEL[2] / 2 + RANGE[2],
        ], dim=1).unsqueeze(1)
        feats = torch.cat([voxels, xyz - mean, xyz - centre], dim=-1)
        mask = (torch.arange(MAX_POINTS).view(1, -1) < counts.view(-1, 1)).unsqueeze(-1).float()
        return self.pfn_layers[0](feats * mask)


def scatter(features, coords, nx, ny):
    canvas = torch.zeros(features.shape[1], ny * nx)
    canvas[:, coords[:, 2] * nx + coords[:, 3]] = features.t()
    return canvas.view(1, -1, ny, nx)


class BaseBEVBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks, self.deblocks = nn.ModuleList(), nn.ModuleList()
        c_in = VFE_FILTERS
        for i, f in enumerate(NUM_FILTERS):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(c_in, f, 3, stride=LAYER_STRIDES[i], padding=0, bias=False),
                      nn.BatchNorm2d(f, eps=1e-3, momentum=0.01), nn.ReLU()]
            for _ in range(LAYER_NUMS[i]):
                layers += [nn.Conv2d(f, f, 3, padding=1, bias=False), nn.BatchNorm2d(f, eps=1e-3, momentum=0.01), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            self.deblocks.append(nn.Sequential(
                nn.ConvTranspose2d(f, UP_FILTERS[i], UP_STRIDES[i], stride=UP_STRIDES[i], bias=False),
                nn.BatchNorm2d(UP_FILTERS[i], eps=1e-3, momentum=0.01), nn.ReLU()))
            c_in = f

    def forward(self, x):
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, dim=1)


def anchors(h, w):
    """[h * w * classes * rotations, 7] in (y, x, class, rotation) order, align_center False."""
    per_class = []
    for _, size, bottom in CLASSES:
        xs = torch.arange(RANGE[0], RANGE[3] + 1e-5, step=(RANGE[3] - RANGE[0]) / (w - 1), dtype=torch.float32)
        ys = torch.arange(RANGE[1], RANGE[4] + 1e-5, step=(RANGE[4] - RANGE[1]) / (h - 1), dtype=torch.float32)
        assert len(xs) == w and len(ys) == h
        a = torch.zeros(h, w, len(ROTATIONS), 7)
        a[..., 0] = xs.view(1, w, 1)
        a[..., 1] = ys.view(h, 1, 1)
        a[..., 2] = bottom + size[2] / 2
        a[..., 3:6] = torch.tensor(size)
        a[..., 6] = torch.tensor(ROTATIONS).view(1, 1, -1)
        per_class.append(a.unsqueeze(2))
    return torch.cat(per_class, dim=2).view(-1, 7)


class AnchorHeadSingle(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        a = len(CLASSES) * len(ROTATIONS)
        self.conv_cls = nn.Conv2d(c_in, a * len(CLASSES), 1)
        self.conv_box = nn.Conv2d(c_in, a * 7, 1)
        self.conv_dir_cls = nn.Conv2d(c_in, a * NUM_DIR_BINS, 1)

    def forward(self, x):
        nhwc = lambda t, c: t.permute(0, 2, 3, 1).contiguous().view(-1, c)
        return nhwc(self.conv_cls(x), len(CLASSES)), nhwc(self.conv_box(x), 7), nhwc(self.conv_dir_cls(x), NUM_DIR_BINS)


class PointPillar(nn.Module):
    def __init__(self):
        super().__init__()
        self.vfe = PillarVFE()
        self.backbone_2d = BaseBEVBackbone()
        self.dense_head = AnchorHeadSingle(sum(UP_FILTERS))
        self.register_buffer("global_step", torch.LongTensor(1).zero_())


def decode(codes, a):
    """ResidualCoder.decode_torch."""
    diag = torch.sqrt(a[:, 3] ** 2 + a[:, 4] ** 2)
    return torch.stack([
        codes[:, 0] * diag + a[:, 0], codes[:, 1] * diag + a[:, 1], codes[:, 2] * a[:, 5] + a[:, 2],
        torch.exp(codes[:, 3]) * a[:, 3], torch.exp(codes[:, 4]) * a[:, 4], torch.exp(codes[:, 5]) * a[:, 5],
        codes[:, 6] + a[:, 6]], dim=1)


def limit_period(v, offset, period):
    return v - torch.floor(v / period + offset) * period


def corners(b):
    c, s = math.cos(b[6]), math.sin(b[6])
    return [(b[0] + c * dx - s * dy, b[1] + s * dx + c * dy) for dx, dy in
            [(b[3] / 2, b[4] / 2), (-b[3] / 2, b[4] / 2), (-b[3] / 2, -b[4] / 2), (b[3] / 2, -b[4] / 2)]]


def clip(subject, clipper):
    """Sutherland-Hodgman: subject polygon clipped by a convex counter-clockwise polygon."""
    out = subject
    for i in range(len(clipper)):
        a, b = clipper[i], clipper[(i + 1) % len(clipper)]
        inside = lambda p: (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= 0
        def cross(p, q):
            d1 = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
            d2 = (b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])
            t = d1 / (d1 - d2)
            return (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]))
        pts, out = out, []
        for j in range(len(pts)):
            p, q = pts[j], pts[(j + 1) % len(pts)]
            if inside(q):
                if not inside(p):
                    out.append(cross(p, q))
                out.append(q)
            elif inside(p):
                out.append(cross(p, q))
        if not out:
            return []
    return out


def area(poly):
    return 0.5 * abs(sum(poly[i][0] * poly[(i + 1) % len(poly)][1] - poly[(i + 1) % len(poly)][0] * poly[i][1] for i in range(len(poly))))


def iou_bev(a, b):
    if math.hypot(a[0] - b[0], a[1] - b[1]) > (math.hypot(a[3], a[4]) + math.hypot(b[3], b[4])) / 2:
        return 0.0
    inter = clip(corners(a), corners(b))
    i = area(inter) if len(inter) >= 3 else 0.0
    return i / max(a[3] * a[4] + b[3] * b[4] - i, 1e-8)


def post_process(cls, boxes):
    """Class-agnostic NMS as OpenPCDet's post_processing with MULTI_CLASSES_NMS False."""
    scores, labels = torch.sigmoid(cls).max(dim=1)
    keep = torch.nonzero(scores >= SCORE_THRESH).view(-1)
    s, order = torch.topk(scores[keep], k=min(NMS_PRE, len(keep)))
    cand = keep[order]
    b = boxes[cand].double().tolist()
    kept = []
    for i in range(len(cand)):
        if all(iou_bev(b[i], b[k]) <= NMS_THRESH for k in kept):
            kept.append(i)
    kept = cand[torch.tensor(kept[:NMS_POST], dtype=torch.long)]
    return boxes[kept], scores[kept], labels[kept]


def randomise(model):
    g = torch.Generator().manual_seed(14)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
            elif name.endswith("norm.weight") or (name.endswith(".weight") and t.dim() == 1):
                t.copy_(0.8 + 0.4 * torch.rand(t.shape, generator=g))
            elif t.dim() == 1:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel() if not name.startswith("backbone_2d.deblocks") else t.shape[0]
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2.0 / fan_in))
        # few anchors above the score threshold, as in a trained model
        model.dense_head.conv_cls.bias.fill_(-4.0)
        model.dense_head.conv_cls.weight.mul_(0.3)
        model.dense_head.conv_box.weight.mul_(0.1)


def main():
    out, cloud = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    model = PointPillar()
    randomise(model)
    model.eval()
    model.global_step.fill_(1234)
    state = model.state_dict()
    # as OpenPCDet's adam_onecycle leaves it: Adam moments, numpy scalars written by the schedule
    optimizer_state = {"state": {0: {"step": 10, "exp_avg": torch.zeros(3), "exp_avg_sq": torch.ones(3)}},
                       "param_groups": [{"lr": np.float64(0.003), "betas": (np.float64(0.95), 0.99), "eps": 1e-8,
                                         "weight_decay": 0.01, "amsgrad": False, "params": [0]}]}
    ckpt = {"epoch": 80, "it": 37120, "model_state": state, "optimizer_state": optimizer_state, "version": "pcdet+0.6.0"}
    torch.save(ckpt, f"{out}/ckpt_legacy.pth", _use_new_zipfile_serialization=False)
    torch.save(ckpt, f"{out}/ckpt_zip.pth")
    # broken variants for the strict mapping
    extra = dict(state)
    extra["dense_head.conv_extra.weight"] = torch.zeros(2, 2)
    torch.save({"model_state": extra}, f"{out}/bad_extra.pth", _use_new_zipfile_serialization=False)
    missing = {k: v for k, v in state.items() if k != "dense_head.conv_dir_cls.bias"}
    torch.save({"model_state": missing}, f"{out}/bad_missing.pth", _use_new_zipfile_serialization=False)
    shape = dict(state)
    shape["backbone_2d.blocks.1.1.weight"] = torch.zeros(32, 32, 3, 3)
    torch.save({"model_state": shape}, f"{out}/bad_shape.pth", _use_new_zipfile_serialization=False)
    with open(f"{out}/pointpillar_small.yaml", "w") as f:
        f.write(YAML)

    points = np.fromfile(cloud, dtype=np.float32).reshape(-1, 4)
    voxels, counts, coords, nx, ny = voxelize(points)
    with torch.no_grad():
        bev = scatter(model.vfe(voxels, counts, coords), coords, nx, ny)
        cls, box, dirs = model.dense_head(model.backbone_2d(bev))
    h, w = ny // LAYER_STRIDES[0], nx // LAYER_STRIDES[0]
    a = anchors(h, w)
    boxes = decode(box, a)
    period = 2 * math.pi / NUM_DIR_BINS
    rot = limit_period(boxes[:, 6] - DIR_OFFSET, DIR_LIMIT_OFFSET, period)
    boxes[:, 6] = rot + DIR_OFFSET + period * torch.argmax(dirs, dim=1).float()
    final, scores, labels = post_process(cls, boxes)
    save_file({"cls": cls.contiguous(), "boxes": box.contiguous(), "dir": dirs.contiguous(), "anchors": a.contiguous(),
               "final_boxes": final.contiguous(), "final_scores": scores.contiguous(), "final_labels": labels.contiguous()},
              f"{out}/reference.safetensors")
    print(f"pillars {len(counts)}, anchors {len(a)}, candidates {(torch.sigmoid(cls).max(dim=1)[0] >= SCORE_THRESH).sum().item()}, boxes {len(final)}")


if __name__ == "__main__":
    main()
