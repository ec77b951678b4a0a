//! DNS: `rollcall registry --dns-addr 127.0.0.1:8600` answers discovery
//! queries over UDP (hickory-server) and TCP (`tcp.rs`: capped), the way
//! Consul's DNS does.
//!
//! - `NAME.service.rollcall.` — `A`/`AAAA`: the addresses of the instances
//!   of service `NAME` in discovery (passing, or not checked yet — what
//!   dependents are told; never critical or in maintenance), for instance
//!   URLs whose host is an IP address; `SRV`: one record per instance
//!   (priority 1, weight 1, its port), the target `HEX.addr.rollcall.` for
//!   an IP address (its `A`/`AAAA` in the additional section) or the URL's
//!   own host name. `_NAME._tcp.service.rollcall.` (RFC 2782) is the same.
//! - `HEX.addr.rollcall.` — the address an SRV target stands for.
//!
//! Names are case-insensitive; a service name with dots spans labels. A
//! service that is not registered is `NXDOMAIN`; one whose instances are all
//! out of discovery, or a type other than those, answers no records
//! (`NOERROR`); both carry the zone's SOA so resolvers cache the absence
//! for the TTL. Names outside `rollcall.` are `REFUSED`: this is no
//! recursive resolver. TTL 0 by default (`--dns-ttl`): an instance removed
//! from discovery is gone from the next answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rollcall_proto::ServiceUrl;
use tokio_util::sync::CancellationToken;

use crate::shell::Registry;

pub mod tcp;

/// The zone: every answer is under it.
pub const ZONE: &str = "rollcall.";
const SERVICES: &str = ".service.rollcall.";
const ADDRS: &str = ".addr.rollcall.";
/// Largest UDP answer, whatever a query's EDNS asks for.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// Most answers in one response (UDP answers past 512 bytes are truncated
/// by the server; TCP gets them all up to this).
const MAX_ANSWERS: usize = 256;

/// Answers DNS queries from the registry's catalog.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    registry: Registry,
    ttl: u32,
}

/// One instance as DNS sees it: where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// What a query name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    /// The instances of a service (lowercased name).
    Service(String),
    /// The address an SRV target stands for.
    Addr(IpAddr),
    /// Under `rollcall.` but nothing we know.
    Unknown,
    /// Outside the zone.
    Elsewhere,
}

fn parse_name(name: &str) -> Asked {
    let name = name.to_ascii_lowercase();
    let name = if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    };
    if let Some(service) = name.strip_suffix(SERVICES) {
        // RFC 2782: `_name._tcp.service.rollcall.`
        let service = service
            .strip_prefix('_')
            .and_then(|s| s.strip_suffix("._tcp"))
            .unwrap_or(service);
        if service.is_empty() {
            return Asked::Unknown;
        }
        return Asked::Service(service.to_owned());
    }
    if let Some(hex) = name.strip_suffix(ADDRS) {
        return decode_addr(hex).map_or(Asked::Unknown, Asked::Addr);
    }
    if name == ZONE || name.ends_with(&format!(".{ZONE}")) {
        return Asked::Unknown;
    }
    Asked::Elsewhere
}

/// `7f000001` → 127.0.0.1; 32 hex digits → an IPv6 address.
fn encode_addr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

fn decode_addr(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => u32::from_str_radix(hex, 16)
            .ok()
            .map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        32 => u128::from_str_radix(hex, 16)
            .ok()
            .map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        _ => None,
    }
}

