//! The policy module loads and evaluates the covenant, which is Rego and
//! data in `policies/`; the one rule it adds on the Rust side is the
//! coherence check of every decision (`model::Decision::sanitised`: a
//! record never to a non-member, only classified fields). Any error,
//! undefined result or incoherent answer is a deny: this module is the home
//! of invariant 5, fail closed. The running policies are swapped atomically
//! on reload; a bundle that fails to compile or to pass its tests never
//! replaces them.

mod bundle;
mod bytecode;
pub mod model;
mod signing;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use anyhow::Context;
use regorus::{CompiledPolicy, Value};
use time::OffsetDateTime;

pub use bundle::Bundle;
pub use model::{Action, Decision, Granted, Input, Mode};
pub use signing::{Signer, VerificationKeys};

/// Why a bundle was refused (at start, or on reload while the running
/// policies stay in force). Messages name files and rules, never data.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Unreadable, malformed, or holding files ketenpoort does not load.
    #[error("{0:#}")]
    Malformed(anyhow::Error),
    /// Unsigned while signatures are required, wrongly signed, or altered.
    #[error("{0:#}")]
    Signature(anyhow::Error),
    /// Rego that does not parse or compile, or data that does not load.
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// The bundle's own Rego tests fail.
    #[error("policy tests failed: {}", .0.join(", "))]
    TestsFailed(Vec<String>),
}

impl Refusal {
    /// Stable reason code (admin API, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "bundle-invalid",
            Self::Signature(_) => "bundle-signature",
            Self::Invalid(_) => "policy-invalid",
            Self::TestsFailed(_) => "policy-tests-failed",
        }
    }
}

/// Distinct policy inputs remembered per bundle.
const DECISION_CACHE: usize = 10_000;

/// One compiled bundle: the entrypoints ready to evaluate, its data and revision.
pub struct Policies {
    revision: String,
    /// The revision in the bundle's `.manifest`, if it has one.
    manifest_revision: Option<String>,
    loaded_at: OffsetDateTime,
    compiled: HashMap<&'static str, CompiledPolicy>,
    /// The same entrypoints as bytecode, once it has agreed with the
    /// interpreter on the conformance corpus (`Some`), or failed to (`None`).
    /// Unset while that check runs (`check_bytecode`, on a thread of its
    /// own for a serving engine): until then the interpreter decides.
    bytecode: OnceLock<Option<bytecode::Bytecode>>,
    data: serde_json::Value,
    /// Decisions are pure functions of the input under one revision, and
    /// the inputs repeat (the same partner reading the same kind of record):
    /// cached per bundle, so a reload starts empty.
    decisions: quick_cache::sync::Cache<String, Decision>,
}

impl Policies {
    pub fn compile(bundle: &Bundle) -> anyhow::Result<Self> {
        let mut engine = bundle.engine(false)?;
        let mut compiled = HashMap::new();
        for entry in model::ENTRYPOINTS {
            let policy = engine
                .compile_with_entrypoint(&entry.into())
                .with_context(|| format!("compiling entrypoint {entry}"))?;
            compiled.insert(entry, policy);
        }
        Ok(Self {
            revision: bundle.revision(),
            manifest_revision: bundle.manifest_revision().map(str::to_owned),
            loaded_at: OffsetDateTime::now_utc(),
            compiled,
            bytecode: OnceLock::new(),
            data: bundle.data()?,
            decisions: quick_cache::sync::Cache::new(DECISION_CACHE),
        })
    }

