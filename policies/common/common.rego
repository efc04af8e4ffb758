# Helpers shared by the covenant policies (exchange, audit, phenomena).
#
# Everything the covenant says lives in data.json under data.covenant; this
# file only knows how to read it. The rules are written to evaluate the same
# in regorus (the engine inside ketenpoort) and in OPA (the conformance
# oracle): no print, no http/time/crypto/regex builtins, every builtin call is
# guarded by a type check, and every list that leaves a decision is sorted.
#
# ketenpoort runs them compiled to regorus' bytecode (RVM), which in regorus
# 0.14.1 differs from the interpreter in two shapes, so neither is used: a
# function body that fails on an undefined value (obj[key] of a missing key)
# does not fall through to its else, and an else after a body that loops
# (some x in xs) is never reached. Such loops live in a rule of their own.
package ketenpoort.common

# ---------------------------------------------------------------------------
# Reading the request safely
# ---------------------------------------------------------------------------

# The request. Anything that is not a JSON object counts as an empty request,
# which every area denies.
req := input if {
	is_object(input)
} else := {}

# get(obj, key): obj[key], or null when obj is not an object or has no such
# key. Always defined, so a missing field never makes a rule undefined.
get(obj, key) := object.get(obj, key, null) if {
	is_object(obj)
} else := null

# ---------------------------------------------------------------------------
# Decisions: every decision has exactly these six keys
# ---------------------------------------------------------------------------

# sorted_unique(xs): the elements of xs (an array or a set), sorted, without
# duplicates, as an array. Sets are never returned as such: both engines then
# produce the same JSON.
sorted_unique(xs) := sort([x | some x in {y | some y in xs}])

# deny(reasons): a refusal with the given reason codes (a set or an array).
deny(reasons) := {
	"allow": false,
	"mode": "deny",
	"fields": [],
	"reasons": sorted_unique(reasons),
	"legalBasis": null,
	"scope": null,
}

# legal_basis(purpose): the legal basis the covenant names for a purpose.
legal_basis(purpose) := data.covenant.purposes[purpose].legalBasis

# ---------------------------------------------------------------------------
# Partners: the principal (the caller) and the recipient
# ---------------------------------------------------------------------------

# known_kind(kind): kind is one of the partner kinds of the covenant.
known_kind(kind) if {
	is_string(kind)
	is_object(data.covenant.kinds[kind])
}

# A partner entry names its partner id, a known kind, its registry membership
# flag and its status.
well_formed_partner(p) if {
	is_object(p)
	is_string(p.partner)
	p.partner != ""
	is_string(p.kind)
	is_object(data.covenant.kinds[p.kind])
	is_boolean(p.member)
	is_string(p.status)
}

# role_allowed(p): the token role is one of the roles of the partner's kind.
role_allowed(p) if {
	is_string(p.role)
	p.role in data.covenant.kinds[p.kind].roles
}

# is_member(p): a covenant member is one whose registry entry says so AND
# whose kind is a member kind. Either one false makes it a non-member.
is_member(p) if {
	p.member == true
	data.covenant.kinds[p.kind].member == true
}

# principal_problems(p): why the caller cannot act at all (empty if it can).
principal_problems(p) := {"principal-unknown"} if {
	not well_formed_partner(p)
} else := {"role-unknown"} if {
	not role_allowed(p)
} else := {"principal-inactive"} if {
	p.status != "active"
} else := set()

# recipient_problems(r): why a partner cannot receive anything (empty if it
# can). A recipient is a partner, not a person: it has no role.
recipient_problems(r) := {"recipient-unknown"} if {
	not well_formed_partner(r)
} else := {"recipient-inactive"} if {
	r.status != "active"
} else := set()

# ---------------------------------------------------------------------------
# Purposes
# ---------------------------------------------------------------------------

# known_purpose(purpose): purpose is a processing activity of the covenant.
known_purpose(purpose) if {
	is_string(purpose)
	is_object(data.covenant.purposes[purpose])
}

