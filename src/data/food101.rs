//! The Food-101 layout: `images/<class>/<id>.jpg` with the official split in
//! `meta/train.json` and `meta/test.json` (`{"class": ["class/id", ...]}`),
//! read in place: no images are moved or copied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::image_folder::select_classes;
use super::DataError;
use crate::vocab::ClassSelect;

/// One side of the official split: files and labels.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub files: Vec<PathBuf>,
    pub labels: Vec<usize>,
}

/// The selected classes (sorted, or in the listed order) and both sides.
#[derive(Debug, Clone)]
pub struct Food101 {
    pub classes: Vec<String>,
    pub train: Listing,
    pub test: Listing,
}

fn read_meta(path: &Path) -> Result<BTreeMap<String, Vec<String>>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile {
            path: path.to_path_buf(),
            what: "Food-101 meta file",
            help: Some("the Food-101 archive unpacks to food-101/images/<class>/*.jpg and food-101/meta/{train,test}.json; point `data.path` at food-101".into()),
        },
        _ => DataError::io(path, e),
    })?;
    serde_json::from_str(&text).map_err(|e| DataError::BadMeta {
        path: path.to_path_buf(),
        reason: format!("{e} (expected {{\"class\": [\"class/id\", ...]}})"),
    })
}

pub fn scan(root: &Path, select: Option<&ClassSelect>) -> Result<Food101, DataError> {
    if !root.is_dir() {
        return Err(DataError::MissingFolder {
            path: root.to_path_buf(),
            what: "Food-101 folder",
        });
    }
    let train_meta = root.join("meta").join("train.json");
    let test_meta = root.join("meta").join("test.json");
    let train = read_meta(&train_meta)?;
    let test = read_meta(&test_meta)?;
    let available: Vec<String> = train.keys().cloned().collect();
    if available.is_empty() {
        return Err(DataError::BadMeta {
            path: train_meta,
            reason: "lists no classes".into(),
        });
    }
    let classes = select_classes(&available, select, &train_meta)?;
    let images = root.join("images");
    let train = listing(&train, &classes, &images, &train_meta)?;
    let test = listing(&test, &classes, &images, &test_meta)?;
    Ok(Food101 {
        classes,
        train,
        test,
    })
}

/// Resolve the entries of `meta` for `classes`; every listed file must exist.
fn listing(
    meta: &BTreeMap<String, Vec<String>>,
    classes: &[String],
    images: &Path,
    meta_path: &Path,
) -> Result<Listing, DataError> {
    let mut out = Listing::default();
    let mut missing: Vec<(String, PathBuf)> = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let Some(entries) = meta.get(class) else {
            return Err(DataError::BadMeta {
                path: meta_path.to_path_buf(),
                reason: format!("has no entry for class `{class}`"),
            });
        };
        if entries.is_empty() {
            return Err(DataError::BadMeta {
                path: meta_path.to_path_buf(),
                reason: format!("lists no images for class `{class}`"),
            });
        }
        for entry in entries {
            if !inside(entry) {
                return Err(DataError::BadMeta {
                    path: meta_path.to_path_buf(),
                    reason: format!(
                        "entry `{entry}` of class `{class}` points outside `images/`; entries are relative paths like `{class}/1234`"
                    ),
                });
            }
            let file = images.join(format!("{entry}.jpg"));
            if file.is_file() {
                out.files.push(file);
                out.labels.push(label);
            } else {
                missing.push((entry.clone(), file));
            }
        }
    }
    if let Some((entry, path)) = missing.first() {
        return Err(DataError::MissingListed {
            meta: meta_path.to_path_buf(),
            entry: entry.clone(),
            path: path.clone(),
            more: missing.len() - 1,
        });
    }
    Ok(out)
}

/// Whether a meta entry stays under `images/`: plain names only, no root,
/// no `..`, no `.`, no drive prefix.
fn inside(entry: &str) -> bool {
    let path = Path::new(entry);
    !entry.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    fn fixture(r: &Path) {
        write(
            &r.join("meta/train.json"),
            r#"{"pizza": ["pizza/1", "pizza/2"], "apple_pie": ["apple_pie/9"], "sushi": ["sushi/5"]}"#,
        );
        write(
            &r.join("meta/test.json"),
            r#"{"pizza": ["pizza/3"], "apple_pie": ["apple_pie/8"], "sushi": ["sushi/6"]}"#,
        );
        for f in [
            "pizza/1",
            "pizza/2",
            "pizza/3",
            "apple_pie/9",
            "apple_pie/8",
            "sushi/5",
            "sushi/6",
        ] {
            write(&r.join(format!("images/{f}.jpg")), "x");
        }
    }

    #[test]
    fn reads_the_split_from_the_meta_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture(dir.path());
        let f = scan(dir.path(), Some(&ClassSelect::First(2))).expect("scan");
        assert_eq!(f.classes, vec!["apple_pie", "pizza"]);
        assert_eq!(f.train.labels, vec![0, 1, 1]);
        assert!(f.train.files[1].ends_with("images/pizza/1.jpg"));
        assert_eq!(f.test.labels, vec![0, 1]);
    }

    #[test]
    fn a_listed_file_that_is_missing_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture(dir.path());
        std::fs::remove_file(dir.path().join("images/pizza/2.jpg")).expect("rm");
        let err = scan(dir.path(), None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("pizza/2") && msg.contains("train.json"),
            "{msg}"
        );
    }

    #[test]
    fn missing_or_broken_meta_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture(dir.path());
        write(&dir.path().join("meta/test.json"), "{\"pizza\": 3}");
        let err = scan(dir.path(), None).unwrap_err();
        assert!(
            matches!(&err, DataError::BadMeta { path, .. } if path.ends_with("meta/test.json")),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("meta/train.json")).expect("rm");
        let err = scan(dir.path(), None).unwrap_err();
        assert!(
            matches!(&err, DataError::MissingFile { path, .. } if path.ends_with("meta/train.json")),
            "{err}"
        );
    }

    #[test]
    fn entries_that_leave_the_images_folder_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fixture(dir.path());
        // A file outside images/ that `..` or an absolute path would reach.
        write(&dir.path().join("secret.jpg"), "x");
        let outside = dir.path().join("secret");
        for entry in [
            "../secret".to_string(),
            "pizza/../../secret".to_string(),
            outside.display().to_string(),
            "./pizza/1".to_string(),
            String::new(),
        ] {
            let json = serde_json::json!({"pizza": ["pizza/1", entry], "sushi": ["sushi/5"]});
            write(&dir.path().join("meta/train.json"), &json.to_string());
            let err = scan(dir.path(), None).unwrap_err();
            assert!(
                matches!(&err, DataError::BadMeta { path, reason }
                    if path.ends_with("meta/train.json") && reason.contains("outside")),
                "{entry}: {err}"
            );
        }
    }
}
