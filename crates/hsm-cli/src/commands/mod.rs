pub mod approvals;
pub mod approver_key;
pub mod audit;
pub mod backup;
pub mod inspect;
pub mod key;
pub mod migrate;
pub mod token;
