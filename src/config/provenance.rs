//! Where a resolved value came from: a file of the `extends` chain, a
//! `RUNNER_*` environment variable, a `--set` flag, or a built-in default.

use figment::value::Value;
use figment::Source;

use super::key_path::{KeyPath, Seg};
use super::{Override, SourceFile, Sources};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Not set anywhere: the built-in default.
    Default,
    /// Set in `files[index]` (0 is the experiment file itself).
    File { index: usize },
    /// Set by an environment variable.
    Env { var: String },
    /// Set by a `--set` flag or a sweep axis (as written).
    Set { flag: String },
    /// Taken out of the layers by `--set '~key'` (as written): the default.
    Removed { flag: String },
}

impl Origin {
    /// A short note for `--show-config`; `None` for the experiment file itself.
    pub fn note(&self, files: &[SourceFile]) -> Option<String> {
        match self {
            Origin::Default => Some("default".into()),
            Origin::File { index: 0 } => None,
            Origin::File { index } => Some(format!("from {}", files[*index].path.display())),
            Origin::Env { var } => Some(format!("from environment variable {var}")),
            Origin::Set { flag } => Some(format!("from {flag}")),
            Origin::Removed { flag } => Some(format!("default ({flag})")),
        }
    }

    /// The built-in default: nothing set the value, or `--set '~key'`
    /// removed what did.
    pub fn is_default(&self) -> bool {
        matches!(self, Origin::Default | Origin::Removed { .. })
    }
}

/// Find the origin of the value at `path`. Paths into lists (layers) resolve
/// to the list as a whole, since lists are replaced wholesale when layered,
/// unless a key into the list set the value.
/// With `nearest`, a key that is not set resolves to its closest parent
/// table that is (where an error about a missing key should point).
pub fn origin(sources: &Sources, path: &KeyPath, nearest: bool) -> Origin {
    if let Some(o) = patched(sources, path) {
        return o;
    }
    let (figment, files, env) = (&sources.figment, &sources.files, &sources.env);
    let keys: Vec<&str> = path
        .0
        .iter()
        .map_while(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    if let Some(flag) = removed_by(&sources.overrides, &keys) {
        return Origin::Removed { flag };
    }
    // A key with a dot inside it (a sweep axis such as "model.dropout") cannot be
    // looked up by a dotted path: the overrides and files are asked, else its
    // parent table is.
    if keys.iter().any(|k| k.contains('.')) {
        if let Some(o) = dotted_origin(&sources.overrides, files, &keys) {
            return o;
        }
    }
    let exact = keys.len() == path.0.len() && !keys.iter().any(|k| k.contains('.'));
    for n in (1..=keys.len()).rev() {
        if keys[..n].iter().any(|k| k.contains('.')) {
            continue;
        }
        let dotted = keys[..n].join(".");
        let Some(md) = figment.find_metadata(&dotted) else {
            if exact && !nearest {
                return Origin::Default;
            }
            continue;
        };
        if md.name.starts_with(super::OVERRIDE_LABEL) || md.name.starts_with(super::AXIS_LABEL) {
            return Origin::Set {
                flag: md.name.to_string(),
            };
        }
        if let Some(Source::File(p)) = &md.source {
            let found = files.iter().position(|f| same_file(&f.path, p));
            if let Some(index) = found {
                return Origin::File { index };
            }
        }
        if let Some((var, _)) = env
            .iter()
            .find(|(_, key)| dotted == *key || key.starts_with(&format!("{dotted}.")))
        {
            return Origin::Env { var: var.clone() };
        }
        return Origin::Default;
    }
    Origin::Default
}

/// The origin of a value in a list's element that a key into the list
/// (`model.layers.2.units`) set or took out: the last to reach it.
pub fn patched(sources: &Sources, path: &KeyPath) -> Option<Origin> {
    let p = sources
        .patched
        .iter()
        .rev()
        .find(|p| path.0.starts_with(&p.at.0))?;
    let flag = p.flag.clone();
    Some(match p.remove {
        true => Origin::Removed { flag },
        false => Origin::Set { flag },
    })
}

/// The `--set '~key'` that took `keys` (or a table holding it) out, unless
/// a later `--set` sets it again.
fn removed_by(overrides: &[Override], keys: &[&str]) -> Option<String> {
    for o in overrides.iter().rev() {
        let covers = o.path.len() <= keys.len() && o.path.iter().zip(keys).all(|(a, b)| a == b);
        let inside = keys.iter().zip(&o.path).all(|(a, b)| a == b);
        match (o.remove, covers) {
            (true, true) => return Some(o.label.clone()),
            (false, _) if inside => return None,
            _ => {}
        }
    }
    None
}

/// Where the value at `keys` (one of them with a dot in it) came from: the
/// last override that set it, else the first file (the experiment file,
/// then its parents) that has it.
fn dotted_origin(overrides: &[Override], files: &[SourceFile], keys: &[&str]) -> Option<Origin> {
    let set = overrides.iter().rev().find(|o| {
        o.path.len() <= keys.len()
            && o.path.iter().zip(keys).all(|(a, b)| a == b)
            && keys[o.path.len()..]
                .iter()
                .try_fold(&o.value, |v, k| match v {
                    Value::Dict(_, d) => d.get(*k),
                    _ => None,
                })
                .is_some()
    });
    if let Some(o) = set {
        return Some(Origin::Set {
            flag: o.label.clone(),
        });
    }
    let (last, tables) = keys.split_last()?;
    files
        .iter()
        .position(|f| {
            tables
                .iter()
                .try_fold(&f.table, |t, k| t.get(*k).and_then(|v| v.as_table()))
                .is_some_and(|t| t.contains_key(*last))
        })
        .map(|index| Origin::File { index })
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

/// The resolved config as TOML, with a comment on every value that did not
/// come from the experiment file itself (a default, a parent file, an
/// environment variable or a `--set` flag), as `notes` gives it, inside the
/// elements of lists too.
pub fn annotated_toml(
    spec_value: &toml::Table,
    notes: &dyn Fn(&KeyPath) -> Option<String>,
) -> String {
    let mut out = String::new();
    emit_table(&KeyPath::default(), spec_value, notes, &mut out);
    out
}

/// `k` as a TOML key: bare where it can be, else quoted.
pub fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        format!("{:?}", k)
    }
}

