//! A policy bundle: the `.rego` files and `data.json` documents, read from a
//! directory or from an OPA bundle tarball (`.tar.gz` as `opa build` writes
//! it: an optional `/.manifest`, the files at their paths, an optional
//! `/.signatures.json`). A `data.json` in directory `a/b` is mounted at
//! `data.a.b`. The revision is the SHA-256 of the policy files only, so a
//! directory and the bundle built from it have the same revision.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use regorus::{Engine, Value};
use ring::digest;
use serde::Deserialize;

use super::Refusal;
use super::signing::strip_bom;
use super::signing::{MANIFEST_FILE, SIGNATURES_FILE, Signer, VerificationKeys};

/// The most a bundle may hold uncompressed (a gzip bomb stops here).
const MAX_BUNDLE_BYTES: u64 = 64 << 20;

pub struct Bundle {
    /// Path inside the bundle (`/`-separated, no leading `/`) → content.
    files: BTreeMap<String, Vec<u8>>,
    manifest: Manifest,
}

/// The parts of OPA's `.manifest` that change how a bundle loads.
#[derive(Default, Deserialize)]
pub struct Manifest {
    /// The bundle author's revision (shown beside ours, never instead of it).
    #[serde(default)]
    pub revision: String,
    /// Data and package paths the bundle owns; absent means everything.
    roots: Option<Vec<String>>,
    rego_version: Option<i64>,
    #[serde(default)]
    file_rego_versions: BTreeMap<String, i64>,
}

/// The default policies: `policies/` as the binary was built with it, so
/// the binary runs (and `serve --demo` starts) from any directory.
/// `policy.path` names others.
static EMBEDDED: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/policies");

impl Bundle {
    /// The policies at `source`, or without one the embedded default.
    pub fn load_or_embedded(
        source: Option<&Path>,
        keys: Option<&VerificationKeys>,
    ) -> Result<Self, Refusal> {
        match (source, keys) {
            (Some(source), _) => Self::load(source, keys),
            (None, Some(_)) => Err(Refusal::Signature(anyhow::anyhow!(
                "policy.bundle_verification_keys is set, so policy.path must name a signed bundle; \
                 the embedded default policies are not one"
            ))),
            (None, None) => Ok(Self::embedded()),
        }
    }

    /// The embedded default policies: the same files a directory load
    /// reads (so the same revision as the `policies/` they came from).
    pub fn embedded() -> Self {
        fn collect(dir: &include_dir::Dir<'_>, out: &mut BTreeMap<String, Vec<u8>>) {
            for d in dir.dirs() {
                if !is_hidden(d.path()) {
                    collect(d, out);
                }
            }
            for f in dir.files() {
                let name = f.path().file_name().map(|n| n.to_string_lossy());
                let wanted = name.as_deref().is_some_and(|n| {
                    !n.starts_with('.') && (n.ends_with(".rego") || n == "data.json")
                });
                if wanted {
                    let rel = f.path().to_string_lossy().replace('\\', "/");
                    out.insert(rel, f.contents().to_vec());
                }
            }
        }
        fn is_hidden(p: &Path) -> bool {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        }
        let mut files = BTreeMap::new();
        collect(&EMBEDDED, &mut files);
        Self {
            files,
            manifest: Manifest::default(),
        }
    }

    /// Reads the policies at `source`, a directory or a `.tar.gz` bundle.
    /// With `keys`, only a bundle whose `.signatures.json` verifies is
    /// accepted; without, a signed bundle is refused as OPA refuses it (a
    /// signature nobody checks must not look like protection).
    pub fn load(source: &Path, keys: Option<&VerificationKeys>) -> Result<Self, Refusal> {
        let bundle = if source.is_dir() {
            if keys.is_some() {
                return Err(Refusal::Signature(anyhow::anyhow!(
                    "policy.bundle_verification_keys is set, so the policies must be a signed bundle \
                     (.tar.gz), not the directory {}",
                    source.display()
                )));
            }
            let mut files = BTreeMap::new();
            read_dir(source, source, &mut files).map_err(Refusal::Malformed)?;
            Self {
                files,
                manifest: Manifest::default(),
            }
        } else {
            let mut files = read_tarball(source)
                .with_context(|| format!("reading the bundle {}", source.display()))
                .map_err(Refusal::Malformed)?;
            check_kinds(&files).map_err(Refusal::Malformed)?;
            match (keys, files.remove(SIGNATURES_FILE)) {
                (Some(keys), Some(signatures)) => keys
                    .verify(&signatures, &files)
                    .map_err(Refusal::Signature)?,
                (Some(_), None) => {
                    return Err(Refusal::Signature(anyhow::anyhow!(
                        "the bundle is not signed (no {SIGNATURES_FILE}), and policy.bundle_verification_keys \
                         requires a signature"
                    )));
                }
                (None, Some(_)) => {
                    return Err(Refusal::Signature(anyhow::anyhow!(
                        "the bundle is signed, but policy.bundle_verification_keys is not set to verify it"
                    )));
                }
                (None, None) => {}
            }
            Self::from_files(files).map_err(Refusal::Malformed)?
        };
        if !bundle.files.keys().any(|k| k.ends_with(".rego")) {
            return Err(Refusal::Malformed(anyhow::anyhow!(
                "no .rego files in {}",
                source.display()
            )));
        }
        bundle.check_manifest().map_err(Refusal::Malformed)?;
        Ok(bundle)
    }

