//! Config errors that point at the file, line and key that caused them, with
//! a "did you mean" where one fits. Rendering (miette's report) happens only
//! at the CLI edge; these types just carry the context.

use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource, SourceSpan};
use thiserror::Error;
use toml::de::{DeTable, DeValue};

use super::key_path::{KeyPath, Seg};
use super::provenance::Origin;
use super::variant::{tag_of, value_at, variants, variants_taking};
use super::{SourceFile, Sources};

/// Everything that can be wrong with an experiment before any compute starts.
#[derive(Debug, Error, Diagnostic)]
pub enum ConfigError {
    #[error("cannot read experiment file {}: {reason}", path.display())]
    #[diagnostic(code(runner::config::file))]
    FileMissing { path: PathBuf, reason: String },

    /// A folder given as the experiment file: `reason` says what it is.
    #[error("{} is not an experiment file: {reason}", path.display())]
    #[diagnostic(code(runner::config::file))]
    NotAFile { path: PathBuf, reason: String },

    #[error("{location}: TOML syntax error: {message}")]
    #[diagnostic(code(runner::config::syntax))]
    Syntax {
        location: String,
        message: String,
        #[source_code]
        src: NamedSource<String>,
        #[label("here")]
        span: Option<SourceSpan>,
    },

    /// A key or value that is wrong, located where it was set.
    #[error("{location}: {message}")]
    #[diagnostic(code(runner::config::invalid))]
    Invalid {
        /// `file:line:col`, or the variable / flag that set the value.
        location: String,
        path: KeyPath,
        message: String,
        #[source_code]
        src: Option<NamedSource<String>>,
        #[label("{label}")]
        span: Option<SourceSpan>,
        label: String,
        #[help]
        help: Option<String>,
    },

    #[error("bad --set override `{raw}`: {reason}")]
    #[diagnostic(code(runner::config::set))]
    BadOverride { raw: String, reason: String },

    #[error("bad sweep axis `{axis}`: {reason}")]
    #[diagnostic(code(runner::config::axis))]
    BadAxis { axis: String, reason: String },

    #[error("environment variable {name} names an unknown config section `{section}`")]
    #[diagnostic(
        code(runner::config::env),
        help("{}", help.clone().unwrap_or_else(|| "sections are: experiment, runtime, data, augment, model, optimizer, train, callbacks, sweep".into()))
    )]
    BadEnv {
        name: String,
        section: String,
        help: Option<String>,
    },

    #[error("cannot combine the config layers: {message}")]
    #[diagnostic(code(runner::config::layers))]
    Layering { message: String },
}

impl ConfigError {
    /// The key path the error is about, if any.
    pub fn key_path(&self) -> Option<&KeyPath> {
        match self {
            ConfigError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// "did you mean `x`?" for the closest candidate, if one is close enough.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    closest(word, candidates).map(|best| format!("did you mean `{best}`?"))
}

/// The candidate closest to `word`, if one is close enough to be a typo of
/// it.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
        .or_else(|| {
            candidates
                .iter()
                .map(|c| (strsim::damerau_levenshtein(word, c), *c))
                .filter(|(d, c)| *d <= 2 && *d < c.len())
                .min_by_key(|(d, _)| *d)
                .map(|(_, c)| c)
        })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|p| offset - p).unwrap_or(offset + 1);
    (line, col)
}

fn file_location(path: &Path, text: &str, span: Option<&Range<usize>>) -> String {
    match span {
        Some(s) => {
            let (line, col) = line_col(text, s.start);
            format!("{}:{line}:{col}", path.display())
        }
        None => path.display().to_string(),
    }
}

pub(super) fn syntax(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let span = err.span();
    ConfigError::Syntax {
        location: file_location(path, text, span.as_ref()),
        message: err.message().trim().to_string(),
        src: NamedSource::new(path.display().to_string(), text.to_string()),
        span: span.map(|s| s.into()),
    }
}

pub(super) fn extends_error(
    file: &SourceFile,
    message: String,
    help: Option<String>,
) -> ConfigError {
    let span = find_span(&file.text, &KeyPath::parse("extends"), SpanOf::Value);
    invalid_in_file(
        file,
        span,
        KeyPath::parse("extends"),
        message,
        "here".into(),
        help,
    )
}

fn invalid_in_file(
    file: &SourceFile,
    span: Option<Range<usize>>,
    path: KeyPath,
    message: String,
    label: String,
    help: Option<String>,
) -> ConfigError {
    ConfigError::Invalid {
        location: file_location(&file.path, &file.text, span.as_ref()),
        path,
        message,
        src: Some(NamedSource::new(
            file.path.display().to_string(),
            file.text.clone(),
        )),
        span: span.map(|s| s.into()),
        label,
        help,
    }
}

/// Which part of a `key = value` line an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanOf {
    Key,
    Value,
}

