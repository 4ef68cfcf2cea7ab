//! Bare training-step throughput of the real `runner` model on random data.
//!
//! Builds `runner::model::Net` from an experiment file (through the same
//! `config::load` + `plan::plan` path as `runner run`), then times
//! forward + cross-entropy + backward + optimizer step on one fixed random
//! batch. Prints one line per timed step and a summary line:
//!
//! ```text
//! RESULT backend=flex model=bench-tutorial batch=32 threads=2 median_step_s=7.41 img_per_s=4.32 ...
//! ```
//!
//! ```text
//! cargo run --release --example train_step -- bench/models/tutorial.toml --steps 8
//! ```
//!
//! The optimizer comes from the file (`rmsprop` or `adam`); `--optimizer`
//! overrides it so the same model can be compared under both.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer, RmsPropConfig};
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData};

use burn::backend::{Autodiff, Flex};

use runner::backend::{self, TrainBackend, WithBackend};
use runner::config::{self, LoadOptions};
use runner::model::Net;
use runner::plan::{self, Algorithm, ModelPlan, OptimizerPlan};

struct Args {
    file: PathBuf,
    steps: usize,
    warmup: usize,
    batch: Option<usize>,
    optimizer: Option<String>,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        file: PathBuf::new(),
        steps: 10,
        warmup: 2,
        batch: None,
        optimizer: None,
        threads: 0,
    };
    let mut file = None;
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--steps" => {
                args.steps = val("--steps")?
                    .parse()
                    .map_err(|e| format!("--steps: {e}"))?
            }
            "--warmup" => {
                args.warmup = val("--warmup")?
                    .parse()
                    .map_err(|e| format!("--warmup: {e}"))?
            }
            "--batch" => {
                args.batch = Some(
                    val("--batch")?
                        .parse()
                        .map_err(|e| format!("--batch: {e}"))?,
                )
            }
            "--optimizer" => args.optimizer = Some(val("--optimizer")?),
            "--threads" => {
                args.threads = val("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => file = Some(PathBuf::from(s)),
        }
    }
    args.file = file.ok_or("usage: train_step FILE [--steps N] [--warmup N] [--batch N] [--optimizer rmsprop|adam] [--threads N]")?;
    Ok(args)
}

struct Bench {
    model: ModelPlan,
    optimizer: OptimizerPlan,
    optimizer_name: String,
    batch: usize,
    steps: usize,
    warmup: usize,
    seed: u64,
}

impl WithBackend for Bench {
    type Output = Vec<f64>;

    fn run<B: TrainBackend>(self, device: B::Device) -> Vec<f64> {
        B::seed(&device, self.seed);
        let mut net: Net<B> = Net::init(&self.model, &device);
        let [h, w, c] = self.model.input;
        let classes = self.model.num_classes;
        let images = Tensor::<B, 4>::random(
            [self.batch, c, h, w],
            Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let labels: Vec<i64> = (0..self.batch).map(|i| (i * 7 % classes) as i64).collect();
        let targets =
            Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [self.batch]), &device);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);

        let step = |net: Net<B>,
                    opt: &mut dyn FnMut(Net<B>, GradientsParams) -> Net<B>|
         -> (Net<B>, f64, f64) {
            let t0 = Instant::now();
            let logits = net.forward(images.clone());
            let loss = loss_fn.forward(logits, targets.clone());
            let grads = loss.backward();
            let grads = GradientsParams::from_grads(grads, &net);
            let net = opt(net, grads);
            // Force the step to finish: read one value back (a device sync on lazy backends).
            let loss: f64 = loss.into_scalar().elem();
            (net, t0.elapsed().as_secs_f64(), loss)
        };

        let lr = self.optimizer.learning_rate;
        let mut times = Vec::with_capacity(self.steps);
        let mut run_all = |opt: &mut dyn FnMut(Net<B>, GradientsParams) -> Net<B>| {
            for i in 0..self.warmup + self.steps {
                let (n, dt, loss) = step(net.clone(), opt);
                net = n;
                if i >= self.warmup {
                    eprintln!(
                        "step {:>3}: {:.3} s  {:.2} img/s  loss {loss:.4}",
                        i - self.warmup,
                        dt,
                        self.batch as f64 / dt
                    );
                    times.push(dt);
                }
            }
        };
        match (self.optimizer_name.as_str(), &self.optimizer.algorithm) {
            (
                "rmsprop",
                Algorithm::Rmsprop {
                    rho,
                    momentum,
                    epsilon,
                    ..
                },
            ) => {
                let mut opt = RmsPropConfig::new()
                    .with_alpha(*rho as f32)
                    .with_momentum(*momentum as f32)
                    .with_epsilon(*epsilon as f32)
                    .init::<B, Net<B>>();
                run_all(&mut |n, g| opt.step(lr, n, g));
            }
            ("rmsprop", _) => {
                let mut opt = RmsPropConfig::new()
                    .with_alpha(0.9)
                    .with_momentum(0.0)
                    .with_epsilon(1e-7)
                    .init::<B, Net<B>>();
                run_all(&mut |n, g| opt.step(lr, n, g));
            }
            _ => {
                let mut opt = AdamConfig::new().with_epsilon(1e-7).init::<B, Net<B>>();
                run_all(&mut |n, g| opt.step(lr, n, g));
            }
        }
        // Keep `AutodiffModule` in scope for `valid()`-style use by callers.
        let _ = net.valid();
        times
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let loaded = match config::load(&args.file, &LoadOptions::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let plan = match plan::plan(&loaded) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let threads = backend::configure_cpu(args.threads);
    let optimizer_name = args
        .optimizer
        .clone()
        .unwrap_or_else(|| plan.optimizer.name().to_string());
    let batch = args.batch.unwrap_or(plan.train.batch_size);
    let bench = Bench {
        model: plan.model.clone(),
        optimizer: plan.optimizer.clone(),
        optimizer_name: optimizer_name.clone(),
        batch,
        steps: args.steps,
        warmup: args.warmup,
        seed: plan.seed,
    };
    let times = bench.run::<Autodiff<Flex>>(Default::default());
    let med = median(&times);
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "RESULT backend=flex model={} batch={} optimizer={} threads={} steps={} median_step_s={:.4} min_step_s={:.4} img_per_s={:.2} max_rss_mib={:.0}",
        plan.name,
        batch,
        optimizer_name,
        threads,
        times.len(),
        med,
        min,
        batch as f64 / med,
        backend::max_rss_mib().unwrap_or(f64::NAN),
    );
}
