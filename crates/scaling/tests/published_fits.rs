//! Acceptance against published fits (data in ../shared/reference/scaling; skipped with a
//! message when the shared folder is absent).

use std::path::PathBuf;

use noether_scaling::{
    bootstrap, fit, objective_at, resolve_bounds, Bound, Chinchilla, ChinchillaParams, ColumnMap,
    FitConfig, Loss, PowerLaw, Runs,
};

fn reference(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/scaling")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} is absent (shared reference data)", p.display());
        None
    }
}

fn besiroglu() -> Option<Runs> {
    let path = reference("besiroglu_svg_extracted_data.csv")?;
    let map = ColumnMap {
        n: "Model Size".into(),
        flops: Some("Training FLOP".into()),
        ..ColumnMap::default()
    };
    Some(Runs::from_csv(path, &map).unwrap().drop_highest_loss(5))
}

#[test]
fn objective_at_hoffmann_parameters_matches_besiroglu() {
    let Some(runs) = besiroglu() else { return };
    assert_eq!(runs.len(), 240);
    let hoffmann = ChinchillaParams {
        E: 1.69337368,
        A: 406.401018,
        B: 410.722827,
        alpha: 0.33917084,
        beta: 0.2849083,
    };
    let obj = objective_at(
        &Chinchilla,
        &runs,
        &hoffmann.to_theta(),
        Loss::Huber { delta: 1e-3 },
    )
    .unwrap();
    assert!(
        (obj - 0.0012312).abs() < 5e-7,
        "objective at Hoffmann's parameters: {obj}"
    );
}

#[test]
fn chinchilla_refit_reproduces_besiroglu() {
    let Some(runs) = besiroglu() else { return };
    let result = fit(&Chinchilla, &runs, &FitConfig::default()).unwrap();
    let get = |k: &str| result.get(k).unwrap();
    eprintln!("{result:?}");
    assert!(
        result.objective <= 0.0010183,
        "objective {}",
        result.objective
    );
    assert!((get("A") / 477.8 - 1.0).abs() < 0.02, "A {}", get("A"));
    assert!((get("B") / 2143.0 - 1.0).abs() < 0.03, "B {}", get("B"));
    assert!((get("E") - 1.8172).abs() < 0.001, "E {}", get("E"));
    assert!(
        (get("alpha") - 0.3473).abs() < 0.001,
        "alpha {}",
        get("alpha")
    );
    assert!((get("beta") - 0.3672).abs() < 0.001, "beta {}", get("beta"));
    assert_eq!(result.starts, 4500);
}

#[test]
fn bootstrap_standard_errors_match_besiroglu() {
    use noether_scaling::bootstrap;
    let Some(runs) = besiroglu() else { return };
    let config = FitConfig::default();
    let full = fit(&Chinchilla, &runs, &config).unwrap();
    let boot = bootstrap(&Chinchilla, &runs, &full, &config, 400, 2024).unwrap();
    let (se_alpha, se_beta) = (boot.get("alpha").unwrap().se, boot.get("beta").unwrap().se);
    eprintln!(
        "SE(alpha) = {se_alpha}, SE(beta) = {se_beta}, failed {}",
        boot.failed
    );
    // Besiroglu et al.: about 0.015 and 0.021.
    assert!((0.010..0.020).contains(&se_alpha), "SE(alpha) {se_alpha}");
    assert!((0.015..0.028).contains(&se_beta), "SE(beta) {se_beta}");
    assert!(
        boot.failed * 20 < boot.resamples,
        "{} of {} refits failed",
        boot.failed,
        boot.resamples
    );
    let a = boot.get("alpha").unwrap();
    assert!(a.lo < a.estimate && a.estimate < a.hi);
}

fn muennighoff_runs() -> Option<Runs> {
    let path = reference("muennighoff_datablations_fitset182.csv")?;
    let map = ColumnMap {
        n: "params_N_billions".into(),
        d: Some("tokens_D_billions".into()),
        loss: "val_loss".into(),
        unique: Some("unique_tokens_U_D_billions".into()),
        flops: None,
    };
    Some(
        Runs::from_csv(path, &map)
            .unwrap()
            .scaled("N", 1e9)
            .and_then(|r| r.scaled("D", 1e9))
            .and_then(|r| r.scaled("U", 1e9))
            .unwrap(),
    )
}

#[test]
fn data_constrained_law_matches_muennighoff_values() {
    use noether_scaling::DataConstrained;
    let law = DataConstrained::muennighoff();
    let (r_d, r_n) = (15.387756, 5.309743);
    for (n, d, u, want) in [
        (6.34e9, 242e9, 25e9, 2.2256440889984477),
        (8.67e9, 178e9, 25e9, 2.2269634075087867),
    ] {
        let got = law.loss(n, d, u, r_d, r_n);
        assert!(
            (got / want - 1.0).abs() < 1e-9,
            "L({n:e}, {d:e}, {u:e}) = {got}, expected {want}"
        );
    }
}

#[test]
fn data_constrained_fit_reaches_muennighoff_objective_and_flags_r_d() {
    use noether_scaling::{profile, DataConstrained};
    let Some(runs) = muennighoff_runs() else {
        return;
    };
    assert_eq!(runs.len(), 182);
    let law = DataConstrained::muennighoff();
    let config = FitConfig::default();
    let result = fit(&law, &runs, &config).unwrap();
    eprintln!("{:?} objective {}", result.natural, result.objective);
    assert!(
        result.objective <= 0.015826,
        "objective {}",
        result.objective
    );
    let r_d = profile(&law, &runs, &result, &config, 0, 1000f64.ln(), 41).unwrap();
    let r_n = profile(&law, &runs, &result, &config, 1, 1000f64.ln(), 41).unwrap();
    eprintln!(
        "R_D interval {:?} weak {}; R_N interval {:?} weak {}",
        r_d.interval, r_d.weakly_identified, r_n.interval, r_n.weakly_identified
    );
    assert!(
        r_d.weakly_identified,
        "R_D* should be weakly identified: {:?}",
        r_d.delta_nll
    );
}

