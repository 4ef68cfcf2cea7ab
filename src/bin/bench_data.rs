//! Loader benchmark (`make bench-data`): the runner loader against Keras's
//! `ImageDataGenerator` and torchvision's 2-worker `DataLoader`, side by
//! side on the same folder of JPEGs, with the Keras CNN tutorial's
//! augmentation (rescale 1/255, brightness [0.1, 0.7], width shift 0.5,
//! rotation 90, both flips) into 32 x 3 x 128 x 128 float batches.
//!
//!     bench_data generate DIR [COUNT]        write COUNT 512x384 JPEGs in 10 classes (once)
//!     bench_data rust DIR                    time the runner loader
//!     bench_data compare DIR PYTHON BENCH    all three, then the ratios
//!
//! Throughput is one epoch, timed from the first batch on (worker start-up
//! and imports excluded for every contender), files already in the page cache.
//! `compare` runs runner and torchvision three times each, interleaved, and
//! reports their medians; Keras (about 16 s an epoch) runs once.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
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
        ["rust", dir] => rust(Path::new(dir)).map(|r| println!("{}", r.line())),
        ["compare", dir, python, bench] => compare(Path::new(dir), python, Path::new(bench)),
        _ => Err(
            "usage: bench_data generate DIR [COUNT] | rust DIR | compare DIR PYTHON BENCH_DIR"
                .into(),
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

/// Run a peer script; it prints `RESULT <images> <seconds>` last.
fn peer(who: &str, python: &str, script: &Path, dir: &Path) -> Result<Measured, String> {
    let out = Command::new(python)
        .arg(script)
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} failed:\n{}{}",
            script.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("RESULT "))
        .ok_or_else(|| format!("{} printed no RESULT line:\n{text}", script.display()))?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    let (images, seconds) = match parts.as_slice() {
        [_, n, s] => (
            n.parse().map_err(|_| line.to_string())?,
            s.parse().map_err(|_| line.to_string())?,
        ),
        _ => return Err(format!("bad RESULT line: {line}")),
    };
    Ok(Measured {
        who: who.to_string(),
        images,
        seconds,
    })
}

fn compare(dir: &Path, python: &str, bench: &Path) -> Result<(), String> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "folder: {} ({} JPEGs of {}x{}), batches of 32 x 3 x 128 x 128 floats",
        dir.display(),
        count_files(dir),
        SIZE.0,
        SIZE.1
    );
    println!(
        "load average before: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let script = |name: &str| -> PathBuf { bench.join(name) };
    // Three rounds of runner and torchvision, interleaved so that a noisy
    // neighbour hits both alike; Keras (16 s an epoch) once, mid-way.
    let (mut ours, mut torch) = (Vec::new(), Vec::new());
    let mut keras = None;
    for round in 0..ROUNDS {
        let r = rust(dir)?;
        println!("{}", r.line());
        ours.push(r.rate());
        let t = peer(
            "torchvision DataLoader (2 workers)",
            python,
            &script("data_torch.py"),
            dir,
        )?;
        println!("{}", t.line());
        torch.push(t.rate());
        if round == ROUNDS / 2 {
            let k = peer(
                "Keras ImageDataGenerator",
                python,
                &script("data_keras.py"),
                dir,
            )?;
            println!("{}", k.line());
            keras = Some(k.rate());
        }
    }
    let (ours, torch) = (median(&mut ours), median(&mut torch));
    let keras = keras.unwrap_or(f64::NAN);
    println!();
    println!("medians of {ROUNDS} runs: runner {ours:.0} img/s, torchvision {torch:.0} img/s; Keras {keras:.0} img/s (one run)");
    println!(
        "vs Keras ImageDataGenerator:    {:.2}x  (target >= 5x)",
        ours / keras
    );
    println!(
        "vs torchvision 2-worker loader: {:.2}x  (target >= 2x)",
        ours / torch
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average after: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// Rounds of runner and torchvision in `compare`.
const ROUNDS: usize = 3;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && runner::data::image_folder::is_image(e.path()))
        .count()
}
