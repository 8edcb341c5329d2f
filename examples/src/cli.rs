//! Command-line arguments of the `demo` server.

use std::net::SocketAddr;
use std::time::Duration;

use subscope::{Config, Delivery, Overflow, Rate};

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

/// Parsed `demo` arguments.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoArgs {
    /// Where to listen (`--addr`, default `127.0.0.1:8000`; port 0 picks one).
    pub addr: SocketAddr,
    /// The runtime (`--runtime tokio|smol|async-std`, default `tokio`, else the first
    /// compiled in).
    pub runtime: RuntimeChoice,
    /// Server settings from `--init-timeout-ms`, `--keepalive-ms`, `--write-timeout-ms`,
    /// `--max-subscriptions`, `--inbound-rate`, `--max-message-size`, `--max-connections`.
    pub config: Config,
    /// Topic delivery from `--subscriber-buffer` and `--overflow`.
    pub delivery: Delivery,
    /// `--auth-token TOKEN`: require `{"token": TOKEN}` in `connection_init` (close 4403
    /// otherwise). Off by default.
    pub auth_token: Option<String>,
    /// `--redis URL`: back `messages`/`publish` with Redis pub/sub (feature `redis`).
    pub redis: Option<String>,
}

/// A command line the demo cannot run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CliError {
    /// `--help` was asked for.
    #[error("{USAGE}")]
    Help,
    /// An option that does not exist.
    #[error("unknown option `{0}`\n\n{USAGE}")]
    UnknownOption(String),
    /// An option without its value.
    #[error("option `{0}` needs a value")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("invalid value `{value}` for `{option}`: {why}")]
    InvalidValue {
        /// The option.
        option: String,
        /// The value given.
        value: String,
        /// What was expected.
        why: &'static str,
    },
    /// A runtime this binary was built without.
    #[error("`{0}` is not compiled in: rebuild with `--features {0}`")]
    RuntimeNotCompiled(String),
}

