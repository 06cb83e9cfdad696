-- Nexmark q8, written for DuckDB: a person and an auction they sell in the same 10-second
-- window (epoch-aligned), once per person, name and window.
WITH p AS (
  SELECT DISTINCT id, name, epoch_ms(date_time) // 10000 * 10000 AS starttime FROM person),
a AS (
  SELECT DISTINCT seller, epoch_ms(date_time) // 10000 * 10000 AS starttime FROM auction)
SELECT p.id, p.name, p.starttime FROM p JOIN a USING (starttime) WHERE p.id = a.seller
