//! Log set-up for the binaries: structured lines on stderr, filtered by
//! `RUST_LOG` (default `info`), with colours only when stderr is a
//! terminal (and `NO_COLOR` is unset). A log line that cannot be written (a
//! full disk, stderr on `/dev/full`) is dropped: logging never panics and
//! never stops the thread that logs.

use std::io::IsTerminal as _;

/// Installs the global subscriber (once; later calls do nothing).
pub fn init() {
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        // Its default reports a failed write with eprintln!, which panics
        // when stderr itself is what failed.
        .log_internal_errors(false)
        .try_init();
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are
/// installed when this is called, not when the future is first polled, so
/// a signal that arrives right after the process said it listens stops it
/// gracefully instead of killing it. Call it inside a Tokio runtime, before
/// announcing that the process listens.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut s), Err(_)) | (Err(_), Ok(mut s)) => {
                s.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending::<()>().await,
        }
        tracing::info!("shutdown requested");
    }
}
