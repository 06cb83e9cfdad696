//! Loader tests: good files parse; each kind of bad file names the field and its line.

use crate::{JobErrors, load_job};

const GOOD: &str = "\
name: orders
parallelism: 2
checkpoint: {interval: 2s, storage: file://./.weir}
source:
  datagen:
    seed: 7
    count: 1000
    fields:
      store_id: {key: {cardinality: 5, prefix: s-}}
      amount: {uniform: {min: 0, max: 10}}
      ts: {eventTime: {step: 10ms}}
  schema:
    - {name: store_id, type: string}
    - {name: amount, type: float64}
    - {name: ts, type: timestamp}
  eventTime: {field: ts, maxOutOfOrderness: 1s}
transforms:
  - filter: amount > 1
  - window:
      tumbling: 10s
      keyBy: [store_id]
      aggregates: {orders: count(*), sales: sum(amount)}
sinks:
  - file: {path: out}
  - stdout: {}
";

fn errors(src: &str) -> JobErrors {
    load_job("job.yaml", src).expect_err("job should be rejected")
}

#[test]
fn good_job_parses_with_defaults() {
    let job = load_job("job.yaml", GOOD).expect("valid job");
    assert_eq!(job.parallelism, 2);
    assert_eq!(job.max_parallelism, 128);
    assert_eq!(job.checkpoint.retained, 3);
    assert_eq!(job.pipeline.transforms.len(), 2);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let src = GOOD.replace("tumbling: 10s", "tumbling: 10s\n      tumblng: 5s");
    let e = errors(&src);
    assert_eq!(e.errors.len(), 1, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("tumblng"), "{msg}");
    assert!(msg.contains("transforms[1].window"), "{msg}");
    assert_eq!(e.errors[0].line, Some(21), "{msg}");
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let src = GOOD.replace("parallelism: 2", "parallelism: two");
    let e = errors(&src);
    let msg = e.to_string();
    assert!(msg.contains("parallelism"), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");
    assert_eq!(e.errors[0].line, Some(2), "{msg}");
}

#[test]
fn bad_duration_names_the_field() {
    let src = GOOD.replace("tumbling: 10s", "tumbling: 10 seconds");
    let e = errors(&src);
    let msg = e.to_string();
    assert!(msg.contains("transforms[1].window"), "{msg}");
    assert!(msg.contains("invalid duration `10 seconds`"), "{msg}");
    assert_eq!(e.errors[0].line, Some(20), "{msg}");
}

#[test]
fn event_time_on_a_non_timestamp_field_is_rejected_with_its_line() {
    let src = GOOD.replace("eventTime: {field: ts,", "eventTime: {field: amount,");
    let e = errors(&src);
    let err = e
        .errors
        .iter()
        .find(|e| e.path == "source.eventTime.field")
        .expect("eventTime error");
    assert!(err.message.contains("needs a timestamp field"), "{e}");
    assert_eq!(err.line, Some(16), "{e}");
}

#[test]
fn idle_timeout_is_read_and_zero_is_rejected_with_its_line() {
    let src = GOOD.replace(
        "maxOutOfOrderness: 1s}",
        "maxOutOfOrderness: 1s, idleTimeout: 30s}",
    );
    let job = load_job("job.yaml", &src).expect("idleTimeout: 30s is valid");
    let et = job.pipeline.source.event_time.expect("eventTime");
    assert_eq!(
        et.idle_timeout.map(|d| d.get()),
        Some(std::time::Duration::from_secs(30))
    );
    let src = GOOD.replace(
        "maxOutOfOrderness: 1s}",
        "maxOutOfOrderness: 1s, idleTimeout: 0s}",
    );
    let e = errors(&src);
    let err = e
        .errors
        .iter()
        .find(|e| e.path == "source.eventTime.idleTimeout")
        .expect("idleTimeout error");
    assert!(err.message.contains("greater than 0"), "{e}");
    assert_eq!(err.line, Some(16), "{e}");
}

#[test]
fn window_without_event_time_is_rejected() {
    let src = GOOD.replace("  eventTime: {field: ts, maxOutOfOrderness: 1s}\n", "");
    let e = errors(&src);
    let err = e
        .errors
        .iter()
        .find(|e| e.path == "transforms[1].window")
        .expect("window error");
    assert!(err.message.contains("source.eventTime"), "{e}");
    assert_eq!(err.line, Some(18), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let src = GOOD
        .replace("parallelism: 2", "parallelism: 0")
        .replace("count(*)", "median(amount)")
        .replace("  - file: {path: out}\n  - stdout: {}\n", "  []\n")
        .replace("sinks:\n  []", "sinks: []");
    let e = errors(&src);
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"parallelism"), "{e}");
    assert!(
        paths.contains(&"transforms[1].window.aggregates.orders"),
        "{e}"
    );
    assert!(paths.contains(&"sinks"), "{e}");
}

#[test]
fn generator_must_match_field_type() {
    let src = GOOD.replace(
        "amount: {uniform: {min: 0, max: 10}}",
        "amount: {sequence: {}}",
    );
    let e = errors(&src);
    assert!(
        e.to_string().contains("source.datagen.fields.amount"),
        "{e}"
    );
}

#[test]
fn a_choice_written_as_a_bare_word_is_refused_with_the_map_syntax() {
    let src = GOOD.replace("amount: {uniform: {min: 0, max: 10}}", "amount: sequence");
    let e = errors(&src).to_string();
    assert!(e.contains("source.datagen.fields.amount"), "{e}");
    assert!(e.contains("`{sequence: {}}`"), "{e}");
}

const KAFKA: &str = "\
name: sales
checkpoint: {interval: 2s, timeout: 10m}
source:
  kafka: {bootstrapServers: k:9092, topic: orders}
  schema:
    - {name: store_id, type: string}
    - {name: ts, type: timestamp}
sinks:
  - kafka: {bootstrapServers: k:9092, topic: out, transactionalIdPrefix: sales}
  - clickhouse: {url: http://ch:8123, table: t}
";

#[test]
fn connector_settings_parse_with_defaults() {
    let job = load_job("job.yaml", KAFKA).expect("valid job");
    let k = job.pipeline.source.kafka.as_ref().expect("kafka source");
    assert_eq!(k.starting_offsets, crate::StartingOffsets::Earliest);
    assert_eq!(k.partition_discovery.to_string(), "30s");
    match &job.pipeline.sinks[1] {
        crate::SinkSpec::ClickHouse(c) => {
            assert_eq!(c.mode, crate::ClickHouseMode::WriteAhead);
            assert_eq!(c.database, "default");
        }
        other => panic!("expected clickhouse, got {other:?}"),
    }
}

#[test]
fn connector_mistakes_name_the_field_and_the_fix() {
    let cases: [(&str, &str, &str); 11] = [
        (
            "topic: orders}",
            "topic: orders, format: avro, schemaRegistry: {url: \"https://u:p@sr:8081\"}}",
            "schemaRegistry.url (line 4): holds credentials",
        ),
        (
            "topic: orders}",
            "topic: orders, format: avro}",
            "source.kafka.schemaRegistry (line 4): is required with format: avro or protobuf",
        ),
        (
            "topic: orders}",
            "topic: orders, schemaRegistry: {url: \"http://sr:8081\"}}",
            "schemaRegistry (line 4): is only used with format: avro or protobuf",
        ),
        (
            "topic: orders}",
            "topic: orders, format: avro, schemaRegistry: {url: \"sr:8081\", username: u}}",
            "source.kafka.schemaRegistry.url (line 4): `sr:8081` is not an http",
        ),
        (
            "transactionalIdPrefix: sales",
            "transactionalIdPrefix: sales, format: avro, valueField: x, schemaRegistry: {url: \"http://sr\", subject: s}",
            "sinks[0].kafka.valueField",
        ),
        (
            "transactionalIdPrefix: sales",
            "delivery: exactly-once",
            "sinks[0].kafka.transactionalIdPrefix",
        ),
        (
            "transactionalIdPrefix: sales}",
            "transactionalIdPrefix: sales, transactionTimeout: 12m}",
            "raise transactionTimeout",
        ),
        (
            "topic: orders}",
            "topic: orders, startingOffsets: timestamp}",
            "source.kafka.startingTimestamp",
        ),
        (
            "topic: orders}",
            "topic: orders, format: raw}",
            "format: raw needs exactly these fields",
        ),
        (
            "url: http://ch:8123",
            "url: ch:8123",
            "sinks[1].clickhouse.url",
        ),
        (
            "  kafka: {bootstrapServers: k:9092, topic: orders}\n",
            "  kafka: {bootstrapServers: k:9092, topic: orders}\n  file: {path: x}\n",
            "found file, kafka",
        ),
    ];
    for (from, to, expect) in cases {
        let src = KAFKA.replacen(from, to, 1);
        assert_ne!(src, KAFKA, "case `{to}` did not change the file");
        let msg = errors(&src).to_string();
        assert!(
            msg.contains(expect),
            "`{to}`: expected `{expect}` in:\n{msg}"
        );
    }
}

/// GOOD with its transforms written as SQL over a named source and named sinks.
fn sql_job(sql: &str) -> String {
    let head = GOOD
        .replace("source:\n", "source:\n  name: orders\n")
        .replace(
            "  - file: {path: out}\n  - stdout: {}\n",
            "  - file: {name: out, path: out}\n",
        );
    let cut = head.find("transforms:").expect("transforms");
    let sinks = &head[head.find("sinks:").expect("sinks")..];
    let body: String = sql.lines().map(|l| format!("  {l}\n")).collect();
    format!("{}{sinks}sql: |\n{body}", &head[..cut])
}

/// The message of `e`'s one error, after checking it is on field `sql` at the file line
/// holding `needle`.
fn one_sql_error_at<'a>(e: &'a JobErrors, src: &str, needle: &str) -> &'a str {
    let line = src.lines().position(|l| l.contains(needle)).expect("line") + 1;
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].path, "sql");
    assert_eq!(e.errors[0].line, Some(line), "{e}");
    &e.errors[0].message
}

