# Tests of the covenant data and the shared helpers. The data tests guard
# data.json: a cell changed by hand must still name known kinds, roles,
# purposes, actions, classes and conditions.
package ketenpoort.common_test

# Rules of other packages are imported one by one or named by their full
# path, never by importing the package: regorus evaluates every rule of an
# imported package each time one is referenced (in lifecycle_test that was
# every exchange test, and made the bundle's tests 14x slower).

import data.ketenpoort.common.all_fields
import data.ketenpoort.common.condition_met
import data.ketenpoort.common.deny
import data.ketenpoort.common.fields_of_classes
import data.ketenpoort.common.form_problems
import data.ketenpoort.common.get
import data.ketenpoort.common.is_member
import data.ketenpoort.common.known_kind
import data.ketenpoort.common.known_purpose
import data.ketenpoort.common.mode_for
import data.ketenpoort.common.principal_problems
import data.ketenpoort.common.purpose_problems
import data.ketenpoort.common.recipient_problems
import data.ketenpoort.common.req
import data.ketenpoort.common.sorted_unique

member_kinds := {"gemeente", "zvhd", "politie", "nla", "om", "veilig-thuis", "zorgpartner"}

actions := {
	"submit", "read", "list", "refer", "deliver",
	"assess", "correct", "history", "transition", "track", "feedback",
	"request-correction", "review-corrections",
}

accesses := {"own-reports", "all", "referred"}

conditions := {"victim-minor-or-domestic"}

# --- data.json ------------------------------------------------------------------

test_kinds_are_the_covenant_kinds if {
	{kind | some kind, _ in data.covenant.kinds} == member_kinds | {"riec"}
}

test_only_riec_is_not_a_member if {
	{kind | some kind, spec in data.covenant.kinds; spec.member == false} == {"riec"}
	{kind | some kind, spec in data.covenant.kinds; spec.member == true} == member_kinds
}

test_roles_per_kind if {
	data.covenant.kinds.gemeente.roles == ["aandachtfunctionaris-veiligheid", "aandachtfunctionaris-sociaal", "fg"]
	data.covenant.kinds.zvhd.roles == ["ketenregisseur", "zorgcoordinator", "fg"]
	data.covenant.kinds.politie.roles == ["rechercheur", "fg"]
	data.covenant.kinds.nla.roles == ["inspecteur", "fg"]
	data.covenant.kinds.om.roles == ["officier", "fg"]
	data.covenant.kinds["veilig-thuis"].roles == ["aandachtfunctionaris", "fg"]
	data.covenant.kinds.zorgpartner.roles == ["hulpverlener", "fg"]
	data.covenant.kinds.riec.roles == ["analist", "fg"]
}

test_purposes_have_name_and_legal_basis if {
	{p | some p, _ in data.covenant.purposes} == {"signalering", "drieluik", "zorgcoordinatie", "opsporing", "fenomeenanalyse", "verantwoording"}
	every _, purpose in data.covenant.purposes {
		is_string(purpose.name)
		is_string(purpose.legalBasis)
		purpose.legalBasis != ""
	}
}

test_classes_are_the_seven_classes if {
	{c | some c, _ in data.covenant.classes} == {"D-slachtoffer", "D-verdachte", "Q", "H", "C", "P", "T"}
}

test_every_field_is_in_exactly_one_class if {
	every field in all_fields {
		count([c | some c, fields in data.covenant.classes; field in fields]) == 1
	}
}

test_there_are_35_classified_fields if {
	count(all_fields) == 35
}

test_grant_ids_are_unique if {
	count({g.id | some g in data.covenant.grants}) == count(data.covenant.grants)
}

test_grants_name_known_things if {
	every grant in data.covenant.grants {
		is_string(grant.id)
		known_kind(grant.kind)
		every role in grant.roles {
			role in data.covenant.kinds[grant.kind].roles
		}
		every purpose in grant.purposes {
			known_purpose(purpose)
		}
		every action in grant.actions {
			action in actions
		}
		grant.access in accesses
		every class in grant.classes {
			is_array(data.covenant.classes[class])
		}
	}
}

# The state machine names only its own statuses, and only the closed status
# is final; closing reasons and feedback codes are lists of codes.
test_lifecycle_is_well_formed if {
	lc := data.covenant.lifecycle
	lc.closed in lc.statuses
	{s | some s, _ in lc.transitions} == {s | some s in lc.statuses}
	every from, tos in lc.transitions {
		every to in tos {
			to in lc.statuses
			to != from
		}
	}
	lc.transitions[lc.closed] == []
	every s in lc.statuses {
		leads_somewhere(lc, s)
	}
	"nieuw" in lc.statuses
	"doorverwezen" in lc.statuses
	count(lc.closingReasons) > 0
	count(lc.feedback) > 0
}

# Every status but the closed one has a way on.
leads_somewhere(lc, s) if s == lc.closed

leads_somewhere(lc, s) if count(lc.transitions[s]) > 0

# Statuses a grant is limited to, and fields it names, are known.
test_grant_statuses_and_fields_are_known if {
	every grant in data.covenant.grants {
		every s in object.get(grant, "statuses", []) {
			s in data.covenant.lifecycle.statuses
		}
		every f in object.get(grant, "fields", []) {
			f in all_fields
		}
	}
}

