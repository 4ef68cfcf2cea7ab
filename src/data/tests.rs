//! Each source on tiny generated fixtures, through `Dataset::open` and the
//! real loader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::LoadOptions;

fn experiment(data: &str, augment: &str, input: [usize; 3], classes: usize) -> String {
    let [h, w, c] = input;
    format!(
        r#"
[experiment]
name = "t"
seed = 5

[data]
{data}

[augment]
{augment}

[model]
input_shape = [{h}, {w}, {c}]
layers = [ {{ type = "flatten" }}, {{ type = "dense", units = {classes}, activation = "softmax" }} ]

[callbacks.checkpoint]
monitor = "loss"
"#
    )
}

fn plan_from(text: &str) -> ExperimentPlan {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("exp.toml");
    std::fs::write(&path, text).expect("write");
    let loaded = crate::config::load(&path, &LoadOptions::default()).expect("config loads");
    crate::plan::plan(&loaded).expect("plan validates")
}

fn opts(batch_size: usize, epoch: usize, shuffle: bool, augment: bool) -> BatchOptions {
    BatchOptions {
        batch_size,
        epoch,
        seed: 5,
        shuffle,
        augment,
        max_batches: None,
    }
}

fn collect(split: &Split, o: &BatchOptions) -> Vec<Batch> {
    split
        .batches(o)
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

fn paths(split: &Split) -> Vec<PathBuf> {
    (0..split.len())
        .map(|i| split.path(i).expect("file").to_path_buf())
        .collect()
}

const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

fn folder_plan(root: &Path, extra: &str, augment: &str) -> ExperimentPlan {
    plan_from(&experiment(
        &format!(
            "source = \"image_folder\"\npath = \"{}\"\n{extra}",
            root.display()
        ),
        augment,
        [12, 16, 3],
        3,
    ))
}

#[test]
fn image_folder_split_is_stratified_disjoint_and_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::image_folder(dir.path(), &CLASSES, 10, (40, 30), "png").expect("fixture");
    let plan = folder_plan(dir.path(), "validation_split = 0.2", "");
    let ds = Dataset::open(&plan).expect("opens");
    assert_eq!(ds.classes, CLASSES);
    let (train, val) = (&ds.train, ds.validation.as_ref().expect("validation"));
    assert_eq!((train.len(), val.len()), (24, 6));
    for c in 0..3 {
        assert_eq!(
            val.labels().iter().filter(|&&l| l == c).count(),
            2,
            "class {c}"
        );
    }
    let t: BTreeSet<PathBuf> = paths(train).into_iter().collect();
    let v: BTreeSet<PathBuf> = paths(val).into_iter().collect();
    assert!(t.is_disjoint(&v));
    assert_eq!(t.len() + v.len(), 30);
    // Every file's label is its folder.
    for (i, p) in paths(train).iter().enumerate() {
        assert!(p.starts_with(dir.path().join(CLASSES[train.label(i)])));
    }
    // The same split on every open.
    let again = Dataset::open(&plan).expect("opens");
    assert_eq!(
        paths(again.validation.as_ref().expect("validation")),
        paths(val)
    );
    let fp = ds.fingerprint();
    assert_eq!((fp.train, fp.validation, fp.test), (24, Some(6), None));
}

#[test]
fn image_folder_with_validation_and_test_folders_and_mixed_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    fixtures::image_folder(&r.join("train"), &CLASSES, 4, (20, 20), "jpg").expect("fixture");
    fixtures::image_folder(&r.join("val"), &CLASSES, 2, (30, 10), "bmp").expect("fixture");
    fixtures::image_folder(
        &r.join("test"),
        &["cat", "dog", "fox", "extra"],
        1,
        (8, 8),
        "webp",
    )
    .expect("fixture");
    // A gray PNG among the colour JPEGs, in a nested folder.
    let gray = image::GrayImage::from_pixel(5, 7, image::Luma([200]));
    std::fs::create_dir_all(r.join("train/cat/nested")).expect("mkdir");
    gray.save(r.join("train/cat/nested/g.PNG")).expect("save");
    let plan = plan_from(&experiment(
        &format!(
            "source = \"image_folder\"\npath = \"{}\"\nvalidation_path = \"{}\"\ntest_path = \"{}\"",
            r.join("train").display(),
            r.join("val").display(),
            r.join("test").display()
        ),
        "",
        [12, 16, 3],
        3,
    ));
    let ds = Dataset::open(&plan).expect("opens");
    assert_eq!(ds.train.len(), 13);
    assert_eq!(ds.validation.as_ref().map(Split::len), Some(6));
    assert_eq!(
        ds.test.as_ref().map(Split::len),
        Some(3),
        "the extra test class is ignored"
    );
    let img = ds.train.image(0).expect("decodes");
    assert_eq!((img.width(), img.height()), (16, 12));
    // The gray file comes out as 3 equal channels.
    let k = paths(&ds.train)
        .iter()
        .position(|p| p.ends_with("g.PNG"))
        .expect("gray file");
    let px = ds.train.pixels(k).expect("decodes");
    assert_eq!(px.channels, 3);
    assert!(px.data.iter().all(|&v| v == 200));
}

