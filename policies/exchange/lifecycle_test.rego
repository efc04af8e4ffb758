# Tests of the signal's life after intake: assessment, correction, versions,
# the state machine of data.covenant.lifecycle, and feedback both ways.
package ketenpoort.lifecycle_test

# Rules of other packages are imported one by one or named by their full
# path, never by importing the package: regorus evaluates every rule of an
# imported package (here: every test of it) each time one is referenced,
# which made these tests 14x slower.

import data.ketenpoort.exchange_test.af_sociaal
import data.ketenpoort.exchange_test.af_veiligheid
import data.ketenpoort.exchange_test.analist
import data.ketenpoort.exchange_test.base_signal
import data.ketenpoort.exchange_test.basis
import data.ketenpoort.exchange_test.denied
import data.ketenpoort.exchange_test.emmen_af
import data.ketenpoort.exchange_test.fier
import data.ketenpoort.exchange_test.full
import data.ketenpoort.exchange_test.hulpverlener
import data.ketenpoort.exchange_test.inspecteur
import data.ketenpoort.exchange_test.ketenregisseur
import data.ketenpoort.exchange_test.masked
import data.ketenpoort.exchange_test.nla
import data.ketenpoort.exchange_test.officier
import data.ketenpoort.exchange_test.om
import data.ketenpoort.exchange_test.politie
import data.ketenpoort.exchange_test.rechercheur
import data.ketenpoort.exchange_test.refer
import data.ketenpoort.exchange_test.referred
import data.ketenpoort.exchange_test.request
import data.ketenpoort.exchange_test.signal
import data.ketenpoort.exchange_test.with_forms
import data.ketenpoort.exchange_test.zorgcoordinator

decide(req) := d if {
	d := data.ketenpoort.exchange.decision with input as req
}

move(principal, sig, to) := object.union(request("transition", "drieluik", principal, sig), {"transition": {"to": to}})

close(principal, sig, reason) := object.union(request("transition", "drieluik", principal, sig), {"transition": {"to": "afgesloten", "reason": reason}})

at(status) := signal({"status": status})

status_only(d, purpose, grant) if masked(d, purpose, ["status"], grant)

report_back(principal, purpose, sig, code) := object.union(request("feedback", purpose, principal, sig), {"feedback": code})

# --- assessment and earlier versions: the ZVHD roles, for the Drieluik -----------

test_the_zvhd_assesses_every_signal_and_reads_its_versions if {
	every role in [ketenregisseur, zorgcoordinator] {
		full(decide(request("assess", "drieluik", role, with_forms(["onbekend"]))), "drieluik", "zvhd-beoordeling")
		full(decide(request("history", "drieluik", role, at("doorverwezen"))), "drieluik", "zvhd-beoordeling")
	}
}

test_nobody_else_assesses_or_reads_versions if {
	denied(decide(request("assess", "signalering", af_sociaal, base_signal)), ["action-not-granted"])
	denied(decide(request("history", "signalering", af_sociaal, base_signal)), ["action-not-granted"])
	denied(decide(request("assess", "drieluik", rechercheur, referred(politie, "drieluik", ["seksueel"]))), ["action-not-granted"])
	denied(decide(request("history", "opsporing", inspecteur, referred(nla, "opsporing", ["arbeid"]))), ["action-not-granted"])
	denied(decide(request("assess", "zorgcoordinatie", zorgcoordinator, base_signal)), ["action-not-granted"])
	denied(decide(request("assess", "fenomeenanalyse", analist, base_signal)), ["non-member-aggregate-only"])
}

# --- correction: the reporter, its own signal, while it is new ---------------------

test_the_reporter_corrects_its_own_new_signal if {
	full(decide(request("correct", "signalering", af_veiligheid, base_signal)), "signalering", "gemeente-correctie")
}

test_a_correction_after_nieuw_is_refused if {
	every status in ["in-behandeling", "drieluik", "doorverwezen", "zorgtraject", "afgesloten"] {
		denied(decide(request("correct", "signalering", af_sociaal, at(status))), ["status-not-allowed"])
	}
}

