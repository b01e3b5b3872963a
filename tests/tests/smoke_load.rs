use spillway::dataplane::{Dataplane, LoadOptions};
#[test]
fn loads() {
    spillway_tests::require_privileges!();
    let dp = Dataplane::load(LoadOptions::default());
    if let Err(e) = &dp { eprintln!("{e:?}"); }
    dp.unwrap();
}
