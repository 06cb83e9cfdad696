-- The table examples/store-sales.yaml writes (sink mode `replacing`). One row per
-- (window_start, store_id): replays after a failure insert the same key again and
-- ReplacingMergeTree keeps one, so read it with FINAL:
--   SELECT * FROM store_sales FINAL ORDER BY window_start, store_id
-- Works on ClickHouse 18.16 and newer.
CREATE TABLE IF NOT EXISTS store_sales
(
    store_id     String,
    window_start DateTime,
    window_end   DateTime,
    orders       Int64,
    sales        Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (window_start, store_id);
