//! The system of record.
