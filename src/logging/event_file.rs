//! One TensorBoard event file: serialized `Event` protos in TFRecord framing
//! (length, masked CRC32C, data, masked CRC32C).
//!
//! tensorboard-rs's `EventFileWriter` is not used: it names every file
//! `events.out.tfevents.<secs>.<host>.<pid>.0` and opens it with
//! `File::create`, so a second writer opened in the same folder within the same
//! second truncates the first; its `flush` returns before anything is written,
//! and I/O errors panic in its writer thread. Its record framing
//! (`RecordWriter`) is used as is.
//!
//! Records are encoded into memory and written out whole on [`EventFile::flush`]
//! (or once more than [`AUTO_FLUSH_BYTES`] are pending), so a killed process
//! leaves a file of complete records and loses only what was not flushed.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use protobuf::Message;
use tensorboard_proto::event::Event;
use tensorboard_proto::summary::Summary;
use tensorboard_rs::record_writer::RecordWriter;

use super::LogError;

/// Encoded bytes held in memory before they are written out unasked.
const AUTO_FLUSH_BYTES: usize = 1 << 20;

/// Last part of the file name, zero-padded: with the time and the pid it keeps
/// every file this process opens distinct, and sorting in creation order, the
/// order in which TensorBoard reads the files of a folder.
static NEXT_SEQ: AtomicU32 = AtomicU32::new(0);

/// An open event file that appends complete records.
pub(crate) struct EventFile {
    path: PathBuf,
    file: File,
    /// Complete records not yet in the file.
    pending: Vec<u8>,
    /// Length of the file: complete records only.
    written: u64,
}

