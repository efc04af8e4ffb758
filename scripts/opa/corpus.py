#!/usr/bin/env python3
"""Generate a deterministic corpus of policy inputs for the conformance check.

    python3 scripts/opa/corpus.py [--seed N] [--out FILE] [--check]

Writes JSON lines {"entrypoint": "data.ketenpoort.<area>.decision",
"input": {...}} covering every action, purpose, partner kind and role,
member and non-member principals and recipients, every status, combinations of
exploitation forms, referral states and audit query kinds, and malformed
requests: unknown purposes, roles, kinds and actions, missing fields and wrong
types (forms as a string, member as a string, ...).

The corpus depends only on the seed (default 20250101): the same seed gives
the same file, byte for byte.

--check evaluates the corpus in the OPA engine (see scripts/opa/install) and
fails unless every input generated as malformed or invalid is denied; it also
prints the decision modes. conformance.py compares the corpus between OPA and
ketenpoort.
"""

import argparse
import copy
import itertools
import json
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXCHANGE = "data.ketenpoort.exchange.decision"
AUDIT = "data.ketenpoort.audit.decision"
PHENOMENA = "data.ketenpoort.phenomena.decision"

MUNICIPALITIES = [
    "aa-en-hunze", "assen", "borger-odoorn", "coevorden", "de-wolden", "emmen",
    "hoogeveen", "meppel", "midden-drenthe", "noordenveld", "tynaarlo", "westerveld",
]

# kind -> (member kind?, roles, partner ids); mirrors COVENANT.md on purpose:
# the corpus must not be derived from the policy data it tests.
KINDS = {
    "gemeente": (True, ["aandachtfunctionaris-veiligheid", "aandachtfunctionaris-sociaal", "fg"], MUNICIPALITIES),
    "zvhd": (True, ["ketenregisseur", "zorgcoordinator", "fg"], ["zvhd"]),
    "politie": (True, ["rechercheur", "fg"], ["politie"]),
    "nla": (True, ["inspecteur", "fg"], ["nla"]),
    "om": (True, ["officier", "fg"], ["om"]),
    "veilig-thuis": (True, ["aandachtfunctionaris", "fg"], ["veilig-thuis-drenthe"]),
    "zorgpartner": (True, ["hulpverlener", "fg"], ["fier", "leger-des-heils"]),
    "riec": (False, ["analist", "fg"], ["riec-noord-nederland"]),
}

PURPOSES = ["signalering", "drieluik", "zorgcoordinatie", "opsporing", "fenomeenanalyse", "verantwoording"]
EXCHANGE_ACTIONS = ["submit", "read", "list", "refer", "deliver"]
FORMS = ["seksueel", "arbeid", "crimineel", "orgaan", "onbekend"]
QUERIES = ["entries", "search", "subject", "export"]
STATUSES = ["active", "suspended"]
SIGNAL_STATUSES = ["nieuw", "in-behandeling", "drieluik", "doorverwezen", "afgesloten"]
# The signal's life after intake (issue 14): its actions, the state machine's
# statuses (and one it does not know), closing reasons and feedback codes,
# each with values the covenant does not know and values of the wrong type.
LIFECYCLE_ACTIONS = ["assess", "correct", "history", "transition", "track", "feedback",
                     "request-correction", "review-corrections"]
LIFECYCLE_STATUSES = ["nieuw", "in-behandeling", "drieluik", "doorverwezen", "zorgtraject", "afgesloten", "gesloten"]
CLOSING_REASONS = ["geen-mensenhandel", "doorgezet", "zorg-geregeld", "onvoldoende-informatie", "elders-belegd",
                   "opgelost", None, 3]
FEEDBACK_CODES = ["ontvangen", "in-onderzoek", "afgerond", "niet-opgepakt", "bezig", None, 7, ["ontvangen"]]

# Every combination of forms of size 0..2, plus all known forms together.
FORM_SETS = (
    [[]]
    + [[f] for f in FORMS]
    + [list(c) for c in itertools.combinations(FORMS, 2)]
    + [["seksueel", "arbeid", "crimineel", "orgaan"]]
)