purpose_problems(purpose) := set() if {
	known_purpose(purpose)
} else := {"purpose-unknown"}

# ---------------------------------------------------------------------------
# Referrers: who may pass a signal on (the Drieluik decides)
# ---------------------------------------------------------------------------

is_referrer(p) if {
	some referrer in data.covenant.referrers
	referrer.kind == p.kind
	p.role in referrer.roles
}

may_refer_for(p, purpose) if {
	some referrer in data.covenant.referrers
	referrer.kind == p.kind
	p.role in referrer.roles
	purpose in referrer.purposes
}

# ---------------------------------------------------------------------------
# Signals (only non-identifying facts about a record reach the policy)
# ---------------------------------------------------------------------------

valid_form(form) if {
	is_string(form)
	form in data.covenant.forms
}

valid_referral(referral) if {
	is_object(referral)
	is_string(referral.partner)
	is_string(referral.purpose)
}

# Every key of the signal is present with its type; forms come from the
# covenant's list of exploitation forms.
valid_signal(s) if {
	is_object(s)
	is_string(s.reporter)
	s.reporter != ""
	is_string(s.municipality)
	is_array(s.forms)
	every form in s.forms {
		valid_form(form)
	}
	is_boolean(s.victimMinor)
	is_boolean(s.domesticSetting)
	is_array(s.referrals)
	every referral in s.referrals {
		valid_referral(referral)
	}
	is_string(s.status)
}

signal_problems(s) := {"signal-missing"} if {
	s == null
} else := set() if {
	valid_signal(s)
} else := {"signal-invalid"}

# own_report(s, p): the signal was reported by the principal's organisation.
own_report(s, p) if s.reporter == p.partner

# referred(s, partner, purpose): the signal carries a referral of exactly this
# partner for exactly this purpose. Placing a signal on the Drieluik agenda is
# a referral to the police for purpose drieluik.
referred(s, partner, purpose) if {
	some referral in s.referrals
	referral.partner == partner
	referral.purpose == purpose
}

# known_form_of(s): the signal names at least one exploitation form other
# than "onbekend" (unknown).
has_known_form(s) if {
	some form in s.forms
	form != data.covenant.unknownForm
}

# form_problems(s, mandate): a signal reaches an investigating partner only
# with a form in its mandate; a signal whose form is unknown reaches none.
form_problems(s, mandate) := {"form-unknown"} if {
	not has_known_form(s)
} else := set() if {
	form_in_mandate(s, mandate)
} else := {"form-not-in-mandate"}

form_in_mandate(s, mandate) if {
	some form in s.forms
	form in mandate
}

# condition_met(name, s): the named conditions a grant can carry. An unknown
# condition name is never met (fail closed).
condition_met("victim-minor-or-domestic", s) if s.victimMinor == true

condition_met("victim-minor-or-domestic", s) if s.domesticSetting == true

# ---------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------

# Every classified field of a signal, as a set, sorted, and counted.
all_field_set := {field |
	some fields in data.covenant.classes
	some field in fields
}

all_fields := sort(all_field_set)

all_field_count := count(all_field_set)

# fields_of_classes(classes): the sorted field paths of the given classes.
# An unknown class name contributes nothing.
fields_of_classes(classes) := sorted_unique([field |
	some class in classes
	some field in data.covenant.classes[class]
])

# grant_field_set(grant): the field paths a grant gives: the fields of its
# classes, less the fields it names in excludeFields (if any), plus the
# fields it names in fields (if any: a lifecycle grant names only "status").
# A set: a decision unions those of its grants and sorts once.
grant_field_set(grant) := ({field |
	some class in grant.classes
	some field in data.covenant.classes[class]
} - {field | some field in object.get(grant, "excludeFields", [])}) | {field | some field in named_fields(grant)}

named_fields(grant) := grant.fields if {
	is_array(grant.fields)
} else := []


# mode_for(fields): full when the recipient gets every classified field,
# masked otherwise.
mode_for(fields) := "full" if {
	count(fields) == all_field_count
} else := "masked"
