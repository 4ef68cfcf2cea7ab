//! MNIST-format IDX files (as Fashion-MNIST ships them), gzip-compressed or
//! plain: a big-endian header `0 0 <type> <dims>`, one u32 per dimension,
//! then the data. Only unsigned bytes (type 0x08) are images and labels.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DataError;

/// A stack of 8-bit gray images, read whole into memory (small by nature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::BadIdx {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The file's bytes, un-gzipped when it starts with the gzip magic.
fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile {
            path: path.to_path_buf(),
            what: "IDX file",
            key: "data.path",
            help: None,
        },
        _ => DataError::io(path, e),
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("cannot un-gzip: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Check the header and length; returns the dimensions and the data.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    dims: usize,
    kind: &str,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let expected_magic = 0x0800 | dims as u32;
    if bytes.len() < 4 {
        return Err(bad(
            path,
            format!("{} bytes is too short for an IDX header", bytes.len()),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        return Err(bad(
            path,
            format!("wrong magic number 0x{magic:08x}; IDX {kind} start with 0x{expected_magic:08x} (unsigned bytes, {dims} dimension(s))"),
        ));
    }
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(bad(
            path,
            format!(
                "the header needs {header} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let shape: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let dims_text = || {
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" x ")
    };
    // Checked: four billion to the third power does not fit a usize, and a
    // product that wrapped could match a short file.
    let Some(expected) = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(bad(
            path,
            format!(
                "the header promises {} bytes of data, more than this machine can address",
                dims_text()
            ),
        ));
    };
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(bad(
            path,
            format!(
                "the header promises {} = {expected} bytes of data, the file has {} (truncated or not an IDX file)",
                dims_text(),
                data.len()
            ),
        ));
    }
    Ok((shape, data))
}

pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    let bytes = read_bytes(path)?;
    let (shape, data) = parse(path, &bytes, 3, "image files")?;
    if shape[1] == 0 || shape[2] == 0 {
        return Err(bad(path, "images of size 0"));
    }
    Ok(IdxImages {
        count: shape[0],
        rows: shape[1],
        cols: shape[2],
        pixels: data.to_vec(),
    })
}

pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_bytes(path)?;
    let (_, data) = parse(path, &bytes, 1, "label files")?;
    Ok(data.to_vec())
}

/// Encode an IDX file (for fixtures and tests): `dims` then `data`.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_plain_and_gzipped_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let plain = dir.path().join("img");
        std::fs::write(&plain, encode(&[2, 3, 4], &pixels)).expect("write");
        let imgs = read_images(&plain).expect("plain");
        assert_eq!((imgs.count, imgs.rows, imgs.cols), (2, 3, 4));
        assert_eq!(imgs.image(1), &pixels[12..]);

        let gz = dir.path().join("labels.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&encode(&[3], &[7, 0, 2])).expect("gzip");
        std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
        assert_eq!(read_labels(&gz).expect("gz"), vec![7, 0, 2]);
    }

    #[test]
    fn wrong_magic_and_wrong_length_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels_as_images = dir.path().join("x");
        std::fs::write(&labels_as_images, encode(&[3], &[1, 2, 3])).expect("write");
        let err = read_images(&labels_as_images).unwrap_err().to_string();
        assert!(
            err.contains("magic number 0x00000801") && err.contains("0x00000803"),
            "{err}"
        );
        assert!(
            err.contains(&labels_as_images.display().to_string()),
            "{err}"
        );

        let short = dir.path().join("short");
        let mut bytes = encode(&[2, 2, 2], &[0; 8]);
        bytes.pop();
        std::fs::write(&short, bytes).expect("write");
        let err = read_images(&short).unwrap_err().to_string();
        assert!(
            err.contains("2 x 2 x 2 = 8 bytes") && err.contains("has 7"),
            "{err}"
        );

        let missing = read_labels(&dir.path().join("none")).unwrap_err();
        assert!(matches!(missing, DataError::MissingFile { .. }));
    }

    #[test]
    fn dimensions_whose_product_overflows_are_refused() {
        // 2^31 x 2^31 x 4 = 2^64 wraps to 0 bytes: an empty body would match.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge");
        let mut bytes = vec![0, 0, 8, 3];
        for d in [1u32 << 31, 1 << 31, 4] {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        std::fs::write(&path, bytes).expect("write");
        let err = read_images(&path).unwrap_err().to_string();
        assert!(
            err.contains("2147483648 x 2147483648 x 4") && err.contains("more than"),
            "{err}"
        );
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
