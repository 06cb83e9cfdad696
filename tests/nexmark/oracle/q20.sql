-- Nexmark q20, written for DuckDB: each bid on an auction of category 10, beside the
-- auction's columns.
SELECT b.auction, b.bidder, b.price, b.channel, b.url, b.date_time AS bid_time,
  b.extra AS bid_extra, a.item_name, a.description, a.initial_bid, a.reserve,
  a.date_time AS auction_time, a.expires, a.seller, a.category, a.extra AS auction_extra
FROM auction a, bid b
WHERE a.id = b.auction AND a.category = 10
