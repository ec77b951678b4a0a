//! The inspecting commands (`rollcall logs`, ...) and what they share:
//! finding services through the registry, reading Server-Sent Events, and
//! terminal styling that turns itself off when output is piped.

/// `println!` for a command's output: a closed pipe (`rollcall ls | head -1`)
/// ends the command quietly with status 0, as it does other Unix tools.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

/// `eprintln!` for a command's messages: a closed stderr (`2>&-`, or a
/// reader that went away) loses the message, not the command.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` for a service's and `up`'s lines: a closed stdout is ignored
/// (the service goes on running; it must not die mid-write of a record).
macro_rules! sayln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod logs;
pub mod registry;
pub mod table;
pub mod watch;

pub(crate) use {errln, sayln};

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;

/// Timeout of one request from the command line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client every command uses: it follows no redirects, verifies
/// `https` servers against `--ca-file` when given, and sends the token from
/// `ROLLCALL_TOKEN` (if set) to the registry and the log service.
pub fn client(trust: &rollcall_http::tls::CaFile) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = rollcall_sdk::args::token_from_env() {
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .context("ROLLCALL_TOKEN cannot be sent in a header")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers);
    trust
        .client(builder)?
        .build()
        .context("cannot build an HTTP client")
}

/// The URL of an instance of `service` in discovery, asked of the registry
/// (of its replicas in turn).
pub async fn find_service(
    client: &reqwest::Client,
    registry: &registry::RegistryArg,
    service: &str,
) -> anyhow::Result<String> {
    let response = registry
        .send_any(|base| {
            client
                .get(format!("{base}/services"))
                .query(&[("service", service)])
                .timeout(REQUEST_TIMEOUT)
        })
        .await?;
    let instances: Vec<rollcall_proto::views::InstanceView> = read_json(response)
        .await
        .context("the registry sent something that is not a catalog")?;
    // In discovery: passing, or not checked yet (a newcomer); a registry
    // without `InDiscovery` (older) says `passing`.
    match instances.iter().find(|i| i.usable()) {
        Some(i) => Ok(i.url.as_str().trim_end_matches('/').to_owned()),
        None => bail!(
            "no passing {service} is registered at {}",
            registry.registry
        ),
    }
}

/// Most bytes of one answer the CLI reads (a catalog of tens of thousands of
/// instances, a page of a thousand large records).
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// An answer's body as JSON, at most [`MAX_ANSWER`] bytes.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> anyhow::Result<T> {
    rollcall_sdk::bounded::json(response, MAX_ANSWER)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

/// The message of a JSON error answer (or the status if there is none).
pub async fn error_text(response: reqwest::Response) -> String {
    let status = response.status();
    let body = rollcall_http::bounded::json::<rollcall_proto::ErrorBody>(response, 64 * 1024).await;
    match body {
        Ok(body) if !body.error.message.is_empty() => body.error.message,
        _ => format!("HTTP {}", status.as_u16()),
    }
}

/// Sends `request` to `service` (named in errors); a non-2xx answer is an
/// error carrying the service's own message.
pub async fn send(
    request: reqwest::RequestBuilder,
    service: &str,
) -> anyhow::Result<reqwest::Response> {
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {service}: {}", explain(&e)))?;
    if response.status().is_success() {
        Ok(response)
    } else {
        bail!("{service} refused: {}", refusal(response).await)
    }
}

/// Why a request got no answer, in words that name the cause and the next
/// step (reqwest's own says "error sending request for url").
pub fn explain(error: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut refused = false;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        chain.push(e.to_string());
        refused |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        cause = e.source();
    }
    let all = chain.join(": ").to_lowercase();
    let https = error.url().is_some_and(|u| u.scheme() == "https");
    if refused || all.contains("connection refused") {
        "connection refused: nothing listens there (is `rollcall up` running? start it, or point --registry at where it runs)".to_owned()
    } else if all.contains("certificate") || all.contains("unknownissuer") {
        let why = chain.last().cloned().unwrap_or_default();
        format!(
            "its TLS certificate is not trusted ({why}): pass the CA that signed it with --ca-file (or ROLLCALL_CA_FILE)"
        )
    } else if https && (all.contains("invalidcontenttype") || all.contains("corrupt message")) {
        "it does not speak TLS there: try http:// instead of https://".to_owned()
    } else if !https
        && (all.contains("connection closed before message completed")
            || all.contains("invalid http version")
            || all.contains("invalid status")
            || all.contains("connection reset"))
    {
        "the connection closed without an HTTP answer (it stopped meanwhile, or it serves TLS: then use https://, and --ca-file for its certificate)".to_owned()
    } else if error.is_timeout() {
        "no answer in time".to_owned()
    } else {
        chain.last().cloned().unwrap_or_else(|| error.to_string())
    }
}

