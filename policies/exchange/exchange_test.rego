# Tests of the exchange policy: the meldroute, every grant row of the covenant
# table with its exact field set, and every refusal.
package ketenpoort.exchange_test

# Rules of other packages are named by their full path, never through an
# import of the package (policies/README.md, step 2, says why).

# --- partners (as the registry would describe them) ------------------------------

assen := {"partner": "assen", "kind": "gemeente", "member": true, "status": "active"}

emmen := {"partner": "emmen", "kind": "gemeente", "member": true, "status": "active"}

zvhd := {"partner": "zvhd", "kind": "zvhd", "member": true, "status": "active"}

politie := {"partner": "politie", "kind": "politie", "member": true, "status": "active"}

nla := {"partner": "nla", "kind": "nla", "member": true, "status": "active"}

om := {"partner": "om", "kind": "om", "member": true, "status": "active"}

veilig_thuis := {"partner": "veilig-thuis-drenthe", "kind": "veilig-thuis", "member": true, "status": "active"}

fier := {"partner": "fier", "kind": "zorgpartner", "member": true, "status": "active"}

riec := {"partner": "riec-noord-nederland", "kind": "riec", "member": false, "status": "active"}

# A principal: a partner plus the role in the caller's token.
as_role(partner, role) := object.union(partner, {"role": role})

suspended(partner) := object.union(partner, {"status": "suspended"})

# A member kind whose registry entry says it is not (or no longer) a member.
registry_non_member(partner) := object.union(partner, {"member": false})

af_veiligheid := as_role(assen, "aandachtfunctionaris-veiligheid")

af_sociaal := as_role(assen, "aandachtfunctionaris-sociaal")

emmen_af := as_role(emmen, "aandachtfunctionaris-veiligheid")

ketenregisseur := as_role(zvhd, "ketenregisseur")

zorgcoordinator := as_role(zvhd, "zorgcoordinator")

rechercheur := as_role(politie, "rechercheur")

inspecteur := as_role(nla, "inspecteur")

officier := as_role(om, "officier")

vt_af := as_role(veilig_thuis, "aandachtfunctionaris")

hulpverlener := as_role(fier, "hulpverlener")

analist := as_role(riec, "analist")

# --- signals ----------------------------------------------------------------------

# A signal reported by Assen about sexual exploitation, not yet referred.
base_signal := {
	"reporter": "assen",
	"municipality": "assen",
	"forms": ["seksueel"],
	"victimMinor": false,
	"domesticSetting": false,
	"referrals": [],
	"status": "nieuw",
}

signal(changes) := object.union(base_signal, changes)

with_forms(forms) := signal({"forms": forms})

# The signal with a referral of partner for purpose (and the given forms).
referred(partner, purpose, forms) := signal({
	"forms": forms,
	"referrals": [{"partner": partner.partner, "purpose": purpose}],
})

# --- requests -----------------------------------------------------------------------

request(action, purpose, principal, sig) := {
	"action": action,
	"purpose": purpose,
	"principal": principal,
	"signal": sig,
}

submit(principal, recipient, sig) := object.union(request("submit", "signalering", principal, sig), {"recipient": recipient})

refer(principal, recipient, purpose, sig) := object.union(request("refer", purpose, principal, sig), {"recipient": recipient})

decide(req) := d if {
	d := data.ketenpoort.exchange.decision with input as req
}

# --- expectations ------------------------------------------------------------------

basis(purpose) := data.covenant.purposes[purpose].legalBasis

allowed(d, purpose, mode, fields, reasons) if {
	d == {
		"allow": true,
		"mode": mode,
		"fields": fields,
		"reasons": reasons,
		"legalBasis": basis(purpose),
		"scope": null,
	}
}

full(d, purpose, grant) if allowed(d, purpose, "full", all_fields, [concat("", ["grant:", grant])])

masked(d, purpose, fields, grant) if allowed(d, purpose, "masked", fields, [concat("", ["grant:", grant])])

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

# Every classified field of a signal.
all_fields := [
	"assessmentNotes",
	"dateReceived",
	"domesticSetting",
	"forms",
	"indicators",
	"locationType",
	"municipality",
	"narrative",
	"sector",
	"status",
	"suspects.address",
	"suspects.allegedConduct",
	"suspects.bsn",
	"suspects.companyName",
	"suspects.dateOfBirth",
	"suspects.email",
	"suspects.gender",
	"suspects.kvkNumber",
	"suspects.name",
	"suspects.nationality",
	"suspects.phone",
	"underminingComponent",
	"urgency",
	"victims.address",
	"victims.bsn",
	"victims.careNeeds",
	"victims.dateOfBirth",
	"victims.email",
	"victims.gender",
	"victims.labourMigrant",
	"victims.mildIntellectualDisability",
	"victims.minor",
	"victims.name",
	"victims.nationality",
	"victims.phone",
]

# Everything except the special category (health) fields: the investigating
# partners and the police in the Drieluik.
no_health_fields := [
	"assessmentNotes",
	"dateReceived",
	"domesticSetting",
	"forms",
	"indicators",
	"locationType",
	"municipality",
	"narrative",
	"sector",
	"status",
	"suspects.address",
	"suspects.allegedConduct",
	"suspects.bsn",
	"suspects.companyName",
	"suspects.dateOfBirth",
	"suspects.email",
	"suspects.gender",
	"suspects.kvkNumber",
	"suspects.name",
	"suspects.nationality",
	"suspects.phone",
	"underminingComponent",
	"urgency",
	"victims.address",
	"victims.bsn",
	"victims.dateOfBirth",
	"victims.email",
	"victims.gender",
	"victims.labourMigrant",
	"victims.minor",
	"victims.name",
	"victims.nationality",
	"victims.phone",
]

