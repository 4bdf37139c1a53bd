//! The integration tests: one binary, one throwaway PostgreSQL cluster started from the
//! system's server binaries, one database per test.

mod serving;
mod support;

mod cluster;
mod demo;
mod generate;
mod golden;
mod http;
mod load;
mod materialize;
mod openapi;
