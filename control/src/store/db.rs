//! One connection to the store's database, SQLite or PostgreSQL: the store's SQL is written
//! once (with `?N` parameters, which PostgreSQL reads as `$N`), its values are integers, text
//! and NULL, and its rows come back as those values whichever engine answered.

use super::{StoreError, StoreResult, postgres::PgConn};

/// A parameter or a column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `[Value]` from a list of expressions, each converted with `Value::from`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::store::db::Value::from($v)),*][..] };
}
pub(crate) use vals;

/// What a column is read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
    const WHAT: &'static str;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    const WHAT: &'static str = "an integer";
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
    const WHAT: &'static str = "text";
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
    const WHAT: &'static str = T::WHAT;
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub(super) Vec<Value>);

impl Row {
    /// Column `i` as a `T`, or why the stored value is not one.
    pub fn get<T: FromValue>(&self, i: usize) -> StoreResult<T> {
        let v = self.0.get(i).ok_or_else(|| StoreError::Corrupt(format!("no column {i} in a row")))?;
        T::from_value(v).ok_or_else(|| StoreError::Corrupt(format!("column {i} is {v:?}, not {}", T::WHAT)))
    }
}

pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

/// Which writes this connection may make. A cluster's control replicas share one database,
/// and only the leader writes: a replica that lost the lead (or thinks it leads after another
/// took over) must not change anything, whatever its memory says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// One control host: every write, unchecked.
    Open,
    /// A control replica that does not lead: no write at all.
    Follower,
    /// The leader of this term (its etcd election key's revision): every write is made in a
    /// transaction that first reads the store's term under a share lock and goes on only if
    /// it is this one. A newer leader's [`Store::take_term`](super::Store::take_term) waits
    /// for those transactions, and every one after it fails.
    Leader(i64),
}

/// The term's row, read under a share lock (PostgreSQL; SQLite's writers are serialised by
/// its own lock).
const FENCE_PG: &str = "SELECT term, holder FROM spillway_leader WHERE id = 1 FOR SHARE";
const FENCE_SQLITE: &str = "SELECT term, holder FROM spillway_leader WHERE id = 1";

/// An INSERT, UPDATE or DELETE (with or without RETURNING): what the fence stops.
fn is_write(sql: &str) -> bool {
    let first = sql.trim_start().split(|c: char| c.is_whitespace()).next().unwrap_or("");
    ["INSERT", "UPDATE", "DELETE"].iter().any(|w| first.eq_ignore_ascii_case(w))
}

pub struct Db {
    pub(super) conn: Conn,
    fence: std::cell::Cell<Fence>,
    in_tx: std::cell::Cell<bool>,
}

impl Db {
    pub fn new(conn: Conn) -> Self {
        Self { conn, fence: std::cell::Cell::new(Fence::Open), in_tx: std::cell::Cell::new(false) }
    }

