//! `rollcall ls`, `rollcall deregister`, `rollcall maint`: the registry from
//! the command line, and what the registry commands share (`--registry`, the
//! service-filter rule, the catalog request, the staleness warning). `watch`
//! is `cli/watch.rs`.

use anyhow::{Context as _, bail};
use rollcall_proto::views::InstanceView;

use super::table::table;
use super::{REQUEST_TIMEOUT, Style, clean, clean_json, client, error_text};

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
pub(super) fn warn_if_stale(response: &reqwest::Response) {
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
pub(super) fn catalog_request(
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
        outln!("{}", clean_json(&serde_json::to_string_pretty(&instances)?));
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
