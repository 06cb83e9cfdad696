//! A pipeline's `sql`, read as far as it can be without knowing types: split into
//! statements, each an `INSERT INTO <sink> <query>`, with Flink's window table functions
//! (`TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))`) taken out of the query and
//! described here, since no SQL parser in Rust reads their `TABLE t` argument.
//!
//! The runtime plans what this returns with DataFusion; the operator, which does not link
//! DataFusion, uses it to refuse a script that does not parse or that names a table the
//! pipeline does not have, before anything is deployed. Positions are line and column within
//! the script, 1-based, as the user sees them in their editor. Performs no I/O.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Query,
    SetExpr, Spanned, Statement as AstStatement, TableFactor, TableObject, Value, Visit, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// A place in the script: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line within the script.
    pub line: u64,
    /// Column (in characters) within the line.
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A problem in the script: where, in which statement, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// 1-based statement number, when the problem is inside one.
    pub statement: Option<usize>,
    /// Where in the script, when known.
    pub at: Option<Pos>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.statement, self.at) {
            (Some(s), Some(p)) => write!(f, "statement {s} ({p}): {}", self.message),
            (Some(s), None) => write!(f, "statement {s}: {}", self.message),
            (None, Some(p)) => write!(f, "{p}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// How a window table function assigns windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(..., size)`.
    Tumble {
        /// Window length, milliseconds.
        size_ms: i64,
    },
    /// `HOP(..., slide, size)`.
    Hop {
        /// Distance between window starts, milliseconds.
        slide_ms: i64,
        /// Window length, milliseconds.
        size_ms: i64,
    },
    /// `SESSION(..., gap)`.
    Session {
        /// Inactivity that closes a session, milliseconds.
        gap_ms: i64,
    },
}

/// One window table function call, replaced in the query by a table named [`Self::table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCall {
    /// The name the query now reads instead of the call (`__weir_window_<n>`).
    pub table: String,
    /// The table the call windows (the `TABLE t` argument).
    pub input: String,
    /// The `DESCRIPTOR(col)` argument: the time column.
    pub time_column: String,
    /// `PARTITION BY` columns (`SESSION` only).
    pub partition_by: Vec<String>,
    /// Tumble, hop or session, with its sizes.
    pub kind: WindowKind,
    /// Where the call is.
    pub at: Pos,
}

/// What a statement's query feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `INSERT INTO <sink> <query>`.
    Sink(String),
    /// `CREATE [TEMPORARY] VIEW <name> AS <query>`: a name later statements read.
    View(String),
}

/// One statement: an `INSERT INTO <sink> <query>` or a `CREATE VIEW <name> AS <query>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// 1-based statement number.
    pub number: usize,
    /// Where the statement starts.
    pub at: Pos,
    /// The sink written to, or the view defined.
    pub target: Target,
    /// The query, its window calls replaced by tables named as in [`Self::windows`].
    pub query: Box<Query>,
    /// The window table functions the query called.
    pub windows: Vec<WindowCall>,
}

impl Statement {
    /// The sink an `INSERT` writes.
    #[must_use]
    pub fn sink(&self) -> Option<&str> {
        match &self.target {
            Target::Sink(s) => Some(s),
            Target::View(_) => None,
        }
    }

    /// Names of the tables the query reads, window inputs included, without the window
    /// tables themselves and without names the query defines (`WITH`, at any depth).
    #[must_use]
    pub fn tables_read(&self) -> Vec<(String, Pos)> {
        let defined: Vec<String> = self.ctes().into_iter().map(|(n, _)| n).collect();
        let mut out = Vec::new();
        let _ = sqlparser::ast::visit_relations(&*self.query, |name: &ObjectName| {
            let n = object_name(name);
            if !n.starts_with(WINDOW_PREFIX) && !defined.contains(&n) {
                out.push((n, pos_of(name.span().start)));
            }
            ControlFlow::<()>::Continue(())
        });
        for w in &self.windows {
            out.push((w.input.clone(), w.at));
        }
        out
    }

    /// The names `WITH` defines anywhere in the query (subqueries included), where each is.
    #[must_use]
    pub fn ctes(&self) -> Vec<(String, Pos)> {
        let mut c = Ctes(Vec::new());
        let _ = Visit::visit(&*self.query, &mut c);
        c.0
    }
}

struct Ctes(Vec<(String, Pos)>);

