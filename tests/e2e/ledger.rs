//! The disclosure log (invariants 2, 3, 4) from outside: proofs checked by a
//! verifier written here from RFC 6962 / RFC 9162, checkpoints checked by
//! verifiers that are not ketenpoort's, `log verify` against tampered copies,
//! concurrent appenders (two server processes on one PostgreSQL), appends
//! that fail, no plaintext personal data in the log, the privacy officer's
//! API, and receipts.
//!
//! Most entries here come from `GET /v1/log/search?partner=zvhd` by the ZVHD
//! privacy officer: each such search appends exactly one `audit-query` entry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::StreamExt;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use crate::client::*;
use crate::common::*;

const MELDER: &str = "aandachtfunctionaris-sociaal";

// ---------------------------------------------------------------------------
// RFC 6962 / RFC 9162, written here from the RFCs (not ketenpoort's code).

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

/// RFC 6962 §2.1: SHA-256(0x00 || leaf).
fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[0], leaf])
}

/// RFC 6962 §2.1: SHA-256(0x01 || left || right).
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[1], left, right])
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// RFC 6962 §2.1 MTH, by its recursive definition.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => node_hash(&mth(&leaves[..split(n)]), &mth(&leaves[split(n)..])),
    }
}

/// RFC 6962 §2.1.1 PATH(m, D[n]).
fn rfc_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    let mut p = if m < k {
        rfc_path(m, &leaves[..k])
    } else {
        rfc_path(m - k, &leaves[k..])
    };
    p.push(if m < k {
        mth(&leaves[k..])
    } else {
        mth(&leaves[..k])
    });
    p
}

/// RFC 6962 §2.1.2 PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
fn rfc_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = split(n);
        let mut p = if m <= k {
            subproof(m, &leaves[..k], whole)
        } else {
            subproof(m - k, &leaves[k..], false)
        };
        p.push(if m <= k {
            mth(&leaves[k..])
        } else {
            mth(&leaves[..k])
        });
        p
    }
    subproof(m, leaves, true)
}

/// RFC 9162 §2.1.3.2: verifying an inclusion proof.
fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: verifying a consistency proof (equal sizes: an empty
/// proof and equal roots).
fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    path: &[Hash],
) -> bool {
    if first == second {
        return path.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second || path.is_empty() {
        return false;
    }
    let mut path = path.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

/// Every subtree hash of the tree over `leaves` in the order Go's
/// sumdb/tlog stores them (the README's layout): for each record, its leaf
/// hash, then every subtree it completes, bottom-up. Position = stored id.
fn stored_hashes(leaves: &[Hash]) -> Vec<Hash> {
    let mut out = Vec::new();
    let mut right_edge: Vec<(u32, Hash)> = Vec::new();
    for leaf in leaves {
        out.push(*leaf);
        let mut cur = (0, *leaf);
        while let Some(&(height, left)) = right_edge.last() {
            if height != cur.0 {
                break;
            }
            right_edge.pop();
            cur = (height + 1, node_hash(&left, &cur.1));
            out.push(cur.1);
        }
        right_edge.push(cur);
    }
    out
}

/// Stored id of record `n`'s leaf hash: n + n/2 + n/4 + ...
fn leaf_hash_id(n: u64) -> u64 {
    let (mut n, mut id) = (n, 0);
    while n > 0 {
        id += n;
        n >>= 1;
    }
    id
}

#[test]
fn the_verifiers_here_accept_the_rfc_proofs_and_nothing_else() {
    let leaves: Vec<Hash> = (0..41u8).map(|i| leaf_hash(&[i])).collect();
    for n in 1..leaves.len() {
        let root = mth(&leaves[..n]);
        for m in 0..n {
            let path = rfc_path(m, &leaves[..n]);
            assert!(verify_inclusion(
                m as u64, n as u64, &leaves[m], &path, &root
            ));
            assert!(!verify_inclusion(
                m as u64,
                n as u64,
                &leaves[(m + 1) % 40],
                &path,
                &root
            ));
            let other_root = mth(&leaves[..n + 1]);
            assert!(!verify_inclusion(
                m as u64,
                n as u64,
                &leaves[m],
                &path,
                &other_root
            ));
        }
        for m in 1..=n {
            let (a, b) = (mth(&leaves[..m]), root);
            let proof = rfc_proof(m, &leaves[..n]);
            assert!(
                verify_consistency(m as u64, n as u64, &a, &b, &proof),
                "{m} {n}"
            );
            if m < n {
                assert!(
                    !verify_consistency(m as u64, n as u64, &b, &a, &proof),
                    "{m} {n}"
                );
            }
        }
    }
    // The stored layout: record n's leaf hash sits at n + n/2 + n/4 + ...
    let stored = stored_hashes(&leaves);
    for (n, leaf) in leaves.iter().enumerate() {
        assert_eq!(stored[leaf_hash_id(n as u64) as usize], *leaf);
    }
    assert_eq!(stored[leaf_hash_id(32) as usize - 1], mth(&leaves[..32]));
}

// ---------------------------------------------------------------------------
// C2SP signed-note and tlog-checkpoint, checked here with ring's Ed25519.

/// `<name>+<hex key id>+<base64(0x01 || key)>` → (name, key id, public key).
fn parse_verifier_key(vkey: &str) -> (String, [u8; 4], Vec<u8>) {
    let mut parts = vkey.trim().splitn(3, '+');
    let (name, id, key) = (
        parts.next().unwrap(),
        parts.next().expect("key id"),
        parts.next().expect("key"),
    );
    let key = STANDARD.decode(key).expect("base64 key");
    assert_eq!((key.len(), key[0]), (33, 1), "an Ed25519 verifier key");
    let id = u32::from_str_radix(id, 16)
        .expect("hex key id")
        .to_be_bytes();
    assert_eq!(sha256(&[name.as_bytes(), b"\n", &key])[..4], id, "key id");
    (name.to_owned(), id, key[1..].to_vec())
}

/// Opens a checkpoint note: the log key's signature must verify; returns
/// (origin, size, root).
fn open_checkpoint(note: &str, vkey: &str) -> (String, u64, Hash) {
    let (name, id, key) = parse_verifier_key(vkey);
    let (text, sigs) = note.rsplit_once("\n\n").expect("a signature block");
    let text = format!("{text}\n");
    let mut verified = 0;
    for line in sigs.lines() {
        let (who, sig) = line
            .strip_prefix("\u{2014} ")
            .and_then(|l| l.split_once(' '))
            .expect("a signature line");
        let sig = STANDARD.decode(sig).expect("base64 signature");
        if who == name && sig[..4] == id {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key)
                .verify(text.as_bytes(), &sig[4..])
                .expect("the log's signature verifies");
            verified += 1;
        }
    }
    assert_eq!(verified, 1, "one signature by the log key: {note}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "origin, size, root: {text}");
    let root = STANDARD.decode(lines[2]).expect("base64 root");
    (
        lines[0].to_owned(),
        lines[1].parse().expect("decimal size"),
        root.try_into().expect("32-byte root"),
    )
}

/// A fresh Ed25519 key (not the log's).
fn other_key() -> ring::signature::Ed25519KeyPair {
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("keygen");
    ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
}

/// The verifier key of `pair` under `name`, and a signature line over `text`.
fn sign_note(name: &str, pair: &ring::signature::Ed25519KeyPair, text: &str) -> (String, String) {
    use ring::signature::KeyPair;
    let mut key = vec![1u8];
    key.extend_from_slice(pair.public_key().as_ref());
    let id: [u8; 4] = sha256(&[name.as_bytes(), b"\n", &key])[..4]
        .try_into()
        .unwrap();
    let mut sig = id.to_vec();
    sig.extend_from_slice(pair.sign(text.as_bytes()).as_ref());
    (
        format!("{name}+{}+{}", hex::encode(id), STANDARD.encode(&key)),
        format!("\u{2014} {name} {}\n", STANDARD.encode(sig)),
    )
}

// ---------------------------------------------------------------------------
// Entries as the API returns them.

/// The entry `receipt` names, read by this role (the ZVHD privacy
/// officer): its leaf hash is the receipt's and the SHA-256 of its leaf
/// bytes. Returns the decoded entry.
async fn receipted_entry(role: &Role<'_>, (index, hash): (u64, Hash)) -> Value {
    let e = role.entries(index, index + 1).await.remove(0);
    assert_eq!(e["index"], json!(index));
    assert_eq!(
        hash_of(&e["leafHash"]),
        hash,
        "receipt leaf hash of entry {index}"
    );
    assert_eq!(
        leaf_hash(&leaf_of(&e)),
        hash,
        "SHA-256(0x00 || leaf) of {index}"
    );
    assert_eq!(e["entry"]["index"], json!(index));
    e["entry"].clone()
}

fn hash_of(v: &Value) -> Hash {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    STANDARD
        .decode(s)
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

fn hashes_of(v: &Value) -> Vec<Hash> {
    v.as_array().expect("array").iter().map(hash_of).collect()
}

fn leaf_of(e: &Value) -> Vec<u8> {
    STANDARD
        .decode(e["leaf"].as_str().expect("leaf bytes"))
        .expect("base64")
}

fn index_of(e: &Value) -> u64 {
    e["index"].as_u64().expect("index")
}

fn example_signal() -> Value {
    serde_json::from_str(include_str!("../../examples/signal.json")).expect("examples/signal.json")
}

/// A server whose rate limit no test here reaches, and whose checkpoints
/// are signed only on request.
fn quiet() -> Opts {
    Opts::new()
        .env("KETENPOORT_HTTP__RATE_LIMIT_PER_SECOND", 1_000_000)
        .env("KETENPOORT_HTTP__RATE_LIMIT_BURST", 1_000_000)
        .env("KETENPOORT_LOG__CHECKPOINT_INTERVAL_SECS", 86_400)
        // Published for the RIEC within a second of being signed.
        .env("KETENPOORT_LOG__PUBLISH_INTERVAL_SECS", 1)
}

// ---------------------------------------------------------------------------
// 1. Proofs.

/// Fetches `paths` (a few at a time) as JSON, in order.
async fn fetch_all(role: &Role<'_>, paths: Vec<String>) -> Vec<Value> {
    futures::stream::iter(paths)
        .map(|path| async move { ok_json(role.get(&path, None).await, 200).await })
        .buffered(4)
        .collect()
        .await
}

#[tokio::test]
async fn proofs_verify_with_an_rfc_9162_verifier_written_here() {
    let server = Server::start(quiet()).await;
    let fg = Role::of(&server, "zvhd", "fg");
    let vkey = fg.verifier_key().await;
    const N: u64 = 70;
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    for i in 0..N {
        assert_eq!(fg.append_one().await, i, "indices are contiguous from 0");
        let (origin, size, root) = open_checkpoint(&fg.sign_checkpoint().await, &vkey);
        assert!(
            vkey.starts_with(&format!("{origin}+")),
            "the origin is the key name"
        );
        assert_eq!(size, i + 1);
        roots.insert(size, root);
    }
    let leaves: Vec<Hash> = fg
        .entries(0, N)
        .await
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!((index_of(e), &e["entry"]["index"]), (i as u64, &json!(i)));
            let h = leaf_hash(&leaf_of(e));
            assert_eq!(
                hash_of(&e["leafHash"]),
                h,
                "leafHash of {i} is SHA-256(0x00 || leaf)"
            );
            h
        })
        .collect();
    for (size, root) in &roots {
        let entries = &leaves[..*size as usize];
        assert_eq!(
            mth(entries),
            *root,
            "the signed root of {size} is the MTH of the entries"
        );
    }

    // Every (index, treeSize) up to 70 entries.
    let pairs: Vec<(u64, u64)> = (1..=N).flat_map(|s| (0..s).map(move |i| (i, s))).collect();
    let paths = pairs
        .iter()
        .map(|(i, s)| format!("/v1/log/proofs/inclusion?index={i}&treeSize={s}"));
    for (&(i, s), p) in pairs.iter().zip(fetch_all(&fg, paths.collect()).await) {
        let (leaf, root, path) = (leaves[i as usize], roots[&s], hashes_of(&p["proof"]));
        assert_eq!(
            (p["index"].as_u64(), p["treeSize"].as_u64()),
            (Some(i), Some(s))
        );
        assert_eq!(
            hash_of(&p["leafHash"]),
            leaf,
            "leaf hash in the proof of {i}"
        );
        assert_eq!(
            hash_of(&p["rootHash"]),
            root,
            "root in the proof of {i} in {s}"
        );
        assert_eq!(
            path,
            rfc_path(i as usize, &leaves[..s as usize]),
            "PATH({i}, D[{s}])"
        );
        assert!(verify_inclusion(i, s, &leaf, &path, &root), "{i} is in {s}");
        assert!(!verify_inclusion(
            i,
            s,
            &leaf_hash(b"never logged"),
            &path,
            &root
        ));
        if s > 1 {
            assert!(
                !verify_inclusion((i + 1) % s, s, &leaf, &path, &root),
                "{i} {s}"
            );
        }
        for k in 0..path.len() {
            let mut bad = path.clone();
            bad[k][7] ^= 1;
            assert!(
                !verify_inclusion(i, s, &leaf, &bad, &root),
                "{i} {s} element {k}"
            );
        }
    }

    // Every (from, to) up to 70 entries.
    let pairs: Vec<(u64, u64)> = (1..=N).flat_map(|t| (1..=t).map(move |f| (f, t))).collect();
    let paths = pairs
        .iter()
        .map(|(f, t)| format!("/v1/log/proofs/consistency?from={f}&to={t}"));
    for (&(f, t), p) in pairs.iter().zip(fetch_all(&fg, paths.collect()).await) {
        let (a, b, path) = (roots[&f], roots[&t], hashes_of(&p["proof"]));
        assert_eq!((p["from"].as_u64(), p["to"].as_u64()), (Some(f), Some(t)));
        assert_eq!(
            (hash_of(&p["fromRoot"]), hash_of(&p["toRoot"])),
            (a, b),
            "{f} {t}"
        );
        assert_eq!(
            path,
            rfc_proof(f as usize, &leaves[..t as usize]),
            "PROOF({f}, D[{t}])"
        );
        assert!(
            verify_consistency(f, t, &a, &b, &path),
            "{f} is a prefix of {t}"
        );
        let mut other = b;
        other[0] ^= 1;
        assert!(!verify_consistency(f, t, &a, &other, &path), "{f} {t}");
        for k in 0..path.len() {
            let mut bad = path.clone();
            bad[k][7] ^= 1;
            assert!(
                !verify_consistency(f, t, &a, &b, &bad),
                "{f} {t} element {k}"
            );
        }
    }

    let size = fg.append_one().await + 1;
    for (query, status) in [
        ("index=0&treeSize=0".to_owned(), 400),
        ("index=3&treeSize=3".to_owned(), 400),
        ("index=5&treeSize=2".to_owned(), 400),
        (format!("index=0&treeSize={}", size + 1), 400),
        (format!("index={size}&treeSize={size}"), 404),
        (format!("index={}&treeSize={}", size + 100, size + 200), 404),
        ("index=0".to_owned(), 400),
        ("index=-1&treeSize=3".to_owned(), 400),
        ("index=x&treeSize=3".to_owned(), 400),
        ("index=0&treeSize=3&extra=1".to_owned(), 400),
    ] {
        let res = fg
            .get(&format!("/v1/log/proofs/inclusion?{query}"), None)
            .await;
        problem(res, status, None).await;
    }
    for query in [
        "from=0&to=3".to_owned(),
        "from=4&to=3".to_owned(),
        format!("from=1&to={}", size + 1),
        "from=1".to_owned(),
        "from=-1&to=3".to_owned(),
        "from=1&to=3&extra=1".to_owned(),
    ] {
        let res = fg
            .get(&format!("/v1/log/proofs/consistency?{query}"), None)
            .await;
        problem(res, 400, None).await;
    }
}

// ---------------------------------------------------------------------------
// 2. Checkpoints, verified by verifiers that are not ours.

const CHECKPOINT_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/verify_checkpoint.py");

/// `python3 scripts/verify_checkpoint.py VKEY NOTE [extra]`: Ok(stdout) on
/// exit 0, Err(stderr) on exit 1. Anything else (no python3, no
/// `cryptography`) fails the test: this check is never skipped.
fn python_verify(dir: &Path, vkey: &str, note: &str, extra: &[&str]) -> Result<String, String> {
    let file = dir.join(format!("note-{}", random_id()));
    std::fs::write(&file, note).expect("writing the note");
    let out = Command::new("python3")
        .arg(CHECKPOINT_SCRIPT)
        .arg(vkey)
        .arg(&file)
        .args(extra)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): scripts/verify_checkpoint.py needs Python 3 \
                 with the package `cryptography` (.ci/run installs it)"
            )
        });
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match out.status.code() {
        Some(0) => Ok(text(&out.stdout)),
        Some(1) => Err(text(&out.stderr)),
        _ => panic!(
            "scripts/verify_checkpoint.py could not check the note ({}): {}",
            out.status,
            text(&out.stderr)
        ),
    }
}

