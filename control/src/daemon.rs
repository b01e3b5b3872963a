//! `spillway run`: load and attach XDP, fill the maps, serve the API, stop cleanly on a signal.
//!
//! XDP is pinned: on SIGTERM, or when the daemon dies, the program keeps answering from the
//! last state (fail-static) unless `--detach-on-exit`. The next start takes the pinned maps
//! over (or migrates them to a new layout) and swaps its program into the pinned links.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    io::unix::AsyncFd,
    net::TcpListener,
    signal::unix::{Signal, SignalKind},
    sync::{mpsc, oneshot, watch},
};

use crate::{
    api::{self, AppState},
    catalog::Catalog,
    cluster::{
        self, ClusterStatus,
        config::{ClusterConfig, Role},
        state::{Keys, NodeEntry},
    },
    config::Config,
    dataplane::{Attached, Dataplane, LoadOptions, pins::MapsOrigin},
    dns::{self, Authority, server::tcp_from_fd},
    engine::{Engine, unix_now},
    error::{Error, Result},
    handover::{self, Event, Inherited, Kind, Phase, Registry, Takeover},
};

/// A host that joined its cluster: the client that reached etcd, and its status.
struct Joined {
    etcd: cluster::Etcd,
    status: Arc<ClusterStatus>,
    /// An edge: the revision of the state it starts from.
    follow_from: Option<i64>,
}

/// Reach etcd (or fail: a host that cannot is not started); an edge loads the cluster's
/// state into the catalog before the data plane is attached.
async fn join_cluster(cfg: &ClusterConfig, engine: &mut Engine) -> Result<Joined> {
    let (mut etcd, revision) = cluster::connect(cfg).await?;
    let mut follow_from = None;
    if cfg.role == Role::Edge {
        let t = etcd.timeout();
        let snap = cluster::follow::load(etcd.client().await?, &Keys::new(&cfg.key_prefix), t).await?;
        let customers = snap.changes.len();
        follow_from = Some(snap.revision);
        cluster::follow::apply_snapshot(engine, snap);
        tracing::info!(revision = follow_from, keys = customers, "the cluster's state loaded from etcd");
    }
    let status = Arc::new(ClusterStatus::new(cfg, follow_from.unwrap_or(revision)));
    tracing::info!(role = cfg.role.as_str(), name = %status.name, revision, "joined the cluster");
    Ok(Joined { etcd, status, follow_from })
}

/// Each role's work with etcd: a control host publishes and reads the edges' answers; an edge
/// follows the state; every DNS host registers.
fn spawn_cluster_tasks(
    state: &Arc<AppState>,
    config: &Config,
    cfg: &ClusterConfig,
    joined: Joined,
    phase: &watch::Receiver<Phase>,
) {
    let Joined { etcd: client, status, follow_from } = joined;
    if cfg.role.controls() {
        let api_url = cfg.api_url.clone().unwrap_or_else(|| format!("http://{}", config.api.listen));
        let task = cluster::elect::elect_loop(
            state.clone(),
            client.clone(),
            cfg.clone(),
            status.clone(),
            api_url,
            phase.clone(),
        );
        tokio::spawn(task);
        let task =
            cluster::publish::publish_loop(state.clone(), client.clone(), cfg.clone(), status.clone(), phase.clone());
        tokio::spawn(task);
        tokio::spawn(cluster::answers::answers_loop(state.clone(), client.clone(), cfg.clone(), phase.clone()));
    }
    if let Some(from) = follow_from {
        let task = cluster::follow::follow_loop(
            state.clone(),
            client.clone(),
            cfg.clone(),
            status.clone(),
            from,
            phase.clone(),
        );
        tokio::spawn(task);
    }
    if cfg.role.serves_dns() {
        let metrics_url = cfg.metrics_url.clone().unwrap_or_else(|| format!("http://{}/metrics", config.api.listen));
        let entry = NodeEntry::new(status.name.clone(), cfg.role.as_str(), metrics_url);
        tokio::spawn(cluster::register::register_loop(client, cfg.clone(), entry, phase.clone()));
    }
}

/// After the new daemon is ready, how long the old one gives its listeners to finish the
/// queries in hand.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// How `spillway run` was asked to behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// On a clean stop, remove the program, its links and pins instead of leaving XDP
    /// answering.
    pub detach_on_exit: bool,
}

/// Why the daemon stopped.
enum Exit {
    /// SIGTERM or SIGINT.
    Signal,
    /// A new daemon took the sockets and the data plane over.
    HandedOver,
}

