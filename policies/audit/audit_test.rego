# Tests of the audit policy: who may query the disclosure log, and with which
# scope.
package ketenpoort.audit_test

# Rules of other packages are named by their full path, never through an
# import of the package (policies/README.md, step 2, says why).

partner(id, kind, member, role) := {"partner": id, "kind": kind, "member": member, "role": role, "status": "active"}

fg(kind) := partner(kind, kind, true, "fg")

queries := ["entries", "search", "subject", "export"]

query(principal, q) := {
	"action": "audit-query",
	"purpose": "verantwoording",
	"principal": principal,
	"audit": {"query": q},
}

decide(req) := d if {
	d := data.ketenpoort.audit.decision with input as req
}

allowed(d, mode, scope, grant) if {
	d == {
		"allow": true,
		"mode": mode,
		"fields": [],
		"reasons": [concat("", ["grant:", grant])],
		"legalBasis": data.covenant.purposes.verantwoording.legalBasis,
		"scope": scope,
	}
}

denied(d, reasons) if {
	d == {
		"allow": false,
		"mode": "deny",
		"fields": [],
		"reasons": reasons,
		"legalBasis": null,
		"scope": null,
	}
}

# The member kinds other than the ZVHD, and each one's non-fg roles.
other_member_kinds := ["gemeente", "politie", "nla", "om", "veilig-thuis", "zorgpartner"]

non_fg_member_roles := [[kind, role] |
	some kind, spec in data.covenant.kinds
	spec.member == true
	some role in spec.roles
	role != "fg"
]

# --- privacy officers --------------------------------------------------------------

test_zvhd_fg_sees_the_whole_log_for_every_query if {
	every q in queries {
		allowed(decide(query(fg("zvhd"), q)), "full", "all", "fg-zvhd-alle")
	}
}

test_member_fg_sees_its_own_organisation_for_every_query if {
	every kind in other_member_kinds {
		every q in queries {
			allowed(decide(query(fg(kind), q)), "full", "own", "fg-eigen-organisatie")
		}
	}
}

test_gemeente_fg_of_another_municipality_is_also_own_scope if {
	allowed(decide(query(partner("emmen", "gemeente", true, "fg"), "subject")), "full", "own", "fg-eigen-organisatie")
}

# --- other member roles: only their own entries --------------------------------------

test_non_fg_member_roles_list_their_own_entries if {
	count(non_fg_member_roles) == 9
	every pair in non_fg_member_roles {
		allowed(decide(query(partner(pair[0], pair[0], true, pair[1]), "entries")), "full", "own", "lid-eigen-entries")
	}
}

test_non_fg_member_roles_do_not_search_or_export if {
	every pair in non_fg_member_roles {
		every q in ["search", "subject", "export"] {
			denied(decide(query(partner(pair[0], pair[0], true, pair[1]), q)), ["audit-query-not-for-role"])
		}
	}
}

# --- non-members: only their own aggregate releases -----------------------------------

test_riec_lists_only_its_own_aggregate_entries if {
	allowed(decide(query(partner("riec", "riec", false, "analist"), "entries")), "aggregate", "own-aggregate", "niet-lid-eigen-aggregaat")
	allowed(decide(query(partner("riec", "riec", false, "fg"), "entries")), "aggregate", "own-aggregate", "niet-lid-eigen-aggregaat")
}

test_riec_fg_is_not_an_fg_of_a_member if {
	every q in ["search", "subject", "export"] {
		denied(decide(query(partner("riec", "riec", false, "fg"), q)), ["non-member-aggregate-only"])
		denied(decide(query(partner("riec", "riec", false, "analist"), q)), ["non-member-aggregate-only"])
	}
}

test_riec_registry_flag_true_does_not_make_it_a_member if {
	allowed(decide(query(partner("riec", "riec", true, "fg"), "entries")), "aggregate", "own-aggregate", "niet-lid-eigen-aggregaat")
	denied(decide(query(partner("riec", "riec", true, "fg"), "export")), ["non-member-aggregate-only"])
}

test_registry_non_member_gets_member_treatment_never if {
	allowed(decide(query(partner("zvhd", "zvhd", false, "fg"), "entries")), "aggregate", "own-aggregate", "niet-lid-eigen-aggregaat")
	denied(decide(query(partner("zvhd", "zvhd", false, "fg"), "export")), ["non-member-aggregate-only"])
	allowed(decide(query(partner("assen", "gemeente", false, "aandachtfunctionaris-sociaal"), "entries")), "aggregate", "own-aggregate", "niet-lid-eigen-aggregaat")
}

# --- refusals ---------------------------------------------------------------------------

test_audit_is_for_verantwoording_only if {
	every purpose in ["signalering", "drieluik", "zorgcoordinatie", "opsporing", "fenomeenanalyse"] {
		denied(decide(object.union(query(fg("zvhd"), "entries"), {"purpose": purpose})), ["purpose-not-for-action"])
	}
}

test_unknown_or_missing_purpose if {
	denied(decide(object.union(query(fg("zvhd"), "entries"), {"purpose": "nieuwsgierigheid"})), ["purpose-unknown"])
	denied(decide(object.remove(query(fg("zvhd"), "entries"), ["purpose"])), ["purpose-unknown"])
}

test_unknown_or_missing_query if {
	denied(decide(query(fg("zvhd"), "delete")), ["audit-query-unknown"])
	denied(decide(query(fg("zvhd"), ["entries"])), ["audit-query-unknown"])
	denied(decide(object.remove(query(fg("zvhd"), "entries"), ["audit"])), ["audit-query-unknown"])
	denied(decide(object.union(query(fg("zvhd"), "entries"), {"audit": "entries"})), ["audit-query-unknown"])
}

test_wrong_action if {
	denied(decide(object.union(query(fg("zvhd"), "entries"), {"action": "read"})), ["action-unknown"])
	denied(decide(object.remove(query(fg("zvhd"), "entries"), ["action"])), ["action-unknown"])
	denied(decide("audit-query"), ["action-unknown"])
}

test_suspended_unknown_or_malformed_principal if {
	denied(decide(query(object.union(fg("zvhd"), {"status": "suspended"}), "entries")), ["principal-inactive"])
	denied(decide(query(object.union(fg("zvhd"), {"kind": "ap"}), "entries")), ["principal-unknown"])
	denied(decide(query(object.union(fg("zvhd"), {"role": "auditor"}), "entries")), ["role-unknown"])
	denied(decide(query(object.union(fg("zvhd"), {"member": 1}), "entries")), ["principal-unknown"])
	denied(decide(object.remove(query(fg("zvhd"), "entries"), ["principal"])), ["principal-unknown"])
	denied(decide(query(object.union(partner("riec", "riec", false, "fg"), {"status": "suspended"}), "entries")), ["principal-inactive"])
}
