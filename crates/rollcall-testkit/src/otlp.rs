//! OTLP exports written by hand on the protobuf wire format: attacks whose
//! point is their size decoded (building them with the generated types
//! would take the memory they are about).

/// A length-delimited protobuf field.
pub fn len_field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut n = bytes.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
    out
}

/// A resource's attributes: `n` string keys (`attribute.00000`, …).
pub fn attributes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| len_field(1, &len_field(1, format!("attribute.{i:05}").as_bytes())))
        .collect()
}

/// An export (`ExportLogsServiceRequest`) of one resource of `attributes`
/// attributes with one scope of `records` empty log records.
pub fn export(attributes: usize, records: usize) -> Vec<u8> {
    let scope: Vec<u8> = (0..records).flat_map(|_| len_field(2, b"")).collect();
    let mut resource_logs = len_field(1, &self::attributes(attributes));
    resource_logs.extend(len_field(2, &scope));
    len_field(1, &resource_logs)
}
