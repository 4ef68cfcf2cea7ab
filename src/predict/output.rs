//! What `runner predict` found, as a table on the terminal, as CSV and as a
//! picture grid in the style of the report's prediction grid.

use std::path::PathBuf;

use image::RgbImage;
use plotters::style::RGBColor;

use super::error::PredictError;
use crate::data::{image_folder, Split};
use crate::report::plots::{self, Tile};

/// Most images shown by `--grid` (the first ones, in input order).
pub const GRID_MAX: usize = 100;

/// Captions of the grid: the class and its probability, not right or wrong.
const INK: RGBColor = RGBColor(20, 20, 20);

/// One image's class probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The image's position in the list of files predicted on.
    pub index: usize,
    pub path: PathBuf,
    /// One per class, in class order, summing to 1.
    pub probabilities: Vec<f32>,
    /// One per class: the network's outputs before the softmax.
    pub logits: Vec<f32>,
}

impl Row {
    /// The `k` most probable classes and their probabilities, most
    /// probable first; ties in class order (as an argmax takes the first).
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        let p = &self.probabilities;
        let key = |c: usize| {
            if p[c].is_nan() {
                f32::NEG_INFINITY
            } else {
                p[c]
            }
        };
        let mut order: Vec<usize> = (0..p.len()).collect();
        // A stable sort keeps tied classes in class order.
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
        order.into_iter().take(k).map(|c| (c, p[c])).collect()
    }

    /// The most probable class and its probability.
    pub fn predicted(&self) -> Option<(usize, f32)> {
        self.top(1).first().copied()
    }
}

/// The predictions on every readable image, and the images left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The run's class names, in label order.
    pub classes: Vec<String>,
    /// In input order.
    pub rows: Vec<Row>,
    /// Unreadable images left out under `on_bad_image = "skip"`, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files in the folders given that are not images by their extension.
    pub not_images: Vec<PathBuf>,
}

/// How many left-out files [`Predictions::render_not_images`] names.
const NOT_IMAGES_NAMED: usize = 3;

impl Predictions {
    fn name(&self, class: usize) -> &str {
        self.classes.get(class).map_or("?", String::as_str)
    }

