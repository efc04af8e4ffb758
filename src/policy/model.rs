//! The policy input and decision as Rust types. Their JSON Schemas are
//! generated into `policies/schema/` (`ketenpoort policy schema`), so policy
//! authors see exactly what they receive and must return.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What is being attempted. Chooses the policy entrypoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Submit,
    Read,
    List,
    Refer,
    Deliver,
    AuditQuery,
    ReleaseAggregate,
    /// The ZVHD records its assessment: a new version of the signal.
    Assess,
    /// The reporter corrects its own signal while it is new.
    Correct,
    /// The ZVHD reads an earlier version of a signal.
    History,
    /// The ZVHD moves a signal through the state machine.
    Transition,
    /// The reporter (or the ZVHD) follows a signal's status.
    Track,
    /// A recipient of a referral reports back on it.
    Feedback,
    /// The reporter asks the ZVHD to correct its signal (after `nieuw`):
    /// a logged message, not a change.
    RequestCorrection,
    /// The ZVHD reads the correction requests of a signal.
    ReviewCorrections,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Read => "read",
            Self::List => "list",
            Self::Refer => "refer",
            Self::Deliver => "deliver",
            Self::AuditQuery => "audit-query",
            Self::ReleaseAggregate => "release-aggregate",
            Self::Assess => "assess",
            Self::Correct => "correct",
            Self::History => "history",
            Self::Transition => "transition",
            Self::Track => "track",
            Self::Feedback => "feedback",
            Self::RequestCorrection => "request-correction",
            Self::ReviewCorrections => "review-corrections",
        }
    }

    pub fn entrypoint(self) -> &'static str {
        match self {
            Self::Submit
            | Self::Read
            | Self::List
            | Self::Refer
            | Self::Deliver
            | Self::Assess
            | Self::Correct
            | Self::History
            | Self::Transition
            | Self::Track
            | Self::Feedback
            | Self::RequestCorrection
            | Self::ReviewCorrections => ENTRY_EXCHANGE,
            Self::AuditQuery => ENTRY_AUDIT,
            Self::ReleaseAggregate => ENTRY_PHENOMENA,
        }
    }
}

pub const ENTRY_EXCHANGE: &str = "data.ketenpoort.exchange.decision";
pub const ENTRY_AUDIT: &str = "data.ketenpoort.audit.decision";
pub const ENTRY_PHENOMENA: &str = "data.ketenpoort.phenomena.decision";
pub const ENTRYPOINTS: [&str; 3] = [ENTRY_EXCHANGE, ENTRY_AUDIT, ENTRY_PHENOMENA];

/// The policy input: never a personal value, only facts about the parties,
/// the purpose and the record.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub action: Action,
    /// Purpose id from the `Ketenpoort-Purpose` header.
    pub purpose: String,
    pub principal: Party,
    /// The receiving partner of a `submit` (the ZVHD) or a `refer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Party>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditInput>,
    /// The requested move of a `transition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transition: Option<TransitionInput>,
    /// The status code of a recipient's `feedback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
}

/// A requested move in the state machine (`data.covenant.lifecycle`): the
/// status to move to and, for `afgesloten`, the closing reason. The status
/// it moves from is the signal's.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionInput {
    pub to: String,
    pub reason: Option<String>,
}

/// A partner as the registry knows it; `role` only for the caller.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    pub partner: String,
    pub kind: String,
    pub member: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub status: String,
}

