//! The gzip forms of rebuilt documents: the bodies whose forms are missing are read
//! back, compressed as servers compress them (`documents::gzip`) and stored beside them,
//! so that a client taking gzip costs a cache miss no compression.
//!
//! A form stands for the bytes of its body: a rebuild that changes a body drops its form
//! in the same statement, and a server compresses a body without one itself, to the
//! same bytes. So a form made late, or never, changes no answer, only its cost.

use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::sql;
use crate::Result;
use crate::documents::{JsonbText, Kind, gzip};

/// Products whose forms one round trip reads and stores: a few MiB of bodies at most.
const CHUNK: usize = 500;

/// Makes the missing gzip forms of the documents of `ids` in `document`; returns the
/// forms made (one per body, an empty one where gzip does not gain).
pub async fn listed(client: &impl GenericClient, ids: &[i32]) -> Result<u64> {
    let read = sql::unmade_gzip_listed("document");
    let store = sql::store_gzip("document");
    let mut made = 0;
    for chunk in ids.chunks(CHUNK) {
        let rows = client.query(read.as_str(), &[&chunk]).await?;
        made += write(client, &store, &rows).await?;
    }
    Ok(made)
}

/// Makes the missing gzip forms of the documents of `table` with product ids in
/// `first ..< end`; returns the forms made.
pub async fn in_range(
    client: &impl GenericClient,
    table: &str,
    first: i64,
    end: i64,
) -> Result<u64> {
    let read = sql::unmade_gzip_in_range(table);
    let store = sql::store_gzip(table);
    let limit = CHUNK as i64;
    let mut made = 0;
    let mut from = first;
    loop {
        let rows = client.query(read.as_str(), &[&from, &end, &limit]).await?;
        let Some(last) = rows.last() else {
            return Ok(made);
        };
        from = i64::from(last.get::<_, i32>(0)) + 1;
        made += write(client, &store, &rows).await?;
    }
}

/// Compresses the bodies of `rows` (as [`sql::unmade_gzip_listed`] reads them) and
/// stores their forms with `store`.
async fn write(
    client: &impl GenericClient,
    store: &str,
    rows: &[tokio_postgres::Row],
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    let bodies: Vec<Vec<Option<Vec<u8>>>> = (0..Kind::BY_ID.len())
        .map(|kind| {
            rows.iter()
                .map(|row| {
                    row.get::<_, Option<JsonbText>>(1 + kind)
                        .map(|text| text.0.to_vec())
                })
                .collect()
        })
        .collect();
    // Compression is the CPU-heavy part: off the async threads, which may be serving.
    let forms = tokio::task::spawn_blocking(move || {
        bodies
            .into_iter()
            .map(|column| column.into_iter().map(|body| body.map(form_of)).collect())
            .collect::<Vec<Vec<Option<Vec<u8>>>>>()
    })
    .await
    .expect("compression does not panic");
    let made = forms.iter().flatten().filter(|form| form.is_some()).count() as u64;
    let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&ids];
    parameters.extend(forms.iter().map(|column| column as &(dyn ToSql + Sync)));
    client.execute(store, &parameters).await?;
    Ok(made)
}

/// What is stored as `body`'s gzip form: the form, or nothing when gzip does not gain.
fn form_of(body: Vec<u8>) -> Vec<u8> {
    gzip::gzip(&body).map(Vec::from).unwrap_or_default()
}
