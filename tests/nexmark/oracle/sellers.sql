-- Every seller and category of an auction, once.
SELECT DISTINCT seller, category FROM auction
