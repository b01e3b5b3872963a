//! Any text as a config file: parsed and checked, or refused with located problems; never a
//! panic. A config that passes can be turned into a catalog and a zone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway::{catalog::Catalog, config::Config, dns::Authority};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            // Everything `check` accepts must load: a config error never waits for `run`.
            let catalog = Catalog::from_config(&config).expect("a checked config makes a catalog");
            let _ = Authority::new(&config);
            let _ = catalog.snapshot();
        }
        Err(e) => assert!(!e.issues.is_empty(), "a refusal says why"),
    }
});
