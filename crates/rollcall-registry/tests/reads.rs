//! `GET /services` in process: pages return every instance exactly once
//! while registrations go on, the shared answer cache never serves an
//! answer older than the catalog, and a blocking read answers on the next
//! change or when its wait is over.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rollcall_registry::{Registry, RegistryConfig};
use rollcall_testkit::router::call;
use tokio_util::sync::CancellationToken;

fn router() -> (axum::Router, Registry, CancellationToken) {
    rollcall_testkit::router::registry(RegistryConfig::for_tests())
}

fn registration(name: &str, url: &str) -> String {
    format!(r#"{{"ServiceName":"{name}","ServiceURL":"{url}"}}"#)
}

async fn register(router: &axum::Router, name: &str, url: &str) {
    let answer = call(router, "POST", "/services", registration(name, url)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

fn urls(answer: &rollcall_testkit::router::Answer) -> Vec<String> {
    answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ServiceURL"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pages_return_every_instance_exactly_once_while_registrations_go_on() {
    let (router, _registry, _stop) = router();
    let mut before = Vec::new();
    for name in ["Alpha", "Beta", "Gamma", "Delta"] {
        for i in 0..40 {
            let url = format!("http://127.0.0.1:9/{name}/{i:03}");
            register(&router, name, &url).await;
            before.push(url);
        }
    }
    // Registrations keep arriving (new names and new URLs among the old)
    // while the catalog is read a page at a time.
    let writer = {
        let router = router.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let name = ["Alpha", "Beta", "Epsilon", "Aardvark"][i % 4];
                register(&router, name, &format!("http://127.0.0.1:9/{name}/new{i}")).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let answer = call(
            &router,
            "GET",
            &format!("/services?limit=7&cursor={cursor}"),
            "",
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let page = urls(&answer);
        assert!(page.len() <= 7);
        for url in page {
            *seen.entry(url).or_default() += 1;
        }
        pages += 1;
        match answer.header("x-rollcall-next-cursor") {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(pages > 20, "{pages} pages");
    for url in &before {
        assert_eq!(seen.get(url), Some(&1), "{url} on one page");
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "on two pages: {twice:?}");
    // A page of one service, and bad pages.
    let answer = call(&router, "GET", "/services?service=Gamma&limit=50", "").await;
    assert_eq!(urls(&answer).len(), 40);
    assert!(answer.header("x-rollcall-next-cursor").is_none());
    for bad in [
        "limit=0",
        "limit=10001",
        "cursor=nonsense",
        "wait=forever&index=1",
    ] {
        let answer = call(&router, "GET", &format!("/services?{bad}"), "").await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert_eq!(answer.error_code(), "invalid_query", "{bad}");
    }
}

#[tokio::test]
async fn answers_the_catalog_moved_past_are_dropped() {
    let (router, registry, _stop) = router();
    register(&router, "Kept", "http://127.0.0.1:9/kept/1").await;
    for query in ["/services?service=Kept", "/services"] {
        assert_eq!(call(&router, "GET", query, "").await.status, 200);
    }
    let (count, bytes) = registry.cached_answers();
    assert_eq!(count, 2);
    assert!(bytes > 0);
    // Nothing changed: the ticker's sweep keeps them.
    registry.forget_stale_reads();
    assert_eq!(registry.cached_answers().0, 2);
    // A change: the sweep drops both (neither can be served again).
    register(&router, "Kept", "http://127.0.0.1:9/kept/2").await;
    registry.forget_stale_reads();
    assert_eq!(registry.cached_answers(), (0, 0));
    // A newer answer cached drops the older ones with it.
    for query in ["/services?service=Kept", "/services"] {
        call(&router, "GET", query, "").await;
    }
    register(&router, "Kept", "http://127.0.0.1:9/kept/3").await;
    let answer = call(&router, "GET", "/services?service=Kept", "").await;
    assert_eq!(urls(&answer).len(), 3);
    assert_eq!(registry.cached_answers().0, 1);
}

/// Reads answered from the cache so far.
async fn cache_hits(router: &axum::Router) -> f64 {
    let metrics = call(router, "GET", "/metrics", "").await.body;
    metrics
        .lines()
        .find(|l| l.starts_with("rollcall_registry_read_cache_hits"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_cache_never_serves_an_answer_older_than_the_catalog() {
    let (router, registry, _stop) = router();
    let url = |i: i64| format!("http://127.0.0.1:9/cached/{i}");
    // The writer registers i, then deregisters i - 3, saying after each
    // answer how far it got.
    let registered = Arc::new(AtomicI64::new(-1));
    let deregistered = Arc::new(AtomicI64::new(-1));
    let writer = {
        let (router, registered, deregistered) =
            (router.clone(), registered.clone(), deregistered.clone());
        tokio::spawn(async move {
            for i in 0..300 {
                register(&router, "Cached", &url(i)).await;
                registered.store(i, Ordering::SeqCst);
                if i >= 3 {
                    let answer = call(&router, "DELETE", "/services", url(i - 3)).await;
                    assert_eq!(answer.status, 200);
                    deregistered.store(i - 3, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        // What was acknowledged before the read began must show in it.
        let (r, d) = (
            registered.load(Ordering::SeqCst),
            deregistered.load(Ordering::SeqCst),
        );
        let answer = call(&router, "GET", "/services?service=Cached", "").await;
        let held = urls(&answer);
        if r >= 0 {
            let gone_since = deregistered.load(Ordering::SeqCst) >= r;
            assert!(
                held.contains(&url(r)) || gone_since,
                "read after {} was acknowledged, without it: {held:?}",
                url(r)
            );
        }
        if d >= 0 {
            assert!(
                !held.contains(&url(d)),
                "read after {} was deregistered, with it",
                url(d)
            );
        }
        reads += 1;
    }
    writer.await.unwrap();
    let hits = cache_hits(&router).await;
    assert!(reads > 100, "{reads} reads");
    assert!(hits > 0.0, "the cache answered none of {reads} reads");
    // And once nothing changes, readers share one answer.
    let before = hits;
    for _ in 0..10 {
        call(&router, "GET", "/services?service=Cached", "").await;
    }
    let after = cache_hits(&router).await;
    assert!(after - before >= 9.0, "{before} → {after}");
    assert_eq!(registry.read(|c| c.len()), 3);
}

#[tokio::test]
async fn a_blocking_read_answers_on_the_next_change_or_when_its_wait_is_over() {
    let (router, _registry, _stop) = router();
    register(&router, "Blocking", "http://127.0.0.1:9/b/0").await;
    let first = call(&router, "GET", "/services", "").await;
    let index: u64 = first
        .header("x-rollcall-revision")
        .unwrap()
        .parse()
        .unwrap();

    // Nothing changes: it answers when the wait is over, at the same
    // revision.
    let started = Instant::now();
    let answer = call(
        &router,
        "GET",
        &format!("/services?index={index}&wait=300ms"),
        "",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        answer.header("x-rollcall-revision"),
        Some(index.to_string().as_str())
    );

    // A change: it answers with it, long before the wait is over.
    let writer = {
        let router = router.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            register(&router, "Blocking", "http://127.0.0.1:9/b/1").await;
        })
    };
    let started = Instant::now();
    let answer = call(
        &router,
        "GET",
        &format!("/services?index={index}&wait=30s"),
        "",
    )
    .await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let revision: u64 = answer
        .header("x-rollcall-revision")
        .unwrap()
        .parse()
        .unwrap();
    assert!(revision > index);
    assert!(urls(&answer).contains(&"http://127.0.0.1:9/b/1".to_owned()));
    writer.await.unwrap();

    // An index this registry has not reached (from elsewhere) answers at
    // once.
    let started = Instant::now();
    let answer = call(&router, "GET", "/services?index=999999&wait=30s", "").await;
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_dashboard_stays_small_however_large_the_catalog() {
    let mut config = RegistryConfig::for_tests();
    config.max_instances = 100_000;
    let (router, _registry, _stop) = rollcall_testkit::router::registry(config);
    // One large service, and many small ones.
    for i in 0..4_000 {
        register(
            &router,
            "Large",
            &format!("http://127.0.0.1:9/large/{i:05}"),
        )
        .await;
    }
    for s in 0..300 {
        for i in 0..10 {
            register(
                &router,
                &format!("Small{s:03}"),
                &format!("http://127.0.0.1:9/s{s}/{i}"),
            )
            .await;
        }
    }
    let page = call(&router, "GET", "/", "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.len() < 200 * 1024, "{} bytes", page.body.len());
    assert!(
        page.body
            .contains("… and 3997 more: <a href=\"/dashboard/service/Large\">"),
        "the large service's rest is on its own page"
    );
    assert!(page.body.contains("more services: search to narrow"));
    assert!(page.body.contains("301 services: too many to draw"));
    // The service's own page, a page at a time.
    let first = call(&router, "GET", "/dashboard/service/Large", "").await;
    assert_eq!(first.status, 200);
    assert!(
        first.body.contains("(4000; page 1 of 20)"),
        "{}",
        &first.body[..400]
    );
    assert!(first.body.len() < 200 * 1024, "{} bytes", first.body.len());
    assert!(first.body.contains("/large/00199\"") && !first.body.contains("/large/00200\""));
    let last = call(&router, "GET", "/dashboard/service/Large?page=20", "").await;
    assert!(last.body.contains("/large/03999\"") && !last.body.contains("/large/03799\""));
    // A search still finds what is not shown.
    let found = call(&router, "GET", "/?q=Small299", "").await;
    assert!(found.body.contains("http://127.0.0.1:9/s299/9"));
}

// Two workers: the writer registers while a read is between its chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_is_one_moment_of_the_catalog_while_registrations_go_on() {
    // More than a chunk in the middle, so a full read takes the lock at
    // least twice. The writer then registers pairs, in order: `a/i`, which
    // sorts into the first chunk, then `z/i`, which sorts into the last. A
    // read made of chunks from different moments would hold `z/i` without
    // `a/i` (the first chunk read before `a/i` came, the last after `z/i`).
    let (router, _registry, _stop) = router();
    let middle = rollcall_registry::shell::CHUNK * 3 / 2;
    let url = |part: &str, i: usize| format!("http://127.0.0.1:9/{part}/{i:08}");
    for i in 0..middle {
        register(&router, "S", &url("m", i)).await;
    }
    let pairs = 1_500;
    let writer = {
        let router = router.clone();
        tokio::spawn(async move {
            for i in 0..pairs {
                register(&router, "S", &url("a", i)).await;
                register(&router, "S", &url("z", i)).await;
            }
        })
    };
    let mut during = 0;
    while !writer.is_finished() {
        let answer = call(&router, "GET", "/services", "").await;
        assert_eq!(answer.status, 200);
        let all = urls(&answer);
        let of = |part: &str| -> Vec<usize> {
            let prefix = format!("http://127.0.0.1:9/{part}/");
            all.iter()
                .filter_map(|u| u.strip_prefix(&prefix))
                .map(|i| i.parse().unwrap())
                .collect()
        };
        let (a, z) = (of("a"), of("z"));
        assert_eq!(a, (0..a.len()).collect::<Vec<_>>(), "a/… in order");
        assert_eq!(z, (0..z.len()).collect::<Vec<_>>(), "z/… in order");
        assert!(
            a.len() == z.len() || a.len() == z.len() + 1,
            "one moment: {} a/… and {} z/…",
            a.len(),
            z.len()
        );
        if !a.is_empty() && a.len() < pairs {
            during += 1;
        }
    }
    writer.await.unwrap();
    assert!(during > 0, "some reads overlapped the registrations");
}