/// Build an error for `path`, located where `origin` says the value was set.
pub(super) fn located(
    origin: &Origin,
    files: &[SourceFile],
    path: KeyPath,
    message: String,
    help: Option<String>,
) -> ConfigError {
    located_with(
        origin,
        files,
        path,
        message,
        help,
        SpanOf::Value,
        "this value",
    )
}

fn located_with(
    origin: &Origin,
    files: &[SourceFile],
    path: KeyPath,
    message: String,
    help: Option<String>,
    of: SpanOf,
    label: &str,
) -> ConfigError {
    match origin {
        Origin::File { index } => {
            let file = &files[*index];
            let span = find_nearest_span(&file.text, &path, of);
            invalid_in_file(file, span, path, message, label.to_string(), help)
        }
        Origin::Default => {
            let file = &files[0];
            let span = find_nearest_span(&file.text, &path, of);
            invalid_in_file(file, span, path, message, label.to_string(), help)
        }
        Origin::Env { var } => ConfigError::Invalid {
            location: format!("environment variable {var}"),
            path,
            message,
            src: None,
            span: None,
            label: label.to_string(),
            help,
        },
        Origin::Set { flag } | Origin::Removed { flag } => ConfigError::Invalid {
            location: flag.clone(),
            path,
            message,
            src: None,
            span: None,
            label: label.to_string(),
            help,
        },
    }
}

/// The span of `path` in `text`, or of its nearest enclosing key.
fn find_nearest_span(text: &str, path: &KeyPath, of: SpanOf) -> Option<Range<usize>> {
    let mut p = path.clone();
    let mut of = of;
    loop {
        if let Some(s) = find_span(text, &p, of) {
            return Some(s);
        }
        p.0.pop()?;
        of = SpanOf::Key;
        if p.0.is_empty() {
            return None;
        }
    }
}

/// The span of the key or value at `path` in a TOML text.
pub fn find_span(text: &str, path: &KeyPath, of: SpanOf) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable = root.get_ref();
    let mut current: Option<(&toml::Spanned<toml::de::DeString>, &toml::Spanned<DeValue>)> = None;
    let mut array_item: Option<&toml::Spanned<DeValue>> = None;
    for seg in &path.0 {
        match seg {
            Seg::Key(k) => {
                if let Some(item) = array_item.take() {
                    table = match item.get_ref() {
                        DeValue::Table(t) => t,
                        _ => return None,
                    };
                } else if let Some((_, v)) = current {
                    table = match v.get_ref() {
                        DeValue::Table(t) => t,
                        _ => return None,
                    };
                }
                current = Some(table.get_key_value(k.as_str())?);
            }
            Seg::Index(i) => {
                let (_, v) = current?;
                let item = match v.get_ref() {
                    DeValue::Array(a) => a.get(*i)?,
                    _ => return None,
                };
                array_item = Some(item);
            }
        }
    }
    if let Some(item) = array_item {
        // An array element: for an array of tables, point at its first key.
        return match item.get_ref() {
            DeValue::Table(t) => t
                .iter()
                .map(|(k, _)| k.span())
                .min_by_key(|s| s.start)
                .or_else(|| Some(item.span())),
            _ => Some(item.span()),
        };
    }
    let (k, v) = current?;
    Some(match of {
        SpanOf::Key => k.span(),
        SpanOf::Value => match v.get_ref() {
            // A table's or a multi-line array's span covers its whole body;
            // the key is more useful.
            DeValue::Table(_) => k.span(),
            DeValue::Array(_) if text.get(v.span()).is_some_and(|t| t.contains('\n')) => k.span(),
            _ => v.span(),
        },
    })
}

/// Help for an unknown key `field` in the table at `parent`, which takes
/// the keys `candidates`: a value naming a variant (`name = "sgd"`) points
/// at the tag; a key Keras or Lightning users write there gets runner's
/// ([`super::foreign`]); a key of other variants names them; else a "did
/// you mean".
fn unknown_key_help(
    merged: &serde_json::Value,
    parent: &KeyPath,
    field: &str,
    candidates: &[&str],
) -> String {
    let accepted = if candidates.is_empty() {
        "it accepts no keys".to_string()
    } else {
        format!("valid keys here: {}", candidates.join(", "))
    };
    let (tag, noun) = tag_of(parent);
    let named = value_at(merged, &parent.clone().key(field))
        .and_then(|v| v.as_str())
        .filter(|v| variants(merged, parent).is_some_and(|(_, all)| all.iter().any(|a| a == v)));
    if let Some(v) = named {
        return format!(
            "`{field} = \"{v}\"`: `{v}` is one of the {noun}s; did you mean \
             `{tag} = \"{v}\"`? ({accepted})"
        );
    }
    if let Some(h) = super::foreign::help(&parent.to_string(), field) {
        return format!("{h} ({accepted})");
    }
    let elsewhere = variants_taking(merged, parent, field);
    if !elsewhere.is_empty() {
        let now = value_at(merged, &parent.clone().key(tag))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let names: Vec<String> = elsewhere.iter().map(|v| format!("`{v}`")).collect();
        return format!(
            "`{field}` is a key of {noun} {}; `{}` here is `{now}` ({accepted})",
            names.join(" or "),
            parent.clone().key(tag)
        );
    }
    match did_you_mean(field, candidates) {
        Some(h) => format!("{h} ({accepted})"),
        None => accepted,
    }
}

