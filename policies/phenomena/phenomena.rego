# Release of phenomenon tables (purpose fenomeenanalyse).
#
# Entry point: data.ketenpoort.phenomena.decision, for the action
# release-aggregate. Phenomenon tables hold counts by category, never a
# record or a person, so every valid and active principal may receive them,
# member or not (the RIEC receives nothing else). The decision is always mode
# "aggregate" with no fields.
package ketenpoort.phenomena

# The helpers of data.ketenpoort.common are named by their full path, not
# through an import: an imported package name makes regorus evaluate every
# rule of that package on each decision (measured: 3x the cost of a refusal).

action := data.ketenpoort.common.get(data.ketenpoort.common.req, "action")

purpose := data.ketenpoort.common.get(data.ketenpoort.common.req, "purpose")

principal := data.ketenpoort.common.get(data.ketenpoort.common.req, "principal")

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

# The first step that finds a problem decides the refusal (empty: none).
refusal := request_problems if {
	count(request_problems) > 0
} else := principal_problems if {
	count(principal_problems) > 0
} else := purpose_problems if {
	count(purpose_problems) > 0
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
	"legalBasis": data.ketenpoort.common.legal_basis(purpose),
	"scope": null,
}
