//! Command-line arguments of the `demo` server (clap derive; `demo --help` lists every flag
//! with its default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use subscope::deflate::{Context, DeflateConfig};
use subscope::{Config, Delivery, History, Overflow, Rate};

/// The runtimes the demo can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeChoice {
    /// tokio (feature `tokio`).
    Tokio,
    /// smol (feature `smol`).
    Smol,
    /// async-std (feature `async-std`; discontinued upstream).
    AsyncStd,
}

/// `tokio` when compiled in, else the first runtime that is.
const DEFAULT_RUNTIME: &str = if cfg!(feature = "tokio") {
    "tokio"
} else if cfg!(feature = "smol") {
    "smol"
} else {
    "async-std"
};

/// The command line as clap sees it; [`DemoArgs`] is what the server uses.
#[derive(Debug, Parser)]
#[command(
    name = "demo",
    about = "The subscope demo server: the demo schema over graphql-transport-ws and graphql-ws \
             on ws://HOST:PORT/graphql, and over graphql-sse, Apollo multipart and plain \
             GraphQL over HTTP on the same port",
    long_about = None,
)]
struct Cli {
    /// Listen address; port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8000", value_parser = parse_addr)]
    addr: SocketAddr,
    /// Runtime: tokio, smol or async-std.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_RUNTIME, value_parser = parse_runtime)]
    runtime: RuntimeChoice,
    /// Time to send connection_init, in ms; 0 disables.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    init_timeout_ms: u64,
    /// Ping interval and liveness timeout, in ms; 0 disables.
    #[arg(long, value_name = "MS", default_value_t = 12000)]
    keepalive_ms: u64,
    /// Stuck-write timeout, in ms; 0 disables.
    #[arg(long, value_name = "MS", default_value_t = 10000)]
    write_timeout_ms: u64,
    /// Live operations per connection.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_subscriptions: usize,
    /// A valid token (repeatable): required in connection_init ({"token": TOKEN}), an
    /// Authorization: Bearer header or the access_token parameter (4403 / HTTP 403 for a
    /// wrong one, HTTP 401 for none) [default: open].
    #[arg(long, value_name = "TOKEN")]
    auth_token: Vec<String>,
    /// With --auth-token: an authorization lasts N ms from when it was granted (renewed by a
    /// graphql-transport-ws ping carrying {"token": TOKEN}); 0 = never expires.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    auth_ttl_ms: u64,
    /// Serve TLS with this certificate chain (PEM; needs --tls-key): wss:// and https://
    /// with HTTP/2 by ALPN on the same port.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1; needs --tls-cert).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// messages/publish through Redis, e.g. redis://127.0.0.1:6379 (feature `redis`): Redis
    /// Streams with --history, else pub/sub [default: in memory].
    #[arg(long, value_name = "URL", value_parser = parse_redis)]
    redis: Option<String>,
    /// Events one messages() subscriber may have queued.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    subscriber_buffer: u64,
    /// What a subscriber's full buffer does: end (SUBSCRIBER_LAGGED error, then complete),
    /// drop-oldest or drop-newest.
    #[arg(long, value_name = "POLICY", default_value = "end")]
    overflow: Overflow,
    /// The last N events of each topic are kept (in memory, or in Redis Streams with
    /// --redis), so a messages() subscriber resumes after the last event id it saw; 0 = off.
    #[arg(long, value_name = "N", default_value_t = 0)]
    history: usize,
    /// Graceful shutdown's drain window, in ms: readiness turns false at once, then
    /// connections and HTTP streams are closed spread over the window.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    drain_ms: u64,
    /// Parsed documents kept for reuse, keyed by query text (0 parses every request).
    #[arg(long, value_name = "N", default_value_t = 256)]
    document_cache: usize,
    /// Inbound messages per second per connection, bursts of 2N; 0 = off.
    #[arg(long, value_name = "N", default_value_t = 0)]
    inbound_rate: u32,
    /// Largest inbound message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    max_message_size: usize,
    /// Live connections; past it 1013 Try again later [default: unlimited].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// A browser origin allowed to connect, e.g. https://app.example.com (repeatable); a
    /// foreign Origin gets HTTP 403, a request without Origin is allowed
    /// [default: every origin].
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Share one execution among operations whose document, operation name and variables
    /// are equal (the demo schema has no per-user fields) [default: off].
    #[arg(long)]
    share: bool,
    /// Compress WebSocket messages with permessage-deflate for clients that offer it
    /// (browsers do) [default: off].
    #[arg(long)]
    deflate: bool,
    /// With --deflate: the server's compression window, 9 to 15 bits.
    #[arg(long, value_name = "BITS", default_value_t = 12, requires = "deflate", value_parser = clap::value_parser!(u8).range(9..=15))]
    deflate_window_bits: u8,
    /// With --deflate: zlib's memory level, 1 to 9.
    #[arg(long, value_name = "N", default_value_t = 5, requires = "deflate", value_parser = clap::value_parser!(u8).range(1..=9))]
    deflate_mem_level: u8,
    /// With --deflate: zlib's compression level, 0 (stored) to 9.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "deflate", value_parser = clap::value_parser!(u8).range(0..=9))]
    deflate_level: u8,
    /// With --deflate: reset the compression after every message (no memory kept per
    /// connection, less compression).
    #[arg(long, requires = "deflate")]
    deflate_no_context_takeover: bool,
    /// With --deflate: how context is kept between messages: `stream` (a zlib stream per
    /// active connection) or the number of recent bytes each connection keeps
    /// (default 2048).
    #[arg(long, value_name = "stream|BYTES", default_value = "2048", requires = "deflate", value_parser = parse_context)]
    deflate_context: Context,
}

