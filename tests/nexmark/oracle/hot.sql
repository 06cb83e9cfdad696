-- Hot auctions, written for DuckDB: per 10-second window (epoch-aligned), the three
-- auctions with the most bids, ties broken by the lower auction id.
WITH counts AS (
  SELECT auction, count(*) AS num, epoch_ms(date_time) // 10000 * 10000 AS starttime
  FROM bid GROUP BY auction, starttime),
ranked AS (
  SELECT auction, num, starttime,
    row_number() OVER (PARTITION BY starttime ORDER BY num DESC, auction) AS rownum
  FROM counts)
SELECT auction, num, starttime, rownum FROM ranked WHERE rownum <= 3