/// The `signed_note` crate (ed25519-dalek): another independent verifier.
fn signed_note_verify(vkey: &str, note: &str) -> bool {
    let Ok(v) = signed_note::StandardVerifier::new(vkey) else {
        return false;
    };
    let known = signed_note::VerifierList::new(vec![Box::new(v)]);
    signed_note::Note::from_bytes(note.as_bytes()).is_ok_and(|n| n.verify(&known).is_ok())
}

#[tokio::test]
async fn checkpoints_verify_with_verifiers_that_are_not_ours() {
    let server = Server::start(quiet()).await;
    let fg = Role::of(&server, "zvhd", "fg");
    for _ in 0..5 {
        fg.append_one().await;
    }
    let vkey = fg.verifier_key().await;
    let note = fg.sign_checkpoint().await;
    let served = fg.get("/v1/log/checkpoint", None).await;
    assert_eq!(
        served.text().await.unwrap(),
        note,
        "GET serves the newest checkpoint"
    );
    let (origin, size, root) = open_checkpoint(&note, &vkey);
    assert_eq!(size, 5);

    let dir = server.dir();
    let ok = python_verify(dir, &vkey, &note, &[]).unwrap_or_else(|e| panic!("genuine: {e}"));
    assert_eq!(
        ok.trim(),
        format!("verified {origin} 5 {}", STANDARD.encode(root))
    );
    assert!(signed_note_verify(&vkey, &note));
    let body = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let cp = tlog_tiles::Checkpoint::from_bytes(body.text()).expect("a C2SP tlog-checkpoint");
    assert_eq!((cp.size(), cp.hash().0), (5, root));

    // Later checkpoints of the same log verify too.
    fg.append_one().await;
    let later = fg.sign_checkpoint().await;
    assert!(python_verify(dir, &vkey, &later, &[]).is_ok());
    assert!(signed_note_verify(&vkey, &later));

    let (text, sigs) = note.rsplit_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let (sig_name, sig) = sigs
        .trim_end()
        .strip_prefix("\u{2014} ")
        .unwrap()
        .split_once(' ')
        .unwrap();
    let mut flipped = STANDARD.decode(sig).unwrap();
    *flipped.last_mut().unwrap() ^= 1;
    let flipped = format!(
        "{text}\n\u{2014} {sig_name} {}\n",
        STANDARD.encode(&flipped)
    );
    let stranger = other_key();
    let (stranger_key, stranger_sig) = sign_note(&origin, &stranger, &text);
    let bigger = text.replacen("\n5\n", "\n6\n", 1);
    let (_, bigger_sig) = sign_note(&origin, &stranger, &bigger);
    let other_root = note.replacen(&STANDARD.encode(root), &STANDARD.encode([7u8; 32]), 1);
    let cases = [
        (
            "another key's signature beside the log's",
            &vkey,
            format!("{note}{stranger_sig}"),
            true,
        ),
        (
            "another size",
            &vkey,
            note.replacen("\n5\n", "\n6\n", 1),
            false,
        ),
        ("another root", &vkey, other_root, false),
        ("a flipped signature bit", &vkey, flipped, false),
        ("no signature", &vkey, format!("{text}\n"), false),
        (
            "only another key's signature",
            &vkey,
            format!("{text}\n{stranger_sig}"),
            false,
        ),
        (
            "another key signs a bigger tree",
            &vkey,
            format!("{bigger}\n{bigger_sig}"),
            false,
        ),
        (
            "another log's verifier key",
            &stranger_key,
            note.clone(),
            false,
        ),
        (
            "that other log's own note",
            &stranger_key,
            format!("{bigger}\n{bigger_sig}"),
            true,
        ),
        (
            "a control character in the text",
            &vkey,
            note.replacen('\n', "\r\n", 1),
            false,
        ),
    ];
    for (what, key, candidate, valid) in cases {
        let python = python_verify(dir, key, &candidate, &[]);
        assert_eq!(python.is_ok(), valid, "{what}: {python:?}");
        assert_eq!(
            signed_note_verify(key, &candidate),
            valid,
            "{what} (signed_note)"
        );
    }
    // The origin must be the one the verifier expects.
    assert!(python_verify(dir, &vkey, &note, &["--origin", "example.org/other/log"]).is_err());
    assert!(python_verify(dir, &vkey, &note, &["--origin", &origin]).is_ok());
}

// ---------------------------------------------------------------------------
// 3. Tampering, and `ketenpoort log verify`.

/// Builds a log of `size` entries of many kinds, with checkpoints signed at
/// `checkpoints` (the last one at `size`); returns the index of an entry in
/// the middle that has subjects, a recipient and a purpose (a read).
async fn varied_log(server: &Server, size: u64, checkpoints: &[u64]) -> u64 {
    let fg = Role::of(server, "zvhd", "fg");
    let vkey = fg.verifier_key().await;
    let melder = Role::of(server, "emmen", MELDER);
    let regisseur = Role::of(server, "zvhd", "ketenregisseur");
    let mut n = 0u64;
    // One more entry: sign a checkpoint where one is due.
    let appended = async |n: &mut u64| {
        *n += 1;
        if checkpoints.contains(n) {
            let (_, signed, _) = open_checkpoint(&fg.sign_checkpoint().await, &vkey);
            assert_eq!(signed, *n, "one entry per request");
        }
    };
    while n < 96 {
        fg.append_one().await;
        appended(&mut n).await;
    }
    let (a, _) = melder.submit(&example_signal()).await;
    appended(&mut n).await;
    let (b, _) = melder.submit(&example_signal()).await;
    appended(&mut n).await;
    let step = async |role: &Role<'_>, path: &str, purpose: &str, status: u16, n: &mut u64| {
        assert_eq!(role.get(path, purpose).await.status(), status, "{path}");
        appended(n).await;
    };
    let signal_a = format!("/v1/signals/{a}");
    step(&regisseur, &signal_a, "drieluik", 200, &mut n).await;
    let assen = Role::of(server, "assen", MELDER);
    step(&assen, &signal_a, "signalering", 403, &mut n).await;
    let riec = Role::of(server, "riec", "analist");
    step(&riec, "/v1/signals", "fenomeenanalyse", 403, &mut n).await;
    assert_eq!(regisseur.refer(&a, "nla", "opsporing").await.status(), 201);
    appended(&mut n).await;
    let nla = Role::of(server, "nla", "inspecteur");
    step(&nla, "/v1/inbox", "opsporing", 200, &mut n).await;
    step(&regisseur, "/v1/signals", "drieluik", 200, &mut n).await;
    let emmen_fg = Role::of(server, "emmen", "fg");
    let own = "/v1/log/search?from=2000-01-01&to=2000-01-02";
    step(&emmen_fg, own, AUDIT, 200, &mut n).await;
    let res = regisseur.get(&format!("/v1/signals/{b}"), "drieluik").await;
    assert_eq!(res.status(), 200);
    let target = receipt(&res).0;
    appended(&mut n).await;
    assert_eq!(target + 1, n);
    while n < size {
        fg.append_one().await;
        appended(&mut n).await;
    }
    target
}

async fn fetch_text(conn: &mut AnyConnection, sql: &str, idx: u64) -> Option<String> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(idx as i64)
        .fetch_one(conn)
        .await
        .expect(sql)
        .try_get(0)
        .expect(sql)
}

async fn fetch_bytes(conn: &mut AnyConnection, sql: &str, id: u64) -> Vec<u8> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(id as i64)
        .fetch_one(conn)
        .await
        .expect(sql)
        .try_get(0)
        .expect(sql)
}

async fn exec(conn: &mut AnyConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `s` with its last (ASCII) character changed.
fn one_char_changed(s: &str) -> String {
    let (head, last) = s.split_at(s.len() - 1);
    format!("{head}{}", if last == "a" { "b" } else { "a" })
}

fn flipped(mut b: Vec<u8>, at: usize) -> Vec<u8> {
    b[at] ^= 0x01;
    b
}

async fn set_entry_blob(conn: &mut AnyConnection, column: &str, idx: u64, value: Vec<u8>) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE log_entries SET {column} = $1 WHERE idx = $2"
    )))
    .bind(value)
    .bind(idx as i64)
    .execute(conn)
    .await
    .expect("update");
}

/// Each way of tampering, applied to a copy of the log's database.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    Leaf,
    LeafHash,
    Ts,
    Column(&'static str),
    SubjectChanged,
    SubjectRemoved,
    LeafTreeHash,
    SubtreeHash,
    Deleted,
    Inserted,
    Swapped,
    /// Leaf, leaf hash and columns rewritten consistently.
    Rewritten,
    /// ... and every tree hash after it recomputed: only a checkpoint catches it.
    RewrittenWithTree,
    CheckpointSignatureForged,
    CheckpointSignedByAnotherKey,
    Truncated,
    TruncatedHeadKept,
    HeadRaised,
    /// Truncated, head lowered, the checkpoints above the cut deleted: a
    /// log whole again, only a held checkpoint catches it.
    TruncatedWithCheckpoints,
    /// Rewritten with its tree and the checkpoints after it deleted: the same.
    RewrittenWithTreeCheckpointsDeleted,
    /// The projection entry k names: a field name in its bytes changed.
    ProjectionAltered,
    /// ... its bytes replaced by another stored projection's.
    ProjectionReplaced,
    /// ... its row deleted.
    ProjectionDeleted,
    /// Entry k's projection column names another stored projection.
    ProjectionColumn,
}

