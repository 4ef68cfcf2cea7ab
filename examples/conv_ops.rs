//! Where a training step's time goes: each convolution of a model timed as
//! the three operations burn's autodiff runs for it (forward `conv2d`; input
//! gradient `conv_transpose2d`; weight gradient `conv2d` over the
//! batch-swapped tensors, as burn-backend's default
//! `conv2d_weight_backward`), with achieved GFLOP/s.
//!
//! ```text
//! cargo run --release --example conv_ops -- [tutorial|fashion] [--reps 3] [--threads 2]
//!     [--batch N] [--runner-kernels | --runner-only] [--layer I]... [--size S]
//! ```
//!
//! `--runner-kernels` also times runner's own kernels (`--runner-only`:
//! those alone); `--layer I` picks convolution `I` (0 = the first; may be
//! repeated) and `--size S` sets the picked layers' input size (the
//! tutorial's last convolution as the pooling after it reads it: `--layer
//! 7 --size 12`).

use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Distribution, Tensor};

use burn::backend::{Autodiff, Flex};
use cpu_kernels::conv::{self, Kernel, Pass};

use runner::backend::{self, TrainBackend, WithBackend};

/// One convolution: in channels, out channels, kernel, padding, input size.
#[derive(Clone, Copy)]
struct Conv {
    cin: usize,
    cout: usize,
    k: usize,
    pad: usize,
    size: usize,
}

impl Conv {
    fn out(&self) -> usize {
        self.size + 2 * self.pad - self.k + 1
    }
    /// Multiply-adds x2 of the forward pass for a batch.
    fn flops(&self, batch: usize) -> f64 {
        2.0 * (batch * self.cin * self.cout * self.k * self.k * self.out() * self.out()) as f64
    }
}

const TUTORIAL: [Conv; 8] = [
    Conv {
        cin: 3,
        cout: 32,
        k: 3,
        pad: 1,
        size: 128,
    },
    Conv {
        cin: 32,
        cout: 32,
        k: 3,
        pad: 0,
        size: 128,
    },
    Conv {
        cin: 32,
        cout: 64,
        k: 3,
        pad: 1,
        size: 63,
    },
    Conv {
        cin: 64,
        cout: 64,
        k: 3,
        pad: 0,
        size: 63,
    },
    Conv {
        cin: 64,
        cout: 128,
        k: 3,
        pad: 1,
        size: 30,
    },
    Conv {
        cin: 128,
        cout: 128,
        k: 3,
        pad: 0,
        size: 30,
    },
    Conv {
        cin: 128,
        cout: 512,
        k: 5,
        pad: 2,
        size: 14,
    },
    Conv {
        cin: 512,
        cout: 512,
        k: 5,
        pad: 0,
        size: 14,
    },
];

const FASHION: [Conv; 2] = [
    Conv {
        cin: 1,
        cout: 32,
        k: 3,
        pad: 0,
        size: 28,
    },
    Conv {
        cin: 32,
        cout: 64,
        k: 3,
        pad: 0,
        size: 13,
    },
];

struct Job {
    convs: Vec<Conv>,
    host: bool,
    batch: usize,
    reps: usize,
    /// Skip burn's own kernels (only with `host`).
    runner_only: bool,
}

fn report_totals(label: &str, totals: [f64; 3], total_flops: f64, n: usize) {
    let sum: f64 = totals.iter().sum();
    println!(
        "{:<26} {:>9.1} {:>9.1} {:>9.1}   total {:.2} s for {:.1} GFLOP = {:.1} GFLOP/s; conv-only bound {:.2} img/s",
        label,
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3,
        sum,
        3.0 * total_flops / 1e9,
        3.0 * total_flops / sum / 1e9,
        n as f64 / sum,
    );
}

/// The fastest of `reps` runs after a warm-up: on a shared VM the times
/// wander by 10-20 % with the neighbours' load, and the fastest run is the
/// least disturbed one.
fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[allow(clippy::single_range_in_vec_init)] // burn slices take one range per dimension
fn sync<B: Backend, const D: usize>(t: Tensor<B, D>) {
    // Read one element back so lazy backends finish the work.
    let _ = t.flatten::<1>(0, D - 1).slice([0..1]).into_data();
}

