//! Model throughput: forward and forward + backward on a batch of 32 jets x 50
//! constituents (+ the model's beams), and single-jet inference, for LorentzNet (paper
//! size, 224k parameters), PELICAN (default, ~190k, and small, ~12k), L-GATr-slim (size 0,
//! 1.42M) and the Transformer baseline (tagging-guide size, 1.98M). Jets from the bundled
//! test set; seeded random weights; `BENCH_THREADS` threads (default 1). Forward-only
//! figures use the weights detached (no autograd graph, as
//! `noether_train::inference_model` and PyTorch's `no_grad`); forward + backward uses
//! the trainable variables.
//!
//! Run: `cargo bench --bench models`. Criterion reports time per iteration and
//! jets per second (elements). The side-by-side PyTorch comparison is
//! `cargo bench --bench model_compare`.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use noether::data::{Batch, Beams};
use noether::equivariant::{
    inference_varbuilder, seeded_varbuilder, LGatrSlim, LGatrSlimConfig, LorentzNet,
    LorentzNetConfig, LorentzNetInput, Mode, PaddedJets, Pelican, PelicanConfig, PelicanInput,
    Placement, TaggerModel, Transformer, TransformerConfig, LGATR_SPURIONS,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// candle allocates a buffer per operation; see `noether::equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether::equivariant::CachingAllocator = noether::equivariant::CachingAllocator;

#[path = "common/mod.rs"]
mod common;
use common::{bundled_inputs, env_count, BATCH};

fn labels(batch: &Batch) -> Tensor {
    let l: Vec<u32> = batch.labels.iter().map(|&l| u32::from(l)).collect();
    Tensor::from_vec(l, batch.batch_size, &Device::Cpu).expect("labels")
}

/// A seeded model's variables as trainable tensors and detached (inference) ones; the
/// running statistics stay shared variables in both.
fn varbuilders(seed: u64) -> (VarBuilder<'static>, VarBuilder<'static>) {
    let varmap = VarMap::new();
    let trainable = seeded_varbuilder(&varmap, seed, DType::F32, &Device::Cpu);
    let detached = inference_varbuilder(&varmap, DType::F32, &Device::Cpu);
    (trainable, detached)
}

/// Runs forward (inference model), forward + backward (trainable model) and single-jet
/// (inference model) benchmarks for one architecture.
fn bench_model(
    c: &mut Criterion,
    name: &str,
    eval: &dyn Fn() -> Tensor,
    train: &dyn Fn(&mut Mode) -> Tensor,
    single: &dyn Fn() -> Tensor,
    targets: &Tensor,
) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("forward_32x50", |b| b.iter(eval));
    // The trainable model in evaluation mode records the graph (the "before" figure).
    group.bench_function("forward_32x50_recording_graph", |b| {
        b.iter(|| train(&mut Mode::Eval));
    });
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    group.bench_function("forward_backward_32x50", |b| {
        b.iter(|| {
            let logits = train(&mut Mode::Train(&mut rng));
            let loss = candle_nn::loss::cross_entropy(&logits, targets).expect("loss");
            loss.backward().expect("backward")
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_jet_50", |b| b.iter(single));
    group.finish();
}

fn models(c: &mut Criterion) {
    let threads = env_count("BENCH_THREADS").unwrap_or(1);
    noether::equivariant::set_threads(threads);

    let (lb, jet) = bundled_inputs(Beams::LORENTZNET);
    let (trainable, detached) = varbuilders(0);
    let config = LorentzNetConfig::default();
    let lorentznet = LorentzNet::new(&config, &trainable).expect("LorentzNet");
    let inference = LorentzNet::new(&config, &detached).expect("LorentzNet");
    let input =
        LorentzNetInput::from_flat(&lb.momenta, &lb.mask, BATCH, lb.particles, 2).expect("input");
    let single = LorentzNetInput::single_jet(&jet).expect("single");
    bench_model(
        c,
        "lorentznet",
        &|| inference.forward(&input).expect("forward"),
        &|mode| lorentznet.forward_t(&input, mode).expect("forward"),
        &|| inference.forward(&single).expect("forward"),
        &labels(&lb),
    );

    let (pb, jet) = bundled_inputs(Beams::PELICAN);
    let input =
        PelicanInput::from_flat(&pb.momenta, &pb.mask, BATCH, pb.particles, 2).expect("input");
    let single = PelicanInput::single_jet(&jet).expect("single");
    for (name, config) in [
        ("pelican", PelicanConfig::default()),
        ("pelican_small", PelicanConfig::small()),
    ] {
        let (trainable, detached) = varbuilders(1);
        let model = Pelican::new(&config, &trainable).expect("PELICAN");
        let inference = Pelican::new(&config, &detached).expect("PELICAN");
        bench_model(
            c,
            name,
            &|| inference.forward(&input, &mut Mode::Eval).expect("forward"),
            &|mode| model.forward(&input, mode).expect("forward"),
            &|| {
                inference
                    .forward(&single, &mut Mode::Eval)
                    .expect("forward")
            },
            &labels(&pb),
        );
    }
}

/// The batch and the single jet of a token model with `beams`, as its inputs.
fn token_inputs<M: TaggerModel>(
    model: &M,
    beams: &'static [[f32; 4]],
) -> (M::Input, M::Input, Tensor) {
    let data_beams = if beams.is_empty() {
        Beams::None
    } else {
        Beams::Prepend(beams)
    };
    let (batch, jet) = bundled_inputs(data_beams);
    let input = |momenta: &[f32], mask: &[f32], jets: usize| {
        let wide: Vec<f64> = momenta.iter().map(|&x| f64::from(x)).collect();
        let padded = PaddedJets {
            momenta: &wide,
            mask,
            jets,
            nodes: mask.len() / jets,
            beams: beams.len(),
        };
        model.input(&padded, &Placement::cpu()).expect("input")
    };
    let mut one: Vec<f32> = beams.iter().flatten().copied().collect();
    one.extend(jet.iter().flatten());
    let single = input(&one, &vec![1.0; beams.len() + jet.len()], 1);
    (
        input(&batch.momenta, &batch.mask, BATCH),
        single,
        labels(&batch),
    )
}

fn token_models(c: &mut Criterion) {
    let config = LGatrSlimConfig::default();
    let (trainable, detached) = varbuilders(2);
    let model = LGatrSlim::new(&config, &trainable).expect("L-GATr-slim");
    let inference = LGatrSlim::new(&config, &detached).expect("L-GATr-slim");
    let (input, single, targets) = token_inputs(&model, &LGATR_SPURIONS);
    bench_model(
        c,
        "lgatr_slim",
        &|| {
            inference
                .forward_t(&input, &mut Mode::Eval)
                .expect("forward")
        },
        &|mode| model.forward_t(&input, mode).expect("forward"),
        &|| {
            inference
                .forward_t(&single, &mut Mode::Eval)
                .expect("forward")
        },
        &targets,
    );
    let config = TransformerConfig::default();
    let (trainable, detached) = varbuilders(3);
    let model = Transformer::new(&config, &trainable).expect("Transformer");
    let inference = Transformer::new(&config, &detached).expect("Transformer");
    let (input, single, targets) = token_inputs(&model, &[]);
    bench_model(
        c,
        "transformer",
        &|| {
            inference
                .forward_t(&input, &mut Mode::Eval)
                .expect("forward")
        },
        &|mode| model.forward_t(&input, mode).expect("forward"),
        &|| {
            inference
                .forward_t(&single, &mut Mode::Eval)
                .expect("forward")
        },
        &targets,
    );
}

criterion_group!(benches, models, token_models);
criterion_main!(benches);
