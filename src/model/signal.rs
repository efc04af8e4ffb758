//! What is stored of a signal in plaintext beside its ciphertext.

/// Statuses a signal moves through.
pub const STATUS_NEW: &str = "nieuw";
pub const STATUS_REFERRED: &str = "doorverwezen";

/// One move of a signal's status: codes and a time, never content.
#[derive(Clone, Debug)]
pub struct Transition {
    pub seq: i64,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
    /// The partner that made the move.
    pub actor: String,
    pub at: i64,
}

/// A reporter's request to correct its signal (a message to the ZVHD, not
/// a change): the proposed merge patch and note stay sealed in `body`.
#[derive(Clone, Debug)]
pub struct CorrectionRequest {
    pub id: String,
    pub signal_id: String,
    /// The version the reporter saw when it asked.
    pub against_version: i64,
    /// The partner that asked (the reporter).
    pub partner: String,
    /// `{"patch": ..., "note": ...}` sealed under the signal's data key,
    /// associated data [`CorrectionRequest::aad`].
    pub body: Vec<u8>,
    pub at: i64,
}

impl CorrectionRequest {
    /// The associated data its body is sealed under: bound to the signal
    /// and to this request, so a sealed body cannot be passed off as the
    /// signal's content or as another request.
    pub fn aad(signal_id: &str, id: &str) -> String {
        format!("{signal_id}/correction/{id}")
    }
}

/// A referral as the ZVHD follows it: to whom, for what, and the latest
/// status code its recipient reported back.
#[derive(Clone, Debug)]
pub struct ReferralFeedback {
    pub recipient: String,
    pub purpose: String,
    pub feedback: Option<String>,
    pub feedback_at: Option<i64>,
}

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
    /// The version of the content, from 1; every assessment or correction
    /// adds one.
    pub version: i64,
    /// Why the signal was closed (a code of `data.covenant.lifecycle`).
    pub closing_reason: Option<String>,
}
