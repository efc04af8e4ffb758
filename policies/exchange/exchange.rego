# Exchange of signals between covenant partners.
#
# Entry point: data.ketenpoort.exchange.decision, for the actions
#   submit   a partner reports a signal to the ZVHD (the intake)
#   read     a partner reads one signal
#   list     a partner lists signals (decided per signal)
#   refer    the ZVHD passes a signal on to another partner
#   deliver  a referred partner pulls a signal from its inbox
#
# and, after intake, the signal's life (data.covenant.lifecycle):
#   assess     the ZVHD records its assessment: a new version of the signal
#   correct    the reporter corrects its own signal while it is new
#   history    the ZVHD reads an earlier version
#   transition the ZVHD moves the signal through the state machine
#   track      the reporter (or the ZVHD) follows the signal's status
#   feedback   a recipient of a referral reports back on it
#   request-correction  the reporter asks the ZVHD to correct its signal
#                       (after `nieuw`: a logged message, not a change)
#   review-corrections  the ZVHD reads a signal's correction requests
#
# Who may see what is not written here but in data.json (data.covenant):
# the "grants" are the rows of the covenant table. This file checks a request
# step by step; the first step that finds a problem decides the refusal:
#
#   1. the request: is the action one of the five above?
#   2. the caller: known kind, a role of that kind, active?
#   3. the purpose: is it one of the covenant's purposes?
#   4. membership: a non-member (RIEC) never receives a record
#   5. the role: does a grant give this role this purpose and this action
#      (for refer: is the caller a referrer, for this purpose)?
#   6. the recipient (submit, refer): known, active, allowed for the purpose?
#   7. the signal: present and well-formed?
#   8. the signal against the grant: own report, referral, exploitation form,
#      condition (e.g. Veilig Thuis only for minors or a domestic setting),
#      status (a correction only while the signal is new)
#   9. the change (transition, feedback): a known status, closing reason or
#      feedback code, and a transition the state machine allows
#
# If no step finds a problem, the caller (or, for refer, the recipient)
# receives the fields of the classes its grant lists.
package ketenpoort.exchange

# The helpers of data.ketenpoort.common are named by their full path, not
# through an import: an imported package name makes regorus evaluate every
# rule of that package on each decision (measured: 3x the cost of a refusal).

# ---------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------

action := data.ketenpoort.common.get(data.ketenpoort.common.req, "action")

purpose := data.ketenpoort.common.get(data.ketenpoort.common.req, "purpose")

principal := data.ketenpoort.common.get(data.ketenpoort.common.req, "principal")

recipient := data.ketenpoort.common.get(data.ketenpoort.common.req, "recipient")

signal := data.ketenpoort.common.get(data.ketenpoort.common.req, "signal")

exchange_actions := {
	"submit", "read", "list", "refer", "deliver",
	"assess", "correct", "history", "transition", "track", "feedback",
	"request-correction", "review-corrections",
}

# The requested change of a transition ({"to", "reason"}) or the status code
# of a recipient's feedback.
transition := data.ketenpoort.common.get(data.ketenpoort.common.req, "transition")

feedback := data.ketenpoort.common.get(data.ketenpoort.common.req, "feedback")

lifecycle := data.covenant.lifecycle

# ---------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------

# Fail closed: a request no rule below matches is refused. ("no-decision"
# should never be seen; it would mean the policy has a gap.)
default decision := {
	"allow": false,
	"mode": "deny",
	"fields": [],
	"reasons": ["no-decision"],
	"legalBasis": null,
	"scope": null,
}

decision := data.ketenpoort.common.deny(refusal) if {
	count(refusal) > 0
}

decision := granted if {
	count(refusal) == 0
}

principal_problems := data.ketenpoort.common.principal_problems(principal)

purpose_problems := data.ketenpoort.common.purpose_problems(purpose)

signal_problems := data.ketenpoort.common.signal_problems(signal)

# The first step that finds a problem decides the refusal (empty: none).
refusal := request_problems if {
	count(request_problems) > 0
} else := principal_problems if {
	count(principal_problems) > 0
} else := purpose_problems if {
	count(purpose_problems) > 0
} else := membership_problems if {
	count(membership_problems) > 0
} else := role_problems if {
	count(role_problems) > 0
} else := recipient_problems if {
	count(recipient_problems) > 0
} else := signal_problems if {
	count(signal_problems) > 0
} else := grant_problems if {
	count(grant_problems) > 0
} else := change_problems if {
	count(change_problems) > 0
} else := set()