impl sqlparser::ast::Visitor for Ctes {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.0.push((
                    table_name(&cte.alias.name),
                    pos_of(cte.alias.name.span.start),
                ));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Prefix of the tables that stand for window table function calls.
pub const WINDOW_PREFIX: &str = "__weir_window_";

/// Parse a script.
///
/// # Errors
/// Every problem found: a syntax error (one, where parsing stopped), statements that are not
/// `INSERT INTO <sink> SELECT ...`, window calls with wrong arguments. A statement whose tree
/// could be deeper than [`MAX_DEPTH`] is refused before it is parsed, with nothing else.
pub fn parse(script: &str) -> Result<Vec<Statement>, Vec<SqlError>> {
    let tokens = Tokenizer::new(&GenericDialect {}, script)
        .tokenize_with_location()
        .map_err(|e| vec![parse_error(&e.to_string())])?;
    depth::check(&tokens)?;
    let (text, partitions) = blank_table_keywords(script, &tokens);
    let statements = Parser::new(&GenericDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| {
            let mut err = parse_error(&e.to_string());
            if err.at.is_none() && err.message.ends_with("found: EOF") {
                err.at = Some(end_of(script));
                err.message = err
                    .message
                    .replace("found: EOF", "found: the end of the script");
            }
            vec![err]
        })?;
    if statements.is_empty() {
        return Err(vec![SqlError {
            statement: None,
            at: None,
            message: "has no statement; write `INSERT INTO <sink> SELECT ... FROM <source>`".into(),
        }]);
    }
    let mut errs = Vec::new();
    let mut out = Vec::new();
    let mut windows = 0usize;
    for (i, st) in statements.into_iter().enumerate() {
        let number = i + 1;
        let at = pos_of(st.span().start);
        match statement_parts(st) {
            Ok((target, mut query)) => {
                let mut rewriter = WindowRewriter {
                    number,
                    next: &mut windows,
                    calls: Vec::new(),
                    errs: Vec::new(),
                };
                let _ = VisitMut::visit(&mut query, &mut rewriter);
                let WindowRewriter {
                    mut calls, errs: e, ..
                } = rewriter;
                for c in &mut calls {
                    if let Some((_, cols)) = partitions.iter().find(|(p, _)| *p == c.at) {
                        c.partition_by.clone_from(cols);
                    }
                }
                errs.extend(e);
                out.push(Statement {
                    number,
                    at,
                    target,
                    query,
                    windows: calls,
                });
            }
            Err(message) => errs.push(SqlError {
                statement: Some(number),
                at: Some(at),
                message,
            }),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

fn statement_parts(st: AstStatement) -> Result<(Target, Box<Query>), String> {
    if let AstStatement::CreateView(v) = st {
        if v.materialized || !v.columns.is_empty() || v.to.is_some() {
            return Err(
                "CREATE VIEW takes a plain query here (no MATERIALIZED, column list or TO); name the columns in the SELECT"
                    .into(),
            );
        }
        return Ok((Target::View(object_name(&v.name)), v.query));
    }
    let AstStatement::Insert(ins) = st else {
        let kind = st.to_string();
        let word = kind.split_whitespace().next().unwrap_or("").to_uppercase();
        return Err(format!(
            "is {word} ...; each statement is `INSERT INTO <sink> SELECT ...` or `CREATE VIEW <name> AS SELECT ...`"
        ));
    };
    let TableObject::TableName(name) = &ins.table else {
        return Err("INSERT INTO a table function; name a sink".into());
    };
    if !ins.columns.is_empty() {
        return Err(
            "INSERT INTO <sink> (columns) is not supported; name the columns in the SELECT (`... AS name`)"
                .into(),
        );
    }
    if ins.on.is_some() || ins.returning.is_some() || ins.overwrite {
        return Err("INSERT takes no ON CONFLICT, RETURNING or OVERWRITE here".into());
    }
    let Some(source) = ins.source else {
        return Err("INSERT needs a query (`INSERT INTO <sink> SELECT ...`)".into());
    };
    if matches!(source.body.as_ref(), SetExpr::Values(_)) {
        return Err("INSERT ... VALUES is not a stream; select from a source".into());
    }
    Ok((Target::Sink(object_name(name)), source))
}

struct WindowRewriter<'a> {
    number: usize,
    next: &'a mut usize,
    calls: Vec<WindowCall>,
    errs: Vec<SqlError>,
}

impl VisitorMut for WindowRewriter<'_> {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::TableFunction { expr, alias } = factor else {
            return ControlFlow::Continue(());
        };
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let at = pos_of(f.name.span().start);
        let fname = object_name(&f.name);
        let err = |m: String| SqlError {
            statement: Some(self.number),
            at: Some(at),
            message: m,
        };
        let mut args: Vec<&Expr> = Vec::new();
        if let FunctionArguments::List(l) = &f.args {
            for a in &l.args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                    // Named arguments (`offset => ...`) would change the windows; none is
                    // supported, so none may be dropped silently.
                    other => {
                        self.errs.push(err(format!(
                            "{}: argument `{other}` is not supported; pass the table, DESCRIPTOR(...) and the sizes, in order",
                            fname.to_uppercase()
                        )));
                        return ControlFlow::Continue(());
                    }
                }
            }
        }
        let call = match window_call(&fname, &args) {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.errs.push(err(format!(
                    "TABLE({}(...)) is not a window table function; use TUMBLE, HOP or SESSION",
                    fname.to_uppercase()
                )));
                return ControlFlow::Continue(());
            }
            Err(m) => {
                self.errs.push(err(m));
                return ControlFlow::Continue(());
            }
        };
        let table = format!("{WINDOW_PREFIX}{}", *self.next);
        *self.next += 1;
        let alias = alias.clone();
        *factor = table_factor(&table, alias);
        let (input, time_column, kind) = call;
        // `parse` fills in a SESSION's PARTITION BY, which the text blanking took out.
        self.calls.push(WindowCall {
            table,
            input,
            time_column,
            partition_by: Vec::new(),
            kind,
            at,
        });
        ControlFlow::Continue(())
    }
}

