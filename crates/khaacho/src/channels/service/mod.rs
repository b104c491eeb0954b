//! The channels' services: what an inbound message means in its conversation
//! ([`conversation`]), and the draft orders built from messages ([`draft`]).

pub mod conversation;
pub mod draft;