pub async fn run(config: Config, opts: RunOptions) -> Result<()> {
    raise_fd_limit();
    let mut signals = Signals::new()?;
    // A planned restart: the running daemon hands its sockets over, with what is queued in
    // them, and stops writing before we read the store.
    let rendezvous = handover::socket_name(&config.server.bpffs_dir);
    let mut takeover = Takeover::request(&rendezvous)?;
    let mut inherited = match &mut takeover {
        Some(t) => {
            tracing::info!(sockets = t.inherited.len(), "taking over from the running daemon");
            std::mem::take(&mut t.inherited)
        }
        None => Inherited::default(),
    };
    // The store and the contracts in force decide the fractions before anything is attached.
    let mut engine = Engine::new(&config, Catalog::from_config(&config)?, None, unix_now())?;
    match &config.store {
        Some(_) => tracing::info!(store = %engine.store.describe(), market = engine.market.is_some(), "store open"),
        None => tracing::info!("no store: an edge keeps nothing of its own"),
    }
    // A cluster's host needs etcd to start; an edge starts from etcd's state.
    let cluster = match &config.cluster {
        Some(c) => Some(join_cluster(c, &mut engine).await?),
        None => None,
    };

    engine.dataplane = if config.server.xdp_interfaces.is_empty() {
        tracing::info!("no xdp_interfaces: XDP is off");
        None
    } else {
        Some(start_dataplane(&config, &engine.catalog)?)
    };
    let state = AppState::new(engine, cluster.as_ref().map(|c| c.status.clone()));
    let (phase_tx, phase) = watch::channel(Phase::Running);
    if let (Some(joined), Some(cfg)) = (cluster, &config.cluster) {
        spawn_cluster_tasks(&state, &config, cfg, joined, &phase);
    }
    // A control replica knows who leads (itself or another) before it says it is ready.
    if let Some(c) = state.cluster.as_ref().filter(|c| c.role.controls()) {
        let cfg = config.cluster.as_ref().expect("a cluster's status");
        let deadline = tokio::time::Instant::now() + cfg.lease_ttl() + 2 * cfg.timeout();
        while !(c.leads() || c.leader().is_some()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match c.leader() {
            Some(url) if !c.leads() => tracing::info!(leader = %url, "a follower: writes go to the leader"),
            Some(_) => {}
            None => tracing::warn!("no leader elected yet: writes are refused until one is"),
        }
    }
    if state.engine().market.is_some() {
        tokio::spawn(market_scheduler(state.clone(), phase.clone()));
        tokio::spawn(controller_loop(state.clone(), phase.clone()));
    }
    if !config.server.xdp_interfaces.is_empty() && config.server.xdp_addresses.is_empty() {
        tokio::spawn(follow_host_addresses(state.clone(), config.clone(), phase.clone()));
    }
    // An edge's proxies are the control hosts' choice, from etcd.
    if config.cluster.as_ref().is_none_or(|c| c.role != Role::Edge) {
        tokio::spawn(crate::fleet::watch::watch_proxies(state.clone(), phase.clone()));
    }
    tokio::spawn(history_loop(state.clone()));
    let registry = Registry::default();
    if !config.server.listen.is_empty() {
        // The snapshots carry the same serial as the XDP program's negative answers.
        let zone = state.engine().catalog.published();
        let cx = Arc::new(dns::server::DnsContext {
            authority: Authority::new(&config),
            zone,
            state: state.clone(),
            rrl: dns::rrl::Limiter::new(&config.rrl),
        });
        dns::server::serve(&config.server.listen, &config.server.dns_cpus, cx, &mut inherited, &registry, &phase)?;
    }
    let listener = match inherited.take(Kind::Api, config.api.listen).pop() {
        Some(fd) => tcp_from_fd(fd)?,
        None => TcpListener::bind(config.api.listen).await?,
    };
    registry.add(Kind::Api, config.api.listen, &listener)?;
    if !inherited.is_empty() {
        tracing::info!(sockets = inherited.len(), "inherited sockets of addresses no longer configured are closed");
    }
    drop(inherited);
    tracing::info!(addr = %listener.local_addr()?, "control API listening");
    state.ready.store(true, Ordering::Release);
    if let Some(t) = takeover {
        t.finish()?;
        tracing::info!("ready: the previous daemon drains and exits");
    }
    let mut events = handover::serve(rendezvous, registry.clone());

    let exit = serve_api(&state, listener, &registry, &mut events, &mut signals, &phase_tx).await?;
    state.ready.store(false, Ordering::Release);
    // The store needs no closing: every change was committed when it was answered.
    let dataplane = state.engine().dataplane.take();
    match (exit, dataplane) {
        (Exit::HandedOver, _) => tracing::info!("stopped: the new daemon has the sockets and XDP"),
        (Exit::Signal, Some(dp)) if opts.detach_on_exit => {
            let removed = dp.unpin_all()?;
            tracing::info!(?removed, "stopped: XDP detached and unpinned (--detach-on-exit)");
        }
        (Exit::Signal, Some(_)) => tracing::info!(
            "stopped: XDP keeps answering from the last state (fail-static); `spillway detach` removes it"
        ),
        (Exit::Signal, None) => tracing::info!("stopped"),
    }
    Ok(())
}

/// How much lower than the DNS threads the API, market, controller and store threads run
/// (their nice value): when the CPUs are short, an answer goes before an order.
pub const BACKGROUND_NICE: libc::c_int = 5;

/// The runtime of everything but DNS (which has threads of its own, see
/// [`dns::server::serve`]): the API, the market, the controller, the scrapes and the store's
/// blocking writes. Its threads run at [`BACKGROUND_NICE`], on `cpus` (any when empty).
pub fn background_runtime(cpus: Vec<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spillway-bg")
        .on_thread_start(move || {
            if let Err(e) = crate::affinity::pin_current_thread(&cpus) {
                tracing::warn!(?cpus, "server.background_cpus: {e}");
            }
            // SAFETY: plain syscalls on the calling thread (a tid is a PRIO_PROCESS who on Linux).
            unsafe {
                let tid = libc::gettid();
                if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE) != 0 {
                    tracing::debug!("setpriority: {}", std::io::Error::last_os_error());
                }
            }
        })
        .build()
}