# Care: the victim's identifiers, quasi-identifiers of the victim and the
# report, health and phenomenon fields; nothing about a suspect, no criminal
# data, no narrative.
care_fields := [
	"dateReceived",
	"domesticSetting",
	"forms",
	"locationType",
	"municipality",
	"sector",
	"status",
	"urgency",
	"victims.address",
	"victims.bsn",
	"victims.careNeeds",
	"victims.dateOfBirth",
	"victims.email",
	"victims.gender",
	"victims.labourMigrant",
	"victims.mildIntellectualDisability",
	"victims.minor",
	"victims.name",
	"victims.nationality",
	"victims.phone",
]

test_field_sets_are_what_the_covenant_table_says if {
	count(all_fields) == 35
	count(no_health_fields) == 33
	count(care_fields) == 20
	every field in no_health_fields {
		not startswith(field, "victims.careNeeds")
		not startswith(field, "victims.mildIntellectualDisability")
	}
	every field in care_fields {
		not startswith(field, "suspects.")
		field != "narrative"
		field != "assessmentNotes"
		field != "underminingComponent"
		field != "indicators"
	}
}

# =====================================================================================
# The meldroute: municipality -> ZVHD -> Drieluik -> NLA / TMM / OM, care, RIEC
# =====================================================================================

# --- 1. the municipality reports to the ZVHD (grant gemeente-signalering) ------

test_gemeente_aandachtfunctionaris_veiligheid_submits_to_zvhd if {
	full(decide(submit(af_veiligheid, zvhd, base_signal)), "signalering", "gemeente-signalering")
}

test_gemeente_aandachtfunctionaris_sociaal_submits_to_zvhd if {
	full(decide(submit(af_sociaal, zvhd, base_signal)), "signalering", "gemeente-signalering")
}

test_gemeente_reads_its_own_report if {
	full(decide(request("read", "signalering", af_veiligheid, base_signal)), "signalering", "gemeente-signalering")
	full(decide(request("read", "signalering", af_sociaal, base_signal)), "signalering", "gemeente-signalering")
}

test_gemeente_lists_its_own_reports if {
	full(decide(request("list", "signalering", af_sociaal, base_signal)), "signalering", "gemeente-signalering")
}

test_other_municipality_is_denied_every_action if {
	denied(decide(request("read", "signalering", emmen_af, base_signal)), ["not-own-report"])
	denied(decide(request("list", "signalering", emmen_af, base_signal)), ["not-own-report"])
	denied(decide(submit(emmen_af, zvhd, base_signal)), ["not-own-report"])
}

test_other_municipality_is_denied_even_when_referred if {
	sig := referred(emmen, "signalering", ["seksueel"])
	denied(decide(request("read", "signalering", emmen_af, sig)), ["not-own-report"])
}

test_gemeente_has_no_other_purpose if {
	denied(decide(request("read", "drieluik", af_veiligheid, base_signal)), ["purpose-not-for-role"])
	denied(decide(request("read", "zorgcoordinatie", af_veiligheid, base_signal)), ["purpose-not-for-role"])
	denied(decide(request("read", "opsporing", af_sociaal, base_signal)), ["purpose-not-for-role"])
	denied(decide(request("read", "fenomeenanalyse", af_sociaal, base_signal)), ["purpose-not-for-role"])
	denied(decide(request("read", "verantwoording", af_sociaal, base_signal)), ["purpose-not-for-role"])
}

test_gemeente_does_not_deliver if {
	denied(decide(request("deliver", "signalering", af_veiligheid, base_signal)), ["action-not-granted"])
}

test_gemeente_refers_only_by_submitting if {
	denied(decide(refer(af_veiligheid, politie, "opsporing", base_signal)), ["not-a-referrer"])
	denied(decide(refer(af_veiligheid, zvhd, "signalering", base_signal)), ["not-a-referrer"])
}

test_submit_goes_to_the_zvhd_only if {
	denied(decide(submit(af_veiligheid, politie, base_signal)), ["recipient-not-intake"])
	denied(decide(submit(af_veiligheid, emmen, base_signal)), ["recipient-not-intake"])
	denied(decide(submit(af_veiligheid, riec, base_signal)), ["recipient-not-intake"])
}

test_submit_needs_a_valid_active_member_intake if {
	denied(decide(request("submit", "signalering", af_veiligheid, base_signal)), ["recipient-unknown"])
	denied(decide(submit(af_veiligheid, suspended(zvhd), base_signal)), ["recipient-inactive"])
	denied(decide(submit(af_veiligheid, object.union(zvhd, {"kind": "ggd"}), base_signal)), ["recipient-unknown"])
	denied(decide(submit(af_veiligheid, registry_non_member(zvhd), base_signal)), ["non-member-aggregate-only"])
}

test_submit_only_for_signalering if {
	req := object.union(submit(af_veiligheid, zvhd, base_signal), {"purpose": "drieluik"})
	denied(decide(req), ["purpose-not-for-role"])
}

# --- signals also come in from the ZVHD, the police and Veilig Thuis -----------

test_zvhd_staff_submit_and_read_back_their_own_report if {
	own := signal({"reporter": "zvhd"})
	full(decide(submit(zorgcoordinator, zvhd, own)), "signalering", "zvhd-melding")
	full(decide(request("read", "signalering", zorgcoordinator, own)), "signalering", "zvhd-melding")
	full(decide(submit(ketenregisseur, zvhd, own)), "signalering", "zvhd-melding")
}

