-- Nexmark q13 for DuckDB: every bid with the side table's value for its auction id modulo
-- 10 000 (the side table is examples/nexmark/side_input.jsonl, read by oracle.py).
SELECT b.auction, b.bidder, b.price, b.date_time, s.value
FROM bid b JOIN side_input s ON b.auction % 10000 = s.key