/// A daemon facing the internet holds many TCP connections: the soft descriptor limit goes up
/// to the hard one (the TCP caps keep the count below it).
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid out-parameter, then the same struct back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Load the program on the pinned maps (taken over, migrated or new), put the catalog in
/// them, then attach: swapped into the pinned links where there are some, so no packet goes
/// unanswered across a restart.
fn start_dataplane(config: &Config, catalog: &Catalog) -> Result<Dataplane> {
    let pin_dir = config.server.bpffs_dir.clone();
    let mut dp = Dataplane::load(LoadOptions { pin_dir: Some(pin_dir.clone()), ..Default::default() })?;
    let layout = dp.layout().unwrap_or_default().to_owned();
    let dir = pin_dir.display();
    match dp.maps_origin() {
        Some(MapsOrigin::Reused) => tracing::info!(%dir, %layout,
            "reusing the pinned maps (same layout): reconciling them with the config and store"),
        Some(MapsOrigin::Migrated { from }) => tracing::info!(%dir, ?from, to = %layout,
            "map layout changed: migrating (new maps filled first, then one program swap)"),
        _ => tracing::info!(%dir, %layout, "no pinned maps: new maps created and pinned"),
    }
    // Maps first, then attach: the first packet already finds every record.
    catalog.install(&mut dp)?;
    crate::dataplane::guard::install(&mut dp, config)?;
    if let Some(logger) = dp.take_logger() {
        spawn_ebpf_logger(logger);
    }
    let mode = config.server.xdp_mode;
    let mut new = Vec::new();
    for iface in &config.server.xdp_interfaces {
        match dp.attach(iface, mode) {
            Ok(Attached::Swapped) => tracing::info!(interface = %iface, ?mode,
                "XDP program swapped into the pinned link (bpf_link_update): no gap"),
            Ok(Attached::New) => {
                tracing::info!(interface = %iface, ?mode, "XDP attached and pinned");
                new.push(iface.clone());
            }
            Err(e) => {
                // A start that fails takes back what it attached; what ran before keeps
                // running (now with this program, on maps it has reconciled).
                if let Err(undo) = dp.detach_new(&new) {
                    tracing::error!("undoing the attachments of a failed start: {undo}");
                }
                return Err(e);
            }
        }
    }
    dp.retire(&config.server.xdp_interfaces)?;
    Ok(dp)
}

/// Serve the API until a signal, or until a new daemon takes over. While a new daemon starts,
/// the API and background work pause (requests wait in the listener's backlog for whichever
/// daemon serves next); if it goes away before it is ready, they resume.
async fn serve_api(
    state: &Arc<AppState>,
    mut listener: TcpListener,
    registry: &Registry,
    events: &mut mpsc::UnboundedReceiver<Event>,
    signals: &mut Signals,
    phase: &watch::Sender<Phase>,
) -> Result<Exit> {
    loop {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = api::router(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
        });
        let event = tokio::select! {
            _ = signals.recv() => None,
            e = next_event(events) => Some(e),
        };
        // In-flight requests finish; the listener stays open (the registry holds a copy).
        let _ = stop_tx.send(());
        let _ = server.await;
        match event {
            None => return Ok(Exit::Signal),
            Some(Event::Quiesce(ack)) => {
                phase.send_replace(Phase::Quiesced);
                // A market or controller tick in progress ends before we answer.
                state.with_engine(|_| ()).await;
                let _ = ack.send(());
                let next = tokio::select! {
                    _ = signals.recv() => None,
                    e = next_event(events) => Some(e),
                };
                match next {
                    None => return Ok(Exit::Signal),
                    Some(Event::Drain) => {
                        phase.send_replace(Phase::Draining);
                        tokio::time::sleep(DRAIN_GRACE).await;
                        return Ok(Exit::HandedOver);
                    }
                    Some(_) => {
                        phase.send_replace(Phase::Running);
                        tracing::info!("resumed");
                    }
                }
            }
            Some(_) => {}
        }
        let fd = registry.dup_of(Kind::Api).ok_or_else(|| Error::Handover("the API listener is gone".into()))?;
        listener = tcp_from_fd(fd)?;
    }
}

