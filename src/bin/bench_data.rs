//! Benchmark helpers for `make bench` (bench/bench.py drives them):
//!
//!     bench_data generate DIR [COUNT]          write COUNT 512x384 JPEGs in 10 classes (once)
//!     bench_data rust DIR                      one epoch of the runner loader on DIR
//!     bench_data export EXPERIMENT PREFIX N    the experiment's first N training images
//!
//! `rust`: the Keras CNN tutorial's augmentation (rescale 1/255, brightness
//! [0.1, 0.7], width shift 0.5, rotation 90, both flips) into
//! 32 x 3 x 128 x 128 float batches, timed from the first batch on, files
//! already in the page cache; its threads are rayon's (`RAYON_NUM_THREADS`).
//! Prints `RESULT <images> <seconds> <threads>`.
//!
//! `export`: the images the experiment trains on, exactly as runner's
//! loader makes them (no shuffle, augmentation as configured), as
//! `PREFIX.x.npy` (float32, N x C x H x W) and `PREFIX.y.npy` (int64), so
//! that the peer frameworks train on the same inputs as runner.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use runner::config::{self, LoadOptions};
use runner::data::{fixtures, BatchOptions, Dataset};

const CLASSES: [&str; 10] = [
    "apple_pie",
    "baby_back_ribs",
    "baklava",
    "beef_carpaccio",
    "beef_tartare",
    "beet_salad",
    "beignets",
    "bibimbap",
    "bread_pudding",
    "breakfast_burrito",
];
const SIZE: (u32, u32) = (512, 384);
/// Pixel noise and JPEG quality: about 35 KB a file, the bytes per pixel of
/// Food-101 (4.65 GB for 101,000 photos of mostly 512x512).
const NOISE: f64 = 0.02;
const QUALITY: u8 = 85;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate", dir] => generate(Path::new(dir), 2000),
        ["generate", dir, n] => match n.parse() {
            Ok(n) => generate(Path::new(dir), n),
            Err(_) => Err(format!("not a count: {n}")),
        },
        ["rust", dir] => rust(Path::new(dir)).map(|r| {
            println!("{}", r.line());
            println!(
                "RESULT {} {:.4} {}",
                r.images,
                r.seconds,
                rayon::current_num_threads()
            );
        }),
        ["export", experiment, prefix, n] => match n.parse() {
            Ok(n) => export(Path::new(experiment), prefix, n),
            Err(_) => Err(format!("not a count: {n}")),
        },
        _ => Err(
            "usage: bench_data generate DIR [COUNT] | rust DIR | export EXPERIMENT PREFIX N".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_data: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Write the JPEGs unless they are all there already.
fn generate(dir: &Path, count: usize) -> Result<(), String> {
    let per_class = count.div_ceil(CLASSES.len());
    let done = dir.join(format!(".complete-{per_class}-{NOISE}-{QUALITY}"));
    if done.is_file() {
        println!(
            "{}: {} JPEGs already generated",
            dir.display(),
            per_class * CLASSES.len()
        );
        return Ok(());
    }
    println!(
        "generating {} JPEGs of {}x{} in {} ...",
        per_class * CLASSES.len(),
        SIZE.0,
        SIZE.1,
        dir.display()
    );
    let jobs: Vec<(usize, usize)> = (0..CLASSES.len())
        .flat_map(|c| (0..per_class).map(move |k| (c, k)))
        .collect();
    use rayon::prelude::*;
    jobs.par_iter().try_for_each(|&(c, k)| {
        let img = fixtures::picture(11, c, k, SIZE.0, SIZE.1, NOISE);
        fixtures::save(
            &img,
            &dir.join(CLASSES[c]).join(format!("{k:05}.jpg")),
            QUALITY,
        )
    })?;
    std::fs::write(&done, b"").map_err(|e| e.to_string())?;
    Ok(())
}

struct Measured {
    who: String,
    images: usize,
    seconds: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.images as f64 / self.seconds
    }
    fn line(&self) -> String {
        format!(
            "{:<44} {:>8.0} img/s   ({} images in {:.2} s)",
            self.who,
            self.rate(),
            self.images,
            self.seconds
        )
    }
}

