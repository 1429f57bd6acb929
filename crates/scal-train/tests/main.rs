//! scal-train's integration tests, in one binary (each test binary links Burn).

mod bad_data;
mod common;
mod config_fields;
mod critic_loop;
mod data_parallel;
mod overfit;
mod train_run;
mod update_order;
