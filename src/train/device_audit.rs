//! Source audit of the training step's code paths for tensors created on a
//! hard-coded device (issue 14 item 7, the part a CPU can check). A CPU-only
//! run cannot see a misplaced tensor — everything is on the CPU — so the
//! rules are checked on the code itself, outside its tests:
//! - `Device::Cpu` appears only on a line that says why (`// cpu: ...`);
//! - a tensor made from host data (`Tensor::from_slice`, `Tensor::from`)
//!   is moved with `.to_device(` in the same statement;
//! - a tensor made from a shape (`zeros`, `ones`, `full`, `arange`, `eye`,
//!   `empty`, `rand`, `randn`, `linspace`) names a device in its options
//!   (a variable or another tensor's `.device()`).
//!
//! What this proves: no creation site in these files pins the CPU by
//! accident. What it does not: it reads text, not types (a device variable
//! that is itself wrong would pass), and libtorch ops that allocate inside
//! (all of which follow their inputs' device) are not creation sites here.
//! The runtime half is `train::step::tests::every_tensor_of_a_step_lives_on_the_detectors_device`,
//! which checks placement for real on a CUDA machine.

/// The files a training step runs through (loader, batch, step, losses,
/// optimizer, loss scale, Entropy Loss, the network).
const STEP_FILES: &[&str] = &[
    "src/train/step.rs",
    "src/train/losses.rs",
    "src/train/batch.rs",
    "src/train/loader.rs",
    "src/train/mixed_precision.rs",
    "src/train/adamw.rs",
    "src/eloss/loss.rs",
    "src/eloss/entropy.rs",
    "src/detect/detector.rs",
    "src/detect/model/pillar_encoder.rs",
    "src/detect/model/backbone.rs",
    "src/detect/model/neck.rs",
    "src/detect/model/head.rs",
];

const FROM_HOST: &[&str] = &["Tensor::from_slice(", "Tensor::from(", "Tensor::of_slice("];
const FROM_SHAPE: &[&str] =
    &["Tensor::zeros(", "Tensor::ones(", "Tensor::full(", "Tensor::arange(", "Tensor::eye(", "Tensor::empty(", "Tensor::rand(", "Tensor::randn(", "Tensor::linspace("];

/// Violations of the rules in `source` (its part before the first `#[cfg(test)]`).
fn audit(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    for (i, line) in code.lines().enumerate() {
        if line.contains("Device::Cpu") && !line.contains("// cpu:") {
            out.push(format!("line {}: Device::Cpu without a `// cpu:` reason: {}", i + 1, line.trim()));
        }
    }
    // statements, roughly: the text between semicolons (and block braces);
    // a line's `// cpu:` reason is moved in front of its code so that it
    // belongs to the statement the line ends
    let moved: String = code
        .lines()
        .map(|l| match l.split_once("// cpu:") {
            Some((code, why)) => format!("// cpu:{why}\n{code}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    for stmt in moved.split([';', '{', '}']) {
        let annotated = stmt.contains("// cpu:");
        if FROM_HOST.iter().any(|p| stmt.contains(p)) && !stmt.contains(".to_device(") && !annotated {
            out.push(format!("host data not moved to a device: {}", stmt.trim()));
        }
        if FROM_SHAPE.iter().any(|p| stmt.contains(p)) && !stmt.to_lowercase().contains("device") && !annotated {
            out.push(format!("tensor created without a device: {}", stmt.trim()));
        }
    }
    out
}

#[test]
fn training_step_sources_create_no_tensor_on_a_fixed_device() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for f in STEP_FILES {
        let text = std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        problems.extend(audit(&text).into_iter().map(|p| format!("{f}: {p}")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_audit_catches_what_it_claims_to() {
    // the Entropy Loss's old zero, made on the CPU whatever the layers' device
    let pinned = "let mut loss = Tensor::zeros([], (Kind::Float, tch::Device::Cpu));";
    assert_eq!(audit(pinned).len(), 1, "{:?}", audit(pinned));
    assert_eq!(audit("let t = Tensor::from_slice(&v).view([n, c]);").len(), 1);
    assert_eq!(audit("let m = Tensor::arange(m, Kind::Int64);").len(), 1);
    // placed ones pass, as do annotated exceptions and test code
    assert!(audit("let t = Tensor::from_slice(&v)\n    .view([n, c])\n    .to_device(device);").is_empty());
    assert!(audit("let z = Tensor::zeros([], (Kind::Float, x.device()));").is_empty());
    assert!(audit("let s = Tensor::from_slice(&[1f32]); // cpu: written to a file").is_empty());
    assert!(audit("fn f() {}\n#[cfg(test)]\nmod tests { let d = Device::Cpu; }").is_empty());
}