class Corpus:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.cases = []  # (entrypoint, input, must_deny)

    def add(self, entrypoint, inp, must_deny=False):
        self.cases.append((entrypoint, copy.deepcopy(inp), must_deny))

    # -- building blocks -------------------------------------------------------

    def partner_id(self, kind):
        return self.rng.choice(KINDS[kind][2])

    def principal(self, kind, role, member=None, status="active", partner=None):
        return {
            "partner": partner or self.partner_id(kind),
            "kind": kind,
            "member": KINDS[kind][0] if member is None else member,
            "role": role,
            "status": status,
        }

    def recipient(self, kind, member=None, status="active", partner=None):
        return {
            "partner": partner or self.partner_id(kind),
            "kind": kind,
            "member": KINDS[kind][0] if member is None else member,
            "status": status,
        }

    def signal(self, reporter=None, forms=None, referrals=None, minor=None, domestic=None):
        municipality = self.rng.choice(MUNICIPALITIES)
        return {
            "reporter": reporter or municipality,
            "municipality": municipality,
            "forms": self.rng.choice(FORM_SETS) if forms is None else forms,
            "victimMinor": self.rng.random() < 0.3 if minor is None else minor,
            "domesticSetting": self.rng.random() < 0.3 if domestic is None else domestic,
            "referrals": [] if referrals is None else referrals,
            "status": self.rng.choice(SIGNAL_STATUSES),
        }

    def referral_state(self, principal, purpose):
        """A random referral state for a signal read by principal."""
        me = principal["partner"]
        other = self.rng.choice(["politie", "nla", "om", "fier", "veilig-thuis-drenthe", "zvhd"])
        other_purpose = self.rng.choice([p for p in PURPOSES if p != purpose])
        return self.rng.choice([
            [],
            [{"partner": me, "purpose": purpose}],
            [{"partner": me, "purpose": other_purpose}],
            [{"partner": other, "purpose": purpose}],
            [{"partner": other, "purpose": other_purpose}, {"partner": me, "purpose": purpose}],
        ])

    def reporter_for(self, principal):
        """The principal's own partner id or another partner's, at random."""
        if self.rng.random() < 0.5:
            return principal["partner"]
        return self.rng.choice([m for m in MUNICIPALITIES if m != principal["partner"]])

    @staticmethod
    def request(action, purpose, principal, **rest):
        req = {"action": action, "purpose": purpose, "principal": principal}
        req.update(rest)
        return req

    # -- exchange --------------------------------------------------------------

    def exchange_matrix(self):
        """Every kind x role x exchange action x purpose, with plausible signals."""
        for kind, (_, roles, _) in KINDS.items():
            for role in roles:
                for action in EXCHANGE_ACTIONS:
                    for purpose in PURPOSES:
                        p = self.principal(kind, role)
                        sig = self.signal(
                            reporter=self.reporter_for(p),
                            referrals=self.referral_state(p, purpose),
                        )
                        req = self.request(action, purpose, p, signal=sig)
                        if action == "submit":
                            req["recipient"] = self.recipient("zvhd")
                        elif action == "refer":
                            rkind = self.rng.choice(list(KINDS))
                            req["recipient"] = self.recipient(rkind)
                        self.add(EXCHANGE, req, must_deny=not KINDS[kind][0] or role == "fg")

    def refer_matrix(self):
        """Both referrers x every recipient kind x every purpose."""
        for role in ["ketenregisseur", "zorgcoordinator"]:
            for rkind in KINDS:
                for purpose in PURPOSES:
                    p = self.principal("zvhd", role)
                    r = self.recipient(rkind)
                    sig = self.signal()
                    self.add(EXCHANGE, self.request("refer", purpose, p, recipient=r, signal=sig))

    def forms_matrix(self):
        """Every form set, referred to each investigating partner and read back."""
        for rkind, role in [("politie", "rechercheur"), ("nla", "inspecteur"), ("om", "officier")]:
            for forms in FORM_SETS:
                p = self.principal("zvhd", self.rng.choice(["ketenregisseur", "zorgcoordinator"]))
                r = self.recipient(rkind)
                self.add(EXCHANGE, self.request("refer", "opsporing", p, recipient=r, signal=self.signal(forms=forms)))
                q = self.principal(rkind, role)
                referrals = [{"partner": q["partner"], "purpose": "opsporing"}]
                action = self.rng.choice(["read", "deliver", "list"])
                self.add(EXCHANGE, self.request(action, "opsporing", q, signal=self.signal(forms=forms, referrals=referrals)))

    def care_matrix(self):
        """Care referrals and deliveries for every victim-minor/domestic combination."""
        for minor, domestic in itertools.product([False, True], repeat=2):
            for rkind, role in [("veilig-thuis", "aandachtfunctionaris"), ("zorgpartner", "hulpverlener")]:
                p = self.principal("zvhd", "zorgcoordinator")
                r = self.recipient(rkind)
                sig = self.signal(minor=minor, domestic=domestic)
                self.add(EXCHANGE, self.request("refer", "zorgcoordinatie", p, recipient=r, signal=sig))
                q = self.principal(rkind, role)
                for referred in [False, True]:
                    referrals = [{"partner": q["partner"], "purpose": "zorgcoordinatie"}] if referred else []
                    sig = self.signal(minor=minor, domestic=domestic, referrals=referrals)
                    self.add(EXCHANGE, self.request("deliver", "zorgcoordinatie", q, signal=sig), must_deny=not referred)

    def grant_paths(self):
        """The allowed paths of every grant row, with varied signals."""
        for kind, role in [("zvhd", "ketenregisseur"), ("zvhd", "zorgcoordinator"),
                           ("politie", "rechercheur"), ("veilig-thuis", "aandachtfunctionaris")]:
            for forms in self.rng.sample(FORM_SETS, 4):
                p = self.principal(kind, role)
                own = self.signal(reporter=p["partner"], forms=forms)
                self.add(EXCHANGE, self.request("submit", "signalering", p, recipient=self.recipient("zvhd"), signal=own))
                self.add(EXCHANGE, self.request("read", "signalering", p, signal=own))
        for role, purposes in [("ketenregisseur", ["signalering", "drieluik"]),
                               ("zorgcoordinator", ["drieluik", "zorgcoordinatie"])]:
            for purpose in purposes:
                for action in ["read", "list"]:
                    for forms in self.rng.sample(FORM_SETS, 3):
                        p = self.principal("zvhd", role)
                        sig = self.signal(forms=forms, referrals=self.referral_state(p, purpose))
                        self.add(EXCHANGE, self.request(action, purpose, p, signal=sig))
        for action in ["read", "list", "deliver"]:
            for forms in self.rng.sample(FORM_SETS, 4):
                p = self.principal("politie", "rechercheur")
                referrals = [{"partner": p["partner"], "purpose": "drieluik"}]
                if self.rng.random() < 0.5:
                    referrals.append({"partner": "nla", "purpose": "opsporing"})
                sig = self.signal(forms=forms, referrals=referrals)
                self.add(EXCHANGE, self.request(action, "drieluik", p, signal=sig))

    def meldroute(self):
        """Every municipality reports, reads and lists its own and others' reports."""
        for m in MUNICIPALITIES:
            for role in ["aandachtfunctionaris-veiligheid", "aandachtfunctionaris-sociaal"]:
                p = self.principal("gemeente", role, partner=m)
                own = self.signal(reporter=m)
                other = self.signal(reporter=self.rng.choice([x for x in MUNICIPALITIES if x != m]))
                self.add(EXCHANGE, self.request("submit", "signalering", p, recipient=self.recipient("zvhd"), signal=own))
                self.add(EXCHANGE, self.request("submit", "signalering", p, recipient=self.recipient("zvhd"), signal=other), must_deny=True)
                self.add(EXCHANGE, self.request(self.rng.choice(["read", "list"]), "signalering", p, signal=own))
                self.add(EXCHANGE, self.request(self.rng.choice(["read", "list"]), "signalering", p, signal=other), must_deny=True)

    def membership_and_status(self):
        """Non-member and suspended principals and recipients."""
        for kind, (member_kind, roles, _) in KINDS.items():
            for role in roles:
                for member, status in itertools.product([True, False], ["active", "suspended", "revoked"]):
                    p = self.principal(kind, role, member=member, status=status)
                    action = self.rng.choice(EXCHANGE_ACTIONS)
                    purpose = self.rng.choice(PURPOSES)
                    req = self.request(action, purpose, p, signal=self.signal(reporter=p["partner"], referrals=self.referral_state(p, purpose)))
                    if action in ("submit", "refer"):
                        req["recipient"] = self.recipient(self.rng.choice(list(KINDS)))
                    must_deny = status != "active" or not (member and member_kind)
                    self.add(EXCHANGE, req, must_deny=must_deny)
        # recipients that are suspended, unknown or not members in the registry
        for rkind in KINDS:
            for member, status in itertools.product([True, False], STATUSES + ["revoked"]):
                p = self.principal("zvhd", self.rng.choice(["ketenregisseur", "zorgcoordinator"]))
                r = self.recipient(rkind, member=member, status=status)
                purpose = self.rng.choice(["drieluik", "opsporing", "zorgcoordinatie", "fenomeenanalyse"])
                sig = self.signal(forms=self.rng.choice([["seksueel"], ["arbeid"], ["crimineel"]]), minor=True)
                self.add(EXCHANGE, self.request("refer", purpose, p, recipient=r, signal=sig), must_deny=status != "active")
            p = self.principal("gemeente", "aandachtfunctionaris-sociaal")
            r = self.recipient(rkind, member=self.rng.choice([True, False]), status=self.rng.choice(STATUSES))
            self.add(EXCHANGE, self.request("submit", "signalering", p, recipient=r, signal=self.signal(reporter=p["partner"])),
                     must_deny=rkind != "zvhd" or r["status"] != "active" or not r["member"])

    def malformed_exchange(self):
        """Unknown values, missing fields and wrong types: all must be denied."""
        good_p = self.principal("zvhd", "ketenregisseur")
        good = self.request("read", "drieluik", good_p, signal=self.signal())
        refer = self.request("refer", "opsporing", good_p, recipient=self.recipient("politie"), signal=self.signal(forms=["seksueel"]))
        variants = []

        def without(req, *path):
            req = copy.deepcopy(req)
            obj = req
            for key in path[:-1]:
                obj = obj[key]
            del obj[path[-1]]
            return req

        def changed(req, value, *path):
            req = copy.deepcopy(req)
            obj = req
            for key in path[:-1]:
                obj = obj[key]
            obj[path[-1]] = value
            return req

        for base in (good, refer):
            variants += [
                changed(base, "marketing", "purpose"),
                changed(base, "", "purpose"),
                changed(base, None, "purpose"),
                changed(base, ["drieluik"], "purpose"),
                changed(base, 7, "purpose"),
                without(base, "purpose"),
                changed(base, "delete", "action"),
                changed(base, "READ", "action"),
                changed(base, ["read"], "action"),
                changed(base, None, "action"),
                without(base, "action"),
                without(base, "principal"),
                changed(base, None, "principal"),
                changed(base, "zvhd", "principal"),
                changed(base, [good_p], "principal"),
                changed(base, "directeur", "principal", "role"),
                changed(base, "rechercheur", "principal", "role"),
                changed(base, None, "principal", "role"),
                changed(base, ["ketenregisseur"], "principal", "role"),
                without(base, "principal", "role"),
                changed(base, "provincie", "principal", "kind"),
                changed(base, "ZVHD", "principal", "kind"),
                changed(base, 3, "principal", "kind"),
                without(base, "principal", "kind"),
                changed(base, "true", "principal", "member"),
                changed(base, 1, "principal", "member"),
                without(base, "principal", "member"),
                changed(base, "", "principal", "partner"),
                changed(base, 12, "principal", "partner"),
                without(base, "principal", "partner"),
                changed(base, "Active", "principal", "status"),
                changed(base, True, "principal", "status"),
                without(base, "principal", "status"),
                without(base, "signal"),
                changed(base, None, "signal"),
                changed(base, "signal", "signal"),
                changed(base, [base["signal"]], "signal"),
                changed(base, "seksueel", "signal", "forms"),
                changed(base, ["mensensmokkel"], "signal", "forms"),
                changed(base, [None], "signal", "forms"),
                changed(base, [1, "arbeid"], "signal", "forms"),
                changed(base, {"seksueel": True}, "signal", "forms"),
                without(base, "signal", "forms"),
                changed(base, "false", "signal", "victimMinor"),
                without(base, "signal", "victimMinor"),
                changed(base, 0, "signal", "domesticSetting"),
                without(base, "signal", "domesticSetting"),
                changed(base, {"partner": "politie", "purpose": "opsporing"}, "signal", "referrals"),
                changed(base, ["politie"], "signal", "referrals"),
                changed(base, [{"partner": "politie"}], "signal", "referrals"),
                changed(base, [{"partner": 1, "purpose": "opsporing"}], "signal", "referrals"),
                without(base, "signal", "referrals"),
                changed(base, "", "signal", "reporter"),
                changed(base, None, "signal", "reporter"),
                without(base, "signal", "reporter"),
                without(base, "signal", "municipality"),
                changed(base, 2024, "signal", "status"),
                without(base, "signal", "status"),
            ]
        variants += [
            without(refer, "recipient"),
            changed(refer, None, "recipient"),
            changed(refer, "politie", "recipient"),
            changed(refer, "marechaussee", "recipient", "kind"),
            without(refer, "recipient", "kind"),
            changed(refer, "yes", "recipient", "member"),
            without(refer, "recipient", "member"),
            changed(refer, "suspended", "recipient", "status"),
            without(refer, "recipient", "status"),
            changed(refer, "", "recipient", "partner"),
        ]
        for v in variants:
            self.add(EXCHANGE, v, must_deny=True)
        # inputs that are not objects at all, or (nearly) empty
        for junk in [{}, {"action": "read"}, {"principal": good_p}, "read", [good], None, 42]:
            self.add(EXCHANGE, junk, must_deny=True)

    # -- audit -------------------------------------------------------------------

    def audit_matrix(self):
        for kind, (_, roles, _) in KINDS.items():
            for role in roles:
                for q in QUERIES:
                    p = self.principal(kind, role)
                    self.add(AUDIT, self.request("audit-query", "verantwoording", p, audit={"query": q}))
                    # the same caller with a registry flag saying non-member
                    p2 = self.principal(kind, role, member=False)
                    self.add(AUDIT, self.request("audit-query", "verantwoording", p2, audit={"query": q}),
                             must_deny=q != "entries")
        for purpose in PURPOSES + ["controle"]:
            p = self.principal("zvhd", "fg")
            self.add(AUDIT, self.request("audit-query", purpose, p, audit={"query": self.rng.choice(QUERIES)}),
                     must_deny=purpose != "verantwoording")
        p = self.principal("zvhd", "fg")
        base = self.request("audit-query", "verantwoording", p, audit={"query": "export"})
        bad = [
            dict(base, audit={"query": "delete"}),
            dict(base, audit={"query": ["entries"]}),
            dict(base, audit={"query": None}),
            dict(base, audit="entries"),
            dict(base, audit={}),
            {k: v for k, v in base.items() if k != "audit"},
            dict(base, action="read"),
            dict(base, action="release-aggregate"),
            {k: v for k, v in base.items() if k != "action"},
            dict(base, principal=self.principal("zvhd", "fg", status="suspended")),
            dict(base, principal=self.principal("zvhd", "auditor")),
            dict(base, principal=self.principal("zvhd", "fg", member="true")),
            dict(base, principal=dict(p, kind="ap")),
            {k: v for k, v in base.items() if k != "principal"},
            {k: v for k, v in base.items() if k != "purpose"},
            dict(base, purpose=["verantwoording"]),
        ]
        for b in bad:
            self.add(AUDIT, b, must_deny=True)
        # the audit entrypoint asked about an exchange request
        self.add(AUDIT, self.request("read", "drieluik", self.principal("zvhd", "ketenregisseur"), signal=self.signal()), must_deny=True)

    # -- phenomena ---------------------------------------------------------------

    def phenomena_matrix(self):
        for kind, (_, roles, _) in KINDS.items():
            for role in roles:
                for member, status in [(None, "active"), (False, "active"), (None, "suspended")]:
                    p = self.principal(kind, role, member=member, status=status)
                    self.add(PHENOMENA, self.request("release-aggregate", "fenomeenanalyse", p),
                             must_deny=status != "active")
        p = self.principal("riec", "analist")
        for purpose in PURPOSES + ["handel", None]:
            self.add(PHENOMENA, self.request("release-aggregate", purpose, p), must_deny=purpose != "fenomeenanalyse")
        bad = [
            self.request("read", "fenomeenanalyse", p),
            self.request("audit-query", "fenomeenanalyse", p),
            {"purpose": "fenomeenanalyse", "principal": p},
            {"action": "release-aggregate", "purpose": "fenomeenanalyse"},
            self.request("release-aggregate", "fenomeenanalyse", dict(p, kind="cbs")),
            self.request("release-aggregate", "fenomeenanalyse", dict(p, role="rechercheur")),
            self.request("release-aggregate", "fenomeenanalyse", dict(p, member="false")),
            self.request("release-aggregate", "fenomeenanalyse", "riec"),
            {},
        ]
        for b in bad:
            self.add(PHENOMENA, b, must_deny=True)
        # the phenomena entrypoint asked about an exchange request
        self.add(PHENOMENA, self.request("read", "fenomeenanalyse", p, signal=self.signal()), must_deny=True)

    def lifecycle_matrix(self):
        """The actions after intake: every kind x role x action x purpose;
        every move of the state machine (known and unknown statuses, with
        and without a reason) by both ZVHD roles; feedback codes from every
        recipient, referred or not; corrections in every status; malformed
        changes."""
        for kind, (_, roles, _) in KINDS.items():
            for role in roles:
                for action in LIFECYCLE_ACTIONS:
                    for purpose in PURPOSES:
                        p = self.principal(kind, role)
                        sig = self.signal(reporter=self.reporter_for(p),
                                          referrals=self.referral_state(p, purpose))
                        sig["status"] = self.rng.choice(LIFECYCLE_STATUSES[:-1])
                        req = self.request(action, purpose, p, signal=sig)
                        if action == "transition":
                            req["transition"] = {"to": self.rng.choice(LIFECYCLE_STATUSES),
                                                 "reason": self.rng.choice(CLOSING_REASONS)}
                        elif action == "feedback":
                            req["feedback"] = self.rng.choice(FEEDBACK_CODES)
                        self.add(EXCHANGE, req, must_deny=not KINDS[kind][0] or role == "fg")
        for role in ["ketenregisseur", "zorgcoordinator"]:
            for frm in LIFECYCLE_STATUSES[:-1]:
                for to in LIFECYCLE_STATUSES:
                    for reason in self.rng.sample(CLOSING_REASONS, 3):
                        p = self.principal("zvhd", role)
                        sig = self.signal()
                        sig["status"] = frm
                        t = {"to": to} if reason is None else {"to": to, "reason": reason}
                        self.add(EXCHANGE, self.request("transition", "drieluik", p, signal=sig, transition=t),
                                 must_deny=to == "gesloten" or reason in ("opgelost", 3))
        for rkind, role, purposes in [("politie", "rechercheur", ["drieluik", "opsporing"]), ("nla", "inspecteur", ["opsporing"]),
                                      ("om", "officier", ["opsporing"]), ("zorgpartner", "hulpverlener", ["zorgcoordinatie"]),
                                      ("veilig-thuis", "aandachtfunctionaris", ["zorgcoordinatie"])]:
            for purpose in purposes:
                for code in FEEDBACK_CODES:
                    for referred in [False, True]:
                        q = self.principal(rkind, role)
                        referrals = [{"partner": q["partner"], "purpose": purpose}] if referred else []
                        req = self.request("feedback", purpose, q, signal=self.signal(referrals=referrals))
                        if code is not None:
                            req["feedback"] = code
                        self.add(EXCHANGE, req, must_deny=not referred or code not in FEEDBACK_CODES[:4])
        for m in self.rng.sample(MUNICIPALITIES, 4):
            for status in LIFECYCLE_STATUSES[:-1]:
                p = self.principal("gemeente", self.rng.choice(["aandachtfunctionaris-veiligheid", "aandachtfunctionaris-sociaal"]), partner=m)
                for own in [True, False]:
                    sig = self.signal(reporter=m if own else self.rng.choice([x for x in MUNICIPALITIES if x != m]))
                    sig["status"] = status
                    self.add(EXCHANGE, self.request("correct", "signalering", p, signal=sig),
                             must_deny=not own or status != "nieuw")
                    self.add(EXCHANGE, self.request("track", "signalering", p, signal=sig), must_deny=not own)
                    self.add(EXCHANGE, self.request("request-correction", "signalering", p, signal=sig), must_deny=not own)
        # malformed changes: a transition or feedback of the wrong shape
        p = self.principal("zvhd", "ketenregisseur")
        for t in ["afgesloten", None, 3, [], {}, {"to": 3}, {"to": None}, {"reason": "doorgezet"}, {"to": ["afgesloten"]}]:
            self.add(EXCHANGE, self.request("transition", "drieluik", p, signal=self.signal(), transition=t), must_deny=True)
        q = self.principal("nla", "inspecteur")
        sig = self.signal(referrals=[{"partner": q["partner"], "purpose": "opsporing"}])
        for f in [{}, {"status": "ontvangen"}, True, "Ontvangen"]:
            self.add(EXCHANGE, self.request("feedback", "opsporing", q, signal=sig, feedback=f), must_deny=True)

    def build(self):
        self.exchange_matrix()
        self.refer_matrix()
        self.grant_paths()
        self.forms_matrix()
        self.care_matrix()
        self.meldroute()
        self.membership_and_status()
        self.malformed_exchange()
        self.audit_matrix()
        self.phenomena_matrix()
        self.lifecycle_matrix()
        return self.cases


