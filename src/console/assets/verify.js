// Verification of the disclosure log in the privacy officer's browser.
// The server only supplies a signed checkpoint and Merkle proofs; this
// script checks them itself (WebCrypto: Ed25519 and SHA-256):
//  - the checkpoint's signature (a C2SP signed note) against the verifier
//    key this browser pinned once (localStorage);
//  - an RFC 9162 consistency proof from the last checkpoint this browser
//    verified to the current one (the log only grew);
//  - on an entry's page, the entry's inclusion proof: SHA-256(0x00 || leaf)
//    of the leaf bytes shown, up to the signed root.
// Any failure is shown in red, naming what failed.
"use strict";
(function () {
  const KEY = "kp-console-verifier-key";
  const SEEN = "kp-console-last-checkpoint";
  const enc = new TextEncoder();

  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const toB64 = (u) => btoa(String.fromCharCode(...u));
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (u) => new Uint8Array(await crypto.subtle.digest("SHA-256", u));
  const node = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
  const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));

  class Failure extends Error {}

  // C2SP signed note: "<text>\n\n— <name> <base64(keyid || sig)>\n..."
  async function openNote(note, verifierKey) {
    // <name>+<8 hex key id>+<base64(0x01 || key)>: the base64 may hold "+".
    const vk = verifierKey.trim();
    const p1 = vk.indexOf("+");
    const name = vk.slice(0, p1);
    const keyIdHex = vk.slice(p1 + 1, p1 + 9);
    const keyB64 = vk.slice(p1 + 10);
    const key = b64(keyB64);
    if (key.length !== 33 || key[0] !== 1) throw new Failure("de vastgelegde sleutel is geen Ed25519-sleutel");
    const id = (await sha256(concat(enc.encode(name + "\n"), key))).slice(0, 4);
    if (Array.from(id).map((b) => b.toString(16).padStart(2, "0")).join("") !== keyIdHex) {
      throw new Failure("de vastgelegde sleutel is beschadigd");
    }
    const split = note.indexOf("\n\n");
    if (split < 0) throw new Failure("het checkpoint is geen ondertekende notitie");
    const text = note.slice(0, split + 1);
    const pub = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
    let ok = false;
    for (const line of note.slice(split + 2).split("\n")) {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const sig = b64(m[2]);
      if (sig.length !== 68 || !equal(sig.slice(0, 4), id)) continue;
      if (await crypto.subtle.verify({ name: "Ed25519" }, pub, sig.slice(4), enc.encode(text))) ok = true;
    }
    if (!ok) throw new Failure("de handtekening van het checkpoint klopt niet met de vastgelegde sleutel");
    const lines = text.split("\n");
    const size = BigInt(lines[1]);
    const root = b64(lines[2]);
    if (root.length !== 32) throw new Failure("het checkpoint heeft geen geldige boomhash");
    return { origin: lines[0], size, root };
  }

  // RFC 9162 2.1.3.2
  async function inclusionRoot(index, size, leaf, proof) {
    if (index >= size) throw new Failure("opnamebewijs: index buiten de boom");
    let fn = index, sn = size - 1n, r = leaf;
    for (const p of proof) {
      if (sn === 0n) throw new Failure("opnamebewijs: te lang");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await node(p, r);
        if ((fn & 1n) === 0n) { while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; } }
      } else {
        r = await node(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Failure("opnamebewijs: te kort");
    return r;
  }

  // RFC 9162 2.1.4.2
  async function checkConsistency(first, second, firstRoot, secondRoot, proof) {
    if (first === second) {
      if (proof.length || !equal(firstRoot, secondRoot)) throw new Failure("consistentiebewijs: andere boom bij gelijke grootte");
      return;
    }
    let path = proof.slice();
    if ((first & (first - 1n)) === 0n) path.unshift(firstRoot);
    if (!path.length) throw new Failure("consistentiebewijs: leeg");
    let fn = first - 1n, sn = second - 1n;
    while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0n) throw new Failure("consistentiebewijs: te lang");
      if ((fn & 1n) === 1n || fn === sn) {
        fr = await node(c, fr); sr = await node(c, sr);
        if ((fn & 1n) === 0n) { while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; } }
      } else {
        sr = await node(sr, c);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n || !equal(fr, firstRoot) || !equal(sr, secondRoot)) {
      throw new Failure("consistentiebewijs: het log is herschreven sinds uw vorige controle");
    }
  }

  async function getJson(url) {
    const res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!res.ok) throw new Failure("de server gaf geen bewijs (" + res.status + ")");
    return res.json();
  }

  // pending: what could be checked held, but the entry is not yet under a
  // checkpoint (not a failure, not yet a success).
  function show(ok, text, pending) {
    const el = document.getElementById("kp-verify-status");
    el.textContent = (ok ? (pending ? "Nog niet volledig: " : "Geslaagd: ") : "Mislukt: ") + text;
    el.className = "status " + (ok ? (pending ? "pending" : "ok") : "fail");
    document.getElementById("kp-verify").dataset.result = ok ? (pending ? "pending" : "ok") : "fail";
  }

  async function run(box) {
    const cp = await getJson("/console/verificatie/checkpoint");
    const pinned = localStorage.getItem(KEY);
    if (!pinned) {
      const pin = document.getElementById("kp-verify-pin");
      document.getElementById("kp-verify-key").textContent = cp.verifierKey;
      pin.hidden = false;
      document.getElementById("kp-verify-status").textContent = "Nog geen sleutel vastgelegd.";
      document.getElementById("kp-verify-pin-button").addEventListener("click", () => {
        localStorage.setItem(KEY, cp.verifierKey);
        pin.hidden = true;
        start();
      }, { once: true });
      return;
    }
    const head = await openNote(cp.note, pinned);
    const done = ["handtekening van checkpoint " + head.size + " klopt"];
    const seenText = localStorage.getItem(SEEN);
    if (seenText) {
      const seen = JSON.parse(seenText);
      const seenSize = BigInt(seen.size);
      if (seenSize > head.size) throw new Failure("het log is kleiner dan bij uw vorige controle (" + seen.size + " regels): regels zijn verwijderd");
      const proof = seenSize === 0n ? { proof: [] } : await getJson("/console/verificatie/consistentie?from=" + seen.size + "&to=" + head.size);
      if (seenSize > 0n) await checkConsistency(seenSize, head.size, b64(seen.root), head.root, proof.proof.map(b64));
      done.push("consistent met uw vorige controle (" + seen.size + " regels)");
    }
    let pending = false;
    if (box.dataset.mode === "inclusion" && BigInt(box.dataset.index) >= head.size) {
      // Newer than the latest checkpoint: nothing to check it against yet.
      done.push("logregel " + box.dataset.index + " valt nog niet onder het nieuwste checkpoint (" + head.size + " regels); controleer later opnieuw");
      pending = true;
    } else if (box.dataset.mode === "inclusion") {
      const index = BigInt(box.dataset.index);
      const leaf = box.dataset.leaf ? await leafHash(b64(box.dataset.leaf)) : b64(box.dataset.leafHash);
      const p = await getJson("/console/verificatie/inclusie?index=" + index + "&treeSize=" + head.size);
      const root = await inclusionRoot(index, head.size, leaf, p.proof.map(b64));
      if (!equal(root, head.root)) throw new Failure("opnamebewijs van regel " + index + ": deze logregel is gewijzigd of hoort niet bij het ondertekende log");
      done.push("logregel " + index + " zit in het ondertekende log");
    }
    localStorage.setItem(SEEN, JSON.stringify({ size: head.size.toString(), root: toB64(head.root) }));
    const size = document.getElementById("kp-checkpoint-size");
    if (size) size.textContent = head.size.toString();
    const rootEl = document.getElementById("kp-checkpoint-root");
    if (rootEl) rootEl.textContent = toB64(head.root);
    show(true, done.join("; "), pending);
  }

  function start() {
    const box = document.getElementById("kp-verify");
    if (!box) return;
    document.getElementById("kp-verify-status").textContent = "Bezig met controleren…";
    run(box).catch((e) => show(false, e instanceof Failure ? e.message : "controle niet uitvoerbaar (" + e + ")"));
  }

  document.addEventListener("DOMContentLoaded", start);
})();
