//! Squall on several hosts: gateway nodes, REST backends and a router,
//! with RabbitMQ carrying events from backends to gateway processes.

pub mod broker;
pub mod bus;
pub mod consume;
pub mod http;
pub mod router;
pub mod run;
