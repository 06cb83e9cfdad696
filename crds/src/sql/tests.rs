use super::{Pos, WindowKind, parse};

#[test]
fn an_insert_with_a_tumbling_window_is_read_with_its_call_replaced() {
    let sql = "INSERT INTO totals\nSELECT store_id, window_start, window_end, count(*) AS n\nFROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))\nGROUP BY store_id, window_start, window_end;";
    let stmts = parse(sql).expect("parses");
    assert_eq!(stmts.len(), 1);
    let s = &stmts[0];
    assert_eq!(s.sink(), Some("totals"));
    assert_eq!(s.windows.len(), 1);
    let w = &s.windows[0];
    assert_eq!(w.input, "orders");
    assert_eq!(w.time_column, "ts");
    assert_eq!(w.kind, WindowKind::Tumble { size_ms: 60_000 });
    assert_eq!(
        w.at,
        Pos {
            line: 3,
            column: 12
        }
    );
    let q = s.query.to_string();
    assert!(q.contains("FROM __weir_window_0"), "{q}");
    assert_eq!(s.tables_read(), vec![("orders".to_string(), w.at)]);
}

#[test]
fn hop_and_session_calls_keep_their_sizes_and_partitions() {
    let sql = "INSERT INTO a SELECT * FROM TABLE(HOP(TABLE bids, DESCRIPTOR(t), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) w;
INSERT INTO b SELECT * FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, auction, DESCRIPTOR(t), INTERVAL '5 minutes'))";
    let stmts = parse(sql).expect("parses");
    assert_eq!(
        stmts[0].windows[0].kind,
        WindowKind::Hop {
            slide_ms: 2_000,
            size_ms: 10_000
        }
    );
    let q = stmts[0].query.to_string();
    assert!(q.ends_with("FROM __weir_window_0 w"), "{q}");
    let s = &stmts[1].windows[0];
    assert_eq!(s.kind, WindowKind::Session { gap_ms: 300_000 });
    assert_eq!(s.partition_by, ["bidder", "auction"]);
    assert_eq!(s.table, "__weir_window_1");
    assert_eq!(stmts[1].number, 2);
    assert_eq!(stmts[1].at.line, 2);
}

#[test]
fn a_syntax_error_names_line_and_column() {
    let errs = parse("INSERT INTO a\nSELECT x FROM t WHERE\n").expect_err("bad");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("syntax error"), "{:?}", errs[0]);
    assert_eq!(errs[0].at.map(|p| p.line), Some(2), "{:?}", errs[0]);
}

#[test]
fn statements_other_than_insert_and_bad_window_calls_are_refused() {
    let errs =
        parse("SELECT 1;\nINSERT INTO a SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts)))")
            .expect_err("bad");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[0].statement, Some(1));
    assert!(errs[0].message.contains("INSERT INTO <sink>"), "{errs:?}");
    assert!(errs[0].message.contains("CREATE VIEW"), "{errs:?}");
    assert_eq!(errs[1].statement, Some(2));
    assert!(
        errs[1].message.contains("TUMBLE takes 3 arguments"),
        "{errs:?}"
    );
    let errs = parse("INSERT INTO a SELECT * FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '3' SECOND, INTERVAL '10' SECOND))")
        .expect_err("bad");
    assert!(
        errs[0].message.contains("multiple of the slide"),
        "{errs:?}"
    );
    // A day slid by a millisecond: 86 400 000 windows a record.
    let errs = parse("INSERT INTO a SELECT * FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MILLISECOND, INTERVAL '1' DAY))")
        .expect_err("bad");
    assert!(
        errs[0]
            .message
            .contains("in 86400000 windows; at most 1000"),
        "{errs:?}"
    );
    parse("INSERT INTO a SELECT * FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1000' SECOND))")
        .expect("1000 windows a record are allowed");
    let errs = parse("INSERT INTO a SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' FORTNIGHT))")
        .expect_err("bad");
    assert!(!errs.is_empty());
    assert!(parse("  \n").is_err());
}

