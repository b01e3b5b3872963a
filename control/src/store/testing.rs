//! Where a unit test keeps its store: a SQLite file in a directory of its own, or, when
//! `SPILLWAY_TEST_POSTGRES` names a PostgreSQL server (`cargo xtask test` starts one and runs
//! the store's and the market's tests again on it), a new database there. The same tests run
//! on both engines.

use std::path::PathBuf;

use super::Store;

/// The variable naming the server (a URL to its `postgres` database).
pub const POSTGRES_VAR: &str = "SPILLWAY_TEST_POSTGRES";

pub struct Place {
    pub dir: PathBuf,
    /// The test's database, on PostgreSQL.
    url: Option<String>,
}

impl Place {
    pub fn new(name: &str) -> Place {
        let id = format!("{name}_{}_{}", std::process::id(), rand::random::<u32>());
        let dir = std::env::temp_dir().join(format!("spillway-store-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = std::env::var(POSTGRES_VAR).ok().map(|admin| {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("the test PostgreSQL answers");
            let db = format!("t_{}", id.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
            c.batch_execute(&format!("CREATE DATABASE {db}")).expect("create database");
            let (base, _) = admin.rsplit_once('/').expect("a URL ending in /postgres");
            format!("{base}/{db}")
        });
        Place { dir, url }
    }

    /// Open (again) the test's store.
    pub fn open(&self) -> Store {
        match &self.url {
            Some(url) => Store::open_postgres(url, None, None).expect("open the PostgreSQL store"),
            None => Store::open(&self.dir.join("s.db")).expect("open the SQLite store"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.url.is_some()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
