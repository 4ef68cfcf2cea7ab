//! TensorBoard's hyperparameter summaries (the HPARAMS tab).
//!
//! A sweep writes one experiment summary (every swept hparam with its domain,
//! every metric) at its root before trials start; each trial writes
//! `session_start_info` into its own run folder and `session_end_info` when it
//! ends. A metric `(group, tag)` is the scalar `tag` of the run
//! `<trial>/<group>`, e.g. `validation` / `epoch_accuracy`.
//!
//! A plain run is a session too: its start holds its resolved config's
//! keys, and TensorBoard builds the experiment from the sessions it finds.
//!
//! Each call writes one small event file of its own, so the calls need no
//! shared writer and can come from different processes. A session's start
//! and its end each have one file ([`SESSION_START_FILE`],
//! [`SESSION_END_FILE`]), replaced whole, so the last one written is the
//! one TensorBoard shows.

use std::collections::BTreeMap;
use std::path::Path;

use protobuf::well_known_types::{ListValue, Value};
use protobuf::RepeatedField;
use tensorboard_proto::api::{
    DataType, DatasetType, Experiment, HParamInfo, Interval, MetricInfo as MetricInfoPb,
    MetricName, Status,
};
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::Summary_Value;
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::{TensorShapeProto, TensorShapeProto_Dim};
use tensorboard_proto::types::DataType as TensorDataType;

use super::event_file::{now_secs, whole_file, EventFile};
use super::tensorboard::{plugin_metadata, summary_of};
use super::LogError;

pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
pub const SESSION_END_INFO_TAG: &str = "_hparams_/session_end_info";

/// A hyperparameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum HValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl From<&toml::Value> for HValue {
    /// Numbers, texts and booleans as they are; anything else (an array, a
    /// date) as its TOML text.
    fn from(v: &toml::Value) -> HValue {
        match v {
            toml::Value::Float(f) => HValue::Number(*f),
            toml::Value::Integer(i) => HValue::Number(*i as f64),
            toml::Value::Boolean(b) => HValue::Bool(*b),
            toml::Value::String(s) => HValue::Text(s.clone()),
            other => HValue::Text(other.to_string()),
        }
    }
}

/// The values a hyperparameter may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// All of one kind (all numbers, all texts or all booleans).
    Discrete(Vec<HValue>),
    Interval {
        min: f64,
        max: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HparamInfo {
    pub name: String,
    pub domain: Option<Domain>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    /// The run subfolder holding the scalar, e.g. "validation".
    pub group: String,
    /// The scalar tag, e.g. "epoch_accuracy".
    pub tag: String,
    pub display_name: String,
}

/// How a trial ended. TensorBoard has no "aborted" status: `Aborted` is
/// written as STATUS_UNKNOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Success,
    Failure,
    Aborted,
    Running,
}

/// One complete `_hparams_/experiment` summary, written into its own event
/// file in `dir` (the sweep root) before trials start.
pub fn write_experiment(
    dir: &Path,
    hparams: &[HparamInfo],
    metrics: &[MetricInfo],
) -> Result<(), LogError> {
    let mut experiment = Experiment::new();
    experiment.set_time_created_secs(now_secs());
    let infos = hparams
        .iter()
        .map(hparam_info)
        .collect::<Result<Vec<_>, _>>()?;
    experiment.set_hparam_infos(RepeatedField::from_vec(infos));
    experiment.set_metric_infos(RepeatedField::from_vec(
        metrics.iter().map(metric_info).collect(),
    ));
    let mut data = HParamsPluginData::new();
    data.set_experiment(experiment);
    write_plugin_data(dir, EXPERIMENT_TAG, &data)
}

/// `_hparams_/session_start_info` into the session's folder (the root of a
/// trial or run, not `train/`), in [`SESSION_START_FILE`], replacing the
/// start it had: a resumed run that trains on to more epochs says so.
pub fn write_session_start(
    run_dir: &Path,
    hparams: &BTreeMap<String, HValue>,
    start_time_secs: f64,
) -> Result<(), LogError> {
    let mut info = SessionStartInfo::new();
    info.set_hparams(
        hparams
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect(),
    );
    info.set_start_time_secs(start_time_secs);
    let mut data = HParamsPluginData::new();
    data.set_session_start_info(info);
    write_whole(run_dir, SESSION_START_FILE, SESSION_START_INFO_TAG, &data)
}

