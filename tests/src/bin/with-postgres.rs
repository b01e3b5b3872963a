//! `with-postgres <command> [args...]`: start a PostgreSQL server of its own on loopback, run
//! the command with `SPILLWAY_TEST_POSTGRES` naming it, stop the server, and exit as the
//! command did. `cargo xtask test` runs the store's and the market's unit tests again this way,
//! so that they run on both of the store's engines.

use std::process::{Command, ExitCode};

use spillway_tests::postgres::Postgres;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: with-postgres <command> [args...]");
        return ExitCode::from(2);
    };
    // A free port on loopback, taken from the kernel.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let pg = Postgres::start(None, "127.0.0.1", port);
    eprintln!("with-postgres: PostgreSQL on 127.0.0.1:{port} ({})", pg.dir().display());
    let status = Command::new(program).args(rest).env("SPILLWAY_TEST_POSTGRES", pg.url("postgres")).status();
    drop(pg);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("with-postgres: {program} failed: {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("with-postgres: cannot run {program}: {e}");
            ExitCode::FAILURE
        }
    }
}
