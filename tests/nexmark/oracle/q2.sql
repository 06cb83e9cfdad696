-- Nexmark q2, written for DuckDB over the views person, auction, bid.
SELECT auction, price FROM bid WHERE auction % 123 = 0
