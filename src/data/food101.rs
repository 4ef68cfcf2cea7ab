//! The Food-101 layout: `images/<class>/<id>.jpg` with the official split in
//! `meta/train.json` and `meta/test.json` (`{"class": ["class/id", ...]}`),
//! read in place: no images are moved or copied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::image_folder::{is_image, select_classes};
use super::missing::{self, shown, sub_folders};
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

/// Where to get Food-101, for a `data.path` that does not exist.
pub(super) const DOWNLOAD: &str =
    "runner does not download Food-101: get food-101.tar.gz (about 5 GB) from \
    https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/, unpack it \
    (`tar xzf food-101.tar.gz`) and set `data.path` to the food-101 folder it makes";

/// The layout, for a folder that has only part of it.
const LAYOUT: &str = "the Food-101 archive unpacks to food-101/images/<class>/*.jpg and \
    food-101/meta/{train,test}.json; point `data.path` at food-101";

fn read_meta(path: &Path, root: &Path) -> Result<BTreeMap<String, Vec<String>>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile {
            path: path.to_path_buf(),
            what: "Food-101 meta file",
            key: "data.path",
            help: Some(remedy(root)),
        },
        _ => DataError::io(path, e),
    })?;
    serde_json::from_str(&text).map_err(|e| DataError::BadMeta {
        path: path.to_path_buf(),
        reason: format!("{e} (expected {{\"class\": [\"class/id\", ...]}})"),
    })
}

/// Whether `dir` is a Food-101 root.
fn is_root(dir: &Path) -> bool {
    dir.join("meta").join("train.json").is_file()
}

/// What to do about a `root` that has no `meta/train.json` or
/// `meta/test.json`: point at the Food-101 root near it, or read its
/// class folders as an `image_folder` source.
fn remedy(root: &Path) -> String {
    if root.join("meta").is_dir() {
        return LAYOUT.into();
    }
    if let Some(found) = nearby(root) {
        return format!(
            "{} holds Food-101's images/ and meta/: set `data.path = {:?}`",
            shown(&found),
            shown(&found)
        );
    }
    let images = root.join("images");
    if !sub_folders(&images).is_empty() {
        return format!(
            "without meta/train.json and meta/test.json there is no official split; to read the class \
             folders in {} as they are, set `source = \"image_folder\"`, `path = {:?}` and a `validation_split`",
            shown(&images),
            shown(&images)
        );
    }
    if holds_class_folders(root) {
        return format!(
            "{} holds class folders of images, not Food-101's images/ and meta/: set `source = \"image_folder\"` to read them",
            shown(root)
        );
    }
    LAYOUT.into()
}

/// A Food-101 root near `root`: its parent when `root` is that root's
/// `images/` or `meta/`, or a folder one or two levels below it (the
/// archive's `food-101/`, a download's `food-101/food-101/`).
fn nearby(root: &Path) -> Option<PathBuf> {
    if matches!(
        root.file_name().and_then(|n| n.to_str()),
        Some("images" | "meta")
    ) {
        if let Some(parent) = root.parent().filter(|p| is_root(p)) {
            return Some(parent.to_path_buf());
        }
    }
    let children = sub_folders(root);
    children.iter().find(|c| is_root(c)).cloned().or_else(|| {
        children
            .iter()
            .flat_map(|c| sub_folders(c))
            .find(|g| is_root(g))
    })
}

/// Whether the first sub-folder of `dir` holds an image file directly.
fn holds_class_folders(dir: &Path) -> bool {
    let Some(first) = sub_folders(dir).into_iter().next() else {
        return false;
    };
    std::fs::read_dir(first)
        .is_ok_and(|entries| entries.filter_map(Result::ok).any(|e| is_image(&e.path())))
}

pub fn scan(root: &Path, select: Option<&ClassSelect>) -> Result<Food101, DataError> {
    if !root.is_dir() {
        return Err(missing::folder(
            root,
            "Food-101 folder",
            "data.path",
            Some(DOWNLOAD),
        ));
    }
    let train_meta = root.join("meta").join("train.json");
    let test_meta = root.join("meta").join("test.json");
    let train = read_meta(&train_meta, root)?;
    let test = read_meta(&test_meta, root)?;
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

    /// The help of the error `scan(root)` gives.
    fn help_for(root: &Path) -> String {
        match scan(root, None).unwrap_err() {
            DataError::MissingFile { help, key, .. } => {
                assert_eq!(key, "data.path");
                help.expect("a help")
            }
            DataError::MissingFolder { help, key, .. } => {
                assert_eq!(key, "data.path");
                help
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_path_next_to_the_food101_root_points_at_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let root = d.join("downloads/food-101");
        fixture(&root);
        let points = |help: String| {
            assert!(
                help.contains(&format!("set `data.path = \"{}\"`", root.display())),
                "{help}"
            )
        };
        // The folder the archive was unpacked in, and the root's parts.
        points(help_for(&d.join("downloads")));
        points(help_for(&root.join("images")));
        points(help_for(&root.join("meta")));
        // Two levels down, as a download that holds food-101/food-101/.
        points(help_for(d));
    }

    #[test]
    fn a_folder_without_the_layout_gets_the_remedy_that_fits_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // Not there at all: where to get it.
        assert!(help_for(&d.join("food-101")).contains("food-101.tar.gz"));
        // images/ without meta/: read it as class folders.
        let only_images = d.join("only-images");
        write(&only_images.join("images/pizza/1.jpg"), "x");
        let help = help_for(&only_images);
        assert!(
            help.contains("source = \"image_folder\"")
                && help.contains(&format!(
                    "path = \"{}\"",
                    only_images.join("images").display()
                )),
            "{help}"
        );
        // Class folders of images where images/ and meta/ should be.
        let classes = d.join("classes");
        write(&classes.join("pizza/1.jpg"), "x");
        let help = help_for(&classes);
        assert!(help.contains("holds class folders of images"), "{help}");
        // Half a layout: meta/ without train.json is named as the layout.
        let half = d.join("half");
        fixture(&half);
        std::fs::remove_file(half.join("meta/test.json")).expect("rm");
        assert_eq!(help_for(&half), LAYOUT);
        // An empty folder: the layout.
        let empty = d.join("empty");
        std::fs::create_dir_all(&empty).expect("mkdir");
        assert_eq!(help_for(&empty), LAYOUT);
    }
}