def generate(seed: int):
    """[(entrypoint, input, must_deny)] for the seed."""
    return Corpus(seed).build()


def line(entrypoint, inp):
    return json.dumps({"entrypoint": entrypoint, "input": inp}, sort_keys=True, ensure_ascii=False)


def check(cases, policies: Path) -> int:
    """Evaluate in OPA; fail if an input generated as invalid is allowed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from opa_test import load_engine, import_opa

    opa = import_opa()
    engine = load_engine(policies, include_tests=False)
    modes = Counter()
    bad = []
    for i, (entrypoint, inp, must_deny) in enumerate(cases, 1):
        try:
            decision = engine.eval_document(entrypoint.removeprefix("data."), inp)
        except opa.OpaError:
            decision = {"allow": False, "mode": "deny"}
        modes[decision.get("mode")] += 1
        if must_deny and decision.get("allow") is not False:
            bad.append((i, decision))
    print(f"corpus: {len(cases)} inputs, {sum(1 for c in cases if c[2])} must be denied")
    print("modes: " + ", ".join(f"{m}={n}" for m, n in sorted(modes.items())))
    for i, decision in bad[:20]:
        print(f"line {i}: expected deny, got {json.dumps(decision)}")
    if bad:
        print(f"{len(bad)} invalid inputs were not denied")
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument("--out", help="output file (default: stdout)")
    parser.add_argument("--check", action="store_true", help="evaluate in OPA: invalid inputs must be denied")
    parser.add_argument("--policies", default=str(ROOT / "policies"))
    args = parser.parse_args(argv)

    cases = generate(args.seed)
    text = "".join(line(e, i) + "\n" for e, i, _ in cases)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    elif not args.check:
        sys.stdout.write(text)
    if args.check:
        return check(cases, Path(args.policies).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
