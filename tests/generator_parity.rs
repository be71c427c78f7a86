//! Text-to-image generators in tch against diffusers 0.42 + transformers 5
//! on tiny random SD and SDXL pipelines (tests/python/generator_reference.py):
//! tokenizer ids, CLIP text encoders, UNet noise prediction, VAE decode,
//! Euler / Euler-ancestral schedules and steps, and whole 2-step pipelines
//! from the same initial latents. All f32 on the CPU; each assertion states
//! its tolerance, and the measured max abs errors are printed
//! (`cargo test --test generator_parity -- --nocapture`; docs/generators.md).
#![cfg(feature = "torch")]
mod common;

use eloss_perception::gdc::generator::clip_text::ClipTextModel;
use eloss_perception::gdc::generator::pipeline::{GenerateOptions, Pipeline};
use eloss_perception::gdc::generator::scheduler::{EulerScheduler, SchedulerConfig};
use eloss_perception::gdc::generator::tokenizer::ClipTokenizer;
use eloss_perception::gdc::generator::unet::{AddedCond, UNet2DConditionModel};
use eloss_perception::gdc::generator::vae::VaeDecoder;
use eloss_perception::gdc::generator::GeneratorError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// Runs the reference once per test process; `None` skips (no venv Python outside CI).
fn reference() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let py = common::python()?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("generator_parity");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(py).arg(common::repo().join("tests/python/generator_reference.py")).arg(&dir).output().unwrap();
        assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(dir)
    })
    .as_deref()
}

fn io(dir: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("io.safetensors")).unwrap().into_iter().collect()
}

fn prompts(dir: &Path) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("prompts.json")).unwrap()).unwrap()
}

/// Max |a - b| after checking shapes; prints it with the reference's scale.
fn max_err(what: &str, ours: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(ours.size(), want.size(), "{what}: shape");
    let err = (ours.to_kind(Kind::Float) - want).abs().max().double_value(&[]);
    eprintln!("{what}: max abs error {err:.2e} (reference up to {:.2})", want.abs().max().double_value(&[]));
    err
}

#[test]
fn tokenizer_ids_match_transformers() {
    let Some(dir) = reference() else { return };
    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        pad: String,
        ids: Vec<i64>,
    }
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_cases.json")).unwrap()).unwrap();
    // tokenizer.json as transformers 5 saves it, and vocab.json + merges.txt as real repositories ship it
    let eos_json = ClipTokenizer::load(&dir.join("sd/tokenizer")).unwrap();
    let eos_files = ClipTokenizer::load(&dir.join("tokenizer_files")).unwrap();
    let bang_json = ClipTokenizer::load(&dir.join("sdxl/tokenizer_2")).unwrap();
    assert_eq!((eos_json.max_length, bang_json.pad_id), (77, 0));
    for c in &cases {
        let toks: Vec<&ClipTokenizer> = if c.pad == "!" { vec![&bang_json] } else { vec![&eos_json, &eos_files] };
        for t in toks {
            assert_eq!(t.encode(&c.text), c.ids, "text {:?}, pad {:?}", c.text, c.pad);
        }
    }
    eprintln!("tokenizer: {} cases, ids identical", cases.len());
}

#[test]
fn text_encoders_match_transformers() {
    let Some(dir) = reference() else { return };
    const TOL: f64 = 1e-5; // f32, outputs of unit scale
    for (pipe, enc, prefix, projected) in [("sd", "text_encoder", "te", false), ("sdxl", "text_encoder", "te", false), ("sdxl", "text_encoder_2", "te2", true)] {
        let d = dir.join(pipe);
        let io = io(&d);
        let model = ClipTextModel::load(&d.join(enc), Device::Cpu, Kind::Float).unwrap();
        let tok = ClipTokenizer::load(&d.join(enc.replace("text_encoder", "tokenizer"))).unwrap();
        let ids = &io[&format!("{prefix}.ids")];
        let ours_ids: Vec<Tensor> = prompts(dir).iter().map(|p| Tensor::from_slice(&tok.encode(p))).collect();
        assert!(Tensor::stack(&ours_ids, 0).equal(ids), "{pipe}/{enc}: token ids");
        let out = model.forward(ids).unwrap();
        let name = |s: &str| format!("{pipe}/{enc} {s}");
        assert!(max_err(&name("last"), &out.last, &io[&format!("{prefix}.last")]) < TOL);
        assert!(max_err(&name("penultimate"), &out.penultimate, &io[&format!("{prefix}.penultimate")]) < TOL);
        if projected {
            let te = out.text_embeds.as_ref().expect("projection");
            assert!(max_err(&name("text_embeds"), te, &io[&format!("{prefix}.text_embeds")]) < TOL);
        } else {
            assert!(out.text_embeds.is_none());
            assert!(max_err(&name("pooled"), &out.pooled, &io[&format!("{prefix}.pooled")]) < TOL);
        }
    }
}