const WINDOW_SQL: &str = "INSERT INTO out
SELECT store_id, window_start, window_end, count(*) AS orders
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY store_id, window_start, window_end";

#[test]
fn a_sql_pipeline_over_named_source_and_sinks_parses() {
    let job = load_job("job.yaml", &sql_job(WINDOW_SQL)).expect("valid sql job");
    assert!(job.pipeline.transforms.is_empty());
    assert_eq!(job.pipeline.source.name.as_deref(), Some("orders"));
    assert_eq!(job.pipeline.sinks[0].name(), Some("out"));
}

#[test]
fn sql_problems_name_the_field_statement_and_file_line() {
    // A table the pipeline does not have: the statement's line 3 is the file's.
    let src = sql_job(&WINDOW_SQL.replace("TABLE orders", "TABLE ordres"));
    let e = errors(&src);
    let message = one_sql_error_at(&e, &src, "ordres");
    assert!(message.contains("statement 1 (line 3, column 12)"), "{e}");
    assert!(message.contains("`ordres` not found"), "{e}");
    // A sink nobody writes, a sink without a name, a duplicate name, sql beside transforms.
    let src = sql_job(WINDOW_SQL).replace(
        "  - file: {name: out, path: out}\n",
        "  - file: {name: out, path: out}\n  - file: {name: orders, path: o2}\n  - stdout: {}\n",
    );
    let e = errors(&src).to_string();
    assert!(
        e.contains("sinks[1].file.name") && e.contains("already the name of source.name"),
        "{e}"
    );
    assert!(e.contains("no statement writes `orders`"), "{e}");
    assert!(
        e.contains("sinks[2].stdout") && e.contains("set sinks[2].stdout.name"),
        "{e}"
    );
    let src = sql_job(WINDOW_SQL).replace("sql: |", "transforms: [{filter: amount > 1}]\nsql: |");
    assert!(
        errors(&src)
            .to_string()
            .contains("either transforms or sql")
    );
    // stateTtl: for sql pipelines, and longer than nothing.
    let src = GOOD.replace("transforms:", "stateTtl: 1h\ntransforms:");
    let e = errors(&src);
    assert_eq!(e.errors[0].path, "stateTtl", "{e}");
    let src = sql_job(WINDOW_SQL).replace("sql: |", "stateTtl: 0s\nsql: |");
    assert!(errors(&src).to_string().contains("longer than 0"));
    let src = sql_job(WINDOW_SQL).replace("sql: |", "stateTtl: 90m\nsql: |");
    let job = load_job("job.yaml", &src).expect("valid");
    assert_eq!(
        job.pipeline.state_ttl.map(|d| d.as_millis_i64()),
        Some(5_400_000)
    );
    // A window over another column than the event time; a syntax error at its place.
    let src = sql_job(&WINDOW_SQL.replace("DESCRIPTOR(ts)", "DESCRIPTOR(amount)"));
    assert!(errors(&src).to_string().contains("event-time column `ts`"));
    let e = errors(&sql_job(&WINDOW_SQL.replace("GROUP BY", "GROUP BY BY")));
    assert!(e.errors[0].message.contains("syntax error"), "{e}");
    assert!(e.errors[0].message.contains("line 4"), "{e}");
}

