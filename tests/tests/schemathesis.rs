//! The control API against its own OpenAPI document, as a new user would try it: schemathesis
//! (PyPI, pinned by `cargo xtask setup`) with every check, a short fixed-seed budget, once with
//! a buyer's token and once with the operator's, against the real daemon on the loopback of a
//! namespace of its own. Any finding fails the test with schemathesis' report.

use std::{path::Path, process::Command};

use spillway_tests::{daemon::run_in, netns::NetNs, privileged::REQUIRE_ENV, require_privileges};

const OPERATOR: &str = "operator-token-st";
const BUYER: &str = "shop-token-st";
/// Examples per operation and phase: enough to reach every operation's rules, small enough
/// for the test run (about 20 s a run).
const EXAMPLES: &str = "30";

fn config(dir: &Path) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:5353"]
bpffs_dir = "{dir}/bpffs-unused"

[api]
listen = "127.0.0.1:8053"
token = "{OPERATOR}"

[store]
path = "{dir}/spillway.db"

[market]
period_s = 60
horizon_periods = 10
reserve_price = 1.0
assumed_own_load = 0.2

[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 1000

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.5
token = "{BUYER}"
"#,
        dir = dir.display()
    )
}

/// The schemathesis executable `cargo xtask test` installed, or None (after saying why) when a
/// plain `cargo test` runs without it.
fn schemathesis() -> Option<String> {
    match std::env::var("SPILLWAY_SCHEMATHESIS") {
        Ok(p) if Path::new(&p).is_file() => Some(p),
        other => {
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("schemathesis is missing ({other:?}): `cargo xtask setup` installs it under target/tools");
            }
            eprintln!("SKIPPED: SPILLWAY_SCHEMATHESIS is not set; `cargo xtask test` installs and runs schemathesis");
            None
        }
    }
}

#[test]
fn the_api_fits_its_document_for_a_buyer_and_for_the_operator() {
    require_privileges!();
    let Some(st) = schemathesis() else { return };
    let ns = NetNs::new("spw-st");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemon = run_in(&ns, dir.path(), &config(dir.path()));
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis/schemathesis.toml");

    // The buyer's run leaves out its own token rotation: the rest of the run would only see
    // 401 once its token is gone (the operator's run rotates the buyer's token too).
    for (who, token, extra) in
        [("buyer", BUYER, &["--exclude-path", "/customers/{id}/token"][..]), ("operator", OPERATOR, &[][..])]
    {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, &st, "--no-color", "--config-file"])
            .arg(&rules)
            .args(["run", "http://127.0.0.1:8053/v1/openapi.json", "--wait-for-schema", "15", "-c", "all"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-n", EXAMPLES, "--seed", "1", "--generation-database", "none"])
            .args(extra)
            .current_dir(dir.path())
            .output()
            .expect("schemathesis runs");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis with the {who}'s token found problems:\n{report}\n{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon.log_text()
        );
        // The run reached the API: requests were generated and answered, none failed.
        let generated: u64 = report
            .lines()
            .find_map(|l| l.trim().split_once(" generated, ").map(|(n, _)| n.trim().to_owned()))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(generated >= 500, "the {who}'s run generated only {generated} requests:\n{report}");
        eprintln!("schemathesis ({who}): {generated} requests, no finding");
    }
    assert!(
        daemon.wait_exit(std::time::Duration::from_millis(10)).is_none(),
        "the daemon died:\n{}",
        daemon.log_text()
    );
}
