//! An export's shape, measured before it is decoded: how many log records it
//! holds and how many bytes they come to once each carries its resource's
//! attributes. Decoding materialises every record (a few bytes on the wire,
//! a few hundred in memory), and every resource attribute is copied into
//! every record of that resource, so a small export can expand a thousand
//! times; this walk allocates nothing per record and stops at the first
//! limit passed.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What an export may come to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub records: usize,
    /// Bytes of the records with their resource's attributes copied in.
    pub expanded_bytes: u64,
}

/// Why an export is refused before it is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// More records than [`Limits::records`] (counted up to the first past it).
    TooManyRecords(usize),
    /// Records with their resource's attributes past
    /// [`Limits::expanded_bytes`].
    TooLarge(u64),
    /// Not an export at all; the decoder says the rest.
    Malformed(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::TooManyRecords(n) => write!(f, "the export has more than {} records", n - 1),
            Refused::TooLarge(n) => write!(
                f,
                "the export's records come to more than {n} bytes with their resource attributes"
            ),
            Refused::Malformed(e) => write!(f, "{e}"),
        }
    }
}

/// The running count, checked at every record.
#[derive(Debug)]
struct Count {
    limits: Limits,
    records: usize,
    expanded: u64,
    /// The limit a JSON walk stopped at (serde carries only text).
    refused: Option<Refused>,
}

impl Count {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            records: 0,
            expanded: 0,
            refused: None,
        }
    }

    /// One more record of `bytes`.
    fn record(&mut self, bytes: u64) -> Result<(), Refused> {
        self.records += 1;
        if self.records > self.limits.records {
            return Err(Refused::TooManyRecords(self.records));
        }
        self.add(bytes)
    }

    /// Something of `bytes` copied into each of `records` records (a
    /// resource's attributes, a scope's name).
    fn copied(&mut self, records: usize, bytes: u64) -> Result<(), Refused> {
        self.add(bytes.saturating_mul(records as u64))
    }

    fn add(&mut self, bytes: u64) -> Result<(), Refused> {
        self.expanded = self.expanded.saturating_add(bytes);
        if self.expanded > self.limits.expanded_bytes {
            return Err(Refused::TooLarge(self.limits.expanded_bytes));
        }
        Ok(())
    }

    /// `checked` as a serde error, keeping the reason.
    fn serde<E: de::Error>(&mut self, checked: Result<(), Refused>) -> Result<(), E> {
        checked.map_err(|refused| {
            let error = E::custom(&refused);
            self.refused = Some(refused);
            error
        })
    }
}

// ---- protobuf: the wire format walked field by field ----

/// A field's value on the wire (only length-delimited ones are looked into).
enum Wire<'a> {
    Scalar,
    Len(&'a [u8]),
}

/// The fields of one message.
struct Fields<'a>(&'a [u8]);

fn malformed() -> Refused {
    Refused::Malformed("a truncated or invalid protobuf message".to_owned())
}

fn varint(buf: &mut &[u8]) -> Result<u64, Refused> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or_else(malformed)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(malformed())
}

fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], Refused> {
    let n = usize::try_from(n).map_err(|_| malformed())?;
    if n > buf.len() {
        return Err(malformed());
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u64, Wire<'a>), Refused> {
        let key = varint(&mut self.0)?;
        let wire = match key & 7 {
            0 => {
                varint(&mut self.0)?;
                Wire::Scalar
            }
            1 => {
                take(&mut self.0, 8)?;
                Wire::Scalar
            }
            2 => {
                let len = varint(&mut self.0)?;
                Wire::Len(take(&mut self.0, len)?)
            }
            5 => {
                take(&mut self.0, 4)?;
                Wire::Scalar
            }
            _ => return Err(malformed()),
        };
        Ok((key >> 3, wire))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), Refused>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

/// Checks a protobuf export (`ExportLogsServiceRequest`) against `limits`.
pub fn protobuf(body: &[u8], limits: Limits) -> Result<(), Refused> {
    let mut count = Count::new(limits);
    for field in Fields(body) {
        // 1: resource_logs
        if let (1, Wire::Len(resource_logs)) = field? {
            let before = count.records;
            let mut resource = 0u64;
            for field in Fields(resource_logs) {
                match field? {
                    // 1: resource (its attributes go into each record)
                    (1, Wire::Len(r)) => resource += r.len() as u64,
                    // 2: scope_logs
                    (2, Wire::Len(scope_logs)) => scope_protobuf(scope_logs, &mut count)?,
                    _ => {}
                }
            }
            count.copied(count.records - before, resource)?;
        }
    }
    Ok(())
}

fn scope_protobuf(scope_logs: &[u8], count: &mut Count) -> Result<(), Refused> {
    let before = count.records;
    let mut scope = 0u64;
    for field in Fields(scope_logs) {
        match field? {
            // 1: scope (its name goes into each record)
            (1, Wire::Len(s)) => scope += s.len() as u64,
            // 2: log_records
            (2, Wire::Len(record)) => count.record(record.len() as u64)?,
            _ => {}
        }
    }
    count.copied(count.records - before, scope)
}

// ---- JSON: walked with serde, nothing kept but the count ----

/// Checks a JSON export against `limits`.
pub fn json(body: &[u8], limits: Limits) -> Result<(), Refused> {
    let mut count = Count::new(limits);
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = Export(&mut count)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match walked {
        Ok(()) => Ok(()),
        Err(e) => Err(count
            .refused
            .take()
            .unwrap_or_else(|| Refused::Malformed(e.to_string()))),
    }
}

/// Which of an object's keys are walked into; the rest are skipped.
fn walk_map<'de, A: MapAccess<'de>>(
    map: &mut A,
    mut on: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
        if !on(&key, map)? {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(())
}

/// A whole export object.
struct Export<'c>(&'c mut Count);

impl<'de> DeserializeSeed<'de> for Export<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Export<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OTLP logs export")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let count = self.0;
        walk_map(&mut map, |key, map| match key {
            "resourceLogs" | "resource_logs" => {
                map.next_value_seed(Each(&mut *count, Part::ResourceLogs))?;
                Ok(true)
            }
            _ => Ok(false),
        })
    }
}

/// The nested objects walked into.
#[derive(Clone, Copy)]
enum Part {
    ResourceLogs,
    ScopeLogs,
    Records,
}

/// An array of `Part`s (`null` is none).
struct Each<'c>(&'c mut Count, Part);

impl<'de> DeserializeSeed<'de> for Each<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Each<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Each(count, part) = self;
        match part {
            Part::Records => {
                while let Some(bytes) = seq.next_element_seed(Size)? {
                    let checked = count.record(bytes);
                    count.serde(checked)?;
                }
            }
            Part::ResourceLogs | Part::ScopeLogs => {
                while seq.next_element_seed(Holder(&mut *count, part))?.is_some() {}
            }
        }
        Ok(())
    }
}

/// A `resourceLogs` or `scopeLogs` element: what it copies into each of
/// its records, and its records.
struct Holder<'c>(&'c mut Count, Part);

impl<'de> DeserializeSeed<'de> for Holder<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Holder<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Holder(count, part) = self;
        let (copied_key, inner, inner_keys): (&str, Part, [&str; 2]) = match part {
            Part::ResourceLogs => ("resource", Part::ScopeLogs, ["scopeLogs", "scope_logs"]),
            _ => ("scope", Part::Records, ["logRecords", "log_records"]),
        };
        let before = count.records;
        let mut copied = 0u64;
        walk_map(&mut map, |key, map| {
            if key == copied_key {
                copied += map.next_value_seed(Size)?;
                Ok(true)
            } else if inner_keys.contains(&key) {
                map.next_value_seed(Each(&mut *count, inner))?;
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        let checked = count.copied(count.records - before, copied);
        count.serde(checked)
    }
}

/// Any JSON value's size: its strings' bytes, 8 for other scalars, 2 for
/// each array or object around them.
struct Size;

impl<'de> DeserializeSeed<'de> for Size {
    type Value = u64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Size {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<u64, E> {
        Ok(8)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<u64, E> {
        Ok(8)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<u64, E> {
        Ok(8)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<u64, E> {
        Ok(8)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        Ok(s.len() as u64)
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(8)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut total = 2u64;
        while let Some(n) = seq.next_element_seed(Size)? {
            total = total.saturating_add(n);
        }
        Ok(total)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut total = 2u64;
        while let Some(k) = map.next_key_seed(Size)? {
            total = total
                .saturating_add(k)
                .saturating_add(map.next_value_seed(Size)?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests;
