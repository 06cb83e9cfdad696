//! A `sql` pipeline's checks that need no types: the script parses, every statement writes a
//! named sink and reads the named source, windows use the source's event time, and every
//! sink is written. Column and type checks are the runtime planner's (DataFusion).

use crate::pipeline::{DecodeErrorPolicy, JobFile, LatePolicy, Transform};
use crate::sql::{self, SqlError, Target};
use crate::validate::FieldError;

/// An error in the script, at the file line of the statement's line.
#[must_use]
pub fn at_sql(e: &SqlError) -> FieldError {
    match e.at {
        Some(p) => FieldError::within("sql", usize::try_from(p.line).unwrap_or(1), e.to_string()),
        None => FieldError::new("sql", e.to_string()),
    }
}

pub(super) fn check(job: &JobFile, errs: &mut Vec<FieldError>) {
    let p = &job.pipeline;
    // Side outputs are not tables: a name there would suggest SQL can write them.
    for (i, t) in p.transforms.iter().enumerate() {
        if let Transform::Window(w) = t
            && let LatePolicy::SideOutput(s) = &w.late_records
            && s.name().is_some()
        {
            errs.push(FieldError::new(
                format!(
                    "transforms[{i}].window.lateRecords.sideOutput.{}.name",
                    s.kind()
                ),
                "only the pipeline's sinks have names",
            ));
        }
    }
    if let DecodeErrorPolicy::SideOutput(s) = &p.source.on_decode_error
        && s.name().is_some()
    {
        errs.push(FieldError::new(
            format!("source.onDecodeError.sideOutput.{}.name", s.kind()),
            "only the pipeline's sinks have names",
        ));
    }
    let mut names: Vec<(&str, String)> = Vec::new();
    if let Some(n) = &p.source.name {
        names.push((n, "source.name".into()));
    }
    for (i, s) in p.sources.iter().enumerate() {
        let path = format!("sources[{i}].name");
        match &s.name {
            None => errs.push(FieldError::new(
                &path,
                "a further source is read by name: set its name (e.g. `name: customers`)",
            )),
            Some(n) => {
                if let Some((_, first)) = names.iter().find(|(m, _)| m.eq_ignore_ascii_case(n)) {
                    errs.push(FieldError::new(
                        &path,
                        format!("`{n}` is already the name of {first}; names must differ"),
                    ));
                }
                names.push((n, path));
            }
        }
    }
    for (i, s) in p.sinks.iter().enumerate() {
        if let Some(n) = s.name() {
            let path = format!("sinks[{i}].{}.name", s.kind());
            if let Some((_, first)) = names.iter().find(|(m, _)| m.eq_ignore_ascii_case(n)) {
                errs.push(FieldError::new(
                    &path,
                    format!("`{n}` is already the name of {first}; names must differ"),
                ));
            }
            names.push((n, path));
        }
    }
    let Some(script) = &p.sql else {
        if !p.sources.is_empty() {
            errs.push(FieldError::new(
                "sources",
                "further sources are read by sql statements, by name; a transforms pipeline reads its one source",
            ));
        }
        if p.state_ttl.is_some() {
            errs.push(FieldError::new(
                "stateTtl",
                "applies to sql pipelines (a regular join's rows); transforms bound their state themselves",
            ));
        }
        return;
    };
    if p.state_ttl.is_some_and(|d| d.as_millis_i64() <= 0) {
        errs.push(FieldError::new(
            "stateTtl",
            "must be longer than 0 (leave it out to keep a regular join's rows for ever)",
        ));
    }
    if !p.transforms.is_empty() {
        errs.push(FieldError::new(
            "sql",
            "a pipeline is either transforms or sql, not both",
        ));
    }
    let source = p.source.name.as_deref().map(str::to_lowercase);
    // Every source a statement may read, with its event-time column.
    let sources: Vec<(String, Option<String>)> = std::iter::once(&p.source)
        .chain(&p.sources)
        .filter_map(|s| {
            s.name.as_deref().map(|n| {
                (
                    n.to_lowercase(),
                    s.event_time.as_ref().map(|e| e.field.clone()),
                )
            })
        })
        .collect();
    let is_source = |t: &str| sources.iter().any(|(n, _)| n == t);
    if source.is_none() {
        errs.push(FieldError::new(
            "source.name",
            "a sql pipeline reads its source by name: set source.name (e.g. `name: orders`)",
        ));
    }
    for (i, s) in p.sinks.iter().enumerate() {
        if s.name().is_none() {
            errs.push(FieldError::new(
                format!("sinks[{i}].{}", s.kind()),
                format!(
                    "a sql pipeline writes to sinks by name: set sinks[{i}].{}.name",
                    s.kind()
                ),
            ));
        }
    }
    let statements = match sql::parse(script) {
        Ok(s) => s,
        Err(e) => {
            errs.extend(e.iter().map(at_sql));
            return;
        }
    };
    let sink_names: Vec<String> = p
        .sinks
        .iter()
        .filter_map(|s| s.name().map(str::to_lowercase))
        .collect();
    let mut views: Vec<String> = Vec::new();
    for st in &statements {
        let err = |at, message: String| {
            at_sql(&SqlError {
                statement: Some(st.number),
                at: Some(at),
                message,
            })
        };
        for (name, at) in st.ctes() {
            // Inside a window call `TABLE orders` always means the source, so a WITH query
            // of that name would be read in some places and not others.
            if is_source(&name) || sink_names.contains(&name) || views.contains(&name) {
                errs.push(err(
                    at,
                    format!(
                        "WITH `{name}`: that name is taken (the source, a sink or a view); give the WITH query another name"
                    ),
                ));
            }
        }
        for (table, at) in st.tables_read() {
            if !is_source(&table) && !views.contains(&table) {
                let mut known: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
                known.extend(views.iter().cloned());
                errs.push(err(
                    at,
                    format!(
                        "table `{table}` not found; the tables are the sources and the views defined before: {}",
                        list(&known)
                    ),
                ));
            }
        }
        for w in &st.windows {
            // A window over a source uses that source's event time; over a view, the event
            // time of a source it reads, passed through under that name.
            let event_time = match sources.iter().find(|(n, _)| *n == w.input) {
                Some((_, f)) => f.clone(),
                None => sources
                    .iter()
                    .filter_map(|(_, f)| f.clone())
                    .find(|f| *f == w.time_column)
                    .or_else(|| p.source.event_time.as_ref().map(|e| e.field.clone())),
            };
            match &event_time {
                Some(f) if *f == w.time_column => {}
                Some(f) => errs.push(err(
                    w.at,
                    format!(
                        "DESCRIPTOR({}): windows use the source's event-time column `{f}` (source.eventTime.field; a view windowed passes it through under that name)",
                        w.time_column
                    ),
                )),
                None => errs.push(err(
                    w.at,
                    "a window needs event time: set source.eventTime".to_string(),
                )),
            }
        }
        match &st.target {
            Target::Sink(sink) if !sink_names.contains(sink) => errs.push(err(
                st.at,
                format!(
                    "INSERT INTO `{sink}`: no sink has that name; the sinks are: {}",
                    list(&sink_names)
                ),
            )),
            Target::Sink(sink) => {
                if let Some(first) = statements
                    .iter()
                    .find(|o| o.number < st.number && o.sink() == Some(sink.as_str()))
                {
                    // Two statements into one sink would each write every row.
                    errs.push(err(
                        st.at,
                        format!(
                            "INSERT INTO `{sink}`: statement {} writes that sink already; a sink is written by one statement (combine them with UNION ALL)",
                            first.number
                        ),
                    ));
                }
            }
            Target::View(v) => {
                if is_source(v) || sink_names.contains(v) || views.contains(v) {
                    errs.push(err(
                        st.at,
                        format!("CREATE VIEW `{v}`: that name is taken (the source, a sink or another view)"),
                    ));
                }
                views.push(v.clone());
            }
        }
    }
    for (i, s) in p.sinks.iter().enumerate() {
        if let Some(n) = s.name()
            && !statements
                .iter()
                .any(|st| st.sink() == Some(n.to_lowercase().as_str()))
        {
            errs.push(FieldError::new(
                format!("sinks[{i}].{}.name", s.kind()),
                format!("no statement writes `{n}` (`INSERT INTO {n} SELECT ...`)"),
            ));
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none named)".into()
    } else {
        names.join(", ")
    }
}
