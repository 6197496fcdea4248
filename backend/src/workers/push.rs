use super::{Failure, Workers};
use serde_json::Value;

/// (being written)
pub async fn handle(_w: &Workers, _item: &Value) -> Result<(), Failure> {
    Err(Failure::Permanent("not yet".into()))
}