#[test]
fn batches_are_shaped_shuffled_per_epoch_and_the_last_is_partial() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::image_folder(dir.path(), &CLASSES, 4, (24, 18), "jpg").expect("fixture");
    let plan = folder_plan(dir.path(), "", "rescale = \"1/255\"");
    let ds = Dataset::open(&plan).expect("opens");
    let b = collect(&ds.train, &opts(5, 0, true, false));
    assert_eq!(
        b.iter().map(|b| b.shape[0]).collect::<Vec<_>>(),
        vec![5, 5, 2]
    );
    assert_eq!(b[0].shape, [5, 3, 12, 16]);
    assert_eq!(b[0].images.len(), 5 * 3 * 12 * 16);
    let seen: BTreeSet<usize> = b.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(seen.len(), 12, "each item once per epoch");
    for batch in &b {
        for (k, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.labels[k], ds.train.label(i) as i64);
        }
        assert!(
            batch.images.iter().all(|v| (0.0..=1.0).contains(v)),
            "rescaled"
        );
    }
    let order = |epoch| {
        collect(&ds.train, &opts(5, epoch, true, false))
            .into_iter()
            .flat_map(|b| b.indices)
            .collect::<Vec<_>>()
    };
    assert_eq!(order(0), order(0));
    assert_ne!(order(0), order(1));
    let unshuffled: Vec<usize> = collect(&ds.train, &opts(5, 3, false, false))
        .into_iter()
        .flat_map(|b| b.indices)
        .collect();
    assert_eq!(unshuffled, (0..12).collect::<Vec<_>>());
    let capped = ds.train.batches(&BatchOptions {
        max_batches: Some(2),
        ..opts(5, 0, true, false)
    });
    assert_eq!(capped.num_batches(), 2);
    assert_eq!(capped.count(), 2);
}

#[test]
fn without_augmentation_a_batch_is_the_resized_image_rescaled() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::image_folder(dir.path(), &CLASSES, 2, (32, 24), "png").expect("fixture");
    let plan = folder_plan(
        dir.path(),
        "",
        "rescale = \"1/255\"\nrotation_range = 40\nhorizontal_flip = true\nbrightness_range = [0.5, 0.9]",
    );
    let ds = Dataset::open(&plan).expect("opens");
    let b = &collect(&ds.train, &opts(6, 0, false, false))[0];
    let plane = 12 * 16;
    for (k, &i) in b.indices.iter().enumerate() {
        let px = ds.train.pixels(i).expect("decodes");
        for ch in 0..3 {
            for p in 0..plane {
                let want = px.data[p * 3 + ch] as f32 / 255.0;
                let got = b.images[k * 3 * plane + ch * plane + p];
                assert!((got - want).abs() < 1e-6);
            }
        }
    }
    let augmented = &collect(&ds.train, &opts(6, 0, false, true))[0];
    assert_ne!(augmented.images, b.images, "training batches are augmented");
    assert_eq!(augmented.labels, b.labels);
}

#[test]
fn batches_do_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::image_folder(dir.path(), &CLASSES, 3, (40, 30), "jpg").expect("fixture");
    let plan = folder_plan(
        dir.path(),
        "",
        "rescale = \"1/255\"\nrotation_range = 90\nwidth_shift_range = 0.5\nbrightness_range = [0.1, 0.7]\nhorizontal_flip = true\nvertical_flip = true",
    );
    let ds = Dataset::open(&plan).expect("opens");
    let o = opts(4, 2, true, true);
    let chunk: Vec<usize> = split::epoch_order(ds.train.len(), 5, 2, true)[..4].to_vec();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| loader::make_batch(&ds.train, &chunk, &o))
            .expect("batch")
            .expect("not empty")
    };
    let one = run(1);
    assert_eq!(one, run(3));
    // The background loader delivers the same first batch.
    assert_eq!(collect(&ds.train, &o)[0], one);
}

