//! `rollcall watch`: the current instances, then every change as it
//! happens; across a restart of the registry (or a move to another replica)
//! it prints what changed while it was away.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use rollcall_proto::views::{Event, InstanceView};

use super::registry::{Picked, RegistryArg, catalog_request, pick_services, warn_if_stale};
use super::{Style, clean, client, follow, send};

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
            outln!(
                "{}",
                super::clean_json(&serde_json::to_string(change).unwrap_or_default())
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(entries: &[(&str, &str, &str)]) -> Known {
        entries
            .iter()
            .map(|(u, n, s)| ((*u).to_owned(), ((*n).to_owned(), (*s).to_owned())))
            .collect()
    }

    #[test]
    fn a_reconnected_watch_prints_what_changed_meanwhile() {
        let before = state(&[("http://a", "A", "passing"), ("http://b", "B", "passing")]);
        let after = state(&[
            ("http://a", "A", "critical"),
            ("http://c", "C", "unchecked"),
        ]);
        let changes = differences(&before, &after, "now");
        let kinds: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.kind.as_str(), c.url.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("critical", "http://a"),
                ("registered", "http://c"),
                ("deregistered", "http://b")
            ]
        );
        let mut known = before;
        let expired = Change {
            kind: "expired".into(),
            ..change("http://a")
        };
        absorb(&mut known, &expired);
        assert!(!known.contains_key("http://a"));
    }

    fn change(url: &str) -> Change {
        Change {
            at: "t".into(),
            revision: None,
            kind: String::new(),
            service: "A".into(),
            url: url.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn an_instance_coming_back_says_it_is_back_in_discovery() {
        let plain = Style { on: false };
        for kind in ["reregistered", "maintenance_off", "recovered"] {
            let line = format_change(
                &Change {
                    kind: kind.into(),
                    ..change("http://a")
                },
                plain,
            );
            assert!(line.ends_with("(back in discovery)"), "{line}");
        }
        let critical = Change {
            kind: "critical".into(),
            detail: "HTTP 500".into(),
            ..change("http://a")
        };
        assert!(format_change(&critical, plain).ends_with("(HTTP 500)"));
    }
}
