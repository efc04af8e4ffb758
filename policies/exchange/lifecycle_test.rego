# Tests of the signal's life after intake: assessment, correction, versions,
# the state machine of data.covenant.lifecycle, and feedback both ways.
package ketenpoort.lifecycle_test

# Rules of other packages are named by their full path, not through an
# import: regorus evaluates every rule of an imported package (here: every
# test of it) each time one is referenced, which made these tests 14x slower.

decide(req) := d if {
	d := data.ketenpoort.exchange.decision with input as req
}

move(principal, sig, to) := object.union(data.ketenpoort.exchange_test.request("transition", "drieluik", principal, sig), {"transition": {"to": to}})

close(principal, sig, reason) := object.union(data.ketenpoort.exchange_test.request("transition", "drieluik", principal, sig), {"transition": {"to": "afgesloten", "reason": reason}})

at(status) := data.ketenpoort.exchange_test.signal({"status": status})

status_only(d, purpose, grant) if data.ketenpoort.exchange_test.masked(d, purpose, ["status"], grant)

report_back(principal, purpose, sig, code) := object.union(data.ketenpoort.exchange_test.request("feedback", purpose, principal, sig), {"feedback": code})

# --- assessment and earlier versions: the ZVHD roles, for the Drieluik -----------

test_the_zvhd_assesses_every_signal_and_reads_its_versions if {
	every role in [data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.zorgcoordinator] {
		data.ketenpoort.exchange_test.full(decide(data.ketenpoort.exchange_test.request("assess", "drieluik", role, data.ketenpoort.exchange_test.with_forms(["onbekend"]))), "drieluik", "zvhd-beoordeling")
		data.ketenpoort.exchange_test.full(decide(data.ketenpoort.exchange_test.request("history", "drieluik", role, at("doorverwezen"))), "drieluik", "zvhd-beoordeling")
	}
}

test_nobody_else_assesses_or_reads_versions if {
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("assess", "signalering", data.ketenpoort.exchange_test.af_sociaal, data.ketenpoort.exchange_test.base_signal)), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("history", "signalering", data.ketenpoort.exchange_test.af_sociaal, data.ketenpoort.exchange_test.base_signal)), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("assess", "drieluik", data.ketenpoort.exchange_test.rechercheur, data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.politie, "drieluik", ["seksueel"]))), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("history", "opsporing", data.ketenpoort.exchange_test.inspecteur, data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.nla, "opsporing", ["arbeid"]))), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("assess", "zorgcoordinatie", data.ketenpoort.exchange_test.zorgcoordinator, data.ketenpoort.exchange_test.base_signal)), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("assess", "fenomeenanalyse", data.ketenpoort.exchange_test.analist, data.ketenpoort.exchange_test.base_signal)), ["non-member-aggregate-only"])
}

# --- correction: the reporter, its own signal, while it is new ---------------------

test_the_reporter_corrects_its_own_new_signal if {
	data.ketenpoort.exchange_test.full(decide(data.ketenpoort.exchange_test.request("correct", "signalering", data.ketenpoort.exchange_test.af_veiligheid, data.ketenpoort.exchange_test.base_signal)), "signalering", "gemeente-correctie")
}

test_a_correction_after_nieuw_is_refused if {
	every status in ["in-behandeling", "drieluik", "doorverwezen", "zorgtraject", "afgesloten"] {
		data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("correct", "signalering", data.ketenpoort.exchange_test.af_sociaal, at(status))), ["status-not-allowed"])
	}
}

test_a_correction_by_another_partner_is_refused if {
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("correct", "signalering", data.ketenpoort.exchange_test.emmen_af, data.ketenpoort.exchange_test.base_signal)), ["not-own-report"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("correct", "signalering", data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal)), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("correct", "drieluik", data.ketenpoort.exchange_test.af_sociaal, data.ketenpoort.exchange_test.base_signal)), ["purpose-not-for-role"])
}

# --- correction requests: the reporter asks (any status), the ZVHD reads ------------

test_the_reporter_asks_for_a_correction_in_any_status if {
	every status in data.covenant.lifecycle.statuses {
		data.ketenpoort.exchange_test.full(decide(data.ketenpoort.exchange_test.request("request-correction", "signalering", data.ketenpoort.exchange_test.af_sociaal, at(status))), "signalering", "gemeente-correctieverzoek")
	}
}

test_only_the_reporter_asks_for_a_correction if {
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("request-correction", "signalering", data.ketenpoort.exchange_test.emmen_af, at("doorverwezen"))), ["not-own-report"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("request-correction", "drieluik", data.ketenpoort.exchange_test.ketenregisseur, at("doorverwezen"))), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("request-correction", "opsporing", data.ketenpoort.exchange_test.inspecteur, data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.nla, "opsporing", ["arbeid"]))), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("request-correction", "fenomeenanalyse", data.ketenpoort.exchange_test.analist, data.ketenpoort.exchange_test.base_signal)), ["non-member-aggregate-only"])
}

