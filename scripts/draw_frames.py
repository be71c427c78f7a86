"""Draws docs/img/frames.png: the frames eloss_perception_node works in
(docs/ros_integration.md). Side view and top view of a vehicle with a
y-forward LiDAR (nuScenes LIDAR_TOP style) 1.84 m up, base_link on the
ground, the model frame at the trained 1.73 m, and a camera optical frame.

    $ELOSS_PYTHON scripts/draw_frames.py docs/img/frames.png
"""
import sys

from PIL import Image, ImageDraw, ImageFont

W, H = 1400, 620
img = Image.new("RGB", (W, H), "white")
d = ImageDraw.Draw(img)
try:
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 17)
    small = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 14)
except OSError:
    font = small = ImageFont.load_default()

RED, GREEN, BLUE, GREY, ORANGE = (200, 40, 40), (30, 150, 50), (40, 80, 210), (120, 120, 120), (230, 140, 20)


def arrow(x0, y0, x1, y1, colour, label=None, width=4):
    d.line((x0, y0, x1, y1), fill=colour, width=width)
    dx, dy = x1 - x0, y1 - y0
    n = max((dx * dx + dy * dy) ** 0.5, 1e-6)
    ux, uy = dx / n, dy / n
    px, py = -uy, ux
    d.polygon([(x1, y1), (x1 - 14 * ux + 7 * px, y1 - 14 * uy + 7 * py), (x1 - 14 * ux - 7 * px, y1 - 14 * uy - 7 * py)], fill=colour)
    if label:
        d.text((x1 + 6 * ux + 4, y1 + 6 * uy - 10), label, fill=colour, font=small)


def frame(x, y, axes, name, colour=(0, 0, 0)):
    """axes: list of (dx, dy, label, colour) in pixels from the origin."""
    for dx, dy, lab, c in axes:
        arrow(x, y, x + dx, y + dy, c, lab)
    d.ellipse((x - 5, y - 5, x + 5, y + 5), fill=colour)
    d.text((x + 8, y + 6), name, fill=colour, font=font)


# --- side view (x forward to the right, z up) ---
d.text((20, 12), "side view (x forward →, z up)", fill=(0, 0, 0), font=font)
ground = 500
s = 95  # pixels per metre
x_base = 220
d.line((20, ground, 680, ground), fill=GREY, width=2)
d.text((560, ground + 8), "ground", fill=GREY, font=small)
d.rounded_rectangle((x_base - 90, ground - 150, x_base + 380, ground - 40), radius=25, outline=GREY, width=3)
for wx in (x_base, x_base + 270):
    d.ellipse((wx - 38, ground - 76, wx + 38, ground), outline=GREY, width=3)
frame(x_base, ground, [(110, 0, "x", RED), (0, -110, "z", BLUE)], "base_link (detector.frame), z = 0")
x_lidar = x_base + 110
z_lidar = ground - 1.84 * s
d.rectangle((x_lidar - 14, z_lidar - 10, x_lidar + 14, z_lidar + 10), fill=(60, 60, 60))
frame(x_lidar, z_lidar, [(0, -80, "z", BLUE), (90, 0, "y (forward)", GREEN)], "", (60, 60, 60))
d.text((x_lidar + 30, z_lidar - 60), "lidar_top, 1.84 m", fill=(60, 60, 60), font=font)
z_model = ground - 1.73 * s
d.line((x_lidar - 60, z_model, x_lidar + 330, z_model), fill=ORANGE, width=1)
frame(x_lidar, z_model, [(120, 0, "", ORANGE)], "", ORANGE)
d.text((20, z_model - 95), "model frame: x forward, z up,\n1.73 m above ground (trained height)", fill=ORANGE, font=small)
d.line((150, z_model - 60, x_lidar - 8, z_model), fill=ORANGE, width=1)
x_cam = x_base + 360
z_cam = ground - 1.45 * s
frame(x_cam, z_cam, [(90, 0, "z", BLUE), (0, 70, "y", GREEN)], "", (90, 0, 120))
d.text((x_cam - 120, z_cam - 110), "camera optical frame\n(CameraInfo frame_id)", fill=(90, 0, 120), font=small)

# --- top view (x forward up, y left) ---
ox, oy = 1060, 330
d.text((720, 12), "top view (x forward ↑, y left ←)", fill=(0, 0, 0), font=font)
t = 3.2  # pixels per metre
d.pieslice((ox - 69 * t, oy - 69 * t, ox + 69 * t, oy + 69 * t), 180, 360, fill=(255, 236, 205), outline=ORANGE)
d.pieslice((ox - 69 * t, oy - 69 * t, ox + 69 * t, oy + 69 * t), 0, 180, fill=(250, 248, 240), outline=(230, 200, 160))
d.text((ox - 200, oy - 69 * t + 6), "coverage front: the model's 0..69 m ahead", fill=ORANGE, font=small)
d.text((ox - 230, oy + 69 * t - 26), "coverage full: + rear half (cloud turned 180°, same batch)", fill=(190, 150, 90), font=small)
d.rectangle((ox - 12, oy - 25, ox + 12, oy + 25), outline=GREY, width=3)
frame(ox, oy, [(0, -95, "x", RED), (-95, 0, "y", GREEN)], "")
d.text((ox + 10, oy + 10), "base_link", fill=(0, 0, 0), font=small)
frame(ox + 110, oy + 60, [(0, -70, "y (forward)", GREEN), (70, 0, "x (right)", RED)], "", (60, 60, 60))
d.text((ox + 60, oy + 100), "lidar_top axes\n(y-forward mounting)", fill=(60, 60, 60), font=small)
d.text((720, 585), "tf: base_link ← lidar_top (/tf_static) places the cloud; boxes come back to base_link", fill=(0, 0, 0), font=small)

img.save(sys.argv[1] if len(sys.argv) > 1 else "frames.png")