test_a_correction_by_another_partner_is_refused if {
	denied(decide(request("correct", "signalering", emmen_af, base_signal)), ["not-own-report"])
	denied(decide(request("correct", "signalering", ketenregisseur, base_signal)), ["action-not-granted"])
	denied(decide(request("correct", "drieluik", af_sociaal, base_signal)), ["purpose-not-for-role"])
}

# --- correction requests: the reporter asks (any status), the ZVHD reads ------------

test_the_reporter_asks_for_a_correction_in_any_status if {
	every status in data.covenant.lifecycle.statuses {
		full(decide(request("request-correction", "signalering", af_sociaal, at(status))), "signalering", "gemeente-correctieverzoek")
	}
}

test_only_the_reporter_asks_for_a_correction if {
	denied(decide(request("request-correction", "signalering", emmen_af, at("doorverwezen"))), ["not-own-report"])
	denied(decide(request("request-correction", "drieluik", ketenregisseur, at("doorverwezen"))), ["action-not-granted"])
	denied(decide(request("request-correction", "opsporing", inspecteur, referred(nla, "opsporing", ["arbeid"]))), ["action-not-granted"])
	denied(decide(request("request-correction", "fenomeenanalyse", analist, base_signal)), ["non-member-aggregate-only"])
}

test_the_zvhd_reads_correction_requests if {
	every role in [ketenregisseur, zorgcoordinator] {
		full(decide(request("review-corrections", "drieluik", role, at("doorverwezen"))), "drieluik", "zvhd-beoordeling")
	}
}

test_nobody_else_reads_correction_requests if {
	denied(decide(request("review-corrections", "signalering", af_sociaal, at("doorverwezen"))), ["action-not-granted"])
	denied(decide(request("review-corrections", "drieluik", rechercheur, referred(politie, "drieluik", ["seksueel"]))), ["action-not-granted"])
	denied(decide(request("review-corrections", "fenomeenanalyse", analist, base_signal)), ["non-member-aggregate-only"])
}

# --- the state machine ----------------------------------------------------------------

test_the_zvhd_moves_a_signal_along_the_state_machine if {
	every role in [ketenregisseur, zorgcoordinator] {
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
		status_only(decide(close(ketenregisseur, at("drieluik"), reason)), "drieluik", "zvhd-voortgang")
	}
}

test_an_illegal_move_is_refused_as_such if {
	denied(decide(move(ketenregisseur, at("afgesloten"), "nieuw")), ["transition-not-allowed"])
	denied(decide(move(ketenregisseur, at("afgesloten"), "in-behandeling")), ["transition-not-allowed"])
	denied(decide(move(ketenregisseur, at("doorverwezen"), "nieuw")), ["transition-not-allowed"])
	denied(decide(move(ketenregisseur, at("nieuw"), "nieuw")), ["transition-not-allowed"])
	denied(decide(close(ketenregisseur, at("afgesloten"), "doorgezet")), ["transition-not-allowed"])
	denied(decide(move(ketenregisseur, at("onbekend-oud"), "afgesloten")), ["reason-missing"])
}

test_unknown_codes_are_refused_as_unknown if {
	denied(decide(move(ketenregisseur, base_signal, "gesloten")), ["status-unknown"])
	denied(decide(request("transition", "drieluik", ketenregisseur, base_signal)), ["status-unknown"])
	denied(decide(object.union(request("transition", "drieluik", ketenregisseur, base_signal), {"transition": "afgesloten"})), ["status-unknown"])
	denied(decide(move(ketenregisseur, base_signal, "afgesloten")), ["reason-missing"])
	denied(decide(close(ketenregisseur, base_signal, "opgelost")), ["reason-unknown"])
	denied(decide(close(ketenregisseur, base_signal, 3)), ["reason-unknown"])
	denied(decide(object.union(move(ketenregisseur, base_signal, "in-behandeling"), {"transition": {"to": "in-behandeling", "reason": "doorgezet"}})), ["reason-not-expected"])
}