/// Applies `t` around entry `k` of a log of `size` entries whose
/// checkpoints are `cps`; returns the first bad index `log verify` must name
/// and a fragment of its reason.
async fn tamper(
    conn: &mut AnyConnection,
    t: Tamper,
    k: u64,
    size: u64,
    cps: &[u64],
) -> (u64, &'static str) {
    let next_cp = *cps.iter().find(|c| **c > k).expect("a checkpoint after k");
    let named = fetch_bytes(conn, "SELECT projection FROM log_entries WHERE idx = $1", k).await;
    let first_naming: i64 =
        sqlx::query_scalar("SELECT MIN(idx) FROM log_entries WHERE projection = $1")
            .bind(named.clone())
            .fetch_one(&mut *conn)
            .await
            .expect("entries naming k's projection");
    let first_naming = first_naming as u64;
    match t {
        Tamper::ProjectionAltered => {
            let body: Vec<u8> =
                sqlx::query_scalar("SELECT body FROM log_projections WHERE hash = $1")
                    .bind(named.clone())
                    .fetch_one(&mut *conn)
                    .await
                    .expect("k's projection is stored");
            let text = String::from_utf8(body).unwrap();
            // Hide that the victim's name was disclosed.
            let edited = text.replacen("\"victims.name\",", "", 1);
            assert_ne!(edited, text, "k disclosed the victim's name: {text}");
            sqlx::query("UPDATE log_projections SET body = $1 WHERE hash = $2")
                .bind(edited.into_bytes())
                .bind(named)
                .execute(&mut *conn)
                .await
                .expect("update");
            (first_naming, "do not hash to its name")
        }
        Tamper::ProjectionReplaced => {
            let other: Vec<u8> = sqlx::query_scalar(
                "SELECT body FROM log_projections WHERE hash <> $1 ORDER BY hash LIMIT 1",
            )
            .bind(named.clone())
            .fetch_one(&mut *conn)
            .await
            .expect("another projection");
            sqlx::query("UPDATE log_projections SET body = $1 WHERE hash = $2")
                .bind(other)
                .bind(named)
                .execute(&mut *conn)
                .await
                .expect("update");
            (first_naming, "do not hash to its name")
        }
        Tamper::ProjectionDeleted => {
            sqlx::query("DELETE FROM log_projections WHERE hash = $1")
                .bind(named)
                .execute(&mut *conn)
                .await
                .expect("delete");
            (first_naming, "which is not stored")
        }
        Tamper::ProjectionColumn => {
            let other: Vec<u8> = sqlx::query_scalar(
                "SELECT hash FROM log_projections WHERE hash <> $1 ORDER BY hash LIMIT 1",
            )
            .bind(named)
            .fetch_one(&mut *conn)
            .await
            .expect("another projection");
            set_entry_blob(conn, "projection", k, other).await;
            (k, "column")
        }
        Tamper::Leaf => {
            let leaf = fetch_bytes(conn, "SELECT leaf FROM log_entries WHERE idx = $1", k).await;
            let at = leaf.len() / 2;
            set_entry_blob(conn, "leaf", k, flipped(leaf, at)).await;
            (k, "leaf hash")
        }
        Tamper::LeafHash => {
            let h = fetch_bytes(conn, "SELECT leaf_hash FROM log_entries WHERE idx = $1", k).await;
            set_entry_blob(conn, "leaf_hash", k, flipped(h, 31)).await;
            (k, "leaf hash")
        }
        Tamper::Ts => {
            exec(
                conn,
                &format!("UPDATE log_entries SET ts = ts + 1 WHERE idx = {k}"),
            )
            .await;
            (k, "column")
        }
        Tamper::Column(column) => {
            let sql = format!("SELECT {column} FROM log_entries WHERE idx = $1");
            let v = fetch_text(conn, &sql, k).await.expect("a value to change");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE log_entries SET {column} = $1 WHERE idx = $2"
            )))
            .bind(one_char_changed(&v))
            .bind(k as i64)
            .execute(conn)
            .await
            .expect("update");
            (k, "column")
        }
        Tamper::SubjectChanged | Tamper::SubjectRemoved => {
            let p = fetch_text(
                conn,
                "SELECT MIN(pseudonym) FROM log_subjects WHERE idx = $1",
                k,
            )
            .await
            .expect("entry k has subjects");
            let q = match t {
                Tamper::SubjectChanged => sqlx::query(
                    "UPDATE log_subjects SET pseudonym = $1 WHERE idx = $2 AND pseudonym = $3",
                )
                .bind(one_char_changed(&p)),
                _ => sqlx::query("DELETE FROM log_subjects WHERE idx = $1 AND pseudonym = $2"),
            };
            q.bind(k as i64)
                .bind(p)
                .execute(conn)
                .await
                .expect("subject row");
            (k, "subject index")
        }
        Tamper::LeafTreeHash | Tamper::SubtreeHash => {
            let (id, record) = match t {
                Tamper::LeafTreeHash => (leaf_hash_id(k), k),
                // the root of the first 128 entries, stored with entry 127
                _ => (leaf_hash_id(128) - 1, 127),
            };
            let h = fetch_bytes(conn, "SELECT hash FROM log_hashes WHERE id = $1", id).await;
            sqlx::query("UPDATE log_hashes SET hash = $1 WHERE id = $2")
                .bind(flipped(h, 0))
                .bind(id as i64)
                .execute(conn)
                .await
                .expect("update");
            (record, "tree hashes")
        }
        Tamper::Deleted => {
            exec(conn, &format!("DELETE FROM log_entries WHERE idx = {k}")).await;
            (k, "missing")
        }
        Tamper::Inserted => {
            // A well-formed entry at k (k's own, with another request id),
            // everything from k on moved up by one.
            let row = sqlx::query("SELECT leaf, ts, action, actor_partner, actor_role, recipient, purpose, outcome, projection, actor_user FROM log_entries WHERE idx = $1")
                .bind(k as i64)
                .fetch_one(&mut *conn)
                .await
                .expect("entry k");
            let leaf =
                crate::leaves::with_request_id(&row.get::<Vec<u8>, _>(0), uuid::Uuid::now_v7());
            let hash = leaf_hash(&leaf).to_vec();
            exec(
                conn,
                &format!("UPDATE log_entries SET idx = -idx - 1 WHERE idx >= {k}"),
            )
            .await;
            exec(conn, "UPDATE log_entries SET idx = -idx WHERE idx < 0").await;
            sqlx::query("INSERT INTO log_entries (idx, leaf, leaf_hash, ts, action, actor_partner, actor_role, recipient, purpose, outcome, projection, actor_user) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
                .bind(k as i64)
                .bind(leaf)
                .bind(hash)
                .bind(row.get::<i64, _>(1))
                .bind(row.get::<String, _>(2))
                .bind(row.get::<String, _>(3))
                .bind(row.get::<String, _>(4))
                .bind(row.get::<Option<String>, _>(5))
                .bind(row.get::<Option<String>, _>(6))
                .bind(row.get::<String, _>(7))
                .bind(row.get::<Option<Vec<u8>>, _>(8))
                .bind(row.get::<Option<String>, _>(9))
                .execute(&mut *conn)
                .await
                .expect("insert");
            exec(conn, "UPDATE log_head SET size = size + 1").await;
            (k, "tree hashes")
        }
        Tamper::Swapped => {
            let other = k + 3;
            exec(
                conn,
                &format!("UPDATE log_entries SET idx = -1 WHERE idx = {k}"),
            )
            .await;
            exec(
                conn,
                &format!("UPDATE log_entries SET idx = {k} WHERE idx = {other}"),
            )
            .await;
            exec(
                conn,
                &format!("UPDATE log_entries SET idx = {other} WHERE idx = -1"),
            )
            .await;
            (k, "is stored at index")
        }
        Tamper::Rewritten
        | Tamper::RewrittenWithTree
        | Tamper::RewrittenWithTreeCheckpointsDeleted => {
            // Hide a disclosure: outcome "disclosed" becomes "denied".
            let leaf = fetch_bytes(conn, "SELECT leaf FROM log_entries WHERE idx = $1", k).await;
            let forged = crate::leaves::with_outcome(&leaf, "denied");
            assert_ne!(forged, leaf);
            sqlx::query("UPDATE log_entries SET leaf = $1, leaf_hash = $2, outcome = 'denied' WHERE idx = $3")
                .bind(forged.clone())
                .bind(leaf_hash(&forged).to_vec())
                .bind(k as i64)
                .execute(&mut *conn)
                .await
                .expect("update");
            if matches!(t, Tamper::Rewritten) {
                return (k, "tree hashes");
            }
            if matches!(t, Tamper::RewrittenWithTreeCheckpointsDeleted) {
                exec(
                    conn,
                    &format!("DELETE FROM log_checkpoints WHERE size > {k}"),
                )
                .await;
            }
            let rows = sqlx::query("SELECT leaf FROM log_entries ORDER BY idx")
                .fetch_all(&mut *conn)
                .await
                .expect("leaves");
            let leaves: Vec<Hash> = rows
                .iter()
                .map(|r| leaf_hash(&r.get::<Vec<u8>, _>(0)))
                .collect();
            let first = leaf_hash_id(k);
            exec(conn, &format!("DELETE FROM log_hashes WHERE id >= {first}")).await;
            for (id, h) in stored_hashes(&leaves)
                .into_iter()
                .enumerate()
                .skip(first as usize)
            {
                sqlx::query("INSERT INTO log_hashes (id, hash) VALUES ($1, $2)")
                    .bind(id as i64)
                    .bind(h.to_vec())
                    .execute(&mut *conn)
                    .await
                    .expect("insert hash");
            }
            match t {
                Tamper::RewrittenWithTree => (next_cp - 1, "checkpoint of size"),
                _ => (next_cp - 1, "held checkpoint"),
            }
        }
        Tamper::CheckpointSignatureForged | Tamper::CheckpointSignedByAnotherKey => {
            let note = fetch_text(
                conn,
                "SELECT note FROM log_checkpoints WHERE size = $1",
                next_cp,
            )
            .await
            .expect("note");
            let (text, sig) = note.rsplit_once("\n\n").unwrap();
            let text = format!("{text}\n");
            let (name, sig) = sig
                .strip_prefix("\u{2014} ")
                .unwrap()
                .split_once(' ')
                .unwrap();
            let (_, stranger) = sign_note(name, &other_key(), &text);
            let line = match t {
                // The log's key name and id, another key's signature.
                Tamper::CheckpointSignatureForged => {
                    let theirs = STANDARD
                        .decode(stranger.trim_end().rsplit(' ').next().unwrap())
                        .unwrap();
                    let mut ours = STANDARD.decode(sig.trim_end()).unwrap();
                    ours[4..].copy_from_slice(&theirs[4..]);
                    format!("\u{2014} {name} {}\n", STANDARD.encode(ours))
                }
                _ => stranger,
            };
            sqlx::query("UPDATE log_checkpoints SET note = $1 WHERE size = $2")
                .bind(format!("{text}\n{line}"))
                .bind(next_cp as i64)
                .execute(&mut *conn)
                .await
                .expect("update");
            (next_cp - 1, "checkpoint of size")
        }
        Tamper::Truncated | Tamper::TruncatedHeadKept | Tamper::TruncatedWithCheckpoints => {
            let cut = size - 50;
            exec(conn, &format!("DELETE FROM log_entries WHERE idx >= {cut}")).await;
            exec(
                conn,
                &format!("DELETE FROM log_subjects WHERE idx >= {cut}"),
            )
            .await;
            exec(
                conn,
                &format!("DELETE FROM log_hashes WHERE id >= {}", leaf_hash_id(cut)),
            )
            .await;
            if matches!(t, Tamper::TruncatedHeadKept) {
                return (cut, "log head");
            }
            exec(conn, &format!("UPDATE log_head SET size = {cut}")).await;
            if matches!(t, Tamper::TruncatedWithCheckpoints) {
                exec(
                    conn,
                    &format!("DELETE FROM log_checkpoints WHERE size > {cut}"),
                )
                .await;
                return (cut, "held checkpoint");
            }
            (cut, "entries were removed")
        }
        Tamper::HeadRaised => {
            exec(conn, "UPDATE log_head SET size = size + 1").await;
            (size, "log head")
        }
    }
}

/// The weekly counts as `week|action|actor|recipient|purpose|outcome|reason`
/// and their numbers, sorted.
async fn counts_table(conn: &mut AnyConnection) -> Vec<(String, i64)> {
    let rows = sqlx::query(
        "SELECT week, action, actor_partner, recipient, purpose, outcome, reason, n FROM log_counts",
    )
    .fetch_all(conn)
    .await
    .expect("log_counts");
    let mut out: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            let texts: Vec<String> = (1..7).map(|i| r.get::<String, _>(i)).collect();
            (
                format!("{}|{}", r.get::<i64, _>(0), texts.join("|")),
                r.get::<i64, _>(7),
            )
        })
        .collect();
    out.sort();
    out
}

/// What a forger with write access to the database does after rewriting
/// entries: drops the weekly counts and lets ketenpoort count the forged
/// log afresh (`migrate`), so that they agree with it.
async fn recount(copy: &DataDir, conn: &mut AnyConnection) {
    exec(conn, "DELETE FROM log_counts").await;
    copy.cli_ok(&["migrate"]);
}

