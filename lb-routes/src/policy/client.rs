//! What a route lets clients do: source ranges, rate and connection
//! limits per client address, CORS.

/// The client side of a route's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientPolicy {}
