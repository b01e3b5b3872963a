//! PostgreSQL, the store of a cluster's control hosts. The connection lives on a thread of its
//! own: the client library blocks on a runtime of its own, which must never run inside the
//! daemon's (the engine is called from async code as well as from blocking threads), and the
//! thread keeps one session, so a transaction's statements all go to the same one.
//!
//! A lost connection is made again before the next statement, never inside a transaction:
//! that one fails, and the caller's change with it (nothing half-written).
//!
//! With a CA file the connection is TLS (rustls), the server's certificate checked against that
//! CA and the URL's host; with a certificate and its key, this host shows them when the server
//! asks for one (`cert` in pg_hba.conf). The files are read again for each new connection.

use std::{
    collections::HashMap,
    sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel},
    time::Duration,
};

use bytes::BytesMut;
use postgres::{
    Client, NoTls, Statement,
    types::{IsNull, ToSql, Type, to_sql_checked},
};

use super::{
    StoreError, StoreResult,
    db::{Row, Value, dollar_params},
};
use crate::tls::ClientTls;

/// How long a connection may take, and a statement or a lock wait may last.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const SESSION_OPTIONS: &str = "-c statement_timeout=10000 -c lock_timeout=5000";

enum Kind {
    Execute,
    Query,
    Batch,
    Begin,
    Commit,
    Rollback,
}

enum Answer {
    Changed(u64),
    Rows(Vec<Row>),
}

struct Job {
    kind: Kind,
    sql: String,
    params: Vec<Value>,
    reply: SyncSender<Result<Answer, String>>,
}

/// The handle the store holds; statements go to the connection's thread and back.
pub struct PgConn {
    jobs: Sender<Job>,
    /// Where the store is, without the password (for errors and logs).
    pub target: String,
}

impl PgConn {
    /// Connect (an unreachable server is an error here, not at the first write); over TLS
    /// when `tls` names the CA of the server's certificate (and this host's own certificate).
    pub fn connect(url: &str, password: Option<&str>, tls: Option<&ClientTls>) -> StoreResult<PgConn> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres { target: "the [store] url".into(), message: format!("{e}") })?;
        if let Some(p) = password {
            config.password(p);
        }
        config.connect_timeout(CONNECT_TIMEOUT).application_name("spillway").options(SESSION_OPTIONS);
        if let Some(problem) = tls_problem(&config, tls.is_some()) {
            return Err(StoreError::Postgres { target: "the [store] url".into(), message: problem.into() });
        }
        if tls.is_some() {
            // A CA given means TLS or nothing: never the plain fallback of sslmode=prefer.
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        let target = describe(&config);
        let (jobs, rx) = channel();
        let for_thread = Session {
            config: config.clone(),
            tls: tls.cloned(),
            client: None,
            statements: HashMap::new(),
            in_transaction: false,
        };
        std::thread::Builder::new()
            .name("spillway-postgres".into())
            .spawn(move || serve(for_thread, rx))
            .map_err(|e| StoreError::Postgres { target: target.clone(), message: format!("no thread: {e}") })?;
        let conn = PgConn { jobs, target };
        conn.batch("SELECT 1")?;
        Ok(conn)
    }

    fn send(&self, kind: Kind, sql: &str, params: &[Value]) -> StoreResult<Answer> {
        let (reply, answer) = sync_channel(1);
        let job = Job { kind, sql: sql.to_owned(), params: params.to_vec(), reply };
        let fail = |message: String| StoreError::Postgres { target: self.target.clone(), message };
        self.jobs.send(job).map_err(|_| fail("the connection's thread is gone".into()))?;
        answer.recv().map_err(|_| fail("the connection's thread is gone".into()))?.map_err(fail)
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        match self.send(Kind::Execute, sql, params)? {
            Answer::Changed(n) => Ok(n),
            Answer::Rows(_) => Err(self.mismatch("execute", "rows")),
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        match self.send(Kind::Query, sql, params)? {
            Answer::Rows(r) => Ok(r),
            Answer::Changed(_) => Err(self.mismatch("query", "a count")),
        }
    }

    /// The connection's thread answered a job of one kind with another's answer: a bug, said
    /// as one instead of read as an empty result.
    fn mismatch(&self, job: &str, answer: &str) -> StoreError {
        StoreError::Postgres { target: self.target.clone(), message: format!("a {job} was answered with {answer}") }
    }

    pub fn batch(&self, sql: &str) -> StoreResult<()> {
        self.send(Kind::Batch, sql, &[]).map(drop)
    }

    pub fn begin(&self) -> StoreResult<()> {
        self.send(Kind::Begin, "", &[]).map(drop)
    }

    pub fn commit(&self) -> StoreResult<()> {
        self.send(Kind::Commit, "", &[]).map(drop)
    }

    pub fn rollback(&self) -> StoreResult<()> {
        self.send(Kind::Rollback, "", &[]).map(drop)
    }
}

