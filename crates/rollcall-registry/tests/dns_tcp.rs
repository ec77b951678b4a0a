//! DNS over TCP is bounded: connections past the cap are closed at once
//! (and counted) while those held go on being answered, a freed place is
//! taken again, and a connection that never finishes its query is closed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rollcall_registry::RegistryConfig;
use rollcall_registry::dns::tcp::{IDLE, MAX_CONNECTIONS};
use rollcall_testkit::TestRegistry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A query for `nobody.service.rollcall` A, with `id`, framed for TCP.
fn query(id: u16) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["nobody", "service", "rollcall"] {
        message.push(u8::try_from(label.len()).unwrap());
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = u16::try_from(message.len()).unwrap().to_be_bytes().to_vec();
    framed.extend(message);
    framed
}

/// Sends a query on `stream` and reads the answer: its id and response
/// code, or `None` if the connection closed (or nothing came in 2 s).
async fn ask(stream: &mut TcpStream, id: u16) -> Option<(u16, u8)> {
    stream.write_all(&query(id)).await.ok()?;
    let answer = async {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.ok()?;
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut message).await.ok()?;
        Some((
            u16::from_be_bytes([message[0], message[1]]),
            message[3] & 0x0f,
        ))
    };
    tokio::time::timeout(Duration::from_secs(2), answer)
        .await
        .ok()
        .flatten()
}

/// Whether the server closed `stream` (it reads end of file) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Waits (up to 5 s) until a new connection is answered.
async fn wait_for_a_place(dns: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(dns).await.unwrap();
        if ask(&mut again, 42).await == Some((42, 3)) {
            return;
        }
        assert!(Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refused(registry: &TestRegistry) -> f64 {
    let page = reqwest::get(format!("{}/metrics", registry.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix("rollcall_registry_dns_tcp_refused_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_past_the_cap_are_closed_and_the_held_ones_still_answered() {
    let mut config = RegistryConfig::for_tests();
    config.dns_addr = Some("127.0.0.1:0".parse().unwrap());
    let registry = TestRegistry::start(config).await;
    let dns: SocketAddr = registry.dns_addr.expect("DNS bound");

    // As many as allowed, each answered (so each holds its place).
    let mut held = Vec::new();
    for i in 0..MAX_CONNECTIONS {
        let mut stream = TcpStream::connect(dns).await.unwrap();
        let id = u16::try_from(i).unwrap();
        assert_eq!(ask(&mut stream, id).await, Some((id, 3)), "NXDOMAIN");
        held.push(stream);
    }
    // One more is closed at once, without an answer, and counted.
    let mut extra = TcpStream::connect(dns).await.unwrap();
    assert_eq!(ask(&mut extra, 9999).await, None);
    assert!(refused(&registry).await >= 1.0);
    // The held ones are still answered, one query after another.
    assert_eq!(ask(&mut held[0], 7).await, Some((7, 3)));
    assert_eq!(ask(&mut held[0], 8).await, Some((8, 3)));
    // A freed place is taken again.
    drop(held.pop());
    wait_for_a_place(dns).await;
    // Once the others are let go, there is room again (the server notices
    // each close on its own time).
    drop(held);
    wait_for_a_place(dns).await;

    // Half a query is not waited for past IDLE; it does not hold a place.
    // (A connection closed within half a second was refused — a place not
    // given back yet — and is tried again.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut slow, started) = loop {
        let mut slow = TcpStream::connect(dns).await.unwrap();
        slow.write_all(&query(1)[..5]).await.unwrap();
        let started = Instant::now();
        if !closed_within(&mut slow, Duration::from_millis(500)).await {
            break (slow, started);
        }
        assert!(Instant::now() < deadline, "never served");
    };
    assert!(closed_within(&mut slow, IDLE + Duration::from_secs(3)).await);
    assert!(started.elapsed() >= IDLE - Duration::from_millis(500));

    // A query trickled in (one byte of its length, the other most of IDLE
    // later) gets IDLE for the whole of it, not IDLE per part.
    wait_for_a_place(dns).await;
    let mut trickle = TcpStream::connect(dns).await.unwrap();
    let whole = query(2);
    trickle.write_all(&whole[..1]).await.unwrap();
    let started = Instant::now();
    assert!(
        !closed_within(&mut trickle, IDLE - Duration::from_secs(1)).await,
        "refused, or closed before IDLE"
    );
    trickle.write_all(&whole[1..2]).await.unwrap();
    assert!(
        closed_within(&mut trickle, Duration::from_secs(2)).await,
        "still open {:?} after the query began",
        started.elapsed()
    );
    registry.stop().await;
}
