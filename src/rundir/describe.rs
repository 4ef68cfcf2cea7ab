//! What a folder named on the command line is, so that a command given the
//! wrong one can say what it got and which folder to pass instead:
//! `runner eval runs/x` (an experiment's folder) names its newest run,
//! `runner sweep --status` of a trial names the trial's sweep, a typo names
//! the sibling it was probably meant to be.

use std::fs;
use std::path::{Path, PathBuf};

use super::{
    resolve_pointers, BEST_TRIAL, DEFAULT_RUNS_DIR, LATEST, RESOLVED_CONFIG, SWEEPS, SWEEP_META,
};
use crate::config::diagnostic::closest;

/// What [`describe`] found at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Nothing is there; `near` is a sibling whose name is close.
    Missing { near: Option<PathBuf> },
    /// A file, not a folder.
    File,
    /// A folder this user may not read (another's run in a shared
    /// `runs/`): the error reading it.
    Unreadable { reason: String },
    /// A run folder; `sweep` is the sweep folder it is a trial of.
    Run { sweep: Option<PathBuf> },
    /// A folder inside a run folder (`checkpoints/`, `report/`).
    InsideRun { run: PathBuf },
    /// A sweep folder, with its best finished trial so far.
    Sweep { best: Option<PathBuf> },
    /// An experiment's folder (`runs/<name>`) or its `sweeps` folder, with
    /// its newest run and its newest sweep.
    Experiment {
        run: Option<PathBuf>,
        sweep: Option<PathBuf>,
    },
    /// A folder of experiment folders (`runs/`), or a folder holding one
    /// as `runs` (a project's folder): `runs` is that folder.
    Runs {
        runs: PathBuf,
        experiments: Vec<String>,
    },
    /// None of these.
    Other,
}

