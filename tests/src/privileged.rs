//! Tests that need root (BPF, netns) run under `cargo xtask test`, which sets
//! `SPILLWAY_REQUIRE_PRIVILEGED=1`: there a missing privilege fails the test loudly. A plain
//! `cargo test` as a normal user skips them with a message instead.

pub const REQUIRE_ENV: &str = "SPILLWAY_REQUIRE_PRIVILEGED";

/// True if the test may go on; false (after saying why) if it should be skipped.
/// Panics when privileges are missing and `SPILLWAY_REQUIRE_PRIVILEGED=1`.
pub fn privileged() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("this test needs root (BPF and network namespaces) and {REQUIRE_ENV}=1 forbids skipping it");
    }
    eprintln!("SKIPPED: needs root (BPF and network namespaces); `cargo xtask test` runs it");
    false
}

/// Early-return from a test that cannot run here (see [`privileged`]).
#[macro_export]
macro_rules! require_privileges {
    () => {
        if !$crate::privileged::privileged() {
            return;
        }
    };
}
