//! Reading the stored response documents: a bb8 pool of tokio-postgres connections,
//! each with the hot statements prepared once, and the jsonb bytes taken verbatim.
//!
//! Connections are shared, not lent: a read takes the next connection in turn and hands
//! it straight back, so concurrent reads queue on the same connections and tokio-postgres
//! pipelines them (the next query is on the wire before the previous answer is back).
//! Each backend then works through its queue without a round trip between queries, and
//! a few connections carry any number of concurrent reads.
//!
//! Reads of documents by id are gathered besides (`batch`): those that arrive while
//! every slot is busy go out together as one statement.
//!
//! A document with a stored gzip form is read as that form whatever the client takes,
//! and inflated here for a client that does not take gzip: PostgreSQL then sends a
//! fifth of the bytes and skips turning the jsonb into text (most of its work for a
//! large document), which costs it more than the inflate costs the server
//! (bench/README.md, "Findings: identity reads from the gzip forms").

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bb8::{ErrorSink, ManageConnection, Pool, QueueStrategy, RunError};
use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use super::batch::{Pending, ReadQueue};
use super::encoding::Coding;
use crate::db::connection::Outage;
use crate::documents::{self, JsonbText, Kind, gzip};
use crate::in_flight::InFlightCount;

/// One stored document: a page of the product list or one of a product's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `GET /products?page&count`: `count` is 1..=[`documents::MAX_PAGE_COUNT`], `page`
    /// 1..=i32::MAX.
    Page { page: u32, count: u32 },
    /// Product `id`'s body of a kind read by id ([`Kind::BY_ID`]).
    Document { kind: Kind, id: i32 },
}

/// A document as the store holds it for the coding a read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Its JSON text: read as it is, or read in gzip before its gzip form was made
    /// (whoever reads it then compresses it).
    Json(Bytes),
    /// Its JSON text, which is its answer in gzip too: gzip does not gain.
    JsonOnly(Bytes),
    /// Its gzip form (`documents::gzip`), made by materialize.
    Gzip(Bytes),
}

impl Body {
    /// Whether a client of `coding` can be sent this body as it is (after compressing
    /// it, for a gzip client of [`Body::Json`]).
    fn suits(&self, coding: Coding) -> bool {
        coding == Coding::Gzip || !matches!(self, Body::Gzip(_))
    }
}

/// Why a read got no answer from the database. Cloning shares the error: a batch's
/// failure is every one of its reads'.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// No pooled connection could be had in time (the database may be down).
    NoConnection,
    /// The read took longer than the configured bound.
    Timeout,
    /// PostgreSQL or the connection to it failed.
    Database(Arc<tokio_postgres::Error>),
}

impl StoreError {
    /// Whether the database closed the connection the read went out on (a restart, a
    /// failover), so that another connection may answer.
    fn is_closed(&self) -> bool {
        matches!(self, StoreError::Database(error) if error.is_closed())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NoConnection => f.write_str("no database connection could be had in time"),
            StoreError::Timeout => f.write_str("the database read timed out"),
            StoreError::Database(error) => {
                write!(f, "database: {}", crate::error::database_message(error))
            }
        }
    }
}

impl StdError for StoreError {}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Database(Arc::new(error))
    }
}

impl From<RunError<tokio_postgres::Error>> for StoreError {
    fn from(error: RunError<tokio_postgres::Error>) -> Self {
        match error {
            RunError::User(error) => StoreError::from(error),
            RunError::TimedOut => StoreError::NoConnection,
        }
    }
}

/// Pooled connections per batch of reads by id running at once.
const CONNECTIONS_PER_BATCH: usize = 4;

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Connections kept open, each carrying many concurrent reads.
    pub size: u32,
    /// How long a read waits for a connection.
    pub wait: Duration,
    /// How long a read may take in all.
    pub read: Duration,
}

/// The document reader shared by all requests. Cloning shares the pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Connector>,
    size: u32,
    read_timeout: Duration,
    /// Reads started and not yet finished.
    in_flight: InFlightCount,
    errors: Arc<AtomicU64>,
    /// Whether the last read or check failed: the log says when this changes, not at
    /// every failed request of an outage.
    outage: Arc<Outage>,
    /// Reads by id waiting to go out together.
    queue: Arc<ReadQueue>,
    /// Batches sent, and the reads they carried.
    batches: Arc<BatchCounts>,
}

#[derive(Default)]
struct BatchCounts {
    statements: AtomicU64,
    reads: AtomicU64,
}

impl Store {
    /// A pool over `config`. No connection is opened yet, so this succeeds while the
    /// database is down; reads answer `StoreError` until it is back.
    pub fn new(mut config: tokio_postgres::Config, settings: PoolSettings) -> Store {
        // A read abandoned at its timeout would otherwise run on in PostgreSQL (behind a
        // held lock, say) and hold up every read queued behind it on its connection.
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            settings.read.as_millis()
        );
        config.options(options.trim_start());
        let errors = Arc::new(AtomicU64::new(0));
        let pool = Pool::builder()
            .max_size(settings.size)
            // Every connection is opened up front and kept: a connection handed straight
            // back is always idle, so the pool would otherwise never grow past one.
            .min_idle(settings.size)
            // Handing connections out in turn spreads reads over all of them.
            .queue_strategy(QueueStrategy::Fifo)
            .connection_timeout(settings.wait)
            // A broken connection is noticed through `has_broken`; a round trip on every
            // checkout would double the cost of a cache miss.
            .test_on_check_out(false)
            .error_sink(Box::new(CountingSink(errors.clone())))
            .build_unchecked(Connector { config });
        Store {
            pool,
            size: settings.size,
            read_timeout: settings.read,
            in_flight: InFlightCount::default(),
            errors,
            outage: Arc::new(Outage::new(
                "database reads are failing",
                "database reads succeed again",
            )),
            // One batch at a time for every four connections (one with the default pool):
            // reads by id take the stored gzip forms, which cost PostgreSQL little, so
            // a second batch at once mostly split the reads (9.8 µs of PostgreSQL's CPU
            // and 17.5 of the server's a read with two, against 7.9 and 16.1 with one,
            // at 12 % more reads a second; bench/README.md); the other connections carry
            // list pages and the joined answers' reads.
            queue: Arc::new(ReadQueue::new(
                settings.size as usize / CONNECTIONS_PER_BATCH,
            )),
            batches: Arc::default(),
        }
    }

    /// The body stored under `key` for `coding`, or `None` when there is none (an
    /// unknown product, a page past the end of the list). Pages are stored only as JSON.
    pub async fn read(&self, key: Key, coding: Coding) -> Result<Option<Body>, StoreError> {
        let _counted = self.in_flight.enter();
        match key {
            Key::Page { page, count } => {
                let read = self.retrying(|| async move {
                    read_page(&*self.connection().await?, page, count).await
                });
                // Boxed, as the fallback in `for_coding`: a pooled connection's
                // statement makes a large future, which would otherwise size (and be
                // moved with) every document read's.
                Ok(Box::pin(self.bounded(read)).await?.map(Body::Json))
            }
            Key::Document { kind, id } => {
                let read = async {
                    match self.read_gathered(kind, id).await? {
                        Some(body) => self.for_coding(kind, id, body, coding).await,
                        None => Ok(None),
                    }
                };
                self.bounded(read).await
            }
        }
    }

    /// `body`, product `id`'s of `kind` as a read found it, for a client of `coding`:
    /// as it is, or inflated from its gzip form for a client that does not take gzip.
    /// A form that does not inflate to what its trailer says (damaged in storage) is
    /// logged and passed over: the JSON text is read instead (`None` if the product has
    /// gone meanwhile).
    pub async fn for_coding(
        &self,
        kind: Kind,
        id: i32,
        body: Body,
        coding: Coding,
    ) -> Result<Option<Body>, StoreError> {
        if body.suits(coding) {
            return Ok(Some(body));
        }
        let Body::Gzip(form) = body else {
            unreachable!("only a gzip form does not suit a client of some coding")
        };
        match gzip::gunzip(&form) {
            Ok(json) => Ok(Some(Body::Json(json))),
            Err(error) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    product_id = id,
                    %kind,
                    %error,
                    "a stored gzip form is damaged: its JSON text is read instead \
                     (`atelier materialize --all` makes the forms again)"
                );
                // Boxed: rare, and its statement's future is large.
                Box::pin(self.retrying(|| async move {
                    let connection = self.connection().await?;
                    let row = connection
                        .client
                        .query_opt(&connection.statements.json_by_id[by_id_index(kind)], &[&id])
                        .await?;
                    Ok(row.map(|row| Body::Json(jsonb_bytes(&row, 0))))
                }))
                .await
            }
        }
    }

    /// Product `id`'s body of `kind`, its gzip form where one is stored, read in the
    /// next batch.
    async fn read_gathered(&self, kind: Kind, id: i32) -> Result<Option<Body>, StoreError> {
        let queued = self.queue.push(kind, id);
        if let Some(slot) = queued.slot {
            // Batches run in a task of their own, so that the readers they answer do not
            // depend on this request, which its client may drop at any time.
            let store = self.clone();
            tokio::spawn(async move {
                let mut slot = Some(slot);
                while let Some(batch) = store.queue.next_batch(&mut slot) {
                    store.run_batch(batch).await;
                }
            });
        }
        // The batch task answers every read it takes; it ends without an answer only if
        // it panicked or the runtime is going away.
        queued.answer.await.unwrap_or(Err(StoreError::NoConnection))
    }

    /// Reads `batch` and answers each of its reads, in one statement.
    async fn run_batch(&self, batch: Vec<Pending>) {
        self.batches.statements.fetch_add(1, Ordering::Relaxed);
        self.batches
            .reads
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let read = self.retrying(|| self.read_batch(&batch));
        match tokio::time::timeout(self.read_timeout, read).await {
            Ok(Ok(bodies)) => {
                for (pending, body) in batch.into_iter().zip(bodies) {
                    pending.answer(Ok(body));
                }
            }
            Ok(Err(error)) => batch
                .into_iter()
                .for_each(|pending| pending.answer(Err(error.clone()))),
            Err(_) => batch
                .into_iter()
                .for_each(|pending| pending.answer(Err(StoreError::Timeout))),
        }
    }

    /// The bodies `batch` asks for, in its order.
    async fn read_batch(&self, batch: &[Pending]) -> Result<Vec<Option<Body>>, StoreError> {
        let connection = self.connection().await?;
        if let [alone] = batch {
            let row = connection
                .client
                .query_opt(
                    &connection.statements.by_id[by_id_index(alone.kind)],
                    &[&alone.id],
                )
                .await?;
            return Ok(vec![row.map(|row| body_of(&row, 0, 1))]);
        }
        let ids: Vec<i32> = batch.iter().map(|pending| pending.id).collect();
        let kinds: Vec<i16> = batch
            .iter()
            .map(|pending| by_id_index(pending.kind) as i16)
            .collect();
        let rows = connection
            .client
            .query(&connection.statements.gathered, &[&ids, &kinds])
            .await?;
        let mut bodies = vec![None; batch.len()];
        for row in &rows {
            // The read's place in the batch, counted from 1.
            let place: i64 = row.get(0);
            bodies[place as usize - 1] = Some(body_of(row, 1, 2));
        }
        Ok(bodies)
    }

    /// `read`'s outcome, tried again while the database had closed the connection it
    /// went out on. A node that died closed every pooled connection to it, and the next
    /// in turn may not be known closed yet either: so up to one more try per connection,
    /// and one more, which by then opens a new one.
    async fn retrying<T, F, R>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn() -> R,
        R: Future<Output = Result<T, StoreError>>,
    {
        let mut outcome = read().await;
        for _ in 0..self.size {
            match &outcome {
                Err(error) if error.is_closed() => outcome = read().await,
                _ => break,
            }
        }
        outcome
    }

    /// Every by-id body ([`Kind::BY_ID`]) of the products `ids`, in one round trip,
    /// each its gzip form where one is stored ([`Store::for_coding`] makes it fit a
    /// client); products without a document are absent from the answer.
    pub async fn read_products(&self, ids: &[i32]) -> Result<Vec<ProductBodies>, StoreError> {
        let _counted = self.in_flight.enter();
        let read = async {
            let connection = self.connection().await?;
            let rows = connection
                .client
                .query(&connection.statements.products, &[&ids])
                .await?;
            Ok(rows
                .iter()
                .map(|row| ProductBodies {
                    id: row.get(0),
                    bodies: (0..Kind::BY_ID.len())
                        .map(|kind| body_of(row, 1 + 2 * kind, 2 + 2 * kind))
                        .collect(),
                })
                .collect())
        };
        self.bounded(read).await
    }

    /// `work`'s outcome, or a timeout past the read bound; failures counted and logged.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let outcome = tokio::time::timeout(self.read_timeout, work)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        self.note(&outcome);
        outcome
    }

    /// Counts a failure, and logs when reads start failing or succeed again.
    fn note<T>(&self, outcome: &Result<T, StoreError>) {
        match outcome {
            Err(error) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.outage.failed(error);
            }
            Ok(_) => self.outage.works(),
        }
    }

    /// The next open connection in turn, shared with whatever other reads it carries.
    async fn connection(&self) -> Result<Arc<Connection>, StoreError> {
        // Connections the database closed are still queued in the pool; each one handed
        // back here is seen to be broken and dropped, so at most `size` are skipped.
        for _ in 0..self.size {
            let pooled = self.pool.get().await?;
            if !pooled.client.is_closed() {
                return Ok(Arc::clone(&*pooled));
            }
        }
        Ok(Arc::clone(&*self.pool.get().await?))
    }

    /// Whether the database answers and a materialize has completed.
    pub async fn is_ready(&self) -> Result<bool, StoreError> {
        let check = async {
            let connection = self.connection().await?;
            let row = connection
                .client
                .query_one(documents::READY_SQL, &[])
                .await?;
            Ok::<bool, StoreError>(row.get(0))
        };
        self.bounded(check).await
    }

    /// Failed reads, readiness checks and connection attempts so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Batches of reads by id sent so far, and the reads they carried.
    pub fn batches(&self) -> (u64, u64) {
        (
            self.batches.statements.load(Ordering::Relaxed),
            self.batches.reads.load(Ordering::Relaxed),
        )
    }

    /// The pool's connections and the reads on them.
    pub fn pool_state(&self) -> PoolState {
        PoolState {
            open: self.pool.state().connections,
            reads_in_flight: self.in_flight.count(),
            size: self.size,
        }
    }
}

/// A product's bodies of the kinds read by id, in [`Kind::BY_ID`]'s order.
#[derive(Debug, Clone)]
pub struct ProductBodies {
    pub id: i32,
    pub bodies: Vec<Body>,
}

impl ProductBodies {
    /// The body of `kind`, one of [`Kind::BY_ID`].
    pub fn body(&self, kind: Kind) -> &Body {
        &self.bodies[by_id_index(kind)]
    }
}

/// Where `kind` stands in [`Kind::BY_ID`].
fn by_id_index(kind: Kind) -> usize {
    Kind::BY_ID
        .iter()
        .position(|&by_id| by_id == kind)
        .expect("documents are read by id only of the kinds read by id")
}

/// What the pool holds and carries now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open.
    pub open: u32,
    /// Reads started on them and not yet finished.
    pub reads_in_flight: usize,
    /// Connections the pool keeps open when it can.
    pub size: u32,
}

/// Page `page` of `count` entries: the list entries at ranks (page-1)*count+1 ..=
/// page*count, joined into one JSON array; `None` past the end of the list.
async fn read_page(
    connection: &Connection,
    page: u32,
    count: u32,
) -> Result<Option<Bytes>, StoreError> {
    let first = (i64::from(page) - 1) * i64::from(count) + 1;
    let last = first + i64::from(count) - 1;
    let Ok(first) = i32::try_from(first) else {
        return Ok(None);
    };
    let last = i32::try_from(last).unwrap_or(i32::MAX);
    let rows = connection
        .client
        .query(&connection.statements.page, &[&first, &last])
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let entries: Vec<&[u8]> = rows
        .iter()
        .map(|row| row.get::<_, JsonbText>(0).0)
        .collect();
    let length = entries.iter().map(|entry| entry.len() + 1).sum::<usize>() + 1;
    let mut body = BytesMut::with_capacity(length);
    body.put_u8(b'[');
    for (index, entry) in entries.iter().enumerate() {
        if index > 0 {
            body.put_u8(b',');
        }
        body.put_slice(entry);
    }
    body.put_u8(b']');
    Ok(Some(body.freeze()))
}

/// Column `column` of `row`, a `jsonb` document, as its JSON text.
fn jsonb_bytes(row: &tokio_postgres::Row, column: usize) -> Bytes {
    Bytes::copy_from_slice(row.get::<_, JsonbText>(column).0)
}

/// The body in `row`: the document's JSON text in column `json`, or its stored gzip
/// form in column `gzip` when the read found one (`json` is then NULL).
fn body_of(row: &tokio_postgres::Row, json: usize, gzip: usize) -> Body {
    match row.get::<_, Option<&[u8]>>(gzip) {
        Some(form) if !form.is_empty() => Body::Gzip(Bytes::copy_from_slice(form)),
        Some(_) => Body::JsonOnly(jsonb_bytes(row, json)),
        None => Body::Json(jsonb_bytes(row, json)),
    }
}

/// The columns a read of `kind` takes: the JSON text unless a gzip form that gains is
/// stored, and the form (NULL when not made, empty when gzip does not gain). Only its
/// length is looked at to choose, which PostgreSQL knows without reading a form kept
/// out of line. Without `forms_stored` (a schema from before the forms) it is the JSON
/// text and no form.
fn read_columns(kind: Kind, forms_stored: bool) -> (String, String) {
    let (json, gzip) = (
        kind.column(),
        kind.gzip_column()
            .expect("a kind read by id has a gzip form"),
    );
    if !forms_stored {
        return (json.to_string(), "NULL::bytea".to_string());
    }
    (
        format!("CASE WHEN octet_length({gzip}) > 0 THEN NULL ELSE {json} END"),
        gzip.to_string(),
    )
}

/// Whether `document` has every gzip form column: a database whose schema predates them
/// (a server upgraded before the database's next load or materialize) is read without
/// them, its documents compressed as they enter the cache, as before.
fn forms_stored_sql() -> String {
    let columns: Vec<String> = Kind::BY_ID
        .iter()
        .filter_map(|kind| kind.gzip_column())
        .map(|column| format!("'{column}'"))
        .collect();
    format!(
        "SELECT count(*) = {} FROM pg_attribute \
         WHERE attrelid = to_regclass('document') AND NOT attisdropped \
           AND attname IN ({})",
        columns.len(),
        columns.join(", ")
    )
}

/// A pooled connection and its prepared statements.
pub struct Connection {
    client: Client,
    statements: Statements,
}

struct Statements {
    page: Statement,
    /// One per kind in [`Kind::BY_ID`], in its order: the JSON text or the stored gzip
    /// form ([`read_columns`]).
    by_id: Vec<Statement>,
    /// The same, the JSON text only: for a form found damaged.
    json_by_id: Vec<Statement>,
    /// The bodies of several reads: of product $1[i], the kind $2[i] (its place in
    /// [`Kind::BY_ID`]), each after i (counted from 1).
    gathered: Statement,
    /// Every by-id body of the products in $1.
    products: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        let forms_stored: bool = client.query_one(&forms_stored_sql(), &[]).await?.get(0);
        if !forms_stored {
            tracing::warn!(
                "the document table has no gzip forms (its schema predates them): documents \
                 are compressed as they are read, until `atelier materialize` adds them"
            );
        }
        let json_by_id = Kind::BY_ID.map(|kind| kind.read_sql().expect("a kind read by id"));
        let by_id = Kind::BY_ID.map(|kind| {
            let (json, gzip) = read_columns(kind, forms_stored);
            format!("SELECT {json}, {gzip} FROM document WHERE product_id = $1")
        });
        let products = format!(
            "SELECT product_id, {} FROM document WHERE product_id = ANY($1)",
            Kind::BY_ID
                .iter()
                .map(|&kind| {
                    let (json, gzip) = read_columns(kind, forms_stored);
                    format!("{json}, {gzip}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        // CASE evaluates only the branch taken, so only the columns asked for are read.
        let (mut json, mut gzip) = (Vec::new(), Vec::new());
        for (index, &kind) in Kind::BY_ID.iter().enumerate() {
            let (json_or_null, form) = read_columns(kind, forms_stored);
            json.push(format!("WHEN {index} THEN {json_or_null}"));
            gzip.push(format!("WHEN {index} THEN {form}"));
        }
        let gathered = format!(
            "SELECT wanted.place, CASE wanted.kind {} END, CASE wanted.kind {} END \
             FROM unnest($1::int4[], $2::int2[]) WITH ORDINALITY AS wanted (id, kind, place) \
             JOIN document ON document.product_id = wanted.id",
            json.join(" "),
            gzip.join(" ")
        );
        let prepare_by_id = |statements: [String; 3]| {
            futures_util::future::try_join_all(
                statements
                    .into_iter()
                    .map(|sql| async move { client.prepare_typed(&sql, &[Type::INT4]).await }),
            )
        };
        // The Parse messages go out together and share one round trip.
        let (page, by_id, json_by_id, gathered, products) = tokio::try_join!(
            client.prepare_typed(documents::PAGE_SQL, &[Type::INT4, Type::INT4]),
            prepare_by_id(by_id),
            prepare_by_id(json_by_id),
            client.prepare_typed(&gathered, &[Type::INT4_ARRAY, Type::INT2_ARRAY]),
            client.prepare_typed(&products, &[Type::INT4_ARRAY]),
        )?;
        Ok(Statements {
            page,
            by_id,
            json_by_id,
            gathered,
            products,
        })
    }
}

/// Opens connections for the pool and prepares their statements.
struct Connector {
    config: tokio_postgres::Config,
}

impl ManageConnection for Connector {
    type Connection = Arc<Connection>;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Arc<Connection>, tokio_postgres::Error> {
        let client = crate::db::connection::open(&self.config).await?;
        let statements = Statements::prepare(&client).await?;
        Ok(Arc::new(Connection { client, statements }))
    }

    async fn is_valid(
        &self,
        connection: &mut Arc<Connection>,
    ) -> Result<(), tokio_postgres::Error> {
        connection.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, connection: &mut Arc<Connection>) -> bool {
        connection.client.is_closed()
    }
}

/// Counts failed connection attempts with the other database errors.
#[derive(Debug, Clone)]
struct CountingSink(Arc<AtomicU64>);

impl ErrorSink<tokio_postgres::Error> for CountingSink {
    fn sink(&self, error: tokio_postgres::Error) {
        self.0.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %crate::error::database_message(&error), "database connection attempt failed");
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}