fn header(path: &KeyPath) -> String {
    path.0
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(toml_key(k)),
            Seg::Index(_) => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn is_table_array(v: &toml::Value) -> bool {
    matches!(v, toml::Value::Array(a) if !a.is_empty() && a.iter().all(|x| x.is_table()))
}

fn emit_table(
    path: &KeyPath,
    table: &toml::Table,
    notes: &dyn Fn(&KeyPath) -> Option<String>,
    out: &mut String,
) {
    let in_array = path.0.iter().any(|s| matches!(s, Seg::Index(_)));
    for (k, v) in table {
        if v.is_table() || is_table_array(v) {
            continue;
        }
        let key_path = path.clone().key(k);
        let note = notes(&key_path);
        match note {
            Some(n) => out.push_str(&format!("{} = {}  # {n}\n", toml_key(k), v)),
            None => out.push_str(&format!("{} = {}\n", toml_key(k), v)),
        }
    }
    for (k, v) in table {
        let key_path = path.clone().key(k);
        match v {
            toml::Value::Table(t) => {
                out.push_str(&format!("\n[{}]", header(&key_path)));
                match notes(&key_path).filter(|_| !in_array && t.is_empty()) {
                    Some(n) => out.push_str(&format!("  # {n}\n")),
                    None => out.push('\n'),
                }
                emit_table(&key_path, t, notes, out);
            }
            toml::Value::Array(items) if is_table_array(v) => {
                if let Some(n) = notes(&key_path).filter(|_| !in_array) {
                    out.push_str(&format!("\n# {} {n}", header(&key_path)));
                }
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&format!("\n[[{}]]\n", header(&key_path)));
                    if let toml::Value::Table(t) = item {
                        emit_table(&key_path.clone().index(i), t, notes, out);
                    }
                }
            }
            _ => {}
        }
    }
}
