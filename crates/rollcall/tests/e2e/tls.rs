//! TLS on every hop, with a CA made at run time: a classic registration, its
//! heartbeats and patches, SDK services finding each other, a portal page and
//! the command line, all over `https`; a client trusting another CA is
//! refused; the token still guards writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rollcall_testkit::tls::TestCa;

use crate::common::*;

const TOKEN: &str = "tls-test-token-0123456789";

/// `GET url` as JSON through `client`, if it answers.
async fn json_via(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    fetch(client, url).await?.json().await.ok()
}

/// Starts `rollcall SUBCOMMAND` over TLS, registering with `registry`.
async fn service_over_tls(
    subcommand: &str,
    registry: &str,
    ca: &TestCa,
    data_dir: Option<&std::path::Path>,
) -> ChildProcess {
    let mut args: Vec<String> = [subcommand, "--addr", "127.0.0.1:0", "--registry", registry]
        .map(str::to_owned)
        .to_vec();
    if let Some(dir) = data_dir {
        args.extend(["--data-dir".to_owned(), dir.to_string_lossy().into_owned()]);
    }
    args.extend(ca.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ChildProcess::start(&rollcall_bin(), &args, &[("ROLLCALL_TOKEN", TOKEN)]).await
}

#[tokio::test]
async fn every_hop_runs_over_tls_and_a_client_trusting_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"), "rollcall");
    let stranger = TestCa::new(&dir.path().join("other"), "stranger");
    let mut args: Vec<String> = FAST_CHECKS.iter().map(|s| (*s).to_owned()).collect();
    args.extend(ca.flags());
    args.extend(["--token".to_owned(), TOKEN.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reg = registry(&args).await;
    assert!(reg.url.starts_with("https://"), "{}", reg.url);
    let client = ca.client();

    // A classic registration over TLS, for a classic service that serves
    // TLS itself: refused without the token, taken with it.
    let fake = FakeService::start_tls(ca.acceptor()).await;
    let registration = fake.registration("Classic", &["GradingService"]);
    let anonymous = client
        .post(format!("{}/services", reg.url))
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "the token still guards writes");
    let taken = client
        .post(format!("{}/services", reg.url))
        .bearer_auth(TOKEN)
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 200, "{:?}", taken.text().await);

    // The registry's heartbeats reach it over TLS: it passes.
    let instance_status = |url: String| {
        let (client, registry) = (client.clone(), reg.url.clone());
        async move {
            let catalog = json_via(&client, &format!("{registry}/services")).await?;
            let entry = catalog
                .as_array()?
                .iter()
                .find(|i| i["ServiceURL"] == url.as_str())?
                .clone();
            Some(entry["Status"].as_str()?.to_owned())
        }
    };
    eventually(
        Duration::from_secs(15),
        "the classic service to pass its checks over TLS",
        || async { (instance_status(fake.url.clone()).await? == "passing").then_some(()) },
    )
    .await;
    assert!(fake.heartbeats() > 0);

    // SDK services over TLS: the grading service and the portal register,
    // the portal is told where grading is, and so is the classic service
    // (a patch over TLS).
    let grades = service_over_tls("grades", &reg.url, &ca, Some(dir.path())).await;
    let portal = service_over_tls("portal", &reg.url, &ca, None).await;
    assert!(grades.url.starts_with("https://") && portal.url.starts_with("https://"));
    wait_providers(
        &fake,
        "GradingService",
        &[&grades.url],
        Duration::from_secs(15),
    )
    .await;

    // A portal page over TLS, rendered from the grading service over TLS.
    let created = client
        .post(format!("{}/students", grades.url))
        .json(&serde_json::json!({"FirstName": "Tlsa", "LastName": "Handshake"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let page = eventually(
        Duration::from_secs(15),
        "the portal to show the student",
        || async {
            let page = fetch(&client, &format!("{}/students", portal.url)).await?;
            let text = page.text().await.ok()?;
            text.contains("Handshake").then_some(text)
        },
    )
    .await;
    assert!(page.contains("Tlsa"));

    // An SDK service configured only through the environment (the same
    // variables the command line reads) serves and calls over TLS too.
    let (cert, key, ca_file) = (ca.cert_file(), ca.key_file(), ca.ca_file());
    let hello = ChildProcess::start(
        &example_bin("hello"),
        &["--name", "Hello", "--registry", &reg.url],
        &[
            ("ROLLCALL_TLS_CERT", cert.to_str().unwrap()),
            ("ROLLCALL_TLS_KEY", key.to_str().unwrap()),
            ("ROLLCALL_CA_FILE", ca_file.to_str().unwrap()),
            ("ROLLCALL_TOKEN", TOKEN),
        ],
    )
    .await;
    assert!(hello.url.starts_with("https://"), "{}", hello.url);
    eventually(
        Duration::from_secs(15),
        "the SDK service to pass its checks over TLS",
        || async { (instance_status(hello.url.clone()).await? == "passing").then_some(()) },
    )
    .await;

    // A client trusting another CA, or only the system's roots, is refused.
    let refused = stranger
        .client()
        .get(format!("{}/services", reg.url))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let system_roots = reqwest::Client::new()
        .get(format!("{}/students", portal.url))
        .send()
        .await;
    assert!(system_roots.is_err(), "{system_roots:?}");

    // The command line: with the right CA it lists every instance, with
    // another it fails and says why.
    for (trusted, right) in [(ca.ca_file(), true), (stranger.ca_file(), false)] {
        let args = ["ls", "--registry", &reg.url, "--ca-file"];
        let (ok, out, err) =
            run_rollcall(&[&args[..], &[trusted.to_str().unwrap()]].concat()).await;
        assert_eq!(ok, right, "{err}");
        if right {
            for name in ["Classic", "GradingService", "Portal"] {
                assert!(out.contains(name), "{name} missing from:\n{out}");
            }
        } else {
            assert!(err.contains("cannot reach the registry"), "{err}");
            // One clean line that names the cause and the way out, no raw
            // log line of the TLS library.
            assert!(err.contains("--ca-file"), "{err}");
            assert!(!err.contains("ERROR"), "{err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
    }
    // Plain http at a TLS registry: told to use https.
    let plain = reg.url.replacen("https://", "http://", 1);
    let (ok, _, err) = run_rollcall(&["ls", "--registry", &plain]).await;
    assert!(!ok);
    assert!(err.contains("use https://"), "{err}");
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_the_service_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.to_str().unwrap();
    let data = dir.path().to_str().unwrap();
    for subcommand in ["registry", "grades", "portal", "log"] {
        let mut args = vec![
            subcommand,
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            junk,
            "--tls-key",
            junk,
        ];
        match subcommand {
            "registry" => args.push("--in-memory"),
            "portal" => args.extend(["--registry", ""]),
            _ => args.extend(["--registry", "", "--data-dir", data]),
        }
        let (ok, out, err) = run_rollcall(&args).await;
        assert!(!ok, "{subcommand} started");
        assert!(!out.contains("listening"), "{subcommand}: {out}");
        assert!(err.contains("no PEM certificate"), "{subcommand}: {err}");
    }
}

#[tokio::test]
async fn up_runs_the_whole_system_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "up");
    let flags = ca.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let up = Up::start(&flags).await;
    for name in ["registry", "log", "grades", "portal"] {
        assert!(
            up.url(name).starts_with("https://"),
            "{name}: {}",
            up.url(name)
        );
    }
    let client = ca.client();
    let registry = up.url("registry").to_owned();
    eventually(
        Duration::from_secs(30),
        "every service passing over TLS",
        || async {
            let catalog = json_via(&client, &format!("{registry}/services")).await?;
            let passing = catalog
                .as_array()?
                .iter()
                .filter(|i| {
                    i["Status"] == "passing"
                        && i["ServiceURL"]
                            .as_str()
                            .is_some_and(|u| u.starts_with("https://"))
                })
                .count();
            (passing == 3).then_some(())
        },
    )
    .await;
    let page = client
        .get(format!("{}/students", up.url("portal")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Zhang San"));
    // The log service collects the others' logs over TLS.
    let log = up.url("log").to_owned();
    eventually(
        Duration::from_secs(30),
        "the grading service's logs to arrive",
        || async {
            let records =
                json_via(&client, &format!("{log}/v1/logs?service=GradingService")).await?;
            (!records.get("records")?.as_array()?.is_empty()).then_some(())
        },
    )
    .await;
}
