//! Pictures, drawn with plotters into memory and encoded as PNG: training
//! curves (what livelossplot showed), a confusion-matrix heat map, and grids
//! of labelled images (test predictions, augmentation previews).

use image::{imageops, DynamicImage, ImageEncoder, RgbImage};
use plotters::prelude::*;
use plotters::style::RGBColor;
use thiserror::Error;

use crate::draw::{clip, register_fonts};
use crate::logging::csv::EpochRow;

#[derive(Debug, Error)]
pub enum PlotError {
    #[error("cannot draw {what}: {message}")]
    Draw { what: &'static str, message: String },
}

fn draw_err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> PlotError {
    move |e| PlotError::Draw {
        what,
        message: e.to_string(),
    }
}

pub const GREEN: RGBColor = RGBColor(0, 140, 60);
pub const RED: RGBColor = RGBColor(200, 30, 30);

/// Encode an RGB buffer as PNG.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, PlotError> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(draw_err("png"))?;
    Ok(out)
}

/// Loss and accuracy for training and validation, one panel each.
pub fn curves(history: &[EpochRow]) -> Result<RgbImage, PlotError> {
    let epochs: Vec<f64> = history.iter().map(|r| (r.epoch + 1) as f64).collect();
    let series = |f: fn(&EpochRow) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .zip(&epochs)
            .filter_map(|(r, e)| f(r).filter(|v| v.is_finite()).map(|v| (*e, v)))
            .collect()
    };
    let panel = |title: &'static str, train: Vec<(f64, f64)>, val: Vec<(f64, f64)>| LinePanel {
        title,
        lines: [("training", TAB10[0], train), ("validation", TAB10[1], val)]
            .into_iter()
            .filter(|(_, _, points)| !points.is_empty())
            .map(|(label, color, points)| Line {
                label: label.to_string(),
                color,
                points,
            })
            .collect(),
    };
    line_panels(
        "curves",
        &[
            panel(
                "Loss",
                series(|r| Some(r.train_loss)),
                series(|r| r.val_loss),
            ),
            panel(
                "Accuracy",
                series(|r| Some(r.train_accuracy)),
                series(|r| r.val_accuracy),
            ),
        ],
    )
}

/// The colours of matplotlib's `tab10`, for one line per run.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One run's validation curves, by epoch from 0.
pub struct RunCurves<'a> {
    pub label: &'a str,
    pub loss: &'a [f64],
    pub accuracy: &'a [f64],
}

/// Validation loss and accuracy of several runs, one panel each, a line per
/// run in `tab10`'s colours (at most ten runs, so no two share one), the
/// legend naming them.
pub fn compared_curves(runs: &[RunCurves]) -> Result<RgbImage, PlotError> {
    let panel = |title: &'static str, pick: fn(&RunCurves) -> Vec<(f64, f64)>| LinePanel {
        title,
        lines: runs
            .iter()
            .zip(TAB10.iter().cycle())
            .map(|(run, color)| Line {
                label: clip(run.label, 40),
                color: *color,
                points: pick(run),
            })
            .collect(),
    };
    line_panels(
        "compared curves",
        &[
            panel("Validation loss", |r| finite_points(r.loss)),
            panel("Validation accuracy", |r| finite_points(r.accuracy)),
        ],
    )
}

/// The finite values of a series by epoch, counted from 1.
fn finite_points(values: &[f64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(e, v)| ((e + 1) as f64, *v))
        .collect()
}

/// A line of a [`LinePanel`]: its legend label, colour and points.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A panel of lines over epochs.
struct LinePanel {
    title: &'static str,
    lines: Vec<Line>,
}

/// Panels side by side, each a line (with a dot per epoch) per series over
/// whole epochs, and a legend.
fn line_panels(what: &'static str, panels: &[LinePanel]) -> Result<RgbImage, PlotError> {
    register_fonts();
    let (w, h) = (600 * panels.len() as u32, 480u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err(what))?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, panel) in areas.iter().zip(panels) {
            let all = || panel.lines.iter().flat_map(|l| &l.points);
            let x_max = all().map(|p| p.0).fold(1.0, f64::max).max(2.0);
            let (mut lo, mut hi) =
                all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
            if !lo.is_finite() || !hi.is_finite() || lo > hi {
                (lo, hi) = (0.0, 1.0);
            }
            let pad = ((hi - lo) * 0.08).max(1e-3);
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 24))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(1.0..x_max, (lo - pad)..(hi + pad))
                .map_err(draw_err(what))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                // Epochs are whole numbers: no "2.0" ticks, no half epochs.
                .x_label_formatter(&|x| {
                    if x.fract() == 0.0 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                })
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(draw_err(what))?;
            for line in &panel.lines {
                let color = line.color;
                chart
                    .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(2)))
                    .map_err(draw_err(what))?
                    .label(line.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|p| Circle::new(*p, 3, color.filled())),
                    )
                    .map_err(draw_err(what))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(draw_err(what))?;
        }
        root.present().map_err(draw_err(what))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or(PlotError::Draw {
        what,
        message: "buffer size".into(),
    })
}

