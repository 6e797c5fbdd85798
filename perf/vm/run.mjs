// session-guard's own computation per request in V8, without Envoy: the built .wasm is loaded in
// Node (the same V8 engine family as Envoy's Wasm runtime) behind a minimal Proxy-Wasm host
// written here in JavaScript, and each traffic class is replayed through the filter's exported
// callbacks. The host calls cost what a JavaScript function call costs (tens of ns), not what
// Envoy's cost, so what is left is the filter's own work: parsing, crypto, allocation.
//
// usage: node perf/vm/run.mjs [--ms N] [--rounds N] [--classes a,b] [--dbsc-off name,...] name=path.wasm [name=path.wasm ...]
// --dbsc-off: those builds run with DBSC off (the A/B of an unbound session's cost: the same
// .wasm under two names, one of them off); they have no authed/bound/refresh classes.
// Prints µs per request (median over interleaved rounds) per class and build; --trace also
// prints the host calls each class makes (perf/run.py's CALLS_SEQ must match steady's).
// `make bench-vm` runs it on the built wasm and the empty filter (and BENCH_VARIANTS).

import { readFileSync } from "node:fs";
import v8 from "node:v8";
import { webcrypto } from "node:crypto";

// Envoy's V8 (proxy-wasm-cpp-host) compiles Wasm with TurboFan only: no Liftoff tier here either.
v8.setFlagsFromString("--no-liftoff");

const args = process.argv.slice(2);
let ms = 300, rounds = 7, only = null, trace = false, seqOnly = false, dbscOff = [];
const builds = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--ms") ms = Number(args[++i]);
  else if (args[i] === "--rounds") rounds = Number(args[++i]);
  else if (args[i] === "--classes") only = args[++i].split(",");
  else if (args[i] === "--trace") trace = true;
  else if (args[i] === "--calls-seq") seqOnly = true;
  else if (args[i] === "--dbsc-off") dbscOff = args[++i].split(",");
  else {
    const eq = args[i].indexOf("=");
    if (eq < 1) throw new Error(`not name=path.wasm: ${args[i]}`);
    builds.push([args[i].slice(0, eq), args[i].slice(eq + 1)]);
  }
}
if (builds.length === 0) throw new Error("usage: run.mjs [--ms N] [--rounds N] [--classes a,b] name=path.wasm ...");

// DBSC on, as in `make bench`: `steady` is an unbound session's request (it must make no new
// host call: tests/bench_probe.rs compares its calls with CALLS_SEQ), `bound` a bound one's.
const config = (dbsc) => JSON.stringify({
  keys: [{ id: "k1", secret: Buffer.alloc(32, 7).toString("base64") }],
  signal: { trusted_clusters: ["auth"] },
  dbsc: { enabled: dbsc },
});
const DBSC = "/.session-guard/dbsc";
const UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
const enc = new TextEncoder();
const dec = new TextDecoder();
const APP = enc.encode("app"), AUTH = enc.encode("auth");

// The inverse of serializeMap, for the headers of a local reply.
function parseMap(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = dv.getUint32(0, true);
  const out = [];
  let p = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kn = dv.getUint32(4 + i * 8, true), vn = dv.getUint32(8 + i * 8, true);
    out.push([dec.decode(bytes.subarray(p, p + kn)), dec.decode(bytes.subarray(p + kn + 1, p + kn + 1 + vn))]);
    p += kn + vn + 2;
  }
  return out;
}

function serializeMap(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let p = 4 + parts.length * 8;
  parts.forEach(([k, v], i) => {
    dv.setUint32(4 + i * 8, k.length, true);
    dv.setUint32(8 + i * 8, v.length, true);
    out.set(k, p); p += k.length + 1;
    out.set(v, p); p += v.length + 1;
  });
  return out;
}

