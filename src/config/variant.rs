//! Tagged tables across layers: a table's variant (`type`, `source`,
//! `distribution`) chosen by one layer over keys that another gave.
//!
//! A layer that switches a table's variant (`--set optimizer.type=sgd`
//! over a file's RMSprop, a child file's `type = "sgd"` over its parent's
//! `type = "rmsprop"`, a sweep trial's `optimizer.type` axis) drops the
//! keys that lower layers gave the table and the new variant does not
//! take (`rho`), as choosing another option of a Hydra config group
//! replaces the group. A key from the same layer as the tag, or from a
//! higher one, is never dropped: it was written for that variant, and an
//! error says which variants take it.

use serde_json::Value;

use super::key_path::{KeyPath, Seg};
use super::provenance::Origin;
use super::spec::ExperimentSpec;
use super::tagged;

/// A key left out of the resolved config because a higher layer chose a
/// variant of its table that does not take it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// The key (`optimizer.rho`).
    pub path: KeyPath,
    /// Its value in the layers, before it was dropped.
    pub value: Value,
    /// Where the key was set.
    pub from: Origin,
    /// The table's tag key (`optimizer.type`).
    pub tag: KeyPath,
    /// The variant the tag names (`sgd`).
    pub variant: String,
}

/// For a tagged table at `path`: its tag key and what the tag names.
pub fn tag_of(path: &KeyPath) -> (&'static str, &'static str) {
    match path.0.as_slice() {
        [.., Seg::Key(l), Seg::Index(_)] if l == "layers" => ("type", "layer type"),
        [Seg::Key(d)] if d == "data" => ("source", "data source"),
        [Seg::Key(o)] if o == "optimizer" => ("type", "optimizer type"),
        [.., Seg::Key(s)] if s == "lr_schedule" => ("type", "schedule type"),
        [.., Seg::Key(l)] if l == "launcher" => ("type", "launcher type"),
        [.., Seg::Key(r), Seg::Key(_)] if r == "random" => ("distribution", "distribution"),
        _ => ("type", "type"),
    }
}

/// How high a layer is: defaults, then the files of the `extends` chain
/// (`files` of them, the experiment file highest), environment variables,
/// and `--set` flags and sweep axes, which count as one layer (a key a flag
/// sets is never dropped by another flag).
fn rank(origin: &Origin, files: usize) -> usize {
    match origin {
        Origin::Default => 0,
        Origin::File { index } => files.saturating_sub(*index),
        Origin::Env { .. } => files + 1,
        Origin::Set { .. } | Origin::Removed { .. } => files + 2,
    }
}

/// The key at `path` (one that the variant of its table does not take),
/// when a higher layer than the key's own chose that variant and another
/// variant takes the key (a key no variant takes, a typo, stays an error).
pub fn leftover(
    merged: &Value,
    path: &KeyPath,
    origin: impl Fn(&KeyPath) -> Origin,
    files: usize,
) -> Option<Dropped> {
    let (Seg::Key(key), table) = path.0.split_last()? else {
        return None;
    };
    // Lists (the layers) are replaced whole: one layer set every key of an element.
    if table.is_empty() || table.iter().any(|s| matches!(s, Seg::Index(_))) {
        return None;
    }
    let table = KeyPath(table.to_vec());
    let tag = table.clone().key(tag_of(&table).0);
    let variant = value_at(merged, &tag)?.as_str()?.to_string();
    let value = value_at(merged, path)?.clone();
    let from = origin(path);
    let switched = rank(&origin(&tag), files) > rank(&from, files);
    (switched && !variants_taking(merged, &table, key).is_empty()).then_some(Dropped {
        path: path.clone(),
        value,
        from,
        tag,
        variant,
    })
}

/// Take the value at `path` out of `root`.
pub fn remove(root: &mut Value, path: &KeyPath) -> Option<Value> {
    let (Seg::Key(last), parents) = path.0.split_last()? else {
        return None;
    };
    value_at_mut(root, &KeyPath(parents.to_vec()))?
        .as_object_mut()?
        .remove(last)
}

/// The variant that the tagged table at `table` names, and all its
/// variants, as serde lists them for a tag naming none.
pub fn variants(merged: &Value, table: &KeyPath) -> Option<(String, Vec<String>)> {
    let tag = tag_of(table).0;
    let now = value_at(merged, table)?.get(tag)?.as_str()?.to_string();
    const PROBE: &str = "__probe__";
    let listing = match read_with(merged, table, serde_json::json!({ tag: PROBE })) {
        Some((at, msg)) if at == *table => msg,
        _ => return None,
    };
    let rest = listing.strip_prefix(&format!("unknown variant `{PROBE}`, expected one of "))?;
    let all = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((now, all))
}

/// The variants of the tagged table at `table` that take `key`, other than
/// the one it has: each is tried in `merged` with the table cut down to its
/// tag and `key` (serde reports an unknown key before a missing one).
pub fn variants_taking(merged: &Value, table: &KeyPath, key: &str) -> Vec<String> {
    let tag = tag_of(table).0;
    let (Some((now, all)), Some(value)) = (
        variants(merged, table),
        value_at(merged, &table.clone().key(key)),
    ) else {
        return Vec::new();
    };
    let here = table.clone().key(key);
    let unknown = format!("unknown field `{key}`");
    all.into_iter()
        .filter(|v| *v != now)
        .filter(|v| {
            read_with(merged, table, serde_json::json!({ tag: v, key: value }))
                .is_none_or(|(at, msg)| !(at == here || at == *table) || !msg.starts_with(&unknown))
        })
        .collect()
}

