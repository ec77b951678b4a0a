use rollcall_testkit::otlp::export;

use super::*;

const LIMITS: Limits = Limits {
    records: 10_000,
    expanded_bytes: 8 << 20,
};

#[test]
fn a_real_export_passes() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message as _;
    let export = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 3],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    assert_eq!(protobuf(&export.encode_to_vec(), LIMITS), Ok(()));
    let json = serde_json::to_vec(&export).unwrap();
    assert_eq!(json_export(&json), Ok(()));
}

fn json_export(body: &[u8]) -> Result<(), Refused> {
    json(body, LIMITS)
}

#[test]
fn millions_of_empty_records_are_refused_at_the_first_past_the_limit() {
    // 4 M records are 8 MB on the wire (a few KB gzipped) and gigabytes
    // decoded; counting stops at 10,001.
    let bomb = export(0, 4_000_000);
    assert_eq!(
        protobuf(&bomb, LIMITS),
        Err(Refused::TooManyRecords(10_001))
    );
    let records = "{},".repeat(1_000_000);
    let json = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}{{}}]}}]}}]}}"#,
        records
    );
    assert_eq!(
        json_export(json.as_bytes()),
        Err(Refused::TooManyRecords(10_001))
    );
}

#[test]
fn a_resource_copied_into_every_record_counts_as_often_as_it_is_copied() {
    // 1,000 attributes (about 17 KB) into 10,000 records: 170 MB stored.
    let bomb = export(1_000, 10_000);
    assert!(bomb.len() < 100_000);
    assert_eq!(protobuf(&bomb, LIMITS), Err(Refused::TooLarge(8 << 20)));
    // The same resource into a few records is fine.
    assert_eq!(protobuf(&export(1_000, 10), LIMITS), Ok(()));
    let attributes: Vec<String> = (0..1_000)
        .map(|i| format!(r#"{{"key":"attribute.{i:05}","value":{{"stringValue":"x"}}}}"#))
        .collect();
    let json = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{}]}},"scopeLogs":[{{"logRecords":[{}{{}}]}}]}}]}}"#,
        attributes.join(","),
        "{},".repeat(9_999)
    );
    assert_eq!(
        json_export(json.as_bytes()),
        Err(Refused::TooLarge(8 << 20))
    );
}

#[test]
fn what_is_not_an_export_is_malformed() {
    assert!(matches!(
        protobuf(&[0x0a, 0x05, 1], LIMITS),
        Err(Refused::Malformed(_))
    ));
    assert!(matches!(
        json_export(b"{\"resourceLogs\": [1"),
        Err(Refused::Malformed(_))
    ));
    assert!(matches!(json_export(b"[]"), Err(Refused::Malformed(_))));
}
