//! The one log entry of a page of records (a list, an inbox pull): every
//! record, subject and field disclosed on the page, and every decision's
//! reasons (invariant 2 for pages).

use super::purpose::Exchange;
use crate::ledger::Draft;
use crate::policy::{Action, Decision, Granted, Mode};

#[derive(Default)]
pub struct PageLog {
    resources: Vec<String>,
    subjects: Vec<String>,
    fields: Vec<String>,
    reasons: Vec<String>,
    masked: bool,
    first: Option<Decision>,
}

impl PageLog {
    /// One record disclosed under `granted`, named by `resources` (the
    /// signal, and the version read where there is one).
    pub fn disclosed(
        &mut self,
        resources: impl IntoIterator<Item = String>,
        subjects: Vec<String>,
        granted: Granted,
    ) {
        let decision = granted.into_decision();
        self.resources.extend(resources);
        self.subjects.extend(subjects);
        self.fields.extend(decision.fields.iter().cloned());
        self.reasons.extend(decision.reasons.iter().cloned());
        self.masked |= decision.mode != Mode::Full;
        self.first.get_or_insert(decision);
    }

    /// The page's entry. A page on which nothing could be disclosed is
    /// logged as a refusal (`no-record-allowed`).
    pub fn draft(mut self, exchange: &Exchange, action: Action) -> Draft {
        self.reasons.sort();
        self.reasons.dedup();
        let decision = match self.first {
            Some(first) => Decision {
                fields: self.fields,
                reasons: self.reasons,
                mode: if self.masked {
                    Mode::Masked
                } else {
                    Mode::Full
                },
                ..first
            },
            None => Decision::deny("no-record-allowed", &exchange.policy_revision()),
        };
        exchange
            .draft_for(action, &decision)
            .resources(self.resources)
            .subjects(self.subjects)
    }
}
