-- Nexmark q5, written for DuckDB: per 10-second window sliding by 2 seconds (starts at
-- multiples of 2 s), the auctions whose bid count is the window's highest.
WITH b AS (SELECT auction, epoch_ms(date_time) AS t FROM bid),
windowed AS (
  SELECT auction, unnest(generate_series(t // 2000 * 2000 - 8000, t // 2000 * 2000, 2000))
    AS starttime
  FROM b),
counts AS (SELECT auction, starttime, count(*) AS num FROM windowed GROUP BY auction, starttime),
maxes AS (SELECT starttime, max(num) AS maxn FROM counts GROUP BY starttime)
SELECT c.auction, c.num FROM counts c JOIN maxes m ON c.starttime = m.starttime
WHERE c.num >= m.maxn
