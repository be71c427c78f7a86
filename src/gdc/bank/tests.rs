//! Tests of the Gaussian bank against closed forms, hard numerical cases and
//! corrupt files. Random data comes from a fixed-seed xorshift generator with
//! Box–Muller normals, so every run sees the same numbers.

use super::file::{encode, write, F64Tensor};
use super::*;

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn spec() -> EmbeddingSpec {
    EmbeddingSpec::new("test-backbone", "cls")
}

fn rows(v: &[[f64; 2]]) -> Vec<Vec<f64>> {
    v.iter().map(|r| r.to_vec()).collect()
}

/// n samples of N(mean, A Aᵀ) (A is d×k row-major).
fn draw(rng: &mut Rng, mean: &[f64], a: &[f64], k: usize, n: usize) -> Vec<Vec<f64>> {
    let d = mean.len();
    (0..n)
        .map(|_| {
            let z: Vec<f64> = (0..k).map(|_| rng.normal()).collect();
            (0..d)
                .map(|i| mean[i] + (0..k).map(|j| a[i * k + j] * z[j]).sum::<f64>())
                .collect()
        })
        .collect()
}

/// Mean and unbiased covariance (2-D), written out by hand.
fn mean_cov_2d(p: &[[f64; 2]]) -> ([f64; 2], [[f64; 2]; 2]) {
    let n = p.len() as f64;
    let m = [
        p.iter().map(|r| r[0]).sum::<f64>() / n,
        p.iter().map(|r| r[1]).sum::<f64>() / n,
    ];
    let mut s = [[0.0; 2]; 2];
    for r in p {
        for i in 0..2 {
            for j in 0..2 {
                s[i][j] += (r[i] - m[i]) * (r[j] - m[j]) / (n - 1.0);
            }
        }
    }
    (m, s)
}

fn inv_2x2(s: [[f64; 2]; 2]) -> ([[f64; 2]; 2], f64) {
    let det = s[0][0] * s[1][1] - s[0][1] * s[1][0];
    ([[s[1][1] / det, -s[0][1] / det], [-s[1][0] / det, s[0][0] / det]], det)
}

fn quad(inv: [[f64; 2]; 2], u: [f64; 2], v: [f64; 2]) -> f64 {
    (0..2)
        .map(|i| (0..2).map(|j| u[i] * inv[i][j] * v[j]).sum::<f64>())
        .sum()
}

fn assert_distribution(p: &[f64], tol: f64) {
    assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0), "{p:?}");
    let s: f64 = p.iter().sum();
    assert!((s - 1.0).abs() <= tol, "sum {s} (tolerance {tol})");
}

const A_PTS: [[f64; 2]; 5] = [[1.0, 2.0], [3.0, 1.0], [2.0, 5.0], [0.0, 0.0], [2.5, 2.0]];
const B_PTS: [[f64; 2]; 4] = [[6.0, 1.0], [7.5, 3.0], [5.0, 2.5], [8.0, 0.5]];

// (a) log-likelihood equals the hand-computed 2-D Gaussian, Full and Diagonal.
#[test]
fn gdc_log_likelihood_matches_2d_closed_form() {
    let ridge = 1e-3;
    let a = rows(&A_PTS);
    let bank = GaussianBank::fit(spec(), &[("a", (&a).into())], CovarianceKind::Full { ridge_rel: ridge }).unwrap();
    let diag = GaussianBank::fit(
        spec(),
        &[("a", (&a).into())],
        CovarianceKind::Diagonal { ridge_rel: ridge },
    )
    .unwrap();
    let (m, mut s) = mean_cov_2d(&A_PTS);
    let eps = ridge * (s[0][0] + s[1][1]) / 2.0;
    let (sd0, sd1) = (s[0][0] + eps, s[1][1] + eps);
    s[0][0] += eps;
    s[1][1] += eps;
    let (inv, det) = inv_2x2(s);
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    for x in [[0.0, 0.0], [1.7, 2.1], [-3.0, 8.0], [40.0, -25.0]] {
        let u = [x[0] - m[0], x[1] - m[1]];
        let expected = -0.5 * (quad(inv, u, u) + det.ln() + 2.0 * ln2pi);
        let got = bank.log_likelihoods(&x).unwrap()[0];
        assert!((got - expected).abs() < 1e-10, "full at {x:?}: {got} vs {expected}");
        let expected_diag = -0.5 * (u[0] * u[0] / sd0 + u[1] * u[1] / sd1 + (sd0 * sd1).ln() + 2.0 * ln2pi);
        let got_diag = diag.log_likelihoods(&x).unwrap()[0];
        assert!(
            (got_diag - expected_diag).abs() < 1e-10,
            "diagonal at {x:?}: {got_diag} vs {expected_diag}"
        );
    }
    assert!((bank.log_det_covariance(0).unwrap() - det.ln()).abs() < 1e-12);
    let cov = bank.covariance(0).unwrap();
    for (got, want) in cov.iter().zip([s[0][0], s[0][1], s[1][0], s[1][1]]) {
        assert!((got - want).abs() < 1e-12);
    }
    // f32 queries go through the same f64 path.
    let x32 = [1.5f32, 2.25];
    let x64 = [1.5f64, 2.25];
    assert_eq!(bank.log_likelihoods(&x32).unwrap(), bank.log_likelihoods(&x64).unwrap());
}