#[test]
fn a_statement_too_deep_to_walk_is_refused_at_its_file_line_and_a_deep_one_within_the_bound_loads()
{
    // Loaded on a 2 MiB stack, as the operator validates on a tokio worker: a walk of the
    // over-deep statement would abort the process instead of returning this error.
    let run = |sql: String| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let src = sql_job(&sql);
                (load_job("job.yaml", &src).err(), src)
            })
            .expect("spawn")
            .join()
            .expect("no panic")
    };
    let ors = |n: usize| vec!["amount > 1"; n].join(" OR ");
    let (e, src) = run(format!(
        "INSERT INTO out\nSELECT * FROM orders\nWHERE {}",
        ors(5_000)
    ));
    let e = e.expect("refused");
    assert!(
        one_sql_error_at(&e, &src, "INSERT INTO")
            .contains("statement 1 (line 1, column 1): is nested up to 10000 levels deep"),
        "{e}"
    );
    let (e, _) = run(format!(
        "INSERT INTO out\nSELECT * FROM orders\nWHERE {}",
        ors(crate::sql::MAX_DEPTH / 2 - 1)
    ));
    assert!(e.is_none(), "{e:?}");
}

#[test]
fn a_with_query_may_not_shadow_the_source_a_window_reads() {
    // Inside TUMBLE, `TABLE orders` is the source whatever WITH says; refusing the shadowing
    // name is the only way the two readings cannot differ.
    let sql = format!(
        "INSERT INTO out WITH orders AS (SELECT * FROM orders WHERE amount > 1)\n{}",
        WINDOW_SQL.trim_start_matches("INSERT INTO out\n")
    );
    let e = errors(&sql_job(&sql)).to_string();
    assert!(e.contains("WITH `orders`: that name is taken"), "{e}");
}

