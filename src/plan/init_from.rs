//! `model.init_from`: the source run's layer stack, checked layer by layer
//! against this model before anything is computed.

use std::path::{Path, PathBuf};

use super::{absolute, check_model, Checker, LayerKind, LayerPlan, ModelPlan};
use crate::rundir::describe;
use crate::rundir::{resolve_pointers, RunDir, FINAL, LAST, MODEL_FILE};

/// The checkpoint a new run copies its matching layers from.
#[derive(Debug, Clone, PartialEq)]
pub struct InitFromPlan {
    /// The folder given (absolute, `latest` resolved).
    pub path: PathBuf,
    /// The source checkpoint's `model.mpk`.
    pub model_file: PathBuf,
    /// The source run's layer stack, as its `config.resolved.toml` builds it.
    pub source: ModelPlan,
    /// Names of this model's layers that take the source's weights.
    pub copied: Vec<String>,
    /// What is not copied (new layers, a re-sized final dense layer, source
    /// layers left out), one line each, for the run to print.
    pub notes: Vec<String>,
    /// The classes the source run trained on, in label order, from its
    /// meta.json (`None` when it names none).
    pub source_classes: Option<Vec<String>>,
}

/// How many differing outputs [`InitFromPlan::head_note`] names.
const OUTPUTS_NAMED: usize = 3;

impl InitFromPlan {
    /// A line for the run when the final layer `head` was copied from a
    /// source that trained its outputs on other classes than `classes`
    /// (this run's, in label order): each output then starts out meaning
    /// the source's class at its place. `None` when the head was not
    /// copied, the classes agree, or the source names none.
    pub fn head_note(&self, head: &str, classes: &[String]) -> Option<String> {
        let theirs = self.source_classes.as_deref()?;
        if !self.copied.iter().any(|c| c == head) || theirs == classes {
            return None;
        }
        let differ: Vec<String> = theirs
            .iter()
            .zip(classes)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("output {i} is `{a}` there, `{b}` here"))
            .collect();
        let mut named = differ[..differ.len().min(OUTPUTS_NAMED)].join("; ");
        if differ.len() > OUTPUTS_NAMED {
            named.push_str(&format!("; and {} more", differ.len() - OUTPUTS_NAMED));
        }
        let how = if same_set(theirs, classes) {
            "the same classes in another order"
        } else {
            "other classes"
        };
        Some(format!(
            "{head}: copied from a source that trained it on {how} ({named}); \
             rename it (`name = \"head\"`) to start it fresh"
        ))
    }
}