/// Non-identifying facts about one signal.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalFacts {
    pub reporter: String,
    pub municipality: String,
    pub forms: Vec<String>,
    pub victim_minor: bool,
    pub domestic_setting: bool,
    pub referrals: Vec<ReferralFact>,
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReferralFact {
    pub partner: String,
    pub purpose: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditInput {
    pub query: AuditQuery,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditQuery {
    /// `GET /v1/log/entries`
    Entries,
    Search,
    Subject,
    Export,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Masked,
    Aggregate,
    Deny,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    All,
    Own,
    OwnAggregate,
}

/// One decision object for every action.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Decision {
    pub allow: bool,
    pub mode: Mode,
    /// Field paths the recipient may receive (`full`/`masked` only).
    pub fields: Vec<String>,
    /// Stable codes: `grant:<id>` on allow, deny reasons otherwise.
    pub reasons: Vec<String>,
    pub legal_basis: Option<String>,
    /// Which log entries an `audit-query` may see.
    pub scope: Option<Scope>,
    /// Hash of the policy bundle that decided. Set by ketenpoort, not Rego.
    #[serde(default)]
    pub revision: String,
}

/// Whether a party is a covenant member: its registry entry says so AND its
/// kind is a member kind in the covenant data (the Rego's `is_member`). The
/// one such test on the Rust side, for the boundary's route gate and for
/// [`Decision::sanitised`]: a registry entry alone never makes a RIEC a
/// member.
pub fn is_member(data: &serde_json::Value, registry_member: bool, kind: &str) -> bool {
    registry_member
        && data
            .pointer("/covenant/kinds")
            .and_then(|kinds| kinds.get(kind))
            .and_then(|k| k.get("member"))
            == Some(&serde_json::Value::Bool(true))
}

/// Whether `role` is a role of some partner kind in the covenant data.
pub fn is_covenant_role(data: &serde_json::Value, role: &str) -> bool {
    data.pointer("/covenant/kinds")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|kinds| kinds.values())
        .filter_map(|k| k.get("roles").and_then(serde_json::Value::as_array))
        .flatten()
        .any(|r| r.as_str() == Some(role))
}

/// Whether `field` is a leaf path of the field classification
/// (`covenant.classes`). Projection copies whatever a path names, so a bare
/// `victims` would copy every victim whole.
fn is_classified_leaf(data: &serde_json::Value, field: &str) -> bool {
    let classified = data
        .pointer("/covenant/classes")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|classes| classes.values())
        .filter_map(serde_json::Value::as_array)
        .flatten()
        .filter_map(serde_json::Value::as_str);
    let mut found = false;
    for path in classified {
        if path
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('.'))
        {
            return false;
        }
        found |= path == field;
    }
    found
}

/// A decision that allows `action`: the only thing a record can be
/// projected under ([`crate::projection::project`]), and what a disclosure's
/// log entry records. Made only from an allowing decision.
#[derive(Clone, Debug)]
pub struct Granted {
    decision: Decision,
    action: Action,
}

impl Granted {
    /// The decision as a grant of `action`, or the refusal it is.
    pub fn of(decision: Decision, action: Action) -> Result<Self, Decision> {
        if decision.allow {
            Ok(Self { decision, action })
        } else {
            Err(decision)
        }
    }

    pub fn action(&self) -> Action {
        self.action
    }

    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    pub fn into_decision(self) -> Decision {
        self.decision
    }
}

impl std::ops::Deref for Granted {
    type Target = Decision;

    fn deref(&self) -> &Decision {
        &self.decision
    }
}

impl Decision {
    pub fn deny(reason: &str, revision: &str) -> Self {
        Self {
            allow: false,
            mode: Mode::Deny,
            fields: Vec::new(),
            reasons: vec![reason.to_owned()],
            legal_basis: None,
            scope: None,
            revision: revision.to_owned(),
        }
    }

