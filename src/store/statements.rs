//! Statements sent as one. A batch of the disclosure log writes five to
//! eight statements. On SQLite each statement is a hand-off to the
//! connection's worker thread and back, and under load each hand-off waits
//! for a core: the batch's statements, not their work, set the commit
//! cycle. sqlx runs a query of several statements on the worker in one
//! call, binding the arguments in order across them, so on SQLite the
//! batch is one hand-off; its placeholders are anonymous (`?`), which
//! SQLite binds without looking each one up by name. PostgreSQL's extended
//! protocol takes one statement per query: there each runs on its own,
//! with `$n` placeholders.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Executor};

use super::Backend;

/// A value to bind.
#[derive(Clone, Copy)]
pub enum Arg<'q> {
    Int(i64),
    Bytes(&'q [u8]),
    Text(&'q str),
    OptText(Option<&'q str>),
    OptBytes(Option<&'q [u8]>),
}

pub struct Statements<'q> {
    backend: Backend,
    list: Vec<(String, Vec<Arg<'q>>)>,
}

impl<'q> Statements<'q> {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            list: Vec::new(),
        }
    }

    /// Placeholder `n` (from 1) of a statement.
    fn placeholder(&self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => "?".into(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// `sql` with `{}` for each of `args`, in order.
    pub fn push(&mut self, sql: &str, args: Vec<Arg<'q>>) {
        let mut parts = sql.split("{}");
        let mut text = parts.next().unwrap_or_default().to_owned();
        for (n, part) in parts.enumerate() {
            text.push_str(&self.placeholder(n + 1));
            text.push_str(part);
        }
        self.list.push((text, args));
    }

    /// `<insert> VALUES (..), (..) <tail>`, `rows_per_statement` rows of
    /// `cols` values at a time.
    pub fn values(
        &mut self,
        insert: &str,
        cols: usize,
        rows_per_statement: usize,
        rows: Vec<Vec<Arg<'q>>>,
        tail: &str,
    ) {
        for chunk in rows.chunks(rows_per_statement) {
            let mut sql = format!("{insert} VALUES ");
            let mut n = 0;
            for (r, row) in chunk.iter().enumerate() {
                debug_assert_eq!(row.len(), cols);
                sql.push_str(if r == 0 { "(" } else { ", (" });
                for c in 0..cols {
                    n += 1;
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&self.placeholder(n));
                }
                sql.push(')');
            }
            sql.push_str(tail);
            self.list.push((sql, chunk.concat()));
        }
    }

    pub async fn execute(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let mut sql = String::new();
                let mut args = Vec::new();
                for (s, a) in self.list {
                    sql.push_str(&s);
                    sql.push_str(";\n");
                    args.extend(a);
                }
                if !sql.is_empty() {
                    run(&sql, &args, conn).await?;
                }
            }
            Backend::Postgres => {
                for (s, a) in &self.list {
                    run(s, a, conn).await?;
                }
            }
        }
        Ok(())
    }
}

async fn run(sql: &str, args: &[Arg<'_>], conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    // Each batch's text differs (its row counts): not worth a cache slot.
    let mut q: Query<'_, Any, AnyArguments> =
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).persistent(false);
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::OptBytes(v) => q.bind(v),
        };
    }
    conn.execute(q).await.map(drop)
}
