//! Internally tagged enums (`type = "dropout"`, `source = "idx"`) whose
//! errors keep the path to the bad key.
//!
//! serde's derived internally tagged enums buffer the table and lose the
//! path: a wrong type inside `[optimizer]` would only say "optimizer". Here
//! the tag is read first and the rest is deserialized into the variant's
//! own struct with `serde_path_to_error`; an inner error carries its inner
//! path in its message, which [`split_inner`] recovers.

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;

use super::key_path::{KeyPath, Seg};

const MARK: char = '\u{1}';
const SEP: char = '\u{2}';

/// Read a table, take out its tag, and return (tag, rest of the table).
/// Without the tag, the error names the `variants` as serde names those
/// of an unknown variant: "missing field `type`, expected one of `a`, `b`".
pub fn split<'de, D: Deserializer<'de>>(
    d: D,
    tag: &'static str,
    variants: &[&str],
) -> Result<(String, serde_json::Value), D::Error> {
    let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    match map.remove(tag) {
        None => {
            let names: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
            Err(de::Error::custom(format!(
                "missing field `{tag}`, expected one of {}",
                names.join(", ")
            )))
        }
        Some(serde_json::Value::String(t)) => Ok((t, serde_json::Value::Object(map))),
        Some(other) => Err(de::Error::invalid_type(
            unexpected(&other),
            &"a string naming the variant",
        )),
    }
}

fn unexpected(v: &serde_json::Value) -> de::Unexpected<'_> {
    match v {
        serde_json::Value::Null => de::Unexpected::Unit,
        serde_json::Value::Bool(b) => de::Unexpected::Bool(*b),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) => de::Unexpected::Float(f),
            None => de::Unexpected::Other("number"),
        },
        serde_json::Value::String(s) => de::Unexpected::Str(s),
        serde_json::Value::Array(_) => de::Unexpected::Seq,
        serde_json::Value::Object(_) => de::Unexpected::Map,
    }
}

/// Deserialize the rest of a tagged table into a variant's struct, keeping
/// the inner path of any error.
pub fn inner<T: DeserializeOwned, E: de::Error>(rest: serde_json::Value) -> Result<T, E> {
    serde_path_to_error::deserialize(rest).map_err(|err| {
        let path: Vec<String> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(format!("#{index}")),
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let msg = err.into_inner().to_string();
        // Keep an already-marked message (nested tagged enums) as it is.
        match split_inner(&msg) {
            Some((deeper, msg)) => {
                let mut all = path;
                all.extend(deeper.into_iter().map(|s| match s {
                    InnerSeg::Key(k) => k,
                    InnerSeg::Index(i) => format!("#{i}"),
                }));
                E::custom(format!("{MARK}{}{MARK}{msg}", all.join(&SEP.to_string())))
            }
            None => E::custom(format!("{MARK}{}{MARK}{msg}", path.join(&SEP.to_string()))),
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InnerSeg {
    Key(String),
    Index(usize),
}

/// Recover (inner path, message) from an error made by [`inner`].
pub fn split_inner(msg: &str) -> Option<(Vec<InnerSeg>, String)> {
    let rest = msg.strip_prefix(MARK)?;
    let (path, msg) = rest.split_once(MARK)?;
    let segs = path
        .split(SEP)
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('#').and_then(|n| n.parse().ok()) {
            Some(i) => InnerSeg::Index(i),
            None => InnerSeg::Key(s.to_string()),
        })
        .collect();
    Some((segs, msg.to_string()))
}

/// Where an error of reading the spec is (its path, with the inner path of
/// a tagged table's error, from [`inner`]) and its message.
pub fn error_at(e: &serde_path_to_error::Error<serde_json::Error>) -> (KeyPath, String) {
    let mut path: Vec<Seg> =
        e.path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
    let raw = e.inner().to_string();
    match split_inner(&raw) {
        Some((inner, msg)) => {
            path.extend(inner.into_iter().map(|s| match s {
                InnerSeg::Key(k) => Seg::Key(k),
                InnerSeg::Index(i) => Seg::Index(i),
            }));
            (KeyPath(path), msg)
        }
        None => (KeyPath(path), raw),
    }
}

/// Implement `Deserialize` for an enum of newtype variants tagged by `$tag`.
macro_rules! tagged_enum {
    ($name:ident, $tag:literal, { $($variant:ident($ty:ty) = $key:literal),* $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const VARIANTS: &[&str] = &[$($key),*];
                let (tag, rest) = $crate::config::tagged::split(d, $tag, VARIANTS)?;
                match tag.as_str() {
                    $($key => $crate::config::tagged::inner::<$ty, D::Error>(rest).map($name::$variant),)*
                    other => Err(serde::de::Error::unknown_variant(other, VARIANTS)),
                }
            }
        }
    };
}
pub(crate) use tagged_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_paths_round_trip() {
        let e: serde_json::Error = inner::<
            std::collections::BTreeMap<String, f64>,
            serde_json::Error,
        >(serde_json::json!({"a": 1.0, "b": "x"}))
        .unwrap_err();
        let (path, msg) = split_inner(&e.to_string()).unwrap();
        assert_eq!(path, vec![InnerSeg::Key("b".into())]);
        assert!(msg.contains("invalid type"), "{msg}");
    }
}
