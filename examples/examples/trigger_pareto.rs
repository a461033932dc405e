//! The time-limited regime's Pareto study: trigger-sized taggers trained with
//! quantisation-aware training at several bit widths and constituent counts, each
//! evaluated in the integer engine on the full test set, with its parameters, total
//! weight bits and single-jet latency (one core, median of 20,000 calls). Float runs
//! of the same models are the reference rows. Writes one run directory per point under
//! `--out` (finished runs are skipped), `pareto.csv`, `pareto.md` and `pareto.svg`.
//!
//! At `N` bits the weights are `ap_fixed<N,2>`, the biases `ap_fixed<N,3>` and every
//! hidden output `ap_ufixed<N,3>` (ReLU's range); the inputs keep their configs' types,
//! the pooled sum is `ap_fixed<N+6,9>`, the logits `ap_fixed<16,6>`; round half to
//! even, saturation, exact accumulators. L-GATr-slim's signed stream, tables and softmax
//! have their own (`slim_quant_at`).
//!
//! ```sh
//! cargo run --release -p noether-examples --example trigger_pareto -- \
//!     [--data-dir ../shared/data/toptag-pythia] \
//!     [--models pfn-trigger,efn-trigger,mlp-trigger,pelican-trigger,pelican-nano-trigger,\
//!               lgatr-slim-trigger] \
//!     [--bits 0,16,8,6,4] [--constituents 16,32] [--seeds 0] [--train-jets 20000] \
//!     [--finished-only] [--out runs/trigger_pareto]
//! cargo run --release -p noether-examples --example trigger_pareto -- \
//!     --from-csv docs/trigger_pareto.csv   # redraw pareto.md / pareto.svg from a CSV
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use noether_data::{JetFile, JetSet};
use noether_examples::{csv_fields, workspace_root};
use noether_quant::{FixedType, LayerOverride, Overflow, QuantConfig, Rounding};
use noether_train::{
    engine_latency, float_latency, jet_inputs, load_inference_model, RunDir, TrainConfig, TrainJob,
};
use plotters::prelude::*;

// candle allocates a buffer per operation; see `noether_equivariant::CachingAllocator`.
#[global_allocator]
static ALLOCATOR: noether_equivariant::CachingAllocator = noether_equivariant::CachingAllocator;

/// The Pareto study (see the module documentation).
#[derive(Parser)]
struct Args {
    /// Directory holding train.h5, val.h5 and test.h5
    #[arg(long, default_value_os_t = workspace_root().join("../shared/data/toptag-pythia"))]
    data_dir: PathBuf,
    /// Models: names of the files in configs/ (without .toml)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pfn-trigger,efn-trigger,mlp-trigger,pelican-trigger,pelican-nano-trigger,\
                         lgatr-slim-trigger"
    )]
    models: Vec<String>,
    /// Bit widths of weights, biases and activations (0: the float reference)
    #[arg(long, value_delimiter = ',', default_value = "0,16,8,6,4")]
    bits: Vec<u32>,
    /// Constituents per jet
    #[arg(long, value_delimiter = ',', default_value = "16,32")]
    constituents: Vec<usize>,
    /// Training seeds (`train.seed`); seed 0's runs are named without a suffix
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    /// Training jets
    #[arg(long, default_value_t = 20_000)]
    train_jets: usize,
    /// Validation jets (best-epoch selection)
    #[arg(long, default_value_t = 5_000)]
    val_jets: usize,
    /// Timed single-jet calls per latency figure
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Summarise the finished runs only, training nothing (points without one are left
    /// out)
    #[arg(long)]
    finished_only: bool,
    /// Redraw the table and the plot from a CSV this example wrote (e.g.
    /// `docs/trigger_pareto.csv`), training and reading nothing else
    #[arg(long, value_name = "CSV")]
    from_csv: Option<PathBuf>,
    /// Directory of the run directories and the summaries
    #[arg(long, default_value_os_t = workspace_root().join("runs/trigger_pareto"))]
    out: PathBuf,
}

/// One point of the study.
struct Point {
    model: String,
    constituents: usize,
    seed: u64,
    /// 0 for float.
    bits: u32,
    params: usize,
    auc: f64,
    rejection: f64,
    latency_ns: u128,
}

