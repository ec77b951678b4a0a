//! The providers table: who provides each service this one requires.
//!
//! Filled and kept current by the registry's patches (never configured by
//! hand). [`Providers::pick`] spreads calls round-robin over a name's
//! providers, skipping ones a caller recently reported as failing (unless they
//! are all failing: then the one that failed longest ago is tried).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rollcall_proto::{Patch, PatchEntry, ServiceName, ServiceUrl};
use tokio::sync::watch;

/// How long a provider reported as failing is skipped by default.
pub const FAILURE_COOL_DOWN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Provider {
    url: ServiceUrl,
    failed_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Table {
    by_name: HashMap<ServiceName, Vec<Provider>>,
    cursors: HashMap<ServiceName, usize>,
}

/// The providers of the names a service requires.
#[derive(Debug)]
pub struct Providers {
    required: Vec<ServiceName>,
    table: RwLock<Table>,
    version: watch::Sender<u64>,
}

impl Providers {
    pub fn new(required: Vec<ServiceName>) -> Self {
        let (version, _) = watch::channel(0);
        Self {
            required,
            table: RwLock::new(Table::default()),
            version,
        }
    }

    /// The names this service requires.
    pub fn required(&self) -> &[ServiceName] {
        &self.required
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a patch from the registry. A `Resync` patch replaces the table
    /// for every required name; otherwise entries are removed then added
    /// (adding a known provider is a no-op). Entries for names this service
    /// does not require are ignored. Linear in the patch's size.
    pub fn apply(&self, patch: &Patch) {
        let required: HashSet<&ServiceName> = self.required.iter().collect();
        let wanted = |e: &&PatchEntry| required.contains(&e.name);
        {
            let mut table = self.write();
            if patch.resync {
                let keep: HashMap<ServiceName, Vec<Provider>> = std::mem::take(&mut table.by_name);
                let failed: HashMap<(&ServiceName, &ServiceUrl), Option<Instant>> = keep
                    .iter()
                    .flat_map(|(name, list)| {
                        list.iter().map(move |p| ((name, &p.url), p.failed_until))
                    })
                    .collect();
                for name in &self.required {
                    table.by_name.insert(name.clone(), Vec::new());
                }
                let mut seen = HashSet::new();
                for entry in patch.added.iter().filter(wanted) {
                    if !seen.insert((&entry.name, &entry.url)) {
                        continue;
                    }
                    let failed_until = failed.get(&(&entry.name, &entry.url)).copied().flatten();
                    table
                        .by_name
                        .entry(entry.name.clone())
                        .or_default()
                        .push(Provider {
                            url: entry.url.clone(),
                            failed_until,
                        });
                }
            } else {
                let mut removed: HashMap<&ServiceName, HashSet<&ServiceUrl>> = HashMap::new();
                for entry in patch.removed.iter().filter(wanted) {
                    removed.entry(&entry.name).or_default().insert(&entry.url);
                }
                for (name, urls) in removed {
                    if let Some(list) = table.by_name.get_mut(name) {
                        list.retain(|p| !urls.contains(&p.url));
                    }
                }
                let mut known: HashMap<&ServiceName, HashSet<ServiceUrl>> = HashMap::new();
                for entry in patch.added.iter().filter(wanted) {
                    let list = table.by_name.entry(entry.name.clone()).or_default();
                    let urls = known
                        .entry(&entry.name)
                        .or_insert_with(|| list.iter().map(|p| p.url.clone()).collect());
                    if urls.insert(entry.url.clone()) {
                        list.push(Provider {
                            url: entry.url.clone(),
                            failed_until: None,
                        });
                    }
                }
            }
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Every provider of `name`.
    pub fn all(&self, name: &ServiceName) -> Vec<ServiceUrl> {
        self.read()
            .by_name
            .get(name)
            .map(|list| list.iter().map(|p| p.url.clone()).collect())
            .unwrap_or_default()
    }

    /// A snapshot of the whole table.
    pub fn snapshot(&self) -> Vec<(ServiceName, Vec<ServiceUrl>)> {
        let table = self.read();
        let mut out: Vec<_> = table
            .by_name
            .iter()
            .map(|(n, list)| (n.clone(), list.iter().map(|p| p.url.clone()).collect()))
            .collect();
        out.sort();
        out
    }

    /// The next provider of `name` to call: round-robin over the ones not
    /// recently reported failing.
    pub fn pick(&self, name: &ServiceName) -> Option<ServiceUrl> {
        let now = Instant::now();
        let mut table = self.write();
        let start = *table.cursors.get(name).unwrap_or(&0);
        let list = table.by_name.get(name)?;
        if list.is_empty() {
            return None;
        }
        let healthy = (0..list.len())
            .map(|i| (start + i) % list.len())
            .find(|i| list[*i].failed_until.is_none_or(|t| t <= now));
        let chosen = match healthy {
            Some(i) => i,
            None => list
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.failed_until)
                .map_or(0, |(i, _)| i),
        };
        let url = list[chosen].url.clone();
        table.cursors.insert(name.clone(), chosen + 1);
        Some(url)
    }

    /// Reports that a call to `url` failed: `pick` skips it for `cool_down`.
    pub fn report_failure(&self, name: &ServiceName, url: &ServiceUrl, cool_down: Duration) {
        let mut table = self.write();
        if let Some(p) = table
            .by_name
            .get_mut(name)
            .and_then(|list| list.iter_mut().find(|p| &p.url == url))
        {
            p.failed_until = Some(Instant::now() + cool_down);
        }
    }

    /// Waits until `name` has a provider, at most `timeout`.
    pub async fn wait_for(&self, name: &ServiceName, timeout: Duration) -> Option<ServiceUrl> {
        let mut changes = self.version.subscribe();
        let wait = async {
            loop {
                if let Some(url) = self.pick(name) {
                    return url;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Subscribes to changes of the table (the value counts patches applied).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_for_names_not_required_are_ignored_and_duplicates_kept_once() {
        let p = Providers::new(vec!["Log".parse().unwrap()]);
        let entry = |name: &str, port: u16| {
            PatchEntry::new(
                name.parse().unwrap(),
                ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            )
        };
        let mut added: Vec<PatchEntry> = (0..50_000)
            .map(|i| entry("Log", 1 + (i % 3) as u16))
            .collect();
        added.push(entry("Other", 9));
        p.apply(&Patch {
            added,
            removed: Vec::new(),
            revision: None,
            resync: true,
        });
        assert_eq!(p.all(&"Log".parse().unwrap()).len(), 3);
        assert!(
            p.all(&"Other".parse().unwrap()).is_empty(),
            "not required: ignored"
        );
    }

    use super::*;
    use rollcall_proto::PatchEntry;

    fn name(n: &str) -> ServiceName {
        ServiceName::parse(n).unwrap()
    }

    fn url(p: u16) -> ServiceUrl {
        ServiceUrl::parse(&format!("http://127.0.0.1:{p}")).unwrap()
    }

    fn added(entries: &[(&str, u16)], resync: bool) -> Patch {
        Patch {
            added: entries
                .iter()
                .map(|(n, p)| PatchEntry::new(name(n), url(*p)))
                .collect(),
            removed: vec![],
            revision: None,
            resync,
        }
    }

    #[test]
    fn patches_add_remove_and_resync_replaces() {
        let p = Providers::new(vec![name("Log")]);
        p.apply(&added(&[("Log", 1), ("Log", 2), ("Log", 1)], false));
        assert_eq!(p.all(&name("Log")), vec![url(1), url(2)]);
        p.apply(&Patch {
            removed: vec![PatchEntry::new(name("Log"), url(1))],
            ..Patch::default()
        });
        assert_eq!(p.all(&name("Log")), vec![url(2)]);
        p.apply(&added(&[("Log", 3)], true));
        assert_eq!(p.all(&name("Log")), vec![url(3)]);
        p.apply(&added(&[], true));
        assert!(p.all(&name("Log")).is_empty());
    }

    #[test]
    fn pick_round_robins_and_skips_failed_providers() {
        let p = Providers::new(vec![name("G")]);
        p.apply(&added(&[("G", 1), ("G", 2)], false));
        let picks: Vec<_> = (0..4).map(|_| p.pick(&name("G")).unwrap()).collect();
        assert_eq!(picks, vec![url(1), url(2), url(1), url(2)]);
        p.report_failure(&name("G"), &url(1), Duration::from_secs(60));
        assert!((0..4).all(|_| p.pick(&name("G")).unwrap() == url(2)));
        // All failing: still pick one rather than nothing.
        p.report_failure(&name("G"), &url(2), Duration::from_secs(60));
        assert!(p.pick(&name("G")).is_some());
        assert!(p.pick(&name("Other")).is_none());
    }

    #[tokio::test]
    async fn wait_for_returns_when_a_provider_arrives() {
        let p = std::sync::Arc::new(Providers::new(vec![name("G")]));
        assert!(
            p.wait_for(&name("G"), Duration::from_millis(20))
                .await
                .is_none()
        );
        let p2 = p.clone();
        let waiter =
            tokio::spawn(async move { p2.wait_for(&name("G"), Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        p.apply(&added(&[("G", 7)], false));
        assert_eq!(waiter.await.unwrap(), Some(url(7)));
    }
}