/// A window call's input table, time column and kind.
type Call = (String, String, WindowKind);

fn window_call(fname: &str, args: &[&Expr]) -> Result<Option<Call>, String> {
    let upper = fname.to_uppercase();
    let (n_sizes, usage) = match upper.as_str() {
        "TUMBLE" => (1, "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)"),
        "HOP" => (
            2,
            "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND (slide), INTERVAL '1' MINUTE (size))",
        ),
        "SESSION" => (
            1,
            "SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' MINUTE)",
        ),
        "CUMULATE" => {
            return Err("CUMULATE windows are not supported yet; use HOP or TUMBLE".into());
        }
        _ => return Ok(None),
    };
    if args.len() != 2 + n_sizes {
        return Err(format!("{upper} takes {} arguments: {usage}", 2 + n_sizes));
    }
    let input = match args[0] {
        Expr::Identifier(i) => table_name(i),
        Expr::CompoundIdentifier(parts) => {
            parts.iter().map(table_name).collect::<Vec<_>>().join(".")
        }
        other => {
            return Err(format!(
                "{upper}'s first argument is `TABLE <name>`, not `{other}`"
            ));
        }
    };
    let time_column = match args[1] {
        Expr::Function(d) if object_name(&d.name).eq_ignore_ascii_case("descriptor") => {
            match &d.args {
                FunctionArguments::List(l) if l.args.len() == 1 => match &l.args[0] {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c))) => {
                        c.value.clone()
                    }
                    _ => return Err("DESCRIPTOR takes one column name".into()),
                },
                _ => return Err("DESCRIPTOR takes one column name".into()),
            }
        }
        other => {
            return Err(format!(
                "{upper}'s second argument is DESCRIPTOR(<time column>), not `{other}`"
            ));
        }
    };
    let mut sizes = Vec::new();
    for a in &args[2..] {
        sizes.push(interval_ms(a).map_err(|m| format!("{upper}: {m}"))?);
    }
    let kind = match (upper.as_str(), sizes.as_slice()) {
        ("TUMBLE", [size_ms]) => WindowKind::Tumble { size_ms: *size_ms },
        ("HOP", [slide_ms, size_ms]) => {
            if size_ms % slide_ms != 0 {
                return Err(format!(
                    "HOP: the size ({size_ms} ms) must be a multiple of the slide ({slide_ms} ms)"
                ));
            }
            if let Some(n) = crate::validate::transforms::windows_per_record(*size_ms, *slide_ms) {
                return Err(format!(
                    "HOP: a slide of {slide_ms} ms and a size of {size_ms} ms put each record in {n} windows; at most {}: make the slide larger",
                    crate::pipeline::MAX_WINDOWS_PER_RECORD
                ));
            }
            WindowKind::Hop {
                slide_ms: *slide_ms,
                size_ms: *size_ms,
            }
        }
        ("SESSION", [gap_ms]) => WindowKind::Session { gap_ms: *gap_ms },
        _ => return Err(format!("{upper}: {usage}")),
    };
    Ok(Some((input, time_column, kind)))
}