# ---------------------------------------------------------------------------
# Step 1: the request
# ---------------------------------------------------------------------------

request_problems contains "action-unknown" if {
	not action in exchange_actions
}

# ---------------------------------------------------------------------------
# Step 4: membership. A non-member receives phenomenon tables only, never a
# record: every exchange action of a non-member is refused.
# ---------------------------------------------------------------------------

membership_problems contains "non-member-aggregate-only" if {
	not data.ketenpoort.common.is_member(principal)
}

# ---------------------------------------------------------------------------
# Step 5: the role of the caller
# ---------------------------------------------------------------------------

# The grants of the caller's kind and role that name the purpose ...
purpose_grants := [grant |
	kind := principal.kind
	role := principal.role
	wanted := purpose
	some grant in data.covenant.grants
	grant.kind == kind
	role in grant.roles
	wanted in grant.purposes
]

# ... and of those, the ones that also allow the action.
action_grants := [grant |
	wanted := action
	some grant in purpose_grants
	wanted in grant.actions
]

role_problems contains "purpose-not-for-role" if {
	action != "refer"
	count(purpose_grants) == 0
}

role_problems contains "action-not-granted" if {
	action != "refer"
	count(purpose_grants) > 0
	count(action_grants) == 0
}

# Only the referrers (ZVHD ketenregisseur and zorgcoördinatoren) refer; a
# municipality refers only to the ZVHD, by submitting.
role_problems contains "not-a-referrer" if {
	action == "refer"
	not data.ketenpoort.common.is_referrer(principal)
}

role_problems contains "purpose-not-for-role" if {
	action == "refer"
	data.ketenpoort.common.is_referrer(principal)
	not data.ketenpoort.common.may_refer_for(principal, purpose)
}

# ---------------------------------------------------------------------------
# Step 6: the recipient (submit and refer only; for read, list and deliver
# the caller is the recipient)
# ---------------------------------------------------------------------------

recipient_problems := recipient_partner_problems if {
	action in {"submit", "refer"}
	count(recipient_partner_problems) > 0
} else := intake_problems if {
	action == "submit"
} else := referral_target_problems if {
	action == "refer"
} else := set()

recipient_partner_problems := data.ketenpoort.common.recipient_problems(recipient)

# A signal is submitted to the ZVHD (the intake), which is a member.
intake_problems contains "recipient-not-intake" if {
	not recipient.kind in data.covenant.intake.kinds
}

intake_problems contains "non-member-aggregate-only" if {
	recipient.kind in data.covenant.intake.kinds
	not data.ketenpoort.common.is_member(recipient)
}

# A referral to a non-member only records a contribution to the phenomenon
# tables (purpose fenomeenanalyse); any other purpose would hand it a record.
referral_target_problems contains "non-member-aggregate-only" if {
	not data.ketenpoort.common.is_member(recipient)
	not purpose in data.covenant.aggregate.purposes
}

# A member recipient needs a grant for referrals with this purpose: e.g. care
# organisations never receive a signal for opsporing.
referral_target_problems contains "recipient-not-for-purpose" if {
	data.ketenpoort.common.is_member(recipient)
	count(referral_grants) == 0
}

# The grants a referral to this recipient for this purpose would fall under:
# those that deliver the referred record (not, say, the row that lets the
# recipient report back on it).
referral_grants := [grant |
	kind := recipient.kind
	wanted := purpose
	some grant in data.covenant.grants
	grant.kind == kind
	grant.access == "referred"
	"deliver" in grant.actions
	wanted in grant.purposes
]

# A referral to a non-member (for fenomeenanalyse): no record is delivered.
refer_to_non_member if {
	action == "refer"
	not data.ketenpoort.common.is_member(recipient)
}

# ---------------------------------------------------------------------------
# Step 8: the signal against each grant that could apply
# ---------------------------------------------------------------------------

# The grants that could apply to this request, before looking at the signal.
candidate_grants := referral_grants if {
	action == "refer"
} else := action_grants

# Why a grant does not apply to this signal (empty: it applies).
grant_refusals(grant) := ((access_problems(grant) | form_problems(grant)) | condition_problems(grant)) | status_problems(grant)