#[tokio::test]
async fn log_verify_names_the_first_bad_index_of_every_tampering() {
    const SIZE: u64 = 300;
    let checkpoints = [1, 64, 128, 200, 256, SIZE];
    let server = Server::start(quiet()).await;
    let k = varied_log(&server, SIZE, &checkpoints).await;
    assert!(
        (96..128).contains(&k),
        "the target entry is in the middle: {k}"
    );
    let vkey = Role::of(&server, "zvhd", "fg").verifier_key().await;
    let data = server.data().clone();
    drop(server);

    // The untouched log verifies: with the data directory's public key, and
    // a copy (without keys) with the verifier key as served.
    let copy = data.copy().await;
    for out in [
        data.cli(&["log", "verify"]),
        copy.cli(&["log", "verify", "--verifier-key", &vkey]),
    ] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the untouched log verifies: {stderr}");
        // The test's checkpoints, and the empty tree's signed at start.
        let verified = format!(
            "log verified: {SIZE} entries, {} checkpoints",
            checkpoints.len() + 1
        );
        assert!(stdout.contains(&verified), "{stdout}");
    }

    // The stored tree is RFC 6962's in tlog's layout, hash for hash.
    let mut conn = data.connect().await;
    let rows = sqlx::query("SELECT leaf, leaf_hash FROM log_entries ORDER BY idx")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let leaves: Vec<Hash> = rows
        .iter()
        .map(|r| {
            let h = leaf_hash(&r.get::<Vec<u8>, _>(0));
            assert_eq!(r.get::<Vec<u8>, _>(1), h.to_vec());
            h
        })
        .collect();
    let stored: Vec<Vec<u8>> = sqlx::query("SELECT hash FROM log_hashes ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<Vec<u8>> = stored_hashes(&leaves).iter().map(|h| h.to_vec()).collect();
    assert_eq!(
        stored, expected,
        "log_hashes is the tlog layout of the RFC 6962 tree"
    );
    drop(conn);

    let cases = [
        Tamper::Leaf,
        Tamper::LeafHash,
        Tamper::Ts,
        Tamper::Column("action"),
        Tamper::Column("actor_partner"),
        Tamper::Column("actor_role"),
        Tamper::Column("recipient"),
        Tamper::Column("purpose"),
        Tamper::Column("outcome"),
        Tamper::Column("actor_user"),
        Tamper::SubjectChanged,
        Tamper::SubjectRemoved,
        Tamper::LeafTreeHash,
        Tamper::SubtreeHash,
        Tamper::Deleted,
        Tamper::Inserted,
        Tamper::Swapped,
        Tamper::Rewritten,
        Tamper::RewrittenWithTree,
        Tamper::CheckpointSignatureForged,
        Tamper::CheckpointSignedByAnotherKey,
        Tamper::Truncated,
        Tamper::TruncatedHeadKept,
        Tamper::HeadRaised,
        Tamper::ProjectionAltered,
        Tamper::ProjectionReplaced,
        Tamper::ProjectionDeleted,
        Tamper::ProjectionColumn,
    ];
    for t in cases {
        let copy = data.copy().await;
        let mut conn = copy.connect().await;
        let (bad, why) = tamper(&mut conn, t, k, SIZE, &checkpoints).await;
        drop(conn);
        let out = copy.cli(&["log", "verify", "--verifier-key", &vkey]);
        assert_fails_at(&out, bad, why, &format!("{t:?}"));
    }

    // The weekly counts the privacy officer's overview reads (migration
    // 0020) are derived from the entries like the columns: counting the
    // log afresh (`migrate`, as on opening a log written before them)
    // gives the very rows the appends kept, and a changed count fails
    // verification.
    let copy = data.copy().await;
    let mut conn = copy.connect().await;
    let kept = counts_table(&mut conn).await;
    assert_eq!(
        kept.iter().map(|(_, n)| n).sum::<i64>(),
        SIZE as i64,
        "the counts add up to the log's size"
    );
    let denied: Vec<_> = kept
        .iter()
        .filter(|(k, _)| k.split('|').nth(5) == Some("denied"))
        .collect();
    assert!(
        !denied.is_empty() && denied.iter().all(|(k, _)| !k.ends_with('|')),
        "refusals are counted by their reason code: {kept:?}"
    );
    exec(&mut conn, "DELETE FROM log_counts").await;
    drop(conn);
    let out = copy.cli_ok(&["migrate"]);
    assert!(out.contains(&format!("{SIZE} entries counted")), "{out}");
    let mut conn = copy.connect().await;
    assert_eq!(
        counts_table(&mut conn).await,
        kept,
        "recounted = kept at append"
    );
    // A partner's privacy officer sees the counts through the scope the
    // search applies to the entries (`Visibility::restrict`, on the same
    // column names): for every partner in the log, what its scope counts is
    // what it finds entry by entry — as actor or recipient, and for its own
    // aggregate releases.
    let partners: Vec<String> = sqlx::query_scalar(
        "SELECT actor_partner FROM log_entries \
         UNION SELECT recipient FROM log_entries WHERE recipient IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(partners.len() >= 3, "partners in the log: {partners:?}");
    for (scope, label) in [
        ("(e.actor_partner = $1 OR e.recipient = $1)", "partner"),
        (
            "e.actor_partner = $1 AND e.action = 'release-aggregate'",
            "own aggregate",
        ),
    ] {
        for p in &partners {
            let entries: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM log_entries e WHERE {scope}"
            )))
            .bind(p)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            let counted: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(SUM(n) AS BIGINT) FROM log_counts e WHERE {scope}"
            )))
            .bind(p)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(
                counted.unwrap_or(0),
                entries,
                "{label} scope of {p}: counted vs entries"
            );
        }
    }
    exec(
        &mut conn,
        "UPDATE log_counts SET n = n + 1 WHERE week = (SELECT MIN(week) FROM log_counts) \
         AND outcome = 'denied'",
    )
    .await;
    drop(conn);
    let out = copy.cli(&["log", "verify", "--verifier-key", &vkey]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a changed count: {stderr}");
    assert!(
        stderr.contains("weekly counts") && !stderr.contains("first bad index"),
        "a changed count: {stderr}"
    );

    // Checkpoints a privacy officer kept (as served): the log is consistent
    // with each, and forged ones are refused.
    let held_dir = tempfile::tempdir().unwrap();
    let mut conn = data.connect().await;
    let mut held = BTreeMap::new();
    for size in [128, SIZE] {
        let note = fetch_text(
            &mut conn,
            "SELECT note FROM log_checkpoints WHERE size = $1",
            size,
        )
        .await
        .expect("a checkpoint");
        let file = held_dir.path().join(format!("checkpoint-{size}"));
        std::fs::write(&file, &note).unwrap();
        held.insert(size, (file.to_str().unwrap().to_owned(), note));
    }
    drop(conn);
    let held_args: Vec<&str> = held
        .values()
        .flat_map(|(file, _)| ["--checkpoint", file.as_str()])
        .collect();
    let with_held = |copy: &DataDir| {
        let mut args = vec!["log", "verify", "--verifier-key", &vkey];
        args.extend(&held_args);
        copy.cli(&args)
    };
    let out = with_held(&data);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("consistent with 2 held checkpoints"),
        "{stdout}"
    );
    let (text, _) = held[&SIZE].1.rsplit_once("\n\n").unwrap();
    let origin = vkey.split('+').next().unwrap();
    let (_, stranger) = sign_note(origin, &other_key(), &format!("{text}\n"));
    let forged = held_dir.path().join("forged");
    std::fs::write(&forged, format!("{text}\n\n{stranger}")).unwrap();
    let out = data.cli(&["log", "verify", "--checkpoint", forged.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("held checkpoint") && stderr.contains("signature"),
        "{stderr}"
    );

    // A log cut back or rewritten together with its tree and its stored
    // checkpoints is whole again: nothing inside the database can tell.
    // A held checkpoint can.
    for t in [
        Tamper::TruncatedWithCheckpoints,
        Tamper::RewrittenWithTreeCheckpointsDeleted,
    ] {
        let copy = data.copy().await;
        let mut conn = copy.connect().await;
        let (bad, why) = tamper(&mut conn, t, k, SIZE, &checkpoints).await;
        recount(&copy, &mut conn).await;
        drop(conn);
        let alone = copy.cli(&["log", "verify", "--verifier-key", &vkey]);
        assert!(
            alone.status.success(),
            "{t:?} passes without outside state (the limit the README states): {}",
            String::from_utf8_lossy(&alone.stderr)
        );
        assert_fails_at(
            &with_held(&copy),
            bad,
            why,
            &format!("{t:?} with held checkpoints"),
        );
    }

    // Re-keyed: an entry rewritten with its tree, the head given a key of
    // the forger's and every checkpoint re-signed with it. The forgery is
    // complete (it verifies against the forger's key) and refused against
    // the log's key, served or from the data directory.
    let copy = data.copy().await;
    let mut conn = copy.connect().await;
    tamper(&mut conn, Tamper::RewrittenWithTree, k, SIZE, &checkpoints).await;
    let forger = other_key();
    let (forger_key, _) = sign_note(origin, &forger, "");
    sqlx::query("UPDATE log_head SET verifier_key = $1")
        .bind(&forger_key)
        .execute(&mut conn)
        .await
        .unwrap();
    let leaves: Vec<Hash> = sqlx::query("SELECT leaf FROM log_entries ORDER BY idx")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| leaf_hash(&r.get::<Vec<u8>, _>(0)))
        .collect();
    let sizes: Vec<i64> = sqlx::query_scalar("SELECT size FROM log_checkpoints")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for size in sizes {
        let root = mth(&leaves[..size as usize]);
        let text = format!("{origin}\n{size}\n{}\n", STANDARD.encode(root));
        let (_, line) = sign_note(origin, &forger, &text);
        sqlx::query("UPDATE log_checkpoints SET note = $1, root = $2 WHERE size = $3")
            .bind(format!("{text}\n{line}"))
            .bind(root.to_vec())
            .bind(size)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    recount(&copy, &mut conn).await;
    drop(conn);
    let out = copy.cli(&["log", "verify", "--verifier-key", &forger_key]);
    assert!(
        out.status.success(),
        "the forgery is complete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A copy has no keys: without --verifier-key there is nothing to trust.
    let out = copy.cli(&["log", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--verifier-key"), "{stderr}");
    std::fs::create_dir_all(copy.file("keys")).unwrap();
    std::fs::copy(
        data.file("keys/log-signing.pub.pem"),
        copy.file("keys/log-signing.pub.pem"),
    )
    .unwrap();
    let key_file = held_dir.path().join("verifier-key");
    std::fs::write(&key_file, format!("{vkey}\n")).unwrap();
    for out in [
        copy.cli(&["log", "verify", "--verifier-key", &vkey]),
        copy.cli(&[
            "log",
            "verify",
            "--verifier-key",
            key_file.to_str().unwrap(),
        ]),
        copy.cli(&["log", "verify"]),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "re-keyed: {stderr}");
        assert!(
            stderr.contains("another verifier key") && !stderr.contains("first bad index"),
            "re-keyed: {stderr}"
        );
    }

    // A database named where the data directory holds no log key gives no
    // key to trust (the database's own is never taken).
    let url = copy.database_url();
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["log", "verify", "--database-url", &url])
        .current_dir(empty.path());
    hermetic(&mut cmd);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("give --verifier-key"), "{stderr}");
    let mut cmd = Command::new(bin());
    cmd.args([
        "log",
        "verify",
        "--database-url",
        &url,
        "--verifier-key",
        &forger_key,
    ]);
    hermetic(&mut cmd);
    assert!(cmd.output().unwrap().status.success());
}

/// `log verify` failed (exit 1) naming index `bad` and `why`.
fn assert_fails_at(out: &std::process::Output, bad: u64, why: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} must fail verification; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("first bad index {bad}:")),
        "{what}: expected first bad index {bad}; got: {stderr}"
    );
    assert!(
        stderr.contains(why),
        "{what}: expected {why:?} in: {stderr}"
    );
}

// ---------------------------------------------------------------------------
// 4. Concurrent appenders.

const WRITERS: usize = 64;
const PER_WRITER: usize = 6;

/// 64 writers, each making PER_WRITER requests that append one entry (an
/// audit query, a submit, a read), spread over `servers` (all on one
/// database); then the log holds exactly one entry per request, at indices
/// 0..n-1, and verifies.
async fn concurrent_appends<'a>(servers: &'a [Server]) {
    let roles = |s: &'a Server| {
        let (fg, melder) = (Role::of(s, "zvhd", "fg"), Role::of(s, "emmen", MELDER));
        (fg, melder, Role::of(s, "zvhd", "ketenregisseur"))
    };
    let per_server: Vec<_> = servers.iter().map(roles).collect();
    let (signal, (start, _)) = per_server[0].1.submit(&example_signal()).await;
    let (signal, body) = (format!("/v1/signals/{signal}"), example_signal());
    let writers = (0..WRITERS).map(|w| {
        let (fg, melder, regisseur) = &per_server[w % servers.len()];
        let (signal, body) = (&signal, &body);
        async move {
            let mut got = Vec::new();
            for j in 0..PER_WRITER {
                let res = match (w + j) % 3 {
                    0 => fg.get("/v1/log/search?partner=zvhd&limit=1", AUDIT).await,
                    1 => melder.post("/v1/signals", "signalering", body).await,
                    _ => regisseur.get(signal, "drieluik").await,
                };
                assert!(
                    res.status().is_success(),
                    "writer {w}, request {j}: {}",
                    res.status()
                );
                got.push(receipt(&res).0);
            }
            got
        }
    });
    let indices: Vec<u64> = futures::future::join_all(writers).await.concat();
    let n = start + 1 + (WRITERS * PER_WRITER) as u64;
    let unique: BTreeSet<u64> = indices.iter().copied().collect();
    assert_eq!(unique.len(), indices.len(), "no index was handed out twice");
    assert_eq!(
        unique,
        (start + 1..n).collect(),
        "one entry per successful request"
    );

    let data = servers[0].data();
    let mut conn = data.connect().await;
    let rows = sqlx::query("SELECT idx FROM log_entries ORDER BY idx")
        .fetch_all(&mut conn)
        .await;
    let stored: Vec<i64> = rows.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(
        stored,
        (0..n as i64).collect::<Vec<_>>(),
        "stored indices are 0..n-1"
    );
    let head = sqlx::query("SELECT size FROM log_head")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(head.get::<i64, _>(0), n as i64);
    let out = data.cli(&["log", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("log verified: {n} entries")),
        "{stdout}"
    );
}