/// What is at `path`: reads the folder and its children, nothing deeper.
pub fn describe(path: &Path) -> Found {
    if !path.exists() {
        return Found::Missing {
            near: near_sibling(path),
        };
    }
    if !path.is_dir() {
        return Found::File;
    }
    if let Err(e) =
        fs::read_dir(path).and_then(|_| match fs::metadata(path.join(RESOLVED_CONFIG)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
    {
        return Found::Unreadable {
            reason: e.to_string(),
        };
    }
    if path.join(RESOLVED_CONFIG).is_file() {
        let sweep = path
            .parent()
            .filter(|p| p.join(SWEEP_META).is_file())
            .map(Path::to_path_buf);
        return Found::Run { sweep };
    }
    if path.join(SWEEP_META).is_file() {
        return Found::Sweep {
            best: best_trial(path),
        };
    }
    // `checkpoints/epoch-0003` is two levels down.
    if let Some(run) = path
        .ancestors()
        .skip(1)
        .take(2)
        .find(|a| a.join(RESOLVED_CONFIG).is_file())
    {
        return Found::InsideRun {
            run: run.to_path_buf(),
        };
    }
    let run = newest(path, "v", RESOLVED_CONFIG);
    // `runs/<name>`, or `runs/<name>/sweeps` itself.
    let sweep =
        newest(&path.join(SWEEPS), "s", SWEEP_META).or_else(|| newest(path, "s", SWEEP_META));
    if run.is_some() || sweep.is_some() {
        return Found::Experiment { run, sweep };
    }
    let mut experiments: Vec<String> = children(path)
        .filter(|c| {
            newest(c, "v", RESOLVED_CONFIG).is_some()
                || newest(&c.join(SWEEPS), "s", SWEEP_META).is_some()
        })
        .filter_map(|c| Some(c.file_name()?.to_str()?.to_string()))
        .collect();
    if experiments.is_empty() {
        let runs = match path == Path::new(".") {
            true => PathBuf::from(DEFAULT_RUNS_DIR),
            false => path.join(DEFAULT_RUNS_DIR),
        };
        return match describe(&runs) {
            found @ Found::Runs { .. } if runs.is_dir() => found,
            _ => Found::Other,
        };
    }
    experiments.sort();
    Found::Runs {
        runs: path.to_path_buf(),
        experiments,
    }
}

impl Found {
    /// Why `path` is not a run folder, and which folder to give instead.
    pub fn not_a_run(&self, path: &Path) -> String {
        match self {
            Found::Sweep { best: Some(best) } => format!(
                "it is a sweep folder; its best trial so far is {}{}",
                best.display(),
                named_by(path.join(BEST_TRIAL), best)
            ),
            Found::Sweep { best: None } => {
                "it is a sweep folder, and none of its trials has finished yet".into()
            }
            Found::InsideRun { run } => format!("it is inside the run folder {}", run.display()),
            Found::Experiment { .. } => self
                .experiment_runs("it is an experiment's folder", path)
                .unwrap_or_else(|| format!("it has no {RESOLVED_CONFIG}")),
            Found::Runs { runs, experiments } => format!(
                "{}; give one of their runs{}",
                holds_runs(path, runs, experiments),
                such_as(experiments.iter().find_map(|e| example_run(&runs.join(e))))
            ),
            other => other.otherwise(RESOLVED_CONFIG),
        }
    }

    /// Why `path` is not a sweep folder, and which folder to give instead.
    pub fn not_a_sweep(&self, path: &Path) -> String {
        match self {
            Found::Run { sweep: Some(sweep) } => {
                format!("it is a trial of the sweep {}", sweep.display())
            }
            Found::Run { sweep: None } => "it is the folder of a single run, not of a sweep".into(),
            Found::InsideRun { run } => match run.parent().filter(|p| p.join(SWEEP_META).is_file())
            {
                Some(sweep) => format!(
                    "it is inside the trial {} of the sweep {}",
                    run.display(),
                    sweep.display()
                ),
                None => format!("it is inside the run folder {}", run.display()),
            },
            Found::Experiment { .. } => {
                self.experiment_sweeps("it is an experiment's folder", path)
            }
            Found::Runs { runs, experiments } => format!(
                "{}; give one of their sweeps{}",
                holds_runs(path, runs, experiments),
                such_as(
                    experiments
                        .iter()
                        .find_map(|e| example_sweep(&runs.join(e)))
                )
            ),
            other => other.otherwise(SWEEP_META),
        }
    }

    /// Why the folder `path` is not an experiment file, and what to give
    /// instead: a run folder's config, the command that continues a run or
    /// a sweep, or the experiment files the folder holds.
    pub fn not_an_experiment_file(&self, path: &Path) -> String {
        let config = path.join(RESOLVED_CONFIG);
        match self {
            Found::Run { sweep: Some(sweep) } => format!(
                "it is a trial of the sweep {}; its config is {} (`runner sweep --resume {}` continues the sweep)",
                sweep.display(),
                config.display(),
                sweep.display()
            ),
            Found::Run { sweep: None } => format!(
                "it is a run folder; its config is {} (`runner run --resume {}` continues the run)",
                config.display(),
                path.display()
            ),
            Found::Sweep { .. } => format!(
                "it is a sweep folder (`runner sweep --resume {}` continues it)",
                path.display()
            ),
            Found::InsideRun { run } => format!(
                "it is inside the run folder {}, whose config is {}",
                run.display(),
                run.join(RESOLVED_CONFIG).display()
            ),
            Found::Experiment { run: Some(run), .. } => format!(
                "it is an experiment's folder of runs; the config of its newest run is {}",
                run.join(RESOLVED_CONFIG).display()
            ),
            Found::Experiment {
                run: None,
                sweep: Some(sweep),
            } => format!(
                "it is an experiment's folder of runs, with only sweeps (`runner sweep --resume {}` continues the newest)",
                sweep.display()
            ),
            Found::Experiment { .. } => "it is an experiment's folder of runs".into(),
            Found::Unreadable { .. } => self.otherwise(RESOLVED_CONFIG),
            // `runs/` itself; a project's folder may hold experiment files
            // beside its `runs/`, which are what to give.
            Found::Runs { runs, experiments } if runs == path || toml_files(path).is_empty() => {
                holds_runs(path, runs, experiments)
            }
            _ => {
                let files = toml_files(path);
                match files.len() {
                    0 => "it is a folder, with no .toml file in it".into(),
                    _ => format!(
                        "it is a folder; give one of its experiment files: {}",
                        list(&files)
                    ),
                }
            }
        }
    }

    /// For what [`describe`] found at the folder of an experiment's runs
    /// (`runs/<name>`): `subject` (the experiment's folder or file), then
    /// its newest run, else the best trial of its newest sweep; `None`
    /// where it has neither.
    pub fn experiment_runs(&self, subject: &str, path: &Path) -> Option<String> {
        match self {
            Found::Experiment { run: Some(run), .. } => Some(format!(
                "{subject}; its newest run is {}{}",
                run.display(),
                named_by(path.join(LATEST), run)
            )),
            Found::Experiment {
                run: None,
                sweep: Some(sweep),
            } => Some(match best_trial(sweep) {
                Some(best) => format!(
                    "{subject}, with only sweeps; the best trial of the newest is {}{}",
                    best.display(),
                    named_by(latest_sweeps(path).join(BEST_TRIAL), &best)
                ),
                None => format!(
                    "{subject}, with only sweeps; the newest is {}, and none of its trials has finished yet",
                    sweep.display()
                ),
            }),
            _ => None,
        }
    }

    /// As [`Found::experiment_runs`], for its newest sweep; says so where
    /// it has none.
    pub fn experiment_sweeps(&self, subject: &str, path: &Path) -> String {
        match self {
            Found::Experiment {
                sweep: Some(sweep), ..
            } => format!(
                "{subject}; its newest sweep is {}{}",
                sweep.display(),
                named_by(latest_sweeps(path), sweep)
            ),
            _ => format!(
                "{subject}, with no sweep in {} yet",
                path.join(SWEEPS).display()
            ),
        }
    }

    /// The reasons shared by both: nothing there, a file, or a folder
    /// without `marker`.
    fn otherwise(&self, marker: &str) -> String {
        match self {
            Found::Missing { near: Some(near) } => {
                format!("there is no such folder; did you mean {}?", near.display())
            }
            Found::Missing { near: None } => "there is no such folder".into(),
            Found::File => "it is a file".into(),
            Found::Unreadable { reason } => format!("it cannot be read: {reason}"),
            _ => format!("it has no {marker}"),
        }
    }
}

/// What `path` is when it is, or holds, the folder of experiments `runs`.
fn holds_runs(path: &Path, runs: &Path, experiments: &[String]) -> String {
    let what = if runs == path {
        "it is a folder of experiments".to_string()
    } else {
        format!("it holds the folder of experiments {}", runs.display())
    };
    format!("{what} ({})", list(experiments))
}

/// A run of the experiment folder `exp` to show: its newest run, else the
/// best trial of its newest sweep, by the pointer that names it if one
/// does.
fn example_run(exp: &Path) -> Option<PathBuf> {
    match describe(exp) {
        Found::Experiment { run: Some(run), .. } => Some(pointer_or(exp.join(LATEST), run)),
        Found::Experiment {
            sweep: Some(sweep), ..
        } => best_trial(&sweep).map(|best| pointer_or(latest_sweeps(exp).join(BEST_TRIAL), best)),
        _ => None,
    }
}

/// The newest sweep of the experiment folder `exp`, as [`example_run`].
fn example_sweep(exp: &Path) -> Option<PathBuf> {
    match describe(exp) {
        Found::Experiment {
            sweep: Some(sweep), ..
        } => Some(pointer_or(latest_sweeps(exp), sweep)),
        _ => None,
    }
}

/// `pointer` if it leads to `target`, else `target`.
fn pointer_or(pointer: PathBuf, target: PathBuf) -> PathBuf {
    if resolve_pointers(&pointer) == target {
        pointer
    } else {
        target
    }
}

/// `, such as <path>`, or nothing.
fn such_as(example: Option<PathBuf>) -> String {
    example
        .map(|p| format!(", such as {}", p.display()))
        .unwrap_or_default()
}

/// The `latest` pointer of the sweeps of `experiment`, an experiment's
/// folder or its `sweeps` folder.
fn latest_sweeps(experiment: &Path) -> PathBuf {
    if experiment.join(SWEEPS).is_dir() {
        experiment.join(SWEEPS).join(LATEST)
    } else {
        experiment.join(LATEST)
    }
}

/// The names of the `.toml` files in `dir`, sorted.
fn toml_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
        .collect();
    files.sort();
    files
}

/// The folders in `dir`, links left out.
fn children(dir: &Path) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.is_symlink() && p.is_dir())
}

