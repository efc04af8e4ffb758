//! The deployment files against the source: the container image's build
//! stage copies everything the crate embeds at compile time, and every local
//! path dependency before it builds the dependencies.

use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `a/b/../c` as `a/c`.
fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Repository-relative paths the crate embeds outside its tests:
/// `include_str!`/`include_bytes!` (relative to the file), and
/// `sqlx::migrate!` and `include_dir!` (relative to the crate root).
fn embedded() -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let source = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(root()).unwrap().to_owned();
        for line in source.lines() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            for (mac, from_file) in [
                ("include_str!(\"", true),
                ("include_bytes!(\"", true),
                ("migrate!(\"", false),
                ("include_dir!(\"$CARGO_MANIFEST_DIR/", false),
            ] {
                let mut rest = line;
                while let Some(i) = rest.find(mac) {
                    let lit = &rest[i + mac.len()..];
                    let end = lit.find('"').expect("closing quote");
                    let path = if from_file {
                        normal(&rel.parent().unwrap().join(&lit[..end]))
                    } else {
                        normal(Path::new(&lit[..end]))
                    };
                    out.push((
                        format!("{}: {}", rel.display(), &mac[..mac.len() - 2]),
                        path,
                    ));
                    rest = &lit[end..];
                }
            }
        }
    }
    out
}

/// The sources of the `COPY` lines of the Dockerfile's first (build) stage.
fn build_stage_copies(dockerfile: &str) -> Vec<String> {
    copies_until(dockerfile, |_| false)
}

/// The build stage's `COPY` sources up to the first line `stop` accepts.
fn copies_until(dockerfile: &str, stop: impl Fn(&str) -> bool) -> Vec<String> {
    let mut stage = 0;
    let mut out = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        if stage == 1 && stop(line) {
            break;
        }
        if line.starts_with("FROM ") {
            stage += 1;
            continue;
        }
        if stage != 1 {
            continue;
        }
        if let Some(args) = line.strip_prefix("COPY ") {
            let words: Vec<&str> = args.split_whitespace().collect();
            if words.iter().any(|w| w.starts_with("--from")) || words.len() < 2 {
                continue;
            }
            out.extend(
                words[..words.len() - 1]
                    .iter()
                    .map(|w| w.trim_end_matches('/').to_owned()),
            );
        }
    }
    out
}

#[test]
fn the_image_copies_everything_the_build_embeds() {
    let embedded = embedded();
    let found: Vec<String> = embedded
        .iter()
        .map(|(_, p)| p.display().to_string())
        .collect();
    for expected in [
        "schemas/signal.v1.json",
        "migrations/sqlite",
        "policies",
        "examples/signal.json",
    ] {
        assert!(
            found.iter().any(|f| f == expected),
            "the scanner misses {expected}: {found:?}"
        );
    }
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let copies = build_stage_copies(&dockerfile);
    assert!(copies.iter().any(|c| c == "src"), "{copies:?}");
    let ignored = std::fs::read_to_string(root().join("deploy/Dockerfile.dockerignore")).unwrap();
    let ignored: Vec<&str> = ignored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for (what, path) in &embedded {
        assert!(
            copies.iter().any(|c| path.starts_with(c)),
            "{what} embeds {}, which deploy/Dockerfile's build stage does not copy (COPY lines: {copies:?})",
            path.display()
        );
        let top = path
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        assert!(
            !ignored.contains(&top),
            "{what} embeds {}, but deploy/Dockerfile.dockerignore leaves {top} out of the context",
            path.display()
        );
    }
}

/// `path = "…"` dependencies (and patches) of Cargo.toml.
fn path_dependencies() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut out = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        let mut rest = line;
        while let Some(i) = rest.find("path = \"") {
            let lit = &rest[i + 8..];
            let end = lit.find('"').expect("closing quote");
            out.push(lit[..end].trim_end_matches('/').to_owned());
            rest = &lit[end..];
        }
    }
    out
}

#[test]
fn the_dependency_layer_copies_every_path_dependency() {
    let deps = path_dependencies();
    assert!(
        deps.iter().any(|d| d == "vendor/sqlx-core"),
        "the scanner misses the sqlx-core patch: {deps:?}"
    );
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let before_build = copies_until(&dockerfile, |l| l.contains("cargo build"));
    for dep in &deps {
        assert!(
            before_build.iter().any(|c| Path::new(dep).starts_with(c)),
            "Cargo.toml depends on {dep}, which deploy/Dockerfile does not copy before its first \
             cargo build (COPY lines: {before_build:?})"
        );
    }
}

/// One binary: started in an empty directory, with nothing of the
/// repository around it (no `policies/`, `examples/` or `schemas/`),
/// `serve --demo` runs on the policies and examples built into it: it
/// answers `/healthz`, a decision for the demo's example body, and a
/// signal submitted from the example the demo wrote out.
#[tokio::test]
async fn serve_demo_runs_from_an_empty_directory() {
    use crate::client::*;
    use crate::common::*;
    use serde_json::Value;

    let data = DataDir::new().await;
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0, "empty");
    let server = Server::start_on(data.clone(), Opts::new().in_data_dir());
    let res = send(server.get("/healthz")).await;
    assert_eq!(res.status(), 200);
    for name in ["policies", "examples", "schemas"] {
        assert!(!data.file(name).exists(), "{name} in the working directory");
    }
    let example = |name: &str| -> Value {
        let text = std::fs::read_to_string(data.file(&format!("demo/examples/{name}")))
            .unwrap_or_else(|e| panic!("the demo's example {name}: {e}"));
        assert_eq!(
            text,
            std::fs::read_to_string(root().join("examples").join(name)).unwrap(),
            "the demo writes the repository's {name}"
        );
        serde_json::from_str(&text).unwrap()
    };
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let decision = ok_json(
        regisseur
            .post("/v1/decisions", None, &example("decision.json"))
            .await,
        200,
    )
    .await;
    assert_eq!(decision["allow"], true, "{decision}");
    let revision = decision["revision"].as_str().unwrap_or_default();
    assert!(revision.starts_with("sha256:"), "{decision}");
    let reporter = Role::of(&server, "emmen", "aandachtfunctionaris-sociaal");
    reporter.submit(&example("signal.json")).await;
    // `policy test` there, without `--policies`, tests the same embedded
    // policies: all pass, under the revision that decided.
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["policy", "test"]).current_dir(data.path());
    hermetic(&mut cmd);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(" passed, 0 failed (") && text.contains(revision),
        "{text}"
    );
    let doc = openapi(&server).await;
    assert!(
        doc["components"]["parameters"]["KetenpoortPurpose"]["schema"]["enum"]
            .as_array()
            .is_some_and(|e| e.len() > 3),
        "the purposes of the embedded policies"
    );
}