/// `log verify` reads the log in one snapshot: run while writers keep
/// appending (entries, subject rows, tree hashes, checkpoints), it checks
/// the log as it stood when it began, and passes.
#[tokio::test]
async fn log_verify_checks_a_growing_log_as_of_one_moment() {
    let server = Server::start(quiet()).await;
    let melder = Role::of(&server, "emmen", MELDER);
    let (signal, _) = melder.submit(&example_signal()).await;
    let signal = format!("/v1/signals/{signal}");
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let fg = Role::of(&server, "zvhd", "fg");
    for _ in 0..200 {
        fg.append_one().await;
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writers = (0..8).map(|w| {
        let (regisseur, fg, signal, stop) = (&regisseur, &fg, &signal, &stop);
        async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = match w % 3 {
                    0 => regisseur.get(signal, "drieluik").await,
                    1 => send(fg.request(Method::POST, "/v1/log/checkpoint", None)).await,
                    _ => fg.get("/v1/log/search?partner=zvhd&limit=1", AUDIT).await,
                };
                assert!(res.status().is_success(), "writer {w}: {}", res.status());
                n += 1;
            }
            n
        }
    });
    let data = server.data().clone();
    let verifier = async {
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let data = data.clone();
            let out = tokio::task::spawn_blocking(move || data.cli(&["log", "verify"]))
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "verify while appending: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let size: u64 = stdout
                .strip_prefix("log verified: ")
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{stdout}"));
            sizes.push(size);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sizes
    };
    let (sizes, appended) = futures::join!(verifier, futures::future::join_all(writers));
    assert!(
        appended.iter().sum::<u64>() > 0 && sizes.windows(2).all(|w| w[0] <= w[1]),
        "the log grew under the verifier: sizes {sizes:?}, requests {appended:?}"
    );
    assert!(sizes[0] > 200, "{sizes:?}");
}

/// One server everywhere; on PostgreSQL also two server processes sharing
/// one database (schema), data directory and keys, as deployed behind a load
/// balancer. Two processes on one SQLite file is not a supported deployment,
/// so that combination is not generated.
#[tokio::test]
async fn sixty_four_concurrent_writers_get_contiguous_indices() {
    let single = Server::start(quiet()).await;
    let postgres = single.data().is_postgres();
    concurrent_appends(&[single]).await;
    if postgres {
        let a = Server::start(quiet()).await;
        let b = Server::start_on(a.data().clone(), quiet());
        concurrent_appends(&[a, b]).await;
    }
}

// ---------------------------------------------------------------------------
// 5. Fail closed when the log cannot be written.

