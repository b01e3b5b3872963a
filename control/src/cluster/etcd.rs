//! etcd's members, one plain channel each. A request goes to one member; a member that fails
//! a request is left for the next one in the list. (tonic's balanced channel, which
//! etcd-client uses by default, kept sending to a killed member until the request timed out,
//! and a change made then reached the edges late.) With `etcd_ca_file` the channels are TLS,
//! the files read again for each new channel (a renewed certificate is taken on the next).

use std::{path::PathBuf, time::Duration};

use etcd_client::{Client, GetOptions};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::{ClusterError, ClusterResult, config::ClusterConfig, within};

#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    clients: Vec<Option<Client>>,
    current: usize,
    timeout: Duration,
    tls: Option<TlsFiles>,
}

/// Where the TLS files are.
#[derive(Clone)]
struct TlsFiles {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    fn config(&self) -> Result<ClientTlsConfig, crate::tls::TlsError> {
        crate::tls::roots(&self.ca)?;
        let ca =
            std::fs::read(&self.ca).map_err(|source| crate::tls::TlsError::Read { path: self.ca.clone(), source })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            let (cert, key) = crate::tls::identity_pem(cert, key)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Ok(tls)
    }
}

impl Etcd {
    /// Clients for every member of `cfg`, none connected yet.
    pub fn new(cfg: &ClusterConfig) -> Self {
        Self {
            endpoints: cfg.etcd_endpoints.clone(),
            clients: vec![None; cfg.etcd_endpoints.len()],
            current: 0,
            timeout: cfg.timeout(),
            tls: cfg
                .etcd_ca_file
                .clone()
                .map(|ca| TlsFiles { ca, identity: cfg.etcd_cert_file.clone().zip(cfg.etcd_key_file.clone()) }),
        }
    }

    /// The cluster's timeout for one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The member in use now.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    /// The client of the member in use (its channel connects on first use).
    pub async fn client(&mut self) -> ClusterResult<&mut Client> {
        let i = self.current;
        if self.clients[i].is_none() {
            let t = self.timeout;
            let failed = |message: String| ClusterError::Etcd { endpoints: self.endpoints[i].clone(), message };
            let mut endpoint = Endpoint::from_shared(self.endpoints[i].clone()).map_err(|e| failed(e.to_string()))?;
            if let Some(tls) = &self.tls {
                let config = tls.config().map_err(|e| failed(format!("TLS: {e}")))?;
                endpoint = endpoint.tls_config(config).map_err(|e| failed(format!("TLS: {e}")))?;
            }
            let endpoint = endpoint
                .connect_timeout(t)
                // HTTP/2 pings find a dead member even while a watch is quiet.
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(t)
                .keep_alive_while_idle(true);
            let client =
                within(t, Client::from_channel(etcd_client::Channel::Tonic(endpoint.connect_lazy()), None)).await?;
            self.clients[i] = Some(client);
        }
        Ok(self.clients[i].as_mut().expect("just set"))
    }

    /// The member in use failed a request: the next request goes to the next member.
    pub fn failed(&mut self) {
        self.clients[self.current] = None;
        self.current = (self.current + 1) % self.endpoints.len();
    }

    /// Ask each member in turn, until one answers, for the number of keys under `prefix`:
    /// etcd's revision. An error when none does.
    pub async fn probe(&mut self, prefix: &str) -> ClusterResult<i64> {
        let mut last = None;
        for _ in 0..self.endpoints.len() {
            let t = self.timeout;
            let attempt = async {
                let client = self.client().await?;
                within(t, client.get(prefix, Some(GetOptions::new().with_prefix().with_count_only()))).await
            }
            .await;
            match attempt {
                Ok(r) => return Ok(r.header().map_or(0, |h| h.revision())),
                Err(e) => {
                    last = Some(format!("{}: {e}", self.endpoint()));
                    self.failed();
                }
            }
        }
        Err(ClusterError::Etcd {
            endpoints: self.endpoints.join(", "),
            message: format!("no member answers (last: {})", last.unwrap_or_default()),
        })
    }
}
