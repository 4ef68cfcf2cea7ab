//! Keras `flow_from_directory` layout: one sub-folder per class, images
//! anywhere below it (found recursively), class names in sorted order.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::missing::{list_sub_folders, shown, sub_folders};
use super::DataError;
use crate::config::diagnostic::did_you_mean;
use crate::vocab::ClassSelect;

/// File name extensions read as images, compared case-insensitively.
pub const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp"];

/// The extensions as a reader is told them: ".jpg, .jpeg, .png, .bmp or .webp".
pub fn extensions_listed() -> String {
    let dotted: Vec<String> = EXTENSIONS.iter().map(|e| format!(".{e}")).collect();
    match dotted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => dotted.concat(),
    }
}

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The class folders directly under `root`, sorted by name. Hidden folders
/// (starting with `.`) are not classes.
pub fn class_dirs(root: &Path) -> Result<Vec<String>, DataError> {
    if !root.is_dir() {
        return Err(super::missing::folder(
            root,
            "data folder",
            "data.path",
            None,
        ));
    }
    let names: Vec<String> = list_sub_folders(root)
        .map_err(|e| DataError::io(root, e))?
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Err(DataError::NoClasses {
            path: root.to_path_buf(),
        });
    }
    Ok(names)
}

/// The data key each split folder name belongs to, as Keras tutorials
/// lay a dataset out (`data/train/<class>`, `data/validation/<class>`).
const SPLIT_NAMES: &[(&str, &str)] = &[
    ("train", "path"),
    ("training", "path"),
    ("val", "validation_path"),
    ("valid", "validation_path"),
    ("validation", "validation_path"),
    ("test", "test_path"),
    ("testing", "test_path"),
];

/// Refuse a `root` whose "classes" are split folders: two or more of them
/// named as splits (train, validation, test, ...), each holding
/// sub-folders. Trained on, such a layout would learn to tell the splits
/// apart. A class that is merely named `train` holds images, not folders.
pub fn refuse_split_folders(root: &Path, classes: &[String]) -> Result<(), DataError> {
    let mut splits: Vec<(&String, &str)> = classes
        .iter()
        .filter_map(|c| {
            let key = SPLIT_NAMES
                .iter()
                .find(|(name, _)| c.eq_ignore_ascii_case(name))?
                .1;
            (!sub_folders(&root.join(c)).is_empty()).then_some((c, key))
        })
        .collect();
    if splits.len() < 2 {
        return Ok(());
    }
    // In the order a reader writes the keys: path, validation, test.
    let rank = |key: &str| {
        ["path", "validation_path", "test_path"]
            .iter()
            .position(|k| *k == key)
    };
    splits.sort_by_key(|(_, key)| rank(key));
    let keys: Vec<String> = splits
        .iter()
        .map(|(c, key)| format!("{key} = {:?}", shown(&root.join(c))))
        .collect();
    Err(DataError::SplitFolders {
        path: root.to_path_buf(),
        splits: splits.iter().map(|(c, _)| c.to_string()).collect(),
        help: format!("point [data] at each split: {}", keys.join(", ")),
    })
}

/// Apply the `classes` setting to the available (sorted) class names:
/// the first N, or the listed names in the listed order (Keras's label
/// order for an explicit list).
pub fn select_classes(
    available: &[String],
    select: Option<&ClassSelect>,
    origin: &Path,
) -> Result<Vec<String>, DataError> {
    match select {
        None => Ok(available.to_vec()),
        Some(ClassSelect::First(n)) => {
            if *n > available.len() {
                return Err(DataError::TooFewClasses {
                    path: origin.to_path_buf(),
                    requested: *n,
                    found: available.len(),
                });
            }
            Ok(available[..*n].to_vec())
        }
        Some(ClassSelect::Names(names)) => {
            let candidates: Vec<&str> = available.iter().map(String::as_str).collect();
            for name in names {
                if !available.contains(name) {
                    return Err(DataError::UnknownClass {
                        name: name.clone(),
                        path: origin.to_path_buf(),
                        help: did_you_mean(name, &candidates),
                    });
                }
            }
            Ok(names.clone())
        }
    }
}

