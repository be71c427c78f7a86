"""One markdown table from the device check's reports (scripts/gpu_check.sh):
  python3 scripts/gpu_check_table.py OUT
reads OUT/gpu_check.json and, when present, OUT/pytorch_peers.json (one JSON
line from bench_detector_torch.py --cuda). Standard library only (the device
image has no extra packages)."""
import json
import os
import sys


def main(out):
    r = json.load(open(os.path.join(out, "gpu_check.json")))
    inf = r["inference"]
    rows = [f"device {r['device']}, torch {r['torch_version']}, libtorch_cuda {r['libtorch_cuda']}, "
            f"{inf['points']} points, medians of {inf['iterations']} iterations",
            "",
            "| run | pillarize ms | network ms | post-processing ms | total ms | boxes matched to the CPU's | max cls diff |",
            "|---|---|---|---|---|---|---|"]
    for name, row in inf.items():
        if not isinstance(row, dict):
            continue
        m, p = row["median_ms"], row["parity_with_cpu"]
        rows.append(f"| {name} | {m['pillarize']:.2f} | {m['network']:.2f} | {m['postprocess']:.2f} | {m['total']:.2f} | "
                    f"{p['boxes_matched']}/{p['detections'][0]} (centres within {p['matched_box_centre_max_diff_m'] * 1e3:.1f} mm) | "
                    f"{p['cls_max_abs_diff']:.2g} |")
    peers = os.path.join(out, "pytorch_peers.json")
    if os.path.isfile(peers) and os.path.getsize(peers) > 0:
        q = json.loads(open(peers).read().strip().splitlines()[-1])
        for name, ms in q["network_ms_median"].items():
            rows.append(f"| {name} (full network, torch {q['torch']}) | | {ms:.2f} | | | | {q['max_abs_diff_vs_ours_on_cpu'][name]:.2g} |")
    rows += ["", "| training | mixed precision | steps/s | frames/s | median step s | data wait | losses finite |", "|---|---|---|---|---|---|---|"]
    for key in ("training", "training_fp32"):
        t = r.get(key)
        if t:
            rows.append(f"| {t['model']}, B = {t['batch_size']} | {t['mixed_precision']} | {t['steps_per_s']:.2f} | {t['frames_per_s']:.1f} | "
                        f"{t['median_step_s']:.3f} | {t['data_wait_fraction']:.1%} | {t['losses_finite']} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1])
