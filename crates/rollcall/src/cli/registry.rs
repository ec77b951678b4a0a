//! `rollcall ls`, `rollcall watch`, `rollcall deregister`: the registry from the
//! command line.

use anyhow::{Context as _, bail};

use super::{REQUEST_TIMEOUT, Style, client, error_text, follow, send};

/// Where the registry is (shared by the registry commands).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArg {
    /// The registry's URL.
    #[arg(
        long,
        env = "ROLLCALL_REGISTRY",
        default_value = "http://127.0.0.1:3000"
    )]
    pub registry: String,
}

impl RegistryArg {
    fn base(&self) -> &str {
        self.registry.trim_end_matches('/')
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

/// `rollcall ls`.
pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let client = client()?;
    let mut request = client
        .get(format!("{}/services", args.registry.base()))
        .timeout(REQUEST_TIMEOUT);
    if let Some(service) = &args.service {
        request = request.query(&[("service", service)]);
    }
    let response = send(request, &args.registry.name()).await?;
    let instances: Vec<serde_json::Value> = response
        .json()
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
            let s = |k: &str| i[k].as_str().unwrap_or("").to_owned();
            let requires = i["RequiredServices"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
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
            (0, _) => style.paint("1", cell),
            _ => cell.to_owned(),
        },
    );
    println!("{text}");
    Ok(())
}

/// One change, for people.
pub fn format_change(change: &serde_json::Value, style: Style) -> String {
    let s = |k: &str| change[k].as_str().unwrap_or("").to_owned();
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

/// `rollcall watch`.
pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let client = client()?;
    let mut request = client.get(format!("{}/v1/watch", args.registry.base()));
    if let Some(service) = &args.service {
        request = request.query(&[("service", service)]);
    }
    let name = args.registry.name();
    let response = send(request, &name).await?;
    let style = Style::for_stdout();
    follow(response, &name, |event| match event.event.as_str() {
        "hello" if !args.json => {
            let hello: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
            eprintln!(
                "watching {} (revision {})",
                args.registry.registry, hello["revision"]
            );
        }
        "change" => {
            if args.json {
                println!("{}", event.data);
            } else if let Ok(change) = serde_json::from_str::<serde_json::Value>(&event.data) {
                println!("{}", format_change(&change, style));
            }
        }
        "lagged" => eprintln!("rollcall watch: fell behind; some changes were skipped"),
        _ => {}
    })
    .await
}

/// `rollcall deregister`.
pub async fn deregister(args: DeregisterArgs) -> anyhow::Result<()> {
    let client = client()?;
    let response = client
        .delete(format!("{}/services", args.registry.base()))
        .body(args.url.clone())
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("cannot reach the registry at {}", args.registry.registry))?;
    if response.status().is_success() {
        println!("deregistered {}", args.url.trim());
        return Ok(());
    }
    bail!("{}", error_text(response).await);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec![
                "LogService".to_owned(),
                "http://a".to_owned(),
                "passing".to_owned(),
            ],
            vec![
                "Portal".to_owned(),
                "http://bb".to_owned(),
                "critical".to_owned(),
            ],
        ];
        let text = table(&["SERVICE", "URL", "STATUS"], &rows, |_, c| c.to_owned());
        assert_eq!(
            text,
            "SERVICE     URL        STATUS\nLogService  http://a   passing\nPortal      http://bb  critical"
        );
    }
}
