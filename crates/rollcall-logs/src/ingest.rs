//! Validating what is sent to be stored, a batch or an OTLP export alike:
//! all or nothing, each refused record named with its reason.

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::record::{IncomingRecord, NewRecord, RecordError};
use crate::state::AppState;

/// One refused record in a batch answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    pub(crate) index: usize,
    code: &'static str,
    pub(crate) reason: String,
}

fn record_code(e: &RecordError) -> &'static str {
    match e {
        RecordError::Shape(_) => "invalid_record",
        RecordError::MissingService => "missing_service",
        RecordError::InvalidService(_) => "invalid_service",
        RecordError::MissingMessage => "missing_message",
        RecordError::UnknownLevel(_) => "unknown_level",
        RecordError::InvalidTimestamp => "invalid_timestamp",
        RecordError::FieldsNotObject => "invalid_fields",
        RecordError::InvalidId => "invalid_id",
        RecordError::InvalidInstance => "invalid_instance",
        RecordError::TooLarge { .. } => "record_too_large",
    }
}

/// Validates every record of a batch, as sent or as mapped from an OTLP
/// export (all or nothing): the records to store, or each rejected one with
/// its reason (counted).
pub(crate) fn validate_batch(
    state: &AppState,
    incoming: impl Iterator<Item = Result<IncomingRecord, RecordError>>,
) -> Result<Vec<NewRecord>, Vec<Rejected>> {
    let received = rollcall_proto::Timestamp::system_now();
    let max_record = usize::try_from(state.config.max_record_bytes).unwrap_or(usize::MAX);
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in incoming.enumerate() {
        match record.and_then(|r| r.validate(received, max_record)) {
            Ok(record) => records.push(record),
            Err(e) => rejected.push(Rejected {
                index,
                code: record_code(&e),
                reason: e.to_string(),
            }),
        }
    }
    if rejected.is_empty() {
        return Ok(records);
    }
    state.metrics.batches_rejected.inc();
    state.metrics.records_rejected.inc_by(rejected.len() as u64);
    Err(rejected)
}

/// 413 when a rejected record was too large, else 400.
pub(crate) fn rejected_status(rejected: &[Rejected]) -> StatusCode {
    if rejected.iter().any(|r| r.code == "record_too_large") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    }
}