/// The experiment the tutorial describes, on `dir`.
fn tutorial_experiment(dir: &Path) -> String {
    format!(
        r#"[experiment]
name = "bench-data"
seed = 42

[data]
source = "image_folder"
path = "{}"

[augment]
rescale = "1/255"
brightness_range = [0.1, 0.7]
width_shift_range = 0.5
rotation_range = 90
horizontal_flip = true
vertical_flip = true

[model]
input_shape = [128, 128, 3]
layers = [ {{ type = "flatten" }}, {{ type = "dense", units = 10, activation = "softmax" }} ]

[callbacks.checkpoint]
monitor = "loss"
"#,
        dir.display()
    )
}

fn rust(dir: &Path) -> Result<Measured, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = tmp.path().join("bench.toml");
    std::fs::write(&file, tutorial_experiment(dir)).map_err(|e| e.to_string())?;
    let loaded = config::load(&file, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let plan = runner::plan::plan(&loaded).map_err(|e| e.to_string())?;
    let data = Dataset::open(&plan).map_err(|e| e.to_string())?;
    // Page cache, as for the others (they run after a first pass too).
    for i in 0..data.train.len() {
        if let Some(p) = data.train.path(i) {
            let _ = std::fs::read(p);
        }
    }
    let opts = BatchOptions {
        batch_size: 32,
        epoch: 0,
        seed: plan.seed,
        shuffle: true,
        augment: true,
        max_batches: None,
    };
    let mut start = None;
    let mut images = 0;
    let mut checksum = 0.0f64;
    for batch in data.train.batches(&opts) {
        let b = batch.map_err(|e| e.to_string())?;
        if b.shape[1..] != [3, 128, 128] {
            return Err(format!("unexpected batch shape {:?}", b.shape));
        }
        checksum += b.images[0] as f64;
        match start {
            None => start = Some(Instant::now()),
            Some(_) => images += b.shape[0],
        }
    }
    let seconds = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    std::hint::black_box(checksum);
    Ok(Measured {
        who: format!(
            "runner loader (rayon, {} threads)",
            rayon::current_num_threads()
        ),
        images,
        seconds,
    })
}

/// Write the first `n` training images of `experiment` (as runner's
/// loader makes them, in order) and their labels as `.npy` files.
fn export(experiment: &Path, prefix: &str, n: usize) -> Result<(), String> {
    let loaded = config::load(experiment, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let plan = runner::plan::plan(&loaded).map_err(|e| e.to_string())?;
    let data = Dataset::open(&plan).map_err(|e| e.to_string())?;
    if n > data.train.len() {
        return Err(format!(
            "{} has {} training images, fewer than {n}",
            experiment.display(),
            data.train.len()
        ));
    }
    let opts = BatchOptions {
        batch_size: n,
        epoch: 0,
        seed: plan.seed,
        shuffle: false,
        augment: true,
        max_batches: Some(1),
    };
    let batch = data
        .train
        .batches(&opts)
        .next()
        .ok_or("no batch")?
        .map_err(|e| e.to_string())?;
    let x: Vec<u8> = batch.images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let y: Vec<u8> = batch.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&format!("{prefix}.x.npy"), "<f4", &batch.shape, &x)?;
    write_npy(&format!("{prefix}.y.npy"), "<i8", &[batch.shape[0]], &y)?;
    println!(
        "{prefix}.x.npy: {:?} float32, labels in {prefix}.y.npy",
        batch.shape
    );
    Ok(())
}

/// NumPy's `.npy` format, version 1.0: magic, header length, a Python
/// dict literal padded to 64 bytes, the raw little-endian data.
fn write_npy(path: &str, descr: &str, shape: &[usize], data: &[u8]) -> Result<(), String> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let len = u16::try_from(header.len()).map_err(|_| "npy header too long")?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).map_err(|e| format!("{path}: {e}"))
}
