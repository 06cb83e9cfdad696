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