test_ketenregisseur_reading_own_report_for_signalering_names_both_grants if {
	own := signal({"reporter": "zvhd"})
	allowed(
		decide(request("read", "signalering", ketenregisseur, own)),
		"signalering", "full", all_fields,
		["grant:zvhd-ketenregisseur", "grant:zvhd-melding"],
	)
}

test_zorgcoordinator_reads_no_other_report_for_signalering if {
	denied(decide(request("read", "signalering", zorgcoordinator, base_signal)), ["not-own-report"])
	denied(decide(request("list", "signalering", zorgcoordinator, base_signal)), ["action-not-granted"])
}

test_politie_submits_and_reads_back_its_own_report if {
	own := signal({"reporter": "politie"})
	full(decide(submit(rechercheur, zvhd, own)), "signalering", "politie-melding")
	full(decide(request("read", "signalering", rechercheur, own)), "signalering", "politie-melding")
	denied(decide(request("read", "signalering", rechercheur, base_signal)), ["not-own-report"])
	denied(decide(request("list", "signalering", rechercheur, own)), ["action-not-granted"])
	denied(decide(submit(rechercheur, zvhd, base_signal)), ["not-own-report"])
}

test_veilig_thuis_submits_and_reads_back_its_own_report if {
	own := signal({"reporter": "veilig-thuis-drenthe"})
	full(decide(submit(vt_af, zvhd, own)), "signalering", "veilig-thuis-melding")
	full(decide(request("read", "signalering", vt_af, own)), "signalering", "veilig-thuis-melding")
	denied(decide(request("read", "signalering", vt_af, base_signal)), ["not-own-report"])
	denied(decide(request("list", "signalering", vt_af, own)), ["action-not-granted"])
}

test_nla_om_and_care_do_not_submit if {
	denied(decide(submit(inspecteur, zvhd, signal({"reporter": "nla"}))), ["purpose-not-for-role"])
	denied(decide(submit(officier, zvhd, signal({"reporter": "om"}))), ["purpose-not-for-role"])
	denied(decide(submit(hulpverlener, zvhd, signal({"reporter": "fier"}))), ["purpose-not-for-role"])
}

# --- 2. the ZVHD sees every signal ----------------------------------------------------

test_ketenregisseur_reads_and_lists_every_signal if {
	full(decide(request("read", "signalering", ketenregisseur, base_signal)), "signalering", "zvhd-ketenregisseur")
	full(decide(request("read", "drieluik", ketenregisseur, base_signal)), "drieluik", "zvhd-ketenregisseur")
	full(decide(request("list", "signalering", ketenregisseur, base_signal)), "signalering", "zvhd-ketenregisseur")
	full(decide(request("list", "drieluik", ketenregisseur, with_forms(["onbekend"]))), "drieluik", "zvhd-ketenregisseur")
}

test_ketenregisseur_has_no_care_or_investigation_purpose if {
	denied(decide(request("read", "zorgcoordinatie", ketenregisseur, base_signal)), ["purpose-not-for-role"])
	denied(decide(request("read", "opsporing", ketenregisseur, base_signal)), ["purpose-not-for-role"])
}

test_zvhd_does_not_deliver_to_itself if {
	denied(decide(request("deliver", "drieluik", ketenregisseur, base_signal)), ["action-not-granted"])
}

test_zorgcoordinator_reads_and_lists_every_signal if {
	full(decide(request("read", "drieluik", zorgcoordinator, base_signal)), "drieluik", "zvhd-zorgcoordinator")
	full(decide(request("read", "zorgcoordinatie", zorgcoordinator, base_signal)), "zorgcoordinatie", "zvhd-zorgcoordinator")
	full(decide(request("list", "zorgcoordinatie", zorgcoordinator, with_forms(["arbeid"]))), "zorgcoordinatie", "zvhd-zorgcoordinator")
	denied(decide(request("read", "opsporing", zorgcoordinator, base_signal)), ["purpose-not-for-role"])
}

# --- 3. the Drieluik: placing a signal on the agenda = a referral to the police -----

test_ketenregisseur_places_a_signal_on_the_drieluik_agenda if {
	masked(decide(refer(ketenregisseur, politie, "drieluik", base_signal)), "drieluik", no_health_fields, "politie-drieluik")
}

test_zorgcoordinator_places_a_signal_on_the_drieluik_agenda if {
	masked(decide(refer(zorgcoordinator, politie, "drieluik", with_forms(["onbekend"]))), "drieluik", no_health_fields, "politie-drieluik")
}

test_politie_reads_lists_and_receives_signals_on_the_agenda if {
	sig := referred(politie, "drieluik", ["arbeid"])
	masked(decide(request("read", "drieluik", rechercheur, sig)), "drieluik", no_health_fields, "politie-drieluik")
	masked(decide(request("list", "drieluik", rechercheur, sig)), "drieluik", no_health_fields, "politie-drieluik")
	masked(decide(request("deliver", "drieluik", rechercheur, sig)), "drieluik", no_health_fields, "politie-drieluik")
}

test_politie_gets_no_health_fields_in_the_drieluik if {
	d := decide(request("read", "drieluik", rechercheur, referred(politie, "drieluik", ["seksueel"])))
	not "victims.careNeeds" in d.fields
	not "victims.mildIntellectualDisability" in d.fields
	"narrative" in d.fields
}