    /// Fail closed (`policy-incoherent`) on anything a well-formed policy
    /// would not return, whatever the Rego says: an allow without a mode to
    /// serve; fields with `aggregate` or `deny`; a record (`full`/`masked`)
    /// for a non-member caller, or submitted or referred to a non-member
    /// recipient (only `aggregate` may go there); a read, list or delivery
    /// allowed as anything but a record; a field that is not a leaf of the
    /// field classification in `data`. Membership is [`is_member`].
    pub fn sanitised(mut self, input: &Input, data: &serde_json::Value) -> Self {
        let member = |p: &Party| is_member(data, p.member, &p.kind);
        let record = matches!(self.mode, Mode::Full | Mode::Masked);
        let to_recipient = matches!(input.action, Action::Submit | Action::Refer);
        // Every action on a signal serves (or changes) a record: none of
        // them is ever `aggregate`.
        let serves_records = matches!(
            input.action,
            Action::Read
                | Action::List
                | Action::Deliver
                | Action::Assess
                | Action::Correct
                | Action::History
                | Action::Transition
                | Action::Track
                | Action::Feedback
                | Action::RequestCorrection
                | Action::ReviewCorrections
        );
        let incoherent = (self.allow == (self.mode == Mode::Deny))
            || (!record && !self.fields.is_empty())
            || (record && !member(&input.principal))
            || (record && to_recipient && !input.recipient.as_ref().is_some_and(member))
            || (self.allow && serves_records && !record)
            || self.fields.iter().any(|f| !is_classified_leaf(data, f));
        if incoherent {
            return Self::deny("policy-incoherent", &self.revision);
        }
        if !self.allow {
            self.legal_basis = None;
            self.scope = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Covenant data as the policies ship it: kinds and the field classification.
    fn data() -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/data.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn party(kind: &str, member: bool) -> Party {
        Party {
            partner: kind.into(),
            kind: kind.into(),
            member,
            role: None,
            status: "active".into(),
        }
    }

    fn input(action: Action, principal: Party, recipient: Option<Party>) -> Input {
        Input {
            action,
            purpose: "drieluik".into(),
            principal,
            recipient,
            signal: None,
            audit: None,
            transition: None,
            feedback: None,
        }
    }

    /// A member reading: the simplest coherent record decision.
    fn read() -> Input {
        input(Action::Read, party("zvhd", true), None)
    }

    fn decision(mode: Mode, fields: &[&str]) -> Decision {
        Decision {
            allow: mode != Mode::Deny,
            mode,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            reasons: vec!["grant:x".into()],
            legal_basis: Some("x".into()),
            scope: None,
            revision: "r".into(),
        }
    }

    fn incoherent(d: &Decision) -> bool {
        !d.allow
            && d.mode == Mode::Deny
            && d.reasons == ["policy-incoherent"]
            && d.fields.is_empty()
    }

    #[test]
    fn a_coherent_decision_passes_unchanged() {
        let d = decision(Mode::Masked, &["forms", "victims.name"]);
        let out = d.clone().sanitised(&read(), &data());
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
        // A denial keeps its own reason.
        let mut deny = Decision::deny("not-referred", "r");
        deny.legal_basis = Some("x".into());
        let out = deny.sanitised(&read(), &data());
        assert_eq!(out.reasons, ["not-referred"]);
        assert_eq!(out.legal_basis, None);
    }

    #[test]
    fn a_non_member_never_gets_record_fields_whatever_the_policy_says() {
        for kind in ["riec", "gemeente"] {
            let caller = input(Action::Read, party(kind, false), None);
            for mode in [Mode::Full, Mode::Masked] {
                let d = decision(mode, &["victims.name"]).sanitised(&caller, &data());
                assert!(incoherent(&d), "{kind} {mode:?}");
            }
        }
        let audit = input(Action::AuditQuery, party("riec", false), None);
        assert!(
            decision(Mode::Aggregate, &[])
                .sanitised(&audit, &data())
                .allow
        );
        assert!(incoherent(
            &decision(Mode::Aggregate, &["forms"]).sanitised(&audit, &data())
        ));
    }

    /// Membership is the registry flag AND the kind's: a RIEC registered as
    /// a member is still none.
    #[test]
    fn membership_needs_the_registry_and_the_kind() {
        let data = data();
        assert!(is_member(&data, true, "gemeente"));
        assert!(!is_member(&data, false, "gemeente"));
        assert!(!is_member(&data, true, "riec"));
        assert!(!is_member(&data, true, "marechaussee"));
        assert!(!is_member(&json!({}), true, "gemeente"));
        let riec_as_member = input(Action::Read, party("riec", true), None);
        assert!(incoherent(
            &decision(Mode::Full, &["forms"]).sanitised(&riec_as_member, &data)
        ));
    }

    /// (a) A referral (or submit) to a non-member is `aggregate` or nothing.
    #[test]
    fn a_record_never_goes_to_a_non_member_recipient() {
        let data = data();
        let referrer = party("zvhd", true);
        for action in [Action::Refer, Action::Submit] {
            for recipient in [
                Some(party("riec", false)),
                Some(party("riec", true)),
                Some(party("politie", false)),
                None,
            ] {
                let what = format!("{action:?} to {recipient:?}");
                let x = input(action, referrer.clone(), recipient);
                for mode in [Mode::Full, Mode::Masked] {
                    assert!(
                        incoherent(&decision(mode, &["forms"]).sanitised(&x, &data)),
                        "{what}"
                    );
                }
                assert!(
                    decision(Mode::Aggregate, &[]).sanitised(&x, &data).allow,
                    "{what}"
                );
                let deny = Decision::deny("recipient-not-for-purpose", "r").sanitised(&x, &data);
                assert_eq!(deny.reasons, ["recipient-not-for-purpose"], "{what}");
            }
        }
        let to_member = input(Action::Refer, referrer, Some(party("politie", true)));
        assert!(
            decision(Mode::Masked, &["forms"])
                .sanitised(&to_member, &data)
                .allow
        );
    }

    /// (b) The routes that serve records get records or a denial.
    #[test]
    fn record_actions_are_full_or_masked() {
        let data = data();
        for action in [
            Action::Read,
            Action::List,
            Action::Deliver,
            Action::Assess,
            Action::Correct,
            Action::History,
            Action::Transition,
            Action::Track,
            Action::Feedback,
            Action::RequestCorrection,
            Action::ReviewCorrections,
        ] {
            let x = input(action, party("politie", true), None);
            assert!(
                incoherent(&decision(Mode::Aggregate, &[]).sanitised(&x, &data)),
                "{action:?}"
            );
            for mode in [Mode::Full, Mode::Masked] {
                assert!(
                    decision(mode, &["forms"]).sanitised(&x, &data).allow,
                    "{action:?}"
                );
            }
        }
    }

    /// (c) Only leaf paths of the classification: never a whole list, an
    /// unknown field, or a path below a leaf.
    #[test]
    fn fields_are_classified_leaves() {
        let data = data();
        for field in [
            "victims",
            "suspects",
            "victims.",
            "victims.name.first",
            "victims.*",
            "id",
            "unclassified",
            "",
        ] {
            let d = decision(Mode::Masked, &["forms", field]).sanitised(&read(), &data);
            assert!(incoherent(&d), "{field:?}");
        }
        assert!(
            decision(
                Mode::Masked,
                &["victims.address", "suspects.kvkNumber", "narrative"]
            )
            .sanitised(&read(), &data)
            .allow
        );
        // A path that is classified but has classified paths below it is no leaf.
        let nested = json!({"covenant": {"kinds": {"zvhd": {"member": true}},
            "classes": {"D": ["victims", "victims.name"]}}});
        assert!(incoherent(
            &decision(Mode::Masked, &["victims"]).sanitised(&read(), &nested)
        ));
        assert!(
            decision(Mode::Masked, &["victims.name"])
                .sanitised(&read(), &nested)
                .allow
        );
        // No classification at all: no field passes.
        let none = json!({"covenant": {"kinds": {"zvhd": {"member": true}}}});
        assert!(incoherent(
            &decision(Mode::Masked, &["forms"]).sanitised(&read(), &none)
        ));
    }

    #[test]
    fn allow_and_mode_must_agree() {
        let mut d = decision(Mode::Full, &["forms"]);
        d.allow = false;
        assert!(incoherent(&d.sanitised(&read(), &data())));
        let mut d = decision(Mode::Deny, &[]);
        d.allow = true;
        assert!(incoherent(&d.sanitised(&read(), &data())));
    }
}

#[cfg(test)]
mod schema_files {
    /// `policies/schema/` must be what the types generate
    /// (regenerate with `ketenpoort policy schema`).
    #[test]
    fn committed_schemas_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/schema");
        for (name, schema) in [
            ("input.json", schemars::schema_for!(super::Input)),
            ("decision.json", schemars::schema_for!(super::Decision)),
        ] {
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let committed = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(
                committed, generated,
                "policies/schema/{name} is stale: run `ketenpoort policy schema`"
            );
        }
    }
}