    fn from_files(mut files: BTreeMap<String, Vec<u8>>) -> anyhow::Result<Self> {
        let manifest = match files.remove(MANIFEST_FILE) {
            Some(m) => serde_json::from_slice(strip_bom(&m))
                .with_context(|| format!("{MANIFEST_FILE} is not a valid manifest"))?,
            None => Manifest::default(),
        };
        Ok(Self { files, manifest })
    }

    /// The manifest's Rego version and roots, checked as OPA checks them.
    fn check_manifest(&self) -> anyhow::Result<()> {
        let m = &self.manifest;
        for v in m.rego_version.iter().chain(m.file_rego_versions.values()) {
            anyhow::ensure!(*v == 1, "{MANIFEST_FILE}: only Rego v1 is supported");
        }
        let Some(roots) = &m.roots else {
            return Ok(());
        };
        let roots: Vec<Vec<&str>> = roots.iter().map(|r| r.split('/').collect()).collect();
        for (i, a) in roots.iter().enumerate() {
            for b in &roots[i + 1..] {
                anyhow::ensure!(
                    !contains(a, b) && !contains(b, a),
                    "{MANIFEST_FILE}: overlapping roots {} and {}",
                    a.join("/"),
                    b.join("/")
                );
            }
        }
        for (path, content) in self.files.iter().filter(|(p, _)| p.ends_with(".rego")) {
            let package = package_of(&String::from_utf8_lossy(content)).unwrap_or_default();
            let segments: Vec<&str> = package.split('.').collect();
            anyhow::ensure!(
                roots.iter().any(|r| contains(r, &segments)),
                "{MANIFEST_FILE}: the roots do not permit package {package} in {path}"
            );
        }
        check_data_roots(&self.data()?, &mut Vec::new(), &roots)
    }

    /// The author's revision from `.manifest`, if the bundle has one.
    pub fn manifest_revision(&self) -> Option<&str> {
        Some(self.manifest.revision.as_str()).filter(|r| !r.is_empty())
    }

    /// `sha256:<hex>` over every policy file's path and content, in path order.
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

    /// Writes the bundle as an OPA bundle tarball: `.manifest` (with this
    /// revision), the files as they are, and with a signer `.signatures.json`.
    /// Headers carry no time or owner, so the same input gives the same bytes.
    pub fn write_tarball(&self, out: impl Write, signer: Option<&Signer>) -> anyhow::Result<()> {
        let manifest =
            serde_json::json!({"revision": self.revision(), "roots": [""], "rego_version": 1});
        let mut files = self.files.clone();
        files.insert(MANIFEST_FILE.into(), serde_json::to_vec(&manifest)?);
        if let Some(signer) = signer {
            let signatures = signer.sign(&files)?;
            files.insert(SIGNATURES_FILE.into(), signatures);
        }
        let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::default()));
        for (name, content) in &files {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            tar.append_data(&mut header, name, content.as_slice())?;
        }
        tar.into_inner()?.finish()?.flush()?;
        Ok(())
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
            let doc: serde_json::Value = serde_json::from_slice(strip_bom(content))
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
            let Some(package) = package_of(&text) else {
                tracing::warn!(path, "test file without package");
                continue;
            };
            for line in text.lines().filter(|l| l.starts_with("test_")) {
                let name: String = line
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let rule = format!("data.{package}.{name}");
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        rules
    }
}

fn package_of(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim().to_owned())
}

/// Only files ketenpoort loads: anything else (data.yaml, Wasm, plans,
/// delta patches) would be dropped silently, so the bundle is refused.
fn check_kinds(files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    for name in files.keys() {
        let base = name.rsplit('/').next().unwrap_or(name);
        anyhow::ensure!(
            name.ends_with(".rego")
                || base == "data.json"
                || name == MANIFEST_FILE
                || name == SIGNATURES_FILE,
            "{name}: a bundle for ketenpoort holds only .rego files, data.json documents, \
             {MANIFEST_FILE} and {SIGNATURES_FILE}"
        );
    }
    Ok(())
}

/// Whether root segments `root` contain the path `path` (OPA's rule: the
/// root `""` contains everything, otherwise segment-wise prefix).
fn contains(root: &[&str], path: &[&str]) -> bool {
    root == [""] || (root.len() <= path.len() && root.iter().zip(path).all(|(a, b)| a == b))
}

/// Every data path is inside a root, or an object on the way to one.
fn check_data_roots<'a>(
    value: &'a serde_json::Value,
    path: &mut Vec<&'a str>,
    roots: &[Vec<&str>],
) -> anyhow::Result<()> {
    if roots.iter().any(|r| contains(r, path)) {
        return Ok(());
    }
    match value.as_object() {
        Some(obj) if roots.iter().any(|r| contains(path, r)) => {
            for (key, child) in obj {
                path.push(key);
                check_data_roots(child, path, roots)?;
                path.pop();
            }
            Ok(())
        }
        _ => bail!(
            "{MANIFEST_FILE}: the roots do not permit data at /{}",
            path.join("/")
        ),
    }
}

