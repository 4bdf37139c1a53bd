-- The documents of the products in `product_src`, built set-based from the catalog,
-- after styles.sql (which builds `styles_doc`). The caller prefixes the six *_src
-- definitions (all rows, or only some products') and `styled`, the ids of
-- `product_src`, and appends the statement that stores `built`. $1 is the campus name.
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
           sd.styles,
           ('[' || coalesce(r.related, '') || ']')::jsonb AS related
    FROM entry e
    LEFT JOIN feature_agg f ON f.product_id = e.id
    JOIN styles_doc sd ON sd.product_id = e.id
    LEFT JOIN related_agg r ON r.product_id = e.id
)
