//! A tour of noether's physics foundation on realistic jets: boosts that keep the top
//! mass, the f32 precision problem of nearly collinear pairs, and a Lorentz-invariance
//! study of the jet mass versus boost rapidity for three ways of computing it.
//!
//! Run: `cargo run --release -p noether-examples --example kinematics_tour`

use nalgebra::Vector3;
use noether_kinematics::invariants::{naive_pair_mass2, stable_pair_mass2, PtYPhiM};
use noether_kinematics::{FourMomentum, KinematicsError, LorentzTransform};
use noether_testkit::SymmetryKit;

fn main() -> Result<(), KinematicsError> {
    top_quark_boost()?;
    collinear_pair_precision();
    jet_mass_invariance_vs_rapidity();
    Ok(())
}

fn top_quark_boost() -> Result<(), KinematicsError> {
    println!("== A top quark (m = 172.5 GeV) boosted to pT = 600 GeV ==");
    let top = FourMomentum::from_pt_eta_phi_m(0.0, 0.0, 0.0, 172.5)?;
    let y = (600.0_f64 / 172.5).asinh();
    let boosted = LorentzTransform::boost_rapidity(&Vector3::new(1.0, 1.0, 0.0), y)?.apply(&top);
    println!(
        "pT = {:.9} GeV, eta = {:.3}, phi = {:.4}, mass = {:.12} GeV (relative change {:.1e})\n",
        boosted.pt(),
        boosted.eta(),
        boosted.phi(),
        boosted.mass(),
        (boosted.mass() - 172.5).abs() / 172.5
    );
    Ok(())
}

fn collinear_pair_precision() {
    println!("== Pair mass of two massless 300 GeV particles at eta = 0, Delta R apart ==");
    println!(
        "{:>8} {:>14} {:>14} {:>14} {:>14}",
        "DeltaR", "exact [GeV]", "naive f32", "stable f32", "naive f64"
    );
    for k in 1..=6 {
        let dr = 10f64.powi(-k);
        let a = PtYPhiM::<f32>::new(300.0, 0.0, 0.25, 0.0);
        let b = PtYPhiM::<f32>::new(300.0, 0.0, 0.25 + dr as f32, 0.0);
        let dphi = f64::from(b.phi) - f64::from(a.phi);
        let exact = 2.0 * 300.0 * (dphi / 2.0).sin();
        let rel = |m2: f64| (m2.max(0.0).sqrt() - exact).abs() / exact;
        let naive32 = f64::from(naive_pair_mass2(&a.to_e_px_py_pz(), &b.to_e_px_py_pz()));
        let stable32 = f64::from(stable_pair_mass2(&a, &b));
        let (a64, b64) = (a.cast::<f64>(), b.cast::<f64>());
        let naive64 = naive_pair_mass2(&a64.to_e_px_py_pz(), &b64.to_e_px_py_pz());
        println!(
            "{dr:>8.0e} {exact:>14.6e} {:>14.1e} {:>14.1e} {:>14.1e}",
            rel(naive32),
            rel(stable32),
            rel(naive64)
        );
    }
    println!("(columns 3-5: relative error of the pair mass)\n");
}

fn jet_mass_invariance_vs_rapidity() {
    println!(
        "== Jet mass under random Lorentz transformations (64 jets of 20-100 constituents) =="
    );
    println!(
        "{:>6} {:>16} {:>16} {:>16}",
        "y_max", "naive f64", "naive f32", "stable f32"
    );
    let jets = SymmetryKit::new(11)
        .with_jets(64)
        .with_constituents(20..=100)
        .jets();
    for y_max in [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0] {
        let ops = SymmetryKit::new(12)
            .with_max_rapidity(y_max)
            .with_transforms(8)
            .lorentz_ops();
        let mut worst = [0.0_f64; 3];
        for jet in &jets {
            let reference = jet.iter().sum::<FourMomentum>().mass2();
            for op in &ops {
                let boosted = op.apply(jet).expect("Lorentz transforms apply to any jet");
                let results = [
                    mass2_naive_f64(&boosted),
                    mass2_naive_f32(&boosted),
                    mass2_stable_f32(&boosted),
                ];
                for (w, m2) in worst.iter_mut().zip(results) {
                    *w = w.max((m2 - reference).abs() / reference);
                }
            }
        }
        println!(
            "{y_max:>6.1} {:>16.2e} {:>16.2e} {:>16.2e}",
            worst[0], worst[1], worst[2]
        );
    }
    println!("(worst relative error of m_jet^2; stable f32 casts (pT, y, phi, m) computed in f64)");
}

fn mass2_naive_f64(jet: &[FourMomentum]) -> f64 {
    jet.iter().sum::<FourMomentum>().mass2()
}

fn mass2_naive_f32(jet: &[FourMomentum]) -> f64 {
    let sum = jet.iter().fold([0.0_f32; 4], |acc, p| {
        let c = p.to_array().map(|x| x as f32);
        [acc[0] + c[0], acc[1] + c[1], acc[2] + c[2], acc[3] + c[3]]
    });
    f64::from(sum[0] * sum[0] - sum[1] * sum[1] - sum[2] * sum[2] - sum[3] * sum[3])
}

fn mass2_stable_f32(jet: &[FourMomentum]) -> f64 {
    let p: Vec<PtYPhiM<f32>> = jet
        .iter()
        .map(|q| PtYPhiM::from_four_momentum(q).cast())
        .collect();
    let mut m2 = 0.0_f64;
    for i in 0..p.len() {
        m2 += f64::from(p[i].m * p[i].m);
        for j in i + 1..p.len() {
            m2 += 2.0 * f64::from(noether_kinematics::invariants::stable_dot(&p[i], &p[j]));
        }
    }
    m2
}