// Randomness from a pool refilled in bulk: a host's random_get is a cheap call, Node's is not.
const pool = new Uint8Array(1 << 16);
let poolAt = pool.length;
function randomBytes(n) {
  if (n > pool.length) return webcrypto.getRandomValues(new Uint8Array(n));
  if (poolAt + n > pool.length) { webcrypto.getRandomValues(pool); poolAt = 0; }
  poolAt += n;
  return pool.subarray(poolAt - n, poolAt);
}

// One loaded filter: a VM with its root context configured.
async function load(path, CONFIG) {
  const module = await WebAssembly.compile(readFileSync(path));
  let inst, buf = null, u8 = null, view = null;
  // Views are rebuilt only when the memory grew (a new ArrayBuffer).
  const fresh = () => {
    if (inst.exports.memory.buffer !== buf) {
      buf = inst.exports.memory.buffer; u8 = new Uint8Array(buf); view = new DataView(buf);
    }
  };
  const mem = () => (fresh(), u8);
  const dv = () => (fresh(), view);
  const str = (p, n) => dec.decode(mem().subarray(p, p + n));
  const give = (bytes, retPtr, retSize) => {
    const p = inst.exports.proxy_on_memory_allocate(bytes.length);
    mem().set(bytes, p);
    dv().setUint32(retPtr, p, true);
    dv().setUint32(retSize, bytes.length, true);
    return 0;
  };
  // setCookies: what the filter added to the response; added: every response header it added;
  // local: the last local reply (status, headers, body); the last two only while `capture`
  // (setting up the classes), so that no class is timed with them.
  const st = { reqBytes: null, respBytes: null, cluster: null, setCookies: [], added: [], local: null, capture: false, calls: null };
  const config = enc.encode(CONFIG);
  const env = {
    proxy_log: () => 0,
    proxy_get_log_level: (p) => { dv().setUint32(p, 2, true); return 0; },
    proxy_get_header_map_pairs: (t, rp, rs) => give(t === 0 ? st.reqBytes : st.respBytes, rp, rs),
    proxy_add_header_map_value: (t, kp, kn, vp, vn) => {
      if (t === 2 && str(kp, kn) === "set-cookie") st.setCookies.push(str(vp, vn));
      if (t === 2 && st.capture) st.added.push([str(kp, kn), str(vp, vn)]);
      return 0;
    },
    proxy_replace_header_map_value: () => 0,
    proxy_remove_header_map_value: () => 0,
    proxy_get_buffer_bytes: (t, start, max, rp, rs) => (t === 7 ? give(config, rp, rs) : 1),
    proxy_get_property: (pp, pn, rp, rs) =>
      str(pp, pn) === "xds\0cluster_name" ? give(st.cluster, rp, rs) : 1,
    proxy_set_property: () => 0,
    proxy_get_current_time_nanoseconds: (p) => { dv().setBigUint64(p, BigInt(Date.now()) * 1000000n, true); return 0; },
    proxy_define_metric: (t, np, nn, rp) => { dv().setUint32(rp, 1, true); return 0; },
    proxy_increment_metric: () => 0,
    proxy_send_local_response: (status, dp, dn, bp, bn, hp, hn) => {
      if (st.capture) {
        st.local = { status, headers: parseMap(mem().slice(hp, hp + hn)), body: str(bp, bn) };
      }
      return 0;
    },
  };
  const wasi = {
    random_get: (p, n) => { mem().set(randomBytes(n), p); return 0; },
    environ_sizes_get: (a, b) => { dv().setUint32(a, 0, true); dv().setUint32(b, 0, true); return 0; },
    environ_get: () => 0,
    fd_write: (fd, iovs, n, written) => { dv().setUint32(written, 0, true); return 0; },
    clock_time_get: (id, prec, p) => { dv().setBigUint64(p, BigInt(Date.now()) * 1000000n, true); return 0; },
    proc_exit: (c) => { throw new Error(`proc_exit ${c}`); },
  };
  const imports = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    const table = imp.module === "env" ? env : imp.module === "wasi_snapshot_preview1" ? wasi : {};
    imports[imp.module] ??= {};
    const fn = table[imp.name] ?? (() => 0);
    imports[imp.module][imp.name] = (...a) => {
      if (st.phase) st.phase.push(st.now);
      if (st.calls) st.calls.push(imp.name === "proxy_get_property" || imp.name.includes("header_map_value") || imp.name === "proxy_set_property"
        ? `${imp.name}(${imp.name === "proxy_set_property" || imp.name === "proxy_get_property" ? str(a[0], a[1]).replace("\0", ".") : `${a[0]},${str(a[1], a[2])}`})` : imp.name);
      return fn(...a);
    };
  }
  inst = await WebAssembly.instantiate(module, imports);
  const x = inst.exports;
  (x._initialize ?? x._start)?.();
  x.proxy_on_context_create(1, 0);
  x.proxy_on_vm_start(1, 0);
  if (!x.proxy_on_configure(1, CONFIG.length)) throw new Error(`${path}: configuration refused`);
  let next = 2;
  // One request through the filter; returns the Set-Cookie values it added.
  const request = (reqBytes, respBytes, cluster) => {
    st.reqBytes = reqBytes; st.respBytes = respBytes; st.cluster = cluster; st.setCookies = [];
    st.added = []; st.local = null;
    const id = next++;
    x.proxy_on_context_create(id, 1);
    st.now = "request";
    x.proxy_on_request_headers(id, 0, 1);
    st.now = "response";
    x.proxy_on_response_headers(id, 0, 0);
    x.proxy_on_done(id);
    x.proxy_on_log?.(id);
    x.proxy_on_delete(id);
    return st.setCookies;
  };
  return { request, st };
}