/// The highest-numbered `<prefix>NNNN` folder of `dir` holding `marker`.
fn newest(dir: &Path, prefix: &str, marker: &str) -> Option<PathBuf> {
    children(dir)
        .filter(|c| c.join(marker).is_file())
        .filter_map(|c| {
            let n: u32 = c
                .file_name()?
                .to_str()?
                .strip_prefix(prefix)?
                .parse()
                .ok()?;
            Some((n, c))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, c)| c)
}

/// The trial a sweep folder's `best` file names, if it is there.
fn best_trial(sweep: &Path) -> Option<PathBuf> {
    let best = resolve_pointers(&sweep.join(BEST_TRIAL));
    (best != sweep.join(BEST_TRIAL) && best.is_dir()).then_some(best)
}

/// A sibling of `path` whose name is close to its own (a typo): most of
/// its letters the same (`sweep-asa` for `sweep-asha`, not `nope` for
/// `home`).
fn near_sibling(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let names: Vec<String> = children(parent)
        .filter_map(|c| Some(c.file_name()?.to_str()?.to_string()))
        .collect();
    let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
    closest(name, &candidates)
        .filter(|n| strsim::normalized_damerau_levenshtein(name, n) >= 0.6)
        .map(|n| path.with_file_name(n))
}

/// ` (`pointer` names it)` when the pointer file leads to `target`: the
/// name that stays right as new runs come.
fn named_by(pointer: PathBuf, target: &Path) -> String {
    if resolve_pointers(&pointer) == target {
        format!(" (`{}` names it)", pointer.display())
    } else {
        String::new()
    }
}