#[test]
fn a_sink_is_written_by_one_statement() {
    let sql = format!("{WINDOW_SQL};\n{WINDOW_SQL}");
    let e = errors(&sql_job(&sql)).to_string();
    assert!(e.contains("statement 1 writes that sink already"), "{e}");
}

#[test]
fn a_folded_script_with_a_line_comment_is_refused() {
    // Folded, `-- big ones` would swallow `AND amount < 100` and the rest of the line.
    let sql =
        "INSERT INTO out SELECT * FROM orders\nWHERE amount > 1 -- big ones\nAND amount < 100";
    let folded = sql_job(sql).replace("sql: |", "sql: >");
    let e = errors(&folded).to_string();
    assert!(e.contains("literal block (`sql: |`)"), "{e}");
    load_job("job.yaml", &sql_job(sql)).expect("a literal block keeps its lines");
    let no_comment = sql_job(&sql.replace(" -- big ones", "")).replace("sql: |", "sql: >");
    load_job("job.yaml", &no_comment).expect("folded without comments is harmless");
}

#[test]
fn further_sources_are_named_tables_of_a_sql_pipeline() {
    let side = "sources:\n  - name: stores\n    file: {path: stores.jsonl}\n    schema:\n      - {name: store_id, type: string}\n      - {name: city, type: string}\n";
    let join = "INSERT INTO out SELECT o.order_id, s.city FROM orders o JOIN stores s ON o.store_id = s.store_id";
    let ok = sql_job(join).replace("sinks:", &format!("{side}sinks:"));
    let job = load_job("job.yaml", &ok).expect("a join of two sources");
    assert_eq!(job.pipeline.sources[0].name.as_deref(), Some("stores"));
    // A table that is neither source nor view is named with the ones there are.
    let e = errors(&sql_job(join));
    assert!(e.to_string().contains("table `stores` not found"), "{e}");
    // A further source needs a name, different from the others'.
    let e = errors(&ok.replace("  - name: stores\n", "  - name: orders\n"));
    assert!(
        e.errors
            .iter()
            .any(|f| f.path == "sources[0].name" && f.message.contains("already the name")),
        "{e}"
    );
    // Its own checks are reported at its own path.
    let e = errors(&ok.replace("{name: city, type: string}", "{name: city, type: strin}"));
    assert!(e.to_string().contains("sources"), "{e}");
    let e = errors(&ok.replace(
        "      - {name: city, type: string}\n",
        "      - {name: store_id, type: string}\n",
    ));
    assert!(
        e.errors
            .iter()
            .any(|f| f.path == "sources[0].schema[1].name"),
        "{e}"
    );
    // Only sql reads them.
    let e = errors(&GOOD.replace("sinks:", &format!("{side}sinks:")));
    assert!(e.errors.iter().any(|f| f.path == "sources"), "{e}");
}

