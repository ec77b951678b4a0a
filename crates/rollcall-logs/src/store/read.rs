//! Reading the segments: queries within a byte budget, and retention.

use crate::query::{Order, Page, Query};
use crate::record::LogRecord;
use crate::segment::{ForwardLines, ReverseLines, SegmentMeta};
use rollcall_proto::Timestamp;
use std::io::{self};

use super::*;

pub(super) fn enforce_retention(shared: &Shared, now: Timestamp) -> usize {
    let config = &shared.config;
    let oldest_kept = now.minus(config.retention_age);
    let mut doomed = Vec::new();
    {
        let mut segments = write(&shared.segments);
        let mut total: u64 = segments.iter().map(|s| s.len).sum();
        while segments.len() > 1 {
            let first = &segments[0];
            let too_old = first.max_received.is_some_and(|t| t < oldest_kept);
            if total > config.retention_size || too_old {
                total -= first.len;
                doomed.push(segments.remove(0));
            } else {
                break;
            }
        }
    }
    for segment in &doomed {
        match std::fs::remove_file(&segment.path) {
            Ok(()) => {
                tracing::info!(segment = %segment.path.display(), "log segment deleted by retention")
            }
            Err(e) => {
                tracing::warn!(segment = %segment.path.display(), error = %e, "cannot delete log segment")
            }
        }
        shared.metrics.segments_deleted.inc();
    }
    doomed.len()
}

/// What a query has collected so far, and whether it is done.
struct Scan<'q> {
    query: &'q Query,
    page: Page,
    scanned: u64,
    records: u64,
    /// Bytes of the records on the page.
    page_bytes: u64,
    last_examined: Option<u64>,
    full: bool,
}

impl Scan<'_> {
    /// Looks at one stored line; `wanted` says whether its seq is on the
    /// cursor's side. Returns `false` once the page is full or the budget
    /// spent. Lines on the other side (the sparse index starts a scan up to
    /// [`crate::segment::INDEX_EVERY`] records early) do not count: a budget
    /// smaller than that stretch would otherwise never get past it.
    fn visit(&mut self, line: &[u8], bytes: u64, wanted: impl Fn(u64) -> bool) -> bool {
        match serde_json::from_slice::<LogRecord>(line) {
            Ok(record) if !wanted(record.seq) => return true,
            Ok(record) => {
                self.last_examined = Some(record.seq);
                if self.query.filter.matches(&record) {
                    self.page.records.push(record);
                    self.page_bytes += bytes;
                }
            }
            Err(_) => {}
        }
        self.scanned += bytes;
        self.records += 1;
        if self.page.records.len() >= self.query.limit
            || self.scanned >= self.query.scan_budget
            || self.page_bytes >= crate::query::MAX_PAGE_BYTES
        {
            self.full = true;
            return false;
        }
        true
    }
}

/// A segment deleted by retention since the snapshot is simply skipped.
fn skip_missing<T>(e: io::Error) -> io::Result<Option<T>> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Reads segments for a query, within its scan budget.
pub(super) fn run_query(segments: &[SegmentMeta], query: &Query) -> io::Result<Page> {
    let filter = &query.filter;
    let overlaps = |s: &SegmentMeta| match (s.min_ts, s.max_ts) {
        (Some(min), Some(max)) => {
            filter.since.is_none_or(|since| max >= since)
                && filter.until.is_none_or(|until| min <= until)
        }
        _ => false,
    };
    let mut scan = Scan {
        query,
        page: Page::default(),
        scanned: 0,
        records: 0,
        page_bytes: 0,
        last_examined: None,
        full: false,
    };
    match query.order {
        Order::Desc => {
            let before = query.cursor.unwrap_or(u64::MAX);
            for s in segments.iter().rev() {
                if s.first_seq >= before || !overlaps(s) {
                    continue;
                }
                let Some(mut lines) = ReverseLines::open(&s.path, s.end_for(before))
                    .map(Some)
                    .or_else(skip_missing)?
                else {
                    continue;
                };
                while let Some(line) = lines.next_line()? {
                    if !scan.visit(&line, line.len() as u64 + 1, |seq| seq < before) {
                        break;
                    }
                }
                if scan.full {
                    break;
                }
            }
        }
        Order::Asc => {
            let after = query.cursor.unwrap_or(0);
            for s in segments {
                if s.last_seq.is_none_or(|last| last <= after) || !overlaps(s) {
                    continue;
                }
                let Some(mut lines) = ForwardLines::open(&s.path, s.offset_for(after + 1), s.len)
                    .map(Some)
                    .or_else(skip_missing)?
                else {
                    continue;
                };
                while let Some((line, n)) = lines.next_line()? {
                    if !scan.visit(line, n, |seq| seq > after) {
                        break;
                    }
                }
                if scan.full {
                    break;
                }
            }
        }
    }
    let mut page = scan.page;
    page.scanned_bytes = scan.scanned;
    page.scanned_records = scan.records;
    page.next_cursor = if scan.full { scan.last_examined } else { None };
    page.reached_end = page.next_cursor.is_none();
    Ok(page)
}
