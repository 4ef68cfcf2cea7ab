//! `docs/config.md` against the specs: every key the specs accept is
//! documented, with the default the code gives it, and nothing else is.
//!
//! The code side is derived from the specs themselves, not from a list:
//! a few minimal experiments ([`BASE`] and [`FIXTURES`]) are deserialized and
//! serialized back (as `runner check --show-config` does), and every table in
//! the result is probed:
//!
//! - its keys: an unknown key `__probe__` makes serde list every field the
//!   table accepts (`deny_unknown_fields`); a table that takes any key is a
//!   map (`sweep.random`) and its entries are probed instead;
//! - its variant: a key in the table that is not a field is the enum's tag
//!   (`type`, `source`, `distribution`); setting it to `__probe__` makes
//!   serde list every variant;
//! - each key's default: the value the serialized spec holds when the input
//!   leaves the key out, or none when it leaves it out of the output too;
//! - required keys: every key a fixture writes is removed in turn; it is
//!   required when the experiment then fails with "missing field". A fixture
//!   may write other keys only to instantiate a table; one that writes a
//!   value with a default is itself reported, so no default hides behind it.
//!
//! A table documented only by its heading (`### [callbacks.early_stopping]`)
//! has its default checked through the heading's "(off unless ...)" or
//! "(always on)", when it says either.
//!
//! The docs side reads the markdown: headings name tables (`[callbacks.checkpoint]`,
//! `[[model.layers]]`) or variants (`source = "idx"`); `| key | default | meaning |`
//! tables list keys (a dotted key such as `normalize.mean` is a key of a
//! sub-table); ``| `type` | keys (default) |`` tables list each variant's
//! keys as `` `key` (`default`, remarks) ``, a key without parentheses having
//! no default. A default is the first backticked TOML value of its cell, or
//! one of the words in [`WORDS`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::spec::ExperimentSpec;

const DOCS: &str = include_str!("../../docs/config.md");
const PROBE: &str = "__probe__";

/// Keys the code takes out of a table before serde reads the rest, so that
/// no probe lists them: (the table's normalized path, the key). Each is
/// recorded as a key of that table whatever its variant (the docs document
/// it in a `| key | default | meaning |` table under the table's heading).
/// `when` of a `[sweep.random]` axis is removed before its distribution is
/// read (`RandomCaseSpec` in spec.rs).
const OUTSIDE_SERDE: &[(&str, &str)] = &[("sweep.random", "when")];

/// The smallest experiment: only what is required.
const BASE: &str = r#"
[experiment]
name = "docs"

[data]
source = "synthetic"

[model]
input_shape = [8, 8, 1]
layers = []
"#;

/// Merged over [`BASE`] one at a time (tables merge, other values replace).
/// Together they instantiate every optional table and every variant; each
/// writes only required keys and the tables it instantiates.
const FIXTURES: &[&str] = &[
    "",
    r#"
[data]
source = "image_folder"
path = "images"

[augment.normalize]
mean = [0.5]
std = [0.5]

[model]
layers = [
    { type = "conv2d", filters = 1, kernel = 3 },
    { type = "max_pool2d" },
    { type = "avg_pool2d" },
    { type = "global_avg_pool2d" },
    { type = "dropout" },
    { type = "flatten" },
    { type = "dense", units = 1 },
    { type = "batch_norm" },
    { type = "activation", activation = "relu" },
]

[optimizer]
type = "adam"

[callbacks.early_stopping]

[callbacks.reduce_lr_on_plateau]

[callbacks.lr_schedule]
type = "constant"

[sweep.random]
a = { distribution = "uniform", low = 0.0, high = 1.0, when = { d = 1 } }
b = { distribution = "log_uniform", low = 0.001, high = 1.0 }
c = [{ distribution = "int", low = 0, high = 1, when = { d = 1 } }]
d = { distribution = "choice", values = [1] }

[sweep.grid]
e = { values = [1], when = { f = 1 } }
f = [1]

[sweep.early_stop]
type = "asha"

[sweep.tpe]
"#,
    r#"
[data]
source = "food101"
path = "food-101"

[optimizer]
type = "adamw"

[callbacks.lr_schedule]
type = "step"
step_size = 1

[sweep.launcher]
type = "slurm"

[sweep.early_stop]
type = "hyperband"
"#,
    r#"
[data]
source = "idx"
path = "mnist"

[optimizer]
type = "sgd"

[callbacks.lr_schedule]
type = "cosine"
"#,
];

