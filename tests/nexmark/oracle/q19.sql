-- Nexmark q19 for DuckDB: the ten highest bids of each auction, ranked, over all bids.
SELECT auction, bidder, price, channel, url, date_time, extra, rn AS rank_number
FROM (SELECT *, row_number() OVER (PARTITION BY auction ORDER BY price DESC, date_time ASC) AS rn FROM bid)
WHERE rn <= 10
