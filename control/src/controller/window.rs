//! The answers a buyer's name has given over the last TTL, second by second: the model of
//! what resolvers hold in their caches right now. Each answer stays cached for its TTL (proxy
//! answers may have a shorter one than the customer's, see `rule::proxy_ttl`), so the proxy
//! share of the answers still in the window is the proxy share of the cached entries, and the
//! answers still in the window at a future time are exactly those it will still hold.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    t: i64,
    proxy: u64,
    other: u64,
    /// The TTL the proxy answers of this second were given with.
    proxy_ttl: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AnswerWindow {
    /// Oldest first, within the customer's TTL of the last push.
    buckets: VecDeque<Bucket>,
    /// The last second pushed, and the customer's TTL then.
    now: i64,
    ttl: i64,
}

impl AnswerWindow {
    /// Record answers given in second `t`: proxy answers with TTL `proxy_ttl`, the others with
    /// the customer's `ttl`; drop what has expired at `t`.
    pub fn push(&mut self, t: i64, proxy: u64, other: u64, ttl: i64, proxy_ttl: i64) {
        let proxy_ttl = proxy_ttl.clamp(1, ttl.max(1));
        match self.buckets.back_mut() {
            Some(last) if last.t == t => {
                last.proxy += proxy;
                last.other += other;
                last.proxy_ttl = last.proxy_ttl.min(proxy_ttl);
            }
            _ => self.buckets.push_back(Bucket { t, proxy, other, proxy_ttl }),
        }
        self.now = t;
        self.ttl = ttl.max(1);
        while self.buckets.front().is_some_and(|b| b.t <= t - self.ttl) {
            self.buckets.pop_front();
        }
    }

    /// (proxy, total) answers cached at `at`: given after `at - their TTL`.
    fn cached_at(&self, at: i64) -> (u64, u64) {
        self.buckets.iter().fold((0, 0), |(p, n), b| {
            let proxy = if b.t > at - b.proxy_ttl { b.proxy } else { 0 };
            let other = if b.t > at - self.ttl { b.other } else { 0 };
            (p + proxy, n + proxy + other)
        })
    }

    /// Share of cached answers that point at proxies; `None` with nothing cached.
    pub fn proxy_share(&self) -> Option<f64> {
        let (p, n) = self.cached_at(self.now);
        (n > 0).then(|| p as f64 / n as f64)
    }

    /// Answers per second over the customer's TTL (the one of the last push).
    pub fn rate(&self) -> f64 {
        self.buckets.iter().map(|b| b.proxy + b.other).sum::<u64>() as f64 / self.ttl.max(1) as f64
    }

    /// (proxy, total) answers that will still be cached at `t + h`.
    pub fn surviving(&self, t: i64, h: i64) -> (u64, u64) {
        self.cached_at(t + h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_and_expiry() {
        let mut w = AnswerWindow::default();
        w.push(0, 10, 30, 5, 5);
        assert_eq!(w.proxy_share(), Some(0.25));
        w.push(3, 30, 10, 5, 5);
        assert_eq!(w.proxy_share(), Some(0.5));
        // At 5 the second-0 answers expire.
        w.push(5, 0, 0, 5, 5);
        assert_eq!(w.proxy_share(), Some(0.75));
        // At 6 + 2 only answers after 3 survive: none yet.
        assert_eq!(w.surviving(6, 2), (0, 0));
        assert_eq!(w.surviving(6, 1), (30, 40));
        w.push(9, 0, 0, 5, 5);
        assert_eq!(w.proxy_share(), None);
    }

    /// Proxy answers with a shorter TTL leave the cache first.
    #[test]
    fn proxy_answers_expire_at_their_own_ttl() {
        let mut w = AnswerWindow::default();
        w.push(0, 50, 50, 30, 5);
        assert_eq!(w.proxy_share(), Some(0.5));
        assert_eq!(w.surviving(0, 4), (50, 100));
        assert_eq!(w.surviving(0, 5), (0, 50), "the proxy answers are gone after 5 s, the others stay");
        w.push(5, 0, 0, 30, 5);
        assert_eq!(w.proxy_share(), Some(0.0));
        w.push(30, 0, 0, 30, 5);
        assert_eq!(w.proxy_share(), None);
    }
}