/// The file holding a session's `_hparams_/session_end_info`, replaced
/// whole each time the session ends. TensorBoard keeps the first value it
/// reads of a tag in a run, so an end written into a new file beside an
/// older one (a failed trial retried, an interrupted run resumed) would
/// never show.
pub const SESSION_END_FILE: &str = "events.out.tfevents.session-end";
/// The file holding a session's `_hparams_/session_start_info`; see
/// [`SESSION_END_FILE`].
pub const SESSION_START_FILE: &str = "events.out.tfevents.session-start";

/// `_hparams_/session_end_info` into the session's folder (a trial's or a
/// run's), in [`SESSION_END_FILE`], replacing the end it had.
pub fn write_session_end(
    run_dir: &Path,
    status: SessionStatus,
    end_time_secs: f64,
) -> Result<(), LogError> {
    let mut info = SessionEndInfo::new();
    info.set_status(match status {
        SessionStatus::Success => Status::STATUS_SUCCESS,
        SessionStatus::Failure => Status::STATUS_FAILURE,
        SessionStatus::Running => Status::STATUS_RUNNING,
        SessionStatus::Aborted => Status::STATUS_UNKNOWN,
    });
    info.set_end_time_secs(end_time_secs);
    let mut data = HParamsPluginData::new();
    data.set_session_end_info(info);
    write_whole(run_dir, SESSION_END_FILE, SESSION_END_INFO_TAG, &data)
}

/// `data` under `tag` as the whole of the event file `dir/name`, replaced
/// atomically.
fn write_whole(
    dir: &Path,
    name: &str,
    tag: &str,
    data: &HParamsPluginData,
) -> Result<(), LogError> {
    let path = dir.join(name);
    let summary = plugin_summary(dir, tag, data)?;
    crate::rundir::write_atomic(&path, &whole_file(&path, summary, 0)?)?;
    Ok(())
}

/// Take back a session's end, as a run that starts again is running.
pub fn clear_session_end(run_dir: &Path) -> Result<(), LogError> {
    let path = run_dir.join(SESSION_END_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LogError::Write { path, source: e })
        }
        _ => Ok(()),
    }
}

/// One value of a session metric `(group, tag)`: the scalar `tag` at `step`
/// in the run `<run_dir>/<group>`, where the HParams tab looks for it
/// (`run_dir` is the session's folder, the one holding its
/// `session_start_info`). Written into an event file of its own, so it can
/// come from another process than the one logging the session's epochs.
pub fn write_session_metric(
    run_dir: &Path,
    group: &str,
    tag: &str,
    step: i64,
    value: f64,
) -> Result<(), LogError> {
    let mut file = EventFile::create(&run_dir.join(group))?;
    file.write_summary(tensorboard_rs::summary::scalar(tag, value as f32), step)?;
    file.flush()
}

/// One event file in `dir` holding `data` under `tag`.
fn write_plugin_data(dir: &Path, tag: &str, data: &HParamsPluginData) -> Result<(), LogError> {
    let mut file = EventFile::create(dir)?;
    file.write_summary(plugin_summary(dir, tag, data)?, 0)?;
    file.flush()
}

/// `data` under `tag` as TensorBoard's own `hparams` summaries hold it:
/// plugin "hparams", version 0, an empty float tensor. `dir` names the
/// folder it is for in an error.
fn plugin_summary(
    dir: &Path,
    tag: &str,
    data: &HParamsPluginData,
) -> Result<tensorboard_proto::summary::Summary, LogError> {
    let mut dim = TensorShapeProto_Dim::new();
    dim.set_size(0);
    let mut shape = TensorShapeProto::new();
    shape.set_dim(RepeatedField::from_vec(vec![dim]));
    let mut null_tensor = TensorProto::new();
    null_tensor.set_dtype(TensorDataType::DT_FLOAT);
    null_tensor.set_tensor_shape(shape);

    let mut value = Summary_Value::new();
    value.set_tag(tag.to_string());
    value.set_metadata(plugin_metadata("hparams", data, dir)?);
    value.set_tensor(null_tensor);
    Ok(summary_of(value))
}

fn to_value(v: &HValue) -> Value {
    let mut value = Value::new();
    match v {
        HValue::Number(n) => value.set_number_value(*n),
        HValue::Text(s) => value.set_string_value(s.clone()),
        HValue::Bool(b) => value.set_bool_value(*b),
    }
    value
}

fn kind(v: &HValue) -> DataType {
    match v {
        HValue::Number(_) => DataType::DATA_TYPE_FLOAT64,
        HValue::Text(_) => DataType::DATA_TYPE_STRING,
        HValue::Bool(_) => DataType::DATA_TYPE_BOOL,
    }
}

