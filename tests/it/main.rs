//! The integration tests: one binary, one throwaway PostgreSQL cluster started from the
//! system's server binaries, one database per test.

mod serving;
mod support;

mod browser;
mod cli;
mod cluster;
mod compression;
mod dbfaults;
mod demo;
mod failover;
mod faults;
mod generate;
mod golden;
mod hostile;
mod http;
mod live;
mod load;
mod materialize;
mod openapi;
mod scaleout;
mod storefront;