    /// Compiles the entrypoints to bytecode and decides every corpus input
    /// with it and with the interpreter; from then on the bytecode decides
    /// if they agreed on every input, the interpreter otherwise (slower,
    /// never different). Runs once; the engine in use after it.
    pub fn check_bytecode(&self) -> &'static str {
        self.bytecode
            .get_or_init(|| Self::bytecode(&self.compiled, &self.data, &self.revision));
        self.engine()
    }

    /// The bytecode for these entrypoints, if it compiles and decides every
    /// corpus input exactly as the interpreter does.
    fn bytecode(
        compiled: &HashMap<&'static str, CompiledPolicy>,
        data: &serde_json::Value,
        revision: &str,
    ) -> Option<bytecode::Bytecode> {
        let checked = (|| {
            let data = Value::from_json_str(&data.to_string())?;
            let bytecode = bytecode::Bytecode::compile(compiled, &data)?;
            let report = bytecode.disagreements(|entry, input| {
                compiled
                    .get(entry)
                    .context("unknown entrypoint")?
                    .eval_with_input(input)
            })?;
            anyhow::Ok((bytecode, report))
        })();
        let outcome = match checked {
            Ok((bytecode, report)) if report.differ == 0 => {
                tracing::info!(revision, inputs = report.inputs, "policies run as bytecode");
                return Some(bytecode);
            }
            Ok((_, report)) => {
                tracing::error!(revision, inputs = report.inputs, differ = report.differ,
                    entrypoints = ?report.entrypoints,
                    "the policies' bytecode decides differently from the interpreter; the interpreter decides");
                "differs"
            }
            Err(e) => {
                tracing::error!(revision, error = %e,
                    "the policies do not run as bytecode; the interpreter decides");
                "error"
            }
        };
        metrics::counter!("ketenpoort_policy_bytecode_refused_total", "reason" => outcome)
            .increment(1);
        None
    }

    /// Which engine decides: "bytecode", "interpreter", or "checking"
    /// (the interpreter, while the bytecode is being checked).
    pub fn engine(&self) -> &'static str {
        match self.bytecode.get() {
            Some(Some(_)) => "bytecode",
            Some(None) => "interpreter",
            None => "checking",
        }
    }

    /// What every load requires of a bundle: its Rego tests pass, and it
    /// compiles.
    pub fn vet(bundle: &Bundle) -> Result<Self, Refusal> {
        let report = run_tests(bundle).map_err(Refusal::Invalid)?;
        if !report.failed.is_empty() {
            return Err(Refusal::TestsFailed(report.failed));
        }
        Self::compile(bundle).map_err(Refusal::Invalid)
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn manifest_revision(&self) -> Option<&str> {
        self.manifest_revision.as_deref()
    }

    pub fn loaded_at(&self) -> OffsetDateTime {
        self.loaded_at
    }

    /// The bundle's data documents (the covenant and the table catalogue).
    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }

    /// Whether `purpose` is a purpose id of the covenant data.
    pub fn is_known_purpose(&self, purpose: &str) -> bool {
        self.data
            .pointer("/covenant/purposes")
            .and_then(|p| p.get(purpose))
            .is_some()
    }

    pub fn decide(&self, input: &Input) -> Decision {
        let raw = serde_json::to_value(input).expect("policy input serialises");
        let entry = input.action.entrypoint();
        let key = format!("{entry}\n{raw}");
        let decision = match self.decisions.get(&key) {
            Some(d) => d,
            None => {
                let d = self.evaluate(entry, &raw).sanitised(input, &self.data);
                self.decisions.insert(key, d.clone());
                d
            }
        };
        let mode = match decision.mode {
            Mode::Full => "full",
            Mode::Masked => "masked",
            Mode::Aggregate => "aggregate",
            Mode::Deny => "deny",
        };
        metrics::counter!("ketenpoort_policy_decisions_total", "action" => input.action.as_str(), "mode" => mode)
            .increment(1);
        decision
    }

    /// Evaluates an entrypoint on any JSON input, as OPA would (used by
    /// `decide` and by `policy eval` for the conformance check). Errors and
    /// undefined results come back as deny decisions.
    pub fn evaluate(&self, entry: &str, input: &serde_json::Value) -> Decision {
        self.evaluate_with(entry, input, self.bytecode.get().and_then(Option::as_ref))
    }

    /// `evaluate` by the interpreter, whichever engine serves (the reference
    /// `policy eval --timing` measures the bytecode against).
    pub fn evaluate_interpreted(&self, entry: &str, input: &serde_json::Value) -> Decision {
        self.evaluate_with(entry, input, None)
    }

    fn evaluate_with(
        &self,
        entry: &str,
        input: &serde_json::Value,
        bytecode: Option<&bytecode::Bytecode>,
    ) -> Decision {
        let Some(policy) = self.compiled.get(entry) else {
            return Decision::deny("policy-unknown-entrypoint", &self.revision);
        };
        let decision = (|| -> Result<Decision, &'static str> {
            // Straight from the JSON tree (no copy of it first), as
            // `Value::from` would: anything that does not convert is
            // undefined.
            let input =
                <Value as serde::Deserialize>::deserialize(input).unwrap_or(Value::Undefined);
            let out = match bytecode {
                // Compiled from the same entrypoints: never missing one.
                Some(b) => b
                    .eval(entry, input)
                    .unwrap_or_else(|| Err(anyhow::anyhow!("no bytecode for {entry}"))),
                None => policy.eval_with_input(input),
            }
            .map_err(|e| {
                tracing::error!(entrypoint = entry, error = %e, "policy evaluation failed");
                "policy-error"
            })?;
            if out == Value::Undefined {
                return Err("policy-undefined");
            }
            // As text, not as a JSON tree: a decision is one short line.
            let json = serde_json::to_vec(&out).map_err(|_| "policy-error")?;
            serde_json::from_slice::<Decision>(&json).map_err(|_| "policy-malformed-decision")
        })();
        match decision {
            Ok(mut d) => {
                d.revision = self.revision.clone();
                d
            }
            Err(reason) => Decision::deny(reason, &self.revision),
        }
    }
}

