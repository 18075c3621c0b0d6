// Apollo Client (3.x) subscription over HttpLink's multipart HTTP protocol
// (`Accept: multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json`),
// driven by env vars, for pytest to run as a subprocess against a live server.
//
//   BASE          server origin, e.g. http://127.0.0.1:8123 (URL used: BASE/graphql/)
//   TOKEN         optional; sends `Authorization: Bearer <TOKEN>`
//   QUERY         GraphQL subscription document
//   VARIABLES     optional JSON object
//   COUNT         stop after this many results (unset or 0: run until complete)
//   ERROR_POLICY  optional Apollo errorPolicy: "none" (default), "all" or "ignore"
//   READY_ON      "response" (default) or "sent", see below
//   TIMEOUT_MS    hard deadline, default 20000; then prints {"timeout": true}, exit 2
//
// stdout, one JSON object per line:
//   {"ready": true}        the POST was answered with a 2xx (response headers
//                          arrived); with READY_ON=sent: as soon as it is handed to fetch
//   {"next": {"data": ...}}   the FetchResult Apollo delivers (fetchPolicy no-cache)
//   {"complete": true}     the server ended the multipart stream
//   {"error": {"message": ..., "graphQLErrors"?, "protocolErrors"?, "networkError"?, "status"?}}  exit 1
//   {"timeout": true}      exit 2
// Exit 0 after COUNT results (the subscription is unsubscribed, which aborts the fetch)
// or after complete.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';
import { loadErrorMessages, loadDevMessages } from '@apollo/client/dev/index.js';
import { emit, exit, readEnv, armTimeout, serialiseError } from './common.mjs';

const cfg = readEnv();
armTimeout(cfg.timeoutMs);
const readyOn = process.env.READY_ON || 'response';

// Readable error texts instead of "see go.apollo.dev/c/err#..." codes.
loadErrorMessages();
loadDevMessages();

let ready = false;
function markReady() {
  if (ready) return;
  ready = true;
  emit({ ready: true });
}

// HttpLink's `fetch` option; wrapping global fetch tells us when the request
// went out and when its response headers arrived.
async function tracingFetch(input, init) {
  if (readyOn === 'sent') queueMicrotask(markReady);
  const res = await fetch(input, init);
  if (readyOn !== 'sent' && res.ok) markReady();
  return res;
}

let document;
try {
  document = gql(cfg.query);
} catch (err) {
  exit(1, { error: await serialiseError(err) });
}

const client = new ApolloClient({
  link: new HttpLink({
    uri: `${cfg.base}/graphql/`,
    headers: cfg.token ? { Authorization: `Bearer ${cfg.token}` } : {},
    fetch: tracingFetch,
  }),
  cache: new InMemoryCache(),
});

let received = 0;
let finished = false;
let subscription;

function finish(code, lineObj) {
  if (finished) return;
  finished = true;
  if (lineObj !== undefined) emit(lineObj);
  try {
    subscription?.unsubscribe();
  } catch {
    // ignore
  }
  client.stop();
  exit(code);
}

const options = { query: document, fetchPolicy: 'no-cache', errorPolicy: cfg.errorPolicy };
if (cfg.variables !== undefined) options.variables = cfg.variables;

subscription = client.subscribe(options).subscribe({
  next(result) {
    if (finished) return;
    emit({ next: result });
    received += 1;
    if (cfg.count > 0 && received >= cfg.count) finish(0);
  },
  async error(err) {
    if (finished) return;
    const serialised = await serialiseError(err);
    finish(1, { error: serialised });
  },
  complete() {
    finish(0, { complete: true });
  },
});
