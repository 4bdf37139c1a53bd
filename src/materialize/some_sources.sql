-- The rows of the products listed in $2 (distinct): the sources a partial rebuild
-- puts before styles.sql and documents.sql.
-- `= ANY` of an array keeps every lookup on an index whatever the planner guesses of the
-- list's length: a hash join would read all of photo and sku for a few thousand products.
product_src AS (SELECT * FROM product WHERE id = ANY($2::int[])),
styled AS (SELECT id FROM product_src),
style_src AS MATERIALIZED (SELECT * FROM style WHERE product_id = ANY($2::int[])),
feature_src AS (SELECT * FROM feature WHERE product_id = ANY($2::int[])),
photo_src AS (SELECT * FROM photo WHERE style_id = ANY(ARRAY(SELECT id FROM style_src))),
sku_src AS (SELECT * FROM sku WHERE style_id = ANY(ARRAY(SELECT id FROM style_src))),
related_src AS (SELECT * FROM related WHERE product_id = ANY($2::int[])),
