//! Small generated datasets on disk in each supported layout, for tests and
//! the loader benchmark. Pictures come from the synthetic generator, so a
//! file's class is visible in it.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;

use super::idx;
use super::synthetic::{Generator, SplitId};

/// A picture of class `class` (0..12), the `k`-th of its class.
pub fn picture(seed: u64, class: usize, k: usize, width: u32, height: u32, noise: f64) -> RgbImage {
    let classes = super::synthetic::CLASS_NAMES.len();
    let g = Generator {
        seed,
        classes,
        height: height as usize,
        width: width as usize,
        channels: 3,
        noise,
    };
    let data = g.render(SplitId::Train, class % classes + classes * k);
    // `render` returns exactly width * height * 3 bytes.
    RgbImage::from_raw(width, height, data).unwrap_or_else(|| RgbImage::new(width, height))
}

/// Save `img` by the extension of `path` (JPEG at `quality`).
pub fn save(img: &RgbImage, path: &Path, quality: u8) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "jpg" || ext == "jpeg" {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(img)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.flush().map_err(|e| format!("{}: {e}", path.display()))
    } else {
        img.save(path)
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// `root/<class>/img_<k>.<ext>` for each class; returns the files written.
pub fn image_folder(
    root: &Path,
    classes: &[&str],
    per_class: usize,
    size: (u32, u32),
    ext: &str,
) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for (c, name) in classes.iter().enumerate() {
        for k in 0..per_class {
            let path = root.join(name).join(format!("img_{k:05}.{ext}"));
            save(&picture(1, c, k, size.0, size.1, 0.05), &path, 90)?;
            files.push(path);
        }
    }
    Ok(files)
}

/// The Food-101 layout: `images/<class>/<id>.jpg`, `meta/train.json` and
/// `meta/test.json` listing `train` and `test` images per class.
pub fn food101(
    root: &Path,
    classes: &[&str],
    train: usize,
    test: usize,
    size: (u32, u32),
) -> Result<(), String> {
    let mut train_meta = serde_json::Map::new();
    let mut test_meta = serde_json::Map::new();
    for (c, name) in classes.iter().enumerate() {
        let mut tr = Vec::new();
        let mut te = Vec::new();
        for k in 0..train + test {
            let id = format!("{}", 1000 + k * 7);
            save(
                &picture(2, c, k, size.0, size.1, 0.05),
                &root.join("images").join(name).join(format!("{id}.jpg")),
                90,
            )?;
            let entry = serde_json::Value::String(format!("{name}/{id}"));
            if k < train {
                tr.push(entry);
            } else {
                te.push(entry);
            }
        }
        train_meta.insert(name.to_string(), tr.into());
        test_meta.insert(name.to_string(), te.into());
    }
    let meta = root.join("meta");
    std::fs::create_dir_all(&meta).map_err(|e| e.to_string())?;
    for (file, value) in [("train.json", train_meta), ("test.json", test_meta)] {
        let text = serde_json::to_string(&value).map_err(|e| e.to_string())?;
        std::fs::write(meta.join(file), text).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Four IDX files in Fashion-MNIST's names (gzipped when `gz`): image `i`
/// of a split is filled with the value `i % 256` and has label `i % classes`.
pub fn idx_files(
    dir: &Path,
    train: usize,
    test: usize,
    classes: usize,
    rows: usize,
    cols: usize,
    gz: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let suffix = if gz { ".gz" } else { "" };
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let pixels: Vec<u8> = (0..n)
            .flat_map(|i| std::iter::repeat_n((i % 256) as u8, rows * cols))
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % classes) as u8).collect();
        let files = [
            (
                format!("{prefix}-images-idx3-ubyte{suffix}"),
                idx::encode(&[n, rows, cols], &pixels),
            ),
            (
                format!("{prefix}-labels-idx1-ubyte{suffix}"),
                idx::encode(&[n], &labels),
            ),
        ];
        for (name, bytes) in files {
            let bytes = if gz {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&bytes).map_err(|e| e.to_string())?;
                enc.finish().map_err(|e| e.to_string())?
            } else {
                bytes
            };
            std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