/// The next handover event; never, once the handover thread has ended.
async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    match events.recv().await {
        Some(e) => e,
        None => std::future::pending().await,
    }
}

/// SIGTERM and SIGINT, registered once so none is missed between waits.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        Ok(Self {
            term: tokio::signal::unix::signal(SignalKind::terminate())?,
            int: tokio::signal::unix::signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM"),
            _ = self.int.recv() => tracing::info!("SIGINT"),
        }
    }
}

pub(crate) fn running(phase: &watch::Receiver<Phase>) -> bool {
    *phase.borrow() == Phase::Running
}

/// Wake at every market deadline (an auction closing, a contract starting or ending, to the
/// second) and at least once a second, and do the market's work.
async fn market_scheduler(state: Arc<AppState>, phase: watch::Receiver<Phase>) {
    loop {
        let next = state
            .with_engine(|engine| {
                let now = unix_now();
                engine.market.as_ref().and_then(|m| m.next_event(now)).unwrap_or(now + 1).min(now + 1)
            })
            .await;
        let wake = std::time::UNIX_EPOCH + std::time::Duration::from_secs(next.max(0) as u64);
        let wait = wake.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.market_changed.notified() => {}
        }
        let phase = phase.clone();
        let leads = state.leads();
        state
            .with_engine(move |engine| {
                if running(&phase)
                    && leads
                    && let Err(e) = engine.tick(unix_now())
                {
                    tracing::error!("market tick: {e}");
                }
            })
            .await;
    }
}

/// The controller's tick, once a second (a fifth of a second past it, so the proxies'
/// reports of that second are in).
async fn controller_loop(state: Arc<AppState>, phase: watch::Receiver<Phase>) {
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let next = std::time::Duration::from_secs(now.as_secs() + 1) + std::time::Duration::from_millis(200);
        tokio::time::sleep(next.saturating_sub(now)).await;
        let t = crate::engine::unix_now_f64();
        let phase = phase.clone();
        let leads = state.leads();
        state
            .with_engine(move |engine| {
                if running(&phase)
                    && leads
                    && let Err(e) = engine.control_tick(t)
                {
                    tracing::error!("controller tick: {e}");
                }
            })
            .await;
    }
}

/// A sample of every buyer into the history, every `history::SAMPLE_EVERY_S` (memory only:
/// it runs in every phase).
async fn history_loop(state: Arc<AppState>) {
    let every = Duration::from_secs(crate::history::SAMPLE_EVERY_S as u64);
    let mut interval = tokio::time::interval(every);
    loop {
        interval.tick().await;
        state.with_engine(|engine| engine.sample_history(unix_now())).await;
    }
}

/// How often the host's addresses are read again (without `server.xdp_addresses`).
const HOST_ADDRESSES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keep the XDP program's address set equal to the host's: an address added after the start
/// is answered in XDP within [`HOST_ADDRESSES_EVERY`] (until then its queries go to the
/// kernel, and so to the userspace server), one removed is no longer answered.
async fn follow_host_addresses(state: Arc<AppState>, config: Config, phase: watch::Receiver<Phase>) {
    let mut last = crate::dataplane::guard::local_addresses(&config).ok();
    loop {
        tokio::time::sleep(HOST_ADDRESSES_EVERY).await;
        let addrs = match crate::dataplane::guard::local_addresses(&config) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        };
        if last.as_ref() == Some(&addrs) || !running(&phase) {
            continue;
        }
        let set = addrs.clone();
        let done = state.with_engine(move |engine| engine.dataplane.as_mut().map(|dp| dp.set_local_addrs(&set))).await;
        match done {
            Some(Ok(())) => {
                tracing::info!(?addrs, "the host's addresses changed: XDP answers queries to these");
                last = Some(addrs);
            }
            Some(Err(e)) => tracing::error!("updating the XDP address set: {e}"),
            None => return,
        }
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