fn hparam_info(h: &HparamInfo) -> Result<HParamInfo, LogError> {
    let invalid = |reason: String| LogError::InvalidHparam {
        name: h.name.clone(),
        reason,
    };
    let mut info = HParamInfo::new();
    info.set_name(h.name.clone());
    match &h.domain {
        None => {}
        Some(Domain::Discrete(values)) => {
            let first = values
                .first()
                .ok_or_else(|| invalid("its list of values is empty".to_string()))?;
            if values.iter().any(|v| kind(v) != kind(first)) {
                return Err(invalid(
                    "its values mix numbers, texts and booleans".to_string(),
                ));
            }
            info.set_field_type(kind(first));
            let mut list = ListValue::new();
            list.set_values(RepeatedField::from_vec(
                values.iter().map(to_value).collect(),
            ));
            info.set_domain_discrete(list);
        }
        Some(Domain::Interval { min, max }) => {
            if !(min.is_finite() && max.is_finite() && min <= max) {
                return Err(invalid(format!("[{min}, {max}] is not an interval")));
            }
            info.set_field_type(DataType::DATA_TYPE_FLOAT64);
            let mut interval = Interval::new();
            interval.set_min_value(*min);
            interval.set_max_value(*max);
            info.set_domain_interval(interval);
        }
    }
    Ok(info)
}