/// Default cells that are words rather than TOML values. `Absent`: the key
/// has no value unless written (an `Option` that is `None`); what the words
/// say it then means is up to the code that reads it.
const WORDS: &[(&str, Word)] = &[
    ("required", Word::Required),
    ("none", Word::Absent),
    ("all", Word::Absent),
    ("by device", Word::Absent),
    ("required for random and tpe", Word::Absent),
    ("the pool size", Word::Absent),
    ("experiment.seed", Word::Absent),
    ("train.epochs", Word::Absent),
    ("model.dropout", Word::Absent),
];

#[derive(Debug, Clone, Copy)]
enum Word {
    Required,
    Absent,
}

/// What a key is when it is not written.
#[derive(Debug, Clone, PartialEq)]
enum Def {
    Required,
    /// Left out of the resolved config: no value.
    Absent,
    Value(Value),
}

impl std::fmt::Display for Def {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Def::Required => f.write_str("required"),
            Def::Absent => f.write_str("none"),
            Def::Value(v) => write!(f, "`{v}`"),
        }
    }
}

// ------------------------------------------------------------ code side

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

fn at_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

fn join(site: &str, key: &str) -> String {
    if site.is_empty() {
        key.to_string()
    } else {
        format!("{site}.{key}")
    }
}

/// Deserialize an experiment and serialize it back, as the resolved config.
fn resolve(input: &Value) -> Result<Value, String> {
    let spec: ExperimentSpec = serde_json::from_value(input.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(super::to_table(&spec)).map_err(|e| e.to_string())
}

/// The backticked names after `marker` in a serde message: "unknown field
/// `__probe__`, expected one of `a`, `b`" gives `a`, `b`; "there are no
/// fields" gives none.
fn listed_after(msg: &str, marker: &str) -> Option<Vec<String>> {
    let rest = &msg[msg.find(marker)? + marker.len()..];
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect(),
    )
}

fn is_tableish(v: &Value) -> bool {
    match v {
        Value::Object(_) => true,
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    }
}

#[derive(Debug, Default)]
struct CodeKey {
    required: bool,
    /// The default seen in each fixture that leaves the key out.
    defaults: Vec<Option<Value>>,
    tableish: bool,
}

impl CodeKey {
    /// Fixtures disagree: required in one, defaulted in another, or two
    /// different defaults.
    fn conflict(&self) -> bool {
        (self.required && !self.defaults.is_empty())
            || self.defaults.windows(2).any(|w| w[0] != w[1])
    }

    fn def(&self) -> Def {
        if self.required {
            return Def::Required;
        }
        match self.defaults.first() {
            Some(Some(v)) => Def::Value(v.clone()),
            _ => Def::Absent,
        }
    }
}

#[derive(Debug, Default)]
struct CodeSite {
    fields: Vec<String>,
    keys: BTreeMap<String, CodeKey>,
}

#[derive(Debug, Default)]
struct CodeTag {
    name: String,
    variants: Vec<String>,
    /// The variant used when the whole table is left out, if it may be.
    default: Option<String>,
}

#[derive(Debug, Default)]
struct Code {
    /// Normalized table path (`model.layers{type=conv2d}`) -> its keys.
    sites: BTreeMap<String, CodeSite>,
    /// Path of a tagged table (`model.layers`) -> its tag.
    tags: BTreeMap<String, CodeTag>,
    problems: Vec<String>,
}

