//! Response rate limiting of the userspace server's UDP replies, by the rule in
//! `spillway_common::rrl` that the XDP program applies to its own answers.
//!
//! Buckets live in shards, each a map under a mutex held for one bucket's update (no syscall,
//! no store write under it), so DNS threads rarely meet; a shard that fills sheds the buckets
//! idle for longer than the window first, like the kernel's LRU map.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Instant};

use hickory_proto::op::Message;
use spillway_common::{
    decision::{subnet_key_v4, subnet_key_v6},
    dns::HEADER_LEN,
    maps::MAX_RRL_BUCKETS,
    name::name_key,
    rrl::{RrlAction, RrlBucket, RrlClass, RrlKey, RrlParams},
};

use crate::config::RrlConfig;

const SHARDS: usize = 16;
const SHARD_CAPACITY: usize = MAX_RRL_BUCKETS as usize / SHARDS;

pub struct Limiter {
    params: RrlParams,
    exempt: Vec<ipnet::IpNet>,
    shards: Vec<Mutex<HashMap<RrlKey, RrlBucket>>>,
    epoch: Instant,
}

impl Limiter {
    pub fn new(config: &RrlConfig) -> Self {
        Self {
            params: config.params(),
            exempt: config.exempt_nets(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            epoch: Instant::now(),
        }
    }

    /// What to do with `reply` to `client` (sent over UDP). Off: always [`RrlAction::Send`].
    pub fn check(&self, client: IpAddr, reply: &[u8]) -> RrlAction {
        if self.params.rate == 0 || reply.len() < HEADER_LEN {
            return RrlAction::Send;
        }
        let client = client.to_canonical();
        let subnet = match client {
            IpAddr::V4(a) => subnet_key_v4(a.octets()),
            IpAddr::V6(a) => subnet_key_v6(a.octets()),
        };
        let flags = u16::from_be_bytes([reply[2], reply[3]]);
        let ancount = u16::from_be_bytes([reply[6], reply[7]]);
        let class = RrlClass::of_reply(flags, ancount);
        let (name, qtype) = question(reply).unwrap_or_default();
        let key = RrlKey::new(subnet, class, &name, qtype);
        let now_s = self.epoch.elapsed().as_secs() as u32;
        let shard = &self.shards[(key.subnet ^ key.about) as usize % SHARDS];
        let mut action = {
            let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
            if buckets.len() >= SHARD_CAPACITY && !buckets.contains_key(&key) {
                let keep_after = now_s.saturating_sub(self.params.window_s + 1);
                buckets.retain(|_, b| b.last_s >= keep_after);
                if buckets.len() >= SHARD_CAPACITY {
                    buckets.clear();
                }
            }
            let b = buckets.entry(key).or_insert_with(|| RrlBucket::full(now_s, &self.params));
            b.step(now_s, &self.params)
        };
        if action != RrlAction::Send && self.exempt.iter().any(|n| n.contains(&client)) {
            action = RrlAction::Exempt;
        }
        action
    }

    pub fn enabled(&self) -> bool {
        self.params.rate != 0
    }
}

/// The question's names-map key and type, from a reply's question section (never compressed:
/// it is the message's first name).
fn question(reply: &[u8]) -> Option<(spillway_common::maps::NameKey, u16)> {
    if u16::from_be_bytes([reply[4], reply[5]]) != 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = *reply.get(at)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        at += len + 1;
    }
    let wire = reply.get(HEADER_LEN..=at)?;
    let qtype = u16::from_be_bytes([*reply.get(at + 1)?, *reply.get(at + 2)?]);
    Some((name_key(wire), qtype))
}

/// The slip for `reply`: the same header and question with TC set and no records (the OPT
/// kept), as the XDP program sends it. `None` if the reply cannot be read back (never ours).
pub fn slip(reply: &[u8]) -> Option<Vec<u8>> {
    let mut m = Message::from_vec(reply).ok()?;
    m.answers.clear();
    m.authorities.clear();
    m.additionals.clear();
    m.signature = None;
    m.metadata.truncation = true;
    m.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(name: &str) -> Vec<u8> {
        use hickory_proto::{
            op::{MessageType, Query},
            rr::{Name, RData, Record, RecordType, rdata::A},
        };
        let n = Name::from_ascii(name).unwrap();
        let mut m = Message::query();
        m.metadata.message_type = MessageType::Response;
        m.metadata.authoritative = true;
        m.queries.push(Query::query(n.clone(), RecordType::A));
        m.answers.push(Record::from_rdata(n, 30, RData::A(A::new(192, 0, 2, 7))));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_flood_from_one_subnet_is_limited_per_name_and_others_are_not() {
        let cfg = RrlConfig { rate: 3, window_s: 2, slip: 2, ..RrlConfig::default() };
        let l = Limiter::new(&cfg);
        let a = reply("a.example.");
        let flood: IpAddr = "198.51.100.7".parse().unwrap();
        let same_net: IpAddr = "198.51.100.200".parse().unwrap();
        let acts: Vec<RrlAction> = (0..10).map(|_| l.check(flood, &a)).collect();
        assert_eq!(&acts[..3], &[RrlAction::Send; 3]);
        assert!(acts[3..].iter().all(|a| matches!(a, RrlAction::Drop | RrlAction::Slip)), "{acts:?}");
        assert!(matches!(l.check(same_net, &a), RrlAction::Drop | RrlAction::Slip), "same /24, same budget");
        assert_eq!(l.check(flood, &reply("b.example.")), RrlAction::Send, "another name has its own budget");
        assert_eq!(l.check("203.0.113.1".parse().unwrap(), &a), RrlAction::Send, "another subnet");
        assert_eq!(l.check("127.0.0.1".parse().unwrap(), &a), RrlAction::Send);
        for _ in 0..10 {
            assert_ne!(l.check("127.0.0.1".parse().unwrap(), &a), RrlAction::Drop, "localhost is exempt");
        }
    }

    #[test]
    fn a_slip_is_the_question_with_tc() {
        let s = slip(&reply("a.example.")).unwrap();
        let m = Message::from_vec(&s).unwrap();
        assert!(m.metadata.truncation && m.metadata.authoritative);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
        assert_eq!(m.queries.len(), 1);
    }
}