#[test]
fn cached_items_give_the_same_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::image_folder(dir.path(), &CLASSES, 2, (20, 20), "png").expect("fixture");
    let a = Dataset::open(&folder_plan(dir.path(), "", "horizontal_flip = true")).expect("opens");
    let b = Dataset::open(&folder_plan(
        dir.path(),
        "cache = true",
        "horizontal_flip = true",
    ))
    .expect("opens");
    for epoch in 0..2 {
        assert_eq!(
            collect(&a.train, &opts(4, epoch, true, true)),
            collect(&b.train, &opts(4, epoch, true, true))
        );
    }
}

#[test]
fn a_corrupt_image_fails_naming_the_file_or_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = fixtures::image_folder(dir.path(), &CLASSES, 3, (20, 20), "jpg").expect("fixture");
    let bad = &files[4];
    let bytes = std::fs::read(bad).expect("read");
    std::fs::write(bad, &bytes[..bytes.len() / 3]).expect("truncate");

    let ds =
        Dataset::open(&folder_plan(dir.path(), "", "")).expect("opens: files are not decoded yet");
    let results: Vec<_> = ds.train.batches(&opts(4, 0, false, false)).collect();
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error");
    assert!(
        matches!(err, DataError::BadImage { path, .. } if path == bad),
        "{err}"
    );
    assert!(
        results.last().is_some_and(|r| r.is_err()),
        "nothing after the error"
    );

    let ds = Dataset::open(&folder_plan(dir.path(), "on_bad_image = \"skip\"", "")).expect("opens");
    let batches = collect(&ds.train, &opts(4, 0, false, false));
    assert_eq!(batches.iter().map(|b| b.shape[0]).sum::<usize>(), 8);
    assert_eq!(batches[1].shape[0], 3);
    assert_eq!(batches[1].images.len(), 3 * 3 * 12 * 16);
    let skipped = ds.train.skipped();
    assert_eq!(skipped.len(), 1);
    assert_eq!(&skipped[0].0, bad);
}

#[test]
fn dropping_an_epoch_early_stops_the_loader() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::image_folder(dir.path(), &CLASSES, 6, (20, 20), "png").expect("fixture");
    let ds = Dataset::open(&folder_plan(dir.path(), "prefetch = 1", "")).expect("opens");
    let mut batches = ds.train.batches(&opts(1, 0, true, false));
    assert!(batches.next().is_some());
    drop(batches); // joins the worker; a hang here fails the test by timeout
}

#[test]
fn bad_folders_and_classes_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::image_folder(dir.path(), &CLASSES, 1, (8, 8), "png").expect("fixture");
    let err = Dataset::open(&folder_plan(&dir.path().join("missing"), "", "")).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFolder { path, .. } if path.ends_with("missing")),
        "{err}"
    );
    let err = Dataset::open(&folder_plan(
        dir.path(),
        "classes = [\"cat\", \"dgo\", \"fox\"]",
        "",
    ))
    .unwrap_err();
    match &err {
        DataError::UnknownClass { name, help, .. } => {
            assert_eq!(name, "dgo");
            assert_eq!(help.as_deref(), Some("did you mean `dog`?"));
        }
        other => panic!("expected an unknown class, got {other}"),
    }
    // Two classes for a 3-way model.
    let err = Dataset::open(&folder_plan(dir.path(), "classes = 2", "")).unwrap_err();
    match &err {
        DataError::ClassCount {
            data: 2,
            model: 3,
            units_key,
            help,
        } => {
            // Located at the last dense layer's `units`; fewer classes
            // cannot be made more by `data.classes`.
            let at = KeyPath::parse("model.layers").index(1).key("units");
            assert_eq!(units_key, &at);
            assert_eq!(err.key(), Some(at));
            assert_eq!(help, "set `units = 2` in the last dense layer");
        }
        other => panic!("expected a class count error, got {other}"),
    }
    // More classes than outputs: `data.classes` can take the first ones.
    let err = DataError::class_count(12, 10, KeyPath::parse("model.layers").index(20));
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(
        help.contains("`units = 12`")
            && help.contains("`data.classes = 10` to train on the first 10 of the 12 classes"),
        "{help}"
    );
}