#[test]
fn state_ids_default_to_position_and_must_be_unique_and_well_formed() {
    let job = load_job("job.yaml", GOOD).expect("valid job");
    assert_eq!(
        crate::state_ids(&job.pipeline.transforms),
        [None, Some("window-0".to_string())]
    );
    let named = GOOD.replace("tumbling: 10s", "id: sales-per-store\n      tumbling: 10s");
    let job = load_job("job.yaml", &named).expect("valid job");
    assert_eq!(
        crate::state_ids(&job.pipeline.transforms)[1].as_deref(),
        Some("sales-per-store")
    );
    // A dedup named like the window's default id.
    let clash = GOOD.replace(
        "  - filter: amount > 1",
        "  - dedup: {id: window-1, keyBy: [store_id], ttl: 1m}",
    );
    let msg = errors(&clash).to_string();
    assert!(msg.contains("transforms[1].window.id"), "{msg}");
    assert!(
        msg.contains("already the state id of transforms[0]"),
        "{msg}"
    );
    let bad = GOOD.replace("tumbling: 10s", "id: Sales_Total\n      tumbling: 10s");
    let msg = errors(&bad).to_string();
    assert!(msg.contains("transforms[1].window.id"), "{msg}");
    assert!(msg.contains("not a state id"), "{msg}");
}

#[test]
fn checkpoint_storage_takes_file_s3_azure_and_gcs_uris() {
    for uri in [
        "s3://b/p",
        "az://container/p",
        "gs://bucket/p",
        "file:///tmp/x",
    ] {
        let src = GOOD.replace("storage: file://./.weir", &format!("storage: \"{uri}\""));
        load_job("job.yaml", &src).unwrap_or_else(|e| panic!("{uri}: {e}"));
    }
    let msg = errors(&GOOD.replace("storage: file://./.weir", "storage: ftp://x/y")).to_string();
    assert!(msg.contains("checkpoint.storage"), "{msg}");
    assert!(msg.contains("az:// (Azure Blob Storage)"), "{msg}");
}

