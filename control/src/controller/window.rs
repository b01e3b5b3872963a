//! The answers a buyer's name has given over the last TTL, second by second: the model of
//! what resolvers hold in their caches right now. Each answer stays cached for the TTL, so
//! the proxy share of the answers in the window is the proxy share of the cached entries, and
//! the answers still in the window at a future time are exactly those it will still hold.

use std::collections::VecDeque;

#[derive(Debug, Clone, Default)]
pub struct AnswerWindow {
    /// (second, proxy answers, other answers), oldest first.
    buckets: VecDeque<(i64, u64, u64)>,
    proxy: u64,
    total: u64,
}

impl AnswerWindow {
    /// Record answers given in second `t`, and drop what has expired at `t` for `ttl`.
    pub fn push(&mut self, t: i64, proxy: u64, other: u64, ttl: i64) {
        match self.buckets.back_mut() {
            Some(last) if last.0 == t => {
                last.1 += proxy;
                last.2 += other;
            }
            _ => self.buckets.push_back((t, proxy, other)),
        }
        self.proxy += proxy;
        self.total += proxy + other;
        self.expire(t, ttl);
    }

    fn expire(&mut self, t: i64, ttl: i64) {
        while let Some(&(s, p, o)) = self.buckets.front() {
            if s > t - ttl.max(1) {
                break;
            }
            self.buckets.pop_front();
            self.proxy -= p;
            self.total -= p + o;
        }
    }

    /// Share of cached answers that point at proxies; `None` with nothing cached.
    pub fn proxy_share(&self) -> Option<f64> {
        (self.total > 0).then(|| self.proxy as f64 / self.total as f64)
    }

    /// Answers per second over the window.
    pub fn rate(&self, ttl: i64) -> f64 {
        self.total as f64 / ttl.max(1) as f64
    }

    /// (proxy, total) answers that will still be cached at `t + h` (answered after
    /// `t + h - ttl`).
    pub fn surviving(&self, t: i64, h: i64, ttl: i64) -> (u64, u64) {
        let cut = t + h - ttl;
        self.buckets.iter().filter(|b| b.0 > cut).fold((0, 0), |(p, n), b| (p + b.1, n + b.1 + b.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_and_expiry() {
        let mut w = AnswerWindow::default();
        w.push(0, 10, 30, 5);
        assert_eq!(w.proxy_share(), Some(0.25));
        w.push(3, 30, 10, 5);
        assert_eq!(w.proxy_share(), Some(0.5));
        // At 5 the second-0 answers expire.
        w.push(5, 0, 0, 5);
        assert_eq!(w.proxy_share(), Some(0.75));
        // At 6 + 2 only answers after 3 survive: none yet.
        assert_eq!(w.surviving(6, 2, 5), (0, 0));
        assert_eq!(w.surviving(6, 1, 5), (30, 40));
        w.push(9, 0, 0, 5);
        assert_eq!(w.proxy_share(), None);
    }
}
