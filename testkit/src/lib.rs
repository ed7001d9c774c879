pub fn x() {}

pub mod smtp;