test_the_zvhd_reads_correction_requests if {
	every role in [data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.zorgcoordinator] {
		data.ketenpoort.exchange_test.full(decide(data.ketenpoort.exchange_test.request("review-corrections", "drieluik", role, at("doorverwezen"))), "drieluik", "zvhd-beoordeling")
	}
}

test_nobody_else_reads_correction_requests if {
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("review-corrections", "signalering", data.ketenpoort.exchange_test.af_sociaal, at("doorverwezen"))), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("review-corrections", "drieluik", data.ketenpoort.exchange_test.rechercheur, data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.politie, "drieluik", ["seksueel"]))), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("review-corrections", "fenomeenanalyse", data.ketenpoort.exchange_test.analist, data.ketenpoort.exchange_test.base_signal)), ["non-member-aggregate-only"])
}

# --- the state machine ----------------------------------------------------------------

test_the_zvhd_moves_a_signal_along_the_state_machine if {
	every role in [data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.zorgcoordinator] {
		every from, tos in data.covenant.lifecycle.transitions {
			every to in tos {
				moves(role, from, to)
			}
		}
	}
}

moves(role, from, to) if {
	to != "afgesloten"
	status_only(decide(move(role, at(from), to)), "drieluik", "zvhd-voortgang")
}

moves(role, from, "afgesloten") if {
	status_only(decide(close(role, at(from), "doorgezet")), "drieluik", "zvhd-voortgang")
}

test_every_closing_reason_closes if {
	every reason in ["geen-mensenhandel", "doorgezet", "zorg-geregeld", "onvoldoende-informatie", "elders-belegd"] {
		status_only(decide(close(data.ketenpoort.exchange_test.ketenregisseur, at("drieluik"), reason)), "drieluik", "zvhd-voortgang")
	}
}

test_an_illegal_move_is_refused_as_such if {
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.ketenregisseur, at("afgesloten"), "nieuw")), ["transition-not-allowed"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.ketenregisseur, at("afgesloten"), "in-behandeling")), ["transition-not-allowed"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.ketenregisseur, at("doorverwezen"), "nieuw")), ["transition-not-allowed"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.ketenregisseur, at("nieuw"), "nieuw")), ["transition-not-allowed"])
	data.ketenpoort.exchange_test.denied(decide(close(data.ketenpoort.exchange_test.ketenregisseur, at("afgesloten"), "doorgezet")), ["transition-not-allowed"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.ketenregisseur, at("onbekend-oud"), "afgesloten")), ["reason-missing"])
}

test_unknown_codes_are_refused_as_unknown if {
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal, "gesloten")), ["status-unknown"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("transition", "drieluik", data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal)), ["status-unknown"])
	data.ketenpoort.exchange_test.denied(decide(object.union(data.ketenpoort.exchange_test.request("transition", "drieluik", data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal), {"transition": "afgesloten"})), ["status-unknown"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal, "afgesloten")), ["reason-missing"])
	data.ketenpoort.exchange_test.denied(decide(close(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal, "opgelost")), ["reason-unknown"])
	data.ketenpoort.exchange_test.denied(decide(close(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal, 3)), ["reason-unknown"])
	data.ketenpoort.exchange_test.denied(decide(object.union(move(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.base_signal, "in-behandeling"), {"transition": {"to": "in-behandeling", "reason": "doorgezet"}})), ["reason-not-expected"])
}

test_only_the_zvhd_moves_a_signal if {
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.af_sociaal, data.ketenpoort.exchange_test.base_signal, "in-behandeling")), ["purpose-not-for-role"])
	data.ketenpoort.exchange_test.denied(decide(object.union(data.ketenpoort.exchange_test.request("transition", "signalering", data.ketenpoort.exchange_test.af_sociaal, data.ketenpoort.exchange_test.base_signal), {"transition": {"to": "in-behandeling"}})), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.rechercheur, data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.politie, "drieluik", ["seksueel"]), "afgesloten")), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(object.union(data.ketenpoort.exchange_test.request("transition", "zorgcoordinatie", data.ketenpoort.exchange_test.zorgcoordinator, data.ketenpoort.exchange_test.base_signal), {"transition": {"to": "zorgtraject"}})), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.analist, data.ketenpoort.exchange_test.base_signal, "afgesloten")), ["non-member-aggregate-only"])
}

