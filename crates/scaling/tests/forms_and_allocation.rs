//! Forms, alternative fits and allocation against exact answers: noiseless synthetic
//! runs from known laws, closed-form optima, and the double-descent formula.

use std::collections::BTreeMap;
use std::path::PathBuf;

use noether_scaling::double_descent::{expected_test_error, simulate_test_error};
use noether_scaling::{
    allocate, exchange_rates, fit, fit_varpro, isoflop, BrokenPowerLaw, Chinchilla,
    ChinchillaParams, ColumnMap, DataConstrained, FitConfig, Kaplan, Loss, PowerLaw, Runs,
    ScalingError,
};

const TRUTH: ChinchillaParams = ChinchillaParams {
    E: 1.69,
    A: 406.4,
    B: 410.7,
    alpha: 0.339,
    beta: 0.285,
};

fn runs(n: Vec<f64>, d: Vec<f64>, loss: Vec<f64>) -> Runs {
    Runs::from_columns(BTreeMap::from([
        ("N".into(), n),
        ("D".into(), d),
        ("loss".into(), loss),
    ]))
    .unwrap()
}

fn synthetic(law: impl Fn(f64, f64) -> f64) -> Runs {
    let (mut n, mut d, mut l) = (vec![], vec![], vec![]);
    for i in 0..7 {
        for j in 0..7 {
            let (ni, dj) = (1e7 * 3f64.powi(i), 1e9 * 3f64.powi(j));
            n.push(ni);
            d.push(dj);
            l.push(law(ni, dj));
        }
    }
    runs(n, d, l)
}

#[test]
fn chinchilla_huber_fit_and_varpro_recover_a_known_law() {
    let data = synthetic(|n, d| TRUTH.loss(n, d));
    let huber = fit(&Chinchilla, &data, &FitConfig::default()).unwrap();
    let vp = fit_varpro(&data).unwrap();
    for (name, want) in [
        ("E", TRUTH.E),
        ("A", TRUTH.A),
        ("B", TRUTH.B),
        ("alpha", TRUTH.alpha),
        ("beta", TRUTH.beta),
    ] {
        let got = huber.get(name).unwrap();
        assert!(
            (got / want - 1.0).abs() < 1e-4,
            "huber {name}: {got} vs {want}"
        );
    }
    let p = vp.params;
    for (got, want) in [
        (p.E, TRUTH.E),
        (p.A, TRUTH.A),
        (p.B, TRUTH.B),
        (p.alpha, TRUTH.alpha),
        (p.beta, TRUTH.beta),
    ] {
        assert!((got / want - 1.0).abs() < 1e-4, "varpro: {got} vs {want}");
    }
}

#[test]
fn l1_and_likelihood_losses_recover_the_law_despite_an_outlier() {
    let mut data = synthetic(|n, d| TRUTH.loss(n, d));
    let mut loss = data.require("loss").unwrap().to_vec();
    loss[10] *= 1.5; // one corrupted run
    data = runs(
        data.require("N").unwrap().to_vec(),
        data.require("D").unwrap().to_vec(),
        loss,
    );
    let huber = fit(&Chinchilla, &data, &FitConfig::default()).unwrap();
    for l in [Loss::L1, Loss::HuberLikelihood { delta: 1.0 }] {
        let config = FitConfig {
            loss: l,
            start: Some(huber.theta.clone()),
            ..FitConfig::default()
        };
        let r = fit(&Chinchilla, &data, &config).unwrap();
        let alpha = r.get("alpha").unwrap();
        assert!((alpha - TRUTH.alpha).abs() < 0.01, "{l:?}: alpha {alpha}");
    }
}