#[test]
fn unet_matches_diffusers_sd_and_sdxl() {
    let Some(dir) = reference() else { return };
    const TOL: f64 = 1e-4; // f32, outputs of unit scale through ~40 layers
    for pipe in ["sd", "sdxl"] {
        let d = dir.join(pipe);
        let io = io(&d);
        let unet = UNet2DConditionModel::load(&d.join("unet"), Device::Cpu, Kind::Float).unwrap();
        let added = (pipe == "sdxl").then(|| AddedCond { text_embeds: &io["unet.text_embeds"], time_ids: &io["unet.time_ids"] });
        let out = unet.forward(&io["unet.sample"], &io["unet.timesteps"], &io["unet.context"], added).unwrap();
        assert!(max_err(&format!("{pipe} unet"), &out, &io["unet.out"]) < TOL);
    }
}

#[test]
fn vae_decoder_matches_diffusers() {
    let Some(dir) = reference() else { return };
    const TOL: f64 = 1e-4;
    for pipe in ["sd", "sdxl"] {
        let d = dir.join(pipe);
        let io = io(&d);
        let vae = VaeDecoder::load(&d.join("vae"), Device::Cpu, Kind::Float).unwrap();
        let out = vae.decode_unscaled(&io["vae.latents"]);
        assert!(max_err(&format!("{pipe} vae decode"), &out, &io["vae.out"]) < TOL);
    }
}

#[test]
fn euler_schedules_and_steps_match_diffusers() {
    let Some(dir) = reference() else { return };
    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        ancestral: bool,
        spacing: String,
        prediction_type: String,
        steps: usize,
        timesteps: Vec<f32>,
        sigmas: Vec<f32>,
        init_noise_sigma: f64,
    }
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(dir.join("schedulers.json")).unwrap()).unwrap();
    let t: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join("schedulers.safetensors")).unwrap().into_iter().collect();
    let (mut sigma_err, mut step_err) = (0f64, 0f64);
    for c in &cases {
        let cfg: SchedulerConfig = serde_json::from_value(serde_json::json!({
            "_class_name": if c.ancestral { "EulerAncestralDiscreteScheduler" } else { "EulerDiscreteScheduler" },
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1,
            "timestep_spacing": c.spacing, "prediction_type": c.prediction_type,
        }))
        .unwrap();
        let mut s = EulerScheduler::from_config(&cfg).unwrap();
        s.set_timesteps(c.steps).unwrap();
        let what = format!("{} ({}, {}, {}, {} steps)", c.name, if c.ancestral { "ancestral" } else { "euler" }, c.spacing, c.prediction_type, c.steps);
        assert_eq!(s.timesteps, c.timesteps, "{what}: timesteps");
        for (a, b) in s.sigmas.iter().zip(&c.sigmas) {
            sigma_err = sigma_err.max(((a - b) / b.max(1e-3)).abs() as f64);
        }
        assert_eq!(s.sigmas.len(), c.sigmas.len());
        assert!((s.init_noise_sigma() - c.init_noise_sigma).abs() <= 1e-6 * c.init_noise_sigma, "{what}: init_noise_sigma");
        let x = &t[&format!("{}.x", c.name)];
        let scaled = s.scale_model_input(x, 0);
        let prev = s.step(&t[&format!("{}.eps", c.name)], 0, x, Some(&t[&format!("{}.noise", c.name)])).unwrap();
        let e1 = (&scaled - &t[&format!("{}.scaled", c.name)]).abs().max().double_value(&[]);
        let e2 = (&prev - &t[&format!("{}.prev", c.name)]).abs().max().double_value(&[]);
        step_err = step_err.max(e1).max(e2);
        assert!(e1 < 1e-5 && e2 < 1e-4, "{what}: scale {e1}, step {e2}");
    }
    eprintln!("schedulers: {} cases, timesteps identical, sigmas max rel error {sigma_err:.2e}, step max abs error {step_err:.2e}", cases.len());
    assert!(sigma_err < 1e-6, "sigma relative error {sigma_err}");
}

