//! The one writer thread: group commit (number, de-duplicate by `id`, one
//! `write`, fsync per policy, then acknowledge and broadcast to tails), and
//! the interval syncer.

use crate::record::LogRecord;
use crate::segment::SegmentMeta;
use rollcall_proto::Timestamp;
use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

use super::*;

/// The `interval` policy's background fsync.
pub(super) fn sync_loop(shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(shared.config.fsync_interval);
        if shared.dirty.swap(false, Ordering::AcqRel) {
            let handle = shared
                .active
                .lock()
                .ok()
                .and_then(|f| f.as_ref().and_then(|f| f.try_clone().ok()));
            if let Some(file) = handle
                && let Err(e) = sync(shared, &file)
            {
                tracing::error!(error = %e, "fsync of the log failed");
                shared.metrics.write_errors.inc();
            }
        }
    }
}

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) file: File,
    pub(super) next_seq: u64,
    pub(super) recent_ids: VecDeque<String>,
    pub(super) seen: HashSet<String>,
    pub(super) buf: Vec<u8>,
    /// Set when a failed write could not be cut back off the file: what is
    /// on disk past the last acknowledged record is then unknown, so nothing
    /// more is written (and no seq handed out again) until a restart's scan
    /// repairs the segment.
    pub(super) stuck: Option<AppendError>,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut group: Vec<Request> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            match first {
                Msg::Append(r) => group.push(r),
                Msg::Close => rx.close(),
            }
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Msg::Append(r)) => group.push(r),
                    Ok(Msg::Close) => rx.close(),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.write_group(&mut group);
            }
        }
        // Closing: make everything durable whatever the policy.
        if let Err(e) = sync(&self.shared, &self.file) {
            tracing::error!(error = %e, "final fsync of the log failed");
        }
    }

    fn write_group(&mut self, group: &mut Vec<Request>) {
        if let Some(why) = &self.stuck {
            for request in group.drain(..) {
                let _ = request.done.send(Err(why.clone()));
            }
            return;
        }
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        if let Err(e) = self.rotate_if_full() {
            tracing::error!(error = %e, "cannot start a new log segment");
            metrics.write_errors.inc();
        }
        let start_seq = self.next_seq;
        let base = read(&self.shared.segments).last().map_or(0, |s| s.len);
        self.buf.clear();
        let mut stored: Vec<(LogRecord, u64, u64)> = Vec::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut added_ids: Vec<String> = Vec::new();
        let mut added_set: HashSet<String> = HashSet::new();
        for request in group.iter_mut() {
            let mut outcome = Appended::default();
            for record in std::mem::take(&mut request.records) {
                if let Some(id) = &record.id {
                    if self.seen.contains(id) || !added_set.insert(id.clone()) {
                        outcome.duplicates += 1;
                        continue;
                    }
                    added_ids.push(id.clone());
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                let record = record.with_seq(seq);
                let offset = base + self.buf.len() as u64;
                if serde_json::to_writer(&mut self.buf, &record).is_err() {
                    // Serialising plain data cannot fail; never write half.
                    self.buf.truncate((offset - base) as usize);
                    self.next_seq -= 1;
                    continue;
                }
                self.buf.push(b'\n');
                let len = base + self.buf.len() as u64 - offset;
                outcome.first_seq.get_or_insert(seq);
                outcome.last_seq = Some(seq);
                outcome.stored += 1;
                stored.push((record, offset, len));
            }
            outcomes.push(outcome);
        }
        let result = self.file.write_all(&self.buf).and_then(|()| {
            if self.shared.config.fsync == FsyncPolicy::Always && !self.buf.is_empty() {
                sync(&self.shared, &self.file)
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            // Leave no half-written group behind: cut the file back and give
            // the seqs back. Nothing of the group was acknowledged.
            tracing::error!(error = %e, "writing to the log failed");
            metrics.write_errors.inc();
            match self.file.set_len(base) {
                Ok(()) => self.next_seq = start_seq,
                Err(cut) => {
                    tracing::error!(error = %cut, "cannot cut a failed write off the log: refusing writes until restarted");
                    self.stuck = Some(AppendError::Stuck(Arc::new(cut)));
                }
            }
            let e = AppendError::Io(Arc::new(e));
            for request in group.drain(..) {
                let _ = request.done.send(Err(e.clone()));
            }
            return;
        }
        if !self.buf.is_empty() {
            self.shared.dirty.store(true, Ordering::Release);
        }
        {
            let mut segments = write(&self.shared.segments);
            if let Some(active) = segments.last_mut() {
                for (record, offset, len) in &stored {
                    active.note(record.seq, record.ts, record.received, *offset, *len);
                }
            }
        }
        {
            let mut services = self
                .shared
                .services
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (record, _, _) in &stored {
                if let Some(service) = &record.service
                    && services.len() < MAX_KNOWN_SERVICES
                    && !services.contains(service.as_str())
                {
                    services.insert(service.to_string());
                }
            }
        }
        for id in added_ids {
            self.seen.insert(id.clone());
            self.recent_ids.push_back(id);
            if self.recent_ids.len() > self.shared.config.dedupe_window
                && let Some(old) = self.recent_ids.pop_front()
            {
                self.seen.remove(&old);
            }
        }
        metrics.groups.inc();
        metrics.appends.inc_by(group.len() as u64);
        metrics.records.inc_by(stored.len() as u64);
        metrics.bytes.inc_by(self.buf.len() as u64);
        let duplicates: usize = outcomes.iter().map(|o| o.duplicates).sum();
        metrics.duplicates.inc_by(duplicates as u64);
        for (request, outcome) in group.drain(..).zip(outcomes) {
            let _ = request.done.send(Ok(outcome));
        }
        for (record, _, _) in stored {
            let _ = self.shared.tail.send(Arc::new(record));
        }
    }

    /// Starts a new segment once the active one is full.
    fn rotate_if_full(&mut self) -> io::Result<()> {
        let full = read(&self.shared.segments)
            .last()
            .is_some_and(|s| s.len >= self.shared.config.segment_size);
        if !full {
            return Ok(());
        }
        sync(&self.shared, &self.file)?;
        let meta = SegmentMeta::empty(&self.shared.config.dir, self.next_seq);
        let file = open_append(&meta.path)?;
        if let Ok(mut active) = self.shared.active.lock() {
            *active = file.try_clone().ok();
        }
        self.file = file;
        tracing::info!(segment = %meta.path.display(), "new log segment");
        write(&self.shared.segments).push(meta);
        enforce_retention(&self.shared, Timestamp::system_now());
        Ok(())
    }
}
