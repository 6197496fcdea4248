//! HTTP/1.1 for the edge: [`parse`] frames requests, [`response`] writes
//! answers. Bodies are by `Content-Length` only (no chunked requests).

pub mod parse;
pub mod response;

pub use parse::{parse, Parsed, Request, MAX_BODY_BYTES, MAX_HEAD_BYTES};