// (b) equal covariance, equal priors: the posterior is the logistic of the LDA discriminant.
#[test]
fn gdc_shared_posterior_is_logistic_of_lda_discriminant() {
    let ridge = 1e-3;
    let (a, b) = (rows(&A_PTS), rows(&B_PTS));
    let bank = GaussianBank::fit(
        spec(),
        &[("a", (&a).into()), ("b", (&b).into())],
        CovarianceKind::Shared { ridge_rel: ridge },
    )
    .unwrap();
    let (ma, sa) = mean_cov_2d(&A_PTS);
    let (mb, sb) = mean_cov_2d(&B_PTS);
    let (na, nb) = (A_PTS.len() as f64, B_PTS.len() as f64);
    let mut s = [[0.0; 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            s[i][j] = ((na - 1.0) * sa[i][j] + (nb - 1.0) * sb[i][j]) / (na + nb - 2.0);
        }
    }
    let eps = ridge * (s[0][0] + s[1][1]) / 2.0;
    s[0][0] += eps;
    s[1][1] += eps;
    let (inv, _) = inv_2x2(s);
    // logit p(b|x) = wᵀx + c, w = Σ⁻¹(μ_b − μ_a), c = −½(μ_bᵀΣ⁻¹μ_b − μ_aᵀΣ⁻¹μ_a)
    let dm = [mb[0] - ma[0], mb[1] - ma[1]];
    let c = -0.5 * (quad(inv, mb, mb) - quad(inv, ma, ma));
    for x in [[3.0, 2.0], [4.0, 1.5], [4.5, 3.0], [3.8, 2.2], [0.0, 0.0]] {
        let logit = quad(inv, dm, x) + c;
        let expected = 1.0 / (1.0 + (-logit).exp());
        let p = bank.posterior(&x, None, 1.0).unwrap();
        assert!((p[1] - expected).abs() < 1e-10, "at {x:?}: {} vs {expected}", p[1]);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-15);
    }
}

