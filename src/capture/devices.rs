//! (being written) capture device listing with stable identities.
