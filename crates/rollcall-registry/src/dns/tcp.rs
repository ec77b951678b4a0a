//! DNS over TCP (RFC 7766: each message after its two-byte length), served
//! here rather than by hickory-server, which does not cap how many
//! connections are open at once (its timeout is per read, so a client that
//! trickles a query holds a connection longer): at most [`MAX_CONNECTIONS`]
//! at once (one past it is closed at once and counted), each closed when a
//! whole query (length and message) has not arrived within [`IDLE`], or its
//! answer could not be written within it; queries on one connection are
//! answered in turn. The answers are the same handler's as over UDP, up to
//! 64 KiB.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::DnsHandler;
use crate::shell::Registry;

/// Most TCP connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// How long a connection may take to send a whole query, length and
/// message (or to take its answer), and stay without one.
pub const IDLE: Duration = Duration::from_secs(5);

/// Keeps the encoded answer the handler sends.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Option<Vec<u8>>>>);

impl Captured {
    fn take(&self) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Captured {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

/// Accepts connections on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    handler: DnsHandler,
    registry: Registry,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: let some close first.
                tracing::debug!(error = %e, "DNS over TCP: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            registry.metrics().dns_tcp_refused.inc();
            drop(stream);
            continue;
        };
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        registry.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = answer_queries(stream, peer, &handler) => {}
            }
        });
    }
}

/// Answers one connection's queries in turn until it closes, idles, or
/// sends something that is not a DNS message.
async fn answer_queries(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &DnsHandler,
) -> std::io::Result<()> {
    loop {
        // One deadline for the whole query: the length, then the message.
        let raw = within(async {
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).await?;
            let mut raw = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut raw).await?;
            Ok(raw)
        })
        .await?;
        let Ok(request) = Request::from_bytes(raw, peer, Protocol::Tcp) else {
            return Ok(());
        };
        let captured = Captured::default();
        handler
            .handle_request::<_, TokioTime>(&request, captured.clone())
            .await;
        let Some(answer) = captured.take() else {
            return Ok(());
        };
        let Ok(length) = u16::try_from(answer.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&answer);
        within(stream.write_all(&framed)).await?;
    }
}

/// `io` within [`IDLE`].
async fn within<T>(io: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::time::timeout(IDLE, io)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}
