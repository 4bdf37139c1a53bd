-- The documents of the products in `product_src`, built set-based from the catalog.
-- The caller prefixes the six *_src definitions (all rows, or only some products') and
-- appends the statement that stores `built`. $1 is the campus name.
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
feature_agg AS (
    SELECT product_id,
           string_agg('{"feature":' || to_json(feature)
                      || ',"value":' || coalesce(to_json(value)::text, 'null') || '}',
                      ',' ORDER BY id) AS features
    FROM feature_src
    GROUP BY product_id
),
related_agg AS (
    SELECT product_id, string_agg(related_product_id::text, ',' ORDER BY id) AS related
    FROM related_src
    GROUP BY product_id
),
entry AS (
    -- The list entry's members, without the closing brace: the product body adds features.
    SELECT p.id,
           '{"id":' || p.id
           || ',"campus":' || to_json($1::text)
           || ',"name":' || to_json(p.name)
           || ',"slogan":' || to_json(p.slogan)
           || ',"description":' || to_json(p.description)
           || ',"category":' || to_json(p.category)
           || ',"default_price":"' || p.default_price
           || '","created_at":"' || to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           || '","updated_at":"' || to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           || '"' AS members
    FROM product_src p
),
built AS (
    SELECT e.id AS product_id,
           (e.members || '}')::jsonb AS list_entry,
           (e.members || ',"features":[' || coalesce(f.features, '') || ']}')::jsonb AS product,
           ('{"product_id":"' || e.id || '","results":[' || coalesce(s.results, '') || ']}')::jsonb AS styles,
           ('[' || coalesce(r.related, '') || ']')::jsonb AS related
    FROM entry e
    LEFT JOIN feature_agg f ON f.product_id = e.id
    LEFT JOIN style_agg s ON s.product_id = e.id
    LEFT JOIN related_agg r ON r.product_id = e.id
)
