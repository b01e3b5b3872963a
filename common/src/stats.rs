//! What the XDP program did with a packet: one per-CPU counter each.

/// Index into the XDP stats map. The order is part of the map layout: append only.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpOutcome {
    AnsweredProxy = 0,
    AnsweredOrigin,
    AnsweredCname,
    /// Not IPv4/IPv6 (or an unsupported VLAN stack).
    PassNotIp,
    /// Not UDP to port 53 (also IPv6 extension headers).
    PassNotDns,
    /// IPv4 fragment or IPv6 fragment header.
    PassFragment,
    /// IPv4 header with options.
    PassIpOptions,
    /// Truncated or inconsistent lengths at any layer, bad checksum.
    PassMalformed,
    /// QR=1, opcode other than QUERY, QDCOUNT != 1, answer or authority records, trailing data.
    PassNotQuery,
    /// Compression pointer or bad label in the question, name too long.
    PassName,
    /// Class not IN, a meta type (ANY, AXFR, OPT, ...), or SOA/NS at a zone's apex.
    PassType,
    PassUnknownName,
    /// OPT with options, version != 0, or an additional record that is not OPT.
    PassEdns,
    /// A negative answer the program cannot write (the zone's SOA record is too long).
    PassNoData,
    /// The packet could not be grown for the reply.
    PassGrowFailed,
    /// The reply would exceed the client's UDP size: userspace sets TC.
    PassTooBig,
    /// To a multicast or broadcast MAC address.
    PassNotUnicast,
    /// To an address not in the loader's set (`server.xdp_addresses`, else the host's).
    PassNotLocal,
    /// From UDP source port 0, where no reply can go.
    PassSourcePort,
    /// Over the response rate of the client's subnet: dropped (XDP_DROP).
    RrlDropped,
    /// Over the response rate, and its turn to slip: answered truncated (TC=1, no records).
    RrlSlipped,
    /// NXDOMAIN with the zone's SOA.
    AnsweredNxDomain,
    /// NODATA (NOERROR, no answer) with the zone's SOA.
    AnsweredNoData,
    /// A proxy's or name server's host name: userspace answers its addresses.
    PassHost,
    /// A name in none of our zones: userspace answers REFUSED.
    PassNotInZone,
}

pub const XDP_OUTCOMES: u32 = XdpOutcome::PassNotInZone as u32 + 1;

impl XdpOutcome {
    pub const ALL: [XdpOutcome; XDP_OUTCOMES as usize] = [
        Self::AnsweredProxy,
        Self::AnsweredOrigin,
        Self::AnsweredCname,
        Self::PassNotIp,
        Self::PassNotDns,
        Self::PassFragment,
        Self::PassIpOptions,
        Self::PassMalformed,
        Self::PassNotQuery,
        Self::PassName,
        Self::PassType,
        Self::PassUnknownName,
        Self::PassEdns,
        Self::PassNoData,
        Self::PassGrowFailed,
        Self::PassTooBig,
        Self::PassNotUnicast,
        Self::PassNotLocal,
        Self::PassSourcePort,
        Self::RrlDropped,
        Self::RrlSlipped,
        Self::AnsweredNxDomain,
        Self::AnsweredNoData,
        Self::PassHost,
        Self::PassNotInZone,
    ];

    /// Label used in metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::AnsweredProxy => "answered_proxy",
            Self::AnsweredOrigin => "answered_origin",
            Self::AnsweredCname => "answered_cname",
            Self::PassNotIp => "not_ip",
            Self::PassNotDns => "not_dns",
            Self::PassFragment => "fragment",
            Self::PassIpOptions => "ip_options",
            Self::PassMalformed => "malformed",
            Self::PassNotQuery => "not_query",
            Self::PassName => "name",
            Self::PassType => "type",
            Self::PassUnknownName => "unknown_name",
            Self::PassEdns => "edns",
            Self::PassNoData => "no_data",
            Self::PassGrowFailed => "grow_failed",
            Self::PassTooBig => "too_big",
            Self::PassNotUnicast => "not_unicast",
            Self::PassNotLocal => "not_local",
            Self::PassSourcePort => "source_port",
            Self::RrlDropped => "rrl_dropped",
            Self::RrlSlipped => "rrl_slipped",
            Self::AnsweredNxDomain => "answered_nxdomain",
            Self::AnsweredNoData => "answered_nodata",
            Self::PassHost => "host",
            Self::PassNotInZone => "not_in_zone",
        }
    }

    /// The outcome of counter index `i`.
    #[inline(always)]
    pub fn from_index(i: u32) -> Option<Self> {
        Self::ALL.get(i as usize).copied()
    }

    /// A reply with its records, positive or negative (not a slip).
    pub const fn is_answer(self) -> bool {
        matches!(
            self,
            Self::AnsweredProxy
                | Self::AnsweredOrigin
                | Self::AnsweredCname
                | Self::AnsweredNxDomain
                | Self::AnsweredNoData
        )
    }
}
