//! The `ids` list of `GET /products?ids=` on arbitrary query values: `parse_ids` never
//! panics, and what it accepts is a list the service can answer as asked: 1 to
//! `MAX_IDS` distinct product ids, which read back the same once written with commas.

#![no_main]

use std::collections::HashSet;

use atelier::http::composite::{MAX_IDS, parse_ids};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    let Ok(ids) = parse_ids(value) else {
        return;
    };
    assert!(
        (1..=MAX_IDS).contains(&ids.len()),
        "{value:?} gave {} ids",
        ids.len()
    );
    assert!(ids.iter().all(|&id| id >= 1), "{value:?} gave {ids:?}");
    let distinct: HashSet<i32> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "{value:?} gave {ids:?}");
    let written: Vec<String> = ids.iter().map(i32::to_string).collect();
    assert_eq!(
        parse_ids(&written.join(",")),
        Ok(ids.clone()),
        "{value:?} gave {ids:?}"
    );
});
