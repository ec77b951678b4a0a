//! `rollcall logs`: query the log service, and follow it with `-f`.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use rollcall_logs::{Level, LogRecord};
use serde::Deserialize;

use super::{REQUEST_TIMEOUT, Style, clean, client, find_service, follow, send};

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Only this service's records: its name ignoring case (`portal` finds
    /// `Portal`), else the one service whose name contains it.
    #[arg(long, short)]
    pub service: Option<String>,
    /// Only records at this level or above (trace, debug, info, warn, error).
    #[arg(long, short)]
    pub level: Option<String>,
    /// Only records since then: `10m` (ago), RFC 3339, or Unix milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Only records until then (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only records whose message or fields (`key=value`) contain this
    /// (ignoring case).
    #[arg(long, short)]
    pub contains: Option<String>,
    /// How many of the newest records to show first.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub limit: usize,
    /// Keep printing records as they arrive.
    #[arg(long, short)]
    pub follow: bool,
    /// Print the raw records as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// The registry to find the log service through.
    #[command(flatten)]
    pub registry: super::registry::RegistryArg,
    /// The log service's name in the registry.
    #[arg(long, default_value = rollcall_proto::names::well_known::LOG_SERVICE)]
    pub log_service: rollcall_proto::ServiceName,
    /// Ask this log service directly instead of looking it up.
    #[arg(long, env = "ROLLCALL_LOG_URL")]
    pub log_url: Option<rollcall_proto::ServiceUrl>,
}

#[derive(Debug, Deserialize)]
struct Page {
    records: Vec<LogRecord>,
    /// Why the page is empty, when a filter names a service with no records.
    #[serde(default)]
    note: Option<String>,
    /// With `note`: the services that have records.
    #[serde(default)]
    services: Option<Vec<String>>,
    /// Where the next page starts (the page stopped at its limit or its scan
    /// budget).
    #[serde(default)]
    next_cursor: Option<u64>,
    #[serde(default)]
    scanned_records: u64,
}

/// The store an answer came from and its newest seq then
/// (`X-Rollcall-Log-Store`, `X-Rollcall-Log-Last-Seq`), where it says.
fn store_of(response: &reqwest::Response) -> (Option<String>, Option<u64>) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (
        header(rollcall_logs::http::STORE_HEADER),
        header(rollcall_logs::http::LAST_SEQ_HEADER).and_then(|v| v.parse().ok()),
    )
}

