//! Pure compilers: a [`Snapshot`](crate::snapshot::Snapshot) in, tables and
//! [`Diagnostic`](crate::diagnostics::Diagnostic)s out. No I/O here: this is
//! where Kubernetes semantics live, tested with plain objects.

pub(crate) mod endpoints;
pub mod l4;
pub mod l7;
pub mod tables;
#[cfg(test)]
pub(crate) mod test_support;

pub use l4::{CompileOptions, IngressHandoff, L4Compiler, NodeContext, compile_l4};
pub use tables::*;