/// Turn a serde error from reading the merged config into a located error.
pub(super) fn from_serde(
    sources: &Sources,
    merged: &serde_json::Value,
    err: serde_path_to_error::Error<serde_json::Error>,
) -> ConfigError {
    let (mut path, raw) = super::tagged::error_at(&err);
    let context = section_context(merged, &path);

    if let Some((field, expected)) = parse_unknown(&raw, "unknown field") {
        if path.0.last() != Some(&Seg::Key(field.clone())) {
            path.0.push(Seg::Key(field.clone()));
        }
        let parent = KeyPath(path.0[..path.0.len() - 1].to_vec());
        let candidates: Vec<&str> = expected.iter().map(String::as_str).collect();
        let help = unknown_key_help(merged, &parent, &field, &candidates);
        let where_ = if parent.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in `{parent}`{}", section_context(merged, &parent))
        };
        let origin = sources_origin(sources, &path);
        return located_with(
            &origin,
            &sources.files,
            path.clone(),
            format!("unknown key `{field}` {where_}"),
            Some(help),
            SpanOf::Key,
            "unknown key",
        );
    }
    if let Some((variant, expected)) = parse_unknown(&raw, "unknown variant") {
        let candidates: Vec<&str> = expected.iter().map(String::as_str).collect();
        let help = Some(match did_you_mean(&variant, &candidates) {
            Some(h) => format!("{h} (one of: {})", candidates.join(", ")),
            None => format!("expected one of: {}", candidates.join(", ")),
        });
        // A tagged table reports the tag's value; point at the tag key.
        let tagged = value_at(merged, &path)
            .map(|v| v.is_object())
            .unwrap_or(false);
        let (at, message) = if tagged {
            let (tag, noun) = tag_of(&path);
            (
                path.clone().key(tag),
                format!("unknown {noun} `{variant}` in `{path}`"),
            )
        } else {
            (
                path.clone(),
                format!("unknown value `{variant}` for `{path}`{context}"),
            )
        };
        let origin = sources_origin(sources, &at);
        return located_with(
            &origin,
            &sources.files,
            at,
            message,
            help,
            SpanOf::Value,
            "not a known value",
        );
    }
    if let Some((field, variants)) = parse_unknown(&raw, "missing field") {
        let message = if path.is_empty() {
            format!("missing required table or key `{field}`")
        } else {
            format!("missing required key `{field}` in `{path}`{context}")
        };
        // A tagged table without its tag: the variants it can name.
        let help = (!variants.is_empty()).then(|| {
            let table = value_at(merged, &path).and_then(|v| v.as_object());
            missing_tag_help(&field, &variants, table)
        });
        let full = path.clone().key(&field);
        let origin = sources_origin(sources, &full);
        return located_with(
            &origin,
            &sources.files,
            full,
            message,
            help,
            SpanOf::Key,
            "required key missing here",
        );
    }
    // Wrong types and values: serde says what it found and what it expected.
    let message = plain_types(
        &raw.replace("invalid type: ", "wrong type: found ")
            .replace("invalid value: ", "invalid value: found ")
            .replace("invalid length ", "wrong number of values: found "),
    );
    let origin = sources_origin(sources, &path);
    located_with(
        &origin,
        &sources.files,
        path.clone(),
        format!("`{path}`{context}: {message}"),
        None,
        SpanOf::Value,
        "this value",
    )
}

/// serde names Rust types ("expected f64"); users wrote TOML.
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, plain) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
        ("floating point `", "number `"),
        ("integer `", "whole number `"),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

fn sources_origin(sources: &Sources, path: &KeyPath) -> Origin {
    super::provenance::origin(sources, path, true)
}

/// `(name, expected)` from serde's "unknown field `x`, expected one of `a`, `b`".
fn parse_unknown(raw: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = raw.strip_prefix(prefix)?.trim_start();
    let rest = rest.strip_prefix('`')?;
    let (name, tail) = rest.split_once('`')?;
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((name.to_string(), expected))
}