impl Code {
    fn gather() -> Code {
        let mut code = Code::default();
        let base: toml::Table = match toml::from_str(BASE) {
            Ok(t) => t,
            Err(e) => panic!("BASE is not TOML: {e}"),
        };
        for (n, fixture) in FIXTURES.iter().enumerate() {
            let fragment: toml::Table = match toml::from_str(fixture) {
                Ok(t) => t,
                Err(e) => panic!("FIXTURES[{n}] is not TOML: {e}"),
            };
            let mut input = base.clone();
            merge(&mut input, fragment);
            let input = serde_json::to_value(&input).expect("a TOML table is JSON");
            match resolve(&input) {
                Ok(resolved) if resolve(&resolved).as_ref() != Ok(&resolved) => code.problems.push(
                    format!("FIXTURES[{n}]: the resolved config does not read back as itself"),
                ),
                Ok(resolved) => {
                    let mut walk = Walk {
                        code: &mut code,
                        fixture: n,
                        input: &input,
                        resolved: &resolved,
                    };
                    walk.table(&[], "");
                }
                Err(e) => code
                    .problems
                    .push(format!("FIXTURES[{n}] does not load: {e}")),
            }
        }
        code
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

struct Walk<'a> {
    code: &'a mut Code,
    fixture: usize,
    input: &'a Value,
    resolved: &'a Value,
}

impl Walk<'_> {
    fn problem(&mut self, msg: String) {
        self.code
            .problems
            .push(format!("FIXTURES[{}]: {msg}", self.fixture));
    }

    /// Probe the table at `path` of the resolved config; `base` is its
    /// normalized path without a variant.
    fn table(&mut self, path: &[Seg], base: &str) {
        let Some(Value::Object(table)) = at(self.resolved, path) else {
            return;
        };
        // Which keys does it accept?
        let mut probed = self.resolved.clone();
        if let Some(Value::Object(t)) = at_mut(&mut probed, path) {
            t.insert(PROBE.into(), Value::from(0));
        }
        let fields = match resolve(&probed) {
            Err(e) => listed_after(&e, &format!("unknown field `{PROBE}`")),
            Ok(_) => None,
        };
        let Some(fields) = fields else {
            // A map from any key (a sweep axis) to values: probe the entries.
            for (k, v) in table {
                let mut p = path.to_vec();
                p.push(Seg::Key(k.clone()));
                self.element(&p, v, base);
            }
            return;
        };

        let outside: Vec<String> = table
            .keys()
            .filter(|k| !fields.contains(k) && OUTSIDE_SERDE.contains(&(base, k.as_str())))
            .cloned()
            .collect();
        for f in &outside {
            let entry = self.code.sites.entry(base.to_string()).or_default();
            if !entry.fields.contains(f) {
                entry.fields.push(f.clone());
            }
            self.field(path, base, f, table);
        }

        // Any other key that is not a field is the tag of an enum variant.
        let tags: Vec<&String> = table
            .keys()
            .filter(|k| !fields.contains(k) && !outside.contains(k))
            .collect();
        let site = match tags.as_slice() {
            [] => base.to_string(),
            [tag] => self.tag(path, base, tag, &table[tag.as_str()]),
            _ => {
                self.problem(format!(
                    "`{base}` has several keys that are not fields: {tags:?}"
                ));
                return;
            }
        };

        let entry = self.code.sites.entry(site.clone()).or_default();
        if entry.fields.is_empty() {
            entry.fields = fields.clone();
        } else if entry.fields != fields {
            let msg = format!(
                "`{site}` accepts {fields:?} here but {:?} elsewhere",
                entry.fields
            );
            self.problem(msg);
        }

        for f in &fields {
            self.field(path, &site, f, table);
        }
    }