    pub fn engine(&self) -> &'static str {
        match self.conn {
            Conn::Sqlite(_) => "sqlite",
            Conn::Postgres(_) => "postgresql",
        }
    }

    pub fn fence(&self) -> Fence {
        self.fence.get()
    }

    pub fn set_fence(&self, f: Fence) {
        self.fence.set(f);
    }

    /// The term and holder the store names as the leader's.
    pub fn term(&self) -> StoreResult<(i64, String)> {
        let r = self.query_one(FENCE_SQLITE, &[])?;
        Ok((r.get(0)?, r.get(1)?))
    }

    /// Inside a transaction: the store's term is `term`, or this connection is fenced off.
    fn check_term(&self, term: i64) -> StoreResult<()> {
        let sql = match self.conn {
            Conn::Sqlite(_) => FENCE_SQLITE,
            Conn::Postgres(_) => FENCE_PG,
        };
        let r = self.query_one(sql, &[])?;
        let (current, holder): (i64, String) = (r.get(0)?, r.get(1)?);
        if current == term {
            Ok(())
        } else {
            self.fence.set(Fence::Follower);
            Err(StoreError::Fenced { term: current, holder })
        }
    }

    /// Run `f`, a statement of `sql`, as the fence allows.
    fn fenced<T>(&self, sql: &str, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        if !is_write(sql) {
            return f();
        }
        match self.fence.get() {
            Fence::Open => f(),
            Fence::Follower => Err(StoreError::NotLeader),
            // The transaction checked the term when it began.
            Fence::Leader(_) if self.in_tx.get() => f(),
            Fence::Leader(_) => {
                let tx = self.transaction()?;
                let v = f()?;
                tx.commit()?;
                Ok(v)
            }
        }
    }

    /// Run a statement; the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        self.fenced(sql, || match &self.conn {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
            }
            Conn::Postgres(c) => c.execute(sql, params),
        })
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        self.fenced(sql, || self.query_unfenced(sql, params))
    }

    fn query_unfenced(&self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(Row((0..n).map(|i| sqlite_value(r.get_ref(i)?)).collect::<StoreResult<_>>()?));
                }
                Ok(out)
            }
            Conn::Postgres(c) => c.query(sql, params),
        }
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, params: &[Value]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row, which must be there.
    pub fn query_one(&self, sql: &str, params: &[Value]) -> StoreResult<Row> {
        self.query_opt(sql, params)?.ok_or_else(|| StoreError::Corrupt(format!("no row from {sql}")))
    }

    /// Statements with no parameters, separated by semicolons.
    pub fn batch(&self, sql: &str) -> StoreResult<()> {
        match &self.conn {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(c) => c.batch(sql),
        }
    }

    /// Begin a transaction; it is rolled back unless committed. A leader's first checks
    /// that its term is the store's.
    pub fn transaction(&self) -> StoreResult<Tx<'_>> {
        match &self.conn {
            Conn::Sqlite(c) => c.execute_batch("BEGIN")?,
            Conn::Postgres(c) => c.begin()?,
        }
        self.in_tx.set(true);
        let tx = Tx { db: self, done: false };
        if let Fence::Leader(term) = self.fence.get() {
            self.check_term(term)?;
        }
        Ok(tx)
    }
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> StoreResult<Value> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        other => {
            return Err(StoreError::Corrupt(format!("a stored {:?} where integers and text are", other.data_type())));
        }
    })
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// A transaction in progress: statements go through it (it derefs to the connection); dropped
/// without `commit`, it is rolled back.
pub struct Tx<'a> {
    db: &'a Db,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> StoreResult<()> {
        self.done = true;
        self.db.in_tx.set(false);
        match &self.db.conn {
            Conn::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Conn::Postgres(c) => c.commit(),
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.db.in_tx.set(false);
            let _ = match &self.db.conn {
                Conn::Sqlite(c) => c.execute_batch("ROLLBACK").map_err(StoreError::from),
                Conn::Postgres(c) => c.rollback(),
            };
        }
    }
}

/// `?N` parameters as PostgreSQL writes them (`$N`). The store's SQL has no `?` in literals.
pub fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_dollars() {
        assert_eq!(
            dollar_params("UPDATE t SET a = ?2 WHERE id = ?1 AND b = '?'"),
            "UPDATE t SET a = $2 WHERE id = $1 AND b = '?'"
        );
    }

    #[test]
    fn rows_say_what_they_hold() {
        let r = Row(vec![Value::Int(3), Value::Null, Value::Text("x".into())]);
        assert_eq!(r.get::<i64>(0).unwrap(), 3);
        assert_eq!(r.get::<Option<i64>>(1).unwrap(), None);
        assert_eq!(r.get::<String>(2).unwrap(), "x");
        assert!(r.get::<i64>(2).is_err());
        assert!(r.get::<String>(1).is_err());
        assert!(r.get::<i64>(3).is_err());
    }
}
