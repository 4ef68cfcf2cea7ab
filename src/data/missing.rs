//! A data folder that is not where the config says: the error names the key
//! that set it, and the help the nearest folder that does exist (a sibling
//! one typo away), or the source's own remedy (where to get the data).

use std::path::{Path, PathBuf};

use super::DataError;
use crate::config::diagnostic::closest;

/// `path` as a help shows it: relative to the current folder when it lies
/// below it (as a relative `data.path` was written), else as it is.
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// The error for a folder `key` names that does not exist. `remedy` is the
/// source's own help (where to get the data), used when no sibling of
/// `path` is a likely typo of it.
pub fn folder(
    path: &Path,
    what: &'static str,
    key: &'static str,
    remedy: Option<&str>,
) -> DataError {
    let help = match sibling(path) {
        Some(near) => format!("did you mean `{}`?", shown(&near)),
        None => match remedy {
            Some(r) => r.to_string(),
            None => format!("check `{key}`; a relative path starts from the folder runner runs in"),
        },
    };
    DataError::MissingFolder {
        path: path.to_path_buf(),
        what,
        key,
        help,
    }
}

/// A folder beside `path` whose name is one typo away from its name:
/// `data/flower` for `data/flowers`, `food101` for `food-101`.
fn sibling(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    let names: Vec<String> = sub_folders(parent)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
    closest(name, &candidates).map(|n| parent.join(n))
}

/// The sub-folders of `dir` that are not hidden, sorted (none when `dir`
/// cannot be read). Links to folders count.
pub fn sub_folders(dir: &Path) -> Vec<PathBuf> {
    list_sub_folders(dir).unwrap_or_default()
}

/// [`sub_folders`], with the error when `dir` cannot be read.
pub fn list_sub_folders(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .is_ok_and(|t| t.is_dir() || (t.is_symlink() && path.is_dir()));
        if is_dir && !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sibling_one_typo_away_is_offered() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("flowers")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("cars")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join(".flowerz")).expect("mkdir");
        let err = folder(&dir.path().join("flower"), "data folder", "data.path", None);
        match err {
            DataError::MissingFolder { help, key, .. } => {
                assert_eq!(key, "data.path");
                assert_eq!(
                    help,
                    format!("did you mean `{}`?", dir.path().join("flowers").display())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_near_sibling_the_remedy_or_the_key_is_the_help() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("cars")).expect("mkdir");
        let missing = dir.path().join("food-101");
        let help = |e: DataError| match e {
            DataError::MissingFolder { help, .. } => help,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            help(folder(
                &missing,
                "Food-101 folder",
                "data.path",
                Some("download it")
            )),
            "download it"
        );
        let generic = help(folder(&missing, "data folder", "data.test_path", None));
        assert!(generic.starts_with("check `data.test_path`"), "{generic}");
        // A parent that does not exist has no siblings to offer.
        let deeper = dir.path().join("nope/flowers");
        assert!(help(folder(&deeper, "data folder", "data.path", None)).starts_with("check"));
    }

    #[test]
    fn paths_below_the_current_folder_are_shown_relative() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            shown(&cwd.join("data").join("x")),
            Path::new("data").join("x").display().to_string()
        );
        assert_eq!(
            shown(Path::new("/definitely/elsewhere")),
            "/definitely/elsewhere"
        );
        assert_eq!(shown(&cwd), cwd.display().to_string());
    }
}