    /// Probe the key `f` of the table at `path` (`table`, resolved), a key
    /// of `site`: required or its default, then walk into its value.
    fn field(&mut self, path: &[Seg], site: &str, f: &str, table: &serde_json::Map<String, Value>) {
        let mut p = path.to_vec();
        p.push(Seg::Key(f.to_string()));
        let written = at(self.input, &p);
        let mut key = CodeKey::default();
        match written {
            None => key.defaults.push(table.get(f).cloned()),
            Some(w) => {
                let mut without = self.input.clone();
                if let Some(Value::Object(t)) = at_mut(&mut without, path) {
                    t.remove(f);
                }
                match resolve(&without) {
                    Err(e) if e.contains(&format!("missing field `{f}`")) => key.required = true,
                    Err(e) => self.problem(format!("without `{}` it fails: {e}", join(site, f))),
                    Ok(r) => {
                        key.defaults.push(at(&r, &p).cloned());
                        if !is_tableish(w) {
                            self.problem(format!(
                                "writes `{}`, which has a default; leave it out so \
                                 that the default is checked",
                                join(site, f)
                            ));
                        }
                    }
                }
            }
        }
        let value = table.get(f);
        key.tableish = value.is_some_and(is_tableish) || written.is_some_and(is_tableish);
        self.record(site, f, key);
        if let Some(v) = value {
            self.element(&p, v, &join(site, f));
        }
    }

    /// Walk into a value: a table, or the tables of an array.
    fn element(&mut self, path: &[Seg], v: &Value, base: &str) {
        match v {
            Value::Object(_) => self.table(path, base),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.is_object() {
                        let mut p = path.to_vec();
                        p.push(Seg::Index(i));
                        self.table(&p, base);
                    }
                }
            }
            _ => {}
        }
    }

    /// Record the tag `tag` of the table at `path`; returns the variant's site.
    fn tag(&mut self, path: &[Seg], base: &str, tag: &str, value: &Value) -> String {
        let variant = value.as_str().unwrap_or_default().to_string();
        let mut probed = self.resolved.clone();
        if let Some(Value::Object(t)) = at_mut(&mut probed, path) {
            t.insert(tag.into(), Value::from(PROBE));
        }
        let variants = match resolve(&probed) {
            Err(e) => listed_after(&e, &format!("unknown variant `{PROBE}`")),
            Ok(_) => None,
        };
        let Some(variants) = variants else {
            self.problem(format!(
                "`{base}.{tag}` takes any value, not a variant name"
            ));
            return base.to_string();
        };
        let mut p = path.to_vec();
        p.push(Seg::Key(tag.into()));
        let default = match at(self.input, &p) {
            None => Some(variant.clone()),
            Some(_) => {
                let mut without = self.input.clone();
                if let Some(Value::Object(t)) = at_mut(&mut without, path) {
                    t.remove(tag);
                }
                match resolve(&without) {
                    Err(e) if e.contains(&format!("missing field `{tag}`")) => None,
                    other => {
                        self.problem(format!(
                            "without the tag `{base}.{tag}` the table should not load: {other:?}"
                        ));
                        None
                    }
                }
            }
        };
        let entry = self.code.tags.entry(base.to_string()).or_default();
        entry.name = tag.to_string();
        entry.variants = variants;
        if entry.default.is_none() {
            entry.default = default;
        }
        format!("{base}{{{tag}={variant}}}")
    }

    fn record(&mut self, site: &str, f: &str, key: CodeKey) {
        let entry = self
            .code
            .sites
            .entry(site.to_string())
            .or_default()
            .keys
            .entry(f.to_string())
            .or_default();
        let before = entry.def();
        let conflict = entry.conflict();
        entry.required |= key.required;
        entry.defaults.extend(key.defaults);
        entry.tableish |= key.tableish;
        if !conflict && entry.conflict() {
            let msg = format!(
                "`{}` is {before} in one fixture and not in another: its default depends on \
                 something else, which this check cannot express",
                join(site, f)
            );
            self.problem(msg);
        }
    }
}

// ------------------------------------------------------------ docs side

#[derive(Debug, Clone)]
struct DocRow {
    line: usize,
    cell: String,
}

#[derive(Debug, Clone)]
struct Heading {
    line: usize,
    text: String,
}

#[derive(Debug, Default)]
struct Docs {
    /// (table, key) -> its default cell.
    rows: BTreeMap<(String, String), DocRow>,
    /// `[a.b]` and `[[a.b]]` headings, by path.
    sections: BTreeMap<String, Heading>,
    /// Variant tables (`data{source=idx}`), from headings and variant tables.
    variants: BTreeMap<String, usize>,
    /// Tagged tables: path -> (tag, line), from the same.
    tags: BTreeMap<String, (String, usize)>,
    problems: Vec<String>,
}

