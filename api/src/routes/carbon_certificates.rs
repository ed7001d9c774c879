//! Energy attribute certificates in the back office (being written).
