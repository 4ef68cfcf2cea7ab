//! `--set` keys and sweep axes that reach into a list, such as one layer
//! of `model.layers`: `model.layers.3.units`, `model.layers.-1.units` (the
//! last layer) or `model.layers.dense_1.units` (the layer that `runner
//! summary` names `dense_1`, its own `name` or Keras's).
//!
//! Files and overrides are layered as whole lists, so such a key is not a
//! layer of its own: it is applied to the merged config, in the order of
//! the overrides, after every layer that sets the list.

use serde_json::Value;

use super::diagnostic::did_you_mean;
use super::key_path::{KeyPath, Seg};
use super::spec;

/// Where the key path `path` first steps into a list of `merged`: the
/// number of keys before the list's element is chosen, or `None` for a
/// path that meets no list (or ends at one).
pub fn list_depth(merged: &Value, path: &[String]) -> Option<usize> {
    let mut at = merged;
    for (depth, key) in path.iter().enumerate() {
        match at {
            Value::Object(table) => at = table.get(key)?,
            Value::Array(_) => return Some(depth),
            _ => return None,
        }
    }
    None
}

/// The key path `path` in `merged` with each list element chosen: an index
/// from 0, a negative index from the end, or a layer's name. An error says
/// what the list holds. Keys past the end of `merged` are kept as keys.
pub fn resolve(merged: &Value, path: &[String]) -> Result<KeyPath, String> {
    let mut resolved = KeyPath::default();
    let mut at = Some(merged);
    for key in path {
        let seg = match at {
            Some(Value::Array(items)) => Seg::Index(choose(items, key, &resolved)?),
            Some(Value::Object(_)) | None => Seg::Key(key.clone()),
            Some(other) => {
                return Err(format!(
                    "`{resolved}` is {}, which has no keys inside",
                    kind_of(other)
                ))
            }
        };
        at = at.and_then(|v| match &seg {
            Seg::Key(k) => v.get(k.as_str()),
            Seg::Index(i) => v.get(*i),
        });
        resolved.0.push(seg);
    }
    Ok(resolved)
}

/// Set the value at the resolved path `at` (which steps into a list),
/// adding the tables on the way that are not there.
pub fn set(merged: &mut Value, at: &KeyPath, value: Value) {
    let mut slot = merged;
    for seg in &at.0 {
        if let (Seg::Key(_), false) = (seg, slot.is_object()) {
            *slot = Value::Object(Default::default());
        }
        let next = match (seg, slot) {
            (Seg::Index(i), Value::Array(items)) => items.get_mut(*i),
            (Seg::Key(k), Value::Object(table)) => {
                Some(table.entry(k.clone()).or_insert(Value::Null))
            }
            _ => None,
        };
        // `resolve` chose only indices that are in their list.
        let Some(next) = next else { return };
        slot = next;
    }
    *slot = value;
}

/// Take out the key at the resolved path `at`; whether it was there. A
/// whole element of a list is not taken out: the elements after it would
/// move, and other keys may name them by index.
pub fn remove(merged: &mut Value, at: &KeyPath) -> Result<bool, String> {
    match at.0.last() {
        Some(Seg::Index(_)) => Err(format!(
            "`~` takes out a key inside a list's element, not the element (`{at}`); \
             set the whole list to leave one out"
        )),
        _ => Ok(super::variant::remove(merged, at).is_some()),
    }
}

/// The index in `items` that `key` chooses.
fn choose(items: &[Value], key: &str, list: &KeyPath) -> Result<usize, String> {
    let n = items.len();
    let names = names(items);
    let index = match key.parse::<i64>() {
        Ok(i) if (0..n as i64).contains(&i) => Some(i as usize),
        Ok(i) if i < 0 && i >= -(n as i64) => Some((n as i64 + i) as usize),
        Ok(_) => None,
        Err(_) => names.iter().position(|name| name == key),
    };
    if let Some(i) = index {
        return Ok(i);
    }
    let range = match n {
        0 => "it is empty".to_string(),
        1 => "it has 1 element: 0 (or -1)".to_string(),
        n => format!("it has {n} elements: 0 to {} (or -{n} to -1)", n - 1),
    };
    let named = if names.is_empty() {
        String::new()
    } else {
        format!(", or a layer's name: {}", names.join(", "))
    };
    let hint = match key.parse::<i64>() {
        Ok(_) => String::new(),
        Err(_) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            did_you_mean(key, &names)
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        }
    };
    Err(format!(
        "`{key}` chooses no element of the list `{list}`: {range}{named}{hint}"
    ))
}

