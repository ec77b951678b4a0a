//! Headless Chromium for browser tests, driven through Debian's chromedriver.
//!
//! A missing browser is a failure, never a skip: `./scripts/test.sh` installs
//! `chromium` and `chromium-driver` before running the tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

/// A browser session and the chromedriver behind it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn find(program: &str, fallback: &str) -> String {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.exists())
    });
    match on_path {
        Some(p) => p.to_string_lossy().into_owned(),
        None if std::path::Path::new(fallback).exists() => fallback.to_owned(),
        None => panic!(
            "{program} is not installed. The browser tests need Debian's chromium and chromium-driver: \
             run ./scripts/test.sh (it installs them), or apt-get install chromium chromium-driver"
        ),
    }
}

/// Starts chromedriver on a free port and waits for it to answer. A port
/// chosen here can be taken before chromedriver binds it (it then exits):
/// another port is tried, three in all.
async fn start_driver(driver_path: &str) -> (Child, String) {
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        if rollcall_testkit::child::wait_answering(&mut driver, &status, Duration::from_secs(20))
            .await
        {
            return (driver, url);
        }
        let _ = driver.kill();
        let _ = driver.wait();
    }
    panic!("chromedriver did not start three times running");
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_path = find("chromedriver", "/usr/bin/chromedriver");
        let chromium = find("chromium", "/usr/bin/chromium");
        let (driver, url) = start_driver(&driver_path).await;
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-quic", "--no-first-run", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let client = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"));
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Saves a screenshot of the page to `docs/screenshots/{name}` when
    /// `ROLLCALL_SCREENSHOTS` is set (so a test run leaves the tree as it was;
    /// refresh them when a page changes). Taken either way, so it cannot fail
    /// only when asked for.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        if std::env::var_os("ROLLCALL_SCREENSHOTS").is_none() {
            return;
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// Clicks what `locator` finds.
    pub async fn click(&self, locator: Locator<'_>) {
        self.client
            .find(locator)
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Waits (up to 20 s) until `locator` finds something.
    pub async fn wait_for(&self, locator: Locator<'_>) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(locator)
            .await
            .unwrap()
    }

    /// The text of what the CSS selector finds.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