#[derive(Debug, Clone)]
enum TableKind {
    /// `| key | default | meaning |`
    Keys,
    /// ``| `type` | keys (default) |``
    Variants(String),
    Other,
}

fn first_backticked(s: &str) -> Option<&str> {
    s.split('`').nth(1)
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    line.split('|').map(|c| c.trim().to_string()).collect()
}

impl Docs {
    fn read(text: &str) -> Docs {
        let mut docs = Docs::default();
        // (heading level, the table it names)
        let mut levels: Vec<(usize, Option<String>)> = Vec::new();
        let mut table: Option<TableKind> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.starts_with('#') {
                table = None;
                let level = line.chars().take_while(|&c| c == '#').count();
                let title = line[level..].trim();
                levels.retain(|(l, _)| *l < level);
                let parent = levels.iter().rev().find_map(|(_, s)| s.clone());
                let section = docs.heading(n, title, parent);
                levels.push((level, section));
                continue;
            }
            if !line.starts_with('|') {
                table = None;
                continue;
            }
            let row = cells(line);
            let current = levels.last().and_then(|(_, s)| s.clone());
            let Some(kind) = table.clone() else {
                let kind = if row == ["key", "default", "meaning"] {
                    TableKind::Keys
                } else if row.len() == 2 && row[1] == "keys (default)" {
                    match first_backticked(&row[0]) {
                        Some(tag) => TableKind::Variants(tag.to_string()),
                        None => TableKind::Other,
                    }
                } else {
                    TableKind::Other
                };
                if current.is_none() && !matches!(kind, TableKind::Other) {
                    docs.problems.push(format!(
                        "docs/config.md:{n}: a key table under a heading that names no table"
                    ));
                }
                table = Some(kind);
                continue;
            };
            if row
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                continue;
            }
            let Some(current) = current else { continue };
            match kind {
                TableKind::Keys => {
                    let Some(key) = first_backticked(&row[0]) else {
                        docs.problems
                            .push(format!("docs/config.md:{n}: a row without a `key`"));
                        continue;
                    };
                    let mut site = current.clone();
                    let mut parts: Vec<&str> = key.split('.').collect();
                    let key = parts.pop().unwrap_or_default();
                    for p in parts {
                        site = join(&site, p);
                    }
                    let cell = row.get(1).cloned().unwrap_or_default();
                    docs.row(n, &site, key, cell);
                }
                TableKind::Variants(tag) => {
                    let Some(variant) = first_backticked(&row[0]) else {
                        docs.problems
                            .push(format!("docs/config.md:{n}: a row without a `{tag}`"));
                        continue;
                    };
                    let site = format!("{current}{{{tag}={variant}}}");
                    docs.variants.insert(site.clone(), n);
                    docs.tags.entry(current.clone()).or_insert((tag.clone(), n));
                    for (key, cell) in items(row.get(1).map(String::as_str).unwrap_or("")) {
                        docs.row(n, &site, &key, cell);
                    }
                }
                TableKind::Other => {}
            }
        }
        docs
    }

    /// The table a heading names, if any.
    fn heading(&mut self, n: usize, title: &str, parent: Option<String>) -> Option<String> {
        if title == "Top level" {
            return Some(String::new());
        }
        let token = first_backticked(title)?;
        if let Some(path) = token
            .strip_prefix("[[")
            .and_then(|t| t.strip_suffix("]]"))
            .or_else(|| token.strip_prefix('[').and_then(|t| t.strip_suffix(']')))
        {
            self.sections.insert(
                path.to_string(),
                Heading {
                    line: n,
                    text: title.to_string(),
                },
            );
            return Some(path.to_string());
        }
        let (tag, variant) = token.split_once('=')?;
        let (tag, variant) = (tag.trim(), variant.trim().trim_matches('"'));
        let Some(parent) = parent else {
            self.problems.push(format!(
                "docs/config.md:{n}: variant heading `{token}` is not under a table heading"
            ));
            return None;
        };
        let site = format!("{parent}{{{tag}={variant}}}");
        self.variants.insert(site.clone(), n);
        self.tags.entry(parent).or_insert((tag.to_string(), n));
        Some(site)
    }

    fn row(&mut self, line: usize, site: &str, key: &str, cell: String) {
        let old = self
            .rows
            .insert((site.to_string(), key.to_string()), DocRow { line, cell });
        if let Some(old) = old {
            self.problems.push(format!(
                "docs/config.md:{line}: `{}` is documented twice (also on line {})",
                join(site, key),
                old.line
            ));
        }
    }
}

