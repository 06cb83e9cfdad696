-- Auctions with 5 bids or more, over all bids.
SELECT auction, count(*) AS total FROM bid GROUP BY auction HAVING count(*) >= 5