// (c) priors act exactly as Bayes says; T → ∞ uniform, T → 0 one-hot; large gaps are stable.
#[test]
fn gdc_priors_and_temperature() {
    let mut rng = Rng::new(3);
    let d = 4;
    let a: Vec<f64> = (0..d * d).map(|_| rng.normal() * 0.5).collect();
    let names = ["x", "y", "z"];
    let data: Vec<Vec<Vec<f64>>> = (0..3)
        .map(|c| draw(&mut rng, &vec![c as f64 * 1.5; d], &a, d, 50))
        .collect();
    let classes: Vec<(&str, Samples)> = names.iter().zip(&data).map(|(n, x)| (*n, x.into())).collect();
    let bank = GaussianBank::fit(spec(), &classes, CovarianceKind::default()).unwrap();
    let q = [1.0, 1.2, 0.7, 1.9];
    let ll = bank.log_likelihoods(&q).unwrap();
    let plain = bank.posterior(&q, None, 1.0).unwrap();
    let priors = [0.2, 0.5, 0.3];
    let with = bank.posterior(&q, Some(&priors), 1.0).unwrap();
    let z: f64 = plain.iter().zip(&priors).map(|(p, w)| p * w).sum();
    for c in 0..3 {
        assert!((with[c] - plain[c] * priors[c] / z).abs() < 1e-12);
    }
    // Unnormalised priors are normalised.
    assert_eq!(with, bank.posterior(&q, Some(&[2.0, 5.0, 3.0]), 1.0).unwrap());
    // T = 2: softmax(ll / 2), by hand.
    let e: Vec<f64> = ll.iter().map(|l| (l / 2.0).exp()).collect();
    let t2 = bank.posterior(&q, None, 2.0).unwrap();
    for c in 0..3 {
        assert!((t2[c] - e[c] / e.iter().sum::<f64>()).abs() < 1e-12);
    }
    // T → ∞: uniform (or the priors); T → 0: one-hot on the argmax.
    for p in bank.posterior(&q, None, f64::INFINITY).unwrap() {
        assert_eq!(p, 1.0 / 3.0);
    }
    for p in bank.posterior(&q, None, 1e12).unwrap() {
        assert!((p - 1.0 / 3.0).abs() < 1e-9);
    }
    let inf_priors = bank.posterior(&q, Some(&priors), f64::INFINITY).unwrap();
    for c in 0..3 {
        assert!((inf_priors[c] - priors[c]).abs() < 1e-15);
    }
    let best = top_k(&plain, 1)[0].0;
    for t in [1e-6, 1e-300] {
        let p = bank.posterior(&q, None, t).unwrap();
        for c in 0..3 {
            assert_eq!(p[c], if c == best { 1.0 } else { 0.0 }, "T = {t}");
        }
    }
    // T → 0 with a zero prior on the best class: one-hot on the best allowed one.
    let mut zero_best = [1.0; 3];
    zero_best[best] = 0.0;
    let p = bank.posterior(&q, Some(&zero_best), 1e-300).unwrap();
    let second = top_k(&plain, 3).iter().find(|(i, _)| *i != best).unwrap().0;
    assert_eq!(p[second], 1.0);
    assert_distribution(&p, 0.0);
    // Gaps of 1e4 (and 1e300) in log-likelihood: exact 0/1, no NaN.
    assert_eq!(bayes_posterior(&[0.0, -1e4], None, 1.0).unwrap(), vec![1.0, 0.0]);
    let p = bayes_posterior(&[-1e4, -2e4, -1e4 + 1.0], None, 1.0).unwrap();
    assert!((p[2] - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-15 && p[1] == 0.0);
    assert_eq!(bayes_posterior(&[-1e300, 1e300], None, 1.0).unwrap(), vec![0.0, 1.0]);
    assert_eq!(
        bayes_posterior(&[f64::NEG_INFINITY, -5.0], None, 1.0).unwrap(),
        vec![0.0, 1.0]
    );
    // Bad arguments are errors.
    for t in [0.0, -1.0, f64::NAN] {
        assert!(matches!(
            bank.posterior(&q, None, t),
            Err(BankError::InvalidParameter {
                name: "temperature",
                ..
            })
        ));
    }
    assert!(bank.posterior(&q, Some(&[1.0, 2.0]), 1.0).is_err());
    assert!(bank.posterior(&q, Some(&[1.0, -2.0, 1.0]), 1.0).is_err());
    assert!(bank.posterior(&q, Some(&[0.0, 0.0, 0.0]), 1.0).is_err());
    assert!(bank.posterior(&q, Some(&[1.0, f64::NAN, 1.0]), 1.0).is_err());
    assert!(matches!(
        bank.posterior(&[1.0, 2.0], None, 1.0),
        Err(BankError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        bank.posterior(&[1.0, f64::NAN, 0.0, 0.0], None, 1.0),
        Err(BankError::NonFinite(_))
    ));
    // top_k is sorted and names its classes.
    let top = bank.top_k(&q, 2, None, 1.0).unwrap();
    assert_eq!(top.len(), 2);
    assert!(top[0].probability >= top[1].probability);
    assert_eq!(top[0].name, names[top[0].index]);
    assert_eq!(top[0].log_likelihood, ll[top[0].index]);
    assert_eq!(bank.top_k(&q, 10, None, 1.0).unwrap().len(), 3);
}

// Candidate subsets: posterior over the named classes only; unknown names are listed.
#[test]
fn gdc_candidate_subsets() {
    let mut rng = Rng::new(5);
    let d = 3;
    let a: Vec<f64> = (0..d * d).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
    let data: Vec<Vec<Vec<f64>>> = (0..4)
        .map(|c| draw(&mut rng, &vec![c as f64 * 3.0; d], &a, d, 20))
        .collect();
    let names = ["car", "pedestrian", "cyclist", "truck"];
    let classes: Vec<(&str, Samples)> = names.iter().zip(&data).map(|(n, x)| (*n, x.into())).collect();
    let bank = GaussianBank::fit(spec(), &classes, CovarianceKind::default()).unwrap();
    let q = [2.0, 2.5, 3.1];
    let ll = bank.log_likelihoods(&q).unwrap();
    let sub = bank.posterior_among(&q, &["truck", "pedestrian"], None, 1.0).unwrap();
    assert_eq!(sub, bayes_posterior(&[ll[3], ll[1]], None, 1.0).unwrap());
    let with_priors = bank
        .posterior_among(&q, &["truck", "pedestrian"], Some(&[0.9, 0.1]), 1.0)
        .unwrap();
    assert_eq!(
        with_priors,
        bayes_posterior(&[ll[3], ll[1]], Some(&[0.9, 0.1]), 1.0).unwrap()
    );
    match bank.posterior_among(&q, &["car", "bus", "tram"], None, 1.0) {
        Err(e @ BankError::UnknownClasses { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("bus") && msg.contains("tram") && msg.contains("truck"),
                "{msg}"
            );
        }
        other => panic!("expected UnknownClasses, got {other:?}"),
    }
    assert!(matches!(
        bank.posterior_among(&q, &["car", "car"], None, 1.0),
        Err(BankError::DuplicateClass(_))
    ));
    // Batched queries give the same numbers as one at a time.
    let queries: Vec<Vec<f32>> = vec![vec![0.0, 0.1, 0.2], vec![3.0, 3.0, 2.9], vec![9.0, 8.0, 9.5]];
    let batch = bank.posterior_batch((&queries).into(), None, 1.0).unwrap();
    for (qi, p) in queries.iter().zip(&batch) {
        assert_eq!(p, &bank.posterior(qi, None, 1.0).unwrap());
    }
    let flat: Vec<f32> = queries.concat();
    let lls = bank
        .log_likelihoods_batch(Samples::MatrixF32 { data: &flat, dim: 3 })
        .unwrap();
    assert_eq!(lls[2], bank.log_likelihoods(&queries[2]).unwrap());
    assert!(bank
        .log_likelihoods_batch(Samples::MatrixF32 {
            data: &flat[..7],
            dim: 3
        })
        .is_err());
}

// (d) fitting samples of known Gaussians recovers μ and Σ within sampling error.
#[test]
fn gdc_fit_recovers_known_gaussian() {
    let mut rng = Rng::new(11);
    let mu = [1.0, -2.0, 3.0];
    let a = [2.0, 0.0, 0.0, 0.5, 1.0, 0.0, -0.3, 0.4, 0.5];
    let n = 20_000;
    let x = draw(&mut rng, &mu, &a, 3, n);
    let mut sigma = [0.0; 9];
    for i in 0..3 {
        for j in 0..3 {
            sigma[i * 3 + j] = (0..3).map(|k| a[i * 3 + k] * a[j * 3 + k]).sum();
        }
    }
    // Tolerance: 5 standard errors. SE(μ̂_i) = √(Σ_ii/n);
    // SE(Σ̂_ij) = √((Σ_ii Σ_jj + Σ_ij²)/n) for Gaussian data.
    let nf = n as f64;
    for kind in [
        CovarianceKind::Full { ridge_rel: 0.0 },
        CovarianceKind::Shared { ridge_rel: 0.0 },
        CovarianceKind::Diagonal { ridge_rel: 0.0 },
    ] {
        let bank = GaussianBank::fit(spec(), &[("g", (&x).into())], kind).unwrap();
        let m = bank.classes()[0].mean();
        for i in 0..3 {
            assert!(
                (m[i] - mu[i]).abs() < 5.0 * (sigma[i * 4] / nf).sqrt(),
                "{kind:?} mean {i}: {}",
                m[i]
            );
        }
        let cov = bank.covariance(0).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let want = if matches!(kind, CovarianceKind::Diagonal { .. }) && i != j {
                    0.0
                } else {
                    sigma[i * 3 + j]
                };
                let se = ((sigma[i * 4] * sigma[j * 4] + sigma[i * 3 + j].powi(2)) / nf).sqrt();
                assert!(
                    (cov[i * 3 + j] - want).abs() < 5.0 * se,
                    "{kind:?} Σ[{i},{j}] = {} vs {want}",
                    cov[i * 3 + j]
                );
            }
        }
    }
    // With the default ridge the covariance is the sample covariance + ε I, ε = 1e-3·tr(S)/d.
    let ridged = GaussianBank::fit(spec(), &[("g", (&x).into())], CovarianceKind::default()).unwrap();
    let plain = GaussianBank::fit(spec(), &[("g", (&x).into())], CovarianceKind::Full { ridge_rel: 0.0 }).unwrap();
    let (cr, cp) = (ridged.covariance(0).unwrap(), plain.covariance(0).unwrap());
    let eps = DEFAULT_RIDGE_REL * (cp[0] + cp[4] + cp[8]) / 3.0;
    for i in 0..3 {
        for j in 0..3 {
            let want = cp[i * 3 + j] + if i == j { eps } else { 0.0 };
            assert!((cr[i * 3 + j] - want).abs() < 1e-12);
        }
    }
    assert!((ridged.classes()[0].sample_variance() - (cp[0] + cp[4] + cp[8]) / 3.0).abs() < 1e-12);
}

// (e) n < d, collinear and duplicated embeddings, one-shot classes.
#[test]
fn gdc_hard_cases_fit_and_give_distributions() {
    let mut rng = Rng::new(17);
    let d = 64;
    let means: Vec<Vec<f64>> = (0..3).map(|_| (0..d).map(|_| rng.normal() * 2.0).collect()).collect();
    let eye: Vec<f64> = (0..d * d).map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 }).collect();
    let small: Vec<Vec<Vec<f64>>> = means.iter().map(|m| draw(&mut rng, m, &eye, d, 10)).collect();
    // Collinear: x_k = μ + t_k b (rank-one scatter).
    let b: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    let collinear: Vec<Vec<f64>> = (0..12)
        .map(|k| means[0].iter().zip(&b).map(|(m, bi)| m + 0.1 * k as f64 * bi).collect())
        .collect();
    // Duplicated: the same embedding five times plus one other.
    let mut duplicated = vec![means[1].clone(); 5];
    duplicated.push(means[1].iter().map(|v| v + 0.5).collect());
    // Identical: zero spread (handled like one-shot).
    let identical = vec![means[2].clone(); 4];
    let one_shot = vec![means[2].iter().map(|v| v - 1.0).collect::<Vec<f64>>()];
    let classes: Vec<(&str, Samples)> = vec![
        ("small0", (&small[0]).into()),
        ("small1", (&small[1]).into()),
        ("small2", (&small[2]).into()),
        ("collinear", (&collinear).into()),
        ("duplicated", (&duplicated).into()),
        ("identical", (&identical).into()),
        ("one_shot", (&one_shot).into()),
    ];
    for kind in [
        CovarianceKind::Full { ridge_rel: 1e-3 },
        CovarianceKind::Diagonal { ridge_rel: 1e-3 },
        CovarianceKind::Shared { ridge_rel: 1e-3 },
        CovarianceKind::Full { ridge_rel: 1e-9 },
    ] {
        let bank = GaussianBank::fit(spec(), &classes, kind).unwrap();
        for (c, (_, samples)) in classes.iter().enumerate() {
            let (flat, n, _) = samples.to_f64("x", None).unwrap();
            for x in flat.chunks_exact(d).take(n.min(3)) {
                let ll = bank.log_likelihoods(x).unwrap();
                assert!(ll.iter().all(|v| v.is_finite()), "{kind:?}: {ll:?}");
                let p = bank.posterior(x, None, 1.0).unwrap();
                assert_distribution(&p, 1e-12);
                if !matches!(kind, CovarianceKind::Shared { .. }) {
                    // Its own training samples are most likely under their class (Shared
                    // is exempt: one pooled covariance cannot make a rank-one class win).
                    assert_eq!(top_k(&p, 1)[0].0, c, "{kind:?} class {c}: {p:?}");
                }
            }
        }
        // Queries far from everything are still finite distributions.
        let far: Vec<f64> = (0..d).map(|i| 1e3 * (i as f64).sin()).collect();
        assert_distribution(&bank.posterior(&far, None, 1.0).unwrap(), 1e-12);
    }
    // One-shot and zero-spread classes borrow the pooled within-class variance.
    let bank = GaussianBank::fit(spec(), &classes, CovarianceKind::default()).unwrap();
    let pooled_num: f64 = bank
        .classes()
        .iter()
        .filter(|c| c.sample_variance() > 0.0)
        .map(|c| (c.count() - 1) as f64 * c.sample_variance())
        .sum();
    let pooled_den: f64 = bank
        .classes()
        .iter()
        .filter(|c| c.sample_variance() > 0.0)
        .map(|c| (c.count() - 1) as f64)
        .sum();
    for name in ["identical", "one_shot"] {
        let cov = bank.covariance(bank.class_index(name).unwrap()).unwrap();
        assert!((cov[0] - pooled_num / pooled_den).abs() < 1e-12 && cov[1] == 0.0 && cov[d + 1] == cov[0]);
    }
    // With no ridge, n < d is singular: a clean error, not a panic.
    let err = GaussianBank::fit(spec(), &classes[..1], CovarianceKind::Full { ridge_rel: 0.0 }).unwrap_err();
    assert!(matches!(err, BankError::NotPositiveDefinite { .. }), "{err}");
}

