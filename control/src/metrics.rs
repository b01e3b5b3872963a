//! Prometheus metrics: names as constants, one registry, values read from the data plane's
//! counters at scrape time.

use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::sync::atomic::{AtomicU64, Ordering};

use spillway_common::{
    decision::Target,
    rrl::{RRL_ACTIONS, RrlAction},
    stats::XdpOutcome,
};

use crate::{dataplane::StatsReader, engine::Engine, error::Result};

/// What `/metrics` needs from the engine, copied under its lock in one short step; the BPF
/// counters are read afterwards, without it.
pub struct EngineView {
    scale: f64,
    customers: Vec<CustomerView>,
    /// Each proxy: name, status, load by its last report.
    proxies: Vec<(String, crate::fleet::Status, Option<f64>)>,
}

struct CustomerView {
    id: String,
    index: u32,
    fraction: f64,
    contracted_rps: u64,
    served_rps: Option<f64>,
    setpoint_rps: Option<f64>,
    proxy_ttl: u32,
    /// Answers of the userspace server (XDP's are read at render time).
    userspace: [u64; 3],
}

impl EngineView {
    pub fn of(engine: &Engine) -> Self {
        Self {
            scale: engine.controller.scale(),
            customers: engine
                .catalog
                .customers()
                .iter()
                .map(|c| {
                    let d = engine.decisions.get(&c.config.id);
                    CustomerView {
                        id: c.config.id.clone(),
                        index: c.index,
                        fraction: c.fraction,
                        contracted_rps: c.contracted_rps,
                        served_rps: d.and_then(|d| d.served_rps),
                        setpoint_rps: d.map(|d| d.setpoint_rps),
                        proxy_ttl: c.record.proxy_ttl,
                        userspace: c.live.answers(),
                    }
                })
                .collect(),
            proxies: engine.fleet.proxies().iter().map(|p| (p.config.name.clone(), p.status, p.load_rps)).collect(),
        }
    }
}

pub const DNS_QUERIES_TOTAL: &str = "spillway_dns_queries_total";
pub const ANSWERS_TOTAL: &str = "spillway_answers_total";
pub const CUSTOMER_FRACTION: &str = "spillway_customer_fraction";
pub const XDP_PACKETS_TOTAL: &str = "spillway_xdp_packets_total";
pub const CUSTOMER_CONTRACTED_RPS: &str = "spillway_customer_contracted_rps";
pub const CUSTOMER_SERVED_RPS: &str = "spillway_customer_served_rps";
pub const CUSTOMER_SETPOINT_RPS: &str = "spillway_customer_setpoint_rps";
pub const CUSTOMER_PROXY_TTL: &str = "spillway_customer_proxy_ttl_seconds";
pub const CONTROLLER_SCALE: &str = "spillway_controller_scale";
pub const RRL_TOTAL: &str = "spillway_rrl_total";
pub const PROXY_IN_ANSWERS: &str = "spillway_proxy_in_answers";
pub const PROXY_UP: &str = "spillway_proxy_up";
pub const PROXY_LOAD_RPS: &str = "spillway_proxy_load_rps";
pub const EDGE_STATE_AGE: &str = "spillway_edge_state_age_seconds";
pub const CLUSTER_REVISION: &str = "spillway_cluster_revision";
pub const CLUSTER_ETCD_UP: &str = "spillway_cluster_etcd_up";
pub const CLUSTER_LEADER: &str = "spillway_cluster_leader";

pub const PATH_XDP: &str = "xdp";
pub const PATH_USERSPACE: &str = "userspace";

