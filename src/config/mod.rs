//! Reading an experiment: strict TOML parse, the `extends` chain, figment
//! layering of `RUNNER_*` environment variables and `--set` overrides, and
//! located errors for anything wrong.
//!
//! Precedence, lowest first: built-in defaults < parent files (`extends`,
//! farthest ancestor first) < the experiment file < `RUNNER_*` environment
//! variables < `--set key.path=value`.

pub mod diagnostic;
#[cfg(test)]
mod docs_tests;
mod element;
mod foreign;
pub mod key_path;
pub mod provenance;
pub mod spec;
pub mod tagged;
pub mod variant;

use std::path::{Path, PathBuf};

use figment::providers::Env;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

pub use diagnostic::ConfigError;
pub use key_path::{KeyPath, Seg};
use spec::{ExperimentSpec, TOP_LEVEL_KEYS};

/// Environment variables with this prefix override config keys;
/// `__` separates key-path segments: `RUNNER_OPTIMIZER__LEARNING_RATE=3e-4`.
pub const ENV_PREFIX: &str = "RUNNER_";

const MAX_EXTENDS_DEPTH: usize = 16;

/// One file of the `extends` chain, with its text kept for diagnostics and
/// its table as parsed (once).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    pub table: toml::Table,
}

/// A `--set key.path=value` override, as given and as parsed.
#[derive(Debug, Clone)]
pub struct Override {
    pub raw: String,
    /// The key path as given (`sweep.grid."model.dropout"`).
    pub key: String,
    /// Its keys (`sweep`, `grid`, `model.dropout`).
    pub path: Vec<String>,
    pub value: Value,
    /// `--set '~key'`: take the key out of every layer below this one.
    pub remove: bool,
    /// `--set '+key=value'` (Hydra's append): an error where a layer below
    /// already sets the key. `++key=value` sets it either way, as
    /// `key=value` does.
    pub add: bool,
    /// Where the override came from, as error messages and provenance
    /// notes name it: `--set model.dropout=0.3`, `sweep axis model.dropout = 0.3`.
    pub label: String,
}

impl Override {
    pub fn parse(raw: &str) -> Result<Override, ConfigError> {
        const NO_VALUE: &str =
            "`~KEY` removes a key and takes no value: `--set '~callbacks.early_stopping'`";
        const NO_EQUALS: &str =
            "expected KEY=VALUE, for example `--set model.dropout=0.3`, or ~KEY to remove a key";
        const PLUS_AND_TILDE: &str =
            "`+KEY=VALUE` adds a key and `~KEY` removes one; give one of them";
        let bad = |reason: &str| ConfigError::BadOverride {
            raw: raw.to_string(),
            reason: reason.into(),
        };
        let given = raw.trim_start();
        let (body, add) = match given.strip_prefix("++") {
            Some(body) => (body, false),
            None => given
                .strip_prefix('+')
                .map_or((given, false), |body| (body, true)),
        };
        let (key, value, remove) = match body.strip_prefix('~') {
            Some(_) if body.len() < given.len() => return Err(bad(PLUS_AND_TILDE)),
            Some(key) if key.contains('=') => return Err(bad(NO_VALUE)),
            Some(key) => (key, None, true),
            None => match body.split_once('=') {
                Some((key, value)) => (key, Some(value), false),
                None => return Err(bad(NO_EQUALS)),
            },
        };
        let key = key.trim();
        let Some(path) = key_path(key) else {
            return Err(ConfigError::BadOverride {
                raw: raw.to_string(),
                reason: format!("`{key}` is not a key path such as `optimizer.learning_rate`"),
            });
        };
        let value = value.map_or(Value::from(figment::value::Empty::None), |v| {
            parse_value(v.trim())
        });
        Ok(Override {
            raw: raw.to_string(),
            key: key.to_string(),
            path,
            value,
            remove,
            add,
            label: format!("{OVERRIDE_LABEL}{raw}"),
        })
    }

    /// A sweep trial's value for one axis.
    pub fn axis(key: &str, value: &toml::Value) -> Result<Override, ConfigError> {
        let raw = format!("{key}={value}");
        let label = format!("{AXIS_LABEL}{key} = {value}");
        let mut o = Override::parse(&raw).map_err(|e| match e {
            ConfigError::BadOverride { reason, .. } => ConfigError::BadAxis {
                axis: format!("{key} = {value}"),
                reason,
            },
            other => other,
        })?;
        o.label = label;
        o.value = value
            .clone()
            .try_into::<Value>()
            .map_err(|e| o.error(e.to_string()))?;
        Ok(o)
    }

    /// A `RUNNER_*` variable's value for the dotted `key`, as an override
    /// (for a key into a list, which the variables' provider cannot layer).
    fn env(var: &str, key: &str, value: &str) -> Override {
        Override {
            raw: format!("{var}={value}"),
            key: key.to_string(),
            path: key.split('.').map(str::to_string).collect(),
            value: parse_value(value.trim()),
            remove: false,
            add: false,
            label: format!("{ENV_LABEL}{var}"),
        }
    }

    /// An error in this override: a bad `--set`, a bad sweep axis or a bad
    /// `RUNNER_*` variable.
    fn error(&self, reason: String) -> ConfigError {
        if let Some(axis) = self.label.strip_prefix(AXIS_LABEL) {
            return ConfigError::BadAxis {
                axis: axis.to_string(),
                reason,
            };
        }
        if self.label.starts_with(ENV_LABEL) {
            return ConfigError::Invalid {
                location: self.label.clone(),
                path: key_path_of(&self.path),
                message: reason,
                src: None,
                span: None,
                label: "this value".into(),
                help: None,
            };
        }
        ConfigError::BadOverride {
            raw: self.raw.clone(),
            reason,
        }
    }
}