test_politie_without_drieluik_referral_is_not_referred if {
	denied(decide(request("read", "drieluik", rechercheur, base_signal)), ["not-referred"])
	denied(decide(request("deliver", "drieluik", rechercheur, base_signal)), ["not-referred"])
	denied(decide(request("list", "drieluik", rechercheur, base_signal)), ["not-referred"])
}

test_a_referral_for_another_purpose_or_partner_does_not_count if {
	denied(decide(request("read", "drieluik", rechercheur, referred(politie, "opsporing", ["seksueel"]))), ["not-referred"])
	other_politie := {"partner": "politie-oost", "kind": "politie", "member": true, "status": "active"}
	denied(decide(request("read", "drieluik", rechercheur, referred(other_politie, "drieluik", ["seksueel"]))), ["not-referred"])
}

# --- 4. investigation: sexual and criminal to TMM, labour to NLA, any form to OM -----

test_refer_to_politie_for_opsporing_sexual_or_criminal if {
	masked(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["seksueel"]))), "opsporing", no_health_fields, "politie-opsporing")
	masked(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["crimineel"]))), "opsporing", no_health_fields, "politie-opsporing")
	masked(decide(refer(zorgcoordinator, politie, "opsporing", with_forms(["arbeid", "crimineel"]))), "opsporing", no_health_fields, "politie-opsporing")
	masked(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["onbekend", "seksueel"]))), "opsporing", no_health_fields, "politie-opsporing")
}

test_politie_not_for_labour_or_organ_trade if {
	denied(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["arbeid"]))), ["form-not-in-mandate"])
	denied(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["orgaan"]))), ["form-not-in-mandate"])
}

test_refer_to_nla_for_labour_only if {
	masked(decide(refer(ketenregisseur, nla, "opsporing", with_forms(["arbeid"]))), "opsporing", no_health_fields, "nla-opsporing")
	masked(decide(refer(zorgcoordinator, nla, "opsporing", with_forms(["arbeid", "seksueel"]))), "opsporing", no_health_fields, "nla-opsporing")
	denied(decide(refer(ketenregisseur, nla, "opsporing", with_forms(["seksueel"]))), ["form-not-in-mandate"])
	denied(decide(refer(ketenregisseur, nla, "opsporing", with_forms(["crimineel", "orgaan"]))), ["form-not-in-mandate"])
}

test_refer_to_om_for_any_known_form if {
	masked(decide(refer(ketenregisseur, om, "opsporing", with_forms(["seksueel"]))), "opsporing", no_health_fields, "om-opsporing")
	masked(decide(refer(ketenregisseur, om, "opsporing", with_forms(["arbeid"]))), "opsporing", no_health_fields, "om-opsporing")
	masked(decide(refer(ketenregisseur, om, "opsporing", with_forms(["crimineel"]))), "opsporing", no_health_fields, "om-opsporing")
	masked(decide(refer(ketenregisseur, om, "opsporing", with_forms(["orgaan"]))), "opsporing", no_health_fields, "om-opsporing")
}

test_unknown_form_goes_to_no_investigating_partner if {
	denied(decide(refer(ketenregisseur, politie, "opsporing", with_forms(["onbekend"]))), ["form-unknown"])
	denied(decide(refer(ketenregisseur, nla, "opsporing", with_forms(["onbekend"]))), ["form-unknown"])
	denied(decide(refer(ketenregisseur, om, "opsporing", with_forms(["onbekend"]))), ["form-unknown"])
	denied(decide(refer(ketenregisseur, om, "opsporing", with_forms([]))), ["form-unknown"])
}

test_investigating_partners_read_and_receive_referred_signals if {
	masked(decide(request("deliver", "opsporing", rechercheur, referred(politie, "opsporing", ["crimineel"]))), "opsporing", no_health_fields, "politie-opsporing")
	masked(decide(request("read", "opsporing", rechercheur, referred(politie, "opsporing", ["seksueel"]))), "opsporing", no_health_fields, "politie-opsporing")
	masked(decide(request("deliver", "opsporing", inspecteur, referred(nla, "opsporing", ["arbeid"]))), "opsporing", no_health_fields, "nla-opsporing")
	masked(decide(request("list", "opsporing", inspecteur, referred(nla, "opsporing", ["arbeid"]))), "opsporing", no_health_fields, "nla-opsporing")
	masked(decide(request("read", "opsporing", officier, referred(om, "opsporing", ["orgaan"]))), "opsporing", no_health_fields, "om-opsporing")
	masked(decide(request("deliver", "opsporing", officier, referred(om, "opsporing", ["arbeid"]))), "opsporing", no_health_fields, "om-opsporing")
}

test_investigating_partners_need_the_referral if {
	denied(decide(request("deliver", "opsporing", rechercheur, with_forms(["seksueel"]))), ["not-referred"])
	denied(decide(request("read", "opsporing", inspecteur, with_forms(["arbeid"]))), ["not-referred"])
	denied(decide(request("deliver", "opsporing", officier, with_forms(["arbeid"]))), ["not-referred"])
	denied(decide(request("deliver", "opsporing", inspecteur, referred(politie, "opsporing", ["arbeid"]))), ["not-referred"])
}

test_a_form_changed_after_referral_stops_delivery if {
	denied(decide(request("deliver", "opsporing", rechercheur, referred(politie, "opsporing", ["arbeid"]))), ["form-not-in-mandate"])
	denied(decide(request("read", "opsporing", inspecteur, referred(nla, "opsporing", ["onbekend"]))), ["form-unknown"])
}

