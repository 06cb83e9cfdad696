-- Two selections of bids, every row of each (UNION ALL keeps the bids both select twice).
SELECT auction, price FROM bid WHERE auction % 123 = 0
UNION ALL
SELECT auction, price FROM bid WHERE bidder % 50 = 0
