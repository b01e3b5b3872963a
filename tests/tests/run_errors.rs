//! `spillway run` fails cleanly: an interface that does not exist is a clear error, exit 1, and
//! no program is left attached anywhere in the namespace.

use std::time::Duration;

use spillway_tests::{daemon::run_in, netns::NetNs, require_privileges};

#[test]
fn missing_interface_is_a_clear_error() {
    require_privileges!();
    let ns = NetNs::new("spw-e");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        r#"
[server]
zones = ["cdn.example.net."]
xdp_interfaces = ["lo", "nosuch0"]
xdp_mode = "skb"
[api]
listen = "127.0.0.1:8053"
token = "t"
[store]
path = "{}/spillway.db"
"#,
        dir.path().display()
    );
    let mut proc = run_in(&ns, dir.path(), &config);
    // It must end by itself, without a signal.
    let status = proc.wait_exit(Duration::from_secs(10)).expect("exits by itself");
    let log = proc.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("nosuch0"), "{log}");
    // "lo" was attached first; the failed start must have detached it again.
    let link = ns.exec_ok(&["ip", "link", "show", "lo"]);
    assert!(!link.contains("xdp"), "XDP left on lo: {link}");
}