/// The keys of a variant row: `` `a` (`1`, remark), `b` (required; remark), `c` ``
/// gives `a` with `` `1` ``, `b` with `required`, `c` with `none`. Items that
/// do not start with a backticked key are remarks.
fn items(cell: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let (mut depth, mut code, mut start) = (0usize, false, 0usize);
    for (i, ch) in cell.char_indices() {
        match ch {
            '`' => code = !code,
            '(' if !code => depth += 1,
            ')' if !code => depth = depth.saturating_sub(1),
            ',' if !code && depth == 0 => {
                parts.push(&cell[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&cell[start..]);

    let mut out = Vec::new();
    for part in parts {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('`') else {
            continue;
        };
        let Some((key, rest)) = rest.split_once('`') else {
            continue;
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let rest = rest.trim_start();
        let default = match rest.strip_prefix('(') {
            None => "none".to_string(),
            Some(inner) => {
                let mut depth = 1usize;
                let mut code = false;
                let mut end = inner.len();
                for (i, ch) in inner.char_indices() {
                    match ch {
                        '`' => code = !code,
                        '(' if !code => depth += 1,
                        ')' if !code => {
                            depth -= 1;
                            if depth == 0 {
                                end = i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                inner[..end].to_string()
            }
        };
        out.push((key.to_string(), default));
    }
    out
}

/// A default cell: its first backticked TOML value, or its leading words
/// (up to `(`, `;`, `,` or `:`) from [`WORDS`].
fn parse_default(cell: &str) -> Result<Def, String> {
    let cell = cell.trim();
    let token = match cell.strip_prefix('`') {
        Some(rest) => rest.split('`').next().unwrap_or_default().trim(),
        None => cell
            .split(['(', ';', ',', ':'])
            .next()
            .unwrap_or_default()
            .trim(),
    };
    if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {token}")) {
        if let Some(v) = t.remove("v") {
            if let Ok(v) = serde_json::to_value(v) {
                return Ok(Def::Value(v));
            }
        }
    }
    match WORDS.iter().find(|(w, _)| *w == token) {
        Some((_, Word::Required)) => Ok(Def::Required),
        Some((_, Word::Absent)) => Ok(Def::Absent),
        None => Err(format!(
            "cannot read the default `{cell}`: write a TOML value in backticks, or one of {:?}",
            WORDS.iter().map(|(w, _)| *w).collect::<Vec<_>>()
        )),
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| same_value(a, b)))
        }
        _ => a == b,
    }
}

/// Does the documented default agree with the code's?
fn agrees(doc: &Def, code: &Def) -> bool {
    match (doc, code) {
        (Def::Value(d), Def::Value(c)) => same_value(d, c),
        // An empty list or table is left out of the resolved config.
        (Def::Value(Value::Array(a)), Def::Absent) => a.is_empty(),
        (Def::Value(Value::Object(o)), Def::Absent) => o.is_empty(),
        _ => doc == code,
    }
}

// ------------------------------------------------------------ the check

fn problems() -> Vec<String> {
    let code = Code::gather();
    let docs = Docs::read(DOCS);
    let mut problems = code.problems.clone();
    problems.extend(docs.problems.iter().cloned());
    let mut used_rows: BTreeSet<(String, String)> = BTreeSet::new();
    let mut used_sections: BTreeSet<String> = BTreeSet::new();
    let mut used_variants: BTreeSet<String> = BTreeSet::new();

    for (site, info) in &code.sites {
        for f in &info.fields {
            let path = join(site, f);
            let key = info.keys.get(f);
            let code_def = key.map(CodeKey::def).unwrap_or(Def::Absent);
            let tableish = key.is_some_and(|k| k.tableish);
            if docs.sections.contains_key(&path) {
                used_sections.insert(path.clone());
            }
            let id = (site.clone(), f.clone());
            if let Some(row) = docs.rows.get(&id) {
                used_rows.insert(id);
                compare(&mut problems, row, &path, &code_def);
            } else if let (true, Some(h)) = (tableish, docs.sections.get(&path)) {
                let off = h.text.contains("off unless");
                let on = h.text.contains("always on");
                if (off && code_def != Def::Absent) || (on && code_def == Def::Absent) {
                    problems.push(format!(
                        "docs/config.md:{}: heading `{}` disagrees with the code's default for `{path}`: {code_def}",
                        h.line, h.text
                    ));
                }
            } else {
                problems.push(format!(
                    "`{path}` is accepted by the specs but docs/config.md does not document it \
                     (code default: {code_def})"
                ));
            }
        }
    }

    for (base, tag) in &code.tags {
        let path = join(base, &tag.name);
        let code_def = match &tag.default {
            Some(v) => Def::Value(Value::from(v.as_str())),
            None => Def::Required,
        };
        let id = (base.clone(), tag.name.clone());
        if let Some(row) = docs.rows.get(&id) {
            used_rows.insert(id);
            compare(&mut problems, row, &path, &code_def);
        } else {
            match docs.tags.get(base) {
                Some((name, line)) if *name != tag.name => problems.push(format!(
                    "docs/config.md:{line}: `{base}` variants are picked by `{name}` in the docs but by `{}` in the code",
                    tag.name
                )),
                Some((_, line)) if code_def != Def::Required => problems.push(format!(
                    "docs/config.md:{line}: `{path}` defaults to {code_def} in the code; add a row stating it"
                )),
                Some(_) => {}
                None => problems.push(format!(
                    "`{path}` picks the variant of `{base}` but docs/config.md does not document it"
                )),
            }
        }
        for v in &tag.variants {
            let site = format!("{base}{{{}={v}}}", tag.name);
            if !docs.variants.contains_key(&site) {
                problems.push(format!(
                    "`{path} = \"{v}\"` is accepted by the specs but docs/config.md does not document it"
                ));
            }
            if !code.sites.contains_key(&site) {
                problems.push(format!(
                    "no fixture instantiates `{path} = \"{v}\"`: add it to FIXTURES in {}",
                    file!()
                ));
            }
            used_variants.insert(site);
        }
    }

    // Variants no fixture reaches were reported above; their rows are not
    // wrong for that.
    let unreached: BTreeSet<String> = code
        .tags
        .iter()
        .flat_map(|(base, t)| {
            t.variants
                .iter()
                .map(move |v| format!("{base}{{{}={v}}}", t.name))
        })
        .filter(|site| !code.sites.contains_key(site))
        .collect();
    for ((site, key), row) in &docs.rows {
        if !used_rows.contains(&(site.clone(), key.clone())) && !unreached.contains(site) {
            problems.push(format!(
                "docs/config.md:{}: documents `{}`, which no spec accepts",
                row.line,
                join(site, key)
            ));
        }
    }
    for (path, h) in &docs.sections {
        if !used_sections.contains(path) {
            problems.push(format!(
                "docs/config.md:{}: heading `{}` names `{path}`, which no spec accepts",
                h.line, h.text
            ));
        }
    }
    for (site, line) in &docs.variants {
        if !used_variants.contains(site) {
            problems.push(format!(
                "docs/config.md:{line}: documents the variant `{site}`, which no spec accepts"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

fn compare(problems: &mut Vec<String>, row: &DocRow, path: &str, code_def: &Def) {
    match parse_default(&row.cell) {
        Ok(doc_def) if agrees(&doc_def, code_def) => {}
        Ok(doc_def) => problems.push(format!(
            "docs/config.md:{}: `{path}` defaults to {doc_def} in the docs but to {code_def} in the code",
            row.line
        )),
        Err(e) => problems.push(format!("docs/config.md:{}: `{path}`: {e}", row.line)),
    }
}

#[test]
fn docs_config_md_matches_the_specs() {
    let problems = problems();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        panic!(
            "docs/config.md and the specs in src/config/spec.rs disagree ({} problems):\n{}\n",
            problems.len(),
            list.join("\n")
        );
    }
}

/// The pieces of the check: default cells, variant rows, comparisons.
#[test]
fn the_docs_check_reads_defaults_and_rows() {
    assert_eq!(parse_default("`42`"), Ok(Def::Value(Value::from(42))));
    assert_eq!(
        parse_default("`\"val_loss\"` (`\"loss\"` when there is no validation data)"),
        Ok(Def::Value(Value::from("val_loss")))
    );
    assert_eq!(parse_default("none (1.0)"), Ok(Def::Absent));
    assert_eq!(parse_default("`model.dropout`"), Ok(Def::Absent));
    assert_eq!(parse_default("required"), Ok(Def::Required));
    assert!(parse_default("auto").is_err());
    assert!(agrees(
        &parse_default("`1e-3`").unwrap(),
        &Def::Value(Value::from(0.001))
    ));
    assert!(agrees(
        &parse_default("`0`").unwrap(),
        &Def::Value(Value::from(0.0))
    ));
    assert!(agrees(&parse_default("`[]`").unwrap(), &Def::Absent));
    assert!(!agrees(
        &parse_default("`0.99`").unwrap(),
        &Def::Value(Value::from(0.9))
    ));
    assert_eq!(
        items("`kernel` (required; `3` or `[3, 5]`), `stride` (`1`), `name`, as in Keras"),
        vec![
            (
                "kernel".to_string(),
                "required; `3` or `[3, 5]`".to_string()
            ),
            ("stride".to_string(), "`1`".to_string()),
            ("name".to_string(), "none".to_string()),
        ]
    );
}

/// Every field of every struct in spec.rs and every variant of its enums
/// (and of the value sets in vocab.rs it shares with the plan) says what it
/// is, and every field says its default or that it is required.
#[test]
fn every_spec_field_and_variant_has_a_doc_comment() {
    let mut missing = Vec::new();
    for (path, src) in [
        ("src/config/spec.rs", include_str!("spec.rs")),
        ("src/vocab.rs", include_str!("../vocab.rs")),
    ] {
        undocumented(path, src, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "these lack a `///` comment (fields: with \"Default: ...\" or \"Required.\"):\n  {}",
        missing.join("\n  ")
    );
}

/// Appends `path:line: Type::member` for each undocumented member in `src`.
fn undocumented(path: &str, src: &str, missing: &mut Vec<String>) {
    let mut inside: Option<(String, bool)> = None; // (type name, is a struct)
    let mut doc = String::new();
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if inside.is_none() {
            for (prefix, is_struct) in [("pub struct ", true), ("pub enum ", false)] {
                if let Some(rest) = t.strip_prefix(prefix) {
                    if rest.ends_with('{') {
                        let name = rest.split([' ', '{', '<']).next().unwrap_or_default();
                        inside = Some((name.to_string(), is_struct));
                    }
                }
            }
            doc.clear();
            continue;
        }
        let (name, is_struct) = inside.clone().unwrap();
        if t == "}" {
            inside = None;
            continue;
        }
        if let Some(d) = t.strip_prefix("///") {
            doc.push_str(d);
            doc.push(' ');
            continue;
        }
        if t.starts_with("#[") {
            continue;
        }
        let member = if is_struct {
            t.strip_prefix("pub ")
                .and_then(|r| r.split_once(':'))
                .map(|(f, _)| f)
        } else {
            t.split(['(', ',', ' ']).next().filter(|v| !v.is_empty())
        };
        if let Some(member) = member {
            let says_default = doc.contains("Default:") || doc.contains("Required.");
            if doc.is_empty() || (is_struct && !says_default) {
                missing.push(format!("{path}:{}: {name}::{member}", i + 1));
            }
        }
        doc.clear();
    }
}