# Access: which signals the grant covers. For refer the recipient's access
# is what the referral creates, so it is not checked.
access_problems(grant) := set() if {
	action == "refer"
} else := set() if {
	grant.access == "all"
} else := set() if {
	grant.access == "own-reports"
	data.ketenpoort.common.own_report(signal, principal)
} else := {"not-own-report"} if {
	grant.access == "own-reports"
} else := set() if {
	grant.access == "referred"
	data.ketenpoort.common.referred(signal, principal.partner, purpose)
} else := {"not-referred"} if {
	grant.access == "referred"
} else := {"grant-invalid"}

# Forms: a grant with a list of forms covers only signals with one of them.
form_problems(grant) := set() if {
	not grant.forms
} else := data.ketenpoort.common.form_problems(signal, grant.forms) if {
	is_array(grant.forms)
} else := {"grant-invalid"}

# Condition: a grant with a condition covers only signals that meet it.
condition_problems(grant) := set() if {
	not grant.condition
} else := set() if {
	data.ketenpoort.common.condition_met(grant.condition, signal)
} else := {"condition-not-met"}

# Status: a grant with a list of statuses covers only signals in one of them
# (a correction by the reporter only while the signal is new).
status_problems(grant) := set() if {
	not grant.statuses
} else := set() if {
	signal.status in grant.statuses
} else := {"status-not-allowed"}

# The grants that apply to this signal.
applying_grants := [grant |
	some grant in candidate_grants
	count(grant_refusals(grant)) == 0
]

grant_problems := set() if {
	refer_to_non_member
} else := set() if {
	count(applying_grants) > 0
} else := {reason |
	some grant in candidate_grants
	some reason in grant_refusals(grant)
} if {
	count(candidate_grants) > 0
} else := {"no-grant"}

# ---------------------------------------------------------------------------
# Step 9: the change. A status, closing reason or feedback code the covenant
# does not know is bad input (422); a move the state machine does not allow
# from the signal's status is a conflict (409).
# ---------------------------------------------------------------------------

change_problems := transition_problems if {
	action == "transition"
} else := feedback_problems if {
	action == "feedback"
} else := set()

transition_problems := {"status-unknown"} if {
	not data.ketenpoort.common.get(transition, "to") in lifecycle.statuses
} else := {"reason-missing"} if {
	transition.to == lifecycle.closed
	data.ketenpoort.common.get(transition, "reason") == null
} else := {"reason-unknown"} if {
	transition.to == lifecycle.closed
	not transition.reason in lifecycle.closingReasons
} else := {"reason-not-expected"} if {
	transition.to != lifecycle.closed
	data.ketenpoort.common.get(transition, "reason") != null
} else := {"transition-not-allowed"} if {
	not transition.to in lifecycle.transitions[signal.status]
} else := set()

feedback_problems := set() if {
	feedback in lifecycle.feedback
} else := {"feedback-unknown"}

# ---------------------------------------------------------------------------
# The grant: what the caller (or the referred recipient) receives
# ---------------------------------------------------------------------------

# A referral to a non-member records a contribution to the phenomenon tables.
granted := {
	"allow": true,
	"mode": "aggregate",
	"fields": [],
	"reasons": [concat("", ["grant:", data.covenant.aggregate.id])],
	"legalBasis": data.ketenpoort.common.legal_basis(purpose),
	"scope": null,
} if {
	refer_to_non_member
}

# Otherwise: the fields of every applying grant's classes.
granted := {
	"allow": true,
	"mode": data.ketenpoort.common.mode_for(fields),
	"fields": fields,
	"reasons": sort({concat("", ["grant:", grant.id]) | some grant in applying_grants}),
	"legalBasis": data.ketenpoort.common.legal_basis(purpose),
	"scope": granted_scope,
} if {
	not refer_to_non_member
	count(applying_grants) > 0
	fields := sort({field |
		some grant in applying_grants
		some field in data.ketenpoort.common.grant_field_set(grant)
	})
}

# What a track (the status feedback) shows: "all" (the ZVHD: with the
# recipients' feedback on its referrals) or "own" (the reporter: status,
# closing reason and dates only). Other actions have no scope.
granted_scope := "all" if {
	action == "track"
	grants_scope("all")
} else := "own" if {
	action == "track"
	grants_scope("own")
} else := null

# grants_scope(scope): an applying grant has this track scope.
grants_scope(scope) if {
	some grant in applying_grants
	grant.scope == scope
}
