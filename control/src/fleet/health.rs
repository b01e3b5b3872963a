//! Active health checks: the rise/fall counting (pure) and one HTTP check.

use std::time::Duration;

use crate::config::HealthCheck;

/// A proxy's check results: up or down, and how many results in a row disagree with that.
/// Starts up, as HAProxy's servers do: a restart does not empty the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
    /// Checks done, and the last result (for the API).
    pub checks: u64,
    pub last_ok: Option<bool>,
}

impl Default for CheckState {
    fn default() -> Self {
        Self { up: true, streak: 0, checks: 0, last_ok: None }
    }
}

impl CheckState {
    pub fn up(&self) -> bool {
        self.up
    }

    /// Count one result; true when it flips the state (`fall` failures in a row take an up
    /// proxy down, `rise` passes in a row bring a down one up).
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        self.checks += 1;
        self.last_ok = Some(ok);
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak >= if self.up { fall } else { rise } {
            self.up = ok;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// One check: a GET of the URL; passes on 2xx or 3xx within the timeout (redirects are not
/// followed: a 3xx is an answer).
pub async fn check_once(client: &reqwest::Client, check: &HealthCheck) -> Result<(), String> {
    let resp = client
        .get(&check.url)
        .timeout(Duration::from_millis(check.timeout_ms))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_success() || status.is_redirection() { Ok(()) } else { Err(format!("HTTP {status}")) }
}

/// The client the checks share: no redirects, no proxy from the environment.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_count_results_in_a_row() {
        let mut s = CheckState::default();
        assert!(s.up());
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(true, 2, 3), "a pass breaks the streak");
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(s.record(false, 2, 3), "third failure in a row");
        assert!(!s.up());
        assert!(!s.record(true, 2, 3));
        assert!(s.record(true, 2, 3), "second pass in a row");
        assert!(s.up());
        assert_eq!((s.checks, s.last_ok), (8, Some(true)));
    }

    #[tokio::test]
    async fn a_check_passes_on_2xx_and_3xx_and_fails_otherwise() {
        use tokio::{
            io::{AsyncReadExt, AsyncWriteExt},
            net::TcpListener,
        };
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if req.starts_with("GET /ok") {
                    "200 OK"
                } else if req.starts_with("GET /moved") {
                    "302 Found\r\nLocation: /elsewhere"
                } else if req.starts_with("GET /slow") {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let c = client().unwrap();
        let check = |path: &str| HealthCheck {
            url: format!("http://{addr}{path}"),
            interval_ms: 1000,
            timeout_ms: 200,
            rise: 1,
            fall: 1,
        };
        assert_eq!(check_once(&c, &check("/ok")).await, Ok(()));
        assert_eq!(check_once(&c, &check("/moved")).await, Ok(()));
        assert_eq!(check_once(&c, &check("/down")).await, Err("HTTP 503 Service Unavailable".into()));
        assert!(check_once(&c, &check("/slow")).await.is_err(), "past the timeout");
    }
}
