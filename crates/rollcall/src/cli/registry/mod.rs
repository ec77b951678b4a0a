//! `rollcall ls`, `rollcall watch`, `rollcall deregister`: the registry from the
//! command line.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use rollcall_proto::views::{Event, InstanceView};

use super::table::table;
use super::{REQUEST_TIMEOUT, Style, clean, client, error_text, follow, send};

/// Where the registry is (shared by the registry commands).
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArg {
    /// The registry's URL; the replicas of a cluster comma-separated
    /// (`http://a:3000,http://b:3000`): a command goes to the next one
    /// when one cannot be reached or answers 5xx.
    #[arg(
        long,
        env = "ROLLCALL_REGISTRY",
        default_value = "http://127.0.0.1:3000",
        value_parser = rollcall_sdk::args::RegistryUrl::parse
    )]
    pub registry: rollcall_sdk::args::RegistryUrl,
    #[command(flatten)]
    pub trust: rollcall_http::tls::CaFile,
}

impl RegistryArg {
    /// The replicas' base URLs, in the order they are tried.
    pub fn bases(&self) -> Vec<String> {
        self.registry
            .urls()
            .iter()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .collect()
    }

    /// Sends the request `build` makes for each replica's base URL in turn
    /// until one answers: a replica that cannot be reached, or answers 5xx
    /// (shutting down, or cut off from etcd), hands it to the next; a 4xx
    /// is the answer. Every request the commands send is safe to repeat.
    pub async fn send_any(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let bases = self.bases();
        let Some(last) = bases.len().checked_sub(1) else {
            bail!("no registry URL given (--registry / ROLLCALL_REGISTRY)");
        };
        let mut failures = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let name = format!("the registry at {base}");
            match build(base).send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status().is_server_error() && i < last => {
                    failures.push(format!("{name}: {}", error_text(response).await));
                }
                Ok(response) => bail!("{name} refused: {}", super::refusal(response).await),
                Err(e) => failures.push(format!("cannot reach {name}: {}", super::explain(&e))),
            }
        }
        bail!("{}", failures.join("; "))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub registry: RegistryArg,
    /// Only instances of this service: its name ignoring case, else every
    /// service whose name contains it (said on stderr).
    #[arg(long, short)]
    pub service: Option<String>,
    /// Only instances whose metadata holds this pair (`version=2`, as the SDK's
    /// `--meta` sets it; `version:2` is read the same).
    #[arg(long, value_name = "KEY=VALUE")]
    pub meta: Option<String>,
    /// Print the catalog as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub registry: RegistryArg,
    /// Only changes of this service: its name ignoring case, else the one
    /// service whose name contains it.
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

/// Says on stderr when an answer comes from a replica that lost etcd
/// (`X-Rollcall-Stale: true`): what it shows may be behind.
fn warn_if_stale(response: &reqwest::Response) {
    let stale = response
        .headers()
        .get("x-rollcall-stale")
        .is_some_and(|v| v.as_bytes() == b"true");
    if stale {
        errln!(
            "warning: {} has lost contact with etcd: this may be behind the cluster (X-Rollcall-Stale)",
            clean(response.url().origin().ascii_serialization().as_str())
        );
    }
}

/// "3.2s ago".
fn ago(then: rollcall_proto::Timestamp) -> String {
    rollcall_proto::time::format_ago(rollcall_proto::Timestamp::system_now().since(then))
}

/// How a service filter picked its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    /// Names equal to the filter, ignoring case.
    Exact(std::collections::BTreeSet<String>),
    /// No name equals it: names that contain it, ignoring case.
    Partial(std::collections::BTreeSet<String>),
    None,
}

/// The one rule for a service filter on the command line, as the
/// dashboard's search: a name equal to it ignoring case; else the names that
/// contain it, ignoring case (and the caller says so).
pub fn pick_services<'a>(names: impl IntoIterator<Item = &'a str>, wanted: &str) -> Picked {
    let wanted = wanted.to_lowercase();
    let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
    let exact: std::collections::BTreeSet<String> = names
        .iter()
        .filter(|n| n.to_lowercase() == wanted)
        .map(|n| (*n).to_owned())
        .collect();
    if !exact.is_empty() {
        return Picked::Exact(exact);
    }
    let partial: std::collections::BTreeSet<String> = names
        .iter()
        .filter(|n| n.to_lowercase().contains(&wanted))
        .map(|n| (*n).to_owned())
        .collect();
    if partial.is_empty() {
        Picked::None
    } else {
        Picked::Partial(partial)
    }
}

