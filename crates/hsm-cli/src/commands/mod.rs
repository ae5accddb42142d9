pub mod backup;
pub mod inspect;
pub mod migrate;
pub mod token;