#[test]
fn kaplan_and_power_law_recover_known_laws() {
    let (nc, dc, an, ad) = (8.8e13_f64, 5.4e13_f64, 0.076, 0.095);
    let data = synthetic(|n, d| ((nc / n).powf(an / ad) + dc / d).powf(ad));
    let r = fit(&Kaplan, &data, &FitConfig::default()).unwrap();
    assert!(
        (r.get("alpha_N").unwrap() - an).abs() < 1e-3,
        "{:?}",
        r.natural
    );
    assert!(
        (r.get("alpha_D").unwrap() - ad).abs() < 1e-3,
        "{:?}",
        r.natural
    );
    assert!(
        (r.get("N_c").unwrap() / nc - 1.0).abs() < 0.05,
        "{:?}",
        r.natural
    );

    let n: Vec<f64> = (0..12).map(|k| 1e5 * 2f64.powi(k)).collect();
    let loss: Vec<f64> = n.iter().map(|x| 0.8 + 50.0 * x.powf(-0.4)).collect();
    let data = runs(n.clone(), n, loss);
    let r = fit(&PowerLaw::default(), &data, &FitConfig::default()).unwrap();
    assert!(
        (r.get("alpha").unwrap() - 0.4).abs() < 1e-4 && (r.get("E").unwrap() - 0.8).abs() < 1e-4,
        "{:?}",
        r.natural
    );
}

#[test]
fn broken_power_law_extrapolates_the_bnsl_example() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/scaling/bnsl_4digit_addition.csv");
    if !path.exists() {
        eprintln!("SKIPPED: {} is absent", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<(f64, f64, bool)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2] == "fit")
        })
        .collect();
    let (fit_rows, held): (Vec<&(f64, f64, bool)>, Vec<_>) = rows.iter().partition(|r| r.2);
    let x: Vec<f64> = fit_rows.iter().map(|r| r.0).collect();
    let y: Vec<f64> = fit_rows.iter().map(|r| r.1).collect();
    let data = runs(x.clone(), x, y);
    let bnsl = BrokenPowerLaw::for_runs(&data, "N", 1).unwrap();
    let b = fit(&bnsl, &data, &FitConfig::default()).unwrap();
    let p = fit(&PowerLaw::default(), &data, &FitConfig::default()).unwrap();
    let rmsle = |law: &dyn noether_scaling::ScalingLaw, theta: &[f64]| {
        let e: f64 = held
            .iter()
            .map(|r| (law.log_loss(theta, &[r.0.ln()]) - r.1.ln()).powi(2))
            .sum();
        (e / held.len() as f64).sqrt()
    };
    let (err_b, err_p) = (
        rmsle(&bnsl, &b.theta),
        rmsle(&PowerLaw::default(), &p.theta),
    );
    eprintln!("held-out RMS log error: BNSL {err_b:.4}, power law {err_p:.4}");
    assert!(
        err_b < err_p,
        "the broken power law should extrapolate better ({err_b} vs {err_p})"
    );
    assert!(err_b < 0.05, "BNSL extrapolation error {err_b}");
}

#[test]
fn compute_optimal_allocation_is_the_minimum_along_the_budget() {
    let c = 1e21;
    let best = allocate(&TRUTH, c, None, None).unwrap();
    assert!((6.0 * best.n * best.d / c - 1.0).abs() < 1e-12);
    for f in [0.8, 0.95, 1.05, 1.25] {
        let n = best.n * f;
        assert!(TRUTH.loss(n, c / (6.0 * n)) > best.loss);
    }
    // A binding parameter cap moves compute into data.
    let capped = allocate(&TRUTH, c, Some(best.n / 4.0), None).unwrap();
    assert!((capped.n - best.n / 4.0).abs() < 1.0 && capped.d > best.d && capped.loss > best.loss);
    assert!(matches!(
        allocate(&TRUTH, -1.0, None, None),
        Err(ScalingError::InvalidArgument { .. })
    ));
}

