"""The Nexmark oracle: a query run by DuckDB, as a batch over the same events Weir read,
compared row by row with what Weir committed (a changelog applied first: the table it
comes to).

    oracle.py EVENTS_DIR QUERY_SQL WEIR_OUTPUT_DIR [QUERY_SQL WEIR_OUTPUT_DIR ...]

EVENTS_DIR holds the events (the file sink's part-*.jsonl of `SELECT * FROM nexmark`),
QUERY_SQL the query in DuckDB's dialect over the views `person`, `auction` and `bid`
(written for the oracle, not derived from Weir's SQL), WEIR_OUTPUT_DIR the job's output.
Prints one JSON line {rows, missing, extra, wrong} per pair, in order, and exits 1 when any
differ: rows compare as multisets; a row that differs from an expected one only in its
non-key columns counts as wrong rather than as missing plus extra. The events are loaded
once, and a query named twice (one query's output at two parallelisms) is run once.
"""

import datetime
import glob
import json
import os
import sys
from collections import Counter

import duckdb

VIEWS = """
CREATE VIEW person AS SELECT person_id AS id, person_name AS name,
  person_email_address AS email_address, person_credit_card AS credit_card,
  person_city AS city, person_state AS state, date_time, extra
  FROM nexmark WHERE event_type = 0;
CREATE VIEW auction AS SELECT auction_id AS id, auction_item_name AS item_name,
  auction_description AS description, auction_initial_bid AS initial_bid,
  auction_reserve AS reserve, date_time, auction_expires AS expires,
  auction_seller AS seller, auction_category AS category, extra
  FROM nexmark WHERE event_type = 1;
CREATE VIEW bid AS SELECT bid_auction AS auction, bid_bidder AS bidder, bid_price AS price,
  bid_channel AS channel, bid_url AS url, date_time, extra
  FROM nexmark WHERE event_type = 2;
"""

COLUMNS = {
    "event_type": "BIGINT", "person_id": "BIGINT", "person_name": "VARCHAR",
    "person_email_address": "VARCHAR", "person_credit_card": "VARCHAR",
    "person_city": "VARCHAR", "person_state": "VARCHAR", "auction_id": "BIGINT",
    "auction_item_name": "VARCHAR", "auction_description": "VARCHAR",
    "auction_initial_bid": "BIGINT", "auction_reserve": "BIGINT",
    "auction_expires": "TIMESTAMPTZ", "auction_seller": "BIGINT",
    "auction_category": "BIGINT", "bid_auction": "BIGINT", "bid_bidder": "BIGINT",
    "bid_price": "BIGINT", "bid_channel": "VARCHAR", "bid_url": "VARCHAR",
    "date_time": "TIMESTAMPTZ", "extra": "VARCHAR", "event_id": "BIGINT",
}


def canon(v):
    """One spelling per value: instants as epoch milliseconds, floats to 6 decimals."""
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return round(v.timestamp() * 1000)
    if isinstance(v, str) and len(v) >= 20 and v[4] == "-" and v[10] == "T" and v.endswith("Z"):
        return canon(datetime.datetime.fromisoformat(v.replace("Z", "+00:00")))
    if isinstance(v, float):
        return round(v, 6)
    if hasattr(v, "as_integer_ratio") and not isinstance(v, int):  # Decimal
        return round(float(v), 6)
    return v


def commit_order(path):
    """(checkpoint, generation, subtask) of a part file, the order its rows were committed
    in: a changelog's retractions must follow the rows they retract."""
    name = os.path.basename(path)
    fields = dict(
        (f[0], int(f[1:])) for f in name[len("part-"):-len(".jsonl")].split("-") if f[1:].isdigit()
    )
    return (fields.get("c", 0), fields.get("g", 0), fields.get("t", 0), name)


def weir_rows(out_dir, names):
    """The rows Weir committed, as a multiset. A changelog (rows with `_change`) is applied
    in commit order: +I/+U add a row, -U/-D remove one, and removing a row that is not there
    is an error of the changelog itself, reported as `unmatched_retractions`."""
    rows = Counter()
    unmatched = 0
    changes = 0
    for path in sorted(glob.glob(os.path.join(out_dir, "part-*.jsonl")), key=commit_order):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    row = tuple(canon(r.get(n)) for n in names)
                    kind = r.get("_change", "+I")
                    changes += "_change" in r
                    if kind in ("-U", "-D"):
                        if rows[row] > 0:
                            rows[row] -= 1
                        else:
                            unmatched += 1
                    else:
                        rows[row] += 1
    return +rows, unmatched, changes


def main():
    args = sys.argv[1:]
    if len(args) < 3 or len(args) % 2 == 0:
        sys.exit(__doc__)
    events_dir, pairs = args[0], list(zip(args[1::2], args[2::2]))
    con = events(events_dir)
    expected = {}
    failed = False
    for query_file, out_dir in pairs:
        if query_file not in expected:
            expected[query_file] = run_query(con, query_file)
        names, want = expected[query_file]
        report, ok = compare(names, want, out_dir)
        print(json.dumps(report, default=str))
        failed |= not ok
    sys.exit(1 if failed else 0)


def events(events_dir):
    """A DuckDB connection holding the events as table `nexmark`, its views and q13's side
    table."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = sorted(glob.glob(os.path.join(events_dir, "part-*.jsonl")))
    if not files:
        sys.exit(f"no events in {events_dir}")
    columns = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
    con.execute(
        f"CREATE TABLE nexmark AS SELECT * FROM read_json({files!r}, "
        f"format = 'newline_delimited', columns = {{{columns}}})"
    )
    con.execute(VIEWS)
    # q13's side table, as the example job reads it.
    side = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "examples", "nexmark", "side_input.jsonl",
    )
    con.execute(
        f"CREATE VIEW side_input AS SELECT * FROM read_json({side!r}, "
        "format = 'newline_delimited', columns = {'key': 'BIGINT', 'value': 'VARCHAR'})"
    )
    return con


def run_query(con, query_file):
    """The oracle's result: its column names and its rows as a multiset."""
    with open(query_file, encoding="utf-8") as f:
        cur = con.execute(f.read())
    names = [d[0] for d in cur.description]
    return names, Counter(tuple(canon(v) for v in row) for row in cur.fetchall())


def compare(names, want, out_dir):
    """The report for one output directory, and whether it equals the oracle."""
    got, unmatched, changes = weir_rows(out_dir, names)
    missing = want - got
    extra = got - want
    wrong = 0
    # A wrong row is missing once and extra once with the same first column (the key).
    extra_keys = Counter(r[0] for r in extra.elements())
    for r in missing.elements():
        if extra_keys[r[0]] > 0:
            extra_keys[r[0]] -= 1
            wrong += 1
    report = {
        "rows": sum(want.values()),
        "got": sum(got.values()),
        "missing": sum(missing.values()) - wrong,
        "extra": sum(extra.values()) - wrong,
        "wrong": wrong,
    }
    if changes:
        report["changes"] = changes
        report["unmatched_retractions"] = unmatched
    if missing or extra:
        report["first_missing"] = [list(r) for r in list(missing)[:3]]
        report["first_extra"] = [list(r) for r in list(extra)[:3]]
    return report, not (missing or extra or unmatched)


if __name__ == "__main__":
    main()