/// Asks for page after page (each scans at most the log service's budget)
/// until `limit` records are found or the store is searched to its end,
/// saying how far it got on a terminal's stderr as it goes. Newest first.
async fn search(
    client: &reqwest::Client,
    base: &str,
    log_service: &str,
    filters: &[(&'static str, String)],
    limit: usize,
) -> anyhow::Result<Searched> {
    let progress = std::io::stderr().is_terminal();
    let mut records = Vec::new();
    let mut note = None;
    let mut services = None;
    let mut store = None;
    let mut scanned: u64 = 0;
    let mut cursor = None;
    loop {
        let mut query = filters.to_vec();
        query.push(("limit", (limit - records.len()).clamp(1, 1000).to_string()));
        if let Some(cursor) = cursor {
            query.push(("cursor", format!("{cursor}")));
        }
        let request = client
            .get(format!("{base}/v1/logs"))
            .query(&query)
            .timeout(REQUEST_TIMEOUT);
        let answer = send(request, log_service).await?;
        if store.is_none() {
            store = store_of(&answer).0;
        }
        let page: Page = super::read_json(answer)
            .await
            .context("the log service sent a bad page")?;
        scanned += page.scanned_records;
        records.extend(page.records);
        note = note.or(page.note);
        services = services.or(page.services);
        cursor = page.next_cursor;
        if records.len() >= limit || cursor.is_none() {
            break;
        }
        if progress {
            let _ = write!(
                std::io::stderr(),
                "\rsearched {scanned} records, found {}…",
                records.len()
            );
        }
    }
    if progress && scanned > 0 {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
    records.truncate(limit);
    Ok(Searched {
        records,
        note,
        services,
        scanned,
        store,
    })
}

/// What [`search`] found.
struct Searched {
    /// Newest first.
    records: Vec<LogRecord>,
    /// Why nothing was found, when the log service says.
    note: Option<String>,
    /// With `note`: the services that have records.
    services: Option<Vec<String>>,
    scanned: u64,
    /// The store that answered (`X-Rollcall-Log-Store`).
    store: Option<String>,
}

fn filters(args: &LogsArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut add = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            q.push((k, v.clone()));
        }
    };
    add("service", &args.service);
    add("level", &args.level);
    add("since", &args.since);
    add("until", &args.until);
    add("contains", &args.contains);
    q
}

/// Formats one record for people (or as JSON).
pub fn format_record(record: &LogRecord, style: Style, json: bool) -> String {
    if json {
        return super::clean_json(&serde_json::to_string(record).unwrap_or_default());
    }
    let level = format!("{:5}", record.level.as_str().to_uppercase());
    let level = match record.level {
        Level::Error => style.paint("31;1", &level),
        Level::Warn => style.paint("33", &level),
        Level::Info => style.paint("32", &level),
        Level::Debug => style.paint("34", &level),
        Level::Trace => style.dim(&level),
    };
    let service = record.service.as_ref().map_or("-", |s| s.as_str());
    let mut line = format!(
        "{} {level} {} {}",
        style.dim(&record.ts.to_rfc3339()),
        style.paint("36", &format!("[{}]", clean(service))),
        clean(&record.message)
    );
    for (key, value) in &record.fields {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        line.push(' ');
        line.push_str(&style.dim(&clean(&format!("{key}={value}"))));
    }
    line
}

/// Runs `rollcall logs`.
pub async fn run(mut args: LogsArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    let base = match &args.log_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => find_service(&client, &args.registry, args.log_service.as_str())
            .await
            .context(
                "cannot find the log service (start one with `rollcall log`, or pass --log-url)",
            )?,
    };
    let style = Style::for_stdout();
    let log_service = format!("the log service at {base}");
    let mut wanted = filters(&args);
    let mut found = search(&client, &base, &log_service, &wanted, args.limit.max(1)).await?;
    // No service has that name (ignoring case): the command line's rule
    // goes on to the names that contain it.
    if let (Some(asked), Some(known)) = (args.service.clone(), found.services.take()) {
        let picked = match super::registry::pick_services(known.iter().map(String::as_str), &asked)
        {
            super::registry::Picked::Exact(names) | super::registry::Picked::Partial(names) => {
                names
            }
            super::registry::Picked::None => Default::default(),
        };
        if picked.len() > 1 {
            anyhow::bail!(
                "`{}` matches several services with records: {}; name one of them",
                clean(&asked),
                clean(&picked.into_iter().collect::<Vec<_>>().join(", "))
            );
        }
        if let Some(name) = picked.into_iter().next() {
            errln!(
                "rollcall logs: no service is named `{}`; showing {} (its name contains it)",
                clean(&asked),
                clean(&name)
            );
            args.service = Some(name);
            wanted = filters(&args);
            found = search(&client, &base, &log_service, &wanted, args.limit.max(1)).await?;
        }
    }
    let Searched {
        records,
        note,
        scanned,
        store,
        ..
    } = found;
    if let Some(note) = &note {
        errln!("rollcall logs: {}", clean(note));
    } else if records.is_empty() && wanted.is_empty() {
        errln!("rollcall logs: the log service has no records yet");
    } else if records.is_empty() {
        errln!("rollcall logs: searched all {scanned} records, nothing matched");
    }
    let mut last_seq = records.iter().map(|r| r.seq).max();
    for record in records.iter().rev() {
        outln!("{}", format_record(record, style, args.json));
    }
    if !args.follow {
        return Ok(());
    }
    if last_seq.is_none() {
        // Nothing matched: start after the newest record of any kind.
        let request = client
            .get(format!("{base}/v1/logs"))
            .query(&[("limit", "1")])
            .timeout(REQUEST_TIMEOUT);
        let newest: Page = super::read_json(send(request, &log_service).await?).await?;
        last_seq = Some(newest.records.first().map_or(0, |r| r.seq));
    }
    // Which store this is: one that started over has another identity.
    let store = std::cell::RefCell::new(store);
    // Every record seen moves the cursor, so a reconnection (the log service
    // restarted, or another instance took over) resumes right after it.
    let cursor = std::cell::Cell::new(last_seq.unwrap_or(0));
    let open = |attempt: u32| {
        let client = client.clone();
        let args = args.clone();
        let first_base = base.clone();
        let (cursor, store) = (&cursor, &store);
        async move {
            let base = if attempt == 0 || args.log_url.is_some() {
                first_base
            } else {
                find_service(&client, &args.registry, args.log_service.as_str()).await?
            };
            let service = format!("the log service at {base}");
            let tail = |from: u64| {
                let mut tail_query = filters(&args);
                tail_query.push(("cursor", from.to_string()));
                client
                    .get(format!("{base}/v1/logs/tail"))
                    .query(&tail_query)
            };
            let response = send(tail(cursor.get()), &service).await?;
            let (id, last) = store_of(&response);
            let known = store.borrow().clone();
            let other = matches!((&known, &id), (Some(k), Some(i)) if k != i);
            if other || last.is_some_and(|last| last < cursor.get()) {
                errln!(
                    "rollcall logs: {service} holds a store that started over ({}); printing its records from its start",
                    if other {
                        "another store"
                    } else {
                        "its records go back"
                    }
                );
                *store.borrow_mut() = id;
                cursor.set(0);
                return send(tail(0), &service).await;
            }
            Ok(response)
        }
    };
    follow(&log_service, open, |event| match event.event.as_str() {
        "record" => {
            if let Ok(record) = serde_json::from_str::<LogRecord>(&event.data) {
                if record.seq <= cursor.get() {
                    return;
                }
                cursor.set(record.seq);
                outln!("{}", format_record(&record, style, args.json));
            }
        }
        "lagged" => errln!(
            "rollcall logs: fell behind; some records were skipped ({})",
            clean(&event.data)
        ),
        _ => {}
    })
    .await
}
