# Release of phenomenon tables (purpose fenomeenanalyse).
#
# Entry point: data.ketenpoort.phenomena.decision, for the action
# release-aggregate. Phenomenon tables hold counts by category, never a
# record or a person, so every valid and active principal may receive them,
# member or not (the RIEC receives nothing else). The decision is always mode
# "aggregate" with no fields.
package ketenpoort.phenomena

import data.ketenpoort.common

action := common.get(common.req, "action")

purpose := common.get(common.req, "purpose")

principal := common.get(common.req, "principal")

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

decision := common.deny(refusal) if {
	count(refusal) > 0
}

decision := granted if {
	count(refusal) == 0
}

# The first step that finds a problem decides the refusal (empty: none).
refusal := request_problems if {
	count(request_problems) > 0
} else := common.principal_problems(principal) if {
	count(common.principal_problems(principal)) > 0
} else := common.purpose_problems(purpose) if {
	count(common.purpose_problems(purpose)) > 0
} else := purpose_fit_problems if {
	count(purpose_fit_problems) > 0
} else := set()

request_problems contains "action-unknown" if {
	action != "release-aggregate"
}

# Only the purposes of data.covenant.aggregate release tables.
purpose_fit_problems contains "purpose-not-for-action" if {
	not purpose in data.covenant.aggregate.purposes
}

granted := {
	"allow": true,
	"mode": "aggregate",
	"fields": [],
	"reasons": [concat("", ["grant:", data.covenant.aggregate.id])],
	"legalBasis": common.legal_basis(purpose),
	"scope": null,
}
