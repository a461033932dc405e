//! The main job until training lands: the bundled real Pythia jets end to end — read
//! the ragged files, look at the physics (jet mass and multiplicity of top versus QCD
//! jets), draw a data-limited balanced subset, build padded batches with LorentzNet's
//! beams, and check that the jet mass computed from real constituents is Lorentz
//! invariant (f64, and f32 with and without the cancellation-free formula).
//!
//! Run: `cargo run --release -p noether-examples --example jets_tour`

use noether_data::sampling::{balanced_subset, class_weights};
use noether_data::{batches, inspect, BatchConfig, Beams, JetFile, JetSet};
use noether_kinematics::invariants::{stable_dot, PtYPhiM};
use noether_kinematics::FourMomentum;
use noether_testkit::{check_invariant, SymmetryKit, Tolerance};

fn data(name: &str) -> std::path::PathBuf {
    noether_examples::workspace_root().join("data").join(name)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{}\n", inspect(data("train.h5"))?);
    let (train, report) = JetFile::open(data("train.h5"))?.read_all()?;
    println!("{report}\n");
    physics_table(&train);

    let subset = balanced_subset(train.labels(), 2000, 42)?;
    let weights = class_weights(train.labels());
    println!(
        "data-limited subset: {} jets ({} signal), class weights bkg {:.3} sig {:.3}",
        subset.len(),
        subset.iter().filter(|&&i| train.label(i) == 1).count(),
        weights[0],
        weights[1]
    );
    let mut config = BatchConfig::new(128, 50);
    config.beams = Beams::LORENTZNET;
    let n_batches = batches(&train, &subset, &config, 0)?.count();
    let first = batches(&train, &subset, &config, 0)?
        .next()
        .expect("at least one batch");
    let real: f32 = first.mask.iter().sum();
    println!(
        "batches: {n_batches} of [{}, {}, 4] (2 beams + 50 leading constituents); first batch {:.1} real particles per jet\n",
        first.batch_size,
        first.particles,
        real / first.batch_size as f32
    );
    invariance_on_real_jets(&train);
    Ok(())
}

fn physics_table(jets: &JetSet) {
    println!(
        "{:>10} {:>8} {:>14} {:>14} {:>16}",
        "class", "jets", "<m_jet> GeV", "<n_const>", "m in [140,200]"
    );
    for (label, name) in [(1u8, "top"), (0u8, "QCD")] {
        let idx: Vec<usize> = (0..jets.len())
            .filter(|&i| jets.label(i) == label)
            .collect();
        let masses: Vec<f64> = idx.iter().map(|&i| jets.jet_momentum(i).mass()).collect();
        let mean_mass = masses.iter().sum::<f64>() / masses.len() as f64;
        let mean_n =
            idx.iter().map(|&i| jets.multiplicity(i)).sum::<usize>() as f64 / idx.len() as f64;
        let window = masses
            .iter()
            .filter(|m| (140.0..200.0).contains(*m))
            .count() as f64
            / masses.len() as f64;
        println!(
            "{name:>10} {:>8} {mean_mass:>14.1} {mean_n:>14.1} {:>15.1}%",
            idx.len(),
            100.0 * window
        );
    }
    println!();
}

fn invariance_on_real_jets(jets: &JetSet) {
    let inputs: Vec<Vec<FourMomentum>> = (0..64).map(|i| jets.four_momenta(i)).collect();
    println!("Lorentz invariance of m_jet^2 on 64 real jets (worst error / allowed, tier):");
    println!(
        "{:>6} {:>22} {:>22} {:>22}",
        "y_max", "naive f64 (f64 tier)", "naive f32 (f32 tier)", "stable f32 (f32 tier)"
    );
    for y_max in [1.0, 2.0, 4.0, 6.0] {
        let ops = SymmetryKit::new(5).with_max_rapidity(y_max).lorentz_ops();
        let naive64 = check_invariant(
            |j| vec![j.iter().sum::<FourMomentum>().mass2()],
            &inputs,
            &ops,
            Tolerance::F64,
        );
        let naive32 = check_invariant(|j| vec![naive_mass2_f32(j)], &inputs, &ops, Tolerance::F32);
        let stable32 =
            check_invariant(|j| vec![stable_mass2_f32(j)], &inputs, &ops, Tolerance::F32);
        let cell = |r: &noether_testkit::SymmetryReport| {
            format!(
                "{:.2e} {}",
                r.worst_ratio(),
                if r.passed() { "ok" } else { "FAIL" }
            )
        };
        println!(
            "{y_max:>6.1} {:>22} {:>22} {:>22}",
            cell(&naive64),
            cell(&naive32),
            cell(&stable32)
        );
    }
}

fn naive_mass2_f32(jet: &[FourMomentum]) -> f64 {
    let s = jet.iter().fold([0.0_f32; 4], |a, p| {
        let c = p.to_array().map(|x| x as f32);
        [a[0] + c[0], a[1] + c[1], a[2] + c[2], a[3] + c[3]]
    });
    f64::from(s[0] * s[0] - s[1] * s[1] - s[2] * s[2] - s[3] * s[3])
}

fn stable_mass2_f32(jet: &[FourMomentum]) -> f64 {
    let p: Vec<PtYPhiM<f32>> = jet
        .iter()
        .map(|q| PtYPhiM::from_four_momentum(q).cast())
        .collect();
    let mut m2 = 0.0_f32;
    for i in 0..p.len() {
        m2 += p[i].m * p[i].m;
        for j in i + 1..p.len() {
            m2 += 2.0 * stable_dot(&p[i], &p[j]);
        }
    }
    f64::from(m2)
}