#[test]
fn two_step_pipelines_match_diffusers() {
    let Some(dir) = reference() else { return };
    const TOL: f64 = 1e-4; // images in [0, 1]
    for (pipe, guidance) in [("sd", 4.0), ("sdxl", 3.0)] {
        let d = dir.join(pipe);
        let io = io(&d);
        let p = Pipeline::load(&d, Device::Cpu).unwrap();
        let opts = GenerateOptions { steps: 2, guidance_scale: guidance, height: 32, width: 32 };
        let start = std::time::Instant::now();
        let img = p.generate_from_latents(&prompts(dir), &io["pipe.latents"], None, &opts).unwrap();
        eprintln!("{pipe}: 2 images, 2 steps, CFG, 32x32 in {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
        let want = &io["pipe.image"];
        let clipped = want.le(0.0).logical_or(&want.ge(1.0)).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!(clipped < 0.5, "{pipe}: reference image mostly clipped ({clipped}), the comparison would say little");
        assert!(max_err(&format!("{pipe} pipeline image"), &img, want) < TOL);
    }
}

/// Copies a folder tree (the reference folders are shared by the tests: never edit them).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst)
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn fp16_variant_loads_and_converts() {
    let Some(dir) = reference() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let unet = tmp.path().join("unet");
    copy_dir(&dir.join("sd/unet"), &unet);
    // what real repositories ship next to (or instead of) the full-precision file
    let full = unet.join("diffusion_pytorch_model.safetensors");
    let half: Vec<(String, Tensor)> = Tensor::read_safetensors(&full).unwrap().into_iter().map(|(k, t)| (k, t.to_kind(Kind::Half))).collect();
    Tensor::write_safetensors(&half, unet.join("diffusion_pytorch_model.fp16.safetensors")).unwrap();
    std::fs::remove_file(&full).unwrap();
    let io = io(&dir.join("sd"));
    let model = UNet2DConditionModel::load(&unet, Device::Cpu, Kind::Float).unwrap();
    let out = model.forward(&io["unet.sample"], &io["unet.timesteps"], &io["unet.context"], None).unwrap();
    // only the weights are rounded to fp16 (relative 2^-11); the computation stays f32
    assert!(max_err("sd unet from fp16 weights", &out, &io["unet.out"]) < 1e-2);
}

#[test]
fn bad_checkpoints_configs_and_inputs_are_errors() {
    let Some(dir) = reference() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sd = tmp.path().join("sd");
    copy_dir(&dir.join("sd"), &sd);
    let err = |r: Result<UNet2DConditionModel, GeneratorError>| r.map(|_| ()).unwrap_err().to_string();

    // SDXL weights in the SD UNet: the error names the keys
    std::fs::copy(dir.join("sdxl/unet/diffusion_pytorch_model.safetensors"), sd.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let e = err(UNet2DConditionModel::load(&sd.join("unet"), Device::Cpu, Kind::Float));
    assert!(e.contains("down_blocks.") || e.contains("add_embedding"), "{e}");
    std::fs::remove_file(sd.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let e = err(UNet2DConditionModel::load(&sd.join("unet"), Device::Cpu, Kind::Float));
    assert!(e.contains("fp16.safetensors"), "{e}");

    // options this implementation lacks are refused by name
    edit_json(&sd.join("unet/config.json"), |v| v["class_embed_type"] = "timestep".into());
    let e = err(UNet2DConditionModel::load(&sd.join("unet"), Device::Cpu, Kind::Float));
    assert!(e.contains("class_embed_type") && e.contains("config.json"), "{e}");
    edit_json(&sd.join("text_encoder/config.json"), |v| v["hidden_act"] = "relu".into());
    let e = ClipTextModel::load(&sd.join("text_encoder"), Device::Cpu, Kind::Float).unwrap_err().to_string();
    assert!(e.contains("hidden_act"), "{e}");
    edit_json(&sd.join("scheduler/scheduler_config.json"), |v| v["use_karras_sigmas"] = true.into());
    assert!(EulerScheduler::load(&sd.join("scheduler/scheduler_config.json")).unwrap_err().to_string().contains("use_karras_sigmas"));
    edit_json(&sd.join("model_index.json"), |v| v["_class_name"] = "KandinskyPipeline".into());
    assert!(Pipeline::load(&sd, Device::Cpu).unwrap_err().to_string().contains("KandinskyPipeline"));
    std::fs::write(tmp.path().join("merges.txt"), "#version: 0.2\na b c\n").unwrap();
    std::fs::copy(dir.join("tokenizer_files/vocab.json"), tmp.path().join("vocab.json")).unwrap();
    let e = ClipTokenizer::load(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");

    // shapes are checked before libtorch sees them
    let unet = UNet2DConditionModel::load(&dir.join("sdxl/unet"), Device::Cpu, Kind::Float).unwrap();
    let io = io(&dir.join("sdxl"));
    let odd = Tensor::zeros([2, 4, 7, 8], (Kind::Float, Device::Cpu));
    assert!(unet.forward(&odd, &io["unet.timesteps"], &io["unet.context"], None).is_err());
    let e = unet.forward(&io["unet.sample"], &io["unet.timesteps"], &io["unet.context"], None).unwrap_err().to_string();
    assert!(e.contains("SDXL"), "{e}");
    let short = io["unet.time_ids"].narrow(1, 0, 5);
    let added = AddedCond { text_embeds: &io["unet.text_embeds"], time_ids: &short };
    assert!(unet.forward(&io["unet.sample"], &io["unet.timesteps"], &io["unet.context"], Some(added)).is_err());
    let te = ClipTextModel::load(&dir.join("sd/text_encoder"), Device::Cpu, Kind::Float).unwrap();
    assert!(te.forward(&Tensor::from_slice(&[0i64, 9999]).view([1, 2])).is_err());
}

#[test]
fn seeded_generation_is_batch_independent_and_timed() {
    let Some(dir) = reference() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let xl = tmp.path().join("sdxl");
    copy_dir(&dir.join("sdxl"), &xl);
    // SDXL-Turbo's sampler: Euler-ancestral, trailing spacing, no guidance
    edit_json(&xl.join("scheduler/scheduler_config.json"), |v| {
        v["_class_name"] = "EulerAncestralDiscreteScheduler".into();
        v["timestep_spacing"] = "trailing".into();
    });
    let p = Pipeline::load(&xl, Device::Cpu).unwrap();
    assert_eq!(p.default_size(), (32, 32));
    let prompts = prompts(dir);
    let opts = GenerateOptions { steps: 2, ..GenerateOptions::turbo(&p) };
    let both = p.generate(&prompts, &[11, 12], &opts).unwrap();
    let second = p.generate(&prompts[1..], &[12], &opts).unwrap();
    assert!(max_err("image 2 of a batch vs alone", &second, &both.narrow(0, 1, 1)) < 1e-5);
    let other_seed = p.generate(&prompts[1..], &[13], &opts).unwrap();
    assert!((&other_seed - &second).abs().max().double_value(&[]) > 1e-3, "the seed must matter");

    // CPU time per image of this tiny config at turbo settings (1 step, no guidance, batch 4)
    let one = GenerateOptions::turbo(&p);
    let four: Vec<String> = (0..4).map(|i| prompts[i % 2].clone()).collect();
    let _ = p.generate(&four, &[1, 2, 3, 4], &one).unwrap(); // warm-up
    let start = std::time::Instant::now();
    let reps = 5;
    for r in 0..reps {
        let _ = p.generate(&four, &[r, r + 10, r + 20, r + 30], &one).unwrap();
    }
    eprintln!("tiny SDXL, 32x32, 1 step, no CFG: {:.1} ms per image (CPU, batch 4)", start.elapsed().as_secs_f64() * 1e3 / (4 * reps) as f64);
}

#[test]
fn real_layouts_match_diffusers() {
    let Some(dir) = reference() else { return };
    let d = dir.join("layouts");
    // scaled-down SD-Turbo (4 levels) and SDXL-Turbo (1/2/10 transformer layers) UNets
    for name in ["unet_sd2", "unet_sdxl"] {
        let io: HashMap<String, Tensor> = Tensor::read_safetensors(d.join(name).join("io.safetensors")).unwrap().into_iter().collect();
        let unet = UNet2DConditionModel::load(&d.join(name), Device::Cpu, Kind::Float).unwrap();
        let added = io.get("text_embeds").map(|te| AddedCond { text_embeds: te, time_ids: &io["time_ids"] });
        let out = unet.forward(&io["sample"], &io["timesteps"], &io["context"], added).unwrap();
        assert!(max_err(&format!("{name} layout"), &out, &io["out"]) < 1e-4);
    }
    // the 4-level VAE of SD and SDXL (scale factor 8)
    let io: HashMap<String, Tensor> = Tensor::read_safetensors(d.join("vae4/io.safetensors")).unwrap().into_iter().collect();
    let vae = VaeDecoder::load(&d.join("vae4"), Device::Cpu, Kind::Float).unwrap();
    assert_eq!((vae.config.scale_factor(), vae.config.force_upcast), (8, true));
    assert!(max_err("vae4 layout decode", &vae.decode_unscaled(&io["latents"]), &io["out"]) < 1e-4);
    // real SD checkpoints say eos_token_id = 2: pooling at the highest id
    let io: HashMap<String, Tensor> = Tensor::read_safetensors(d.join("clip_legacy_eos/io.safetensors")).unwrap().into_iter().collect();
    let te = ClipTextModel::load(&d.join("clip_legacy_eos"), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(te.config.eos_token_id, 2);
    let out = te.forward(&io["ids"]).unwrap();
    assert!(max_err("legacy-eos CLIP pooled", &out.pooled, &io["pooled"]) < 1e-5);
}
