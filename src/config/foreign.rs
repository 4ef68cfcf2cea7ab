//! Keys that Keras and PyTorch Lightning users write where runner has them
//! under another name or in another table (`validation_split` in
//! `[augment]`, as Keras's `ImageDataGenerator` takes it), or not at all.
//! An unknown key found here gets its own help instead of a "did you mean"
//! that would point at a key of another meaning (`channel_shift_range` is
//! not `width_shift_range`).

/// What runner has for a foreign key.
enum Ours {
    /// The same setting at this key path; `sample` is a value it takes
    /// (the tests set it), `note` what differs.
    Key {
        key: &'static str,
        #[cfg_attr(not(test), allow(dead_code))]
        sample: &'static str,
        note: Option<&'static str>,
    },
    /// No key of its own: how runner does it, or that it does not.
    Note(&'static str),
}

struct Foreign {
    /// The table the key was written in (`augment`; `` for the top level).
    table: &'static str,
    key: &'static str,
    /// Where users know it from.
    from: &'static str,
    ours: Ours,
}

const fn key(
    table: &'static str,
    k: &'static str,
    from: &'static str,
    ours: &'static str,
    sample: &'static str,
    note: Option<&'static str>,
) -> Foreign {
    Foreign {
        table,
        key: k,
        from,
        ours: Ours::Key {
            key: ours,
            sample,
            note,
        },
    }
}

const fn note(
    table: &'static str,
    k: &'static str,
    from: &'static str,
    note: &'static str,
) -> Foreign {
    Foreign {
        table,
        key: k,
        from,
        ours: Ours::Note(note),
    }
}

const IDG: &str = "Keras's ImageDataGenerator";
const FROM_DIR: &str = "Keras's image_dataset_from_directory";
const FIT: &str = "Keras's fit";
const TRAINER: &str = "a trainer's config";
const KERAS_TB: &str = "Keras's TensorBoard";
const RESIZE: Option<&str> = Some("height, width, channels: every image is resized to it");
const NO_EQUIVALENT: &str = "runner has no equivalent";
const CHANNELS: &str =
    "the last number of `model.input_shape` is the channel count: 1 for grayscale, 3 for rgb";

const FOREIGN: &[Foreign] = &[
    // [augment]: ImageDataGenerator's arguments and Keras's preprocessing layers.
    key("augment", "validation_split", IDG, "data.validation_split", "0.2", Some("the splits are made in [data]")),
    key("augment", "interpolation", "Keras's flow_from_directory", "data.interpolation", "\"bilinear\"", None),
    key("augment", "target_size", "Keras's flow_from_directory", "model.input_shape", "[8, 8, 3]", RESIZE),
    key("augment", "seed", "Keras's flow_from_directory", "experiment.seed", "1", Some("it seeds augmentation too")),
    note("augment", "featurewise_center", IDG, "runner fits no statistics to the data; give them as `normalize = { mean = [...], std = [...] }`"),
    note("augment", "featurewise_std_normalization", IDG, "runner fits no statistics to the data; give them as `normalize = { mean = [...], std = [...] }`"),
    note("augment", "samplewise_center", IDG, NO_EQUIVALENT),
    note("augment", "samplewise_std_normalization", IDG, NO_EQUIVALENT),
    note("augment", "zca_whitening", IDG, NO_EQUIVALENT),
    note("augment", "channel_shift_range", IDG, NO_EQUIVALENT),
    note("augment", "preprocessing_function", IDG, NO_EQUIVALENT),
    note("augment", "random_flip", "Keras's RandomFlip", "`horizontal_flip = true` and `vertical_flip = true` flip with probability 0.5 each"),
    key("augment", "random_rotation", "Keras's RandomRotation", "augment.rotation_range", "10", Some("in degrees, where RandomRotation's factor is a fraction of a full turn: RandomRotation(0.1) is `rotation_range = 36`")),
    key("augment", "random_zoom", "Keras's RandomZoom", "augment.zoom_range", "0.1", Some("`z` zooms by a factor drawn from [1 - z, 1 + z]")),
    note("augment", "random_translation", "Keras's RandomTranslation", "`width_shift_range` and `height_shift_range` shift by fractions of the width and height"),
    key("augment", "random_brightness", "Keras's RandomBrightness", "augment.brightness_range", "[0.5, 1.5]", Some("a range of factors, 1.0 leaving the image as it is")),
    note("augment", "random_contrast", "Keras's RandomContrast", NO_EQUIVALENT),
    note("augment", "random_crop", "Keras's RandomCrop", NO_EQUIVALENT),
    // [data]: image_dataset_from_directory's and flow_from_directory's arguments.
    key("data", "batch_size", FROM_DIR, "train.batch_size", "16", None),
    key("data", "image_size", FROM_DIR, "model.input_shape", "[8, 8, 3]", RESIZE),
    key("data", "target_size", "Keras's flow_from_directory", "model.input_shape", "[8, 8, 3]", RESIZE),
    note("data", "color_mode", FROM_DIR, CHANNELS),
    key("data", "seed", FROM_DIR, "experiment.seed", "1", Some("it seeds the splits and shuffling too")),
    key("data", "shuffle", FROM_DIR, "train.shuffle", "false", None),
    key("data", "directory", FROM_DIR, "data.path", "\"images\"", None),
    key("data", "class_names", FROM_DIR, "data.classes", "[\"a\", \"b\"]", Some("the listed classes, labelled in the listed order")),
    note("data", "label_mode", FROM_DIR, "labels are class indices and the loss is categorical cross-entropy; two classes end in a 2-unit softmax"),
    note("data", "subset", FROM_DIR, "`validation_split` holds out the validation subset, and a run reads both"),
    // [train]: fit's arguments, Lightning Trainer's.
    key("train", "learning_rate", TRAINER, "optimizer.learning_rate", "0.01", None),
    key("train", "lr", TRAINER, "optimizer.learning_rate", "0.01", None),
    key("train", "validation_split", FIT, "data.validation_split", "0.2", None),
    key("train", "max_epochs", "Lightning's Trainer", "train.epochs", "3", None),
    key("train", "seed", "Lightning's seed_everything", "experiment.seed", "1", None),
    note("train", "initial_epoch", FIT, "`runner run --resume DIR --set train.epochs=N` trains a run on from where it stopped"),
    note("train", "callbacks", FIT, "each callback is a table of its own: `[callbacks.early_stopping]`, `[callbacks.checkpoint]`, ..."),
    note("train", "optimizer", FIT, "the optimizer is a table of its own: `[optimizer]` with `type = \"adam\"`"),
    note("train", "loss", FIT, "the loss is categorical cross-entropy; `label_smoothing` and `class_weight` are its options"),
    note("train", "metrics", FIT, "loss and accuracy are recorded every epoch; `top_k` adds top-k accuracy"),
    // [callbacks.tensorboard]: Keras's TensorBoard callback.
    key("callbacks.tensorboard", "histogram_freq", KERAS_TB, "callbacks.tensorboard.histogram_every", "1", None),
    key("callbacks.tensorboard", "update_freq", KERAS_TB, "callbacks.tensorboard.batch_every", "10", Some("a number of batches; every epoch's values are always written")),
    note("callbacks.tensorboard", "log_dir", KERAS_TB, "each run writes its event files in its own run folder; `tensorboard --logdir runs` shows them all"),
    key("callbacks.tensorboard", "write_graph", KERAS_TB, "callbacks.tensorboard.graph", "false", Some("on by default, as in Keras")),
    note("callbacks.tensorboard", "write_images", KERAS_TB, NO_EQUIVALENT),
    note("callbacks.tensorboard", "write_steps_per_second", KERAS_TB, "images per second are in metrics.csv's `images_per_second`"),
    note("callbacks.tensorboard", "profile_batch", KERAS_TB, NO_EQUIVALENT),
    note("callbacks.tensorboard", "embeddings_freq", KERAS_TB, NO_EQUIVALENT),
    // [optimizer]
    key("optimizer", "lr", "Keras's and PyTorch's optimizers", "optimizer.learning_rate", "0.01", None),
];

/// The help for `key`, unknown in `table`, when Keras or Lightning users
/// write it there.
pub fn help(table: &str, key: &str) -> Option<String> {
    let f = FOREIGN.iter().find(|f| f.table == table && f.key == key)?;
    Some(match &f.ours {
        Ours::Key {
            key: ours, note, ..
        } => {
            let note = note.map(|n| format!(": {n}")).unwrap_or_default();
            format!("`{}` ({}) is `{ours}` in runner{note}", f.key, f.from)
        }
        Ours::Note(n) => format!("`{}` ({}): {n}", f.key, f.from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_text, LoadOptions, Override};

    const BASE: &str = r#"
[experiment]
name = "foreign"

[data]
source = "image_folder"
path = "images"

[model]
input_shape = [8, 8, 3]
layers = [{ type = "flatten" }, { type = "dense", units = 2 }]

[optimizer]
type = "adam"
"#;

    fn load(set: &[String]) -> Result<(), String> {
        let overrides = set
            .iter()
            .map(|s| Override::parse(s).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let opts = LoadOptions {
            overrides,
            use_env: false,
        };
        load_text(std::path::Path::new("foreign.toml"), BASE, &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_foreign_key_is_unknown_where_it_is_written() {
        for f in FOREIGN {
            let at = format!("{}.{}", f.table, f.key);
            let err = load(&[format!("{at}=1")]).expect_err(&at);
            assert!(
                err.contains(&format!("unknown key `{}`", f.key)),
                "{at}: {err}"
            );
        }
    }

    #[test]
    fn every_key_named_as_ours_takes_its_sample_value() {
        for f in FOREIGN {
            if let Ours::Key { key, sample, .. } = f.ours {
                load(&[format!("{key}={sample}")]).unwrap_or_else(|e| panic!("{key}: {e}"));
            }
        }
    }

    #[test]
    fn each_table_lists_a_key_once() {
        let mut seen = std::collections::BTreeSet::new();
        for f in FOREIGN {
            assert!(seen.insert((f.table, f.key)), "{}.{} twice", f.table, f.key);
        }
    }

    #[test]
    fn the_help_names_runners_key_and_where_the_user_knows_it_from() {
        assert_eq!(
            help("augment", "validation_split").as_deref(),
            Some("`validation_split` (Keras's ImageDataGenerator) is `data.validation_split` in runner: the splits are made in [data]")
        );
        assert_eq!(
            help("data", "shuffle").as_deref(),
            Some("`shuffle` (Keras's image_dataset_from_directory) is `train.shuffle` in runner")
        );
        assert!(help("augment", "channel_shift_range").is_some_and(|h| h.contains("no equivalent")));
        assert_eq!(help("model", "validation_split"), None);
        assert_eq!(help("augment", "rescale"), None);
    }
}
