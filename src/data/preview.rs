//! A picture grid of augmented training samples with their class names
//! (`runner data --preview out.png`), to check augmentation by eye.

use std::path::Path;

use image::{imageops::FilterType, DynamicImage, RgbImage};
use plotters::prelude::*;

use super::{split, DataError, Dataset};
use crate::draw;
use crate::rundir::RunDirError;

/// Side of one grid cell in pixels: small inputs are enlarged (nearest) so
/// the picture is readable.
fn cell_side(h: usize, w: usize) -> u32 {
    let side = h.max(w).max(1);
    let scale = 128usize.div_ceil(side).max(1);
    (side * scale).min(256) as u32
}

/// Write a grid of `count` training samples as drawn for epoch 0 (shuffled
/// and, when configured, augmented) to `path` as PNG, atomically.
pub fn write(dataset: &Dataset, seed: u64, count: usize, path: &Path) -> Result<(), DataError> {
    draw::register_fonts();
    let train = &dataset.train;
    let order = split::epoch_order(train.len(), seed, 0, true);
    let picks: Vec<usize> = order.into_iter().take(count.max(1)).collect();
    let [h, w, _] = train.input_shape();
    let cell = cell_side(h, w);
    let (ch, cw) = if h >= w {
        (cell, (cell as usize * w / h).max(1) as u32)
    } else {
        ((cell as usize * h / w).max(1) as u32, cell)
    };
    let cols = (picks.len() as f64).sqrt().ceil() as u32;
    let rows = (picks.len() as u32).div_ceil(cols);
    let (pad, label_h) = (8u32, 22u32);
    let (width, height) = (cols * (cw + pad) + pad, rows * (ch + label_h + pad) + pad);

    let mut cells = Vec::with_capacity(picks.len());
    for &i in &picks {
        let img = train.augmented_image(i, seed, 0)?;
        let rgb = DynamicImage::ImageRgb8(img.to_rgb8())
            .resize_exact(cw, ch, FilterType::Nearest)
            .to_rgb8();
        let name = dataset
            .classes
            .get(train.label(i))
            .cloned()
            .unwrap_or_default();
        cells.push((rgb.into_raw(), name));
    }

    let fail = |reason: String| DataError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut buf = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let font = ("sans-serif", 15).into_font().color(&BLACK);
        for (k, (pixels, name)) in cells.into_iter().enumerate() {
            let (c, r) = (k as u32 % cols, k as u32 / cols);
            let x = (pad + c * (cw + pad)) as i32;
            let y = (pad + r * (ch + label_h + pad)) as i32;
            let label = draw::clip(&name, (cw as usize / 8).max(4));
            root.draw(&Text::new(label, (x, y + 2), font.clone()))
                .map_err(|e| fail(e.to_string()))?;
            if let Some(el) =
                BitMapElement::<_>::with_owned_buffer((x, y + label_h as i32), (cw, ch), pixels)
            {
                root.draw(&el).map_err(|e| fail(e.to_string()))?;
            }
        }
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let img = RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| fail("picture buffer has the wrong size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| fail(e.to_string()))?;
    crate::rundir::write_atomic(path, &png).map_err(|e| match e {
        RunDirError::Write { source, .. } => fail(source.to_string()),
        other => fail(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_inputs_are_enlarged_large_ones_capped() {
        assert_eq!(cell_side(28, 28), 140);
        assert_eq!(cell_side(32, 32), 128);
        assert_eq!(cell_side(128, 128), 128);
        assert_eq!(cell_side(300, 300), 256);
    }
}
