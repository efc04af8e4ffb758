//! What is stored of a signal in plaintext beside its ciphertext.

/// Statuses a signal moves through.
pub const STATUS_NEW: &str = "nieuw";
pub const STATUS_REFERRED: &str = "doorverwezen";

/// What the tables beside the ciphertext hold, in plaintext, for filtering
/// and for the policy: no names, numbers or free text.
#[derive(Clone, Debug)]
pub struct Facts {
    pub id: String,
    pub reporter: String,
    pub municipality: String,
    pub forms: Vec<String>,
    pub date_received: String,
    pub victim_minor: bool,
    pub domestic_setting: bool,
    pub status: String,
    pub created_at: i64,
}