/// The keys of a `--set` key path, read as a TOML dotted key, so a key
/// with a dot in it is quoted as in the file: `sweep.grid."model.dropout"`.
/// A path that TOML does not read (a class name with a space in
/// `train.class_weight.my class`) is split at its dots, unless it has a
/// quote. `None`: no key path.
fn key_path(key: &str) -> Option<Vec<String>> {
    let toml_path = toml::from_str::<toml::Table>(&format!("{key} = 0"))
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|t| {
            let mut path = Vec::new();
            let mut table = &t;
            loop {
                let (k, v) = table.iter().next()?;
                path.push(k.clone());
                match v {
                    toml::Value::Table(inner) if inner.len() == 1 => table = inner,
                    _ => return Some(path),
                }
            }
        });
    let path = match toml_path {
        Some(p) => p,
        None if key.contains(['"', '\'']) => return None,
        None => key.split('.').map(|s| s.trim().to_string()).collect(),
    };
    (!path.is_empty() && !path.iter().any(|s| s.trim().is_empty())).then_some(path)
}

/// A `--set` value in TOML syntax (`0.3`, `1e-4`, `true`, `[1, 2]`,
/// `"text"`); anything that is not a TOML value is taken as a bare string.
fn parse_value(raw: &str) -> Value {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| v.try_into::<Value>().ok());
    parsed.unwrap_or_else(|| Value::from(raw.to_string()))
}

/// Provenance labels of overrides (see [`provenance::Origin::Set`]).
pub const OVERRIDE_LABEL: &str = "--set ";
pub const AXIS_LABEL: &str = "sweep axis ";
/// The provenance label of a `RUNNER_*` variable for a key into a list.
const ENV_LABEL: &str = "environment variable ";

/// How to read an experiment.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub overrides: Vec<Override>,
    /// Read `RUNNER_*` environment variables (on by default in the CLI).
    pub use_env: bool,
}

impl LoadOptions {
    /// `KEY=VALUE` overrides recorded earlier (a sweep's `--set` flags), in
    /// order, without `RUNNER_*` variables.
    pub fn recorded<'a>(
        sets: impl IntoIterator<Item = &'a String>,
    ) -> Result<LoadOptions, ConfigError> {
        Ok(LoadOptions {
            overrides: sets
                .into_iter()
                .map(|o| Override::parse(o))
                .collect::<Result<_, _>>()?,
            use_env: false,
        })
    }
}

/// The files and overrides an experiment was read from, with everything
/// needed to explain where a value came from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The experiment file first, then its parents in `extends` order.
    pub files: Vec<SourceFile>,
    pub overrides: Vec<Override>,
    /// Environment overrides that were applied: (variable, key path).
    pub env: Vec<(String, String)>,
    /// Keys a lower layer gave a table whose variant a higher layer
    /// switched, left out (see [`variant`]).
    pub dropped: Vec<variant::Dropped>,
    /// What keys into a list (`model.layers.2.units`) changed, in order.
    pub patched: Vec<Patched>,
    /// Sweep axes of parent files that a nearer file's own axes replaced.
    pub replaced_axes: Vec<ReplacedAxes>,
    figment: Figment,
}

impl Sources {
    /// The experiment file itself.
    pub fn main_file(&self) -> &SourceFile {
        &self.files[0]
    }

    /// Where the value at `path` came from.
    pub fn origin(&self, path: &KeyPath) -> provenance::Origin {
        provenance::origin(self, path, false)
    }

    /// Turn a problem found after parsing (a bad value, an impossible shape)
    /// into an error located at the key in the file that set it.
    pub fn error_at(&self, path: KeyPath, message: String, help: Option<String>) -> ConfigError {
        let origin = provenance::origin(self, &path, true);
        diagnostic::located(&origin, &self.files, path, message, help)
    }
}

/// A key inside a list's element that an override set or took out.
#[derive(Debug, Clone)]
pub struct Patched {
    /// The key, with the element chosen: `model.layers[2].units`.
    pub at: KeyPath,
    /// The override's provenance label.
    pub flag: String,
    pub remove: bool,
}

/// The sweep axes a parent file gave, left out because a nearer file of
/// the `extends` chain gives its own: a search space is replaced whole.
#[derive(Debug, Clone)]
pub struct ReplacedAxes {
    /// The parent (an index into [`Sources::files`]).
    pub file: usize,
    /// The file whose axes replaced them.
    pub by: usize,
    /// The axes, as their key under `sweep` (`grid."model.dropout"`).
    pub keys: Vec<String>,
}

/// The tables of `[sweep]` that hold its axes: together, the search space.
const AXIS_TABLES: [&str; 3] = ["grid", "zip", "random"];

/// Leave out of `files` (child first) the sweep axes of every file beyond
/// the nearest one that has an axis table of its own. Merged key by key,
/// a parent's grid would add its axes to a child's, or clash with the
/// child's random axes, and a file cannot take a key back out.
fn replace_inherited_axes(files: &mut [SourceFile]) -> Vec<ReplacedAxes> {
    let has_axes = |f: &SourceFile| {
        f.table
            .get("sweep")
            .and_then(toml::Value::as_table)
            .is_some_and(|t| AXIS_TABLES.iter().any(|a| t.contains_key(*a)))
    };
    let Some(by) = files.iter().position(has_axes) else {
        return Vec::new();
    };
    let mut replaced = Vec::new();
    for (file, f) in files.iter_mut().enumerate().skip(by + 1) {
        let Some(sweep) = f.table.get_mut("sweep").and_then(toml::Value::as_table_mut) else {
            continue;
        };
        let mut keys = Vec::new();
        for axes in AXIS_TABLES {
            if let Some(toml::Value::Table(t)) = sweep.remove(axes) {
                keys.extend(
                    t.keys()
                        .map(|k| format!("{axes}.{}", provenance::toml_key(k))),
                );
            }
        }
        if !keys.is_empty() {
            replaced.push(ReplacedAxes { file, by, keys });
        }
    }
    replaced
}

/// A fully resolved experiment and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: ExperimentSpec,
    pub sources: Sources,
}

/// Read an experiment file with its parents and overrides.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    layer(read_chain(path)?, opts)
}

