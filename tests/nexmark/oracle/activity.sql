-- Bids per auction per 10-second window, and every auction from its opening to its expiry
-- (num 0), in one result.
SELECT auction AS id,
  (epoch_ms(date_time) // 10000) * 10000 AS window_start,
  (epoch_ms(date_time) // 10000) * 10000 + 10000 AS window_end,
  count(*) AS num
FROM bid GROUP BY ALL
UNION ALL
SELECT id, epoch_ms(date_time) AS window_start, epoch_ms(expires) AS window_end, 0 AS num
FROM auction