test_all_reasons_of_a_refused_grant_are_given if {
	denied(decide(request("read", "opsporing", rechercheur, with_forms(["arbeid"]))), ["form-not-in-mandate", "not-referred"])
}

test_investigating_partners_do_not_submit_list_other_purposes if {
	denied(decide(request("read", "drieluik", inspecteur, referred(nla, "drieluik", ["arbeid"]))), ["purpose-not-for-role"])
	denied(decide(request("read", "zorgcoordinatie", officier, base_signal)), ["purpose-not-for-role"])
	denied(decide(request("read", "zorgcoordinatie", rechercheur, base_signal)), ["purpose-not-for-role"])
}

# --- 5. care: care organisations and Veilig Thuis -----------------------------------

test_refer_to_zorgpartner_for_care if {
	masked(decide(refer(zorgcoordinator, fier, "zorgcoordinatie", base_signal)), "zorgcoordinatie", care_fields, "zorgpartner-zorgcoordinatie")
	masked(decide(refer(ketenregisseur, fier, "zorgcoordinatie", with_forms(["onbekend"]))), "zorgcoordinatie", care_fields, "zorgpartner-zorgcoordinatie")
	masked(decide(refer(zorgcoordinator, fier, "zorgcoordinatie", with_forms(["orgaan", "arbeid"]))), "zorgcoordinatie", care_fields, "zorgpartner-zorgcoordinatie")
}

test_zorgpartner_gets_nothing_about_suspects_and_no_narrative if {
	d := decide(request("deliver", "zorgcoordinatie", hulpverlener, referred(fier, "zorgcoordinatie", ["seksueel"])))
	masked(d, "zorgcoordinatie", care_fields, "zorgpartner-zorgcoordinatie")
	every field in d.fields {
		not startswith(field, "suspects.")
	}
	not "narrative" in d.fields
	not "indicators" in d.fields
	"victims.careNeeds" in d.fields
}

test_zorgpartner_reads_and_lists_referred_signals if {
	sig := referred(fier, "zorgcoordinatie", ["arbeid"])
	masked(decide(request("read", "zorgcoordinatie", hulpverlener, sig)), "zorgcoordinatie", care_fields, "zorgpartner-zorgcoordinatie")
	masked(decide(request("list", "zorgcoordinatie", hulpverlener, sig)), "zorgcoordinatie", care_fields, "zorgpartner-zorgcoordinatie")
	denied(decide(request("read", "zorgcoordinatie", hulpverlener, base_signal)), ["not-referred"])
}

test_care_organisations_never_for_opsporing if {
	denied(decide(refer(ketenregisseur, fier, "opsporing", with_forms(["seksueel"]))), ["recipient-not-for-purpose"])
	denied(decide(refer(ketenregisseur, veilig_thuis, "opsporing", signal({"victimMinor": true}))), ["recipient-not-for-purpose"])
	denied(decide(request("read", "opsporing", hulpverlener, referred(fier, "opsporing", ["seksueel"]))), ["purpose-not-for-role"])
	denied(decide(request("read", "opsporing", vt_af, referred(veilig_thuis, "opsporing", ["seksueel"]))), ["purpose-not-for-role"])
}

test_care_organisations_not_in_the_drieluik if {
	denied(decide(refer(ketenregisseur, fier, "drieluik", base_signal)), ["recipient-not-for-purpose"])
	denied(decide(refer(ketenregisseur, veilig_thuis, "drieluik", signal({"victimMinor": true}))), ["recipient-not-for-purpose"])
}

test_refer_to_veilig_thuis_when_victim_minor_or_domestic if {
	masked(decide(refer(zorgcoordinator, veilig_thuis, "zorgcoordinatie", signal({"victimMinor": true}))), "zorgcoordinatie", care_fields, "veilig-thuis-zorgcoordinatie")
	masked(decide(refer(zorgcoordinator, veilig_thuis, "zorgcoordinatie", signal({"domesticSetting": true}))), "zorgcoordinatie", care_fields, "veilig-thuis-zorgcoordinatie")
	masked(decide(refer(ketenregisseur, veilig_thuis, "zorgcoordinatie", signal({"victimMinor": true, "domesticSetting": true}))), "zorgcoordinatie", care_fields, "veilig-thuis-zorgcoordinatie")
}

test_veilig_thuis_not_for_an_adult_outside_the_home if {
	denied(decide(refer(zorgcoordinator, veilig_thuis, "zorgcoordinatie", base_signal)), ["condition-not-met"])
}

test_veilig_thuis_receives_referred_signals_meeting_the_condition if {
	minor := object.union(referred(veilig_thuis, "zorgcoordinatie", ["seksueel"]), {"victimMinor": true})
	masked(decide(request("deliver", "zorgcoordinatie", vt_af, minor)), "zorgcoordinatie", care_fields, "veilig-thuis-zorgcoordinatie")
	masked(decide(request("read", "zorgcoordinatie", vt_af, minor)), "zorgcoordinatie", care_fields, "veilig-thuis-zorgcoordinatie")
	adult := referred(veilig_thuis, "zorgcoordinatie", ["seksueel"])
	denied(decide(request("deliver", "zorgcoordinatie", vt_af, adult)), ["condition-not-met"])
	denied(decide(request("deliver", "zorgcoordinatie", vt_af, signal({"victimMinor": true}))), ["not-referred"])
	denied(decide(request("deliver", "zorgcoordinatie", vt_af, base_signal)), ["condition-not-met", "not-referred"])
}

# --- 6. the RIEC: phenomenon level only --------------------------------------------