/// An experiment given as text, named `path` in diagnostics, with
/// overrides: a resolved config held in memory (a sweep's, before its
/// trials are planned). Its `extends`, if any, is ignored.
pub fn load_text(path: &Path, text: &str, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| diagnostic::syntax(path, text, &e))?;
    let file = SourceFile {
        path: path.to_path_buf(),
        text: text.to_string(),
        table,
    };
    layer(vec![file], opts)
}

/// `files` (child first) under the environment and `--set` overrides,
/// deserialized into a spec.
fn layer(mut files: Vec<SourceFile>, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let replaced_axes = replace_inherited_axes(&mut files);
    // `--set '~key'` takes its key out of every layer below it.
    let mut removed = vec![false; opts.overrides.len()];
    // The removals from the `i`-th override on.
    let from = |i: usize| {
        opts.overrides
            .iter()
            .enumerate()
            .filter(move |(r, o)| o.remove && *r >= i)
    };
    let mut figment = Figment::new();
    // Farthest ancestor first, so each child overrides its parent.
    for file in files.iter().rev() {
        let mut table = file.table.clone();
        for (r, o) in from(0) {
            removed[r] |= remove_from_table(&mut table, &o.path);
        }
        figment = figment.merge(ParsedFile(file, table));
    }
    let mut env_used = Vec::new();
    // Variables for keys into a list, applied with the `--set` ones below.
    let mut env_into_lists = Vec::new();
    if opts.use_env {
        let gone: Vec<String> = from(0).map(|(_, o)| o.path.join(".")).collect();
        let (env, used, into_lists) = env_layer(&figment, &gone)?;
        for (r, o) in from(0) {
            let key = o.path.join(".");
            removed[r] |= used.iter().any(|(_, k)| under(k, &key));
        }
        env_used = used
            .into_iter()
            .filter(|(_, k)| !gone.iter().any(|r| under(k, r)))
            .collect();
        env_into_lists = into_lists;
        figment = figment.merge(env);
    }
    // Keys into a list (`model.layers.2.units`), by override: applied to
    // the merged value below.
    let mut into_lists: Vec<(usize, Override)> = Vec::new();
    let mut so_far: Option<serde_json::Value> = None;
    for (i, o) in opts.overrides.iter().enumerate().filter(|(_, o)| !o.remove) {
        let merged = match so_far {
            Some(ref v) => v,
            None => so_far.insert(extract(&figment)?),
        };
        let into_list = element::list_depth(merged, &o.path).is_some();
        if o.add && !into_list && variant::value_at(merged, &key_path_of(&o.path)).is_some() {
            return Err(already_set(
                o,
                &o.path,
                &files,
                &env_used,
                &opts.overrides[..i],
            ));
        }
        let mut o = o.clone();
        let mut gone = false;
        for (r, removal) in from(i + 1) {
            if o.path.starts_with(&removal.path) {
                gone = true;
                removed[r] = true;
            } else if let Some(rest) = removal.path.strip_prefix(o.path.as_slice()) {
                removed[r] |= remove_from_value(&mut o.value, rest);
            }
        }
        if gone {
            continue;
        }
        if into_list {
            into_lists.push((i, o));
        } else {
            figment = figment.merge(SetProvider(o));
            so_far = None;
        }
    }

    let mut value = extract(&figment)?;
    let patched = into_list_patches(
        opts,
        env_into_lists,
        into_lists,
        &mut value,
        &mut removed,
        |o, i, list| already_set(o, list, &files, &env_used, &opts.overrides[..i]),
    )?;
    if let Some((_, o)) = opts
        .overrides
        .iter()
        .enumerate()
        .find(|(r, o)| o.remove && !removed[*r])
    {
        return Err(nothing_to_remove(o, &files[0].path, &value));
    }
    let mut sources = Sources {
        files,
        overrides: opts.overrides.clone(),
        env: env_used,
        dropped: Vec::new(),
        patched,
        replaced_axes,
        figment,
    };
    // Each pass either reads the spec, fails, or drops one key.
    let mut spec: ExperimentSpec = loop {
        let err = match serde_path_to_error::deserialize(&value) {
            Ok(spec) => break spec,
            Err(err) => diagnostic::from_serde(&sources, &value, err),
        };
        let dropped = match &err {
            ConfigError::Invalid { path, message, .. } if message.starts_with("unknown key") => {
                variant::leftover(&value, path, |p| sources.origin(p), sources.files.len())
            }
            _ => None,
        };
        match dropped {
            Some(d) if variant::remove(&mut value, &d.path).is_some() => sources.dropped.push(d),
            _ => return Err(err),
        }
    };
    spec.extends = None;
    Ok(Loaded { spec, sources })
}

fn extract(figment: &Figment) -> Result<serde_json::Value, ConfigError> {
    figment.extract().map_err(|e| ConfigError::Layering {
        message: e.to_string(),
    })
}

/// Apply the overrides whose keys reach into a list to the merged `value`,
/// each after every layer that sets the list, in order: `env` (`RUNNER_*`
/// variables), then `sets` (the `--set` flags that are not gone, by index)
/// and every removal that reaches into one, unless a later flag sets or
/// removes the whole list. A removal that takes a key out sets its
/// `removed`; `added` is the error for `+KEY` over a key the element has
/// (the flag, its index, the list's path).
fn into_list_patches(
    opts: &LoadOptions,
    env: Vec<Override>,
    sets: Vec<(usize, Override)>,
    value: &mut serde_json::Value,
    removed: &mut [bool],
    added: impl Fn(&Override, usize, &[String]) -> ConfigError,
) -> Result<Vec<Patched>, ConfigError> {
    let mut sets = sets.into_iter().peekable();
    let flags: Vec<(Option<usize>, Override)> = opts
        .overrides
        .iter()
        .enumerate()
        .filter_map(|(i, given)| match sets.next_if(|(at, _)| *at == i) {
            Some((_, o)) => Some((Some(i), o)),
            None if given.remove => Some((Some(i), given.clone())),
            None => None,
        })
        .collect();
    let mut patched = Vec::new();
    for (index, o) in env.into_iter().map(|o| (None, o)).chain(flags) {
        let Some(depth) = element::list_depth(value, &o.path) else {
            continue;
        };
        let list = &o.path[..depth];
        let later = &opts.overrides[index.map_or(0, |i| i + 1)..];
        let replaced = later.iter().any(|l| {
            list.starts_with(&l.path) && (l.remove || value_has(&l.value, &list[l.path.len()..]))
        });
        // Only a flag removes (a variable sets), so only a flag is marked.
        let mut mark = |took_out: bool| {
            if let Some(i) = index {
                removed[i] |= took_out;
            }
        };
        if replaced {
            mark(o.remove);
            continue;
        }
        let bad = |reason: String| o.error(reason);
        let at = element::resolve(value, &o.path).map_err(bad)?;
        if o.remove {
            mark(element::remove(value, &at).map_err(bad)?);
        } else {
            if let (Some(i), true) = (index, o.add) {
                if variant::value_at(value, &at).is_some() {
                    return Err(added(&o, i, list));
                }
            }
            let new = serde_json::to_value(&o.value).map_err(|e| bad(e.to_string()))?;
            element::set(value, &at, new);
        }
        patched.push(Patched {
            at,
            flag: o.label.clone(),
            remove: o.remove,
        });
    }
    Ok(patched)
}

