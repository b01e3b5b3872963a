//! What keeps the XDP program from being a reflector, put in its maps: the destination
//! addresses it answers for and the response rate limit (`[rrl]`).

use std::net::IpAddr;

use super::Dataplane;
use crate::{
    config::Config,
    error::{Error, Result},
};

/// `server.xdp_addresses`, else every address configured on the host (in the daemon's network
/// namespace) now.
pub fn local_addresses(config: &Config) -> Result<Vec<IpAddr>> {
    if !config.server.xdp_addresses.is_empty() {
        return Ok(config.server.xdp_addresses.clone());
    }
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(|e| Error::Pin(format!("listing the host's addresses: {e}")))? {
        let Some(a) = ifa.address else { continue };
        let ip = match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
            (Some(v4), _) => IpAddr::V4(v4.ip()),
            (_, Some(v6)) => IpAddr::V6(v6.ip()),
            _ => continue,
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Fill the addresses and the rate limit from the config.
pub fn install(dp: &mut Dataplane, config: &Config) -> Result<()> {
    let addrs = local_addresses(config)?;
    tracing::info!(?addrs, "XDP answers queries to these addresses only");
    dp.set_local_addrs(&addrs)?;
    dp.set_rrl(&config.rrl.params(), &config.rrl.exempt_nets())
}
