# Tests of the phenomena policy: every valid, active principal receives
# phenomenon tables (aggregates only), member or not.
package ketenpoort.phenomena_test

# Rules of other packages are named by their full path, never through an
# import of the package (policies/README.md, step 2, says why).

release(principal) := {
	"action": "release-aggregate",
	"purpose": "fenomeenanalyse",
	"principal": principal,
}

decide(req) := d if {
	d := data.ketenpoort.phenomena.decision with input as req
}

aggregate := {
	"allow": true,
	"mode": "aggregate",
	"fields": [],
	"reasons": ["grant:fenomeen-aggregaat"],
	"legalBasis": data.covenant.purposes.fenomeenanalyse.legalBasis,
	"scope": null,
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

every_role := [p |
	some kind, spec in data.covenant.kinds
	some role in spec.roles
	p := {"partner": kind, "kind": kind, "member": spec.member, "role": role, "status": "active"}
]

test_every_role_of_every_kind_receives_aggregates if {
	count(every_role) == 18
	every p in every_role {
		decide(release(p)) == aggregate
	}
}

test_riec_analist_receives_aggregates if {
	decide(release({"partner": "riec", "kind": "riec", "member": false, "role": "analist", "status": "active"})) == aggregate
}

test_registry_non_member_receives_aggregates if {
	decide(release({"partner": "assen", "kind": "gemeente", "member": false, "role": "fg", "status": "active"})) == aggregate
}

test_never_more_than_aggregate if {
	every p in every_role {
		d := decide(release(p))
		d.mode == "aggregate"
		d.fields == []
	}
}

test_suspended_principal_is_denied if {
	denied(decide(release({"partner": "riec", "kind": "riec", "member": false, "role": "analist", "status": "suspended"})), ["principal-inactive"])
	denied(decide(release({"partner": "zvhd", "kind": "zvhd", "member": true, "role": "fg", "status": "suspended"})), ["principal-inactive"])
}

test_unknown_kind_or_role_is_denied if {
	denied(decide(release({"partner": "cbs", "kind": "cbs", "member": false, "role": "analist", "status": "active"})), ["principal-unknown"])
	denied(decide(release({"partner": "riec", "kind": "riec", "member": false, "role": "rechercheur", "status": "active"})), ["role-unknown"])
	denied(decide({"action": "release-aggregate", "purpose": "fenomeenanalyse"}), ["principal-unknown"])
}

test_other_purposes_are_denied if {
	p := {"partner": "riec", "kind": "riec", "member": false, "role": "analist", "status": "active"}
	every purpose in ["signalering", "drieluik", "zorgcoordinatie", "opsporing", "verantwoording"] {
		denied(decide(object.union(release(p), {"purpose": purpose})), ["purpose-not-for-action"])
	}
	denied(decide(object.union(release(p), {"purpose": "handel"})), ["purpose-unknown"])
	denied(decide(object.remove(release(p), ["purpose"])), ["purpose-unknown"])
}

test_other_actions_are_denied if {
	p := {"partner": "riec", "kind": "riec", "member": false, "role": "analist", "status": "active"}
	denied(decide(object.union(release(p), {"action": "read"})), ["action-unknown"])
	denied(decide(object.remove(release(p), ["action"])), ["action-unknown"])
	denied(decide(42), ["action-unknown"])
}