/// A heat map of `confusion[true][predicted]` with the counts written in.
pub fn confusion(names: &[String], confusion: &[Vec<usize>]) -> Result<RgbImage, PlotError> {
    let cells: Vec<Vec<Cell>> = confusion
        .iter()
        .map(|r| r.iter().map(|v| Cell::from(Some(*v as f64))).collect())
        .collect();
    heatmap(
        "Confusion matrix (rows: true, columns: predicted)",
        names,
        names,
        &cells,
        |v| format!("{v:.0}"),
    )
}

/// Grey of what is set apart from the rest: a pruned trial's hollow marker
/// in a scatter panel, a marked heat-map cell.
pub const MUTED: RGBColor = RGBColor(150, 150, 150);
/// Background of a marked heat-map cell.
pub const MUTED_FILL: RGBColor = RGBColor(225, 225, 225);

/// One cell of a [`heatmap`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    pub value: Option<f64>,
    /// Sets the cell apart (e.g. "pruned@3" for a trial pruned at its
    /// rung of 3 epochs): see [`heatmap`].
    pub mark: Option<String>,
}

impl From<Option<f64>> for Cell {
    fn from(value: Option<f64>) -> Self {
        Cell { value, mark: None }
    }
}

/// A grid of cells shaded by value (darker is larger) with the value
/// written in; empty cells stay white. A marked cell is light grey with
/// a grey border instead, its value and under it its mark (e.g.
/// "0.4123" over "pruned@3") in grey; its value is left out of the
/// shading's range. Row labels on the left, column labels written
/// downwards under the grid.
pub fn heatmap(
    title: &str,
    rows: &[String],
    cols: &[String],
    cells: &[Vec<Cell>],
    fmt: impl Fn(f64) -> String,
) -> Result<RgbImage, PlotError> {
    register_fonts();
    let k = rows.len().max(cols.len()).max(1);
    let cell = (640 / k).clamp(28, 90) as i32;
    let longest = |names: &[String]| {
        names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(4)
            .min(24) as i32
    };
    let label_w = longest(rows) * 8 + 20;
    let label_h = longest(cols) * 8 + 20;
    let title_w = title.chars().count() as i32 * 9 + 20;
    let w = (label_w + cell * cols.len().max(1) as i32 + 30).max(title_w) as u32;
    let h = (80 + label_h + cell * rows.len().max(1) as i32) as u32;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err("heat map"))?;
        root.draw(&Text::new(title.to_string(), (10, 10), ("sans-serif", 18)))
            .map_err(draw_err("heat map"))?;
        let x0 = label_w;
        let y0 = 50;
        let values: Vec<f64> = cells
            .iter()
            .flatten()
            .filter(|c| c.mark.is_none())
            .filter_map(|c| c.value)
            .filter(|v| v.is_finite())
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        // Counts shade from zero; other values over their own range.
        let base = if lo >= 0.0 && (hi - lo) >= hi * 0.5 {
            0.0
        } else {
            lo
        };
        let span = if base == 0.0 { hi.max(1e-12) } else { span };
        for (r, row) in cells.iter().enumerate() {
            for (c, item) in row.iter().enumerate() {
                let x = x0 + c as i32 * cell;
                let y = y0 + r as i32 * cell;
                let v = item.value;
                let (color, ink) = match v {
                    _ if item.mark.is_some() => (MUTED_FILL, RGBColor(90, 90, 90)),
                    Some(v) if v.is_finite() => {
                        let f = ((v - base) / span).clamp(0.0, 1.0);
                        let shade = (255.0 * (1.0 - 0.85 * f)) as u8;
                        (
                            RGBColor(shade, shade, 255),
                            if f > 0.55 { WHITE } else { BLACK },
                        )
                    }
                    _ => (WHITE, BLACK),
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    color.filled(),
                ))
                .map_err(draw_err("heat map"))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(200, 200, 200),
                ))
                .map_err(draw_err("heat map"))?;
                let size = (cell / 4).clamp(10, 18);
                let text = v.map(&fmt).unwrap_or_else(|| "-".into());
                let style = TextStyle::from(("sans-serif", size).into_font()).color(&ink);
                root.draw(&Text::new(text, (x + 4, y + cell / 3), style))
                    .map_err(draw_err("heat map"))?;
                if let Some(mark) = &item.mark {
                    root.draw(&Rectangle::new(
                        [(x + 1, y + 1), (x + cell - 1, y + cell - 1)],
                        MUTED.stroke_width(2),
                    ))
                    .map_err(draw_err("heat map"))?;
                    let small = TextStyle::from(("sans-serif", (size * 4 / 5).max(9)).into_font())
                        .color(&ink);
                    root.draw(&Text::new(
                        mark.clone(),
                        (x + 4, y + cell / 3 + size + 2),
                        small,
                    ))
                    .map_err(draw_err("heat map"))?;
                }
            }
        }
        for (r, name) in rows.iter().enumerate() {
            let name = clip(name, 24);
            root.draw(&Text::new(
                name,
                (6, y0 + r as i32 * cell + cell / 3),
                ("sans-serif", 13),
            ))
            .map_err(draw_err("heat map"))?;
        }
        let yl = y0 + cell * rows.len() as i32 + 8;
        for (c, name) in cols.iter().enumerate() {
            let name = clip(name, 24);
            let style =
                TextStyle::from(("sans-serif", 13).into_font()).transform(FontTransform::Rotate90);
            root.draw(&Text::new(
                name,
                (x0 + c as i32 * cell + cell / 2 + 6, yl),
                style,
            ))
            .map_err(draw_err("heat map"))?;
        }
        root.present().map_err(draw_err("heat map"))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or(PlotError::Draw {
        what: "heat map",
        message: "buffer size".into(),
    })
}

