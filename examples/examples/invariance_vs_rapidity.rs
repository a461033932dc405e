//! Invariance error versus boost rapidity for PELICAN and LorentzNet, with the inputs
//! rounded to f32 before the network (the usual path) and with the invariants formed in
//! f64 (PELICAN: products from f64 momenta; LorentzNet: the network in f64 with exact
//! node masses). Seeded random weights; the error is the largest change of any logit
//! divided by the largest logit, over 8 jets and 8 random Lorentz transformations of
//! rapidity exactly y (beams transformed with the jet).
//!
//! Run: `cargo run --release -p noether-examples --example invariance_vs_rapidity`

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use noether_equivariant::{
    seeded_varbuilder, LorentzNet, LorentzNetConfig, LorentzNetInput, Mode, Pelican, PelicanConfig,
    PelicanInput,
};
use noether_kinematics::{random, FourMomentum, LorentzTransform};
use noether_testkit::SymmetryKit;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

type Logits = Box<dyn Fn(&[FourMomentum]) -> Vec<f64>>;

fn values(t: &Tensor) -> Vec<f64> {
    let t = t.flatten_all().and_then(|t| t.to_dtype(DType::F64));
    t.and_then(|t| t.to_vec1::<f64>()).expect("logits")
}

fn flat<T>(nodes: &[FourMomentum], cast: impl Fn(f64) -> T) -> Vec<T> {
    nodes.iter().flat_map(|p| p.to_array().map(&cast)).collect()
}

fn pelican(wide: bool) -> Logits {
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 1, DType::F32, &Device::Cpu);
    let model = Pelican::new(&PelicanConfig::small(), &vb).expect("PELICAN");
    Box::new(move |nodes| {
        let n = nodes.len();
        let mask = vec![1.0; n];
        let input = if wide {
            PelicanInput::from_flat_f64(&flat(nodes, |x| x), &mask, 1, n, 2)
        } else {
            PelicanInput::from_flat(&flat(nodes, |x| x as f32), &mask, 1, n, 2)
        };
        values(
            &model
                .forward(&input.expect("input"), &mut Mode::Eval)
                .expect("forward"),
        )
    })
}

fn lorentznet(wide: bool) -> Logits {
    let config = LorentzNetConfig {
        n_hidden: 16,
        n_layers: 3,
        coord_clamp: f64::INFINITY,
        ..LorentzNetConfig::default()
    };
    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 2, DType::F32, &Device::Cpu);
    LorentzNet::new(&config, &vb).expect("LorentzNet");
    let dtype = if wide { DType::F64 } else { DType::F32 };
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("varmap")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().to_dtype(dtype).expect("cast")))
        .collect();
    let model = LorentzNet::new(
        &config,
        &VarBuilder::from_tensors(tensors, dtype, &Device::Cpu),
    )
    .expect("LorentzNet");
    Box::new(move |nodes| {
        let n = nodes.len();
        let mut input =
            LorentzNetInput::from_flat(&flat(nodes, |x| x as f32), &vec![1.0; n], 1, n, 2)
                .expect("input");
        if wide {
            let momenta = Tensor::from_vec(flat(nodes, |x| x), (1, n, 4), &Device::Cpu);
            input.momenta = momenta.expect("momenta");
            input.mask = input.mask.to_dtype(DType::F64).expect("mask");
            let masses: Vec<f64> = (0..n).map(|k| if k < 2 { 1.0 } else { 0.0 }).collect();
            input.masses = Some(Tensor::from_vec(masses, (1, n), &Device::Cpu).expect("masses"));
        }
        values(&model.forward(&input).expect("forward"))
    })
}

fn with_beams(jet: &[FourMomentum], energy: f64, pz: f64) -> Vec<FourMomentum> {
    let mut nodes = vec![
        FourMomentum::new_unchecked(energy, 0.0, 0.0, pz),
        FourMomentum::new_unchecked(energy, 0.0, 0.0, -pz),
    ];
    nodes.extend_from_slice(jet);
    nodes
}

/// Worst relative logit change under transformations of rapidity `y`.
fn error(model: &Logits, jets: &[Vec<FourMomentum>], y: f64, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut worst = 0.0_f64;
    for nodes in jets {
        let reference = model(nodes);
        let scale = reference.iter().fold(1e-3_f64, |m, x| m.max(x.abs()));
        for _ in 0..8 {
            // A boost of rapidity exactly y in a random direction, after a random rotation.
            let rotation = random::random_rotation(&mut rng);
            let axis = random::random_rotation(&mut rng)
                .apply(&FourMomentum::new_unchecked(1.0, 0.0, 0.0, 1.0));
            let axis = nalgebra::Vector3::new(axis.px(), axis.py(), axis.pz());
            let boost = LorentzTransform::boost_rapidity(&axis, y).expect("boost");
            let g = boost.compose(&rotation);
            let moved: Vec<FourMomentum> = nodes.iter().map(|p| g.apply(p)).collect();
            let out = model(&moved);
            for (a, b) in reference.iter().zip(&out) {
                worst = worst.max((a - b).abs() / scale);
            }
        }
    }
    worst
}

fn main() {
    let jets = SymmetryKit::new(7)
        .with_jets(8)
        .with_constituents(20..=50)
        .jets();
    let pelican_jets: Vec<_> = jets.iter().map(|j| with_beams(j, 1.0, 1.0)).collect();
    let s2 = std::f64::consts::SQRT_2;
    let lorentz_jets: Vec<_> = jets.iter().map(|j| with_beams(j, s2, 1.0)).collect();
    let models = [
        ("PELICAN f32", pelican(false), &pelican_jets),
        ("PELICAN f64-inv", pelican(true), &pelican_jets),
        ("LorentzNet f32", lorentznet(false), &lorentz_jets),
        ("LorentzNet f64", lorentznet(true), &lorentz_jets),
    ];
    print!("{:>5}", "y");
    for (name, _, _) in &models {
        print!(" {name:>16}");
    }
    println!();
    for step in 0..=12 {
        let y = 0.5 * f64::from(step);
        print!("{y:>5.1}");
        for (k, (_, model, jets)) in models.iter().enumerate() {
            print!(" {:>16.2e}", error(model, jets, y, 100 + k as u64));
        }
        println!();
    }
}
