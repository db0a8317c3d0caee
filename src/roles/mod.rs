//! The programs built from the parts.