/// `--deflate-context`: `stream`, or a number of bytes.
fn parse_context(value: &str) -> Result<Context, String> {
    if value == "stream" {
        return Ok(Context::Stream);
    }
    value
        .parse::<usize>()
        .map(Context::Recent)
        .map_err(|_| format!("expected `stream` or a number of bytes, got `{value}`"))
}

/// Parsed `demo` arguments.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoArgs {
    /// Where to listen (`--addr`).
    pub addr: SocketAddr,
    /// The runtime (`--runtime`).
    pub runtime: RuntimeChoice,
    /// Server settings from `--init-timeout-ms`, `--keepalive-ms`, `--write-timeout-ms`,
    /// `--max-subscriptions`, `--inbound-rate`, `--max-message-size`, `--max-connections`,
    /// `--allowed-origin`, `--share`, `--drain-ms`, `--document-cache`, `--deflate` and its `--deflate-*`
    /// settings (and the SSE `retry:` of 1 s with `--history`).
    pub config: Config,
    /// Topic delivery from `--subscriber-buffer`, `--overflow` and `--history`.
    pub delivery: Delivery,
    /// `--auth-token TOKEN` (repeatable): any listed token is valid, in `connection_init`
    /// (`{"token": TOKEN}`), an `Authorization: Bearer` header or the `access_token`
    /// parameter. Empty: every connection is accepted.
    pub auth_tokens: Vec<String>,
    /// `--auth-ttl-ms N`: how long an authorization lasts (`None`: as long as its
    /// connection).
    pub auth_ttl: Option<Duration>,
    /// `--redis URL`: back `messages`/`publish` with Redis (Streams with `--history`).
    pub redis: Option<String>,
    /// `--tls-cert PEM --tls-key PEM`: the certificate chain and key files to serve TLS
    /// with (loaded when the server starts).
    pub tls: Option<(PathBuf, PathBuf)>,
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    // An IP address, or a host name that resolves (the first address wins).
    value
        .parse()
        .ok()
        .or_else(|| {
            std::net::ToSocketAddrs::to_socket_addrs(value)
                .ok()
                .and_then(|mut addrs| addrs.next())
        })
        .ok_or_else(|| "expected HOST:PORT".to_owned())
}

fn parse_runtime(name: &str) -> Result<RuntimeChoice, String> {
    match name {
        "tokio" if cfg!(feature = "tokio") => Ok(RuntimeChoice::Tokio),
        "smol" if cfg!(feature = "smol") => Ok(RuntimeChoice::Smol),
        "async-std" if cfg!(feature = "async-std") => Ok(RuntimeChoice::AsyncStd),
        "tokio" | "smol" | "async-std" => Err(format!(
            "`{name}` is not compiled in: rebuild with `--features {name}`"
        )),
        _ => Err("expected tokio, smol or async-std".to_owned()),
    }
}

fn parse_redis(url: &str) -> Result<String, String> {
    if cfg!(feature = "redis") {
        Ok(url.to_owned())
    } else {
        Err("`redis` is not compiled in: rebuild with `--features redis`".to_owned())
    }
}

