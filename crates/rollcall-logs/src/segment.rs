//! Segment files: `segment-{first seq, 20 digits}.ndjson` under the log
//! directory, one record per line, readable with `cat`, `grep` and `jq`.
//!
//! Only the newest segment is written to. At start every segment is scanned to
//! rebuild its metadata (seq range, time range, a sparse seq → offset index).
//! A record torn by a crash (a last line without its newline, or one that does
//! not parse) is cut off the end of the newest segment: it was never
//! acknowledged, because acknowledgement comes after the write completes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rollcall_proto::Timestamp;
use serde::Deserialize;

/// One index entry per this many records.
pub const INDEX_EVERY: u64 = 1024;
/// Bytes read at a time when reading backwards.
const CHUNK: u64 = 64 * 1024;

/// What is known about one segment without reading it.
#[derive(Debug, Clone)]
pub struct SegmentMeta {
    pub path: PathBuf,
    pub first_seq: u64,
    /// Last stored seq; `None` while empty.
    pub last_seq: Option<u64>,
    /// Bytes of complete lines.
    pub len: u64,
    pub count: u64,
    pub min_ts: Option<Timestamp>,
    pub max_ts: Option<Timestamp>,
    pub max_received: Option<Timestamp>,
    /// `(seq, byte offset of its line)`, every [`INDEX_EVERY`] records.
    pub index: Vec<(u64, u64)>,
}

impl SegmentMeta {
    pub fn empty(dir: &Path, first_seq: u64) -> Self {
        Self {
            path: segment_path(dir, first_seq),
            first_seq,
            last_seq: None,
            len: 0,
            count: 0,
            min_ts: None,
            max_ts: None,
            max_received: None,
            index: Vec::new(),
        }
    }

    /// Records one appended line.
    pub fn note(
        &mut self,
        seq: u64,
        ts: Timestamp,
        received: Timestamp,
        offset: u64,
        line_len: u64,
    ) {
        if self.count.is_multiple_of(INDEX_EVERY) {
            self.index.push((seq, offset));
        }
        self.count += 1;
        self.last_seq = Some(seq);
        self.len = offset + line_len;
        self.min_ts = Some(self.min_ts.map_or(ts, |m| m.min(ts)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        self.max_received = Some(self.max_received.map_or(received, |m| m.max(received)));
    }

    /// The offset from which a forward scan finds the first record with
    /// `seq >= from`.
    pub fn offset_for(&self, from: u64) -> u64 {
        match self.index.partition_point(|(s, _)| *s <= from) {
            0 => 0,
            i => self.index[i - 1].1,
        }
    }

    /// The offset up to which a backward scan finds every record with
    /// `seq < before`: the first indexed record at or past `before` and all
    /// after it are not wanted.
    pub fn end_for(&self, before: u64) -> u64 {
        let i = self.index.partition_point(|(s, _)| *s < before);
        self.index.get(i).map_or(self.len, |(_, offset)| *offset)
    }
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("segment-{first_seq:020}.ndjson"))
}

/// The first seq a segment file name says, if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?
        .strip_suffix(".ndjson")?
        .parse()
        .ok()
}

/// The fields a scan needs.
#[derive(Debug, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub ts: Timestamp,
    pub received: Timestamp,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
}

/// What scanning a segment found.
#[derive(Debug)]
pub struct Scanned {
    pub meta: SegmentMeta,
    /// Record ids, oldest first (for the duplicate window).
    pub ids: Vec<String>,
    /// Bytes cut off a torn tail.
    pub truncated: u64,
    /// Lines in the middle that did not parse (skipped by readers).
    pub corrupt: u64,
    /// The services that have records in it.
    pub services: std::collections::BTreeSet<String>,
}

/// Scans a segment. With `repair`, a torn tail is cut off the file.
pub fn scan(path: &Path, first_seq: u64, repair: bool) -> io::Result<Scanned> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut meta = SegmentMeta::empty(dir, first_seq);
    meta.path = path.to_owned();
    let mut ids = Vec::new();
    let mut services = std::collections::BTreeSet::new();
    let mut corrupt = 0;
    let mut offset = 0u64;
    let mut line = Vec::new();
    // Where the good data ends, and whether a bad line came last.
    let mut good_end = 0u64;
    let mut pending_bad: Option<u64> = None;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)? as u64;
        if n == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        let parsed = if complete {
            serde_json::from_slice::<Head>(&line[..line.len() - 1]).ok()
        } else {
            None
        };
        match parsed {
            Some(head) => {
                // A bad line followed by good ones is corruption in the
                // middle, not a torn tail: leave it, readers skip it.
                if pending_bad.take().is_some() {
                    corrupt += 1;
                }
                meta.note(head.seq, head.ts, head.received, offset, n);
                if let Some(id) = head.id {
                    ids.push(id);
                }
                if let Some(service) = head.service
                    && !services.contains(&service)
                {
                    services.insert(service);
                }
                good_end = offset + n;
            }
            None => {
                if pending_bad.replace(offset).is_some() {
                    corrupt += 1;
                }
            }
        }
        offset += n;
    }
    let mut truncated = 0;
    if let Some(bad) = pending_bad {
        // The last line is torn.
        if repair {
            let file = OpenOptions::new().write(true).open(path)?;
            file.set_len(bad)?;
            file.sync_all()?;
            truncated = file_len - bad;
        } else {
            corrupt += 1;
        }
    }
    meta.len = good_end.max(meta.len);
    Ok(Scanned {
        meta,
        ids,
        truncated,
        corrupt,
        services,
    })
}

/// Reads the complete lines of `[start, end)` of a file from first to last.
#[derive(Debug)]
pub struct ForwardLines {
    reader: io::Take<BufReader<File>>,
    buf: Vec<u8>,
}

