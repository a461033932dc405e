//! Tagging metrics against scikit-learn / numpy on committed score arrays (fixture written
//! by `tests/fixtures/make_metric_fixtures.py`) and closed-form cases.

use noether_train::{bootstrap, Scored, TaggingMetrics, TrainError};

fn fixture() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/metrics_reference.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn metrics_match_scikit_learn() {
    for case in fixture() {
        let name = case["name"].as_str().unwrap();
        let scores: Vec<f64> = serde_json::from_value(case["scores"].clone()).unwrap();
        let labels: Vec<u8> = serde_json::from_value(case["labels"].clone()).unwrap();
        let weights: Option<Vec<f64>> = serde_json::from_value(case["weights"].clone()).unwrap();
        let scored = Scored::new(&scores, &labels, weights.as_deref()).unwrap();
        let m = TaggingMetrics::of(&scored);
        let expect = |key: &str| case[key].as_f64().unwrap();
        for (what, got, want) in [
            ("acc", m.acc, expect("acc")),
            ("auc", m.auc, expect("auc")),
            (
                "rejection_at_0.3",
                m.rejection_at_0_3,
                expect("rejection_at_0.3"),
            ),
            (
                "rejection_at_0.5",
                m.rejection_at_0_5,
                expect("rejection_at_0.5"),
            ),
        ] {
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{name} {what}: {got} vs sklearn {want}"
            );
        }
    }
}

#[test]
fn closed_form_cases() {
    // Perfect separation: AUC 1, accuracy 1, no background passes at eps_S = 0.3.
    let scores = [0.9, 0.8, 0.7, 0.3, 0.2, 0.1];
    let labels = [1, 1, 1, 0, 0, 0];
    let m = TaggingMetrics::of(&Scored::new(&scores, &labels, None).unwrap());
    assert_eq!((m.acc, m.auc), (1.0, 1.0));
    assert!(m.rejection_at_0_3.is_infinite());
    // Identical distributions (all scores tied): AUC exactly 1/2, eps_B = eps_S.
    let scores = [0.5; 8];
    let labels = [1, 0, 1, 0, 1, 0, 1, 0];
    let s = Scored::new(&scores, &labels, None).unwrap();
    assert_eq!(s.auc(), 0.5);
    assert!((s.rejection(0.3) - 1.0 / 0.3).abs() < 1e-12);
    // Inverted scores: AUC 0.
    let scores = [0.1, 0.2, 0.8, 0.9];
    let labels = [1, 1, 0, 0];
    assert_eq!(Scored::new(&scores, &labels, None).unwrap().auc(), 0.0);
    // Weights act as repeated jets.
    let (s1, l1, w1) = ([0.9, 0.4, 0.6], [1, 1, 0], [2.0, 1.0, 1.0]);
    let (s2, l2) = ([0.9, 0.9, 0.4, 0.6], [1, 1, 1, 0]);
    let a = Scored::new(&s1, &l1, Some(&w1)).unwrap().auc();
    let b = Scored::new(&s2, &l2, None).unwrap().auc();
    assert!((a - b).abs() < 1e-15 && (a - 2.0 / 3.0).abs() < 1e-15);
}

#[test]
fn bootstrap_intervals_bracket_the_value_and_are_seeded() {
    let case = &fixture()[0];
    let scores: Vec<f64> = serde_json::from_value(case["scores"].clone()).unwrap();
    let labels: Vec<u8> = serde_json::from_value(case["labels"].clone()).unwrap();
    let scored = Scored::new(&scores, &labels, None).unwrap();
    let a = bootstrap(&scored, 200, 5);
    let b = bootstrap(&scored, 200, 5);
    assert_eq!(a, b);
    for i in &a {
        assert!(i.low <= i.value && i.value <= i.high, "{i:?}");
    }
    // The AUC's 68% interval has the width of its standard error, ~1e-2 for 2,000 jets.
    let width = a[1].high - a[1].low;
    assert!(width > 0.005 && width < 0.05, "{width}");
}

#[test]
fn bad_inputs_are_rejected_with_a_reason() {
    let err = |s: &[f64], l: &[u8], w: Option<&[f64]>| match Scored::new(s, l, w) {
        Err(TrainError::Metric(m)) => m,
        other => panic!("expected a metric error, got {other:?}"),
    };
    assert!(err(&[0.1, 0.2], &[1], None).contains("2 scores but 1 labels"));
    assert!(err(&[0.1, f64::NAN], &[1, 0], None).contains("score 1"));
    assert!(err(&[0.1, 0.2], &[1, 1], None).contains("both signal and background"));
    assert!(err(&[0.1, 0.2], &[1, 2], None).contains("label 1"));
    assert!(err(&[0.1, 0.2], &[1, 0], Some(&[1.0, -1.0])).contains("weight 1"));
}

/// A tagger that lets no background jet pass at eps_S = 0.3 has an infinite 1/eps_B,
/// which serde_json writes as `null` (as it writes every value that is not finite);
/// `metrics.json` reads back with the rejection infinite and such interval bounds NaN,
/// rather than failing (`noether sweep collect` read every finished trial's file).
#[test]
fn an_infinite_rejection_survives_metrics_json() {
    let json = r#"{
        "model": "particlenet", "acc": 0.95, "auc": 0.99,
        "rejection_at_0.3": null, "rejection_at_0.5": 909.09,
        "intervals": {"rejection_at_0.3": {"value": null, "low": 10026.0, "high": null}},
        "train_jets": 500, "test_jets": 20000, "params": 10, "trainable_params": 10,
        "nonzero_params": 10, "seconds": 1.0, "epochs": 6, "best_epoch": 6
    }"#;
    let summary: noether_train::RunSummary = serde_json::from_str(json).unwrap();
    assert_eq!(summary.rejection_at_0_3, f64::INFINITY);
    assert_eq!(summary.rejection_at_0_5, 909.09);
    let interval = summary.intervals["rejection_at_0.3"];
    assert!(interval.value.is_nan() && interval.high.is_nan());
    assert_eq!(interval.low, 10026.0);
    // Written again, it reads back the same.
    let again: noether_train::RunSummary =
        serde_json::from_str(&serde_json::to_string(&summary).unwrap()).unwrap();
    assert_eq!(again.rejection_at_0_3, f64::INFINITY);
}