/// Blue of a finished trial's marker in a scatter panel.
pub const FINISHED: RGBColor = RGBColor(31, 119, 180);

/// One point of a scatter panel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScatterPoint {
    pub x: f64,
    pub y: f64,
    /// A pruned trial: its `y` comes from the epochs before its rung.
    pub pruned: bool,
}

/// One panel of [`scatter_panels`]: `y` against one parameter.
pub struct Panel {
    /// The parameter, under the x axis.
    pub name: String,
    pub points: Vec<ScatterPoint>,
    /// For a parameter whose values are not all numbers (an optimizer's
    /// type, say): the values in axis order, and each point's `x` is the
    /// index of its value here.
    pub categories: Option<Vec<String>>,
}

/// `y` against each of several parameters, one panel per parameter. A
/// number's axis is linear, or logarithmic where it spans more than a
/// factor of 10, and labelled without a fraction where every value is a
/// whole number; other values have a column each, in order. Points
/// are filled blue discs; pruned ones hollow grey rings, explained by a
/// legend strip under the panels ("finished", "pruned (best before its
/// rung)") that is there only when some point is pruned.
pub fn scatter_panels(title: &str, y_label: &str, panels: &[Panel]) -> Result<RgbImage, PlotError> {
    register_fonts();
    let n = panels.len().max(1);
    let any_pruned = panels.iter().any(|p| p.points.iter().any(|p| p.pruned));
    let plot_h = 420u32;
    let legend_h = if any_pruned { 30 } else { 0 };
    let (w, h) = (480 * n as u32, plot_h + legend_h);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err("scatter"))?;
        let (root, legend) = root.split_vertically(plot_h);
        if any_pruned {
            scatter_legend(&legend)?;
        }
        let root = root
            .titled(title, ("sans-serif", 20))
            .map_err(draw_err("scatter"))?;
        let areas = root.split_evenly((1, n));
        for (area, panel) in areas.iter().zip(panels) {
            let (name, points) = (&panel.name, &panel.points);
            let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
            let ys: Vec<f64> = points
                .iter()
                .map(|p| p.y)
                .filter(|v| v.is_finite())
                .collect();
            let (x_lo, x_hi) = xs
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let (y_lo, y_hi) = ys
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let (y_lo, y_hi) = if y_lo <= y_hi {
                (y_lo, y_hi)
            } else {
                (0.0, 1.0)
            };
            let ypad = ((y_hi - y_lo) * 0.1).max(1e-3);
            let log = x_lo > 0.0 && x_hi / x_lo > 10.0;
            let y = (y_lo - ypad)..(y_hi + ypad);
            if let Some(categories) = &panel.categories {
                category_panel(area, categories, y, name, y_label, points)?;
            } else if log {
                scatter_panel(
                    area,
                    (x_lo * 0.8..x_hi * 1.25).log_scale(),
                    y,
                    name,
                    y_label,
                    points,
                )?;
            } else {
                let xpad = ((x_hi - x_lo) * 0.1).max(1e-3);
                scatter_panel(area, (x_lo - xpad)..(x_hi + xpad), y, name, y_label, points)?;
            }
        }
        root.present().map_err(draw_err("scatter"))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or(PlotError::Draw {
        what: "scatter",
        message: "buffer size".into(),
    })
}

