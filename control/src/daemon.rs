//! `spillway run`: load and attach XDP, fill the maps, serve the API, stop cleanly on a signal.

use std::sync::{Arc, atomic::Ordering};

use tokio::{io::unix::AsyncFd, net::TcpListener, signal::unix::SignalKind};

use crate::{
    api::{self, AppState},
    catalog::Catalog,
    config::Config,
    dataplane::{Dataplane, LoadOptions},
    dns::{self, Authority},
    error::Result,
};

pub async fn run(config: Config) -> Result<()> {
    let catalog = Catalog::from_config(&config)?;
    let token = config.api_token()?;

    let dataplane = if config.server.xdp_interfaces.is_empty() {
        tracing::info!("no xdp_interfaces: XDP is off");
        None
    } else {
        let mut dp = Dataplane::load(LoadOptions::default())?;
        // Maps first, then attach: the first packet already finds every record.
        catalog.install(&mut dp)?;
        if let Some(logger) = dp.take_logger() {
            spawn_ebpf_logger(logger);
        }
        for iface in &config.server.xdp_interfaces {
            dp.attach(iface, config.server.xdp_mode)?;
            tracing::info!(interface = %iface, mode = ?config.server.xdp_mode, "XDP attached");
        }
        Some(dp)
    };
    let state = AppState::new(catalog, dataplane, token);
    if !config.server.listen.is_empty() {
        let serial_base =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let authority = Arc::new(Authority::new(&config, serial_base));
        dns::server::serve(&config.server.listen, authority, state.clone()).await?;
    }
    let listener = TcpListener::bind(config.api.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "control API listening");
    state.ready.store(true, Ordering::Release);

    axum::serve(listener, api::router(state.clone())).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("stopping: detaching XDP");
    state.ready.store(false, Ordering::Release);
    // Dropping the data plane detaches the programs and frees the maps.
    state.engine().dataplane.take();
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

fn spawn_ebpf_logger(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its ring-buffer fd and keeps it open, unchanged, until dropped,
    // and it is dropped only with the AsyncFd.
    match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
        Ok(mut fd) => {
            tokio::spawn(async move {
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else { break };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => tracing::warn!("eBPF log reader not started: {e}"),
    }
}
