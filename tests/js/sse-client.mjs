// GraphQL over SSE client (the `graphql-sse` library) driven by env vars, for
// pytest to run as a subprocess against a live server.
//
//   BASE            server origin, e.g. http://127.0.0.1:8123 (URL used: BASE/graphql/stream)
//   MODE            "distinct" (default) or "single" (graphql-sse singleConnection)
//   TOKEN           optional; sends `Authorization: Bearer <TOKEN>` on every request
//   QUERY           GraphQL document
//   VARIABLES       optional JSON object
//   COUNT           stop after this many `next` results (unset or 0: run until complete)
//   SECOND_QUERY    optional; a second concurrent subscription on the same client
//   SECOND_VARIABLES, SECOND_COUNT   optional; default to VARIABLES and COUNT
//   READY_ON        "response" (default) or "sent", see below
//   TIMEOUT_MS      hard deadline, default 20000; then prints {"timeout": true}, exit 2
//
// stdout, one JSON object per line:
//   {"ready": true}        the operation's request was answered by the server
//                          (distinct: SSE response headers arrived with a 2xx;
//                          single: the operation POST got its 202). With
//                          READY_ON=sent it is printed as soon as that request
//                          has been handed to fetch instead.
//   {"next": <ExecutionResult>}
//   {"complete": true}     the server completed the operation
//   {"error": {"message": ..., "name"?, "status"?, "body"?}}   then exit 1
//   {"timeout": true}      then exit 2
// With SECOND_QUERY every line carries "op": 1 or "op": 2.
// Exit 0 once every operation has completed or reached its COUNT (it is then
// disposed: in single mode that is the library's DELETE, awaited before exit).
import { createClient } from 'graphql-sse';
import { emit, exit, readEnv, armTimeout, serialiseError } from './common.mjs';

const cfg = readEnv();
armTimeout(cfg.timeoutMs);

if (cfg.mode !== 'distinct' && cfg.mode !== 'single') {
  exit(1, { error: { message: `MODE must be "distinct" or "single", got ${JSON.stringify(cfg.mode)}` } });
}
const readyOn = process.env.READY_ON || 'response';

const tagged = Boolean(cfg.secondQuery);
const ops = [{ n: 1, query: cfg.query, variables: cfg.variables, count: cfg.count }];
if (tagged) ops.push({ n: 2, query: cfg.secondQuery, variables: cfg.secondVariables, count: cfg.secondCount });
for (const op of ops) Object.assign(op, { received: 0, claimed: false, ready: false, stopping: false, done: false, dispose: null });

function line(op, obj) {
  emit(tagged ? { ...obj, op: op.n } : obj);
}

// Which operation does an outgoing request carry? Match on the body's query
// (and variables); the first operation whose request has not gone out yet wins.
function opForBody(body) {
  let parsed;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  const waiting = ops.filter((op) => !op.claimed);
  const vars = (v) => JSON.stringify(v ?? null);
  const op =
    waiting.find((o) => o.query === parsed.query && vars(o.variables) === vars(parsed.variables)) ||
    waiting.find((o) => o.query === parsed.query) ||
    waiting[0];
  if (op) op.claimed = true;
  return op;
}

function markReady(op) {
  if (!op || op.ready) return;
  op.ready = true;
  line(op, { ready: true });
}

// fetchFn is a public createClient option; wrapping global fetch lets us tell
// when the operation's request went out and was answered.
async function fetchFn(input, init = {}) {
  const method = (init.method || 'GET').toUpperCase();
  const carriesOp = method === 'POST' && typeof init.body === 'string';
  const op = carriesOp ? opForBody(init.body) : undefined;
  if (op && readyOn === 'sent') queueMicrotask(() => markReady(op));
  const res = await fetch(input, init);
  if (op && readyOn !== 'sent') {
    const ok = cfg.mode === 'single' ? res.status === 202 : res.ok;
    if (ok) markReady(op);
  }
  return res;
}

const client = createClient({
  url: `${cfg.base}/graphql/stream`,
  singleConnection: cfg.mode === 'single',
  retryAttempts: 0,
  fetchFn,
  // A function so that every request gets a fresh object (single connection
  // mode adds its stream token header to the headers object it is given).
  headers: () => (cfg.token ? { Authorization: `Bearer ${cfg.token}` } : {}),
});

function maybeFinish() {
  if (ops.every((op) => op.done)) {
    client.dispose();
    exit(0);
  }
}

function stop(op) {
  if (op.stopping) return;
  op.stopping = true;
  // graphql-sse calls the sink's complete() (or error()) once the
  // unsubscribe is through: for single mode, after its DELETE was answered.
  op.dispose();
}

for (const op of ops) {
  const request = { query: op.query };
  if (op.variables !== undefined) request.variables = op.variables;
  op.dispose = client.subscribe(request, {
    next(result) {
      if (op.stopping || op.done) return;
      line(op, { next: result });
      op.received += 1;
      if (op.count > 0 && op.received >= op.count) stop(op);
    },
    async error(err) {
      if (op.done) return;
      op.done = true;
      const serialised = await serialiseError(err);
      line(op, { error: serialised });
      exit(1);
    },
    complete() {
      if (op.done) return;
      op.done = true;
      if (!op.stopping) line(op, { complete: true });
      maybeFinish();
    },
  });
}