impl EventFile {
    /// Create a new event file in `dir` (created if missing) and write its
    /// `file_version` record. Never reuses or truncates an existing file.
    pub(crate) fn create(dir: &Path) -> Result<EventFile, LogError> {
        fs::create_dir_all(dir).map_err(|source| LogError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let wall_time = now_secs();
        let stamp = name_stamp(dir, wall_time as u64);
        let host = hostname();
        let pid = std::process::id();
        let (path, file) = loop {
            let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                "events.out.tfevents.{stamp:010}.{host}.{pid}.{seq:010}"
            ));
            // append: after a failed write is cut back (see `flush`), the next
            // write still lands at the end.
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(LogError::CreateFile { path, source }),
            }
        };
        let mut event_file = EventFile {
            path,
            file,
            pending: Vec::new(),
            written: 0,
        };
        let mut version = Event::new();
        version.set_wall_time(wall_time);
        version.set_file_version("brain.Event:2".to_string());
        event_file.write_event(&version)?;
        event_file.flush()?;
        Ok(event_file)
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Queue `summary` as an event at `step`, stamped with the current time.
    pub(crate) fn write_summary(&mut self, summary: Summary, step: i64) -> Result<(), LogError> {
        let mut event = Event::new();
        event.set_wall_time(now_secs());
        event.set_step(step);
        event.set_summary(summary);
        self.write_event(&event)
    }

    /// Queue a serialized `GraphDef` as the file's graph event.
    pub(crate) fn write_graph_def(&mut self, graph_def: Vec<u8>) -> Result<(), LogError> {
        let mut event = Event::new();
        event.set_wall_time(now_secs());
        event.set_graph_def(graph_def);
        self.write_event(&event)
    }

    fn write_event(&mut self, event: &Event) -> Result<(), LogError> {
        frame(event, &mut self.pending, &self.path)?;
        if self.pending.len() >= AUTO_FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Write every queued record to the file before returning. On failure the
    /// file is cut back to its last complete record and the records stay
    /// queued for the next call.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self
            .file
            .write_all(&self.pending)
            .and_then(|()| self.file.flush())
        {
            Ok(()) => {
                self.written += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(source) => {
                // Best effort: a partial record would hide every later one.
                let _ = self.file.set_len(self.written);
                Err(LogError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }
}

/// Append `event` to `out` as one TFRecord; `path` names the file it is
/// for in an error.
fn frame(event: &Event, out: &mut Vec<u8>, path: &Path) -> Result<(), LogError> {
    let data = event.write_to_bytes().map_err(|source| LogError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    // Writing into a Vec cannot fail.
    RecordWriter::new(out)
        .write(&data)
        .map_err(|source| LogError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// The bytes of a whole event file holding one `summary` at `step`, for a
/// file that is written in one go and replaced whole (a session's start or
/// end, see `hparams::SESSION_END_FILE`), unlike the appending [`EventFile`].
pub(crate) fn whole_file(path: &Path, summary: Summary, step: i64) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    let mut version = Event::new();
    version.set_wall_time(now_secs());
    version.set_file_version("brain.Event:2".to_string());
    frame(&version, &mut out, path)?;
    let mut event = Event::new();
    event.set_wall_time(now_secs());
    event.set_step(step);
    event.set_summary(summary);
    frame(&event, &mut out, path)?;
    Ok(out)
}

impl Drop for EventFile {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; callers who care call `flush`.
        let _ = self.flush();
    }
}

/// The seconds in a new file's name: `now`, or one past the newest event
/// file already in `dir` when that one is as new. TensorBoard reads a
/// folder's files in name order, and after the seconds the names of two
/// processes differ by pid, which does not sort by age (a run resumed in the
/// second its killed predecessor started, pids of different lengths or
/// wrapped around; a clock set back).
fn name_stamp(dir: &Path, now: u64) -> u64 {
    let newest = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let rest = name.to_str()?.strip_prefix("events.out.tfevents.")?;
            rest.split('.').next()?.parse::<u64>().ok()
        })
        .max();
    match newest {
        Some(n) if n >= now => n + 1,
        _ => now,
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name, reduced to characters safe in a file name.
fn hostname() -> String {
    let name: String = gethostname::gethostname()
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tensorboard_rs::masked_crc32c::masked_crc32c;

    /// Read every record of an event file, checking lengths and CRCs; panics
    /// on a truncated or corrupt record.
    pub(crate) fn read_events(path: &Path) -> Vec<Event> {
        let bytes = fs::read(path).unwrap();
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = &bytes[at..at + 8];
            let len = u64::from_le_bytes(header.try_into().unwrap()) as usize;
            let header_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(header_crc, masked_crc32c(header), "header crc at {at}");
            let data = &bytes[at + 12..at + 12 + len];
            let data_crc =
                u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc32c(data), "data crc at {at}");
            events.push(Event::parse_from_bytes(data).unwrap());
            at += 16 + len;
        }
        events
    }

    fn scalar_summary(v: f32) -> Summary {
        tensorboard_rs::summary::scalar("x", v)
    }

    #[test]
    fn first_record_is_the_file_version() {
        let dir = tempfile::tempdir().unwrap();
        let f = EventFile::create(&dir.path().join("a/b")).unwrap();
        let events = read_events(f.path());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get_file_version(), "brain.Event:2");
        let name = f.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
    }

    #[test]
    fn files_opened_in_the_same_second_are_distinct_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = EventFile::create(dir.path()).unwrap();
        a.write_summary(scalar_summary(1.0), 0).unwrap();
        a.flush().unwrap();
        let b = EventFile::create(dir.path()).unwrap();
        assert_ne!(a.path(), b.path());
        // The older file keeps its data (a truncating writer would lose it).
        assert_eq!(read_events(a.path()).len(), 2);
        // Same second (almost always): names must still sort by creation.
        let name = |f: &EventFile| f.path().file_name().unwrap().to_string_lossy().into_owned();
        let (na, nb) = (name(&a), name(&b));
        assert!(na < nb, "{na} !< {nb}");
    }

    #[test]
    fn a_new_file_sorts_after_another_process_files_of_the_same_second() {
        let dir = tempfile::tempdir().unwrap();
        // Another process's file, as new as now, whose pid sorts after ours
        // (or a clock that was set back since it was written).
        let now = now_secs() as u64;
        let other = format!(
            "events.out.tfevents.{:010}.host.999999999.0000000000",
            now + 3
        );
        fs::write(dir.path().join(&other), b"").unwrap();
        let f = EventFile::create(dir.path()).unwrap();
        let name = f.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name > other, "{name} !> {other}");
        assert!(
            name.starts_with(&format!("events.out.tfevents.{:010}.", now + 4)),
            "{name}"
        );
        // A stale older file leaves the name at the current time.
        let dir = tempfile::tempdir().unwrap();
        let old = format!("events.out.tfevents.{:010}.host.1.0000000000", now - 100);
        fs::write(dir.path().join(old), b"").unwrap();
        let f = EventFile::create(dir.path()).unwrap();
        let stamp: u64 = f
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .split('.')
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        assert!((now..now + 2).contains(&stamp), "{stamp} vs {now}");
    }

    #[test]
    fn unflushed_records_stay_out_of_the_file_and_flushed_ones_are_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = EventFile::create(dir.path()).unwrap();
        for step in 0..3 {
            f.write_summary(scalar_summary(step as f32), step).unwrap();
        }
        f.flush().unwrap();
        f.write_summary(scalar_summary(9.0), 3).unwrap();
        let path = f.path().to_owned();
        // A killed process runs no destructor.
        std::mem::forget(f);
        let events = read_events(&path);
        assert_eq!(events.len(), 4);
        let steps: Vec<i64> = events[1..].iter().map(|e| e.get_step()).collect();
        assert_eq!(steps, [0, 1, 2]);
    }

    #[test]
    fn drop_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = EventFile::create(dir.path()).unwrap();
        f.write_summary(scalar_summary(2.5), 7).unwrap();
        let path = f.path().to_owned();
        drop(f);
        let events = read_events(&path);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].get_step(), 7);
        assert_eq!(
            events[1].get_summary().get_value()[0].get_simple_value(),
            2.5
        );
    }

    #[test]
    fn large_queues_are_written_without_an_explicit_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = EventFile::create(dir.path()).unwrap();
        let mut step = 0;
        while fs::metadata(f.path()).unwrap().len() < AUTO_FLUSH_BYTES as u64 {
            f.write_summary(scalar_summary(1.0), step).unwrap();
            step += 1;
            assert!(step < 200_000, "never flushed");
        }
        let path = f.path().to_owned();
        std::mem::forget(f);
        // Whatever reached the file is whole records.
        assert!(read_events(&path).len() > 1);
    }

    #[test]
    fn an_unwritable_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let err = EventFile::create(&blocker.join("sub")).err().unwrap();
        assert!(matches!(&err, LogError::CreateDir { path, .. } if path == &blocker.join("sub")));
    }
}