/// The outcome of running a bundle's Rego tests.
pub struct TestReport {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
}

/// Runs every `test_*` rule of every package in the bundle.
pub fn run_tests(bundle: &Bundle) -> anyhow::Result<TestReport> {
    let mut engine = bundle.engine(true)?;
    let mut report = TestReport {
        passed: Vec::new(),
        failed: Vec::new(),
    };
    for rule in bundle.test_rules() {
        match engine.eval_rule(rule.clone()) {
            Ok(Value::Bool(true)) => report.passed.push(rule),
            _ => report.failed.push(rule),
        }
    }
    anyhow::ensure!(
        !report.passed.is_empty() || !report.failed.is_empty(),
        "the bundle has no tests"
    );
    Ok(report)
}

/// The running policies, shared by all requests and swapped whole on reload.
#[derive(Clone)]
pub struct PolicyEngine {
    /// `policy.path`; none: the policies embedded in the binary.
    source: Option<PathBuf>,
    keys: Option<Arc<VerificationKeys>>,
    current: Arc<RwLock<Arc<Policies>>>,
}

impl PolicyEngine {
    /// Loads, verifies, compiles and tests the policies at `source` (a
    /// directory or a bundle tarball; none: the embedded default policies);
    /// refuses to start on any failure.
    pub fn load(source: Option<PathBuf>, keys: Option<VerificationKeys>) -> Result<Self, Refusal> {
        let keys = keys.map(Arc::new);
        let policies = Self::prepare(source.as_deref(), keys.as_deref())?;
        Ok(Self {
            source,
            keys,
            current: Arc::new(RwLock::new(Self::serve(policies))),
        })
    }

    /// Policies ready to decide at once, by the interpreter, while a thread
    /// of their own checks their bytecode (a second or more: it decides
    /// the whole corpus twice) and switches them to it if it agrees.
    fn serve(policies: Policies) -> Arc<Policies> {
        let policies = Arc::new(policies);
        let checking = policies.clone();
        let started = std::thread::Builder::new()
            .name("policy-bytecode".into())
            .spawn(move || {
                checking.check_bytecode();
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "the bytecode check did not start; the interpreter decides");
            let _ = policies.bytecode.set(None);
        }
        policies
    }

    fn prepare(
        source: Option<&std::path::Path>,
        keys: Option<&VerificationKeys>,
    ) -> Result<Policies, Refusal> {
        Policies::vet(&Bundle::load_or_embedded(source, keys)?)
    }

    pub fn current(&self) -> Arc<Policies> {
        self.current.read().expect("policy lock").clone()
    }

    pub fn decide(&self, input: &Input) -> Decision {
        self.current().decide(input)
    }