impl Point {
    /// Parameters times their bits (32 for float).
    fn weight_bits(&self) -> usize {
        self.params
            * if self.bits == 0 {
                32
            } else {
                self.bits as usize
            }
    }
}

fn fixed(width: u32, integer: i32, signed: bool) -> Result<FixedType, Box<dyn std::error::Error>> {
    Ok(FixedType::new(
        width,
        integer,
        signed,
        Rounding::RndConv,
        Overflow::Sat,
    )?)
}

/// The study's precisions at `bits`, keeping the config's input type (L-GATr-slim's are
/// [`slim_quant_at`]).
fn quant_at(base: &QuantConfig, bits: u32) -> Result<QuantConfig, Box<dyn std::error::Error>> {
    let head = LayerOverride {
        result: Some(fixed(16, 6, true)?),
        ..LayerOverride::default()
    };
    Ok(QuantConfig {
        input: base.input,
        weight: fixed(bits, 2, true)?,
        bias: fixed(bits, 3, true)?,
        result: fixed(bits, 3, false)?,
        accum: None,
        pool: Some(fixed(bits + 6, 9, true)?),
        table_input: base.table_input,
        table: base.table,
        layers: [("head".to_owned(), head)].into(),
    })
}

/// L-GATr-slim's precisions at `bits`: weights `ap_fixed<N,2>`, biases `ap_fixed<N,3>`,
/// every stream, norm, gate and head output `ap_fixed<N,min(4,N-2)>` (the residual stream
/// is signed); the lookup tables return `ap_fixed<T,3>`, the probabilities are
/// `ap_ufixed<T,1>` and the sum of numerators `ap_ufixed<min(T+2,16),6>` with
/// `T = max(N, 8)`, as hls4ml gives its tables their own precision (`table_t`,
/// `exp_table_t`, `inv_table_t`): with 4-bit tables (steps of 1/2) every reciprocal of a
/// sum above 4 rounds to zero and the tagger stayed constant. The inputs and the tables'
/// input (their address width) keep the config's types; the logits `ap_fixed<16,6>`.
fn slim_quant_at(
    base: &QuantConfig,
    bits: u32,
    blocks: usize,
) -> Result<QuantConfig, Box<dyn std::error::Error>> {
    let table_bits = bits.max(8);
    let mut layers = std::collections::BTreeMap::new();
    layers.insert(
        "linear_out".to_owned(),
        LayerOverride {
            result: Some(fixed(16, 6, true)?),
            ..LayerOverride::default()
        },
    );
    for i in 0..blocks {
        layers.insert(
            format!("blocks.{i}.attention.softmax"),
            LayerOverride {
                result: Some(fixed(table_bits, 1, false)?),
                // The reciprocal's table reads it: at most 16 bits.
                accum: Some(fixed((table_bits + 2).min(16), 6, false)?),
                ..LayerOverride::default()
            },
        );
    }
    // At 4 bits an `ap_fixed<4,4>` stream (steps of 1) is too coarse: two integer bits.
    let stream = (bits as i32 - 2).min(4);
    Ok(QuantConfig {
        input: base.input,
        weight: fixed(bits, 2, true)?,
        bias: fixed(bits, 3, true)?,
        result: fixed(bits, stream, true)?,
        accum: None,
        pool: None,
        table_input: base.table_input,
        table: Some(fixed(table_bits, 3, true)?),
        layers,
    })
}

/// Jets the latency calls cycle through.
const LATENCY_JETS: usize = 512;

