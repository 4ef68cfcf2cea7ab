//! The image arguments of `runner predict` as a list of files: a file as
//! given, a folder searched recursively for image files, a glob pattern
//! expanded here (so a quoted pattern works as the shell's would).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::error::PredictError;
use crate::data::image_folder;

/// The image arguments as files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// The files to predict on, in order.
    pub files: Vec<PathBuf>,
    /// Files found in the folders searched whose extension is not an
    /// image's, so left out (hidden files not counted), in path order.
    pub others: Vec<PathBuf>,
}

/// The files named by `args`, in order: each argument's files in path
/// order, a file named twice only at its first place.
pub fn expand(args: &[String]) -> Result<Inputs, PredictError> {
    let mut files = Vec::new();
    let mut others = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |path: PathBuf, files: &mut Vec<PathBuf>| {
        if seen.insert(path.clone()) {
            files.push(path);
        }
    };
    for arg in args {
        let path = Path::new(arg);
        let found = if path.exists() {
            of_path(path, &mut others)?
        } else if is_pattern(arg) {
            let mut found = Vec::new();
            for m in matches(arg)? {
                found.extend(of_path(&m, &mut others)?);
            }
            if found.is_empty() {
                return Err(PredictError::NoMatch {
                    pattern: arg.clone(),
                });
            }
            found
        } else {
            return Err(PredictError::Missing { path: path.into() });
        };
        for f in found {
            add(f, &mut files);
        }
    }
    if files.is_empty() {
        return Err(PredictError::NoImages {
            args: args.to_vec(),
        });
    }
    let mut seen = HashSet::new();
    others.retain(|p| seen.insert(p.clone()));
    Ok(Inputs { files, others })
}

/// Whether `arg` holds glob syntax (`*`, `?` or `[`).
fn is_pattern(arg: &str) -> bool {
    arg.contains(['*', '?', '['])
}

/// The paths `pattern` matches, in sorted order. As in the shell, `*` and
/// `?` match neither `/` nor the leading `.` of a hidden name; `**` matches
/// any depth of folders.
fn matches(pattern: &str) -> Result<Vec<PathBuf>, PredictError> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(pattern, options).map_err(|e| PredictError::BadPattern {
        pattern: pattern.to_string(),
        reason: e.msg.to_string(),
    })?;
    paths
        .map(|p| {
            p.map_err(|e| PredictError::Walk {
                path: e.path().to_path_buf(),
                reason: e.error().to_string(),
            })
        })
        .collect()
}

/// A file as it is; a folder's image files (by extension, as the
/// image-folder data source reads them), recursively, in path order. The
/// folder's other files, but hidden ones, go to `others`.
fn of_path(path: &Path, others: &mut Vec<PathBuf>) -> Result<Vec<PathBuf>, PredictError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in WalkDir::new(path).follow_links(true).sort_by_file_name() {
        let entry = entry.map_err(|e| PredictError::Walk {
            path: e.path().unwrap_or(path).to_path_buf(),
            reason: e.to_string(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        if image_folder::is_image(entry.path()) {
            files.push(entry.into_path());
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            others.push(entry.into_path());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b"x").expect("write");
    }

    fn names(files: &[PathBuf], root: &Path) -> Vec<String> {
        files
            .iter()
            .map(|f| {
                f.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn files_folders_and_patterns_expand_in_order_without_repeats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        touch(&r.join("a/b.png"));
        touch(&r.join("a/deep/c.JPG"));
        touch(&r.join("a/notes.txt"));
        touch(&r.join("a/.DS_Store"));
        touch(&r.join("z/one.webp"));
        touch(&r.join("z/two.bmp"));
        touch(&r.join("z/three.txt"));
        let s = |p: &str| r.join(p).display().to_string();
        let Inputs { files, others } = expand(&[
            s("z/two.bmp"),
            s("a"),
            s("z/*.webp"),
            s("a/b.png"),
            s("z/three.txt"),
        ])
        .expect("expands");
        assert_eq!(
            names(&files, r),
            vec![
                "z/two.bmp",
                "a/b.png",
                "a/deep/c.JPG",
                "z/one.webp",
                "z/three.txt"
            ]
        );
        // The folder's other files are left out and named; a file given
        // by name is taken as it is.
        assert_eq!(names(&others, r), vec!["a/notes.txt"]);
        // `*` stays in its folder, `**` goes down.
        let files = expand(&[s("*/*.png")]).expect("expands").files;
        assert_eq!(names(&files, r), vec!["a/b.png"]);
        let files = expand(&[s("a/**/*.JPG")]).expect("expands").files;
        assert_eq!(names(&files, r), vec!["a/deep/c.JPG"]);
        // A pattern matching folders takes their images.
        let found = expand(&[s("?")]).expect("expands");
        assert_eq!(
            names(&found.files, r),
            vec!["a/b.png", "a/deep/c.JPG", "z/one.webp", "z/two.bmp"]
        );
        assert_eq!(names(&found.others, r), vec!["a/notes.txt", "z/three.txt"]);
    }

    #[test]
    fn missing_paths_empty_patterns_and_no_images_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        touch(&r.join("docs/readme.txt"));
        let s = |p: &str| r.join(p).display().to_string();
        assert!(matches!(
            expand(&[s("nope.png")]),
            Err(PredictError::Missing { path }) if path.ends_with("nope.png")
        ));
        assert!(matches!(
            expand(&[s("*.png")]),
            Err(PredictError::NoMatch { pattern }) if pattern.ends_with("*.png")
        ));
        assert!(matches!(
            expand(&[s("docs")]),
            Err(PredictError::NoImages { .. })
        ));
        assert!(matches!(
            expand(&[s("[z")]),
            Err(PredictError::BadPattern { .. })
        ));
    }
}
