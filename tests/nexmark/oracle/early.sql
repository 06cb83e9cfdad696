-- Early bids, written for DuckDB: each auction with every bid on it placed 0 to 2000 ms
-- after it opened, or one row with no bid when there was none.
SELECT A.id AS auction, A.seller, A.date_time AS opened, B.bidder, B.price,
  B.date_time AS bid_time
FROM auction A LEFT JOIN bid B
  ON B.auction = A.id
  AND epoch_ms(B.date_time) - epoch_ms(A.date_time) BETWEEN 0 AND 2000