/// Every regular file of a gzipped tarball by its path, without a leading
/// `/` (OPA writes one; tar tools usually do not).
fn read_tarball(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut raw = Vec::new();
    GzDecoder::new(file)
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut raw)
        .context("not a gzip file")?;
    anyhow::ensure!(
        raw.len() as u64 <= MAX_BUNDLE_BYTES,
        "larger than {MAX_BUNDLE_BYTES} bytes uncompressed"
    );
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(raw.as_slice());
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("not a tar archive")?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .context("a file name is not UTF-8")?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader => continue,
            other => bail!("{name}: not a regular file ({other:?})"),
        }
        let name = name.strip_prefix('/').unwrap_or(&name).to_owned();
        anyhow::ensure!(
            name.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{name}: not a plain relative path"
        );
        let mut content = Vec::new();
        entry.read_to_end(&mut content)?;
        anyhow::ensure!(
            files.insert(name.clone(), content).is_none(),
            "{name} is in the bundle twice"
        );
    }
    Ok(files)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Bundle {
        Bundle::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            None,
        )
        .unwrap()
    }

    /// A gzipped tarball with exactly these names (leading `/`, `..` and
    /// all), as other tools might write it.
    fn tarball(dir: &Path, entries: &[(&str, &[u8])]) -> std::path::PathBuf {
        let path = dir.join(format!("b-{}.tar.gz", entries.len()));
        let mut tar = tar::Builder::new(GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            Compression::fast(),
        ));
        for (name, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            tar.append(&h, *content).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    fn refusal(source: &Path) -> String {
        match Bundle::load(source, None) {
            Ok(_) => panic!("{} was accepted", source.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_embedded_policies_are_the_repository_directory() {
        let embedded = Bundle::embedded();
        let dir = repo();
        assert_eq!(embedded.files, dir.files);
        assert_eq!(embedded.revision(), dir.revision());
        assert!(Bundle::load_or_embedded(None, None).is_ok());
    }

    #[test]
    fn a_directory_and_its_tarball_are_the_same_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("policies.tar.gz");
        let source = repo();
        source
            .write_tarball(std::fs::File::create(&out).unwrap(), None)
            .unwrap();
        let loaded = Bundle::load(&out, None).unwrap();
        assert_eq!(loaded.revision(), source.revision());
        assert_eq!(loaded.manifest_revision(), Some(source.revision().as_str()));
        assert_eq!(loaded.data().unwrap(), source.data().unwrap());
        assert_eq!(loaded.test_rules(), source.test_rules());
        // Deterministic: the same input gives the same bytes.
        let again = dir.path().join("again.tar.gz");
        source
            .write_tarball(std::fs::File::create(&again).unwrap(), None)
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    }

    #[test]
    fn opa_layout_is_read_and_strays_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rego = b"package a.b\n\nx := data.a.v\n";
        // `opa build` writes absolute names and a manifest.
        let ok = tarball(
            dir.path(),
            &[
                ("/.manifest", br#"{"revision":"v7","roots":["a"]}"#),
                ("/a/b/p.rego", rego),
                ("/a/data.json", br#"{"v": 1}"#),
            ],
        );
        let b = Bundle::load(&ok, None).unwrap();
        assert_eq!(b.manifest_revision(), Some("v7"));
        assert_eq!(b.data().unwrap(), serde_json::json!({"a": {"v": 1}}));
        for (entries, why) in [
            (
                vec![("p.rego", &rego[..]), ("../q.rego", rego)],
                "not a plain relative path",
            ),
            (
                vec![("p.rego", &rego[..]), ("data.yaml", b"v: 1")],
                "holds only .rego files",
            ),
            (
                vec![("p.rego", &rego[..]), ("/p.rego", rego)],
                "in the bundle twice",
            ),
            (
                vec![(".manifest", &br#"{"roots":["c"]}"#[..]), ("p.rego", rego)],
                "do not permit package a.b",
            ),
            (
                vec![
                    (".manifest", &br#"{"roots":["a/b"]}"#[..]),
                    ("p.rego", rego),
                    ("data.json", br#"{"a": {"v": 1}}"#),
                ],
                "do not permit data at /a/v",
            ),
            (
                vec![
                    (".manifest", &br#"{"roots":["a", "a/b"]}"#[..]),
                    ("p.rego", rego),
                ],
                "overlapping roots",
            ),
            (
                vec![
                    (".manifest", &br#"{"rego_version":0}"#[..]),
                    ("p.rego", rego),
                ],
                "only Rego v1",
            ),
            (vec![("data.json", &b"{}"[..])], "no .rego files"),
        ] {
            let err = refusal(&tarball(dir.path(), &entries));
            assert!(err.contains(why), "{entries:?}: {err}");
        }
        let not_gzip = dir.path().join("plain.tar.gz");
        std::fs::write(&not_gzip, b"not a bundle").unwrap();
        assert!(refusal(&not_gzip).contains("not a gzip file"));
    }
}