#[test]
fn data_constrained_allocation_repeats_data_and_costs_loss() {
    let law = DataConstrained::muennighoff();
    let (r_d, r_n) = (15.387756, 5.309743);
    let c = 1e22;
    let free = allocate(&law.base, c, None, None).unwrap();
    let plenty = allocate(&law.base, c, None, Some((1e15, &law, r_d, r_n))).unwrap();
    assert!(
        (plenty.loss / free.loss - 1.0).abs() < 1e-3,
        "{plenty:?} vs {free:?}"
    );
    let scarce = allocate(&law.base, c, None, Some((free.d / 10.0, &law, r_d, r_n))).unwrap();
    assert!(scarce.epochs > 1.0 && scarce.loss > free.loss, "{scarce:?}");
}

#[test]
fn isoflop_profiles_recover_the_allocation_exponent() {
    let (mut n, mut d, mut l) = (vec![], vec![], vec![]);
    for k in 0..6 {
        let c = 1e18 * 10f64.powi(k);
        let (n_opt, _) = TRUTH.compute_optimal(c);
        for j in -4..=4 {
            let ni = n_opt * 2f64.powi(j);
            n.push(ni);
            d.push(c / (6.0 * ni));
            l.push(TRUTH.loss(ni, c / (6.0 * ni)));
        }
    }
    let iso = isoflop(&runs(n, d, l), 0.01, 5).unwrap();
    let want = TRUTH.beta / (TRUTH.alpha + TRUTH.beta);
    assert_eq!(iso.optima.len(), 6);
    assert!((iso.a - want).abs() < 0.01, "a = {} vs {want}", iso.a);
}

#[test]
fn double_descent_simulation_follows_belkin_hsu_xu() {
    let beta: Vec<f64> = (0..60).map(|k| 1.0 / (1.0 + f64::from(k)).sqrt()).collect();
    let (n, sigma) = (30, 0.5);
    for p in [5, 15, 45, 59] {
        let used2: f64 = beta[..p].iter().map(|b| b * b).sum();
        let unused2: f64 = beta[p..].iter().map(|b| b * b).sum();
        let want = expected_test_error(p, n, used2, unused2, sigma * sigma).unwrap();
        let got = simulate_test_error(&beta, p, n, sigma, 400, 7);
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "p = {p}: simulated {got}, formula {want}"
        );
    }
    assert!(expected_test_error(30, 30, 1.0, 1.0, 1.0).is_none());
}

