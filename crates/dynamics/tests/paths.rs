//! Paths between minima: the straight path over a ring of minima has barrier 1, a trained
//! Bezier curve goes around it; curvature along the flat valley floor equals k(x).

use noether_dynamics::path::{barrier, lerp, profile, train_bezier, BezierConfig, Curvature};
use noether_dynamics::toy::{Ring, Valley};

#[test]
fn bezier_curve_avoids_the_barrier_of_the_straight_path() {
    let ring = Ring { dim: 3 };
    let (a, b) = ([1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]);
    let straight = profile(&ring, &|t| lerp(&a, &b, t), 100, Curvature::default()).unwrap();
    assert!(
        (barrier(&straight) - 1.0).abs() < 1e-12,
        "{}",
        barrier(&straight)
    );
    let curve = train_bezier(
        &ring,
        &a,
        &b,
        &BezierConfig {
            steps: 20_000,
            lr: 0.01,
            batch_size: None,
            seed: 1,
        },
    )
    .unwrap();
    let bent = profile(&ring, &|t| curve.point(t), 100, Curvature::default()).unwrap();
    assert!(barrier(&bent) < 0.1, "Bezier barrier {}", barrier(&bent));
    assert_eq!(curve.point(0.0), a.to_vec());
    assert_eq!(curve.point(1.0), b.to_vec());
    assert!(train_bezier(
        &ring,
        &a,
        &b,
        &BezierConfig {
            steps: 1,
            lr: -1.0,
            batch_size: None,
            seed: 0
        }
    )
    .is_err());
}

#[test]
fn curvature_along_the_valley_floor_is_k_of_x() {
    let valley = Valley { k0: 2.0 };
    let path = |t: f64| vec![0.5 * t, 0.0];
    let points = profile(
        &valley,
        &path,
        10,
        Curvature {
            lambda_max: true,
            trace_samples: 10,
        },
    )
    .unwrap();
    for p in &points {
        let k = valley.k(0.5 * p.t);
        assert_eq!(p.loss, 0.0);
        assert!(
            (p.lambda_max.unwrap() - k).abs() < 1e-4 * k,
            "t = {}: {:?} vs {k}",
            p.t,
            p.lambda_max
        );
        assert!((p.trace.unwrap() - k).abs() < 1e-4 * k);
    }
    assert_eq!(barrier(&points), 0.0);
}