test_only_the_zvhd_moves_a_signal if {
	denied(decide(move(af_sociaal, base_signal, "in-behandeling")), ["purpose-not-for-role"])
	denied(decide(object.union(request("transition", "signalering", af_sociaal, base_signal), {"transition": {"to": "in-behandeling"}})), ["action-not-granted"])
	denied(decide(move(rechercheur, referred(politie, "drieluik", ["seksueel"]), "afgesloten")), ["action-not-granted"])
	denied(decide(object.union(request("transition", "zorgcoordinatie", zorgcoordinator, base_signal), {"transition": {"to": "zorgtraject"}})), ["action-not-granted"])
	denied(decide(move(analist, base_signal, "afgesloten")), ["non-member-aggregate-only"])
}

# A caller without the grant learns nothing about the state machine: the
# role is refused before the move is looked at.
test_a_refused_caller_gets_no_transition_verdict if {
	denied(decide(move(af_sociaal, at("afgesloten"), "nieuw")), ["purpose-not-for-role"])
	denied(decide(move(af_sociaal, base_signal, "gesloten")), ["purpose-not-for-role"])
}

# --- feedback: the reporter follows, the recipients report back ------------------------

test_the_reporter_follows_its_own_signals_only if {
	d := decide(request("track", "signalering", af_sociaal, at("afgesloten")))
	d == {
		"allow": true, "mode": "masked", "fields": ["status"],
		"reasons": ["grant:gemeente-terugkoppeling"],
		"legalBasis": basis("signalering"), "scope": "own",
	}
	denied(decide(request("track", "signalering", emmen_af, base_signal)), ["not-own-report"])
}

test_the_zvhd_follows_every_signal_with_the_recipients_feedback if {
	d := decide(request("track", "drieluik", ketenregisseur, at("doorverwezen")))
	d.allow
	d.scope == "all"
	d.fields == ["status"]
	d.reasons == ["grant:zvhd-voortgang"]
}

test_recipients_report_back_on_their_own_referral if {
	status_only(decide(report_back(inspecteur, "opsporing", referred(nla, "opsporing", ["arbeid"]), "in-onderzoek")), "opsporing", "nla-terugkoppeling")
	status_only(decide(report_back(rechercheur, "opsporing", referred(politie, "opsporing", ["seksueel"]), "afgerond")), "opsporing", "politie-terugkoppeling")
	status_only(decide(report_back(hulpverlener, "zorgcoordinatie", referred(fier, "zorgcoordinatie", ["arbeid"]), "ontvangen")), "zorgcoordinatie", "zorgpartner-terugkoppeling")
	# Feedback is on the referral, not the form: a reassessed signal keeps it.
	status_only(decide(report_back(officier, "opsporing", referred(om, "opsporing", ["seksueel"]), "niet-opgepakt")), "opsporing", "om-terugkoppeling")
}

test_feedback_needs_the_referral_and_a_known_code if {
	denied(decide(report_back(inspecteur, "opsporing", base_signal, "ontvangen")), ["not-referred"])
	denied(decide(report_back(inspecteur, "opsporing", referred(nla, "opsporing", ["arbeid"]), "bezig")), ["feedback-unknown"])
	denied(decide(request("feedback", "opsporing", inspecteur, referred(nla, "opsporing", ["arbeid"]))), ["feedback-unknown"])
	denied(decide(report_back(af_sociaal, "signalering", base_signal, "ontvangen")), ["action-not-granted"])
	denied(decide(report_back(ketenregisseur, "drieluik", base_signal, "ontvangen")), ["action-not-granted"])
}

# The feedback rows are no referral grants: a referral to the NLA still
# names only nla-opsporing and gives its fields.
test_feedback_rows_do_not_widen_a_referral if {
	d := decide(refer(ketenregisseur, nla, "opsporing", with_forms(["arbeid"])))
	d.reasons == ["grant:nla-opsporing"]
}

# The meldroute after the Drieluik: a signal with an unknown form reaches no
# investigating partner; once the assessment sets a form, it does.
test_an_assessed_form_opens_the_meldroute if {
	denied(decide(refer(ketenregisseur, nla, "opsporing", with_forms(["onbekend"]))), ["form-unknown"])
	d := decide(refer(ketenregisseur, nla, "opsporing", with_forms(["arbeid"])))
	d.allow
	d.mode == "masked"
}