#[test]
fn a_view_is_a_statement_of_its_own() {
    let stmts = parse("CREATE TEMPORARY VIEW big AS SELECT * FROM orders WHERE amount > 100;\nINSERT INTO out SELECT * FROM big")
        .expect("parses");
    assert_eq!(stmts[0].target, super::Target::View("big".into()));
    assert_eq!(stmts[0].sink(), None);
    assert_eq!(stmts[1].sink(), Some("out"));
    let errs = parse("CREATE MATERIALIZED VIEW v AS SELECT 1").expect_err("materialized");
    assert!(errs[0].message.contains("MATERIALIZED"), "{errs:?}");
}

#[test]
fn window_arguments_that_would_change_the_windows_are_refused_not_dropped() {
    let errs = parse(
        "INSERT INTO a SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, offset => INTERVAL '1' SECOND))",
    )
    .expect_err("named argument");
    assert!(errs[0].message.contains("offset =>"), "{errs:?}");
    let errs = parse(
        "INSERT INTO a SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1:30' HOUR TO MINUTE))",
    )
    .expect_err("interval range");
    assert!(errs[0].message.contains("not a range"), "{errs:?}");
}

#[test]
fn tables_fold_case_and_columns_keep_it() {
    let stmts = parse(
        "INSERT INTO \"Out\" SELECT * FROM TABLE(SESSION(TABLE Orders PARTITION BY userId, DESCRIPTOR(eventTs), INTERVAL '1' MINUTE))",
    )
    .expect("parses");
    assert_eq!(stmts[0].sink(), Some("out"));
    let w = &stmts[0].windows[0];
    assert_eq!(w.input, "orders");
    assert_eq!(w.partition_by, ["userId"]);
    assert_eq!(w.time_column, "eventTs");
}

#[test]
fn blanking_survives_wide_characters_and_commas_in_comments() {
    // `é` is two bytes: blanking it first used to shift the second call's cut by one byte.
    // The comma inside the comment is not the one before DESCRIPTOR.
    let sql = "INSERT INTO a SELECT 'é' AS e, * FROM TABLE(SESSION(TABLE t PARTITION BY k /* a, b */, DESCRIPTOR(ts), INTERVAL '1' MINUTE));
INSERT INTO b SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))";
    let stmts = parse(sql).expect("parses");
    assert_eq!(stmts[0].windows[0].partition_by, ["k"]);
    assert_eq!(stmts[1].windows[0].input, "t");
    let sql = "INSERT INTO a SELECT * FROM TABLE(SESSION(TABLE ö PARTITION BY \"ü\", DESCRIPTOR(ts), INTERVAL '1' MINUTE)) JOIN TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) ON true";
    let stmts = parse(sql).expect("parses");
    assert_eq!(stmts[0].windows.len(), 2);
    assert_eq!(stmts[0].windows[0].partition_by, ["ü"]);
    assert_eq!(stmts[0].windows[1].input, "t");
}

#[test]
fn with_queries_at_any_depth_are_not_tables_read() {
    let stmts = parse(
        "INSERT INTO a SELECT * FROM (WITH big AS (SELECT * FROM orders WHERE x > 1) SELECT * FROM big) s",
    )
    .expect("parses");
    let read: Vec<String> = stmts[0].tables_read().into_iter().map(|(t, _)| t).collect();
    assert_eq!(read, ["orders"]);
    assert_eq!(stmts[0].ctes()[0].0, "big");
}

#[test]
fn line_comments_are_found_by_the_tokenizer_not_by_text() {
    assert!(super::has_line_comment("SELECT 1 -- one\n"));
    assert!(!super::has_line_comment("SELECT '--' AS x /* -- */"));
}

