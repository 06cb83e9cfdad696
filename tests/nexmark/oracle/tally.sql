-- Each seller's auctions over all events, and a row of 1 per bid of every 50th bidder.
SELECT seller AS person, count(*) AS n FROM auction GROUP BY seller
UNION ALL
SELECT bidder AS person, CAST(1 AS BIGINT) AS n FROM bid WHERE bidder % 50 = 0
