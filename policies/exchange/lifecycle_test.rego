# Tests of the signal's life after intake: assessment, correction, versions,
# the state machine of data.covenant.lifecycle, and feedback both ways.
package ketenpoort.lifecycle_test

import data.ketenpoort.exchange
import data.ketenpoort.exchange_test as t

decide(req) := d if {
	d := exchange.decision with input as req
}

move(principal, sig, to) := object.union(t.request("transition", "drieluik", principal, sig), {"transition": {"to": to}})

close(principal, sig, reason) := object.union(t.request("transition", "drieluik", principal, sig), {"transition": {"to": "afgesloten", "reason": reason}})

at(status) := t.signal({"status": status})

status_only(d, purpose, grant) if t.masked(d, purpose, ["status"], grant)

report_back(principal, purpose, sig, code) := object.union(t.request("feedback", purpose, principal, sig), {"feedback": code})

# --- assessment and earlier versions: the ZVHD roles, for the Drieluik -----------

test_the_zvhd_assesses_every_signal_and_reads_its_versions if {
	every role in [t.ketenregisseur, t.zorgcoordinator] {
		t.full(decide(t.request("assess", "drieluik", role, t.with_forms(["onbekend"]))), "drieluik", "zvhd-beoordeling")
		t.full(decide(t.request("history", "drieluik", role, at("doorverwezen"))), "drieluik", "zvhd-beoordeling")
	}
}

test_nobody_else_assesses_or_reads_versions if {
	t.denied(decide(t.request("assess", "signalering", t.af_sociaal, t.base_signal)), ["action-not-granted"])
	t.denied(decide(t.request("history", "signalering", t.af_sociaal, t.base_signal)), ["action-not-granted"])
	t.denied(decide(t.request("assess", "drieluik", t.rechercheur, t.referred(t.politie, "drieluik", ["seksueel"]))), ["action-not-granted"])
	t.denied(decide(t.request("history", "opsporing", t.inspecteur, t.referred(t.nla, "opsporing", ["arbeid"]))), ["action-not-granted"])
	t.denied(decide(t.request("assess", "zorgcoordinatie", t.zorgcoordinator, t.base_signal)), ["action-not-granted"])
	t.denied(decide(t.request("assess", "fenomeenanalyse", t.analist, t.base_signal)), ["non-member-aggregate-only"])
}

# --- correction: the reporter, its own signal, while it is new ---------------------

test_the_reporter_corrects_its_own_new_signal if {
	t.full(decide(t.request("correct", "signalering", t.af_veiligheid, t.base_signal)), "signalering", "gemeente-correctie")
}

test_a_correction_after_nieuw_is_refused if {
	every status in ["in-behandeling", "drieluik", "doorverwezen", "zorgtraject", "afgesloten"] {
		t.denied(decide(t.request("correct", "signalering", t.af_sociaal, at(status))), ["status-not-allowed"])
	}
}

test_a_correction_by_another_partner_is_refused if {
	t.denied(decide(t.request("correct", "signalering", t.emmen_af, t.base_signal)), ["not-own-report"])
	t.denied(decide(t.request("correct", "signalering", t.ketenregisseur, t.base_signal)), ["action-not-granted"])
	t.denied(decide(t.request("correct", "drieluik", t.af_sociaal, t.base_signal)), ["purpose-not-for-role"])
}

# --- correction requests: the reporter asks (any status), the ZVHD reads ------------

test_the_reporter_asks_for_a_correction_in_any_status if {
	every status in data.covenant.lifecycle.statuses {
		t.full(decide(t.request("request-correction", "signalering", t.af_sociaal, at(status))), "signalering", "gemeente-correctieverzoek")
	}
}

test_only_the_reporter_asks_for_a_correction if {
	t.denied(decide(t.request("request-correction", "signalering", t.emmen_af, at("doorverwezen"))), ["not-own-report"])
	t.denied(decide(t.request("request-correction", "drieluik", t.ketenregisseur, at("doorverwezen"))), ["action-not-granted"])
	t.denied(decide(t.request("request-correction", "opsporing", t.inspecteur, t.referred(t.nla, "opsporing", ["arbeid"]))), ["action-not-granted"])
	t.denied(decide(t.request("request-correction", "fenomeenanalyse", t.analist, t.base_signal)), ["non-member-aggregate-only"])
}

