-- Nexmark q3, written for DuckDB: sellers of category-10 auctions who live in Oregon,
-- Idaho or California, one row per such auction.
SELECT P.name, P.city, P.state, A.id
FROM person P, auction A
WHERE A.seller = P.id AND A.category = 10 AND P.state IN ('OR', 'ID', 'CA')