/// Whether an override's value has a key at `path` inside it.
fn value_has(value: &Value, path: &[String]) -> bool {
    path.iter()
        .try_fold(value, |v, k| match v {
            Value::Dict(_, d) => d.get(k),
            _ => None,
        })
        .is_some()
}

/// Where the runs of the experiment file `path` go, as `runner run` would
/// put them (`runtime.runs_dir`/`experiment.name`, `RUNNER_*` variables
/// applied, relative to the working folder); `None` when `path` does not
/// read as an experiment file. For a command given the file where it
/// wants a run or sweep folder.
pub fn runs_of(path: &Path) -> Option<PathBuf> {
    let opts = LoadOptions {
        overrides: Vec::new(),
        use_env: true,
    };
    let spec = load(path, &opts).ok()?.spec;
    Some(spec.runtime.runs_dir.join(&spec.experiment.name))
}

/// Parse a resolved config text (no `extends`, no overrides), e.g. a run
/// folder's `config.resolved.toml` or a sweep trial's config.
pub fn load_exact(path: &Path) -> Result<Loaded, ConfigError> {
    load(path, &LoadOptions::default())
}

fn read_chain(path: &Path) -> Result<Vec<SourceFile>, ConfigError> {
    let mut files: Vec<SourceFile> = Vec::new();
    let mut next = Some((path.to_path_buf(), None::<(usize, String)>));
    while let Some((path, from)) = next.take() {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                return Err(match from {
                    None => ConfigError::FileMissing {
                        path: path.clone(),
                        reason: io_reason(&e),
                    },
                    Some((child, _)) => {
                        let child = &files[child];
                        diagnostic::extends_error(
                            child,
                            format!(
                                "`extends` points at {}, which cannot be read ({})",
                                path.display(),
                                io_reason(&e)
                            ),
                            Some(
                                "paths in `extends` are relative to the file that contains them"
                                    .into(),
                            ),
                        )
                    }
                });
            }
        };
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| diagnostic::syntax(&path, &text, &e))?;
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if files.iter().any(|f| {
            f.path
                .canonicalize()
                .map(|p| p == canonical)
                .unwrap_or(false)
        }) {
            let chain: Vec<String> = files
                .iter()
                .map(|f| f.path.display().to_string())
                .chain([path.display().to_string()])
                .collect();
            return Err(diagnostic::extends_error(
                files.last().expect("a cycle needs a child"),
                format!("`extends` forms a cycle: {}", chain.join(" -> ")),
                None,
            ));
        }
        let parent = match table.get("extends") {
            None => None,
            Some(toml::Value::String(p)) => {
                let base = path.parent().unwrap_or(Path::new("."));
                Some(base.join(p))
            }
            Some(other) => {
                let found = other.type_str();
                let file = SourceFile {
                    path: path.clone(),
                    text,
                    table: toml::Table::new(),
                };
                return Err(diagnostic::extends_error(
                    &file,
                    format!("`extends` must be a file path string, found {found}"),
                    None,
                ));
            }
        };
        files.push(SourceFile { path, text, table });
        if files.len() > MAX_EXTENDS_DEPTH {
            return Err(diagnostic::extends_error(
                files.last().expect("just pushed"),
                format!("`extends` chain is deeper than {MAX_EXTENDS_DEPTH} files"),
                None,
            ));
        }
        next = parent.map(|p| (p, Some((files.len() - 1, String::new()))));
    }
    Ok(files)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Whether the dotted `key` is `path` or inside it (`model.layers.0.units`
/// is under `model.layers` and `model`, not under `model.lay`).
pub fn under(key: &str, path: &str) -> bool {
    key.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Take the key at `path` out of a file's table; whether it was there.
fn remove_from_table(table: &mut toml::Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    parents
        .iter()
        .try_fold(table, |t, k| {
            t.get_mut(k).and_then(toml::Value::as_table_mut)
        })
        .and_then(|t| t.remove(last))
        .is_some()
}

/// Take the key at `path` out of an override's value; whether it was there.
fn remove_from_value(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let parent = parents.iter().try_fold(value, |v, k| match v {
        Value::Dict(_, d) => d.get_mut(k),
        _ => None,
    });
    match parent {
        Some(Value::Dict(_, d)) => d.remove(last).is_some(),
        _ => false,
    }
}

/// `path` as a [`KeyPath`] of table keys.
fn key_path_of(path: &[String]) -> KeyPath {
    KeyPath(path.iter().map(|k| Seg::Key(k.clone())).collect())
}

/// Whether a file's table sets the key at `path`.
fn table_has(table: &toml::Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    parents
        .iter()
        .try_fold(table, |t, k| t.get(k).and_then(toml::Value::as_table))
        .is_some_and(|t| t.contains_key(last))
}

/// `--set '+key=value'` for a key that a layer below already sets: names
/// that layer, the nearest first. `at` is where a file or variable would
/// set it: the key, or the list holding it.
fn already_set(
    o: &Override,
    at: &[String],
    files: &[SourceFile],
    env_used: &[(String, String)],
    earlier: &[Override],
) -> ConfigError {
    let related = |key: &str, other: &str| under(other, key) || under(key, other);
    let (key, list) = (o.path.join("."), at.join("."));
    let layer = earlier
        .iter()
        .rev()
        .find(|e| !e.remove && related(&key, &e.path.join(".")))
        .map(|e| format!("an earlier `{}`", e.label))
        .or_else(|| {
            env_used
                .iter()
                .find(|(_, k)| related(&list, k))
                .map(|(var, _)| format!("`{var}`"))
        })
        .or_else(|| {
            files
                .iter()
                .find(|f| table_has(&f.table, at))
                .map(|f| f.path.display().to_string())
        })
        .unwrap_or_else(|| "a layer below".into());
    ConfigError::BadOverride {
        raw: o.raw.clone(),
        reason: format!(
            "`{0}` is already set in {layer}, and `+KEY=VALUE` adds only a key that no \
             layer below sets (Hydra's rule; a key at its default is not set): \
             `--set {0}=...` overrides it, `--set ++{0}=...` sets it either way",
            o.key
        ),
    }
}

/// `--set '~key'` for a key no layer below it sets (a typo, or a key that
/// only has its default) over the experiment `file`, with the keys its
/// table does have.
fn nothing_to_remove(o: &Override, file: &Path, merged: &serde_json::Value) -> ConfigError {
    let (last, parents) = o.path.split_last().unwrap_or((&o.key, &[]));
    let parent = element::resolve(merged, parents).unwrap_or_else(|_| key_path_of(parents));
    let keys: Vec<&str> = variant::value_at(merged, &parent)
        .and_then(serde_json::Value::as_object)
        .map(|t| t.keys().map(String::as_str).filter(|k| k != last).collect())
        .unwrap_or_default();
    let hint = diagnostic::did_you_mean(last, &keys)
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    ConfigError::BadOverride {
        raw: o.raw.clone(),
        reason: format!(
            "`{}` is not set in {} (nor a file it extends), a RUNNER_* variable or an \
             earlier --set, so there is nothing to remove (a key that is not set has its \
             default){hint}",
            o.key,
            file.display()
        ),
    }
}

/// `RUNNER_SECTION__KEY=value` variables. Variables without `__` (such as a
/// CI system's `RUNNER_OS`) are not config keys and are left alone; a
/// variable with `__` whose section does not exist is an error. Variables
/// for a key in `removed` (or inside one) are left out.
fn env_provider(removed: &[String]) -> Result<(Env, Vec<(String, String)>), ConfigError> {
    let mut used = Vec::new();
    for (name, _) in std::env::vars() {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let section = key.split('.').next().unwrap_or_default();
        if !TOP_LEVEL_KEYS.contains(&section) {
            return Err(ConfigError::BadEnv {
                name: name.clone(),
                section: section.to_string(),
                help: diagnostic::did_you_mean(section, TOP_LEVEL_KEYS),
            });
        }
        used.push((name, key));
    }
    let removed = removed.to_vec();
    let env = Env::prefixed(ENV_PREFIX).split("__").filter(move |k| {
        let k = k.as_str().to_ascii_lowercase();
        k.contains('.')
            && TOP_LEVEL_KEYS.contains(&k.split('.').next().unwrap_or(""))
            && !removed.iter().any(|r| under(&k, r))
    });
    Ok((env, used))
}

/// What [`env_layer`] gives.
type EnvLayer = (Env, Vec<(String, String)>, Vec<Override>);

/// The `RUNNER_*` variables over the files' `below`, less the keys in
/// `gone` and inside them: their provider, every variable for a config key
/// (name, dotted key, `gone` ones too), and as overrides the variables for
/// a key into a list (`RUNNER_MODEL__LAYERS__0__FILTERS`), which the
/// provider leaves out.
fn env_layer(below: &Figment, gone: &[String]) -> Result<EnvLayer, ConfigError> {
    let (env, used) = env_provider(gone)?;
    if used.is_empty() {
        return Ok((env, used, Vec::new()));
    }
    let merged = extract(below)?;
    let into_lists: Vec<Override> = used
        .iter()
        .filter(|(_, k)| !gone.iter().any(|r| under(k, r)))
        .filter_map(|(var, key)| {
            let o = Override::env(var, key, &std::env::var(var).ok()?);
            element::list_depth(&merged, &o.path).map(|_| o)
        })
        .collect();
    if into_lists.is_empty() {
        return Ok((env, used, into_lists));
    }
    let mut skip = gone.to_vec();
    skip.extend(into_lists.iter().map(|o| o.key.clone()));
    Ok((env_provider(&skip)?.0, used, into_lists))
}

/// A figment provider for a file of the chain, from the table `read_chain`
/// parsed: the same values and metadata as figment's own TOML file
/// provider, without reading and parsing the file a second time.
/// Its table is the file's, less what `--set '~key'` removed.
struct ParsedFile<'a>(&'a SourceFile, toml::Table);

impl Provider for ParsedFile<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.0.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = Value::serialize(&self.1)?
            .into_dict()
            .ok_or_else(|| figment::Error::from("a TOML file is a table".to_string()))?;
        Ok(Profile::Default.collect(dict))
    }
}