    /// `path,predicted,probability,top1_class,top1_probability,...` up to
    /// `topk_class,topk_probability`, then with `logits` one
    /// `logit_<class>` column per class in class order: one row per image.
    /// Numbers are written exactly (the shortest text that reads back as
    /// the same f32).
    pub fn csv(&self, k: usize, logits: bool) -> String {
        let mut header = vec![
            "path".to_string(),
            "predicted".to_string(),
            "probability".to_string(),
        ];
        for i in 1..=k {
            header.push(format!("top{i}_class"));
            header.push(format!("top{i}_probability"));
        }
        if logits {
            header.extend(self.classes.iter().map(|c| format!("logit_{c}")));
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(&header);
        for row in &self.rows {
            let top = row.top(k);
            let (class, p) = top.first().copied().unwrap_or((0, f32::NAN));
            let mut record = vec![
                row.path.display().to_string(),
                self.name(class).to_string(),
                p.to_string(),
            ];
            for (c, p) in top {
                record.push(self.name(c).to_string());
                record.push(p.to_string());
            }
            if logits {
                record.extend(row.logits.iter().map(f32::to_string));
            }
            let _ = w.write_record(&record);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// The table: path, predicted class, its probability, and the `k` most
    /// probable classes with theirs.
    pub fn render_table(&self, k: usize) -> String {
        let paths: Vec<String> = self
            .rows
            .iter()
            .map(|r| r.path.display().to_string())
            .collect();
        let path_w = paths
            .iter()
            .map(|p| p.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        let class_w = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0);
        let predicted_w = class_w.max(9);
        let mut out = format!(
            "{:<path_w$}  {:<predicted_w$}  {:>11}  top {k}\n",
            "path", "predicted", "probability"
        );
        for (row, path) in self.rows.iter().zip(&paths) {
            let top = row.top(k);
            let (class, p) = top.first().copied().unwrap_or((0, f32::NAN));
            let others: Vec<String> = top
                .iter()
                .map(|&(c, p)| format!("{:<class_w$} {p:.4}", self.name(c)))
                .collect();
            let line = format!(
                "{path:<path_w$}  {:<predicted_w$}  {p:>11.4}  {}",
                self.name(class),
                others.join("  ")
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The images left out, one per line under a heading; empty when none.
    pub fn render_skipped(&self) -> String {
        if self.skipped.is_empty() {
            return String::new();
        }
        let mut out = format!("Skipped {} unreadable image(s):\n", self.skipped.len());
        for (path, reason) in &self.skipped {
            out.push_str(&format!("  {}: {reason}\n", path.display()));
        }
        out
    }

    /// One line on the folders' files that are not images, naming the
    /// first few; empty when none. A `.tiff` left out unannounced would
    /// look like a prediction lost.
    pub fn render_not_images(&self) -> String {
        let n = self.not_images.len();
        if n == 0 {
            return String::new();
        }
        let mut named: Vec<String> = self
            .not_images
            .iter()
            .take(NOT_IMAGES_NAMED)
            .map(|p| p.display().to_string())
            .collect();
        if n > NOT_IMAGES_NAMED {
            named.push(format!("and {} more", n - NOT_IMAGES_NAMED));
        }
        format!(
            "Left out {n} file(s) that are not {} images: {}\n",
            image_folder::extensions_listed(),
            named.join(", ")
        )
    }

    /// The first [`GRID_MAX`] images at model input size (as the model saw
    /// them), each under its predicted class and probability, five to a row.
    pub fn grid(&self, split: &Split) -> Result<RgbImage, PredictError> {
        let mut tiles = Vec::new();
        for row in self.rows.iter().take(GRID_MAX) {
            let (class, p) = row.predicted().unwrap_or((0, f32::NAN));
            tiles.push(Tile {
                image: split.image(row.index)?,
                lines: vec![self.name(class).to_string(), format!("{:.1}%", p * 100.0)],
                color: INK,
            });
        }
        let cols = tiles.len().clamp(1, 5);
        Ok(plots::image_grid(
            "Predicted class (probability)",
            &tiles,
            cols,
            128,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predictions() -> Predictions {
        Predictions {
            classes: vec!["cat".into(), "dog".into(), "hamster".into()],
            rows: vec![
                Row {
                    index: 0,
                    path: "pets/a.png".into(),
                    probabilities: vec![0.2, 0.7, 0.1],
                    logits: vec![0.5, 1.75, -0.25],
                },
                Row {
                    index: 1,
                    path: "pets/some, file.jpg".into(),
                    probabilities: vec![0.25, 0.25, 0.5],
                    logits: vec![-1.0, -1.0, -0.3068528],
                },
            ],
            skipped: vec![("pets/bad.jpg".into(), "not an image".into())],
            not_images: Vec::new(),
        }
    }

    #[test]
    fn top_k_is_most_probable_first_with_ties_in_class_order() {
        let p = predictions();
        assert_eq!(p.rows[0].top(3), vec![(1, 0.7), (0, 0.2), (2, 0.1)]);
        assert_eq!(p.rows[1].top(2), vec![(2, 0.5), (0, 0.25)]);
        assert_eq!(p.rows[1].predicted(), Some((2, 0.5)));
        let nan = Row {
            index: 0,
            path: "x".into(),
            probabilities: vec![f32::NAN, 0.1],
            logits: vec![f32::NAN, 0.0],
        };
        assert_eq!(nan.top(1), vec![(1, 0.1)]);
    }

    #[test]
    fn csv_has_the_top_k_columns_and_quotes_paths() {
        let csv = predictions().csv(2, false);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            vec![
                "path,predicted,probability,top1_class,top1_probability,top2_class,top2_probability",
                "pets/a.png,dog,0.7,dog,0.7,cat,0.2",
                "\"pets/some, file.jpg\",hamster,0.5,hamster,0.5,cat,0.25",
            ]
        );
        let csv = predictions().csv(1, true);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            vec![
                "path,predicted,probability,top1_class,top1_probability,logit_cat,logit_dog,logit_hamster",
                "pets/a.png,dog,0.7,dog,0.7,0.5,1.75,-0.25",
                "\"pets/some, file.jpg\",hamster,0.5,hamster,0.5,-1,-1,-0.3068528",
            ]
        );
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let p = predictions();
        assert_eq!(
            p.render_table(2),
            "path                 predicted  probability  top 2\n\
             pets/a.png           dog             0.7000  dog     0.7000  cat     0.2000\n\
             pets/some, file.jpg  hamster         0.5000  hamster 0.5000  cat     0.2500\n"
        );
        assert_eq!(
            p.render_skipped(),
            "Skipped 1 unreadable image(s):\n  pets/bad.jpg: not an image\n"
        );
        assert_eq!(p.render_not_images(), "");
    }

    #[test]
    fn files_that_are_not_images_are_counted_and_the_first_named() {
        let mut p = predictions();
        p.not_images = vec!["pets/notes.txt".into()];
        assert_eq!(
            p.render_not_images(),
            "Left out 1 file(s) that are not .jpg, .jpeg, .png, .bmp or .webp images: pets/notes.txt\n"
        );
        p.not_images = ["a.tiff", "b.tiff", "c.txt", "d.gif", "e.heic"]
            .map(PathBuf::from)
            .to_vec();
        assert_eq!(
            p.render_not_images(),
            "Left out 5 file(s) that are not .jpg, .jpeg, .png, .bmp or .webp images: \
             a.tiff, b.tiff, c.txt, and 2 more\n"
        );
    }
}