/// Help for a table without its tag `tag`: the key or the value in it
/// that names one of the `variants` (`{ uniform = [0, 1] }`, `kind =
/// "conv2d"`), else the variants.
fn missing_tag_help(
    tag: &str,
    variants: &[String],
    table: Option<&serde_json::Map<String, serde_json::Value>>,
) -> String {
    let one_of = format!("`{tag}` is one of: {}", variants.join(", "));
    let names = |s: &str| variants.iter().any(|v| v == s);
    let entries = || table.into_iter().flatten();
    if let Some((key, _)) = entries().find(|(k, _)| names(k)) {
        return format!(
            "did you mean `{tag} = \"{key}\"`? `{key}` is a value of `{tag}` here, not a key ({one_of})"
        );
    }
    if let Some((key, value)) =
        entries().find_map(|(k, v)| v.as_str().filter(|s| names(s)).map(|s| (k, s)))
    {
        return format!(
            "did you mean `{tag} = \"{value}\"` rather than `{key} = \"{value}\"`? ({one_of})"
        );
    }
    one_of
}

/// " (layer 6 of the model: dropout)" for paths into the layer list.
fn section_context(merged: &serde_json::Value, path: &KeyPath) -> String {
    match path.0.as_slice() {
        [Seg::Key(m), Seg::Key(l), Seg::Index(i), ..] if m == "model" && l == "layers" => {
            let ty = value_at(merged, &KeyPath(path.0[..3].to_vec()))
                .and_then(|v| v.get("type"))
                .and_then(|t| t.as_str());
            match ty {
                Some(t) => format!(" (layer {i} of the model, `{t}`)"),
                None => format!(" (layer {i} of the model)"),
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_display() {
        let p = KeyPath::parse("model.layers").index(3).key("rate");
        assert_eq!(p.to_string(), "model.layers[3].rate");
        let p = KeyPath::parse("sweep.grid").key("model.dropout");
        assert_eq!(p.to_string(), "sweep.grid.\"model.dropout\"");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("porb", &["rate", "prob"]).as_deref(),
            Some("did you mean `prob`?")
        );
        assert_eq!(
            did_you_mean("dropuot", &["dropout", "dense"]).as_deref(),
            Some("did you mean `dropout`?")
        );
        assert_eq!(did_you_mean("zzzzzz", &["rate", "name"]), None);
    }

    #[test]
    fn spans_of_keys_in_arrays_of_tables() {
        let text = "[model]\ninput_shape = [1, 2, 3]\n\n[[model.layers]]\ntype = \"flatten\"\n\n[[model.layers]]\ntype = \"dropout\"\nrate = 1.5\n";
        let p = KeyPath::parse("model.layers").index(1).key("rate");
        let span = find_span(text, &p, SpanOf::Value).unwrap();
        assert_eq!(&text[span.clone()], "1.5");
        assert_eq!(line_col(text, span.start), (9, 8));
        let p = KeyPath::parse("model.input_shape");
        assert_eq!(
            &text[find_span(text, &p, SpanOf::Key).unwrap()],
            "input_shape"
        );
    }

    #[test]
    fn a_missing_tag_is_found_in_a_key_or_a_value() {
        let variants: Vec<String> = ["uniform", "log_uniform", "int", "choice"]
            .map(String::from)
            .to_vec();
        let table = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let t = table(serde_json::json!({ "uniform": [0.0, 0.5] }));
        assert_eq!(
            missing_tag_help("distribution", &variants, Some(&t)),
            "did you mean `distribution = \"uniform\"`? `uniform` is a value of `distribution` here, \
             not a key (`distribution` is one of: uniform, log_uniform, int, choice)"
        );
        let t = table(serde_json::json!({ "low": 1, "kind": "int", "high": 4 }));
        assert_eq!(
            missing_tag_help("distribution", &variants, Some(&t)),
            "did you mean `distribution = \"int\"` rather than `kind = \"int\"`? \
             (`distribution` is one of: uniform, log_uniform, int, choice)"
        );
        let t = table(serde_json::json!({ "low": 1, "high": 4 }));
        assert_eq!(
            missing_tag_help("distribution", &variants, Some(&t)),
            "`distribution` is one of: uniform, log_uniform, int, choice"
        );
        assert_eq!(
            missing_tag_help("distribution", &variants, None),
            "`distribution` is one of: uniform, log_uniform, int, choice"
        );
        // serde's own message for a missing struct field names no variants.
        let (f, e) = parse_unknown("missing field `name`", "missing field").unwrap();
        assert_eq!((f.as_str(), e.len()), ("name", 0));
    }

    #[test]
    fn parse_serde_unknown_messages() {
        let (f, e) = parse_unknown(
            "unknown field `porb`, expected `rate` or `name`",
            "unknown field",
        )
        .unwrap();
        assert_eq!(f, "porb");
        assert_eq!(e, vec!["rate", "name"]);
        let (f, e) =
            parse_unknown("unknown field `x`, there are no fields", "unknown field").unwrap();
        assert_eq!(f, "x");
        assert!(e.is_empty());
    }
}
