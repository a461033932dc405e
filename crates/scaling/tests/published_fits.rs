//! Acceptance against published fits (data in ../shared/reference/scaling; skipped with a
//! message when the shared folder is absent).

use std::path::PathBuf;

use noether_scaling::{
    fit, objective_at, Chinchilla, ChinchillaParams, ColumnMap, FitConfig, Loss, Runs,
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