/// Every image below `root/<class>` for each class, with its label (the
/// class's position). Files are in path order, so a scan is reproducible.
pub fn scan(root: &Path, classes: &[String]) -> Result<(Vec<PathBuf>, Vec<usize>), DataError> {
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        if !dir.is_dir() {
            return Err(DataError::MissingClassFolder {
                path: dir,
                class: class.clone(),
            });
        }
        let before = files.len();
        for entry in WalkDir::new(&dir).sort_by_file_name() {
            let entry = entry.map_err(|e| DataError::Walk {
                path: e.path().unwrap_or(&dir).to_path_buf(),
                reason: e.to_string(),
            })?;
            if entry.file_type().is_file() && is_image(entry.path()) {
                files.push(entry.into_path());
                labels.push(label);
            }
        }
        if files.len() == before {
            return Err(DataError::EmptyClass { path: dir });
        }
    }
    Ok((files, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b"x").expect("write");
    }

    #[test]
    fn split_folders_are_refused_with_the_keys_that_name_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        touch(&r.join("train/cat/a.png"));
        touch(&r.join("Validation/cat/b.png"));
        touch(&r.join("test/dog/c.png"));
        let classes = class_dirs(r).expect("classes");
        let err = refuse_split_folders(r, &classes).unwrap_err();
        let DataError::SplitFolders { splits, help, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(splits, &["train", "Validation", "test"]);
        let q = |p: &str| format!("{:?}", r.join(p).display().to_string());
        assert_eq!(
            help,
            &format!(
                "point [data] at each split: path = {}, validation_path = {}, test_path = {}",
                q("train"),
                q("Validation"),
                q("test")
            )
        );
        // Classes named like splits that hold images are classes.
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        touch(&r.join("train/a.png"));
        touch(&r.join("test/b.png"));
        touch(&r.join("bus/deep/c.png"));
        let classes = class_dirs(r).expect("classes");
        assert!(refuse_split_folders(r, &classes).is_ok());
        // One split folder among classes is not a layout of splits.
        touch(&r.join("val/x/d.png"));
        let classes = class_dirs(r).expect("classes");
        assert!(refuse_split_folders(r, &classes).is_ok());
    }

    #[test]
    fn classes_are_sorted_sub_folders_and_images_are_found_recursively() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        touch(&r.join("b/one.JPG"));
        touch(&r.join("b/deep/er/two.webp"));
        touch(&r.join("b/notes.txt"));
        touch(&r.join("a/x.png"));
        touch(&r.join(".hidden/x.png"));
        touch(&r.join("stray.jpg"));
        let classes = class_dirs(r).expect("classes");
        assert_eq!(classes, vec!["a", "b"]);
        let (files, labels) = scan(r, &classes).expect("scan");
        let names: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(r).expect("under root").display().to_string())
            .collect();
        assert_eq!(names, vec!["a/x.png", "b/deep/er/two.webp", "b/one.JPG"]);
        assert_eq!(labels, vec![0, 1, 1]);
    }

    #[test]
    fn empty_class_and_missing_folder_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        touch(&r.join("a/x.png"));
        std::fs::create_dir_all(r.join("b/sub")).expect("mkdir");
        touch(&r.join("b/readme.md"));
        let err = scan(r, &class_dirs(r).expect("classes")).unwrap_err();
        assert!(
            matches!(&err, DataError::EmptyClass { path } if path.ends_with("b")),
            "{err}"
        );
        let err = class_dirs(&r.join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            class_dirs(empty.path()),
            Err(DataError::NoClasses { .. })
        ));
    }

    #[test]
    fn class_selection_keeps_order_and_suggests_names() {
        let avail: Vec<String> = ["apple_pie", "baby_back_ribs", "baklava"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = Path::new("/d");
        assert_eq!(
            select_classes(&avail, Some(&ClassSelect::First(2)), o).expect("first 2"),
            vec!["apple_pie", "baby_back_ribs"]
        );
        let list = ClassSelect::Names(vec!["baklava".into(), "apple_pie".into()]);
        assert_eq!(
            select_classes(&avail, Some(&list), o).expect("names"),
            vec!["baklava", "apple_pie"]
        );
        let typo = ClassSelect::Names(vec!["baklawa".into(), "apple_pie".into()]);
        match select_classes(&avail, Some(&typo), o) {
            Err(DataError::UnknownClass { name, help, .. }) => {
                assert_eq!(name, "baklawa");
                assert_eq!(help.as_deref(), Some("did you mean `baklava`?"));
            }
            other => panic!("expected an unknown class, got {other:?}"),
        }
        assert!(matches!(
            select_classes(&avail, Some(&ClassSelect::First(5)), o),
            Err(DataError::TooFewClasses {
                requested: 5,
                found: 3,
                ..
            })
        ));
    }
}