# A caller without the grant learns nothing about the state machine: the
# role is refused before the move is looked at.
test_a_refused_caller_gets_no_transition_verdict if {
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.af_sociaal, at("afgesloten"), "nieuw")), ["purpose-not-for-role"])
	data.ketenpoort.exchange_test.denied(decide(move(data.ketenpoort.exchange_test.af_sociaal, data.ketenpoort.exchange_test.base_signal, "gesloten")), ["purpose-not-for-role"])
}

# --- feedback: the reporter follows, the recipients report back ------------------------

test_the_reporter_follows_its_own_signals_only if {
	d := decide(data.ketenpoort.exchange_test.request("track", "signalering", data.ketenpoort.exchange_test.af_sociaal, at("afgesloten")))
	d == {
		"allow": true, "mode": "masked", "fields": ["status"],
		"reasons": ["grant:gemeente-terugkoppeling"],
		"legalBasis": data.ketenpoort.exchange_test.basis("signalering"), "scope": "own",
	}
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("track", "signalering", data.ketenpoort.exchange_test.emmen_af, data.ketenpoort.exchange_test.base_signal)), ["not-own-report"])
}

test_the_zvhd_follows_every_signal_with_the_recipients_feedback if {
	d := decide(data.ketenpoort.exchange_test.request("track", "drieluik", data.ketenpoort.exchange_test.ketenregisseur, at("doorverwezen")))
	d.allow
	d.scope == "all"
	d.fields == ["status"]
	d.reasons == ["grant:zvhd-voortgang"]
}

test_recipients_report_back_on_their_own_referral if {
	status_only(decide(report_back(data.ketenpoort.exchange_test.inspecteur, "opsporing", data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.nla, "opsporing", ["arbeid"]), "in-onderzoek")), "opsporing", "nla-terugkoppeling")
	status_only(decide(report_back(data.ketenpoort.exchange_test.rechercheur, "opsporing", data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.politie, "opsporing", ["seksueel"]), "afgerond")), "opsporing", "politie-terugkoppeling")
	status_only(decide(report_back(data.ketenpoort.exchange_test.hulpverlener, "zorgcoordinatie", data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.fier, "zorgcoordinatie", ["arbeid"]), "ontvangen")), "zorgcoordinatie", "zorgpartner-terugkoppeling")
	# Feedback is on the referral, not the form: a reassessed signal keeps it.
	status_only(decide(report_back(data.ketenpoort.exchange_test.officier, "opsporing", data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.om, "opsporing", ["seksueel"]), "niet-opgepakt")), "opsporing", "om-terugkoppeling")
}

test_feedback_needs_the_referral_and_a_known_code if {
	data.ketenpoort.exchange_test.denied(decide(report_back(data.ketenpoort.exchange_test.inspecteur, "opsporing", data.ketenpoort.exchange_test.base_signal, "ontvangen")), ["not-referred"])
	data.ketenpoort.exchange_test.denied(decide(report_back(data.ketenpoort.exchange_test.inspecteur, "opsporing", data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.nla, "opsporing", ["arbeid"]), "bezig")), ["feedback-unknown"])
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.request("feedback", "opsporing", data.ketenpoort.exchange_test.inspecteur, data.ketenpoort.exchange_test.referred(data.ketenpoort.exchange_test.nla, "opsporing", ["arbeid"]))), ["feedback-unknown"])
	data.ketenpoort.exchange_test.denied(decide(report_back(data.ketenpoort.exchange_test.af_sociaal, "signalering", data.ketenpoort.exchange_test.base_signal, "ontvangen")), ["action-not-granted"])
	data.ketenpoort.exchange_test.denied(decide(report_back(data.ketenpoort.exchange_test.ketenregisseur, "drieluik", data.ketenpoort.exchange_test.base_signal, "ontvangen")), ["action-not-granted"])
}

# The feedback rows are no referral grants: a referral to the NLA still
# names only nla-opsporing and gives its fields.
test_feedback_rows_do_not_widen_a_referral if {
	d := decide(data.ketenpoort.exchange_test.refer(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.nla, "opsporing", data.ketenpoort.exchange_test.with_forms(["arbeid"])))
	d.reasons == ["grant:nla-opsporing"]
}

# The meldroute after the Drieluik: a signal with an unknown form reaches no
# investigating partner; once the assessment sets a form, it does.
test_an_assessed_form_opens_the_meldroute if {
	data.ketenpoort.exchange_test.denied(decide(data.ketenpoort.exchange_test.refer(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.nla, "opsporing", data.ketenpoort.exchange_test.with_forms(["onbekend"]))), ["form-unknown"])
	d := decide(data.ketenpoort.exchange_test.refer(data.ketenpoort.exchange_test.ketenregisseur, data.ketenpoort.exchange_test.nla, "opsporing", data.ketenpoort.exchange_test.with_forms(["arbeid"])))
	d.allow
	d.mode == "masked"
}
