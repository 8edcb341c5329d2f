//! The demo server: the demo schema over both subprotocols on `ws://HOST:PORT/graphql`.
//!
//! `cargo run -p subscope-examples --bin demo -- --addr 127.0.0.1:8000`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use subscope::Gauges;
use subscope_examples::cli::{CliError, DemoArgs, RuntimeChoice};
use subscope_examples::{Broker, LiveCounter, build_schema};

/// How long shutdown waits for connections to close before dropping them.
const GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match DemoArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(CliError::Help) => {
            println!("{}", subscope_examples::cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("demo: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match args.runtime {
        #[cfg(feature = "tokio")]
        RuntimeChoice::Tokio => tokio_main::run(args),
        #[allow(unreachable_patterns)]
        other => Err(format!("runtime {other:?} is not compiled in").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo: {err}");
            ExitCode::FAILURE
        }
    }
}

fn announce(addr: std::net::SocketAddr) {
    println!("listening on ws://{addr}/graphql");
}

#[cfg(feature = "tokio")]
mod tokio_main {
    use super::*;
    use subscope::tokio::TokioRuntime;

    pub(super) fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let gauges = Arc::new(Gauges::new());
            let schema = build_schema(
                Arc::new(TokioRuntime::new()),
                Arc::clone(&gauges),
                Broker::default(),
                LiveCounter::default(),
            );
            let server = subscope::tokio::server(schema)
                .config(args.config)
                .gauges(gauges)
                .build();
            let listener = tokio::net::TcpListener::bind(args.addr).await?;
            announce(listener.local_addr()?);
            let serving = tokio::spawn({
                let server = server.clone();
                async move { server.serve(listener).await }
            });
            wait_for_signal().await?;
            tracing::info!("shutting down");
            server.shutdown(GRACE).await;
            serving.await??;
            Ok(())
        })
    }

    async fn wait_for_signal() -> std::io::Result<()> {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await
    }
}
