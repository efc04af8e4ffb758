# Review of the disclosure log (purpose verantwoording).
#
# Entry point: data.ketenpoort.audit.decision, for the action audit-query.
# The kinds of query (input.audit.query):
#   entries  GET /v1/log/entries: list log entries
#   search   search the log (FG API)
#   subject  everything disclosed about one data subject (access request)
#   export   export the log (FG API)
#
# The audit grants in data.json (data.covenant.audit.grants) are tried in
# order; the first one that fits the caller and the query decides the scope:
#   all            every entry (the ZVHD privacy officer)
#   own            entries where the caller's organisation is actor or recipient
#   own-aggregate  only the caller's own release-aggregate entries (non-members)
# Log entries never hold record content, so an allowed query has no fields.
# A member gets mode "full" (the entries themselves); a non-member never gets
# more than mode "aggregate".
package ketenpoort.audit

# The helpers of data.ketenpoort.common are named by their full path, not
# through an import: an imported package name makes regorus evaluate every
# rule of that package on each decision (measured: 3x the cost of a refusal).

action := data.ketenpoort.common.get(data.ketenpoort.common.req, "action")

purpose := data.ketenpoort.common.get(data.ketenpoort.common.req, "purpose")

principal := data.ketenpoort.common.get(data.ketenpoort.common.req, "principal")

query := data.ketenpoort.common.get(data.ketenpoort.common.get(data.ketenpoort.common.req, "audit"), "query")

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

# The first step that finds a problem decides the refusal (empty: none).
refusal := request_problems if {
	count(request_problems) > 0
} else := principal_problems if {
	count(principal_problems) > 0
} else := purpose_problems if {
	count(purpose_problems) > 0
} else := purpose_fit_problems if {
	count(purpose_fit_problems) > 0
} else := query_problems if {
	count(query_problems) > 0
} else := grant_problems if {
	count(grant_problems) > 0
} else := set()

request_problems contains "action-unknown" if {
	action != "audit-query"
}

# Reviewing the log is purpose verantwoording; no other purpose reads it.
purpose_fit_problems contains "purpose-not-for-action" if {
	not purpose in data.covenant.audit.purposes
}

query_problems contains "audit-query-unknown" if {
	not query in data.covenant.audit.queries
}

# ---------------------------------------------------------------------------
# Which audit grant applies
# ---------------------------------------------------------------------------

member := true if {
	data.ketenpoort.common.is_member(principal)
} else := false

# An audit grant fits the caller when its member flag matches and, where it
# names kinds or roles, the caller's kind and role are among them.
fits_caller(grant) if {
	grant.member == member
	kind_fits(grant)
	role_fits(grant)
}

kind_fits(grant) if not grant.kinds

kind_fits(grant) if principal.kind in grant.kinds

role_fits(grant) if not grant.roles

role_fits(grant) if principal.role in grant.roles

# The first grant (in data.json order) that fits the caller and the query.
selected := data.covenant.audit.grants[min({i |
	some i, grant in data.covenant.audit.grants
	fits_caller(grant)
	query in grant.queries
})]

grant_problems := set() if {
	selected
} else := {"non-member-aggregate-only"} if {
	member == false
} else := {"audit-query-not-for-role"}

scopes := {"all", "own", "own-aggregate"}

granted := {
	"allow": true,
	"mode": audit_mode,
	"fields": [],
	"reasons": [concat("", ["grant:", selected.id])],
	"legalBasis": data.ketenpoort.common.legal_basis(purpose),
	"scope": selected.scope,
} if {
	selected.scope in scopes
}

# A member sees the log entries themselves; a non-member at most aggregates.
audit_mode := "full" if {
	member
} else := "aggregate"
