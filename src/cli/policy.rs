//! `policy`: runs the Rego tests, evaluates decisions from stdin, builds
//! (and signs) OPA bundles and writes the JSON Schemas of the policy input
//! and decision. Policies are loaded and verified as `serve` loads them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::{Config, Overrides};
use crate::policy::{Bundle, Decision, Policies, Signer, run_tests};

#[derive(Subcommand)]
pub(super) enum PolicyCommand {
    /// Run the Rego tests (`test_*` rules in `*_test.rego`).
    Test {
        /// Policy directory or bundle (default: policy.path from the configuration).
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
    },
    /// Evaluate JSON lines `{"entrypoint": ..., "input": ...}` from stdin;
    /// print one decision per line.
    Eval {
        #[arg(long, value_name = "DIR")]
        policies: Option<PathBuf>,
        /// Instead of decisions, evaluate the inputs this many times and print
        /// the decision latency (JSON: count, p50, p99, mean in µs).
        #[arg(long, value_name = "ROUNDS")]
        timing: Option<u32>,
    },
    /// Build an OPA bundle tarball from a policy directory, after its Rego
    /// tests pass; with a signing key, signed as OPA signs bundles.
    Bundle {
        #[arg(long, value_name = "DIR")]
        policies: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// PEM private key (PKCS#8): Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256).
        #[arg(long, value_name = "PEM")]
        signing_key: Option<PathBuf>,
    },
    /// Write the JSON Schemas of the policy input and decision.
    Schema {
        #[arg(long, value_name = "DIR", default_value = "policies/schema")]
        out: PathBuf,
    },
}

pub(super) fn run(action: PolicyCommand) -> anyhow::Result<ExitCode> {
    match action {
        PolicyCommand::Test { policies } => return test(policies),
        PolicyCommand::Eval { policies, timing } => eval(policies, timing)?,
        PolicyCommand::Bundle {
            policies,
            out,
            signing_key,
        } => bundle(&policies, &out, signing_key.as_deref())?,
        PolicyCommand::Schema { out } => schema(&out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The policies to load: `explicit`, or policy.path; verified as `serve`
/// verifies them (policy.bundle_verification_keys).
fn load_policies(explicit: Option<PathBuf>) -> anyhow::Result<Bundle> {
    let cfg = Config::load(&Overrides::default())?;
    let keys = crate::policy::VerificationKeys::from_config(&cfg.policy)?;
    let source = explicit.or(cfg.policy.path);
    Ok(Bundle::load_or_embedded(source.as_deref(), keys.as_ref())?)
}

fn test(policies: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let bundle = load_policies(policies)?;
    let report = run_tests(&bundle)?;
    for f in &report.failed {
        println!("FAIL {f}");
    }
    println!(
        "{} passed, {} failed ({})",
        report.passed.len(),
        report.failed.len(),
        bundle.revision()
    );
    if !report.failed.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `policy eval`'s input.
#[derive(serde::Deserialize)]
struct Line {
    entrypoint: String,
    input: serde_json::Value,
}

fn eval(policies: Option<PathBuf>, timing: Option<u32>) -> anyhow::Result<()> {
    let bundle = load_policies(policies)?;
    let compiled = Policies::compile(&bundle)?;
    // What a server does on a thread of its own after loading; here first,
    // so that the engine that serves is the one evaluated (and compared
    // with OPA in CI).
    let check = std::time::Instant::now();
    compiled.check_bytecode();
    let check_ms = check.elapsed().as_secs_f64() * 1e3;
    let lines = read_lines()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Some(rounds) = timing {
        let mut summary = latency(&lines, rounds, |l| {
            compiled.evaluate(&l.entrypoint, &l.input)
        });
        summary["engine"] = compiled.engine().into();
        // The interpreter on the same inputs, for reference.
        summary["interpreter"] = latency(&lines, rounds.div_ceil(4), |l| {
            compiled.evaluate_interpreted(&l.entrypoint, &l.input)
        });
        // What a server pays before it decides: the bundle's Rego tests and
        // the compilation of its entrypoints (`Policies::vet`); and after,
        // on a thread of its own, the bytecode's check on the corpus.
        let start = std::time::Instant::now();
        Policies::vet(&bundle)?;
        summary["load_ms"] = (start.elapsed().as_secs_f64() * 1e3).into();
        summary["bytecode_check_ms"] = check_ms.into();
        writeln!(out, "{summary}")?;
    } else {
        for l in &lines {
            serde_json::to_writer(&mut out, &compiled.evaluate(&l.entrypoint, &l.input))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The non-blank lines of stdin.
fn read_lines() -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if !line.trim().is_empty() {
            lines.push(serde_json::from_str::<Line>(&line)?);
        }
    }
    Ok(lines)
}

/// Evaluates every line `rounds` times; the decision latency as JSON
/// (count, p50, p99, mean in µs).
fn latency(lines: &[Line], rounds: u32, evaluate: impl Fn(&Line) -> Decision) -> serde_json::Value {
    let mut micros = Vec::with_capacity(lines.len() * rounds as usize);
    for _ in 0..rounds.max(1) {
        for l in lines {
            let start = std::time::Instant::now();
            std::hint::black_box(evaluate(l));
            micros.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    micros.sort_by(f64::total_cmp);
    let pct = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
    let mean = micros.iter().sum::<f64>() / micros.len() as f64;
    serde_json::json!({
        "count": micros.len(), "p50_us": pct(0.5), "p99_us": pct(0.99), "mean_us": mean,
    })
}

fn bundle(policies: &Path, out: &Path, signing_key: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        policies.is_dir(),
        "{} is not a policy directory",
        policies.display()
    );
    let bundle = Bundle::load(policies, None)?;
    Policies::vet(&bundle).context("no bundle written")?;
    let signer = match signing_key {
        Some(path) => Some(
            Signer::from_pem(&std::fs::read(path)?)
                .with_context(|| format!("signing key {}", path.display()))?,
        ),
        None => None,
    };
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    bundle.write_tarball(&mut file, signer.as_ref())?;
    file.flush()?;
    println!(
        "wrote {} ({}, {})",
        out.display(),
        bundle.revision(),
        if signer.is_some() {
            "signed"
        } else {
            "unsigned"
        }
    );
    Ok(())
}

fn schema(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    for (name, schema) in [
        ("input.json", schemars::schema_for!(crate::policy::Input)),
        (
            "decision.json",
            schemars::schema_for!(crate::policy::Decision),
        ),
    ] {
        std::fs::write(
            out.join(name),
            serde_json::to_string_pretty(&schema)? + "\n",
        )?;
    }
    println!("wrote {}", out.display());
    Ok(())
}
