-- Each auction beside its number of bids over all events (auctions without bids have no
-- row: an inner join).
SELECT a.id, a.category, b.bids
FROM auction a
JOIN (SELECT auction, count(*) AS bids FROM bid GROUP BY auction) b ON a.id = b.auction
