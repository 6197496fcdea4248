//! The authenticated user, as far as the event server needs to know.

use serde::{Deserialize, Serialize};

/// Zulip's role values.
pub mod role {
    /// Organization owner.
    pub const OWNER: i32 = 100;
    /// Organization administrator.
    pub const ADMIN: i32 = 200;
    /// Moderator.
    pub const MODERATOR: i32 = 300;
    /// Member.
    pub const MEMBER: i32 = 400;
    /// Guest.
    pub const GUEST: i32 = 600;
}

/// Who made a request: what authentication yields for `/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthedUser {
    /// User id.
    pub id: i64,
    /// Realm id.
    pub realm_id: i64,
    /// Role (see [`role`]).
    pub role: i32,
}

impl AuthedUser {
    /// Guests may not watch every public stream.
    pub fn is_guest(&self) -> bool {
        self.role == role::GUEST
    }
}