#[tokio::test]
async fn a_failing_log_append_fails_the_request_and_releases_nothing() {
    let server = Server::start(quiet()).await;
    let data = server.data().clone();
    let melder = Role::of(&server, "emmen", MELDER);
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let fg = Role::of(&server, "zvhd", "fg");
    let (id, _) = melder.submit(&example_signal()).await;
    assert_eq!(regisseur.refer(&id, "nla", "opsporing").await.status(), 201);
    let before = data.row_counts().await;

    let mut conn = data.connect().await;
    if data.is_postgres() {
        exec(
            &mut conn,
            "CREATE FUNCTION kp_injected_failure() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected'; END $$; \
             CREATE TRIGGER kp_injected_failure BEFORE INSERT ON log_entries \
             FOR EACH ROW EXECUTE FUNCTION kp_injected_failure()",
        )
        .await;
    } else {
        exec(
            &mut conn,
            "CREATE TRIGGER kp_injected_failure BEFORE INSERT ON log_entries \
             BEGIN SELECT RAISE(ABORT, 'injected'); END",
        )
        .await;
    }

    let signal = format!("/v1/signals/{id}");
    let referral = json!({"recipient": "om", "purpose": "opsporing"});
    let (nla, assen) = (
        Role::of(&server, "nla", "inspecteur"),
        Role::of(&server, "assen", MELDER),
    );
    let riec = Role::of(&server, "riec", "analist");
    let lookup = json!({"bsn": "123456782"});
    let requests = [
        ("read", regisseur.request(Method::GET, &signal, "drieluik")),
        (
            "list",
            regisseur.request(Method::GET, "/v1/signals", "drieluik"),
        ),
        (
            "submit",
            melder
                .request(Method::POST, "/v1/signals", "signalering")
                .json(&example_signal()),
        ),
        (
            "referral",
            regisseur
                .request(Method::POST, &format!("{signal}/referrals"), "opsporing")
                .json(&referral),
        ),
        ("inbox", nla.request(Method::GET, "/v1/inbox", "opsporing")),
        (
            "log search",
            fg.request(Method::GET, "/v1/log/search?partner=zvhd", AUDIT),
        ),
        (
            "log entries",
            fg.request(Method::GET, "/v1/log/entries?start=0&end=2", AUDIT),
        ),
        (
            "subject lookup",
            fg.request(Method::POST, "/v1/log/subjects", AUDIT)
                .json(&lookup),
        ),
        (
            "a refusal",
            assen.request(Method::GET, &signal, "signalering"),
        ),
        (
            "a boundary refusal",
            riec.request(Method::GET, "/v1/signals", "fenomeenanalyse"),
        ),
        (
            "log export",
            fg.request(Method::GET, "/v1/log/export?partner=zvhd", AUDIT),
        ),
        (
            "an authentication refusal",
            server
                .request(Method::GET, "/v1/me")
                .bearer_auth(server.sign(&server.claims("assen", "rechercheur"))),
        ),
    ];
    let record = example_signal().to_string();
    let personal = [
        "Voorbeeld",
        "123456782",
        "slachtoffer@",
        "Fictief",
        "Uitzendbureau",
        "A-3",
    ];
    for v in personal {
        assert!(record.contains(v), "{v} is record content");
    }
    for (what, rb) in requests {
        let res = send(rb).await;
        assert!(
            header(&res, "ketenpoort-receipt").is_none(),
            "{what}: a receipt"
        );
        let text = problem(res, 503, None).await.to_string();
        for v in personal {
            assert!(
                !text.contains(v),
                "{what}: the problem holds record content: {text}"
            );
        }
    }
    assert_eq!(
        data.row_counts().await,
        before,
        "nothing stored: no signal, referral, copy or entry"
    );

    if data.is_postgres() {
        let drop =
            "DROP TRIGGER kp_injected_failure ON log_entries; DROP FUNCTION kp_injected_failure()";
        exec(&mut conn, drop).await;
    } else {
        exec(&mut conn, "DROP TRIGGER kp_injected_failure").await;
    }
    drop(conn);
    let size = before["log_head.size"] as u64;
    let res = regisseur.get(&signal, "drieluik").await;
    assert_eq!(res.status(), 200);
    assert_eq!(receipt(&res).0, size, "the failed appends used up no index");
    assert_eq!(fg.append_one().await, size + 1);
    let out = data.cli(&["log", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// 6. No plaintext personal data in the log.

/// Random letters: a marker that cannot occur by chance in the hashes, ids
/// and base64 of a test this size.
fn tag() -> String {
    let bytes = uuid::Uuid::new_v4();
    bytes.as_bytes()[..12]
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect()
}

fn digits(n: usize) -> String {
    let mut out = String::new();
    while out.len() < n {
        let bytes = uuid::Uuid::new_v4();
        let fair = bytes.as_bytes().iter().filter(|b| **b < 250);
        out.extend(fair.map(|b| char::from(b'0' + b % 10)));
    }
    out.truncate(n);
    out
}

fn digit(min: u32, max: u32) -> u32 {
    min + digits(2).parse::<u32>().unwrap() % (max - min + 1)
}

/// A random BSN that passes the 11-proef.
fn random_bsn() -> String {
    loop {
        let d = format!("{}{}", digit(1, 9), digits(7));
        let sum: u32 = d
            .bytes()
            .enumerate()
            .map(|(i, b)| u32::from(b - b'0') * (9 - i as u32))
            .sum();
        if sum % 11 < 10 {
            return format!("{d}{}", sum % 11);
        }
    }
}

/// A victim or suspect whose every personal field holds a marker.
struct Person {
    json: Value,
    /// In every text field; must not appear in the log in any case.
    tag: String,
    /// The values without the tag (BSN, date of birth, phone, postcode, KvK
    /// number); each must not appear as given nor without spaces and dashes.
    plain: Vec<String>,
    /// What the pseudonym is made of (README): `bsn:...` or `name:...|dob:...`.
    ident: String,
    /// The body of a subject lookup for this person.
    lookup: Value,
}

fn person(suspect: bool, with_bsn: bool) -> Person {
    let t = tag();
    let cap = format!("{}{}", t[..1].to_uppercase(), &t[1..]);
    let name = format!("Ånneke Vič{cap}-Brüggen");
    let normalised = format!("anneke vic{t} bruggen");
    let dob = format!("19{}-0{}-1{}", digit(30, 89), digit(1, 9), digit(0, 9));
    let phone = format!("06-{}", digits(8));
    let postcode = format!("9{} {}", digits(3), t[1..3].to_uppercase());
    let mut json = json!({
        "name": name,
        "dateOfBirth": dob,
        "nationality": "NL",
        "gender": "vrouw",
        "address": {"street": format!("{cap}straat"), "houseNumber": format!("7-{t}"),
                    "postcode": postcode, "city": format!("{cap}dorp"), "country": "NL"},
        "phone": phone,
        "email": format!("{cap}.Melder@Voorbeeld-{t}.invalid"),
    });
    let mut plain = vec![dob.clone(), phone.clone(), postcode.clone()];
    let bsn = random_bsn();
    if with_bsn {
        json["bsn"] = json!(bsn);
        plain.push(bsn.clone());
    }
    if suspect {
        let kvk = digits(8);
        json["companyName"] = json!(format!("{cap} Uitzend B.V."));
        json["kvkNumber"] = json!(kvk);
        json["allegedConduct"] = json!(format!("Houdt het loon van {cap} in."));
        plain.push(kvk);
    } else {
        json["careNeeds"] = json!(format!("Zorg nodig voor {cap}."));
    }
    let (ident, lookup) = if with_bsn {
        (format!("bsn:{bsn}"), json!({"bsn": bsn}))
    } else {
        let lookup = json!({"name": name, "dateOfBirth": dob});
        (format!("name:{normalised}|dob:{dob}"), lookup)
    };
    Person {
        json,
        tag: t,
        plain,
        ident,
        lookup,
    }
}

fn marked_signal(municipality: &str, victim: &Person, suspect: &Person, narrative: &str) -> Value {
    let mut s = example_signal();
    s["municipality"] = json!(municipality);
    s["victims"] = json!([victim.json]);
    s["suspects"] = json!([suspect.json]);
    s["narrative"] = json!(format!(
        "Melding over {narrative}: loon en paspoort ingehouden."
    ));
    s
}

/// `ps1:` + base64url(HMAC-SHA256(keys/pseudonym.key, identifier)).
fn pseudonym(data: &DataDir, ident: &str) -> String {
    let key = std::fs::read_to_string(data.file("keys/pseudonym.key")).expect("pseudonym key");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &hex::decode(key.trim()).unwrap());
    let tag = ring::hmac::sign(&key, ident.as_bytes());
    format!("ps1:{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Every value of every row of every `log_*` table, as bytes.
async fn log_tables(data: &DataDir) -> Vec<u8> {
    let tables: Vec<String> = data
        .tables()
        .await
        .into_iter()
        .filter(|t| t.starts_with("log_"))
        .collect();
    let expected = [
        "log_checkpoints",
        "log_cosignatures",
        // Weekly counts: partners, purposes, actions, reason codes.
        "log_counts",
        "log_entries",
        "log_hashes",
        "log_head",
        // Field names, reasons, legal bases, revisions: scanned like the rest.
        "log_projections",
        "log_subjects",
    ];
    assert_eq!(tables, expected, "the log tables");
    let mut conn = data.connect().await;
    let mut out = Vec::new();
    for t in tables {
        let sql = sqlx::AssertSqlSafe(format!("SELECT * FROM {t}"));
        for row in sqlx::query(sql).fetch_all(&mut conn).await.unwrap() {
            for i in 0..row.len() {
                if let Ok(Some(v)) = row.try_get::<Option<String>, _>(i) {
                    out.extend_from_slice(v.as_bytes());
                } else if let Ok(Some(v)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                    out.extend_from_slice(&v);
                } else if let Ok(Some(v)) = row.try_get::<Option<i64>, _>(i) {
                    out.extend_from_slice(v.to_string().as_bytes());
                } else if let Ok(Some(v)) = row.try_get::<Option<i32>, _>(i) {
                    out.extend_from_slice(v.to_string().as_bytes());
                }
                out.push(b'\n');
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Which of the people's markers (and narrative tags) `haystack` holds.
fn markers_in(haystack: &[u8], people: &[&Person], tags: &[&str]) -> Vec<String> {
    let lower = haystack.to_ascii_lowercase();
    let tags = people
        .iter()
        .map(|p| p.tag.as_str())
        .chain(tags.iter().copied());
    let plain = people.iter().flat_map(|p| &p.plain);
    let compact = |v: &str| v.replace([' ', '-'], "");
    tags.filter(|t| contains(&lower, t))
        .map(str::to_owned)
        .chain(
            plain
                .filter(|v| contains(haystack, v) || contains(haystack, &compact(v)))
                .cloned(),
        )
        .collect()
}

/// Records that entry `idx` disclosed data about each of `whom`.
fn note(about: &mut BTreeMap<&'static str, BTreeSet<u64>>, idx: u64, whom: &[&'static str]) {
    for w in whom {
        about.entry(w).or_default().insert(idx);
    }
}

/// Indices of the entries that name `pseudonym`.
fn naming(log: &[Value], pseudonym: &str) -> BTreeSet<u64> {
    let names = |e: &&Value| {
        e["entry"]["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == pseudonym)
    };
    log.iter().filter(names).map(index_of).collect()
}

/// POST /v1/log/subjects: (receipt, indices found).
async fn subject_lookup(fg: &Role<'_>, who: &Value) -> ((u64, Hash), BTreeSet<u64>) {
    let res = fg.post("/v1/log/subjects", AUDIT, who).await;
    let r = receipt(&res);
    let page = ok_json(res, 200).await;
    (
        r,
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(index_of)
            .collect(),
    )
}

#[tokio::test]
async fn the_log_holds_pseudonyms_and_field_names_never_personal_values() {
    let server = Server::start(quiet()).await;
    let data = server.data().clone();
    let (v1, s1, v2, s2) = (
        person(false, true),
        person(true, true),
        person(false, true),
        person(true, false),
    );
    let (n1, n2) = (tag(), tag());
    let everyone = [&v1, &s1, &v2, &s2];
    let (signal_a, signal_b) = (
        marked_signal("emmen", &v1, &s1, &n1),
        marked_signal("assen", &v2, &s2, &n2),
    );
    // The markers are findable: what is not found below is really absent.
    let submitted = format!("{signal_a}{signal_b}");
    let all = everyone.iter().map(|p| 1 + p.plain.len()).sum::<usize>() + 2;
    assert_eq!(
        markers_in(submitted.as_bytes(), &everyone, &[&n1, &n2]).len(),
        all
    );

    let emmen = Role::of(&server, "emmen", MELDER);
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let (nla, fier) = (
        Role::of(&server, "nla", "inspecteur"),
        Role::of(&server, "fier", "hulpverlener"),
    );
    let fg = Role::of(&server, "zvhd", "fg");
    // Which entries disclosed data about whom.
    let mut about: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let (a, (i, _)) = emmen.submit(&signal_a).await;
    note(&mut about, i, &["v1", "s1"]);
    let (b, (i, _)) = Role::of(&server, "assen", MELDER).submit(&signal_b).await;
    note(&mut about, i, &["v2", "s2"]);
    let read = async |role: &Role<'_>, path: &str, purpose: &str| {
        let res = role.get(path, purpose).await;
        assert_eq!(res.status(), 200, "{path}");
        let i = receipt(&res).0;
        (i, res.text().await.unwrap())
    };
    let (path_a, path_b) = (format!("/v1/signals/{a}"), format!("/v1/signals/{b}"));
    let (i, body) = read(&regisseur, &path_a, "drieluik").await;
    assert!(
        body.contains(&s1.tag[1..]),
        "the ketenregisseur reads the suspect"
    );
    note(&mut about, i, &["v1", "s1"]);
    note(
        &mut about,
        read(&regisseur, &path_b, "drieluik").await.0,
        &["v2", "s2"],
    );
    note(
        &mut about,
        read(&regisseur, "/v1/signals", "drieluik").await.0,
        &["v1", "s1", "v2", "s2"],
    );
    note(
        &mut about,
        read(&emmen, "/v1/signals", "signalering").await.0,
        &["v1", "s1"],
    );
    note(
        &mut about,
        receipt(&regisseur.refer(&a, "nla", "opsporing").await).0,
        &["v1", "s1"],
    );
    // Care receives nothing about a suspect, so the suspect is no subject
    // of what care receives.
    note(
        &mut about,
        receipt(&regisseur.refer(&a, "fier", "zorgcoordinatie").await).0,
        &["v1"],
    );
    note(
        &mut about,
        read(&nla, "/v1/inbox", "opsporing").await.0,
        &["v1", "s1"],
    );
    let (i, body) = read(&fier, "/v1/inbox", "zorgcoordinatie").await;
    assert!(
        !body.contains(&s1.tag[1..]) && body.contains(&v1.tag[1..]),
        "care: victim only"
    );
    note(&mut about, i, &["v1"]);
    note(
        &mut about,
        read(&fier, &path_a, "zorgcoordinatie").await.0,
        &["v1"],
    );
    let refused = Role::of(&server, "assen", MELDER)
        .get(&path_a, "signalering")
        .await;
    problem(refused, 403, Some("not-own-report")).await;

    // A subject lookup finds exactly the entries about that person, and is
    // itself an entry about that person.
    let people = [("v1", &v1), ("s1", &s1), ("v2", &v2), ("s2", &s2)];
    for (who, p) in people {
        let ((i, _), found) = subject_lookup(&fg, &p.lookup).await;
        assert_eq!(found, about[who], "entries about {who}");
        note(&mut about, i, &[who]);
    }
    let ((i, _), found) = subject_lookup(&fg, &v1.lookup).await;
    assert_eq!(found, about["v1"], "the first lookup of v1 is about v1 too");
    note(&mut about, i, &["v1"]);
    let log = fg.whole_log().await;
    for (who, p) in people {
        assert_eq!(
            naming(&log, &pseudonym(&data, &p.ident)),
            about[who],
            "entries naming {who}"
        );
    }

    let dump = log_tables(&data).await;
    assert_eq!(
        markers_in(&dump, &everyone, &[&n1, &n2]),
        Vec::<String>::new(),
        "in a log table"
    );
    for p in everyone {
        assert!(
            contains(&dump, &pseudonym(&data, &p.ident)),
            "the log names people by pseudonym"
        );
    }
    let logs = server.logs_flushed().await;
    assert_eq!(
        markers_in(logs.as_bytes(), &everyone, &[&n1, &n2]),
        Vec::<String>::new(),
        "in the server's logs"
    );
    // On SQLite, the whole database, write-ahead log included: the records
    // are encrypted, the log holds pseudonyms.
    if !data.is_postgres() {
        let mut files = 0;
        for e in std::fs::read_dir(data.path()).unwrap() {
            let path = e.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ketenpoort.db")
            {
                let found = markers_in(&std::fs::read(&path).unwrap(), &everyone, &[&n1, &n2]);
                assert_eq!(found, Vec::<String>::new(), "in {}", path.display());
                files += 1;
            }
        }
        assert!(files >= 2, "the database and its write-ahead log");
    }
}

// ---------------------------------------------------------------------------
// 7. The privacy officer's API.

/// Emmen and Assen report, the ZVHD reads and refers to the NLA, the NLA
/// pulls its inbox, the RIEC knocks on a record route.
async fn some_exchanges(server: &Server) {
    let regisseur = Role::of(server, "zvhd", "ketenregisseur");
    let (a, _) = Role::of(server, "emmen", MELDER)
        .submit(&example_signal())
        .await;
    let mut other = example_signal();
    other["municipality"] = json!("assen");
    Role::of(server, "assen", MELDER).submit(&other).await;
    assert_eq!(
        regisseur
            .get(&format!("/v1/signals/{a}"), "drieluik")
            .await
            .status(),
        200
    );
    assert_eq!(regisseur.refer(&a, "nla", "opsporing").await.status(), 201);
    let nla = Role::of(server, "nla", "inspecteur");
    assert_eq!(nla.get("/v1/inbox", "opsporing").await.status(), 200);
    let riec = Role::of(server, "riec", "analist");
    assert_eq!(
        riec.get("/v1/signals", "fenomeenanalyse").await.status(),
        403
    );
}

/// `from=<yesterday>&to=<tomorrow>`: a period short enough for an
/// unfiltered search.
fn around_today() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "from={}&to={}",
        today.previous_day().unwrap(),
        today.next_day().unwrap()
    )
}

/// An FG query's own entry: an audit query by `partner`'s `role`.
fn assert_audit_entry(e: &Value, partner: &str, role: &str, resource: &str, grant: &str) {
    assert_eq!(e["action"], "audit-query", "{e}");
    assert_eq!(
        (e["actor"]["partner"].as_str(), e["actor"]["role"].as_str()),
        (Some(partner), Some(role)),
        "{e}"
    );
    assert_eq!(e["purpose"], AUDIT, "{e}");
    assert_eq!(e["outcome"], "disclosed", "{e}");
    assert_eq!(e["resources"], json!([resource]), "{e}");
    assert_eq!(
        e["decision"]["reasons"],
        json!([format!("grant:{grant}")]),
        "{e}"
    );
}

#[tokio::test]
async fn privacy_officers_see_their_scope_and_every_query_is_logged() {
    let server = Server::start(quiet()).await;
    some_exchanges(&server).await;
    let zvhd_fg = Role::of(&server, "zvhd", "fg");
    let emmen_fg = Role::of(&server, "emmen", "fg");
    let size = zvhd_fg.append_one().await + 1;
    let range = format!("/v1/log/entries?start=0&end={size}");

    // The ZVHD privacy officer sees every entry.
    let res = zvhd_fg.get(&range, AUDIT).await;
    let r = receipt(&res);
    let all = ok_json(res, 200).await["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        all.iter()
            .all(|e| e["entry"].is_object() && e["leaf"].is_string())
    );
    let own = receipted_entry(&zvhd_fg, r).await;
    assert_audit_entry(&own, "zvhd", "fg", &format!("log:0-{size}"), "fg-zvhd-alle");

    // A municipality's privacy officer: entries where it is actor or recipient.
    let mine =
        |e: &Value| e["entry"]["actor"]["partner"] == "emmen" || e["entry"]["recipient"] == "emmen";
    assert!(all.iter().any(mine) && !all.iter().all(mine));
    let res = emmen_fg.get(&range, AUDIT).await;
    let r = receipt(&res);
    let seen = ok_json(res, 200).await["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(seen.len(), all.len());
    for (s, a) in seen.iter().zip(&all) {
        assert_eq!(s["leafHash"], a["leafHash"], "every leaf hash is shown");
        if mine(a) {
            assert_eq!((&s["entry"], &s["leaf"]), (&a["entry"], &a["leaf"]));
        } else {
            assert!(
                s.get("entry").is_none() && s.get("leaf").is_none(),
                "emmen sees {a}"
            );
        }
    }
    let own = receipted_entry(&zvhd_fg, r).await;
    assert_audit_entry(
        &own,
        "emmen",
        "fg",
        &format!("log:0-{size}"),
        "fg-eigen-organisatie",
    );
    let res = emmen_fg
        .get(
            &format!("/v1/log/search?{}&limit=500", around_today()),
            AUDIT,
        )
        .await;
    let (at, at_hash) = receipt(&res);
    let page = ok_json(res, 200).await;
    let today = time::OffsetDateTime::now_utc().date();
    let own = receipted_entry(&zvhd_fg, (at, at_hash)).await;
    assert_eq!(
        own["resources"],
        json!([
            "log",
            format!("log-query:from={}T00:00:00Z", today.previous_day().unwrap()),
            format!("log-query:to={}T00:00:00Z", today.next_day().unwrap()),
        ]),
        "the search's own entry says what was searched"
    );
    let found: BTreeSet<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(index_of)
        .collect();
    let log = zvhd_fg.whole_log().await;
    let expected: BTreeSet<u64> = log[..at as usize]
        .iter()
        .filter(|e| mine(e))
        .map(index_of)
        .collect();
    assert_eq!(
        found, expected,
        "emmen's search finds its own organisation's entries"
    );

    // The RIEC (outside the covenant): hashes only, and no search; the
    // range once published, and no receipt (its index is the log's size).
    let lookup = json!({"bsn": "123456782"});
    let published = published_size(&server, &server.token("riec", "analist")).await;
    assert!(published >= size);
    for role in ["fg", "analist"] {
        let riec = Role::of(&server, "riec", role);
        let res = riec.get(&range, AUDIT).await;
        assert!(header(&res, "ketenpoort-receipt").is_none());
        for e in ok_json(res, 200).await["entries"].as_array().unwrap() {
            assert!(e["leafHash"].is_string(), "riec {role}: {e}");
            assert!(
                e.get("entry").is_none() && e.get("leaf").is_none(),
                "riec {role}: {e}"
            );
        }
        // Refused by the route gate (the RIEC boundary, layer 2) before any
        // handler runs, and logged as action `deny`.
        let code = Some("non-member-record-route");
        let search = format!("/v1/log/search?{}", around_today());
        problem(riec.get(&search, AUDIT).await, 403, code).await;
        problem(
            riec.get("/v1/log/export?partner=zvhd", AUDIT).await,
            403,
            code,
        )
        .await;
        problem(
            riec.post("/v1/log/subjects", AUDIT, &lookup).await,
            403,
            code,
        )
        .await;
    }
    // Other roles of members see their own entries, but do not search.
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    assert_eq!(
        regisseur
            .get("/v1/log/entries?start=0&end=1", AUDIT)
            .await
            .status(),
        200
    );
    let search = "/v1/log/search?partner=zvhd";
    problem(
        regisseur.get(search, AUDIT).await,
        403,
        Some("audit-query-not-for-role"),
    )
    .await;
    problem(
        zvhd_fg.get(search, "drieluik").await,
        403,
        Some("purpose-not-for-action"),
    )
    .await;
    problem(
        zvhd_fg.get(search, None).await,
        403,
        Some("purpose-missing"),
    )
    .await;
    // Refused queries are logged: the members' as refused audit queries,
    // the RIEC's as boundary refusals (action `deny`, the route, no ids).
    let refused: Vec<Value> = zvhd_fg
        .whole_log()
        .await
        .into_iter()
        .map(|e| e["entry"].clone())
        .filter(|e| {
            e["outcome"] == "denied" && (e["action"] == "audit-query" || e["action"] == "deny")
        })
        .collect();
    // Only the log routes' refusals (the test also tried a record route).
    let log_route = |e: &Value| {
        e["resources"].as_array().is_some_and(|r| {
            r.len() == 1
                && r[0]
                    .as_str()
                    .is_some_and(|r| r.starts_with("route:/v1/log/"))
        })
    };
    let refused: Vec<&Value> = refused
        .iter()
        .filter(|e| e["action"] == "audit-query" || log_route(e))
        .collect();
    let by_riec: Vec<&&Value> = refused
        .iter()
        .filter(|e| e["actor"]["partner"] == "riec")
        .collect();
    assert!(
        by_riec.iter().all(|e| e["action"] == "deny"
            && e["decision"]["reasons"] == json!(["non-member-record-route"])),
        "{by_riec:?}"
    );
    assert_eq!(
        (by_riec.len(), refused.len()),
        (6, 9),
        "every refused query is logged: {refused:?}"
    );

    // Every filter of a search is in its entry; partners and purposes the
    // covenant does not know are not (the caller's text is not logged).
    let res = zvhd_fg
        .get(
            "/v1/log/search?partner=zvhd&recipient=nla&purpose=opsporing&action=refer\
             &outcome=disclosed&after=1&limit=5",
            AUDIT,
        )
        .await;
    let own = receipted_entry(&zvhd_fg, receipt(&res)).await;
    assert_eq!(
        own["resources"],
        json!([
            "log",
            "log-query:partner=zvhd",
            "log-query:recipient=nla",
            "log-query:purpose=opsporing",
            "log-query:action=refer",
            "log-query:outcome=disclosed",
            "log-query:after=1",
        ])
    );
    let res = zvhd_fg
        .get(
            "/v1/log/search?partner=jan-de-vries&recipient=piet-jansen&purpose=nieuwsgierigheid",
            AUDIT,
        )
        .await;
    let own = receipted_entry(&zvhd_fg, receipt(&res)).await;
    assert_eq!(
        own["resources"],
        json!([
            "log",
            "log-query:partner=?",
            "log-query:recipient=?",
            "log-query:purpose=?",
        ])
    );
    // The same for an export, and for a refused query.
    let res = zvhd_fg
        .get("/v1/log/export?partner=emmen&action=submit", AUDIT)
        .await;
    let own = receipted_entry(&zvhd_fg, receipt(&res)).await;
    assert_eq!(
        own["resources"],
        json!(["log", "log-query:partner=emmen", "log-query:action=submit"])
    );
    let res = regisseur.get("/v1/log/search?partner=emmen", AUDIT).await;
    problem(res, 403, Some("audit-query-not-for-role")).await;
    let last = zvhd_fg.whole_log().await;
    let refusal = last
        .iter()
        .rev()
        .map(|e| &e["entry"])
        .find(|e| e["outcome"] == "denied" && e["action"] == "audit-query")
        .unwrap();
    assert_eq!(
        (&refusal["actor"]["role"], &refusal["resources"]),
        (
            &json!("ketenregisseur"),
            &json!(["log", "log-query:partner=emmen"])
        )
    );

    // A subject lookup's own entry names the subject.
    let (r, _) = subject_lookup(&zvhd_fg, &lookup).await;
    let own = receipted_entry(&zvhd_fg, r).await;
    assert_audit_entry(&own, "zvhd", "fg", "log", "fg-zvhd-alle");
    assert_eq!(
        own["subjects"],
        json!([pseudonym(server.data(), "bsn:123456782")])
    );
}

#[tokio::test]
async fn unfiltered_searches_are_bounded_exports_parse_and_pages_cover_everything() {
    let server = Server::start(quiet()).await;
    some_exchanges(&server).await;
    let fg = Role::of(&server, "zvhd", "fg");
    let search = async |query: &str| fg.get(&format!("/v1/log/search?{query}"), AUDIT).await;
    for query in [
        "",
        "limit=10",
        "from=2026-01-01",
        "from=2026-01-01&to=2026-02-02",
        "from=2025-01-01&to=2026-12-31",
    ] {
        let p = problem(search(query).await, 400, None).await;
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("period") && detail.contains("31 days"),
            "{query:?}: {detail}"
        );
    }
    for query in [
        "from=2026-01-01&to=2026-02-01",
        "partner=emmen",
        "action=read",
        "outcome=denied&from=2020-01-01&to=2030-01-01",
    ] {
        assert_eq!(search(query).await.status(), 200, "{query}");
    }
    for query in [
        "from=yesterday&to=2026-01-02",
        "action=steal",
        "outcome=maybe",
        "partner=Not%20An%20Id",
        "limit=x",
        "nope=1",
    ] {
        problem(search(query).await, 400, None).await;
    }

    // Paging by nextAfter returns every entry once (the pages, asked by the
    // ZVHD, add ZVHD entries after `last`; they are not counted).
    let log = fg.whole_log().await;
    let last = index_of(log.last().unwrap());
    let by_zvhd: Vec<u64> = log
        .iter()
        .filter(|e| e["entry"]["actor"]["partner"] == "zvhd")
        .map(index_of)
        .collect();
    let (mut paged, mut after) = (Vec::new(), None::<u64>);
    loop {
        let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let page = ok_json(search(&format!("partner=zvhd&limit=3{cursor}")).await, 200).await;
        let indices = page["entries"].as_array().unwrap().iter().map(index_of);
        paged.extend(indices.filter(|i| *i <= last));
        after = page["nextAfter"].as_u64();
        if after.is_none_or(|a| a >= last) {
            break;
        }
    }
    assert_eq!(paged, by_zvhd, "each entry once, in order");

    // The CSV export: a header row, then one parseable row per entry.
    let res = fg.get("/v1/log/export?partner=emmen", AUDIT).await;
    assert!(
        content_type(&res).starts_with("text/csv"),
        "{}",
        content_type(&res)
    );
    let r = receipt(&res);
    let body = res.bytes().await.unwrap();
    receipted_entry(&fg, r).await;
    // As Dutch spreadsheets open it: UTF-8 with a BOM, `;` between fields.
    assert!(body.starts_with(b"\xEF\xBB\xBF"), "a byte order mark");
    let mut csv = dutch_csv(body.as_ref());
    let headers: Vec<String> = csv.headers().unwrap().iter().map(str::to_owned).collect();
    let expected = [
        "index",
        "time",
        "actorPartner",
        "actorRole",
        "actorUser",
        "recipient",
        "action",
        "purpose",
        "legalBasis",
        "resources",
        "subjects",
        "fields",
        "mode",
        "reasons",
        "policyRevision",
        "outcome",
        "leafHash",
    ];
    assert_eq!(headers, expected);
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.expect("a CSV record")).collect();
    let by_emmen: Vec<&Value> = log
        .iter()
        .filter(|e| e["entry"]["actor"]["partner"] == "emmen")
        .collect();
    assert!(!rows.is_empty());
    assert_eq!(rows.len(), by_emmen.len());
    for (row, e) in rows.iter().zip(by_emmen) {
        let cell = |name: &str| {
            row.get(headers.iter().position(|h| h == name).unwrap())
                .unwrap()
        };
        let entry = &e["entry"];
        let joined = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(cell("index"), e["index"].to_string());
        assert_eq!(cell("leafHash"), e["leafHash"].as_str().unwrap());
        assert_eq!(
            (cell("actorPartner"), cell("action")),
            ("emmen", entry["action"].as_str().unwrap())
        );
        assert_eq!(cell("time"), entry["time"].as_str().unwrap());
        assert_eq!(cell("subjects"), joined(&entry["subjects"]));
        assert_eq!(cell("fields"), joined(&entry["fields"]));
        assert_eq!(
            cell("legalBasis"),
            entry["legalBasis"].as_str().unwrap_or_default()
        );
    }
}

/// An export answers the whole search, however many pages of a search it
/// spans, up to `log.max_export_rows`; beyond that it is refused, never
/// cut short.
#[tokio::test]
async fn exports_hold_the_whole_search_or_are_refused() {
    const MAX: usize = 560;
    let server = Server::start(quiet().env("KETENPOORT_LOG__MAX_EXPORT_ROWS", MAX)).await;
    let fg = Role::of(&server, "zvhd", "fg");
    let appended = async |n: usize| {
        futures::stream::iter(0..n)
            .map(|_| fg.append_one())
            .buffer_unordered(4)
            .collect::<Vec<_>>()
            .await
    };
    appended(540).await;
    let export = async |query: &str| fg.get(&format!("/v1/log/export?{query}"), AUDIT).await;
    let res = export("partner=zvhd").await;
    let (at, _) = receipt(&res);
    let body = json_body_text(res, 200).await;
    let indices: Vec<u64> = dutch_csv(body.as_bytes())
        .records()
        .map(|r| r.unwrap()[0].parse().unwrap())
        .collect();
    let expected: Vec<u64> = fg.entries(0, at).await.iter().map(index_of).collect();
    assert!(expected.len() > 500, "more than a search page");
    assert_eq!(
        indices, expected,
        "every entry the search finds, once, in order"
    );
    // From a cursor on: the rest.
    let res = export(&format!("partner=zvhd&after={}", expected[9])).await;
    let body = json_body_text(res, 200).await;
    let rows = dutch_csv(body.as_bytes()).records().count();
    assert!(rows >= expected.len() - 10, "{rows}");
    problem(export("partner=zvhd&limit=10").await, 400, None).await;

    // More than the maximum: refused, with what to do about it.
    let mut more = appended(MAX).await;
    more.sort();
    let p = problem(export("partner=zvhd").await, 400, None).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(&MAX.to_string()) && detail.contains("narrow"),
        "{detail}"
    );
    let res = export(&format!("partner=zvhd&after={}", more[100])).await;
    assert_eq!(res.status(), 200, "a narrower search exports");
}

/// A reader of the CSV ketenpoort serves: `;` between fields (the BOM
/// the reader skips).
fn dutch_csv(body: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().delimiter(b';').from_reader(body)
}

async fn json_body_text(res: Response, status: u16) -> String {
    let got = res.status().as_u16();
    let body = res.text().await.expect("body");
    assert_eq!(got, status, "{body}");
    body
}

/// An audit policy that allows a query but names no scope is refused
/// (fail closed), and the refusal is logged like any other.
#[tokio::test]
async fn an_audit_grant_without_scope_is_a_logged_refusal() {
    let data = DataDir::new().await;
    let policies = data.file("policies");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        &policies,
    );
    let audit = policies.join("audit/audit.rego");
    let rego = std::fs::read_to_string(&audit).unwrap();
    let broken = rego
        .replace("\"scope\": selected.scope,", "\"scope\": null,")
        .replace("\tselected.scope in scopes\n", "");
    assert_ne!(broken, rego);
    std::fs::write(&audit, broken).unwrap();
    std::fs::remove_file(policies.join("audit/audit_test.rego")).unwrap();
    let server = Server::start_on(
        data.clone(),
        quiet().env("KETENPOORT_POLICY__PATH", "{data_dir}/policies"),
    );
    let fg = Role::of(&server, "zvhd", "fg");
    let res = fg.get("/v1/log/search?partner=zvhd", AUDIT).await;
    problem(res, 403, Some("policy-incoherent")).await;
    let mut conn = data.connect().await;
    // The reasons are in the projection the leaf names.
    let row = sqlx::query(
        "SELECT e.leaf, p.body FROM log_entries e JOIN log_projections p ON p.hash = e.projection \
         ORDER BY e.idx DESC LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let e: Value = crate::leaves::leaf_json(&row.get::<Vec<u8>, _>(0));
    let p: Value = serde_json::from_slice(&row.get::<Vec<u8>, _>(1)).unwrap();
    assert_eq!(
        (
            &e["action"],
            &e["outcome"],
            &p["decision"]["reasons"],
            &e["resources"]
        ),
        (
            &json!("audit-query"),
            &json!("denied"),
            &json!(["policy-incoherent"]),
            &json!(["log", "log-query:partner=zvhd"])
        ),
        "{e}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// 8. Receipts.

#[tokio::test]
async fn every_disclosing_response_carries_the_receipt_of_its_entry() {
    let server = Server::start(quiet()).await;
    let fg = Role::of(&server, "zvhd", "fg");
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let nla = Role::of(&server, "nla", "inspecteur");
    let (id, r) = Role::of(&server, "emmen", MELDER)
        .submit(&example_signal())
        .await;
    let e = receipted_entry(&fg, r).await;
    assert_eq!(
        (e["action"].as_str(), e["recipient"].as_str()),
        (Some("submit"), Some("zvhd"))
    );
    assert_eq!(e["resources"], json!([format!("signal:{id}")]));
    let referral = json!({"recipient": "nla", "purpose": "opsporing"});
    let lookup = json!({"bsn": "123456782"});
    let cases = [
        (
            "read",
            regisseur.request(Method::GET, &format!("/v1/signals/{id}"), "drieluik"),
        ),
        (
            "list",
            regisseur.request(Method::GET, "/v1/signals", "drieluik"),
        ),
        (
            "refer",
            regisseur
                .request(
                    Method::POST,
                    &format!("/v1/signals/{id}/referrals"),
                    "opsporing",
                )
                .json(&referral),
        ),
        (
            "deliver",
            nla.request(Method::GET, "/v1/inbox", "opsporing"),
        ),
        (
            "audit-query",
            fg.request(Method::GET, "/v1/log/entries?start=0&end=1", AUDIT),
        ),
        (
            "audit-query",
            fg.request(Method::GET, "/v1/log/search?partner=emmen", AUDIT),
        ),
        (
            "audit-query",
            fg.request(Method::GET, "/v1/log/export?partner=emmen", AUDIT),
        ),
        (
            "audit-query",
            fg.request(Method::POST, "/v1/log/subjects", AUDIT)
                .json(&lookup),
        ),
    ];
    let mut seen = BTreeSet::from([r.0]);
    for (action, rb) in cases {
        let res = send(rb).await;
        assert!(res.status().is_success(), "{action}: {}", res.status());
        let r = receipt(&res);
        assert!(seen.insert(r.0), "{action}: a fresh index");
        let e = receipted_entry(&fg, r).await;
        assert_eq!(
            (e["action"].as_str(), e["outcome"].as_str()),
            (Some(action), Some("disclosed"))
        );
        let request_id = header(&res, "x-request-id");
        assert_eq!(
            e["requestId"].as_str(),
            request_id.as_deref(),
            "{action}: this request's entry"
        );
    }
    // Hashes are not disclosures: no receipt.
    for path in [
        "/v1/log/checkpoint",
        "/v1/log/verifier-key",
        "/v1/log/proofs/inclusion?index=0&treeSize=1",
        "/v1/log/proofs/consistency?from=1&to=2",
    ] {
        let res = fg.get(path, None).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(header(&res, "ketenpoort-receipt").is_none(), "{path}");
    }
}

// ---------------------------------------------------------------------------
// Leaf versions: entries written before projections (v1, every field name
// inline), after (v2, the grant named by the hash of a stored projection,
// JSON) and now (v3, v2's items as CBOR).

/// The JSON of a user reference (or null).
fn user_json(user: Option<&str>) -> String {
    user.map_or("null".into(), |u| format!("\"{u}\""))
}

/// A v1 leaf as ketenpoort wrote it before migration 0018, byte for byte.
fn v1_leaf(index: u64, fields: &[&str], user: Option<&str>) -> String {
    let fields: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    let user = user_json(user);
    format!(
        r#"{{"v":1,"index":{index},"time":"2026-11-28T18:00:00.123Z","requestId":"01933a4e-0000-7000-8000-00000000000{index}","traceId":"4bf92f3577b34da6a3ce929d0e0e473{index}","actor":{{"partner":"zvhd","role":"ketenregisseur","user":{user}}},"recipient":"zvhd","action":"read","purpose":"drieluik","legalBasis":"Convenant ZVHD + addendum mensenhandel; AVG art. 6(1)(e)","resources":["signal:01933a4e-0000-7000-8000-0000000000aa"],"subjects":["ps1:v1-subject-{index}"],"fields":[{}],"decision":{{"mode":"masked","reasons":["grant:zvhd-drieluik"]}},"policyRevision":"sha256:00","outcome":"disclosed"}}"#,
        fields.join(",")
    )
}

/// The projection of [`v2_leaf`], byte for byte, and its name.
const V2_PROJECTION: &str = r#"{"policyRevision":"sha256:00","legalBasis":"Convenant ZVHD + addendum mensenhandel; AVG art. 6(1)(e)","decision":{"mode":"masked","reasons":["grant:zvhd-drieluik"]},"fields":["forms","victims.name"]}"#;

/// A v2 leaf as ketenpoort wrote it from migration 0018 to 0021.
fn v2_leaf(index: u64, user: Option<&str>) -> String {
    let name = hex::encode(sha256(&[V2_PROJECTION.as_bytes()]));
    let user = user_json(user);
    format!(
        r#"{{"v":2,"index":{index},"time":"2026-11-28T18:00:00.123Z","requestId":"01933a4e-0000-7000-8000-00000000000{index}","traceId":"4bf92f3577b34da6a3ce929d0e0e473{index}","actor":{{"partner":"zvhd","role":"ketenregisseur","user":{user}}},"recipient":"zvhd","action":"read","purpose":"drieluik","resources":["signal:01933a4e-0000-7000-8000-0000000000aa"],"subjects":["ps1:v1-subject-{index}"],"projection":"{name}","outcome":"disclosed"}}"#
    )
}

/// The statement of migration 0021 that fills the user column of the rows
/// written before it (as `backend`'s migration spells it).
fn user_backfill(data: &DataDir) -> String {
    let backend = if data.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let sql = std::fs::read_to_string(format!(
        "{}/migrations/{backend}/0021_log_entries_actor_user.sql",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let start = sql.find("UPDATE log_entries").expect("the backfill");
    sql[start..].split(';').next().unwrap().to_owned()
}

/// A log that began before migration 0018 keeps its v1 leaves as they
/// were (same bytes, same hashes), then its v2 leaves, and grows with v3
/// leaves; the whole log verifies, the privacy officer sees every field
/// name of each, and migration 0021 takes the acting user of the old
/// leaves into its column.
#[tokio::test]
async fn a_log_of_v1_and_v2_entries_followed_by_v3_entries_verifies_and_shows_every_field() {
    let data = DataDir::new().await;
    let server = Server::start_on(data.clone(), quiet());
    let fg = Role::of(&server, "zvhd", "fg");
    let vkey = fg.verifier_key().await;
    drop(server);

    // Three v1 entries, stored as the old sequencer stored them.
    let v1_fields: [&[&str]; 3] = [
        &["forms", "victims.name"],
        &["forms", "municipality", "narrative", "victims.bsn"],
        &[],
    ];
    let mut conn = data.connect().await;
    let existing: Vec<Vec<u8>> = sqlx::query_scalar("SELECT leaf FROM log_entries ORDER BY idx")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let first = existing.len() as u64;
    let mut leaves = existing;
    let mut v1 = Vec::new();
    let users = [
        None,
        Some("usr1:AAAAAAAAAAAAAAAAAAAAAA"),
        None,
        Some("usr1:_-_-_-_-_-_-_-_-_-_-_w"),
    ];
    let projection_name = sha256(&[V2_PROJECTION.as_bytes()]).to_vec();
    sqlx::query("INSERT INTO log_projections (hash, body) VALUES ($1, $2)")
        .bind(projection_name.clone())
        .bind(V2_PROJECTION.as_bytes().to_vec())
        .execute(&mut conn)
        .await
        .unwrap();
    // Three v1 entries, then a v2 entry, without the user column (as the
    // rows were before migration 0021).
    for (k, user) in users.into_iter().enumerate() {
        let idx = first + k as u64;
        let (leaf, projection) = match v1_fields.get(k) {
            Some(fields) => (v1_leaf(idx, fields, user).into_bytes(), None),
            None => (
                v2_leaf(idx, user).into_bytes(),
                Some(projection_name.clone()),
            ),
        };
        sqlx::query("INSERT INTO log_entries (idx, leaf, leaf_hash, ts, action, actor_partner, actor_role, recipient, purpose, outcome, projection) VALUES ($1, $2, $3, $4, 'read', 'zvhd', 'ketenregisseur', 'zvhd', 'drieluik', 'disclosed', $5)")
            .bind(idx as i64)
            .bind(leaf.clone())
            .bind(leaf_hash(&leaf).to_vec())
            .bind(1_795_888_800_123i64)
            .bind(projection)
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO log_subjects (pseudonym, idx) VALUES ($1, $2)")
            .bind(format!("ps1:v1-subject-{idx}"))
            .bind(idx as i64)
            .execute(&mut conn)
            .await
            .unwrap();
        v1.push(leaf.clone());
        leaves.push(leaf);
    }
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let stored = stored_hashes(&hashes);
    for (id, h) in stored.iter().enumerate().skip(leaf_hash_id(first) as usize) {
        sqlx::query("INSERT INTO log_hashes (id, hash) VALUES ($1, $2)")
            .bind(id as i64)
            .bind(h.to_vec())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    exec(
        &mut conn,
        &format!("UPDATE log_head SET size = {}", leaves.len()),
    )
    .await;
    // Migration 0021's backfill, on these rows.
    exec(&mut conn, &user_backfill(&data)).await;
    let column: Vec<Option<String>> =
        sqlx::query_scalar("SELECT actor_user FROM log_entries WHERE idx >= $1 ORDER BY idx")
            .bind(first as i64)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let expected: Vec<Option<String>> = users.iter().map(|u| u.map(str::to_owned)).collect();
    assert_eq!(column, expected, "the user column of v1 and v2 rows");
    drop(conn);
    // A log written before the weekly counts (migration 0020) is counted
    // when ketenpoort opens it: the v1 entries' refusal reasons are in
    // their leaves.
    let out = data.cli_ok(&["migrate"]);
    assert!(
        out.contains(&format!("{} entries counted", users.len())),
        "{out}"
    );
    let out = data.cli(&["log", "verify", "--verifier-key", &vkey]);
    assert!(
        out.status.success(),
        "the v1 and v2 log verifies: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The new server appends v3 entries on top: a full read among them.
    let server = Server::start_on(data.clone(), quiet());
    let fg = Role::of(&server, "zvhd", "fg");
    let melder = Role::of(&server, "emmen", MELDER);
    let regisseur = Role::of(&server, "zvhd", "ketenregisseur");
    let (id, _) = melder.submit(&example_signal()).await;
    let res = regisseur
        .get(&format!("/v1/signals/{id}"), "drieluik")
        .await;
    assert_eq!(res.status(), 200);
    let (read_at, _) = receipt(&res);
    let granted: Value = res.json().await.unwrap();
    fg.append_one().await;
    fg.sign_checkpoint().await;
    let size = fg.append_one().await + 1;

    // The FG's API: the v1 entries with their own field names, the v2 entry and the v3 read
    // with every field name of the record it disclosed.
    let page: Value = fg
        .get(&format!("/v1/log/entries?start=0&end={size}"), AUDIT)
        .await
        .json()
        .await
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    for (k, fields) in v1_fields.iter().enumerate() {
        let e = &entries[first as usize + k];
        assert_eq!(leaf_of(e), v1[k], "a v1 leaf is served as it was stored");
        assert_eq!(e["entry"]["v"], 1);
        assert_eq!(e["entry"]["fields"], json!(fields), "{e}");
        assert_eq!(
            e["entry"]["legalBasis"],
            "Convenant ZVHD + addendum mensenhandel; AVG art. 6(1)(e)"
        );
    }
    let e = &entries[first as usize + 3];
    assert_eq!(leaf_of(e), v1[3], "a v2 leaf is served as it was stored");
    assert_eq!(e["entry"]["v"], 2);
    assert_eq!(
        e["entry"]["fields"],
        json!(["forms", "victims.name"]),
        "{e}"
    );
    assert_eq!(e["entry"]["actor"]["user"], json!(users[3]), "{e}");
    let read = &entries[read_at as usize];
    assert_eq!(read["entry"]["v"], 3);
    let leaf = crate::leaves::leaf_json(&leaf_of(read));
    assert!(leaf.get("fields").is_none(), "{leaf}");
    let shown: BTreeSet<String> = read["entry"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert!(
        shown.len() >= 20,
        "a full read discloses the record: {shown:?}"
    );
    for f in [
        "victims.name",
        "victims.bsn",
        "suspects.name",
        "narrative",
        "forms",
    ] {
        assert!(shown.contains(f), "{f} in {shown:?}");
    }
    assert!(granted["victims"].is_array());
    assert_ne!(read["entry"]["decision"]["mode"], "none");
    assert!(
        read["entry"]["policyRevision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // The leaf names its projection by the SHA-256 of the stored bytes.
    let name = leaf["projection"]
        .as_str()
        .expect("a projection name")
        .to_owned();
    let mut conn = data.connect().await;
    let body: Vec<u8> = sqlx::query_scalar("SELECT body FROM log_projections WHERE hash = $1")
        .bind(hex::decode(&name).unwrap())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(hex::encode(sha256(&[&body])), name);
    let projection: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(projection["fields"], read["entry"]["fields"]);
    // The export shows them too.
    let csv = fg
        .get(
            "/v1/log/export?from=2000-01-01&to=2100-01-01&partner=zvhd",
            AUDIT,
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains("forms municipality narrative victims.bsn"),
        "{csv}"
    );
    assert!(csv.contains("victims.name"), "{csv}");
    drop(conn);
    let size = fg.append_one().await + 1;
    drop(server);

    let out = data.cli(&["log", "verify", "--verifier-key", &vkey]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "v1 then v2 verifies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("log verified: {size} entries")),
        "{stdout}"
    );
}
