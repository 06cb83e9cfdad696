-- Every person who sells or bids, with their auctions and bids over all events: the table
-- the FULL JOIN of the two updating counts must come to.
SELECT COALESCE(s.seller, b.bidder) AS person, s.auctions, b.bids
FROM (SELECT seller, count(*) AS auctions FROM auction GROUP BY seller) s
FULL JOIN (SELECT bidder, count(*) AS bids FROM bid GROUP BY bidder) b
ON s.seller = b.bidder
