//! A policy bundle: the `.rego` files and `data.json` documents, read from a
//! directory (OPA bundle layout: a `data.json` in directory `a/b` is mounted
//! at `data.a.b`). Its revision is the SHA-256 of its content.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use regorus::{Engine, Value};
use ring::digest;

pub struct Bundle {
    /// Path inside the bundle (`/`-separated) → content.
    files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    pub fn load(source: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            source.is_dir(),
            "policy source {} is not a directory",
            source.display()
        );
        let mut files = BTreeMap::new();
        read_dir(source, source, &mut files)?;
        anyhow::ensure!(
            files.keys().any(|k| k.ends_with(".rego")),
            "no .rego files in {}",
            source.display()
        );
        Ok(Self { files })
    }

    /// `sha256:<hex>` over every file's path and content, in path order.
    pub fn revision(&self) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for (path, content) in &self.files {
            ctx.update(&(path.len() as u64).to_be_bytes());
            ctx.update(path.as_bytes());
            ctx.update(&(content.len() as u64).to_be_bytes());
            ctx.update(content);
        }
        format!("sha256:{}", hex::encode(ctx.finish()))
    }

    fn is_test(path: &str) -> bool {
        path.ends_with("_test.rego")
    }

    /// An engine with the bundle's policies (and tests, if asked) and data.
    pub fn engine(&self, with_tests: bool) -> anyhow::Result<Engine> {
        let mut engine = Engine::new();
        engine.set_rego_v0(false);
        for (path, content) in &self.files {
            if path.ends_with(".rego") && (with_tests || !Self::is_test(path)) {
                let text =
                    std::str::from_utf8(content).with_context(|| format!("{path} is not UTF-8"))?;
                engine
                    .add_policy(path.clone(), text.to_owned())
                    .with_context(|| format!("parsing {path}"))?;
            }
        }
        let data = self.data()?;
        engine.add_data(Value::from_json_str(&data.to_string())?)?;
        Ok(engine)
    }

    /// All data documents merged at their mount points.
    pub fn data(&self) -> anyhow::Result<serde_json::Value> {
        let mut root = serde_json::Value::Object(Default::default());
        for (path, content) in &self.files {
            let Some(dir) = path.strip_suffix("data.json") else {
                continue;
            };
            let doc: serde_json::Value = serde_json::from_slice(content)
                .with_context(|| format!("{path} is not valid JSON"))?;
            let mut at = &mut root;
            for segment in dir.split('/').filter(|s| !s.is_empty()) {
                at = at
                    .as_object_mut()
                    .context("data mount point is not an object")?
                    .entry(segment)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
            }
            merge(at, doc).with_context(|| format!("{path} conflicts with other data"))?;
        }
        Ok(root)
    }

    /// `data.<package>.<rule>` of every `test_*` rule in the test files.
    pub fn test_rules(&self) -> Vec<String> {
        let mut rules = Vec::new();
        for (path, content) in self.files.iter().filter(|(p, _)| Self::is_test(p)) {
            let text = String::from_utf8_lossy(content);
            let Some(package) = text.lines().find_map(|l| l.trim().strip_prefix("package ")) else {
                tracing::warn!(path, "test file without package");
                continue;
            };
            for line in text.lines().filter(|l| l.starts_with("test_")) {
                let name: String = line
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let rule = format!("data.{}.{name}", package.trim());
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        rules
    }
}

fn read_dir(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            read_dir(root, &path, out)?;
        } else if name.ends_with(".rego") || name == "data.json" {
            let rel = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read(&path)?);
        }
    }
    Ok(())
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) -> anyhow::Result<()> {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v)?,
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        _ => bail!("two data documents define the same key"),
    }
}