impl WithBackend for Job {
    type Output = ();

    fn run<AB: TrainBackend>(self, device: AB::Device) {
        type B<AB> = <AB as AutodiffBackend>::InnerBackend;
        let n = self.batch;
        let mut totals = [0.0f64; 3];
        let mut total_flops = 0.0;
        println!(
            "{:<26} {:>9} {:>9} {:>9}   GFLOP/s fwd / dx / dw",
            "layer", "fwd ms", "dx ms", "dw ms"
        );
        for c in self.convs.iter().filter(|_| !self.runner_only) {
            let o = c.out();
            let x = Tensor::<B<AB>, 4>::random(
                [n, c.cin, c.size, c.size],
                Distribution::Default,
                &device,
            );
            let w = Tensor::<B<AB>, 4>::random(
                [c.cout, c.cin, c.k, c.k],
                Distribution::Default,
                &device,
            );
            let b = Tensor::<B<AB>, 1>::random([c.cout], Distribution::Default, &device);
            let g = Tensor::<B<AB>, 4>::random([n, c.cout, o, o], Distribution::Default, &device);
            let opts = ConvOptions::new([1, 1], [c.pad, c.pad], [1, 1], 1);
            let fwd = time(self.reps, || {
                sync(conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone()))
            });
            // Input gradient exactly as burn-backend's conv2d_x_backward.
            let pad_out = c.size + 2 * c.pad - c.k - (o - 1);
            let topts =
                ConvTransposeOptions::new([1, 1], [c.pad, c.pad], [pad_out, pad_out], [1, 1], 1);
            let dx = time(self.reps, || {
                sync(conv_transpose2d(g.clone(), w.clone(), None, topts.clone()))
            });
            // Weight gradient exactly as burn-backend's conv2d_weight_grad_no_groups.
            let dw = time(self.reps, || {
                let xs = x.clone().swap_dims(0, 1);
                let gs = g.clone().swap_dims(0, 1);
                let wg = conv2d(
                    xs,
                    gs,
                    None,
                    ConvOptions::new([1, 1], [c.pad, c.pad], [1, 1], 1),
                );
                sync(wg.swap_dims(0, 1))
            });
            let f = c.flops(n);
            total_flops += f;
            totals[0] += fwd;
            totals[1] += dx;
            totals[2] += dw;
            println!(
                "{:<26} {:>9.1} {:>9.1} {:>9.1}   {:>6.1} / {:>6.1} / {:>6.1}",
                format!(
                    "{}->{} {}x{} pad{} @{}",
                    c.cin, c.cout, c.k, c.k, c.pad, c.size
                ),
                fwd * 1e3,
                dx * 1e3,
                dw * 1e3,
                f / fwd / 1e9,
                f / dx / 1e9,
                f / dw / 1e9,
            );
        }
        if !self.runner_only {
            report_totals("all convs", totals, total_flops, n);
        }
        if self.host {
            println!(
                "runner kernels (crates/cpu-kernels: each kernel, then the dispatcher), same shapes:"
            );
            let mut totals = [0.0f64; 3];
            for c in &self.convs {
                let g = conv::Geometry {
                    batch: n,
                    cin: c.cin,
                    h: c.size,
                    w: c.size,
                    cout: c.cout,
                    kh: c.k,
                    kw: c.k,
                    stride: [1, 1],
                    padding: [c.pad, c.pad],
                    dilation: [1, 1],
                };
                let o = c.out();
                let x: Vec<f32> = (0..n * c.cin * c.size * c.size)
                    .map(|i| (i % 17) as f32 * 0.1)
                    .collect();
                let w: Vec<f32> = (0..c.cout * c.cin * c.k * c.k)
                    .map(|i| (i % 13) as f32 * 0.01)
                    .collect();
                let b = vec![0.1f32; c.cout];
                let gr: Vec<f32> = (0..n * c.cout * o * o)
                    .map(|i| (i % 7) as f32 * 0.1)
                    .collect();
                let ms = |f: &dyn Fn()| time(self.reps, f) * 1e3;
                // Each kernel on each pass it supports (NaN where it does
                // not), and whether the dispatcher picks it there.
                for k in Kernel::ALL {
                    if !k.supports(&g, Pass::Forward) {
                        continue;
                    }
                    let run = |p: Pass, f: &dyn Fn()| match k.supports(&g, p) {
                        true => ms(f),
                        false => f64::NAN,
                    };
                    let fwd = run(Pass::Forward, &|| {
                        drop(k.forward(&x, [g.h, g.w], &w, Some(&b), false, &g))
                    });
                    let dx = run(Pass::Input, &|| drop(k.backward_input(&w, &gr, &g)));
                    let dw = run(Pass::Weight, &|| drop(k.backward_weight(&x, &gr, &g)));
                    let used = |p| match conv::kernel_for(&g, p) == k {
                        true => "used",
                        false => "not used",
                    };
                    println!(
                        "  {:<13} {fwd:.1} / {dx:.1} / {dw:.1} ms ({} / {} / {})",
                        k.name(),
                        used(Pass::Forward),
                        used(Pass::Input),
                        used(Pass::Weight),
                    );
                }
                let fwd = time(self.reps, || {
                    drop(conv::forward(&x, &w, Some(&b), false, &g))
                });
                let dx = time(self.reps, || drop(conv::backward_input(&w, &gr, &g)));
                let dw = time(self.reps, || drop(conv::backward_weight(&x, &gr, &g)));
                let f = c.flops(n);
                totals[0] += fwd;
                totals[1] += dx;
                totals[2] += dw;
                println!(
                    "{:<26} {:>9.1} {:>9.1} {:>9.1}   {:>6.1} / {:>6.1} / {:>6.1}",
                    format!(
                        "{}->{} {}x{} pad{} @{}",
                        c.cin, c.cout, c.k, c.k, c.pad, c.size
                    ),
                    fwd * 1e3,
                    dx * 1e3,
                    dw * 1e3,
                    f / fwd / 1e9,
                    f / dx / 1e9,
                    f / dw / 1e9,
                );
            }
            report_totals("all convs (runner)", totals, total_flops, n);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut model = "tutorial".to_string();
    let mut reps = 3;
    let mut threads = 0;
    let mut batch = None;
    let mut host = false;
    let mut runner_only = false;
    let mut size = None;
    let mut layers: Vec<usize> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--threads" => threads = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--runner-kernels" => host = true,
            "--runner-only" => (host, runner_only) = (true, true),
            "--size" => size = args.next().and_then(|v| v.parse().ok()),
            "--layer" => match args.next().and_then(|v| v.parse().ok()) {
                Some(i) => layers.push(i),
                None => fail("--layer takes a layer number (0 = the first convolution)"),
            },
            "--batch" => batch = args.next().and_then(|v| v.parse().ok()),
            "tutorial" | "fashion" => model = a,
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let threads = backend::configure_cpu(threads);
    let (convs, default_batch) = if model == "tutorial" {
        (TUTORIAL.to_vec(), 32)
    } else {
        (FASHION.to_vec(), 128)
    };
    let convs: Vec<Conv> = match layers.is_empty() {
        true => convs,
        false => layers
            .iter()
            .map(|&i| {
                *convs
                    .get(i)
                    .unwrap_or_else(|| fail(&format!("no layer {i}")))
            })
            .collect(),
    };
    let convs: Vec<Conv> = convs
        .into_iter()
        .map(|c| Conv {
            size: size.unwrap_or(c.size),
            ..c
        })
        .collect();
    let batch = batch.unwrap_or(default_batch);
    println!("conv_ops backend=flex model={model} batch={batch} threads={threads} reps={reps}");
    let job = Job {
        convs,
        host,
        batch,
        reps,
        runner_only,
    };
    job.run::<Autodiff<Flex>>(Default::default());
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2);
}