#[test]
fn food101_reads_meta_files_and_splits_validation_from_train() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::food101(
        dir.path(),
        &["apple_pie", "baklava", "churros", "donuts"],
        10,
        3,
        (24, 24),
    )
    .expect("fixture");
    let plan = plan_from(&experiment(
        &format!(
            "source = \"food101\"\npath = \"{}\"\nclasses = 3\nvalidation_split = 0.3",
            dir.path().display()
        ),
        "rescale = \"1/255\"",
        [16, 16, 3],
        3,
    ));
    let ds = Dataset::open(&plan).expect("opens");
    assert_eq!(ds.classes, vec!["apple_pie", "baklava", "churros"]);
    assert_eq!(ds.train.len(), 21);
    assert_eq!(ds.validation.as_ref().map(Split::len), Some(9));
    assert_eq!(ds.test.as_ref().map(Split::len), Some(9));
    let test = ds.test.as_ref().expect("test");
    let b = collect(test, &opts(4, 0, false, false));
    assert_eq!(b.iter().map(|b| b.shape[0]).sum::<usize>(), 9);
    assert!(paths(test)
        .iter()
        .all(|p| p.starts_with(dir.path().join("images"))));
}

#[test]
fn idx_files_give_images_labels_and_a_stratified_validation_split() {
    for gz in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        fixtures::idx_files(dir.path(), 50, 20, 5, 6, 4, gz).expect("fixture");
        let plan = plan_from(&experiment(
            &format!(
                "source = \"idx\"\npath = \"{}\"\nvalidation_split = 0.2{}",
                dir.path().display(),
                if gz {
                    String::new()
                } else {
                    "\ntrain_images = \"train-images-idx3-ubyte\"\ntrain_labels = \"train-labels-idx1-ubyte\"\ntest_images = \"t10k-images-idx3-ubyte\"\ntest_labels = \"t10k-labels-idx1-ubyte\"".into()
                }
            ),
            "rescale = \"1/255\"",
            [6, 4, 1],
            5,
        ));
        let ds = Dataset::open(&plan).expect("opens");
        assert_eq!(ds.classes, vec!["0", "1", "2", "3", "4"]);
        assert_eq!(
            (ds.train.len(), ds.validation.as_ref().map(Split::len)),
            (40, Some(10))
        );
        let val = ds.validation.as_ref().expect("validation");
        for c in 0..5 {
            assert_eq!(val.labels().iter().filter(|&&l| l == c).count(), 2);
        }
        // Item i of the file is filled with i: check values and labels agree.
        let test = ds.test.as_ref().expect("test");
        let b = &collect(test, &opts(20, 0, false, false))[0];
        assert_eq!(b.shape, [20, 1, 6, 4]);
        for k in 0..20 {
            assert_eq!(b.labels[k], (k % 5) as i64);
            assert!(b.images[k * 24..(k + 1) * 24]
                .iter()
                .all(|&v| (v - k as f32 / 255.0).abs() < 1e-6));
        }
    }
}

#[test]
fn idx_validate_on_test_validates_on_the_whole_test_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::idx_files(dir.path(), 50, 20, 5, 6, 4, true).expect("fixture");
    let plan = plan_from(&experiment(
        &format!(
            "source = \"idx\"\npath = \"{}\"\nvalidate_on_test = true",
            dir.path().display()
        ),
        "rescale = \"1/255\"",
        [6, 4, 1],
        5,
    ));
    let ds = Dataset::open(&plan).expect("opens");
    // All 50 training images train; the 20 test images are the validation data too.
    assert_eq!(ds.train.len(), 50);
    let (val, test) = (
        ds.validation.as_ref().expect("validation"),
        ds.test.as_ref().expect("test"),
    );
    assert_eq!(val.len(), 20);
    assert_eq!(val.labels(), test.labels());
    let (v, t) = (
        &collect(val, &opts(20, 0, false, false))[0],
        &collect(test, &opts(20, 0, false, false))[0],
    );
    assert_eq!(v.images, t.images);
}

