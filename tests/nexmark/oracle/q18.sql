-- Nexmark q18 for DuckDB: the last bid of each bidder on each auction, over all bids.
SELECT auction, bidder, price, channel, url, date_time, extra
FROM (SELECT *, row_number() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rn FROM bid)
WHERE rn = 1