/// Whether `a` and `b` hold the same names, in any order.
fn same_set(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// The source's checkpoint and run folder: a checkpoint folder holds
/// `model.mpk` (its run is two levels up); a run folder means `final`.
fn locate(folder: &Path) -> Result<(PathBuf, PathBuf), String> {
    let in_folder = folder.join(MODEL_FILE);
    if in_folder.is_file() {
        let run = folder
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{} is not inside a run folder", folder.display()))?;
        return Ok((in_folder, run.to_path_buf()));
    }
    let run = RunDir::at_existing(folder);
    if !run.resolved_config().is_file() {
        return Err(format!(
            "{} is neither a run folder (with config.resolved.toml) nor a checkpoint folder (with model.mpk): {}",
            folder.display(),
            describe::describe(folder).not_a_run(folder)
        ));
    }
    let file = run.checkpoint(FINAL).join(MODEL_FILE);
    if !file.is_file() {
        return Err(format!(
            "{} has no `final` checkpoint (the run did not finish); name a checkpoint folder such as {}",
            folder.display(),
            run.checkpoint(LAST).display()
        ));
    }
    Ok((file, folder.to_path_buf()))
}

/// The parameter shapes of a layer, with its Keras class.
fn param_shapes(kind: &LayerKind) -> (&'static str, Vec<Vec<usize>>) {
    let shapes = match kind {
        LayerKind::Conv2d {
            in_channels,
            filters,
            kernel,
            use_bias,
            ..
        } => {
            let mut v = vec![vec![*filters, *in_channels, kernel[0], kernel[1]]];
            if *use_bias {
                v.push(vec![*filters]);
            }
            v
        }
        LayerKind::Dense {
            in_features,
            units,
            use_bias,
            ..
        } => {
            let mut v = vec![vec![*in_features, *units]];
            if *use_bias {
                v.push(vec![*units]);
            }
            v
        }
        LayerKind::BatchNorm { features, .. } => vec![vec![*features]; 4],
        _ => Vec::new(),
    };
    (kind.keras_class(), shapes)
}

fn describe(kind: &LayerKind) -> String {
    let (class, shapes) = param_shapes(kind);
    if shapes.is_empty() {
        class.to_string()
    } else {
        let s: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
        format!("{class} {}", s.join(" "))
    }
}

/// A final dense layer that differs from the source's only in its units.
fn new_head(ours: &LayerPlan, theirs: &LayerPlan, last: bool) -> Option<(usize, usize)> {
    match (&ours.kind, &theirs.kind) {
        (
            LayerKind::Dense {
                in_features: a,
                units: ua,
                use_bias: ba,
                ..
            },
            LayerKind::Dense {
                in_features: b,
                units: ub,
                use_bias: bb,
                ..
            },
        ) if last && a == b && ba == bb && ua != ub => Some((*ub, *ua)),
        _ => None,
    }
}

/// Compare `model` with the source's stack: `Err` lists every layer whose
/// type or parameter shapes differ.
pub(super) fn compare(
    model: &ModelPlan,
    source: &ModelPlan,
) -> Result<(Vec<String>, Vec<String>), Vec<String>> {
    let (mut copied, mut notes, mut mismatches) = (Vec::new(), Vec::new(), Vec::new());
    let n = model.layers.len();
    for (i, ours) in model.layers.iter().enumerate() {
        let Some(theirs) = source.layers.iter().find(|l| l.name == ours.name) else {
            if !param_shapes(&ours.kind).1.is_empty() {
                notes.push(format!(
                    "{}: not in the source run, keeps its fresh weights",
                    ours.name
                ));
            }
            continue;
        };
        if let Some((from, to)) = new_head(ours, theirs, i + 1 == n) {
            notes.push(format!(
                "{}: the final dense layer has {to} units instead of the source's {from}; re-initialised",
                ours.name
            ));
            continue;
        }
        if param_shapes(&ours.kind) != param_shapes(&theirs.kind) {
            mismatches.push(format!(
                "{}: {} here, {} in the source run",
                ours.name,
                describe(&ours.kind),
                describe(&theirs.kind)
            ));
            continue;
        }
        if !param_shapes(&ours.kind).1.is_empty() {
            copied.push(ours.name.clone());
        }
    }
    for theirs in &source.layers {
        if !param_shapes(&theirs.kind).1.is_empty()
            && !model.layers.iter().any(|l| l.name == theirs.name)
        {
            notes.push(format!("{}: in the source run only, not used", theirs.name));
        }
    }
    if mismatches.is_empty() {
        Ok((copied, notes))
    } else {
        Err(mismatches)
    }
}

/// Check `model.init_from` against `model`; failures go to `ck`.
pub(super) fn check(
    ck: &mut Checker,
    path: &Path,
    base: &Path,
    model: &ModelPlan,
) -> Option<InitFromPlan> {
    const KEY: &str = "model.init_from";
    let folder = resolve_pointers(&absolute(base, path));
    let (model_file, run) = match locate(&folder) {
        Ok(found) => found,
        Err(e) => {
            ck.fail(
                KEY,
                e,
                Some("give a run folder (runs/<name>/vNNNN or runs/<name>/latest) or a checkpoint folder".into()),
            );
            return None;
        }
    };
    let source_run = RunDir::at_existing(&run);
    let config = source_run.resolved_config();
    let loaded = match crate::config::load_exact(&config) {
        Ok(l) => l,
        Err(e) => {
            ck.fail(
                KEY,
                format!("cannot read the source run's {}: {e}", config.display()),
                None,
            );
            return None;
        }
    };
    let mut source_ck = Checker {
        sources: &loaded.sources,
        errors: Vec::new(),
    };
    let source = check_model(&mut source_ck, &loaded.spec);
    let Some(source) = source.filter(|_| source_ck.errors.is_empty()) else {
        let first = source_ck
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_default();
        ck.fail(
            KEY,
            format!(
                "the source run's model in {} does not build: {first}",
                config.display()
            ),
            None,
        );
        return None;
    };
    match compare(model, &source) {
        Ok((copied, notes)) => Some(InitFromPlan {
            path: folder,
            model_file,
            source,
            copied,
            notes,
            source_classes: source_run.read_meta().ok().and_then(|m| m.class_names()),
        }),
        Err(mismatches) => {
            ck.fail(
                KEY,
                format!(
                    "{} layer(s) differ from the source run {}:\n  {}",
                    mismatches.len(),
                    run.display(),
                    mismatches.join("\n  ")
                ),
                Some("rename a changed layer (`name = ...`) to give it fresh weights, or match the source's shapes".into()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::InitFromPlan;

    /// A finished source run `runs/src/v0001` (with `latest`) whose model is
    /// `layers`; the checkpoint's bytes are never read by the plan.
    fn source_run(root: &Path, layers: &str) -> std::path::PathBuf {
        let run = root.join("runs/src/v0001");
        std::fs::create_dir_all(run.join("checkpoints/final")).unwrap();
        std::fs::create_dir_all(run.join("checkpoints/best")).unwrap();
        std::fs::write(run.join("checkpoints/final/model.mpk"), b"x").unwrap();
        std::fs::write(run.join("checkpoints/best/model.mpk"), b"x").unwrap();
        std::fs::write(root.join("runs/src/latest"), "v0001\n").unwrap();
        std::fs::write(
            run.join("config.resolved.toml"),
            experiment("src", layers, "", 3),
        )
        .unwrap();
        run
    }

    fn experiment(name: &str, layers: &str, init_from: &str, classes: usize) -> String {
        format!(
            r#"[experiment]
name = "{name}"

[data]
source = "synthetic"
classes = {classes}

[model]
input_shape = [8, 8, 1]
{init_from}
layers = [
{layers}
]
"#
        )
    }

    const SOURCE: &str = r#"  { type = "conv2d", filters = 4, kernel = 3 },
  { type = "conv2d", filters = 8, kernel = 3 },
  { type = "flatten" },
  { type = "dense", units = 3, activation = "softmax" },"#;

    /// The plan's `init_from`, or its errors, one message each.
    fn plan(layers: &str, init_from: &Path) -> Result<Option<InitFromPlan>, Vec<String>> {
        // The last dense layer's units are the class count.
        let classes = if layers
            .lines()
            .last()
            .is_some_and(|l| l.contains("units = 2"))
        {
            2
        } else {
            3
        };
        let text = experiment(
            "ft",
            layers,
            &format!("init_from = {:?}", init_from.display().to_string()),
            classes,
        );
        let loaded = crate::config::load_text(
            Path::new("ft.toml"),
            &text,
            &crate::config::LoadOptions::default(),
        )
        .map_err(|e| vec![e.to_string()])?;
        crate::plan::plan(&loaded)
            .map(|p| {
                assert_eq!(
                    p.spec.model.init_from,
                    p.init_from.as_ref().map(|i| i.path.clone()),
                    "the resolved config names the folder used"
                );
                p.init_from
            })
            .map_err(|e| e.errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_run_folder_latest_and_a_checkpoint_folder_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let run = source_run(tmp.path(), SOURCE);
        for (given, file) in [
            (run.clone(), run.join("checkpoints/final/model.mpk")),
            (
                tmp.path().join("runs/src/latest"),
                run.join("checkpoints/final/model.mpk"),
            ),
            (
                run.join("checkpoints/best"),
                run.join("checkpoints/best/model.mpk"),
            ),
        ] {
            let p = plan(SOURCE, &given).unwrap().unwrap();
            assert_eq!(p.model_file, file, "{}", given.display());
            assert!(p.path.is_absolute());
            assert_eq!(p.copied, ["conv2d", "conv2d_1", "dense"]);
            assert!(p.notes.is_empty(), "{:?}", p.notes);
            assert_eq!(p.source.layers.len(), 4);
        }
        assert!(plan(SOURCE, &tmp.path().join("runs/src/latest"))
            .unwrap()
            .unwrap()
            .path
            .ends_with("v0001"));
    }

    #[test]
    fn a_copied_head_on_other_classes_gets_a_note() {
        let tmp = tempfile::tempdir().unwrap();
        let run = source_run(tmp.path(), SOURCE);
        let mut p = plan(SOURCE, &run).unwrap().unwrap();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // No meta.json classes: nothing to compare.
        assert_eq!(p.source_classes, None);
        assert_eq!(p.head_note("dense", &names(&["x", "y", "z"])), None);
        p.source_classes = Some(names(&["a", "b", "c"]));
        assert_eq!(p.head_note("dense", &names(&["a", "b", "c"])), None);
        assert_eq!(
            p.head_note("dense", &names(&["a", "c", "b"])).as_deref(),
            Some(
                "dense: copied from a source that trained it on the same classes in another \
                 order (output 1 is `b` there, `c` here; output 2 is `c` there, `b` here); \
                 rename it (`name = \"head\"`) to start it fresh"
            )
        );
        p.source_classes = Some(names(&["a", "b", "c", "d", "e"]));
        let note = p.head_note("dense", &names(&["v", "w", "x", "y", "z"]));
        assert!(
            note.as_deref().is_some_and(|n| n.contains(
                "other classes (output 0 is `a` there, `v` here; output 1 is `b` there, `w` \
                 here; output 2 is `c` there, `x` here; and 2 more)"
            )),
            "{note:?}"
        );
        // A head that was not copied (re-initialised or renamed).
        assert_eq!(
            p.head_note("head", &names(&["v", "w", "x", "y", "z"])),
            None
        );
    }

    #[test]
    fn a_folder_that_is_no_run_is_refused_at_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let errors = plan(SOURCE, tmp.path()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`model.init_from`") && errors[0].contains("neither a run folder"),
            "{errors:?}"
        );
        // An experiment's folder: the message names its newest run.
        let run = source_run(tmp.path(), SOURCE);
        let errors = plan(SOURCE, &tmp.path().join("runs/src")).unwrap_err();
        assert!(
            errors[0].contains(&format!("its newest run is {}", run.display())),
            "{errors:?}"
        );
        // A run without a `final` checkpoint.
        std::fs::remove_dir_all(run.join("checkpoints/final")).unwrap();
        let errors = plan(SOURCE, &run).unwrap_err();
        assert!(errors[0].contains("no `final` checkpoint"), "{errors:?}");
    }

    #[test]
    fn every_mismatching_layer_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let run = source_run(tmp.path(), SOURCE);
        let changed = r#"  { type = "conv2d", filters = 6, kernel = 3 },
  { type = "conv2d", filters = 8, kernel = 5 },
  { type = "flatten" },
  { type = "dense", units = 3, activation = "softmax" },"#;
        let errors = plan(changed, &run).unwrap_err();
        assert_eq!(errors.len(), 1, "one error listing every layer: {errors:?}");
        let e = &errors[0];
        assert!(e.starts_with("ft.toml:"), "{e}");
        assert!(e.contains("3 layer(s) differ"), "{e}");
        assert!(
            e.contains(
                "conv2d: Conv2D [6, 1, 3, 3] [6] here, Conv2D [4, 1, 3, 3] [4] in the source run"
            ),
            "{e}"
        );
        assert!(e.contains("conv2d_1: Conv2D [8, 6, 5, 5]"), "{e}");
        // The dense layer's input size changed with the convolutions: named too.
        assert!(e.contains("dense: Dense"), "{e}");
    }

    #[test]
    fn a_new_class_count_reinitialises_the_head_and_new_layers_are_noted() {
        let tmp = tempfile::tempdir().unwrap();
        let run = source_run(tmp.path(), SOURCE);
        let new_head = r#"  { type = "conv2d", filters = 4, kernel = 3, trainable = false },
  { type = "conv2d", filters = 8, kernel = 3, trainable = false },
  { type = "flatten" },
  { type = "dense", units = 2, activation = "softmax", name = "extra" },
  { type = "dense", units = 2, activation = "softmax", name = "dense" },"#;
        // `extra` is new; `dense` now has 2 inputs: a shape mismatch.
        let errors = plan(new_head, &run).unwrap_err();
        assert!(
            errors[0].contains("1 layer(s) differ") && errors[0].contains("dense: Dense [2, 2]"),
            "{errors:?}"
        );

        let new_head = r#"  { type = "conv2d", filters = 4, kernel = 3, trainable = false },
  { type = "conv2d", filters = 8, kernel = 3, trainable = false },
  { type = "flatten" },
  { type = "dense", units = 2, activation = "softmax" },"#;
        let p = plan(new_head, &run).unwrap().unwrap();
        assert_eq!(p.copied, ["conv2d", "conv2d_1"]);
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0].contains("dense: the final dense layer has 2 units instead of the source's 3; re-initialised"), "{:?}", p.notes);

        // A layer only here, and one only in the source, are noted.
        let renamed = r#"  { type = "conv2d", filters = 4, kernel = 3 },
  { type = "conv2d", filters = 8, kernel = 3, name = "fresh" },
  { type = "flatten" },
  { type = "dense", units = 3, activation = "softmax" },"#;
        let p = plan(renamed, &run).unwrap().unwrap();
        assert_eq!(p.copied, ["conv2d", "dense"]);
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
        assert!(p.notes[0].starts_with("fresh: not in the source run"));
        assert!(p.notes[1].starts_with("conv2d_1: in the source run only"));
    }

    #[test]
    fn trainable_is_a_key_of_layers_with_weights_only() {
        let text = experiment(
            "ft",
            r#"{ type = "flatten", trainable = false }, { type = "dense", units = 3 },"#,
            "",
            3,
        );
        let e = crate::config::load_text(
            Path::new("ft.toml"),
            &text,
            &crate::config::LoadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("trainable"), "{e}");
    }
}
