-- The three bidders with the most bids in each channel over all bids (ties by bidder id).
SELECT channel, bidder, bids, rownum FROM (
  SELECT channel, bidder, bids,
    row_number() OVER (PARTITION BY channel ORDER BY bids DESC, bidder) AS rownum
  FROM (SELECT channel, bidder, count(*) AS bids FROM bid GROUP BY channel, bidder))
WHERE rownum <= 3