pub struct Metrics {
    registry: Registry,
    dns_queries: IntCounterVec,
    answers: IntCounterVec,
    fraction: GaugeVec,
    contracted: GaugeVec,
    served: GaugeVec,
    setpoint: GaugeVec,
    proxy_ttl: GaugeVec,
    proxy_in_answers: GaugeVec,
    proxy_up: GaugeVec,
    proxy_load: GaugeVec,
    scale: prometheus::Gauge,
    xdp_packets: IntCounterVec,
    rrl: IntCounterVec,
    /// The userspace server's rate-limit actions (the XDP program's are in its map).
    rrl_userspace: [AtomicU64; RRL_ACTIONS as usize],
    /// A cluster's host: how old its state is, of which etcd revision, whether etcd answers.
    edge_state_age: prometheus::Gauge,
    cluster_revision: prometheus::IntGauge,
    cluster_etcd_up: prometheus::IntGauge,
    /// A control replica: the term it leads, 0 when it does not.
    cluster_leader: prometheus::IntGauge,
    /// Registered with the registry only in a cluster.
    cluster: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Metrics {
    /// The metrics of one host; a cluster's (`cluster`) also say how old its state is.
    pub fn new(cluster: bool) -> Self {
        let registry = Registry::new();
        let dns_queries = IntCounterVec::new(
            Opts::new(DNS_QUERIES_TOTAL, "DNS queries answered, by the path that answered them."),
            &["path"],
        )
        .expect("valid metric");
        let answers = IntCounterVec::new(
            Opts::new(ANSWERS_TOTAL, "Answers for customer names, by where they send the client."),
            &["customer", "target"],
        )
        .expect("valid metric");
        let fraction = GaugeVec::new(
            Opts::new(CUSTOMER_FRACTION, "Share of a customer's queries answered with proxies, as in force."),
            &["customer"],
        )
        .expect("valid metric");
        let contracted = GaugeVec::new(
            Opts::new(CUSTOMER_CONTRACTED_RPS, "Requests/s bought by a customer's contracts in force now."),
            &["customer"],
        )
        .expect("valid metric");
        let served = GaugeVec::new(
            Opts::new(
                CUSTOMER_SERVED_RPS,
                "Requests/s the proxies report serving for a customer (absent when unknown).",
            ),
            &["customer"],
        )
        .expect("valid metric");
        let setpoint = GaugeVec::new(
            Opts::new(CUSTOMER_SETPOINT_RPS, "The controller's target for a customer's served requests/s."),
            &["customer"],
        )
        .expect("valid metric");
        let proxy_ttl = GaugeVec::new(
            Opts::new(
                CUSTOMER_PROXY_TTL,
                "The TTL of a customer's proxy answers, as in force (its own, or shorter by the controller).",
            ),
            &["customer"],
        )
        .expect("valid metric");
        let proxy_in_answers = GaugeVec::new(
            Opts::new(
                PROXY_IN_ANSWERS,
                "1 while the answers may name a proxy; 0 while it is drained, failing its health check, \
                 silent, or above its target load.",
            ),
            &["proxy"],
        )
        .expect("valid metric");
        let proxy_up = GaugeVec::new(
            Opts::new(
                PROXY_UP,
                "1 while a proxy passes its health check and is not silent (drained or hot proxies are up); 0: down.",
            ),
            &["proxy"],
        )
        .expect("valid metric");
        let proxy_load = GaugeVec::new(
            Opts::new(PROXY_LOAD_RPS, "A proxy's requests/s (own and buyers') by its last report (absent before)."),
            &["proxy"],
        )
        .expect("valid metric");
        let scale = prometheus::Gauge::new(
            CONTROLLER_SCALE,
            "Load feedback: the proxies' spare capacity over everything sold, at most 1.",
        )
        .expect("valid metric");
        let xdp_packets = IntCounterVec::new(
            Opts::new(XDP_PACKETS_TOTAL, "Packets seen by the XDP program, by outcome (answered or why passed)."),
            &["outcome"],
        )
        .expect("valid metric");
        let rrl = IntCounterVec::new(
            Opts::new(
                RRL_TOTAL,
                "UDP responses by what the response rate limit did: sent within the rate, dropped, \
                 slipped (sent truncated), exempt (over the rate, from an exempt prefix); XDP and userspace.",
            ),
            &["action"],
        )
        .expect("valid metric");
        for a in RrlAction::ALL {
            rrl.with_label_values(&[a.label()]);
        }
        // Both paths are always exported, even before their first answer.
        dns_queries.with_label_values(&[PATH_XDP]);
        dns_queries.with_label_values(&[PATH_USERSPACE]);
        for c in [&dns_queries, &answers, &xdp_packets, &rrl] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        for g in [&fraction, &contracted, &served, &setpoint, &proxy_ttl, &proxy_in_answers, &proxy_up, &proxy_load] {
            registry.register(Box::new(g.clone())).expect("unique metric");
        }
        registry.register(Box::new(scale.clone())).expect("unique metric");
        let edge_state_age = prometheus::Gauge::new(
            EDGE_STATE_AGE,
            "Seconds since this host last knew its state was etcd's (an edge answers from it meanwhile).",
        )
        .expect("valid metric");
        let cluster_revision =
            prometheus::IntGauge::new(CLUSTER_REVISION, "The etcd revision of the state this host has in force.")
                .expect("valid metric");
        let cluster_etcd_up = prometheus::IntGauge::new(
            CLUSTER_ETCD_UP,
            "1 while etcd answers this host (a control host takes writes only then); 0: it does not.",
        )
        .expect("valid metric");
        let cluster_leader = prometheus::IntGauge::new(
            CLUSTER_LEADER,
            "A control replica: the term it leads the cluster in (its etcd election key's revision); 0: it does not lead.",
        )
        .expect("valid metric");
        if cluster {
            registry.register(Box::new(cluster_leader.clone())).expect("unique metric");
            registry.register(Box::new(edge_state_age.clone())).expect("unique metric");
            registry.register(Box::new(cluster_revision.clone())).expect("unique metric");
            registry.register(Box::new(cluster_etcd_up.clone())).expect("unique metric");
        }
        Self {
            edge_state_age,
            cluster_revision,
            cluster_etcd_up,
            cluster_leader,
            cluster,
            registry,
            dns_queries,
            answers,
            fraction,
            contracted,
            served,
            setpoint,
            proxy_ttl,
            proxy_in_answers,
            proxy_up,
            proxy_load,
            scale,
            xdp_packets,
            rrl,
            rrl_userspace: Default::default(),
        }
    }

    /// What the userspace server's rate limit did with one reply.
    pub fn count_rrl(&self, action: RrlAction) {
        self.rrl_userspace[action as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One more query answered by the userspace server.
    pub fn count_userspace_answer(&self) {
        self.dns_queries.with_label_values(&[PATH_USERSPACE]).inc();
    }

    /// Read the data plane's counters (if XDP is on) and render the text exposition format.
    pub fn render(
        &self,
        engine: &EngineView,
        stats: Option<&StatsReader>,
        cluster: Option<&crate::cluster::ClusterStatus>,
    ) -> Result<String> {
        self.scale.set(engine.scale);
        if let Some(c) = cluster.filter(|_| self.cluster) {
            self.edge_state_age.set(c.state_age_s());
            self.cluster_revision.set(c.revision());
            let up = if c.role.serves_dns() { c.state_age_s() <= c.degraded_after.as_secs_f64() } else { c.etcd_up() };
            self.cluster_etcd_up.set(i64::from(up));
            self.cluster_leader.set(c.term().max(0));
        }
        self.served.reset();
        self.setpoint.reset();
        self.proxy_in_answers.reset();
        self.proxy_up.reset();
        self.proxy_load.reset();
        for (name, status, load) in &engine.proxies {
            use crate::fleet::Status;
            let one = |yes: bool| if yes { 1.0 } else { 0.0 };
            self.proxy_in_answers.with_label_values(&[name]).set(one(*status == Status::Answering));
            self.proxy_up.with_label_values(&[name]).set(one(!matches!(status, Status::CheckFailed | Status::Silent)));
            if let Some(l) = load {
                self.proxy_load.with_label_values(&[name]).set(*l);
            }
        }
        let mut xdp_answered = 0;
        let mut rrl: [u64; RRL_ACTIONS as usize] =
            std::array::from_fn(|i| self.rrl_userspace[i].load(Ordering::Relaxed));
        if let Some(stats) = stats {
            for (total, xdp) in rrl.iter_mut().zip(stats.rrl_stats()?) {
                *total += xdp;
            }
            let counts = stats.xdp_stats()?;
            for outcome in XdpOutcome::ALL {
                let n = counts[outcome as usize];
                set_counter(&self.xdp_packets.with_label_values(&[outcome.label()]), n);
                if outcome.is_answer() || outcome == XdpOutcome::RrlSlipped {
                    xdp_answered += n;
                }
            }
        }
        for a in RrlAction::ALL {
            set_counter(&self.rrl.with_label_values(&[a.label()]), rrl[a as usize]);
        }
        set_counter(&self.dns_queries.with_label_values(&[PATH_XDP]), xdp_answered);
        for c in &engine.customers {
            let id = c.id.as_str();
            self.fraction.with_label_values(&[id]).set(c.fraction);
            self.contracted.with_label_values(&[id]).set(c.contracted_rps as f64);
            self.proxy_ttl.with_label_values(&[id]).set(f64::from(c.proxy_ttl));
            if let Some(s) = c.served_rps {
                self.served.with_label_values(&[id]).set(s);
            }
            if let Some(s) = c.setpoint_rps {
                self.setpoint.with_label_values(&[id]).set(s);
            }
            let xdp = match stats {
                Some(stats) => stats.customer_answers(c.index)?,
                None => [0; 3],
            };
            for t in Target::ALL {
                let total = xdp[t as usize] + c.userspace[t as usize];
                set_counter(&self.answers.with_label_values(&[id, t.label()]), total);
            }
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        Ok(String::from_utf8(buf).expect("exposition format is UTF-8"))
    }
}

/// Counters mirror totals kept in the kernel: set them to the total read.
fn set_counter(c: &prometheus::IntCounter, total: u64) {
    c.reset();
    c.inc_by(total);
}
