//! Real etcd for tests: a cluster of `etcd` processes (Debian's
//! `etcd-server`) on loopback, each with a temp data directory, that a test
//! can SIGKILL, SIGSTOP and restart member by member. A missing `etcd`
//! binary fails the test with the package to install; it never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `etcd` binary on `PATH`; panics naming the package when missing.
pub fn etcd_bin() -> PathBuf {
    crate::bin_on_path("etcd", "etcd-server")
}

/// Free loopback ports, held only while choosing them (etcd must be told
/// every member's ports before any starts).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// One member.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    /// Where clients reach it (`http://127.0.0.1:PORT`).
    pub client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster; every member is killed when it is dropped.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<Member>,
    initial_cluster: String,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until they have elected a leader.
    pub async fn start(size: usize) -> EtcdCluster {
        // A chosen port can be taken before etcd binds it: try again with
        // new ports then.
        for _ in 0..3 {
            let mut cluster = Self::spawn(size);
            if cluster.wait_ready(Duration::from_secs(40)).await {
                return cluster;
            }
            cluster.kill_all();
        }
        panic!("a {size}-member etcd cluster did not start three times running");
    }

    fn spawn(size: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(size * 2);
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", ports[2 * i]),
                peer_url: format!("http://127.0.0.1:{}", ports[2 * i + 1]),
                data_dir: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            _dir: dir,
        };
        for i in 0..size {
            cluster.launch(i);
        }
        cluster
    }

    /// Starts member `i` (again, on its ports and data directory).
    fn launch(&mut self, i: usize) {
        let token = format!("rollcall-test-{}", std::process::id());
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.data_dir.with_extension("log"))
            .unwrap();
        let child = Command::new(etcd_bin())
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            // etcd's own timing (100 ms heartbeats, 1 s elections): quicker
            // elections flap on a loaded two-core machine.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // etcd's raft logs ignore --log-level: keep them beside its data.
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        self.members[i].child = Some(child);
    }

    /// Member `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members.get(i)?.child.as_ref().map(Child::id)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The endpoints as one comma-separated flag value.
    pub fn endpoints_flag(&self) -> String {
        self.endpoints().join(",")
    }

    /// The status of the member at `url` (`/v3/maintenance/status`).
    async fn status(url: &str) -> Option<serde_json::Value> {
        reqwest::Client::new()
            .post(format!("{url}/v3/maintenance/status"))
            .body("{}")
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// Waits until every running member answers and they agree on a leader.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.agreed_leader().await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The index of the leader, waiting (up to 20 s) until every running
    /// member names the same one.
    pub async fn leader(&self) -> Option<usize> {
        crate::within(Duration::from_secs(20), || self.agreed_leader()).await
    }

    /// The index of the leader, if every running member names the same now.
    async fn agreed_leader(&self) -> Option<usize> {
        let mut leader = None;
        let mut ids = Vec::new();
        for m in &self.members {
            if m.child.is_none() {
                ids.push(None);
                continue;
            }
            let status = Self::status(&m.client_url).await?;
            let named = status["leader"].as_str()?.to_owned();
            if named == "0" || leader.as_ref().is_some_and(|l| l != &named) {
                return None;
            }
            leader = Some(named);
            ids.push(status["header"]["member_id"].as_str().map(str::to_owned));
        }
        let leader = leader?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to member `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.members[i].child {
            crate::signal::send(child.id(), signal).unwrap();
        }
    }

    /// Starts member `i` again on its ports and data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
    }

    fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.members[i]
                .child
                .as_ref()
                .map(|c| crate::signal::send(c.id(), "CONT"));
            self.kill(i);
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