// One-shot GDC: every class has one embedding; the bank is a nearest-mean
// classifier with posterior softmax(−‖x−μ_c‖²/2v), v the spread of the means.
#[test]
fn gdc_one_shot_bank_is_nearest_mean() {
    let mut rng = Rng::new(23);
    let d = 16;
    let shots: Vec<Vec<Vec<f64>>> = (0..4).map(|_| vec![(0..d).map(|_| rng.normal()).collect()]).collect();
    let names = ["a", "b", "c", "e"];
    let classes: Vec<(&str, Samples)> = names.iter().zip(&shots).map(|(n, s)| (*n, s.into())).collect();
    for kind in [
        CovarianceKind::Full { ridge_rel: 1e-3 },
        CovarianceKind::Diagonal { ridge_rel: 1e-3 },
        CovarianceKind::Shared { ridge_rel: 1e-3 },
    ] {
        let bank = GaussianBank::fit(spec(), &classes, kind).unwrap();
        let grand: Vec<f64> = (0..d)
            .map(|i| shots.iter().map(|s| s[0][i]).sum::<f64>() / 4.0)
            .collect();
        let v = shots
            .iter()
            .map(|s| s[0].iter().zip(&grand).map(|(x, g)| (x - g).powi(2)).sum::<f64>())
            .sum::<f64>()
            / (d as f64 * 3.0);
        let q: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let dist: Vec<f64> = shots
            .iter()
            .map(|s| -s[0].iter().zip(&q).map(|(m, x)| (x - m).powi(2)).sum::<f64>() / (2.0 * v))
            .collect();
        let want = bayes_posterior(&dist, None, 1.0).unwrap();
        let got = bank.posterior(&q, None, 1.0).unwrap();
        for c in 0..4 {
            assert!((got[c] - want[c]).abs() < 1e-10, "{kind:?}: {got:?} vs {want:?}");
        }
    }
    // A lone one-shot class has nothing to borrow from, unless told.
    let lone = &classes[..1];
    assert!(matches!(
        GaussianBank::fit(spec(), lone, CovarianceKind::default()),
        Err(BankError::NoSpreadEstimate(_))
    ));
    let opts = FitOptions {
        kind: CovarianceKind::default(),
        one_shot_variance: Some(0.25),
    };
    let bank = GaussianBank::fit(spec(), lone, opts).unwrap();
    assert_eq!(bank.covariance(0).unwrap()[0], 0.25);
    // A one-shot class added to a fitted bank borrows the bank's pooled variance.
    let mut rng = Rng::new(29);
    let eye: Vec<f64> = (0..d * d).map(|i| if i % (d + 1) == 0 { 0.5 } else { 0.0 }).collect();
    let many = draw(&mut rng, &vec![0.0; d], &eye, d, 40);
    let mut bank = GaussianBank::fit(spec(), &[("many", (&many).into())], CovarianceKind::default()).unwrap();
    bank.add_class("shot", (&shots[0]).into()).unwrap();
    // (covariance() is L Lᵀ, so sqrt-then-square rounding allows an ulp or two)
    let borrowed = bank.covariance(1).unwrap()[0];
    assert!(
        (borrowed - bank.classes()[0].sample_variance()).abs() < 1e-15,
        "{borrowed}"
    );
}

/// Five well-separated classes in d = 384, 30 training and 20 held-out samples each.
fn separated_384(rng: &mut Rng) -> (Vec<Vec<Vec<f32>>>, Vec<Vec<Vec<f32>>>) {
    let d = 384;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let mean: Vec<f64> = (0..d).map(|_| 3.0 * rng.normal()).collect();
        // Anisotropic: per-dimension scale in [0.5, 1.5] plus an 8-dimensional correlated part.
        let scale: Vec<f64> = (0..d).map(|_| 0.5 + rng.uniform()).collect();
        let k = 8;
        let low: Vec<f64> = (0..d * k).map(|_| 0.5 * rng.normal()).collect();
        let sample = |rng: &mut Rng| -> Vec<f32> {
            let u: Vec<f64> = (0..k).map(|_| rng.normal()).collect();
            (0..d)
                .map(|i| {
                    (mean[i] + scale[i] * rng.normal() + (0..k).map(|j| low[i * k + j] * u[j]).sum::<f64>()) as f32
                })
                .collect()
        };
        train.push((0..30).map(|_| sample(rng)).collect());
        test.push((0..20).map(|_| sample(rng)).collect());
    }
    (train, test)
}

// (g) d = 384 (DINOv2-S), 5 classes of 30: every held-out sample right, sums 1 ± 1e-12.
#[test]
fn gdc_separated_classes_in_384_dimensions() {
    let mut rng = Rng::new(31);
    let (train, test) = separated_384(&mut rng);
    let names = ["c0", "c1", "c2", "c3", "c4"];
    let classes: Vec<(&str, Samples)> = names.iter().zip(&train).map(|(n, x)| (*n, x.into())).collect();
    for kind in [
        CovarianceKind::default(),
        CovarianceKind::Diagonal {
            ridge_rel: DEFAULT_RIDGE_REL,
        },
        CovarianceKind::Shared {
            ridge_rel: DEFAULT_RIDGE_REL,
        },
    ] {
        let bank = GaussianBank::fit(spec(), &classes, kind).unwrap();
        assert_eq!(bank.dim(), 384);
        let mut correct = 0;
        for (c, samples) in test.iter().enumerate() {
            let posts = bank.posterior_batch(samples.into(), None, 1.0).unwrap();
            for p in posts {
                assert_distribution(&p, 1e-12);
                correct += usize::from(top_k(&p, 1)[0].0 == c);
            }
        }
        assert_eq!(correct, 100, "{kind:?}");
    }
}