test_refer_to_riec_for_fenomeenanalyse_is_aggregate_only if {
	d := decide(refer(ketenregisseur, riec, "fenomeenanalyse", base_signal))
	d == {
		"allow": true,
		"mode": "aggregate",
		"fields": [],
		"reasons": ["grant:fenomeen-aggregaat"],
		"legalBasis": basis("fenomeenanalyse"),
		"scope": null,
	}
	decide(refer(zorgcoordinator, riec, "fenomeenanalyse", with_forms(["onbekend"]))).mode == "aggregate"
}

test_refer_to_any_non_member_for_fenomeenanalyse_is_aggregate_only if {
	d := decide(refer(ketenregisseur, registry_non_member(emmen), "fenomeenanalyse", base_signal))
	d.allow == true
	d.mode == "aggregate"
	d.fields == []
}

test_no_record_to_riec_for_any_other_purpose if {
	denied(decide(refer(ketenregisseur, riec, "opsporing", base_signal)), ["non-member-aggregate-only"])
	denied(decide(refer(ketenregisseur, riec, "drieluik", base_signal)), ["non-member-aggregate-only"])
	denied(decide(refer(zorgcoordinator, riec, "zorgcoordinatie", base_signal)), ["non-member-aggregate-only"])
}

test_no_record_to_a_member_kind_that_is_not_a_member_in_the_registry if {
	denied(decide(refer(ketenregisseur, registry_non_member(politie), "opsporing", base_signal)), ["non-member-aggregate-only"])
	denied(decide(refer(zorgcoordinator, registry_non_member(fier), "zorgcoordinatie", base_signal)), ["non-member-aggregate-only"])
}

test_fenomeenanalyse_referral_only_to_non_members if {
	denied(decide(refer(ketenregisseur, politie, "fenomeenanalyse", base_signal)), ["recipient-not-for-purpose"])
}

test_only_referrers_refer_to_riec if {
	denied(decide(refer(af_veiligheid, riec, "fenomeenanalyse", base_signal)), ["not-a-referrer"])
	denied(decide(refer(rechercheur, riec, "fenomeenanalyse", base_signal)), ["not-a-referrer"])
}

test_refer_to_suspended_riec_is_denied if {
	denied(decide(refer(ketenregisseur, suspended(riec), "fenomeenanalyse", base_signal)), ["recipient-inactive"])
}

# =====================================================================================
# Non-members never receive a record
# =====================================================================================

test_riec_analist_is_denied_every_exchange_action if {
	every action in ["submit", "read", "list", "refer", "deliver"] {
		every purpose in ["signalering", "drieluik", "zorgcoordinatie", "opsporing", "fenomeenanalyse", "verantwoording"] {
			denied(
				decide(object.union(request(action, purpose, analist, referred(riec, purpose, ["seksueel"])), {"recipient": zvhd})),
				["non-member-aggregate-only"],
			)
		}
	}
}

test_riec_fg_is_denied_exchange if {
	denied(decide(request("read", "verantwoording", as_role(riec, "fg"), base_signal)), ["non-member-aggregate-only"])
}

test_registry_non_member_is_denied_even_with_a_grant if {
	nm := registry_non_member(assen)
	denied(decide(submit(as_role(nm, "aandachtfunctionaris-veiligheid"), zvhd, base_signal)), ["non-member-aggregate-only"])
	denied(decide(request("read", "signalering", as_role(nm, "aandachtfunctionaris-sociaal"), base_signal)), ["non-member-aggregate-only"])
	nz := registry_non_member(zvhd)
	denied(decide(request("read", "drieluik", as_role(nz, "ketenregisseur"), base_signal)), ["non-member-aggregate-only"])
	denied(decide(refer(as_role(nz, "ketenregisseur"), riec, "fenomeenanalyse", base_signal)), ["non-member-aggregate-only"])
}

test_member_flag_must_be_a_boolean if {
	denied(decide(request("read", "drieluik", object.union(ketenregisseur, {"member": "true"}), base_signal)), ["principal-unknown"])
	denied(decide(request("read", "drieluik", object.remove(ketenregisseur, ["member"]), base_signal)), ["principal-unknown"])
}

# =====================================================================================
# Who may refer
# =====================================================================================

test_only_ketenregisseur_and_zorgcoordinator_refer if {
	denied(decide(refer(rechercheur, nla, "opsporing", with_forms(["arbeid"]))), ["not-a-referrer"])
	denied(decide(refer(inspecteur, politie, "opsporing", base_signal)), ["not-a-referrer"])
	denied(decide(refer(officier, politie, "opsporing", base_signal)), ["not-a-referrer"])
	denied(decide(refer(vt_af, fier, "zorgcoordinatie", base_signal)), ["not-a-referrer"])
	denied(decide(refer(hulpverlener, veilig_thuis, "zorgcoordinatie", signal({"victimMinor": true}))), ["not-a-referrer"])
	denied(decide(refer(as_role(zvhd, "fg"), politie, "drieluik", base_signal)), ["not-a-referrer"])
}

test_referrers_refer_only_for_referral_purposes if {
	denied(decide(refer(ketenregisseur, zvhd, "signalering", base_signal)), ["purpose-not-for-role"])
	denied(decide(refer(zorgcoordinator, politie, "verantwoording", base_signal)), ["purpose-not-for-role"])
}