/// The marker of a scatter point, in the parts to draw in order: a filled
/// blue disc, or for a pruned point a grey ring (a grey disc, then a white
/// one inside it: cleaner than plotters' thick circle outline, and it hides
/// the mesh under the hole).
fn scatter_marker<C: Clone>(at: C, pruned: bool) -> Vec<Circle<C, i32>> {
    if pruned {
        vec![
            Circle::new(at.clone(), 6, MUTED.filled()),
            Circle::new(at, 4, WHITE.filled()),
        ]
    } else {
        vec![Circle::new(at, 5, FINISHED.filled())]
    }
}

/// The legend strip under the scatter panels: each marker with its meaning.
fn scatter_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), PlotError> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let style =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = 24;
    for (pruned, text) in [
        (false, "finished"),
        (true, "pruned (best of the epochs it trained)"),
    ] {
        for part in scatter_marker((x, 14), pruned) {
            area.draw(&part).map_err(draw_err("scatter"))?;
        }
        area.draw(&Text::new(text, (x + 12, 14), style.clone()))
            .map_err(draw_err("scatter"))?;
        x += 100;
    }
    Ok(())
}

/// One scatter panel: `points` over an x axis that is linear or logarithmic.
fn scatter_panel<DB, X>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x: X,
    y: std::ops::Range<f64>,
    name: &str,
    y_label: &str,
    points: &[ScatterPoint],
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)
        .map_err(draw_err("scatter"))?;
    // Whole numbers (units, filters, a batch size) as such, not "128.0";
    // fewer labels than plotters' ten, which overlap at three digits.
    let whole = points.iter().all(|p| p.x.fract() == 0.0);
    let format_x = |x: &f64| format!("{x:.0}");
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(name)
        .y_desc(y_label)
        .label_style(("sans-serif", 13))
        .x_labels(6);
    if whole {
        mesh.x_label_formatter(&format_x);
    }
    mesh.draw().map_err(draw_err("scatter"))?;
    draw_points(&mut chart, points, |p| p.x)
}

/// The points over a panel's chart: finished trials over pruned ones where
/// they overlap, each at `x(point)`.
fn draw_points<DB, X>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    points: &[ScatterPoint],
    x: impl Fn(&ScatterPoint) -> X::ValueType,
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: plotters::coord::ranged1d::Ranged,
    X::ValueType: Clone,
{
    for pruned in [true, false] {
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.pruned == pruned)
                    .flat_map(|p| scatter_marker((x(p), p.y), p.pruned)),
            )
            .map_err(draw_err("scatter"))?;
    }
    Ok(())
}

/// One scatter panel whose x axis has a column per category; a point's
/// `x` is its category's index.
fn category_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    categories: &[String],
    y: std::ops::Range<f64>,
    name: &str,
    y_label: &str,
    points: &[ScatterPoint],
) -> Result<(), PlotError> {
    let last = categories.len().max(1) as i32 - 1;
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((0..last).into_segmented(), y)
        .map_err(draw_err("scatter"))?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| categories.get(i))
            .cloned()
            .unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(name)
        .y_desc(y_label)
        .label_style(("sans-serif", 13))
        .x_labels(categories.len())
        .x_label_formatter(&label)
        .draw()
        .map_err(draw_err("scatter"))?;
    draw_points(&mut chart, points, |p| SegmentValue::CenterOf(p.x as i32))
}

