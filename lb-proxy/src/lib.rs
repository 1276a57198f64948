//! The L7 proxy (work in progress).
