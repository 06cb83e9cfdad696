-- Nexmark q0, written for DuckDB over the views person, auction, bid.
SELECT auction, bidder, price, date_time, extra FROM bid
