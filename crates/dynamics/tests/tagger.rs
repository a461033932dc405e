//! A trained tagger as an objective: its loss is the mean cross-entropy `predict`
//! reports, and its gradient matches finite differences of that loss.

use std::path::Path;

use noether_dynamics::{Objective, TaggerObjective};
use noether_train::{
    build_model, checkpoint, load_weights, predict, train, RunData, RunOptions, TrainConfig,
};

#[test]
fn tagger_objective_loss_and_gradient_are_consistent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = "model = \"pfn\"\n[pfn]\nphi_sizes = [8]\nf_sizes = [8]\n[data]\ntrain_jets = 96\nval_jets = 48\nn_max = 10\nbatch_size = 16\n[optim]\nlr = 1e-2\n[train]\nepochs = 1\nseed = 5\nbootstrap = 0\n";
    let mut config = TrainConfig::from_toml(text, Path::new("inline")).unwrap();
    config.data.train = root.join("data/train.h5");
    config.data.val = root.join("data/val.h5");
    config.data.test = root.join("data/val.h5");
    let data = RunData::load(&config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        out: dir.path().to_owned(),
        ..RunOptions::default()
    };
    train(&config, &data, &options).unwrap();
    let best = dir.path().join("best.safetensors");
    let jets = data.val.select(&(0..40).collect::<Vec<_>>());
    let obj = TaggerObjective::from_checkpoint(&best, jets.clone()).unwrap();
    let w = obj.parameters().unwrap();
    assert_eq!(w.len(), obj.dim());
    let (model, varmap) = build_model(&config, 0).unwrap();
    let ckpt = checkpoint::load(&best).unwrap();
    load_weights(&varmap, &ckpt.tensors, dir.path()).unwrap();
    let (_, _, mean_loss) = predict(&model, &jets, config.data.n_max, 16).unwrap();
    let mut g = vec![0.0; w.len()];
    let loss = obj.loss_grad(&w, None, &mut g);
    assert!((loss - mean_loss).abs() < 1e-5, "{loss} vs {mean_loss}");
    // Central differences on the largest-gradient coordinates (f32 model: step 1e-2).
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|a, b| g[*b].abs().total_cmp(&g[*a].abs()));
    for &i in &order[..5] {
        let h = 1e-2;
        let (mut p, mut m) = (w.clone(), w.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (obj.loss(&p, None) - obj.loss(&m, None)) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() < 0.05 * g[i].abs() + 1e-4,
            "{i}: {fd} vs {}",
            g[i]
        );
    }
}
