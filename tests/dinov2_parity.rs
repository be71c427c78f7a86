//! DINOv2 in tch against `transformers.Dinov2Model` / `Dinov2WithRegistersModel`
//! on small random configs (tests/python/dinov2_reference.py): plain, SwiGLU
//! and registers variants, at the trained input size and at a non-square size
//! that interpolates the position embeddings.
//! Tolerance: max |ours - reference| < 1e-4 on hidden states of unit scale
//! (f32; both run libtorch kernels, differences come from op order).
#![cfg(feature = "torch")]
mod common;

use eloss_perception::gdc::backbone::dinov2::{Dinov2, Dinov2Error};
use eloss_perception::gdc::backbone::EmbeddingRecipe;
use std::process::Command;
use tch::{Device, Tensor};

const TOL: f64 = 1e-4;

#[test]
fn matches_transformers_on_small_random_models() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(py).arg(common::repo().join("tests/python/dinov2_reference.py")).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));

    for variant in ["plain", "swiglu", "registers"] {
        let d = dir.path().join(variant);
        let model = Dinov2::load(&d, Device::Cpu).unwrap_or_else(|e| panic!("{variant}: {e}"));
        let io: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(d.join("io.safetensors")).unwrap().into_iter().collect();
        for size in ["56x56", "70x98"] {
            let ours = model.forward(&io[&format!("pixels_{size}")]).unwrap();
            let want = &io[&format!("hidden_{size}")];
            assert_eq!(ours.size(), want.size(), "{variant} {size}");
            let err = (&ours - want).abs().max().double_value(&[]);
            let scale = want.abs().max().double_value(&[]);
            eprintln!("{variant} {size}: max abs error {err:.2e} (outputs up to {scale:.2})");
            assert!(err < TOL, "{variant} {size}: max abs error {err}");

            let cls = model.embed(&io[&format!("pixels_{size}")], EmbeddingRecipe::Cls).unwrap();
            assert!(cls.allclose(&want.select(1, 0), 1e-4, TOL, false));
            let both = model.embed(&io[&format!("pixels_{size}")], EmbeddingRecipe::ClsMeanPatch).unwrap();
            assert_eq!(both.size(), [2, model.embedding_dim(EmbeddingRecipe::ClsMeanPatch)]);
        }
    }
}

#[test]
fn bad_inputs_and_checkpoints_are_errors() {
    let Some(py) = common::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(py).arg(common::repo().join("tests/python/dinov2_reference.py")).arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    let d = dir.path().join("plain");
    let model = Dinov2::load(&d, Device::Cpu).unwrap();
    let wrong_channels = Tensor::zeros([1, 1, 56, 56], (tch::Kind::Float, Device::Cpu));
    assert!(matches!(model.forward(&wrong_channels), Err(Dinov2Error::Input { .. })));
    let too_small = Tensor::zeros([1, 3, 10, 56], (tch::Kind::Float, Device::Cpu));
    assert!(matches!(model.forward(&too_small), Err(Dinov2Error::Input { .. })));

    // the SwiGLU checkpoint does not fit the plain architecture: named keys, no panic
    std::fs::copy(dir.path().join("swiglu/model.safetensors"), d.join("model.safetensors")).unwrap();
    let e = Dinov2::load(&d, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("mlp.fc1") || e.contains("weights_in"), "{e}");
    std::fs::write(d.join("model.safetensors"), b"\x08\0\0\0\0\0\0\0{}garbage").unwrap();
    assert!(Dinov2::load(&d, Device::Cpu).is_err());
    std::fs::write(d.join("config.json"), "{\"model_type\": \"vit\", \"hidden_size\": 8}").unwrap();
    assert!(matches!(Dinov2::load(&d, Device::Cpu), Err(Dinov2Error::Config { .. })));
}