/// `INTERVAL '10' SECOND`, `INTERVAL '1' MINUTE`, `INTERVAL '5 minutes'` in milliseconds.
fn interval_ms(e: &Expr) -> Result<i64, String> {
    let Expr::Interval(iv) = e else {
        return Err(format!("expected an INTERVAL, got `{e}`"));
    };
    if iv.last_field.is_some()
        || iv.leading_precision.is_some()
        || iv.fractional_seconds_precision.is_some()
    {
        return Err(format!(
            "`{e}`: write one number and one unit (INTERVAL '90' MINUTE), not a range or a precision"
        ));
    }
    let text = match iv.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.trim().to_string(),
            other => return Err(format!("expected an INTERVAL, got `{other}`")),
        },
        other => return Err(format!("expected an INTERVAL, got `{other}`")),
    };
    let (number, unit) = match &iv.leading_field {
        Some(field) => (text.as_str(), field_unit(field)?),
        None => {
            let mut parts = text.split_whitespace();
            let n = parts.next().unwrap_or("");
            let u = parts.next().unwrap_or("");
            if parts.next().is_some() {
                return Err(format!("INTERVAL '{text}': write one number and one unit"));
            }
            (n, word_unit(u)?)
        }
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("INTERVAL '{text}': `{number}` is not a whole number"))?;
    match n.checked_mul(unit) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("INTERVAL '{text}' must be positive")),
    }
}

fn field_unit(f: &DateTimeField) -> Result<i64, String> {
    word_unit(&f.to_string())
}

fn word_unit(u: &str) -> Result<i64, String> {
    Ok(match u.to_lowercase().trim_end_matches('s') {
        "millisecond" => 1,
        "second" | "sec" => 1_000,
        "minute" | "min" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        other => {
            return Err(format!(
                "unknown interval unit `{other}`; use MILLISECOND, SECOND, MINUTE, HOUR or DAY"
            ));
        }
    })
}

/// A plain table reference `name [AS alias]`, built by the parser itself so that it stays
/// right whatever fields sqlparser adds to `TableFactor::Table`.
fn table_factor(name: &str, alias: Option<sqlparser::ast::TableAlias>) -> TableFactor {
    let parsed = Parser::new(&GenericDialect {})
        .try_with_sql(&format!("SELECT 1 FROM {name}"))
        .and_then(|mut p| p.parse_query());
    let mut factor = match parsed.map(|q| *q.body) {
        Ok(SetExpr::Select(s)) => s.from.into_iter().next().map(|t| t.relation),
        _ => None,
    }
    .unwrap_or(TableFactor::TableFunction {
        expr: Expr::Identifier(Ident::new(name)),
        alias: None,
    });
    if let TableFactor::Table { alias: a, .. } = &mut factor {
        *a = alias;
    }
    factor
}

/// `TABLE t` inside a window call becomes `t` and `PARTITION BY ...` inside `SESSION(...)`
/// is blanked (its columns returned), with spaces of the same length so every position stays
/// where the user wrote it.
fn blank_table_keywords(script: &str, tokens: &[TokenWithSpan]) -> (String, Partitions) {
    let significant: Vec<_> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let lines = LineStarts::new(script);
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut partitions = Partitions::new();
    let is_kw = |t: &Token, k: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(k));
    let is_window = |t: &Token| {
        ["TUMBLE", "HOP", "SESSION", "CUMULATE"]
            .iter()
            .any(|k| is_kw(t, k))
    };
    for w in significant.windows(5) {
        if is_kw(&w[0].token, "TABLE")
            && w[1].token == Token::LParen
            && is_window(&w[2].token)
            && w[3].token == Token::LParen
            && is_kw(&w[4].token, "TABLE")
            && let (Some(a), Some(b)) = (lines.offset(w[4].span.start), lines.offset(w[4].span.end))
        {
            cuts.push((a, b));
        }
    }
    for (i, t) in significant.iter().enumerate() {
        // SESSION ( TABLE t PARTITION BY a, b , DESCRIPTOR(...) ...
        if i < 4
            || !is_kw(&t.token, "PARTITION")
            || !significant
                .get(i + 1)
                .is_some_and(|n| is_kw(&n.token, "BY"))
            || !is_kw(&significant[i - 2].token, "TABLE")
            || significant[i - 3].token != Token::LParen
            || !is_kw(&significant[i - 4].token, "SESSION")
        {
            continue;
        }
        let mut cols = Vec::new();
        let mut end = None;
        let mut last_comma = None;
        for n in &significant[i + 2..] {
            match &n.token {
                Token::Word(w)
                    if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("descriptor") =>
                {
                    end = Some(n);
                    break;
                }
                // Columns are case-sensitive, quoted or not, as DataFusion plans them.
                Token::Word(w) => cols.push(w.value.clone()),
                Token::Comma => last_comma = Some(n),
                _ => break,
            }
        }
        // The comma before DESCRIPTOR stays; PARTITION BY and the columns become blank.
        if let (Some(a), Some(_), Some(c)) = (lines.offset(t.span.start), end, last_comma)
            && let Some(b) = lines.offset(c.span.start)
        {
            cuts.push((a, b));
            partitions.push((pos_of(significant[i - 4].span.start), cols));
        }
    }
    let mut text = script.to_string();
    // From the end: a blanked character may be shorter in bytes than the one it replaces,
    // which would shift every later cut's byte offsets.
    cuts.sort_unstable();
    for (a, b) in cuts.into_iter().rev() {
        if let Some(s) = text.get(a..b) {
            let blank: String = s
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' })
                .collect();
            text.replace_range(a..b, &blank);
        }
    }
    (text, partitions)
}