fn metric_info(m: &MetricInfo) -> MetricInfoPb {
    let mut name = MetricName::new();
    name.set_group(m.group.clone());
    name.set_tag(m.tag.clone());
    let mut info = MetricInfoPb::new();
    info.set_name(name);
    info.set_display_name(m.display_name.clone());
    info.set_dataset_type(match m.group.as_str() {
        "train" => DatasetType::DATASET_TRAINING,
        "validation" => DatasetType::DATASET_VALIDATION,
        _ => DatasetType::DATASET_UNKNOWN,
    });
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::event_file::tests::read_events;
    use protobuf::Message;
    use std::fs;

    fn only_plugin_data(dir: &Path) -> (String, HParamsPluginData) {
        let files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let events = read_events(&files[0]);
        assert_eq!(events.len(), 2);
        let value = &events[1].get_summary().get_value()[0];
        assert_eq!(
            value.get_metadata().get_plugin_data().get_plugin_name(),
            "hparams"
        );
        let data = HParamsPluginData::parse_from_bytes(
            value.get_metadata().get_plugin_data().get_content(),
        )
        .unwrap();
        assert_eq!(data.get_version(), 0);
        (value.get_tag().to_string(), data)
    }

    #[test]
    fn experiment_lists_hparams_with_typed_domains_and_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let hparams = [
            HparamInfo {
                name: "optimizer.lr".into(),
                domain: Some(Domain::Interval {
                    min: 1e-5,
                    max: 1e-2,
                }),
            },
            HparamInfo {
                name: "model.dropout".into(),
                domain: Some(Domain::Discrete(vec![
                    HValue::Number(0.2),
                    HValue::Number(0.5),
                ])),
            },
            HparamInfo {
                name: "note".into(),
                domain: None,
            },
        ];
        let metrics = [MetricInfo {
            group: "validation".into(),
            tag: "epoch_accuracy".into(),
            display_name: "val accuracy".into(),
        }];
        write_experiment(dir.path(), &hparams, &metrics).unwrap();
        let (tag, data) = only_plugin_data(dir.path());
        assert_eq!(tag, EXPERIMENT_TAG);
        let exp = data.get_experiment();
        let infos = exp.get_hparam_infos();
        assert_eq!(infos.len(), 3);
        assert_eq!(infos[0].get_field_type(), DataType::DATA_TYPE_FLOAT64);
        assert_eq!(infos[0].get_domain_interval().get_max_value(), 1e-2);
        let discrete = infos[1].get_domain_discrete().get_values();
        assert_eq!(discrete[1].get_number_value(), 0.5);
        assert!(!infos[2].has_domain_discrete() && !infos[2].has_domain_interval());
        let m = &exp.get_metric_infos()[0];
        assert_eq!(
            (m.get_name().get_group(), m.get_name().get_tag()),
            ("validation", "epoch_accuracy")
        );
        assert_eq!(m.get_dataset_type(), DatasetType::DATASET_VALIDATION);
    }

    #[test]
    fn bad_domains_are_refused_with_the_hparam_name() {
        let dir = tempfile::tempdir().unwrap();
        for domain in [
            Domain::Discrete(vec![]),
            Domain::Discrete(vec![HValue::Number(1.0), HValue::Text("a".into())]),
            Domain::Interval { min: 2.0, max: 1.0 },
            Domain::Interval {
                min: 0.0,
                max: f64::NAN,
            },
        ] {
            let h = HparamInfo {
                name: "lr".into(),
                domain: Some(domain.clone()),
            };
            let err = write_experiment(dir.path(), &[h], &[]).unwrap_err();
            assert!(
                matches!(&err, LogError::InvalidHparam { name, .. } if name == "lr"),
                "{domain:?}: {err}"
            );
        }
        // Nothing half-written.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_session_metric_is_a_scalar_in_the_run_of_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("trial-003");
        write_session_metric(&session, "sweep", "pruned_at_epoch", 0, 3.0).unwrap();
        // Only the group's run: nothing in the session folder itself.
        let top: Vec<_> = fs::read_dir(&session)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top, ["sweep"]);
        let files: Vec<_> = fs::read_dir(session.join("sweep"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let events = read_events(&files[0]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].get_step(), 0);
        let value = &events[1].get_summary().get_value()[0];
        assert_eq!(value.get_tag(), "pruned_at_epoch");
        assert_eq!(value.get_simple_value(), 3.0);
    }

    #[test]
    fn sessions_record_values_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let start = dir.path().join("start");
        let hp = BTreeMap::from([
            ("lr".to_string(), HValue::Number(0.001)),
            ("opt".to_string(), HValue::Text("rmsprop".into())),
            ("aug".to_string(), HValue::Bool(true)),
        ]);
        write_session_start(&start, &hp, 1234.5).unwrap();
        let (tag, data) = only_plugin_data(&start);
        assert_eq!(tag, SESSION_START_INFO_TAG);
        let info = data.get_session_start_info();
        assert_eq!(info.get_start_time_secs(), 1234.5);
        assert_eq!(info.get_hparams()["lr"].get_number_value(), 0.001);
        assert_eq!(info.get_hparams()["opt"].get_string_value(), "rmsprop");
        assert!(info.get_hparams()["aug"].get_bool_value());

        for (status, expected) in [
            (SessionStatus::Success, Status::STATUS_SUCCESS),
            (SessionStatus::Failure, Status::STATUS_FAILURE),
            (SessionStatus::Aborted, Status::STATUS_UNKNOWN),
            (SessionStatus::Running, Status::STATUS_RUNNING),
        ] {
            let end = dir.path().join(format!("{status:?}"));
            write_session_end(&end, status, 99.0).unwrap();
            let (tag, data) = only_plugin_data(&end);
            assert_eq!(tag, SESSION_END_INFO_TAG);
            assert_eq!(data.get_session_end_info().get_status(), expected);
            assert_eq!(data.get_session_end_info().get_end_time_secs(), 99.0);
        }
    }

    #[test]
    fn a_session_end_replaces_the_one_before() {
        // TensorBoard keeps the first value of a tag it reads in a run: a
        // retried trial's success must not sit beside its old failure.
        let dir = tempfile::tempdir().unwrap();
        write_session_end(dir.path(), SessionStatus::Failure, 1.0).unwrap();
        write_session_end(dir.path(), SessionStatus::Success, 2.0).unwrap();
        let (tag, data) = only_plugin_data(dir.path());
        assert_eq!(tag, SESSION_END_INFO_TAG);
        assert_eq!(
            data.get_session_end_info().get_status(),
            Status::STATUS_SUCCESS
        );
        assert_eq!(data.get_session_end_info().get_end_time_secs(), 2.0);
        // A run that starts again has no end until it ends again.
        clear_session_end(dir.path()).unwrap();
        clear_session_end(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn toml_values_become_hparam_values() {
        let v = |s: &str| s.parse::<toml::Table>().unwrap()["x"].clone();
        assert_eq!(HValue::from(&v("x = 3")), HValue::Number(3.0));
        assert_eq!(HValue::from(&v("x = 0.5")), HValue::Number(0.5));
        assert_eq!(HValue::from(&v("x = true")), HValue::Bool(true));
        assert_eq!(HValue::from(&v("x = 'adam'")), HValue::Text("adam".into()));
        assert_eq!(
            HValue::from(&v("x = [32, 32, 3]")),
            HValue::Text("[32, 32, 3]".into())
        );
    }
}