fn three_classes(rng: &mut Rng, d: usize) -> Vec<Vec<Vec<f64>>> {
    let a: Vec<f64> = (0..d * d).map(|_| rng.normal() * 0.3).collect();
    (0..3)
        .map(|c| draw(rng, &vec![c as f64; d], &a, d, 15 + 5 * c))
        .collect()
}

// (h) add_class gives exactly what fitting everything at once gives.
#[test]
fn gdc_add_class_equals_joint_fit() {
    let mut rng = Rng::new(41);
    let d = 6;
    let data = three_classes(&mut rng, d);
    let names = ["p", "q", "r"];
    let all: Vec<(&str, Samples)> = names.iter().zip(&data).map(|(n, x)| (*n, x.into())).collect();
    let q: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    for kind in [
        CovarianceKind::Full { ridge_rel: 1e-3 },
        CovarianceKind::Diagonal { ridge_rel: 1e-2 },
        CovarianceKind::Shared { ridge_rel: 1e-3 },
    ] {
        let joint = GaussianBank::fit(spec(), &all, kind).unwrap();
        // an empty bank filled class by class (run-time zero-shot classes) is the same bank
        let mut from_empty = GaussianBank::empty(spec(), kind).unwrap();
        assert!(from_empty.is_empty());
        assert!(from_empty.add_class("p", (&vec![vec![f64::NAN; d]]).into()).is_err());
        assert_eq!(from_empty.dim(), 0, "a refused first class leaves the bank empty");
        for (n, x) in &all {
            from_empty.add_class(n, *x).unwrap();
        }
        assert_eq!((from_empty.classes(), &from_empty.shared), (joint.classes(), &joint.shared), "{kind:?}");
        let mut inc = GaussianBank::fit(spec(), &all[..1], kind).unwrap();
        inc.add_class("q", all[1].1).unwrap();
        inc.add_class("r", all[2].1).unwrap();
        assert_eq!(inc.classes(), joint.classes(), "{kind:?}");
        assert_eq!(inc.shared, joint.shared, "{kind:?}");
        assert_eq!(inc.log_likelihoods(&q).unwrap(), joint.log_likelihoods(&q).unwrap());
        // Duplicates and bad input leave the bank unchanged.
        assert!(matches!(
            inc.add_class("q", all[1].1),
            Err(BankError::DuplicateClass(_))
        ));
        let bad = vec![vec![1.0; d + 1]];
        assert!(matches!(
            inc.add_class("s", (&bad).into()),
            Err(BankError::DimensionMismatch { .. })
        ));
        assert!(matches!(inc.add_class("", all[1].1), Err(BankError::EmptyName)));
        assert_eq!(inc.classes(), joint.classes());
        // remove_class drops exactly that class.
        let removed = inc.remove_class("q").unwrap();
        assert_eq!(removed.name(), "q");
        assert_eq!(inc.class_names(), vec!["p", "r"]);
        let ll = inc.log_likelihoods(&q).unwrap();
        let jl = joint.log_likelihoods(&q).unwrap();
        assert_eq!(ll, vec![jl[0], jl[2]]);
        assert!(matches!(inc.remove_class("q"), Err(BankError::UnknownClasses { .. })));
    }
    let dup = [all[0], ("p", all[1].1)];
    assert!(matches!(
        GaussianBank::fit(spec(), &dup, CovarianceKind::default()),
        Err(BankError::DuplicateClass(_))
    ));
    assert!(matches!(
        GaussianBank::fit(spec(), &[], CovarianceKind::default()),
        Err(BankError::Empty)
    ));
    let empty: Vec<Vec<f64>> = vec![];
    assert!(matches!(
        GaussianBank::fit(spec(), &[("e", (&empty).into())], CovarianceKind::default()),
        Err(BankError::NoSamples(_))
    ));
    let nan = vec![vec![f64::NAN; d]];
    assert!(matches!(
        GaussianBank::fit(spec(), &[("n", (&nan).into())], CovarianceKind::default()),
        Err(BankError::NonFinite(_))
    ));
    assert!(GaussianBank::fit(spec(), &all, CovarianceKind::Full { ridge_rel: -1.0 }).is_err());
}

