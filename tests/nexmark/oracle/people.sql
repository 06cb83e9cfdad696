-- Each person with the auctions they sell, or alone: the table the LEFT JOIN's changelog
-- must come to.
SELECT p.id, p.name, p.city, a.id AS auction, a.category
FROM person p LEFT JOIN auction a ON p.id = a.seller