/// `GET /services` from `base`, of one service and with one metadata pair
/// (`key=value`) if given.
fn catalog_request(
    client: &reqwest::Client,
    base: &str,
    service: Option<&str>,
    meta: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = client
        .get(format!("{base}/services"))
        .timeout(REQUEST_TIMEOUT);
    if let Some(service) = service {
        request = request.query(&[("service", service)]);
    }
    if let Some(meta) = meta {
        request = request.query(&[("meta", meta)]);
    }
    request
}

/// `rollcall ls`.
pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    let meta = args.meta.as_deref();
    let response = args
        .registry
        .send_any(|base| catalog_request(&client, base, None, meta))
        .await?;
    warn_if_stale(&response);
    let mut instances: Vec<InstanceView> = super::read_json(response)
        .await
        .context("the registry sent a bad catalog")?;
    let all = instances.len();
    if let Some(wanted) = args.service.as_deref() {
        let picked = match pick_services(instances.iter().map(|i| i.name.as_str()), wanted) {
            Picked::Exact(names) => names,
            Picked::Partial(names) => {
                errln!(
                    "rollcall ls: no service is named `{}`; showing those whose names contain it: {}",
                    clean(wanted),
                    clean(&names.iter().cloned().collect::<Vec<_>>().join(", "))
                );
                names
            }
            Picked::None => std::collections::BTreeSet::new(),
        };
        instances.retain(|i| picked.contains(i.name.as_str()));
        if instances.is_empty() {
            errln!(
                "rollcall ls: no service's name is or contains `{}` ({all} instance(s) of other services are registered)",
                clean(wanted)
            );
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&instances)?);
        return Ok(());
    }
    if instances.is_empty() {
        if args.service.is_none() {
            match meta {
                Some(meta) => errln!(
                    "rollcall ls: no instance has the metadata `{}`",
                    clean(meta)
                ),
                None => outln!("no instances are registered"),
            }
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|i| {
            let requires = i
                .required
                .iter()
                .map(|n| clean(n.as_str()))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                clean(i.name.as_str()),
                clean(i.url.as_str()),
                i.status.as_str().to_owned(),
                i.last_check.map_or_else(|| "-".into(), ago),
                i.last_check_latency_ms
                    .map_or_else(|| "-".into(), |ms| format!("{ms:.1}ms")),
                if requires.is_empty() {
                    "-".into()
                } else {
                    requires
                },
                meta_cell(&i.meta),
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
            "META",
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
    outln!("{text}");
    Ok(())
}

/// An instance's metadata as `key=value,…`, without the keys the SDK sets
/// for rollcall itself (`rollcall.…`; `--json` shows them).
fn meta_cell(meta: &rollcall_proto::Meta) -> String {
    let pairs: Vec<String> = meta
        .iter()
        .filter(|(k, _)| !k.starts_with("rollcall."))
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join(",")
    }
}

/// One line `watch` prints: a catalog event as the registry sent it, or a
/// difference it found after reconnecting (`kind` is then the new status).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    pub kind: String,
    pub service: String,
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl From<&Event> for Change {
    fn from(event: &Event) -> Self {
        Self {
            at: event.at.to_rfc3339(),
            revision: Some(event.revision),
            kind: event.kind.as_str().to_owned(),
            service: event.service.to_string(),
            url: event.url.to_string(),
            detail: event.detail.clone().unwrap_or_default(),
        }
    }
}

/// One change, for people. An instance coming back (registered again,
/// maintenance off) says it is back in discovery, in green like `recovered`.
pub fn format_change(change: &Change, style: Style) -> String {
    let kind = clean(&change.kind);
    let painted = match kind.as_str() {
        "registered" | "reregistered" | "recovered" | "maintenance_off" | "resynced" => {
            style.paint("32", &format!("{kind:<15}"))
        }
        "critical" | "expired" | "delivery_failed" => style.paint("31;1", &format!("{kind:<15}")),
        _ => style.paint("33", &format!("{kind:<15}")),
    };
    let detail = match (change.detail.as_str(), kind.as_str()) {
        ("", "reregistered" | "maintenance_off" | "recovered") => "back in discovery".to_owned(),
        ("", "registered") => "in discovery".to_owned(),
        ("", "maintenance_on") => "out of discovery".to_owned(),
        (detail, _) => clean(detail),
    };
    let mut line = format!(
        "{} {painted} {} {}",
        style.dim(&clean(&change.at)),
        style.paint("1", &clean(&change.service)),
        clean(&change.url)
    );
    if !detail.is_empty() {
        line.push_str(&format!(" ({detail})"));
    }
    line
}

/// What `watch` knows of one instance: its service and status.
type Known = BTreeMap<String, (String, String)>;

/// The catalog (optionally one service's instances) at `base` as
/// `url → (service, status)`, with its revision.
async fn current_state(
    client: &reqwest::Client,
    base: &str,
    args: &WatchArgs,
) -> anyhow::Result<(Known, u64)> {
    let request = catalog_request(client, base, args.service.as_deref(), None);
    let response = send(request, &format!("the registry at {base}")).await?;
    warn_if_stale(&response);
    let revision = response
        .headers()
        .get("x-rollcall-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let instances: Vec<InstanceView> = super::read_json(response)
        .await
        .context("the registry sent a bad catalog")?;
    let known = instances
        .into_iter()
        .map(|i| {
            (
                i.url.to_string(),
                (i.name.to_string(), i.status.as_str().to_owned()),
            )
        })
        .collect();
    Ok((known, revision))
}

/// The differences between two states, as changes `watch` prints.
fn differences(before: &Known, after: &Known, now: &str) -> Vec<Change> {
    let change = |kind: &str, url: &str, service: &str, detail: &str| Change {
        at: now.to_owned(),
        revision: None,
        kind: kind.to_owned(),
        service: service.to_owned(),
        url: url.to_owned(),
        detail: detail.to_owned(),
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

/// The one service `wanted` names by the command line's rule
/// ([`pick_services`]), asked of the registry; a name no service has yet is
/// watched as given.
async fn resolve_service(
    client: &reqwest::Client,
    registry: &RegistryArg,
    wanted: &str,
) -> anyhow::Result<String> {
    let response = registry
        .send_any(|base| catalog_request(client, base, None, None))
        .await?;
    let instances: Vec<InstanceView> = super::read_json(response)
        .await
        .context("the registry sent a bad catalog")?;
    let names = instances.iter().map(|i| i.name.as_str());
    let list = |names: &std::collections::BTreeSet<String>| {
        clean(&names.iter().cloned().collect::<Vec<_>>().join(", "))
    };
    match pick_services(names, wanted) {
        Picked::Exact(names) | Picked::Partial(names) if names.len() == 1 => {
            let name = names.into_iter().next().unwrap_or_default();
            if name != wanted {
                errln!(
                    "rollcall watch: watching {} (for `{}`)",
                    clean(&name),
                    clean(wanted)
                );
            }
            Ok(name)
        }
        Picked::Exact(names) | Picked::Partial(names) => bail!(
            "`{}` matches several services: {}; name one of them",
            clean(wanted),
            list(&names)
        ),
        Picked::None => {
            errln!(
                "rollcall watch: no service is or contains `{}` yet; watching for one named exactly that",
                clean(wanted)
            );
            Ok(wanted.to_owned())
        }
    }
}

/// Applies one change event to what `watch` knows.
fn absorb(known: &mut Known, change: &Change) {
    let url = change.url.clone();
    let status = match change.kind.as_str() {
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
    known.insert(url, (change.service.clone(), status.to_owned()));
}

/// `rollcall watch`: the current state, then every change; across a restart
/// of the registry it reconnects and prints what changed meanwhile. Given
/// several replicas, it starts at the first that answers and moves to the
/// next whenever its stream breaks.
pub async fn watch(mut args: WatchArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    if let Some(wanted) = args.service.clone() {
        args.service = Some(resolve_service(&client, &args.registry, &wanted).await?);
    }
    let bases = args.registry.bases();
    let name = args.registry.registry.to_string();
    let style = Style::for_stdout();
    let print = |change: &Change| {
        if args.json {
            outln!("{}", serde_json::to_string(change).unwrap_or_default());
        } else {
            outln!("{}", format_change(change, style));
        }
    };
    let mut first = Err(anyhow::anyhow!("no registry URL given"));
    let mut at = 0;
    for (i, base) in bases.iter().enumerate() {
        first = current_state(&client, base, &args).await;
        if first.is_ok() {
            at = i;
            break;
        }
    }
    let (known, revision) = first?;
    if args.json {
        for (url, (service, status)) in &known {
            outln!(
                "{}",
                serde_json::json!({"kind": "current", "service": service, "url": url, "status": status})
            );
        }
    } else {
        errln!(
            "watching {} (revision {revision}); {} instance(s) now:",
            bases[at],
            known.len()
        );
        for (url, (service, status)) in &known {
            let status = match status.as_str() {
                "passing" => style.paint("32", status),
                "critical" => style.paint("31;1", status),
                other => style.paint("33", other),
            };
            outln!(
                "  {} {} {status}",
                style.paint("1", &clean(service)),
                clean(url)
            );
        }
    }
    let known = std::cell::RefCell::new(known);
    let open = |attempt: u32| {
        let client = client.clone();
        let args = args.clone();
        let known = &known;
        let print = &print;
        // A broken stream moves on to the next replica.
        let base = bases[(at + attempt as usize) % bases.len()].clone();
        let several = bases.len() > 1;
        async move {
            let mut request = client.get(format!("{base}/v1/watch"));
            if let Some(service) = &args.service {
                request = request.query(&[("service", service)]);
            }
            let response = send(request, &format!("the registry at {base}")).await?;
            if attempt > 0 {
                // Subscribed first, so nothing falls between the two.
                let (now, _) = current_state(&client, &base, &args).await?;
                let at = rollcall_proto::Timestamp::system_now().to_rfc3339();
                let changes = differences(&known.borrow(), &now, &at);
                *known.borrow_mut() = now;
                for change in &changes {
                    print(change);
                }
            }
            if attempt > 0 && several {
                errln!("following {base}");
            }
            Ok(response)
        }
    };
    follow(&format!("the registry at {name}"), open, |event| {
        if event.event.as_str() == "change"
            && let Ok(event) = serde_json::from_str::<Event>(&event.data)
        {
            let change = Change::from(&event);
            absorb(&mut known.borrow_mut(), &change);
            print(&change);
        } else if event.event == "lagged" {
            errln!("rollcall watch: fell behind; some changes were skipped");
        }
    })
    .await
}

/// `rollcall deregister`.
pub async fn deregister(args: DeregisterArgs) -> anyhow::Result<()> {
    let client = client(&args.registry.trust)?;
    let response = args
        .registry
        .send_any(|base| {
            client
                .delete(format!("{base}/services"))
                .body(args.url.clone())
                .timeout(REQUEST_TIMEOUT)
        })
        .await?;
    let live = super::read_json::<rollcall_proto::views::Deregistered>(response)
        .await
        .is_ok_and(|answer| answer.live);
    outln!("deregistered {}", clean(args.url.trim()));
    if live {
        errln!(
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
    let body = serde_json::json!({"ServiceURL": args.url.trim(), "Enable": enable});
    args.registry
        .send_any(|base| {
            client
                .put(format!("{base}/v1/maintenance"))
                .json(&body)
                .timeout(REQUEST_TIMEOUT)
        })
        .await?;
    if enable {
        outln!(
            "{}: maintenance on — out of discovery (dependents were told), still registered",
            clean(args.url.trim())
        );
    } else {
        outln!(
            "{}: maintenance off — back in discovery while it passes its checks",
            clean(args.url.trim())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