test_refer_needs_a_recipient_with_a_referral_grant if {
	denied(decide(refer(ketenregisseur, emmen, "zorgcoordinatie", base_signal)), ["recipient-not-for-purpose"])
	denied(decide(refer(ketenregisseur, zvhd, "drieluik", base_signal)), ["recipient-not-for-purpose"])
	denied(decide(refer(ketenregisseur, politie, "zorgcoordinatie", base_signal)), ["recipient-not-for-purpose"])
	denied(decide(refer(ketenregisseur, nla, "drieluik", with_forms(["arbeid"]))), ["recipient-not-for-purpose"])
}

test_refer_needs_a_valid_active_recipient if {
	denied(decide(request("refer", "opsporing", ketenregisseur, base_signal)), ["recipient-unknown"])
	denied(decide(refer(ketenregisseur, suspended(politie), "opsporing", base_signal)), ["recipient-inactive"])
	denied(decide(refer(ketenregisseur, object.union(politie, {"kind": "marechaussee"}), "opsporing", base_signal)), ["recipient-unknown"])
	denied(decide(refer(ketenregisseur, "politie", "opsporing", base_signal)), ["recipient-unknown"])
	denied(decide(refer(ketenregisseur, object.remove(politie, ["partner"]), "opsporing", base_signal)), ["recipient-unknown"])
}

test_referring_an_already_referred_signal_again_is_allowed if {
	masked(decide(refer(ketenregisseur, politie, "drieluik", referred(politie, "drieluik", ["seksueel"]))), "drieluik", no_health_fields, "politie-drieluik")
}

# =====================================================================================
# The caller, the purpose, the request, the signal
# =====================================================================================

test_suspended_principal_is_denied if {
	denied(decide(request("read", "drieluik", suspended(ketenregisseur), base_signal)), ["principal-inactive"])
	denied(decide(submit(suspended(af_veiligheid), zvhd, base_signal)), ["principal-inactive"])
	denied(decide(refer(suspended(zorgcoordinator), politie, "drieluik", base_signal)), ["principal-inactive"])
	denied(decide(request("deliver", "opsporing", suspended(inspecteur), referred(nla, "opsporing", ["arbeid"]))), ["principal-inactive"])
	denied(decide(request("read", "drieluik", object.union(ketenregisseur, {"status": "revoked"}), base_signal)), ["principal-inactive"])
}

test_unknown_kind_is_denied if {
	denied(decide(request("read", "drieluik", object.union(ketenregisseur, {"kind": "provincie"}), base_signal)), ["principal-unknown"])
	denied(decide(request("read", "drieluik", object.union(ketenregisseur, {"kind": 1}), base_signal)), ["principal-unknown"])
}

test_missing_or_malformed_principal_is_denied if {
	denied(decide({"action": "read", "purpose": "drieluik", "signal": base_signal}), ["principal-unknown"])
	denied(decide(request("read", "drieluik", "zvhd", base_signal)), ["principal-unknown"])
	denied(decide(request("read", "drieluik", object.remove(ketenregisseur, ["partner"]), base_signal)), ["principal-unknown"])
	denied(decide(request("read", "drieluik", object.remove(ketenregisseur, ["status"]), base_signal)), ["principal-unknown"])
}

test_unknown_role_is_denied if {
	denied(decide(request("read", "drieluik", as_role(zvhd, "directeur"), base_signal)), ["role-unknown"])
	denied(decide(request("read", "drieluik", as_role(politie, "ketenregisseur"), base_signal)), ["role-unknown"])
	denied(decide(request("read", "drieluik", object.remove(ketenregisseur, ["role"]), base_signal)), ["role-unknown"])
	denied(decide(request("read", "drieluik", as_role(zvhd, ["ketenregisseur"]), base_signal)), ["role-unknown"])
}

test_unknown_or_missing_purpose_is_denied if {
	denied(decide(request("read", "marketing", ketenregisseur, base_signal)), ["purpose-unknown"])
	denied(decide(request("read", null, ketenregisseur, base_signal)), ["purpose-unknown"])
	denied(decide(request("read", ["drieluik"], ketenregisseur, base_signal)), ["purpose-unknown"])
	denied(decide({"action": "read", "principal": ketenregisseur, "signal": base_signal}), ["purpose-unknown"])
}

test_fg_has_no_exchange_purpose if {
	member_kinds := [kind | some kind, spec in data.covenant.kinds; spec.member == true]
	count(member_kinds) == 7
	every kind in member_kinds {
		every purpose, _ in data.covenant.purposes {
			denied(decide(request("read", purpose, as_role({"partner": kind, "kind": kind, "member": true, "status": "active"}, "fg"), base_signal)), ["purpose-not-for-role"])
		}
	}
}

test_unknown_or_missing_action_is_denied if {
	denied(decide(request("delete", "drieluik", ketenregisseur, base_signal)), ["action-unknown"])
	denied(decide(request("audit-query", "verantwoording", as_role(zvhd, "fg"), base_signal)), ["action-unknown"])
	denied(decide(request("release-aggregate", "fenomeenanalyse", ketenregisseur, base_signal)), ["action-unknown"])
	denied(decide({"purpose": "drieluik", "principal": ketenregisseur, "signal": base_signal}), ["action-unknown"])
	denied(decide(request(["read"], "drieluik", ketenregisseur, base_signal)), ["action-unknown"])
}

test_input_that_is_not_an_object_is_denied if {
	denied(decide("read"), ["action-unknown"])
	denied(decide([]), ["action-unknown"])
	denied(decide(null), ["action-unknown"])
	denied(decide({}), ["action-unknown"])
}

