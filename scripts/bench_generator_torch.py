"""diffusers side of `eloss gdc bench-generator`: CPU time per generated image
of the same diffusers folder in PyTorch eager, on the same machine and thread
count, and the reference image for a parity check of the bigger model.

  python scripts/bench_generator_torch.py --dir DIR [--make-medium] [--steps 1] [--size 256]
         [--batch 1] [--iters 3] [--threads 2]

--make-medium first saves a randomly initialised SD-Turbo-shaped pipeline in
DIR (diffusers layout): UNet with the SD 2.x layout (4 levels, cross-attention
in the first 3, linear projections, 2 layers per block) at a quarter of SD's
width (80/160/320/320 channels), a 4-level VAE (scale factor 8) at half width,
a 4-layer 256-d CLIP text encoder with the tiny BPE of the parity tests, and
Euler with trailing timesteps (turbo). Big enough that the UNet and VAE, not
call overhead, dominate; small enough for a 2-core CPU.

Timed: the whole pipeline call (prompt encoding, sampling, VAE decode) from
given latents with guidance 0, `output_type="pt"`, median of --iters runs
after one warm-up, under torch.inference_mode. Writes DIR/bench_io.safetensors
(latents, prompts' image) so our side checks it makes the same image.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
PROMPTS = ["a photo of a car.", "a photo of a pedestrian.", "a photo of a cyclist.", "a photo of the bike."]


def make_medium(out):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from generator_reference import MAX_LEN, perturb, tiny_bpe, tokenizer

    torch.manual_seed(0)
    vocab, merges = tiny_bpe()
    te = perturb(CLIPTextModel(CLIPTextConfig(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
        max_position_embeddings=MAX_LEN, vocab_size=len(vocab), hidden_act="gelu",
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=1)), 0.01)
    unet = perturb(UNet2DConditionModel(
        block_out_channels=(80, 160, 320, 320), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=256, attention_head_dim=(2, 4, 8, 8), norm_num_groups=16, use_linear_projection=True), 0.01)
    vae = perturb(AutoencoderKL(
        block_out_channels=[64, 128, 256, 256], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=32, sample_size=256, scaling_factor=0.18215), 0.01)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="trailing", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer(vocab, merges, "<|endoftext|>"),
                                   unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--make-medium", action="store_true")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.make_medium:
        make_medium(args.dir)
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(args.dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch)]
    f = pipe.vae_scale_factor
    latents = torch.randn(args.batch, 4, args.size // f, args.size // f, generator=torch.Generator().manual_seed(3))
    times, image = [], None
    with torch.inference_mode():
        for it in range(args.iters + 1):
            t = time.perf_counter()
            image = pipe(prompts, height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=0.0,
                         latents=latents.clone(), output_type="pt").images
            if it > 0:
                times.append(time.perf_counter() - t)
    save_file({"latents": latents, "image": image.contiguous()}, os.path.join(args.dir, "bench_io.safetensors"))
    with open(os.path.join(args.dir, "bench_prompts.json"), "w") as fh:
        json.dump(prompts, fh)
    params = sum(p.numel() for p in pipe.unet.parameters())
    ms = sorted(times)[len(times) // 2] * 1e3 / args.batch
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "batch": args.batch, "steps": args.steps,
                      "size": args.size, "unet_params": params, "ms_per_image": ms}))


if __name__ == "__main__":
    main()