/// One tile of an image grid: a picture with up to two caption lines.
pub struct Tile {
    pub image: DynamicImage,
    pub lines: Vec<String>,
    pub color: RGBColor,
}

/// Images in a grid of `cols` columns, each scaled to `cell` pixels wide
/// with its caption above it (the tutorial's Fig 13 and Fig 15).
pub fn image_grid(
    title: &str,
    tiles: &[Tile],
    cols: usize,
    cell: u32,
) -> Result<RgbImage, PlotError> {
    register_fonts();
    let cols = cols.max(1);
    let rows = tiles.len().div_ceil(cols).max(1);
    let caption_h = 44u32;
    let title_h = 36u32;
    let (w, h) = (
        cols as u32 * (cell + 10) + 10,
        title_h + rows as u32 * (cell + caption_h + 10),
    );
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let origin = |i: usize| {
        let (r, c) = (i / cols, i % cols);
        (
            10 + c as u32 * (cell + 10),
            title_h + r as u32 * (cell + caption_h + 10),
        )
    };
    for (i, tile) in tiles.iter().enumerate() {
        let (x, y) = origin(i);
        let scaled = tile
            .image
            .resize_exact(cell, cell, imageops::FilterType::Nearest)
            .to_rgb8();
        imageops::overlay(&mut canvas, &scaled, x as i64, (y + caption_h) as i64);
    }
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.draw(&Text::new(title.to_string(), (10, 8), ("sans-serif", 20)))
            .map_err(draw_err("image grid"))?;
        for (i, tile) in tiles.iter().enumerate() {
            let (x, y) = origin(i);
            for (l, line) in tile.lines.iter().take(2).enumerate() {
                let text = clip(line, (cell / 7).max(8) as usize);
                let style = TextStyle::from(("sans-serif", 14).into_font()).color(&tile.color);
                root.draw(&Text::new(
                    text,
                    (x as i32, (y + 4 + l as u32 * 18) as i32),
                    style,
                ))
                .map_err(draw_err("image grid"))?;
            }
        }
        root.present().map_err(draw_err("image grid"))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or(PlotError::Draw {
        what: "image grid",
        message: "buffer size".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, loss: f64) -> EpochRow {
        EpochRow {
            epoch,
            train_loss: loss,
            train_accuracy: 1.0 - loss / 3.0,
            train_top_k_accuracy: None,
            val_loss: Some(loss * 1.1),
            val_accuracy: Some(0.9 - loss / 3.0),
            val_top_k_accuracy: None,
            lr: 1e-3,
            epoch_seconds: 1.0,
            images_per_second: 10.0,
        }
    }

    #[test]
    fn curves_draw_lines_in_both_colours() {
        let img = curves(&[row(0, 2.0), row(1, 1.0), row(2, 0.5)]).unwrap();
        let blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
        let orange = img.pixels().filter(|p| p.0 == [255, 127, 14]).count();
        assert!(blue > 100 && orange > 100, "blue {blue} orange {orange}");
        assert!(!encode_png(&img).unwrap().is_empty());
    }

    /// A line per run in its own colour, the first ten runs' colours all
    /// different; a run without validation draws nothing.
    #[test]
    fn compared_curves_draw_a_line_per_run() {
        let loss: Vec<Vec<f64>> = (0..3)
            .map(|i| vec![2.0 - i as f64 * 0.3, 1.5, f64::NAN, 1.0])
            .collect();
        let acc: Vec<Vec<f64>> = (0..3).map(|i| vec![0.3, 0.5 + i as f64 * 0.1]).collect();
        let mut runs: Vec<RunCurves> = loss
            .iter()
            .zip(&acc)
            .map(|(l, a)| RunCurves {
                label: "exp/v0001",
                loss: l,
                accuracy: a,
            })
            .collect();
        runs.push(RunCurves {
            label: "no-validation",
            loss: &[],
            accuracy: &[],
        });
        let img = compared_curves(&runs).unwrap();
        assert_eq!((img.width(), img.height()), (1200, 480));
        let drawn: Vec<usize> = TAB10[..4].iter().map(|c| count(&img, *c)).collect();
        // The three runs' lines; the fourth only its legend's sample lines.
        assert!(drawn[..3].iter().all(|&n| n > 4 * drawn[3]), "{drawn:?}");
        assert!(drawn[3] > 0, "{drawn:?}");
        let distinct: std::collections::BTreeSet<_> =
            TAB10.iter().map(|RGBColor(r, g, b)| (r, g, b)).collect();
        assert_eq!(distinct.len(), 10);
    }

    #[test]
    fn grid_places_every_tile() {
        let red = DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, image::Rgb([250, 0, 0])));
        let tiles: Vec<Tile> = (0..5)
            .map(|i| Tile {
                image: red.clone(),
                lines: vec![format!("t{i}")],
                color: GREEN,
            })
            .collect();
        let img = image_grid("x", &tiles, 3, 32).unwrap();
        let reds = img.pixels().filter(|p| p.0 == [250, 0, 0]).count();
        assert_eq!(reds, 5 * 32 * 32);
    }

    fn count(img: &RgbImage, color: RGBColor) -> usize {
        let RGBColor(r, g, b) = color;
        img.pixels().filter(|p| p.0 == [r, g, b]).count()
    }

    fn points(pruned: &[bool]) -> Vec<ScatterPoint> {
        pruned
            .iter()
            .enumerate()
            .map(|(i, &pruned)| ScatterPoint {
                x: 10f64.powi(-(i as i32) - 1),
                y: 0.3 + 0.1 * i as f64,
                pruned,
            })
            .collect()
    }

    #[test]
    fn scatter_draws_pruned_points_as_hollow_grey_circles_with_a_legend() {
        let draw = |pruned: &[bool]| {
            let panel = Panel {
                name: "lr".to_string(),
                points: points(pruned),
                categories: None,
            };
            scatter_panels("t", "val_loss", &[panel]).unwrap()
        };
        let finished = draw(&[false; 4]);
        let pruned = draw(&[false, true, false, true]);
        // No legend strip unless something is pruned.
        assert_eq!(finished.height(), 420);
        assert_eq!(pruned.height(), 450);
        let blue = |img: &RgbImage| count(img, FINISHED);
        let grey = |img: &RgbImage| count(img, MUTED);
        // Two blue discs fewer (one comes back in the legend), two grey rings more.
        assert!(
            blue(&pruned) < blue(&finished) - 40,
            "blue {} vs {}",
            blue(&pruned),
            blue(&finished)
        );
        assert!(
            grey(&pruned) > grey(&finished) + 3 * 30,
            "grey {} vs {}",
            grey(&pruned),
            grey(&finished)
        );
        // The legend's pruned marker (centre (124, 420 + 14)) is a ring:
        // grey on it, white inside; the finished one is a filled disc.
        assert_eq!(pruned.get_pixel(124, 434).0, [255, 255, 255]);
        assert!((119..=130).any(|x| pruned.get_pixel(x, 434).0 == [150, 150, 150]));
        assert_eq!(pruned.get_pixel(24, 434).0, [31, 119, 180]);
    }

    #[test]
    fn heatmap_greys_marked_cells_and_writes_their_mark() {
        let cells = |mark: Option<&str>| {
            vec![vec![
                Cell::from(Some(0.4)),
                Cell {
                    value: Some(0.9),
                    mark: mark.map(str::to_string),
                },
            ]]
        };
        let draw = |mark| {
            heatmap(
                "t",
                &["a".into()],
                &["x".into(), "y".into()],
                &cells(mark),
                |v| format!("{v:.4}"),
            )
            .unwrap()
        };
        let plain = draw(None);
        let marked = draw(Some("pruned@3"));
        assert_eq!(plain.dimensions(), marked.dimensions());
        // One 90-pixel cell filled light grey, with a grey border and the
        // mark in dark grey ink.
        assert_eq!(count(&plain, MUTED_FILL), 0);
        assert!(
            count(&marked, MUTED_FILL) > 90 * 90 / 2,
            "{}",
            count(&marked, MUTED_FILL)
        );
        assert!(count(&marked, MUTED) > 4 * 80);
        // The mark's grey ink under the value, where the plain cell is blue.
        let ink = |img: &RgbImage| {
            let cell = imageops::crop_imm(img, 122, 100, 80, 20).to_image();
            cell.pixels()
                .filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && p.0[0] < 200)
                .count()
        };
        assert_eq!(ink(&plain), 0);
        assert!(ink(&marked) > 30, "{}", ink(&marked));
    }
}
