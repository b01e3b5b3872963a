//! DNS messages written byte by byte, for fixtures that need exact (and malformed) wire forms,
//! and the exact reply Spillway's rules call for.

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;
pub const CLASS_CH: u16 = 3;
pub const FLAG_RD: u16 = 0x0100;
pub const FLAG_CD: u16 = 0x0010;

/// Wire form of a dotted name, case kept ("a.B.c" -> 1a1B1c0).
pub fn name_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

#[derive(Debug, Clone)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub do_bit: bool,
    /// Raw option bytes.
    pub options: Vec<u8>,
}

impl Edns {
    pub fn new(udp_size: u16) -> Self {
        Self { udp_size, version: 0, do_bit: false, options: Vec::new() }
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    pub name: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    /// Override QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
    pub counts: Option<[u16; 4]>,
    /// Bytes after the message.
    pub trailing: Vec<u8>,
}

impl Query {
    pub fn new(name: &str, qtype: u16) -> Self {
        Self {
            id: 0x1234,
            flags: 0,
            name: name_wire(name),
            qtype,
            qclass: CLASS_IN,
            edns: None,
            counts: None,
            trailing: Vec::new(),
        }
    }

    pub fn edns(mut self, e: Edns) -> Self {
        self.edns = Some(e);
        self
    }

    pub fn flags(mut self, f: u16) -> Self {
        self.flags = f;
        self
    }

    pub fn question(&self) -> Vec<u8> {
        let mut q = self.name.clone();
        q.extend_from_slice(&self.qtype.to_be_bytes());
        q.extend_from_slice(&self.qclass.to_be_bytes());
        q
    }

    pub fn bytes(&self) -> Vec<u8> {
        let counts = self.counts.unwrap_or([1, 0, 0, self.edns.is_some() as u16]);
        let mut m = Vec::new();
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&self.flags.to_be_bytes());
        for c in counts {
            m.extend_from_slice(&c.to_be_bytes());
        }
        m.extend_from_slice(&self.question());
        if let Some(e) = &self.edns {
            m.push(0);
            m.extend_from_slice(&TYPE_OPT.to_be_bytes());
            m.extend_from_slice(&e.udp_size.to_be_bytes());
            m.extend_from_slice(&[0, e.version, if e.do_bit { 0x80 } else { 0 }, 0]);
            m.extend_from_slice(&(e.options.len() as u16).to_be_bytes());
            m.extend_from_slice(&e.options);
        }
        m.extend_from_slice(&self.trailing);
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    A([u8; 4]),
    Aaaa([u8; 16]),
    Cname(Vec<u8>),
}

/// The reply Spillway's rules call for: QR+AA, RD and CD copied, the question as received,
/// answers owned by a pointer to the question name, OPT (UDP size 1232, DO copied) if the query
/// had one.
pub fn expected_reply(q: &Query, answers: &[Rdata], ttl: u32) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&q.id.to_be_bytes());
    let flags = 0x8000 | 0x0400 | (q.flags & (FLAG_RD | FLAG_CD));
    m.extend_from_slice(&flags.to_be_bytes());
    for c in [1, answers.len() as u16, 0, q.edns.is_some() as u16] {
        m.extend_from_slice(&c.to_be_bytes());
    }
    m.extend_from_slice(&q.question());
    for a in answers {
        m.extend_from_slice(&[0xc0, 0x0c]);
        let (t, rd): (u16, Vec<u8>) = match a {
            Rdata::A(x) => (TYPE_A, x.to_vec()),
            Rdata::Aaaa(x) => (TYPE_AAAA, x.to_vec()),
            Rdata::Cname(x) => (TYPE_CNAME, x.clone()),
        };
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        m.extend_from_slice(&rd);
    }
    if let Some(e) = &q.edns {
        m.push(0);
        m.extend_from_slice(&TYPE_OPT.to_be_bytes());
        m.extend_from_slice(&1232u16.to_be_bytes());
        m.extend_from_slice(&[0, 0, if e.do_bit { 0x80 } else { 0 }, 0, 0, 0]);
    }
    m
}