/// The flags' 0 means "off", which the library spells `None`.
fn millis(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl DemoArgs {
    /// Parses arguments (without the program name). Accepts `--opt value` and
    /// `--opt=value`. `Err` is clap's: `--help` (exit 0) or a usage error (exit 2), ready
    /// for [`clap::Error::exit`].
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("demo".to_owned()).chain(args))?;
        let keepalive = millis(cli.keepalive_ms);
        let rate = (cli.inbound_rate > 0)
            .then(|| Rate::new(cli.inbound_rate, cli.inbound_rate.saturating_mul(2)));
        let mut config = Config::default()
            .init_timeout(millis(cli.init_timeout_ms))
            .keepalive_interval(keepalive)
            .keepalive_timeout(keepalive)
            .write_timeout(millis(cli.write_timeout_ms))
            .max_subscriptions(cli.max_subscriptions)
            .inbound_rate(rate)
            .max_message_size(cli.max_message_size)
            .max_connections(cli.max_connections)
            .share_identical(cli.share)
            .drain(Duration::from_millis(cli.drain_ms))
            .document_cache(cli.document_cache);
        if cli.history > 0 {
            // Browsers resuming with Last-Event-ID come back after 1 s, not their ~3 s.
            config = config.sse_retry(Duration::from_millis(1000));
        }
        if !cli.allowed_origins.is_empty() {
            config = config.allowed_origins(&cli.allowed_origins);
        }
        if cli.deflate {
            config = config.deflate(Some(
                DeflateConfig::new()
                    .server_max_window_bits(cli.deflate_window_bits)
                    .mem_level(cli.deflate_mem_level)
                    .level(cli.deflate_level)
                    .server_no_context_takeover(cli.deflate_no_context_takeover)
                    .context(cli.deflate_context),
            ));
        }
        let delivery = Delivery::default()
            .buffer(usize::try_from(cli.subscriber_buffer).unwrap_or(usize::MAX))
            .overflow(cli.overflow)
            .history(History::last(cli.history));
        Ok(Self {
            addr: cli.addr,
            runtime: cli.runtime,
            config,
            delivery,
            auth_tokens: cli.auth_token,
            auth_ttl: millis(cli.auth_ttl_ms),
            redis: cli.redis,
            tls: cli.tls_cert.zip(cli.tls_key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<DemoArgs, clap::Error> {
        DemoArgs::parse(args.iter().map(|s| s.to_string()))
    }

    fn kind(args: &[&str]) -> ErrorKind {
        match parse(args) {
            Ok(a) => panic!("{args:?} parsed: {a:?}"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn the_flag_defaults_are_the_library_defaults() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.addr.to_string(), "127.0.0.1:8000");
        assert_eq!(
            format!("{:?}", a.config),
            format!("{:?}", Config::default())
        );
        assert_eq!(a.delivery, Delivery::default());
    }

    #[test]
    fn values() {
        let a = parse(&[
            "--addr",
            "127.0.0.1:0",
            "--keepalive-ms=250",
            "--max-subscriptions",
            "3",
        ])
        .expect("values");
        assert_eq!(a.addr.port(), 0);
        let shown = format!("{:?}", a.config);
        assert!(shown.contains("keepalive_interval: Some(250ms)"), "{shown}");
        assert!(shown.contains("max_subscriptions: 3"), "{shown}");
        let a = parse(&["--addr", "localhost:0"]).expect("host name");
        assert!(a.addr.ip().is_loopback());
        assert_eq!(kind(&["--addr", "nope"]), ErrorKind::ValueValidation);
        assert_eq!(a.config.enabled_subprotocols().len(), 2);
    }

    #[test]
    fn deflate_flags() {
        assert_eq!(
            parse(&[]).expect("defaults").config.deflate_settings(),
            None
        );
        let a = parse(&["--deflate"]).expect("deflate");
        assert_eq!(a.config.deflate_settings(), Some(&DeflateConfig::new()));
        let a = parse(&[
            "--deflate",
            "--deflate-window-bits=10",
            "--deflate-mem-level",
            "2",
            "--deflate-no-context-takeover",
        ])
        .expect("settings");
        let want = DeflateConfig::new()
            .server_max_window_bits(10)
            .mem_level(2)
            .server_no_context_takeover(true);
        assert_eq!(a.config.deflate_settings(), Some(&want));
        for (flag, context) in [("stream", Context::Stream), ("512", Context::Recent(512))] {
            let a = parse(&["--deflate", "--deflate-context", flag]).expect("context");
            let want = DeflateConfig::new().context(context);
            assert_eq!(a.config.deflate_settings(), Some(&want));
        }
        assert_eq!(
            kind(&["--deflate", "--deflate-context", "lots"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            kind(&["--deflate-window-bits", "12"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            kind(&["--deflate", "--deflate-window-bits", "8"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn history_and_drain_flags() {
        let a = parse(&["--history", "500", "--drain-ms", "2500"]).expect("values");
        assert_eq!(a.delivery.history, History::last(500));
        assert_eq!(a.config.drain_window(), Duration::from_millis(2500));
        let shown = format!("{:?}", a.config);
        assert!(shown.contains("sse_retry: Some(1s)"), "{shown}");
        let off = parse(&[]).expect("defaults");
        assert!(!off.delivery.history.is_on());
        assert_eq!(off.config.drain_window(), Duration::ZERO);
        assert!(format!("{:?}", off.config).contains("sse_retry: None"));
        assert_eq!(kind(&["--history", "-1"]), ErrorKind::UnknownArgument);
    }

    #[test]
    fn delivery_and_limit_flags() {
        let a = parse(&[
            "--subscriber-buffer",
            "8",
            "--overflow",
            "drop-oldest",
            "--inbound-rate",
            "100",
            "--max-message-size",
            "4096",
            "--max-connections",
            "3",
        ])
        .expect("values");
        assert_eq!(
            a.delivery,
            Delivery::default().buffer(8).overflow(Overflow::DropOldest)
        );
        assert_eq!(a.config.max_message_size_bytes(), 4096);
        let shown = format!("{:?}", a.config);
        assert!(shown.contains("max_connections: Some(3)"), "{shown}");
        assert!(shown.contains("per_second: 100.0, burst: 200.0"), "{shown}");
        assert_eq!(
            kind(&["--overflow", "sometimes"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            kind(&["--subscriber-buffer", "0"]),
            ErrorKind::ValueValidation
        );
        let a = parse(&["--inbound-rate", "0"]).expect("off");
        assert!(format!("{:?}", a.config).contains("inbound_rate: None"));
    }

    #[test]
    fn allowed_origins_repeat() {
        let a = parse(&[]).expect("defaults");
        assert!(a.config.is_origin_allowed(Some("https://anything.example")));
        let a = parse(&[
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin=http://localhost:3000",
        ])
        .expect("origins");
        assert!(a.config.is_origin_allowed(Some("https://a.example")));
        assert!(a.config.is_origin_allowed(Some("http://localhost:3000")));
        assert!(!a.config.is_origin_allowed(Some("https://b.example")));
        assert!(a.config.is_origin_allowed(None));
    }

    #[test]
    fn share_is_off_unless_asked() {
        let shown = format!("{:?}", parse(&[]).expect("defaults").config);
        assert!(shown.contains("share_identical: false"), "{shown}");
        let shown = format!("{:?}", parse(&["--share"]).expect("share").config);
        assert!(shown.contains("share_identical: true"), "{shown}");
    }

    #[test]
    fn zero_flags_disable_their_timers() {
        let a = parse(&[
            "--init-timeout-ms",
            "0",
            "--keepalive-ms",
            "0",
            "--write-timeout-ms",
            "0",
        ])
        .expect("zeros");
        let shown = format!("{:?}", a.config);
        assert!(shown.contains("init_timeout: None"), "{shown}");
        assert!(shown.contains("keepalive_interval: None"), "{shown}");
        assert!(shown.contains("keepalive_timeout: None"), "{shown}");
        assert!(shown.contains("write_timeout: None"), "{shown}");
        let a = parse(&["--init-timeout-ms", "5"]).expect("five");
        let shown = format!("{:?}", a.config);
        assert!(shown.contains("init_timeout: Some(5ms)"), "{shown}");
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(kind(&["--nope"]), ErrorKind::UnknownArgument);
        assert_eq!(kind(&["--addr"]), ErrorKind::InvalidValue);
        assert!(parse(&["--init-timeout-ms", "-1"]).is_err());
        assert_eq!(kind(&["--runtime", "tokyo"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["--help"]), ErrorKind::DisplayHelp);
    }

    #[test]
    fn help_lists_every_flag_with_its_default() {
        let help = match parse(&["--help"]) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("--help parsed"),
        };
        for flag in [
            "--addr",
            "--runtime",
            "--init-timeout-ms",
            "--keepalive-ms",
            "--write-timeout-ms",
            "--max-subscriptions",
            "--auth-token",
            "--redis",
            "--subscriber-buffer",
            "--overflow",
            "--inbound-rate",
            "--max-message-size",
            "--max-connections",
            "--allowed-origin",
            "--share",
            "--history",
            "--drain-ms",
        ] {
            assert!(help.contains(flag), "{flag} missing from\n{help}");
        }
        for default in [
            "[default: 127.0.0.1:8000]",
            "[default: 3000]",
            "[default: 12000]",
            "[default: 10000]",
            "[default: 100]",
            "[default: 1024]",
            "[default: end]",
            "[default: 0]",
            "[default: 1048576]",
            "[default: unlimited]",
            "[default: every origin]",
            "[default: open]",
        ] {
            assert!(help.contains(default), "{default} missing from\n{help}");
        }
    }
}