const reqHeaders = (path, cookie, extra = [], method = "GET") => serializeMap([
  [":authority", "app.example.com"], [":path", path], [":method", method], [":scheme", "http"],
  ["user-agent", UA], ["accept", "*/*"], ["x-forwarded-proto", "http"],
  ["x-request-id", "0f6c1a2e-8c1b-4d5e-9a7f-3b2c1d0e9f8a"],
  ...(cookie ? [["cookie", cookie]] : []), ...extra,
]);
const respHeaders = (extra = []) => serializeMap([
  [":status", "200"], ["content-type", "text/plain"], ["content-length", "2"],
  ["date", "Mon, 30 Nov 2026 18:00:00 GMT"], ["server", "envoy"], ...extra,
]);

// A device key as a browser keeps it (WebCrypto P-256) and the `dbsc+jwt` proofs it signs
// (ECDSA in WebCrypto is already the raw r||s of JWS).
const b64u = (b) => Buffer.from(b).toString("base64url");
async function deviceKey() {
  const { privateKey, publicKey } = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
  const { x, y } = await webcrypto.subtle.exportKey("jwk", publicKey);
  const proof = async (jti, withJwk) => {
    const header = { alg: "ES256", typ: "dbsc+jwt", ...(withJwk ? { jwk: { kty: "EC", crv: "P-256", x, y } } : {}) };
    const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify({ jti }))}`;
    const sig = await webcrypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey, enc.encode(input));
    return `${input}.${b64u(new Uint8Array(sig))}`;
  };
  return { proof };
}

// `authed`, `bound` and `refresh`: log in, register a device key (start), sign a proof over the
// pre-seeded refresh challenge. The refresh class replays that proof (valid for the challenge's
// lifetime, ticket_ttl_s + 60 s), one ES256 verify each time.
async function dbscClasses(f, cookie, plain, login) {
  f.st.capture = true;
  const header = (list, name) => list.find(([k]) => k === name)?.[1];
  const authed = f.request(reqHeaders("/auth/login", cookie), login, AUTH).find((c) => c.startsWith("__Host-session="));
  const offer = header(f.st.added, "secure-session-registration");
  const challenge = offer && /challenge="([^"]*)"/.exec(offer)?.[1];
  if (!authed || !challenge) throw new Error("the login response offered no DBSC registration");
  const key = await deviceKey();
  const mesh = authed.split(";")[0];
  const start = [["secure-session-response", await key.proof(challenge, true)]];
  f.request(reqHeaders(`${DBSC}/start`, mesh, start, "POST"), plain, APP);
  const r = f.st.local;
  const cookies = (r?.headers ?? []).filter(([k]) => k === "set-cookie").map(([, v]) => v.split(";")[0]);
  const bound = cookies.find((c) => c.startsWith("__Host-session="));
  const ticket = cookies.find((c) => c.startsWith("__Host-session-bound="));
  const next = /^"([^"]*)"/.exec(header(r?.headers ?? [], "secure-session-challenge") ?? "")?.[1];
  if (r?.status !== 200 || !bound || !ticket || !next) throw new Error(`registration failed: ${JSON.stringify(r)}`);
  const id = JSON.parse(r.body).session_identifier;
  const both = `${bound}; ${ticket}`;
  const refresh = [["sec-secure-session-id", id], ["secure-session-response", await key.proof(next, false)]];
  // A second login, never registered: `authed`, what `bound` costs without DBSC.
  const other = f.request(reqHeaders("/auth/login", cookie), login, AUTH).find((c) => c.startsWith("__Host-session="));
  const classes = {
    authed: [reqHeaders("/app/page?x=1", other.split(";")[0]), plain, APP],
    bound: [reqHeaders("/app/page?x=1", both), plain, APP],
    refresh: [reqHeaders(`${DBSC}/refresh`, both, refresh, "POST"), plain, APP, 5],
  };
  f.request(...classes.refresh);
  if (f.st.local?.status !== 200 || !f.st.local.headers.some(([k, v]) => k === "set-cookie" && v.startsWith("__Host-session-bound="))) {
    throw new Error(`refresh failed: ${JSON.stringify(f.st.local)}`);
  }
  f.st.capture = false;
  return classes;
}

// The classes of `make bench`, built with a cookie each build minted itself.
async function classes(f, dbsc) {
  const plain = respHeaders();
  const minted = f.request(reqHeaders("/app/page?x=1"), plain, APP).find((c) => c.startsWith("__Host-session="));
  if (!minted) return null; // a probe (the empty filter) mints nothing: it takes another build's
  const cookie = minted.split(";")[0];
  const bindResp = respHeaders([["set-cookie", "connect.sid=s%3Aabc.def; Path=/; HttpOnly"]]);
  const mesh = (list) => list.find((c) => c.startsWith("__Host-session="));
  const bound = mesh(f.request(reqHeaders("/app/bind", cookie), bindResp, APP));
  if (!bound) throw new Error("the filter did not bind the app cookie");
  const login = respHeaders([["x-session-guard", "login"], ["x-session-guard-subject", "alice"]]);
  return {
    steady: [reqHeaders("/app/page?x=1", cookie), plain, APP],
    anonymous: [reqHeaders("/app/page?x=1"), plain, APP],
    url: [reqHeaders("/?jsessionid=ABC&x=1", cookie), plain, APP],
    forged: [reqHeaders("/app/page?x=1", cookie.slice(0, -3) + (cookie.endsWith("A") ? "BBB" : "AAA")), plain, APP],
    login: [reqHeaders("/auth/login", cookie), login, AUTH],
    binding: [reqHeaders("/app/page?x=1", `${bound.split(";")[0]}; connect.sid=s%3Aabc.def`), plain, APP],
    ...(dbsc ? await dbscClasses(f, cookie, plain, login) : {}),
  };
}

// batch: requests between two clock reads (fewer for a class that takes milliseconds).
function timeClass(f, [req, resp, cluster, batch = 200]) {
  const t0 = process.hrtime.bigint();
  let n = 0;
  const deadline = t0 + BigInt(ms) * 1000000n;
  while (true) {
    for (let i = 0; i < batch; i++) f.request(req, resp, cluster);
    n += batch;
    if (process.hrtime.bigint() >= deadline) break;
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

const loaded = [];
for (const [name, path] of builds) {
  const dbsc = !dbscOff.includes(name);
  const f = await load(path, config(dbsc));
  loaded.push([name, f, await classes(f, dbsc)]);
}
// The reference: the first build that minted, with the most classes (DBSC on).
const reference = loaded.map(([, , c]) => c).filter(Boolean)
  .sort((a, b) => Object.keys(b).length - Object.keys(a).length)[0];
if (!reference) throw new Error("no build minted a cookie");
for (const l of loaded) l[2] ??= reference;

// A call as perf/hostcall-probe's steps name it (CALLS_SEQ in perf/run.py), or null.
function step(call, phase) {
  // Each probe step runs in one phase only (perf/hostcall-probe's run_step): a call in the
  // other phase has no step, and prints as ?name.
  const request = {
    "proxy_get_header_map_pairs": "req_map",
    "proxy_get_current_time_nanoseconds": "time",
    "proxy_increment_metric": "metric",
    "proxy_set_property(session_guard.session)": "prop",
    "proxy_set_property(session_guard.decision)": "prop2",
    "proxy_remove_header_map_value(0,cookie)": "rm_cookie",
    "proxy_replace_header_map_value(0,x-session-id)": "set_sid",
    "proxy_replace_header_map_value(0,x-session-id-next)": "set_next",
    "proxy_get_property(xds.cluster_name)": "cluster",
    "random_get": "random",
    "proxy_get_shared_data": "shared",
  };
  const response = {
    "proxy_get_header_map_pairs": "resp_map",
    "proxy_get_current_time_nanoseconds": "resp_time",
    "proxy_increment_metric": "resp_metric",
    "proxy_set_property(session_guard.decision)": "resp_prop",
  };
  return (phase === "request" ? request : response)[call] ?? null;
}

if (seqOnly) {
  // The steady request's host calls in the probe's vocabulary, e.g. req_map+time+...; a call
  // the probe has no step for prints as ?name (the probe would then not match the filter).
  const [, f, cls] = loaded[0];
  f.st.calls = [];
  f.st.phase = [];
  f.request(...cls.steady);
  console.log(f.st.calls.map((c, i) => step(c, f.st.phase[i]) ?? `?${c}`).join("+"));
  process.exit(0);
}
const names = Object.keys(reference).filter((c) => !only || only.includes(c));
const samples = {};
for (const [name, f, cls] of loaded) for (const c of names) if (cls[c]) timeClass(f, cls[c]); // warm-up, tier-up
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [...loaded].reverse() : loaded;
  for (const c of names) for (const [name, f, cls] of order) {
    if (cls[c]) ((samples[c] ??= {})[name] ??= []).push(timeClass(f, cls[c]));
  }
}
if (trace) {
  // The host calls each class makes (first build), in order: keep perf/run.py's CALLS_SEQ in step.
  const [name, f, cls] = loaded[0];
  for (const c of names.filter((n) => cls[n])) {
    f.st.calls = [];
    f.request(...cls[c]);
    console.log(`${name} ${c}: ${f.st.calls.length} calls: ${f.st.calls.join(" ")}`);
    f.st.calls = null;
  }
}
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]; };
const w = Math.max(...builds.map(([n]) => n.length), 8);
console.log(`µs per request in V8 (Node ${process.version}), median of ${rounds} interleaved rounds x ${ms} ms`);
console.log("class".padEnd(10) + builds.map(([n]) => n.padStart(w + 2)).join(""));
for (const c of names) {
  console.log(c.padEnd(10) + builds.map(([n]) => (samples[c][n] ? median(samples[c][n]).toFixed(2) : "-").padStart(w + 2)).join(""));
}
