-- Nexmark q7, written for DuckDB: in each 10-second window (epoch-aligned), the bids at the
-- window's highest price.
WITH w AS (
  SELECT epoch_ms(date_time) // 10000 AS win, max(price) AS maxprice FROM bid GROUP BY 1)
SELECT b.auction, b.price, b.bidder, b.date_time, b.extra
FROM bid b JOIN w ON epoch_ms(b.date_time) // 10000 = w.win AND b.price = w.maxprice
