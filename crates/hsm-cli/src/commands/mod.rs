pub mod backup;
pub mod inspect;
pub mod token;
