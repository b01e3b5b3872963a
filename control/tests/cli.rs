//! `spillway check` as a process: exit 0 on a good config, exit 1 with every problem located.

use std::process::Command;

const GOOD: &str = r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:5353"]

[api]
listen = "127.0.0.1:8053"
token = "t"

[store]
path = "/tmp/spillway-check.db"

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.25
"#;

fn check(text: &str) -> (i32, String, String) {
    // A directory per call, removed after: the tests run in parallel and leave nothing.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("spillway-cli-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spillway")).args(["check", "--config"]).arg(&path).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn good_config_passes() {
    let (code, out, err) = check(GOOD);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok (1 zones, 0 proxies, 1 customers)"), "{out}");
}

#[test]
fn bad_config_lists_every_problem_with_its_line() {
    let bad = GOOD
        .replace("fraction = 0.25", "fraction = 2.0\nttl = 4294967295")
        .replace("zones = [\"cdn.example.net.\"]", "zones = []");
    let (code, _, err) = check(&bad);
    assert_eq!(code, 1);
    assert!(err.contains("server.zones: at least one zone is needed"), "{err}");
    assert!(err.contains(":18: customer[0] (id \"shop\").fraction: 2 is outside [0, 1]"), "{err}");
    assert!(err.contains("ttl: 4294967295 is above the largest TTL"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["check", "--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/x.toml"));
}

#[test]
fn run_refuses_a_bad_config_before_touching_anything() {
    let dir = std::env::temp_dir().join(format!("spillway-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, GOOD.replace("fraction = 0.25", "fraction = -1")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spillway")).args(["run", "--config"]).arg(&path).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fraction: -1 is outside [0, 1]"), "{out:?}");
}

#[test]
fn run_with_a_store_it_cannot_open_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("spillway-cli-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nostore.toml");
    let text = GOOD
        .replace("/tmp/spillway-check.db", "/nonexistent-spillway-dir/s.db")
        .replace("127.0.0.1:5353", "127.0.0.1:0")
        .replace("127.0.0.1:8053", "127.0.0.1:0");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spillway")).args(["run", "--config"]).arg(&path).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot open the store /nonexistent-spillway-dir/s.db"), "{err}");
    assert!(!std::path::Path::new("/nonexistent-spillway-dir").exists(), "the directory must not be created");
}