#[test]
fn varpro_on_besiroglu_lands_near_the_huber_fit() {
    use noether_scaling::fit_varpro;
    let Some(runs) = besiroglu() else { return };
    let vp = fit_varpro(&runs).unwrap();
    let huber = fit(&Chinchilla, &runs, &FitConfig::default()).unwrap();
    eprintln!(
        "varpro {:?} rss {}; huber alpha {} beta {}",
        vp.params,
        vp.rss,
        huber.get("alpha").unwrap(),
        huber.get("beta").unwrap()
    );
    // Least squares on relative residuals versus Huber (L1-like) on log residuals: the
    // objectives differ, the exponents must still agree closely on these data.
    assert!((vp.params.alpha - huber.get("alpha").unwrap()).abs() < 0.05);
    assert!((vp.params.beta - huber.get("beta").unwrap()).abs() < 0.05);
}

/// The tagging-guide study's box (arXiv:2608.02735): L_inf in [0.01, 1], B <= 1000,
/// beta in [0.01, 2], on the power form's natural parameters E, A, alpha.
fn tagging_guide_config() -> FitConfig {
    let bounds: Vec<Bound> = ["E=0.01:1", "A=:1000", "alpha=0.01:2"]
        .iter()
        .map(|b| b.parse().unwrap())
        .collect();
    FitConfig {
        bounds: resolve_bounds(&PowerLaw::default(), &bounds).unwrap(),
        ..FitConfig::default()
    }
}

fn scipy_fits() -> serde_json::Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tagging_guide_fits.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn data_scaling_map(x: &str, loss: &str) -> ColumnMap {
    ColumnMap {
        n: x.into(),
        d: None,
        loss: loss.into(),
        ..ColumnMap::default()
    }
}

/// Our fit against scipy's L-BFGS-B on one group: objective equal or lower, parameters to
/// 1e-3 (relative), the same parameters on a bound.
fn assert_matches_scipy(
    group: &str,
    result: &noether_scaling::FitResult,
    scipy: &serde_json::Value,
) {
    let objective = scipy["objective"].as_f64().unwrap();
    assert!(
        result.objective <= objective * (1.0 + 1e-9),
        "{group}: objective {} above scipy's {objective}",
        result.objective
    );
    for (ours, theirs) in [("E", "L_inf"), ("A", "B"), ("alpha", "beta")] {
        let (a, b) = (result.get(ours).unwrap(), scipy[theirs].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-3 * b.abs(),
            "{group} {theirs}: {a} vs scipy {b}"
        );
    }
    let scipy_at: Vec<&str> = scipy["at_bound"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v.as_str().unwrap() {
            "L_inf" => "E",
            "B" => "A",
            _ => "alpha",
        })
        .collect();
    assert_eq!(result.at_bound, scipy_at, "{group}: parameters at a bound");
}

#[test]
fn tagging_guide_data_scaling_fits_match_scipy() {
    let Some(path) = reference("tagging_guide/jetclass_data_scaling.csv") else {
        return;
    };
    let groups =
        Runs::from_csv_grouped(path, &data_scaling_map("D", "best_val_loss"), "model").unwrap();
    let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(names, ["gn3", "lloca", "part", "slim", "tr"]);
    let reference = scipy_fits();
    let config = tagging_guide_config();
    for (group, runs) in &groups {
        assert_eq!(runs.len(), 13);
        let result = fit(&PowerLaw::default(), runs, &config).unwrap();
        let scipy = &reference["fits"][group];
        assert_matches_scipy(group, &result, scipy);
        // The bootstrap's 10-90% interval against scipy's with tight tolerances (other
        // resamples, so within a factor 1.6 in width rather than equal).
        let boot = bootstrap(&PowerLaw::default(), runs, &result, &config, 100, 42).unwrap();
        let tight = &scipy["bootstrap_tight_tolerances"];
        for (ours, theirs) in [("E", "L_inf"), ("A", "B"), ("alpha", "beta")] {
            let (lo, hi) = boot.get(ours).unwrap().interval(0.8);
            let width =
                tight["p90"][theirs].as_f64().unwrap() - tight["p10"][theirs].as_f64().unwrap();
            let ratio = (hi - lo) / width;
            assert!(
                (1.0 / 1.6..1.6).contains(&ratio),
                "{group} {theirs}: width ratio {ratio}"
            );
        }
    }
}

#[test]
fn bounded_fits_end_on_the_bound_scipy_ends_on() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/synthetic_bounded.csv");
    let groups =
        Runs::from_csv_grouped(path, &data_scaling_map("train_jets", "test_loss"), "model")
            .unwrap();
    let reference = scipy_fits();
    let config = tagging_guide_config();
    for (group, runs) in &groups {
        let result = fit(&PowerLaw::default(), runs, &config).unwrap();
        assert!(!result.at_bound.is_empty(), "{group}");
        assert_matches_scipy(group, &result, &reference["synthetic_bounded"][group]);
        // Without bounds the same data leave the box: the bound is what holds them.
        let free = fit(&PowerLaw::default(), runs, &FitConfig::default()).unwrap();
        assert!(free.objective < result.objective, "{group}");
        assert!(free.at_bound.is_empty());
    }
}