fn run_point(
    args: &Args,
    test: &JetSet,
    model: &str,
    constituents: usize,
    bits: u32,
    seed: u64,
) -> Result<Option<Point>, Box<dyn std::error::Error>> {
    let mut name = if bits == 0 {
        "float".to_owned()
    } else {
        format!("b{bits}")
    };
    if seed != 0 {
        name = format!("{name}-s{seed}");
    }
    let dir = RunDir::new(args.out.join(format!("{model}-c{constituents}-{name}")));
    if !dir.is_finished() && args.finished_only {
        return Ok(None);
    }
    if !dir.is_finished() {
        let mut config = TrainConfig::load(
            &workspace_root()
                .join("configs")
                .join(format!("{model}.toml")),
        )?;
        config.data.train = args.data_dir.join("train.h5");
        config.data.val = args.data_dir.join("val.h5");
        config.data.test = args.data_dir.join("test.h5");
        config.data.train_jets = args.train_jets;
        config.data.val_jets = args.val_jets;
        config.data.n_max = constituents;
        config.train.bootstrap = 0;
        config.train.seed = seed;
        let base = config.quant.take().unwrap_or_default();
        if bits > 0 {
            config.quant = Some(match &config.model {
                noether_equivariant::ModelConfig::LGatrSlim(c) => {
                    slim_quant_at(&base, bits, c.num_blocks)?
                }
                _ => quant_at(&base, bits)?,
            });
        }
        eprintln!(
            "{model} constituents={constituents} bits={name} -> {}",
            dir.path().display()
        );
        noether_equivariant::set_threads(0);
        let job = TrainJob {
            force: true,
            progress: false,
            ..TrainJob::new(config, dir.path())
        };
        job.run()?;
    }
    let metrics = dir.metrics()?;
    let (tagger, _, config) = load_inference_model(&dir.path().join("best.safetensors"))?;
    // Evaluation in the engine: the figures of the hardware, not the float forward's.
    let (auc, rejection) = if bits > 0 {
        let logits = noether_train::fixed_point_logits(&tagger, test, config.data.n_max)?;
        let scores: Vec<f64> = logits
            .iter()
            .map(|l| 1.0 / (1.0 + f64::from(l[0] - l[1]).exp()))
            .collect();
        let scored = noether_train::Scored::new(&scores, test.labels(), None)?;
        let m = noether_train::TaggingMetrics::of(&scored);
        (m.auc, m.rejection_at_0_3)
    } else {
        (metrics.auc, metrics.rejection_at_0_3)
    };
    // Quantised rows count the parameters of the fixed-point form (PELICAN's float
    // checkpoint also holds BatchNorm and aggregation exponents that it does not use).
    let params = if bits > 0 {
        tagger.quant_graph()?.parameters()
    } else {
        metrics.params
    };
    noether_equivariant::set_threads(1);
    let first: Vec<usize> = (0..LATENCY_JETS.min(test.len())).collect();
    let input = jet_inputs(&tagger, &test.select(&first), constituents)?;
    let latency = if bits > 0 {
        engine_latency(&tagger, &input, args.calls)?
    } else {
        float_latency(&tagger, &input, args.calls.min(2000))?
    };
    Ok(Some(Point {
        model: model.to_owned(),
        constituents,
        seed,
        bits,
        params,
        auc,
        rejection,
        latency_ns: latency.median.as_nanos(),
    }))
}

fn bits_label(bits: u32) -> String {
    if bits == 0 {
        "float".into()
    } else {
        bits.to_string()
    }
}

fn table(points: &[Point]) -> String {
    let mut md = String::from(
        "| model | constituents | seed | bits | params | weight bits | AUC | 1/eps_B(0.3) | latency (ns/jet) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {:.1} | {} |",
            p.model,
            p.constituents,
            p.seed,
            bits_label(p.bits),
            p.params,
            p.weight_bits(),
            p.auc,
            p.rejection,
            p.latency_ns
        );
    }
    md
}