impl ForwardLines {
    pub fn open(path: &Path, start: u64, end: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        Ok(Self {
            reader: BufReader::with_capacity(128 * 1024, file).take(end.saturating_sub(start)),
            buf: Vec::new(),
        })
    }

    /// The next line without its newline, and its length with it.
    pub fn next_line(&mut self) -> io::Result<Option<(&[u8], u64)>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        Ok(Some((line, n as u64)))
    }
}

/// Reads the complete lines of `[0, end)` of a file from last to first.
#[derive(Debug)]
pub struct ReverseLines {
    file: File,
    pos: u64,
    carry: Vec<u8>,
    pending: Vec<Vec<u8>>,
    done: bool,
}

impl ReverseLines {
    pub fn open(path: &Path, end: u64) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
            pos: end,
            carry: Vec::new(),
            pending: Vec::new(),
            done: false,
        })
    }

    /// The previous line (without its newline) and the bytes read for it.
    pub fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.pending.pop() {
                return Ok(Some(line));
            }
            if self.done {
                return Ok(None);
            }
            if self.pos == 0 {
                self.done = true;
                if !self.carry.is_empty() {
                    return Ok(Some(std::mem::take(&mut self.carry)));
                }
                return Ok(None);
            }
            let read = CHUNK.min(self.pos);
            self.pos -= read;
            self.file.seek(SeekFrom::Start(self.pos))?;
            let mut chunk = vec![0u8; read as usize];
            self.file.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&self.carry);
            let mut pieces: Vec<&[u8]> = chunk.split(|b| *b == b'\n').collect();
            // The piece after the last newline is empty at the file's end, or
            // is the carry already included: drop an empty tail piece.
            if pieces.last().is_some_and(|p| p.is_empty()) {
                pieces.pop();
            }
            // The first piece may continue to the left, unless at the start.
            let first = if self.pos > 0 && !pieces.is_empty() {
                Some(pieces.remove(0).to_vec())
            } else {
                None
            };
            self.pending = pieces.into_iter().map(<[u8]>::to_vec).collect();
            self.carry = first.unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(seq: u64) -> String {
        format!(
            "{{\"seq\":{seq},\"ts\":\"2026-11-21T10:00:00Z\",\"received\":\"2026-11-21T10:00:00Z\",\"level\":\"info\",\"message\":\"{}\"}}\n",
            "m".repeat((seq % 97) as usize)
        )
    }

    fn write_segment(dir: &Path, first: u64, last: u64, tail: &str) -> PathBuf {
        let path = segment_path(dir, first);
        let mut f = File::create(&path).unwrap();
        for seq in first..=last {
            f.write_all(line(seq).as_bytes()).unwrap();
        }
        f.write_all(tail.as_bytes()).unwrap();
        path
    }

    #[test]
    fn names_round_trip() {
        let p = segment_path(Path::new("/x"), 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "segment-00000000000000000042.ndjson");
        assert_eq!(parse_name(name), Some(42));
        assert_eq!(parse_name("segment-x.ndjson"), None);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let torn = "{\"seq\":3001,\"ts\":\"2026-1";
        let path = write_segment(dir.path(), 1, 3000, torn);
        let clean_len = std::fs::metadata(&path).unwrap().len() - torn.len() as u64;
        let scanned = scan(&path, 1, true).unwrap();
        assert_eq!(scanned.meta.last_seq, Some(3000));
        assert_eq!(scanned.meta.count, 3000);
        assert_eq!(scanned.truncated, torn.len() as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), clean_len);
        assert_eq!(scanned.meta.index.len(), 3);
        // Appending after the repair yields a readable file.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(line(3001).as_bytes()).unwrap();
        let again = scan(&path, 1, true).unwrap();
        assert_eq!((again.meta.last_seq, again.truncated), (Some(3001), 0));
    }

    #[test]
    fn reverse_and_forward_reading_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 1, 5000, "");
        let meta = scan(&path, 1, false).unwrap().meta;
        let mut forward = Vec::new();
        let mut f = ForwardLines::open(&path, 0, meta.len).unwrap();
        while let Some((l, _)) = f.next_line().unwrap() {
            forward.push(serde_json::from_slice::<Head>(l).unwrap().seq);
        }
        let mut backward = Vec::new();
        let mut r = ReverseLines::open(&path, meta.len).unwrap();
        while let Some(l) = r.next_line().unwrap() {
            backward.push(serde_json::from_slice::<Head>(&l).unwrap().seq);
        }
        backward.reverse();
        assert_eq!(forward, (1..=5000).collect::<Vec<_>>());
        assert_eq!(backward, forward);
    }

    #[test]
    fn the_index_finds_where_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 1, 5000, "");
        let meta = scan(&path, 1, false).unwrap().meta;
        for from in [1, 2, 1024, 1025, 1026, 4999, 5000] {
            let mut f = ForwardLines::open(&path, meta.offset_for(from), meta.len).unwrap();
            let mut first_at_or_after = None;
            while let Some((l, _)) = f.next_line().unwrap() {
                let seq = serde_json::from_slice::<Head>(l).unwrap().seq;
                if seq >= from {
                    first_at_or_after = Some(seq);
                    break;
                }
            }
            assert_eq!(first_at_or_after, Some(from));
        }
        for before in [2, 1025, 1026, 2049, 5000, 5001] {
            let mut r = ReverseLines::open(&path, meta.end_for(before)).unwrap();
            let mut seen = Vec::new();
            while let Some(l) = r.next_line().unwrap() {
                seen.push(serde_json::from_slice::<Head>(&l).unwrap().seq);
            }
            assert!(seen.contains(&(before - 1)), "before {before}");
        }
    }
}
