//! The pages: check-in for everyone, login, and the admin pages.

pub mod admin;
pub mod checkin;
pub mod login;
