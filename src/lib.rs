//! Atelier products: a product-catalog read service.
//!
//! Data flows one way: CSV files ([`catalog`] describes them) → [`load`] → normalized
//! tables → [`materialize`] → stored JSON documents ([`documents`] is what writers and
//! readers agree on) → [`http`] (cache, socket). [`generate`] writes synthetic CSV
//! catalogs with the real data's shape and dirt; [`db`] finds or runs PostgreSQL;
//! [`demo`] gives an empty embedded database a catalog to serve. The `atelier` binary
//! (`main.rs` and `cli/`) turns the command line into the plain settings the library
//! takes, sets up the log output and prints what the library returns.

pub mod catalog;
pub mod db;
pub mod demo;
pub mod documents;
pub mod error;
pub mod generate;
pub mod http;
pub mod in_flight;
pub mod load;
pub mod materialize;
pub mod shutdown;

pub use error::{Error, Result};