test_the_first_failing_step_decides if {
	# unknown kind AND unknown purpose: the caller is checked first
	denied(decide(request("read", "marketing", as_role(object.union(zvhd, {"kind": "x"}), "fg"), base_signal)), ["principal-unknown"])

	# suspended non-member: the status is checked before membership
	denied(decide(request("read", "fenomeenanalyse", suspended(analist), base_signal)), ["principal-inactive"])

	# unknown purpose of a non-member: the purpose is checked before membership
	denied(decide(request("read", "marketing", analist, base_signal)), ["purpose-unknown"])

	# no signal and no referrer role: the role is checked before the signal
	denied(decide(refer(af_veiligheid, politie, "opsporing", null)), ["not-a-referrer"])
}

test_missing_signal_is_denied if {
	denied(decide({"action": "read", "purpose": "drieluik", "principal": ketenregisseur}), ["signal-missing"])
	denied(decide(submit(af_veiligheid, zvhd, null)), ["signal-missing"])
	denied(decide(refer(ketenregisseur, riec, "fenomeenanalyse", null)), ["signal-missing"])
}

test_malformed_signal_is_denied if {
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"forms": "seksueel"}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"forms": ["mensensmokkel"]}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"forms": [1]}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"referrals": {"partner": "politie"}}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"referrals": ["politie"]}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"referrals": [{"partner": "politie"}]}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"victimMinor": "no"}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"domesticSetting": null}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"reporter": ""}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, signal({"reporter": 7}))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, object.remove(base_signal, ["victimMinor"]))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, object.remove(base_signal, ["referrals"]))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, object.remove(base_signal, ["status"]))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, object.remove(base_signal, ["municipality"]))), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, "signal")), ["signal-invalid"])
	denied(decide(request("read", "drieluik", ketenregisseur, [base_signal])), ["signal-invalid"])
}

test_recipient_in_a_read_is_ignored if {
	req := object.union(request("read", "drieluik", ketenregisseur, base_signal), {"recipient": riec})
	full(decide(req), "drieluik", "zvhd-ketenregisseur")
}

# =====================================================================================
# Every grant row of the covenant table is reachable, and nothing else is
# =====================================================================================

test_every_grant_row_is_exercised if {
	ids := {id |
		some req in grant_examples
		some reason in decide(req).reasons
		startswith(reason, "grant:")
		id := substring(reason, 6, -1)
	}
	ids == {g.id | some g in data.covenant.grants}
}

grant_examples := [
	submit(af_veiligheid, zvhd, base_signal),
	submit(zorgcoordinator, zvhd, signal({"reporter": "zvhd"})),
	submit(rechercheur, zvhd, signal({"reporter": "politie"})),
	submit(vt_af, zvhd, signal({"reporter": "veilig-thuis-drenthe"})),
	request("read", "drieluik", ketenregisseur, base_signal),
	request("read", "zorgcoordinatie", zorgcoordinator, base_signal),
	request("read", "drieluik", rechercheur, referred(politie, "drieluik", ["seksueel"])),
	request("read", "opsporing", rechercheur, referred(politie, "opsporing", ["seksueel"])),
	request("read", "opsporing", inspecteur, referred(nla, "opsporing", ["arbeid"])),
	request("read", "opsporing", officier, referred(om, "opsporing", ["orgaan"])),
	request("read", "zorgcoordinatie", hulpverlener, referred(fier, "zorgcoordinatie", ["arbeid"])),
	object.union(request("read", "zorgcoordinatie", vt_af, referred(veilig_thuis, "zorgcoordinatie", ["arbeid"])), {"signal": object.union(referred(veilig_thuis, "zorgcoordinatie", ["arbeid"]), {"domesticSetting": true})}),
	# The signal's life after intake (lifecycle_test.rego).
	request("assess", "drieluik", ketenregisseur, with_forms(["onbekend"])),
	object.union(request("transition", "drieluik", zorgcoordinator, base_signal), {"transition": {"to": "in-behandeling"}}),
	request("correct", "signalering", af_sociaal, base_signal),
	request("request-correction", "signalering", af_sociaal, signal({"status": "doorverwezen"})),
	request("track", "signalering", af_veiligheid, base_signal),
	object.union(request("feedback", "drieluik", rechercheur, referred(politie, "drieluik", ["onbekend"])), {"feedback": "ontvangen"}),
	object.union(request("feedback", "opsporing", inspecteur, referred(nla, "opsporing", ["arbeid"])), {"feedback": "in-onderzoek"}),
	object.union(request("feedback", "opsporing", officier, referred(om, "opsporing", ["orgaan"])), {"feedback": "afgerond"}),
	object.union(request("feedback", "zorgcoordinatie", hulpverlener, referred(fier, "zorgcoordinatie", ["arbeid"])), {"feedback": "niet-opgepakt"}),
	object.union(request("feedback", "zorgcoordinatie", vt_af, referred(veilig_thuis, "zorgcoordinatie", ["arbeid"])), {"feedback": "ontvangen"}),
]

test_every_decision_has_the_six_keys if {
	every req in array.concat(grant_examples, [
		{},
		request("read", "marketing", ketenregisseur, base_signal),
		refer(ketenregisseur, riec, "fenomeenanalyse", base_signal),
		refer(ketenregisseur, riec, "opsporing", base_signal),
	]) {
		{k | some k, _ in decide(req)} == {"allow", "mode", "fields", "reasons", "legalBasis", "scope"}
	}
}

test_only_full_or_masked_decisions_carry_fields if {
	every req in grant_examples {
		d := decide(req)
		d.mode in {"full", "masked"}
		count(d.fields) > 0
	}
	decide(refer(ketenregisseur, riec, "fenomeenanalyse", base_signal)).fields == []
}
