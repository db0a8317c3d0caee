//! (being written) the SQLite journal.
