-- The styles documents (GET /products/:id/styles) of the products in `styled`, built
-- set-based from their styles, photos and skus. The caller prefixes `styled` and the
-- style, photo and sku sources (style_src, photo_src, sku_src); documents.sql follows
-- this file when all four documents are built, and a change of stock, price or photos
-- alone rebuilds this one.
--
-- Documents are assembled as JSON text and parsed into jsonb once at the end: building
-- nested jsonb values re-encodes every level and is about three times slower. to_json()
-- quotes and escapes each text value.
sku_agg AS (
    SELECT style_id,
           '{' || string_agg('"' || id || '":{"quantity":' || quantity
                             || ',"size":' || to_json(size) || '}', ',' ORDER BY id) || '}' AS skus
    FROM sku_src
    GROUP BY style_id
),
photo_agg AS (
    SELECT style_id,
           '[' || string_agg('{"thumbnail_url":' || to_json(thumbnail_url)
                             || ',"url":' || to_json(url) || '}', ',' ORDER BY id) || ']' AS photos
    FROM photo_src
    GROUP BY style_id
),
style_agg AS (
    SELECT s.product_id,
           string_agg('{"style_id":' || s.id
                      || ',"name":' || to_json(s.name)
                      || ',"original_price":"' || s.original_price
                      || '","sale_price":' || coalesce('"' || s.sale_price || '"', 'null')
                      || ',"default?":' || s.default_style
                      -- The legacy API's placeholders for a style without photos or skus.
                      || ',"photos":' || coalesce(ph.photos, '[{"thumbnail_url":null,"url":null}]')
                      || ',"skus":' || coalesce(sk.skus, '{"null":{"quantity":null,"size":null}}')
                      || '}', ',' ORDER BY s.id) AS results
    FROM style_src s
    LEFT JOIN photo_agg ph ON ph.style_id = s.id
    LEFT JOIN sku_agg sk ON sk.style_id = s.id
    GROUP BY s.product_id
),
styles_doc AS (
    SELECT p.id AS product_id,
           ('{"product_id":"' || p.id || '","results":[' || coalesce(s.results, '') || ']}')::jsonb
               AS styles
    FROM styled p
    LEFT JOIN style_agg s ON s.product_id = p.id
)
