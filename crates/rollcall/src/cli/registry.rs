//! `rollcall ls`, `rollcall watch`, `rollcall deregister`: the registry from the
//! command line.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};

use super::{REQUEST_TIMEOUT, Style, clean, client, error_text, follow, send};

/// Where the registry is (shared by the registry commands).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArg {
    /// The registry's URL.
    #[arg(
        long,
        env = "ROLLCALL_REGISTRY",
        default_value = "http://127.0.0.1:3000"
    )]
    pub registry: rollcall_proto::ServiceUrl,
    #[command(flatten)]
    pub trust: rollcall_http::tls::CaFile,
}

impl RegistryArg {
    pub fn base(&self) -> &str {
        self.registry.as_str().trim_end_matches('/')
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub registry: RegistryArg,
    /// Only instances of this service.
    #[arg(long, short)]
    pub service: Option<String>,
    /// Print the catalog as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub registry: RegistryArg,
    /// Only changes of this service.
    pub service: Option<String>,
    /// Print each change as a JSON line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeregisterArgs {
    #[command(flatten)]
    pub registry: RegistryArg,
    /// The instance's ServiceURL.
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MaintArgs {
    #[command(flatten)]
    pub registry: RegistryArg,
    /// The instance's ServiceURL.
    pub url: String,
    /// `on` takes it out of discovery (it stays registered and checked);
    /// `off` puts it back.
    #[arg(value_enum)]
    pub switch: Switch,
}

/// "3.2s ago" from RFC 3339 text.
fn ago(when: &str) -> String {
    match rollcall_proto::Timestamp::parse_rfc3339(when) {
        Ok(then) => {
            rollcall_proto::time::format_ago(rollcall_proto::Timestamp::system_now().since(then))
        }
        Err(_) => "-".into(),
    }
}

impl RegistryArg {
    fn name(&self) -> String {
        format!("the registry at {}", self.registry)
    }
}

/// Lays out rows as aligned columns; `paint` styles a cell after padding.
pub fn table(
    header: &[&str],
    rows: &[Vec<String>],
    paint: impl Fn(usize, &str) -> String,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>, styled: bool| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let padded = if i == last {
                    c.clone()
                } else {
                    format!("{c:<width$}", width = widths[i])
                };
                if styled { paint(i, &padded) } else { padded }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect(), false);
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone(), true));
    }
    out
}

/// `GET /services`, of one service if named.
async fn get_catalog(
    client: &reqwest::Client,
    registry: &RegistryArg,
    service: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let mut request = client
        .get(format!("{}/services", registry.base()))
        .timeout(REQUEST_TIMEOUT);
    if let Some(service) = service {
        request = request.query(&[("service", service)]);
    }
    send(request, &registry.name()).await
}

/// `rollcall ls`.
pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    let response = get_catalog(&client, &args.registry, args.service.as_deref()).await?;
    let instances: Vec<serde_json::Value> = super::read_json(response)
        .await
        .context("the registry sent a bad catalog")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&instances)?);
        return Ok(());
    }
    if instances.is_empty() {
        println!("no instances are registered");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            let s = |k: &str| clean(i[k].as_str().unwrap_or(""));
            let requires = i["RequiredServices"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .map(clean)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                s("ServiceName"),
                s("ServiceURL"),
                s("Status"),
                i["LastCheck"].as_str().map_or_else(|| "-".into(), ago),
                i["LastCheckLatencyMs"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |ms| format!("{ms:.1}ms")),
                if requires.is_empty() {
                    "-".into()
                } else {
                    requires
                },
            ]
        })
        .collect();
    let style = Style::for_stdout();
    let text = table(
        &[
            "SERVICE",
            "URL",
            "STATUS",
            "LAST CHECK",
            "LATENCY",
            "REQUIRES",
        ],
        &rows,
        |column, cell| match (column, cell.trim()) {
            (2, "passing") => style.paint("32", cell),
            (2, "critical") => style.paint("31;1", cell),
            (2, "maintenance" | "unchecked") => style.paint("33", cell),
            (0, _) => style.paint("1", cell),
            _ => cell.to_owned(),
        },
    );
    println!("{text}");
    Ok(())
}

/// One change, for people.
pub fn format_change(change: &serde_json::Value, style: Style) -> String {
    let s = |k: &str| clean(change[k].as_str().unwrap_or(""));
    let kind = s("kind");
    let painted = match kind.as_str() {
        "registered" | "recovered" | "resynced" => style.paint("32", &format!("{kind:<15}")),
        "critical" | "expired" | "delivery_failed" => style.paint("31;1", &format!("{kind:<15}")),
        _ => style.paint("33", &format!("{kind:<15}")),
    };
    let detail = s("detail");
    let mut line = format!(
        "{} {painted} {} {}",
        style.dim(&s("at")),
        style.paint("1", &s("service")),
        s("url")
    );
    if !detail.is_empty() {
        line.push_str(&format!(" ({detail})"));
    }
    line
}

/// What `watch` knows of one instance: its service and status.
type Known = BTreeMap<String, (String, String)>;

/// The catalog (optionally one service's instances) as `url → (service, status)`.
async fn current_state(client: &reqwest::Client, args: &WatchArgs) -> anyhow::Result<(Known, u64)> {
    let response = get_catalog(client, &args.registry, args.service.as_deref()).await?;
    let revision = response
        .headers()
        .get("x-rollcall-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let instances: Vec<serde_json::Value> = super::read_json(response)
        .await
        .context("the registry sent a bad catalog")?;
    let known = instances
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("").to_owned();
            (s("ServiceURL"), (s("ServiceName"), s("Status")))
        })
        .collect();
    Ok((known, revision))
}