/// A refusal's message, with what to do about a missing or wrong token.
pub async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let text = error_text(response).await;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let set = if std::env::var_os("ROLLCALL_TOKEN").is_some() {
            "ROLLCALL_TOKEN is set but not accepted: set it to the service's token"
        } else {
            "set ROLLCALL_TOKEN to the service's token"
        };
        format!("{text} ({set})")
    } else {
        text
    }
}

/// One Server-Sent Event (its name and data), as `follow` hands it on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Reconnection back-off of the following commands: first wait, and longest.
pub const RECONNECT_MIN: Duration = Duration::from_millis(200);
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Follows a stream until Ctrl-C, reconnecting with back-off whenever it
/// breaks or ends (a restart of `service`). `open` opens it; it is called again
/// for every reconnection, with the number of the attempt (0 the first time),
/// and should resume from what `on_event` saw last. Callers reach the service
/// once before (a first page, the current state), so an unreachable service is
/// already an error by then; from here on failures are retried, said once on
/// stderr.
pub async fn follow<F, Fut>(
    service: &str,
    mut open: F,
    mut on_event: impl FnMut(SseEvent),
) -> anyhow::Result<()>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<reqwest::Response>>,
{
    let stop = rollcall_http::wait_for_signal();
    tokio::pin!(stop);
    let seed = u64::from(std::process::id());
    let mut attempt: u32 = 0;
    let mut failures: u32 = 0;
    loop {
        let opened = tokio::select! {
            () = &mut stop => return Ok(()),
            r = open(attempt) => r,
        };
        let why = match opened {
            Ok(response) => {
                if attempt > 0 {
                    errln!("reconnected to {service}");
                }
                failures = 0;
                let mut events = bounded_lines(response.bytes_stream()).eventsource();
                loop {
                    let event = tokio::select! {
                        () = &mut stop => return Ok(()),
                        e = events.next() => e,
                    };
                    match event {
                        Some(Ok(event)) => on_event(SseEvent {
                            event: event.event,
                            data: event.data,
                        }),
                        None => break format!("{service} closed the stream"),
                        Some(Err(_)) => {
                            break format!("lost the stream from {service} (the connection broke)");
                        }
                    }
                }
            }
            Err(e) => format!("{e:#}"),
        };
        if failures == 0 {
            errln!("{why}; reconnecting (Ctrl-C to stop)");
        }
        failures = failures.saturating_add(1);
        attempt = attempt.saturating_add(1);
        let wait = rollcall_proto::jitter::backoff(RECONNECT_MIN, RECONNECT_MAX, failures, seed);
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Longest line (one event field) a stream may send before the CLI gives
/// up on it: an endless line is an error, not an endless buffer.
const MAX_LINE: usize = 1024 * 1024;

/// A line longer than [`MAX_LINE`], or the connection's own error.
#[derive(Debug)]
enum StreamError {
    LineTooLong,
    Http(reqwest::Error),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::LineTooLong => write!(f, "a line longer than {MAX_LINE} bytes"),
            StreamError::Http(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StreamError {}

/// `chunks`, failing once a run of bytes without a newline passes
/// [`MAX_LINE`].
fn bounded_lines(
    chunks: impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>>,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, StreamError>> {
    futures_util::StreamExt::scan(chunks, 0usize, |run, chunk| {
        let item = match chunk {
            Err(e) => Err(StreamError::Http(e)),
            Ok(chunk) => {
                *run = match chunk.iter().rposition(|b| *b == b'\n') {
                    Some(at) => chunk.len() - at - 1,
                    None => *run + chunk.len(),
                };
                if *run > MAX_LINE {
                    Err(StreamError::LineTooLong)
                } else {
                    Ok(chunk)
                }
            }
        };
        std::future::ready(Some(item))
    })
}

/// Writes one line on stdout (see [`outln!`]). A reader that went away ends
/// the process at once with status 0; any other failure to write ends it with
/// a message and status 1.
pub fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            errln!("rollcall: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// Text from a remote party made safe for a terminal: control characters
/// (a newline that would forge a table row, an escape that clears the
/// screen) and invisible format characters (a bidi override that makes a
/// row read backwards, a zero-width space) are shown escaped.
pub fn clean(text: &str) -> String {
    rollcall_proto::text::escaped(text).into_owned()
}

/// Serialized JSON for a terminal or a pipe: the same JSON, with C1
/// controls and format characters (which JSON lets through raw) escaped.
pub fn clean_json(json: &str) -> String {
    rollcall_proto::text::json_escaped(json).into_owned()
}

/// ANSI styling, on only when writing to a terminal and `NO_COLOR` is unset.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub on: bool,
}

impl Style {
    pub fn for_stdout() -> Self {
        Self {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
    }

    #[test]
    fn style_is_plain_when_off() {
        let s = Style { on: false };
        assert_eq!(s.paint("31", "x"), "x");
        let s = Style { on: true };
        assert_eq!(s.paint("31", "x"), "\x1b[31mx\x1b[0m");
    }
}
