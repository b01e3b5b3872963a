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

pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

impl Db {
    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgresql",
        }
    }

    /// Run a statement; the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(params))? as u64)
            }
            Db::Postgres(c) => c.execute(sql, params),
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(Row((0..n).map(|i| sqlite_value(r.get_ref(i)?)).collect::<StoreResult<_>>()?));
                }
                Ok(out)
            }
            Db::Postgres(c) => c.query(sql, params),
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
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(c) => c.batch(sql),
        }
    }

    /// Begin a transaction; it is rolled back unless committed.
    pub fn transaction(&self) -> StoreResult<Tx<'_>> {
        match self {
            Db::Sqlite(c) => c.execute_batch("BEGIN")?,
            Db::Postgres(c) => c.begin()?,
        }
        Ok(Tx { db: self, done: false })
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
        match self.db {
            Db::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Db::Postgres(c) => c.commit(),
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
            let _ = match self.db {
                Db::Sqlite(c) => c.execute_batch("ROLLBACK").map_err(StoreError::from),
                Db::Postgres(c) => c.rollback(),
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