#[test]
fn mysql_sink_settings_parse_with_defaults_and_mistakes_name_the_field() {
    let base = "name: my
source:
  file: {path: in.jsonl}
  schema: [{name: id, type: int64}]
sinks:
  - mysql: {url: \"mysql://weir@db:3306/shop\", table: t, passwordEnv: MY_PASSWORD}
";
    let job = load_job("job.yaml", base).expect("valid job");
    match &job.pipeline.sinks[0] {
        crate::SinkSpec::Mysql(m) => {
            assert_eq!(m.mode, crate::DatabaseMode::Transactional);
            assert_eq!(m.progress_table, "weir_sink_progress");
            assert_eq!(m.batch_rows, 2000);
            assert_eq!(
                m.env_vars(),
                vec![("passwordEnv".to_string(), "MY_PASSWORD")]
            );
        }
        other => panic!("expected mysql, got {other:?}"),
    }
    assert!(
        load_job(
            "job.yaml",
            &base.replacen("mysql://weir@db:3306/shop", "mariadb://weir@db/shop", 1)
        )
        .is_ok()
    );
    let cases: [(&str, &str); 4] = [
        (
            "mysql://weir:secret@db/shop",
            "the password must not be in the URL",
        ),
        ("postgres://weir@db/shop", "is not a mysql:// URL"),
        (
            "mysql://weir@db/shop?sslmode=verify-ca",
            "sslmode=verify-ca",
        ),
        ("mysql://weir@/shop", "names no host"),
    ];
    for (url, expect) in cases {
        let src = base.replacen("mysql://weir@db:3306/shop", url, 1);
        let msg = errors(&src).to_string();
        assert!(
            msg.contains(expect),
            "`{url}`: expected `{expect}` in:\n{msg}"
        );
        assert!(msg.contains("sinks[0].mysql.url"), "{msg}");
    }
    let src = base.replacen(
        "passwordEnv: MY_PASSWORD}",
        "mode: transactional}\ncheckpoint: {exactlyOnce: false}",
        1,
    );
    let msg = errors(&src).to_string();
    assert!(
        msg.contains("sinks[0].mysql.mode") && msg.contains("use mode: upsert"),
        "{msg}"
    );
    let src = base.replacen(
        "passwordEnv: MY_PASSWORD}",
        &format!("transactionIdPrefix: {}}}", "x".repeat(65)),
        1,
    );
    let msg = errors(&src).to_string();
    assert!(
        msg.contains("sinks[0].mysql.transactionIdPrefix") && msg.contains("65 bytes"),
        "{msg}"
    );
}

#[test]
fn postgres_sink_settings_parse_with_defaults_and_mistakes_name_the_field() {
    let base = "name: pg
source:
  file: {path: in.jsonl}
  schema: [{name: id, type: int64}]
sinks:
  - postgres: {url: \"postgres://weir@db:5432/shop\", table: t, passwordEnv: PG_PASSWORD}
";
    let job = load_job("job.yaml", base).expect("valid job");
    match &job.pipeline.sinks[0] {
        crate::SinkSpec::Postgres(p) => {
            assert_eq!(p.mode, crate::DatabaseMode::Transactional);
            assert_eq!(p.schema, "public");
            assert_eq!(p.progress_table, "weir_sink_progress");
            assert_eq!(p.batch_rows, 5000);
        }
        other => panic!("expected postgres, got {other:?}"),
    }
    let cases: [(&str, &str); 5] = [
        (
            "postgres://weir:secret@db",
            "the password must not be in the URL",
        ),
        (
            "postgres://weir@db/shop?password=x",
            "the password must not be in the URL",
        ),
        ("mysql://weir@db/shop", "is not a postgres:// URL"),
        (
            "postgres://weir@db/shop?sslmode=verify-full",
            "sslmode=verify-full",
        ),
        ("postgres://weir@/shop", "names no host"),
    ];
    for (url, expect) in cases {
        let src = base.replacen("postgres://weir@db:5432/shop", url, 1);
        let msg = errors(&src).to_string();
        assert!(
            msg.contains(expect),
            "`{url}`: expected `{expect}` in:\n{msg}"
        );
        assert!(msg.contains("sinks[0].postgres.url"), "{msg}");
    }
    let src = base.replacen(
        "passwordEnv: PG_PASSWORD}",
        "mode: transactional}\ncheckpoint: {exactlyOnce: false}",
        1,
    );
    let msg = errors(&src).to_string();
    assert!(
        msg.contains("sinks[0].postgres.mode") && msg.contains("use mode: upsert"),
        "{msg}"
    );
    let src = base.replacen(
        "passwordEnv: PG_PASSWORD}",
        "batchRows: 0, tls: {certificatePemEnv: C}}",
        1,
    );
    let msg = errors(&src).to_string();
    assert!(msg.contains("sinks[0].postgres.batchRows"), "{msg}");
    assert!(msg.contains("sinks[0].postgres.tls"), "{msg}");
    let src = base.replacen("passwordEnv: PG_PASSWORD}", "password: x}", 1);
    assert!(errors(&src).to_string().contains("password"));
}

/// A batch is allocated whole at the first read: a size typed a few digits too long is
/// refused with the bound, in the field's words and at its line, as the CRD's schema
/// refuses it at `kubectl apply`.
#[test]
fn batch_sizes_and_splits_above_their_bounds_are_refused_with_the_bound() {
    use crate::pipeline::{MAX_BATCH_SIZE, MAX_SPLITS};
    let src = GOOD.replace(
        "    count: 1000\n",
        "    count: 1000\n    batchSize: 4294967295\n    splits: 70000\n",
    );
    let e = errors(&src).to_string();
    assert!(
        e.contains(&format!(
            "source.datagen.batchSize (line 8): must be between 1 and {MAX_BATCH_SIZE}"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "source.datagen.splits (line 9): must be between 1 and {MAX_SPLITS}"
        )),
        "{e}"
    );
    let at_bound = GOOD.replace(
        "    count: 1000\n",
        &format!("    count: 1000\n    batchSize: {MAX_BATCH_SIZE}\n    splits: {MAX_SPLITS}\n"),
    );
    load_job("job.yaml", &at_bound).expect("the bounds themselves are allowed");
    // The CRD's schema says the same.
    let schema =
        serde_json::to_value(schemars::schema_for!(crate::pipeline::DatagenSpec)).expect("schema");
    assert_eq!(schema["properties"]["batchSize"]["maximum"], MAX_BATCH_SIZE);
    assert_eq!(schema["properties"]["splits"]["maximum"], MAX_SPLITS);
}

/// A sliding window's slide in the wrong unit would put every record in millions of windows.
#[test]
fn a_sliding_window_putting_a_record_in_too_many_windows_is_refused() {
    let src = GOOD.replace("tumbling: 10s", "sliding: {size: 1d, slide: 1ms}");
    let e = errors(&src).to_string();
    assert!(
        e.contains("window.sliding.slide (line 20): puts each record in 86400000 windows (size over slide); at most 1000"),
        "{e}"
    );
    let src = GOOD.replace("tumbling: 10s", "sliding: {size: 1000s, slide: 1s}");
    load_job("job.yaml", &src).expect("1000 windows a record are allowed");
    // A slide that does not divide the size puts some records in one window more.
    let src = GOOD.replace("tumbling: 10s", "sliding: {size: 2001ms, slide: 2ms}");
    let e = errors(&src).to_string();
    assert!(e.contains("puts each record in 1001 windows"), "{e}");
}
