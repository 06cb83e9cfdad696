-- Bids per auction in 10-second tumbling windows (where Nexmark q5 starts), for DuckDB over
-- the view bid; window bounds as epoch milliseconds.
SELECT auction,
  (epoch_ms(date_time) // 10000) * 10000 AS window_start,
  (epoch_ms(date_time) // 10000) * 10000 + 10000 AS window_end,
  count(*) AS num
FROM bid
GROUP BY ALL
