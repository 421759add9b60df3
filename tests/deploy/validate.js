// validate.js — reads the rendered kustomization (YAML, several documents) on standard input, validates every object
// against the Kubernetes API schemas offline (kubernetes-models, pinned by package-lock.json), then checks what the
// esr worker needs of its manifests: probes on /healthz and /readyz (a generous startup probe), the metrics port with
// scrape annotations and a service port, a restricted security context, a grace period longer than the worker's drain
// and http.listen in the worker's configuration on the same port. Exit 0 when all holds, 1 with each failure named.
"use strict";
const YAML = require("yaml");

const failures = [];
const fail = (msg) => failures.push(msg);
const docs = YAML.parseAllDocuments(require("fs").readFileSync(0, "utf8"));
const objects = [];
for (const d of docs) {
  if (d.errors.length) fail(`YAML: ${d.errors[0].message}`);
  const o = d.toJS();
  if (o) objects.push(o);
}

for (const o of objects) {
  const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : [null, o.apiVersion];
  const mod = `kubernetes-models/${group ? group + "/" : ""}${version}/${o.kind}`;
  let Model;
  try {
    Model = require(mod)[o.kind];
  } catch (e) {
    fail(`${o.kind} ${o.metadata && o.metadata.name}: no schema for ${o.apiVersion} ${o.kind}`);
    continue;
  }
  try {
    new Model(o).validate();
  } catch (e) {
    fail(`${o.kind} ${o.metadata && o.metadata.name}: ${e.message}`);
  }
}

const find = (kind) => objects.filter((o) => o.kind === kind);
const sts = find("StatefulSet")[0];
const svc = find("Service")[0];
const cm = find("ConfigMap")[0];
if (!sts || !svc || !cm || !find("PodDisruptionBudget")[0]) fail("expected a StatefulSet, a Service, a ConfigMap and a PodDisruptionBudget");
if (sts) {
  const pod = sts.spec.template.spec;
  const c = pod.containers.find((x) => x.name === "esr");
  const port = (c.ports || []).find((p) => p.name === "metrics");
  if (!port) fail("the esr container has no port named metrics");
  const probe = (name, path) => {
    const p = c[name];
    if (!p || !p.httpGet || p.httpGet.path !== path || p.httpGet.port !== "metrics")
      fail(`${name}: expected httpGet ${path} on port metrics`);
    return p || {};
  };
  const startup = probe("startupProbe", "/healthz");
  probe("livenessProbe", "/healthz");
  probe("readinessProbe", "/readyz");
  if ((startup.periodSeconds || 10) * (startup.failureThreshold || 3) < 300)
    fail("startupProbe: allow at least 300 s (periodSeconds x failureThreshold) for the recovery of many partitions");
  const ann = sts.spec.template.metadata.annotations || {};
  if (ann["prometheus.io/scrape"] !== "true" || ann["prometheus.io/port"] !== String(port && port.containerPort) ||
      ann["prometheus.io/path"] !== "/metrics")
    fail("pod annotations prometheus.io/scrape, /port (the metrics port) and /path (/metrics) expected");
  const psc = pod.securityContext || {};
  const csc = c.securityContext || {};
  if (!psc.runAsNonRoot && !csc.runAsNonRoot) fail("runAsNonRoot expected");
  if (!(psc.runAsUser > 0)) fail("a non-root runAsUser expected");
  if (!csc.readOnlyRootFilesystem) fail("readOnlyRootFilesystem expected");
  if (csc.allowPrivilegeEscalation !== false) fail("allowPrivilegeEscalation: false expected");
  if (!csc.capabilities || JSON.stringify(csc.capabilities.drop) !== '["ALL"]') fail("capabilities: drop [ALL] expected");
  const seccomp = (csc.seccompProfile || psc.seccompProfile || {}).type;
  if (seccomp !== "RuntimeDefault") fail("seccompProfile RuntimeDefault expected");
  // The worker's drain: a checkpoint at release (RELEASE_CHECKPOINT_MS, 120 s) and the outbox flush (15 s).
  if (!(pod.terminationGracePeriodSeconds > 135)) fail("terminationGracePeriodSeconds must exceed the worker's drain (135 s)");
  const conf = cm.data["worker.conf"] || "";
  const m = conf.match(/^\s*http\.listen\s*=\s*(\S*):(\d+)\s*$/m);
  if (!m || port && Number(m[2]) !== port.containerPort) fail("worker.conf: http.listen on the metrics port expected");
}
if (svc && !(svc.spec.ports || []).some((p) => p.name === "metrics" && p.targetPort === "metrics"))
  fail("the Service exposes no metrics port");

for (const f of failures) console.error(`deploy: ${f}`);
console.log(`deploy: ${objects.length} objects validated against the Kubernetes API schemas, ${failures.length} failure(s)`);
process.exit(failures.length ? 1 : 0);