fn sample_bank(kind: CovarianceKind) -> GaussianBank {
    let mut rng = Rng::new(43);
    let data = three_classes(&mut rng, 5);
    let one = vec![vec![0.5; 5]];
    let classes: Vec<(&str, Samples)> = vec![
        ("car", (&data[0]).into()),
        ("van", (&data[1]).into()),
        ("bus", (&data[2]).into()),
        ("tram", (&one).into()),
    ];
    let mut bank = GaussianBank::fit(EmbeddingSpec::new("dinov2-vits14", "cls+meanpatch"), &classes, kind).unwrap();
    bank.set_prompts("car", vec!["a photo of a car".into(), "an origami car".into()])
        .unwrap();
    bank
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

// (f) save/load is bit-exact, refuses another backbone or recipe.
#[test]
fn gdc_file_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [
        CovarianceKind::Full { ridge_rel: 1e-3 },
        CovarianceKind::Diagonal { ridge_rel: 0.05 },
        CovarianceKind::Shared { ridge_rel: 1e-3 },
    ] {
        let bank = sample_bank(kind);
        let path = dir.path().join(format!("{}.safetensors", kind.name()));
        bank.save(&path).unwrap();
        let loaded = GaussianBank::load(&path).unwrap();
        assert_eq!(loaded, bank);
        for (a, b) in loaded.classes().iter().zip(bank.classes()) {
            assert_eq!(bits(a.mean()), bits(b.mean()));
            assert_eq!(a.sample_variance().to_bits(), b.sample_variance().to_bits());
        }
        for c in 0..bank.len() {
            assert_eq!(bits(&loaded.covariance(c).unwrap()), bits(&bank.covariance(c).unwrap()));
            assert_eq!(
                loaded.log_det_covariance(c).unwrap().to_bits(),
                bank.log_det_covariance(c).unwrap().to_bits()
            );
        }
        assert_eq!(
            loaded.to_bytes().unwrap(),
            std::fs::read(&path).unwrap(),
            "re-saving changes the bytes"
        );
        assert_eq!(loaded.classes()[0].prompts(), ["a photo of a car", "an origami car"]);
        assert_eq!(loaded.created(), bank.created());
        // add_class still works after a reload (Shared needs the stored scatter).
        let mut reloaded = loaded.clone();
        let extra = vec![vec![1.0, 2.0, 3.0, 4.0, 5.0], vec![1.5, 2.0, 2.0, 4.0, 5.5]];
        reloaded.add_class("extra", (&extra).into()).unwrap();
        let mut original = bank.clone();
        original.add_class("extra", (&extra).into()).unwrap();
        assert_eq!(reloaded, original);

        assert!(GaussianBank::load_expecting(&path, "dinov2-vits14", "cls+meanpatch").is_ok());
        let err = GaussianBank::load_expecting(&path, "efficientnet-lite0", "cls+meanpatch").unwrap_err();
        assert!(matches!(err, BankError::BackboneMismatch { .. }), "{err}");
        assert!(err.to_string().contains("dinov2-vits14") && err.to_string().contains("efficientnet-lite0"));
        let err = GaussianBank::load_expecting(&path, "dinov2-vits14", "cls").unwrap_err();
        assert!(matches!(err, BankError::RecipeMismatch { .. }), "{err}");
    }
    let err = GaussianBank::load(dir.path().join("missing.safetensors")).unwrap_err();
    assert!(matches!(err, BankError::Io { .. }), "{err}");
    // a file that is not a bank: the parse error names the file
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let err = GaussianBank::load(&junk).unwrap_err();
    assert!(matches!(err, BankError::File { .. }) && err.to_string().contains("junk.safetensors"), "{err}");
}

/// Rebuild the file after `edit` changed its tensors or metadata; expect an error containing `needle`.
fn tampered(kind: CovarianceKind, needle: &str, edit: impl FnOnce(&mut Vec<(String, F64Tensor)>, &mut String)) {
    let (mut tensors, mut meta) = encode(&sample_bank(kind)).unwrap();
    let mut json = meta.remove(file::METADATA_KEY).unwrap();
    edit(&mut tensors, &mut json);
    meta.insert(file::METADATA_KEY.into(), json);
    let bytes = write(tensors, meta).unwrap();
    match GaussianBank::from_bytes(&bytes) {
        Err(e) => assert!(e.to_string().contains(needle), "expected {needle:?} in: {e}"),
        Ok(_) => panic!("tampered file ({needle}) was accepted"),
    }
}

fn set(tensors: &mut [(String, F64Tensor)], name: &str, shape: Vec<usize>, values: &[f64]) {
    let t = tensors.iter_mut().find(|(n, _)| n == name).unwrap();
    t.1 = F64Tensor::new(shape, values);
}

#[test]
fn gdc_file_rejects_invalid_content() {
    let bank = sample_bank(CovarianceKind::default());
    let d = bank.dim();
    let chol = |c: usize| {
        let mut l = vec![0.0; d * d];
        let cov = bank.covariance(c).unwrap();
        // any valid factor will do; take the bank's by refactoring
        if let Ok(super::gaussian::Factor::Dense { l: f, .. }) = super::gaussian::Factor::cholesky(d, &cov) {
            l = f;
        }
        l
    };
    let full = CovarianceKind::default();
    let mut upper = chol(0);
    upper[1] = 0.25;
    tampered(full, "not lower triangular", |t, _| {
        set(t, "classes.0.chol", vec![d, d], &upper)
    });
    let mut negative = chol(1);
    negative[d + 1] = -negative[d + 1];
    tampered(full, "non-positive diagonal", |t, _| {
        set(t, "classes.1.chol", vec![d, d], &negative)
    });
    tampered(full, "non-finite", |t, _| {
        set(t, "classes.2.mean", vec![d], &[f64::NAN; 5])
    });
    tampered(full, "shape", |t, _| set(t, "classes.0.chol", vec![d], &[1.0; 5]));
    tampered(full, "shape", |t, _| set(t, "classes.0.mean", vec![d + 1], &[1.0; 6]));
    tampered(full, "missing tensor", |t, _| t.retain(|(n, _)| n != "classes.3.mean"));
    tampered(full, "unexpected tensor", |t, _| {
        t.push(("classes.9.mean".into(), F64Tensor::new(vec![d], &[0.0; 5])))
    });
    tampered(full, "version", |_, j| *j = j.replace("\"version\":1", "\"version\":3"));
    tampered(full, "covariance kind", |_, j| *j = j.replace("\"full\"", "\"banana\""));
    tampered(full, "duplicate class name", |_, j| {
        *j = j.replace("\"van\"", "\"car\"")
    });
    tampered(full, "count 0", |_, j| *j = j.replace("\"count\":1,", "\"count\":0,"));
    tampered(full, "metadata JSON", |_, j| j.truncate(j.len() / 2));
    tampered(full, "dimension 0", |_, j| *j = j.replace("\"dim\":5", "\"dim\":0"));
    tampered(full, "shape", |_, j| *j = j.replace("\"dim\":5", "\"dim\":4"));
    // a huge dimension is refused by the byte budget before any tensor is read
    tampered(full, "at most 1073741824", |_, j| {
        *j = j.replace("\"dim\":5", "\"dim\":100000000000")
    });
    tampered(
        CovarianceKind::Diagonal { ridge_rel: 1e-3 },
        "non-positive diagonal",
        |t, _| set(t, "classes.0.chol", vec![d], &[1.0, 1.0, 0.0, 1.0, 1.0]),
    );
    tampered(
        CovarianceKind::Shared { ridge_rel: 1e-3 },
        "not lower triangular",
        |t, _| set(t, "shared.chol", vec![d, d], &upper),
    );
    tampered(CovarianceKind::Shared { ridge_rel: 1e-3 }, "shared_dof", |_, j| {
        *j = j.replace("\"shared_dof\":", "\"shared_dof_\":")
    });
    // A file that is not ours at all.
    let foreign = safetensors::serialize([("w", F64Tensor::new(vec![1], &[1.0]))], None).unwrap();
    assert!(GaussianBank::from_bytes(&foreign)
        .unwrap_err()
        .to_string()
        .contains("metadata"));
    assert!(GaussianBank::from_bytes(b"").is_err());
    assert!(GaussianBank::from_bytes(&[0xff; 64]).is_err());
}