/// The usage text.
pub const USAGE: &str =
    "usage: demo [--addr HOST:PORT] [--runtime tokio|smol|async-std] [--init-timeout-ms N] \
[--keepalive-ms N] [--write-timeout-ms N] [--max-subscriptions N] [--auth-token TOKEN] [--redis URL] \
[--subscriber-buffer N] [--overflow end|drop-oldest|drop-newest] [--inbound-rate N] \
[--max-message-size BYTES] [--max-connections N]

  --addr HOST:PORT        listen address (default 127.0.0.1:8000; port 0 picks a free port)
  --runtime NAME          tokio, smol or async-std (default tokio)
  --init-timeout-ms N     time to send connection_init, 0 disables (default 3000)
  --keepalive-ms N        ping interval and liveness timeout, 0 disables (default 12000)
  --write-timeout-ms N    stuck-write timeout, 0 disables (default 10000)
  --max-subscriptions N   live operations per connection (default 100)
  --auth-token TOKEN      require {\"token\": TOKEN} in connection_init (default: open)
  --redis URL             messages/publish through Redis pub/sub, e.g. redis://127.0.0.1:6379
  --subscriber-buffer N   events one messages() subscriber may have queued (default 1024)
  --overflow POLICY       end, drop-oldest or drop-newest, when a subscriber's buffer is full
                          (default end: the subscriber gets a SUBSCRIBER_LAGGED error, then complete)
  --inbound-rate N        inbound messages per second per connection, bursts of 2N; 0 = off
                          (default off)
  --max-message-size B    largest inbound message in bytes (default 1048576)
  --max-connections N     live connections; past it 1013 Try again later (default unlimited)";

fn runtime(name: &str) -> Result<RuntimeChoice, CliError> {
    match name {
        "tokio" if cfg!(feature = "tokio") => Ok(RuntimeChoice::Tokio),
        "smol" if cfg!(feature = "smol") => Ok(RuntimeChoice::Smol),
        "async-std" if cfg!(feature = "async-std") => Ok(RuntimeChoice::AsyncStd),
        "tokio" | "smol" | "async-std" => Err(CliError::RuntimeNotCompiled(name.to_owned())),
        _ => Err(CliError::InvalidValue {
            option: "--runtime".into(),
            value: name.into(),
            why: "expected tokio, smol or async-std",
        }),
    }
}

fn number(option: &str, value: &str) -> Result<u64, CliError> {
    value.parse().map_err(|_| CliError::InvalidValue {
        option: option.into(),
        value: value.into(),
        why: "expected a non-negative integer",
    })
}

fn count(option: &str, value: &str) -> Result<usize, CliError> {
    number(option, value).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

impl DemoArgs {
    /// Parses arguments (without the program name). Accepts `--opt value` and `--opt=value`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, CliError> {
        let mut out = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            runtime: ["tokio", "smol", "async-std"]
                .into_iter()
                .find_map(|name| runtime(name).ok())
                .unwrap_or(RuntimeChoice::Tokio),
            config: Config::default(),
            delivery: Delivery::default(),
            auth_token: None,
            redis: None,
        };
        let mut explicit_runtime = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(CliError::Help);
            }
            let (option, inline) = match arg.split_once('=') {
                Some((o, v)) if o.starts_with("--") => (o.to_owned(), Some(v.to_owned())),
                _ => (arg, None),
            };
            let known = [
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
            ];
            if !known.contains(&option.as_str()) {
                return Err(CliError::UnknownOption(option));
            }
            let Some(value) = inline.or_else(|| args.next()) else {
                return Err(CliError::MissingValue(option));
            };
            // The flags' 0 means "off", which the library spells `None`.
            let ms =
                |v: &str| number(&option, v).map(|n| (n > 0).then(|| Duration::from_millis(n)));
            match option.as_str() {
                "--addr" => {
                    // An IP address, or a host name that resolves (the first address wins).
                    let resolved = value.parse().ok().or_else(|| {
                        std::net::ToSocketAddrs::to_socket_addrs(value.as_str())
                            .ok()
                            .and_then(|mut addrs| addrs.next())
                    });
                    out.addr = resolved.ok_or_else(|| CliError::InvalidValue {
                        option: option.clone(),
                        value: value.clone(),
                        why: "expected HOST:PORT",
                    })?;
                }
                "--runtime" => explicit_runtime = Some(value),
                "--auth-token" => out.auth_token = Some(value),
                "--redis" if cfg!(feature = "redis") => out.redis = Some(value),
                "--redis" => return Err(CliError::RuntimeNotCompiled("redis".into())),
                "--init-timeout-ms" => out.config = out.config.init_timeout(ms(&value)?),
                "--keepalive-ms" => {
                    let d = ms(&value)?;
                    out.config = out.config.keepalive_interval(d).keepalive_timeout(d);
                }
                "--write-timeout-ms" => out.config = out.config.write_timeout(ms(&value)?),
                "--overflow" => {
                    let policy: Overflow = value.parse().map_err(|_| CliError::InvalidValue {
                        option: option.clone(),
                        value: value.clone(),
                        why: "expected end, drop-oldest or drop-newest",
                    })?;
                    out.delivery = out.delivery.overflow(policy);
                }
                "--subscriber-buffer" => {
                    let n = count(&option, &value)?;
                    if n == 0 {
                        return Err(CliError::InvalidValue {
                            option,
                            value,
                            why: "expected at least 1",
                        });
                    }
                    out.delivery = out.delivery.buffer(n);
                }
                "--inbound-rate" => {
                    let n = u32::try_from(number(&option, &value)?).unwrap_or(u32::MAX);
                    let rate = (n > 0).then(|| Rate::new(n, n.saturating_mul(2)));
                    out.config = out.config.inbound_rate(rate);
                }
                "--max-message-size" => {
                    out.config = out.config.max_message_size(count(&option, &value)?);
                }
                "--max-connections" => {
                    out.config = out.config.max_connections(Some(count(&option, &value)?));
                }
                _ => {
                    let n = number(&option, &value)?;
                    out.config = out
                        .config
                        .max_subscriptions(usize::try_from(n).unwrap_or(usize::MAX));
                }
            }
        }
        if let Some(name) = explicit_runtime {
            out.runtime = runtime(&name)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<DemoArgs, CliError> {
        DemoArgs::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_values() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.addr.to_string(), "127.0.0.1:8000");
        let a = parse(&[
            "--addr",
            "127.0.0.1:0",
            "--keepalive-ms=250",
            "--max-subscriptions",
            "3",
        ])
        .expect("values");
        assert_eq!(a.addr.port(), 0);
        let a = parse(&["--addr", "localhost:0"]).expect("host name");
        assert!(a.addr.ip().is_loopback());
        assert!(matches!(
            parse(&["--addr", "nope"]),
            Err(CliError::InvalidValue { .. })
        ));
        assert_eq!(a.config.enabled_subprotocols().len(), 2);
    }

    #[test]
    fn delivery_and_limit_flags() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.delivery, Delivery::default());
        assert!(format!("{:?}", a.config).contains("inbound_rate: None"));
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
        assert!(matches!(
            parse(&["--overflow", "sometimes"]),
            Err(CliError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse(&["--subscriber-buffer", "0"]),
            Err(CliError::InvalidValue { .. })
        ));
        let a = parse(&["--inbound-rate", "0"]).expect("off");
        assert!(format!("{:?}", a.config).contains("inbound_rate: None"));
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
        assert!(matches!(
            parse(&["--nope"]),
            Err(CliError::UnknownOption(_))
        ));
        assert!(matches!(parse(&["--addr"]), Err(CliError::MissingValue(_))));
        assert!(matches!(
            parse(&["--init-timeout-ms", "-1"]),
            Err(CliError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse(&["--runtime", "tokyo"]),
            Err(CliError::InvalidValue { .. })
        ));
    }
}
