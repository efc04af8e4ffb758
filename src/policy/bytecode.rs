//! The covenant's entrypoints compiled to regorus' bytecode (RVM): the same
//! Rego, evaluated by a register machine instead of the tree-walking
//! interpreter, about seven times fewer instructions per decision.
//!
//! The bytecode serves only a bundle on which it agrees with the interpreter:
//! at load every input of the conformance corpus (`scripts/opa/corpus.py`,
//! embedded here as `corpus.jsonl.gz`) is decided by both, and a single
//! difference or error keeps that bundle on the interpreter (`Policies`
//! logs it). The interpreter in turn agrees with OPA on the same corpus
//! (`scripts/opa/conformance.py`, in CI). regorus 0.14.1's bytecode did
//! differ on two Rego shapes that the covenant's policies therefore avoid
//! (see `policies/common/common.rego`).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use regorus::rvm::RegoVM;
use regorus::rvm::program::Program;
use regorus::{CompiledPolicy, Value};

/// The most VM instructions one decision may take: far above the covenant's
/// (a few thousand), a bound on a runaway input. Exceeding it is an error,
/// and an error is a deny.
const INSTRUCTION_LIMIT: usize = 2_000_000;

/// The conformance corpus, gzipped (regenerated and compared in `.ci/run`).
static CORPUS: &[u8] = include_bytes!("corpus.jsonl.gz");

pub struct Bytecode {
    entries: HashMap<&'static str, Entry>,
}

/// One entrypoint: its program, and idle machines to run it (a machine holds
/// registers and rule caches, so one runs one decision at a time).
struct Entry {
    program: Arc<Program>,
    policy: CompiledPolicy,
    data: Value,
    limit: usize,
    idle: Mutex<Vec<RegoVM>>,
}

impl Bytecode {
    /// Compiles each entrypoint of `compiled` (the interpreter's compiled
    /// policies) to bytecode over `data`.
    pub fn compile(
        compiled: &HashMap<&'static str, CompiledPolicy>,
        data: &Value,
    ) -> anyhow::Result<Self> {
        Self::compile_bounded(compiled, data, INSTRUCTION_LIMIT)
    }

    /// `compile` with another instruction bound (tests: a bound a decision
    /// exceeds).
    pub fn compile_bounded(
        compiled: &HashMap<&'static str, CompiledPolicy>,
        data: &Value,
        limit: usize,
    ) -> anyhow::Result<Self> {
        let mut entries = HashMap::new();
        for (&entry, policy) in compiled {
            let program =
                regorus::languages::rego::compiler::Compiler::compile_from_policy(policy, &[entry])
                    .with_context(|| format!("compiling {entry} to bytecode"))?;
            let entry_state = Entry {
                program,
                policy: policy.clone(),
                data: data.clone(),
                limit,
                idle: Mutex::new(Vec::new()),
            };
            // A first machine, so that a program the VM cannot load fails here.
            let vm = entry_state.machine()?;
            entry_state.idle.lock().expect("vm pool").push(vm);
            entries.insert(entry, entry_state);
        }
        Ok(Self { entries })
    }

    /// Evaluates `entry` on `input`; `None` for an entrypoint it does not have.
    pub fn eval(&self, entry: &str, input: Value) -> Option<anyhow::Result<Value>> {
        let e = self.entries.get(entry)?;
        Some(e.eval(entry, input))
    }

    /// Decides every corpus input with the bytecode and with `reference`
    /// (the interpreter); the number of inputs on which they differ, and the
    /// entrypoints of those inputs (never the inputs: a message names rules).
    pub fn disagreements(
        &self,
        reference: impl Fn(&str, Value) -> anyhow::Result<Value>,
    ) -> anyhow::Result<Disagreements> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(CORPUS)
            .read_to_string(&mut text)
            .context("reading the embedded corpus")?;
        let mut report = Disagreements::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let case: serde_json::Value = serde_json::from_str(line).context("corpus line")?;
            let entry = case["entrypoint"].as_str().context("corpus entrypoint")?;
            let input = Value::from(case["input"].clone());
            report.inputs += 1;
            let ours = self.eval(entry, input.clone());
            let theirs = reference(entry, input);
            let same = match (ours, theirs) {
                (Some(Ok(a)), Ok(b)) => a == b,
                (None, Err(_)) => true,
                _ => false,
            };
            if !same {
                report.differ += 1;
                if !report.entrypoints.iter().any(|e| e == entry) {
                    report.entrypoints.push(entry.to_owned());
                }
            }
        }
        anyhow::ensure!(report.inputs > 0, "the embedded corpus is empty");
        Ok(report)
    }
}

/// How the bytecode compared with the interpreter on the corpus.
#[derive(Debug, Default)]
pub struct Disagreements {
    pub inputs: usize,
    pub differ: usize,
    pub entrypoints: Vec<String>,
}

impl Entry {
    fn machine(&self) -> anyhow::Result<RegoVM> {
        let mut vm = RegoVM::new_with_policy(self.policy.clone());
        vm.load_program(self.program.clone());
        vm.set_data(self.data.clone())?;
        vm.set_max_instructions(self.limit);
        Ok(vm)
    }

    fn eval(&self, entry: &str, input: Value) -> anyhow::Result<Value> {
        let idle = self.idle.lock().expect("vm pool").pop();
        let mut vm = match idle {
            Some(vm) => vm,
            None => self.machine()?,
        };
        vm.set_input(input);
        let out = vm.execute_entry_point_by_name(entry);
        vm.set_input(Value::Null);
        // A machine that failed is dropped, not reused.
        if out.is_ok() {
            self.idle.lock().expect("vm pool").push(vm);
        }
        Ok(out?)
    }
}
