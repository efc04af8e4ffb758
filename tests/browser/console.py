"""The privacy officer's console in a real browser (Chromium + Selenium).

Started by tests/e2e/console.rs, which runs the ketenpoort server and the
OpenID provider (oidc-provider-mock) and seeds the log. This script signs in
through the provider as a municipality's FG and as the ZVHD's FG, searches,
opens an entry, exports CSV, runs an access request, marks a control flag
reviewed, searches by user id, finds the flag of a read without a
referral, checks that a RIEC user and a non-FG role get 403 pages, runs
axe-core on every page, and — when the Rust side has tampered with a log row
at its request — checks that the browser's verification fails.

Protocol with the Rust test on stdin/stdout: the script prints
`TAMPER <index>`, then waits for one line on stdin before it reloads. At the
end it prints `RESULT <json>` with every URL and page title it saw.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".venv-py", "lib"))

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

seen_urls = []
seen_titles = []
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr, flush=True)
    else:
        print(f"ok: {what}", file=sys.stderr, flush=True)


def put_user(op, sub, claims):
    req = urllib.request.Request(
        f"{op}/users/{sub}", data=json.dumps(claims).encode(), method="PUT",
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


class Browser:
    def __init__(self, args):
        opts = webdriver.ChromeOptions()
        opts.binary_location = args.chromium
        for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,1400",
                     f"--user-data-dir={args.profile}"]:
            opts.add_argument(flag)
        # The test server's certificate is from the test's own CA.
        opts.set_capability("acceptInsecureCerts", True)
        self.d = webdriver.Chrome(service=Service(args.chromedriver), options=opts)
        self.d.set_page_load_timeout(60)
        self.base = args.url
        self.axe = open(args.axe).read()
        self.docs = args.docs

    def note(self):
        seen_urls.append(self.d.current_url)
        seen_titles.append(self.d.title)

    def get(self, path):
        self.d.get(self.base + path)
        self.note()

    def wait(self, cond, what, timeout=30):
        try:
            WebDriverWait(self.d, timeout).until(lambda d: cond(d))
            return True
        except Exception:
            check(False, f"{what} (url {self.d.current_url}, title {self.d.title!r})")
            return False

    def axe_check(self, page):
        self.d.execute_script(self.axe)
        res = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map("
            "v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))));")
        bad = [v for v in res if v["impact"] in ("serious", "critical")]
        check(not bad, f"axe: no serious or critical violation on {page}: {bad}")

    def shot(self, name):
        self.d.save_screenshot(os.path.join(self.docs, name))

    def sign_in(self, sub):
        self.d.delete_all_cookies()
        self.get("/console/aanmelden")
        self.d.find_element(By.CSS_SELECTOR, "a.button[href^='/console/aanmelden/']").click()
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=text][name=sub]"), "the provider's form")
        self.note()
        self.d.find_element(By.CSS_SELECTOR, "input[type=text][name=sub]").send_keys(sub)
        self.d.find_element(By.XPATH, "//button[normalize-space()='Authorize']").click()
        self.wait(lambda d: "/console" in d.current_url and d.find_elements(By.TAG_NAME, "h1")
                  and "Aanmelden" not in d.title, f"signed in as {sub} or refused")
        time.sleep(0.5)
        self.note()

    def verified(self, what):
        ok = self.wait(lambda d: d.find_element(By.ID, "kp-verify").get_attribute("data-result")
                       or not d.find_element(By.ID, "kp-verify-pin").get_attribute("hidden"),
                       f"verification ran on {what}")
        if not ok:
            return None
        if not self.d.find_element(By.ID, "kp-verify-pin").get_attribute("hidden"):
            self.d.find_element(By.ID, "kp-verify-pin-button").click()
            self.wait(lambda d: d.find_element(By.ID, "kp-verify").get_attribute("data-result"),
                      f"verification after pinning on {what}")
        return self.d.find_element(By.ID, "kp-verify").get_attribute("data-result")

    def search(self, query):
        self.get("/console/zoeken?" + query)
        rows = self.d.find_elements(By.CSS_SELECTOR, "table.results tbody tr")
        return [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]


def access_request(b, bsn, expected, who):
    """Runs an access request for `bsn` on the form shown; checks the report."""
    b.d.find_element(By.ID, "s-bsn").send_keys(bsn)
    b.d.find_element(By.ID, "subject-button").click()
    b.wait(lambda d: d.find_elements(By.ID, "report-h"), f"the {who}'s access request report")
    b.note()
    recipients = [e.text for e in b.d.find_elements(By.CSS_SELECTOR, "#report-table td.recipient")]
    for r in expected:
        check(r in recipients, f"the {who}'s access request names recipient {r}")
    check(bsn not in b.d.page_source and bsn not in b.d.current_url,
          f"the {who}'s report does not show the BSN")
    b.axe_check(f"access request report ({who})")


def main():
    ap = argparse.ArgumentParser()
    for a in ["url", "op", "docs", "axe", "profile", "chromium", "chromedriver", "bsn",
              "expect-own", "expect-all", "municipality", "user-id", "user-partner",
              "user-reads", "unreferred-read"]:
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()
    expected_own = [r for r in args.expect_own.split(",") if r]
    expected_all = [r for r in args.expect_all.split(",") if r]

    put_user(args.op, "fg-gemeente", {"ketenpoort_partner": args.municipality, "ketenpoort_role": "fg"})
    put_user(args.op, "fg-zvhd", {"ketenpoort_partner": "zvhd", "ketenpoort_role": "fg"})
    put_user(args.op, "fg-riec", {"ketenpoort_partner": "riec", "ketenpoort_role": "fg"})
    put_user(args.op, "medewerker-gemeente", {"ketenpoort_partner": args.municipality,
                                               "ketenpoort_role": "aandachtfunctionaris-sociaal"})

    b = Browser(args)
    try:
        # Before sign-in: the sign-in page; a page behind it sends back.
        b.get("/console/zoeken")
        check("/console/aanmelden" in b.d.current_url, "without a session: back to sign-in")
        b.axe_check("sign-in")

        # The municipality's FG.
        b.sign_in("fg-gemeente")
        check(b.d.current_url.rstrip("/").endswith("/console"), "municipality FG reaches the overview")
        result = b.verified("the overview")
        check(result == "ok", "checkpoint signature verified in the browser")
        b.axe_check("overview")
        b.shot("console-overview.png")
        b.get("/console/")
        check(b.verified("the overview, second visit") == "ok", "consistency with the last checkpoint verified")

        own = b.search("outcome=disclosed")
        check(len(own) > 0, "the municipality FG's search finds entries")
        b.axe_check("search")
        muni_count = len(own)
        first = own[0][0]
        b.get(f"/console/regels/{first}")
        check(b.verified("an entry") == "ok", "inclusion proof of an entry verified")
        check(b.d.find_elements(By.ID, "entry-facts"), "entry details shown")
        b.axe_check("entry")

        csv = b.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/console/export?outcome=disclosed', {credentials: 'same-origin'})"
            ".then(r => r.text().then(t => done([r.status, r.headers.get('content-type'), t])));")
        check(csv[0] == 200 and csv[1].startswith("text/csv"), "CSV export answers CSV")
        # The FG export is made for Dutch spreadsheets: `;` between fields
        # (and a BOM, which fetch's text() takes off; the API's export test
        # checks the bytes).
        lines = [l for l in csv[2].lstrip("\ufeff").splitlines() if l]
        check(lines[0].startswith("index;time;actorPartner") and len(lines) - 1 >= muni_count,
              f"CSV export holds the search ({len(lines) - 1} rows)")

        # Access request: invalid BSN is not echoed.
        b.get("/console/inzage")
        b.axe_check("access request form")
        b.d.find_element(By.ID, "s-bsn").send_keys("123456789")
        b.d.find_element(By.ID, "subject-button").click()
        b.wait(lambda d: d.find_elements(By.ID, "subject-error"), "an invalid BSN is a form error")
        b.note()
        check("123456789" not in b.d.page_source, "the invalid BSN is not echoed")
        access_request(b, args.bsn, expected_own, "municipality FG")

        # Control: mark the first flag reviewed.
        b.get("/console/controle")
        b.axe_check("control")
        forms = b.d.find_elements(By.CSS_SELECTOR, "section.flag form")
        check(len(forms) > 0, "the control page shows at least one flag")
        if forms:
            forms[0].find_element(By.TAG_NAME, "textarea").send_keys("Bekeken met de teamleider; geen misbruik.")
            forms[0].find_element(By.TAG_NAME, "button").click()
            b.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "section.flag p.reviewed"), "the flag shows as reviewed")
            b.note()

        # The ZVHD's FG sees more.
        b.sign_in("fg-zvhd")
        all_rows = b.search("outcome=disclosed")
        check(len(all_rows) > muni_count, f"the ZVHD FG sees more ({len(all_rows)} > {muni_count})")
        b.get("/console/inzage")
        access_request(b, args.bsn, expected_all, "ZVHD FG")
        b.shot("console-access-request.png")

        # The user filter: the id as the partner knows it, typed into the
        # form; the browser is sent on with the log's reference only.
        b.get("/console/zoeken")
        b.d.find_element(By.ID, "f-partner").send_keys(args.user_partner)
        b.d.find_element(By.ID, "f-user").send_keys(args.user_id)
        b.d.find_element(By.ID, "search-button").click()
        b.wait(lambda d: d.find_elements(By.ID, "results-h"), "the search by user")
        b.note()
        check(args.user_id not in b.d.current_url and "user=usr1" in b.d.current_url,
              "the search by user carries the reference, never the id, in its URL")
        check(args.user_id not in b.d.page_source, "the search by user never shows the id")
        found = [r.find_element(By.TAG_NAME, "a").text
                 for r in b.d.find_elements(By.CSS_SELECTOR, "table.results tbody tr")]
        check(found == args.user_reads.split(","),
              f"the search by user finds exactly the user's reads ({found})")
        check(b.d.find_elements(By.ID, "user-filter"), "the active user filter is shown")
        b.axe_check("search by user")

        # The control rule on unreferred reads names the police's read.
        b.get("/console/controle")
        flags = b.d.find_elements(By.CSS_SELECTOR, "section.flag")
        unreferred = [f for f in flags if "zonder doorverwijzing" in f.find_element(By.TAG_NAME, "h2").text]
        check(unreferred, "the control page flags reads without a referral")
        if unreferred:
            links = [a.get_attribute("href") for a in unreferred[0].find_elements(By.CSS_SELECTOR, "a")]
            check(any(l.endswith(f"/console/regels/{args.unreferred_read}") for l in links),
                  "the flag links to the police's unreferred read")
            unreferred[0].find_element(By.TAG_NAME, "textarea").send_keys(
                "Beleidswijziging teruggedraaid; raadpleging besproken met de politie.")
            unreferred[0].find_element(By.TAG_NAME, "button").click()
            def reviewed(d):
                # The page is replaced after the POST: elements of the old
                # one go stale while the wait looks.
                try:
                    return [f for f in d.find_elements(By.CSS_SELECTOR, "section.flag")
                            if "zonder doorverwijzing" in f.find_element(By.TAG_NAME, "h2").text
                            and f.find_elements(By.CSS_SELECTOR, "p.reviewed")]
                except Exception:
                    return False
            b.wait(reviewed, "the unreferred-reads flag shows as reviewed")
            b.note()
        b.axe_check("control (ZVHD FG)")

        # RIEC and non-FG: 403 pages.
        b.sign_in("fg-riec")
        check("Geen toegang" in b.d.title, "a RIEC user gets the 403 page")
        b.axe_check("403 page")
        b.get("/console/")
        check("/console/aanmelden" in b.d.current_url, "the RIEC user has no session")
        b.sign_in("medewerker-gemeente")
        check("Geen toegang" in b.d.title, "a non-FG role gets the 403 page")

        # Tamper: the Rust side changes the entry's row; the browser notices.
        b.sign_in("fg-zvhd")
        b.get(f"/console/regels/{first}")
        check(b.verified("the entry before tampering") == "ok", "the entry verifies before tampering")
        print(f"TAMPER {first}", flush=True)
        sys.stdin.readline()
        b.d.refresh()
        b.note()
        b.wait(lambda d: d.find_element(By.ID, "kp-verify").get_attribute("data-result"), "verification after tampering")
        check(b.d.find_element(By.ID, "kp-verify").get_attribute("data-result") == "fail",
              "a tampered entry fails verification in the browser")
        status = b.d.find_element(By.ID, "kp-verify-status").text
        check("opnamebewijs" in status, f"the failure names what failed: {status!r}")
        b.shot("console-verification-failure.png")
    finally:
        b.d.quit()
    print("RESULT " + json.dumps({"urls": seen_urls, "titles": seen_titles, "failures": failures}), flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
