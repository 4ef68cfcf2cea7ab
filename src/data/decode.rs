//! Image files to 8-bit pixels at the model's size and channel count.
//!
//! JPEGs are decoded by libjpeg-turbo (MozJPEG's build of it), at the
//! smallest k/8 scale in the DCT domain that still covers the target in
//! both directions (as PIL's draft mode, which has only 1/2, 1/4 and 1/8),
//! which skips most of the inverse DCT and colour conversion. Never smaller
//! than the target: the model sees the resolution it asks for. CMYK JPEGs,
//! JPEGs libjpeg errors or warns on (corrupt, truncated) and every other
//! format go through the `image` crate, whose verdict on a bad file
//! stands. Then, as Keras's `load_img`: convert to gray or RGB (PIL's luma
//! weights), resize to the target with the configured interpolation
//! (nearest by default, PIL's pixel-centre rule).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};

use crate::vocab::Interpolation;

/// The size and channels every example is brought to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub height: usize,
    pub width: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    pub interpolation: Interpolation,
}

/// 8-bit pixels, rows of pixels with channels interleaved (HWC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Pixels {
    pub fn to_image(&self) -> Option<DynamicImage> {
        let (w, h) = (self.width as u32, self.height as u32);
        match self.channels {
            1 => GrayImage::from_raw(w, h, self.data.clone()).map(DynamicImage::ImageLuma8),
            3 => RgbImage::from_raw(w, h, self.data.clone()).map(DynamicImage::ImageRgb8),
            _ => None,
        }
    }
}

/// A decoded file: pixels at the target, and the file's own size.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub pixels: Pixels,
    /// (width, height) as stored in the file.
    pub original: (u32, u32),
}

/// Read and decode `path`. The error is a reason, without the path.
pub fn load(path: &Path, target: &Target) -> Result<Decoded, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode(&bytes, target)
}

/// Decode an encoded image held in memory. Never panics: a decoder panic
/// on hostile input becomes an error.
pub fn decode(bytes: &[u8], target: &Target) -> Result<Decoded, String> {
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, target))) {
        Ok(r) => r.map_err(|reason| tidy_reason(&reason)),
        Err(_) => Err("the decoder crashed on this file".into()),
    }
}