    /// Reloads from the configured source (SIGHUP, `POST /admin/policy/reload`)
    /// and swaps the new policies in whole. On any failure the running
    /// policies stay in force and the refusal is returned.
    pub fn reload(&self) -> Result<Arc<Policies>, Refusal> {
        match Self::prepare(self.source.as_deref(), self.keys.as_deref()) {
            Ok(policies) => {
                let policies = Self::serve(policies);
                *self.current.write().expect("policy lock") = policies.clone();
                metrics::counter!("ketenpoort_policy_reloads_total", "outcome" => "applied")
                    .increment(1);
                tracing::info!(revision = %policies.revision, "policies reloaded");
                Ok(policies)
            }
            Err(refusal) => {
                metrics::counter!("ketenpoort_policy_reloads_total", "outcome" => refusal.code())
                    .increment(1);
                tracing::error!(code = refusal.code(), error = %refusal,
                    "policy reload refused; the running policies stay in force");
                Err(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_policies() -> Bundle {
        Bundle::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            None,
        )
        .unwrap()
    }

    /// A request the repository's policies allow: the ZVHD's
    /// ketenregisseur reads a new signal for the Drieluik.
    fn ketenregisseur_reads() -> serde_json::Value {
        serde_json::json!({
            "action": "read", "purpose": "drieluik",
            "principal": {"partner": "zvhd", "kind": "zvhd", "role": "ketenregisseur",
                          "member": true, "status": "active"},
            "signal": {"reporter": "assen", "municipality": "assen", "forms": ["arbeid"],
                       "victimMinor": false, "domesticSetting": false, "referrals": [],
                       "status": "nieuw"},
        })
    }

    /// `ketenpoort policy test` as part of `cargo test`: every Rego test of
    /// the repository's policies passes in the engine ketenpoort serves with.
    #[test]
    fn the_repository_policies_pass_their_rego_tests() {
        let report = run_tests(&repo_policies()).unwrap();
        assert!(
            report.failed.is_empty(),
            "failing Rego tests: {:?}",
            report.failed
        );
        assert!(
            report.passed.len() >= 100,
            "only {} Rego tests found",
            report.passed.len()
        );
    }

    /// The repository's policies run as bytecode: compiled, and deciding
    /// every corpus input exactly as the interpreter does.
    #[test]
    fn the_repository_policies_run_as_bytecode() {
        let p = Policies::compile(&repo_policies()).unwrap();
        assert_eq!(p.check_bytecode(), "bytecode");
    }

    /// A serving engine decides from the moment it loads: by the
    /// interpreter while the bytecode is checked, then by the bytecode, and
    /// the decisions are the same before and after.
    #[test]
    fn a_serving_engine_switches_to_bytecode_once_checked() {
        let fresh = Policies::compile(&repo_policies()).unwrap();
        assert_eq!(fresh.engine(), "checking");
        let input = ketenregisseur_reads();
        let before = serde_json::to_value(fresh.evaluate(model::ENTRY_EXCHANGE, &input)).unwrap();
        assert_eq!(before["allow"], true);

        let engine = PolicyEngine::load(None, None).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while engine.current().engine() == "checking" {
            assert!(
                std::time::Instant::now() < deadline,
                "the bytecode check never ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let p = engine.current();
        assert_eq!(p.engine(), "bytecode");
        let mut after = serde_json::to_value(p.evaluate(model::ENTRY_EXCHANGE, &input)).unwrap();
        after["revision"] = before["revision"].clone();
        assert_eq!(after, before);
    }

    /// A bundle whose bytecode decides differently from the interpreter is
    /// served by the interpreter. The difference is a real one: regorus
    /// 0.14.1's VM never reaches an `else` after a body that loops, the
    /// shape `common.form_problems` avoids; written that way, a signal
    /// without a form in the mandate gets `no-decision` from the VM where
    /// the interpreter (and OPA) say `form-not-in-mandate`. (If a regorus
    /// release fixes this, this test needs another divergence.)
    #[test]
    fn bytecode_that_differs_from_the_interpreter_does_not_decide() {
        let dir = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        copy_dir(&src, dir.path());
        let common = dir.path().join("common/common.rego");
        let text = std::fs::read_to_string(&common).unwrap();
        let looped = text.replace(
            "} else := set() if {\n\tform_in_mandate(s, mandate)\n}",
            "} else := set() if {\n\tsome form in s.forms\n\tform in mandate\n}",
        );
        assert_ne!(looped, text, "the form_problems shape changed");
        std::fs::write(&common, looped).unwrap();
        let p = Policies::vet(&Bundle::load(dir.path(), None).unwrap()).unwrap();
        assert_eq!(p.check_bytecode(), "interpreter");
        let input = serde_json::json!({
            "action": "read", "purpose": "opsporing",
            "principal": {"partner": "nla", "kind": "nla", "role": "inspecteur",
                          "member": true, "status": "active"},
            "signal": {"reporter": "assen", "municipality": "assen", "forms": ["seksueel"],
                       "victimMinor": false, "domesticSetting": false,
                       "referrals": [{"partner": "nla", "purpose": "opsporing"}],
                       "status": "doorverwezen"},
        });
        let d = p.evaluate(model::ENTRY_EXCHANGE, &input);
        assert_eq!(d.reasons, ["form-not-in-mandate"]);
    }

    /// Invariant 5 on the bytecode: a machine that fails (here: a bound of
    /// 10 instructions that every decision exceeds) gives a deny, never an
    /// answer, and the next decision still gets one.
    #[test]
    fn a_failing_machine_is_a_denial() {
        let p = Policies::compile(&repo_policies()).unwrap();
        let data = Value::from_json_str(&p.data.to_string()).unwrap();
        let failing = bytecode::Bytecode::compile_bounded(&p.compiled, &data, 10).unwrap();
        assert!(p.bytecode.set(Some(failing)).is_ok());
        let input = ketenregisseur_reads();
        assert!(p.evaluate_interpreted(model::ENTRY_EXCHANGE, &input).allow);
        for _ in 0..2 {
            let d = p.evaluate(model::ENTRY_EXCHANGE, &input);
            assert_eq!(
                (d.allow, d.reasons.as_slice()),
                (false, ["policy-error".to_owned()].as_slice())
            );
        }
    }

    /// A remembered decision is the decision: same answer as evaluating
    /// afresh, for an allow and a deny.
    #[test]
    fn remembered_decisions_equal_fresh_ones() {
        let p = Policies::compile(&repo_policies()).unwrap();
        let party = |partner: &str, kind: &str, role: Option<&str>| model::Party {
            partner: partner.into(),
            kind: kind.into(),
            member: true,
            role: role.map(str::to_owned),
            status: "active".into(),
        };
        let signal = model::SignalFacts {
            reporter: "emmen".into(),
            municipality: "emmen".into(),
            forms: vec!["arbeid".into()],
            victim_minor: false,
            domestic_setting: false,
            referrals: vec![],
            status: "nieuw".into(),
        };
        for (partner, role) in [
            ("zvhd", "ketenregisseur"),
            ("assen", "aandachtfunctionaris-sociaal"),
        ] {
            let input = Input {
                action: Action::Read,
                purpose: "drieluik".into(),
                principal: party(
                    partner,
                    if partner == "zvhd" {
                        "zvhd"
                    } else {
                        "gemeente"
                    },
                    Some(role),
                ),
                recipient: None,
                signal: Some(signal.clone()),
                audit: None,
                transition: None,
                feedback: None,
            };
            let fresh = p
                .evaluate(
                    model::ENTRY_EXCHANGE,
                    &serde_json::to_value(&input).unwrap(),
                )
                .sanitised(&input, p.data());
            for _ in 0..2 {
                let d = p.decide(&input);
                assert_eq!(
                    serde_json::to_value(&d).unwrap(),
                    serde_json::to_value(&fresh).unwrap()
                );
            }
        }
    }

    #[test]
    fn errors_and_undefined_results_are_denials() {
        let p = Policies::compile(&repo_policies()).unwrap();
        let d = p.evaluate("data.ketenpoort.nowhere.decision", &serde_json::json!({}));
        assert_eq!(
            (d.allow, d.reasons[0].as_str()),
            (false, "policy-unknown-entrypoint")
        );
        let d = p.evaluate(model::ENTRY_EXCHANGE, &serde_json::json!("not an object"));
        assert!(!d.allow);
        assert_eq!(d.revision, p.revision());
    }

    #[test]
    fn a_broken_bundle_never_replaces_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        copy_dir(&src, dir.path());
        let engine = PolicyEngine::load(Some(dir.path().to_owned()), None).unwrap();
        let before = engine.current().revision().to_owned();
        let exchange = dir.path().join("exchange/exchange.rego");
        let text = std::fs::read_to_string(&exchange).unwrap();
        std::fs::write(
            &exchange,
            text.replace(
                "package ketenpoort.exchange",
                "package ketenpoort.exchange\n!!",
            ),
        )
        .unwrap();
        assert_eq!(
            engine.reload().err().map(|r| r.code()),
            Some("policy-invalid")
        );
        assert_eq!(engine.current().revision(), before);
        // A bundle that compiles but fails its own tests is refused too.
        std::fs::write(
            &exchange,
            text.replace("\"fields\": [],", "\"fields\": [\"narrative\"],"),
        )
        .unwrap();
        assert_eq!(
            engine.reload().err().map(|r| r.code()),
            Some("policy-tests-failed")
        );
        assert_eq!(engine.current().revision(), before);
        std::fs::write(&exchange, text).unwrap();
        assert_eq!(engine.reload().unwrap().revision(), before);
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.path().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
}