/// `a, b, c and 4 more`.
fn list(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let shown = names[..names.len().min(SHOWN)].join(", ");
    match names.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `runs/` with an experiment `a` of two runs, an experiment `b` with a
    /// sweep of two trials (the second one best), and a stray file.
    fn layout() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        for v in ["v0001", "v0002"] {
            let run = runs.join("a").join(v);
            fs::create_dir_all(&run).unwrap();
            fs::write(run.join(RESOLVED_CONFIG), "").unwrap();
        }
        fs::write(runs.join("a").join(LATEST), "v0002\n").unwrap();
        let sweep = runs.join("b/sweeps/s0001");
        for t in ["trial-000-aaaaaa", "trial-001-bbbbbb"] {
            fs::create_dir_all(sweep.join(t)).unwrap();
            fs::write(sweep.join(t).join(RESOLVED_CONFIG), "").unwrap();
        }
        fs::write(sweep.join(SWEEP_META), "{}").unwrap();
        fs::write(runs.join("b/sweeps").join(LATEST), "s0001\n").unwrap();
        fs::write(runs.join("notes.txt"), "").unwrap();
        tmp
    }

    #[test]
    fn each_kind_of_folder_is_told_apart() {
        let tmp = layout();
        let runs = tmp.path().join("runs");
        let sweep = runs.join("b/sweeps/s0001");
        assert_eq!(
            describe(&runs.join("a")),
            Found::Experiment {
                run: Some(runs.join("a/v0002")),
                sweep: None
            }
        );
        assert_eq!(
            describe(&runs.join("b")),
            Found::Experiment {
                run: None,
                sweep: Some(sweep.clone())
            }
        );
        // The `sweeps` folder itself stands for its experiment.
        assert_eq!(
            describe(&runs.join("b/sweeps")),
            Found::Experiment {
                run: None,
                sweep: Some(sweep.clone())
            }
        );
        assert_eq!(describe(&sweep), Found::Sweep { best: None });
        assert_eq!(
            describe(&sweep.join("trial-001-bbbbbb")),
            Found::Run {
                sweep: Some(sweep.clone())
            }
        );
        assert_eq!(describe(&runs.join("a/v0001")), Found::Run { sweep: None });
        let ckpt = runs.join("a/v0001/checkpoints/epoch-0001");
        fs::create_dir_all(&ckpt).unwrap();
        for inside in [ckpt.clone(), ckpt.parent().unwrap().to_path_buf()] {
            assert_eq!(
                describe(&inside),
                Found::InsideRun {
                    run: runs.join("a/v0001")
                },
                "{}",
                inside.display()
            );
        }
        let found = Found::Runs {
            runs: runs.clone(),
            experiments: vec!["a".into(), "b".into()],
        };
        assert_eq!(describe(&runs), found);
        assert_eq!(describe(&runs.join("notes.txt")), Found::File);
        // The folder holding `runs`: a project's folder.
        assert_eq!(describe(tmp.path()), found);
        let empty = tmp.path().join("notes");
        fs::create_dir(&empty).unwrap();
        assert_eq!(describe(&empty), Found::Other);
        // A typo of a sibling's name, and a name close to nothing.
        assert_eq!(
            describe(&runs.join("b/sweeps/s0002")),
            Found::Missing {
                near: Some(sweep.clone())
            }
        );
        assert_eq!(
            describe(&runs.join("zzzzzzzzzz")),
            Found::Missing { near: None }
        );
        // Two letters of four in common is no typo.
        assert_eq!(describe(&runs.join("c")), Found::Missing { near: None });
        fs::create_dir(runs.join("home")).unwrap();
        assert_eq!(describe(&runs.join("nope")), Found::Missing { near: None });
    }

    /// `runner run runs/a/v0001` and the like: each folder says what it is
    /// and what to give instead.
    #[test]
    fn a_folder_given_as_an_experiment_file_says_what_to_give() {
        let tmp = layout();
        let runs = tmp.path().join("runs");
        let sweep = runs.join("b/sweeps/s0001");
        let why = |p: &Path| describe(p).not_an_experiment_file(p);
        let run = runs.join("a/v0001");
        assert_eq!(
            why(&run),
            format!(
                "it is a run folder; its config is {} (`runner run --resume {}` continues the run)",
                run.join(RESOLVED_CONFIG).display(),
                run.display()
            )
        );
        let trial = sweep.join("trial-000-aaaaaa");
        assert_eq!(
            why(&trial),
            format!(
                "it is a trial of the sweep {}; its config is {} (`runner sweep --resume {}` continues the sweep)",
                sweep.display(),
                trial.join(RESOLVED_CONFIG).display(),
                sweep.display()
            )
        );
        assert_eq!(
            why(&sweep),
            format!(
                "it is a sweep folder (`runner sweep --resume {}` continues it)",
                sweep.display()
            )
        );
        assert_eq!(
            why(&runs.join("a")),
            format!(
                "it is an experiment's folder of runs; the config of its newest run is {}",
                runs.join("a/v0002").join(RESOLVED_CONFIG).display()
            )
        );
        assert_eq!(
            why(&runs.join("b")),
            format!(
                "it is an experiment's folder of runs, with only sweeps (`runner sweep --resume {}` continues the newest)",
                sweep.display()
            )
        );
        assert!(
            why(&runs).starts_with("it is a folder of experiments (a, b)"),
            "{}",
            why(&runs)
        );
        let exps = tmp.path().join("experiments");
        fs::create_dir(&exps).unwrap();
        assert_eq!(why(&exps), "it is a folder, with no .toml file in it");
        for f in ["b.toml", "a.toml", "notes.md"] {
            fs::write(exps.join(f), "").unwrap();
        }
        assert_eq!(
            why(&exps),
            "it is a folder; give one of its experiment files: a.toml, b.toml"
        );
        // A project's folder: its experiment files, else its runs.
        assert!(why(tmp.path()).starts_with("it holds the folder of experiments"));
        fs::write(tmp.path().join("c.toml"), "").unwrap();
        assert_eq!(
            why(tmp.path()),
            "it is a folder; give one of its experiment files: c.toml"
        );
    }

    #[test]
    fn the_reasons_name_the_folder_to_give_instead() {
        let tmp = layout();
        let runs = tmp.path().join("runs");
        let sweep = runs.join("b/sweeps/s0001");
        let why = |p: &Path| describe(p).not_a_run(p);
        assert_eq!(
            why(&runs.join("a")),
            format!(
                "it is an experiment's folder; its newest run is {} (`{}` names it)",
                runs.join("a/v0002").display(),
                runs.join("a/latest").display()
            )
        );
        assert_eq!(
            why(&sweep),
            "it is a sweep folder, and none of its trials has finished yet"
        );
        fs::write(sweep.join(BEST_TRIAL), "trial-001-bbbbbb\n").unwrap();
        assert_eq!(
            why(&sweep),
            format!(
                "it is a sweep folder; its best trial so far is {} (`{}` names it)",
                sweep.join("trial-001-bbbbbb").display(),
                sweep.join("best").display()
            )
        );
        assert_eq!(
            why(&runs.join("b")),
            format!(
                "it is an experiment's folder, with only sweeps; the best trial of the newest is {} (`{}` names it)",
                sweep.join("trial-001-bbbbbb").display(),
                runs.join("b/sweeps/latest/best").display()
            )
        );
        assert_eq!(
            why(&runs),
            format!(
                "it is a folder of experiments (a, b); give one of their runs, such as {}",
                runs.join("a/latest").display()
            )
        );
        assert_eq!(
            describe(&runs).not_a_sweep(&runs),
            format!(
                "it is a folder of experiments (a, b); give one of their sweeps, such as {}",
                runs.join("b/sweeps/latest").display()
            )
        );

        let not_sweep = |p: &Path| describe(p).not_a_sweep(p);
        assert_eq!(
            not_sweep(&sweep.join("trial-000-aaaaaa")),
            format!("it is a trial of the sweep {}", sweep.display())
        );
        assert_eq!(
            not_sweep(&runs.join("b")),
            format!(
                "it is an experiment's folder; its newest sweep is {} (`{}` names it)",
                sweep.display(),
                runs.join("b/sweeps/latest").display()
            )
        );
        // A pointer that leads elsewhere is not offered.
        fs::write(runs.join("b/sweeps").join(LATEST), "s0009\n").unwrap();
        assert_eq!(
            not_sweep(&runs.join("b")),
            format!(
                "it is an experiment's folder; its newest sweep is {}",
                sweep.display()
            )
        );
        assert_eq!(
            not_sweep(&runs.join("a")),
            format!(
                "it is an experiment's folder, with no sweep in {} yet",
                runs.join("a/sweeps").display()
            )
        );
        assert_eq!(
            not_sweep(&runs.join("a/v0001")),
            "it is the folder of a single run, not of a sweep"
        );
        assert_eq!(
            not_sweep(&runs.join("b/sweeps/s0002")),
            format!("there is no such folder; did you mean {}?", sweep.display())
        );
        assert_eq!(
            not_sweep(tmp.path()),
            format!(
                "it holds the folder of experiments {} (a, b); give one of their sweeps, such as {}",
                runs.display(),
                sweep.display()
            )
        );
        let empty = tmp.path().join("notes");
        fs::create_dir(&empty).unwrap();
        assert_eq!(not_sweep(&empty), "it has no sweep.json");
        let trial = sweep.join("trial-000-aaaaaa");
        fs::create_dir_all(trial.join("report")).unwrap();
        assert_eq!(
            not_sweep(&trial.join("report")),
            format!(
                "it is inside the trial {} of the sweep {}",
                trial.display(),
                sweep.display()
            )
        );
        assert_eq!(
            why(&trial.join("report")),
            format!("it is inside the run folder {}", trial.display())
        );
        assert_eq!(why(&empty), "it has no config.resolved.toml");
    }

    #[test]
    fn long_lists_are_cut() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(list(&names), "a, b, c and 2 more");
        assert_eq!(list(&names[..2]), "a, b");
    }
}
