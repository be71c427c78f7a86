"""Reference side of tests/generator_parity.rs: tiny random Stable Diffusion
and SDXL pipelines from `diffusers` + `transformers`, saved in the diffusers
folder layout, with inputs and outputs of every component.

  python tests/python/generator_reference.py OUT_DIR

Writes
  OUT_DIR/tokenizer_files/{vocab.json,merges.txt}  the tiny BPE as real repos ship it
  OUT_DIR/tokenizer_cases.json       texts and their reference ids (both pad tokens)
  OUT_DIR/prompts.json               the two prompts of the component and pipeline runs
  OUT_DIR/sd/   StableDiffusionPipeline (conv proj_in, quick_gelu CLIP, CFG)
  OUT_DIR/sdxl/ StableDiffusionXLPipeline (linear proj_in, two encoders, text_time)
  OUT_DIR/<p>/io.safetensors   component inputs/outputs (names below)
  OUT_DIR/schedulers.json      timesteps/sigmas per config, Euler(-ancestral) steps
  OUT_DIR/schedulers.safetensors
  OUT_DIR/layouts/{unet_sd2,unet_sdxl,vae4,clip_legacy_eos}/  scaled-down real layouts + io.safetensors
Every parameter is perturbed away from its tidy init, so a swapped or unused
weight shows up. Runs are bit-reproducible (seeded, CPU).
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,  # noqa: E402
                          CLIPTokenizer)
from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,  # noqa: E402
                       StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)

MAX_LEN = 77
PROMPTS = ["a photo of a car.", "A Photo of the Pedestrian,  cyclist's 42 bikes!!"]
WORDS = ["photo", "car", "pedestrian", "cyclist", "the", "of", "a", "bike", "bikes", "'s", "ped"]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def tiny_bpe():
    """CLIP-style vocab: 256 byte chars, their `</w>` forms, merges for a few
    words (every merge result in the vocab), specials last (eos highest)."""
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    merges = []
    for w in WORDS:
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        while len(pieces) > 1:  # left-to-right merges: a deterministic, valid merge list
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocab.setdefault(pieces[0], len(vocab))
    merges = list(dict.fromkeys(merges))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def tokenizer(vocab, merges, pad):
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split(" ")) for m in merges], pad_token=pad, model_max_length=MAX_LEN)


def perturb(model, scale=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def text_config(vocab, hidden_act, projection_dim=None):
    kw = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
              max_position_embeddings=MAX_LEN, vocab_size=len(vocab), hidden_act=hidden_act,
              bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=1)
    if projection_dim:
        kw["projection_dim"] = projection_dim
    return CLIPTextConfig(**kw)


def vae():
    return perturb(AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                 down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                 latent_channels=4, norm_num_groups=32, sample_size=32, scaling_factor=0.18215))


def text_io(io, prefix, enc, ids):
    with torch.no_grad():
        out = enc(ids, output_hidden_states=True)
    io[f"{prefix}.ids"] = ids.to(torch.int64)
    io[f"{prefix}.last"] = out.last_hidden_state.contiguous()
    io[f"{prefix}.penultimate"] = out.hidden_states[-2].contiguous()
    if hasattr(out, "pooler_output"):
        io[f"{prefix}.pooled"] = out.pooler_output.contiguous()
    if hasattr(out, "text_embeds"):
        io[f"{prefix}.text_embeds"] = out.text_embeds.contiguous()


def component_io(pipe, io, xl):
    g = torch.Generator().manual_seed(1)
    cross = pipe.unet.config.cross_attention_dim
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([999.0, 457.5])
    ctx = torch.randn(2, 7, cross, generator=g)
    kw = {}
    if xl:
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(2, 32, generator=g),
                                   "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32], [64.0, 48, 3, 5, 64, 48]])}
        io["unet.text_embeds"] = kw["added_cond_kwargs"]["text_embeds"]
        io["unet.time_ids"] = kw["added_cond_kwargs"]["time_ids"]
    with torch.no_grad():
        io["unet.out"] = pipe.unet(x, t, encoder_hidden_states=ctx, **kw).sample.contiguous()
        z = torch.randn(2, 4, 8, 8, generator=g)
        io["vae.latents"] = z
        io["vae.out"] = pipe.vae.decode(z).sample.contiguous()
    io["unet.sample"], io["unet.timesteps"], io["unet.context"] = x, t, ctx


def pipeline_io(pipe, io, guidance, size=32):
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(2, 4, size // 2, size // 2, generator=g)
    with torch.no_grad():
        img = pipe(PROMPTS, height=size, width=size, num_inference_steps=2, guidance_scale=guidance,
                   latents=latents.clone(), output_type="pt").images
    io["pipe.latents"] = latents
    io["pipe.image"] = img.contiguous()


def build_sd(out, vocab, merges):
    torch.manual_seed(10)
    tok = tokenizer(vocab, merges, "<|endoftext|>")
    te = perturb(CLIPTextModel(text_config(vocab, "quick_gelu")))
    unet = perturb(UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), norm_num_groups=32, use_linear_projection=False))
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="trailing", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae(), text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    d = os.path.join(out, "sd")
    pipe.save_pretrained(d)
    io = {}
    ids = tok(PROMPTS, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
    text_io(io, "te", te, ids)
    component_io(pipe, io, xl=False)
    pipeline_io(pipe, io, guidance=4.0)
    save_file(io, os.path.join(d, "io.safetensors"))


def build_sdxl(out, vocab, merges):
    torch.manual_seed(20)
    tok = tokenizer(vocab, merges, "<|endoftext|>")
    tok2 = tokenizer(vocab, merges, "!")
    te = perturb(CLIPTextModel(text_config(vocab, "quick_gelu")))
    te2 = perturb(CLIPTextModelWithProjection(text_config(vocab, "gelu", projection_dim=32)))
    unet = perturb(UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), norm_num_groups=32, use_linear_projection=True,
        transformer_layers_per_block=(1, 2), addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=80))
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae(), text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
                                     unet=unet, scheduler=sched, add_watermarker=False)
    d = os.path.join(out, "sdxl")
    pipe.save_pretrained(d)
    io = {}
    for prefix, t, enc in [("te", tok, te), ("te2", tok2, te2)]:
        ids = t(PROMPTS, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
        text_io(io, prefix, enc, ids)
    component_io(pipe, io, xl=True)
    pipeline_io(pipe, io, guidance=3.0)
    save_file(io, os.path.join(d, "io.safetensors"))


def tokenizer_cases(out, vocab, merges):
    os.makedirs(os.path.join(out, "tokenizer_files"), exist_ok=True)
    with open(os.path.join(out, "tokenizer_files", "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(out, "tokenizer_files", "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    texts = PROMPTS + ["", "  Bikes\tpeds\n", "café ÜBER 3.5 km/h?", "x" * 100, "a " * 90, "<|endoftext|> of"]
    cases = []
    for pad in ["<|endoftext|>", "!"]:
        t = tokenizer(vocab, merges, pad)
        for text in texts:
            ids = t(text, padding="max_length", max_length=MAX_LEN, truncation=True).input_ids
            cases.append({"text": text, "pad": pad, "ids": ids})
    with open(os.path.join(out, "tokenizer_cases.json"), "w") as f:
        json.dump(cases, f)


def scheduler_cases(out):
    g = torch.Generator().manual_seed(3)
    cases, tensors = [], {}
    i = 0
    for cls in [EulerDiscreteScheduler, EulerAncestralDiscreteScheduler]:
        for spacing in ["leading", "trailing", "linspace"]:
            for pred in ["epsilon", "v_prediction"]:
                for n in [1, 2, 4, 50]:
                    s = cls(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                            timestep_spacing=spacing, prediction_type=pred)
                    s.set_timesteps(n)
                    x = torch.randn(1, 4, 3, 3, generator=g)
                    eps = torch.randn(1, 4, 3, 3, generator=g)
                    t0 = s.timesteps[0]
                    scaled = s.scale_model_input(x, t0)
                    seed = 100 + i
                    # the ancestral step's noise, drawn exactly as step() draws it from the same seed
                    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
                    prev = s.step(eps, t0, x, generator=torch.Generator().manual_seed(seed)).prev_sample
                    name = f"c{i}"
                    cases.append({"name": name, "ancestral": cls is EulerAncestralDiscreteScheduler, "spacing": spacing,
                                  "prediction_type": pred, "steps": n, "timesteps": s.timesteps.tolist(),
                                  "sigmas": s.sigmas.tolist(), "init_noise_sigma": float(s.init_noise_sigma)})
                    tensors.update({f"{name}.x": x, f"{name}.eps": eps, f"{name}.scaled": scaled,
                                    f"{name}.noise": noise, f"{name}.prev": prev})
                    i += 1
    with open(os.path.join(out, "schedulers.json"), "w") as f:
        json.dump(cases, f)
    save_file(tensors, os.path.join(out, "schedulers.safetensors"))


def real_layouts(out, vocab):
    """Scaled-down copies of the real SD-Turbo (SD 2.1: 4 levels, cross-attention
    in the first three) and SDXL-Turbo (3 levels, 1/2/10 transformer layers)
    UNets, the 4-level SD/SDXL VAE, and a CLIP config with the legacy
    eos_token_id = 2 of real SD checkpoints (pooling at the highest id)."""
    torch.manual_seed(30)
    g = torch.Generator().manual_seed(4)
    layouts = {
        "unet_sd2": dict(block_out_channels=(32, 64, 128, 128), down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                         up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=(1, 2, 4, 4),
                         cross_attention_dim=32, use_linear_projection=True),
        "unet_sdxl": dict(block_out_channels=(32, 64, 128), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                          up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(1, 2, 4),
                          transformer_layers_per_block=(1, 2, 10), cross_attention_dim=64, use_linear_projection=True,
                          addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80),
    }
    for name, kw in layouts.items():
        unet = perturb(UNet2DConditionModel(layers_per_block=2, sample_size=8, in_channels=4, out_channels=4, norm_num_groups=32, **kw))
        d = os.path.join(out, "layouts", name)
        unet.save_pretrained(d)
        io = {"sample": torch.randn(1, 4, 8, 8, generator=g), "timesteps": torch.tensor([999.0]),
              "context": torch.randn(1, 5, kw["cross_attention_dim"], generator=g)}
        extra = {}
        if "addition_embed_type" in kw:
            io["text_embeds"] = torch.randn(1, 32, generator=g)
            io["time_ids"] = torch.tensor([[512.0, 512, 0, 0, 512, 512]])
            extra["added_cond_kwargs"] = {"text_embeds": io["text_embeds"], "time_ids": io["time_ids"]}
        with torch.no_grad():
            io["out"] = unet(io["sample"], io["timesteps"], encoder_hidden_states=io["context"], **extra).sample.contiguous()
        save_file(io, os.path.join(d, "io.safetensors"))
    vae4 = perturb(AutoencoderKL(block_out_channels=[32, 32, 64, 64], down_block_types=["DownEncoderBlock2D"] * 4,
                                 up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4,
                                 norm_num_groups=32, force_upcast=True, scaling_factor=0.13025))
    d = os.path.join(out, "layouts", "vae4")
    vae4.save_pretrained(d)
    z = torch.randn(1, 4, 4, 4, generator=g)
    with torch.no_grad():
        save_file({"latents": z, "out": vae4.decode(z).sample.contiguous()}, os.path.join(d, "io.safetensors"))
    cfg = text_config(vocab, "gelu")
    cfg.eos_token_id = 2
    te = perturb(CLIPTextModel(cfg))
    d = os.path.join(out, "layouts", "clip_legacy_eos")
    te.save_pretrained(d)
    ids = torch.tensor([[vocab["<|startoftext|>"], 320, 515, vocab["<|endoftext|>"]] + [0] * 6])
    with torch.no_grad():
        o = te(ids)
    save_file({"ids": ids, "pooled": o.pooler_output.contiguous(), "last": o.last_hidden_state.contiguous()},
              os.path.join(d, "io.safetensors"))


def main(out):
    vocab, merges = tiny_bpe()
    with open(os.path.join(out, "prompts.json"), "w") as f:
        json.dump(PROMPTS, f)
    tokenizer_cases(out, vocab, merges)
    scheduler_cases(out)
    build_sd(out, vocab, merges)
    build_sdxl(out, vocab, merges)
    real_layouts(out, vocab)


if __name__ == "__main__":
    main(sys.argv[1])