/// A figment provider for one `--set` override, named after it so that
/// provenance can say which flag set a value.
struct SetProvider(Override);

impl Provider for SetProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.0.label.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut value = self.0.value.clone();
        let Some((first, rest)) = self.0.path.split_first() else {
            return Ok(Map::new());
        };
        for seg in rest.iter().rev() {
            let mut d = Dict::new();
            d.insert(seg.clone(), value);
            value = Value::from(d);
        }
        let mut dict = Dict::new();
        dict.insert(first.clone(), value);
        Ok(Profile::Default.collect(dict))
    }
}

/// The resolved spec as a TOML table.
pub fn to_table(spec: &ExperimentSpec) -> toml::Table {
    toml::Table::try_from(spec).unwrap_or_default()
}

/// The resolved spec as a TOML document that `runner` can read back.
pub fn to_toml(spec: &ExperimentSpec) -> String {
    provenance::annotated_toml(&to_table(spec), &|_| None)
}

/// Every value of a config table under its key path as `--set` takes it:
/// dotted, the tables of a list by index (`model.layers.2.units`); other
/// lists are one value.
pub fn flatten(table: &toml::Table) -> std::collections::BTreeMap<String, toml::Value> {
    fn walk(
        prefix: &str,
        t: &toml::Table,
        out: &mut std::collections::BTreeMap<String, toml::Value>,
    ) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => walk(&path, inner, out),
                toml::Value::Array(items)
                    if !items.is_empty() && items.iter().all(|i| i.is_table()) =>
                {
                    for (i, item) in items.iter().enumerate() {
                        if let toml::Value::Table(inner) = item {
                            walk(&format!("{path}.{i}"), inner, out);
                        }
                    }
                }
                other => {
                    out.insert(path, other.clone());
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", table, &mut out);
    out
}

impl Loaded {
    /// The resolved config with a note on every value that did not come from
    /// the experiment file (`runner check --show-config`).
    pub fn annotated(&self) -> String {
        let files = &self.sources.files;
        let table = to_table(&self.spec);
        // What `--set '~key'` removed and the resolved config does not have
        // (a table that is off unless present): a line each, on top.
        let mut out = String::new();
        let into_list = |o: &Override| self.sources.patched.iter().any(|p| p.flag == o.label);
        for o in self
            .sources
            .overrides
            .iter()
            .filter(|o| o.remove && !into_list(o))
        {
            let (last, parents) = o.path.split_last().unwrap_or((&o.key, &[]));
            let present = parents
                .iter()
                .try_fold(&table, |t, k| t.get(k).and_then(toml::Value::as_table))
                .is_some_and(|t| t.contains_key(last));
            if !present {
                out.push_str(&format!("# {}: removed by {}\n", o.key, o.label));
            }
        }
        for r in &self.sources.replaced_axes {
            out.push_str(&format!(
                "# sweep axes of {} left out, replaced by those of {}: {}\n",
                files[r.file].path.display(),
                files[r.by].path.display(),
                r.keys.join(", ")
            ));
        }
        out + &provenance::annotated_toml(&table, &|p| {
            // A list is layered whole: inside one, only what a key into it
            // changed has a note of its own.
            if p.0.iter().any(|s| matches!(s, Seg::Index(_))) {
                return provenance::patched(&self.sources, p).and_then(|o| o.note(files));
            }
            let note = self.sources.origin(p).note(files);
            let dropped: Vec<&variant::Dropped> = self
                .sources
                .dropped
                .iter()
                .filter(|d| &d.tag == p)
                .collect();
            let Some(first) = dropped.first() else {
                return note;
            };
            let keys: Vec<String> = dropped
                .iter()
                .map(|d| {
                    let from = d
                        .from
                        .note(files)
                        .unwrap_or_else(|| format!("from {}", files[0].path.display()));
                    let key = match d.path.0.last() {
                        Some(Seg::Key(k)) => k.as_str(),
                        _ => "",
                    };
                    format!("`{key} = {}` ({from})", d.value)
                })
                .collect();
            let dropped = format!(
                "dropped {}, which `{}` does not take",
                keys.join(", "),
                first.variant
            );
            Some(match note {
                Some(n) => format!("{n}; {dropped}"),
                None => dropped,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_use_toml_syntax() {
        let v = |s: &str| Override::parse(&format!("a.b={s}")).unwrap().value;
        assert_eq!(v("1e6").to_f64(), Some(1e6));
        assert_eq!(v("0.3").to_f64(), Some(0.3));
        assert_eq!(v("7").to_i128(), Some(7));
        assert_eq!(v("true").to_bool(), Some(true));
        assert_eq!(v("adam").as_str(), Some("adam"));
        assert_eq!(v("\"x y\"").as_str(), Some("x y"));
        assert_eq!(v("[1, 2]").into_array().map(|a| a.len()), Some(2));
        assert!(Override::parse("novalue").is_err());
    }

    /// `parent.toml` (with early stopping, patience 3) and `child.toml`
    /// (`child_text` below an `extends` of it) in `dir`; the child's path.
    fn parent_and_child(dir: &Path, child_text: &str) -> PathBuf {
        std::fs::write(
            dir.join("parent.toml"),
            "[experiment]\nname = \"p\"\n[data]\nsource = \"synthetic\"\n\
             [model]\ninput_shape = [8, 8, 1]\nlayers = []\n\
             [callbacks.early_stopping]\npatience = 3\n",
        )
        .unwrap();
        let child = dir.join("child.toml");
        std::fs::write(&child, format!("extends = \"parent.toml\"\n{child_text}")).unwrap();
        child
    }

    /// `file` under the `--set` flags `sets`, without `RUNNER_*` variables.
    fn load_with(file: &Path, sets: &[&str]) -> Result<Loaded, ConfigError> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load(file, &LoadOptions::recorded(&sets)?)
    }

    #[test]
    fn a_removal_takes_a_key_out_of_every_layer_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let child = parent_and_child(
            dir.path(),
            "[callbacks.early_stopping]\nmonitor = \"loss\"\n",
        );
        let load = |sets: &[&str]| load_with(&child, sets);
        let patience = KeyPath::parse("callbacks.early_stopping.patience");
        let stop = |l: &Loaded| l.spec.callbacks.early_stopping.clone().unwrap();

        // Out of both files: early stopping is off.
        let l = load(&["~callbacks.early_stopping"]).unwrap();
        assert!(l.spec.callbacks.early_stopping.is_none());
        // Out of the parent and of an earlier --set: the default.
        let l = load(&[
            "callbacks.early_stopping.patience=5",
            "~callbacks.early_stopping.patience",
        ])
        .unwrap();
        assert_eq!(stop(&l).patience, 0);
        assert_eq!(stop(&l).monitor, "loss");
        assert!(l.sources.origin(&patience).is_default());
        // Out of a table an earlier --set gave.
        let l = load(&[
            "callbacks.early_stopping={patience = 5, monitor = \"val_loss\"}",
            "~callbacks.early_stopping.patience",
        ])
        .unwrap();
        assert_eq!(
            (stop(&l).patience, stop(&l).monitor.as_str()),
            (0, "val_loss")
        );
        // A later --set sets it again.
        let l = load(&[
            "~callbacks.early_stopping",
            "callbacks.early_stopping.patience=7",
        ])
        .unwrap();
        assert_eq!(
            (stop(&l).patience, stop(&l).monitor.as_str()),
            (7, "val_loss")
        );
        assert_eq!(
            l.sources
                .origin(&patience)
                .note(&l.sources.files)
                .as_deref(),
            Some("from --set callbacks.early_stopping.patience=7")
        );
        assert_eq!(
            l.sources
                .origin(&KeyPath::parse("callbacks.early_stopping.monitor"))
                .note(&l.sources.files)
                .as_deref(),
            Some("default (--set ~callbacks.early_stopping)")
        );
        // Nothing below sets it (a typo, or only a default): an error.
        for bad in [
            "~callbacks.early_stoping",
            "~callbacks.early_stopping.min_delta",
        ] {
            let e = load(&[bad]).unwrap_err();
            assert!(matches!(e, ConfigError::BadOverride { .. }), "{bad}: {e}");
        }
        let e = load(&[
            "~callbacks.early_stopping.patience",
            "callbacks.early_stopping.patience=1",
        ]);
        assert!(e.is_ok());
        let e = load(&[
            "callbacks.early_stopping.patience=1",
            "~callbacks.early_stopping.patience=1",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("takes no value"), "{e}");
    }

    #[test]
    fn an_addition_refuses_a_key_a_layer_below_sets() {
        let dir = tempfile::tempdir().unwrap();
        let child = parent_and_child(dir.path(), "[model]\ndropout = 0.2\n");
        let load = |sets: &[&str]| load_with(&child, sets);
        // A key only at its default, or a table no layer has: added.
        let l = load(&[
            "+train.epochs=5",
            "+callbacks.reduce_lr_on_plateau={patience = 2}",
        ])
        .unwrap();
        assert_eq!(l.spec.train.epochs, 5);
        assert_eq!(l.spec.callbacks.reduce_lr_on_plateau.unwrap().patience, 2);
        // `++` sets it either way, as a plain --set.
        let l = load(&["++model.dropout=0.4"]).unwrap();
        assert_eq!(l.spec.model.dropout, Some(0.4));
        // Set below: in the file, its parent (inside a table), an earlier
        // --set; each names where.
        for (sets, layer) in [
            (vec!["+model.dropout=0.4"], child.display().to_string()),
            (
                vec!["+callbacks.early_stopping.patience=9"],
                dir.path().join("parent.toml").display().to_string(),
            ),
            (
                vec![
                    "optimizer.learning_rate=0.1",
                    "+optimizer.learning_rate=0.2",
                ],
                "an earlier `--set optimizer.learning_rate=0.1`".into(),
            ),
        ] {
            let e = load(&sets).unwrap_err().to_string();
            assert!(e.contains(&format!("is already set in {layer},")), "{e}");
            assert!(e.contains("`--set ++"), "{e}");
        }
        // Removed below it first: no longer set.
        let l = load(&["~model.dropout", "+model.dropout=0.3"]).unwrap();
        assert_eq!(l.spec.model.dropout, Some(0.3));
        for bad in ["+~model.dropout", "++~model.dropout", "+model.dropout"] {
            assert!(Override::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_into_a_list_changes_one_element_after_every_layer_that_sets_it() {
        use spec::LayerSpec;
        let dir = tempfile::tempdir().unwrap();
        let layers = "[model]\nlayers = [\n\
             { type = \"conv2d\", filters = 4, kernel = 3, activation = \"relu\" },\n\
             { type = \"flatten\" },\n\
             { type = \"dense\", units = 2, name = \"out\" },\n]\n";
        let child = parent_and_child(dir.path(), layers);
        let load = |sets: &[&str]| load_with(&child, sets);
        let filters = |l: &Loaded| match &l.spec.model.layers[0] {
            LayerSpec::Conv2d(c) => (c.filters, c.activation),
            other => panic!("{other:?}"),
        };
        let units = |l: &Loaded| match &l.spec.model.layers[2] {
            LayerSpec::Dense(d) => d.units,
            other => panic!("{other:?}"),
        };

        // By index, from the end, by Keras's name and by the layer's own.
        let l = load(&["model.layers.0.filters=8", "model.layers.-1.units=3"]).unwrap();
        assert_eq!((filters(&l).0, units(&l)), (8, 3));
        let l = load(&["model.layers.conv2d.filters=16", "model.layers.out.units=5"]).unwrap();
        assert_eq!((filters(&l).0, units(&l)), (16, 5));
        // Provenance names the flag for the changed key only.
        let at = |s: &str| KeyPath::parse("model.layers").index(0).key(s);
        let flag = "--set model.layers.conv2d.filters=16".to_string();
        assert_eq!(
            l.sources.origin(&at("filters")),
            provenance::Origin::Set { flag }
        );
        assert_eq!(
            l.sources.origin(&at("kernel")),
            provenance::Origin::File { index: 0 }
        );
        let shown = l.annotated();
        assert!(shown.contains("filters = 16  # from --set model.layers.conv2d.filters=16\n"));
        assert!(shown.contains("kernel = 3\n"), "{shown}");

        // In order: a later key into the list wins; a later whole list
        // replaces what an earlier key into it did; a removal returns the
        // key to its default.
        let l = load(&["model.layers.0.filters=8", "model.layers.0.filters=9"]).unwrap();
        assert_eq!(filters(&l).0, 9);
        let whole = "model.layers=[{type = \"flatten\"}, {type = \"dense\", units = 7}, \
                     {type = \"dense\", units = 2}]";
        let l = load(&["model.layers.1.units=8", whole]).unwrap();
        assert!(matches!(&l.spec.model.layers[1], LayerSpec::Dense(d) if d.units == 7));
        let l = load(&[whole, "model.layers.1.units=8"]).unwrap();
        assert!(matches!(&l.spec.model.layers[1], LayerSpec::Dense(d) if d.units == 8));
        let l = load(&["~model.layers.0.activation"]).unwrap();
        assert_eq!(filters(&l).1, spec::Activation::Linear);
        let l = load(&[
            "~model.layers.0.activation",
            "model.layers.0.activation=\"tanh\"",
        ]);
        assert_eq!(filters(&l.unwrap()).1, spec::Activation::Tanh);

        // `+` adds only a key the element does not have.
        assert!(load(&["+model.layers.1.name=\"flat\""]).is_ok());
        let e = load(&["+model.layers.out.units=4"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("is already set in {},", child.display())),
            "{e}"
        );
        let e = load(&[
            "model.layers.0.use_bias=false",
            "+model.layers.0.use_bias=true",
        ]);
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("an earlier `--set model.layers.0.use_bias=false`"),
            "{e}"
        );

        // A key choosing no element, or taking a whole one out: errors.
        let e = load(&["model.layers.3.units=4"]).unwrap_err().to_string();
        assert!(e.contains("it has 3 elements: 0 to 2 (or -3 to -1)"), "{e}");
        let e = load(&["model.layers.dens.units=4"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("or a layer's name: conv2d, flatten, out"), "{e}");
        assert!(load(&["~model.layers.1"]).is_err());
        let e = load(&["~model.layers.0.stride"]).unwrap_err().to_string();
        assert!(e.contains("nothing to remove"), "{e}");
        // A digit that does not index a list is a key, as in a table of
        // class weights.
        let l = load(&["train.class_weight.3=2.0"]).unwrap();
        let weights = match l.spec.train.class_weight {
            Some(spec::ClassWeightSpec::ByName(w)) => w,
            other => panic!("{other:?}"),
        };
        assert_eq!(weights["3"], 2.0);
    }

    #[test]
    fn a_file_with_sweep_axes_replaces_those_of_the_files_it_extends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("grand.toml"),
            "[experiment]\nname = \"g\"\n[data]\nsource = \"synthetic\"\n\
             [model]\ninput_shape = [8, 8, 1]\nlayers = []\n\
             [sweep]\nparallel = 3\n[sweep.zip]\n\"train.epochs\" = [1, 2]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("parent.toml"),
            "extends = \"grand.toml\"\n[sweep]\nmetric = \"val_loss\"\n[sweep.grid]\n\
             \"model.dropout\" = [0.1, 0.2]\n\"optimizer.learning_rate\" = [1e-3, 1e-2]\n",
        )
        .unwrap();
        let write_child = |text: &str| {
            let child = dir.path().join("child.toml");
            std::fs::write(&child, format!("extends = \"parent.toml\"\n{text}")).unwrap();
            load_with(&child, &[]).unwrap()
        };

        // Axes of its own: the parents' axes are left out, the other sweep
        // keys still merge.
        let l = write_child(
            "[sweep]\nstrategy = \"random\"\ntrials = 4\n[sweep.random]\n\
             \"optimizer.learning_rate\" = { distribution = \"log_uniform\", low = 1e-4, high = 1e-1 }\n",
        );
        let sweep = l.spec.sweep.clone().unwrap();
        assert!(sweep.grid.is_empty() && sweep.zip.is_empty());
        assert_eq!(
            sweep.random.keys().collect::<Vec<_>>(),
            ["optimizer.learning_rate"]
        );
        assert_eq!(
            (sweep.parallel, sweep.metric.as_str()),
            (Some(3), "val_loss")
        );
        let shown = l.annotated();
        let note = |file: &str, keys: &str| {
            format!(
                "# sweep axes of {} left out, replaced by those of {}: {keys}\n",
                dir.path().join(file).display(),
                dir.path().join("child.toml").display()
            )
        };
        assert!(
            shown.contains(&note(
                "parent.toml",
                "grid.\"model.dropout\", grid.\"optimizer.learning_rate\""
            )),
            "{shown}"
        );
        assert!(
            shown.contains(&note("grand.toml", "zip.\"train.epochs\"")),
            "{shown}"
        );

        // No axes of its own: the nearest file with axes gives them all.
        let l = write_child("[sweep]\nparallel = 2\n");
        let sweep = l.spec.sweep.clone().unwrap();
        assert_eq!(
            sweep.grid.keys().collect::<Vec<_>>(),
            ["model.dropout", "optimizer.learning_rate"]
        );
        assert!(sweep.zip.is_empty());
        assert_eq!(sweep.parallel, Some(2));
        assert_eq!(
            l.sources
                .replaced_axes
                .iter()
                .map(|r| (r.file, r.by))
                .collect::<Vec<_>>(),
            [(2, 1)]
        );

        // `--set` still adds an axis to the file's.
        let child = dir.path().join("child.toml");
        let l = load_with(&child, &["sweep.grid.\"train.batch_size\"=[8, 16]"]).unwrap();
        assert_eq!(l.spec.sweep.unwrap().grid.len(), 3);
    }

    #[test]
    fn set_keys_read_as_toml_dotted_keys() {
        let path = |s: &str| Override::parse(&format!("{s}=1")).map(|o| o.path);
        assert_eq!(
            path("optimizer.learning_rate").unwrap(),
            ["optimizer", "learning_rate"]
        );
        assert_eq!(
            path("sweep.grid.\"optimizer.learning_rate\"").unwrap(),
            ["sweep", "grid", "optimizer.learning_rate"]
        );
        assert_eq!(
            path("sweep . grid.'model.dropout'").unwrap(),
            ["sweep", "grid", "model.dropout"]
        );
        // Not TOML, but a path: split at its dots, as before.
        assert_eq!(
            path("train.class_weight.my class").unwrap(),
            ["train", "class_weight", "my class"]
        );
        for bad in ["", "a..b", ".a", "a.", "sweep.grid.\"open", " . "] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
    }
}
