-- The documents of the products in `product_src`, built set-based from the catalog.
-- The caller prefixes the six *_src definitions (all rows, or only some products') and
-- appends the statement that stores `built`. $1 is the campus name.
sku_agg AS (
    -- jsonb sorts object keys by length, then bytewise: sku ids come out in numeric order.
    SELECT style_id,
           jsonb_object_agg(id::text, jsonb_build_object('quantity', quantity, 'size', size)) AS skus
    FROM sku_src
    GROUP BY style_id
),
photo_agg AS (
    SELECT style_id,
           jsonb_agg(jsonb_build_object('thumbnail_url', thumbnail_url, 'url', url) ORDER BY id) AS photos
    FROM photo_src
    GROUP BY style_id
),
style_agg AS (
    SELECT s.product_id,
           jsonb_agg(jsonb_build_object(
               'style_id', s.id,
               'name', s.name,
               'original_price', s.original_price::text,
               'sale_price', s.sale_price::text,
               'default?', s.default_style,
               -- The legacy API's placeholders for a style without photos or skus.
               'photos', coalesce(ph.photos, '[{"thumbnail_url": null, "url": null}]'),
               'skus', coalesce(sk.skus, '{"null": {"quantity": null, "size": null}}')
           ) ORDER BY s.id) AS results
    FROM style_src s
    LEFT JOIN photo_agg ph ON ph.style_id = s.id
    LEFT JOIN sku_agg sk ON sk.style_id = s.id
    GROUP BY s.product_id
),
feature_agg AS (
    SELECT product_id,
           jsonb_agg(jsonb_build_object('feature', feature, 'value', value) ORDER BY id) AS features
    FROM feature_src
    GROUP BY product_id
),
related_agg AS (
    SELECT product_id, jsonb_agg(related_product_id ORDER BY id) AS related
    FROM related_src
    GROUP BY product_id
),
entry AS (
    SELECT p.id,
           jsonb_build_object(
               'id', p.id,
               'campus', $1::text,
               'name', p.name,
               'slogan', p.slogan,
               'description', p.description,
               'category', p.category,
               'default_price', p.default_price::text,
               'created_at', to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'updated_at', to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           ) AS list_entry
    FROM product_src p
),
built AS (
    SELECT e.id AS product_id,
           e.list_entry,
           e.list_entry || jsonb_build_object('features', coalesce(f.features, '[]')) AS product,
           jsonb_build_object('product_id', e.id::text, 'results', coalesce(s.results, '[]')) AS styles,
           coalesce(r.related, '[]') AS related
    FROM entry e
    LEFT JOIN feature_agg f ON f.product_id = e.id
    LEFT JOIN style_agg s ON s.product_id = e.id
    LEFT JOIN related_agg r ON r.product_id = e.id
)