test_the_zvhd_reads_correction_requests if {
	every role in [t.ketenregisseur, t.zorgcoordinator] {
		t.full(decide(t.request("review-corrections", "drieluik", role, at("doorverwezen"))), "drieluik", "zvhd-beoordeling")
	}
}

test_nobody_else_reads_correction_requests if {
	t.denied(decide(t.request("review-corrections", "signalering", t.af_sociaal, at("doorverwezen"))), ["action-not-granted"])
	t.denied(decide(t.request("review-corrections", "drieluik", t.rechercheur, t.referred(t.politie, "drieluik", ["seksueel"]))), ["action-not-granted"])
	t.denied(decide(t.request("review-corrections", "fenomeenanalyse", t.analist, t.base_signal)), ["non-member-aggregate-only"])
}

# --- the state machine ----------------------------------------------------------------

test_the_zvhd_moves_a_signal_along_the_state_machine if {
	every role in [t.ketenregisseur, t.zorgcoordinator] {
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
		status_only(decide(close(t.ketenregisseur, at("drieluik"), reason)), "drieluik", "zvhd-voortgang")
	}
}

test_an_illegal_move_is_refused_as_such if {
	t.denied(decide(move(t.ketenregisseur, at("afgesloten"), "nieuw")), ["transition-not-allowed"])
	t.denied(decide(move(t.ketenregisseur, at("afgesloten"), "in-behandeling")), ["transition-not-allowed"])
	t.denied(decide(move(t.ketenregisseur, at("doorverwezen"), "nieuw")), ["transition-not-allowed"])
	t.denied(decide(move(t.ketenregisseur, at("nieuw"), "nieuw")), ["transition-not-allowed"])
	t.denied(decide(close(t.ketenregisseur, at("afgesloten"), "doorgezet")), ["transition-not-allowed"])
	t.denied(decide(move(t.ketenregisseur, at("onbekend-oud"), "afgesloten")), ["reason-missing"])
}

test_unknown_codes_are_refused_as_unknown if {
	t.denied(decide(move(t.ketenregisseur, t.base_signal, "gesloten")), ["status-unknown"])
	t.denied(decide(t.request("transition", "drieluik", t.ketenregisseur, t.base_signal)), ["status-unknown"])
	t.denied(decide(object.union(t.request("transition", "drieluik", t.ketenregisseur, t.base_signal), {"transition": "afgesloten"})), ["status-unknown"])
	t.denied(decide(move(t.ketenregisseur, t.base_signal, "afgesloten")), ["reason-missing"])
	t.denied(decide(close(t.ketenregisseur, t.base_signal, "opgelost")), ["reason-unknown"])
	t.denied(decide(close(t.ketenregisseur, t.base_signal, 3)), ["reason-unknown"])
	t.denied(decide(object.union(move(t.ketenregisseur, t.base_signal, "in-behandeling"), {"transition": {"to": "in-behandeling", "reason": "doorgezet"}})), ["reason-not-expected"])
}

test_only_the_zvhd_moves_a_signal if {
	t.denied(decide(move(t.af_sociaal, t.base_signal, "in-behandeling")), ["purpose-not-for-role"])
	t.denied(decide(object.union(t.request("transition", "signalering", t.af_sociaal, t.base_signal), {"transition": {"to": "in-behandeling"}})), ["action-not-granted"])
	t.denied(decide(move(t.rechercheur, t.referred(t.politie, "drieluik", ["seksueel"]), "afgesloten")), ["action-not-granted"])
	t.denied(decide(object.union(t.request("transition", "zorgcoordinatie", t.zorgcoordinator, t.base_signal), {"transition": {"to": "zorgtraject"}})), ["action-not-granted"])
	t.denied(decide(move(t.analist, t.base_signal, "afgesloten")), ["non-member-aggregate-only"])
}

