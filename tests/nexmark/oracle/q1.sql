-- Nexmark q1, written for DuckDB over the views person, auction, bid.
SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid
