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
use crate::documents::{self, JsonbText, Kind};
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
            // A batch on every other connection: with a pool of 4, 2 batches at a time
            // carried about 11 reads a statement against 5 with 4 at a time, for less
            // database CPU per read and the same throughput (bench/README.md); the
            // other connections carry list pages and the joined answers' reads.
            queue: Arc::new(ReadQueue::new((settings.size as usize / 2).max(1))),
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
                Ok(self.bounded(read).await?.map(Body::Json))
            }
            Key::Document { kind, id } => self.bounded(self.read_gathered(kind, id, coding)).await,
        }
    }

    /// Product `id`'s body of `kind` for `coding`, read in the next batch.
    async fn read_gathered(
        &self,
        kind: Kind,
        id: i32,
        coding: Coding,
    ) -> Result<Option<Body>, StoreError> {
        let queued = self.queue.push(kind, id, coding);
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
                    connection.statements.by_id(alone.kind, alone.coding),
                    &[&alone.id],
                )
                .await?;
            let gzip = (alone.coding == Coding::Gzip).then_some(1);
            return Ok(vec![row.map(|row| body_of(&row, 0, gzip))]);
        }
        let ids: Vec<i32> = batch.iter().map(|pending| pending.id).collect();
        let kinds: Vec<i16> = batch
            .iter()
            .map(|pending| gathered_code(pending.kind, pending.coding))
            .collect();
        let rows = connection
            .client
            .query(&connection.statements.gathered, &[&ids, &kinds])
            .await?;
        let mut bodies = vec![None; batch.len()];
        for row in &rows {
            // The read's place in the batch, counted from 1.
            let place: i64 = row.get(0);
            bodies[place as usize - 1] = Some(body_of(row, 1, Some(2)));
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
    /// each kind in the coding `coding_of` says; products without a document are absent
    /// from the answer.
    pub async fn read_products(
        &self,
        ids: &[i32],
        coding_of: impl Fn(Kind) -> Coding,
    ) -> Result<Vec<ProductBodies>, StoreError> {
        let _counted = self.in_flight.enter();
        let gzip: Vec<bool> = Kind::BY_ID
            .iter()
            .map(|&kind| coding_of(kind) == Coding::Gzip)
            .collect();
        let read = async {
            let connection = self.connection().await?;
            let rows = connection
                .client
                .query(&connection.statements.products, &[&ids, &gzip])
                .await?;
            Ok(rows
                .iter()
                .map(|row| ProductBodies {
                    id: row.get(0),
                    bodies: (0..Kind::BY_ID.len())
                        .map(|kind| body_of(row, 1 + 2 * kind, Some(2 + 2 * kind)))
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
/// form in column `gzip` when a gzip read found one (`json` is then NULL).
fn body_of(row: &tokio_postgres::Row, json: usize, gzip: Option<usize>) -> Body {
    match gzip.and_then(|column| row.get::<_, Option<&[u8]>>(column)) {
        Some(form) if !form.is_empty() => Body::Gzip(Bytes::copy_from_slice(form)),
        Some(_) => Body::JsonOnly(jsonb_bytes(row, json)),
        None => Body::Json(jsonb_bytes(row, json)),
    }
}

/// How the gathered statement names a read of `kind` for `coding`: the kind's place in
/// [`Kind::BY_ID`], past every kind's for gzip.
fn gathered_code(kind: Kind, coding: Coding) -> i16 {
    let gzip = match coding {
        Coding::Identity => 0,
        Coding::Gzip => Kind::BY_ID.len(),
    };
    (by_id_index(kind) + gzip) as i16
}

/// The columns a gzip read of `kind` takes when `asked` (an SQL condition) holds: the
/// JSON text unless a gzip form that gains is stored, and the form (NULL when not made,
/// empty when gzip does not gain). Only its length is looked at to choose, which
/// PostgreSQL knows without reading a form kept out of line. Without `forms_stored`
/// (a schema from before the forms) it is the JSON text and no form.
fn gzip_read_columns(kind: Kind, asked: &str, forms_stored: bool) -> (String, String) {
    let (json, gzip) = (
        kind.column(),
        kind.gzip_column()
            .expect("a kind read by id has a gzip form"),
    );
    if !forms_stored {
        return (json.to_string(), "NULL::bytea".to_string());
    }
    (
        format!("CASE WHEN {asked} AND octet_length({gzip}) > 0 THEN NULL ELSE {json} END"),
        format!("CASE WHEN {asked} THEN {gzip} END"),
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
    /// One per kind in [`Kind::BY_ID`], in its order: the JSON text.
    by_id: Vec<Statement>,
    /// The same for gzip reads: the JSON text or the stored gzip form.
    by_id_gzip: Vec<Statement>,
    /// The bodies of several reads: of product $1[i], the kind and coding $2[i]
    /// ([`gathered_code`]), each after i (counted from 1).
    gathered: Statement,
    /// Every by-id body of the products in $1, each kind in gzip where $2 (a `bool[]`
    /// in [`Kind::BY_ID`]'s order) says so.
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
        let by_id = Kind::BY_ID.map(|kind| kind.read_sql().expect("a kind read by id"));
        let by_id_gzip = Kind::BY_ID.map(|kind| {
            let (json, gzip) = gzip_read_columns(kind, "true", forms_stored);
            format!("SELECT {json}, {gzip} FROM document WHERE product_id = $1")
        });
        let products = format!(
            "SELECT product_id, {} FROM document WHERE product_id = ANY($1)",
            Kind::BY_ID
                .iter()
                .enumerate()
                .map(|(index, &kind)| {
                    let (json, gzip) =
                        gzip_read_columns(kind, &format!("$2[{}]", index + 1), forms_stored);
                    format!("{json}, {gzip}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        // CASE evaluates only the branch taken, so only the columns asked for are read.
        let (mut json, mut gzip) = (Vec::new(), Vec::new());
        for &kind in &Kind::BY_ID {
            let identity = gathered_code(kind, Coding::Identity);
            let compressed = gathered_code(kind, Coding::Gzip);
            let (json_or_null, form) = gzip_read_columns(kind, "true", forms_stored);
            json.push(format!("WHEN {identity} THEN {}", kind.column()));
            json.push(format!("WHEN {compressed} THEN {json_or_null}"));
            gzip.push(format!("WHEN {compressed} THEN {form}"));
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
        let (page, by_id, by_id_gzip, gathered, products) = tokio::try_join!(
            client.prepare_typed(documents::PAGE_SQL, &[Type::INT4, Type::INT4]),
            prepare_by_id(by_id),
            prepare_by_id(by_id_gzip),
            client.prepare_typed(&gathered, &[Type::INT4_ARRAY, Type::INT2_ARRAY]),
            client.prepare_typed(&products, &[Type::INT4_ARRAY, Type::BOOL_ARRAY]),
        )?;
        Ok(Statements {
            page,
            by_id,
            by_id_gzip,
            gathered,
            products,
        })
    }

    /// The statement reading product $1's body of `kind` (one of [`Kind::BY_ID`]) for
    /// `coding`.
    fn by_id(&self, kind: Kind, coding: Coding) -> &Statement {
        let statements = match coding {
            Coding::Identity => &self.by_id,
            Coding::Gzip => &self.by_id_gzip,
        };
        &statements[by_id_index(kind)]
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