/// The differences between two states, as changes `watch` prints.
fn differences(before: &Known, after: &Known, now: &str) -> Vec<serde_json::Value> {
    let change = |kind: &str, url: &str, service: &str, detail: &str| {
        serde_json::json!({
            "at": now, "kind": kind, "service": service, "url": url,
            "detail": detail,
        })
    };
    let mut out = Vec::new();
    for (url, (service, status)) in after {
        match before.get(url) {
            None => out.push(change("registered", url, service, "while disconnected")),
            Some((_, old)) if old != status => {
                out.push(change(status, url, service, "while disconnected"));
            }
            Some(_) => {}
        }
    }
    for (url, (service, _)) in before {
        if !after.contains_key(url) {
            out.push(change("deregistered", url, service, "while disconnected"));
        }
    }
    out
}

/// Applies one change event to what `watch` knows.
fn absorb(known: &mut Known, change: &serde_json::Value) {
    let s = |k: &str| change[k].as_str().unwrap_or("").to_owned();
    let url = s("url");
    let status = match s("kind").as_str() {
        "deregistered" | "expired" => {
            known.remove(&url);
            return;
        }
        "registered" | "reregistered" => "unchecked",
        "critical" => "critical",
        "recovered" | "maintenance_off" => "passing",
        "maintenance_on" => "maintenance",
        _ => return,
    };
    known.insert(url, (s("service"), status.to_owned()));
}

/// `rollcall watch`: the current state, then every change; across a restart
/// of the registry it reconnects and prints what changed meanwhile.
pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    let name = args.registry.name();
    let style = Style::for_stdout();
    let print = |change: &serde_json::Value| {
        if args.json {
            println!("{change}");
        } else {
            println!("{}", format_change(change, style));
        }
    };
    let (known, revision) = current_state(&client, &args).await?;
    if args.json {
        for (url, (service, status)) in &known {
            println!(
                "{}",
                serde_json::json!({"kind": "current", "service": service, "url": url, "status": status})
            );
        }
    } else {
        eprintln!(
            "watching {} (revision {revision}); {} instance(s) now:",
            args.registry.registry,
            known.len()
        );
        for (url, (service, status)) in &known {
            let status = match status.as_str() {
                "passing" => style.paint("32", status),
                "critical" => style.paint("31;1", status),
                other => style.paint("33", other),
            };
            println!(
                "  {} {} {status}",
                style.paint("1", &clean(service)),
                clean(url)
            );
        }
    }
    let known = std::cell::RefCell::new(known);
    let missed = std::cell::RefCell::new(Vec::new());
    let open = |attempt: u32| {
        let client = client.clone();
        let args = args.clone();
        let known = &known;
        let missed = &missed;
        async move {
            let mut request = client.get(format!("{}/v1/watch", args.registry.base()));
            if let Some(service) = &args.service {
                request = request.query(&[("service", service)]);
            }
            let response = send(request, &args.registry.name()).await?;
            if attempt > 0 {
                // Subscribed first, so nothing falls between the two.
                let (now, _) = current_state(&client, &args).await?;
                let at = rollcall_proto::Timestamp::system_now().to_rfc3339();
                let changes = differences(&known.borrow(), &now, &at);
                *known.borrow_mut() = now;
                missed.borrow_mut().extend(changes);
            }
            Ok(response)
        }
    };
    follow(&name, open, |event| {
        for change in missed.borrow_mut().drain(..) {
            print(&change);
        }
        if event.event.as_str() == "change"
            && let Ok(change) = serde_json::from_str::<serde_json::Value>(&event.data)
        {
            absorb(&mut known.borrow_mut(), &change);
            print(&change);
        } else if event.event == "lagged" {
            eprintln!("rollcall watch: fell behind; some changes were skipped");
        }
    })
    .await
}

/// `rollcall deregister`.
pub async fn deregister(args: DeregisterArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    let response = client
        .delete(format!("{}/services", args.registry.base()))
        .body(args.url.clone())
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("cannot reach the registry at {}", args.registry.registry))?;
    if !response.status().is_success() {
        bail!("{}", error_text(response).await);
    }
    let answer: serde_json::Value = super::read_json(response).await.unwrap_or_default();
    println!("deregistered {}", clean(args.url.trim()));
    if answer["live"] == true {
        eprintln!(
            "note: this instance is a running SDK service (it holds a watch stream): it will \
             register again within seconds.\n      To take it out of discovery while it runs: \
             rollcall maint {} on",
            clean(args.url.trim())
        );
    }
    Ok(())
}

/// `rollcall maint URL on|off`.
pub async fn maint(args: MaintArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    let enable = args.switch == Switch::On;
    let request = client
        .put(format!("{}/v1/maintenance", args.registry.base()))
        .json(&serde_json::json!({"ServiceURL": args.url.trim(), "Enable": enable}))
        .timeout(REQUEST_TIMEOUT);
    send(request, &args.registry.name()).await?;
    if enable {
        println!(
            "{}: maintenance on — out of discovery (dependents were told), still registered",
            clean(args.url.trim())
        );
    } else {
        println!(
            "{}: maintenance off — back in discovery while it passes its checks",
            clean(args.url.trim())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