# A caller without the grant learns nothing about the state machine: the
# role is refused before the move is looked at.
test_a_refused_caller_gets_no_transition_verdict if {
	t.denied(decide(move(t.af_sociaal, at("afgesloten"), "nieuw")), ["purpose-not-for-role"])
	t.denied(decide(move(t.af_sociaal, t.base_signal, "gesloten")), ["purpose-not-for-role"])
}

# --- feedback: the reporter follows, the recipients report back ------------------------

test_the_reporter_follows_its_own_signals_only if {
	d := decide(t.request("track", "signalering", t.af_sociaal, at("afgesloten")))
	d == {
		"allow": true, "mode": "masked", "fields": ["status"],
		"reasons": ["grant:gemeente-terugkoppeling"],
		"legalBasis": t.basis("signalering"), "scope": "own",
	}
	t.denied(decide(t.request("track", "signalering", t.emmen_af, t.base_signal)), ["not-own-report"])
}

test_the_zvhd_follows_every_signal_with_the_recipients_feedback if {
	d := decide(t.request("track", "drieluik", t.ketenregisseur, at("doorverwezen")))
	d.allow
	d.scope == "all"
	d.fields == ["status"]
	d.reasons == ["grant:zvhd-voortgang"]
}

test_recipients_report_back_on_their_own_referral if {
	status_only(decide(report_back(t.inspecteur, "opsporing", t.referred(t.nla, "opsporing", ["arbeid"]), "in-onderzoek")), "opsporing", "nla-terugkoppeling")
	status_only(decide(report_back(t.rechercheur, "opsporing", t.referred(t.politie, "opsporing", ["seksueel"]), "afgerond")), "opsporing", "politie-terugkoppeling")
	status_only(decide(report_back(t.hulpverlener, "zorgcoordinatie", t.referred(t.fier, "zorgcoordinatie", ["arbeid"]), "ontvangen")), "zorgcoordinatie", "zorgpartner-terugkoppeling")
	# Feedback is on the referral, not the form: a reassessed signal keeps it.
	status_only(decide(report_back(t.officier, "opsporing", t.referred(t.om, "opsporing", ["seksueel"]), "niet-opgepakt")), "opsporing", "om-terugkoppeling")
}

test_feedback_needs_the_referral_and_a_known_code if {
	t.denied(decide(report_back(t.inspecteur, "opsporing", t.base_signal, "ontvangen")), ["not-referred"])
	t.denied(decide(report_back(t.inspecteur, "opsporing", t.referred(t.nla, "opsporing", ["arbeid"]), "bezig")), ["feedback-unknown"])
	t.denied(decide(t.request("feedback", "opsporing", t.inspecteur, t.referred(t.nla, "opsporing", ["arbeid"]))), ["feedback-unknown"])
	t.denied(decide(report_back(t.af_sociaal, "signalering", t.base_signal, "ontvangen")), ["action-not-granted"])
	t.denied(decide(report_back(t.ketenregisseur, "drieluik", t.base_signal, "ontvangen")), ["action-not-granted"])
}

# The feedback rows are no referral grants: a referral to the NLA still
# names only nla-opsporing and gives its fields.
test_feedback_rows_do_not_widen_a_referral if {
	d := decide(t.refer(t.ketenregisseur, t.nla, "opsporing", t.with_forms(["arbeid"])))
	d.reasons == ["grant:nla-opsporing"]
}

# The meldroute after the Drieluik: a signal with an unknown form reaches no
# investigating partner; once the assessment sets a form, it does.
test_an_assessed_form_opens_the_meldroute if {
	t.denied(decide(t.refer(t.ketenregisseur, t.nla, "opsporing", t.with_forms(["onbekend"]))), ["form-unknown"])
	d := decide(t.refer(t.ketenregisseur, t.nla, "opsporing", t.with_forms(["arbeid"])))
	d.allow
	d.mode == "masked"
}
