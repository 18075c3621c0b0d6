// Shared helpers for the client harness scripts: env parsing, one-JSON-object-
// per-line output, the hard timeout, and error serialisation.

export function emit(obj) {
  // stdout writes to pipes and files are synchronous on Linux, so a
  // process.exit() right after this cannot lose the line.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

export function exit(code, line) {
  if (line !== undefined) emit(line);
  process.exit(code);
}

export function fail(message) {
  exit(1, { error: { message } });
}

export function readEnv() {
  const env = process.env;
  const base = (env.BASE || '').replace(/\/+$/, '');
  if (!base) fail('BASE is required');
  if (!env.QUERY) fail('QUERY is required');
  let variables;
  if (env.VARIABLES) {
    try {
      variables = JSON.parse(env.VARIABLES);
    } catch (err) {
      fail(`VARIABLES is not valid JSON: ${err.message}`);
    }
  }
  let secondVariables = variables;
  if (env.SECOND_VARIABLES) {
    try {
      secondVariables = JSON.parse(env.SECOND_VARIABLES);
    } catch (err) {
      fail(`SECOND_VARIABLES is not valid JSON: ${err.message}`);
    }
  }
  const count = env.COUNT === undefined || env.COUNT === '' ? 0 : Number(env.COUNT);
  if (!Number.isInteger(count) || count < 0) fail(`COUNT must be a non-negative integer, got ${env.COUNT}`);
  const secondCount = env.SECOND_COUNT ? Number(env.SECOND_COUNT) : count;
  if (!Number.isInteger(secondCount) || secondCount < 0) fail(`SECOND_COUNT must be a non-negative integer`);
  const timeoutMs = env.TIMEOUT_MS ? Number(env.TIMEOUT_MS) : 20000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) fail(`TIMEOUT_MS must be a positive number`);
  return {
    base,
    mode: env.MODE || 'distinct',
    token: env.TOKEN || '',
    query: env.QUERY,
    variables,
    count,
    secondQuery: env.SECOND_QUERY || '',
    secondVariables,
    secondCount,
    timeoutMs,
    errorPolicy: env.ERROR_POLICY || 'none',
  };
}

// Hard deadline: a test must never hang on this process.
export function armTimeout(ms) {
  setTimeout(() => exit(2, { timeout: true }), ms);
}

async function readBody(response) {
  try {
    const text = await Promise.race([
      response.text(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('body read timeout')), 1000)),
    ]);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  } catch {
    return undefined;
  }
}

// Turns whatever a library hands to an error callback into plain JSON.
// Always has `message`; adds `name`, HTTP `status`/`body` when a response is
// attached, GraphQL error lists when present.
export async function serialiseError(err) {
  if (err === null || err === undefined) return { message: String(err) };
  if (Array.isArray(err)) {
    // graphql-sse hands GraphQL errors arrays straight through in some paths
    return { message: err.map((e) => e && e.message).join('; '), errors: err };
  }
  if (typeof err !== 'object') return { message: String(err) };
  const out = { message: err.message !== undefined ? String(err.message) : String(err) };
  if (err.name) out.name = err.name;
  // graphql-sse NetworkError(response)
  if (err.response && typeof err.response.status === 'number') {
    out.status = err.response.status;
    if (typeof err.response.text === 'function' && !err.response.bodyUsed) {
      const body = await readBody(err.response);
      if (body !== undefined) out.body = body;
    }
  }
  // Apollo ServerError / ServerParseError (HTTP status >= 300 or unparsable body)
  if (typeof err.statusCode === 'number' && out.status === undefined) out.status = err.statusCode;
  if (err.result !== undefined && out.body === undefined) out.body = err.result;
  if (err.bodyText !== undefined && out.body === undefined) out.body = err.bodyText;
  // Apollo ApolloError
  if (Array.isArray(err.graphQLErrors) && err.graphQLErrors.length) out.graphQLErrors = err.graphQLErrors;
  if (Array.isArray(err.protocolErrors) && err.protocolErrors.length) out.protocolErrors = err.protocolErrors;
  if (Array.isArray(err.clientErrors) && err.clientErrors.length) {
    out.clientErrors = err.clientErrors.map((e) => ({ name: e.name, message: e.message }));
  }
  if (err.networkError) {
    const ne = err.networkError;
    out.networkError = { name: ne.name, message: ne.message };
    if (typeof ne.statusCode === 'number') out.networkError.statusCode = ne.statusCode;
    if (ne.result !== undefined) out.networkError.result = ne.result;
    if (ne.bodyText !== undefined) out.networkError.bodyText = ne.bodyText;
    if (typeof ne.statusCode === 'number' && out.status === undefined) out.status = ne.statusCode;
  }
  if (err.cause && err.cause !== err && err.cause.message) out.cause = String(err.cause.message);
  return out;
}