// (f) 2,000 deterministic mutations and truncations: errors or valid banks, never a panic.
#[test]
fn gdc_file_corruption_never_panics() {
    let banks = [
        sample_bank(CovarianceKind::default()),
        sample_bank(CovarianceKind::Shared { ridge_rel: 1e-3 }),
    ];
    let originals: Vec<Vec<u8>> = banks.iter().map(|b| b.to_bytes().unwrap()).collect();
    let mut rng = Rng::new(47);
    let (mut rejected, mut accepted) = (0, 0);
    for trial in 0..2000 {
        let original = &originals[trial % 2];
        let mut bytes = original.clone();
        let header_end = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
        match trial % 6 {
            0 => bytes.truncate(rng.below(original.len())),
            1 => {
                // flip 1–4 random bytes anywhere
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                // replace one byte inside the JSON header with a random one
                let i = 8 + rng.below(header_end - 8);
                bytes[i] = rng.next_u64() as u8;
            }
            3 => {
                // a random header length
                let n = rng.next_u64() >> rng.below(64);
                bytes[..8].copy_from_slice(&n.to_le_bytes());
            }
            4 => {
                // overwrite 8 bytes of tensor data with a random f64 bit pattern (NaN, inf, huge …)
                let i = header_end + 8 * rng.below((bytes.len() - header_end) / 8);
                bytes[i..i + 8].copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            _ => {
                // insert or delete a run of bytes
                let i = rng.below(bytes.len());
                if rng.below(2) == 0 {
                    bytes.drain(i..(i + 1 + rng.below(16)).min(bytes.len()));
                } else {
                    let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next_u64() as u8).collect();
                    bytes.splice(i..i, junk);
                }
            }
        }
        let outcome = std::panic::catch_unwind(|| match GaussianBank::from_bytes(&bytes) {
            Ok(bank) => {
                // Whatever was accepted must be a usable bank.
                if !bank.is_empty() {
                    let q = vec![0.3; bank.dim()];
                    if let Ok(p) = bank.posterior(&q, None, 1.0) {
                        assert!(p.iter().all(|v| v.is_finite()));
                    }
                }
                true
            }
            Err(_) => false,
        });
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("mutation {trial} (kind {}) panicked", trial % 6),
        }
    }
    println!("corruptions: {rejected} rejected, {accepted} accepted as valid banks");
    assert_eq!(accepted + rejected, 2000);
    assert!(rejected > 1000, "only {rejected} of 2000 corruptions were rejected");
}

// Timing of the brief's reference sizes (run with --ignored --nocapture).
#[test]
#[ignore]
fn gdc_timing_384x240x10() {
    let mut rng = Rng::new(53);
    let d = 384;
    let data: Vec<Vec<Vec<f32>>> = (0..10)
        .map(|c| {
            (0..240)
                .map(|_| (0..d).map(|_| (rng.normal() + c as f64) as f32).collect())
                .collect()
        })
        .collect();
    let names: Vec<String> = (0..10).map(|c| format!("class{c}")).collect();
    let classes: Vec<(&str, Samples)> = names.iter().zip(&data).map(|(n, x)| (n.as_str(), x.into())).collect();
    for kind in [
        CovarianceKind::default(),
        CovarianceKind::Diagonal { ridge_rel: 1e-3 },
        CovarianceKind::Shared { ridge_rel: 1e-3 },
    ] {
        let t = std::time::Instant::now();
        let bank = GaussianBank::fit(spec(), &classes, kind).unwrap();
        let fit = t.elapsed();
        let reps = 200;
        let t = std::time::Instant::now();
        let mut acc = 0.0;
        for r in 0..reps {
            acc += bank.posterior(&data[r % 10][r], None, 1.0).unwrap()[0];
        }
        let per_query = t.elapsed() / reps as u32;
        let t = std::time::Instant::now();
        let bytes = bank.to_bytes().unwrap();
        let back = GaussianBank::from_bytes(&bytes).unwrap();
        let io = t.elapsed();
        println!(
            "{:>8}: fit 10 x 240 x {d}: {:?}; one query vs 10 classes: {:?}; save+load {} bytes: {:?} ({acc:.1}, {})",
            kind.name(),
            fit,
            per_query,
            bytes.len(),
            io,
            back.len()
        );
    }
}
