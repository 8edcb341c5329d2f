//! The demo server: the demo schema over both subprotocols on `ws://HOST:PORT/graphql`
//! (`wss://` with `--tls-cert` and `--tls-key`).
//!
//! `cargo run -p subscope-examples --bin demo -- --addr 127.0.0.1:8000 --runtime smol`
//!
//! Ctrl-C (SIGINT) or SIGTERM triggers the graceful shutdown: every socket is closed 1001
//! `Going away`, and the process exits once every connection is gone.

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use subscope::rt::{Listener, Runtime};
use subscope::{Gauges, Server};
use subscope_examples::auth::{AuthToken, TokenAuth};
use subscope_examples::cli::{DemoArgs, RuntimeChoice};
use subscope_examples::{Broker, DemoSchema, LiveCounter, build_schema_with_auth};

/// How long shutdown waits for connections to close before dropping them.
const GRACE: Duration = Duration::from_secs(5);

type Stop = async_channel::Receiver<()>;

fn main() -> ExitCode {
    subscope_examples::init_tracing();
    // `--help` prints and exits 0; a usage error prints and exits 2.
    let args = DemoArgs::parse(std::env::args().skip(1)).unwrap_or_else(|err| err.exit());
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: DemoArgs) -> Result<(), Box<dyn Error>> {
    // One signal handler for every runtime: it only wakes the async side.
    let (stop_tx, stop_rx) = async_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })?;
    match args.runtime {
        #[cfg(feature = "tokio")]
        RuntimeChoice::Tokio => on_tokio(args, stop_rx),
        #[cfg(feature = "smol")]
        RuntimeChoice::Smol => on_smol(args, stop_rx),
        #[cfg(feature = "async-std")]
        RuntimeChoice::AsyncStd => on_async_std(args, stop_rx),
        #[allow(unreachable_patterns)]
        other => Err(format!("runtime {other:?} is not compiled in").into()),
    }
}

/// The demo server on runtime `rt`, with the library's gauges shared with the schema.
/// Without `--auth-token` every connection is accepted; without `--redis` topics live in
/// memory.
fn demo_server<R: Runtime>(
    rt: R,
    args: &DemoArgs,
) -> Result<Server<DemoSchema, TokenAuth, R>, Box<dyn Error>> {
    let gauges = Arc::new(Gauges::new());
    let broker = match &args.redis {
        #[cfg(feature = "redis")]
        Some(url) => Broker::Redis(subscope_redis::RedisTopics::new(&rt, url, args.delivery)?),
        _ => Broker::memory(args.delivery),
    };
    let auth = if args.auth_tokens.is_empty() {
        TokenAuth::open()
    } else {
        TokenAuth::new(args.auth_tokens.iter().map(|t| (t.as_str(), "demo"))).ttl(args.auth_ttl)
    };
    let schema = build_schema_with_auth(
        Arc::new(rt.clone()),
        Arc::clone(&gauges),
        broker.clone(),
        LiveCounter::default(),
        Some(auth.clone()),
    );
    let mut config = args.config.clone().metrics(true).graphiql(true);
    if let Some((cert, key)) = &args.tls {
        config = config.tls(subscope::tls::Tls::from_pem_files(cert, key)?);
    }
    let builder = Server::builder(rt, schema)
        .hooks(auth.clone())
        .config(config)
        .gauges(gauges);
    let server = broker.bind(builder).build();
    // `revokeToken` ends the token's sessions through the server. (The server then holds
    // itself through its hooks: it lives as long as the process, as the demo's does.)
    let revoking = server.clone();
    auth.set_revoker(move |token| {
        revoking.revoke(|session| {
            session
                .data::<AuthToken>()
                .is_some_and(|authorized| authorized.0 == token)
        })
    });
    Ok(server)
}

fn announce(addr: SocketAddr, args: &DemoArgs) {
    let scheme = if args.tls.is_some() { "wss" } else { "ws" };
    println!("listening on {scheme}://{addr}/graphql");
}

/// Serves until a signal arrives, then shuts down gracefully. Runtime-independent.
async fn serve_until_signal<R: Runtime, L: Listener>(
    server: Server<DemoSchema, TokenAuth, R>,
    listener: L,
    stop: Stop,
) {
    let signal = async move {
        let _ = stop.recv().await;
    };
    server.serve_with_shutdown(listener, signal, GRACE).await;
}

#[cfg(feature = "tokio")]
fn on_tokio(args: DemoArgs, stop: Stop) -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = demo_server(subscope::tokio::TokioRuntime::new(), &args)?;
        let listener = subscope::tokio::TcpListener::bind(args.addr).await?;
        announce(listener.local_addr()?, &args);
        serve_until_signal(server, listener, stop).await;
        Ok(())
    })
}

#[cfg(feature = "smol")]
fn on_smol(args: DemoArgs, stop: Stop) -> Result<(), Box<dyn Error>> {
    // An executor thread per core, joined when serving is done.
    subscope::smol::run(|rt| async move {
        let server = demo_server(rt, &args)?;
        let listener = subscope::smol::TcpListener::bind(args.addr).await?;
        announce(listener.local_addr()?, &args);
        serve_until_signal(server, listener, stop).await;
        Ok(())
    })
}

#[cfg(feature = "async-std")]
fn on_async_std(args: DemoArgs, stop: Stop) -> Result<(), Box<dyn Error>> {
    async_std::task::block_on(async {
        let server = demo_server(subscope::async_std::AsyncStdRuntime::new(), &args)?;
        let listener = subscope::async_std::TcpListener::bind(args.addr).await?;
        announce(listener.local_addr()?, &args);
        serve_until_signal(server, listener, stop).await;
        Ok(())
    })
}