/// What the URL's `sslmode` and a CA file (`tls`) say against each other.
pub fn tls_problem(config: &postgres::Config, tls: bool) -> Option<&'static str> {
    use postgres::config::SslMode;
    match (config.get_ssl_mode(), tls) {
        (SslMode::Disable, true) => Some("sslmode=disable, but ca_file asks for TLS: drop one of them"),
        (SslMode::Require, false) => {
            Some("sslmode=require needs [store] ca_file (the CA that signed the server's certificate)")
        }
        _ => None,
    }
}

/// `postgresql host:port/dbname as user`, never the password.
fn describe(c: &postgres::Config) -> String {
    use postgres::config::Host;
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("postgresql {host}:{port}/{} as {}", c.get_dbname().unwrap_or("-"), c.get_user().unwrap_or("-"))
}

/// The connection's thread: one job at a time, in order, until the store is dropped.
fn serve(mut session: Session, jobs: Receiver<Job>) {
    for job in jobs {
        let answer = session.run(&job);
        let _ = job.reply.send(answer);
    }
}

struct Session {
    config: postgres::Config,
    /// TLS: the CA that checks the server, and this host's certificate if it has one.
    tls: Option<ClientTls>,
    client: Option<Client>,
    /// Prepared once per connection: a statement is parsed and planned on its first use only.
    statements: HashMap<String, Statement>,
    in_transaction: bool,
}

impl Session {
    fn connect(&self) -> Result<Client, String> {
        let connected = match &self.tls {
            None => self.config.connect(NoTls),
            Some(tls) => {
                let tls = tls.client_config().map_err(|e| format!("TLS: {e}"))?;
                self.config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            }
        };
        connected.map_err(|e| message(&e))
    }

    fn run(&mut self, job: &Job) -> Result<Answer, String> {
        if matches!(job.kind, Kind::Rollback) {
            self.in_transaction = false;
            return match self.client.as_mut().filter(|c| !c.is_closed()) {
                Some(c) => c.batch_execute("ROLLBACK").map(|()| Answer::Changed(0)).map_err(|e| message(&e)),
                None => Ok(Answer::Changed(0)),
            };
        }
        let lost = self.client.as_ref().is_none_or(Client::is_closed);
        if lost {
            if self.in_transaction {
                return Err("the connection was lost inside the transaction: it was rolled back".into());
            }
            self.statements.clear();
            self.client = None;
            self.client = Some(self.connect()?);
        }
        let answer = self.statement(job).map_err(|e| message(&e));
        match job.kind {
            Kind::Begin => self.in_transaction = answer.is_ok(),
            Kind::Commit => self.in_transaction = false,
            _ => {}
        }
        answer
    }

    fn statement(&mut self, job: &Job) -> Result<Answer, postgres::Error> {
        let client = self.client.as_mut().expect("connected");
        match job.kind {
            Kind::Begin => client.batch_execute("BEGIN").map(|()| Answer::Changed(0)),
            Kind::Commit => client.batch_execute("COMMIT").map(|()| Answer::Changed(0)),
            Kind::Batch => client.batch_execute(&job.sql).map(|()| Answer::Changed(0)),
            Kind::Execute | Kind::Query => {
                let stmt = match self.statements.get(&job.sql) {
                    Some(s) => s.clone(),
                    None => {
                        let s = client.prepare(&dollar_params(&job.sql))?;
                        self.statements.insert(job.sql.clone(), s.clone());
                        s
                    }
                };
                let params: Vec<&(dyn ToSql + Sync)> = job.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                if matches!(job.kind, Kind::Execute) {
                    client.execute(&stmt, &params).map(Answer::Changed)
                } else {
                    client
                        .query(&stmt, &params)
                        .and_then(|rows| rows.iter().map(row_values).collect::<Result<Vec<_>, _>>().map(Answer::Rows))
                }
            }
            Kind::Rollback => unreachable!("handled in run"),
        }
    }
}

/// An error with the server's detail, when it sent one.
fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {}{}",
            db.code().code(),
            db.message(),
            db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        // The causes too: "error performing TLS handshake: invalid peer certificate: ...".
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text += &format!(": {cause}");
                source = cause.source();
            }
            text
        }
    }
}

fn row_values(r: &postgres::Row) -> Result<Row, postgres::Error> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into())),
            // Text, and anything else read as text (it fails loudly if it cannot be).
            _ => r.try_get::<_, Option<String>>(i)?.map(Value::Text),
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The SQLite schema, as PostgreSQL writes it: integers are 64-bit, and an integer primary key
/// is numbered by the database unless the row gives one (as SQLite's rowid is).
pub fn schema(sqlite: &str) -> String {
    sqlite
        .replace("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
}
