//! FaceGate's server side: the face engine ([`vision`]), the in-memory
//! [`gallery`], the [`store`]s, the business rules ([`service`]), and the
//! HTTP layer ([`http`], [`api`]) around the Leptos app.

pub mod api;
pub mod auth;
pub mod commands;
pub mod config;
pub mod conn;
pub mod gallery;
pub mod http;
pub mod keys;
pub mod limit;
pub mod service;
pub mod site;
pub mod store;
pub mod tls;
pub mod tunnel;
pub mod vision;
pub mod web;