#[test]
fn bad_csv_input_names_row_and_column() {
    let dir = std::env::temp_dir().join(format!("noether-scaling-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let map = ColumnMap::default();
    let missing = Runs::from_csv(write("missing.csv", "N,tokens,loss\n1,2,3\n"), &map)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("no column 'D'") && missing.contains(r#""N", "tokens", "loss""#),
        "{missing}"
    );
    let negative = Runs::from_csv(write("neg.csv", "N,D,loss\n1,2,3\n5,-2,3\n"), &map)
        .unwrap_err()
        .to_string();
    assert!(
        negative.contains("row 2") && negative.contains("'D'"),
        "{negative}"
    );
    let nan = Runs::from_csv(write("nan.csv", "N,D,loss\n1,2,NaN\n"), &map)
        .unwrap_err()
        .to_string();
    assert!(nan.contains("row 1") && nan.contains("'loss'"), "{nan}");
    let text = Runs::from_csv(write("text.csv", "N,D,loss\n1,two,3\n"), &map)
        .unwrap_err()
        .to_string();
    assert!(text.contains(r#""two" is not a number"#), "{text}");
    let few = Runs::from_csv(
        write("few.csv", "N,D,loss\n1e9,2e10,3\n2e9,3e10,2.9\n"),
        &map,
    )
    .unwrap();
    let err = fit(&Chinchilla, &few, &FitConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ScalingError::TooFewRows {
                rows: 2,
                params: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(Runs::from_csv(dir.join("absent.csv"), &map).is_err());
}

/// Exact power-law runs L = e + a x^-alpha at 1k to 512k examples.
fn power_runs(e: f64, a: f64, alpha: f64) -> Runs {
    let x: Vec<f64> = (0..10).map(|k| 1e3 * 2f64.powi(k)).collect();
    let loss: Vec<f64> = x.iter().map(|x| e + a * x.powf(-alpha)).collect();
    Runs::from_columns(BTreeMap::from([("N".into(), x), ("loss".into(), loss)])).unwrap()
}

#[test]
fn exchange_rates_invert_the_reference_law() {
    let config = FitConfig::default();
    let reference = fit(&PowerLaw::default(), &power_runs(0.3, 5.0, 0.25), &config).unwrap();
    let model = fit(&PowerLaw::default(), &power_runs(0.2, 3.0, 0.3), &config).unwrap();
    let rates = exchange_rates((&model, &[]), (&reference, &[]), &[2000.0, 1e6], 0.8).unwrap();
    // At 2k examples the model's loss is 0.2 + 3 * 2000^-0.3; the reference reaches it
    // at (5 / (L - 0.3))^(1/0.25).
    let loss = 0.2 + 3.0 * 2000f64.powf(-0.3);
    assert!((rates[0].loss - loss).abs() < 1e-6);
    let expected = (5.0 / (loss - 0.3)).powf(4.0);
    let got = rates[0].reference_x.unwrap();
    assert!((got / expected - 1.0).abs() < 1e-3, "{got} vs {expected}");
    assert!(rates[0].interval.is_none(), "no bootstrap, no interval");
    // At 1M examples the model is below the reference's floor 0.3: never reached.
    assert!(rates[1].loss < 0.3 && rates[1].reference_x.is_none());
    // Against itself the rate is the identity, and a bootstrap band of identical draws
    // gives a zero-width interval.
    let band = vec![model.theta.clone(); 5];
    let same = exchange_rates((&model, &band), (&model, &band), &[5000.0], 0.8).unwrap();
    let (lo, hi) = same[0].interval.unwrap();
    for v in [same[0].reference_x.unwrap(), lo.unwrap(), hi.unwrap()] {
        assert!((v / 5000.0 - 1.0).abs() < 1e-9, "{v}");
    }
    let chinchilla = fit(&Chinchilla, &synthetic(|n, d| TRUTH.loss(n, d)), &config).unwrap();
    assert!(exchange_rates((&chinchilla, &[]), (&reference, &[]), &[1e3], 0.8).is_err());
}

#[test]
fn metrics_that_improve_upwards_are_read_as_losses() {
    let dir = std::env::temp_dir().join(format!("noether-scaling-maps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.csv");
    std::fs::write(
        &path,
        "train_jets,auc,rejection_at_0.3\n1000,0.95,40\n3000,0.97,125\n",
    )
    .unwrap();
    let read = |loss: &str| {
        let map = ColumnMap {
            n: "train_jets".into(),
            d: None,
            loss: loss.into(),
            ..ColumnMap::default()
        };
        Runs::from_csv(&path, &map)
    };
    let one_minus = read("1-auc").unwrap();
    let got = one_minus.column("loss").unwrap();
    assert!(
        (got[0] - 0.05).abs() < 1e-12 && (got[1] - 0.03).abs() < 1e-12,
        "{got:?}"
    );
    let eps_b = read("1/rejection_at_0.3").unwrap();
    assert_eq!(eps_b.column("loss").unwrap(), [0.025, 0.008]);
    // A perfect AUC has no distance to fit: the error names the row and the expression.
    std::fs::write(&path, "train_jets,auc,rejection_at_0.3\n1000,1.0,40\n").unwrap();
    let err = read("1-auc").unwrap_err().to_string();
    assert!(err.contains("row 1") && err.contains("'1-auc'"), "{err}");
    let err = read("1-accuracy").unwrap_err().to_string();
    assert!(err.contains("no column 'accuracy'"), "{err}");
}
