-- Nexmark q11 for DuckDB: sessions per bidder, a bid 10 seconds or more after the one before
-- starting a new session; a session spans its first bid to its last bid plus the gap.
WITH b AS (SELECT bidder, epoch_ms(date_time) AS t FROM bid),
marked AS (
  SELECT bidder, t,
    CASE WHEN t - lag(t) OVER (PARTITION BY bidder ORDER BY t) < 10000 THEN 0 ELSE 1 END AS starts
  FROM b),
numbered AS (
  SELECT bidder, t,
    sum(starts) OVER (PARTITION BY bidder ORDER BY t ROWS UNBOUNDED PRECEDING) AS session
  FROM marked)
SELECT bidder, count(*) AS bid_count, min(t) AS starttime, max(t) + 10000 AS endtime
FROM numbered
GROUP BY bidder, session