/// `PARTITION BY` columns of each `SESSION` call, by the position of its name.
type Partitions = Vec<(Pos, Vec<String>)>;

struct LineStarts<'a>(Vec<usize>, &'a str);

impl<'a> LineStarts<'a> {
    fn new(s: &'a str) -> Self {
        let mut v = vec![0];
        v.extend(s.match_indices('\n').map(|(i, _)| i + 1));
        Self(v, s)
    }

    /// Byte offset of a 1-based (line, character column).
    fn offset(&self, loc: sqlparser::tokenizer::Location) -> Option<usize> {
        let start = *self
            .0
            .get(usize::try_from(loc.line).ok()?.checked_sub(1)?)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let rest = self.1.get(start..)?;
        match rest.char_indices().nth(col) {
            Some((b, _)) => Some(start + b),
            None => Some(start + rest.len()),
        }
    }
}

/// Where a script ends: just after its last non-blank character.
fn end_of(script: &str) -> Pos {
    let trimmed = script.trim_end();
    let line = trimmed.lines().count().max(1);
    let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) + 1;
    Pos {
        line: line as u64,
        column: column as u64,
    }
}

fn pos_of(l: sqlparser::tokenizer::Location) -> Pos {
    Pos {
        line: l.line,
        column: l.column,
    }
}

/// sqlparser says `sql parser error: Expected: ..., found: x at Line: 3, Column: 7`.
fn parse_error(msg: &str) -> SqlError {
    let body = msg
        .trim_start_matches("sql parser error: ")
        .trim_start_matches("sql tokenizer error: ");
    let (text, at) = match body.rfind(" at Line: ") {
        Some(i) => {
            let loc = &body[i + " at Line: ".len()..];
            let mut parts = loc.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok());
            let column = parts.next().and_then(|c| c.trim().parse().ok());
            let at = match (line, column) {
                (Some(line), Some(column)) => Some(Pos { line, column }),
                _ => None,
            };
            (body[..i].to_string(), at)
        }
        None => (body.to_string(), None),
    };
    SqlError {
        statement: None,
        at,
        message: format!("syntax error: {text}"),
    }
}

/// A table's name (source, sink, view, `WITH` query): case-insensitive, quoted or not, so
/// `Orders`, `orders` and `"ORDERS"` are one table. Column names are case-sensitive, as in
/// Flink SQL and in the records' schema.
#[must_use]
pub fn table_name(i: &Ident) -> String {
    i.value.to_lowercase()
}

/// Whether the script has a `--` comment: such a comment runs to the end of its line, so a
/// script whose lines were joined (a YAML folded scalar) would lose what follows it.
#[must_use]
pub fn has_line_comment(script: &str) -> bool {
    Tokenizer::new(&GenericDialect {}, script)
        .tokenize()
        .is_ok_and(|tokens| {
            tokens.iter().any(|t| {
                matches!(
                    t,
                    Token::Whitespace(sqlparser::tokenizer::Whitespace::SingleLineComment { .. })
                )
            })
        })
}

fn object_name(n: &ObjectName) -> String {
    n.0.iter()
        .map(|p| match p.as_ident() {
            Some(i) => table_name(i),
            None => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

pub(crate) mod depth;
pub use depth::MAX_DEPTH;

#[cfg(test)]
mod tests;
