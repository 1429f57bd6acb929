mod base;
mod client;
mod gate;
mod server;

pub use base::*;
pub use client::*;
pub use gate::{DEFAULT_FIRST_MESSAGE_LIMIT, FirstMessageGate};
pub use server::*;
