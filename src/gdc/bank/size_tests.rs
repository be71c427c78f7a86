//! The bank's caps (issue 13: the bank grew without a class limit): a class
//! beyond [`MAX_CLASSES`] or [`MAX_BANK_BYTES`] is refused before it is
//! built, the bank unchanged; a file declaring more is refused before its
//! tensors are read.

use super::*;

fn one_class(dim: usize, offset: f64) -> Vec<Vec<f64>> {
    (0..3).map(|k| (0..dim).map(|j| offset + (k * (j + 1)) as f64 * 0.01).collect()).collect()
}

#[test]
fn classes_beyond_the_cap_are_refused_and_the_bank_is_unchanged() {
    let spec = EmbeddingSpec::new("test-backbone", "cls");
    let mut bank = GaussianBank::empty(spec, CovarianceKind::Diagonal { ridge_rel: DEFAULT_RIDGE_REL }).unwrap();
    for i in 0..MAX_CLASSES {
        bank.add_class(&format!("c{i}"), (&one_class(2, i as f64)).into()).unwrap();
    }
    let before = bank.clone();
    let e = bank.add_class("one_too_many", (&one_class(2, -1.0)).into()).unwrap_err();
    assert!(matches!(e, BankError::TooManyClasses { classes } if classes == MAX_CLASSES + 1), "{e}");
    assert_eq!(bank, before);
    assert_eq!(bank.bytes(), MAX_CLASSES as u64 * 2 * 2 * 8);
}

#[test]
fn classes_beyond_the_byte_budget_are_refused() {
    // full covariance: (d + d²)·8 bytes a class; 2048-d classes are 32 MiB each
    let dim = 2048;
    let per_class = bank_bytes(CovarianceKind::Full { ridge_rel: DEFAULT_RIDGE_REL }, 1, dim);
    let fit = (MAX_BANK_BYTES / per_class) as usize;
    assert!(check_size(CovarianceKind::default(), fit, dim).is_ok());
    let e = check_size(CovarianceKind::default(), fit + 1, dim).unwrap_err();
    assert!(matches!(e, BankError::OverBudget { classes, .. } if classes == fit + 1), "{e}");
    assert!(e.to_string().contains("at most 1073741824"), "{e}");
    // the refusal comes before the factor is computed
    let spec = EmbeddingSpec::new("test-backbone", "cls");
    let mut bank = GaussianBank::empty(spec, CovarianceKind::default()).unwrap();
    let huge = one_class(20_000, 0.0); // 3.2 GB of covariance
    let t = std::time::Instant::now();
    assert!(matches!(bank.add_class("huge", (&huge).into()), Err(BankError::OverBudget { .. })));
    assert!(bank.is_empty() && bank.dim() == 0);
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn files_declaring_too_many_classes_are_refused_before_reading_tensors() {
    let spec = EmbeddingSpec::new("test-backbone", "cls");
    let bank = GaussianBank::fit(spec, &[("a", (&one_class(2, 0.0)).into()), ("b", (&one_class(2, 5.0)).into())], CovarianceKind::default()).unwrap();
    let (tensors, mut meta) = file::encode(&bank).unwrap();
    let json = meta.remove(file::METADATA_KEY).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let class = doc["classes"][0].clone();
    doc["classes"] = serde_json::Value::Array(vec![class; MAX_CLASSES + 1]);
    meta.insert(file::METADATA_KEY.into(), doc.to_string());
    let bytes = file::write(tensors, meta).unwrap();
    let e = GaussianBank::from_bytes(&bytes).unwrap_err();
    assert!(matches!(e, BankError::TooManyClasses { .. }), "{e}");
}
