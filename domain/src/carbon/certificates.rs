//! Energy attribute certificates (being written).