/// A decoder's message on one line: some (the `image` crate's JPEG errors)
/// end in a newline, which left a blank line in `runner data`'s list.
pub fn tidy_reason(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

fn decode_inner(bytes: &[u8], target: &Target) -> Result<Decoded, String> {
    let fast = if is_jpeg(bytes) {
        decode_jpeg(bytes, target)
    } else {
        None
    };
    let (pixels, original) = match fast {
        Some(r) => r,
        None => decode_generic(bytes)?,
    };
    let pixels = convert_channels(pixels, target.channels);
    Ok(Decoded {
        pixels: resize(&pixels, target),
        original,
    })
}

/// Eighths the JPEG is decoded at: the smallest of 1 to 8 whose output
/// still covers the target in both directions (libjpeg-turbo scales by any
/// k/8 in the DCT domain, PIL's draft mode only by 1/2, 1/4 and 1/8).
pub fn jpeg_scale(full: (usize, usize), target: (usize, usize)) -> usize {
    let scaled = |len: usize, k: usize| (len * k).div_ceil(8);
    (1..8)
        .find(|&k| scaled(full.0, k) >= target.0 && scaled(full.1, k) >= target.1)
        .unwrap_or(8)
}

/// Decoded pixels and the (width, height) stored in the file.
type PixelsAndSize = (Pixels, (u32, u32));

thread_local! {
    /// Set by libjpeg's message hook when it warns (corrupt or truncated
    /// data, which it would otherwise paper over with gray).
    static JPEG_WARNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// libjpeg's fatal-error hook: it must not return, so unwind (the C code is
/// built with unwinding support) to the `catch_unwind` in [`decode_jpeg`].
extern "C-unwind" fn jpeg_error_exit(_: &mut mozjpeg_sys::jpeg_common_struct) {
    std::panic::resume_unwind(Box::new("libjpeg error"));
}

/// libjpeg's message hook: level -1 is a warning about the data.
extern "C-unwind" fn jpeg_message(
    _: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    if level < 0 {
        JPEG_WARNED.with(|w| w.set(true));
    }
}

/// A JPEG through libjpeg-turbo, downscaled in the DCT domain by the
/// [`jpeg_scale`] for the target. `None` sends it to the generic decoder:
/// CMYK files, and any file libjpeg errors or warns on, so that a corrupt
/// or truncated file gets that decoder's verdict (an error naming the file)
/// rather than libjpeg's gray patch.
fn decode_jpeg(bytes: &[u8], target: &Target) -> Option<PixelsAndSize> {
    JPEG_WARNED.with(|w| w.set(false));
    let decoded = catch_unwind(AssertUnwindSafe(|| -> Option<PixelsAndSize> {
        // SAFETY: jpeg_std_error fills every field of a zeroed error manager.
        let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
        unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
        err.error_exit = Some(jpeg_error_exit);
        err.emit_message = Some(jpeg_message);
        let mut d = mozjpeg::Decompress::builder()
            .with_err(err)
            .from_mem(bytes)
            .ok()?;
        let original = (d.width() as u32, d.height() as u32);
        let k = jpeg_scale((d.width(), d.height()), (target.width, target.height));
        d.scale(k as u8);
        let (channels, mut started) = match d.image().ok()? {
            mozjpeg::Format::RGB(s) => (3, s),
            mozjpeg::Format::Gray(s) => (1, s),
            mozjpeg::Format::CMYK(_) => return None,
        };
        let (width, height) = (started.width(), started.height());
        let data = started.read_scanlines::<u8>().ok()?;
        started.finish().ok()?;
        (data.len() == width * height * channels).then_some((
            Pixels {
                height,
                width,
                channels,
                data,
            },
            original,
        ))
    }));
    match decoded {
        Ok(Some(r)) if !JPEG_WARNED.with(|w| w.get()) => Some(r),
        _ => None,
    }
}

fn decode_generic(bytes: &[u8]) -> Result<PixelsAndSize, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let original = (img.width(), img.height());
    let pixels = if img.color().has_color() {
        let rgb = img.into_rgb8();
        Pixels {
            height: rgb.height() as usize,
            width: rgb.width() as usize,
            channels: 3,
            data: rgb.into_raw(),
        }
    } else {
        let g = img.into_luma8();
        Pixels {
            height: g.height() as usize,
            width: g.width() as usize,
            channels: 1,
            data: g.into_raw(),
        }
    };
    Ok((pixels, original))
}

/// Gray to RGB by repeating; RGB to gray with PIL's `convert("L")` weights.
pub fn convert_channels(p: Pixels, channels: usize) -> Pixels {
    if p.channels == channels {
        return p;
    }
    let data = match (p.channels, channels) {
        (1, 3) => p.data.iter().flat_map(|&v| [v, v, v]).collect(),
        (3, 1) => p
            .data
            .chunks_exact(3)
            .map(|px| {
                ((px[0] as u32 * 19595 + px[1] as u32 * 38470 + px[2] as u32 * 7471 + 0x8000) >> 16)
                    as u8
            })
            .collect(),
        _ => p.data,
    };
    Pixels {
        channels,
        data,
        ..p
    }
}

/// Resize to the target size (channels already match).
pub fn resize(p: &Pixels, target: &Target) -> Pixels {
    let (tw, th) = (target.width, target.height);
    if p.width == tw && p.height == th {
        return p.clone();
    }
    match target.interpolation {
        Interpolation::Nearest => resize_nearest(p, th, tw),
        other => {
            let filter = match other {
                Interpolation::Bilinear => FilterType::Triangle,
                Interpolation::Bicubic => FilterType::CatmullRom,
                _ => FilterType::Lanczos3,
            };
            let (w, h) = (p.width as u32, p.height as u32);
            let data = match p.channels {
                1 => GrayImage::from_raw(w, h, p.data.clone()).map(|img| {
                    image::imageops::resize(&img, tw as u32, th as u32, filter).into_raw()
                }),
                _ => RgbImage::from_raw(w, h, p.data.clone()).map(|img| {
                    image::imageops::resize(&img, tw as u32, th as u32, filter).into_raw()
                }),
            };
            match data {
                Some(data) => Pixels {
                    height: th,
                    width: tw,
                    channels: p.channels,
                    data,
                },
                // Only if the buffer and its size disagree, which `Pixels` never builds.
                None => resize_nearest(p, th, tw),
            }
        }
    }
}

/// Source index of each output pixel under PIL's nearest rule: the centre
/// of output pixel `i` maps to `(i + 0.5) * in / out`, accumulated step by
/// step in doubles exactly as PIL's `ImagingScaleAffine` does (the
/// round-off decides ties, e.g. 8 -> 12 pixels).
fn nearest_table(n_in: usize, n_out: usize) -> Vec<usize> {
    let step = n_in as f64 / n_out as f64;
    let mut pos = step * 0.5;
    (0..n_out)
        .map(|_| {
            let i = (pos as usize).min(n_in - 1);
            pos += step;
            i
        })
        .collect()
}

/// Nearest-neighbour resize, pixel for pixel as PIL's `Image.NEAREST`.
pub fn resize_nearest(p: &Pixels, th: usize, tw: usize) -> Pixels {
    let c = p.channels;
    let cols: Vec<usize> = nearest_table(p.width, tw)
        .into_iter()
        .map(|x| x * c)
        .collect();
    let mut data = Vec::with_capacity(th * tw * c);
    for y in nearest_table(p.height, th) {
        let row = &p.data[y * p.width * c..][..p.width * c];
        for &x in &cols {
            data.extend_from_slice(&row[x..x + c]);
        }
    }
    Pixels {
        height: th,
        width: tw,
        channels: c,
        data,
    }
}

/// The (width, height) in a file's header, without decoding it.
pub fn dimensions(path: &Path) -> Result<(u32, u32), String> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?
        .into_dimensions()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(h: usize, w: usize, c: usize) -> Target {
        Target {
            height: h,
            width: w,
            channels: c,
            interpolation: Interpolation::Nearest,
        }
    }

    #[test]
    fn nearest_follows_pils_pixel_centre_rule() {
        // PIL: Image.fromarray([[0..70 step 10]]).resize((3,1), NEAREST) = [10, 40, 60]
        let p = Pixels {
            height: 1,
            width: 8,
            channels: 1,
            data: (0..8).map(|v| v * 10).collect(),
        };
        assert_eq!(resize_nearest(&p, 1, 3).data, vec![10, 40, 60]);
        assert_eq!(
            resize_nearest(&p, 1, 12).data,
            vec![0, 10, 10, 20, 20, 30, 40, 50, 50, 60, 70, 70]
        );
        // Rows follow the same rule as columns.
        let col = Pixels {
            height: 8,
            width: 1,
            channels: 1,
            data: p.data.clone(),
        };
        assert_eq!(
            resize_nearest(&col, 12, 1).data,
            resize_nearest(&p, 1, 12).data
        );
        // PIL for 384 -> 128 picks rows 1, 4, 7, ...
        assert_eq!(&nearest_table(384, 128)[..3], &[1, 4, 7]);
        assert_eq!(nearest_table(3, 3), vec![0, 1, 2]);
    }

    #[test]
    fn rgb_to_gray_uses_pils_weights() {
        let p = Pixels {
            height: 1,
            width: 2,
            channels: 3,
            data: vec![100, 201, 255, 3, 0, 77],
        };
        // PIL's convert("L") gives [177, 10].
        assert_eq!(convert_channels(p, 1).data, vec![177, 10]);
        let g = Pixels {
            height: 1,
            width: 1,
            channels: 1,
            data: vec![9],
        };
        assert_eq!(convert_channels(g, 3).data, vec![9, 9, 9]);
    }

    #[test]
    fn jpeg_scale_covers_the_target_in_both_directions() {
        assert_eq!(jpeg_scale((512, 384), (128, 128)), 3, "192x144 at 3/8");
        assert_eq!(jpeg_scale((512, 512), (128, 128)), 2, "128x128 at 1/4");
        assert_eq!(jpeg_scale((2048, 2048), (128, 128)), 1);
        assert_eq!(jpeg_scale((100, 80), (128, 128)), 8);
    }

    fn encode(img: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    #[test]
    fn scaled_jpeg_decode_gives_the_target_size_and_colours() {
        let img = RgbImage::from_fn(64, 48, |x, _| {
            if x < 32 {
                image::Rgb([250, 10, 10])
            } else {
                image::Rgb([10, 10, 250])
            }
        });
        let bytes = encode(DynamicImage::ImageRgb8(img), image::ImageFormat::Jpeg);
        let d = decode(&bytes, &target(8, 8, 3)).expect("decodes");
        assert_eq!(d.original, (64, 48));
        assert_eq!(
            (d.pixels.height, d.pixels.width, d.pixels.channels),
            (8, 8, 3)
        );
        let left = &d.pixels.data[0..3];
        let right = &d.pixels.data[7 * 3..8 * 3];
        assert!(left[0] > 200 && left[2] < 60, "left is red: {left:?}");
        assert!(right[2] > 200 && right[0] < 60, "right is blue: {right:?}");
        let g = decode(&bytes, &target(8, 8, 1)).expect("decodes");
        assert_eq!(g.pixels.data.len(), 64);
        // Too small to downscale in the DCT domain: the full decode path.
        let full = decode(&bytes, &target(40, 40, 3)).expect("decodes");
        assert_eq!((full.pixels.height, full.pixels.width), (40, 40));
        assert!(full.pixels.data[0] > 200 && full.pixels.data[39 * 3 + 2] > 200);
    }

    #[test]
    fn jpegs_go_through_libjpeg_at_the_smallest_covering_scale() {
        let img = RgbImage::from_fn(512, 384, |x, y| {
            image::Rgb([(x / 2) as u8, (y / 2) as u8, 90])
        });
        let bytes = encode(DynamicImage::ImageRgb8(img), image::ImageFormat::Jpeg);
        let (p, original) = decode_jpeg(&bytes, &target(128, 128, 3)).expect("libjpeg path");
        assert_eq!(original, (512, 384));
        assert_eq!(
            (p.width, p.height, p.channels),
            (192, 144, 3),
            "3/8 scale covers 128x128"
        );
        // Each pixel of the 3/8-size image stands for 8/3 x 8/3 pixels of
        // the full one: pixel (75, 36) for the area around (201.3, 97.3),
        // about (101, 49, 90).
        let px = &p.data[(36 * 192 + 75) * 3..][..3];
        assert!(
            px[0].abs_diff(101) <= 3 && px[1].abs_diff(49) <= 3 && px[2].abs_diff(90) <= 3,
            "{px:?}"
        );
        let gray = encode(
            DynamicImage::ImageLuma8(GrayImage::from_pixel(64, 64, image::Luma([77]))),
            image::ImageFormat::Jpeg,
        );
        let (g, _) = decode_jpeg(&gray, &target(64, 64, 3)).expect("gray JPEG");
        assert_eq!((g.width, g.channels), (64, 1));
        assert!(g.data.iter().all(|v| v.abs_diff(77) <= 1));
        // Truncated data makes libjpeg warn: not this path's to accept.
        assert!(decode_jpeg(&bytes[..bytes.len() / 2], &target(128, 128, 3)).is_none());
    }

    #[test]
    fn progressive_and_cmyk_jpegs_decode() {
        // Progressive JPEG (common among photos), through libjpeg at 1/2 scale.
        let (w, h) = (96usize, 64usize);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| [((i % w) * 2) as u8, ((i / w) * 3) as u8, 40])
            .collect();
        let encode_with =
            |space: mozjpeg::ColorSpace, pixels: &[u8], progressive: bool| -> Vec<u8> {
                let mut c = mozjpeg::Compress::new(space);
                c.set_size(w, h);
                c.set_quality(95.0);
                if progressive {
                    c.set_progressive_mode();
                }
                let mut started = c.start_compress(Vec::new()).expect("start");
                started.write_scanlines(pixels).expect("scanlines");
                started.finish().expect("finish")
            };
        let progressive = encode_with(mozjpeg::ColorSpace::JCS_RGB, &rgb, true);
        let (p, original) =
            decode_jpeg(&progressive, &target(32, 48, 3)).expect("progressive JPEG, libjpeg path");
        assert_eq!((original, p.width, p.height), ((96, 64), 48, 32));
        let px = &p.data[(10 * 48 + 20) * 3..][..3];
        assert!(
            px[0].abs_diff(81) <= 4 && px[1].abs_diff(61) <= 4 && px[2].abs_diff(40) <= 4,
            "{px:?}"
        );
        // CMYK is left to the generic decoder, which still gives RGB.
        let cmyk: Vec<u8> = (0..w * h).flat_map(|_| [0u8, 255, 255, 0]).collect();
        let cmyk_jpeg = encode_with(mozjpeg::ColorSpace::JCS_CMYK, &cmyk, false);
        assert!(decode_jpeg(&cmyk_jpeg, &target(32, 48, 3)).is_none());
        let d = decode(&cmyk_jpeg, &target(32, 48, 3)).expect("CMYK through the image crate");
        assert_eq!(
            (d.pixels.width, d.pixels.height, d.pixels.channels),
            (48, 32, 3)
        );
    }

    #[test]
    fn png_and_gray_inputs_are_converted() {
        let img = GrayImage::from_fn(4, 4, |x, y| image::Luma([(x * 60 + y) as u8]));
        let bytes = encode(DynamicImage::ImageLuma8(img), image::ImageFormat::Png);
        let d = decode(&bytes, &target(4, 4, 3)).expect("decodes");
        assert_eq!(d.pixels.channels, 3);
        assert_eq!(&d.pixels.data[3..6], &[60, 60, 60]);
    }

    #[test]
    fn garbage_and_truncated_files_are_errors_not_panics() {
        assert!(decode(b"not an image at all", &target(4, 4, 3)).is_err());
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 7]));
        let jpeg = encode(
            DynamicImage::ImageRgb8(img.clone()),
            image::ImageFormat::Jpeg,
        );
        assert!(
            decode(&jpeg[..jpeg.len() / 3], &target(16, 16, 3)).is_err(),
            "truncated JPEG, scaled decode"
        );
        assert!(
            decode(&jpeg[..jpeg.len() / 3], &target(48, 48, 3)).is_err(),
            "truncated JPEG, full decode"
        );
        let png = encode(DynamicImage::ImageRgb8(img), image::ImageFormat::Png);
        assert!(
            decode(&png[..png.len() / 2], &target(16, 16, 3)).is_err(),
            "truncated PNG"
        );
        assert!(
            decode(&jpeg[..20], &target(16, 16, 3)).is_err(),
            "header only"
        );
        // A JPEG cut inside its header: the `image` crate's message ends in
        // a newline, which must not reach the one-line-per-file lists.
        for cut in [20, 200] {
            let Err(reason) = decode(&jpeg[..cut], &target(48, 48, 3)) else {
                panic!("a JPEG cut at {cut} bytes decoded");
            };
            assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
            assert_eq!(reason, reason.trim(), "{reason:?}");
        }
    }
}
