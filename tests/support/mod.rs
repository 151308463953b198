//! The test support of `tests/it` (`tests/it/support/`), for the test
//! binaries outside it (`alloc`, `notify_cli`): `mod support;` in one of
//! them includes it all, through here.
//!
//! Each of those binaries uses a part of it, so in them the rest is unused,
//! not dead: the two lints that would say so are off here, and only here.
//! The `it` binary uses every item, and the lints stay on there.

#![allow(dead_code, unused_imports)]

#[path = "../it/support/mod.rs"]
mod all;

pub(crate) use all::*;
