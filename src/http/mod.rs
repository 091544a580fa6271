//! HTTP/1.1: [`Server`], a small server for the dispatch pattern.

pub mod server;

pub use server::{reason, Body, Headers, Limits, Request, Response, Server, Version};