fn plot(path: &Path, points: &[Point]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (700, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    // Seed 0's runs: one line per model and constituent count.
    let fixed: Vec<&Point> = points
        .iter()
        .filter(|p| p.bits > 0 && p.seed == 0)
        .collect();
    let (lo, hi) = fixed.iter().fold((f64::MAX, 0f64), |(l, h), p| {
        let b = p.weight_bits() as f64;
        (l.min(b), h.max(b))
    });
    let (alo, ahi) = fixed
        .iter()
        .fold((1f64, 0f64), |(l, h), p| (l.min(p.auc), h.max(p.auc)));
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "AUC against total weight bits (integer engine)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d((lo / 1.3..hi * 1.3).log_scale(), alo - 0.01..ahi + 0.01)?;
    chart
        .configure_mesh()
        .x_desc("weight bits (parameters x bits)")
        .y_desc("AUC")
        .draw()?;
    let series: std::collections::BTreeSet<(String, usize)> = fixed
        .iter()
        .map(|p| (p.model.clone(), p.constituents))
        .collect();
    for (k, (model, n)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let mut line: Vec<(f64, f64)> = fixed
            .iter()
            .filter(|p| &p.model == model && p.constituents == *n)
            .map(|p| (p.weight_bits() as f64, p.auc))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(format!("{model}, {n} constituents"))
            .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 20, b)], color));
        chart.draw_series(line.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The points of a CSV this example wrote (a missing `seed` column reads as seed 0).
fn read_csv(path: &Path) -> Result<Vec<Point>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header = csv_fields(lines.next().unwrap_or_default());
    let column = |name: &str| header.iter().position(|h| h == name);
    let needed = [
        "model",
        "constituents",
        "bits",
        "params",
        "auc",
        "rejection_at_0.3",
        "latency_ns_per_jet",
    ];
    if let Some(missing) = needed.iter().find(|n| column(n).is_none()) {
        return Err(format!("{}: no '{missing}' column", path.display()).into());
    }
    let mut points = Vec::new();
    for (row, line) in lines.enumerate() {
        let fields = csv_fields(line);
        let bad = |name: &str| format!("{}: row {}: bad '{name}'", path.display(), row + 1);
        let field = |name: &str| column(name).and_then(|i| fields.get(i).map(String::as_str));
        let number = |name: &str| -> Result<f64, String> {
            field(name)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad(name))
        };
        let bits = match field("bits") {
            Some("float") => 0,
            Some(b) => b.parse().map_err(|_| bad("bits"))?,
            None => return Err(bad("bits").into()),
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        points.push(Point {
            model: field("model").ok_or_else(|| bad("model"))?.to_owned(),
            constituents: number("constituents")? as usize,
            seed: field("seed").map_or(Ok(0.0), |_| number("seed"))? as u64,
            bits,
            params: number("params")? as usize,
            auc: number("auc")?,
            rejection: number("rejection_at_0.3")?,
            latency_ns: number("latency_ns_per_jet")? as u128,
        });
    }
    Ok(points)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(csv) = &args.from_csv {
        let points = read_csv(csv)?;
        std::fs::create_dir_all(&args.out)?;
        let md = table(&points);
        std::fs::write(args.out.join("pareto.md"), &md)?;
        plot(&args.out.join("pareto.svg"), &points)?;
        println!("{md}");
        return Ok(());
    }
    if !args.data_dir.join("train.h5").exists() {
        eprintln!("SKIPPED: {} is absent", args.data_dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)?;
    let test = JetFile::open(args.data_dir.join("test.h5"))?.read_all()?.0;
    let mut points = Vec::new();
    let mut csv = String::from(
        "model,constituents,seed,bits,params,weight_bits,auc,rejection_at_0.3,latency_ns_per_jet\n",
    );
    for model in &args.models {
        for &n in &args.constituents {
            for (&bits, &seed) in args
                .bits
                .iter()
                .flat_map(|b| args.seeds.iter().map(move |s| (b, s)))
            {
                let Some(p) = run_point(&args, &test, model, n, bits, seed)? else {
                    continue;
                };
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{},{},{},{}",
                    p.model,
                    p.constituents,
                    p.seed,
                    bits_label(p.bits),
                    p.params,
                    p.weight_bits(),
                    p.auc,
                    p.rejection,
                    p.latency_ns
                );
                eprintln!(
                    "  auc {:.4}, 1/eps_B {:.1}, {} ns/jet",
                    p.auc, p.rejection, p.latency_ns
                );
                points.push(p);
                std::fs::write(args.out.join("pareto.csv"), &csv)?;
            }
        }
    }
    let md = table(&points);
    std::fs::write(args.out.join("pareto.md"), &md)?;
    plot(&args.out.join("pareto.svg"), &points)?;
    println!("{md}");
    Ok(())
}