/// Runs `f` on a thread with a 2 MiB stack, what a tokio worker or a test thread gets, so a
/// walk that recursed too deep aborts the test binary rather than passing on a larger stack.
fn on_a_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// The depth bound of the one statement `sql`, read off the refusal at a bound of zero:
/// `parse` refuses above [`super::MAX_DEPTH`], so shapes are measured by their message.
fn refused_depth(sql: &str) -> Option<usize> {
    let errs = parse(sql).err()?;
    let m = &errs.first()?.message;
    m.strip_prefix("is nested up to ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_chain_deeper_than_the_bound_is_refused_naming_the_statement_before_any_walk() {
    // Parsed, 100 000 ORs built a tree whose source positions alone overflowed the stack.
    let ors = vec!["a = 1"; 100_000].join(" OR ");
    let script =
        format!("INSERT INTO o SELECT * FROM s;\n\nINSERT INTO o SELECT * FROM s WHERE {ors};");
    let errs = on_a_small_stack(move || parse(&script).expect_err("too deep"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].statement, Some(2));
    assert_eq!(errs[0].at, Some(Pos { line: 3, column: 1 }));
    // 100 000 `=` and 99 999 `OR` in one expression, plus the statement's own level.
    assert!(
        errs[0]
            .message
            .starts_with("is nested up to 200000 levels deep"),
        "{}",
        errs[0].message
    );
    assert!(errs[0].message.contains("IN ("), "{}", errs[0].message);
}

#[test]
fn the_bound_adds_nested_groups_chains_and_set_operations() {
    let over = super::MAX_DEPTH;
    // Chains inside parentheses inside chains: each group adds its own depth once.
    let inner = vec!["a"; over / 2].join(" + ");
    let nested = format!("INSERT INTO o SELECT * FROM s WHERE ({inner}) = 1 AND ({inner}) = 2");
    assert_eq!(refused_depth(&nested), None, "siblings do not add up");
    // Two runs of pluses and the `+` between them, two groups, `=`, the statement.
    let deeper = format!("INSERT INTO o SELECT * FROM s WHERE (({inner}) + {inner}) = 1");
    assert_eq!(refused_depth(&deeper), Some(2 * (over / 2 - 1) + 5));
    // CASE ... END is a group; its branches are siblings.
    let case = format!(
        "INSERT INTO o SELECT * FROM s WHERE {inner} + CASE WHEN {inner} > 0 THEN {inner} ELSE 0 END > 0"
    );
    // Pluses, `+`, CASE, `=`; the group: pluses, `>`, its level; the statement.
    assert_eq!(refused_depth(&case), Some(2 * (over / 2 - 1) + 6));
    // Each UNION, JOIN or comma between tables nests the query one level deeper (`ALL`
    // counts as an operator: an over-estimate by one).
    let unions = vec!["SELECT a FROM s"; over + 1].join(" UNION ALL ");
    assert_eq!(
        refused_depth(&format!("INSERT INTO o {unions}")),
        Some(over + 2)
    );
    let joins = vec!["s"; over + 1].join(" JOIN ");
    assert_eq!(
        refused_depth(&format!("INSERT INTO o SELECT a FROM {joins} ON true")),
        Some(over + 1)
    );
    let commas = vec!["s"; over + 1].join(", ");
    assert_eq!(
        refused_depth(&format!("INSERT INTO o SELECT a FROM {commas} WHERE a, b")),
        Some(over + 1),
        "only commas between FROM and the next clause join"
    );
    // Strings and quoted names hold no operators.
    let quoted =
        format!("INSERT INTO o SELECT '{inner}{inner}{inner}' AS \"{inner}{inner}\" FROM s");
    assert_eq!(refused_depth(&quoted), None);
}

#[test]
fn statements_at_the_bound_parse_on_a_small_stack() {
    // The deepest shapes within the bound: one chain, and chains in nested groups.
    let terms = super::MAX_DEPTH / 2 - 1;
    let ors = vec!["a = 1"; terms].join(" OR ");
    let chain = format!("INSERT INTO o SELECT * FROM s WHERE {ors}");
    let nested = format!(
        "INSERT INTO o SELECT * FROM s WHERE {}",
        (0..16).fold("a".to_string(), |e, _| format!(
            "({e}{})",
            " + a".repeat(super::MAX_DEPTH / 16 - 3)
        ))
    );
    let unions = format!(
        "INSERT INTO o {}",
        vec!["SELECT a FROM s"; super::MAX_DEPTH - 1].join(" UNION ALL ")
    );
    for sql in [chain, nested, unions] {
        on_a_small_stack(move || {
            let st = parse(&sql).expect("within the bound");
            // The walks the operator and the runtime make: reading, printing, dropping.
            let _ = st[0].tables_read();
            let _ = st[0].query.to_string();
        });
    }
}
