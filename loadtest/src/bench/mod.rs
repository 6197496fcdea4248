//! Gateway micro-benchmarks that put Squall side by side with a peer on the
//! same machine, with the same client: [`longpoll`] fan-out rounds (Squall
//! or nchan), [`repoll`] request rate (Squall or the [`hello`]-world
//! ceiling). [`wire`] speaks each server's protocol, [`clients`] runs the
//! connections, [`procstat`] reads the server's CPU and memory.

pub mod cli;
pub mod clients;
pub mod hello;
pub mod longpoll;
pub mod procstat;
pub mod repoll;
pub mod wire;