#[test]
fn idx_problems_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures::idx_files(dir.path(), 10, 4, 3, 2, 2, false).expect("fixture");
    let data = |extra: &str| {
        format!(
            "source = \"idx\"\npath = \"{}\"\ntrain_images = \"train-images-idx3-ubyte\"\ntrain_labels = \"train-labels-idx1-ubyte\"\ntest_images = \"t10k-images-idx3-ubyte\"\ntest_labels = \"t10k-labels-idx1-ubyte\"\n{extra}",
            dir.path().display()
        )
    };
    let err = Dataset::open(&plan_from(&experiment(
        &data("class_names = [\"a\", \"b\"]"),
        "",
        [2, 2, 1],
        2,
    )))
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                label: 2,
                classes: 2,
                ..
            }
        ),
        "{err}"
    );
    std::fs::copy(
        dir.path().join("t10k-labels-idx1-ubyte"),
        dir.path().join("train-images-idx3-ubyte"),
    )
    .expect("copy");
    let err = Dataset::open(&plan_from(&experiment(&data(""), "", [2, 2, 1], 3))).unwrap_err();
    assert!(
        err.to_string().contains("train-images-idx3-ubyte") && err.to_string().contains("magic"),
        "{err}"
    );
}

#[test]
fn real_fashion_mnist_when_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "skipped: Fashion-MNIST is not installed at {} (`make data` installs it)",
            dir.display()
        );
        return;
    }
    let plan = plan_from(&experiment(
        &format!(
            "source = \"idx\"\npath = \"{}\"\nvalidation_split = 0.1",
            dir.display()
        ),
        "rescale = \"1/255\"",
        [28, 28, 1],
        10,
    ));
    let ds = Dataset::open(&plan).expect("opens");
    assert_eq!(
        ds.train.len() + ds.validation.as_ref().map_or(0, Split::len),
        60_000
    );
    assert_eq!(ds.validation.as_ref().map(Split::len), Some(6_000));
    assert_eq!(ds.test.as_ref().map(Split::len), Some(10_000));
    let b = &collect(
        ds.test.as_ref().expect("test"),
        &BatchOptions {
            max_batches: Some(1),
            ..opts(64, 0, false, false)
        },
    )[0];
    assert_eq!(b.shape, [64, 1, 28, 28]);
    // Label of the first test image is 9 (ankle boot), as the dataset documents.
    assert_eq!(b.labels[0], 9);
}

#[test]
fn synthetic_splits_are_balanced_and_reproducible() {
    let plan = plan_from(&experiment(
        "source = \"synthetic\"\nclasses = 4\ntrain_size = 40\nvalidation_size = 8\ntest_size = 12\nnoise = 0.2",
        "rescale = \"1/255\"\nhorizontal_flip = true",
        [10, 12, 3],
        4,
    ));
    let ds = Dataset::open(&plan).expect("opens");
    assert_eq!(ds.classes, vec!["disk", "ring", "square", "frame"]);
    assert_eq!(
        (
            ds.train.len(),
            ds.validation.as_ref().map(Split::len),
            ds.test.as_ref().map(Split::len)
        ),
        (40, Some(8), Some(12))
    );
    for c in 0..4 {
        assert_eq!(ds.train.labels().iter().filter(|&&l| l == c).count(), 10);
    }
    let a = collect(&ds.train, &opts(16, 1, true, true));
    let again = Dataset::open(&plan).expect("opens");
    assert_eq!(a, collect(&again.train, &opts(16, 1, true, true)));
    assert_eq!(a[0].shape, [16, 3, 10, 12]);
}

#[test]
fn small_synthetic_splits_are_drawn_once_and_large_ones_every_time() {
    let plan = |train_size: usize| {
        plan_from(&experiment(
            &format!("source = \"synthetic\"\nclasses = 3\ntrain_size = {train_size}\nvalidation_size = 0\ntest_size = 6"),
            "rescale = \"1/255\"",
            [64, 64, 3],
            3,
        ))
    };
    // 30 samples of 64x64x3 bytes are kept: the same pixels, not drawn again.
    let small = Dataset::open(&plan(30)).expect("opens");
    let first = small.train.pixels(7).expect("pixels");
    assert!(Arc::ptr_eq(&first, &small.train.pixels(7).expect("pixels")));
    // 70,000 of them (860 MB) are drawn each time, with the same result.
    let large = Dataset::open(&plan(70_000)).expect("opens");
    let drawn = large.train.pixels(7).expect("pixels");
    assert!(!Arc::ptr_eq(
        &drawn,
        &large.train.pixels(7).expect("pixels")
    ));
    assert_eq!(drawn.data, first.data, "kept and drawn pixels agree");
}