test_grant_forms_and_conditions_are_known if {
	every grant in data.covenant.grants {
		every form in object.get(grant, "forms", []) {
			form in data.covenant.forms
		}
		object.get(grant, "condition", "victim-minor-or-domestic") in conditions
		every field in object.get(grant, "excludeFields", []) {
			field in all_fields
		}
	}
}

test_no_grant_goes_to_a_non_member_kind if {
	every grant in data.covenant.grants {
		data.covenant.kinds[grant.kind].member == true
	}
}

test_no_grant_to_an_fg if {
	every grant in data.covenant.grants {
		not "fg" in grant.roles
	}
}

test_referrers_are_ketenregisseur_and_zorgcoordinator if {
	data.covenant.referrers == [{
		"kind": "zvhd",
		"roles": ["ketenregisseur", "zorgcoordinator"],
		"purposes": ["drieluik", "opsporing", "zorgcoordinatie", "fenomeenanalyse"],
	}]
}

test_aggregate_is_fenomeenanalyse_only if {
	data.covenant.aggregate.purposes == ["fenomeenanalyse"]
}

test_audit_grants_name_known_things if {
	every grant in data.covenant.audit.grants {
		is_boolean(grant.member)
		grant.scope in {"all", "own", "own-aggregate"}
		every query in grant.queries {
			query in data.covenant.audit.queries
		}
		every kind in object.get(grant, "kinds", []) {
			known_kind(kind)
		}
	}
}

# --- helpers --------------------------------------------------------------------

partner := {"partner": "assen", "kind": "gemeente", "member": true, "role": "fg", "status": "active"}

test_get_is_null_for_missing_or_non_objects if {
	get({"a": 1}, "a") == 1
	get({"a": false}, "a") == false
	get({"a": 1}, "b") == null
	get("text", "a") == null
	get(null, "a") == null
	get([1], 0) == null
}

test_req_is_empty_for_non_object_input if {
	req == {} with input as "text"
	req == {} with input as [1, 2]
	req == {"a": 1} with input as {"a": 1}
}

test_deny_has_six_keys_and_sorted_unique_reasons if {
	deny({"b", "a"}) == {"allow": false, "mode": "deny", "fields": [], "reasons": ["a", "b"], "legalBasis": null, "scope": null}
	deny(["b", "a", "b"]).reasons == ["a", "b"]
}

test_principal_problems if {
	principal_problems(partner) == set()
	principal_problems(null) == {"principal-unknown"}
	principal_problems("assen") == {"principal-unknown"}
	principal_problems(object.union(partner, {"kind": "provincie"})) == {"principal-unknown"}
	principal_problems(object.union(partner, {"partner": ""})) == {"principal-unknown"}
	principal_problems(object.union(partner, {"member": "true"})) == {"principal-unknown"}
	principal_problems(object.remove(partner, ["status"])) == {"principal-unknown"}
	principal_problems(object.union(partner, {"role": "ketenregisseur"})) == {"role-unknown"}
	principal_problems(object.remove(partner, ["role"])) == {"role-unknown"}
	principal_problems(object.union(partner, {"status": "suspended"})) == {"principal-inactive"}
}

test_recipient_problems if {
	recipient_problems(object.remove(partner, ["role"])) == set()
	recipient_problems(null) == {"recipient-unknown"}
	recipient_problems(object.union(partner, {"kind": 3})) == {"recipient-unknown"}
	recipient_problems(object.union(partner, {"status": "suspended"})) == {"recipient-inactive"}
}

test_membership_needs_registry_flag_and_member_kind if {
	is_member(partner)
	not is_member(object.union(partner, {"member": false}))
	not is_member(object.union(partner, {"kind": "riec"}))
	not is_member(object.union(partner, {"member": "true"}))
}

test_purpose_problems if {
	purpose_problems("drieluik") == set()
	purpose_problems("marketing") == {"purpose-unknown"}
	purpose_problems(null) == {"purpose-unknown"}
	purpose_problems(["drieluik"]) == {"purpose-unknown"}
}

test_form_problems if {
	form_problems({"forms": ["arbeid"]}, ["arbeid"]) == set()
	form_problems({"forms": ["onbekend", "arbeid"]}, ["arbeid"]) == set()
	form_problems({"forms": ["seksueel"]}, ["arbeid"]) == {"form-not-in-mandate"}
	form_problems({"forms": ["onbekend"]}, ["arbeid"]) == {"form-unknown"}
	form_problems({"forms": []}, ["arbeid"]) == {"form-unknown"}
}

test_conditions if {
	condition_met("victim-minor-or-domestic", {"victimMinor": true, "domesticSetting": false})
	condition_met("victim-minor-or-domestic", {"victimMinor": false, "domesticSetting": true})
	not condition_met("victim-minor-or-domestic", {"victimMinor": false, "domesticSetting": false})
	not condition_met("some-other-condition", {"victimMinor": true, "domesticSetting": true})
}

test_fields_of_classes if {
	fields_of_classes(["H", "T"]) == ["assessmentNotes", "narrative", "victims.careNeeds", "victims.mildIntellectualDisability"]
	fields_of_classes(["T", "T", "no-such-class"]) == ["assessmentNotes", "narrative"]
	fields_of_classes([]) == []
}

test_mode_for if {
	mode_for(all_fields) == "full"
	mode_for(["narrative"]) == "masked"
}

test_sorted_unique if {
	sorted_unique(["b", "a", "b"]) == ["a", "b"]
	sorted_unique({"b", "a"}) == ["a", "b"]
	sorted_unique([]) == []
}