/// The error of reading `merged` as a spec with `body` for the table at
/// `table`, if any.
fn read_with(merged: &Value, table: &KeyPath, body: Value) -> Option<(KeyPath, String)> {
    let mut probe = merged.clone();
    *value_at_mut(&mut probe, table)? = body;
    serde_path_to_error::deserialize::<_, ExperimentSpec>(&probe)
        .err()
        .map(|e| tagged::error_at(&e))
}

/// The value at `path` in the merged config, if any.
pub fn value_at<'a>(root: &'a Value, path: &KeyPath) -> Option<&'a Value> {
    path.0.iter().try_fold(root, |v, seg| match seg {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

fn value_at_mut<'a>(root: &'a mut Value, path: &KeyPath) -> Option<&'a mut Value> {
    path.0.iter().try_fold(root, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged() -> Value {
        serde_json::json!({
            "experiment": { "name": "t" },
            "data": { "source": "synthetic" },
            "model": { "input_shape": [8, 8, 1], "layers": [] },
            "optimizer": { "type": "sgd", "learning_rate": 0.1, "rho": 0.9 },
        })
    }

    #[test]
    fn a_key_is_dropped_only_under_a_higher_layers_variant() {
        let m = merged();
        let rho = KeyPath::parse("optimizer.rho");
        let tag = KeyPath::parse("optimizer.type");
        let set = Origin::Set {
            flag: "--set optimizer.type=sgd".into(),
        };
        let at = |tag_from: Origin, key_from: Origin| {
            move |p: &KeyPath| {
                if p.to_string() == "optimizer.type" {
                    tag_from.clone()
                } else {
                    key_from.clone()
                }
            }
        };
        // --set over the experiment file, the file over its parent: dropped.
        let d = leftover(&m, &rho, at(set.clone(), Origin::File { index: 0 }), 2).unwrap();
        assert_eq!((d.tag, d.variant.as_str()), (tag, "sgd"));
        assert_eq!(d.value, serde_json::json!(0.9));
        assert!(leftover(
            &m,
            &rho,
            at(Origin::File { index: 0 }, Origin::File { index: 1 }),
            2
        )
        .is_some());
        // The same layer, a higher one, or two flags: kept (an error).
        for (t, k) in [
            (Origin::File { index: 0 }, Origin::File { index: 0 }),
            (Origin::File { index: 1 }, Origin::File { index: 0 }),
            (set.clone(), set.clone()),
            (Origin::Env { var: "V".into() }, set.clone()),
        ] {
            assert!(leftover(&m, &rho, at(t, k), 2).is_none());
        }
        // A key no optimizer takes (a typo): kept, so it is an error.
        let mut typo = m.clone();
        typo["optimizer"]["learning_rat"] = serde_json::json!(0.1);
        let key = KeyPath::parse("optimizer.learning_rat");
        assert!(leftover(&typo, &key, at(set.clone(), Origin::File { index: 0 }), 2).is_none());
        // Not in a tagged table with a tag, or in a list.
        let mut m = m;
        m["model"]["layers"] = serde_json::json!([{ "type": "dense", "units": 4, "rate": 0.5 }]);
        let key = KeyPath::parse("model.layers").index(0).key("rate");
        assert!(leftover(&m, &key, at(set.clone(), Origin::Default), 2).is_none());
        let key = KeyPath::parse("experiment.name");
        assert!(leftover(&m, &key, at(set, Origin::Default), 2).is_none());
    }

    #[test]
    fn the_variants_that_take_a_key_are_found_by_trying_them() {
        let m = merged();
        let optimizer = KeyPath::parse("optimizer");
        assert_eq!(variants_taking(&m, &optimizer, "rho"), ["rmsprop"]);
        assert_eq!(
            variants_taking(&m, &optimizer, "beta_1"),
            Vec::<String>::new(),
            "not in the table"
        );
        assert_eq!(
            variants_taking(&m, &optimizer, "learning_rate").len(),
            3,
            "every other optimizer"
        );
        let mut m = merged();
        m["model"]["layers"] = serde_json::json!([{ "type": "dense", "units": 4, "rate": 0.5 }]);
        let layer = KeyPath::parse("model.layers").index(0);
        assert_eq!(variants_taking(&m, &layer, "rate"), ["dropout"]);
        let (now, all) = variants(&merged(), &optimizer).unwrap();
        assert_eq!(
            (now.as_str(), all),
            (
                "sgd",
                vec![
                    "rmsprop".into(),
                    "adam".into(),
                    "adamw".into(),
                    "sgd".into()
                ]
            )
        );
        assert_eq!(variants(&m, &KeyPath::parse("experiment")), None);
    }

    #[test]
    fn remove_takes_a_key_out() {
        let mut m = merged();
        let rho = KeyPath::parse("optimizer.rho");
        assert_eq!(remove(&mut m, &rho), Some(serde_json::json!(0.9)));
        assert_eq!(value_at(&m, &rho), None);
        assert_eq!(remove(&mut m, &rho), None);
    }
}