/// The names of a list's elements that are layers (tables with a `type`),
/// as `runner summary` shows them; none for any other list.
fn names(items: &[Value]) -> Vec<String> {
    let layers: Option<Vec<(&str, Option<&str>)>> = items
        .iter()
        .map(|item| {
            let layer_type = item.get("type")?.as_str()?;
            Some((layer_type, item.get("name").and_then(Value::as_str)))
        })
        .collect();
    match layers {
        Some(layers) if !layers.is_empty() => spec::layer_names(layers),
        _ => Vec::new(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged() -> Value {
        json!({
            "data": { "classes": ["a", "b"] },
            "model": { "layers": [
                { "type": "conv2d", "filters": 8 },
                { "type": "max_pool2d" },
                { "type": "conv2d", "filters": 16, "name": "wide" },
                { "type": "conv2d", "filters": 32 },
                { "type": "dense", "units": 4 },
            ] },
        })
    }

    fn path(dotted: &str) -> Vec<String> {
        dotted.split('.').map(str::to_string).collect()
    }

    fn shown(dotted: &str) -> Result<String, String> {
        resolve(&merged(), &path(dotted)).map(|p| p.to_string())
    }

    #[test]
    fn a_path_meets_a_list_where_a_key_would_choose_an_element() {
        let m = merged();
        assert_eq!(list_depth(&m, &path("model.layers.0.filters")), Some(2));
        assert_eq!(list_depth(&m, &path("data.classes.1")), Some(2));
        assert_eq!(list_depth(&m, &path("model.layers")), None);
        assert_eq!(list_depth(&m, &path("model.dropout")), None);
        assert_eq!(list_depth(&m, &path("train.class_weight.3")), None);
    }

    #[test]
    fn an_element_is_chosen_by_index_from_either_end_or_by_name() {
        assert_eq!(
            shown("model.layers.3.filters").unwrap(),
            "model.layers[3].filters"
        );
        assert_eq!(
            shown("model.layers.-1.units").unwrap(),
            "model.layers[4].units"
        );
        assert_eq!(shown("model.layers.-5").unwrap(), "model.layers[0]");
        // Keras's names count a named layer of the type too: the 4th layer
        // is the third conv2d, `conv2d_2`.
        assert_eq!(
            shown("model.layers.conv2d_2.filters").unwrap(),
            "model.layers[3].filters"
        );
        assert_eq!(
            shown("model.layers.wide.filters").unwrap(),
            "model.layers[2].filters"
        );
        assert_eq!(
            shown("model.layers.max_pooling2d.pool").unwrap(),
            "model.layers[1].pool"
        );
        assert_eq!(shown("data.classes.-1").unwrap(), "data.classes[1]");
    }

    #[test]
    fn a_key_choosing_no_element_says_what_the_list_holds() {
        let e = shown("model.layers.5.units").unwrap_err();
        assert_eq!(
            e,
            "`5` chooses no element of the list `model.layers`: it has 5 elements: 0 to 4 \
             (or -5 to -1), or a layer's name: conv2d, max_pooling2d, wide, conv2d_2, dense"
        );
        let e = shown("model.layers.dens.units").unwrap_err();
        assert!(e.ends_with("; did you mean `dense`?"), "{e}");
        let e = shown("data.classes.2").unwrap_err();
        assert!(
            e.ends_with("it has 2 elements: 0 to 1 (or -2 to -1)"),
            "{e}"
        );
        let e = shown("model.layers.0.filters.x").unwrap_err();
        assert_eq!(
            e,
            "`model.layers[0].filters` is a number, which has no keys inside"
        );
    }

    #[test]
    fn set_and_remove_change_only_the_chosen_element() {
        let mut m = merged();
        let at = resolve(&m, &path("model.layers.dense.units")).unwrap();
        set(&mut m, &at, json!(10));
        let at = resolve(&m, &path("model.layers.1.pool")).unwrap();
        set(&mut m, &at, json!(3));
        let at = resolve(&m, &path("model.layers.wide.name")).unwrap();
        assert_eq!(remove(&mut m, &at), Ok(true));
        assert_eq!(remove(&mut m, &at), Ok(false));
        let layers = &m["model"]["layers"];
        assert_eq!(layers[4], json!({ "type": "dense", "units": 10 }));
        assert_eq!(layers[1], json!({ "type": "max_pool2d", "pool": 3 }));
        assert_eq!(layers[2], json!({ "type": "conv2d", "filters": 16 }));
        assert_eq!(layers[0], merged()["model"]["layers"][0]);

        let at = resolve(&m, &path("model.layers.0")).unwrap();
        set(&mut m, &at, json!({ "type": "dropout" }));
        assert_eq!(m["model"]["layers"][0], json!({ "type": "dropout" }));
        assert!(remove(&mut m, &at).unwrap_err().contains("not the element"));
    }
}