fn endpoint(url: &ServiceUrl) -> Option<Endpoint> {
    let parsed = url::Url::parse(url.as_str()).ok()?;
    let port = parsed.port_or_known_default()?;
    let host = match parsed.host()? {
        url::Host::Ipv4(v4) => Host::Ip(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Host::Ip(IpAddr::V6(v6)),
        url::Host::Domain(name) => Host::Name(name.to_owned()),
    };
    Some(Endpoint { host, port })
}

/// The records of one answer: response code, answers, additionals.
type Answer = (ResponseCode, Vec<Record>, Vec<Record>);

impl DnsHandler {
    pub fn new(registry: Registry, ttl: u32) -> Self {
        Self { registry, ttl }
    }

    /// The instances in discovery of every service whose name is `name`
    /// ignoring case, or `None` if no such service is registered.
    fn endpoints(&self, name: &str) -> Option<Vec<Endpoint>> {
        self.registry.read(|c| {
            let names: Vec<_> = c
                .service_names()
                .filter(|n| n.as_str().eq_ignore_ascii_case(name))
                .cloned()
                .collect();
            if names.is_empty() {
                return None;
            }
            Some(
                names
                    .iter()
                    .flat_map(|n| c.healthy_providers(n))
                    .filter_map(|u| endpoint(&u))
                    .take(MAX_ANSWERS)
                    .collect(),
            )
        })
    }

    fn address_record(&self, name: &Name, ip: IpAddr) -> Record {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(name.clone(), self.ttl, rdata)
    }

    fn answer(&self, name: &Name, kind: RecordType) -> Answer {
        let wants = |t: RecordType| kind == t || kind == RecordType::ANY;
        match parse_name(&name.to_ascii()) {
            Asked::Elsewhere => (ResponseCode::Refused, Vec::new(), Vec::new()),
            Asked::Unknown => (ResponseCode::NXDomain, Vec::new(), Vec::new()),
            Asked::Addr(ip) => {
                let fits = match ip {
                    IpAddr::V4(_) => wants(RecordType::A),
                    IpAddr::V6(_) => wants(RecordType::AAAA),
                };
                let answers = if fits {
                    vec![self.address_record(name, ip)]
                } else {
                    Vec::new()
                };
                (ResponseCode::NoError, answers, Vec::new())
            }
            Asked::Service(service) => {
                let Some(endpoints) = self.endpoints(&service) else {
                    return (ResponseCode::NXDomain, Vec::new(), Vec::new());
                };
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                for e in &endpoints {
                    if let Host::Ip(ip) = e.host {
                        let fits = match ip {
                            IpAddr::V4(_) => wants(RecordType::A),
                            IpAddr::V6(_) => wants(RecordType::AAAA),
                        };
                        let record = self.address_record(name, ip);
                        if fits && !answers.contains(&record) {
                            answers.push(record);
                        }
                    }
                }
                if wants(RecordType::SRV) {
                    for e in &endpoints {
                        let target = match &e.host {
                            Host::Ip(ip) => {
                                let target =
                                    Name::from_ascii(format!("{}{ADDRS}", encode_addr(*ip)));
                                if let Ok(target) = &target {
                                    let record = self.address_record(target, *ip);
                                    if !additionals.contains(&record) {
                                        additionals.push(record);
                                    }
                                }
                                target
                            }
                            Host::Name(host) => Name::from_ascii(format!("{host}.")),
                        };
                        if let Ok(target) = target {
                            answers.push(Record::from_rdata(
                                name.clone(),
                                self.ttl,
                                RData::SRV(SRV::new(1, 1, e.port, target)),
                            ));
                        }
                    }
                }
                (ResponseCode::NoError, answers, additionals)
            }
        }
    }

    /// The zone's SOA, for negative answers.
    fn soa(&self) -> Option<Record> {
        let zone = Name::from_ascii(ZONE).ok()?;
        let soa = SOA::new(
            Name::from_ascii("ns.rollcall.").ok()?,
            Name::from_ascii("hostmaster.rollcall.").ok()?,
            1,
            3600,
            600,
            86_400,
            self.ttl,
        );
        Some(Record::from_rdata(zone, self.ttl, RData::SOA(soa)))
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            // At most 1,232 bytes over UDP (DNS Flag Day 2020): a spoofed
            // query asking for 64 KiB answers cannot make this an amplifier.
            // hickory-proto already reads no larger size out of a query; the
            // rule is stated here so that it does not rest on that.
            edns.set_max_payload(asked.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(0);
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let refuse = |code| {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = code;
            metadata
        };
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            let response = builder.build_no_records(refuse(ResponseCode::NotImp));
            return response_handle
                .send_response(response)
                .await
                .unwrap_or_else(|_| failed(request));
        }
        let Ok(info) = request.request_info() else {
            let response = builder.build_no_records(refuse(ResponseCode::FormErr));
            return response_handle
                .send_response(response)
                .await
                .unwrap_or_else(|_| failed(request));
        };
        let name = Name::from(info.query.name().clone());
        let (code, answers, additionals) = self.answer(&name, info.query.query_type());
        let metrics = self.registry.metrics();
        metrics.dns_queries.inc();
        if code == ResponseCode::NXDomain {
            metrics.dns_nxdomain.inc();
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        metadata.authoritative = code != ResponseCode::Refused;
        metadata.recursion_available = false;
        let soa: Vec<Record> = if answers.is_empty() && code != ResponseCode::Refused {
            self.soa().into_iter().collect()
        } else {
            Vec::new()
        };
        let response = builder.build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            soa.iter(),
            additionals.iter(),
        );
        response_handle
            .send_response(response)
            .await
            .unwrap_or_else(|_| failed(request))
    }
}

/// How many ports port 0 tries before giving up: the UDP port the kernel
/// picks may be taken for TCP.
const ANY_PORT_TRIES: usize = 16;

/// Binds UDP and TCP on `addr`; with port 0, on one port free for both.
async fn bind_both(
    addr: SocketAddr,
) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let bound = udp.local_addr()?;
        match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries + 1 < ANY_PORT_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Serves DNS on `addr` (UDP and TCP; port 0: any port free for both) until
/// `shutdown` fires; returns the address. Binding fails before anything is
/// served.
pub async fn serve(
    registry: Registry,
    addr: SocketAddr,
    ttl: u32,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let (udp, tcp) = bind_both(addr).await?;
    let bound = udp.local_addr()?;
    let handler = DnsHandler::new(registry.clone(), ttl);
    registry.spawn(tcp::serve(
        tcp,
        handler.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    let mut server = hickory_server::Server::new(handler);
    server.register_socket(udp);
    registry.spawn(async move {
        shutdown.cancelled().await;
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "the DNS server stopped with an error");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_case_insensitively() {
        assert_eq!(
            parse_name("Grading.SERVICE.rollcall."),
            Asked::Service("grading".into())
        );
        assert_eq!(
            parse_name("_grading._tcp.service.rollcall"),
            Asked::Service("grading".into())
        );
        assert_eq!(
            parse_name("log.v2.service.rollcall."),
            Asked::Service("log.v2".into())
        );
        assert_eq!(
            parse_name("7f000001.addr.rollcall."),
            Asked::Addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(parse_name("zz.addr.rollcall."), Asked::Unknown);
        assert_eq!(parse_name("service.rollcall."), Asked::Unknown);
        assert_eq!(parse_name("x.node.rollcall."), Asked::Unknown);
        assert_eq!(parse_name("example.com."), Asked::Elsewhere);
        assert_eq!(parse_name("notrollcall."), Asked::Elsewhere);
    }

    #[tokio::test]
    async fn port_zero_finds_a_port_free_for_udp_and_tcp_alike() {
        // Take TCP ports so that the kernel's first UDP choices may collide.
        let held: Vec<_> = (0..64)
            .filter_map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok())
            .collect();
        for _ in 0..32 {
            let (udp, tcp) = bind_both("127.0.0.1:0".parse().unwrap()).await.unwrap();
            assert_eq!(udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        }
        drop(held);
        // A port asked for by number is not swapped for another.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        if std::net::UdpSocket::bind(addr).is_ok() {
            let err = bind_both(addr).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        }
    }

    #[test]
    fn addresses_round_trip_through_target_names() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            assert_eq!(decode_addr(&encode_addr(ip)), Some(ip));
        }
    }
}
